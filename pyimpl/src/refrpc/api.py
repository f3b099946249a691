"""The user-facing API (the paper's Table 1): init, remote, put, get, wait, shared.

Every call returns a :class:`Ref` at once. Passing a ``Ref`` as an argument
passes it by reference (the callee gets the value); passing ``shared(ref)``
hands the callee the ref itself. There is no ``free``: a value is reclaimed when
no process holds a ref to it and no pending task needs it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import operator
import os
import re
import socket
import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

from .core import events as ev
from .core.messages import ErrorCode
from .errors import (
    ActorDiedError,
    GetTimeoutError,
    LineageEvictedError,
    ObjectLostError,
    ObjectStoreFullError,
    OwnerDiedError,
    RefRPCError,
    TaskCancelledError,
    TaskError,
    WorkerDiedError,
)
from .runtime._handles import ActorHandle, ActorMethod, descriptor_value, methods_of, pack_kwargs
from .runtime._refs import (
    KWARGS_SUFFIX,
    NamedRef,
    Ref,
    SharedRef,
    arg_specs,
    call_on,
    cancel_task_of,
    context,
    current_executor,
    current_node,
    in_task,
    put_value,
    to_value,
    value_of,
    wait_for,
)

T = TypeVar("T")

__all__ = [
    "ActorDiedError",
    "ActorHandle",
    "GetTimeoutError",
    "KWARGS_SUFFIX",
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
    "as_completed",
    "available_resources",
    "cancel",
    "cluster_resources",
    "get",
    "get_actor",
    "kill",
    "init",
    "is_initialized",
    "memory",
    "nodes",
    "put",
    "remote",
    "shared",
    "shutdown",
    "wait",
]


# ---------------------------------------------------------------- the process's node
#: This process's node, executor and cluster (kept under the old name for tools and tests).
_ctx = context
#: The inline threshold new nodes of this process use (set by init).
_INLINE = [100 * 1024]
#: Protocol settings (Config fields) init() was given: every process of the cluster uses them.
_SETTINGS: dict[str, int] = {}


def _node() -> Any:
    return current_node()


def is_initialized() -> bool:
    return context.node is not None and not context.node.stopped.is_set()


def _call_on(peer: str, function: str, *args: Any, timeout: float = 30.0) -> Any:
    """Run a registered function on one named peer and return its value (tools, tests)."""
    return call_on(current_node(), peer, function, *args, timeout=timeout)


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


#: What a cluster address looks like: a head's ZeroMQ endpoint.
_ADDRESS = re.compile(r"(tcp://[^:/\s]+:\d{1,5}|ipc://\S+)")


def _cluster_key(key_file: str | os.PathLike[str] | None, insecure: bool, needed: bool) -> tuple[Any, str]:
    """The cluster key to authenticate with (SEC-002) and its file: ``key_file``, else
    the file ``REFRPC_KEY_FILE`` names; None if neither and it is not ``needed``."""
    import warnings

    from .transport import KEY_FILE_ENV, ClusterKey, KeyFileError

    path = os.fspath(key_file) if key_file is not None else os.environ.get(KEY_FILE_ENV, "")
    if insecure:
        if path:
            raise ValueError("insecure=True and a cluster key exclude each other")
        warnings.warn("authentication is off: anyone who can reach this process's port can join the cluster "
                      "and run code in it (SEC-002)", RuntimeWarning, stacklevel=3)
        return None, ""
    if not path:
        if needed:
            raise RefRPCError(f"joining a cluster needs its key file: init(address=..., key_file=PATH) or "
                              f"{KEY_FILE_ENV}=PATH (the path `refrpc start --head` printed)")
        return None, ""
    try:
        return ClusterKey.load(path), path
    except KeyFileError as exc:
        raise RefRPCError(str(exc)) from None


def _check_head_key(address: str, cluster_key: Any, key_path: str | os.PathLike[str], timeout: float) -> None:
    """Before joining: the server at ``address`` must prove it holds the head key the key
    file names (SEC-040, SEC-041). A server that answers there and fails the CURVE
    handshake is an error naming the address, at once; one that does not answer within
    ``timeout`` is left to the join's own timeout (it may not have started yet)."""
    from .transport import probe_server_key

    if cluster_key.head_public is None:
        raise RefRPCError(f"{os.fspath(key_path) or 'the key file'} names no head key: joining needs the key file "
                          "`refrpc start --head` wrote (it names the head's public key)")
    if not address.startswith("tcp://"):
        return
    try:
        answer = probe_server_key(address, cluster_key.head_public, timeout)
    except ValueError as exc:
        raise RefRPCError(str(exc)) from None
    if answer == "refused":
        raise RefRPCError(f"the server at {address} is not the head that {os.fspath(key_path) or 'the key file'} names: "
                          f"it failed the CURVE handshake for the head key {cluster_key.head_public.decode()} "
                          "(another cluster's head, a head started with another key file or without authentication, "
                          "or someone posing as the head); nothing was sent to it")


def _join(address: str, node_ip: str | None, connect_timeout: float, trace_dir: str | None, cluster_key: Any,
          insecure: bool = False, *, key_path: str = "", own_pair: tuple[bytes, bytes] | None = None,
          register: bool = True) -> None:
    """``init(address=...)``: join a running multi-host cluster through its head.
    ``own_pair``: the key pair to present instead of a new one (the head's own, for
    ``refrpc rotate-key``); ``register`` False: talk to the head without joining as a driver."""
    from .runtime._executor import working_node
    from .runtime._membership import HEAD

    name = f"{'driver' if register else 'tool'}-{socket.gethostname()}-{os.getpid()}"
    if not node_ip:
        from .runtime._membership import address_towards

        node_ip = address_towards(address) if address.startswith("tcp://") else "127.0.0.1"
    config = dataclasses.replace(_config(), unannounced=(HEAD,))  # every member detects the head's death itself (LIV-030)
    own_key = None
    if cluster_key is not None:  # its own key pair: no other member can speak as it (SEC-022)
        from .transport import OwnKey

        _check_head_key(address, cluster_key, key_path, min(connect_timeout, 2.0))
        own_key = OwnKey(cluster_key, name, own_pair)
    node, executor = working_node(name, f"tcp://{node_ip}:0", f"drv{os.getpid()}", config, trace_dir=trace_dir,
                                  cluster_key=cluster_key, insecure=insecure, own_key=own_key)
    context.node, context.driver_executor, context.head = node, executor, HEAD
    node.head_address = address  # views come only from there (SEC-026)
    try:
        node.handle_soon(lambda sid: ev.Connect(sid, HEAD, address)).result()
        try:
            call_on(node, HEAD, "refrpc.runtime._membership:members", timeout=connect_timeout)
        except (GetTimeoutError, OwnerDiedError) as exc:
            raise RefRPCError(f"no RefRPC head answered at {address} within {connect_timeout:g} s "
                              f"(is `refrpc start --head` running there?): {exc}") from None
        if not register:
            return
        view = call_on(node, HEAD, "refrpc.runtime._membership:register_driver", name, node.address,
                       socket.gethostname(), os.getpid(), node.incarnation, timeout=connect_timeout)
    except BaseException:
        context.node, context.driver_executor, context.head = None, None, ""
        executor.stop()
        node.stop()
        raise
    from .runtime._membership import _adds, apply_view

    apply_view(node, view)  # and later views come pushed by the head (CLU-010)
    # Its own host: copies it holds are mapped, not fetched, by workers there (TASK-041).
    node.handle_soon(*_adds([(node.peer_id, node.address, 0, socket.gethostname(), {})])).result()


def init(num_workers: int | None = None, *, address: str | None = None, node_ip: str | None = None,
         inline_threshold: int = 100 * 1024, startup_timeout: float = 60.0,
         max_lineage_bytes: int | None = None, heartbeat_interval_ms: int | None = None,
         miss_limit: int | None = None, trace_dir: str | os.PathLike[str] | None = None,
         connect_timeout: float = 5.0, ignore_reinit_error: bool = False,
         key_file: str | os.PathLike[str] | None = None, insecure: bool = False,
         resources: dict[str, float] | None = None, object_store_memory: int | str | None = None,
         spill_dir: str | os.PathLike[str] | None = None, object_store_high_water: float | None = None) -> None:
    """Start a local cluster of worker processes (one per core) and connect to it.

    With ``address`` (a head started by ``refrpc start --head``), join that
    cluster instead: its registered workers run this program's tasks; the
    workers reach this process at ``node_ip`` (default: this host's address on
    the route to the head).
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
    A head that does not answer within ``connect_timeout`` seconds is an error
    naming the address. Calling ``init`` again while initialized raises, unless
    ``ignore_reinit_error`` (then it does nothing).

    Joining a cluster needs its key file (``key_file``, else the file the
    ``REFRPC_KEY_FILE`` environment variable names): every connection is then
    authenticated with CURVE (SEC-002). ``insecure=True`` joins a cluster
    started with authentication off, with a warning. A local cluster needs
    neither: its sockets are in a directory only this user can enter; given a
    key file, its processes authenticate with it too.

    ``resources`` (e.g. ``{"gpu": 1}``) are what this machine offers besides its
    CPUs, shared among the workers ``init`` starts (the cluster offers that much in
    all); tasks and actors ask for them with ``.options(resources=...)``. Each
    worker offers one CPU slot.

    ``object_store_memory`` is the limit of this host's object stores together (the
    driver's and its workers'), in bytes (an int, or a string such as ``"2GB"`` or
    ``"512MiB"``): the shared memory their stored values may take (OBJ-030, OBJ-065);
    a busy process may use what idle ones do not. By default 30% of the machine's
    memory, never more than 90% of what ``/dev/shm`` holds. Once they hold more than
    ``object_store_high_water`` of it (a fraction, 0.8 by default; 1: only when a
    value does not fit), the stores spill the least recently used values nobody is
    using to files in ``spill_dir`` in the background (by default a directory of the
    cluster's own under the system's temporary directory), and read them back when
    they are used; when nothing more can go, the call that needed room raises
    :class:`ObjectStoreFullError`. A limit that is not a size (or is below 1 MiB), a
    high-water mark outside (0, 1], or a spill directory that cannot be written, is
    refused here, before anything starts. See docs/memory.md.
    """
    if ignore_reinit_error and is_initialized():
        return
    if address is not None and (not isinstance(address, str) or not _ADDRESS.fullmatch(address)):
        raise ValueError(f"a cluster address is tcp://HOST:PORT (or ipc://PATH), not {address!r}")
    settings = _check_settings(max_lineage_bytes=max_lineage_bytes, heartbeat_interval_ms=heartbeat_interval_ms,
                               miss_limit=miss_limit)
    offered = dict(_demand(0, resources or {})[1])
    from .store import parse_bytes

    capacity = None if object_store_memory is None else parse_bytes(object_store_memory)
    if object_store_high_water is not None:
        from .store import parse_high_water

        object_store_high_water = parse_high_water(object_store_high_water)
    if address is not None and (object_store_memory is not None or spill_dir is not None
                                or object_store_high_water is not None):
        raise ValueError("a joining driver keeps no values of its own beyond the inline ones: object_store_memory and "
                         "spill_dir are set where the workers start (refrpc start --object-store-memory, --spill-dir, "
                         "--object-store-high-water)")
    if offered and address is not None:
        raise ValueError("resources are offered by the workers that refrpc start runs (--resources), not by a joining driver")
    _INLINE[0] = inline_threshold
    _SETTINGS.clear()
    _SETTINGS.update(settings)
    from .runtime import LocalCluster
    from .runtime._executor import working_node

    if address is not None:
        with _ctx.lock:
            if is_initialized():
                raise RefRPCError("refrpc is already initialized; call refrpc.shutdown() first")
        cluster_key, key_path = _cluster_key(key_file, insecure, needed=address.startswith("tcp://"))
        _join(address, node_ip, connect_timeout, None if trace_dir is None else os.fspath(trace_dir), cluster_key,
              insecure, key_path=key_path)
        _install_exit_hooks()
        return
    cluster_key, key_path = _cluster_key(key_file, False, needed=False)
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
        from .store import default_capacity, default_spill_directory, prepare_spill_directory, sweep_orphans

        sweep_orphans()  # what clusters killed with SIGKILL left on this host (OBJ-035)

        capacity = capacity or default_capacity()  # one limit for the host's stores (OBJ-065)
        try:
            spill = prepare_spill_directory(spill_dir if spill_dir is not None else default_spill_directory(namespace))
        except ValueError:
            import shutil

            shutil.rmtree(sock_dir, ignore_errors=True)
            raise
        traces = None if trace_dir is None else os.fspath(trace_dir)
        # SEC-001: ipc sockets in a directory only this user can enter (mkdtemp: 0700).
        # The driver is its cluster's head: its executor keeps actor names (never runs the program's tasks).
        node, executor = working_node("driver", f"ipc://{sock_dir}/driver.sock", namespace, _config(), trace_dir=traces,
                                      cluster_key=cluster_key, object_store_memory=capacity, spill_dir=spill,
                                      **({} if object_store_high_water is None else
                                         {"store_high_water": object_store_high_water}))
        cluster = LocalCluster.start(n, node.address, node.incarnation, inline_threshold=_INLINE[0], namespace=namespace,
                                    resources=offered, settings=dict(_SETTINGS), trace_dir=traces, key_file=key_path,
                                    object_store_memory=capacity, spill_dir=spill, own_spill_dir=spill_dir is None,
                                    store_high_water=object_store_high_water)
        end = time.monotonic() + startup_timeout
        for name, address in cluster.workers.items():
            path = address.removeprefix("ipc://")
            while not os.path.exists(path):
                if cluster.processes[name].poll() is not None or time.monotonic() > end:
                    executor.stop()
                    node.stop()
                    cluster.stop()
                    raise RefRPCError(f"worker {name} did not start")
                time.sleep(0.01)
        from .runtime._membership import _adds

        here = socket.gethostname()  # the workers share this host's slots (TASK-040)
        rows = [(name, address, 1, here, cluster.resources[name]) for name, address in cluster.workers.items()]
        # Its own host too: its copies are mapped, not fetched, by these workers (TASK-041).
        node.handle_soon(*_adds(rows + [(node.peer_id, node.address, 0, here, {})])).result()
        cluster.watch(node)
        _ctx.node, _ctx.cluster = node, cluster
        _ctx.driver_executor, _ctx.head = executor, "driver"
        _ctx.sock_dir = sock_dir
    _install_exit_hooks()


#: Whether the exit hooks are installed (once per process).
_EXIT_HOOKS = [False]


def _install_exit_hooks() -> None:
    """A driver that exits, or is stopped by SIGTERM or SIGINT, leaves nothing behind:
    its shared-memory segments, its workers, its socket directory.

    SIGINT already ends a program with ``KeyboardInterrupt`` (so ``atexit`` runs);
    SIGTERM, by default, kills it on the spot, so it is turned into ``SystemExit``
    (exit status 143) when the program has not set a handler of its own.
    """
    if _EXIT_HOOKS[0]:
        return
    _EXIT_HOOKS[0] = True
    import atexit
    import signal
    import threading

    atexit.register(_shutdown_at_exit)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _shutdown_at_exit() -> None:
    # The signal may have landed while this thread held the context's lock: never wait on it for long.
    if not _ctx.lock.acquire(timeout=2.0):
        cluster = _ctx.cluster
        if cluster is not None:
            cluster.stop()
        return
    _ctx.lock.release()
    shutdown()


def shutdown() -> None:
    """Leave cleanly: workers of a local cluster exit and every segment is removed."""
    with _ctx.lock:
        node, cluster, executor = _ctx.node, _ctx.cluster, _ctx.driver_executor
        _ctx.node = _ctx.cluster = _ctx.driver_executor = None
        _ctx.head = ""
        if executor is not None:
            executor.stop()
        if node is not None:
            node.stop()
        if cluster is not None:
            cluster.stop()
            if node is not None:
                cluster.stats["driver"] = dict(node.stats)
            _ctx.last_stats = cluster.stats
        sock_dir, _ctx.sock_dir = _ctx.sock_dir, ""
        if sock_dir:
            import shutil

            shutil.rmtree(sock_dir, ignore_errors=True)


# ---------------------------------------------------------------- refs
def shared(ref: Ref[Any]) -> SharedRef:
    """Pass ``ref`` by sharing: the callee becomes a borrower and may keep it."""
    if not isinstance(ref, Ref):
        raise TypeError(f"shared() takes a Ref, not {type(ref).__name__}")
    return SharedRef(ref)


# ---------------------------------------------------------------- put / get / wait
def put(obj: Any) -> Ref[Any]:
    """Store ``obj`` and return a Ref owned by this process (OWN-001)."""
    node = current_node()
    return put_value(node, to_value(node, obj))


def get(refs: Ref[T] | Sequence[Ref[Any]], *, timeout: float | None = None, progress: bool | str = False) -> Any:
    """The value of a Ref (or a list of values), waiting for it if needed.

    Ctrl-C (``KeyboardInterrupt``) while waiting cancels the tasks of this
    process whose results it was still waiting for, then propagates. With
    ``progress`` (True, or a label), a list shows a progress bar (tqdm, on
    stderr) as its refs become ready.
    """
    node = current_node()
    deadline = None if timeout is None else time.monotonic() + timeout
    if progress and isinstance(refs, (list, tuple)):
        from tqdm import tqdm

        label = progress if isinstance(progress, str) else "refrpc.get"
        with tqdm(total=len(refs), desc=label, unit="ref") as bar:
            for _ in as_completed(refs, timeout=None if deadline is None else max(0.0, deadline - time.monotonic())):
                bar.update(1)
    if isinstance(refs, Ref):
        try:
            return value_of(node, refs, deadline)
        except KeyboardInterrupt:
            _cancel_all(node, [refs])
            raise
    if isinstance(refs, (list, tuple)) and all(isinstance(r, Ref) for r in refs):
        values: list[Any] = []
        try:
            for r in refs:
                values.append(value_of(node, r, deadline))
        except KeyboardInterrupt:
            _cancel_all(node, refs[len(values):])
            raise
        return values
    raise TypeError("get() takes a Ref or a list of Refs")


def as_completed(refs: Sequence[Ref[Any]], *, timeout: float | None = None) -> Iterator[Ref[Any]]:
    """Yield each of ``refs`` as it becomes ready (its value or its error is known).

    Raises:
        GetTimeoutError: ``timeout`` seconds passed before every ref was ready.
    """
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, Ref) for r in refs):
        raise TypeError("as_completed() takes a list of Refs")
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(refs)
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, pending = wait(pending, num_returns=1, timeout=left)
        if not ready:
            raise GetTimeoutError(f"{len(pending)} refs were not ready within the timeout", ErrorCode.UNRECOGNIZED)
        yield from ready


def cancel(ref: Ref[Any], *, force: bool = False, recursive: bool = True) -> bool:
    """Cancel the task that makes ``ref`` (TASK-008): if it has not started it never
    will; if it runs, it is stopped (``TaskCancelledError`` is raised inside it; a
    long call into C, such as one ``time.sleep``, ends first). ``get`` of its results
    raises :class:`TaskCancelledError` at once. Only the process that submitted the
    task can cancel it. Returns whether a task was cancelled (False: it had already
    finished, or ``ref`` is not a result of a task this process submitted).

    With ``recursive`` (the default, as in Ray), stopping a running task also cancels
    the tasks it submitted that have not finished, and theirs in turn; with
    ``recursive=False`` they run on (the worker that ran it still owns them).

    With ``force``, a running task that has not stopped a second after it was told
    to is stopped by killing the worker process that runs it (``kill -9``), also when
    an earlier ``cancel`` without ``force`` left it running (then it returns True); the
    cluster's supervisor starts the worker again, and other tasks that were on it
    are retried as after any worker death. Only the workers this program started
    (``refrpc.init()``) can be killed so: ``force`` on a task of a cluster this
    program joined raises :class:`RefRPCError`, and on an actor method call
    ``ValueError`` (kill the actor with :func:`kill` instead).
    """
    if not isinstance(ref, Ref):
        raise TypeError(f"cancel() takes a Ref, not {type(ref).__name__}")
    if not recursive:
        from .runtime._cancel import keep_children_of

        keep_children_of(current_node(), ref.id)
    if force:
        from .runtime._cancel import cancel_forcibly

        return cancel_forcibly(current_node(), context.cluster, ref.id)
    return _cancel_all(current_node(), [ref]) > 0


def _cancel_all(node: Any, refs: Sequence[Ref[Any]]) -> int:
    """Cancel the tasks of this process that make ``refs`` and are not finished."""
    return sum(cancel_task_of(node, r.id) for r in refs)


def wait(refs: Sequence[Ref[Any]], *, num_returns: int = 1, timeout: float | None = None) -> tuple[list[Ref[Any]], list[Ref[Any]]]:
    """Split ``refs`` into (ready, pending) once ``num_returns`` are ready or the timeout passes.

    ``ready`` holds the first ``num_returns`` ready refs in the order given (fewer
    if the timeout passed), ``pending`` the others, in order. A ref is ready when
    its value or its error is known. A call does Python work only for the refs it
    looks at before it has enough; the rest of the list is only copied (a list of
    pending refs that ``wait`` returned is not checked again), so the classic loop
    ``while refs: ready, refs = wait(refs)`` stays close to linear.
    """
    if type(refs) is not _Pending and (
            not isinstance(refs, (list, tuple)) or not all(issubclass(t, Ref) for t in set(map(type, refs)))):
        raise TypeError("wait() takes a list of Refs")
    if not refs:
        return [], _Pending()
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns must be between 0 and {len(refs)}")
    if num_returns == 0:
        return [], _Pending(refs)
    node = current_node()
    ids = _Ids(refs)
    if node.tracer is not None:
        node.trace_program("wait", objects=list(ids), numReturns=num_returns)  # before the gets it makes
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        ready = _wait_ready(node, ids, num_returns, deadline)
    except AttributeError:  # a non-Ref put into a list wait returned
        raise TypeError("wait() takes a list of Refs") from None
    except KeyboardInterrupt:  # Ctrl-C: cancel what this wait was for (see get)
        _cancel_all(node, refs)
        raise
    chosen = sorted(ready[:num_returns])
    pending = _Pending()
    start = 0
    for i in chosen:  # the others, in order, as slices: no Python work per ref
        pending += refs[start:i]
        start = i + 1
    pending += refs[start:]
    return [refs[i] for i in chosen], pending


class _Pending(list):  # type: ignore[type-arg]
    """The pending refs ``wait`` returns: a plain list, known to hold only Refs."""

    __slots__ = ()


class _Ids:
    """The object ids of ``refs``, read as they are iterated (``wait`` stops early)."""

    __slots__ = ("refs",)

    def __init__(self, refs: Sequence[Ref[Any]]) -> None:
        self.refs = refs

    def __iter__(self) -> Iterator[str]:
        return map(_ref_id, self.refs)


_ref_id = operator.attrgetter("id")


def _wait_ready(node: Any, ids: Any, num_returns: int, deadline: float | None) -> list[int]:
    urgent = in_task()
    while True:
        ready, changed = node.ready_among(ids, num_returns, urgent)
        if changed is None:
            break
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if left == 0.0:
            break
        try:
            wait_for(changed, left)
        except concurrent.futures.TimeoutError:
            ready, _ = node.ready_among(ids, num_returns)
            break
    return ready


# ---------------------------------------------------------------- the memory view
def memory(peers: Sequence[str] | None = None, *, timeout: float = 10.0) -> str:
    """Every live object this process can see, with why it is alive (INT-001), and
    what each process's object store holds.

    Asks this process and ``peers`` (by default every worker this process knows)
    for their ownership tables; each owned object is listed with its owner,
    state, size, where it is stored (each location marked ``disk`` when its holder
    has it spilled) and what keeps it alive: local refs, pending tasks, borrowers,
    containing objects, lineage. Before them, one line per process's object store:
    its limit, the bytes and objects it holds in memory, of those pinned (mapped by
    a reader: they cannot be spilled) and fetched copies (secondary), what it has
    spilled to disk, and how often it spilled and restored (OBJ-030..OBJ-036).
    """
    from .runtime import _status

    node = current_node()
    if peers is None:
        peers = node.call(lambda: list(node.core.workers)).result()
    everyone = [node.peer_id, *[p for p in peers if p != node.peer_id]]
    reports = _status.stores(node, everyone, timeout)
    on_disk = {(peer, row[0]) for peer, report in reports.items() if report for row in report["objects"] if row[3] == "disk"}
    lines = [*_status.store_table(reports), ""]
    lines.append(f"{'object':<44} {'owner':<30} {'state':<9} {'size':>12}  where stored / why alive")
    rows = 0
    for peer in everyone:
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
            where = ",".join(f"{p} (disk)" if (p, e.object_id) in on_disk else p for p in e.locations) or "inline at owner"
            lines.append(f"{e.object_id:<44} {e.owner:<30} {e.state:<9} {e.size:>12,}  {where}; {'; '.join(why) or '-'}")
            rows += 1
    lines.append(f"{rows} live objects")
    return "\n".join(lines)


# ---------------------------------------------------------------- the cluster
def nodes(*, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every process of the cluster, as Ray's ``ray.nodes()`` lists nodes: one dict each.

    Keys: ``id`` (peer id), ``role`` (``driver``, ``worker`` or ``head``),
    ``address``, ``alive``, ``host``, ``pid``, ``incarnation``, ``resources``
    (``{"CPU": slots}`` for a worker: the tasks it runs at once), and what the
    process is doing, as it answered through the protocol (INT-006): ``tasks``
    (the tasks it submitted, counted by state: ``queued``, ``submitted``,
    ``finished``, ...), ``executing`` (the tasks it runs, by state: ``running``,
    ...), ``actors`` (those it hosts) and ``objects`` (owned and borrowed
    counts); these four are None for a process that did not answer within
    ``timeout`` seconds. ``taken`` is what a worker's running tasks and live actors
    take from its ``resources`` now, as its executor counts them (``{}`` for a
    driver or head, None for a worker that did not answer). A worker of a local
    cluster also has ``restarts``: how often the supervisor replaced its process.
    """
    from .runtime import _status

    return _status.nodes(current_node(), context.cluster, timeout)


def cluster_resources(*, timeout: float = 10.0) -> dict[str, float]:
    """The resources of the live workers, summed, as ``ray.cluster_resources()``:
    ``{"CPU": n}``, n the task slots of every live worker."""
    from .runtime import _status

    return _status.cluster_resources(nodes(timeout=timeout))


def available_resources(*, timeout: float = 10.0) -> dict[str, float]:
    """``cluster_resources()`` less what is taken now, as ``ray.available_resources()``:
    each running task's demand (``num_cpus``, ``resources``; a task waiting in a
    ``get`` gives its CPU back) and what each live actor holds for its life. Every
    resource of ``cluster_resources()`` is listed, 0.0 where all of it is taken."""
    from .runtime import _status

    return _status.available_resources(nodes(timeout=timeout))


# ---------------------------------------------------------------- remote functions
def _name_of(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _by_name(obj: Any) -> bool:
    """Whether workers can find ``obj`` by ``module:qualname`` (else it ships by value)."""
    import importlib

    if "<" in obj.__qualname__:  # lambdas, functions defined inside functions
        return False
    module = obj.__module__
    if module == "__main__":
        return False  # a script, a notebook or stdin: workers never run it, so it ships by value
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def _expose(name: str, obj: Any) -> None:
    from .runtime._executor import expose

    expose(name, obj)


class _Route:
    """How a function or class reaches a worker: by its name if workers can import
    it, else by value (cloudpickle) through ``by_value``, stored once per node as an
    object and passed by reference. Decided once per node, not on every call."""

    def __init__(self, obj: Any, by_value: str) -> None:
        self._obj = obj
        self._by_value = by_value
        #: (node, name to call, leading arguments, the stored pickled form if any).
        self._resolved: tuple[Any, str, list[ev.ArgSpec], Ref[Any] | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # It travels by value inside a task that submits tasks; what it stored
        # in this process stays here.
        return {**self.__dict__, "_resolved": None}

    def resolve(self, node: Any) -> tuple[str, list[ev.ArgSpec]]:
        resolved = self._resolved
        if resolved is not None and resolved[0] is node:
            return resolved[1], resolved[2]
        if _by_name(self._obj):
            name, first, stored = _name_of(self._obj), [], None
        else:
            import cloudpickle

            stored = put(cloudpickle.dumps(self._obj))
            name, first = self._by_value, [ev.ArgSpec(object_id=stored.id)]
        self._resolved = (node, name, first, stored)
        return name, first


def _demand(num_cpus: Any, resources: Any) -> tuple[float, tuple[tuple[str, float], ...]]:
    """``num_cpus`` and ``resources`` checked (ValueError/TypeError) and in the core's form."""
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not 0 <= num_cpus < 2**31:
        raise ValueError(f"num_cpus must be a number >= 0, not {num_cpus!r}")
    if not isinstance(resources, dict):
        raise TypeError(f"resources must be a dict of name -> amount, not {type(resources).__name__}")
    out = []
    for name, amount in resources.items():
        if not isinstance(name, str) or not name or name == "CPU":
            raise ValueError(f"a resource name is a non-empty str other than 'CPU' (use num_cpus), not {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 2**31:
            raise ValueError(f"resource {name!r} must be a number >= 0, not {amount!r}")
        out.append((name, float(amount)))
    return float(num_cpus), tuple(sorted(out))


class RemoteFunction:
    """A function made callable remotely by ``@refrpc.remote``.

    Functions workers can import travel by name; others (defined in a script, a
    notebook cell or on stdin, lambdas, local functions) travel by value with
    cloudpickle, stored once per process as an object and passed by reference;
    each worker unpickles a function once.
    """

    def __init__(self, fn: Callable[..., Any], num_returns: int = 1, max_retries: int = 3, retry_exceptions: bool = False,
                 num_cpus: float = 1, resources: dict[str, float] | None = None, name: str | None = None) -> None:
        self._demand = _demand(num_cpus, resources or {})
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"a task's name is a non-empty str, not {name!r}")
        #: The name the program gave its tasks (``options(name=)``), shown in their errors.
        self._task_name = name
        self._refrpc_target = fn
        self._name = _name_of(fn)
        self._route = _Route(fn, "refrpc.runtime._executor:call_by_value")
        _expose(self._name, fn)  # SEC-006: callable by name here, from any session
        self._num_returns = num_returns
        self._max_retries = max_retries
        self._retry_exceptions = retry_exceptions
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function {self._name} is called with .remote(...)")

    def _target(self, node: Any) -> tuple[str, list[ev.ArgSpec]]:
        """The function name to call, and arguments to put before the user's."""
        return self._route.resolve(node)

    def options(self, *, num_returns: int | None = None, max_retries: int | None = None, retry_exceptions: bool | None = None,
                num_cpus: float | None = None, resources: dict[str, float] | None = None,
                name: str | None = None) -> RemoteFunction:
        """A copy with other options (those not given stay as they are).

        ``num_cpus`` is how many CPU slots of a host the task takes while it runs
        (default 1; 0 takes none, so it never waits for a slot): the workers of one
        host pool their slots, so ``num_cpus=2`` runs on a host of two or more
        workers and keeps the others idle meanwhile; ``resources`` the
        named resources it takes (``{"gpu": 1}``), which only workers started with
        them offer (``refrpc start --resources``). A task waits in this process until
        a worker has room for it; one that no live worker could ever hold fails with
        ``RESOURCE_EXHAUSTED`` at once.

        ``name`` names the tasks (as Ray's task names): the errors ``get`` raises for
        their results begin with it (``task 'load-shard-3': ...``).
        """
        return RemoteFunction(
            self._refrpc_target,
            self._num_returns if num_returns is None else num_returns,
            self._max_retries if max_retries is None else max_retries,
            self._retry_exceptions if retry_exceptions is None else retry_exceptions,
            self._demand[0] if num_cpus is None else num_cpus,
            dict(self._demand[1]) if resources is None else resources,
            self._task_name if name is None else name,
        )

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        node = current_node()
        name, first = self._target(node)
        # TASK-020 judges each function by its own tasks: code shipped by value is named
        # by its stored object, code called with keywords by its own name.
        speed = first[0].object_id if first else (self._name if kwargs else "")
        if kwargs:
            name, args = pack_kwargs(name, args, kwargs)
        specs, keep = arg_specs(node, args) if args else ([], [])
        if first:
            specs = first + specs
        n = self._num_returns
        task_id, rids = node.new_task_ids(n)
        # On this thread: the core decides and the SubmitTask leaves before this returns.
        cpus, named = self._demand
        node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, name, tuple(specs), rids, self._max_retries,
                                                       self._retry_exceptions, num_cpus=cpus, resources=named,
                                                       speed_key=speed))
        del keep  # the submitted task holds them now (BOR-006)
        executor = current_executor()
        if executor is not None and hasattr(executor, "note_child"):
            executor.note_child(task_id)  # a stop of the task on this thread cancels it (cancel)
        if self._task_name is None:
            refs = [Ref(node, rid, counted=True) for rid in rids]
        else:
            refs = [NamedRef(node, rid, self._task_name) for rid in rids]
        return refs[0] if n == 1 else refs


#: Calls an actor with ``async def`` methods may run at once unless told otherwise (as Ray).
ASYNC_MAX_CONCURRENCY = 1000


class ActorClass:
    """A class made into an actor factory by ``@refrpc.remote``.

    ``max_concurrency`` is how many of the actor's calls may run at once (ACT-013):
    1 by default, so calls run one at a time in order; for a class with
    ``async def`` methods, 1000, and its calls run on the actor's event loop
    (concurrently while they await). A synchronous actor with more than 1 runs
    its calls on that many threads.
    """

    def __init__(self, cls: type, max_restarts: int = 0, max_concurrency: int | None = None, name: str | None = None,
                 lifetime: str | None = None, num_cpus: float = 0, resources: dict[str, float] | None = None) -> None:
        from .runtime._actor_runner import is_async_class

        self._demand = _demand(num_cpus, resources or {})
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"an actor's name is a non-empty str, not {name!r}")
        if lifetime not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime is 'detached' or None, not {lifetime!r}")
        if lifetime == "detached" and name is None:
            raise ValueError("a detached actor needs a name (get it back with refrpc.get_actor)")
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                            or not 1 <= max_concurrency <= 2**31):
            raise ValueError(f"max_concurrency must be an int from 1 to 2**31, not {max_concurrency!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or not 0 <= max_restarts < 2**32:
            raise ValueError(f"max_restarts must be an int >= 0, not {max_restarts!r}")
        self._refrpc_target = cls
        self._cls = cls
        self._name = _name_of(cls)
        self._max_restarts = max_restarts
        _expose(self._name, cls)
        self._given_concurrency = max_concurrency
        self._max_concurrency = max_concurrency or (ASYNC_MAX_CONCURRENCY if is_async_class(cls) else 1)
        #: The actor's name in its cluster (ACT-022), if named.
        self._actor_name = name
        self._detached = lifetime == "detached"
        self._route = _Route(cls, "refrpc.runtime._executor:construct_by_value")

    def _target(self, node: Any) -> tuple[str, list[ev.ArgSpec]]:
        """The class name to construct, and arguments to put before the user's."""
        return self._route.resolve(node)

    def options(self, *, max_restarts: int | None = None, max_concurrency: int | None = None,
                name: str | None = None, lifetime: str | None = None, num_cpus: float | None = None,
                resources: dict[str, float] | None = None) -> ActorClass:
        """A copy with other options (those not given stay as they are).

        ``name`` names the actor in its cluster: :func:`get_actor` finds it from any
        driver or task, and the actor lives while it is named (until it is killed or
        its owner dies), even with no handle left; a second live actor of the same
        name is a ``ValueError``. ``lifetime="detached"`` (with a name) makes the
        cluster's head the actor's owner, so it outlives the program that made it.
        ``num_cpus`` (default 0) and ``resources`` are what the actor takes from its
        worker for its whole life: it goes to a worker with room for them, and the
        worker holds them until the actor is gone, whoever else places work there:
        tasks and actors asking for the same wait (its constructor waits too if
        another driver's work holds them), and one asking for a resource the worker
        does not offer makes the actor die with ``RESOURCE_EXHAUSTED``.
        """
        return ActorClass(self._cls, self._max_restarts if max_restarts is None else max_restarts,
                          self._given_concurrency if max_concurrency is None else max_concurrency,
                          self._actor_name if name is None else name,
                          ("detached" if self._detached else None) if lifetime is None else lifetime,
                          self._demand[0] if num_cpus is None else num_cpus,
                          dict(self._demand[1]) if resources is None else resources)

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        from .runtime._names import head_of_cluster

        node = current_node()
        if self._detached:
            # Created by the head, which owns it (ACT-022); named there.
            plain = ActorClass(self._cls, self._max_restarts, self._given_concurrency, self._actor_name,
                               num_cpus=self._demand[0], resources=dict(self._demand[1]))
            handle: ActorHandle = call_on(node, head_of_cluster(), "refrpc.runtime._names:create_detached", plain,
                                          self._actor_name, args, kwargs)
            return handle
        handle = self._create(node, args, kwargs)
        if self._actor_name is not None:
            try:
                call_on(node, head_of_cluster(), "refrpc.runtime._names:register", self._actor_name, handle)
            except ValueError as exc:
                handle.kill()
                raise ValueError(f"an actor named {self._actor_name!r} exists already") from exc
        return handle

    def _create(self, node: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ActorHandle:
        name, first = self._target(node)
        name, args = pack_kwargs(name, args, kwargs)
        specs, keep = arg_specs(node, args)
        specs = first + specs

        def do() -> tuple[str, str, str]:
            aid = node.new_id()
            node.handle(ev.CreateActorRequest(node.sid(), aid, name, tuple(specs), "", self._max_restarts,
                                              self._max_concurrency, *self._demand))
            host = node.core.owned_actors[aid].host
            address = node.core._address_of(host)
            # ACT-019: the handle object, same id as the actor; every handle holds a ref to it.
            value = descriptor_value(aid, node.peer_id, host, address, self._cls.__qualname__)
            node.handle(ev.Put(node.sid(), aid, value))
            return aid, host, address

        from .core.errors import LocalUsageError

        try:
            aid, host, address = node.call(do).result()
        except LocalUsageError as exc:  # e.g. no live worker to host it: the program's error, typed
            raise RefRPCError(f"cannot create actor {self._cls.__qualname__}: {exc}", exc.code) from None
        del keep
        ref: Ref[Any] = Ref(node, aid, counted=True)
        return ActorHandle(aid, self._cls.__qualname__, methods_of(self._cls), host, address, ref, self._actor_name or "")


def get_actor(name: str) -> ActorHandle:
    """The handle of the live actor named ``name`` in this cluster (ACT-022), from any
    driver or task.

    Raises:
        ValueError: No live actor has that name.
    """
    from .runtime._names import head_of_cluster

    if not isinstance(name, str) or not name:
        raise ValueError(f"an actor's name is a non-empty str, not {name!r}")
    node = current_node()
    handle = call_on(node, head_of_cluster(), "refrpc.runtime._names:lookup", name)
    if handle is None:
        raise ValueError(f"no live actor named {name!r}")
    return handle  # type: ignore[no-any-return]


def kill(actor: ActorHandle) -> None:
    """Stop an actor (ACT-006): calls not yet run fail with :class:`ActorDiedError`."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() takes an actor handle, not {type(actor).__name__}")
    actor.kill()


def remote(obj: Any = None, **options: Any) -> Any:
    """Decorate a function (task) or a class (actor); ``@remote(num_returns=2)`` takes options."""
    if obj is None:
        return lambda o: remote(o, **options)
    if isinstance(obj, type):
        return ActorClass(obj, **options)
    if callable(obj):
        return RemoteFunction(obj, **options)
    raise TypeError("@remote decorates a function or a class")
