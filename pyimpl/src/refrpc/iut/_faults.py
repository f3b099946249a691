"""Fault switches: each makes the IUT break exactly one requirement of the spec.

They exist to prove that the conformance suite can fail (issue 5): the suite runs
pyimpl once per switch and must catch each one with at least one named case. A
switch is turned on with ``--fault NAME`` (repeatable) or
``REFRPC_IUT_FAULTS=name1,name2``; it changes this process only, at startup, by
wrapping one method of the sans-IO core instance, of the node, or of the fixture
executor. Nothing in ``refrpc.core`` or ``refrpc.runtime`` knows about them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from ..core import _session as core_session
from ..core import events as ev
from ..core.messages import PROTOCOL_MAJOR, AddLocation, BorrowerRegistered, ErrorCode, ErrorInfo, FetchChunk, FetchRequest, Heartbeat, ProtocolError, RefDescriptor, RemoveLocation

if TYPE_CHECKING:
    from ._main import Iut

#: Fault switch name -> (the requirement id it breaks, what the IUT then does).
FAULTS: dict[str, tuple[str, str]] = {
    "free-while-borrowed": (
        "OWN-004",
        "An owner reclaims an object once its local refs, submitted-task refs, containedIn and "
        "pins are all gone, although a borrower still holds a grant: the grants are forgotten, the "
        "value is freed and the entry deleted (a later GetObjectStatus answers FREED).",
    ),
    "ignore-duplicate-task": (
        "RPC-001",
        "A duplicate SubmitTask (same submitter incarnation, task id and attempt, arriving with a "
        "new sequence number before the reply was acknowledged) is executed again, and answered "
        "with a second TaskReply when that run ends: at once if the first copy was replied to, "
        "else right after the first copy's reply. The function's side effects happen twice. A "
        "correct executor ignores a duplicate in progress and re-sends the recorded reply to one "
        "that arrives after the reply. Actor calls are not affected.",
    ),
    "skip-release": (
        "BOR-005",
        "A non-owner whose holds on a ref drop to zero deletes its entry but never sends "
        "ReleaseBorrows: the owner keeps the grant (and the value) forever.",
    ),
    "wrong-error-code": (
        "TASK-007",
        "A task whose function raised is answered with every return ERROR(WORKER_DIED) instead of "
        "ERROR(TASK_FAILED) (message and traceback unchanged).",
    ),
    "never-answer-fetch": (
        "FET-001",
        "FetchRequests are ignored: the holder of a stored copy sends no FetchChunk, so nobody can "
        "fetch a value stored here.",
    ),
    "heartbeats-only-liveness": (
        "LIV-002",
        "Only a Heartbeat counts as evidence that a peer is alive: any other message (sequenced or "
        "data-plane) leaves the time it was last heard from unchanged, so a peer that is busy "
        "sending FetchRequests but no Heartbeat is declared dead after the detection timeout.",
    ),
    "store-full-as-task-failed": (
        "TASK-042",
        "An executor that cannot bring an argument (or store a return) for lack of room in its "
        "store replies TASK_FAILED instead of OBJECT_STORE_FULL (message and requirement "
        "unchanged), so its submitter may retry what no retry can fix.",
    ),
    "store-full-retried": (
        "OBJ-062",
        "A submitter takes a return ERROR(OBJECT_STORE_FULL) in a TaskReply as TASK_FAILED, so a "
        "task submitted with retry_exceptions is resubmitted (attempt + 1) while its budget lasts, "
        "instead of failing with OBJECT_STORE_FULL at once.",
    ),
    "error-chunk-at-request-offset": (
        "FET-004",
        "An error chunk that ends a request after data chunks (a relay whose own fetch failed, "
        "FET-043, or a copy lost while served) carries the request's offset instead of the first "
        "byte it did not send.",
    ),
    "no-heartbeat": (
        "LIV-001",
        "No Heartbeat is ever sent, so a session with nothing else to send goes silent (and acks "
        "wait for the next sequenced message); the other side declares this peer dead.",
    ),
    "accept-unknown-version": (
        "HS-002",
        "A Hello whose protocolMajor differs from 0 is answered with Welcome (and a session opens) "
        "instead of ProtocolError(PROTOCOL_VERSION).",
    ),
    "no-goodbye": (
        "LIV-006",
        "The control channel's shutdown leaves without sending Goodbye to any session (it still "
        "answers null and exits with status 0), against what CNF-008 says shutdown does; the other "
        "peers notice only by silence. LIV-006 is a SHOULD: a case that catches this grades it "
        "NON-STRICT.",
    ),
    "inline-large-results": (
        "TASK-004",
        "Task results larger than the inline threshold are returned inline in the TaskReply "
        "instead of being stored at the executor and returned as stored.",
    ),
    "no-register-before-send": (
        "BOR-002",
        "An executor returning a ref it borrows (owned by a third peer, not the submitter) puts it "
        "in the TaskReply with no forwardId and without RegisterBorrower at the owner first.",
    ),
    "release-any-grant": (
        "BOR-018",
        "An owner that receives a ReleaseBorrows naming a grant the sender does not hold (already "
        "released, or never recorded) removes another grant of that sender on the same object "
        "instead of ignoring the release, so a repeated or stray release can free an object "
        "that is still borrowed.",
    ),
    "keep-dead-borrower-grants": (
        "BOR-009",
        "When a borrower incarnation is declared dead, the grants it held are kept: the objects it "
        "borrowed are never reclaimed (a leak).",
    ),
    "own-heartbeat-interval": (
        "LIV-007",
        "Failure detection measures every remote's silence against this peer's own heartbeat "
        "interval times missLimit, ignoring the interval the remote announced, so a peer that "
        "announced a longer interval is declared dead while it is alive.",
    ),
    "keep-task-records": (
        "RPC-014",
        "An executor never forgets a task record, even after its TaskReply is acknowledged: its "
        "task table grows with every task it ever ran.",
    ),
    "keep-submitted-tasks": (
        "RPC-014",
        "A submitter never forgets a task it submitted, even once it is settled and no entry needs "
        "it as lineage: its task table grows with every task it ever submitted.",
    ),
    "no-contained-in": (
        "GC-002",
        "A peer that receives a value embedding refs (a task's return, a put value) does not hold "
        "them contained-in that value: a borrowed ref that came with a grant is released at once, "
        "although the value still embeds it.",
    ),
    "keep-unadopted-replies": (
        "TASK-015",
        "A TaskReply that is not adopted (a cancelled task, an old attempt, a task retried) is "
        "dropped as it is: the grants its values carry are never released and its stored returns "
        "never freed.",
    ),
    "silent-secondary-copy": (
        "LOC-002",
        "A secondary copy kept after a fetch is never announced to the owner (no AddLocation), "
        "although the peer serves it to anyone who asks.",
    ),
    "silent-copy-drop": (
        "LOC-003",
        "A secondary copy that is dropped is not withdrawn (no RemoveLocation): the owner keeps "
        "sending fetchers to a location that has nothing.",
    ),
    "schema-error-names": (
        "CNF-018",
        "The control channel's get names an error code by its schema enumerant (taskCancelled) "
        "instead of the registry name (TASK_CANCELLED).",
    ),
    "reply-before-forward-registered": (
        "BOR-002",
        "An executor returning a ref owned by a third peer sends RegisterBorrower for the "
        "submitter but waits only for its own registrations (BOR-007) before replying, so the "
        "reply, with the new forwardId, can reach the submitter before the owner has recorded "
        "the grant.",
    ),
    "unbounded-actor-restarts": (
        "ACT-011",
        "An actor owner re-creates an actor every time its host dies, whatever its maxRestarts.",
    ),
    "actor-calls-worker-died": (
        "ACT-007",
        "When an actor's host dies, the unanswered method calls fail with WORKER_DIED (as plain "
        "tasks do) instead of ACTOR_DIED.",
    ),
    "unknown-method-task-failed": (
        "ACT-015",
        "A call naming a method the actor's class does not have runs a function that raises, so "
        "it is answered TASK_FAILED instead of UNKNOWN_FUNCTION.",
    ),
    "wait-for-actor-seq-gap": (
        "ACT-014",
        "An actor host waits for a missing actorSeq: a call after a gap never runs.",
    ),
    "actor-handles-not-counted": (
        "ACT-009",
        "An actor owner never kills an actor when its handle object is reclaimed: the actor "
        "lives on after the last holder of a handle let go.",
    ),
    "max-concurrency-not-sent": (
        "ACT-013",
        "An actor owner sends CreateActor without the concurrency its program asked for "
        "(maxConcurrency 0): the host runs one call at a time.",
    ),
    "no-id-limits": (
        "ID-007",
        "Identifiers are not checked against their length limits while decoding: an object id of "
        "257 bytes, an empty task id or a PeerId of 129 bytes is taken as it is.",
    ),
    "status-per-wait": (
        "OBJ-014",
        "Every argument resolution, get or wait of a borrowed ref sends its own GetObjectStatus "
        "to the owner, instead of one per object. OBJ-014 is a SHOULD: a case that catches this "
        "grades it NON-STRICT.",
    ),
    "no-error-rate-limit": (
        "ERR-008",
        "Every bad message is answered with a ProtocolError, however many arrive: a burst of bad "
        "input is answered by a burst of errors. ERR-008 is a SHOULD: a case that catches this "
        "grades it NON-STRICT.",
    ),
    "no-released-state": (
        "LIN-002",
        "An owned object that goes out of scope is always deleted, also when another entry's "
        "lineage still names it (lineageRefs > 0): there is no `released` state, so a value lost "
        "later cannot be rebuilt when its task needs that argument.",
    ),
    "trace-without-transitions": (
        "TRC-008",
        "A peer that records a trace writes its send and recv records but no `transition` "
        "events, so the state machines it ran cannot be followed in its trace.",
    ),
    "simultaneous-hello-waits": (
        "HS-023",
        "A peer whose own Hello is unanswered answers the other side's Hello with Welcome but keeps "
        "its queued messages until a Welcome answers its own Hello; when that Welcome comes after "
        "the session opened, it is ignored (HS-014) and the queued messages are never sent.",
    ),
    "cancel-reply-task-failed": (
        "TASK-008",
        "A running task stopped by CancelTask is answered with every return ERROR(TASK_FAILED) (the "
        "stop taken for an exception of the function) instead of TASK_CANCELLED.",
    ),
    "fetch-end-is-error": (
        "FET-014",
        "A FetchRequest whose offset equals the stored form's size (an empty range at the end) is "
        "answered with a MALFORMED error chunk, as if it were beyond the end.",
    ),
    "fetch-whole-object": (
        "FET-015",
        "A fetcher asks for the whole stored form in one FetchRequest (a range of 2^40 bytes) instead of "
        "ranges of at most 8 MiB. FET-015 is a SHOULD: a case that catches this grades it NON-STRICT.",
    ),
    "fetch-retry-at-once": (
        "ERR-009",
        "A fetcher whose request a holder refused with RESOURCE_EXHAUSTED asks again at once, without the "
        "50 ms delay. ERR-009 is a SHOULD: a case that catches this grades it NON-STRICT.",
    ),
    "fetch-from-last-location": (
        "FET-011",
        "A fetcher asks the last location the owner listed first, not the primary. FET-011 is a SHOULD: a "
        "case that catches this grades it NON-STRICT.",
    ),
    "chunks-ignore-fetcher-limit": (
        "FET-007",
        "A holder sizes its chunks by its own maxFrameBytes and the request's chunkBytes, ignoring the "
        "smaller frame limit the fetcher announced: a fetcher with a 1 MiB limit gets chunks it must drop.",
    ),
    "adopt-mismatched-reply": (
        "TASK-019",
        "A TaskReply whose returns name other object ids than the task's is adopted as it is: the ids "
        "it does not know are dropped, no ProtocolError is sent, and the task's own returns stay pending "
        "for ever.",
    ),
    "refuse-repeated-features": (
        "HS-025",
        "A Hello that lists a feature twice, or a feature name HS-022 does not allow, is refused with "
        "ProtocolError(MALFORMED) instead of being answered with Welcome.",
    ),
    "zero-heartbeat-taken-literally": (
        "LIV-021",
        "A remote heartbeatIntervalMs of 0 is used as announced: the detection timeout becomes 0 and the "
        "peer is declared dead at the next tick.",
    ),
    "unheld-ref-unknown-object": (
        "CNF-024",
        "A control request naming a ref the control channel does not hold is answered with the "
        "registry code UNKNOWN_OBJECT instead of bad_request.",
    ),
    "fetch-range-checked-first": (
        "FET-004",
        "A holder checks a FetchRequest's range before whether it has a copy: a request with chunkBytes 0 "
        "for an object it lacks is answered MALFORMED instead of OBJECT_FREED or UNKNOWN_OBJECT.",
    ),
    "adopt-returns-without-member": (
        "VAL-019",
        "A TaskReply whose return lacks the member its kind needs (an inline return without a value) is "
        "adopted as it is, and the return fails with a made-up TASK_FAILED; no ProtocolError is sent.",
    ),
    "announce-handshake-deaths": (
        "LIV-040",
        "A handshake in progress (a remote that sent only its Hello) that goes silent is declared dead and "
        "announced with PeerDeadNotice to every other live session, like any other death.",
    ),
    "stored-location-unchecked": (
        "VAL-019",
        "A TaskReply whose stored return names another peer than its sender as location is adopted, "
        "and that peer is recorded as the primary copy; no ProtocolError is sent.",
    ),
    "no-executor-worker-died": (
        "TASK-022",
        "A task, retry or rebuild that finds no live executor to go to fails with WORKER_DIED, as if an "
        "executor had died running it, instead of RESOURCE_EXHAUSTED.",
    ),
    "queue-named-tasks": (
        "TASK-024",
        "A task sent to a named executor is placed as if the program had not named one: it waits in "
        "the queue while no executor added with slots has a free one, and a named executor added with "
        "0 slots is never used.",
    ),
    "no-goodbye-ack": (
        "LIV-016",
        "A Goodbye is not acknowledged before the fence: its sender waits out its linger. LIV-016 is a "
        "SHOULD: a case that catches this grades it NON-STRICT.",
    ),
    "unbounded-status-waits": (
        "SEC-009",
        "GetObjectStatus waits are remembered however many one peer has outstanding: the limit the "
        "IUT was started with (--max-status-waits) is ignored. SEC-009 is a SHOULD: a case that "
        "catches this grades it NON-STRICT.",
    ),
    "refuse-calls-before-creation": (
        "ACT-023",
        "A method call for an actor whose CreateActor has not arrived is answered ACTOR_DIED at once, "
        "as if the actor were dead, instead of waiting for its creation.",
    ),
    "serve-every-fetch": (
        "FET-009",
        "A holder serves every FetchRequest at once, however many one fetcher has outstanding: the "
        "limit of 4 per fetcher incarnation is not applied.",
    ),
    "tiny-chunks": (
        "FET-020",
        "A holder cuts chunks as small as the request's chunkBytes asks (1 byte, say), instead of at "
        "least the minimum chunk size of 1 KiB.",
    ),
    "unbounded-handshakes": (
        "SEC-021",
        "Handshakes in progress are not bounded: a flood of Hellos from made-up peers keeps every one "
        "of them, and no old one is forgotten.",
    ),
    "ignore-key-file": (
        "SEC-003",
        "The cluster key file is ignored: the peer speaks ZeroMQ's NULL mechanism, so anyone who "
        "reaches its port is listened to and answered, and members, who speak CURVE, cannot reach it.",
    ),
    "head-by-join-proof": (
        "SEC-041",
        "As a member of a cluster with a head, the peer ignores the head key its key file names and, "
        "until its first view, takes as `head` whoever connects with a valid join proof for `head`: any "
        "holder of the key file can pose as the head to it.",
    ),
    "derived-server-key": (
        "SEC-040",
        "As a member of a cluster with a head, the peer's ROUTER serves with the server key derived from "
        "the secret, and its DEALERs expect that key wherever they connect: any holder of the key file can "
        "pose as its server, and as the server of every peer it connects to.",
    ),
    "trust-claimed-sender": (
        "SEC-011",
        "A message is taken from the PeerId its envelope claims, whichever member key its connection "
        "authenticated with: any key holder can speak as any peer.",
    ),
    "stop-on-notice-about-itself": (
        "LIV-019",
        "A PeerDeadNotice naming this peer itself is believed: the peer stops as if it had learned of "
        "its own death from a peer that fenced it (LIV-005).",
    ),
    "import-any-function": (
        "SEC-006",
        "A task naming a function the fixture catalog does not expose, as module:attribute, is run by "
        "importing the module and calling the attribute, on any session (builtins:exec included).",
    ),
    "send-oversized": (
        "ZMQ-007",
        "A SubmitTask or ObjectStatus is sent whatever its size, also beyond the frame limit its "
        "receiver announced (which drops it unread).",
    ),
    "send-oversized-creation": (
        "ZMQ-007",
        "A CreateActor is sent whatever the size of its by-value arguments, also beyond the frame limit its "
        "host announced (which drops it unread).",
    ),
    "trace-put-without-creation": (
        "SM-002",
        "A peer that records a trace leaves out the `ready --put--> ready` row that records a put "
        "object's creation, so the object's first recorded transition starts from a state no entry "
        "starts in.",
    ),
    "freed-is-unknown": (
        "OBJ-017",
        "An owner's FREED answer without an error is taken as UNKNOWN_OBJECT instead of OBJECT_FREED, "
        "so the program's get names the wrong outcome.",
    ),
    "handshake-never-times-out": (
        "LIV-018",
        "A Hello that is never answered is resent for ever: the record of a peer whose incarnation "
        "is not known is never marked dead, so the messages queued for it and the requests they "
        "carry wait for ever.",
    ),
    "splice-fetches": (
        "FET-018",
        "A fetch whose only holder died keeps the bytes it had; when the owner's new answer names "
        "another location, only the missing ranges are fetched from it, splicing two stored forms "
        "that may differ byte for byte.",
    ),
    "place-ignoring-memory": (
        "TASK-041",
        "Placement takes no account of what executors said their stores can still take "
        "(storeFreeBytes): a task or a retry goes by slots, load and locality only, also to an "
        "executor that said it has no room for the task's arguments.",
    ),
    "sequenced-heartbeat-unsequenced": (
        "GEN-016",
        "A Heartbeat that arrives with a sequence number above 0 is taken as if it had sequence "
        "number 0: acted on for liveness and ack only, its number neither consumed nor answered, so "
        "the session stalls at that number (the sender's next message waits behind a gap).",
    ),
    "no-answer-to-stale-hello": (
        "SES-020",
        "A Hello addressed to an earlier incarnation of this peer (SES-006) from a peer it has no record "
        "of is discarded without an answer, instead of being answered DECLARED_DEAD at the Hello's own "
        "address: the sender waits out its handshake timeout.",
    ),
    "eager-value-check": (
        "VAL-021",
        "A SubmitTask whose portable argument breaks a rule of the value's data (a ref to a nested "
        "index that does not exist, VAL-006) is refused as a malformed message (ProtocolError "
        "MALFORMED naming its sequence number) instead of being delivered and failing as a task "
        "whose argument cannot be decoded.",
    ),
    "no-router-handover": (
        "ZMQ-015",
        "The ROUTER keeps libzmq's default ZMQ_ROUTER_HANDOVER = 0: a second connection that presents "
        "a routing id another connection already uses is refused, and what arrives on it is lost.",
    ),
    "record-rerun-copies": (
        "LOC-008",
        "A re-run's stored copy of a return that is still ready is recorded as one more location "
        "(and not freed), although its bytes may differ from the copies already recorded.",
    ),
    "answer-refused-duplicates": (
        "GEN-019",
        "A copy of a malformed sequenced message (same sequence number, already delivered and "
        "answered) is answered with a second ProtocolError instead of being discarded silently "
        "as the duplicate it is.",
    ),
    "refuse-early-at-once": (
        "GEN-019",
        "A malformed sequenced message that arrives before its turn (a number inside the window "
        "but not the next) is answered with ProtocolError at once, before the messages ahead of "
        "it are delivered (and again when its turn comes), instead of only in turn.",
    ),
    "empty-function-malformed": (
        "ID-011",
        "A SubmitTask whose function is empty or longer than 256 bytes is refused as malformed "
        "(ProtocolError(MALFORMED), not run) instead of failing its returns with UNKNOWN_FUNCTION.",
    ),
    "merge-conflicting-refs": (
        "REF-007",
        "A delivered message whose descriptor names another owner (or owner incarnation) than the "
        "entry kept for that object id is not refused: the entry kept is read as the one the "
        "descriptor names, and the task runs or the reply is adopted as if they agreed.",
    ),
    "whole-slot-per-task": (
        "TASK-050",
        "The executor counts every task that takes CPU as one whole slot, whatever its cpuDemand: two "
        "tasks of half a slot run one after the other.",
    ),
    "zero-cpu-waits": (
        "TASK-051",
        "The executor counts a task of cpuDemand 0 as taking one slot: it waits for the running task "
        "to end instead of starting at once.",
    ),
    "run-without-resource": (
        "TASK-053",
        "The executor ignores the named resources it does not offer: a task asking for one runs as if "
        "it asked for none, instead of being answered RESOURCE_EXHAUSTED.",
    ),
    "fenced-caller-keeps-actor": (
        "TASK-064",
        "A call whose caller is fenced while it waits or runs keeps its turn at the actor: the actor's "
        "other callers wait for ever behind it.",
    ),
    "resources-named-twice-accepted": (
        "TASK-054",
        "A SubmitTask whose resources name a resource twice (or name CPU, or an empty name) is taken "
        "as it is and run, instead of being refused as MALFORMED.",
    ),
    "actors-hold-nothing": (
        "ACT-027",
        "The host ignores the lifetime demand a CreateActor carries: the actor holds nothing, so a task "
        "that needs the CPU slot an actor holds starts beside it at once, as hosts did before the field.",
    ),
    "actor-resources-unchecked": (
        "ACT-028",
        "A CreateActor asking for a named resource the host does not offer is not refused: the actor is "
        "created, holding only what the host offers, and reported ALIVE instead of DEAD with "
        "RESOURCE_EXHAUSTED.",
    ),
    "invalid-utf8-accepted": (
        "ID-011",
        "A SubmitTask whose function is not valid UTF-8 is not malformed: the bytes that do not decode "
        "are read as U+FFFD, and the task fails with UNKNOWN_FUNCTION instead of being refused.",
    ),
    "unsequenced-errors-name-nothing": (
        "SES-038",
        "A ProtocolError with sequence number 0 is always taken as an answer without a session, also "
        "from an incarnation with a live session: its relatedSeq names nothing, so the request it "
        "refuses is never ended (its get waits until the remote dies). DECLARED_DEAD is still handled.",
    ),
    "wrong-state-means-dead": (
        "SES-039",
        "A ProtocolError(WRONG_STATE) with sequence number 0 and relatedSeq 0 from a live session's "
        "remote is taken as proof that it forgot the session: the remote is declared dead and fenced "
        "(a PeerDeadNotice goes to the others, and its later messages are answered DECLARED_DEAD).",
    ),
    "restarting-ends-actor": (
        "GEN-024",
        "An actor owner takes an ActorStatus RESTARTING as DEAD: the actor ends for good (ACTOR_DIED), "
        "the owner sends KillActor to its host, and a later ActorStatus ALIVE from the host is ignored.",
    ),
    "member-checked-before-features": (
        "ERR-010",
        "A SubmitTask's arguments are checked against their kinds (VAL-015) before the features of "
        "the session (HS-017): a task with a shared argument on a session without borrowing and an "
        "argument without its member is answered MALFORMED instead of FEATURE_NOT_NEGOTIATED.",
    ),
    "id-limits-on-error-messages": (
        "ID-010",
        "ErrorInfo.message, which is no id, is checked as one (1..256 bytes): a TaskReply whose error "
        "message is longer is refused as malformed, and the task it answers is never ended.",
    ),
    "text-ends-at-nul": (
        "VAL-028",
        "A SubmitTask's function is read as a C string: it ends at its first 0 byte, so \"echo\\0x\" "
        "runs echo instead of failing with UNKNOWN_FUNCTION.",
    ),
    "one-segment-frames": (
        "ZMQ-020",
        "Frame 0 is decoded only when it is a one-segment Cap'n Proto message: a message of two or "
        "more segments (as the reference encoder writes for large ones) is dropped as malformed.",
    ),
    "malformed-answer-waits": (
        "GEN-030",
        "A malformed answer whose key can be read (a TaskReply that does not decode, an ObjectStatus "
        "refused under REF-007) is answered MALFORMED and otherwise ignored: the task it answers stays "
        "submitted, the get waiting on it waits, until the answering peer dies.",
    ),
    "refusals-rate-limited": (
        "ERR-008",
        "The refusal of a delivered request (a SubmitTask, CreateActor, GetObjectStatus, RegisterBorrower or "
        "IntrospectRequest) counts against the ProtocolError rate limit like any other, so after a burst of "
        "bad messages it is not sent and the request stays open at its sender.",
    ),
    "malformed-refusal-answered": (
        "GEN-008",
        "A sequenced ProtocolError that is malformed (its required `error` missing) is taken as any other "
        "malformed message: answered with a ProtocolError(MALFORMED), and the request its relatedSeq names "
        "stays open until its peer dies.",
    ),
    "return-ids-twice-run": (
        "VAL-030",
        "A SubmitTask whose returnIds name the same id twice is not refused: the task runs and is answered "
        "with one return per listed id, so two returns carry the one object id.",
    ),
    "error-text-exhausts-reply": (
        "ZMQ-022",
        "A TaskReply whose error texts (a long exception message or traceback) would exceed the frame limit "
        "its submitter announced fails every return with RESOURCE_EXHAUSTED naming ZMQ-022, instead of "
        "cutting the texts and keeping the code (TASK_FAILED).",
    ),
    "unfitted-replies": (
        "ZMQ-022",
        "A TaskReply is sent as the task's results make it, whatever its size: one beyond the frame limit its "
        "submitter announced (many inline returns, or an error whose text is too long) is dropped unread, "
        "and the submitter never learns how the task ended.",
    ),
    "refusal-code-for-queued": (
        "LIV-031",
        "A refused handshake ends the tasks queued for that peer with the refusal's code (PROTOCOL_VERSION, "
        "requirement HS-015) instead of the codes a death gives (WORKER_DIED, or a retry elsewhere).",
    ),
    "empty-address-malformed": (
        "ID-013",
        "A SubmitTask with an argument whose RefDescriptor has an empty ownerAddress is answered "
        "ProtocolError(MALFORMED) and never runs, although the sender may give no address and the "
        "owner is reachable through its live session.",
    ),
    "list-oversized-table": (
        "ZMQ-023",
        "An IntrospectReply lists the whole ownership table whatever its size: one beyond the frame limit "
        "the requester announced is dropped unread, instead of the reply with no entries and the summary.",
    ),
    "repeat-hello-renegotiates": (
        "HS-036",
        "A Hello from an incarnation with a live session is negotiated again: the Welcome answering it, and "
        "the session's features, frame limit, heartbeat and minor version, follow the repeat's fields.",
    ),
    "unpickle-fetched-forms": (
        "OBJ-067",
        "A stored form fetched from a holder is read whatever its encoding: a pickle value that came on a "
        "session without python-pickle is unpickled (the code it names runs) and the copy is kept.",
    ),
    "sender-incarnation-0-accepted": (
        "SES-042",
        "A message whose envelope names sender incarnation 0 goes through the other checks as any "
        "message does: a Hello from incarnation 0 is welcomed (the Welcome addressed to incarnation 0), "
        "and a message from it to an earlier incarnation of the IUT is answered DECLARED_DEAD, addressed to 0.",
    ),
    "borrower-incarnation-0-before-features": (
        "ID-013",
        "ID-013's incarnation 0 is judged before the feature rules, as if while decoding: a "
        "RegisterBorrower naming borrower incarnation 0 on a session without borrowing is answered "
        "MALFORMED instead of FEATURE_NOT_NEGOTIATED.",
    ),
    "incarnation-0-accepted": (
        "ID-013",
        "A RegisterBorrower, ConfirmBorrow or PeerDeadNotice naming incarnation 0 is acted on: a grant is "
        "recorded for incarnation 0, a notice fences (PeerId, 0).",
    ),
    "queued-sent-unchecked": (
        "ZMQ-021",
        "Messages queued while a handshake is in progress are sent, once the Welcome is in, without "
        "the ZMQ-007 check against the frame limit it announced: a task queued with a value "
        "argument over that limit goes out anyway.",
    ),
    "send-uncarried-tasks": (
        "HS-035",
        "A first attempt of a task (or a CreateActor) that the chosen session cannot carry, a SHARED "
        "argument on a session without borrowing say, is sent all the same instead of failing at home "
        "with FEATURE_NOT_NEGOTIATED.",
    ),
    "unknown-message-stops-type": (
        "GEN-040",
        "After a ProtocolError(UNKNOWN_MESSAGE) naming one of its SubmitTasks, the IUT stops sending "
        "SubmitTask to that peer incarnation: every later task for it fails at home with UNKNOWN_MESSAGE.",
    ),
    "repeat-hello-unchecked": (
        "HS-036",
        "A Hello from an incarnation with a live session skips HS-025's rules: one without core, of another "
        "major version or with a frame limit under 1 MiB is answered with the session's Welcome instead of "
        "the ProtocolError HS-025 names.",
    ),
    "urlsafe-base64": (
        "CNF-043",
        "The control channel writes {\"data\": ...} in the URL-safe base64 alphabet (- and _ for + and /) "
        "without = padding.",
    ),
    "keep-bad-copies": (
        "OBJ-076",
        "A fetched copy is sealed without checking that its bytes decode as a stored form: a copy that is "
        "not a Value is kept and announced to the owner (AddLocation), and reading it fails the task.",
    ),
    "unaddressed-peer-dead-at-once": (
        "ID-016",
        "A peer incarnation the IUT needs a session with but knows no address for is declared dead at once, "
        "instead of waiting out the handshake timeout for an address: what waited on it (a ref argument's "
        "resolution) fails with OWNER_DIED at once.",
    ),
    "member-admits-joiners": (
        "SEC-024",
        "As a member of a cluster with a head, the peer binds any PeerId to the key of a connection that "
        "announced a valid join proof for it, as only the head may (SEC-023), instead of listening only to "
        "PeerIds its views bind.",
    ),
    "rebind-joined-peer": (
        "SEC-023",
        "As the head, the peer binds a PeerId anew to the key of any connection that announces a valid "
        "join proof for it, although the PeerId is bound to another key and its incarnation is live: "
        "anyone with the credential can take over a live member's PeerId.",
    ),
    "rotate-by-any-member": (
        "SEC-042",
        "As the head running the membership calls (CNF-051), the peer runs `rotate` for any submitter, as if "
        "the operator had called it: a member holding only the key file replaces the join credential.",
    ),
    "replaced-credential-kept": (
        "SEC-025",
        "As the head, the peer accepts join proofs under a replaced join credential for ever: `rotate` "
        "ignores the grace it is given, and `rotate(None, ...)` ends no grace period.",
    ),
    "register-another-peer": (
        "CLU-013",
        "As the head running the membership calls, the peer accepts a `register` or `register_driver` whose "
        "`peer` is not the submitter's own PeerId: a member can register (and so replace) another.",
    ),
    "views-from-any-head": (
        "SEC-026",
        "As a member of a cluster without authentication, the peer applies a view (`learn`) from any session "
        "of the PeerId `head`, not only from the one whose Hello announced the address it joined through.",
    ),
    "learn-from-anyone": (
        "CLU-013",
        "As a member, the peer runs `learn` whoever submitted it, and applies the view, instead of failing a "
        "`learn` whose submitter is not the head.",
    ),
    "fence-listed-incarnations": (
        "CLU-063",
        "As a member, the peer takes a view's `incarnations` as evidence of death: a live record of a PeerId "
        "under another incarnation than the one listed is fenced when the view is applied, although `dead` "
        "does not name it.",
    ),
    "incarnation-not-recorded": (
        "CLU-067",
        "As the head running the membership calls, the peer records every worker that registers with "
        "incarnation 0, whatever incarnation it passed: its views list 0 for every worker.",
    ),
    "demand-in-binary": (
        "TASK-061",
        "A submitter converts a task's demand to ten-thousandths in binary floating point (ceil(amount * "
        "10000) on doubles): 0.14 is sent as 1401, so a task asking exactly what an executor offers never "
        "fits there.",
    ),
    "actor-calls-in-arrival-order": (
        "ACT-014",
        "An actor's host starts the calls that wait in the order they arrived, not each caller's lowest "
        "actorSeq first: a call 3 that arrives after a call 5 runs after it (and is not refused).",
    ),
    "unready-actor-call-holds-everyone": (
        "ACT-034",
        "An actor's host starts, between callers, the call that arrived first even when its arguments are "
        "not ready: a call waiting for its argument's status holds back every other caller's ready calls, "
        "and the actor's free place stays empty until that argument is answered.",
    ),
    "incarnation-0-before-features": (
        "REF-004",
        "A descriptor naming its owner's incarnation as 0 is judged before the feature rules (as if at "
        "decoding): a SubmitTask with a shared argument on a core-only session whose descriptor names "
        "incarnation 0 is answered MALFORMED instead of FEATURE_NOT_NEGOTIATED.",
    ),
    "refused-answer-leaves-request-open": (
        "GEN-041",
        "An answer refused FEATURE_NOT_NEGOTIATED (a TaskReply with refs on a session without borrowing, say) "
        "ends nothing: the task it answers stays pending until its executor dies.",
    ),
    "late-actor-call-queued": (
        "ACT-014",
        "An actor call numbered at or below the highest its caller already started is not refused on "
        "arrival: it is held back and answered WRONG_STATE only once none of its caller's calls waits or "
        "runs any more, so a call behind one that waits for its arguments waits too.",
    ),
    "overtaken-actor-call-waits": (
        "ACT-014",
        "A waiting actor call whose actorSeq another call of its caller just started with (a faulty caller "
        "numbered two calls alike) is not answered: it stays queued and runs once its arguments are ready.",
    ),
    "stopped-actor-call-answered-late": (
        "TASK-063",
        "A host that stops an actor (KillActor, a lost instance) stops its running calls but answers each only "
        "when its code ends, after ActorStatus(DEAD), with whatever the stop left (a call whose code does "
        "not end is never answered).",
    ),
    "owner-death-answers-callers-late": (
        "ACT-038",
        "A host that stops an actor because it fenced the actor's owner answers the queued calls of other "
        "callers with OWNER_DIED instead of ACTOR_DIED, and its running calls only when their code ends, with "
        "whatever the stop left (a call whose code does not end is never answered).",
    ),
    "undecodable-hello-ignored": (
        "HS-036",
        "A frame with sequence number 0 that does not decode (a Hello whose address is not UTF-8, say) is "
        "discarded without an answer even when its sender has a live session, as if it had none.",
    ),
    "bad-copies-asked-for-ever": (
        "OBJ-077",
        "A fetcher that meets a bad copy of an object (not a stored form, or a chunk that does not decompress) "
        "asks the owner again however many times it has met one in a row: an argument whose only location "
        "serves a bad copy keeps its task resolving for ever.",
    ),
    "undecodable-hello-answered-unsequenced": (
        "GEN-012",
        "A frame with sequence number 0 that does not decode, from a sender with a live session, is answered "
        "ProtocolError(MALFORMED) with sequence number 0, as if it were a Hello that decodes, instead of as a "
        "sequenced message of the session.",
    ),
    "unbounded-joiner-bindings": (
        "SEC-023",
        "As the head, the peer binds every joiner with a valid join proof, however many bindings of peers "
        "that have not registered it already keeps: a joiner beyond maxSessions is bound (and then refused "
        "by SEC-021), and its binding stays.",
    ),
    "members-for-registered-only": (
        "CLU-006",
        "As the head running the membership calls, the peer fails (TASK_FAILED) a `members` call from a "
        "joiner that has not registered yet, so a driver cannot make the call it joins with.",
    ),
    "portable-trailing-bytes-read": (
        "VAL-004",
        "A portable value's data is read up to the end of the Cap'n Proto message its segment table "
        "describes, and any bytes after it are ignored: a value with a word of padding after its message "
        "decodes as if it were not there, instead of failing where it is read.",
    ),
    "stored-form-trailing-bytes-kept": (
        "OBJ-076",
        "A stored form is read up to the end of the Cap'n Proto message its segment table describes: a "
        "fetched copy with bytes after that message passes the check, is kept and announced to the owner "
        "(AddLocation), and is read as if the bytes were not there.",
    ),
    "undecodable-get-internal": (
        "VAL-021",
        "The control channel's get of a value whose data breaks a rule of its encoding answers the request "
        "itself with ok: false and the code internal, instead of the get outcome {\"error\": {\"code\": "
        "\"MALFORMED\"}} (CNF-018).",
    ),
    "bare-numbers-as-float64": (
        "CNF-057",
        "A bare JSON number with a fraction or an exponent in a control-channel value (1.5, 1e300) is taken "
        "as a float64 instead of being refused bad_request.",
    ),
    "membership-answers-portable": (
        "CLU-030",
        "The head answers a membership call whose arguments were all portable with a portable result (lists "
        "where CLU-031 has tuples), as for a program's own functions, instead of pickled.",
    ),
    "fence-head-on-confirm-borrow": (
        "BOR-011",
        "A member fences the forwarder a ConfirmBorrow names even when it is its head, on the owner's word: "
        "it answers held = false for a grant it does not hold, and discards everything the head says after.",
    ),
    "keep-unused-member-grants": (
        "VAL-019",
        "A submitter ignores the members a TaskReply's return sets that its kind does not use (nested of an "
        "inline return, the value of a stored or an error return) altogether: a grant made out to it there is "
        "never released, and stays at its owner.",
    ),
    "retry-dead-named-executor": (
        "TASK-024",
        "A task whose program named an executor that is already dead (fenced) is not failed with WORKER_DIED "
        "when it has retries left: it is resubmitted as attempt 2 to another live executor, as if the named "
        "one had died running it (RPC-004).",
    ),
    "fence-leaves-handshake-waiting": (
        "LIV-012",
        "A fence of P/p (a PeerDeadNotice, say) while the record for P is a handshake that names no "
        "incarnation is recorded but does not end that record: what waits on it (a task queued for P) waits "
        "out the handshake timeout (LIV-018) instead of failing at once as for a death.",
    ),
    "overtake-reserved": (
        "TASK-055",
        "The executor starts the first waiting task that fits, ignoring what the tasks waiting before it "
        "reserve: a task of half a slot starts beside a running half-slot task although a whole-slot task "
        "waits ahead of it, so a stream of small tasks can starve a big one.",
    ),
    "cancelled-waiting-task-waits": (
        "TASK-055",
        "A task waiting for room that is cancelled stays in the order, still reserving what it takes, and is "
        "answered TASK_CANCELLED only when room for it comes, instead of leaving the order at once.",
    ),
    "unknown-code-as-task-failed": (
        "ERR-002",
        "A submitter takes a return whose error code it does not know (read as UNRECOGNIZED) as TASK_FAILED, so "
        "a task submitted with retry_exceptions is resubmitted while its budget lasts, and get names "
        "TASK_FAILED.",
    ),
    "unknown-argument-code-as-task-failed": (
        "ERR-002",
        "An executor passing on an argument's error whose code it does not know (an ObjectStatus FAILED read as "
        "UNRECOGNIZED) sends TASK_FAILED in its place instead of UNRECOGNIZED.",
    ),
    "repeated-map-keys-accepted": (
        "VAL-005",
        "A portable map that repeats a key is read without complaint, the later entry replacing the earlier, "
        "instead of failing where it is decoded.",
    ),
    "shallow-portable-nesting": (
        "VAL-007",
        "Portable values are read (and written) at most 32 levels deep: a value of 64 nested lists, which every "
        "reader must accept, fails where it is decoded.",
    ),
    "unknown-portable-member-as-null": (
        "VAL-014",
        "A portable node whose union member this schema does not know is read as null instead of making the "
        "value malformed where it is decoded.",
    ),
    "adopt-stray-chunks": (
        "FET-013",
        "A fetcher takes a FetchChunk whose requestId it is not waiting for as a chunk of its outstanding request "
        "for the same object (the oldest), so bytes meant for another request, or sent by mistake, end up in "
        "the copy it assembles.",
    ),
    "grant-to-fenced-borrower": (
        "BOR-015",
        "An owner records a grant for a borrower incarnation it has fenced and answers the RegisterBorrower "
        "without an error, so the object is kept for a borrower that can never release it.",
    ),
    "refuse-unready-registrations": (
        "BOR-016",
        "An owner refuses a RegisterBorrower for an object that is pending or failed (WRONG_STATE), as if only "
        "a ready object could be borrowed.",
    ),
    "status-ignores-features": (
        "OBJ-012",
        "An owner answers GetObjectStatus without regard to what the asker's session negotiated: a value "
        "nesting refs is sent to a peer without borrowing, and a stored form nesting refs is offered to it by "
        "its locations.",
    ),
    "ready-is-final": (
        "OBJ-015",
        "A non-owner that learned an object was READY (it has locations for it) does not take a later FAILED "
        "answer from the owner: it asks the owner again, as if the answer were PENDING, so a task whose "
        "argument was lost after it was ready waits for ever instead of failing with the owner's error.",
    ),
    "adopt-any-attempt": (
        "RPC-006",
        "A submitter adopts a TaskReply from the task's executor whatever attempt it names, as if it answered "
        "the current one.",
    ),
    "keep-freed-copies": (
        "GC-004",
        "A peer holding a copy of an object ignores the owner's FreeObjects for it: the copy stays in its store "
        "and is still served to fetchers.",
    ),
    "reused-actor-id-ignored": (
        "ACT-035",
        "A host ignores a CreateActor from another owner that reuses the id of an actor it hosts, as if it were "
        "a duplicate of the first: no ProtocolError is sent.",
    ),
    "reused-task-id-takes-the-task": (
        "TASK-068",
        "An executor takes a SubmitTask from another submitter that reuses the task id and attempt of a task "
        "it holds as a new task: no ProtocolError, the second task runs, and the executor's index by task id "
        "and attempt then names it, so the first task's reply and its stops follow the second submitter's "
        "task (the first submitter may never be answered).",
    ),
    "reused-task-id-refused": (
        "TASK-068",
        "An executor refuses a SubmitTask from another submitter that reuses the task id and attempt of a task "
        "it holds (ProtocolError MALFORMED) instead of running it as another task: a peer that sends a "
        "submitter's next task id first denies that submitter its task.",
    ),
    "skip-sequence-number": (
        "SES-001",
        "A sender skips sequence number 2 on every session: its second sequenced message goes out as 3, so the "
        "receiver buffers everything after the gap and never delivers it.",
    ),
    "stranger-acks": (
        "SES-019",
        "An answer without a session (a ProtocolError with sequence number 0 from another incarnation of a peer "
        "this one is in session with) has its ack taken as an ack of the live session: messages it names are "
        "never retransmitted although the live incarnation never received them.",
    ),
    "resend-to-fenced": (
        "SES-013",
        "When a peer incarnation is fenced, the sequenced messages it had not acknowledged are kept and "
        "retransmitted to it every retransmission interval, for ever, instead of being dropped.",
    ),
    "forget-replaced-fences": (
        "SES-015",
        "Once a new incarnation of a peer opens a session, the fence records of its earlier incarnations are "
        "forgotten: a late Hello from a fenced incarnation is then welcomed as a restart, and fences the "
        "incarnation that replaced it.",
    ),
    "accept-lz4-unnegotiated": (
        "FET-017",
        "Every FetchRequest carries acceptLz4 = true, also on a session where lz4 is not in use.",
    ),
    "answer-fenced-every-time": (
        "SES-017",
        "A fenced incarnation is answered ProtocolError(DECLARED_DEAD) for every message it sends (every resent "
        "Hello included), however many a second, instead of at most once a second.",
    ),
    "ignore-lz4-refusal": (
        "FET-067",
        "A ProtocolError(FEATURE_NOT_NEGOTIATED) with relatedSeq 0 from a holder is only logged: the requests "
        "it refused (those with acceptLz4 = true) wait out the fetch progress timeout, and are then asked for "
        "again with acceptLz4 = true.",
    ),
    "parallel-self-registrations": (
        "BOR-021",
        "Each task that ends keeping a borrowed ref sends a RegisterBorrower of its own for it, although one "
        "for the same object is still in flight (a second need does not wait for the first).",
    ),
    "retain-refused-grant": (
        "BOR-026",
        "A self-registration the owner refused still leaves the ref in the TaskReply's retained list, under "
        "the refused forwardId, as if the owner had granted it.",
    ),
    "no-stall-limit": (
        "SES-012",
        "A session whose oldest sequenced message stays unacknowledged is never declared stalled: a receiver "
        "that keeps sending heartbeats but never acknowledges is retransmitted to for ever, and never declared "
        "dead.",
    ),
    "confirm-revives-grant": (
        "BOR-022",
        "An owner that receives a BorrowConfirmed with held = true for a grant it no longer has (released "
        "meanwhile) records that grant again, so the object outlives its last real grant.",
    ),
    "release-to-fenced-owner": (
        "BOR-024",
        "A borrower whose last hold on a ref goes after the ref's owner incarnation was fenced still releases "
        "its grants: ReleaseBorrows goes to the owner's PeerId, so a new incarnation of the owner gets a release "
        "for grants it never made.",
    ),
    "keep-settled-out-of-scope": (
        "OWN-009",
        "An owned object that went out of scope while pending is not reclaimed when its task settles: it stays "
        "ready (or failed) in the table for ever, its stored copy never freed, since reclamation is only looked "
        "at when a hold goes.",
    ),
    "reclaim-before-answering": (
        "OWN-010",
        "When an out-of-scope object settles, the owner reclaims it first and only then answers the "
        "GetObjectStatus requests waiting on it, which therefore get FREED instead of the object's outcome.",
    ),
    "keep-failed-objects": (
        "OWN-013",
        "A failed owned object is never reclaimed: once out of scope it keeps its error and its table entry, and "
        "a later GetObjectStatus still answers FAILED.",
    ),
    "primary-loss-is-loss": (
        "LOC-007",
        "When the peer holding an object's primary copy dies, the object is taken as lost although secondary "
        "copies remain: their locations are forgotten with the primary, so it fails with OBJECT_LOST (or is "
        "rebuilt) instead of staying ready.",
    ),
    "release-resent-grants": (
        "RPC-016",
        "A re-sent TaskReply for a task already settled is disposed of by releasing every grant it carries, also "
        "one the adopted first reply recorded: the owner is told to drop a grant the adopted value still relies on.",
    ),
    "no-retry-for-failed-arguments": (
        "RPC-015",
        "A submitter does not retry a task answered TASK_FAILED when it knows that one of the task's arguments it "
        "owns has failed (taking the code as the argument's, not the function's), although retry_exceptions and "
        "the budget allow a retry.",
    ),
    "restart-on-dead-status": (
        "ACT-016",
        "An actor owner that receives ActorStatus(DEAD) from a live host re-creates the actor (on an executor "
        "with room) while maxRestarts leaves restarts, as if the host had died.",
    ),
    "dead-status-ends-calls": (
        "ACT-016",
        "An actor owner that receives ActorStatus(DEAD) fails every call still pending with ACTOR_DIED at once, "
        "so a reply the host sends after the DEAD (a call that was registering) is dropped.",
    ),
    "handle-without-host-address": (
        "ACT-024",
        "An actor's handle object (its descriptor) is written with an empty hostAddress although the host is "
        "another peer, so a caller that is not the owner sends its calls to the owner.",
    ),
    "declared-dead-always-names-restart": (
        "ERR-005",
        "Every ProtocolError(DECLARED_DEAD) names requirement SES-006, also one answering a fenced peer's own "
        "message, which then tells that peer that this one restarted.",
    ),
    "list-length-limit": (
        "GEN-011",
        "A SubmitTask with more than 1,000 arguments is refused as MALFORMED, although the list decodes within "
        "the frame and traversal limits.",
    ),
    "orphaned-actors-live-on": (
        "ACT-005",
        "A host keeps the actors of an owner that died: they go on answering every caller's calls, although "
        "the actor dies with its owner.",
    ),
    "answer-after-goodbye": (
        "LIV-032",
        "A peer that has sent its Goodbyes still answers a GetObjectStatus that arrives while it lingers: a "
        "sequenced ObjectStatus goes out after its Goodbye.",
    ),
    "kill-waits-for-constructor": (
        "ACT-029",
        "A KillActor for an actor whose constructor has not started (its arguments are still being resolved) is "
        "ignored: no ActorStatus(DEAD) is sent, and once the arguments arrive the constructor runs and the actor "
        "is reported ALIVE.",
    ),
    "unequal-status-lists-refused": (
        "LOC-024",
        "An ObjectStatus whose locations and locationAddresses (or relays and relayAddresses) differ in length is "
        "refused as MALFORMED instead of being paired up to the shorter list, so the argument it answers is "
        "never fetched.",
    ),
    "calls-before-alive-refused": (
        "ACT-012",
        "A method call that arrives while the actor's constructor is still waiting for its arguments is refused "
        "(ProtocolError WRONG_STATE) instead of being queued until the actor is alive.",
    ),
    "rebuild-death-as-lost": (
        "LIN-008",
        "When the executor of a task's later attempt (a retry or a rebuild) dies and no budget is left, the "
        "returns fail with OBJECT_LOST instead of WORKER_DIED, as if a rebuild that fails were a loss.",
    ),
    "resend-tasks-as-new": (
        "RPC-003",
        "A SubmitTask that is still unacknowledged when the retransmission timer fires is sent again as a new "
        "sequenced message (a new sequence number, same task id and attempt), once per task, besides the "
        "session's retransmission of the original.",
    ),
    "rerun-without-argument": (
        "LIN-014",
        "An owner re-runs a task to rebuild a lost return although one of the task's owned arguments is "
        "`released` and nothing can re-create it (a put object): the SubmitTask goes out with that argument, "
        "instead of the returns failing at once with OBJECT_LOST naming LIN-014.",
    ),
}


def _reused_actor_id_ignored(iut: Iut) -> None:
    core = iut.node.core
    on_create = core._on_CreateActor

    def patched(r: Any, msg: Any) -> None:
        h = core.hosted.get(msg.actor_id)
        if h is not None and (h.owner, h.owner_incarnation) != (r.peer, r.incarnation):
            return  # breaks ACT-035: dropped as a duplicate, unanswered
        on_create(r, msg)

    core._on_CreateActor = patched


def _skip_sequence_number(iut: Iut) -> None:
    core = iut.node.core
    send = core._send_sequenced

    def patched(r: Any, body: Any) -> None:
        if r.out_seq == 1:
            r.out_seq += 1  # breaks SES-001: number 2 is never sent
        send(r, body)

    core._send_sequenced = patched  # type: ignore[method-assign]


def _stranger_acks(iut: Iut) -> None:
    core = iut.node.core
    on_error = core._on_session_error

    def patched(r: Any, env: Any, msg: Any) -> None:
        if r.state == "alive" and r.incarnation and env.sender_incarnation != r.incarnation:
            core._take_ack(r, env.ack)  # breaks SES-019: an answer without a session acknowledges
        on_error(r, env, msg)

    core._on_session_error = patched  # type: ignore[method-assign]


def _resend_to_fenced(iut: Iut) -> None:
    core = iut.node.core
    declare = core._declare_dead
    on_tick = core._on_tick
    kept: dict[int, tuple[Any, list[Any], list[int]]] = {}

    def patched_declare(r: Any, *args: Any, **kwargs: Any) -> None:
        if r.unacked and r.state != "dead":
            kept[id(r)] = (r, list(r.unacked.values()), [core.now_ms])
        declare(r, *args, **kwargs)

    def patched_tick() -> None:
        on_tick()
        for r, envs, last in kept.values():
            if core.now_ms - last[0] >= core.config.retransmit_ms:
                last[0] = core.now_ms
                for env in envs:  # breaks SES-013: still sent to the fenced incarnation
                    core._emit_frame(r, env)

    core._declare_dead = patched_declare  # type: ignore[method-assign]
    core._on_tick = patched_tick  # type: ignore[method-assign]


def _forget_replaced_fences(iut: Iut) -> None:
    core = iut.node.core
    on_hello = core._on_hello

    def patched(env: Any, hello: Any) -> None:
        on_hello(env, hello)
        r = core.remotes.get(env.sender)
        if r is not None and r.state == "alive" and r.incarnation == env.sender_incarnation:
            for old in [f for f in core.fenced if f[0] == env.sender and f[1] != env.sender_incarnation]:
                core.fenced.discard(old)  # breaks SES-015: the fence goes with the record it replaced

    core._on_hello = patched  # type: ignore[method-assign]


def _accept_lz4_unnegotiated(iut: Iut) -> None:
    core = iut.node.core
    send = core._send_unsequenced

    def patched(r: Any, body: Any) -> None:
        if isinstance(body, FetchRequest):
            body = replace(body, accept_lz4=True)  # breaks FET-017
        send(r, body)

    core._send_unsequenced = patched  # type: ignore[method-assign]


def _parallel_self_registrations(iut: Iut) -> None:
    core = iut.node.core
    register = core._register_retained

    def patched(ex: Any, key: Any, hinted: Any) -> Any:
        for oid in list(ex.held) + list(hinted):
            b = core.borrowed.get(oid)
            if b is not None:
                b.self_registration = ""  # breaks BOR-021: the one in flight is not waited for
        return register(ex, key, hinted)

    core._register_retained = patched  # type: ignore[method-assign]


def _confirm_revives_grant(iut: Iut) -> None:
    core = iut.node.core
    on_confirmed = core._on_BorrowConfirmed

    def patched(r: Any, msg: Any) -> None:
        e = core.owned.get(msg.object_id)
        if e is not None and msg.held and msg.forward_id not in e.borrowers.get(r.peer, {}):
            e.borrowers.setdefault(r.peer, {})[msg.forward_id] = r.peer  # breaks BOR-022
        on_confirmed(r, msg)

    core._on_BorrowConfirmed = patched  # type: ignore[method-assign]


def _release_to_fenced_owner(iut: Iut) -> None:
    core = iut.node.core
    check = core._check_borrowed
    on_dead = core._on_peer_dead

    def patched_dead(r: Any) -> None:
        kept = {oid: dict(b.grants) for oid, b in core.borrowed.items() if b.owner == r.peer and b.grants}
        on_dead(r)
        for oid, grants in kept.items():
            b = core.borrowed.get(oid)
            if b is not None:
                b.grants.update(grants)  # the grants outlive their owner's death


    def patched(oid: str) -> None:
        b = core.borrowed.get(oid)
        key = (b.owner, b.ref.owner_incarnation) if b is not None else None
        hidden = key in core.fenced
        if hidden:
            core.fenced.discard(key)  # breaks BOR-024: the owner's death is not looked at
        try:
            check(oid)
        finally:
            if hidden:
                core.fenced.add(key)

    core._check_borrowed = patched  # type: ignore[method-assign]
    core._on_peer_dead = patched_dead  # type: ignore[method-assign]


def _reused_task_id_takes_the_task(iut: Iut) -> None:
    core = iut.node.core
    on_submit = core._on_SubmitTask

    def patched(r: Any, spec: Any) -> None:
        index = (spec.task_id, spec.attempt)
        other = core.exec_index.get(index)
        if other is None or other[:2] == (r.peer, r.incarnation):
            on_submit(r, spec)
            return
        del core.exec_index[index]  # breaks TASK-068: the second SubmitTask is indexed in the first's place
        try:
            on_submit(r, spec)
        finally:
            core.exec_index.setdefault(index, other)  # refused for another reason: as it was

    core._on_SubmitTask = patched


def _reused_task_id_refused(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation

    core = iut.node.core
    on_submit = core._on_SubmitTask

    def patched(r: Any, spec: Any) -> None:
        other = core.exec_index.get((spec.task_id, spec.attempt))
        if other is not None and other[:2] != (r.peer, r.incarnation):  # breaks TASK-068: refused
            raise ProtocolViolation(ErrorCode.MALFORMED, f"task {spec.task_id!r} is here from another peer", "TASK-068")
        on_submit(r, spec)

    core._on_SubmitTask = patched


def _keep_freed_copies(iut: Iut) -> None:
    from ..core.messages import FreeObjects

    core = iut.node.core
    on_free = core._on_FreeObjects

    def patched(r: Any, msg: Any) -> None:
        kept = tuple(oid for oid in msg.object_ids if core.copies.get(oid) != r.peer)  # breaks GC-004
        on_free(r, FreeObjects(kept))

    core._on_FreeObjects = patched


def _adopt_any_attempt(iut: Iut) -> None:
    core = iut.node.core
    on_reply = core._on_TaskReply

    def patched(r: Any, reply: Any) -> None:
        t = core.tasks.get(reply.task_id)
        if t is not None and t.state == "submitted" and r.peer == t.executor and reply.attempt != t.spec.attempt:
            reply = replace(reply, attempt=t.spec.attempt)  # breaks RPC-006
        on_reply(r, reply)

    core._on_TaskReply = patched


def _ready_is_final(iut: Iut) -> None:
    from ..core.messages import ObjectState

    core = iut.node.core
    on_status = core._on_ObjectStatus
    was_ready: set[str] = set()

    def patched(r: Any, msg: Any) -> None:
        b = core.borrowed.get(msg.object_id)
        if msg.state is ObjectState.READY:
            was_ready.add(msg.object_id)
        elif b is not None and b.owner == r.peer and b.state == "unresolved" and msg.object_id in was_ready:
            b.status_requested = False
            core._request_status(b)  # breaks OBJ-015: FAILED after READY taken for "not yet"
            return
        on_status(r, msg)

    core._on_ObjectStatus = patched


def _status_ignores_features(iut: Iut) -> None:
    from ..core.messages import ObjectStatus

    core = iut.node.core
    status_message, feature_problem = core._status_message, core._feature_problem

    def patched_status(oid: Any, asker: Any = "") -> Any:
        return status_message(oid)  # breaks OBJ-012: the asker's features are not looked at

    def patched_problem(r: Any, body: Any) -> Any:
        return None if isinstance(body, ObjectStatus) else feature_problem(r, body)  # nor checked on the way out

    core._status_message = patched_status
    core._feature_problem = patched_problem


def _registrations(iut: Iut, mode: str) -> None:
    core = iut.node.core
    on_register = core._on_RegisterBorrower

    def patched(r: Any, msg: Any) -> None:
        e = core.owned.get(msg.object_id)
        if e is not None and mode == "fenced" and (msg.borrower, msg.borrower_incarnation) in core.fenced:
            e.borrowers.setdefault(msg.borrower, {})[msg.forward_id] = r.peer  # breaks BOR-015
            e.grant_incarnations[msg.forward_id] = msg.borrower_incarnation
            core._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id))
            return
        if e is not None and mode == "unready" and e.state in ("pending", "failed"):
            info = ErrorInfo(ErrorCode.WRONG_STATE, f"{msg.object_id} is {e.state}", "BOR-016")  # breaks BOR-016
            core._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id, info))
            return
        on_register(r, msg)

    core._on_RegisterBorrower = patched


def _adopt_stray_chunks(iut: Iut) -> None:
    fetcher = iut.node.fetcher
    on_chunk = fetcher._on_chunk

    def patched(sender: Any, c: Any) -> None:
        if c.request_id not in fetcher._by_request:
            for request_id, f in list(fetcher._by_request.items()):
                if f.object_id == c.object_id and request_id in f.outstanding:
                    c = replace(c, request_id=request_id)  # breaks FET-013: adopted by a request we wait for
                    break
        on_chunk(sender, c)

    fetcher._on_chunk = patched


def _portable_reader(mode: str) -> None:
    """The portable reader of ``refrpc.codec`` (used by every decode in this process) as ``mode`` says."""
    from ..codec import _value

    if mode == "shallow":
        _value.MAX_PORTABLE_DEPTH = 32  # breaks VAL-007
        return
    get_node = _value._get_node

    def patched(r: Any, depth: int) -> Any:
        try:
            which = r._which_str()
        except Exception:
            if mode == "null":
                return None  # breaks VAL-014: an unknown member read as null
            raise
        if which == "map" and mode == "repeat":
            result: dict[str, Any] = {}
            for entry in r._get_by_field(_value._P_MAP):  # breaks VAL-005: a repeated key replaces
                result[entry._get_by_field(_value._E_KEY)] = patched(entry._get_by_field(_value._E_VALUE), depth + 1)
            return result
        return get_node(r, depth)

    _value._get_node = patched


def _unknown_codes_as_task_failed(iut: Iut, handler: str) -> None:
    """``handler`` (``_on_TaskReply`` or ``_on_ObjectStatus``) reads an UNRECOGNIZED error as TASK_FAILED."""
    core = iut.node.core
    original = getattr(core, handler)

    def known(error: Any) -> Any:
        if error is not None and error.code is ErrorCode.UNRECOGNIZED:
            return replace(error, code=ErrorCode.TASK_FAILED)  # breaks ERR-002
        return error

    def patched(r: Any, msg: Any) -> None:
        if hasattr(msg, "returns"):
            msg = replace(msg, returns=tuple(replace(rv, error=known(rv.error)) for rv in msg.returns))
        else:
            msg = replace(msg, error=known(msg.error))
        original(r, msg)

    setattr(core, handler, patched)


def _overtake_reserved(iut: Iut) -> None:
    from ..runtime._slots import SlotBook

    class Greedy(SlotBook):
        __slots__ = ()

        def first_startable(self, waiting: Any) -> int:
            for i, (cpu, resources) in enumerate(waiting):
                if self.fits(cpu, resources):
                    return i  # breaks TASK-055: what earlier entries reserve is not looked at
            return -1

    executor = iut.executor
    offer = executor.offer
    executor._book.__class__ = Greedy

    def patched(*args: Any, **kwargs: Any) -> None:
        offer(*args, **kwargs)
        executor._book.__class__ = Greedy

    executor.offer = patched  # type: ignore[method-assign]


def _cancelled_waiting_task_waits(iut: Iut) -> None:
    executor = iut.executor
    stop_task = executor.stop_task

    def patched(task_id: str, attempt: int) -> None:
        key = (task_id, attempt)
        with executor._lock:
            queued = key in executor._queued and key not in executor._running and any(
                isinstance(ins, ev.RunTask) and (ins.task_id, ins.attempt) == key for ins in executor._pending)
            if queued:
                executor._stopped.add(key)  # breaks TASK-055: it keeps its place, answered when it fits
                return
        stop_task(task_id, attempt)

    executor.stop_task = patched  # type: ignore[method-assign]


def _demand_counted(iut: Iut, count: Callable[[int], int]) -> None:
    """The fixture executor counts each task's CPU demand as ``count`` says."""
    executor = iut.executor
    demand_of = executor._demand_of

    def patched(ins: Any) -> Any:
        cpu, named = demand_of(ins)
        return (count(cpu) if not ins.actor_id else cpu), named

    executor._demand_of = patched  # type: ignore[method-assign]


def _demand_in_binary(iut: Iut) -> None:
    """Replaces the submitter's wire conversion in this process (the core calls it by its module name)."""
    import math

    from ..core import _tasks

    def binary(amount: float, limit: int) -> int:
        return min(math.ceil(amount * 10000), limit) if amount > 0 else 0  # breaks TASK-061

    def wire_demand(demand: Any) -> Any:
        cpus, named = demand
        return (binary(cpus, _tasks.MAX_CPU_UNITS),
                tuple(_tasks.ResourceAmount(n, binary(a, _tasks.MAX_RESOURCE_UNITS)) for n, a in named))

    _tasks.wire_demand = wire_demand  # type: ignore[assignment]


def _actor_calls_in_arrival_order(iut: Iut) -> None:
    core = iut.node.core
    core._actor_next = lambda h: h.queue[0] if h.queue else None  # type: ignore[method-assign]  # breaks ACT-014


def _unready_actor_call_holds_everyone(iut: Iut) -> None:
    core = iut.node.core

    def patched(h: Any) -> Any:
        lowest: dict[Any, int] = {}
        for k in h.queue:
            seq = core.exec_tasks[k].spec.actor_seq
            lowest[(k[0], k[1])] = min(seq, lowest.get((k[0], k[1]), seq))
        for k in h.queue:
            if core.exec_tasks[k].spec.actor_seq == lowest[(k[0], k[1])]:
                return k  # breaks ACT-034: ready or not, the earliest caller's call is next
        return None

    core._actor_next = patched  # type: ignore[method-assign]


def _incarnation_0_before_features(iut: Iut) -> None:
    core = iut.node.core
    problem = core._feature_problem

    def zero(body: Any) -> bool:
        args = getattr(body, "args", ())
        refs = [a.ref for a in args if getattr(a, "ref", None) is not None]
        refs += [d for a in args if getattr(a, "value", None) is not None for d in a.value.nested]
        return any(d.owner_incarnation == 0 for d in refs)

    def patched(r: Any, body: Any) -> Any:
        if zero(body):
            return None  # breaks REF-004: incarnation 0 judged first (delivery answers MALFORMED)
        return problem(r, body)

    core._feature_problem = patched  # type: ignore[method-assign]


def _refused_answer_leaves_request_open(iut: Iut) -> None:
    core = iut.node.core
    refused = core._answer_refused

    def patched(r: Any, answer: Any, error: Any) -> None:
        if error.code is ErrorCode.FEATURE_NOT_NEGOTIATED:
            return  # breaks GEN-041: the request stays open
        refused(r, answer, error)

    core._answer_refused = patched  # type: ignore[method-assign]


def _late_actor_call_queued(iut: Iut) -> None:
    core = iut.node.core
    enqueue, actor_next = core._actor_enqueue, core._actor_next

    def late(key: Any) -> bool:
        ex = core.exec_tasks.get(key)
        h = core.hosted.get(ex.spec.actor_id) if ex is not None else None
        return h is not None and h.state == "alive" and ex.spec.actor_seq <= h.last_run.get((key[0], key[1]), 0)

    #: Late calls held back, by caller incarnation: refused only once none of that
    #: caller's calls waits or runs any more (a queue picking the lowest actorSeq
    #: first would otherwise reach them at once).
    held: dict[tuple, list] = {}

    def patched_enqueue(key: Any) -> None:
        if late(key):
            held.setdefault(key[:2], []).append(key)  # breaks ACT-014: not refused on arrival
            return
        enqueue(key)

    def patched_next(h: Any) -> Any:
        for caller in list(held):
            if not any(q[:2] == caller for q in (*h.queue, *h.running)):
                for key in held.pop(caller):
                    enqueue(key)  # refused now, late
        return actor_next(h)

    core._actor_enqueue = patched_enqueue  # type: ignore[method-assign]
    core._actor_next = patched_next  # type: ignore[method-assign]


def _stopped_actor_call_answered_late(iut: Iut) -> None:
    from ..core import events as core_events

    core = iut.node.core
    actor_dead = core._hosted_actor_dead

    def patched(h: Any, info: Any, notify: bool = True, calls: Any = None) -> None:
        running = [ex for ex in core.exec_tasks.values() if ex.spec.actor_id == h.actor_id and ex.state == "running"]
        for ex in running:
            ex.state = "stopping"  # hidden from the original, which answers running calls at once
        try:
            actor_dead(h, info, notify, calls)
        finally:
            for ex in running:
                ex.state = "running"  # breaks TASK-063: answered when its code ends
                core._out(core_events.StopTask(core._sid, ex.run_id, ex.spec.attempt))

    core._hosted_actor_dead = patched  # type: ignore[method-assign]


def _owner_death_answers_callers_late(iut: Iut) -> None:
    from ..core import events as core_events

    core = iut.node.core
    actor_dead = core._hosted_actor_dead

    def patched(h: Any, info: Any, notify: bool = True, calls: Any = None) -> None:
        if notify or info.requirement != "ACT-038":
            actor_dead(h, info, notify, calls)
            return
        running = [ex for ex in core.exec_tasks.values() if ex.spec.actor_id == h.actor_id and ex.state == "running"]
        for ex in running:
            ex.state = "stopping"  # hidden from the original, which answers running calls at once
        try:
            # breaks ACT-038: the queued calls get OWNER_DIED, not ACTOR_DIED
            actor_dead(h, ErrorInfo(ErrorCode.OWNER_DIED, info.message, "FATE-004"), notify, calls)
        finally:
            for ex in running:
                ex.state = "running"  # breaks ACT-038: answered when its code ends
                core._out(core_events.StopTask(core._sid, ex.run_id, ex.spec.attempt))

    core._hosted_actor_dead = patched  # type: ignore[method-assign]


def _undecodable_hello_ignored(iut: Iut) -> None:
    core = iut.node.core
    malformed = core._malformed

    def patched(sender: Any, incarnation: int, seq: int, error: Any, *rest: Any, **kw: Any) -> None:
        if seq == 0:
            return  # breaks HS-036: no MALFORMED for an undecodable Hello on a live session
        malformed(sender, incarnation, seq, error, *rest, **kw)

    core._malformed = patched  # type: ignore[method-assign]


def _bad_copies_asked_for_ever(iut: Iut) -> None:
    from ..runtime import _fetch

    _fetch.BAD_COPY_LIMIT = 1 << 62  # breaks OBJ-077: never stops asking


def _undecodable_hello_answered_unsequenced(iut: Iut) -> None:
    core = iut.node.core
    malformed = core._malformed

    def patched(sender: Any, incarnation: int, seq: int, error: Any, receiver: Any = None,
                receiver_incarnation: Any = None, answer: Any = None) -> None:
        r = core.remotes.get(sender)
        if (seq == 0 and receiver == core.peer_id and receiver_incarnation == core.incarnation
                and (sender, incarnation) not in core.fenced
                and r is not None and r.state == "alive" and r.incarnation == incarnation):
            # breaks GEN-012 (HS-036): answered outside the session, as a Hello that decodes is
            info = ErrorInfo(error.code, error.message, error.requirement or "GEN-004")
            core._send_unsequenced(r, ProtocolError(info, 0))
            return
        malformed(sender, incarnation, seq, error, receiver, receiver_incarnation, answer)

    core._malformed = patched  # type: ignore[method-assign]


def _unbounded_joiner_bindings(iut: Iut) -> None:
    node = iut.node
    bound = node._bound

    def patched(sender: str, user_id: Any, proof: Any) -> bool:
        if not node.admits_joiners or not isinstance(user_id, str) or not sender or sender in node.keys:
            return bound(sender, user_id, proof)
        if not node.cluster_key.accepts_join(sender, user_id, proof, node.clock()):
            return False
        node.keys[sender] = user_id  # breaks SEC-023: no bound on the bindings
        return True

    node._bound = patched  # type: ignore[method-assign]


def _run_without_resource(iut: Iut) -> None:
    executor = iut.executor
    demand_of = executor._demand_of

    def patched(ins: Any) -> Any:
        cpu, named = demand_of(ins)
        offer = executor._book.offer
        return cpu, tuple((n, a) for n, a in named if n in offer)  # breaks TASK-053

    executor._demand_of = patched  # type: ignore[method-assign]
    executor._lacking = lambda ins: ""  # type: ignore[method-assign]


def _actors_hold(iut: Iut, *, nothing: bool) -> None:
    """The fixture executor counts no lifetime demand for the actors it hosts
    (``nothing``), or only the named resources its node offers."""
    executor = iut.executor
    lifetime_demand = executor.lifetime_demand

    def patched(ins: Any) -> Any:
        if nothing:
            return 0, ()
        cpu, named = lifetime_demand(ins)
        return cpu, tuple((n, a) for n, a in named if n in executor._book.offer)

    executor.lifetime_demand = patched  # type: ignore[method-assign]


def _free_while_borrowed(iut: Iut) -> None:
    core = iut.node.core
    check_owned = core._check_owned

    def patched(oid: str) -> None:
        e = core.owned.get(oid)
        if e is not None and e.state in ("ready", "failed") and e.borrowers and not (
            e.local_refs or e.submitted_task_refs or e.contained_in or e.pins
        ):
            e.borrowers = {}  # breaks OWN-004: grants outstanding, reclaimed anyway
        check_owned(oid)

    core._check_owned = patched  # type: ignore[method-assign]


def _ignore_duplicate_task(iut: Iut) -> None:
    core = iut.node.core
    on_submit, send_reply = core._on_SubmitTask, core._send_reply
    #: Duplicates of tasks still in progress: run again once the first copy replied.
    again: dict[tuple, tuple[Any, Any]] = {}

    def run_again(r: Any, spec: Any, key: tuple) -> None:
        old = core.exec_tasks.pop(key)  # breaks RPC-001: the duplicate is a new task
        core.exec_index.pop((old.run_id, spec.attempt), None)
        on_submit(r, spec)
        core._release_exec_holds(old)  # the new record holds the arguments now

    def patched_submit(r: Any, spec: Any) -> None:
        key = (r.peer, r.incarnation, spec.task_id, spec.attempt)
        old = core.exec_tasks.get(key) if not spec.actor_id else None
        if old is None:
            on_submit(r, spec)
        elif old.state == "replied":
            run_again(r, spec, key)
        else:
            again[key] = (r, spec)

    def patched_send_reply(key: Any, ex: Any) -> None:
        send_reply(key, ex)
        pending = again.pop(key, None)
        if pending is not None and key in core.exec_tasks:
            run_again(*pending, key)

    core._on_SubmitTask = patched_submit  # type: ignore[method-assign]
    core._send_reply = patched_send_reply  # type: ignore[method-assign]


def _skip_release(iut: Iut) -> None:
    core = iut.node.core
    flush = core._flush_batches

    def patched() -> None:
        core.pending_releases.clear()  # breaks BOR-005
        flush()

    core._flush_batches = patched  # type: ignore[method-assign]


def _wrong_error_code(iut: Iut) -> None:
    iut.executor.failure_code = ErrorCode.WORKER_DIED  # breaks TASK-007


def _never_answer_fetch(iut: Iut) -> None:
    fetcher = iut.node.fetcher
    on_data = fetcher.on_data

    def patched(d: ev.DeliverData) -> None:
        if isinstance(d.message, FetchRequest):
            return  # breaks FET-001
        on_data(d)

    fetcher.on_data = patched  # type: ignore[method-assign]


def _no_heartbeat(iut: Iut) -> None:
    core = iut.node.core
    send = core._send_unsequenced

    def patched(r: Any, body: Any) -> None:
        if isinstance(body, Heartbeat):
            return  # breaks LIV-001
        send(r, body)

    core._send_unsequenced = patched  # type: ignore[method-assign]


def _heartbeats_only_liveness(iut: Iut) -> None:
    core = iut.node.core
    on_receive = core._on_receive

    def patched(env: Any) -> None:
        r = core.remotes.get(env.sender)
        before = r.last_heard_ms if r is not None else None
        on_receive(env)
        if before is not None and not isinstance(env.body, Heartbeat) and core.remotes.get(env.sender) is r:
            r.last_heard_ms = before  # breaks LIV-002: only Heartbeats are evidence of life

    core._on_receive = patched  # type: ignore[method-assign]


def _accept_unknown_version(iut: Iut) -> None:
    core = iut.node.core
    refuse = core._refuse_greeting

    def patched(greeting: Any) -> Any:
        if greeting.protocol_major != PROTOCOL_MAJOR:
            greeting = replace(greeting, protocol_major=PROTOCOL_MAJOR)  # breaks HS-002
        return refuse(greeting)

    core._refuse_greeting = patched  # type: ignore[method-assign]


def _no_goodbye(iut: Iut) -> None:
    core = iut.node.core

    def patched(s: ev.Shutdown) -> None:
        core.stopped = True  # breaks LIV-006: no Goodbye to anyone

    core._dispatch_table[ev.Shutdown] = patched


def _inline_large_results(iut: Iut) -> None:
    iut.executor.store_large_results = False  # breaks TASK-004


def _no_register_before_send(iut: Iut) -> None:
    core = iut.node.core
    forward_nested = core._forward_nested

    def patched(d: RefDescriptor, ex: Any, key: Any, index: int) -> RefDescriptor:
        if d.owner not in (ex.owner, core.peer_id):
            return replace(d, forward_id="")  # breaks BOR-002: sent with no grant
        return forward_nested(d, ex, key, index)

    core._forward_nested = patched  # type: ignore[method-assign]


def _release_any_grant(iut: Iut) -> None:
    core = iut.node.core
    on_release = core._on_ReleaseBorrows

    def patched(r: Any, msg: Any) -> None:
        for rel in msg.releases:
            e = core.owned.get(rel.object_id)
            grants = e.borrowers.get(r.peer) if e is not None else None
            for fid in rel.forward_ids:
                if grants and fid not in grants:
                    del grants[next(iter(grants))]  # breaks BOR-018: another grant goes instead
            if e is not None and grants is not None and not grants:
                del e.borrowers[r.peer]
        on_release(r, msg)

    core._on_ReleaseBorrows = patched  # type: ignore[method-assign]


def _keep_dead_borrower_grants(iut: Iut) -> None:
    core = iut.node.core
    on_dead = core._on_peer_dead

    def patched(r: Any) -> None:
        hidden = r.peer + "\0dead"  # out of the death effects' sight, under another name
        for e in core.owned.values():
            if r.peer in e.borrowers:
                e.borrowers[hidden] = e.borrowers.pop(r.peer)
        on_dead(r)
        for e in core.owned.values():
            if hidden in e.borrowers:
                e.borrowers[r.peer] = e.borrowers.pop(hidden)  # breaks BOR-009: the grants stay

    core._on_peer_dead = patched  # type: ignore[method-assign]


def _own_heartbeat_interval(iut: Iut) -> None:
    core = iut.node.core
    on_tick = core._on_tick

    def patched() -> None:
        for r in core.remotes.values():
            r.heartbeat_interval_ms = 0  # breaks LIV-007: the local interval is used for everyone
        on_tick()

    core._on_tick = patched  # type: ignore[method-assign]


def _keep_task_records(iut: Iut) -> None:
    core = iut.node.core
    core._on_acked = lambda r, ack: None  # type: ignore[method-assign]  # breaks RPC-014


def _keep_submitted_tasks(iut: Iut) -> None:
    core = iut.node.core
    core._forget_task = lambda t: None  # type: ignore[method-assign]  # breaks RPC-014


def _no_contained_in(iut: Iut) -> None:
    core = iut.node.core
    core._hold_nested = lambda container, refs: core._drop_nested_grants(refs)  # type: ignore[method-assign]  # breaks GC-002


def _keep_unadopted_replies(iut: Iut) -> None:
    core = iut.node.core
    core._drop_reply = lambda reply: None  # type: ignore[method-assign]  # breaks TASK-015


def _drop_sends_of(iut: Iut, kind: type) -> None:
    core = iut.node.core
    send = core._send

    def patched(peer: Any, body: Any, address: str = "", incarnation: int = 0) -> None:
        if not isinstance(body, kind):
            send(peer, body, address, incarnation)

    core._send = patched  # type: ignore[method-assign]


def _schema_error_names(iut: Iut) -> None:
    def camel(code: Any) -> str:
        head, *rest = code.name.lower().split("_")
        return head + "".join(part.capitalize() for part in rest)

    iut.error_code_name = camel  # breaks CNF-018


def _reply_before_forward_registered(iut: Iut) -> None:
    core = iut.node.core
    forward_nested = core._forward_nested
    on_registered = core._reply_registration_done

    def patched(d: RefDescriptor, ex: Any, key: Any, index: int) -> RefDescriptor:
        out = forward_nested(d, ex, key, index)
        if out.forward_id in ex.registrations and d.owner != core.peer_id:
            del ex.registrations[out.forward_id]  # breaks BOR-002: the reply does not wait for it
        return out

    def patched_done(reg: Any, error: Any) -> None:
        ex = core.exec_tasks.get(reg.purpose[1])
        if reg.purpose[0] == "reply" and (ex is None or ex.state != "registering"):
            return  # the reply has left already
        on_registered(reg, error)

    core._forward_nested = patched  # type: ignore[method-assign]
    core._reply_registration_done = patched_done  # type: ignore[method-assign]


def _unbounded_actor_restarts(iut: Iut) -> None:
    core = iut.node.core
    host_died = core._actor_host_died

    def patched(dead: Any) -> None:
        for a in core.owned_actors.values():
            a.restarts = 0  # breaks ACT-011: restarts never run out
        host_died(dead)

    core._actor_host_died = patched  # type: ignore[method-assign]


def _actor_calls_worker_died(iut: Iut) -> None:
    core = iut.node.core
    fail_task = core._fail_task

    def patched(t: Any, info: Any, event: str) -> None:
        if t.spec.actor_id and info.code is ErrorCode.ACTOR_DIED:
            info = replace(info, code=ErrorCode.WORKER_DIED)  # breaks ACT-007
        fail_task(t, info, event)

    core._fail_task = patched  # type: ignore[method-assign]


def _unknown_method_task_failed(iut: Iut) -> None:
    catalog = iut.catalog
    method = catalog.method

    def patched(instance: Any, name: str) -> Any:
        fn = method(instance, name)
        if fn is None and instance is not None:
            def missing(*args: Any) -> Any:
                raise AttributeError(f"no method {name!r}")  # breaks ACT-015: TASK_FAILED
            return missing
        return fn

    catalog.method = patched  # type: ignore[method-assign]


def _wait_for_actor_seq_gap(iut: Iut) -> None:
    core = iut.node.core
    actor_next = core._actor_next

    def patched(h: Any) -> Any:
        k = actor_next(h)
        if k is not None and core.exec_tasks[k].spec.actor_seq != h.last_run.get((k[0], k[1]), 0) + 1:
            return None  # breaks ACT-014: waits for the missing number
        return k

    core._actor_next = patched  # type: ignore[method-assign]


def _actor_handles_not_counted(iut: Iut) -> None:
    core = iut.node.core
    core._actor_handles_gone = lambda actor_id: None  # type: ignore[method-assign]  # breaks ACT-009


def _max_concurrency_not_sent(iut: Iut) -> None:
    core = iut.node.core
    start_actor = core._start_actor

    def patched(a: Any) -> None:
        a.max_concurrency = 0  # breaks ACT-013: the program's concurrency never reaches the host
        start_actor(a)

    core._start_actor = patched  # type: ignore[method-assign]


def _no_id_limits(iut: Iut) -> None:
    from ..codec import _decode

    _decode._id_checker = lambda where, max_bytes, requirement, may_be_empty: (lambda value: value)  # type: ignore[assignment]
    _decode._DECODERS.clear()  # decoders are built again, without the checks: breaks ID-007
    for cls, member in zip(_decode.MESSAGE_TYPES, _decode.BODY_MEMBERS):
        _decode._BODIES[member] = (_decode._BODIES[member][0], _decode.struct_decoder(cls))


def _status_per_wait(iut: Iut) -> None:
    core = iut.node.core
    request = core._request_status

    def patched(b: Any) -> None:
        b.status_requested = False  # breaks OBJ-014: one request per waiter
        request(b)

    core._request_status = patched  # type: ignore[method-assign]


def _no_error_rate_limit(iut: Iut) -> None:
    iut.node.core.config.max_protocol_errors_per_s = 1 << 60  # breaks ERR-008


def _no_released_state(iut: Iut) -> None:
    core = iut.node.core
    check_owned = core._check_owned

    def patched(oid: str) -> None:
        e = core.owned.get(oid)
        if e is not None and e.lineage_refs and e.state in ("ready", "failed") and not e.in_scope():
            e.lineage_refs = 0  # breaks OWN-005: nothing is kept for lineage
        check_owned(oid)

    core._check_owned = patched  # type: ignore[method-assign]


def _trace_without_transitions(iut: Iut) -> None:
    tracer = iut.node.tracer
    if tracer is None:
        return
    core_event = tracer.core_event

    def patched(ins: ev.TraceEvent) -> None:
        if ins.name != "transition":
            core_event(ins)  # breaks TRC-008: transitions are not recorded

    tracer.core_event = patched  # type: ignore[method-assign]


def _trace_put_without_creation(iut: Iut) -> None:
    tracer = iut.node.tracer
    if tracer is None:
        return
    core_event = tracer.core_event

    def patched(ins: ev.TraceEvent) -> None:
        if not (ins.name == "transition" and ins.detail.get("event") == "put"):
            core_event(ins)  # breaks SM-002: the creation row is not recorded

    tracer.core_event = patched  # type: ignore[method-assign]


def _freed_is_unknown(iut: Iut) -> None:
    from ..core.messages import ObjectState

    core = iut.node.core
    on_status = core._on_ObjectStatus

    def patched(r: Any, msg: Any) -> None:
        if msg.state == ObjectState.FREED and msg.error is None:
            msg = replace(msg, error=ErrorInfo(ErrorCode.UNKNOWN_OBJECT, "freed"))  # breaks OBJ-017
        on_status(r, msg)

    core._on_ObjectStatus = patched  # type: ignore[method-assign]


def _refusals_rate_limited(iut: Iut) -> None:
    core = iut.node.core
    protocol_error = core._protocol_error

    def patched(r: Any, code: Any, message: str, requirement: str, seq: int, counted: bool = True) -> None:
        protocol_error(r, code, message, requirement, seq)  # breaks ERR-008: every refusal counted

    core._protocol_error = patched  # type: ignore[method-assign]


def _malformed_refusal_answered(iut: Iut) -> None:
    core = iut.node.core
    malformed = core._malformed

    def patched(sender: Any, incarnation: int, seq: int, error: Any, receiver: Any = None,
                receiver_incarnation: Any = None, answer: Any = None) -> None:
        if answer is not None and answer[0] == "ProtocolError":
            answer = None  # breaks GEN-008 (answered) and GEN-030 (the request stays open)
        malformed(sender, incarnation, seq, error, receiver, receiver_incarnation, answer)

    core._malformed = patched  # type: ignore[method-assign]


def _return_ids_twice_run(iut: Iut) -> None:
    iut.node.core._check_return_ids = lambda spec: None  # type: ignore[method-assign]  # breaks VAL-030


def _error_text_exhausts_reply(iut: Iut) -> None:
    from ..core.messages import FRAME_HEADROOM

    core = iut.node.core
    fitting = core._fitting_results

    def patched(owner: Any, return_ids: Any, results: Any) -> Any:
        if owner is not None and owner.max_frame_bytes:
            texts = sum(len(r.error.message.encode()) + len(r.error.detail.encode()) for r in results if r.error is not None)
            values = sum(len(r.value.data) for r in results if r.value is not None and not r.stored)
            if values + texts > owner.max_frame_bytes - FRAME_HEADROOM:
                info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, "the reply would exceed the frame limit", "ZMQ-022")
                return tuple(ev.TaskResult(error=info) for _ in results)  # breaks ZMQ-022: the code is lost
        return fitting(owner, return_ids, results)

    core._fitting_results = patched  # type: ignore[method-assign]


def _malformed_answer_waits(iut: Iut) -> None:
    iut.node.core._answer_refused = lambda *args: None  # breaks GEN-030: the request stays open


def _sender_incarnation_0_accepted(iut: Iut) -> None:
    from ..core import _session

    _session._no_sender_incarnation = lambda incarnation: False  # breaks SES-042


def _borrower_incarnation_0_before_features(iut: Iut) -> None:
    from ..core import _session

    core = iut.node.core
    checked = core._feature_problem

    def feature_problem(r: Any, body: Any) -> Any:
        return None if _session._zero_incarnation(body) else checked(r, body)  # breaks ID-013's order

    core._feature_problem = feature_problem  # type: ignore[method-assign]


def _incarnation_0_accepted(iut: Iut) -> None:
    from ..core import _session

    _session._zero_incarnation = lambda body: ""  # breaks ID-013: incarnation 0 is taken as it comes


def _unfitted_replies(iut: Iut) -> None:
    iut.node.core._fitting_results = lambda owner, return_ids, results: results  # type: ignore[method-assign]  # breaks ZMQ-022


def _refusal_code_for_queued(iut: Iut) -> None:
    core = iut.node.core
    declare_dead = core._declare_dead

    def patched(r: Any, event: str, reason: str, source: str = "") -> None:
        if event == "rejected" and r.state != "dead":  # breaks LIV-031: the refusal's code, not a death's
            info = ErrorInfo(ErrorCode.PROTOCOL_VERSION, reason, "HS-015")
            for t in [t for t in core.tasks.values() if t.state == "submitted" and t.executor == r.peer]:
                core._unload(t)
                core._fail_task(t, info, "rejected")
        declare_dead(r, event, reason, source)

    core._declare_dead = patched  # type: ignore[method-assign]


def _empty_address_malformed(iut: Iut) -> None:
    from ..core import _session
    from ..core.messages import SubmitTask

    zero = _session._zero_incarnation

    def patched(body: Any) -> str:
        if isinstance(body, SubmitTask) and any(a.ref is not None and not a.ref.owner_address for a in body.args):
            return "RefDescriptor.ownerAddress is empty"  # breaks ID-013: an empty address is not malformed
        return zero(body)

    _session._zero_incarnation = patched


def _list_oversized_table(iut: Iut) -> None:
    from ..core import _objects

    _objects._table_bytes = lambda table: 0  # breaks ZMQ-023: every table is taken to fit


def _unpickle_fetched_forms(iut: Iut) -> None:
    iut.node._check_stored_form = lambda object_id, value: None  # type: ignore[method-assign]  # breaks OBJ-067


def _repeat_hello_renegotiates(iut: Iut) -> None:
    from ..core._session import _ALL_FEATURES, _MAX_HEARTBEAT_MS
    from ..core.messages import PROTOCOL_MINOR

    core = iut.node.core
    on_hello = core._on_hello

    def patched(env: Any, hello: Any) -> None:
        r = core.remotes.get(env.sender)
        if r is not None and r.state == "alive" and r.incarnation == env.sender_incarnation and hello.address:
            # breaks HS-036: the repeat's values replace those negotiated when the session opened
            r.features = core._negotiate(hello.features)
            r.all_features = _ALL_FEATURES.issubset(r.features)
            r.heartbeat_interval_ms = min(hello.heartbeat_interval_ms, _MAX_HEARTBEAT_MS)
            r.max_frame_bytes = hello.max_frame_bytes
            r.minor = min(PROTOCOL_MINOR, hello.protocol_minor)
        on_hello(env, hello)

    core._on_hello = patched  # type: ignore[method-assign]


def _send_uncarried_tasks(iut: Iut) -> None:
    from ..core.messages import CreateActor, SubmitTask

    core = iut.node.core
    send_body = core._send_body

    def patched(r: Any, body: Any) -> None:
        if isinstance(body, (SubmitTask, CreateActor)) and getattr(body, "attempt", 1) == 1 \
                and core._feature_problem(r, body) is not None:
            core._send_sequenced(r, body)  # breaks HS-035: sent although the session cannot carry it
            return
        send_body(r, body)

    core._send_body = patched  # type: ignore[method-assign]


def _unknown_message_stops_type(iut: Iut) -> None:
    from ..core.messages import SubmitTask

    core = iut.node.core
    on_error, send_body = core._on_ProtocolError, core._send_body
    stopped: set[tuple[str, int]] = set()

    def patched_error(r: Any, msg: Any) -> None:
        req = r.requests.get(msg.related_seq) if msg.related_seq else None
        if msg.error.code == ErrorCode.UNKNOWN_MESSAGE and req is not None and req[0] == "SubmitTask":
            stopped.add((r.peer, r.incarnation))  # breaks GEN-040: the type is never sent to it again
        on_error(r, msg)

    def patched_send(r: Any, body: Any) -> None:
        if isinstance(body, SubmitTask) and (r.peer, r.incarnation) in stopped:
            info = ErrorInfo(ErrorCode.UNKNOWN_MESSAGE, f"{r.peer} does not know SubmitTask", "GEN-001")
            core._request_refused(r, "SubmitTask", body.task_id, info)
            return
        send_body(r, body)

    core._on_ProtocolError = patched_error  # type: ignore[method-assign]
    core._send_body = patched_send  # type: ignore[method-assign]


def _repeat_hello_unchecked(iut: Iut) -> None:
    core = iut.node.core
    on_hello, refuse = core._on_hello, core._refuse_greeting

    def patched(env: Any, hello: Any) -> None:
        r = core.remotes.get(env.sender)
        if r is not None and r.state == "alive" and r.incarnation == env.sender_incarnation:
            core._refuse_greeting = lambda g: None  # breaks HS-036: a repeat is not checked
            try:
                on_hello(env, hello)
            finally:
                core._refuse_greeting = refuse
            return
        on_hello(env, hello)

    core._on_hello = patched  # type: ignore[method-assign]


def _urlsafe_base64(iut: Iut) -> None:
    from . import _values

    to_json = _values.to_json

    def patched(obj: Any, keep: Any) -> Any:
        out = to_json(obj, keep)
        if isinstance(out, dict) and isinstance(out.get("data"), str) and len(out) == 1:
            # breaks CNF-043: the URL-safe alphabet, no padding
            return {"data": out["data"].replace("+", "-").replace("/", "_").rstrip("=")}
        return out

    _values.to_json = patched  # type: ignore[assignment]


def _keep_bad_copies(iut: Iut) -> None:
    from ..store import MemoryStore

    store = iut.node.store
    if not isinstance(store, MemoryStore):
        return  # the spilling store (REFRPC_IUT_STORE_LIMIT) keeps its check

    def seal(object_id: str) -> int:
        with store._lock:
            buf, coverage = store._building.pop(object_id)
            store._used -= len(buf)
            store._reserve(object_id)
            store._sealed[object_id] = buf  # breaks OBJ-076: never decoded before it is kept
            store._used += len(buf)
        return len(buf)

    store.seal = seal  # type: ignore[method-assign]


def _unaddressed_peer_dead_at_once(iut: Iut) -> None:
    core = iut.node.core
    send_hello = core._send_hello

    def patched(r: Any) -> None:
        send_hello(r)
        if not r.address and r.state == "connecting":
            core._declare_dead(r, "silence", "no address known")  # breaks ID-016: no wait for an address

    core._send_hello = patched  # type: ignore[method-assign]


def _handshake_never_times_out(iut: Iut) -> None:
    iut.node.core.config.handshake_timeout_ms = 1 << 40  # breaks LIV-018: no end to a handshake


def _splice_fetches(iut: Iut) -> None:
    from concurrent.futures import Future

    from ..store import ObjectNotFound

    fetcher = iut.node.fetcher
    fail, fetch = fetcher._fail, fetcher.fetch
    left: dict[str, Any] = {}

    def patched_fail(f: Any, info: Any) -> None:
        if f.total >= 0 and info.code == ErrorCode.OBJECT_LOST:
            left[f.object_id] = f  # breaks FET-018: the partial copy is kept for the next answer
            fetcher._done(f)
            if not f.future.done():
                f.future.set_exception(ObjectNotFound(f"{f.object_id}: {info.message}"))
            return
        fail(f, info)

    def patched_fetch(object_id: str, locations: Any) -> Any:
        f = left.pop(object_id, None)
        others = [(p, a) for p, a in locations if p != iut.node.peer_id]
        if f is None or object_id in fetcher._by_object or not others:
            return fetch(object_id, locations)
        f.locations, f.where, f.failures, f.future = others, 0, 0, Future()
        fetcher._by_object[object_id] = f
        fetcher._start(f)  # resumes the missing ranges only
        return f.future

    fetcher._fail = patched_fail  # type: ignore[method-assign]
    fetcher.fetch = patched_fetch  # type: ignore[method-assign]


def _record_rerun_copies(iut: Iut) -> None:
    from ..core.messages import ReturnKind

    core = iut.node.core
    take_return = core._take_return

    def patched(rv: Any) -> None:
        e = core.owned.get(rv.object_id)
        if rv.kind == ReturnKind.STORED and e is not None and e.state == "ready" and rv.location not in e.locations:
            e.locations[rv.location] = None  # breaks LOC-008: another execution's bytes recorded
            return
        take_return(rv)

    core._take_return = patched  # type: ignore[method-assign]


def _simultaneous_hello_waits(iut: Iut) -> None:
    core = iut.node.core
    on_hello = core._on_hello

    def patched(env: Any, hello: Any) -> None:
        r = core.remotes.get(env.sender)
        held = []
        if r is not None and r.state == "connecting" and r.hello_sent_ms >= 0:
            held, r.queued = r.queued, []  # breaks HS-023: they wait for our own Welcome
        on_hello(env, hello)
        if held:
            core.remotes[env.sender].queued.extend(held)

    core._on_hello = patched  # type: ignore[method-assign]


def _recoded(returns: Any, code: ErrorCode) -> tuple[Any, ...]:
    """``returns`` (results or return values) with every ``code`` error made TASK_FAILED."""
    return tuple(replace(r, error=replace(r.error, code=ErrorCode.TASK_FAILED))
                 if r.error is not None and r.error.code is code else r for r in returns)


def _finish_recoded(iut: Iut, code: ErrorCode) -> None:
    """The executor reports every ``code`` error of a finished task as TASK_FAILED."""
    core = iut.node.core
    finished = core._dispatch_table[ev.TaskFinished]
    core._dispatch_table[ev.TaskFinished] = lambda s: finished(replace(s, results=_recoded(s.results, code)))


def _cancel_reply_task_failed(iut: Iut) -> None:
    _finish_recoded(iut, ErrorCode.TASK_CANCELLED)  # breaks TASK-008


def _store_full_as_task_failed(iut: Iut) -> None:
    _finish_recoded(iut, ErrorCode.OBJECT_STORE_FULL)  # breaks TASK-042


def _store_full_retried(iut: Iut) -> None:
    core = iut.node.core
    on_reply = core._on_TaskReply

    def patched(r: Any, reply: Any) -> None:
        on_reply(r, replace(reply, returns=_recoded(reply.returns, ErrorCode.OBJECT_STORE_FULL)))  # breaks OBJ-062

    core._on_TaskReply = patched  # type: ignore[method-assign]


def _error_chunk_at_request_offset(iut: Iut) -> None:
    node = iut.node
    fetcher = node.fetcher
    send_chunk, handle = fetcher._send_chunk, node.handle
    serving: list[Any] = []

    def patched_send(job: Any) -> int:
        serving.append(job)
        try:
            return send_chunk(job)
        finally:
            serving.pop()

    def patched_handle(*stimuli: Any) -> None:
        if serving:
            stimuli = tuple(
                replace(s, message=replace(s.message, offset=serving[-1].request.offset))  # breaks FET-004
                if isinstance(s, ev.SendData) and isinstance(s.message, FetchChunk) and s.message.error is not None
                else s
                for s in stimuli
            )
        handle(*stimuli)

    fetcher._send_chunk = patched_send  # type: ignore[method-assign]
    node.handle = patched_handle  # type: ignore[method-assign]


def _fetch_end_is_error(iut: Iut) -> None:
    fetcher = iut.node.fetcher
    on_request = fetcher._on_request

    def patched(d: Any, r: Any) -> None:
        try:
            at_end = r.offset == iut.node.store.size(r.object_id)
        except Exception:
            at_end = False
        on_request(d, replace(r, offset=r.offset + 1) if at_end else r)  # breaks FET-014

    fetcher._on_request = patched  # type: ignore[method-assign]


def _fetch_range_checked_first(iut: Iut) -> None:
    from ..core import events as core_events
    from ..core.messages import FetchChunk

    fetcher = iut.node.fetcher
    on_request = fetcher._on_request

    def patched(d: Any, r: Any) -> None:
        if r.length < -1 or r.chunk_bytes < 1:  # breaks FET-004: the range before the copy
            err = ErrorInfo(ErrorCode.MALFORMED, "no chunk size", "FET-014")
            chunk = FetchChunk(r.object_id, r.request_id, r.offset, 0, True, error=err)
            iut.node.handle(core_events.SendData(iut.node.sid(), d.sender, d.sender_incarnation, d.sender_address, chunk))
            return
        on_request(d, r)

    fetcher._on_request = patched  # type: ignore[method-assign]


def _fetch_whole_object(iut: Iut) -> None:
    from ..runtime import _fetch

    _fetch.RANGE_BYTES = 1 << 40  # breaks FET-015: one request for everything


def _fetch_retry_at_once(iut: Iut) -> None:
    import time

    fetcher = iut.node.fetcher
    on_chunk = fetcher._on_chunk

    def patched(sender: Any, c: Any) -> None:
        on_chunk(sender, c)
        if c.error is not None and c.error.code == ErrorCode.RESOURCE_EXHAUSTED:
            for f in list(fetcher._by_object.values()):
                if f.retry_at:
                    f.retry_at = time.monotonic()  # breaks ERR-009: no wait at all
            fetcher.tick()

    fetcher._on_chunk = patched  # type: ignore[method-assign]


def _fetch_from_last_location(iut: Iut) -> None:
    fetcher = iut.node.fetcher
    fetch = fetcher.fetch
    fetcher.fetch = lambda oid, locations: fetch(oid, tuple(reversed(locations)))  # type: ignore[method-assign]  # breaks FET-011


def _chunks_ignore_fetcher_limit(iut: Iut) -> None:
    fetcher = iut.node.fetcher
    on_request = fetcher._on_request

    def patched(d: Any, r: Any) -> None:
        remote = iut.node.core.remotes.get(d.sender)
        saved = remote.max_frame_bytes if remote is not None else 0
        if remote is not None:
            remote.max_frame_bytes = 0  # breaks FET-007: the holder's own limit decides
        try:
            on_request(d, r)
        finally:
            if remote is not None:
                remote.max_frame_bytes = saved

    fetcher._on_request = patched  # type: ignore[method-assign]


def _refuse_repeated_features(iut: Iut) -> None:
    import re

    core = iut.node.core
    refuse = core._refuse_greeting

    def patched(g: Any) -> Any:
        names = list(g.features)
        if len(set(names)) != len(names) or not all(re.fullmatch(r"[A-Za-z0-9-]{1,64}", n) for n in names):
            return ErrorInfo(ErrorCode.MALFORMED, "features repeated or badly named", "HS-022")  # breaks HS-025
        return refuse(g)

    core._refuse_greeting = patched  # type: ignore[method-assign]


def _zero_heartbeat_taken_literally(iut: Iut) -> None:
    core = iut.node.core
    on_hello = core._on_hello

    def patched(env: Any, hello: Any) -> None:
        on_hello(env, hello)
        r = core.remotes.get(env.sender)
        if hello.heartbeat_interval_ms == 0 and r is not None:
            r.heartbeat_interval_ms = 1  # breaks LIV-021: (almost) zero, as announced

    core._on_hello = patched  # type: ignore[method-assign]


def _unheld_ref_unknown_object(iut: Iut) -> None:
    iut.unheld_ref_code = "UNKNOWN_OBJECT"  # breaks CNF-024


def _adopt_returns_without_member(iut: Iut) -> None:
    from ..core import _tasks

    _tasks._well_formed = lambda rv, sender: True  # breaks VAL-019


def _announce_handshake_deaths(iut: Iut) -> None:
    core = iut.node.core
    broadcast = core._broadcast_death

    def patched(dead: Any, reason: str = "silence") -> None:
        dead.confirmed = True  # breaks LIV-040: as if the session had carried more than a Hello
        broadcast(dead, reason)

    core._broadcast_death = patched  # type: ignore[method-assign]


def _stored_location_unchecked(iut: Iut) -> None:
    from ..core import _tasks

    checked = _tasks._well_formed
    _tasks._well_formed = lambda rv, sender: checked(rv, rv.location or sender)  # breaks VAL-019's location rule


def _no_executor_worker_died(iut: Iut) -> None:
    core = iut.node.core

    def patched(t: Any) -> None:
        info = ErrorInfo(ErrorCode.WORKER_DIED, "no live executor to run the task", "RPC-004")  # breaks TASK-022
        core._fail_task(t, info, "no_executor")

    core._no_executor = patched  # type: ignore[method-assign]


def _place_ignoring_memory(iut: Iut) -> None:
    core = iut.node.core
    core._with_memory = lambda t, peers: list(peers)  # type: ignore[method-assign]  # breaks TASK-041


def _queue_named_tasks(iut: Iut) -> None:
    core = iut.node.core
    dispatch = core._dispatch

    def patched(t: Any, explicit: bool = False) -> None:
        if explicit and not t.spec.actor_id:
            dispatch(t, explicit=False)  # breaks TASK-024: placed and queued like an unnamed task
            return
        dispatch(t, explicit)

    core._dispatch = patched  # type: ignore[method-assign]


def _adopt_mismatched_reply(iut: Iut) -> None:
    core = iut.node.core
    on_reply = core._on_TaskReply

    def patched(r: Any, reply: Any) -> None:
        t = core.tasks.get(reply.task_id)
        if (t is not None and t.state == "submitted" and reply.attempt == t.spec.attempt and r.peer == t.executor
                and tuple(rv.object_id for rv in reply.returns) != t.spec.return_ids):
            # breaks TASK-019: adopted as if it matched; its returns never settle
            r.load = max(0, r.load - 1)
            core._transition_task(t, "reply")
            for rv in reply.returns:
                core._take_return(rv)
            core._release_task_args(t)
            return
        on_reply(r, reply)

    core._on_TaskReply = patched  # type: ignore[method-assign]


def _unbounded_status_waits(iut: Iut) -> None:
    iut.node.core.config.max_status_waits = 1 << 62  # breaks SEC-009: no bound at all


def _refuse_calls_before_creation(iut: Iut) -> None:
    iut.node.core.config.max_held_actor_calls = 0  # breaks ACT-023: nothing is held


def _serve_every_fetch(iut: Iut) -> None:
    from ..runtime import _fetch

    _fetch.MAX_SERVED_PER_FETCHER = _fetch.MAX_SERVED = 1 << 30  # breaks FET-009: no limit


def _tiny_chunks(iut: Iut) -> None:
    from ..runtime import _fetch

    _fetch.MIN_CHUNK_BYTES = 1  # breaks FET-020: chunkBytes taken as asked


def _unbounded_handshakes(iut: Iut) -> None:
    iut.node.core.config.max_handshakes = 1 << 30  # breaks SEC-021: every handshake kept


def _head_by_join_proof(iut: Iut) -> None:
    node = iut.node
    with node.lock:
        node.keys.pop("head", None)  # breaks SEC-041: the key file's head key is not used
    bound = node._bound

    def patched(sender: str, user_id: Any, proof: Any) -> bool:
        if (sender == "head" and "head" not in node.keys and node.view_version == 0 and isinstance(user_id, str)
                and node.cluster_key.accepts_join(sender, user_id, proof, node.clock())):
            node.keys["head"] = user_id
            return True
        return bound(sender, user_id, proof)

    node._bound = patched  # type: ignore[method-assign]


def _rebind_joined_peer(iut: Iut) -> None:
    node = iut.node
    bound = node._bound

    def patched(sender: str, user_id: Any, proof: Any) -> bool:
        if (node.admits_joiners and sender in node.keys and sender != node.peer_id and isinstance(user_id, str)
                and node.cluster_key.accepts_join(sender, user_id, proof, node.clock())):
            node.keys[sender] = user_id  # breaks SEC-023: a live member's binding replaced
            return True
        return bound(sender, user_id, proof)

    node._bound = patched  # type: ignore[method-assign]


def _as_the_head_itself(iut: Iut, name: str) -> None:
    """The membership function ``name`` runs as if the head itself called it: no
    submitter to check (breaks SEC-042 for rotate, CLU-013 for the registrations)."""
    functions = iut.catalog.membership
    fn = functions.get(f"refrpc.runtime._membership:{name}")
    if fn is None:
        return
    local = iut.executor._local

    def patched(*args: Any, **kwargs: Any) -> Any:
        owner, local.owner = getattr(local, "owner", ""), ""
        try:
            return fn(*args, **kwargs)
        finally:
            local.owner = owner

    functions[f"refrpc.runtime._membership:{name}"] = patched


def _members_for_registered_only(iut: Iut) -> None:
    functions = iut.catalog.membership
    name = "refrpc.runtime._membership:members"
    fn = functions.get(name)
    if fn is None:
        return
    local, node = iut.executor._local, iut.node

    def patched(*args: Any, **kwargs: Any) -> Any:
        caller = getattr(local, "owner", "")
        if caller and caller not in node.members and caller not in node.drivers:
            raise RuntimeError(f"{caller} has not registered")  # breaks CLU-006
        return fn(*args, **kwargs)

    functions[name] = patched


def _register_anyone(iut: Iut) -> None:
    _as_the_head_itself(iut, "register")
    _as_the_head_itself(iut, "register_driver")


def _replaced_credential_kept(iut: Iut) -> None:
    key = iut.node.cluster_key
    if key is None:
        return
    rotate = key.rotate

    def patched(join: Any, grace_s: float, now: float) -> None:
        if join is not None:  # breaks SEC-025: the replaced credential is accepted for ever
            rotate(join, float("inf"), now)

    key.rotate = patched  # type: ignore[method-assign]


def _incarnation_not_recorded(iut: Iut) -> None:
    name = "refrpc.runtime._membership:register"
    fn = iut.catalog.membership.get(name)
    if fn is None:
        return

    def patched(peer: Any, address: Any, slots: Any, host: Any, pid: Any = 0, resources: Any = None,
                incarnation: Any = 0) -> Any:
        return fn(peer, address, slots, host, pid, resources, 0)  # breaks CLU-067

    iut.catalog.membership[name] = patched


def _fence_listed_incarnations(iut: Iut) -> None:
    name = "refrpc.runtime._membership:learn"
    fn = iut.catalog.membership.get(name)
    if fn is None:
        return
    node = iut.node

    def patched(view: Any) -> Any:
        listed = view.get("incarnations", {}) if isinstance(view, dict) else {}
        stale = node.call(lambda: [(p, r.incarnation) for p, r in node.core.remotes.items()
                                   if p in listed and r.state != "dead" and r.incarnation not in (0, listed[p])]).result()
        for peer, incarnation in stale:  # breaks CLU-063: a listed incarnation taken as a death
            node.handle_soon(lambda sid, p=peer, i=incarnation: ev.PeerFailed(sid, p, i, "a view lists another")).result()
        return fn(view)

    iut.catalog.membership[name] = patched


def _trust_claimed_sender(iut: Iut) -> None:
    iut.node._authentic = lambda frames, sender, sid: True  # type: ignore[method-assign]  # breaks SEC-011


def _stop_on_notice_about_itself(iut: Iut) -> None:
    core = iut.node.core
    on_notice = core._on_PeerDeadNotice

    def patched(r: Any, msg: Any) -> None:
        if msg.peer == core.peer_id:
            core._fail_stop(f"{r.peer} says this peer is dead")  # breaks LIV-019
            return
        on_notice(r, msg)

    core._on_PeerDeadNotice = patched  # type: ignore[method-assign]


def _import_any_function(iut: Iut) -> None:
    import importlib

    class Importing(dict):  # type: ignore[type-arg]
        def get(self, name: str, default: Any = None) -> Any:
            fn = super().get(name)
            if fn is None and ":" in name:
                module, _, attr = name.partition(":")
                try:
                    return getattr(importlib.import_module(module), attr)  # breaks SEC-006
                except (ImportError, AttributeError):
                    return default
            return default if fn is None else fn

    iut.catalog.functions = Importing(iut.catalog.functions)


def _send_oversized_creation(iut: Iut) -> None:
    from ..core import _session
    from ..core.messages import CreateActor

    measure = _session._payload_bytes
    # breaks ZMQ-007: a CreateActor always fits, as far as we know
    _session._payload_bytes = lambda body: 0 if isinstance(body, CreateActor) else measure(body)


def _send_oversized(iut: Iut) -> None:
    from ..core import _session

    _session._payload_bytes = lambda body: 0  # breaks ZMQ-007: every message fits, as far as we know


def _no_goodbye_ack(iut: Iut) -> None:
    core = iut.node.core
    core._on_Goodbye = lambda r, msg: core._declare_dead(r, "goodbye", msg.reason or "goodbye")  # type: ignore[method-assign]


def _sequenced_heartbeat_unsequenced(iut: Iut) -> None:
    core = iut.node.core
    on_receive = core._on_receive

    def patched(env: Any) -> None:
        if isinstance(env.body, Heartbeat) and env.seq > 0:
            env = replace(env, seq=0)  # breaks GEN-016: the number is neither consumed nor answered
        on_receive(env)

    core._on_receive = patched  # type: ignore[method-assign]


def _no_answer_to_stale_hello(iut: Iut) -> None:
    core = iut.node.core
    answer = core._answer_declared_dead

    def patched(sender: Any, incarnation: int, hello_address: str, requirement: str) -> None:
        if requirement == "SES-006" and core.remotes.get(sender) is None:
            return  # breaks SES-020: the Hello's own address is not used
        answer(sender, incarnation, hello_address, requirement)

    core._answer_declared_dead = patched  # type: ignore[method-assign]


def _eager_value_check(iut: Iut) -> None:
    from ..codec import PortableRef, decode_portable
    from ..core.errors import ProtocolViolation
    from ..core.messages import Encoding

    core = iut.node.core
    on_submit = core._on_SubmitTask

    def bad_index(tree: Any, count: int) -> bool:
        if isinstance(tree, PortableRef):
            return not 0 <= int(tree) < count
        if isinstance(tree, list):
            return any(bad_index(x, count) for x in tree)
        if isinstance(tree, dict):
            return any(bad_index(x, count) for x in tree.values())
        return False

    def patched(r: Any, spec: Any) -> None:
        for a in spec.args:
            v = a.value
            if v is not None and v.encoding is Encoding.PORTABLE and bad_index(decode_portable(v.data), len(v.nested)):
                raise ProtocolViolation(ErrorCode.MALFORMED, "bad nested index", "VAL-006")  # breaks VAL-021
        on_submit(r, spec)

    core._on_SubmitTask = patched  # type: ignore[method-assign]


def _answer_refused_early_or_again(iut: Iut, *, duplicates: bool) -> None:
    core = iut.node.core
    malformed = core._malformed

    def patched(sender: Any, incarnation: int, seq: int, error: Any, receiver: Any = None, receiver_incarnation: Any = None,
                *rest: Any, **more: Any) -> None:
        r = core.remotes.get(sender)
        live = (r is not None and r.state == "alive" and r.incarnation == incarnation and receiver in (None, core.peer_id)
                and receiver_incarnation in (None, core.incarnation))
        if live and seq > 0 and ((duplicates and seq <= r.delivered) or (not duplicates and seq > r.delivered + 1)):
            core._protocol_error(r, error.code, error.message, error.requirement or "GEN-010", seq)  # breaks GEN-019
        malformed(sender, incarnation, seq, error, receiver, receiver_incarnation, *rest, **more)

    core._malformed = patched  # type: ignore[method-assign]


def _empty_function_malformed(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation

    core = iut.node.core
    on_submit = core._on_SubmitTask

    def patched(r: Any, spec: Any) -> None:
        if not spec.function or len(spec.function.encode()) > 256:
            raise ProtocolViolation(ErrorCode.MALFORMED, "function name out of limits", "ID-007")  # breaks ID-011
        on_submit(r, spec)

    core._on_SubmitTask = patched  # type: ignore[method-assign]


def _merge_conflicting_refs(iut: Iut) -> None:
    core = iut.node.core
    core._ref_conflict = lambda body: ""  # type: ignore[method-assign]  # breaks REF-007
    core._refs_agree = lambda d: True  # type: ignore[method-assign]


def _decode_field_with(cls: type, name: str, make: Callable[[Any], Callable[[Any, Any], Any]]) -> None:
    """Decode field ``name`` of ``cls`` with the getter ``make(field)`` (from now on, in
    this process), and turn the fast decoding path off, so that every message goes
    through the decoders built again here."""
    from ..codec import _decode, _fast

    getter = _decode._getter

    def patched_getter(fp: Any, owner: type) -> Any:
        return make(fp.field) if owner is cls and fp.name == name else getter(fp, owner)

    def no_fast_path(frames: Any) -> Any:
        raise _fast.Fallback

    _decode._getter = patched_getter  # type: ignore[assignment]
    _fast.decode = no_fast_path  # type: ignore[assignment]
    _decode._DECODERS.clear()
    for message_cls, member in zip(_decode.MESSAGE_TYPES, _decode.BODY_MEMBERS):
        _decode._BODIES[member] = (_decode._BODIES[member][0], _decode.struct_decoder(message_cls))


def _invalid_utf8_accepted(iut: Iut) -> None:
    from ..core.messages import SubmitTask

    def make(field: Any) -> Callable[[Any, Any], Any]:
        def get(r: Any, ctx: Any) -> Any:
            try:
                return r._get_by_field(field)
            except UnicodeDecodeError as exc:
                return exc.object.decode("utf-8", "replace")  # breaks ID-011: not UTF-8, taken anyway

        return get

    _decode_field_with(SubmitTask, "function", make)


def _text_ends_at_nul(iut: Iut) -> None:
    from ..core.messages import SubmitTask

    def make(field: Any) -> Callable[[Any, Any], Any]:
        return lambda r, ctx: r._get_by_field(field).split("\0", 1)[0]  # breaks VAL-028: a C string

    _decode_field_with(SubmitTask, "function", make)


def _id_limits_on_error_messages(iut: Iut) -> None:
    from ..codec import _decode

    def make(field: Any) -> Callable[[Any, Any], Any]:
        check = _decode._id_checker("ErrorInfo.message", 256, "ID-007", True)  # breaks ID-010: no id
        return lambda r, ctx: check(r._get_by_field(field))

    _decode_field_with(ErrorInfo, "message", make)


def _one_segment_frames(iut: Iut) -> None:
    from ..codec import _decode

    check_sizes = _decode._check_sizes

    def patched(frames: Any, max_frame_bytes: int) -> None:
        check_sizes(frames, max_frame_bytes)
        if bytes(memoryview(frames[0])[:4]) != bytes(4):  # segment count - 1, little-endian
            raise _decode.MalformedFrame("frame 0 has more than one segment")  # breaks ZMQ-020

    _decode._check_sizes = patched  # type: ignore[assignment]


def _fenced_caller_keeps_actor(iut: Iut) -> None:
    core = iut.node.core
    drop = core._drop_exec

    def patched(key: Any) -> None:
        ex = core.exec_tasks.get(key)
        h = core.hosted.get(ex.spec.actor_id) if ex is not None and ex.spec.actor_id else None
        had_turn = h is not None and (key in h.running or key in h.queue)
        drop(key)
        if had_turn:
            h.running[key] = None  # breaks TASK-064: it still counts against maxConcurrency

    core._drop_exec = patched  # type: ignore[method-assign]


def _unsequenced_errors_name_nothing(iut: Iut) -> None:
    core = iut.node.core
    on_error = core._on_session_error

    def patched(r: Any, env: Any, msg: Any) -> None:
        if env.seq == 0 and msg.error.code != ErrorCode.DECLARED_DEAD:
            return  # breaks SES-038: taken as an answer without a session, whoever sent it
        on_error(r, env, msg)

    core._on_session_error = patched  # type: ignore[method-assign]


def _wrong_state_means_dead(iut: Iut) -> None:
    core = iut.node.core
    on_error = core._on_session_error

    def patched(r: Any, env: Any, msg: Any) -> None:
        if (env.seq == 0 and msg.related_seq == 0 and msg.error.code == ErrorCode.WRONG_STATE
                and r.state == "alive" and r.incarnation == env.sender_incarnation):
            core._declare_dead(r, "silence", "it answered WRONG_STATE: it forgot our session")  # breaks SES-039
            return
        on_error(r, env, msg)

    core._on_session_error = patched  # type: ignore[method-assign]


def _restarting_ends_actor(iut: Iut) -> None:
    from ..core.messages import ActorState, KillActor

    core = iut.node.core
    on_status = core._on_ActorStatus

    def patched(r: Any, msg: Any) -> None:
        a = core.owned_actors.get(msg.actor_id)
        if a is not None and a.state == ActorState.DEAD.value:
            return  # ended for good
        if msg.state == ActorState.RESTARTING and a is not None:  # breaks GEN-024: taken as the actor's death
            on_status(r, replace(msg, state=ActorState.DEAD, error=ErrorInfo(ErrorCode.ACTOR_DIED, "restarting", "ACT-002")))
            core._send(r.peer, KillActor(msg.actor_id))  # and what is left of it at the host goes too
            return
        on_status(r, msg)

    core._on_ActorStatus = patched  # type: ignore[method-assign]


def _member_checked_before_features(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation
    from ..core.messages import SubmitTask

    core = iut.node.core
    feature_problem = core._feature_problem

    def patched(r: Any, body: Any) -> Any:
        if isinstance(body, SubmitTask):
            try:
                core._check_args(body.args)
            except ProtocolViolation:
                return None  # breaks ERR-010: the handler's VAL-015 check answers first
        return feature_problem(r, body)

    core._feature_problem = patched  # type: ignore[method-assign]


def _queued_sent_unchecked(iut: Iut) -> None:
    core = iut.node.core

    def patched(r: Any, event: str) -> None:
        core._transition_peer(r, event)
        queued, r.queued = r.queued, []
        for body in queued:
            core._send_sequenced(r, body)  # breaks ZMQ-021: no ZMQ-007 check with the announced limit

    core._become_alive = patched  # type: ignore[method-assign]


def _no_router_handover(iut: Iut) -> None:
    import zmq

    iut.node.wire.router.setsockopt(zmq.ROUTER_HANDOVER, 0)  # breaks ZMQ-015



def _trailing_bytes_ignored(name: str) -> None:
    """``codec.<name>`` reads only the message the segment table describes (VAL-004, OBJ-010)."""
    import struct

    from .. import codec

    decode = getattr(codec, name)

    def one_message(data: Any) -> Any:
        view = memoryview(data).cast("B")
        if len(view) < 8:
            return data
        count = struct.unpack_from("<I", view, 0)[0] + 1
        header = 4 + 4 * count
        header += header % 8
        if count > 512 or len(view) < header:
            return data
        words = sum(struct.unpack_from(f"<{count}I", view, 4))
        end = header + 8 * words
        return view[:end] if end < len(view) else data  # breaks VAL-004 / OBJ-076: the rest ignored

    setattr(codec, name, lambda data, *a, **kw: decode(one_message(data), *a, **kw))


def _undecodable_get_internal(iut: Iut) -> None:
    from ..serialization import DeserializationError
    from . import _control

    load = _control.load

    def patched(*args: Any, **kwargs: Any) -> Any:
        try:
            return load(*args, **kwargs)
        except DeserializationError as exc:
            raise RuntimeError(f"cannot load the value: {exc}") from None  # breaks VAL-021: answered internal

    _control.load = patched


def _bare_numbers_as_float64(iut: Iut) -> None:
    from . import _values

    from_json = _values.from_json

    def patched(obj: Any, ref: Any, depth: int = 0) -> Any:
        if isinstance(obj, float):
            return obj  # breaks CNF-057: a bare 1.5 taken as a float64
        return from_json(obj, ref, depth)

    _values.from_json = patched


def _membership_answers_portable(iut: Iut) -> None:
    from ..core.messages import Encoding
    from . import _values

    executor = iut.executor
    run_membership = executor._run_membership

    def patched(ins: Any, fn: Any, args: list[Any]) -> None:
        if not ins.args or any(a.value is None or a.value.encoding is not Encoding.PORTABLE for a in ins.args):
            run_membership(ins, fn, args)
            return
        try:
            results = [ev.TaskResult(value=_values.encode(iut.node, fn(*args)))]  # breaks CLU-030: portable
        except Exception as exc:
            results = [ev.TaskResult(error=executor._error(exc))] * len(ins.return_ids)
        executor._finish(ins, results)

    executor._run_membership = patched  # type: ignore[method-assign]


def _fence_head_on_confirm_borrow(iut: Iut) -> None:
    core = iut.node.core
    on_confirm = core._on_ConfirmBorrow

    def patched(r: Any, msg: Any) -> None:
        core._fence(msg.forwarder, msg.forwarder_incarnation, "confirm_borrow", f"{r.peer} says it died")  # breaks BOR-011
        on_confirm(r, msg)

    core._on_ConfirmBorrow = patched  # type: ignore[method-assign]

def _retry_dead_named_executor(iut: Iut) -> None:
    core = iut.node.core
    send_task = core._send_task

    def patched(t: Any) -> None:
        spec = t.spec
        if not spec.actor_id and spec.attempt == 1 <= spec.max_retries and t.executor and not core._is_live(t.executor):
            core._transition_task(t, "executor_died_retry")  # breaks TASK-024: retried as if it had died with the task
            core._retry(t)
            return
        send_task(t)

    core._send_task = patched  # type: ignore[method-assign]


def _fence_leaves_handshake_waiting(iut: Iut) -> None:
    core = iut.node.core
    fence = core._fence

    def patched(peer: str, incarnation: int, event: str, reason: str) -> None:
        target = core.remotes.get(peer)
        if target is not None and target.incarnation == 0 and target.state != "dead":
            core._add_fence(peer, incarnation)  # breaks LIV-012: the handshake waits for its timeout
            return
        fence(peer, incarnation, event, reason)

    core._fence = patched  # type: ignore[method-assign]


def _settle_hooks(iut: Iut, mode: str) -> None:
    """OWN-009, OWN-010, OWN-013: what an owner does when an object settles or goes out of scope."""
    from ..core.messages import ObjectState, ObjectStatus

    core = iut.node.core
    settled, check = core._object_settled, core._check_owned
    just_settled: set[str] = set()

    def patched_settled(oid: str) -> None:
        e = core.owned.get(oid)
        if mode == "answer-late" and e is not None and e.state in ("ready", "failed") and not e.in_scope():
            waiting = core._forget_status_waits(oid)
            check(oid)  # breaks OWN-010: reclaimed before the waits are answered
            for peer in waiting:
                core._send(peer, ObjectStatus(oid, ObjectState.FREED))
        elif mode == "keep-settled" and e is not None:
            just_settled.add(oid)
        settled(oid)

    def patched_check(oid: str) -> None:
        e = core.owned.get(oid)
        if e is None:
            return
        if mode == "keep-settled" and oid in just_settled:
            just_settled.discard(oid)
            if e.state in ("ready", "failed"):
                return  # breaks OWN-009: not reclaimed when it settles out of scope
        if mode == "keep-failed" and e.state == "failed":
            return  # breaks OWN-013
        check(oid)

    core._object_settled = patched_settled
    core._check_owned = patched_check


def _primary_loss_is_loss(iut: Iut) -> None:
    core = iut.node.core
    on_dead = core._on_peer_dead

    def patched(r: Any) -> None:
        for e in core.owned.values():
            if e.state == "ready" and e.value is None and next(iter(e.locations), None) == r.peer:
                e.locations = {r.peer: None}  # breaks LOC-007: the secondaries go with the primary
        on_dead(r)

    core._on_peer_dead = patched


def _release_resent_grants(iut: Iut) -> None:
    from ..core.messages import BorrowRelease

    core = iut.node.core
    drop_reply = core._drop_reply

    def patched(reply: Any, sender: Any) -> None:
        for rv in reply.returns:
            for d in core._used_nested(rv):
                b = core.borrowed.get(d.object_id)
                if d.forward_id and b is not None and d.forward_id in b.grants:
                    del b.grants[d.forward_id]  # breaks RPC-016: a grant the adopted value relies on
                    core.pending_releases.setdefault(b.owner, []).append(BorrowRelease(d.object_id, (d.forward_id,)))
        drop_reply(reply, sender)

    core._drop_reply = patched


def _no_retry_for_failed_arguments(iut: Iut) -> None:
    core = iut.node.core
    on_reply = core._on_TaskReply

    def patched(r: Any, reply: Any) -> None:
        t = core.tasks.get(reply.task_id)
        if t is not None and t.state == "submitted" and any(
                core.owned.get(oid) is not None and core.owned[oid].state == "failed" for oid in t.arg_refs):
            t.spec = replace(t.spec, retry_exceptions=False)  # breaks RPC-015: the code taken as the argument's
        on_reply(r, reply)

    core._on_TaskReply = patched


def _dead_status(iut: Iut, mode: str) -> None:
    from ..core.messages import ActorState, ErrorCode, ErrorInfo

    core = iut.node.core
    on_status = core._on_ActorStatus

    def patched(r: Any, msg: Any) -> None:
        a = core.owned_actors.get(msg.actor_id)
        if msg.state != ActorState.DEAD or a is None or a.host != r.peer or a.state == ActorState.DEAD.value:
            on_status(r, msg)
            return
        if mode == "restart" and a.restarts < a.max_restarts:
            a.restarts += 1  # breaks ACT-016: re-created although only a host's death allows it
            core._reserve(a, -1)
            a.host = core._actor_host((), a.demand)
            if a.host:
                a.state = ActorState.RESTARTING.value
                core._start_actor(a)
                return
        on_status(r, msg)
        if mode == "end-calls":
            info = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {a.actor_id} is dead", "ACT-016")
            for t in list(core.tasks.values()):
                if t.spec.actor_id == a.actor_id and t.state == "submitted":
                    core._unload(t)
                    core._fail_task(t, info, "executor_died_final")  # breaks ACT-016: its late reply is dropped

    core._on_ActorStatus = patched


def _handle_without_host_address(iut: Iut) -> None:
    from ..runtime import _handles

    original = _handles.descriptor_value

    def patched(actor_id: str, owner: str, host: str, host_address: str, class_name: str) -> Any:
        return original(actor_id, owner, host, "", class_name)  # breaks ACT-024

    _handles.descriptor_value = patched  # type: ignore[assignment]


def _declared_dead_always_names_restart(iut: Iut) -> None:
    core = iut.node.core
    answer = core._answer_declared_dead

    def patched(sender: Any, incarnation: int, hello_address: str, requirement: str) -> None:
        answer(sender, incarnation, hello_address, "SES-006")  # breaks ERR-005

    core._answer_declared_dead = patched


def _list_length_limit(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation
    from ..core.messages import ErrorCode

    core = iut.node.core
    on_submit = core._on_SubmitTask

    def patched(r: Any, msg: Any) -> None:
        if len(msg.args) > 1000:  # breaks GEN-011: no limit applies to a list's length
            raise ProtocolViolation(ErrorCode.MALFORMED, f"{len(msg.args)} arguments are too many", "GEN-011")
        on_submit(r, msg)

    core._on_SubmitTask = patched


def _answer_after_goodbye(iut: Iut) -> None:
    from ..core.messages import GetObjectStatus
    from ..core.events import Receive

    core = iut.node.core
    while_leaving = core._while_leaving

    def patched(s: Any) -> None:
        while_leaving(s)
        if isinstance(s, Receive) and isinstance(s.envelope.body, GetObjectStatus) and s.envelope.seq > 0:
            r = core.remotes.get(s.envelope.sender)
            if r is not None and r.state == "alive":
                oid = s.envelope.body.object_id
                core._send(r.peer, core._status_message(oid, r.peer))  # breaks LIV-032

    core._while_leaving = patched


def _kill_waits_for_constructor(iut: Iut) -> None:
    core = iut.node.core
    on_kill = core._on_KillActor

    def patched(r: Any, msg: Any) -> None:
        for key, aid in core.actor_creations.items():
            ex = core.exec_tasks.get(key)
            if aid == msg.actor_id and ex is not None and ex.state == "resolving":
                return  # breaks ACT-029: the creation goes on
        on_kill(r, msg)

    core._on_KillActor = patched


def _creating(core: Any, actor_id: str) -> bool:
    """Whether the creation of ``actor_id`` hosted here still resolves its arguments."""
    for key, aid in core.actor_creations.items():
        ex = core.exec_tasks.get(key)
        if aid == actor_id and ex is not None and ex.state == "resolving":
            return True
    return False


def _unequal_status_lists_refused(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation
    from ..core.messages import ErrorCode

    core = iut.node.core
    on_status = core._on_ObjectStatus

    def patched(r: Any, msg: Any) -> None:
        if len(msg.locations) != len(msg.location_addresses) or len(msg.relays) != len(msg.relay_addresses):
            raise ProtocolViolation(ErrorCode.MALFORMED, "lists of unequal length", "OBJ-008")  # breaks LOC-024
        on_status(r, msg)

    core._on_ObjectStatus = patched


def _calls_before_alive_refused(iut: Iut) -> None:
    from ..core.errors import ProtocolViolation
    from ..core.messages import ErrorCode

    core = iut.node.core
    on_submit = core._on_SubmitTask

    def patched(r: Any, msg: Any) -> None:
        if msg.actor_id and _creating(core, msg.actor_id):
            raise ProtocolViolation(ErrorCode.WRONG_STATE, f"actor {msg.actor_id} is not alive yet", "ACT-012")  # breaks ACT-012
        on_submit(r, msg)

    core._on_SubmitTask = patched


def _rebuild_death_as_lost(iut: Iut) -> None:
    from ..core.messages import ErrorCode, ErrorInfo

    core = iut.node.core
    fail_task = core._fail_task

    def patched(t: Any, info: Any, event: str) -> None:
        if event == "executor_died_final" and t.spec.attempt > 1 and not t.spec.actor_id:
            info = ErrorInfo(ErrorCode.OBJECT_LOST, "the rebuild failed", "LIN-003")  # breaks LIN-008
        fail_task(t, info, event)

    core._fail_task = patched


def _resend_tasks_as_new(iut: Iut) -> None:
    from ..core.messages import SubmitTask

    core = iut.node.core
    envelope = core._envelope
    sent: set[tuple[str, int]] = set()
    resent: set[tuple[str, int]] = set()

    def patched(r: Any, seq: int, body: Any) -> Any:
        env = envelope(r, seq, body)
        if (r.peer, seq) not in sent:
            sent.add((r.peer, seq))
        elif isinstance(body, SubmitTask) and (body.task_id, body.attempt) not in resent:
            resent.add((body.task_id, body.attempt))
            core._send(r.peer, body)  # breaks RPC-003: a timeout re-sends the task as a new message
        return env

    core._envelope = patched


_INSTALL: dict[str, Callable[[Iut], None]] = {
    "free-while-borrowed": _free_while_borrowed,
    "ignore-duplicate-task": _ignore_duplicate_task,
    "skip-release": _skip_release,
    "wrong-error-code": _wrong_error_code,
    "never-answer-fetch": _never_answer_fetch,
    "heartbeats-only-liveness": _heartbeats_only_liveness,
    "store-full-as-task-failed": _store_full_as_task_failed,
    "store-full-retried": _store_full_retried,
    "error-chunk-at-request-offset": _error_chunk_at_request_offset,
    "no-heartbeat": _no_heartbeat,
    "accept-unknown-version": _accept_unknown_version,
    "no-goodbye": _no_goodbye,
    "inline-large-results": _inline_large_results,
    "no-register-before-send": _no_register_before_send,
    "release-any-grant": _release_any_grant,
    "keep-dead-borrower-grants": _keep_dead_borrower_grants,
    "own-heartbeat-interval": _own_heartbeat_interval,
    "keep-task-records": _keep_task_records,
    "keep-submitted-tasks": _keep_submitted_tasks,
    "no-contained-in": _no_contained_in,
    "keep-unadopted-replies": _keep_unadopted_replies,
    "silent-secondary-copy": lambda iut: _drop_sends_of(iut, AddLocation),  # breaks LOC-002
    "silent-copy-drop": lambda iut: _drop_sends_of(iut, RemoveLocation),  # breaks LOC-003
    "schema-error-names": _schema_error_names,
    "reply-before-forward-registered": _reply_before_forward_registered,
    "unbounded-actor-restarts": _unbounded_actor_restarts,
    "actor-calls-worker-died": _actor_calls_worker_died,
    "unknown-method-task-failed": _unknown_method_task_failed,
    "wait-for-actor-seq-gap": _wait_for_actor_seq_gap,
    "actor-handles-not-counted": _actor_handles_not_counted,
    "max-concurrency-not-sent": _max_concurrency_not_sent,
    "no-id-limits": _no_id_limits,
    "status-per-wait": _status_per_wait,
    "no-error-rate-limit": _no_error_rate_limit,
    "no-released-state": _no_released_state,
    "trace-without-transitions": _trace_without_transitions,
    "simultaneous-hello-waits": _simultaneous_hello_waits,
    "cancel-reply-task-failed": _cancel_reply_task_failed,
    "fetch-end-is-error": _fetch_end_is_error,
    "fetch-whole-object": _fetch_whole_object,
    "fetch-retry-at-once": _fetch_retry_at_once,
    "fetch-from-last-location": _fetch_from_last_location,
    "chunks-ignore-fetcher-limit": _chunks_ignore_fetcher_limit,
    "adopt-mismatched-reply": _adopt_mismatched_reply,
    "queue-named-tasks": _queue_named_tasks,
    "no-executor-worker-died": _no_executor_worker_died,
    "adopt-returns-without-member": _adopt_returns_without_member,
    "stored-location-unchecked": _stored_location_unchecked,
    "announce-handshake-deaths": _announce_handshake_deaths,
    "fetch-range-checked-first": _fetch_range_checked_first,
    "unheld-ref-unknown-object": _unheld_ref_unknown_object,
    "refuse-repeated-features": _refuse_repeated_features,
    "zero-heartbeat-taken-literally": _zero_heartbeat_taken_literally,
    "no-goodbye-ack": _no_goodbye_ack,
    "unbounded-status-waits": _unbounded_status_waits,
    "refuse-calls-before-creation": _refuse_calls_before_creation,
    "serve-every-fetch": _serve_every_fetch,
    "tiny-chunks": _tiny_chunks,
    "unbounded-handshakes": _unbounded_handshakes,
    "ignore-key-file": lambda iut: None,  # applied before the node starts (see STARTUP)
    "head-by-join-proof": _head_by_join_proof,
    "derived-server-key": lambda iut: None,  # applied as the node starts (see Iut)
    "trust-claimed-sender": _trust_claimed_sender,
    "stop-on-notice-about-itself": _stop_on_notice_about_itself,
    "import-any-function": _import_any_function,
    "send-oversized": _send_oversized,
    "send-oversized-creation": _send_oversized_creation,
    "trace-put-without-creation": _trace_put_without_creation,
    "freed-is-unknown": _freed_is_unknown,
    "handshake-never-times-out": _handshake_never_times_out,
    "splice-fetches": _splice_fetches,
    "place-ignoring-memory": _place_ignoring_memory,
    "record-rerun-copies": _record_rerun_copies,
    "sequenced-heartbeat-unsequenced": _sequenced_heartbeat_unsequenced,
    "no-answer-to-stale-hello": _no_answer_to_stale_hello,
    "eager-value-check": _eager_value_check,
    "no-router-handover": _no_router_handover,
    "answer-refused-duplicates": lambda iut: _answer_refused_early_or_again(iut, duplicates=True),
    "refuse-early-at-once": lambda iut: _answer_refused_early_or_again(iut, duplicates=False),
    "empty-function-malformed": _empty_function_malformed,
    "merge-conflicting-refs": _merge_conflicting_refs,
    "whole-slot-per-task": lambda iut: _demand_counted(iut, lambda cpu: max(cpu, 10000) if cpu else 0),  # TASK-050
    "zero-cpu-waits": lambda iut: _demand_counted(iut, lambda cpu: cpu or 10000),  # breaks TASK-051
    "run-without-resource": _run_without_resource,
    "resources-named-twice-accepted": lambda iut: setattr(iut.node.core, "_check_demand", lambda spec: None),
    "actors-hold-nothing": lambda iut: _actors_hold(iut, nothing=True),  # breaks ACT-027
    "actor-resources-unchecked": lambda iut: _actors_hold(iut, nothing=False),  # breaks ACT-028
    "fenced-caller-keeps-actor": _fenced_caller_keeps_actor,
    "invalid-utf8-accepted": _invalid_utf8_accepted,
    "unsequenced-errors-name-nothing": _unsequenced_errors_name_nothing,
    "wrong-state-means-dead": _wrong_state_means_dead,
    "restarting-ends-actor": _restarting_ends_actor,
    "member-checked-before-features": _member_checked_before_features,
    "id-limits-on-error-messages": _id_limits_on_error_messages,
    "text-ends-at-nul": _text_ends_at_nul,
    "one-segment-frames": _one_segment_frames,
    "queued-sent-unchecked": _queued_sent_unchecked,
    "malformed-answer-waits": _malformed_answer_waits,
    "incarnation-0-accepted": _incarnation_0_accepted,
    "sender-incarnation-0-accepted": _sender_incarnation_0_accepted,
    "borrower-incarnation-0-before-features": _borrower_incarnation_0_before_features,
    "repeat-hello-renegotiates": _repeat_hello_renegotiates,
    "unpickle-fetched-forms": _unpickle_fetched_forms,
    "list-oversized-table": _list_oversized_table,
    "empty-address-malformed": _empty_address_malformed,
    "unfitted-replies": _unfitted_replies,
    "refusal-code-for-queued": _refusal_code_for_queued,
    "send-uncarried-tasks": _send_uncarried_tasks,
    "unknown-message-stops-type": _unknown_message_stops_type,
    "repeat-hello-unchecked": _repeat_hello_unchecked,
    "urlsafe-base64": _urlsafe_base64,
    "keep-bad-copies": _keep_bad_copies,
    "unaddressed-peer-dead-at-once": _unaddressed_peer_dead_at_once,
    "member-admits-joiners": lambda iut: setattr(iut.node, "admits_joiners", True),  # breaks SEC-024
    "rebind-joined-peer": _rebind_joined_peer,
    "rotate-by-any-member": lambda iut: _as_the_head_itself(iut, "rotate"),
    "replaced-credential-kept": _replaced_credential_kept,
    "register-another-peer": _register_anyone,
    "incarnation-not-recorded": _incarnation_not_recorded,
    "fence-listed-incarnations": _fence_listed_incarnations,
    "views-from-any-head": lambda iut: setattr(iut.node, "head_address", ""),  # breaks SEC-026
    "learn-from-anyone": lambda iut: _as_the_head_itself(iut, "learn"),  # breaks CLU-013
    "demand-in-binary": _demand_in_binary,
    "actor-calls-in-arrival-order": _actor_calls_in_arrival_order,
    "unready-actor-call-holds-everyone": _unready_actor_call_holds_everyone,
    "incarnation-0-before-features": _incarnation_0_before_features,
    "refused-answer-leaves-request-open": _refused_answer_leaves_request_open,
    "late-actor-call-queued": _late_actor_call_queued,
    "overtaken-actor-call-waits": lambda iut: setattr(iut.node.core, "_refuse_overtaken", lambda h, key, seq: None),  # ACT-014
    "stopped-actor-call-answered-late": _stopped_actor_call_answered_late,
    "error-text-exhausts-reply": _error_text_exhausts_reply,
    "return-ids-twice-run": _return_ids_twice_run,
    "malformed-refusal-answered": _malformed_refusal_answered,
    "refusals-rate-limited": _refusals_rate_limited,
    "owner-death-answers-callers-late": _owner_death_answers_callers_late,
    "undecodable-hello-ignored": _undecodable_hello_ignored,
    "bad-copies-asked-for-ever": _bad_copies_asked_for_ever,
    "undecodable-hello-answered-unsequenced": _undecodable_hello_answered_unsequenced,
    "unbounded-joiner-bindings": _unbounded_joiner_bindings,
    "members-for-registered-only": _members_for_registered_only,
    "portable-trailing-bytes-read": lambda iut: _trailing_bytes_ignored("decode_portable"),
    "stored-form-trailing-bytes-kept": lambda iut: _trailing_bytes_ignored("decode_value"),
    "undecodable-get-internal": _undecodable_get_internal,
    "bare-numbers-as-float64": _bare_numbers_as_float64,
    "membership-answers-portable": _membership_answers_portable,
    "fence-head-on-confirm-borrow": _fence_head_on_confirm_borrow,
    "keep-unused-member-grants": lambda iut: setattr(iut.node.core, "_unused_nested", lambda rv: ()),  # VAL-019
    "retry-dead-named-executor": _retry_dead_named_executor,
    "fence-leaves-handshake-waiting": _fence_leaves_handshake_waiting,
    "overtake-reserved": _overtake_reserved,
    "cancelled-waiting-task-waits": _cancelled_waiting_task_waits,
    "unknown-code-as-task-failed": lambda iut: _unknown_codes_as_task_failed(iut, "_on_TaskReply"),
    "unknown-argument-code-as-task-failed": lambda iut: _unknown_codes_as_task_failed(iut, "_on_ObjectStatus"),
    "repeated-map-keys-accepted": lambda iut: _portable_reader("repeat"),
    "shallow-portable-nesting": lambda iut: _portable_reader("shallow"),
    "unknown-portable-member-as-null": lambda iut: _portable_reader("null"),
    "adopt-stray-chunks": _adopt_stray_chunks,
    "grant-to-fenced-borrower": lambda iut: _registrations(iut, "fenced"),
    "refuse-unready-registrations": lambda iut: _registrations(iut, "unready"),
    "status-ignores-features": _status_ignores_features,
    "ready-is-final": _ready_is_final,
    "adopt-any-attempt": _adopt_any_attempt,
    "keep-freed-copies": _keep_freed_copies,
    "reused-task-id-takes-the-task": _reused_task_id_takes_the_task,
    "reused-task-id-refused": _reused_task_id_refused,
    "reused-actor-id-ignored": _reused_actor_id_ignored,
    "skip-sequence-number": _skip_sequence_number,
    "stranger-acks": _stranger_acks,
    "resend-to-fenced": _resend_to_fenced,
    "forget-replaced-fences": _forget_replaced_fences,
    "accept-lz4-unnegotiated": _accept_lz4_unnegotiated,
    "answer-fenced-every-time": lambda iut: setattr(core_session, "DECLARED_DEAD_ANSWER_MS", 0),  # SES-017
    "ignore-lz4-refusal": lambda iut: setattr(iut.node.fetcher, "lz4_refused", lambda peer: None),  # FET-067
    "parallel-self-registrations": _parallel_self_registrations,
    "retain-refused-grant": lambda iut: setattr(iut.node.core, "_drop_from_retained", lambda forward_id: None),  # BOR-026
    "no-stall-limit": lambda iut: setattr(iut.node.core, "config", replace(iut.node.core.config, stall_ms=1 << 62)),  # SES-012
    "confirm-revives-grant": _confirm_revives_grant,
    "release-to-fenced-owner": _release_to_fenced_owner,
    "keep-settled-out-of-scope": lambda iut: _settle_hooks(iut, "keep-settled"),
    "reclaim-before-answering": lambda iut: _settle_hooks(iut, "answer-late"),
    "keep-failed-objects": lambda iut: _settle_hooks(iut, "keep-failed"),
    "primary-loss-is-loss": _primary_loss_is_loss,
    "release-resent-grants": _release_resent_grants,
    "no-retry-for-failed-arguments": _no_retry_for_failed_arguments,
    "restart-on-dead-status": lambda iut: _dead_status(iut, "restart"),
    "dead-status-ends-calls": lambda iut: _dead_status(iut, "end-calls"),
    "handle-without-host-address": _handle_without_host_address,
    "declared-dead-always-names-restart": _declared_dead_always_names_restart,
    "list-length-limit": _list_length_limit,
    "orphaned-actors-live-on": lambda iut: setattr(iut.node.core, "_actor_owner_died", lambda dead: None),  # ACT-005
    "answer-after-goodbye": _answer_after_goodbye,
    "kill-waits-for-constructor": _kill_waits_for_constructor,
    "unequal-status-lists-refused": _unequal_status_lists_refused,
    "calls-before-alive-refused": _calls_before_alive_refused,
    "rebuild-death-as-lost": _rebuild_death_as_lost,
    "resend-tasks-as-new": _resend_tasks_as_new,
    "rerun-without-argument": lambda iut: setattr(iut.node.core, "_unrebuildable_argument", lambda t: ""),  # LIN-014
}
assert _INSTALL.keys() == FAULTS.keys()


#: Switches that change how the IUT starts, by the startup option they override.
STARTUP: dict[str, dict[str, Any]] = {
    "ignore-key-file": {"cluster_key": None},  # breaks SEC-003 (and SEC-002): no CURVE at all
}


def parse_faults(names: list[str]) -> list[str]:
    """The switches named (each once, in order); raises ValueError for an unknown one."""
    out: list[str] = []
    for item in names:
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            if name not in FAULTS:
                raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(FAULTS)}")
            if name not in out:
                out.append(name)
    return out


def install(iut: Iut, names: list[str]) -> None:
    """Turn the switches on, on the node's loop thread (before any peer can talk to it)."""
    for name in names:
        iut.node.call(lambda name=name: _INSTALL[name](iut)).result()
