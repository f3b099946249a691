"""The public surface of `import refrpc` is deliberate: a change to it is a decision."""

from __future__ import annotations

import refrpc

EXPECTED = {
    "ActorDiedError", "ActorHandle", "GetTimeoutError", "LineageEvictedError", "ObjectLostError", "OwnerDiedError", "Ref",
    "RefRPCError", "SharedRef", "TaskCancelledError", "TaskError", "WorkerDiedError", "__version__",
    "cancel", "get", "init", "is_initialized", "memory", "put", "remote", "shared", "shutdown", "wait",
}


def test_exports_are_exactly_the_documented_api() -> None:
    assert set(refrpc.__all__) == EXPECTED
    for name in refrpc.__all__:
        assert hasattr(refrpc, name), name


def test_every_error_is_a_refrpc_error() -> None:
    for name in refrpc.__all__:
        obj = getattr(refrpc, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, refrpc.RefRPCError), name
