"""Session layer and peer liveness (SES-*, HS-*, LIV-*).

Turns an unreliable, reordering transport into exactly-once FIFO delivery per
pair of peer incarnations, until one side fences the other. Everything above
this layer may assume that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ProtocolViolation
from .events import DeliverData, Disconnect, FailStop, PeerDeclaredDead, Receive, RemoteError, SendFrame, Stimulus, Tick
from .messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    ActorStatus,
    ArgKind,
    BorrowerRegistered,
    ConfirmBorrow,
    CreateActor,
    Encoding,
    FetchChunk,
    MESSAGE_TYPES,
    FetchRequest,
    ObjectState,
    ObjectStatus,
    SubmitTask,
    TaskReply,
    Envelope,
    ErrorCode,
    ErrorInfo,
    FRAME_HEADROOM,
    Feature,
    GetObjectStatus,
    Goodbye,
    Heartbeat,
    Hello,
    IntrospectReply,
    IntrospectRequest,
    Message,
    PeerDeadNotice,
    PeerId,
    ProtocolError,
    RegisterBorrower,
    Welcome,
)
from .state import Remote

if TYPE_CHECKING:
    from .peer import Peer

#: SES-017: one DECLARED_DEAD answer to a fenced incarnation per this many ms at most.
DECLARED_DEAD_ANSWER_MS = 1000

#: Data-plane messages: outside the session (seq 0), handed to the shell (FET-005).
_DATA_PLANE = (FetchRequest, FetchChunk)

#: Messages whose descriptors REF-007 checks at delivery, TaskReply aside (TASK-019).
_CARRY_REFS = (SubmitTask, CreateActor, ObjectStatus)

#: Requests whose failure a ProtocolError can report, and the field naming them (ERR-003).


def _no_sender_incarnation(incarnation: int) -> bool:
    """SES-042: an envelope's ``senderIncarnation`` of 0 names no incarnation at all."""
    return incarnation == 0


def _zero_incarnation(body: Message) -> str:
    """ID-013: why ``body`` is malformed for naming incarnation 0 where an incarnation
    is recorded or fenced; "" if it does not."""
    if isinstance(body, RegisterBorrower) and body.borrower_incarnation == 0:
        return "RegisterBorrower.borrowerIncarnation is 0"
    if isinstance(body, ConfirmBorrow) and body.forwarder_incarnation == 0:
        return "ConfirmBorrow.forwarderIncarnation is 0"
    if isinstance(body, PeerDeadNotice) and body.incarnation == 0:
        return "PeerDeadNotice.incarnation is 0"
    return ""


def _payload_bytes(body: SubmitTask | CreateActor | ObjectStatus) -> int:
    """The bytes of the values a message carries (the bulk of its encoded size)."""
    values = [a.value for a in body.args] if isinstance(body, (SubmitTask, CreateActor)) else [body.value]
    return sum(len(v.data) + sum(len(b) for b in v.buffers) for v in values if v is not None)


_REQUEST_KEY = {
    "SubmitTask": "task_id",
    "CreateActor": "actor_id",
    "RegisterBorrower": "forward_id",
    "GetObjectStatus": "object_id",
    "IntrospectRequest": "request_id",
}

#: How a peer-table event fences a peer, as the trace's ``peer-declared-dead`` says it.
_DEATH_SOURCE = {
    "silence": "detected",
    "failed": "external",
    "notice": "notice",
    "goodbye": "goodbye",
    "new_incarnation": "hello",
    "confirm_borrow": "confirm-borrow",
    "declared_dead": "declared-dead-error",
    "rejected": "hello",
}

def _answer_of(body: Message) -> tuple[str, tuple[object, ...]] | None:
    """The request ``body`` answers, keyed as GEN-030's table says; None for a non-answer."""
    if isinstance(body, TaskReply):
        return "TaskReply", (body.task_id, body.attempt)
    if isinstance(body, BorrowerRegistered):
        return "BorrowerRegistered", (body.object_id, body.forward_id)
    if isinstance(body, ObjectStatus):
        return "ObjectStatus", (body.object_id,)
    if isinstance(body, ActorStatus):
        return "ActorStatus", (body.actor_id,)
    if isinstance(body, IntrospectReply):
        return "IntrospectReply", (body.request_id,)
    return None


#: Requests whose refusal (ERR-003) is the only thing that ends them at their sender (ERR-008).
_REQUESTS = (SubmitTask, CreateActor, GetObjectStatus, RegisterBorrower, IntrospectRequest)

#: Which negotiated feature each message needs (HS-004); "core" ones are omitted.
FEATURE_OF: dict[str, str] = {
    "RegisterBorrower": Feature.BORROWING.value,
    "BorrowerRegistered": Feature.BORROWING.value,
    "ReleaseBorrows": Feature.BORROWING.value,
    "ConfirmBorrow": Feature.BORROWING.value,
    "BorrowConfirmed": Feature.BORROWING.value,
    "CreateActor": Feature.ACTORS.value,
    "ActorStatus": Feature.ACTORS.value,
    "KillActor": Feature.ACTORS.value,
}


#: The retransmission interval grows to at most this many times the configured one (SES-003).
RETRANSMIT_BACKOFF_MAX = 8

#: Every feature this implementation knows: a session that negotiated all of them
#: needs no per-message feature check.
_ALL_FEATURES = frozenset(f.value for f in Feature)
#: LIV-021: the longest remote heartbeat interval a detection timeout is computed from.
_MAX_HEARTBEAT_MS = 60_000


class SessionLayer:
    """Mixin of :class:`Peer`: sessions, handshake, heartbeats, fencing."""

    # ------------------------------------------------------------ sending
    def _remote(self: Peer, peer: PeerId, address: str = "", incarnation: int = 0) -> Remote:
        """The record for ``peer``, created on first use."""
        r = self.remotes.get(peer)
        if r is None or (r.state == "dead" and incarnation and incarnation != r.incarnation):
            r = Remote(peer=peer, address=address, incarnation=incarnation)
            r.last_heard_ms = self.now_ms
            self.remotes[peer] = r
        if not r.address and address:
            r.address = address
        return r

    def _ensure_session(self: Peer, peer: PeerId, address: str, incarnation: int = 0) -> None:
        """Open a session so that the peer's death gets noticed (OWN-011, REF-006)."""
        if peer == self.peer_id or (peer, incarnation) in self.fenced:
            return
        r = self._remote(peer, address, incarnation)
        if r.state == "connecting" and r.hello_sent_ms < 0:
            self._send_hello(r)

    def _send(self: Peer, peer: PeerId, body: Message, address: str = "", incarnation: int = 0) -> None:
        """Send ``body`` to ``peer`` on its session (queued until the handshake is done).

        A message to this peer incarnation itself (a call to an actor it hosts, made
        through a handle it was passed, ACT-021) never reaches the wire: it is
        handled after the current stimulus, as if it had come on a session with
        itself. One to an earlier incarnation of the same peer id (a ref owned by
        the process this one replaced) is not for this one.
        """
        if peer == self.peer_id and incarnation in (0, self.incarnation):
            self.loopback.append(body)
            return
        r = self._remote(peer, address, incarnation)
        if r.state == "dead":
            return  # SES-005: nothing goes to a fenced incarnation
        if r.state == "connecting":
            r.queued.append(body)
            if r.hello_sent_ms < 0:
                self._send_hello(r)
            return
        self._send_body(r, body)

    def _send_body(self: Peer, r: Remote, body: Message) -> None:
        if r.max_frame_bytes and isinstance(body, (SubmitTask, CreateActor, ObjectStatus)) and \
                _payload_bytes(body) > r.max_frame_bytes - FRAME_HEADROOM:
            # ZMQ-007: a message the receiver would drop for its size never goes. A task
            # fails here, and an actor so created is dead (as a refused request, ERR-003);
            # a status answers FAILED without changing the object.
            info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED,
                             f"{type(body).__name__} would exceed {r.peer}'s frame limit of {r.max_frame_bytes} bytes",
                             "ZMQ-007")
            self._story(f"peer:{r.peer}", "not-sent", f"{type(body).__name__}: too large")
            if isinstance(body, ObjectStatus):
                body = ObjectStatus(body.object_id, ObjectState.FAILED, error=info)
            elif isinstance(body, CreateActor):
                self._request_refused(r, "CreateActor", body.actor_id, info)
                return
            else:
                self._request_refused(r, "SubmitTask", body.task_id, info)
                return
        problem = self._feature_problem(r, body)
        if problem is not None:
            # HS-017..HS-020: never send what the session did not negotiate.
            if isinstance(body, ObjectStatus):  # OBJ-012
                body = ObjectStatus(body.object_id, ObjectState.FAILED, error=ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1]))
            else:
                self._story(f"peer:{r.peer}", "not-sent", f"{type(body).__name__}: {problem[0]}")
                kind = _REQUEST_KEY.get(type(body).__name__)
                if kind is not None:
                    if isinstance(body, SubmitTask) and body.attempt > 1:
                        info = ErrorInfo(ErrorCode.WORKER_DIED, f"cannot retry on {r.peer}: {problem[0]}", "HS-018")
                    else:
                        info = ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1])
                    self._request_refused(r, type(body).__name__, getattr(body, kind), info)
                return
        if isinstance(body, _DATA_PLANE):
            self._send_unsequenced(r, body)  # FET-005
        else:
            self._send_sequenced(r, body)

    def _send_sequenced(self: Peer, r: Remote, body: Message) -> None:
        if not r.confirmed:
            self._confirm(r)  # the session carries something now: it is no longer forgettable
        r.out_seq += 1
        env = self._envelope(r, r.out_seq, body)
        if not r.unacked:
            r.last_progress_ms = self.now_ms
            r.retransmit_every_ms = 0
        r.unacked[r.out_seq] = env
        r.unacked_at[r.out_seq] = self.now_ms
        kind = _REQUEST_KEY.get(type(body).__name__)
        if kind is not None:
            key = getattr(body, kind)
            r.requests[r.out_seq] = (type(body).__name__, key)  # ERR-003
            if kind == "task_id":
                r.submit_seqs[key] = r.out_seq
            if len(r.requests) > 4 * self.config.window:
                seq = next(iter(r.requests))
                name, old = r.requests.pop(seq)
                if name == "SubmitTask" and r.submit_seqs.get(old) == seq:  # type: ignore[call-overload]
                    del r.submit_seqs[old]  # type: ignore[arg-type]
        self._emit_frame(r, env)

    def _send_unsequenced(self: Peer, r: Remote, body: Message) -> None:
        self._emit_frame(r, self._envelope(r, 0, body))

    def _envelope(self: Peer, r: Remote, seq: int, body: Message) -> Envelope:
        return Envelope(
            sender=self.peer_id,
            sender_incarnation=self.incarnation,
            receiver=r.peer,
            receiver_incarnation=r.incarnation,
            seq=seq,
            ack=r.delivered,
            body=body,
        )

    def _emit_frame(self: Peer, r: Remote, env: Envelope) -> None:
        r.last_sent_ms = self.now_ms
        r.ack_owed_since_ms = -1  # every envelope carries our ack (SES-003)
        self._out(SendFrame(self._sid, r.address, env))

    def _hello_fields(self: Peer) -> dict:
        return dict(
            protocol_major=PROTOCOL_MAJOR,
            protocol_minor=PROTOCOL_MINOR,
            address=self.address,
            features=tuple(self.config.features),
            max_frame_bytes=self.config.max_frame_bytes,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
        )

    def _send_hello(self: Peer, r: Remote) -> None:
        r.hello_sent_ms = self.now_ms
        self._send_unsequenced(r, Hello(**self._hello_fields()))

    # ------------------------------------------------------------ receiving
    def _on_receive(self: Peer, env: Envelope) -> None:
        """Check an envelope in the order SES-016 gives, then deliver it."""
        body = env.body
        if env.receiver != self.peer_id:
            self._story(f"peer:{env.sender}", "discard-not-for-me", env.receiver)
            if self.trace_events:
                self._trace("discarded", reason="wrong-receiver")
            return
        if _no_sender_incarnation(env.sender_incarnation):
            # SES-042: incarnations are never 0 (ID-002); nothing can be addressed to one.
            self._story(f"peer:{env.sender}", "discard-sender-incarnation-0", type(body).__name__)
            if self.trace_events:
                self._trace("discarded", reason="wrong-incarnation")
            return
        if env.receiver_incarnation == 0 and not isinstance(body, Hello):
            self._story(f"peer:{env.sender}", "discard-no-incarnation", type(body).__name__)  # SES-014
            if self.trace_events:
                self._trace("discarded", reason="wrong-incarnation")
            r = self.remotes.get(env.sender)
            if r is not None and r.state == "alive" and r.incarnation == env.sender_incarnation and not isinstance(body, ProtocolError):
                self._send_unsequenced(r, ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "receiverIncarnation 0 outside Hello", "SES-014"), env.seq))
            return
        if env.receiver_incarnation not in (0, self.incarnation):
            if self.trace_events:
                self._trace("discarded", reason="wrong-incarnation")
            self._tell_declared_dead(env, "SES-006")
            return
        if (env.sender, env.sender_incarnation) in self.fenced:
            if self.trace_events:
                self._trace("discarded", reason="fenced")
            self._tell_declared_dead(env, "LIV-005")  # SES-005, SES-017
            return
        if isinstance(body, Hello):
            self._on_hello(env, body)
            return
        r = self.remotes.get(env.sender)
        if r is None or r.incarnation not in (env.sender_incarnation, 0) or r.state != "alive":
            if isinstance(body, Welcome) and r is not None and r.state == "dead" and not r.incarnation:
                # LIV-018, HS-014: a late Welcome, answering a Hello sent before the handshake
                # timed out, replaces the dead record and opens the session.
                r = self._remote(env.sender, r.address, env.sender_incarnation)
                self._on_welcome(r, env, body)
            elif isinstance(body, Welcome) and r is not None and r.state == "connecting":
                self._on_welcome(r, env, body)
            elif isinstance(body, ProtocolError) and r is not None:
                self._on_session_error(r, env, body)
            else:
                # No session with this incarnation (SES-010): nothing we can safely act on.
                self._story(f"peer:{env.sender}", "discard-no-session", type(body).__name__)
                if self.trace_events:
                    self._trace("discarded", reason="no-session")
            return
        r.last_heard_ms = self.now_ms  # LIV-002
        if not r.confirmed:
            self._confirm(r)  # SEC-021: more than a Hello came: the handshake is over
        self._take_ack(r, env.ack)
        if env.seq == 0:
            if isinstance(body, ProtocolError):
                self._on_session_error(r, env, body)
            elif isinstance(body, _DATA_PLANE):
                problem = self._feature_problem(r, body)
                if problem is not None:  # HS-004: discard, and say why
                    self._protocol_error(r, ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1], 0)
                else:
                    self._deliver_data(r, body)
            elif not isinstance(body, (Heartbeat, Welcome)) and self.trace_events:
                self._trace("discarded", reason="not-in-session")  # GEN-009, TRC-013
            return  # Heartbeat/Welcome: liveness and ack only
        if env.seq <= r.delivered:
            r.ack_owed_since_ms = self.now_ms  # duplicate: re-ack (SES-002)
            if self.trace_events:
                self._trace("discarded", reason="duplicate")
            return
        if env.seq > r.delivered + 1:
            if env.seq - r.delivered <= self.config.window:
                r.buffered[env.seq] = env
            elif self.trace_events:
                self._trace("discarded", reason="beyond-window")
            return
        self._deliver(r, env)
        self._deliver_buffered(r)

    def _deliver_buffered(self: Peer, r: Remote) -> None:
        while r.delivered + 1 in r.buffered and r.state == "alive":
            item = r.buffered.pop(r.delivered + 1)
            if isinstance(item, tuple):  # a malformed message held its place (GEN-010)
                error, answer = item
                r.delivered += 1
                if answer is None or answer[0] != "ProtocolError":  # GEN-008
                    self._protocol_error(r, error.code, error.message, error.requirement or "GEN-010", r.delivered)
                if answer is not None:
                    self._answer_refused(r, answer, error)  # GEN-030
            else:
                self._deliver(r, item)

    def _deliver(self: Peer, r: Remote, env: Envelope) -> None:
        r.delivered = env.seq
        if r.ack_owed_since_ms < 0:
            r.ack_owed_since_ms = self.now_ms
        name = type(env.body).__name__
        problem = self._feature_problem(r, env.body)
        if problem is not None:
            self._protocol_error(r, ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1], env.seq)
            answer = _answer_of(env.body)
            if answer is not None:
                # GEN-030: the refused answer still ends the request it answers; what
                # it carries is disposed of (TASK-015).
                if isinstance(env.body, TaskReply):
                    self._drop_reply(env.body, r.peer)
                self._answer_refused(r, answer, ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1]))
            return
        if isinstance(env.body, _DATA_PLANE):
            self._deliver_data(r, env.body)
            return
        zero = _zero_incarnation(env.body)  # ID-013
        if zero:
            self._protocol_error(r, ErrorCode.MALFORMED, zero, "ID-013", env.seq)
            return
        if isinstance(env.body, _CARRY_REFS):
            # REF-004, REF-007 (a TaskReply's go through TASK-019: _on_TaskReply)
            conflict = self._ref_conflict(env.body)
            if conflict:
                self._protocol_error(r, ErrorCode.MALFORMED, conflict[0], conflict[1], env.seq)
                if isinstance(env.body, ObjectStatus):
                    # GEN-030: the owner's answer is refused, and asking again would get the
                    # same one: the wait for it ends as a refused request does (OBJ-017).
                    self._answer_refused(r, ("ObjectStatus", (env.body.object_id,)), ErrorInfo(
                        ErrorCode.MALFORMED, conflict[0], conflict[1]))
                return
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            if type(env.body) in MESSAGE_TYPES:  # known, but not as a sequenced message (GEN-005)
                self._protocol_error(r, ErrorCode.WRONG_STATE, f"{name} is not sent in the session", "GEN-005", env.seq)
            else:
                self._protocol_error(r, ErrorCode.UNKNOWN_MESSAGE, name, "GEN-001", env.seq)
            return
        # ERR-008: the refusal of a request nothing else would end is always sent.
        ends_request = isinstance(env.body, _REQUESTS)
        try:
            handler(r, env.body)
        except ProtocolViolation as exc:
            # GEN-005: a valid message in the wrong state; the peer is told, we go on.
            self._protocol_error(r, exc.code, str(exc), exc.requirement, env.seq, counted=not ends_request)
        except Exception as exc:
            if self.check_invariants:
                raise  # tests and the simulator: a fault of ours must surface
            # SEC-020: a fault of ours on one message costs that message only; its
            # sender's request ends (ERR-003) and every other message is still handled.
            self._story(f"peer:{r.peer}", "handler-failed", f"{name}: {type(exc).__name__}: {exc}")
            self._protocol_error(r, ErrorCode.MALFORMED, f"{name} could not be handled: {type(exc).__name__}: {exc}",
                                 "SEC-020", env.seq, counted=not ends_request)

    def _feature_problem(self: Peer, r: Remote, body: Message) -> tuple[str, str] | None:
        """Which negotiated feature ``body`` uses without it (HS-004, HS-017..HS-020)."""
        if r.all_features:
            return None  # every feature negotiated: nothing can be missing
        name = type(body).__name__
        needed = FEATURE_OF.get(name)
        if needed and needed not in r.features:
            return f"{name} needs feature {needed}", "HS-004"
        values: list = []
        if isinstance(body, SubmitTask):
            if body.actor_id and Feature.ACTORS.value not in r.features:
                return "actor calls need feature actors", "HS-019"
            if body.attempt > 1 and Feature.RECOVERY.value not in r.features:
                return "attempt > 1 needs feature recovery", "HS-018"
            values = [a.value for a in body.args if a.value is not None]
            if any(a.kind == ArgKind.SHARED for a in body.args) and Feature.BORROWING.value not in r.features:
                return "shared arguments need feature borrowing", "HS-017"
        elif isinstance(body, CreateActor):  # its arguments, as a task's (HS-017, HS-020, HS-035)
            values = [a.value for a in body.args if a.value is not None]
            if any(a.kind == ArgKind.SHARED for a in body.args) and Feature.BORROWING.value not in r.features:
                return "shared arguments need feature borrowing", "HS-017"
        elif isinstance(body, ObjectStatus) and body.value is not None:
            values = [body.value]
        elif isinstance(body, FetchRequest) and body.accept_lz4 and Feature.LZ4.value not in r.features:
            return "acceptLz4 needs feature lz4", "HS-021"
        elif isinstance(body, FetchChunk) and body.lz4 and Feature.LZ4.value not in r.features:
            return "an lz4 chunk needs feature lz4", "HS-021"
        elif isinstance(body, TaskReply):
            values = [rv.value for rv in body.returns if rv.value is not None]
            if (body.retained or any(rv.nested for rv in body.returns)) and Feature.BORROWING.value not in r.features:
                return "refs in replies need feature borrowing", "HS-017"
        for v in values:
            if v.nested and Feature.BORROWING.value not in r.features:
                return "nested refs need feature borrowing", "HS-017"
            if (v.encoding == Encoding.PICKLE or v.buffers) and Feature.PYTHON_PICKLE.value not in r.features:
                return "pickle values need feature python-pickle", "HS-020"
        return None

    def _deliver_data(self: Peer, r: Remote, body: Message) -> None:
        self._out(DeliverData(self._sid, r.peer, r.incarnation, r.address, body))

    def _take_ack(self: Peer, r: Remote, ack: int) -> None:
        if not r.unacked or ack < next(iter(r.unacked)) or ack > r.out_seq:
            return  # SES-008: an ack beyond what we sent acknowledges nothing
        while r.unacked:  # in seq order: stop at the first one not acknowledged
            seq = next(iter(r.unacked))
            if seq > ack:
                break
            del r.unacked[seq]
            r.unacked_at.pop(seq, None)
        r.last_progress_ms = self.now_ms
        r.retransmit_every_ms = 0  # SES-003: progress, back to the first interval
        self._on_acked(r, ack)

    def _on_hello(self: Peer, env: Envelope, hello: Hello) -> None:
        if not hello.address:
            if self.trace_events:
                self._trace("discarded", reason="malformed")
            return  # HS-025: nowhere to answer, no session to open
        r = self.remotes.get(env.sender)
        if r is not None and r.incarnation and r.incarnation != env.sender_incarnation and r.state != "dead":
            self._declare_dead(r, "new_incarnation", "restarted with a new incarnation")  # HS-006
            r = None
        refusal = self._refuse_greeting(hello)
        opens = r is None or r.state == "dead"
        if refusal is None and opens:
            refusal = self._admit_handshake()
        if refusal is not None:
            tmp = Remote(peer=env.sender, address=hello.address, incarnation=env.sender_incarnation)
            self._send_unsequenced(tmp, ProtocolError(refusal))
            return
        if opens:
            r = self._remote(env.sender, hello.address, env.sender_incarnation)
            r.confirmed = False  # SEC-021: a handshake in progress until anything else comes
            self.handshakes[r.peer] = None
        r.address = hello.address or r.address
        r.last_heard_ms = self.now_ms
        fresh = r.state != "alive" or r.incarnation != env.sender_incarnation
        r.incarnation = env.sender_incarnation
        if fresh:  # a repeat Hello on a live session negotiates nothing again (HS-009, HS-036)
            r.features = self._negotiate(hello.features)
            r.all_features = _ALL_FEATURES.issubset(r.features)
            r.heartbeat_interval_ms = min(hello.heartbeat_interval_ms, _MAX_HEARTBEAT_MS)  # LIV-007, LIV-021
            r.max_frame_bytes = hello.max_frame_bytes  # FET-007
            r.minor = min(PROTOCOL_MINOR, hello.protocol_minor)  # HS-003
        self._send_unsequenced(r, Welcome(**{**self._hello_fields(), "features": r.features, "protocol_minor": r.minor}))
        if fresh:
            self._become_alive(r, "hello")

    def _admit_handshake(self: Peer) -> ErrorInfo | None:
        """SEC-021: room for a session opened by a Hello, or why there is none.

        At most ``max_handshakes`` sessions that have carried nothing but the remote's
        Hello: a new one forgets the oldest (a peer that is really there has answered
        by then, SES-022). At most ``max_sessions`` unfenced records: beyond, refuse.
        """
        cfg = self.config
        while len(self.handshakes) >= cfg.max_handshakes:
            oldest = next(iter(self.handshakes))
            r = self.remotes.get(oldest)
            if r is None or r.confirmed:
                del self.handshakes[oldest]
            else:
                self._forget_handshake(r)
        if len(self.remotes) >= cfg.max_sessions and sum(1 for x in self.remotes.values() if x.state != "dead") >= cfg.max_sessions:
            return ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, f"already in session with {cfg.max_sessions} peers", "SEC-021")
        return None

    def _confirm(self: Peer, r: Remote) -> None:
        r.confirmed = True
        self.handshakes.pop(r.peer, None)

    def _forget_handshake(self: Peer, r: Remote) -> None:
        """Drop a handshake in progress as if its Hello had never come: no fence, no
        notice, no death effects (it has sent nothing and been sent nothing, SEC-021)."""
        self.handshakes.pop(r.peer, None)
        if self.remotes.get(r.peer) is r:
            del self.remotes[r.peer]
        self._story(f"peer:{r.peer}", "handshake-forgotten", f"incarnation {r.incarnation}")
        if self.trace_events:
            self._trace("peer-forgotten", peer=r.peer, incarnation=str(r.incarnation))  # SM-003
        if r.address and not any(x.address == r.address and x.state != "dead" for x in self.remotes.values()):
            self._out(Disconnect(self._sid, r.peer, r.address))  # unless another session uses that address

    def _refuse_greeting(self: Peer, g: Hello | Welcome) -> ErrorInfo | None:
        if g.protocol_major != PROTOCOL_MAJOR:
            return ErrorInfo(ErrorCode.PROTOCOL_VERSION, f"I speak {PROTOCOL_MAJOR}.x, you {g.protocol_major}.x", "HS-002")
        if Feature.CORE.value not in g.features:
            return ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, "every peer must offer core", "HS-007")  # HS-011
        if g.max_frame_bytes < 1 << 20:
            return ErrorInfo(ErrorCode.MALFORMED, "maxFrameBytes must be at least 1 MiB", "HS-012")
        return None

    def _on_welcome(self: Peer, r: Remote, env: Envelope, w: Welcome) -> None:
        refusal = self._refuse_greeting(w)
        if refusal is not None:
            r.incarnation = env.sender_incarnation
            self._declare_dead(r, "rejected", refusal.message)
            return
        r.incarnation = env.sender_incarnation
        r.last_heard_ms = self.now_ms
        r.features = self._negotiate(w.features)
        r.all_features = _ALL_FEATURES.issubset(r.features)
        r.heartbeat_interval_ms = min(w.heartbeat_interval_ms, _MAX_HEARTBEAT_MS)  # LIV-007, LIV-021
        r.max_frame_bytes = w.max_frame_bytes  # FET-007
        r.minor = min(PROTOCOL_MINOR, w.protocol_minor)  # HS-003
        queued = bool(r.queued)
        self._become_alive(r, "welcome")
        if not queued and self.config.welcome_heartbeat:
            self._send_unsequenced(r, Heartbeat())  # SES-022: end the receiver's handshake in progress at once

    def _negotiate(self: Peer, theirs: tuple[str, ...]) -> tuple[str, ...]:
        mine = self.config.features
        return tuple(f for f in mine if f in theirs)  # HS-004, HS-005

    def _become_alive(self: Peer, r: Remote, event: str) -> None:
        self._transition_peer(r, event)
        queued, r.queued = r.queued, []
        for body in queued:
            self._send_body(r, body)

    def _on_session_error(self: Peer, r: Remote, env: Envelope, msg: ProtocolError) -> None:
        if msg.error.code == ErrorCode.DECLARED_DEAD:
            if msg.error.requirement == "SES-006":
                # LIV-009: it answers a message addressed to an earlier incarnation of
                # the sender (one sent before we knew it restarted), never our death.
                if r.incarnation and r.incarnation != env.sender_incarnation:
                    self._declare_dead(r, "declared_dead", "restarted (told by DECLARED_DEAD)")
                return
            if r.incarnation and r.incarnation != env.sender_incarnation:
                # LIV-009: the peer restarted; it is our old view of it that is dead.
                self._declare_dead(r, "declared_dead", "restarted (told by DECLARED_DEAD)")
                return
            self._fail_stop(f"{r.peer} says this incarnation was declared dead")  # LIV-005
            return
        if r.state == "connecting" and msg.error.code in (ErrorCode.PROTOCOL_VERSION, ErrorCode.FEATURE_NOT_NEGOTIATED, ErrorCode.MALFORMED):
            r.incarnation = r.incarnation or env.sender_incarnation
            self._declare_dead(r, "rejected", msg.error.message)  # HS-002, HS-011
            return
        if r.state != "alive" or r.incarnation != env.sender_incarnation:
            return
        self._on_ProtocolError(r, msg)

    def _on_ProtocolError(self: Peer, r: Remote, msg: ProtocolError) -> None:
        """ERR-003: an error about one of our requests ends that request."""
        self._out(RemoteError(self._sid, r.peer, msg.error, msg.related_seq))
        req = r.requests.pop(msg.related_seq, None) if msg.related_seq else None
        if req is not None:
            if req[0] == "SubmitTask" and r.submit_seqs.get(req[1]) == msg.related_seq:  # type: ignore[call-overload]
                del r.submit_seqs[req[1]]  # type: ignore[index]
            self._request_refused(r, req[0], req[1], msg.error)

    def _protocol_error(self: Peer, r: Remote, code: ErrorCode, message: str, requirement: str, seq: int,
                        counted: bool = True) -> None:
        if not counted:
            # ERR-008: the refusal of a delivered request is its only end at its sender;
            # it is sent whatever the window holds, and not counted in it.
            self._story(f"peer:{r.peer}", "protocol-error-sent", f"{code.value} {requirement}: {message}")
            self._send(r.peer, ProtocolError(ErrorInfo(code, message, requirement), related_seq=seq))
            return
        if self.now_ms - r.errors_window_ms >= 1000 or r.errors_window_ms < 0:
            r.errors_window_ms, r.errors_in_window = self.now_ms, 0
        if r.errors_in_window >= self.config.max_protocol_errors_per_s:
            # ERR-008: a burst of bad input is discarded all the same, but not all answered.
            self._story(f"peer:{r.peer}", "protocol-error-suppressed", f"{code.value} {requirement}: {message}")
            return
        r.errors_in_window += 1
        self._story(f"peer:{r.peer}", "protocol-error-sent", f"{code.value} {requirement}: {message}")
        self._send(r.peer, ProtocolError(ErrorInfo(code, message, requirement), related_seq=seq))

    def _tell_declared_dead(self: Peer, env: Envelope, requirement: str) -> None:
        if isinstance(env.body, ProtocolError):
            return  # GEN-008
        hello_address = env.body.address if isinstance(env.body, Hello) else ""
        self._answer_declared_dead(env.sender, env.sender_incarnation, hello_address, requirement)

    def _answer_declared_dead(self: Peer, sender: PeerId, incarnation: int, hello_address: str, requirement: str) -> None:
        """An answer without a session (SES-018, SES-020, SES-021)."""
        r = self.remotes.get(sender)
        # SES-020: for a fenced incarnation, the address kept with its fence record (not
        # the one of a later incarnation's record); else the record's, else the Hello's.
        address = self.fence_addresses.get((sender, incarnation)) or (r.address if r is not None else "") or hello_address
        if not address:
            return
        if requirement == "LIV-005":
            # SES-017: at most one answer a second to one fenced incarnation (it resends
            # its Hello, or retransmits, several times a second; one answer is enough).
            key = (sender, incarnation)
            last = self.declared_dead_answered.get(key)
            if last is not None and self.now_ms - last < DECLARED_DEAD_ANSWER_MS:
                self._story(f"peer:{sender}", "declared-dead-suppressed", f"answered {self.now_ms - last} ms ago")
                return
            self.declared_dead_answered[key] = self.now_ms
        tmp = Remote(peer=sender, address=address, incarnation=incarnation)
        info = ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", requirement)
        self._send_unsequenced(tmp, ProtocolError(info))

    def _malformed(self: Peer, sender: PeerId, incarnation: int, seq: int, error: ErrorInfo,
                   receiver: PeerId | None = None, receiver_incarnation: int | None = None,
                   answer: tuple[str, tuple[object, ...]] | None = None) -> None:
        """GEN-004, GEN-010: a frame that did not decode still uses up its sequence number,
        once its envelope passed the checks of SES-016 in their order."""
        if receiver is not None and receiver != self.peer_id:
            return  # not for us: discarded, unanswered
        if _no_sender_incarnation(incarnation):
            return  # SES-042: no incarnation to answer, no session it can belong to
        r = self.remotes.get(sender)
        if receiver_incarnation is not None and receiver_incarnation != self.incarnation:
            if receiver_incarnation == 0:  # SES-014: rejected before sequencing
                if r is not None and r.state == "alive" and r.incarnation == incarnation:
                    info = ErrorInfo(ErrorCode.MALFORMED, "receiverIncarnation 0 outside Hello", "SES-014")
                    self._send_unsequenced(r, ProtocolError(info, seq))
            else:
                self._answer_declared_dead(sender, incarnation, "", "SES-006")
            return
        if (sender, incarnation) in self.fenced:
            self._answer_declared_dead(sender, incarnation, "", "LIV-005")  # SES-005, SES-017
            return
        if r is None or r.state != "alive" or r.incarnation != incarnation:
            return  # no live session (SES-010): nobody to answer
        r.last_heard_ms = self.now_ms
        unanswerable = answer is not None and answer[0] == "ProtocolError"  # GEN-008
        if seq == 0:
            if not unanswerable:
                self._protocol_error(r, error.code, error.message, error.requirement or "GEN-004", 0)
        elif seq == r.delivered + 1:
            r.delivered = seq
            if not unanswerable:
                self._protocol_error(r, error.code, error.message, error.requirement or "GEN-010", seq)  # ERR-004
            if answer is not None:
                self._answer_refused(r, answer, error)  # GEN-030
            self._deliver_buffered(r)
        elif seq > r.delivered + 1 and seq - r.delivered <= self.config.window:
            r.buffered[seq] = (error, answer)  # type: ignore[assignment]

    # ------------------------------------------------------------ time
    def _on_tick(self: Peer) -> None:
        now = self.now_ms
        cfg = self.config
        if self.declared_dead_answered:  # SES-017: keep only what the rate limit still needs
            self.declared_dead_answered = {k: t for k, t in self.declared_dead_answered.items()
                                           if now - t < DECLARED_DEAD_ANSWER_MS}
        if self.held_actor_calls:
            self._expire_held_actor_calls()  # ACT-023
        for r in list(self.remotes.values()):
            if r.state == "dead":
                continue
            interval = r.heartbeat_interval_ms or cfg.heartbeat_interval_ms  # LIV-007
            limit = interval * cfg.miss_limit
            if r.state == "connecting":  # LIV-015: a handshake gets longer
                limit = max(limit, cfg.handshake_timeout_ms)
            if now - r.last_heard_ms > limit:
                self._declare_dead(r, "silence", f"silent for {now - r.last_heard_ms} ms")  # LIV-003
                self._broadcast_death(r)
                continue
            if r.unacked and now - r.unacked_at[next(iter(r.unacked))] >= cfg.stall_ms:
                self._declare_dead(r, "silence", "session stalled")  # SES-012
                self._broadcast_death(r, "session stalled")
                continue
            if r.state == "connecting":
                if r.hello_sent_ms >= 0 and now - r.hello_sent_ms >= cfg.retransmit_ms:
                    self._send_hello(r)
                continue
            every = r.retransmit_every_ms or cfg.retransmit_ms
            if r.unacked and now - r.last_progress_ms >= every:
                # SES-003: resend everything not acked, in order, then wait twice as
                # long (up to 8x) before the next round unless an ack advances: a slow
                # receiver is not flooded with copies of a window it is still reading.
                r.last_progress_ms = now
                r.retransmit_every_ms = min(every * 2, cfg.retransmit_ms * RETRANSMIT_BACKOFF_MAX)
                for seq, env in list(r.unacked.items()):
                    self._emit_frame(r, self._envelope(r, seq, env.body))
            if now - r.last_sent_ms >= cfg.heartbeat_interval_ms or (
                r.ack_owed_since_ms >= 0 and now - r.ack_owed_since_ms >= cfg.ack_delay_ms
            ):
                self._send_unsequenced(r, Heartbeat())  # LIV-001, SES-004

    # ------------------------------------------------------------ death
    def _declare_dead(self: Peer, r: Remote, event: str, reason: str, source: str = "") -> None:
        """Fence ``r`` and run every death effect (LIV-003); ``source`` overrides how
        the trace says the death was learnt (else from ``event``)."""
        if r.state == "dead":
            return
        self._transition_peer(r, event)
        if self.trace_events:
            self._trace("peer-declared-dead", peer=r.peer, incarnation=str(r.incarnation), reason=reason,
                        source=source or _DEATH_SOURCE[event])
        if r.incarnation:
            self._add_fence(r.peer, r.incarnation, r.address)
        self.handshakes.pop(r.peer, None)
        self.grants_registered.pop((r.peer, r.incarnation), None)  # its grants go with it (BOR-009)
        r.unacked.clear()
        r.unacked_at.clear()
        r.buffered.clear()
        r.queued.clear()
        r.requests.clear()
        r.submit_seqs.clear()
        self._out(PeerDeclaredDead(self._sid, r.peer, r.incarnation, reason, source or _DEATH_SOURCE[event]))
        self._on_peer_dead(r)

    def _add_fence(self: Peer, peer: PeerId, incarnation: int, address: str = "") -> None:
        if (peer, incarnation) not in self.fenced:
            self.fenced.add((peer, incarnation))
            self.fences_of[peer] = self.fences_of.get(peer, 0) + 1
        if address:
            self.fence_addresses[(peer, incarnation)] = address  # SES-015, SES-020

    def _broadcast_death(self: Peer, dead: Remote, reason: str = "silence") -> None:
        """LIV-004: tell everyone else we are in session with (LIV-030: unless the
        dead peer is one whose death every peer detects itself), unless it died as a
        handshake in progress: it sent only its Hello and was sent nothing (LIV-040)."""
        if not dead.incarnation or dead.peer in self.config.unannounced or not dead.confirmed:
            return
        for other in list(self.remotes.values()):
            if other is not dead and other.state == "alive" and other.confirmed:  # not to handshakes (SEC-021)
                self._send(other.peer, PeerDeadNotice(dead.peer, dead.incarnation, reason))

    def _on_PeerDeadNotice(self: Peer, r: Remote, msg: PeerDeadNotice) -> None:
        if msg.peer in self.config.unannounced:
            # CLU-034: a peer every member watches itself (the head) is judged by our own
            # session with it, not by another member whose link to it failed (LIV-030).
            return
        if msg.peer == self.peer_id:
            # LIV-019: a notice about ourselves is a third party's opinion (or a forgery); a
            # peer that fenced us answers our next message DECLARED_DEAD (SES-017, LIV-005).
            return
        self._fence(msg.peer, msg.incarnation, "notice", f"notice from {r.peer}: {msg.reason}")

    def _fence(self: Peer, peer: PeerId, incarnation: int, event: str, reason: str) -> None:
        """Fence a peer incarnation we may or may not be in session with."""
        target = self.remotes.get(peer)
        if target is not None and target.incarnation in (incarnation, 0) and target.state != "dead":
            target.incarnation = target.incarnation or incarnation
            self._declare_dead(target, event, reason)
        elif (peer, incarnation) not in self.fenced:
            # LIV-012, BOR-009: an incarnation we are not in session with may still hold
            # grants here; they go, and those of the incarnation we talk to stay.
            for oid in [o for o, e in self.owned.items() if peer in e.borrowers]:
                self._drop_grants_of(self.owned[oid], peer, incarnation)
                self._check_owned(oid)
        if self.trace_events and (peer, incarnation) not in self.fenced:  # no session: fenced all the same
            self._trace("peer-declared-dead", peer=peer, incarnation=str(incarnation), reason=reason,
                        source=_DEATH_SOURCE[event])
        self._add_fence(peer, incarnation)
        self.grants_registered.pop((peer, incarnation), None)

    def _on_Goodbye(self: Peer, r: Remote, msg: Goodbye) -> None:
        # LIV-016: acknowledge the Goodbye (its seq is delivered now) before fencing,
        # so that its sender need not wait out its linger (LIV-010).
        self._send_unsequenced(r, Heartbeat())
        self._declare_dead(r, "goodbye", msg.reason or "goodbye")  # LIV-006

    def _while_leaving(self: Peer, s: Stimulus) -> None:
        """LIV-010: a peer that has sent its Goodbyes goes on acknowledging the sequenced
        messages it receives (without handling them: it starts no new work and owes no
        answer, LIV-032) and retransmitting what is not acknowledged, the Goodbyes among
        them, until every one is acknowledged or the linger is over. A DECLARED_DEAD
        answer (SES-017) ends it at once (LIV-009): the exit it was about to make."""
        if isinstance(s, Tick):
            self.now_ms = max(self.now_ms, s.now_ms)
            for r in list(self.remotes.values()):
                if r.state != "alive":
                    continue
                every = r.retransmit_every_ms or self.config.retransmit_ms
                if r.unacked and self.now_ms - r.last_progress_ms >= every:  # SES-003
                    r.last_progress_ms = self.now_ms
                    r.retransmit_every_ms = min(every * 2, self.config.retransmit_ms * RETRANSMIT_BACKOFF_MAX)
                    for seq, env in list(r.unacked.items()):
                        self._emit_frame(r, self._envelope(r, seq, env.body))
                if r.ack_owed_since_ms >= 0 and self.now_ms - r.ack_owed_since_ms >= self.config.ack_delay_ms:
                    self._send_unsequenced(r, Heartbeat())  # SES-004
        elif isinstance(s, Receive):
            env = s.envelope
            r = self.remotes.get(env.sender)
            if (env.receiver != self.peer_id or env.receiver_incarnation != self.incarnation or r is None
                    or r.state != "alive" or r.incarnation != env.sender_incarnation):
                return
            if isinstance(env.body, ProtocolError) and env.body.error.code == ErrorCode.DECLARED_DEAD:
                self._story(f"peer:{r.peer}", "leave", "told DECLARED_DEAD while leaving")
                self.stopped = True
                return
            self._take_ack(r, env.ack)
            if env.seq > 0:
                if env.seq == r.delivered + 1:
                    r.delivered = env.seq  # acknowledged, not handled (LIV-010: MAY handle)
                    while r.delivered + 1 in r.buffered:
                        del r.buffered[r.delivered + 1]
                        r.delivered += 1
                elif r.delivered + 1 < env.seq <= r.delivered + self.config.window:
                    r.buffered[env.seq] = env
                if r.ack_owed_since_ms < 0:
                    r.ack_owed_since_ms = self.now_ms  # a duplicate is acknowledged again (SES-002)
        self._leave_if_done()

    def _leave_if_done(self: Peer) -> None:
        """Stop once every Goodbye is acknowledged, or the linger is over (LIV-010)."""
        if self.leaving_since_ms < 0 or self.stopped:
            return
        pending = any(r.state == "alive" and r.unacked for r in self.remotes.values())
        owed = any(r.state == "alive" and r.ack_owed_since_ms >= 0 for r in self.remotes.values())
        if not (pending or owed) or self.now_ms - self.leaving_since_ms >= self.config.goodbye_linger_ms:
            self.stopped = True

    def _fail_stop(self: Peer, reason: str) -> None:
        if not self.stopped:
            self.stopped = True
            if self.trace_events:
                self._trace("fail-stop", reason=reason)
            self._out(FailStop(self._sid, reason))

    def _transition_peer(self: Peer, r: Remote, event: str) -> None:
        self._transition("peer", r, f"peer:{r.peer}", event)
