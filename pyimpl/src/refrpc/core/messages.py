"""The RefRPC wire messages as plain, immutable Python values.

These dataclasses are the protocol's vocabulary inside the core. Each one maps
one-to-one onto a struct in ``schema/refrpc.capnp`` (the codec converts between
them) and onto a section of ``spec/messages.md``. Field docs are written from
the sender's point of view, as the schema comments are.

Identifiers are opaque text (see spec ``ID-*``): ``PeerId`` names a peer,
``ObjectId``/``TaskId``/``ForwardId``/``ActorId`` are allocated by the peer
named in the spec and are never reused, not even across incarnations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

PeerId = str
ObjectId = str
TaskId = str
ForwardId = str
ActorId = str

#: Protocol version spoken by this implementation (spec ``HS-*``).
PROTOCOL_MAJOR = 0
PROTOCOL_MINOR = 1


class Feature(str, enum.Enum):
    """Feature flags (profiles) negotiated in the handshake (spec ``HS-004``)."""

    CORE = "core"
    BORROWING = "borrowing"
    RECOVERY = "recovery"
    ACTORS = "actors"
    PYTHON_PICKLE = "python-pickle"
    LZ4 = "lz4"


class Encoding(str, enum.Enum):
    """How a ``Value``'s bytes are to be read (spec ``VAL-*``)."""

    PORTABLE = "portable"  #: a Cap'n Proto ``Portable`` tree, readable by every peer
    RAW = "raw"  #: uninterpreted bytes
    PICKLE = "pickle"  #: Python pickle protocol 5; needs feature python-pickle


class ErrorCode(str, enum.Enum):
    """The error registry (spec ``errors.md``); values are the wire names."""

    PROTOCOL_VERSION = "protocol_version"
    MALFORMED = "malformed"
    UNKNOWN_MESSAGE = "unknown_message"
    WRONG_STATE = "wrong_state"
    NOT_OWNER = "not_owner"
    UNKNOWN_OBJECT = "unknown_object"
    OBJECT_FREED = "object_freed"
    OBJECT_LOST = "object_lost"
    OWNER_DIED = "owner_died"
    PEER_DIED = "peer_died"
    DECLARED_DEAD = "declared_dead"
    TASK_FAILED = "task_failed"
    WORKER_DIED = "worker_died"
    TASK_CANCELLED = "task_cancelled"
    UNKNOWN_FUNCTION = "unknown_function"
    ACTOR_DIED = "actor_died"
    FEATURE_NOT_NEGOTIATED = "feature_not_negotiated"
    LINEAGE_EVICTED = "lineage_evicted"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    #: The sender could not read the original code (``ERR-002``); only ever
    #: produced when re-sending such an error (``ERR-007``).
    UNRECOGNIZED = "unrecognized"
    OBJECT_STORE_FULL = "object_store_full"


#: Room left in a frame for the envelope, ids and the rest of a message around its
#: values, when deciding whether a message fits the receiver's limit (ZMQ-007,
#: ZMQ-022, ZMQ-023).
FRAME_HEADROOM = 64 << 10

@dataclass(frozen=True, slots=True)
class RefDescriptor:
    """Everything a receiver needs to use a ref it has never seen (spec ``REF-*``)."""

    object_id: ObjectId
    owner: PeerId
    owner_incarnation: int
    owner_address: str
    #: Size of the value in bytes if the sender knows it, else -1.
    size_hint: int = -1
    #: The grant under which the receiver holds this ref (``BOR-*``); empty
    #: when the receiver is covered by the sender's task hold or is the owner.
    forward_id: ForwardId = ""


@dataclass(frozen=True, slots=True)
class Value:
    """A serialized value plus the refs nested inside it (spec ``VAL-*``)."""

    encoding: Encoding
    data: bytes
    #: Out-of-band buffers (pickle protocol 5); travel as separate frames.
    buffers: tuple[bytes, ...] = ()
    #: Refs contained in this value, in the order the encoding numbers them.
    nested: tuple[RefDescriptor, ...] = ()

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(b) for b in self.buffers)


class ArgKind(str, enum.Enum):
    VALUE = "value"  #: passed by value
    REF = "ref"  #: passed by reference, dereferenced for the callee
    SHARED = "shared"  #: the callee receives the ref itself and may keep it


@dataclass(frozen=True, slots=True)
class Arg:
    kind: ArgKind
    value: Value | None = None
    ref: RefDescriptor | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A typed error: a registry code plus human detail (spec ``ERR-*``)."""

    code: ErrorCode
    message: str = ""
    #: Requirement id the error enforces, when there is one.
    requirement: str = ""
    #: Remote traceback or other detail for humans; never parsed.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One row of an ownership-table dump (``IntrospectReply``)."""

    object_id: ObjectId
    owner: PeerId
    role: str  #: "owner" or "borrower"
    state: str
    local_refs: int
    submitted_task_refs: int
    contained_in: tuple[ObjectId, ...]
    borrowers: tuple[PeerId, ...]
    locations: tuple[PeerId, ...]
    lineage_refs: int
    size: int
    #: My own copy of it is spilled to disk (``INT-020``).
    spilled: bool = False


# ---------------------------------------------------------------- handshake
@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a new session: who I am and what I speak (``HS-001``)."""

    protocol_major: int
    protocol_minor: int
    address: str
    features: tuple[str, ...]
    max_frame_bytes: int
    heartbeat_interval_ms: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """Accepts a Hello; ``features`` is the set both sides will use (``HS-004``)."""

    protocol_major: int
    protocol_minor: int
    address: str
    features: tuple[str, ...]
    max_frame_bytes: int
    heartbeat_interval_ms: int


@dataclass(frozen=True, slots=True)
class Goodbye:
    """I am leaving cleanly; treat my objects as if I had died (``LIV-006``)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """I am alive. Carries nothing; the envelope carries the cumulative ack."""


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """You sent something I could not accept (``ERR-001``)."""

    error: ErrorInfo
    #: Session sequence number of the offending message, 0 if unknown.
    related_seq: int = 0


# ---------------------------------------------------------------- tasks
#: What one slot, or one unit of a named resource, is in a demand on the wire (``TASK-050``).
DEMAND_UNIT = 10000


@dataclass(frozen=True, slots=True)
class ResourceAmount:
    """An amount of a named resource a task takes, in ten-thousandths (``TASK-050``)."""

    name: str
    amount: int


@dataclass(frozen=True, slots=True)
class SubmitTask:
    """Run ``function`` for me; I own ``return_ids`` (``TASK-*``, ``OWN-001``)."""

    task_id: TaskId
    function: str
    args: tuple[Arg, ...]
    return_ids: tuple[ObjectId, ...]
    #: Re-executions allowed after the executor dies (``RPC-004``).
    max_retries: int = 0
    #: Whether a task that raised may be retried too.
    retry_exceptions: bool = False
    #: 1 for the first execution, +1 for each retry or reconstruction.
    attempt: int = 1
    #: Non-empty for an actor method call.
    actor_id: ActorId = ""
    #: Position of this call in the caller's order for ``actor_id`` (``ACT-003``).
    actor_seq: int = 0
    #: CPU slots the task takes at the executor, in ten-thousandths (``TASK-050``).
    cpu_demand: int = 10000
    #: Named resources it takes there, each named once (``TASK-054``).
    resources: tuple[ResourceAmount, ...] = ()


class ReturnKind(str, enum.Enum):
    INLINE = "inline"
    STORED = "stored"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ReturnValue:
    object_id: ObjectId
    kind: ReturnKind
    value: Value | None = None
    #: For STORED: the peer holding the primary copy, and its size.
    location: PeerId = ""
    size: int = 0
    #: For STORED: the refs nested in the stored value, so the owner can hold them (GC-002).
    nested: tuple[RefDescriptor, ...] = ()
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class TaskReply:
    """Your task finished (``TASK-005``)."""

    task_id: TaskId
    attempt: int
    returns: tuple[ReturnValue, ...]
    #: Shared refs from the task's arguments that I still hold after the task and
    #: for which the owner has already granted me a borrow (``BOR-007``).
    retained: tuple[RefDescriptor, ...] = ()
    #: Bytes my store could still take in memory without spilling, as I made this
    #: reply; -1 when I have no store limit or do not say (``OBJ-060``).
    store_free_bytes: int = -1


@dataclass(frozen=True, slots=True)
class CancelTask:
    """Don't run (or stop) this task; its results are no longer wanted (``TASK-008``)."""

    task_id: TaskId


# ---------------------------------------------------------------- borrowing
@dataclass(frozen=True, slots=True)
class RegisterBorrower:
    """Owner: count ``borrower`` as holding ``object_id`` under ``forward_id`` (``BOR-002``)."""

    object_id: ObjectId
    borrower: PeerId
    borrower_incarnation: int
    borrower_address: str
    forward_id: ForwardId


@dataclass(frozen=True, slots=True)
class BorrowerRegistered:
    """Reply to RegisterBorrower: granted, or refused with ``error`` (``BOR-003``)."""

    object_id: ObjectId
    forward_id: ForwardId
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class BorrowRelease:
    object_id: ObjectId
    forward_ids: tuple[ForwardId, ...]


@dataclass(frozen=True, slots=True)
class ReleaseBorrows:
    """I no longer hold these refs under these grants (``BOR-005``); batched."""

    releases: tuple[BorrowRelease, ...]


@dataclass(frozen=True, slots=True)
class ConfirmBorrow:
    """Owner to a borrower whose forwarder died: did the ref ever reach you? (``BOR-010``)."""

    object_id: ObjectId
    forward_id: ForwardId
    forwarder: PeerId
    forwarder_incarnation: int


@dataclass(frozen=True, slots=True)
class BorrowConfirmed:
    """Reply to ConfirmBorrow; ``held`` false releases the grant (``BOR-011``)."""

    object_id: ObjectId
    forward_id: ForwardId
    held: bool


# ---------------------------------------------------------------- objects
class ObjectState(str, enum.Enum):
    """An object's state as the owner reports it on the wire (``OBJ-*``)."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"
    FREED = "freed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class GetObjectStatus:
    """Owner: tell me about this object; with ``wait``, reply once it is settled (``OBJ-003``)."""

    object_id: ObjectId
    wait: bool = True
    #: The asker is about to fetch and serves what it receives meanwhile (``LOC-020``).
    relay: bool = False


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    """The owner's answer about an object (``OBJ-004``)."""

    object_id: ObjectId
    state: ObjectState
    size: int = -1
    locations: tuple[PeerId, ...] = ()
    #: Addresses matching ``locations``, so the asker can connect.
    location_addresses: tuple[str, ...] = ()
    value: Value | None = None
    error: ErrorInfo | None = None
    #: Peers assembling a copy that serve what they have, most recent first (``LOC-021``).
    relays: tuple[PeerId, ...] = ()
    #: Addresses matching ``relays``.
    relay_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddLocation:
    """Owner: I now hold a secondary copy of your object (``LOC-002``)."""

    object_id: ObjectId
    size: int


@dataclass(frozen=True, slots=True)
class RemoveLocation:
    """Owner: I no longer hold a copy of your object (evicted or lost) (``LOC-003``)."""

    object_id: ObjectId


@dataclass(frozen=True, slots=True)
class FreeObjects:
    """From the owner: drop your copies of these objects (``GC-004``)."""

    object_ids: tuple[ObjectId, ...]


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Send me bytes [offset, offset+length) of your copy (``FET-*``); length -1 = rest."""

    object_id: ObjectId
    request_id: int
    offset: int = 0
    length: int = -1
    chunk_bytes: int = 1 << 20
    accept_lz4: bool = False


@dataclass(frozen=True, slots=True)
class FetchChunk:
    """One chunk of a fetched value; ``error`` set if I can't serve it (``FET-004``)."""

    object_id: ObjectId
    request_id: int
    offset: int
    total_size: int
    last: bool
    lz4: bool = False
    data: bytes = b""
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class PeerDeadNotice:
    """I have declared this peer incarnation dead; fence it (``LIV-004``)."""

    peer: PeerId
    incarnation: int
    reason: str = ""


# ---------------------------------------------------------------- actors
@dataclass(frozen=True, slots=True)
class CreateActor:
    """Host an actor of ``class_name``; I own it (``ACT-001``)."""

    actor_id: ActorId
    class_name: str
    args: tuple[Arg, ...]
    max_restarts: int = 0
    #: How many of the actor's calls may run at once; 0 means 1 (ACT-013).
    max_concurrency: int = 0
    #: CPU slots the actor holds at its host for its life, in ten-thousandths (``ACT-026``).
    cpu_demand: int = 0
    #: Named resources it holds there for its life, each named once (``ACT-026``, ``TASK-054``).
    resources: tuple[ResourceAmount, ...] = ()


class ActorState(str, enum.Enum):
    ALIVE = "alive"
    RESTARTING = "restarting"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class ActorStatus:
    """The actor's host reports a state change to the actor's owner (``ACT-002``)."""

    actor_id: ActorId
    state: ActorState
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class KillActor:
    """From the actor's owner: stop the actor (``ACT-006``)."""

    actor_id: ActorId


# ---------------------------------------------------------------- introspection
@dataclass(frozen=True, slots=True)
class StateCount:
    """How many entries are in one state (``PeerSummary``)."""

    state: str
    count: int


@dataclass(frozen=True, slots=True)
class ActorEntry:
    """One actor in a ``PeerSummary``: ``peer`` is its owner (hosted) or host (owned)."""

    actor_id: ActorId
    peer: PeerId = ""
    state: str = ""
    class_name: str = ""


@dataclass(frozen=True, slots=True)
class PeerSummary:
    """What a peer is doing, counted (``INT-006``, ``INT-009``)."""

    owned_tasks: tuple[StateCount, ...] = ()
    executing_tasks: tuple[StateCount, ...] = ()
    hosted_actors: tuple[ActorEntry, ...] = ()
    owned_actors: tuple[ActorEntry, ...] = ()
    owned_objects: int = 0
    borrowed_objects: int = 0


@dataclass(frozen=True, slots=True)
class IntrospectRequest:
    """Dump your ownership table to me (``INT-001``), or your summary (``INT-006``)."""

    request_id: int
    summary: bool = False


@dataclass(frozen=True, slots=True)
class IntrospectReply:
    request_id: int
    entries: tuple[TableEntry, ...]
    summary: PeerSummary | None = None


Message = Union[
    Hello,
    Welcome,
    Goodbye,
    Heartbeat,
    ProtocolError,
    SubmitTask,
    TaskReply,
    CancelTask,
    RegisterBorrower,
    BorrowerRegistered,
    ReleaseBorrows,
    ConfirmBorrow,
    BorrowConfirmed,
    GetObjectStatus,
    ObjectStatus,
    AddLocation,
    RemoveLocation,
    FreeObjects,
    FetchRequest,
    FetchChunk,
    PeerDeadNotice,
    CreateActor,
    ActorStatus,
    KillActor,
    IntrospectRequest,
    IntrospectReply,
]

#: Every message type, in schema union order (the codec relies on this order).
MESSAGE_TYPES: tuple[type, ...] = Message.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What travels on a session: routing, ordering and one message (``SES-*``).

    ``seq`` numbers the messages one peer incarnation sends to another, from 1;
    0 marks messages outside the session (Hello, Welcome, ProtocolError before a
    session exists). ``ack`` is the highest ``seq`` the sender has received in
    order from the receiver.
    """

    sender: PeerId
    sender_incarnation: int
    receiver: PeerId
    receiver_incarnation: int
    seq: int
    ack: int
    body: Message = field(default_factory=Heartbeat)
