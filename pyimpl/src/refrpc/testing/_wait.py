"""Waiting for a condition with a bound: the way tests of real processes wait."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; the last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def main_thread_asleep(pid: int) -> bool:
    """Whether process ``pid``'s main thread is blocked (state S in /proc) in three
    looks 20 ms apart: a process sitting in a wait, ready for a signal (Linux)."""
    for i in range(3):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "S":
                return False
        if i < 2:
            time.sleep(0.02)
    return True
