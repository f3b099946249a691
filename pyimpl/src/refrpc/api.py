"""The user-facing API (the paper's Table 1): init, remote, put, get, wait, shared.

Every call returns a :class:`Ref` at once. Passing a ``Ref`` as an argument
passes it by reference (the callee gets the value); passing ``shared(ref)``
hands the callee the ref itself. There is no ``free``: a value is reclaimed when
no process holds a ref to it and no pending task needs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from .core import events as ev
from .core.messages import ErrorCode, ErrorInfo, RefDescriptor, Value
from .serialization import serialize
from .store import ObjectNotFound

T = TypeVar("T")
#: Appended to a function name when the last argument holds keyword arguments.
KWARGS_SUFFIX = "+kwargs"


# ---------------------------------------------------------------- errors
class RefRPCError(Exception):
    """Base of every error RefRPC raises; ``code`` is the spec's error code."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.UNRECOGNIZED, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class TaskError(RefRPCError):
    """The remote function raised; ``detail`` holds the remote traceback (TASK-007)."""

    def __str__(self) -> str:
        return f"{self.args[0]}\n\nRemote traceback:\n{self.detail}" if self.detail else self.args[0]


class WorkerDiedError(RefRPCError):
    """The worker running the task died and no retry was left (RPC-004)."""


class OwnerDiedError(RefRPCError):
    """The object's owner died; its objects die with it (FATE-001)."""


class ObjectLostError(RefRPCError):
    """Every copy is gone and the value cannot be rebuilt (LIN-003)."""


class LineageEvictedError(ObjectLostError):
    """The value is lost and could have been rebuilt, but its lineage was evicted to
    bound the owner's memory (LIN-005; see ``init(max_lineage_bytes=)``)."""


class ActorDiedError(RefRPCError):
    """The actor is dead (ACT-004)."""


class TaskCancelledError(RefRPCError):
    """The task was cancelled (TASK-008)."""


class GetTimeoutError(RefRPCError, TimeoutError):
    """``get`` gave up after its timeout; the value may still come."""


_ERRORS: dict[ErrorCode, type[RefRPCError]] = {
    ErrorCode.TASK_FAILED: TaskError,
    ErrorCode.WORKER_DIED: WorkerDiedError,
    ErrorCode.OWNER_DIED: OwnerDiedError,
    ErrorCode.PEER_DIED: OwnerDiedError,
    ErrorCode.OBJECT_LOST: ObjectLostError,
    ErrorCode.OBJECT_FREED: ObjectLostError,
    ErrorCode.LINEAGE_EVICTED: LineageEvictedError,
    ErrorCode.ACTOR_DIED: ActorDiedError,
    ErrorCode.TASK_CANCELLED: TaskCancelledError,
}


def _raise(info: ErrorInfo) -> None:
    cls = _ERRORS.get(info.code, RefRPCError)
    raise cls(info.message or info.code.value, info.code, info.detail)


# ---------------------------------------------------------------- the process's node
class _Context:
    def __init__(self) -> None:
        self.node: Any = None
        self.executor: Any = None
        self.cluster: Any = None
        self.lock = threading.Lock()
        #: Ref objects alive in this process, per object id (to unmap copies).
        self.handles: dict[str, int] = {}


_ctx = _Context()
#: The inline threshold new nodes of this process use (set by init).
_INLINE = [100 * 1024]
#: The lineage bound new nodes of this process use (None: the spec default).
#: Protocol settings (Config fields) init() was given: every process of the cluster uses them.
_SETTINGS: dict[str, int] = {}


def _attach(node: Any, executor: Any) -> None:
    """Make ``node`` this process's node (worker processes call this)."""
    _ctx.node, _ctx.executor = node, executor


def _node() -> Any:
    if _ctx.node is None or _ctx.node.stopped.is_set():
        raise RefRPCError("refrpc is not initialized in this process: call refrpc.init()")
    return _ctx.node


def is_initialized() -> bool:
    return _ctx.node is not None and not _ctx.node.stopped.is_set()


def _call_on(peer: str, function: str, *args: Any, timeout: float = 30.0) -> Any:
    """Run a registered function on one named peer and return its value (runtime use)."""
    node = _node()
    specs, keep = _arg_specs(node, args)

    def do() -> str:
        task_id, rids = node.new_task_ids(1)
        node.handle(ev.Submit(node.sid(), task_id, function, tuple(specs), rids, 0, False, "", peer))
        return rids[0]

    ref = Ref(node, node.call(do).result(), counted=True)
    del keep
    return get(ref, timeout=timeout)


def _config() -> Any:
    from .runtime._node import default_config

    return default_config(inline_threshold=_INLINE[0], **_SETTINGS)


def _check_settings(**given: int | None) -> dict[str, int]:
    """The protocol settings init() was given, checked (a bad one is a ValueError, not a broken cluster)."""
    least = {"max_lineage_bytes": 0, "heartbeat_interval_ms": 1, "miss_limit": 2}  # LIV-013: missLimit >= 2
    out = {}
    for name, v in given.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < least[name]:
            raise ValueError(f"{name} must be an int >= {least[name]}, not {v!r}")
        out[name] = v
    return out


def _join(address: str, node_ip: str, startup_timeout: float, trace_dir: str | None) -> None:
    """``init(address=...)``: join a running multi-host cluster through its head."""
    import socket

    from .runtime import Node
    from .runtime._membership import HEAD

    name = f"driver-{socket.gethostname()}-{os.getpid()}"
    node = Node(name, f"tcp://{node_ip}:0", namespace=f"drv{os.getpid()}", config=_config(), trace_dir=trace_dir)
    _ctx.node = node
    try:
        node.handle_soon(lambda sid: ev.Connect(sid, HEAD, address)).result()
        members = _call_on(HEAD, "refrpc.runtime._membership:members", timeout=startup_timeout)
        _call_on(HEAD, "refrpc.runtime._membership:register_driver", name, node.address, socket.gethostname(), timeout=startup_timeout)
    except BaseException:
        _ctx.node = None
        node.stop()
        raise
    adds = [lambda sid, p=p, a=a, s=s: ev.AddPeer(sid, p, a, s) for p, a, s, _ in members]
    if adds:
        node.handle_soon(*adds).result()


def init(num_workers: int | None = None, *, address: str | None = None, node_ip: str = "127.0.0.1",
         inline_threshold: int = 100 * 1024, startup_timeout: float = 60.0,
         max_lineage_bytes: int | None = None, heartbeat_interval_ms: int | None = None,
         miss_limit: int | None = None, trace_dir: str | os.PathLike[str] | None = None) -> None:
    """Start a local cluster of worker processes (one per core) and connect to it.

    With ``address`` (a head started by ``refrpc start --head``), join that
    cluster instead: its registered workers run this program's tasks.
    Values larger than ``inline_threshold`` bytes stay where they are made and
    travel by reference (TASK-004); smaller ones travel inside messages.
    ``max_lineage_bytes`` bounds the task specifications each process keeps to
    rebuild lost values (LIN-010; 256 MiB by default): a lost value whose lineage
    was evicted fails with :class:`LineageEvictedError`.
    A peer that stays silent for ``heartbeat_interval_ms`` x ``miss_limit`` (250 ms
    x 6 by default) is declared dead (LIV-003, LIV-013); across hosts, use a few
    seconds. These settings apply to the workers ``init`` starts too.
    With ``trace_dir``, this process and every worker ``init`` starts record their
    trace in the spec's canonical format, one file per process in that directory
    (``{peer}.{incarnation:016x}.rrtrace``, TRC-011); without it, each process
    records where the ``REFRPC_TRACE_DIR`` environment variable says, if set.
    """
    settings = _check_settings(max_lineage_bytes=max_lineage_bytes, heartbeat_interval_ms=heartbeat_interval_ms,
                               miss_limit=miss_limit)
    _INLINE[0] = inline_threshold
    _SETTINGS.clear()
    _SETTINGS.update(settings)
    from .runtime import LocalCluster, Node

    if address is not None:
        with _ctx.lock:
            if is_initialized():
                raise RefRPCError("refrpc is already initialized; call refrpc.shutdown() first")
        _join(address, node_ip, startup_timeout, None if trace_dir is None else os.fspath(trace_dir))
        return
    with _ctx.lock:
        if is_initialized():
            if _ctx.executor is not None:
                raise RefRPCError("init() was called inside a worker: guard the script's top level with `if __name__ == '__main__':`")
            raise RefRPCError("refrpc is already initialized; call refrpc.shutdown() first")
        n = num_workers or os.cpu_count() or 1
        import tempfile

        sock_dir = tempfile.mkdtemp(prefix="refrpc-driver-")
        # One shared-memory namespace for the whole host: the driver and its
        # workers map each other's values instead of copying them.
        namespace = LocalCluster.new_namespace()
        traces = None if trace_dir is None else os.fspath(trace_dir)
        node = Node("driver", f"ipc://{sock_dir}/driver.sock", namespace=namespace, config=_config(), trace_dir=traces)
        cluster = LocalCluster.start(n, node.address, node.incarnation, inline_threshold=_INLINE[0], namespace=namespace,
                                    settings=dict(_SETTINGS), trace_dir=traces)
        end = time.monotonic() + startup_timeout
        for name, address in cluster.workers.items():
            path = address.removeprefix("ipc://")
            while not os.path.exists(path):
                if cluster.processes[name].poll() is not None or time.monotonic() > end:
                    node.stop()
                    cluster.stop()
                    raise RefRPCError(f"worker {name} did not start")
                time.sleep(0.01)
        adds = [lambda sid, n=name, a=address: ev.AddPeer(sid, n, a, 1) for name, address in cluster.workers.items()]
        node.handle_soon(*adds).result()
        cluster.watch(node)
        _ctx.node, _ctx.cluster = node, cluster
        _ctx.sock_dir = sock_dir  # type: ignore[attr-defined]


def shutdown() -> None:
    """Leave cleanly: workers of a local cluster exit and every segment is removed."""
    with _ctx.lock:
        node, cluster = _ctx.node, _ctx.cluster
        _ctx.node = _ctx.cluster = None
        if node is not None:
            node.stop()
        if cluster is not None:
            cluster.stop()
            if node is not None:
                cluster.stats["driver"] = dict(node.stats)
            _ctx.last_stats = cluster.stats  # type: ignore[attr-defined]
        sock_dir = getattr(_ctx, "sock_dir", None)
        if sock_dir:
            import shutil

            shutil.rmtree(sock_dir, ignore_errors=True)


# ---------------------------------------------------------------- refs
class Ref(Generic[T]):
    """A reference to a possibly remote, possibly not yet computed value."""

    __slots__ = ("id", "_node", "__weakref__")

    def __init__(self, node: Any, object_id: str, *, counted: bool) -> None:
        self.id = object_id
        self._node = node
        with _ctx.lock:
            _ctx.handles[object_id] = _ctx.handles.get(object_id, 0) + 1
        if not counted:  # OWN-003: the core counts every handle the program holds
            node.handle_soon(lambda sid: ev.AddRef(sid, object_id))

    def __del__(self) -> None:
        node, oid = self._node, self.id
        try:
            with _ctx.lock:
                left = _ctx.handles.get(oid, 1) - 1
                if left <= 0:
                    _ctx.handles.pop(oid, None)
                else:
                    _ctx.handles[oid] = left
            if node is not None and not node.stopped.is_set():
                node.handle_soon(lambda sid: ev.DropRef(sid, oid))
                if left <= 0:
                    node.call(lambda: node.store.detach(oid) if hasattr(node.store, "detach") else None)
        except Exception:  # interpreter shutdown: nothing left to tell
            pass

    def __repr__(self) -> str:
        return f"Ref({self.id})"

    def __reduce__(self) -> Any:
        raise TypeError("a Ref travels inside a RefRPC call or put, not through plain pickle")

    def future(self) -> concurrent.futures.Future[T]:
        """A concurrent.futures.Future of the value."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def fetch() -> None:
            try:
                fut.set_result(get(self))
            except BaseException as exc:
                fut.set_exception(exc)

        threading.Thread(target=fetch, daemon=True).start()
        return fut

    def __await__(self) -> Any:
        return asyncio.wrap_future(self.future()).__await__()


@dataclass(frozen=True)
class _ByRef:
    """A Ref passed as a keyword argument, to be dereferenced for the callee."""

    ref: Ref[Any]


@dataclass(frozen=True)
class SharedRef:
    """Wraps a Ref so that the callee receives the Ref itself, not its value."""

    ref: Ref[Any]


def shared(ref: Ref[Any]) -> SharedRef:
    """Pass ``ref`` by sharing: the callee becomes a borrower and may keep it."""
    if not isinstance(ref, Ref):
        raise TypeError(f"shared() takes a Ref, not {type(ref).__name__}")
    return SharedRef(ref)


def _make_ref(node: Any, object_id: str, counted: bool) -> Ref[Any]:
    return Ref(node, object_id, counted=counted)


def _ref_hook(node: Any) -> Callable[[object], RefDescriptor | None]:
    def hook(obj: object) -> RefDescriptor | None:
        if isinstance(obj, Ref):
            return node.call(lambda: node.core.descriptor(obj.id)).result()
        if isinstance(obj, SharedRef):
            return node.call(lambda: node.core.descriptor(obj.ref.id)).result()
        return None

    return hook


# ---------------------------------------------------------------- put / get / wait
def put(obj: Any) -> Ref[Any]:
    """Store ``obj`` and return a Ref owned by this process (OWN-001)."""
    node = _node()
    value = serialize(obj, ref_hook=_ref_hook(node))
    oid = node.new_id()
    stored = value.size > node.config.inline_threshold
    # Large values are written to shared memory here, on the caller's thread, so the
    # loop thread (and its heartbeats) never waits for a big copy.
    size = node.store.put(oid, value) if stored else value.size
    entry = value if not stored else Value(value.encoding, b"", (), value.nested)
    node.submit_nowait((oid,), lambda sid: ev.Put(sid, oid, entry, stored, size), undo=(lambda: node.store.free(oid)) if stored else None)
    return Ref(node, oid, counted=True)


def _wait_for(fut: concurrent.futures.Future[Any], timeout: float | None) -> Any:
    """``fut.result(timeout)``; inside a task, the task lends its worker's turn
    while it waits (queued tasks run meanwhile), so waiting for a task queued
    behind it on the same worker cannot deadlock."""
    executor = _ctx.executor
    if executor is not None and executor.on_thread():
        return executor.help_until(fut, timeout)
    return fut.result(timeout)


def _value_of(node: Any, ref: Ref[Any], deadline: float | None) -> Any:
    from .runtime._executor import _load

    delay = 0.05
    refused = node.refused.get(ref.id)
    if refused is not None:
        raise refused
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            res: ev.GetResult = _wait_for(node.get_result(ref.id), timeout)
        except concurrent.futures.TimeoutError:
            raise GetTimeoutError(f"{ref.id} was not ready within the timeout", ErrorCode.UNRECOGNIZED) from None
        if res.error is not None:
            _raise(res.error)
        value = res.value
        if value is None:
            try:
                # Same host: mapped read-only, not copied; another host: fetched first.
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                value = node.local_value(ref.id, res.locations, left)
            except concurrent.futures.TimeoutError:
                raise GetTimeoutError(f"fetching {ref.id} did not finish within the timeout", ErrorCode.UNRECOGNIZED) from None
            except ObjectNotFound:
                # OBJ-013: the owner said where it was, it is not there; ask again.
                node.handle_soon(lambda sid: ev.FetchFailed(sid, ref.id))
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
        return _load(node, ref.id, value, _make_ref)


def get(refs: Ref[T] | Sequence[Ref[Any]], *, timeout: float | None = None) -> Any:
    """The value of a Ref (or a list of values), waiting for it if needed."""
    node = _node()
    deadline = None if timeout is None else time.monotonic() + timeout
    if isinstance(refs, Ref):
        return _value_of(node, refs, deadline)
    if isinstance(refs, (list, tuple)) and all(isinstance(r, Ref) for r in refs):
        return [_value_of(node, r, deadline) for r in refs]
    raise TypeError("get() takes a Ref or a list of Refs")


def _first_of(futures: set[concurrent.futures.Future[Any]]) -> concurrent.futures.Future[None]:
    """A future done when the first of ``futures`` is."""
    first: concurrent.futures.Future[None] = concurrent.futures.Future()

    def settle(_: object) -> None:
        try:
            first.set_result(None)
        except concurrent.futures.InvalidStateError:
            pass  # another one was first

    for f in futures:
        f.add_done_callback(settle)
    return first


def wait(refs: Sequence[Ref[Any]], *, num_returns: int = 1, timeout: float | None = None) -> tuple[list[Ref[Any]], list[Ref[Any]]]:
    """Split ``refs`` into (ready, pending) once ``num_returns`` are ready or the timeout passes."""
    node = _node()
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns must be between 0 and {len(refs)}")
    node.trace_program("wait", objects=[r.id for r in refs], numReturns=num_returns)  # before the gets it makes
    futures = {node.get_result(r.id): i for i, r in enumerate(refs)}
    done: set[int] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = set(futures)
    while len(done) < num_returns and pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            _wait_for(_first_of(pending), left)
        except concurrent.futures.TimeoutError:
            break
        finished = {f for f in pending if f.done()}
        pending -= finished
        done |= {futures[f] for f in finished}
    ready = [refs[i] for i in sorted(done)][: max(num_returns, 0)] if num_returns else []
    ready_ids = {id(r) for r in ready}
    return ready, [r for r in refs if id(r) not in ready_ids]


# ---------------------------------------------------------------- the memory view
def memory(peers: Sequence[str] | None = None, *, timeout: float = 10.0) -> str:
    """Every live object this process can see, with why it is alive (INT-001).

    Asks this process and ``peers`` (by default every worker this process knows)
    for their ownership tables; each owned object is listed with its owner,
    state, size, where it is stored and what keeps it alive: local refs,
    pending tasks, borrowers, containing objects, lineage.
    """
    node = _node()
    if peers is None:
        peers = node.call(lambda: list(node.core.workers)).result()
    lines = [f"{'object':<44} {'owner':<30} {'state':<9} {'size':>12}  where stored / why alive"]
    rows = 0
    for peer in [node.peer_id, *peers]:
        try:
            result = node.introspect(peer).result(timeout)
        except Exception as exc:  # a peer that died meanwhile
            lines.append(f"  ({peer}: unreachable: {exc or type(exc).__name__})")
            continue
        if result.error is not None:
            lines.append(f"  ({peer}: {result.error.message})")
            continue
        for e in result.entries:
            if e.role != "owner":
                continue
            why = []
            if e.local_refs:
                why.append(f"{e.local_refs} local ref(s)")
            if e.submitted_task_refs:
                why.append(f"{e.submitted_task_refs} pending task(s)")
            if e.borrowers:
                why.append("borrowed by " + ", ".join(e.borrowers))
            if e.contained_in:
                why.append("contained in " + ", ".join(e.contained_in))
            if e.lineage_refs and e.state == "released":
                why.append(f"lineage for {e.lineage_refs} object(s)")
            where = ",".join(e.locations) or "inline at owner"
            lines.append(f"{e.object_id:<44} {e.owner:<30} {e.state:<9} {e.size:>12,}  {where}; {'; '.join(why) or '-'}")
            rows += 1
    lines.append(f"{rows} live objects")
    return "\n".join(lines)


# ---------------------------------------------------------------- remote functions
def _arg_specs(node: Any, args: Iterable[Any]) -> tuple[list[ev.ArgSpec], list[Ref[Any]]]:
    specs: list[ev.ArgSpec] = []
    keep: list[Ref[Any]] = []
    for a in args:
        if isinstance(a, SharedRef):
            specs.append(ev.ArgSpec(object_id=a.ref.id, shared=True))
        elif isinstance(a, Ref):
            specs.append(ev.ArgSpec(object_id=a.id))
        else:
            value = serialize(a, ref_hook=_ref_hook(node))
            if value.size > node.config.inline_threshold:
                r = put(a)  # large values travel by reference, not inside the message
                keep.append(r)
                specs.append(ev.ArgSpec(object_id=r.id))
            else:
                specs.append(ev.ArgSpec(value=value))
    return specs, keep


def _pack_kwargs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The protocol passes positional arguments; Python keywords ride as one trailing
    dict, flagged in the function name (a Python-only convention). A Ref given as a
    keyword is dereferenced for the callee, like a positional one."""
    if not kwargs:
        return name, args
    packed = {k: _ByRef(v) if isinstance(v, Ref) else v for k, v in kwargs.items()}
    return name + KWARGS_SUFFIX, (*args, packed)


def _name_of(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _by_name(obj: Any) -> bool:
    """Whether workers can find ``obj`` by ``module:qualname`` (else it ships by value)."""
    import importlib

    if "<" in obj.__qualname__:  # lambdas, functions defined inside functions
        return False
    module = obj.__module__
    if module == "__main__":
        # Workers of a local cluster load the driver's script; those of a cluster
        # started with `refrpc start` never saw it, so it ships by value there.
        return _ctx.cluster is not None and bool(getattr(__import__("sys").modules.get("__main__"), "__file__", None))
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


class RemoteFunction:
    """A function made callable remotely by ``@refrpc.remote``.

    Functions workers can import (or find in the driver's guarded script) travel
    by name; others (lambdas, local functions, notebook cells) travel by value
    with cloudpickle, stored once as an object and passed by reference.
    """

    def __init__(self, fn: Callable[..., Any], num_returns: int = 1, max_retries: int = 3, retry_exceptions: bool = False) -> None:
        self._refrpc_target = fn
        self._name = _name_of(fn)
        self._shipped: Ref[Any] | None = None
        self._num_returns = num_returns
        self._max_retries = max_retries
        self._retry_exceptions = retry_exceptions
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function {self._name} is called with .remote(...)")

    def _target(self, node: Any) -> tuple[str, list[ev.ArgSpec]]:
        """The function name to call, and arguments to put before the user's."""
        if _by_name(self._refrpc_target):
            return self._name, []
        if self._shipped is None or self._shipped._node is not node:
            import cloudpickle

            self._shipped = put(cloudpickle.dumps(self._refrpc_target))
        return "refrpc.runtime._executor:call_by_value", [ev.ArgSpec(object_id=self._shipped.id)]

    def options(self, *, num_returns: int | None = None, max_retries: int | None = None, retry_exceptions: bool | None = None) -> RemoteFunction:
        return RemoteFunction(
            self._refrpc_target,
            self._num_returns if num_returns is None else num_returns,
            self._max_retries if max_retries is None else max_retries,
            self._retry_exceptions if retry_exceptions is None else retry_exceptions,
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        node = _node()
        name, first = self._target(node)
        name, args = _pack_kwargs(name, args, kwargs)
        specs, keep = _arg_specs(node, args)
        specs = first + specs
        n = self._num_returns
        task_id, rids = node.new_task_ids(n)
        # Returns at once: the loop thread submits it in order with everything else.
        node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, name, tuple(specs), rids, self._max_retries, self._retry_exceptions))
        del keep  # the submitted task holds them (BOR-006): its Submit is queued before their DropRefs
        refs = [Ref(node, rid, counted=True) for rid in rids]
        return refs[0] if n == 1 else refs


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> Ref[Any]:
        node = _node()
        name, args = _pack_kwargs(self._name, args, kwargs)
        specs, keep = _arg_specs(node, args)
        aid = self._handle._actor_id
        task_id, rids = node.new_task_ids(1)
        node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, name, tuple(specs), rids, 0, False, aid))
        del keep
        return Ref(node, rids[0], counted=True)


class ActorHandle:
    """A handle to an actor this process created; method calls run in order (ACT-003)."""

    def __init__(self, actor_id: str, cls: type) -> None:
        self._actor_id = actor_id
        self._cls = cls

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") or not callable(getattr(self._cls, name, None)):
            raise AttributeError(f"actor {self._cls.__name__} has no method {name}")
        return ActorMethod(self, name)

    def kill(self) -> None:
        node = _node()
        node.handle_soon(lambda sid: ev.KillActorRequest(sid, self._actor_id))


class ActorClass:
    """A class made into an actor factory by ``@refrpc.remote``."""

    def __init__(self, cls: type, max_restarts: int = 0) -> None:
        self._refrpc_target = cls
        self._cls = cls
        self._name = _name_of(cls)
        self._max_restarts = max_restarts

    def options(self, *, max_restarts: int = 0) -> ActorClass:
        return ActorClass(self._cls, max_restarts)

    def remote(self, *args: Any) -> ActorHandle:
        node = _node()
        specs, keep = _arg_specs(node, args)

        def do() -> str:
            aid = node.new_id()
            node.handle(ev.CreateActorRequest(node.sid(), aid, self._name, tuple(specs), "", self._max_restarts))
            return aid

        aid = node.call(do).result()
        del keep
        return ActorHandle(aid, self._cls)


def remote(obj: Any = None, **options: Any) -> Any:
    """Decorate a function (task) or a class (actor); ``@remote(num_returns=2)`` takes options."""
    if obj is None:
        return lambda o: remote(o, **options)
    if isinstance(obj, type):
        return ActorClass(obj, **options)
    if callable(obj):
        return RemoteFunction(obj, **options)
    raise TypeError("@remote decorates a function or a class")
