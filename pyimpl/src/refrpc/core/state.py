"""The records a peer keeps: ownership-table entries, borrower entries, tasks, remotes.

Only :class:`refrpc.core.Peer` writes these (one mutation entry point); tests and
the simulator read them. Sets are kept as insertion-ordered dicts so that
anything produced from them is deterministic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .messages import (
    ActorId,
    Arg,
    Envelope,
    ErrorInfo,
    ForwardId,
    ObjectId,
    PeerId,
    RefDescriptor,
    SubmitTask,
    TaskId,
    TaskReply,
    Value,
)



#: What a task or actor takes from its executor: (CPU slots, ((resource, amount), ...)).
Demand = tuple[float, tuple[tuple[str, float], ...]]
#: A task's demand unless the program says otherwise: one CPU slot.
DEFAULT_DEMAND: Demand = (1.0, ())
#: What a task that takes nothing asks for (TASK-051).
NO_DEMAND: Demand = (0.0, ())

@dataclass(slots=True)
class Config:
    """Tunables with the spec's defaults (LIV-001, LIV-003, SES-003, SES-004, TASK-004)."""

    inline_threshold: int = 100 * 1024
    heartbeat_interval_ms: int = 250
    miss_limit: int = 6
    retransmit_ms: int = 200
    ack_delay_ms: int = 50
    window: int = 4096
    #: A session whose oldest message stays unacked this long is declared dead (SES-012).
    stall_ms: int = 10_000
    #: An unanswered Hello is given up after this long (LIV-015).
    handshake_timeout_ms: int = 10_000
    #: A leaving peer waits at most this long for its Goodbyes' acknowledgements (LIV-010).
    goodbye_linger_ms: int = 1_000
    #: Sessions opened by a remote's Hello that has sent nothing else yet (SEC-021).
    max_handshakes: int = 128
    #: Peer incarnations in session or handshaking at once, fenced ones not counted (SEC-021).
    max_sessions: int = 1024
    #: Grants one borrower incarnation may hold here; RegisterBorrower beyond is refused (SEC-008).
    max_grants_per_borrower: int = 1_000_000
    #: GetObjectStatus waits one remote peer may have outstanding here; one beyond is
    #: refused with ProtocolError(RESOURCE_EXHAUSTED) (SEC-009).
    max_status_waits: int = 100_000
    #: A method call for an actor this host has no record of waits this long for the
    #: actor's CreateActor (ACT-023), then is answered ACTOR_DIED (ACT-004).
    actor_create_wait_ms: int = 10_000
    #: Method calls held that way at once, from all callers; one more is answered
    #: ACTOR_DIED at once (ACT-023).
    max_held_actor_calls: int = 10_000
    #: Answer a Welcome at once with a Heartbeat when nothing else is queued (SES-022);
    #: only the exhaustive simulations turn it off, to keep their interleavings few
    #: (a real peer must answer so: SES-022 is a MUST).
    welcome_heartbeat: bool = True
    max_frame_bytes: int = 64 * 1024 * 1024
    features: tuple[str, ...] = ("core", "borrowing", "recovery", "actors")
    #: Entries kept per key in the story log.
    story_length: int = 64
    #: Keys (objects, tasks, peers) the story log remembers; the oldest is
    #: forgotten first, so a long-running peer's log stays bounded.
    story_keys: int = 4096
    #: Lineage kept for settled reconstructable tasks, in bytes of task specification
    #: (LIN-005, LIN-010); the oldest is evicted first when it is exceeded.
    max_lineage_bytes: int = 256 * 1024 * 1024
    #: ProtocolErrors sent to one peer incarnation per second at most (ERR-008); the
    #: offending messages are discarded (and their numbers consumed) all the same.
    max_protocol_errors_per_s: int = 100
    #: A queued task waits for a slot on the executor holding at least this many bytes
    #: of its ``ref`` arguments instead of going to another free executor (TASK-012).
    locality_bytes: int = 1024 * 1024
    #: Tasks per slot a submitter may have in flight at one executor while every one
    #: of them is young and of a quick function (TASK-020); 1 turns pipelining off.
    pipeline_depth: int = 64
    #: "Young" and "quick" for pipelining: sent, or last finished, within this many ms.
    pipeline_ms: int = 50
    #: Functions whose speed a submitter remembers (the oldest is forgotten first).
    speed_keys: int = 4096
    #: Peers whose death this peer never announces with PeerDeadNotice (LIV-030): a
    #: multi-host cluster's head, whose death every member detects itself (CLU-015).
    unannounced: tuple[str, ...] = ()
    #: Offer to relay what this peer fetches: GetObjectStatus(relay) (LOC-020).
    relay_fetches: bool = True
    #: Relays an owner lists in one ObjectStatus, most recent first; 0 lists none (LOC-021).
    relays_listed: int = 4
    #: Relays an owner remembers per object; the oldest is forgotten first (LOC-021).
    relays_kept: int = 16
    #: Askers a relay is listed first to before later relays come first: the fan-out of
    #: the tree the fetchers of one value form (LOC-021); 1 makes a chain.
    relay_fanout: int = 2

    @property
    def dead_after_ms(self) -> int:
        return self.heartbeat_interval_ms * self.miss_limit


@dataclass(slots=True)
class OwnedObject:
    """An ownership-table entry (OWN-003)."""

    object_id: ObjectId
    #: One of tables.OWNER_OBJECT's states.
    state: str
    #: Producing task (lineage, LIN-001); "" for put objects.
    task_id: TaskId = ""
    #: Value kept at the owner (inline values and put values).
    value: Value | None = None
    #: Peers holding a copy; the first is the primary (LOC-001).
    locations: dict[PeerId, None] = field(default_factory=dict)
    #: Peers assembling a copy that serve what they have, oldest first, each with how
    #: many askers it was listed to first (LOC-020, LOC-021); never copies (LOC-022).
    relays: dict[PeerId, int] = field(default_factory=dict)
    size: int = -1
    error: ErrorInfo | None = None
    #: For a failed object: the exception the task raised, as its executor sent it (TASK-018).
    cause: Value | None = None
    #: Handles the program on this peer holds.
    local_refs: int = 0
    #: Pending tasks this peer submitted that mention the object (BOR-006).
    submitted_task_refs: int = 0
    #: Owned objects whose value embeds this one (GC-002).
    contained_in: dict[ObjectId, None] = field(default_factory=dict)
    #: borrower -> {forward id -> requester} (BOR-003, BOR-012).
    borrowers: dict[PeerId, dict[ForwardId, PeerId]] = field(default_factory=dict)
    #: forward id -> the borrower incarnation the grant was recorded for: a grant dies
    #: with that incarnation only, not with another of the same PeerId (BOR-009).
    grant_incarnations: dict[ForwardId, int] = field(default_factory=dict)
    #: Entries whose producing task takes this object as an argument (LIN-002).
    lineage_refs: int = 0
    #: Holds taken while a nested ref of this value is being self-registered (BOR-008).
    pins: int = 0
    #: Refs nested in the value, held through contained_in while the value lives.
    nested: tuple[RefDescriptor, ...] = ()
    #: True once the value was reclaimed at least once (to answer FREED, OBJ-003).
    reclaimed: bool = False
    #: The producing task's lineage was evicted: the value can't be rebuilt (LIN-005).
    lineage_evicted: bool = False

    def in_scope(self) -> bool:
        """OWN-004: any of these keeps the value."""
        return bool(
            self.local_refs
            or self.submitted_task_refs
            or self.contained_in
            or self.borrowers
            or self.pins
        )


@dataclass(slots=True)
class BorrowedObject:
    """What a non-owner keeps about a ref it holds (BOR-001, GC-001)."""

    ref: RefDescriptor
    #: One of tables.BORROWER_OBJECT's states.
    state: str = "unresolved"
    value: Value | None = None
    locations: tuple[tuple[PeerId, str], ...] = ()
    #: The relays the owner listed with ``locations`` (LOC-021), tried first (FET-040).
    relays: tuple[tuple[PeerId, str], ...] = ()
    size: int = -1
    error: ErrorInfo | None = None
    local_refs: int = 0
    submitted_task_refs: int = 0
    contained_in: dict[ObjectId, None] = field(default_factory=dict)
    #: Tasks running here that received the ref in their arguments (BOR-001 b).
    task_holds: int = 0
    #: RegisterBorrower requests this peer sent for others, not yet answered (BOR-002).
    outgoing_registrations: int = 0
    #: Grants the owner recorded for this peer (BOR-001 a).
    grants: dict[ForwardId, None] = field(default_factory=dict)
    #: Forward id of this peer's own registration in flight (BOR-007, BOR-008).
    self_registration: ForwardId = ""
    #: Holds taken while a nested ref of this value is being self-registered (BOR-008).
    pins: int = 0
    #: A GetObjectStatus(wait) is outstanding at the owner.
    status_requested: bool = False
    #: This peer asked with ``relay`` = true: the owner may list it as a relay (LOC-020).
    relay_offered: bool = False

    @property
    def owner(self) -> PeerId:
        return self.ref.owner

    def holds(self) -> int:
        return (
            self.local_refs
            + self.submitted_task_refs
            + len(self.contained_in)
            + self.task_holds
            + self.outgoing_registrations
            + self.pins
            + (1 if self.self_registration else 0)
        )


@dataclass(slots=True)
class OwnerTask:
    """A task this peer submitted: its spec is the lineage of its returns (LIN-001)."""

    spec: SubmitTask
    #: One of tables.OWNER_TASK's states.
    state: str
    executor: PeerId
    #: Object ids (owned or borrowed) the args mention, with multiplicity (BOR-006).
    arg_refs: tuple[ObjectId, ...]
    #: Whether arg_refs currently count in submitted_task_refs.
    holding_args: bool = True
    #: Whether arg_refs owned here count in lineage_refs (retryable tasks only).
    lineage_counted: bool = False
    #: Whether the task counts in its executor's load (TASK-012): sent, not an actor
    #: call, and not yet answered.
    counted: bool = False
    #: CPU slots and named resources it takes while it runs (TASK-012).
    demand: "Demand" = (1.0, ())
    #: The function as TASK-020's speed rule counts it (Submit.speed_key); empty: the name.
    speed_key: str = ""


@dataclass(slots=True)
class ExecTask:
    """A task this peer executes for ``owner`` (EXECUTOR_TASK)."""

    spec: SubmitTask
    owner: PeerId
    owner_incarnation: int
    state: str
    #: Object ids this task holds through task holds (BOR-001 b).
    held: tuple[ObjectId, ...] = ()
    #: REF arguments still waiting for their value (arg index -> object id).
    waiting: dict[int, ObjectId] = field(default_factory=dict)
    #: RegisterBorrower requests that must be answered before the reply (BOR-002, BOR-007).
    registrations: dict[ForwardId, ObjectId] = field(default_factory=dict)
    reply: TaskReply | None = None
    #: Session seq the reply went out with; forgotten once acked (RPC-002).
    reply_seq: int = 0
    cancelled: bool = False
    #: The task id this peer's runtime knows the task by (RunTask, StopTask,
    #: TaskFinished): the task id, unless another submitter's task of that id and
    #: attempt was here first (TASK-068); then one made unique here.
    run_id: TaskId = ""


@dataclass(slots=True)
class OutgoingRegistration:
    """A RegisterBorrower this peer sent and waits on."""

    object_id: ObjectId
    borrower: PeerId
    #: ("reply", exec task key) or ("self", container object id) or ("retain", exec key).
    purpose: tuple


@dataclass(slots=True)
class OwnedActor:
    actor_id: ActorId
    class_name: str
    args: tuple[Arg, ...]
    host: PeerId
    state: str = "pending"
    max_restarts: int = 0
    restarts: int = 0
    next_seq: int = 0
    error: ErrorInfo | None = None
    #: Refs the creation arguments mention, held while the creation is pending (ACT-001).
    arg_refs: tuple[ObjectId, ...] = ()
    holding_args: bool = False
    #: Calls the host may run at once, as sent in CreateActor (0 means 1, ACT-013).
    max_concurrency: int = 0
    #: Whether its handle object was reclaimed: no process can call it any more.
    handles_gone: bool = False
    #: CPU slots and named resources it takes from its host while alive (TASK-012),
    #: and whether they are counted there now.
    demand: "Demand" = (0.0, ())
    reserved: bool = False


@dataclass(slots=True)
class HostedActor:
    actor_id: ActorId
    owner: PeerId
    owner_incarnation: int
    state: str = "starting"
    #: caller incarnation -> highest actor_seq already started (ACT-003).
    last_run: dict[tuple[PeerId, int], int] = field(default_factory=dict)
    #: Calls not yet started, in arrival order.
    queue: deque = field(default_factory=deque)
    #: Calls started and not replied yet (at most ``max_concurrency``, ACT-013).
    running: dict = field(default_factory=dict)
    #: How many calls may run at once (CreateActor.maxConcurrency, at least 1).
    max_concurrency: int = 1
    #: Once dead: the error its calls are answered with (ACT-004), naming why it died.
    death: ErrorInfo | None = None


@dataclass(slots=True)
class Remote:
    """Another peer incarnation as this peer sees it (PEER table, SES-*)."""

    peer: PeerId
    address: str
    incarnation: int = 0
    #: One of tables.PEER's states.
    state: str = "connecting"
    features: tuple[str, ...] = ()
    #: Whether ``features`` holds every feature this implementation knows (no per-message check needed).
    all_features: bool = False
    last_heard_ms: int = 0
    last_sent_ms: int = 0
    hello_sent_ms: int = -1
    #: False while the session is a handshake in progress: opened by the remote's Hello,
    #: and nothing else has come from it or gone to it in the session yet (SEC-021).
    confirmed: bool = True
    #: Session out side (SES-001, SES-003).
    out_seq: int = 0
    unacked: dict[int, Envelope] = field(default_factory=dict)
    #: When each unacked message was first sent (SES-012).
    unacked_at: dict[int, int] = field(default_factory=dict)
    #: Requests sent on this session and not yet answered: seq -> (kind, key) (ERR-003).
    requests: dict[int, tuple[str, object]] = field(default_factory=dict)
    #: The seq each SubmitTask in ``requests`` went out with, by task id: its TaskReply
    #: answers it, and both entries go (ERR-003 keeps only unanswered requests).
    submit_seqs: dict[str, int] = field(default_factory=dict)
    #: The heartbeat interval the remote announced; 0 until known (LIV-007).
    heartbeat_interval_ms: int = 0
    #: The frame limit the remote announced; 0 until known (FET-007, ZMQ-007).
    max_frame_bytes: int = 0
    #: The minor version negotiated when the session opened (HS-003); a repeat Hello
    #: is answered with it (HS-009, HS-036).
    minor: int = 0
    last_progress_ms: int = 0
    #: The current retransmission interval: doubles while no ack advances, back to the
    #: configured one when it does (SES-003); 0 means the configured one.
    retransmit_every_ms: int = 0
    queued: list = field(default_factory=list)
    #: Session in side (SES-002).
    delivered: int = 0
    buffered: dict[int, Envelope] = field(default_factory=dict)
    ack_owed_since_ms: int = -1
    #: ERR-008: the start of the current one-second window and the ProtocolErrors sent in it.
    errors_window_ms: int = -1
    errors_in_window: int = 0
    #: Known to run tasks (cluster membership) with this many slots.
    slots: int = 0
    #: Tasks this peer has sent it and not yet seen answered (placement load).
    load: int = 0
    #: Those tasks by id, oldest first -> (time sent in ms, whether its function is
    #: known to finish quickly): pipelining beyond the slots needs all of them young
    #: and quick (TASK-020).
    in_flight: dict[str, tuple[int, bool]] = field(default_factory=dict)
    #: How many of ``in_flight`` are not known to be quick.
    slow_in_flight: int = 0
    #: The functions of ``in_flight`` (their speed keys) -> how many: a task is only
    #: pipelined behind tasks of its own function (TASK-020).
    keys_in_flight: dict[str, int] = field(default_factory=dict)
    #: CPU slots ("CPU") and named resources this peer's counted tasks and live
    #: actors take there now (TASK-012).
    used: dict[str, float] = field(default_factory=dict)
    #: What its latest adopted TaskReply said its store could still take without
    #: spilling, less the missing argument bytes of the tasks sent to it since;
    #: -1 when unknown (OBJ-060, TASK-041).
    store_free: int = -1
