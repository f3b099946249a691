"""The public surface of `import refrpc` is deliberate: a change to it is a decision."""

from __future__ import annotations

import pytest

import refrpc

EXPECTED = {
    "ActorDiedError", "ActorHandle", "GetTimeoutError", "LineageEvictedError", "ObjectLostError", "ObjectStoreFullError",
    "OwnerDiedError", "Ref",
    "RefRPCError", "SharedRef", "TaskCancelledError", "TaskError", "WorkerDiedError", "__version__",
    "as_completed", "cancel", "get", "get_actor", "init", "is_initialized", "kill", "memory", "put", "remote", "shared", "shutdown", "wait",
    "nodes", "cluster_resources", "available_resources",
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


def test_errors_from_beneath_the_api_are_refrpc_errors_too() -> None:
    # Users catch RefRPCError for anything RefRPC raises (store, codec, serialization).
    from refrpc.codec import EncodeError
    from refrpc.serialization import DeserializationError, NotPortable, SerializationError
    from refrpc.store import ObjectNotFound, StoreError, StoreFull

    for cls in (EncodeError, SerializationError, NotPortable, DeserializationError, StoreError, StoreFull, ObjectNotFound):
        assert issubclass(cls, refrpc.RefRPCError), cls.__name__
    assert issubclass(EncodeError, ValueError) and issubclass(ObjectNotFound, LookupError)  # as before
    assert issubclass(StoreFull, refrpc.ObjectStoreFullError)  # a full store is the typed error programs catch


def test_ray_spellings_init_num_cpus_wait_fetch_local_and_kill_no_restart():
    # init(num_cpus=) is num_workers by Ray's name; disagreeing values are refused
    # before anything starts. wait(fetch_local=) is taken; kill(no_restart=False) is
    # refused (a killed actor is dead for good here).
    import inspect

    with pytest.raises(ValueError, match="disagree"):
        refrpc.init(2, num_cpus=3)
    assert not refrpc.is_initialized()
    assert "fetch_local" in inspect.signature(refrpc.wait).parameters
    assert refrpc.wait([], fetch_local=False) == ([], [])
    with pytest.raises(ValueError, match="dead for good"):
        refrpc.kill(refrpc.api.ActorHandle.__new__(refrpc.api.ActorHandle), no_restart=False)
