"""Stimuli (what happens to a peer) and instructions (what the peer must do).

The core is driven only through :meth:`refrpc.core.Peer.handle`, which takes
stimuli and returns instructions; both are small frozen dataclasses, and every
one carries the ``stimulus_id`` of the stimulus that caused it, so a trace or a
log line can always be tied back to its cause.

Ids (task ids, object ids) are chosen by the shell with an :class:`IdAllocator`
before the stimulus is made, so that ``handle`` stays a pure function of the
state and its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import (
    ActorId,
    Envelope,
    ErrorInfo,
    Message,
    ObjectId,
    PeerId,
    PeerSummary,
    RefDescriptor,
    TaskId,
    Value,
)


@dataclass(frozen=True, slots=True)
class Stimulus:
    stimulus_id: str


# ---------------------------------------------------------------- network and time
@dataclass(frozen=True, slots=True)
class Tick(Stimulus):
    """Time passed; ``now_ms`` is monotonic milliseconds from the shell's clock."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Receive(Stimulus):
    """A frame arrived and decoded into ``envelope``."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ReceiveMalformed(Stimulus):
    """A frame arrived that did not decode (GEN-004). ``sender`` is '' if unknown."""

    sender: PeerId
    sender_incarnation: int
    error: ErrorInfo
    #: The envelope's sequence number if it could be read, else 0 (GEN-010).
    seq: int = 0
    #: The addressee and its incarnation as the envelope names them; None if not read.
    #: They are checked as SES-016 says before anything is answered (GEN-004).
    receiver: PeerId | None = None
    receiver_incarnation: int | None = None
    #: For a malformed answer: its message type name and correlating key, if they
    #: could be read (GEN-030), e.g. ``("TaskReply", (task_id, attempt))``; else None.
    answer: tuple[str, tuple[object, ...]] | None = None


@dataclass(frozen=True, slots=True)
class AddPeer(Stimulus):
    """Cluster membership: ``peer`` at ``address`` can run tasks (``slots`` at once,
    its CPUs) and offers ``resources`` (name -> amount, e.g. ``(("gpu", 1.0),)``).
    Executors with the same ``host`` pool their slots (TASK-040); "" is a host of
    its own. Naming the peer itself, it says which host this peer is on (its
    copies are then local to that host's executors, TASK-041) and what it offers:
    its own tasks go to itself when no other live executor could hold them
    (TASK-023)."""

    peer: PeerId
    address: str
    slots: int = 1
    resources: tuple[tuple[str, float], ...] = ()
    host: str = ""


@dataclass(frozen=True, slots=True)
class Connect(Stimulus):
    """Open a session with ``peer`` at ``address`` now, so its death gets noticed (REF-006)."""

    peer: PeerId
    address: str
    incarnation: int = 0


@dataclass(frozen=True, slots=True)
class PeerFailed(Stimulus):
    """The shell knows a peer incarnation is gone (e.g. a supervised process exited).

    With ``successor``, the shell has started a new incarnation of the same peer at
    ``successor_address``: a session with it opens in the same step, so work that
    lost its executor (retries, queued tasks) goes to it instead of failing for
    want of a live executor."""

    peer: PeerId
    incarnation: int
    reason: str = "exited"
    successor: int = 0
    successor_address: str = ""


@dataclass(frozen=True, slots=True)
class SendData(Stimulus):
    """Send a data-plane message (FetchRequest/FetchChunk) the shell produced."""

    peer: PeerId
    incarnation: int
    address: str
    message: Message


@dataclass(frozen=True, slots=True)
class Shutdown(Stimulus):
    """Leave the cluster cleanly (LIV-006)."""

    reason: str = "shutdown"


# ---------------------------------------------------------------- the user's program
@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One argument of a call, in local terms.

    Exactly one of ``value`` (by value) or ``object_id`` (a ref the caller holds)
    is set; ``shared`` passes the ref itself (a SharedRef) instead of its value.
    """

    value: Value | None = None
    object_id: ObjectId = ""
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Submit(Stimulus):
    """The program called ``f.remote(...)``; this peer will own the returns."""

    task_id: TaskId
    function: str
    args: tuple[ArgSpec, ...]
    return_ids: tuple[ObjectId, ...]
    max_retries: int = 0
    retry_exceptions: bool = False
    actor_id: ActorId = ""
    #: Run on this peer if set (tests, actors); otherwise placement decides.
    executor: PeerId = ""
    #: What the task takes from its executor while it runs (TASK-012): CPU slots
    #: (0: none, so it never waits for a slot) and named resources.
    num_cpus: float = 1.0
    resources: tuple[tuple[str, float], ...] = ()
    #: Which function this is for TASK-020's speed rule, when ``function`` alone does not
    #: say: a program that ships code as an argument of one runner function names the
    #: code shipped (its stored object's id), so that each shipped function is judged
    #: by its own tasks. Empty: ``function``.
    speed_key: str = ""


@dataclass(frozen=True, slots=True)
class Put(Stimulus):
    """The program called ``put``: a new owned object (OWN-001).

    Small values are kept in the table (``stored`` false). For a large value the
    shell has already written it to the local store; ``value`` then carries only
    its encoding and nested refs, and ``size`` its length.
    """

    object_id: ObjectId
    value: Value
    stored: bool = False
    size: int = -1


@dataclass(frozen=True, slots=True)
class AddRef(Stimulus):
    """The program made a new handle to ``object_id`` (OWN-003 local_refs)."""

    object_id: ObjectId


@dataclass(frozen=True, slots=True)
class DropRef(Stimulus):
    """A handle to ``object_id`` went out of scope."""

    object_id: ObjectId


@dataclass(frozen=True, slots=True)
class Get(Stimulus):
    """The program wants the value of ``object_id``; answered by a GetResult.

    ``urgent``: the caller runs inside a task and so may hold an executor's slot
    while it waits; a queued task of this peer that makes the object is sent at once
    (TASK-021), so that nested waiting cannot deadlock on the queue.
    """

    request_id: int
    object_id: ObjectId
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Materialize(Stimulus):
    """The shell deserialized the value of ``container`` and the program now holds
    handles to its nested refs (BOR-008). One handle each is added."""

    container: ObjectId
    refs: tuple[RefDescriptor, ...]


@dataclass(frozen=True, slots=True)
class CopyStored(Stimulus):
    """The store here now holds a secondary copy of a foreign object (LOC-002)."""

    object_id: ObjectId
    size: int


@dataclass(frozen=True, slots=True)
class CopySpilled(Stimulus):
    """The store here wrote its copy of ``object_id`` to disk (``spilled``), or
    brought it back into memory or freed it (not ``spilled``) (OBJ-031, INT-020)."""

    object_id: ObjectId
    spilled: bool


@dataclass(frozen=True, slots=True)
class CopyLost(Stimulus):
    """The store here lost or evicted its copy of ``object_id`` (LOC-003)."""

    object_id: ObjectId


@dataclass(frozen=True, slots=True)
class FetchFailed(Stimulus):
    """The shell could fetch ``object_id`` from none of the locations it was given.

    With ``task_id`` it was an argument of that running task (OBJ-013): the core
    asks the owner again and re-issues RunTask once it knows more.
    """

    object_id: ObjectId
    task_id: TaskId = ""
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class CreateActorRequest(Stimulus):
    actor_id: ActorId
    class_name: str
    args: tuple[ArgSpec, ...]
    executor: PeerId = ""
    max_restarts: int = 0
    #: How many calls may run at once on the host (ACT-013); 0 means 1.
    max_concurrency: int = 0
    #: What the actor takes from its host for its whole life (TASK-012).
    num_cpus: float = 0.0
    resources: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class KillActorRequest(Stimulus):
    """The actor's owner wants the actor stopped (ACT-006)."""

    actor_id: ActorId


@dataclass(frozen=True, slots=True)
class Cancel(Stimulus):
    task_id: TaskId


@dataclass(frozen=True, slots=True)
class Introspect(Stimulus):
    """Ask ``peer`` for its ownership table (INT-001), or with ``summary`` for its
    summary instead (INT-006); answered by IntrospectResult."""

    request_id: int
    peer: PeerId
    summary: bool = False


# ---------------------------------------------------------------- the executor's side
@dataclass(frozen=True, slots=True)
class TaskResult:
    """One return of a finished task, as the shell produced it."""

    value: Value | None = None
    #: True if the shell already put the value in the local store (large value).
    stored: bool = False
    size: int = 0
    #: The task failed: its returns fail with this error; ``value``, if set with it,
    #: is the exception itself (``pickle``, no nested refs), sent along (TASK-018).
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskFinished(Stimulus):
    """A task this peer ran has finished with ``results`` (one per return id).

    ``retained`` lists refs from the task's arguments that the program still
    holds after the task (kept in actor state); they get BOR-007 registration.
    """

    task_id: TaskId
    attempt: int
    results: tuple[TaskResult, ...]
    retained: tuple[ObjectId, ...] = ()
    #: The task's return ids, as the shell ran it (for the shell's own records: the
    #: core may have dropped the task meanwhile, FATE-003, and still frees what was stored).
    return_ids: tuple[ObjectId, ...] = ()
    #: Bytes the store here can still take without spilling, the returns stored;
    #: -1 without a store limit. Sent in the reply (OBJ-060).
    store_free_bytes: int = -1


@dataclass(frozen=True, slots=True)
class ActorReady(Stimulus):
    actor_id: ActorId
    error: ErrorInfo | None = None


# ================================================================ instructions
@dataclass(frozen=True, slots=True)
class Instruction:
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class SendFrame(Instruction):
    """Encode ``envelope`` and send it to ``address`` (connect first if needed)."""

    address: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class ResolvedArg:
    """An argument ready for the function: a value, a location to fetch, or a ref."""

    value: Value | None = None
    #: For a by-ref argument whose value is stored elsewhere: fetch it from one of these.
    object_id: ObjectId = ""
    locations: tuple[tuple[PeerId, str], ...] = ()
    size: int = -1
    #: For a SHARED argument: the ref itself.
    ref: RefDescriptor | None = None


@dataclass(frozen=True, slots=True)
class RunTask(Instruction):
    task_id: TaskId
    attempt: int
    function: str
    args: tuple[ResolvedArg, ...]
    #: Where to store large results (the object ids the owner allocated).
    return_ids: tuple[ObjectId, ...]
    owner: PeerId
    actor_id: ActorId = ""
    #: CPU slots the task takes while it runs, in ten-thousandths (TASK-050).
    cpu_demand: int = 10000
    #: Named resources it takes while it runs: (name, ten-thousandths), each name once.
    resources: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StopTask(Instruction):
    """Stop running this task if you can; its result will be ignored (TASK-008)."""

    task_id: TaskId
    attempt: int


@dataclass(frozen=True, slots=True)
class GetResult(Instruction):
    """The answer to a :class:`Get`: a value, locations to fetch from, or an error."""

    request_id: int
    object_id: ObjectId
    value: Value | None = None
    locations: tuple[tuple[PeerId, str], ...] = ()
    size: int = -1
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class FreeCopy(Instruction):
    """Drop the local store's copy of ``object_id`` (GC-004)."""

    object_id: ObjectId


@dataclass(frozen=True, slots=True)
class DeliverData(Instruction):
    """A data-plane message (FetchRequest/FetchChunk) for the shell's store."""

    sender: PeerId
    sender_incarnation: int
    sender_address: str
    message: Message


@dataclass(frozen=True, slots=True)
class StartActor(Instruction):
    actor_id: ActorId
    class_name: str
    args: tuple[ResolvedArg, ...]
    #: The peer that asked for the actor (whose session decides what may run, SEC-006).
    owner: PeerId = ""
    #: How many of its calls the core may hand over at once (ACT-013).
    max_concurrency: int = 1
    #: CPU slots the actor holds for its life, in ten-thousandths (ACT-026, ACT-027).
    cpu_demand: int = 0
    #: Named resources it holds for its life: (name, ten-thousandths), each name once.
    resources: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StopActor(Instruction):
    actor_id: ActorId


@dataclass(frozen=True, slots=True)
class ActorStateChanged(Instruction):
    """For the actor's owner: the actor is now ``state`` (ACT-002)."""

    actor_id: ActorId
    state: str
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class PeerDeclaredDead(Instruction):
    """This peer fenced ``peer``/``incarnation``: close connections to it.

    ``source`` says how the death was learnt, as the trace's ``peer-declared-dead``
    record does (``detected``, ``goodbye``, ``notice``, ``external``, ...)."""

    peer: PeerId
    incarnation: int
    reason: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class Disconnect(Instruction):
    """This peer forgot a handshake in progress (SEC-021): close the connection to ``address``.

    Nothing was fenced and no death effect runs: the remote had sent nothing but its ``Hello``.
    """

    peer: PeerId
    address: str


@dataclass(frozen=True, slots=True)
class FailStop(Instruction):
    """This peer was declared dead by others (LIV-005): the process must stop now."""

    reason: str


@dataclass(frozen=True, slots=True)
class IntrospectResult(Instruction):
    request_id: int
    peer: PeerId
    entries: tuple  # tuple[TableEntry, ...]
    error: ErrorInfo | None = None
    #: The peer's PeerSummary when one was asked for and sent (INT-006); None otherwise.
    summary: PeerSummary | None = None


@dataclass(frozen=True, slots=True)
class RemoteError(Instruction):
    """A peer reported a protocol error about something we sent, on its live session.

    ``related_seq`` is the ``ProtocolError``'s: 0 where it names no sequenced
    message (GEN-012). The shell acts on one such error: ``FEATURE_NOT_NEGOTIATED``
    with ``related_seq`` 0 refuses the fetcher's ``acceptLz4`` (FET-067)."""

    peer: PeerId
    error: ErrorInfo
    related_seq: int = 0


@dataclass(frozen=True, slots=True)
class TraceEvent(Instruction):
    """A local event for the shell's trace (trace-format.md section 4, TRC-008).

    Emitted only while :attr:`Peer.trace_events <refrpc.core.Peer.trace_events>`
    is on. ``name`` is from the spec's event registry (``transition``,
    ``discarded``, ``peer-declared-dead``, ``hold``, ``grant-added``...) or
    begins with ``x-``; ``detail`` holds the registry's keys for that event with
    JSON-ready values. The shell adds what only it knows: the record number of
    the ``recv`` record a ``discarded`` event refers to, and the ``cause``
    (this instruction's ``stimulus_id``).
    """

    name: str
    object_id: ObjectId = ""
    task_id: TaskId = ""
    detail: dict = field(default_factory=dict)


class IdAllocator:
    """Allocates ids of the RECOMMENDED form ``{peer}.{incarnation:x}.{n}`` (ID-003).

    Kept outside :class:`Peer` so that allocating an id is not a state change of
    the protocol; the shell owns one per peer incarnation.
    """

    def __init__(self, peer: PeerId, incarnation: int) -> None:
        self._prefix = f"{peer}.{incarnation:x}."
        self._next = 0

    def next(self) -> str:
        self._next += 1
        return f"{self._prefix}{self._next}"

    def task(self, num_returns: int) -> tuple[TaskId, tuple[ObjectId, ...]]:
        task_id = self.next()
        return task_id, tuple(f"{task_id}.r{i}" for i in range(num_returns))
