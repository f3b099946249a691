"""What the memory tests share: a tiny file system to fill."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from typing import Iterator

import pytest


@contextlib.contextmanager
def tiny_tmpfs(size: str) -> Iterator[str]:
    """A directory that is a tmpfs of ``size`` (e.g. ``"8m"``), unmounted on the way
    out; the test is skipped where mounting is not allowed (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    with tempfile.TemporaryDirectory(prefix="refrpc-tiny-") as tiny:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", tiny], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here")
        try:
            yield tiny
        finally:
            subprocess.run(["umount", tiny], check=False)
