"""A RefRPC peer process: the I/O shell around one sans-IO core.

The core, the transport's sending side and the store's bookkeeping are guarded
by one lock, :attr:`Node.lock`. Whichever thread has something to tell the
core takes the lock and does it itself: the program's thread submits a task,
encodes the ``SubmitTask`` and hands it to ZeroMQ; a task thread reports its
result and sends the ``TaskReply``. The loop thread only sleeps in a poll on the
ROUTER, reads what arrives, and ticks the core's clock. So a task crosses one
thread boundary per direction: the executor's queue on the way in, the waiting
caller's future on the way back (docs/architecture.md draws it).

Nothing may block while holding the lock. Finalizers never take it:
``Ref.__del__`` only appends to :attr:`Node.released`, which whoever next holds
the lock turns into ``DropRef`` stimuli.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import hmac
import itertools
import os
import secrets
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Sequence

from .. import codec
from ..core import Config, IdAllocator, Peer
from ..core import events as ev
from ..core.errors import LocalUsageError
from ..core.messages import Encoding, ErrorCode, ErrorInfo
from ..errors import RefRPCError
from ..store import DEFAULT_HIGH_WATER, ObjectStore, SharedMemoryStore
from ..transport import FaultRule, FaultyTransport, ZmqTransport, faults_from_env
from ._tracing import TraceRecorder, trace_dir_from

#: How often the core's clock ticks (heartbeats, retransmission, failure detection).
TICK_MS = 20
#: How long a leaving node waits for its Goodbyes to leave (LIV-010).
GOODBYE_LINGER_S = 0.5
#: How often the loop hands memory the process has freed back to the operating
#: system, in seconds. glibc keeps freed memory in its heap and per-thread arenas, so
#: a long-running peer that served many short-lived peers (or a fuzzer) otherwise
#: keeps the high-water mark of everything it ever allocated: 1,000,000 fuzzed frames
#: left a head at 323 MB, of which malloc_trim handed a third back at once.
HEAP_TRIM_S = 30.0


def heap_trimmer() -> Callable[[], object] | None:
    """``malloc_trim(0)`` of the C library this process runs on, or None without one (not glibc)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


#: The most malloc arenas a head or worker process keeps (glibc's ``M_ARENA_MAX``).
#: glibc gives each thread that allocates under contention an arena of its own, up to
#: eight per core, and memory freed into one arena serves only that arena: a node
#: whose threads come and go (executor threads, ZeroMQ's I/O thread, stopped tasks
#: that run on) keeps every arena's high-water mark. Two arenas keep the contention
#: of the loop and one executor thread apart while bounding that retention.
ARENA_MAX = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(most: int = ARENA_MAX) -> bool:
    """Cap this process's malloc arenas at ``most`` (call it before threads start),
    unless the user chose with ``MALLOC_ARENA_MAX``; False where the C library is not
    glibc or the setting was left to the user. Only for processes RefRPC starts
    (heads and workers), never a driver: it changes the whole process's allocator."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_ARENA_MAX, most) == 1


#: Features a Python runtime offers (HS-004).
FEATURES = ("core", "borrowing", "recovery", "actors", "python-pickle", "lz4")


def default_config(**changes: Any) -> Config:
    """The runtime's protocol configuration: the spec's defaults, every feature."""
    return Config(features=FEATURES, **changes)


class Node:
    """One peer: a core, a transport, a store and the loop that joins them.

    Args:
        peer_id: This peer's name (ID-001).
        bind: ZeroMQ endpoint for the ROUTER (ZMQ-001).
        namespace: Shared-memory namespace of the local cluster (store segments).
        config: Protocol tunables; the spec's defaults if omitted.
        on_instruction: Extra handler for instructions the node itself does not
            carry out (RunTask, StartActor...), called holding :attr:`lock`, on
            whichever thread fed the core; it must not block.
        incarnation: This incarnation's number (ID-002); random if omitted.
        trace_dir: Record this peer's trace in the canonical format (TRC-001) as
            a file in this directory; None: the ``REFRPC_TRACE_DIR`` environment
            variable's directory, if set; ``""``: no trace.
        transport: What to send and receive through instead of a ZeroMQ
            transport bound at ``bind`` (e.g. a :class:`~refrpc.transport.MemoryTransport`,
            to run a real node without sockets); the node closes it.
        store: The object store instead of a :class:`SharedMemoryStore` in ``namespace``.
        object_store_memory: The limit of the :class:`SharedMemoryStore` in bytes
            (OBJ-030), shared with every store of ``namespace`` on this host (OBJ-065);
            None: no limit.
        store_high_water: The fraction of that limit past which the host's stores
            start spilling in the background (OBJ-066); None or 1: only when a value
            does not fit.
        spill_dir: Where that store spills objects past its limit (OBJ-031); None:
            it does not spill (a value that does not fit fails, OBJ-036).
        clock: Monotonic seconds (the core's Ticks and the loop's timers read it).
        cluster_key: The cluster's :class:`~refrpc.transport.ClusterKey`: every
            connection is authenticated with CURVE, and a message is accepted only
            from the PeerId whose member key its connection authenticated with
            (SEC-002, SEC-011, SEC-016); None: no authentication (a local
            cluster's ipc sockets, or a cluster started with authentication off).
        own_key: This process's :class:`~refrpc.transport.OwnKey` (a member of a
            cluster with a head): its connections present that key and its join
            proof, its ROUTER serves with it, a connection completes only with the
            server key bound to the PeerId it is for, and a message is accepted only
            from the key bound to its sender's PeerId (SEC-022..SEC-024, SEC-040);
            the head's PeerId is bound from the start to the head key the cluster
            key names (SEC-041). None: derived member keys (SEC-016).
        admits_joiners: This node is the head: it binds the PeerId of a peer it has
            no binding for to the key of a connection that carries a valid join
            proof (SEC-023).
        insecure: Authentication is off on purpose (``--insecure``). Without a
            cluster key, a node bound on tcp offers ``python-pickle`` only if this
            is set (SEC-004, SEC-005): with it, anyone who reaches the port could
            make the node unpickle their bytes.
    """

    def __init__(
        self,
        peer_id: str,
        bind: str,
        namespace: str,
        config: Config | None = None,
        on_instruction: Callable[[ev.Instruction], None] | None = None,
        incarnation: int | None = None,
        trace_dir: str | os.PathLike[str] | None = None,
        *,
        transport: Any = None,
        store: ObjectStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        cluster_key: Any = None,
        object_store_memory: int | None = None,
        spill_dir: str | None = None,
        store_high_water: float | None = DEFAULT_HIGH_WATER,
        insecure: bool = False,
        own_key: Any = None,
        admits_joiners: bool = False,
    ) -> None:
        env_faults = faults_from_env(peer_id)  # REFRPC_FAULTS (a bad value raises before anything opens)
        self.peer_id = peer_id
        # ID-002: random, nonzero; chosen by whoever starts the process when given (a
        # local cluster does, so that its supervisor can name the incarnation that died).
        self.incarnation = incarnation or (secrets.randbits(63) | 1)
        self.config = config or default_config()
        if (cluster_key is None and transport is None and bind.startswith("tcp://") and not insecure
                and "python-pickle" in self.config.features):
            # SEC-004, SEC-005: on tcp, pickle only between authenticated members, or
            # where whoever started the peer turned authentication off on purpose.
            self.config = dataclasses.replace(
                self.config, features=tuple(f for f in self.config.features if f != "python-pickle"))
        self.clock = clock
        #: Guards the core, the transport's sending side and everything below that
        #: the loop thread also touches. Reentrant: an instruction handler may feed
        #: the core again. Never held across a blocking wait.
        self.lock = threading.RLock()
        #: Object ids of Ref handles that died (``Ref.__del__`` appends, any thread,
        #: without a lock); turned into DropRef stimuli by whoever next holds the lock.
        self.released: collections.deque[str] = collections.deque()
        #: Object ids of Ref handles made (``Ref.__init__`` appends, without a lock);
        #: counted into ``handles`` by whoever next holds the lock, before any release.
        self._born: collections.deque[str] = collections.deque()
        #: Ref handles alive in this process per object id (to unmap a copy when the last one dies).
        self.handles: dict[str, int] = {}
        #: The transport the sockets live in (a ZeroMQ one unless given).
        #: The cluster key when connections are authenticated (SEC-011), else None.
        self.cluster_key = cluster_key
        #: This process's own key (a cluster with a head, SEC-022), or None.
        self.own_key = own_key if cluster_key is not None else None
        #: Whether this node binds joiners' keys (the head, SEC-023).
        self.admits_joiners = admits_joiners
        #: PeerId -> the z85 public key bound to it (SEC-023, SEC-024): on the head,
        #: those it bound; on a member, those the head's views gave (CLU-050).
        self.keys: dict[str, str] = {}
        if self.own_key is not None:
            if admits_joiners:  # the head's own PeerId speaks only with its own key
                self.keys[peer_id] = self.own_key.public.decode()
            elif cluster_key.head_public is None:
                raise ValueError("joining a cluster with a head needs the head's public key: the key file "
                                 "`refrpc start --head` wrote names it ('head'); this one does not")
            else:  # SEC-041: the head is known before anything is heard from it
                self.keys["head"] = cluster_key.head_public.decode()
        #: Address -> the server key last named to the transport for it (SEC-040).
        self._expected: dict[str, str | None] = {}
        self.wire = transport if transport is not None else ZmqTransport(
            bind, max_frame_bytes=self.config.max_frame_bytes, identity=f"{peer_id}/{self.incarnation:x}",
            cluster_key=cluster_key, peer_id=peer_id, own_key=self.own_key)
        #: What the loop sends and receives through: ``wire``, or the fault
        #: injector around it while fault rules are set (see set_faults).
        self.transport: ZmqTransport | FaultyTransport = self.wire
        #: The fault injector, once rules were set (kept, with its log, after they are cleared).
        self.faults: FaultyTransport | None = None
        self.address = self.wire.address
        self.core = Peer(peer_id, self.incarnation, self.address, self.config)
        directory = trace_dir_from(trace_dir)
        #: Records this peer's trace (trace-format.md), or None: tracing is off.
        self.tracer: TraceRecorder | None = TraceRecorder(directory, peer_id, self.incarnation) if directory else None
        self.core.trace_events = self.tracer is not None
        self.ids = IdAllocator(peer_id, self.incarnation)
        #: (object id, spilled) for each spill, restore or free of a spilled copy the store
        #: made (any thread, no lock); fed to the core as CopySpilled by the next handle (INT-020).
        self.spill_events: collections.deque[tuple[str, bool]] = collections.deque()
        self.store = store if store is not None else SharedMemoryStore(
            namespace, writer=peer_id, capacity=object_store_memory, spill_directory=spill_dir, share_limit=True,
            high_water=store_high_water)
        self.on_instruction = on_instruction
        #: On the head of a multi-host cluster: registered workers (see _membership).
        self.members: dict[str, tuple[str, int, str, float]] = {}
        self.drivers: dict[str, tuple[str, int, str, float]] = {}
        #: On a member: the version of the last membership view applied (CLU-011).
        self.view_version = 0
        #: The last views applied here, as (version, workers listed, deaths listed):
        #: a push carries only what changed since the member's last answer (CLU-071).
        self.views_applied: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=16)
        #: On a member: the head's address it joined through (SEC-026), or "".
        self.head_address = ""
        from ._fetch import FetchService

        #: The data plane: fetching from and serving to peers on other hosts.
        self.fetcher = FetchService(self)
        #: Stored copies this node fetched -> the peers whose FetchChunks brought their
        #: bytes; what decides whether their stored forms may be read here (OBJ-067).
        self.fetched_from: dict[str, frozenset[str]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sids = itertools.count(1)
        self._id_lock = threading.Lock()
        #: Objects whose creating stimulus the core refused -> the error (see submit_nowait).
        self.refused: dict[str, BaseException] = {}
        self._requests = itertools.count(1)
        #: Get request id -> future of its GetResult (set on the loop thread), or _NOW
        #: while get_result handles its Get (an answer then goes to ``_answer``).
        self._gets: dict[int, Any] = {}
        self._answer: ev.GetResult | None = None
        #: Object id -> the future of a Get registered for ``wait`` (one per object at a time).
        self._watches: dict[str, Future[ev.GetResult]] = {}
        #: Done at the next GetResult of any object (``wait`` sleeps on it); replaced then.
        self._next_settlement: Future[None] | None = None
        #: Introspect request id -> future of its IntrospectResult (INT-001).
        self._introspections: dict[int, Future[ev.IntrospectResult]] = {}
        #: Traffic counters: bytes sent and received over sockets, and bytes of
        #: stored values this process mapped from shared memory instead of copying.
        self.stats = {"bytes_sent": 0, "bytes_received": 0, "messages_sent": 0, "messages_received": 0, "bytes_mapped": 0,
                      "unauthenticated_discarded": 0}
        self._stopping = threading.Event()
        self.stopped = threading.Event()
        self.failure: str = ""
        #: Times the loop handed freed memory back to the operating system (HEAP_TRIM_S).
        self.heap_trims = 0
        #: When a failed message was last reported (see _receive_failed).
        self._last_failure_report = -1e9
        if env_faults:
            self._install_faults(env_faults)
        # The core's clock starts before anything else happens to it.
        self.core.handle(ev.Tick(self.sid(), int(clock() * 1000)))
        #: The loop thread's ident (set by the loop itself).
        self._loop_ident: int | None = None
        self._thread = threading.Thread(target=self._loop, name=f"refrpc-{peer_id}", daemon=True)
        self._thread.start()
        if isinstance(getattr(self.store, "quick_threads", None), set) and self._thread.ident is not None:
            self.store.quick_threads.add(self._thread.ident)  # the loop never waits long for other stores

    # ------------------------------------------------------------ other threads
    def new_task_ids(self, num_returns: int) -> tuple[str, tuple[str, ...]]:
        """Allocate a task id and its return ids from any thread (ID-003)."""
        with self._id_lock:
            return self.ids.task(num_returns)

    def new_id(self) -> str:
        with self._id_lock:
            return self.ids.next()

    def submit_nowait(self, object_ids: tuple[str, ...], make: Callable[[str], ev.Stimulus],
                      undo: Callable[[], Any] | None = None) -> None:
        """Feed a stimulus that creates ``object_ids`` now, on this thread; if the
        core refuses it, the error is kept for those objects (``get`` raises it)
        and ``undo`` runs (e.g. to free a value already written to the store)."""
        try:
            with self.lock:
                self._check_running()
                self.handle(make(self.sid()))
        except Exception as exc:
            for oid in object_ids:
                self.refused[oid] = exc
            if undo is not None:
                undo()

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` now, on this thread, holding :attr:`lock`; its result (or
        exception) lands in the returned (done) future. Handles that died before
        are released first, so a call is also a barrier for them."""
        fut: Future[Any] = Future()
        try:
            with self.lock:
                self._check_running()
                self._drain_released()
                if self.spill_events and not self.core.stopped:
                    self.handle()  # what the store spilled or restored, before fn looks (INT-020)
                result = fn()
        except BaseException as exc:  # handed to the caller, never lost
            fut.set_exception(exc)
        else:
            fut.set_result(result)
        return fut

    def feed(self, make: Callable[[str], ev.Stimulus]) -> BaseException | None:
        """Feed one stimulus now, on this thread, as :meth:`call` would; returns the
        error the core (or a stopped node) raised, or None. The short path of a task
        thread reporting its result: no future, no closure."""
        try:
            with self.lock:
                self._check_running()
                if self.released:
                    self._drain_released()
                if self.spill_events and not self.core.stopped:
                    self.handle()  # what the store spilled or restored, before the stimulus (INT-020)
                self.handle(make(self.sid()))
        except BaseException as exc:  # handed to the caller, never lost
            return exc
        return None

    def handle_soon(self, *stimuli_factories: Callable[[str], ev.Stimulus]) -> Future[Any]:
        """Feed stimuli to the core now (built holding the lock, so ids stay ordered)."""
        return self.call(lambda: self.handle(*[make(self.sid()) for make in stimuli_factories]))

    def born(self, object_id: str) -> None:
        """A Ref handle to ``object_id`` was made in this process (any thread, no lock)."""
        self._born.append(object_id)

    def release(self, object_id: str) -> None:
        """A Ref handle to ``object_id`` died: queue its DropRef. Never blocks and
        takes no lock, so finalizers may call it on any thread at any moment."""
        self.released.append(object_id)

    def _check_running(self) -> None:
        if self.stopped.is_set():
            raise RuntimeError(f"peer {self.peer_id} is stopped: {self.failure or 'shut down'}")

    def _drain_released(self) -> None:
        """DropRef for every handle that died since (holding the lock)."""
        released = self.released
        if not released:
            return
        handles = self.handles
        born = self._born
        drops: list[ev.Stimulus] = []
        while released:
            oid = released.popleft()
            # Count births first: a handle is born (appended) before it can die, so every
            # release taken here finds its birth counted.
            while born:
                b = born.popleft()
                handles[b] = handles.get(b, 0) + 1
            left = handles.get(oid, 1) - 1
            if left > 0:
                handles[oid] = left
            else:
                handles.pop(oid, None)
                detach = getattr(self.store, "detach", None)
                if detach is not None:
                    detach(oid)  # the last handle here: unmap our view of a copy
            drops.append(ev.DropRef(self.sid(), oid))
        if not self.core.stopped:
            self.handle(*drops)

    def trace_program(self, op: str, object_id: str = "", task_id: str = "", **detail: Any) -> None:
        """Record a ``program`` event for an API call the core never sees as one
        stimulus (``wait``); nothing when not tracing. Any thread."""
        tracer = self.tracer
        if tracer is not None:
            with self.lock:
                tracer.event("program", object_id, task_id, {"op": op, **detail}, self.sid())

    def get_result(self, object_id: str, urgent: bool = False) -> Future[ev.GetResult]:
        """Ask the core for the value of a held ref; the future gets its GetResult
        (at once, if the core knows it now; else from the thread that learns it).
        ``urgent``: the caller is a running task (``ev.Get.urgent``)."""
        try:
            with self.lock:
                self._check_running()
                self._drain_released()
                rid = next(self._requests)
                gets = self._gets
                gets[rid] = _NOW  # an answer while the Get is handled lands in _answer
                try:
                    self.handle(ev.Get(self.sid(), rid, object_id, urgent))
                except BaseException:
                    gets.pop(rid, None)
                    raise
                if rid not in gets:  # answered at once (the usual case once the task is done)
                    answer, self._answer = self._answer, None
                    return _Answered(answer)
                fut: Future[ev.GetResult] = Future()
                gets[rid] = fut
                return fut
        except BaseException as exc:
            failed: Future[ev.GetResult] = Future()
            failed.set_exception(exc)
            return failed

    def ready_among(self, object_ids: Iterable[str], wanted: int, urgent: bool = False) -> tuple[list[int], Future[None] | None]:
        """For ``wait``: the indexes of the first ``wanted`` objects (in order) whose
        value or error is known now; if fewer, a Get is registered for every other
        one (once per object, OBJ-002 for borrowed ones) and the future returned is
        done at the next settlement of any object, so the caller sleeps until
        something changed and looks again. Cost: the objects looked at, no more."""
        ready: list[int] = []
        with self.lock:
            self._check_running()
            self._drain_released()
            settled = self.core.settled
            for i, oid in enumerate(object_ids):
                if settled(oid):
                    ready.append(i)
                    if len(ready) >= wanted:
                        return ready, None
            for i, oid in enumerate(object_ids):
                if oid not in self._watches and not settled(oid):
                    fut = self.get_result(oid, urgent)
                    if not fut.done():
                        self._watches[oid] = fut
                        fut.add_done_callback(lambda _, oid=oid: self._watches.pop(oid, None))
            if self._next_settlement is None:
                self._next_settlement = Future()
            return ready, self._next_settlement

    @property
    def store(self) -> Any:
        """This node's object store (replaceable before any work: the IUT puts its own)."""
        return self._store

    @store.setter
    def store(self, store: Any) -> None:
        self._store = store
        if hasattr(store, "on_spill"):  # it tells the core what it spills (INT-020)
            store.on_spill = lambda oid, spilled: self.spill_events.append((oid, spilled))

    def store_free_bytes(self) -> int | None:
        """Bytes this node's store can take without spilling anything: its limit less
        what it holds in memory (memory it keeps for reuse counts as free); None
        when the store has no limit. What placement by free memory reads."""
        free = getattr(self.store, "free_bytes", None)
        return free if free is None or isinstance(free, int) else None

    def fetch(self, object_id: str, locations: tuple) -> Future[int]:
        """Copy a stored value from another host into the local store (FET-001)."""
        return self.call(lambda: self.fetcher.fetch(object_id, locations)).result()

    def local_value(self, object_id: str, locations: tuple, timeout: float | None,
                    wait: Callable[[Future[Any], float | None], Any] | None = None,
                    before_fetch: Callable[[], Any] | None = None) -> Any:
        """The value of a stored object: mapped from this host's shared memory, or
        fetched from a location on another host first (``before_fetch()`` runs first:
        an executor reserves the bytes there; ``wait(future, timeout)`` waits for the
        fetch: an executor gives a task's CPU back meanwhile, TASK-056).
        Raises ObjectNotFound."""
        from ..store import ObjectNotFound

        value = None
        held = self.store.contains(object_id)
        for writer in [self.peer_id] + [peer for peer, _ in locations if peer != self.peer_id]:
            try:
                value = self.store.attach(object_id, writer)  # same host: map the holder's copy
                break
            except ObjectNotFound:
                if writer == self.peer_id and held and not self.store.contains(object_id):
                    # Our own copy vanished from the store: the core must know (LOC-003, LOC-004).
                    self.handle_soon(lambda sid: ev.CopyLost(sid, object_id))
                continue
        if value is None:
            if before_fetch is not None:
                before_fetch()
            fetching = self.fetch(object_id, locations)  # another host (raises ObjectNotFound)
            if wait is None:
                fetching.result(timeout)
            else:
                wait(fetching, timeout)
            value = self.store.get(object_id)
        if value.nested or value.buffers or value.encoding is Encoding.PICKLE:
            self.call(lambda: self._check_stored_form(object_id, value)).result()
        self.stats["bytes_mapped"] += value.size
        return value

    def _check_stored_form(self, object_id: str, value: Any) -> None:
        """OBJ-067, SEC-005: a stored form read here whose value needs a feature not in
        use with the object's owner, or with a holder whose chunks brought it, is not
        acted on: no nested ref is registered, nothing is unpickled, and the copy is not
        kept. Raises :class:`StoredFormRefused`. (Loop lock held.)"""
        core = self.core
        sources = self.fetched_from.get(object_id, frozenset())
        owner = self.peer_id if object_id in core.owned else getattr(core.borrowed.get(object_id), "owner", "")
        needs = (["borrowing"] if value.nested else []) + (
            ["python-pickle"] if value.buffers or value.encoding is Encoding.PICKLE else [])
        for feature in needs:
            why = ""
            if feature not in self.config.features:
                why = f"this peer does not use {feature}"
            for peer in [owner, *sorted(sources)]:
                if why or not peer or peer == self.peer_id:
                    continue
                remote = core.remotes.get(peer)
                if remote is None or feature not in remote.features:
                    role = "its owner" if peer == owner else "the holder it was fetched from"
                    why = f"{feature} is not in use on the session with {peer} ({role})"
            if why:
                if sources:  # a copy fetched for nothing: not kept (the owner learns it, LOC-003)
                    self.fetched_from.pop(object_id, None)
                    self.store.free(object_id)
                    self.handle(ev.CopyLost(self.sid(), object_id))
                elif hasattr(self.store, "detach"):
                    self.store.detach(object_id)  # a mapping of another process's copy
                raise StoredFormRefused(f"the stored form of {object_id} needs {feature}: {why}")

    def introspect(self, peer: str, summary: bool = False) -> Future[ev.IntrospectResult]:
        """The ownership table of ``peer`` (or of this node, for its own id), INT-001;
        with ``summary``, its PeerSummary instead (INT-006: the result's ``summary``,
        None if the peer sent none)."""
        fut: Future[ev.IntrospectResult] = Future()

        def ask() -> None:
            rid = next(self._requests)
            self._introspections[rid] = fut
            self.handle(ev.Introspect(self.sid(), rid, peer, summary))

        self.call(ask)
        return fut

    def set_faults(self, rules: Sequence[FaultRule]) -> Future[FaultyTransport | None]:
        """Drop, duplicate or delay this peer's messages as ``rules`` say (testing).

        Replaces the rules in force (their counts start again); an empty list
        turns injection off. Rules whose ``at`` names another peer are ignored.
        The future gets the injector (its ``applied`` counts and ``log`` say
        what it did), or None if no rule was ever set. With no rules, the loop
        talks to the ZeroMQ transport directly: nothing is spent on injection.
        """
        rules = tuple(rules)
        return self.call(lambda: self._install_faults(rules))

    def stop(self, timeout: float = 5.0) -> None:
        """Leave cleanly (Goodbye to every peer), stop the loop, release everything."""
        if not self.stopped.is_set():
            self.call(lambda: self.handle(ev.Shutdown(self.sid(), "shutdown")))
            self._stopping.set()
            self._wake()
            self._thread.join(timeout)
        self._close()

    # ------------------------------------------------------------ the loop thread
    def sid(self) -> str:
        return f"{self.peer_id}:{next(self._sids)}"

    def handle(self, *stimuli: ev.Stimulus) -> None:
        """Apply stimuli to the core and carry out its instructions (holding :attr:`lock`)."""
        if self.released:
            self._drain_released()
        spills = self.spill_events
        if spills:
            moved = []
            while spills:
                oid, spilled = spills.popleft()
                moved.append(ev.CopySpilled(self.sid(), oid, spilled))
            stimuli = (*moved, *stimuli)
        if self.tracer is not None:
            self.tracer.stimuli(stimuli, self.core.exec_index, self.core.exec_tasks)
        try:
            instructions = self.core.handle(*stimuli)
        except LocalUsageError as exc:
            for ins in exc.instructions:
                self._do(ins)
            raise
        for ins in instructions:
            self._do(ins)

    def _loop(self) -> None:
        self._loop_ident = threading.get_ident()
        next_tick = 0.0
        trim = heap_trimmer()
        next_trim = self.clock() + HEAP_TRIM_S
        leave_by: float | None = None
        clock = self.clock
        transport_wait = self.wire.wait
        lock = self.lock
        try:
            while not self.stopped.is_set():
                now = clock()
                timeout = max(0, int((next_tick - now) * 1000))
                if self.wire.backlogged or (self.faults is not None and self.faults.holding):
                    timeout = min(timeout, 1)  # sending waits for a connection: come back soon
                # Sleep without the lock: other threads feed the core and send meanwhile.
                transport_wait(timeout, also=(self._wake_r,))
                self._drain_wake()
                # A bounded batch, so that a burst of arrivals never keeps the clock
                # waiting: a peer whose heartbeats sit unread is declared dead (LIV-003).
                # Bounded in time too: 512 fetched chunks of 1 MiB take seconds to
                # write, and a Tick that comes that late finds every peer "silent".
                # A peer that stopped (declared dead, or its Goodbyes acknowledged)
                # reads nothing more: it would act on none of it. One that is still
                # leaving reads on, to acknowledge and take acknowledgements (LIV-010).
                # Only this thread reads the ROUTER, so a message is read without the
                # lock and each one is handled under it: a task thread waiting to send
                # its reply gets the lock between two messages, not after the batch.
                batch_end = clock() + TICK_MS / 1000
                for _ in range(0 if self.core.stopped else 512):
                    transport = self.transport
                    if transport is self.wire:
                        frames = transport.recv(0)
                    else:  # a fault layer: its receiving shares state with its sending
                        with lock:
                            frames = transport.recv(0)
                    if frames is None:
                        break
                    with lock:
                        try:
                            self._receive(frames)
                        except Exception:  # SEC-020: one message's failure never stops the others
                            self._receive_failed(frames)
                    if clock() >= batch_end:
                        break
                with lock:
                    self.transport.flush()
                    self._drain_released()
                    now = clock()
                    if now >= next_tick:
                        self.handle(ev.Tick(self.sid(), int(now * 1000)))
                        self.fetcher.tick()
                        if self.tracer is not None:
                            self.tracer.tick(now)
                        next_tick = now + TICK_MS / 1000
                    if self._stopping.is_set():
                        # Let the Goodbyes leave and be acknowledged before the sockets
                        # close (LIV-010): the core stops once they are, and a DEALER
                        # still connecting holds them in its backlog; so keep polling until
                        # both are over, for at most GOODBYE_LINGER_S.
                        if leave_by is None:
                            leave_by = now + GOODBYE_LINGER_S
                        if now >= leave_by or (self.core.stopped and not self.wire.backlogged):
                            break
                        next_tick = min(next_tick, now + 0.01)
                if trim is not None and now >= next_trim:
                    trim()  # without the lock: it takes a few ms on a large heap
                    self.heap_trims += 1
                    next_trim = now + HEAP_TRIM_S
        except BaseException:  # the loop must never die silently
            self.failure = traceback.format_exc()
        finally:
            with self.lock:
                if self.tracer is not None:
                    self.tracer.flush()
                self.stopped.set()
                for fut in self._gets.values():
                    if not fut.done():
                        fut.set_exception(RuntimeError(f"peer {self.peer_id} stopped"))
                if self._next_settlement is not None:
                    self._next_settlement.set_exception(RuntimeError(f"peer {self.peer_id} stopped"))

    def _receive_failed(self, frames: list[Any]) -> None:
        """A message whose handling raised (a fault of this implementation): count it,
        say so on stderr (at most once a second), and go on with the next one."""
        self.stats["receive_failures"] = self.stats.get("receive_failures", 0) + 1
        now = self.clock()
        if now - self._last_failure_report >= 1.0:
            self._last_failure_report = now
            head = bytes(_frame0(frames))[:64].hex()
            print(f"refrpc: {self.peer_id} could not handle a message (frame 0 begins {head}); "
                  f"{self.stats['receive_failures']} so far:\n{traceback.format_exc()}", file=sys.stderr, flush=True)

    def _install_faults(self, rules: Sequence[FaultRule]) -> FaultyTransport | None:
        rules = tuple(r for r in rules if r.applies_at(self.peer_id))
        if self.faults is None:
            if not rules:
                return None
            self.faults = FaultyTransport(self.wire)
        self.faults.set_rules(rules)
        # Unwrap when off, unless delayed messages are still to be delivered.
        self.transport = self.faults if rules or self.faults.holding else self.wire
        return self.faults

    def _receive(self, frames: list[Any]) -> None:
        stats = self.stats
        stats["messages_received"] += 1
        stats["bytes_received"] += len(frames[0]) if len(frames) == 1 else sum(_nbytes(f) for f in frames)
        sid = self.sid()
        tracer = self.tracer
        try:
            envelope = codec.decode(frames, max_frame_bytes=self.config.max_frame_bytes)
        except codec.DecodeError as exc:  # GEN-004: typed, never a crash
            if self.cluster_key is not None and not self._authentic(frames, exc.sender, sid):
                return
            if tracer is not None:  # TRC-010: the raw frame 0, then why it went no further
                self._flush_queued()
                tracer.received(_frame0(frames), exc.sender, exc.sender_incarnation, exc.seq, sid)
                tracer.event("discarded", "", "", {"reason": "malformed", "error": exc.message}, sid)
            if exc.sender:
                self.handle(ev.ReceiveMalformed(sid, exc.sender, exc.sender_incarnation, exc.error, exc.seq,
                                                exc.receiver, exc.receiver_incarnation, exc.answer))
            return
        if self.cluster_key is not None and not self._authentic(frames, envelope.sender, sid):
            return
        if tracer is not None:  # TRC-003, TRC-005: every frame 0, before what it causes
            self._flush_queued()
            tracer.received(_frame0(frames), envelope.sender, envelope.sender_incarnation, envelope.seq, sid)
        self.handle(ev.Receive(sid, envelope))

    def _flush_queued(self) -> None:
        """Apply what other threads queued without the lock (released handles, spills)
        now, so that their records do not fall between a receive's record and what the
        receive causes (its `discarded` event must follow it, TRC-005). Holding the lock."""
        if self.released or self.spill_events:
            self.handle()

    def _authentic(self, frames: list[Any], sender: str, sid: str) -> bool:
        """SEC-011: whether the claimed ``sender`` is the PeerId bound to the key the
        message's connection authenticated with; if not, the message is discarded
        before anything about its sender is created, and nothing is answered."""
        user_id = getattr(frames, "user_id", None)
        if self.own_key is None:
            ok = self.cluster_key.is_member_key(sender, user_id)
        else:
            ok = self._bound(sender, user_id, getattr(frames, "join", None))
        if not ok:
            self.stats["unauthenticated_discarded"] += 1
        return ok

    def _bound(self, sender: str, user_id: Any, proof: Any) -> bool:
        """SEC-024 (a cluster with a head): ``sender`` speaks only through the key bound
        to it. With no binding yet, the head binds it to the key of a connection with
        a valid join proof (SEC-023); a member binds the head from its key file
        (SEC-041), and anyone else only when a view binds it (its retransmissions
        get through then)."""
        if not isinstance(user_id, str) or not sender:
            return False
        bound = self.keys.get(sender)
        if bound is not None:
            return hmac.compare_digest(bound.encode("ascii", "replace"), user_id.encode("ascii", "replace"))
        if not self.admits_joiners:
            return False
        if not self.cluster_key.accepts_join(sender, user_id, proof, self.clock()):
            return False
        unregistered = sum(1 for p in self.keys if p != self.peer_id and p not in self.members and p not in self.drivers)
        if unregistered >= self.config.max_sessions:
            return False  # SEC-023: bindings of joiners that have not registered are bounded (not the head's own)
        self.keys[sender] = user_id
        return True

    def _do(self, ins: ev.Instruction) -> None:
        if isinstance(ins, ev.SendFrame):
            try:
                frames = codec.encode(ins.envelope)
                if self.own_key is not None:  # SEC-040: the server there must hold the receiver's key
                    key = self.keys.get(ins.envelope.receiver)
                    if self._expected.get(ins.address, "") != key:
                        self._expected[ins.address] = key
                        self.wire.expect(ins.address, key)
                self.transport.send(ins.address, frames)
                if self.wire.backlogged and threading.get_ident() != self._loop_ident:
                    self._wake()  # the loop flushes backlogs: it must not sleep a whole tick
                stats = self.stats
                stats["messages_sent"] += 1
                stats["bytes_sent"] += len(frames[0]) if len(frames) == 1 else sum(_nbytes(f) for f in frames)
            except codec.EncodeError as exc:
                # A message the core made that cannot be encoded is a bug here, never the
                # remote's doing; if it was sequenced, the session stalls (SES-012). Say so.
                print(f"refrpc: {self.peer_id} could not encode a {type(ins.envelope.body).__name__} for "
                      f"{ins.envelope.receiver}: {exc}", file=sys.stderr, flush=True)
                return
            except ValueError:
                return  # an address ZeroMQ cannot use is an unreachable peer: LIV-003 decides
            if self.tracer is not None:  # TRC-003: every transmission, retransmissions too
                env = ins.envelope
                self.tracer.sent(frames[0], env.receiver, env.receiver_incarnation, env.seq, ins.stimulus_id)
        elif isinstance(ins, ev.TraceEvent):
            if self.tracer is not None:
                self.tracer.core_event(ins)
        elif isinstance(ins, ev.GetResult):
            fut = self._gets.pop(ins.request_id, None)
            if fut is _NOW:
                self._answer = ins
            elif fut is not None and not fut.done():
                fut.set_result(ins)
            nxt = self._next_settlement
            if nxt is not None:  # wake the waits (ready_among)
                self._next_settlement = None
                nxt.set_result(None)
        elif isinstance(ins, ev.IntrospectResult):
            fut = self._introspections.pop(ins.request_id, None)
            if fut is not None and not fut.done():
                fut.set_result(ins)
        elif isinstance(ins, ev.DeliverData):
            self.fetcher.on_data(ins)
        elif isinstance(ins, ev.RemoteError):
            # FET-067: decided by the code, relatedSeq and sender alone (ERR-005).
            if ins.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED and ins.related_seq == 0:
                self.fetcher.lz4_refused(ins.peer)
            if self.on_instruction is not None:
                self.on_instruction(ins)
        elif isinstance(ins, ev.FreeCopy):
            self.fetched_from.pop(ins.object_id, None)
            if self.store.free(ins.object_id) and self.tracer is not None:  # the store did hold a copy
                self.tracer.event("copy-dropped", ins.object_id, "", {"reason": "freed"}, ins.stimulus_id)
        elif isinstance(ins, ev.Disconnect):
            self.transport.forget(ins.address)  # a forgotten handshake keeps no socket (SEC-021)
        elif isinstance(ins, ev.PeerDeclaredDead):
            if self.admits_joiners:  # SEC-023: a dead incarnation's PeerId may be joined again
                now = self.core.remotes.get(ins.peer)
                if now is None or now.incarnation == ins.incarnation:
                    self.keys.pop(ins.peer, None)
            r = self.core.remotes.get(ins.peer)
            if r is not None and r.address:
                self.transport.forget(r.address)  # ZMQ-010
            # A dead peer of this host left its copies in our namespace: they are lost
            # (LOC-004) and must not outlive it until the cluster stops.
            from ..store import cleanup_writer

            cleanup_writer(self.store.namespace, ins.peer, spill_directory=getattr(self.store, "spill_directory", None))
            self.fetcher.peer_died(ins.peer)
            if self.on_instruction is not None:
                self.on_instruction(ins)
        elif isinstance(ins, ev.FailStop):
            self.failure = f"declared dead by the cluster: {ins.reason}"  # LIV-005
            self._stopping.set()
            if self.on_instruction is not None:
                self.on_instruction(ins)
        elif self.on_instruction is not None:
            self.on_instruction(ins)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the loop is awake or gone anyway

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()
        self.transport.close(linger_ms=200)  # let the Goodbyes leave (LIV-006)
        self.store.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


#: Marks, in ``Node._gets``, the Get being handled now by get_result.
_NOW = object()


class StoredFormRefused(RefRPCError):
    """A stored form read here needs a feature not in use with its owner or with the
    holder that sent it (OBJ-067): the read fails, and nothing in it was acted on."""

    requirement = "OBJ-067"

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.FEATURE_NOT_NEGOTIATED)


class _Answered:
    """A GetResult the core gave at once: the part of a done Future its callers use
    (``done``, ``result``, ``exception``), without a Future's condition and lock."""

    __slots__ = ("_result",)

    def __init__(self, result: ev.GetResult) -> None:
        self._result = result

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def result(self, timeout: float | None = None) -> ev.GetResult:
        return self._result

    def exception(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[Any], Any]) -> None:
        fn(self)


def _frame0(frames: list[Any]) -> Any:
    """Frame 0 for the trace, as it arrived (a large one is a zmq.Frame; the recorder copies it later)."""
    return frames[0] if frames else b""


def _nbytes(frame: Any) -> int:
    if isinstance(frame, memoryview):
        return frame.nbytes
    buffer = getattr(frame, "buffer", None)  # zmq.Frame
    return buffer.nbytes if buffer is not None else len(frame)


def error_info(exc: BaseException) -> ErrorInfo:
    """A task's exception as the protocol's TASK_FAILED error (TASK-007)."""
    return ErrorInfo(ErrorCode.TASK_FAILED, f"{type(exc).__name__}: {exc}", "TASK-007", "".join(traceback.format_exception(exc)))
