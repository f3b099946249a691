"""Remote functions and actor classes the actor tests call (workers import this module)."""

from __future__ import annotations

import os
import time

import refrpc


def _until_file(path: str, limit_s: float = 60.0) -> bool:
    # Blocks this thread (not in refrpc.get) until the test creates `path`: the
    # kind of long call that held a worker's only turn before actors had threads.
    end = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@refrpc.remote(max_retries=0)
def block_until(path):
    return _until_file(path)


@refrpc.remote
def add(a, b):
    return a + b


@refrpc.remote
class Gate:
    def __init__(self):
        self.calls = 0

    def block_until(self, path):
        self.calls += 1
        return _until_file(path)

    def ping(self):
        self.calls += 1
        return self.calls
