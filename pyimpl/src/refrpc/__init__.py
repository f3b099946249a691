"""RefRPC: pass-by-reference RPC with distributed memory.

The API is the paper's Table 1 in the Python idiom: ``@remote`` functions and
classes, ``.remote()`` calls that return :class:`Ref` futures, ``get``, ``wait``,
``put`` and ``shared``. Values are reclaimed automatically once no process
holds a ref to them.
"""

from .api import (
    ActorDiedError,
    ActorHandle,
    GetTimeoutError,
    LineageEvictedError,
    ObjectLostError,
    ObjectStoreFullError,
    OwnerDiedError,
    Ref,
    RefRPCError,
    SharedRef,
    TaskCancelledError,
    TaskError,
    WorkerDiedError,
    as_completed,
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_actor,
    init,
    kill,
    is_initialized,
    memory,
    nodes,
    put,
    remote,
    shared,
    shutdown,
    wait,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "ActorDiedError",
    "ActorHandle",
    "GetTimeoutError",
    "LineageEvictedError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "OwnerDiedError",
    "Ref",
    "RefRPCError",
    "SharedRef",
    "TaskCancelledError",
    "TaskError",
    "WorkerDiedError",
    "__version__",
    "as_completed",
    "available_resources",
    "cancel",
    "cluster_resources",
    "get",
    "get_actor",
    "init",
    "kill",
    "is_initialized",
    "memory",
    "nodes",
    "put",
    "remote",
    "shared",
    "shutdown",
    "wait",
]
