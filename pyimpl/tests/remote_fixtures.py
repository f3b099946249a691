"""Remote functions and actors the runtime tests call (workers import this module)."""

from __future__ import annotations

import refrpc


@refrpc.remote
def add(a, b):
    return a + b


@refrpc.remote
def make_bytes(n):
    return b"x" * n


@refrpc.remote
def length(x):
    return len(x)


@refrpc.remote
def fail(message):
    raise ValueError(message)


@refrpc.remote
def nest(ref):
    # Receives a shared ref and returns it inside a list: the caller gets the ref back.
    return [ref]


@refrpc.remote
def forward(ref):
    # A nested task: this worker submits `nest` with the same shared ref and
    # returns the resulting ref (which it owns) inside its value.
    return [nest.remote(refrpc.shared(ref))]


@refrpc.remote
def deref(ref):
    # The callee holds a shared ref and reads it itself.
    return len(refrpc.get(ref))


@refrpc.remote(num_returns=2)
def split(x):
    return x[: len(x) // 2], x[len(x) // 2 :]


@refrpc.remote
def make_array(n):
    import numpy as np

    return np.arange(n, dtype=np.uint8)


@refrpc.remote
class Counter:
    def __init__(self, start):
        self.value = start
        self.kept = []

    def add(self, n):
        self.value += n
        return self.value

    def keep(self, ref):
        self.kept.append(ref)
        return len(self.kept)

    def kept_refs(self):
        return list(self.kept)

    def forget(self):
        self.kept = []
        return 0


@refrpc.remote
def where(x):
    # Which worker ran this task (to check placement).
    return refrpc.api._ctx.node.peer_id


@refrpc.remote
def sleep_ms(ms):
    import time

    time.sleep(ms / 1000)
    return ms
