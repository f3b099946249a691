"""Shared helpers: running the command line in-process and as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import refrpc
import refrpc_trace
from refrpc_trace._cli import main

#: Import paths of refrpc and refrpc_trace, for child processes (whether installed or not).
PYTHONPATH = os.pathsep.join([str(Path(refrpc.__file__).resolve().parents[1]),
                              str(Path(refrpc_trace.__file__).resolve().parents[1])])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``refrpc-trace ARGS`` in this process: (exit code, stdout, stderr)."""

    def run(*args: object) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_process(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m refrpc_trace ARGS`` as a child process."""
    env = dict(os.environ, PYTHONPATH=PYTHONPATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("REFRPC_TRACE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "refrpc_trace", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
