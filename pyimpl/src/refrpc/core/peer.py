"""The sans-IO RefRPC peer: one mutation entry point, ``Peer.handle``."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Callable

from ._actors import Actors
from ._execution import ExecKey, Execution
from ._objects import Objects
from ._session import SessionLayer
from ._tasks import Tasks
from .errors import InvalidTransition, InvariantViolation, LocalUsageError
from .events import (
    ActorReady,
    AddPeer,
    AddRef,
    Cancel,
    Connect,
    CopyLost,
    CopySpilled,
    FreeCopy,
    CopyStored,
    CreateActorRequest,
    FetchFailed,
    DropRef,
    Get,
    Instruction,
    Introspect,
    IntrospectResult,
    KillActorRequest,
    Materialize,
    PeerFailed,
    Put,
    Receive,
    ReceiveMalformed,
    SendData,
    Shutdown,
    Stimulus,
    Submit,
    TaskFinished,
    Tick,
    TraceEvent,
)
from .messages import (
    AddLocation,
    BorrowerRegistered,
    ActorId,
    ConfirmBorrow,
    ErrorCode,
    ErrorInfo,
    ForwardId,
    Goodbye,
    ObjectId,
    PeerId,
    ProtocolError,
    RemoveLocation,
    TaskId,
)
from .state import (
    BorrowedObject,
    Config,
    ExecTask,
    HostedActor,
    OutgoingRegistration,
    OwnedActor,
    OwnedObject,
    Demand,
    OwnerTask,
    Remote,
)
from . import tables

#: The core's names of the hold counters -> the spec's (ownership.md section 5).
_COUNTERS = {
    "local_refs": "localRefs",
    "submitted_task_refs": "submittedTaskRefs",
    "contained": "containedIn",
    "task_holds": "taskHolds",
    "outgoing_registrations": "outgoingRegistrations",
    "self_registration": "selfRegistration",
    "pins": "coverPins",
    "lineage_refs": "lineageRefs",
}


class Peer(SessionLayer, Objects, Tasks, Execution, Actors):
    """All protocol state of one peer incarnation, changed only by :meth:`handle`.

    Args:
        peer_id: This peer's name in the cluster (ID-001).
        incarnation: Random nonzero number chosen at process start (ID-002).
        address: Where other peers reach this one (a ZeroMQ endpoint).
        config: Timings and limits; the spec's defaults if omitted.
    """

    def __init__(self, peer_id: PeerId, incarnation: int, address: str, config: Config | None = None) -> None:
        if not peer_id or len(peer_id.encode()) > 128:
            raise ValueError("peer id must be 1..128 bytes (ID-001)")
        if not 0 < incarnation < 2**64:
            raise ValueError("incarnation must be a nonzero uint64 (ID-002)")
        self.peer_id = peer_id
        self.incarnation = incarnation
        self.address = address
        self.config = config or Config()
        #: Prefix of every id this incarnation allocates (ID-003).
        self.id_prefix = f"{peer_id}.{incarnation:x}."
        #: Shell time in ms, as last told by a Tick.
        self.now_ms = 0
        #: True once this peer left or was told it is dead: it handles nothing more.
        self.stopped = False
        #: When this peer sent its Goodbyes (shell ms), or -1: from then on it only
        #: acknowledges and retransmits until they are acknowledged (LIV-010).
        self.leaving_since_ms = -1
        #: The highest counter of this incarnation's object, task and actor ids in use (ID-006).
        self.highest_counter = 0
        #: Sessions with other peers, by peer id (SES-*).
        self.remotes: dict[PeerId, Remote] = {}
        #: Grants registered per borrower incarnation since last counted exactly: an
        #: estimate, recounted when it reaches the limit (SEC-008).
        self.grants_registered: dict[tuple[PeerId, int], int] = {}
        #: Handshakes in progress (records with ``confirmed`` False), oldest first (SEC-021).
        self.handshakes: dict[PeerId, None] = {}
        #: Peer incarnations declared dead; their messages are discarded (SES-005).
        self.fenced: set[tuple[PeerId, int]] = set()
        #: The address last known for each fenced incarnation that had one, kept with the
        #: fence record for as long as it (SES-015): answers to it go there (SES-020).
        self.fence_addresses: dict[tuple[PeerId, int], str] = {}
        #: SES-017: when each fenced incarnation was last answered DECLARED_DEAD (ms, from
        #: Tick); an entry a second old has done its work and goes at the next tick.
        self.declared_dead_answered: dict[tuple[PeerId, int], int] = {}
        #: How many incarnations of each peer are fenced (a shell sees a restart by it).
        self.fences_of: dict[PeerId, int] = {}
        #: Peers that may run tasks: id -> (address, slots).
        self.workers: dict[PeerId, tuple[str, int]] = {}
        #: The named resources each of them offers (TASK-012).
        self.worker_resources: dict[PeerId, dict[str, float]] = {}
        #: The host of each of them: executors of one host pool their CPU slots (TASK-040).
        self.worker_hosts: dict[PeerId, str] = {}
        #: The executors of each host, in the order they were added.
        self.host_workers: dict[str, list[PeerId]] = {}
        #: This peer's own host, as an AddPeer naming itself said ("" if none did): copies
        #: it holds are mapped, not fetched, by executors of that host (TASK-041).
        self.own_host: str = ""
        #: This peer's own slots and named resources, as an AddPeer naming itself said
        #: (0 slots: it runs no tasks). Its own tasks go to itself only when no other
        #: live executor could ever hold them (TASK-023).
        self.own_slots: int = 0
        self.own_resources: dict[str, float] = {}
        #: Objects whose copy in the local store is spilled to disk now (INT-020).
        self.spilled_copies: dict[ObjectId, None] = {}
        #: Addresses learnt from RegisterBorrower, for peers we have no session with.
        self.addresses: dict[PeerId, tuple[str, int]] = {}
        #: The ownership table (OWN-003).
        self.owned: dict[ObjectId, OwnedObject] = {}
        #: Refs held to other peers' objects (BOR-001).
        self.borrowed: dict[ObjectId, BorrowedObject] = {}
        #: Copies of other peers' objects in the local store -> their owner.
        self.copies: dict[ObjectId, PeerId] = {}
        #: Those of ``copies`` that are primary copies (task results made here): pinned
        #: until the owner's FreeObjects, whatever this peer's own refs do (GC-005).
        self.primaries: set[ObjectId] = set()
        #: Tasks submitted here (lineage, LIN-001).
        self.tasks: dict[TaskId, OwnerTask] = {}
        #: Tasks waiting for room on any executor, one queue per demand (CPU slots
        #: and resources), oldest first (TASK-020); entries whose task is no longer
        #: ``queued`` are skipped when met.
        self.ready_queues: dict[Demand, deque[TaskId]] = {}
        #: Tasks waiting for a slot on the executor that holds their data (TASK-012).
        self.local_queues: dict[PeerId, deque[TaskId]] = {}
        #: A slot was freed or an executor added since the queues were last looked at.
        self.pump_due = False
        #: Function name -> whether its last task here finished within
        #: config.pipeline_ms (TASK-020); bounded by config.speed_keys.
        self.quick_functions: dict[str, bool] = {}
        #: Settled reconstructable tasks kept as lineage, oldest first -> their cost in
        #: bytes; bounded by config.max_lineage_bytes (LIN-005, LIN-010).
        self.lineage: dict[TaskId, int] = {}
        self.lineage_bytes = 0
        #: Tasks executing here, by (owner, owner incarnation, task id, attempt).
        self.exec_tasks: dict[tuple, ExecTask] = {}
        self.exec_index: dict[tuple[TaskId, int], tuple] = {}
        #: Replies sent, per owner, as (session seq, exec key) in seq order (RPC-002).
        self.replied: dict[PeerId, deque] = {}
        #: Return ids of tasks dropped while running, so late results can be freed (FATE-008).
        self.dropped_returns: dict[tuple[TaskId, int], tuple[ObjectId, ...]] = {}
        #: RegisterBorrower requests in flight from here.
        self.outgoing: dict[ForwardId, OutgoingRegistration] = {}
        self.forward_counter = 0
        #: Local Get requests waiting for a value.
        self.get_waiters: dict[ObjectId, list[int]] = {}
        #: Peers waiting on GetObjectStatus(wait) for an owned object.
        #: ... each with whether the asker offered to relay (LOC-020).
        self.status_waiters: dict[ObjectId, dict[PeerId, bool]] = {}
        #: How many of those waits each peer has outstanding (SEC-009).
        self.status_wait_counts: dict[PeerId, int] = {}
        #: Executing tasks waiting for a REF argument.
        self.arg_waiters: dict[ObjectId, list[tuple]] = {}
        self.owned_actors: dict[ActorId, OwnedActor] = {}
        self.hosted: dict[ActorId, HostedActor] = {}
        #: ACT-023: calls for actors not created here yet, by actor, with when each came.
        self.held_actor_calls: dict[ActorId, list[tuple[ExecKey, int]]] = {}
        #: Actors this host stopped and forgot (their owner died): calls for them are
        #: answered at once, not held (ACT-023); the oldest ids are forgotten first.
        self.ended_actors: OrderedDict[ActorId, None] = OrderedDict()
        #: Messages this peer sent itself, handled after the current stimulus (ACT-021).
        self.loopback: deque = deque()
        #: This peer as the sender of those messages.
        self._self_remote = Remote(peer=peer_id, address=address, incarnation=incarnation, state="alive",
                                   all_features=True)
        self.actor_creations: dict[tuple, ActorId] = {}
        self.actor_call_seq: dict[ActorId, int] = {}
        self.introspections: dict[int, PeerId] = {}
        #: Releases and frees produced by the current stimulus, sent batched at its end.
        self.pending_releases: dict[PeerId, list] = {}
        self.pending_frees: dict[PeerId, list[ObjectId]] = {}
        #: Per-key history of transitions with their causes: the "story".
        self.stories: OrderedDict[str, list[tuple[str, str, str]]] = OrderedDict()
        #: Run validate() after every handle() call (tests and simulations turn it on).
        self.check_invariants = False
        #: Emit a TraceEvent for every local event a trace records (TRC-008): on only
        #: while the shell records a trace, so that tracing costs one check when off.
        self.trace_events = False
        self._sid = ""
        self._outbox: list[Instruction] = []
        self._dispatch_table: dict[type, Callable] = {
            Tick: self._stim_tick,
            Receive: lambda s: self._on_receive(s.envelope),
            ReceiveMalformed: self._stim_malformed,
            AddPeer: self._stim_add_peer,
            PeerFailed: self._stim_peer_failed,
            Connect: lambda s: self._ensure_session(s.peer, s.address, s.incarnation),
            SendData: lambda s: self._send(s.peer, s.message, s.address, s.incarnation),
            Shutdown: self._stim_shutdown,
            Submit: self._submit,
            Put: self._stim_put,
            AddRef: lambda s: self._stim_add_ref(s.object_id),
            DropRef: lambda s: self._hold(s.object_id, "local_refs", -1),
            Get: lambda s: self._get(s.request_id, s.object_id, s.urgent),
            Materialize: lambda s: self._materialize(s.container, s.refs),
            CopyStored: self._stim_copy_stored,
            CopyLost: self._stim_copy_lost,
            CopySpilled: self._stim_copy_spilled,
            FetchFailed: self._stim_fetch_failed,
            CreateActorRequest: self._create_actor,
            Cancel: lambda s: self._cancel(s.task_id),
            KillActorRequest: lambda s: self._kill_actor(s.actor_id),
            Introspect: lambda s: self._introspect(s.request_id, s.peer, s.summary),
            TaskFinished: self._task_finished,
            ActorReady: self._actor_ready,
        }

    # ------------------------------------------------------------ the entry point
    def handle(self, *stimuli: Stimulus) -> list[Instruction]:
        """Apply ``stimuli`` in order and return what the shell must now do.

        The shell's first stimulus should be a :class:`Tick` with its clock's
        current time: every timer of the core is measured from the last Tick.

        Raises:
            LocalUsageError: the local program asked for something impossible.
                The offending stimulus changed nothing.
        """
        out: list[Instruction] = []
        self._outbox = out
        for s in stimuli:
            if self.stopped:
                break
            self._sid = s.stimulus_id
            if self.leaving_since_ms >= 0:
                self._while_leaving(s)  # LIV-010: acknowledge and retransmit, nothing else
                continue
            handler = self._dispatch_table.get(type(s))
            try:
                if handler is None:
                    raise LocalUsageError(ErrorCode.MALFORMED, f"unknown stimulus {type(s).__name__}")
                handler(s)
                if self.loopback:
                    self._drain_loopback()
                if self.pump_due and not self.stopped:
                    self._pump()
            except LocalUsageError as exc:
                # The failing stimulus changed nothing; what earlier ones produced stands
                # and travels with the error, for the shell to carry out.
                exc.instructions = out
                raise
            self._flush_batches()
        if self.check_invariants:
            self.validate()
        return out

    def _drain_loopback(self) -> None:
        """Handle the messages this peer sent itself, in the order it sent them (FIFO,
        like a session; nothing to number, acknowledge or retransmit)."""
        me = self._self_remote
        while self.loopback:
            body = self.loopback.popleft()
            handler = getattr(self, f"_on_{type(body).__name__}", None)
            if handler is not None:
                handler(me, body)

    def _out(self, instruction: Instruction) -> None:
        self._outbox.append(instruction)

    # ------------------------------------------------------------ stimuli
    def _stim_tick(self, s: Tick) -> None:
        if s.now_ms > self.now_ms:
            self.now_ms = s.now_ms
        self._on_tick()

    def _stim_malformed(self, s: ReceiveMalformed) -> None:
        self._malformed(s.sender, s.sender_incarnation, s.seq, s.error, s.receiver, s.receiver_incarnation, s.answer)

    def _request_refused(self, r: Remote, kind: str, key: object, error: ErrorInfo) -> None:
        """ERR-003: a ProtocolError names a request of ours; end that request with it."""
        if kind == "SubmitTask":
            t = self.tasks.get(str(key))
            if t is not None and t.state == "submitted" and t.executor == r.peer:
                self._unload(t)
                # HS-018: a retry the session cannot carry settles as one refused at once
                # does (_send_task), with the event of a last attempt's lost executor.
                self._fail_task(t, error, "executor_died_final" if (error.code, error.requirement) == (ErrorCode.WORKER_DIED, "HS-018") else "rejected")
            elif t is not None and t.state == "cancelled" and t.executor == r.peer and t.holding_args:
                # ERR-003: no reply will come to end TASK-014's wait; release the holds now.
                self._cancelled_task_over(t, "rejected")
        elif kind == "RegisterBorrower":
            reg = self.outgoing.get(str(key))
            if reg is not None:
                self._on_BorrowerRegistered(r, BorrowerRegistered(reg.object_id, str(key), error))
        elif kind == "GetObjectStatus":
            b = self.borrowed.get(str(key))
            if b is not None and b.state == "unresolved" and b.owner == r.peer:
                b.status_requested = False
                b.error = error
                self._transition_borrowed(b, "status_failed")
                self._object_settled(str(key))
        elif kind == "CreateActor":
            self._owned_actor_dead(str(key), error)
        elif kind == "IntrospectRequest":
            if self.introspections.pop(int(key), None) is not None:  # type: ignore[call-overload]
                self._out(IntrospectResult(self._sid, int(key), r.peer, (), error))  # type: ignore[call-overload]

    def _answer_refused(self, r: Remote, answer: tuple[str, tuple[object, ...]], error: ErrorInfo) -> None:
        """GEN-030: an answer from ``r`` was malformed, or used a feature not in use
        (HS-004), but names what it answers; that request ends with the same code
        (MALFORMED or FEATURE_NOT_NEGOTIATED) instead of waiting for an answer that will
        not come."""
        kind, key = answer
        # The rule the answer broke, where one more specific than "malformed" is known (GEN-030).
        rule = error.requirement if error.requirement not in ("", "GEN-004", "GEN-010") else "GEN-030"
        if error.code is ErrorCode.FEATURE_NOT_NEGOTIATED:
            info = ErrorInfo(error.code, f"{kind} from {r.peer} used a feature not in use: {error.message}", rule)
        else:
            info = ErrorInfo(ErrorCode.MALFORMED, f"{kind} from {r.peer} was malformed: {error.message}", rule)
        if kind == "TaskReply":
            task_id, attempt = str(key[0]), key[1]
            t = self.tasks.get(task_id)
            if t is None or t.executor != r.peer or t.spec.attempt != attempt:
                return  # not the current attempt: it would only be disposed of (TASK-015)
            if t.state == "submitted":
                self._unload(t)
                seq = r.submit_seqs.pop(task_id, None)
                if seq is not None:
                    r.requests.pop(seq, None)
                self._fail_task(t, info, "rejected")  # as TASK-019: no retry
            elif t.state == "cancelled" and t.holding_args:
                self._cancelled_task_over(t, "rejected")  # TASK-014's wait ends
        elif kind == "BorrowerRegistered":
            self._request_refused(r, "RegisterBorrower", key[1], info)
        elif kind == "ObjectStatus":
            self._request_refused(r, "GetObjectStatus", key[0], info)
        elif kind == "ActorStatus":
            a = self.owned_actors.get(str(key[0]))
            if a is not None and a.host == r.peer:
                self._request_refused(r, "CreateActor", key[0], info)
        elif kind == "IntrospectReply":
            self._request_refused(r, "IntrospectRequest", key[0], info)
        elif kind == "ProtocolError" and isinstance(key[0], int) and key[0] > 0:
            # GEN-030: a refusal without its error still ends the request it names (ERR-003).
            self._on_ProtocolError(r, ProtocolError(info, related_seq=key[0]))

    def _stim_copy_spilled(self, s: CopySpilled) -> None:
        if s.spilled:
            self.spilled_copies[s.object_id] = None
        else:
            self.spilled_copies.pop(s.object_id, None)

    def _stim_add_peer(self, s: AddPeer) -> None:
        if s.peer == self.peer_id:
            self.own_host = s.host  # where this peer's own copies lie (TASK-041)
            self.own_slots = max(0, s.slots)
            self.own_resources = {name: float(amount) for name, amount in s.resources if amount > 0}
        else:
            self.workers[s.peer] = (s.address, max(1, s.slots))
            self.worker_resources[s.peer] = {name: float(amount) for name, amount in s.resources if amount > 0}
            host = s.host or f"peer:{s.peer}"
            old = self.worker_hosts.get(s.peer)
            if old != host:
                if old is not None:
                    self.host_workers[old].remove(s.peer)
                self.host_workers.setdefault(host, []).append(s.peer)
                self.worker_hosts[s.peer] = host
            self.pump_due = True

    def _stim_peer_failed(self, s: PeerFailed) -> None:
        r = self.remotes.get(s.peer)
        if r is not None and r.state != "dead" and r.incarnation in (s.incarnation, 0):
            r.incarnation = r.incarnation or s.incarnation
            self._declare_dead(r, "failed", s.reason)
            self._broadcast_death(r, s.reason)
        else:
            self._fence(s.peer, s.incarnation, "failed", s.reason)
        if s.successor and s.successor != s.incarnation:
            # Before this stimulus's pump: what the death left without an executor
            # (TASK-020 queued tasks) can go to the new incarnation; retries go there
            # at once, slot or not (TASK-021), as they would have to a live executor.
            self._ensure_session(s.peer, s.successor_address, s.successor)
            if self._is_live(s.peer) and s.peer in self.workers:
                for q in self.ready_queues.values():
                    for tid in [tid for tid in q if self._waiting_retry(tid)]:
                        t = self.tasks[tid]
                        if self._capable(t.demand, [s.peer]):
                            q.remove(tid)
                            self._start_queued(t, s.peer)

    def _waiting_retry(self, task_id: str) -> bool:
        t = self.tasks.get(task_id)
        return t is not None and t.state == "queued" and t.spec.attempt > 1

    def _stim_shutdown(self, s: Shutdown) -> None:
        for r in list(self.remotes.values()):
            if r.state == "alive":
                self._send(r.peer, Goodbye(s.reason))  # LIV-006
        # LIV-010, LIV-032: nothing sequenced after the Goodbyes; until they are
        # acknowledged (or the linger ends) this peer acknowledges and retransmits.
        self.leaving_since_ms = self.now_ms
        self._leave_if_done()

    def _stim_put(self, s: Put) -> None:
        if s.object_id in self.owned or not self._owns(s.object_id):
            raise LocalUsageError(ErrorCode.MALFORMED, f"object id {s.object_id} is reused or not allocated here (ID-003)")
        for d in s.value.nested:
            self._require_held(d.object_id)
        e = OwnedObject(s.object_id, "ready", local_refs=1, size=s.size if s.stored else s.value.size)
        if s.stored:
            e.locations[self.peer_id] = None  # LOC-001: the owner holds the primary copy
        else:
            e.value = s.value
        e.nested = tuple(self._descriptor(d.object_id) for d in s.value.nested)
        self.owned[s.object_id] = e
        self._note_allocated(s.object_id)  # ID-006
        self._story(s.object_id, "put", "->ready")
        if self.trace_events:  # the put row of owner-object records the creation (OWN-001)
            self._trace_transition("owner-object", s.object_id, "ready", "put")
            self._trace_hold(s.object_id, "local_refs", +1, e)  # the program's handle (OWN-001)
            if s.stored:
                self._trace("location-added", s.object_id, peer=self.peer_id, primary=True)
        self._hold_nested(s.object_id, e.nested)

    def _stim_add_ref(self, oid: ObjectId) -> None:
        self._require_held(oid)
        self._hold(oid, "local_refs", +1)

    def _stim_copy_stored(self, s: CopyStored) -> None:
        e = self.owned.get(s.object_id)
        if e is not None and e.state == "ready":
            e.locations[self.peer_id] = None  # our own copy: freed with the object (OWN-005)
            if self.trace_events:
                self._trace("location-added", s.object_id, peer=self.peer_id, primary=False)
            return
        b = self.borrowed.get(s.object_id)
        if b is None or s.object_id in self.copies:
            return
        self.copies[s.object_id] = b.owner
        b.relay_offered = False  # a whole copy: the owner makes the relay a location (LOC-022)
        self._send(b.owner, AddLocation(s.object_id, s.size), b.ref.owner_address)  # LOC-002

    def _stim_fetch_failed(self, s: FetchFailed) -> None:
        """OBJ-013: no location could serve the bytes; only the owner may call it lost."""
        b = self.borrowed.get(s.object_id)
        if b is not None and b.state == "ready":
            b.locations = ()
            b.relays = ()
            self._transition_borrowed(b, "fetch_failed")
        if b is not None and b.relay_offered and s.object_id not in self.copies:
            # LOC-023: this peer serves nothing of the object now; the owner stops listing it.
            b.relay_offered = False
            self._send(b.owner, RemoveLocation(s.object_id), b.ref.owner_address)
        if s.task_id:
            key = self.exec_index.get((s.task_id, s.attempt))
            ex = self.exec_tasks.get(key) if key else None
            if ex is None or ex.state != "running":
                return
            self._transition_exec(ex, "arg_unavailable")
            for i, a in enumerate(ex.spec.args):
                if a.ref is not None and a.ref.object_id == s.object_id and a.kind.value == "ref":
                    ex.waiting[i] = s.object_id
            if self._resolution(s.object_id) is None:
                self.arg_waiters.setdefault(s.object_id, []).append(key)
            else:
                ex.waiting = {i: o for i, o in ex.waiting.items() if o != s.object_id}
        if b is not None and b.state == "unresolved":
            self._request_status(b)
        if s.task_id and key is not None:
            self._maybe_start(key)

    def _stim_copy_lost(self, s: CopyLost) -> None:
        owner = self.copies.pop(s.object_id, None)
        self.primaries.discard(s.object_id)
        if owner is not None:
            self._send(owner, RemoveLocation(s.object_id))  # LOC-003
            return
        e = self.owned.get(s.object_id)
        if e is not None and self.peer_id in e.locations:
            del e.locations[self.peer_id]
            if self.trace_events:
                self._trace("location-removed", s.object_id, peer=self.peer_id)
            if e.state == "ready" and not e.locations and e.value is None:
                self._object_lost(s.object_id)

    # ------------------------------------------------------------ death effects
    def _on_peer_dead(self, r: Remote) -> None:
        """Every effect of a peer incarnation's death on this peer (LIV-003)."""
        dead = r.peer
        self.pump_due = True  # queued work may have lost its executor or its data
        for oid in list(self.owned):
            e = self.owned.get(oid)
            if e is None:
                continue
            if dead in e.borrowers:
                self._drop_grants_of(e, dead, r.incarnation)  # BOR-009
            for borrower, grants in list(e.borrowers.items()):
                for fid, requester in grants.items():
                    if requester == dead:  # BOR-010
                        addr = self._address_of(borrower)
                        self._send(borrower, ConfirmBorrow(oid, fid, dead, r.incarnation), addr, self.addresses.get(borrower, ("", 0))[1])
            waiters = self.status_waiters.get(oid)
            if waiters and dead in waiters:
                self._forget_status_waits(oid, (dead,))
            self._drop_relay(e, dead, "died")  # LOC-022
            if dead in e.locations:
                del e.locations[dead]
                if self.trace_events:
                    self._trace("location-removed", oid, peer=dead)
                if e.state == "ready" and not e.locations and e.value is None:
                    self._object_lost(oid)  # LOC-004
            if oid in self.owned:
                self._check_owned(oid)
        for t in list(self.tasks.values()):
            if t.state == "cancelled" and t.executor == dead and t.holding_args:
                self._cancelled_task_over(t, "executor_died")  # TASK-014
                continue
            if t.state != "submitted" or t.executor != dead:
                continue
            self._unload(t)
            if t.spec.actor_id:
                info = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor host {dead} died", "ACT-004")
                self._fail_task(t, info, "executor_died_final")
            elif t.spec.attempt <= t.spec.max_retries:
                self._transition_task(t, "executor_died_retry")  # RPC-004
                self._retry(t)
            else:
                info = ErrorInfo(ErrorCode.WORKER_DIED, f"worker {dead} died running the task", "RPC-004")
                self._fail_task(t, info, "executor_died_final")
        for fid, reg in list(self.outgoing.items()):
            b = self.borrowed.get(reg.object_id)
            if b is not None and b.owner == dead:
                info = ErrorInfo(ErrorCode.OWNER_DIED, f"owner {dead} died", "FATE-001")
                self._on_BorrowerRegistered(r, BorrowerRegistered(reg.object_id, fid, info))
        for oid in list(self.borrowed):
            b = self.borrowed.get(oid)
            if b is None or b.owner != dead:
                continue
            b.grants.clear()
            if b.state != "failed":
                b.error = ErrorInfo(ErrorCode.OWNER_DIED, f"owner {dead} of {oid} died", "FATE-001")
                self._transition_borrowed(b, "owner_died")
                self._object_settled(oid)
            if oid in self.borrowed:
                self._check_borrowed(oid)
        for oid, owner in list(self.copies.items()):
            if owner == dead:
                del self.copies[oid]  # FATE-002
                self.primaries.discard(oid)
                self._out(FreeCopy(self._sid, oid))
        for key in [k for k in self.exec_tasks if k[0] == dead]:
            self._drop_exec(key)  # FATE-003
        for h in list(self.hosted.values()):
            if h.state == "alive" and h.owner != dead:  # (the owner's die below, FATE-004)
                self._actor_pump(h)  # TASK-064: the calls of other callers go on
        for key in [k for k in self.actor_creations if k[0] == dead]:
            self.actor_creations.pop(key)
        self._actor_owner_died(dead)
        self._actor_host_died(dead)
        for rid, peer in list(self.introspections.items()):
            if peer == dead:
                del self.introspections[rid]
                self._out(IntrospectResult(self._sid, rid, dead, (), ErrorInfo(ErrorCode.PEER_DIED, f"{dead} died")))

    def _drop_grants_of(self, e: OwnedObject, peer: PeerId, incarnation: int) -> None:
        """BOR-009: the grants recorded for this incarnation of ``peer`` go; those of
        another incarnation of the same PeerId (registered by a forwarder before this
        one was fenced here) stay."""
        grants = e.borrowers.get(peer)
        if not grants or not incarnation:
            return
        lost = [fid for fid in grants if e.grant_incarnations.get(fid, incarnation) == incarnation]
        for fid in lost:
            requester = grants.pop(fid)
            e.grant_incarnations.pop(fid, None)
            if self.trace_events:
                self._trace("grant-removed", e.object_id, borrower=peer, borrowerIncarnation=str(incarnation),
                            forwardId=fid, requester=requester, reason="borrower-died")
        if lost:
            self._story(e.object_id, "borrower-died", f"{peer}/{incarnation}")
        if not grants:
            del e.borrowers[peer]

    # ------------------------------------------------------------ stories and invariants
    def _story(self, key: str, event: str, detail: str) -> None:
        stories = self.stories
        log = stories.get(key)
        if log is None:
            if len(stories) >= self.config.story_keys:
                stories.popitem(last=False)  # bounded: forget the oldest key (O(1), unlike a dict's first key)
            log = stories[key] = []
        log.append((self._sid, event, detail))
        if len(log) > self.config.story_length:
            del log[0]

    def story(self, key: str) -> list[tuple[str, str, str]]:
        """The recent history of an object, task or peer (``peer:<id>``): (stimulus, event, detail)."""
        return list(self.stories.get(key, []))

    def _transition(self, table: str, record: object, key: str, event: str) -> None:
        """Move ``record`` along ``tables.ALL_TABLES[table]``; anything else is a bug."""
        state = record.state  # type: ignore[attr-defined]
        nxt = tables.next_state(tables.ALL_TABLES[table], state, event)
        if nxt is None:
            self._invalid(table, key, state, event)
        self._story(key, event, f"{state}->{nxt}")
        record.state = nxt  # type: ignore[attr-defined]
        if self.trace_events:
            self._trace_transition(table, key, state, event, getattr(record, "spec", None))

    # ------------------------------------------------------------ trace events (TRC-008)
    def _trace(self, name: str, object_id: str = "", task_id: str = "", **detail: object) -> None:
        """A local event for the shell's trace; callers check ``trace_events`` first."""
        self._out(TraceEvent(self._sid, name, object_id, task_id, detail))

    def _trace_transition(self, table: str, key: str, state: str, event: str, spec: object = None) -> None:
        """``spec`` is a task's SubmitTask: its attempt tells apart an executor's runs of one task."""
        nxt, requirement = tables.ALL_TABLES[table][state][event]
        if table == "peer":
            key, oid, tid = key.removeprefix("peer:"), "", ""
        elif table.endswith("-object"):
            oid, tid = key, ""
        else:
            oid, tid = "", key
        detail = {"table": table, "key": key, "from": state, "event": event, "to": nxt, "requirement": requirement}
        if spec is not None:
            detail["attempt"] = spec.attempt  # type: ignore[attr-defined]
        if table == "peer":
            remote = self.remotes.get(key)
            detail["incarnation"] = str(remote.incarnation if remote is not None else 0)  # UInt64 as text
        self._out(TraceEvent(self._sid, "transition", oid, tid, detail))

    def _trace_hold(self, oid: ObjectId, kind: str, delta: int, entry: object, item: str = "") -> None:
        """A hold counter of ownership.md section 5 changed on ``entry``."""
        if kind == "contained":
            value = len(entry.contained_in)  # type: ignore[attr-defined]
        elif kind == "self_registration":
            value = 1 if entry.self_registration else 0  # type: ignore[attr-defined]
        else:
            value = getattr(entry, kind)
        if item:
            self._trace("hold", oid, counter=_COUNTERS[kind], delta=delta, value=value, item=item)
        else:
            self._trace("hold", oid, counter=_COUNTERS[kind], delta=delta, value=value)

    def _invalid(self, table: str, key: str, state: str, event: str) -> None:
        raise InvalidTransition(table, key, state, event, self.story(key))

    def validate(self) -> None:
        """Executable invariants of one peer; raises InvariantViolation."""
        problems: list[str] = []
        for oid, e in self.owned.items():
            if e.state not in tables.OWNER_OBJECT:
                problems.append(f"{oid}: unknown state {e.state}")
            if min(e.local_refs, e.submitted_task_refs, e.lineage_refs, e.pins) < 0:
                problems.append(f"{oid}: negative count")
            if e.state == "released" and (e.in_scope() or e.lineage_refs <= 0 or e.value or e.locations):
                problems.append(f"{oid}: released but in scope, unneeded, or still has a value")
            if e.state == "ready" and e.value is None and not e.locations:
                problems.append(f"{oid}: ready with neither value nor location")
            if e.state in ("ready", "failed") and not e.in_scope():
                problems.append(f"{oid}: settled and out of scope but not reclaimed (OWN-005)")
            if any(not g for g in e.borrowers.values()):
                problems.append(f"{oid}: borrower with no grant")
        for oid, b in self.borrowed.items():
            if b.holds() <= 0:
                problems.append(f"{oid}: borrowed entry with no hold (BOR-005)")
            if b.state not in tables.BORROWER_OBJECT:
                problems.append(f"{oid}: unknown borrower state {b.state}")
        waits: dict[PeerId, int] = {}
        for oid, waiters in self.status_waiters.items():
            if not waiters:
                problems.append(f"{oid}: empty status waiter list")
            for asker in waiters:
                waits[asker] = waits.get(asker, 0) + 1
        if waits != self.status_wait_counts:
            problems.append(f"status waits counted {self.status_wait_counts} != kept {waits} (SEC-009)")
        for oid, e in self.owned.items():
            if e.relays and (e.state != "ready" or e.value is not None):
                problems.append(f"{oid}: relays kept for a {e.state} object (LOC-020, LOC-022)")
            if any(p in e.locations for p in e.relays):
                problems.append(f"{oid}: a relay is also a location (LOC-022)")
        counted: dict[ObjectId, int] = {}
        for reg in self.outgoing.values():
            if reg.purpose[0] in ("reply", "abandon"):
                counted[reg.object_id] = counted.get(reg.object_id, 0) + 1
        for oid, b in self.borrowed.items():
            if b.outgoing_registrations != counted.get(oid, 0):
                problems.append(f"{oid}: outgoing registrations {b.outgoing_registrations} != {counted.get(oid, 0)}")
        needed: dict[ObjectId, int] = {}
        counted_load: dict[PeerId, int] = {}
        used: dict[PeerId, dict[str, float]] = {}

        def add(peer: PeerId, demand: Demand) -> None:
            u = used.setdefault(peer, {})
            for name, amount in (("CPU", demand[0]), *demand[1]):
                if amount:
                    u[name] = u.get(name, 0.0) + amount

        for a in self.owned_actors.values():
            if a.reserved:
                add(a.host, a.demand)
        for t in self.tasks.values():
            if t.state in ("submitted", "queued") and not t.holding_args:
                problems.append(f"{t.spec.task_id}: {t.state} but not holding its args (BOR-006)")
            if t.counted:
                counted_load[t.executor] = counted_load.get(t.executor, 0) + 1
                add(t.executor, t.demand)
            if t.lineage_counted:
                alive = sum(1 for rid in t.spec.return_ids if rid in self.owned)
                for oid in t.arg_refs:
                    needed[oid] = needed.get(oid, 0) + alive
        queued = set().union(*self.ready_queues.values(), *self.local_queues.values())
        for tid, t in self.tasks.items():
            if t.state == "queued" and tid not in queued:
                problems.append(f"{tid}: queued but in no queue (TASK-020)")
        for r in self.remotes.values():
            if (r.load != len(r.in_flight) or r.slow_in_flight != sum(not q for _, q in r.in_flight.values())
                    or sum(r.keys_in_flight.values()) != len(r.in_flight)):
                problems.append(f"{r.peer}: in-flight accounting is off (TASK-020)")
            if any(r.requests.get(seq) != ("SubmitTask", tid) for tid, seq in r.submit_seqs.items()):
                problems.append(f"{r.peer}: a SubmitTask's seq is kept for no such request (ERR-003)")
            if r.load != counted_load.get(r.peer, 0):
                problems.append(f"{r.peer}: load {r.load} != {counted_load.get(r.peer, 0)} tasks counted (TASK-012)")
            want = used.get(r.peer, {})
            if r.used.keys() != want.keys() or any(abs(r.used[k] - want[k]) > 1e-6 for k in want):
                problems.append(f"{r.peer}: resources used {r.used} != {want} (TASK-012)")
            if r.store_free < -1:
                problems.append(f"{r.peer}: store estimate {r.store_free} below -1 (TASK-041)")
        for oid, e in self.owned.items():
            if e.lineage_refs != needed.get(oid, 0):
                problems.append(f"{oid}: lineageRefs {e.lineage_refs} != {needed.get(oid, 0)} (LIN-002)")
        if sum(self.lineage.values()) != self.lineage_bytes or any(tid not in self.tasks for tid in self.lineage):
            problems.append("lineage accounting is off (LIN-010)")
        for key, ex in self.exec_tasks.items():
            if ex.state == "registering" and not ex.registrations:
                problems.append(f"{key}: registering with nothing in flight")
        for r in self.remotes.values():
            if r.state == "dead" and r.incarnation and (r.peer, r.incarnation) not in self.fenced:
                problems.append(f"{r.peer}: dead but not fenced")
        if problems:
            raise InvariantViolation(f"{self.peer_id}: " + "; ".join(problems))
