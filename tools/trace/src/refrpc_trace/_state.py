"""What the replay knows about objects, grants and tasks at one point of a run.

These records are written only by :class:`refrpc_trace._replay.Replay`; the
commands read them. Peer incarnations are ``(PeerId, incarnation)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._findings import Evidence

PeerKey = tuple[str, int]

#: Counters of the hold event (trace-format.md section 4; ownership.md section 5).
HOLD_COUNTERS = ("localRefs", "submittedTaskRefs", "containedIn", "taskHolds", "outgoingRegistrations",
                 "selfRegistration", "coverPins", "lineageRefs")
#: Counters that keep an entry in scope (OWN-004, OWN-012; GC-001 for a borrower).
SCOPE_COUNTERS = ("localRefs", "submittedTaskRefs", "containedIn", "taskHolds", "outgoingRegistrations",
                  "selfRegistration", "coverPins")


@dataclass(slots=True)
class Step:
    """One step of an object's life line."""

    #: created, ready, failed, shared, borrowed, released, freed, lost, rebuilt,
    #: fetched, owner-died, hold, state, ...
    what: str
    text: str
    evidence: Evidence


@dataclass(slots=True)
class Grant:
    """A grant the owner recorded (BOR-003, BOR-004, BOR-012)."""

    forward_id: str
    borrower: PeerKey
    requester: PeerKey
    #: The record that created it (BorrowerRegistered sent, a descriptor sent by
    #: the owner, or a grant-added event).
    cause: Evidence
    #: Whether a descriptor carrying it has been seen going to the borrower.
    delivered: bool = False


@dataclass(slots=True)
class Obj:
    """One object, as the whole run shows it."""

    object_id: str
    owner: PeerKey | None = None
    #: The owner's state for it (owner-object table), as its transitions say,
    #: or as inferred from messages when the owner records no transitions.
    state: str = ""
    state_cause: Evidence | None = None
    #: The task whose return it is, or "" (put).
    task_id: str = ""
    created: Evidence | None = None
    #: When the owner reclaimed the value (entered released/deleted), if it has.
    reclaimed: Evidence | None = None
    #: The owner has recorded at least one transition for it.
    has_transitions: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)
    #: Registrations the owner received and has not answered: forward id ->
    #: (borrower, requester, RegisterBorrower record).
    registering: dict[str, tuple[PeerKey, PeerKey, Evidence]] = field(default_factory=dict)
    #: Submitted-task refs from messages: (submitter, task id) -> SubmitTask record (BOR-006).
    task_refs: dict[tuple[PeerKey, str], Evidence] = field(default_factory=dict)
    #: Task holds from messages: (executor, submitter, task id, attempt) -> SubmitTask record.
    task_holds: dict[tuple[PeerKey, PeerKey, str, int], Evidence] = field(default_factory=dict)
    #: Containment from messages: container object -> (its owner, the record that stored it) (GC-002).
    contained_in: dict[str, tuple[PeerKey, Evidence]] = field(default_factory=dict)
    #: Peers holding a copy, as the owner learned it (stored returns, AddLocation, location events).
    #: (Locations are PeerIds, as the protocol names them.)
    locations: dict[str, Evidence] = field(default_factory=dict)
    #: FreeObjects the owner sent, per location.
    freed_at: dict[str, Evidence] = field(default_factory=dict)
    #: Holders that received the FreeObjects (a copy must go only once it is delivered).
    free_received: dict[str, Evidence] = field(default_factory=dict)
    #: Copies in local stores (copy-stored / copy-dropped events): PeerId -> record.
    copies: dict[str, Evidence] = field(default_factory=dict)
    #: The incarnation that stored each of ``copies`` (PeerId -> its PeerKey): a copy
    #: an incarnation stored is not kept by a later incarnation of the same PeerId.
    copy_keys: dict[str, PeerKey] = field(default_factory=dict)
    #: Counter values from hold events, per peer.
    counters: dict[PeerKey, dict[str, int]] = field(default_factory=dict)
    last_hold: dict[PeerKey, Evidence] = field(default_factory=dict)
    #: Non-owner entries: peer -> borrower-object state ("unresolved" until a transition says otherwise).
    entries: dict[PeerKey, str] = field(default_factory=dict)
    #: Peers whose entry is known from a transition or hold event (not only inferred).
    recorded_entries: set[PeerKey] = field(default_factory=set)
    #: When a non-owner's entry was deleted (holds_zero) and it no longer held the ref.
    dropped: dict[PeerKey, Evidence] = field(default_factory=dict)
    #: Grants each non-owner said it released (ReleaseBorrows sent): peer -> {forward id: record}.
    releases: dict[PeerKey, dict[str, Evidence]] = field(default_factory=dict)
    #: The last record by which each non-owner received the ref.
    received: dict[PeerKey, Evidence] = field(default_factory=dict)
    #: Registrations answered without error to each requester: (peer, forward id) -> (borrower, record).
    registered: dict[tuple[PeerKey, str], tuple[PeerKey, Evidence]] = field(default_factory=dict)
    #: Forward ids seen in descriptors sent to their borrower.
    sent_grants: set[str] = field(default_factory=set)

    def live_grants(self) -> list[Grant]:
        return list(self.grants.values())

    def quiet(self) -> bool:
        """Whether nothing about it is left to follow (it can be forgotten)."""
        return (self.state == "deleted" and not self.grants and not self.copies and not self.entries
                and not self.locations and not self.task_holds and not self.registering)


@dataclass(slots=True)
class Task:
    """A task as its SubmitTask and TaskReply show it."""

    task_id: str
    submitter: PeerKey
    executor: PeerKey
    function: str
    attempt: int
    args: tuple[str, ...]
    returns: tuple[str, ...]
    submitted: Evidence
