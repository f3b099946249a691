"""A `refrpc start --head` process for tests that join a cluster the way a user does."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from typing import Iterator


@contextlib.contextmanager
def cli_head(*args: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``refrpc start --head ARGS``; yield the address it listens at (the first
    line it prints); terminate it (and wait for it) on the way out, even on failure."""
    proc = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--head", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # "head listening at tcp://127.0.0.1:PORT"
        match = re.search(r"tcp://[0-9.]+:\d+", line)
        assert match, line
        yield match.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
