"""Remote functions for test_recorded.py (the workers import this module)."""

from __future__ import annotations

import gc
import os
import time
from types import SimpleNamespace

import refrpc

#: Refs a worker keeps between tasks (a borrower, BOR-007).
_KEPT: list = []


@refrpc.remote
def keep(ref):
    _KEPT.append(ref)
    return len(_KEPT)


@refrpc.remote
def drop_all():
    _KEPT.clear()
    gc.collect()
    return True


@refrpc.remote
def size_of(value):
    return len(value)


@refrpc.remote(max_retries=2)
def slow_square(x, path):
    # The first execution announces itself (the test kills this process then) and waits.
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    return x * x


def borrowed_entries() -> list[str]:
    """The refs this process holds as a non-owner (run with refrpc.api._call_on)."""
    node = refrpc.api._ctx.node
    return node.call(lambda: sorted(node.core.borrowed)).result()


def install_fault(name: str) -> str:
    """Turn one of pyimpl's fault switches (refrpc.iut) on in this process."""
    from refrpc.iut._faults import install

    node = refrpc.api._ctx.node
    install(SimpleNamespace(node=node), [name])
    return str(node.peer_id)


#: Above the 100 KiB inline threshold: these values are stored where they are made.
BLOCK = 120_000


@refrpc.remote
def block(tag, size=BLOCK):
    time.sleep(0.01 * (tag % 3))  # a little work, so that a kill can land mid-run
    return bytes([tag % 256]) * size


@refrpc.remote
def digest(value):
    return value[0], len(value)


@refrpc.remote
def fan_out(tags, retries):
    # Submits tasks from a worker (it owns their results) and returns their refs
    # unread: the caller borrows them.
    return [block.options(max_retries=retries).remote(t) for t in tags]



@refrpc.remote
def digest_all(refs):
    # Waits in refrpc.get for values whose tasks may be queued (or retried after a
    # death) on this very worker: it gives its turn back meanwhile.
    return [(v[0], len(v)) for v in refrpc.get(refs, timeout=60)]
