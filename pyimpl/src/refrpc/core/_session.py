"""Session layer and peer liveness (SES-*, HS-*, LIV-*).

Turns an unreliable, reordering transport into exactly-once FIFO delivery per
pair of peer incarnations, until one side fences the other. Everything above
this layer may assume that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tables
from .errors import ProtocolViolation
from .events import FailStop, PeerDeclaredDead, RemoteError, SendFrame
from .messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Envelope,
    ErrorCode,
    ErrorInfo,
    Feature,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    PeerDeadNotice,
    PeerId,
    ProtocolError,
    Welcome,
)
from .state import Remote

if TYPE_CHECKING:
    from .peer import Peer

#: Messages that travel outside the session (seq 0): not acked, not retransmitted.
_UNSEQUENCED = (Hello, Welcome, Heartbeat)

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


class SessionLayer:
    """Mixin of :class:`Peer`: sessions, handshake, heartbeats, fencing."""

    # ------------------------------------------------------------ sending
    def _remote(self: Peer, peer: PeerId, address: str = "", incarnation: int = 0) -> Remote:
        """The record for ``peer``, created (and greeted, HS-001) on first use."""
        r = self.remotes.get(peer)
        if r is None or (r.state == "dead" and incarnation and incarnation != r.incarnation):
            r = Remote(peer=peer, address=address, incarnation=incarnation)
            r.last_heard_ms = self.now_ms
            self.remotes[peer] = r
        if not r.address and address:
            r.address = address
        return r

    def _send(self: Peer, peer: PeerId, body: Message, address: str = "", incarnation: int = 0) -> None:
        """Send ``body`` to ``peer`` on its session (queued until the handshake is done)."""
        r = self._remote(peer, address, incarnation)
        if r.state == "dead":
            return  # SES-005: nothing goes to a fenced incarnation
        if r.state == "connecting":
            r.queued.append(body)
            if r.hello_sent_ms < 0:
                self._send_hello(r)
            return
        self._send_sequenced(r, body)

    def _send_sequenced(self: Peer, r: Remote, body: Message) -> None:
        r.out_seq += 1
        env = self._envelope(r, r.out_seq, body)
        if not r.unacked:
            r.last_progress_ms = self.now_ms
        r.unacked[r.out_seq] = env
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
        if env.receiver != self.peer_id or (
            env.receiver_incarnation not in (0, self.incarnation)
        ):
            # SES-006: meant for another incarnation of me (or someone else).
            self._tell_declared_dead(env)
            return
        if (env.sender, env.sender_incarnation) in self.fenced:
            self._tell_declared_dead(env)  # SES-005
            return
        body = env.body
        if isinstance(body, Hello):
            self._on_hello(env, body)
            return
        r = self.remotes.get(env.sender)
        if r is None or r.incarnation != env.sender_incarnation or r.state != "alive":
            if isinstance(body, Welcome) and r is not None and r.state == "connecting":
                self._on_welcome(r, env, body)
                return
            if isinstance(body, ProtocolError) and r is not None:
                self._on_protocol_error(r, body)
                return
            # Not in a session with us (HS-001): nothing we can safely act on.
            self._story(f"peer:{env.sender}", "discard-no-session", type(body).__name__)
            return
        r.last_heard_ms = self.now_ms  # LIV-002
        self._take_ack(r, env.ack)
        if env.seq == 0:
            if isinstance(body, ProtocolError):
                self._on_protocol_error(r, body)
            return  # Heartbeat/Welcome: liveness and ack only
        if env.seq <= r.delivered:
            r.ack_owed_since_ms = self.now_ms  # duplicate: re-ack (SES-002)
            return
        if env.seq > r.delivered + 1:
            if env.seq - r.delivered <= self.config.window:
                r.buffered[env.seq] = env
            return
        self._deliver(r, env)
        while r.delivered + 1 in r.buffered and r.state == "alive":
            self._deliver(r, r.buffered.pop(r.delivered + 1))

    def _deliver(self: Peer, r: Remote, env: Envelope) -> None:
        r.delivered = env.seq
        if r.ack_owed_since_ms < 0:
            r.ack_owed_since_ms = self.now_ms
        name = type(env.body).__name__
        needed = FEATURE_OF.get(name)
        if needed and needed not in r.features:
            self._protocol_error(r, ErrorCode.FEATURE_NOT_NEGOTIATED, f"{name} needs feature {needed}", "HS-004", env.seq)
            return
        handler = getattr(self, f"_on_{name}", None)
        if handler is None:
            self._protocol_error(r, ErrorCode.UNKNOWN_MESSAGE, name, "GEN-001", env.seq)
            return
        try:
            handler(r, env.body)
        except ProtocolViolation as exc:
            # GEN-005: a valid message in the wrong state; the peer is told, we go on.
            self._protocol_error(r, exc.code, str(exc), exc.requirement, env.seq)

    def _take_ack(self: Peer, r: Remote, ack: int) -> None:
        if not r.unacked or ack < next(iter(r.unacked)):
            return
        for seq in [s for s in r.unacked if s <= ack]:
            del r.unacked[seq]
        r.last_progress_ms = self.now_ms
        self._on_acked(r, ack)

    def _on_hello(self: Peer, env: Envelope, hello: Hello) -> None:
        r = self.remotes.get(env.sender)
        if r is not None and r.incarnation and r.incarnation != env.sender_incarnation and r.state != "dead":
            self._declare_dead(r, "new_incarnation", "restarted with a new incarnation")  # HS-006
            r = None
        if hello.protocol_major != PROTOCOL_MAJOR:
            tmp = Remote(peer=env.sender, address=hello.address, incarnation=env.sender_incarnation)
            info = ErrorInfo(ErrorCode.PROTOCOL_VERSION, f"I speak {PROTOCOL_MAJOR}.x, you {hello.protocol_major}.x", "HS-002")
            self._send_unsequenced(tmp, ProtocolError(info))
            return
        if r is None or r.state == "dead":
            r = self._remote(env.sender, hello.address, env.sender_incarnation)
        r.address = hello.address or r.address
        r.last_heard_ms = self.now_ms
        fresh = r.state != "alive" or r.incarnation != env.sender_incarnation
        r.incarnation = env.sender_incarnation
        r.features = self._negotiate(hello.features)
        self._send_unsequenced(r, Welcome(**{**self._hello_fields(), "features": r.features}))
        if fresh:
            self._become_alive(r, "hello")

    def _on_welcome(self: Peer, r: Remote, env: Envelope, w: Welcome) -> None:
        if w.protocol_major != PROTOCOL_MAJOR:
            self._declare_dead(r, "rejected", "protocol version mismatch")
            return
        r.incarnation = env.sender_incarnation
        r.last_heard_ms = self.now_ms
        r.features = self._negotiate(w.features)
        self._become_alive(r, "welcome")

    def _negotiate(self: Peer, theirs: tuple[str, ...]) -> tuple[str, ...]:
        mine = self.config.features
        return tuple(f for f in mine if f in theirs)  # HS-004, HS-005

    def _become_alive(self: Peer, r: Remote, event: str) -> None:
        self._transition_peer(r, event)
        queued, r.queued = r.queued, []
        for body in queued:
            self._send_sequenced(r, body)

    def _on_protocol_error(self: Peer, r: Remote, msg: ProtocolError) -> None:
        if msg.error.code == ErrorCode.DECLARED_DEAD:
            self._fail_stop(f"{r.peer} says this incarnation was declared dead")  # LIV-005
            return
        if msg.error.code == ErrorCode.PROTOCOL_VERSION and r.state == "connecting":
            self._declare_dead(r, "rejected", msg.error.message)
            return
        self._out(RemoteError(self._sid, r.peer, msg.error))

    def _protocol_error(self: Peer, r: Remote, code: ErrorCode, message: str, requirement: str, seq: int) -> None:
        self._story(f"peer:{r.peer}", "protocol-error-sent", f"{code.value} {requirement}: {message}")
        self._send(r.peer, ProtocolError(ErrorInfo(code, message, requirement), related_seq=seq))

    def _tell_declared_dead(self: Peer, env: Envelope) -> None:
        r = self.remotes.get(env.sender)
        if r is None or isinstance(env.body, ProtocolError):
            return
        tmp = Remote(peer=env.sender, address=r.address, incarnation=env.sender_incarnation)
        info = ErrorInfo(ErrorCode.DECLARED_DEAD, "this incarnation was declared dead", "LIV-005")
        self._send_unsequenced(tmp, ProtocolError(info))

    # ------------------------------------------------------------ time
    def _on_tick(self: Peer) -> None:
        now = self.now_ms
        cfg = self.config
        for r in list(self.remotes.values()):
            if r.state == "dead":
                continue
            if now - r.last_heard_ms > cfg.dead_after_ms:
                self._declare_dead(r, "silence", f"silent for {now - r.last_heard_ms} ms")  # LIV-003
                self._broadcast_death(r)
                continue
            if r.state == "connecting":
                if r.hello_sent_ms >= 0 and now - r.hello_sent_ms >= cfg.retransmit_ms:
                    self._send_hello(r)
                continue
            if r.unacked and now - r.last_progress_ms >= cfg.retransmit_ms:
                r.last_progress_ms = now  # SES-003: resend everything not acked, in order
                for seq, env in list(r.unacked.items()):
                    self._emit_frame(r, self._envelope(r, seq, env.body))
            if now - r.last_sent_ms >= cfg.heartbeat_interval_ms or (
                r.ack_owed_since_ms >= 0 and now - r.ack_owed_since_ms >= cfg.ack_delay_ms
            ):
                self._send_unsequenced(r, Heartbeat())  # LIV-001, SES-004

    # ------------------------------------------------------------ death
    def _declare_dead(self: Peer, r: Remote, event: str, reason: str) -> None:
        """Fence ``r`` and run every death effect (LIV-003)."""
        if r.state == "dead":
            return
        self._transition_peer(r, event)
        if r.incarnation:
            self.fenced.add((r.peer, r.incarnation))
        r.unacked.clear()
        r.buffered.clear()
        r.queued.clear()
        self._out(PeerDeclaredDead(self._sid, r.peer, r.incarnation, reason))
        self._on_peer_dead(r)

    def _broadcast_death(self: Peer, dead: Remote) -> None:
        """LIV-004: tell everyone else we are in session with."""
        if not dead.incarnation:
            return
        for other in list(self.remotes.values()):
            if other is not dead and other.state == "alive":
                self._send(other.peer, PeerDeadNotice(dead.peer, dead.incarnation, "silence"))

    def _on_PeerDeadNotice(self: Peer, r: Remote, msg: PeerDeadNotice) -> None:
        if msg.peer == self.peer_id and msg.incarnation == self.incarnation:
            self._fail_stop(f"{r.peer} declared this incarnation dead")  # LIV-005
            return
        self._fence(msg.peer, msg.incarnation, "notice", f"notice from {r.peer}: {msg.reason}")

    def _fence(self: Peer, peer: PeerId, incarnation: int, event: str, reason: str) -> None:
        """Fence a peer incarnation we may or may not be in session with."""
        target = self.remotes.get(peer)
        if target is not None and target.incarnation in (incarnation, 0) and target.state != "dead":
            target.incarnation = target.incarnation or incarnation
            self._declare_dead(target, event, reason)
        self.fenced.add((peer, incarnation))

    def _on_Goodbye(self: Peer, r: Remote, msg: Goodbye) -> None:
        self._declare_dead(r, "goodbye", msg.reason or "goodbye")  # LIV-006

    def _on_ProtocolError(self: Peer, r: Remote, msg: ProtocolError) -> None:
        self._on_protocol_error(r, msg)

    def _fail_stop(self: Peer, reason: str) -> None:
        if not self.stopped:
            self.stopped = True
            self._out(FailStop(self._sid, reason))

    def _transition_peer(self: Peer, r: Remote, event: str) -> None:
        nxt = tables.next_state(tables.PEER, r.state, event)
        if nxt is None:
            self._invalid("peer", f"peer:{r.peer}", r.state, event)
        self._story(f"peer:{r.peer}", event, f"{r.state}->{nxt}")
        r.state = nxt  # type: ignore[assignment]
