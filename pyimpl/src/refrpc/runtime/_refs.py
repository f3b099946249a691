"""Refs and the process's current node: the floor beneath the API and the runtime.

The public API (``refrpc.api``) and the runtime's executor both make :class:`Ref`
handles, read values and need "the node of this process"; they find all of it
here, so the API is a façade that only imports downward and nothing imports it.

The current node is process-wide (set by ``init`` in a driver, by the worker's
main in a worker) and may be overridden per thread (:func:`use_node`), as an
executor does for its task threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from ..core import events as ev
from ..core.messages import ErrorCode, RefDescriptor, Value
from ..errors import GetTimeoutError, OwnerDiedError, RefRPCError, raise_for
from ..serialization import deserialize, serialize
from ..store import ObjectNotFound

if TYPE_CHECKING:
    from ._node import Node

T = TypeVar("T")
#: Appended to a function name when the last argument holds keyword arguments.
KWARGS_SUFFIX = "+kwargs"


class ProcessContext:
    """What this process runs: its node, and in a worker its executor; in a
    driver of a local cluster also the cluster it started."""

    def __init__(self) -> None:
        #: This process's node, or None before init / after shutdown.
        self.node: Any = None
        #: The executor of a worker process (None in a driver).
        self.executor: Any = None
        #: The local cluster a driver started (None when it joined one).
        self.cluster: Any = None
        #: The peer id of this process's cluster head (keeper of actor names), if any.
        self.head: str = ""
        #: A driver's own executor: runs what other processes ask of it (actor names,
        #: whether an actor it owns is alive), never the program's tasks.
        self.driver_executor: Any = None
        #: Serializes init and shutdown (never taken by finalizers).
        self.lock = threading.Lock()
        #: Per-thread overrides (an executor's task threads).
        self.local = threading.local()
        #: A driver's directory of ipc sockets (removed by shutdown).
        self.sock_dir: str = ""
        #: Traffic counters of the last local cluster, per process, kept by shutdown.
        self.last_stats: dict[str, Any] = {}


#: The one context of this process.
context = ProcessContext()


def use_node(node: Any, executor: Any = None) -> None:
    """Make ``node`` (and ``executor``) current for the calling thread."""
    context.local.node = node
    context.local.executor = executor


def current_executor() -> Any:
    """The executor whose task runs on this thread, else the process's, else None."""
    return getattr(context.local, "executor", None) or context.executor


def current_node() -> Node:
    """The node of this thread or process; raises RefRPCError if there is none."""
    node = getattr(context.local, "node", None) or context.node
    if node is None or node.stopped.is_set():
        raise RefRPCError("refrpc is not initialized in this process: call refrpc.init()")
    return node  # type: ignore[no-any-return]


# ---------------------------------------------------------------- handles
class Ref(Generic[T]):
    """A reference to a possibly remote, possibly not yet computed value.

    Each live ``Ref`` is one local ref the node's core counts (OWN-003); when it
    dies its release is queued (:meth:`Node.release`) and never blocks.
    """

    __slots__ = ("id", "_node", "__weakref__")

    def __init__(self, node: Any, object_id: str, *, counted: bool) -> None:
        self.id = object_id
        self._node = node
        if not counted:  # OWN-003: the core counts every handle
            with node.lock:
                if not node.stopped.is_set():
                    node.handle(ev.AddRef(node.sid(), object_id))
        node.born(object_id)  # counted among this process's handles, without the lock

    def __del__(self) -> None:
        node = self._node
        if node is not None:
            node.release(self.id)  # a deque append: safe in any thread, under any lock

    def __repr__(self) -> str:
        return f"Ref({self.id})"

    def __reduce__(self) -> Any:
        raise TypeError("a Ref travels inside a RefRPC call or put, not through plain pickle")

    def future(self) -> concurrent.futures.Future[T]:
        """A concurrent.futures.Future of the value; cancelling it cancels the task
        that makes the value (if this process submitted it and it is not done)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        node = self._node
        object_id = self.id

        def fetch() -> None:
            try:
                value = value_of(node, self, None)
            except BaseException as exc:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(exc)
                return
            if fut.set_running_or_notify_cancel():  # False: cancelled meanwhile, nobody wants it
                fut.set_result(value)

        def cancelled(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                cancel_task_of(node, object_id)

        fut.add_done_callback(cancelled)
        threading.Thread(target=fetch, daemon=True).start()
        return fut

    def __await__(self) -> Any:
        return asyncio.wrap_future(self.future()).__await__()


class NamedRef(Ref[T]):
    """A result of a task the program named (``f.options(name=...)``): the errors
    raised for it begin with that name. A copy of the ref made elsewhere (a
    borrower's, one that came back inside a value) is a plain :class:`Ref`."""

    __slots__ = ("task_name",)

    def __init__(self, node: Any, object_id: str, task_name: str) -> None:
        super().__init__(node, object_id, counted=True)
        self.task_name = task_name


@dataclass(frozen=True)
class ByRef:
    """A Ref passed as a keyword argument, to be dereferenced for the callee."""

    ref: Ref[Any]


@dataclass(frozen=True)
class SharedRef:
    """Wraps a Ref so that the callee receives the Ref itself, not its value."""

    ref: Ref[Any]


def cancel_task_of(node: Any, object_id: str) -> bool:
    """Cancel the task of this process that makes ``object_id``, if it is not finished (TASK-008)."""

    def do() -> bool:
        entry = node.core.owned.get(object_id)
        task = node.core.tasks.get(entry.task_id) if entry is not None and entry.task_id else None
        if task is None or task.state not in ("submitted", "queued") or entry.state != "pending":
            return False
        node.handle(ev.Cancel(node.sid(), entry.task_id))
        return True

    try:
        return bool(node.call(do).result())
    except RuntimeError:  # the node stopped: nothing left to cancel
        return False


# ---------------------------------------------------------------- values
def ref_hook(obj: object) -> RefDescriptor | None:
    """The serializer's hook: a ref found inside a value is recorded by its object
    id only; :func:`complete` asks the core for the full descriptors, once per value."""
    if isinstance(obj, Ref):
        return RefDescriptor(obj.id, "", 0, "")
    if isinstance(obj, SharedRef):
        return RefDescriptor(obj.ref.id, "", 0, "")
    return None


def complete(node: Node, value: Value) -> Value:
    """``value`` with its nested refs' descriptors filled in by the core (REF-*).

    Raises:
        LocalUsageError: The value contains a ref this peer does not hold.
    """
    if not value.nested:
        return value
    with node.lock:
        descriptor = node.core.descriptor
        nested = tuple(descriptor(d.object_id) for d in value.nested)
    return replace(value, nested=nested)


def to_value(node: Node, obj: Any, **options: Any) -> Value:
    """``obj`` serialized for ``node``, nested refs described (one pickling)."""
    return complete(node, serialize(obj, ref_hook=ref_hook, **options))


def put_value(node: Node, value: Value) -> Ref[Any]:
    """Store an already serialized value as a new object owned here (OWN-001)."""
    oid = node.new_id()
    stored = value.size > node.config.inline_threshold
    # Large values are written to shared memory here, on the caller's thread, so
    # nothing else waits for a big copy. Handles that died first release their
    # objects first: the store reuses their memory for this one.
    if stored and node.released:
        node.call(lambda: None)
    size = node.store.put(oid, value) if stored else value.size
    entry = value if not stored else Value(value.encoding, b"", (), value.nested)
    node.submit_nowait((oid,), lambda sid: ev.Put(sid, oid, entry, stored, size),
                       undo=(lambda: node.store.free(oid)) if stored else None)
    return Ref(node, oid, counted=True)


def load(node: Node, container: str, value: Value) -> Any:
    """Deserialize a value; its nested refs become counted handles (BOR-008): one
    handle per entry of ``value.nested``, which the core counts once, however many
    places of the value name that entry (``[x, x]`` gives the same handle twice)."""
    counted = bool(value.nested and container)
    if counted:
        node.call(lambda: node.handle(ev.Materialize(node.sid(), container, value.nested))).result()
    handles: dict[int, Ref[Any]] = {}

    def handle_of(d: RefDescriptor) -> Ref[Any]:
        ref = handles.get(id(d))
        if ref is None:
            ref = handles[id(d)] = Ref(node, d.object_id, counted=counted)
        return ref

    return deserialize(value, ref_factory=handle_of)


def _exception_of(value: Value | None) -> BaseException | None:
    """The exception a failed task sent with its error (TASK-018), if it loads here."""
    if value is None or value.nested:
        return None
    try:
        exc = deserialize(value, ref_factory=lambda d: None)
    except Exception:
        return None  # e.g. its class cannot be imported here: the error alone says it
    return exc if isinstance(exc, Exception) else None


def in_task() -> bool:
    """Whether the caller is a task running on this process's executor: its waits
    are urgent (``ev.Get.urgent``), since it may hold a slot while it waits."""
    executor = current_executor()
    return executor is not None and executor.on_thread()


def wait_for(fut: concurrent.futures.Future[Any], timeout: float | None) -> Any:
    """``fut.result(timeout)``; inside a task, the task lends its worker's turn
    while it waits (queued tasks run meanwhile), so waiting for a task queued
    behind it on the same worker cannot deadlock."""
    if fut.done():
        return fut.result()
    executor = current_executor()
    if executor is not None and executor.on_thread():
        return executor.help_until(fut, timeout)
    return fut.result(timeout)


def _stopped(node: Node) -> NoReturn:
    """A get on a node that stopped meanwhile: a typed error. Declared dead by the
    cluster (LIV-005), this process is an owner that died for everyone else: its
    objects failed with it (FATE-001)."""
    if node.failure:
        raise OwnerDiedError(f"this process ({node.peer_id}) stopped: {node.failure.strip().splitlines()[-1]}",
                             ErrorCode.UNRECOGNIZED)
    raise RefRPCError(f"this process ({node.peer_id}) left the cluster (refrpc.shutdown)", ErrorCode.UNRECOGNIZED)


def value_of(node: Node, ref: Ref[Any], deadline: float | None) -> Any:
    """The value of ``ref``, waiting until ``deadline`` (monotonic seconds) at most."""
    delay = 0.05
    refused = node.refused.get(ref.id)
    if refused is not None:
        raise refused
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            res: ev.GetResult = wait_for(node.get_result(ref.id, in_task()), timeout)
        except concurrent.futures.TimeoutError:
            raise GetTimeoutError(f"{ref.id} was not ready within the timeout", ErrorCode.UNRECOGNIZED) from None
        except RuntimeError:
            if not node.stopped.is_set():
                raise
            _stopped(node)
        if res.error is not None:
            raise_for(res.error, _exception_of(res.value), getattr(ref, "task_name", ""))
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
        return load(node, ref.id, value)


def arg_specs(node: Node, args: Any) -> tuple[list[ev.ArgSpec], list[Ref[Any]]]:
    """The protocol arguments of a call: refs by reference (SharedRef: shared),
    small values inline, large values put first and passed by reference
    (TASK-004). Each value is pickled once. Also returns the refs made for large
    values, which the caller keeps until its Submit is handled (BOR-006)."""
    specs: list[ev.ArgSpec] = []
    keep: list[Ref[Any]] = []
    threshold = node.config.inline_threshold
    for a in args:
        if isinstance(a, SharedRef):
            specs.append(ev.ArgSpec(object_id=a.ref.id, shared=True))
        elif isinstance(a, Ref):
            specs.append(ev.ArgSpec(object_id=a.id))
        else:
            value = to_value(node, a)
            if value.size > threshold:
                r = put_value(node, value)  # large values travel by reference, not inside the message
                keep.append(r)
                specs.append(ev.ArgSpec(object_id=r.id))
            else:
                specs.append(ev.ArgSpec(value=value))
    return specs, keep


def _check_name(function: object) -> None:
    """A function travels by its registered name: anything else could not be encoded,
    and a sequenced message that is never sent would stall the whole session."""
    if not isinstance(function, str) or ":" not in function:
        raise TypeError(f"a function to run on a named peer is given by its 'module:name', not {function!r}")


def submit_to(node: Node, peer: str, function: str, *args: Any) -> Ref[Any]:
    """Run a registered function on one named peer without waiting: the ref of its
    result. It takes no CPU slot there (``num_cpus=0``), so it never waits behind
    the peer's tasks (runtime use: the head's membership pushes)."""
    _check_name(function)
    specs, keep = arg_specs(node, args)

    def submit() -> str:
        task_id, rids = node.new_task_ids(1)
        node.handle(ev.Submit(node.sid(), task_id, function, tuple(specs), rids, 0, False, "", peer, num_cpus=0.0))
        return rids[0]

    ref: Ref[Any] = Ref(node, node.call(submit).result(), counted=True)
    del keep
    return ref


def call_on(node: Node, peer: str, function: str, *args: Any, timeout: float = 30.0) -> Any:
    """Run a registered function on one named peer and return its value (runtime use:
    joining a cluster, registering with the head, status and tracing tools). Like
    :func:`submit_to` it takes no CPU slot there: an actor that holds the peer's CPU
    for its life (ACT-027), or a long task, never keeps these calls waiting."""
    return value_of(node, submit_to(node, peer, function, *args), time.monotonic() + timeout)
