"""The suite's scripted wire peer: a RefRPC peer on ZeroMQ that a case drives by hand.

A :class:`WirePeer` binds a ROUTER on ``tcp://127.0.0.1`` and connects one DEALER
per remote peer (transport-zeromq.md, ZMQ-001..ZMQ-004). It keeps its half of
each session honestly by default (handshake, sequence numbers, in-order delivery,
acks, heartbeats), and lets a case break any of it on purpose: send any envelope
with any sequence number, version or incarnation, raw or malformed frames,
duplicates, withheld or delayed messages, hold its acks, go silent, or die.
Everything that crosses its sockets is recorded in the case's wire trace.

Threads: one I/O thread per peer owns both sockets and all session state; the
case thread asks it to do things (:meth:`WirePeer._call`) and reads what arrived
under the peer's lock. Nothing is decided by the I/O thread apart from the
mechanical duties a case asks for (acks, heartbeats, answering ``Hello``,
serving registered fetches, retransmitting if enabled).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import lz4.frame
import zmq

from refrpc.codec import DecodeError, decode, encode
from refrpc.core.messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    BorrowerRegistered,
    Envelope,
    ErrorCode,
    ErrorInfo,
    FetchChunk,
    FetchRequest,
    GetObjectStatus,
    Heartbeat,
    Hello,
    ObjectStatus,
    ProtocolError,
    RegisterBorrower,
    ReleaseBorrows,
    Welcome,
)

from ._build import IdAllocator
from ._session import InboundSession, OutboundSession
from ._trace import TraceRecord, summarize_body

#: Messages that travel outside the session (SES-007); ProtocolError depends.
UNSEQUENCED = (Hello, Welcome, Heartbeat, FetchRequest, FetchChunk)
#: What the suite peers announce unless a case says otherwise.
DEFAULT_FEATURES = ("core", "borrowing", "recovery", "actors")
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
DEFAULT_HEARTBEAT_MS = 250
#: Resend interval of an unanswered Hello and of unacked messages (SES-003, HS-008).
RETRANSMIT_S = 0.2
#: Ack delay (SES-004).
ACK_DELAY_S = 0.05

Predicate = Callable[[Any], bool]


class WireError(Exception):
    """The wire peer could not do what the case asked (a suite or setup problem)."""


class ExpectTimeout(Exception):
    """No matching message arrived in time; ``str()`` says what was awaited and what came."""


class Clock:
    """Seconds since the case started; shared by every trace record of one case."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start


@dataclass
class Arrival:
    """A message delivered to the case (in order, duplicates removed)."""

    #: Position among everything this peer delivered.
    index: int
    #: Seconds since the case started.
    t: float
    #: The link (remote PeerId) it came from.
    remote: str
    envelope: Envelope
    #: Whether a case's expect() has taken it.
    consumed: bool = False

    @property
    def body(self) -> Any:
        return self.envelope.body

    @property
    def seq(self) -> int:
        return self.envelope.seq


@dataclass(frozen=True)
class _Serving:
    """How a wire peer serves one object's stored form (:meth:`WirePeer.serve`)."""

    form: bytes
    chunk_bytes: int | None = None
    lose: Callable[[FetchRequest, int, int], bool] | None = None
    compress: Callable[[FetchRequest, int], bool] | None = None
    #: Compress as ``compress`` says even where lz4 is not in use (breaking HS-021 on purpose).
    ignore_negotiation: bool = False
    refuse: Callable[[FetchRequest], bool | ErrorCode] | None = None
    #: Answer a request with acceptLz4 = true as a holder that does not use lz4 does (FET-067).
    refuse_lz4: bool = False


@dataclass(frozen=True)
class ServedChunk:
    """One chunk a wire peer served (or withheld) for a FetchRequest."""

    object_id: str
    request_id: int
    #: The uncompressed bytes [offset, end) of the stored form it carried.
    offset: int
    end: int
    #: False: withheld on purpose (lost on the way).
    sent: bool
    lz4: bool
    #: How many FetchRequests had arrived when it was served (the request's position + 1).
    requests_before: int
    #: Seconds since the case started.
    t: float


@dataclass
class _Sent:
    frames: list[Any]
    envelope: Envelope | None


@dataclass
class Link:
    """One remote peer incarnation, seen from a wire peer: a DEALER and two sessions."""

    peer: "WirePeer"
    remote: str
    remote_address: str
    #: The remote's incarnation, 0 until its Welcome or Hello tells it.
    remote_incarnation: int = 0
    #: "new", "hello-sent", "live", "refused" or "closed".
    state: str = "new"
    #: The Welcome that opened the session (ours to the remote when it initiated).
    welcome: Envelope | None = None
    #: The Welcome we answered the remote's Hello with, if it initiated.
    our_welcome: Envelope | None = None
    #: The ProtocolError that refused our Hello, if one did.
    refusal: Envelope | None = None
    #: The features in use on the session.
    features: tuple[str, ...] = ()
    out: OutboundSession[_Sent] = field(default_factory=OutboundSession)
    inbound: InboundSession[Envelope] = field(default_factory=InboundSession)
    #: Resend unacked messages every RETRANSMIT_S (off unless a case wants it).
    retransmit: bool = False
    #: Resend an unanswered Hello every RETRANSMIT_S (HS-008).
    resend_hello: bool = True
    #: Carry the frozen ``held_ack`` instead of what we delivered (hold_acks()).
    acks_held: bool = False
    held_ack: int = 0
    #: Every ``ack`` the remote sent on this link, in arrival order.
    acks_seen: list[int] = field(default_factory=list)
    #: Every sequenced arrival (seq, disposition), duplicates included.
    seq_arrivals: list[tuple[int, str]] = field(default_factory=list)
    #: How many decodable messages arrived from the remote's incarnation.
    arrivals: int = 0
    #: We sent Goodbye on this link (the remote then fences us, LIV-006).
    said_goodbye: bool = False
    _dealer: Any = None
    _hello: Envelope | None = None
    _hello_due: float = 0.0
    _last_sent: float = 0.0
    _ack_due: float | None = None
    _last_progress: float = 0.0
    _acked_at_progress: int = 0

    # ------------------------------------------------------------ case API
    @property
    def live(self) -> bool:
        return self.state == "live"

    @property
    def delivered(self) -> int:
        """The highest sequence number delivered in order from the remote."""
        return self.inbound.delivered

    @property
    def acked(self) -> int:
        """The highest of our sequence numbers the remote has acknowledged."""
        return self.out.acked

    def hello(self, *, frames_hook: Callable[[list[Any]], list[Any]] | None = None, **fields: Any) -> Envelope:
        """Send ``Hello`` (sequence number 0), resent every 200 ms until answered.

        Keyword arguments override Hello fields (``protocol_major``, ``features``,
        ...) or envelope fields (``receiver_incarnation``, ``sender_incarnation``).
        ``frames_hook`` edits the encoded frames (hand-made bad input, see
        ``_craft``); such a Hello is sent once, never resent.
        """
        if frames_hook is not None:
            def bad() -> Envelope:
                env = self._envelope(self._hello_body(dict(fields)), 0, None, {})
                self._transmit(frames_hook(list(encode(env))), None, label="Hello, edited", seq=0)
                return env

            return self.peer._call(bad)
        return self.peer._call(lambda: self._send_hello(fields))

    def handshake(self, timeout: float = 10.0, *, give_up: Callable[[], str | None] | None = None, **fields: Any) -> Envelope:
        """Send Hello and wait for the Welcome; the session is then live.

        Raises:
            WireError: The remote refused the Hello.
            ExpectTimeout: No answer in time (or ``give_up`` gave a reason).
        """
        self.hello(**fields)
        self.peer.wait_until(
            lambda: self.state in ("live", "refused"), timeout, what=f"a Welcome from {self.remote} answering our Hello",
            give_up=give_up,
        )
        if self.state == "refused":
            assert self.refusal is not None
            raise WireError(f"{self.remote} refused our Hello: {summarize_body(self.refusal.body)}")
        assert self.welcome is not None
        return self.welcome

    def send(
        self,
        body: Any,
        *,
        seq: int | None = None,
        ack: int | None = None,
        hold: bool = False,
        delay: float = 0.0,
        oob_threshold: int | None = None,
        frames_hook: Callable[[list[Any]], list[Any]] | None = None,
        **envelope_fields: Any,
    ) -> int:
        """Send one message to the remote.

        Args:
            body: The message.
            seq: Its sequence number; by default the next one for a sequenced
                message and 0 for one that travels outside the session. An
                explicit number is sent as given (and recorded as unacked if
                it is above 0); numbers up to it then count as allocated.
            ack: The ack to carry; by default what we delivered (or the held ack).
            hold: Allocate and record the message but do not transmit it (a
                message "lost" on the way; retransmission, if on, sends it).
            delay: Transmit after this many seconds (a delayed message).
            oob_threshold: Payloads at least this large travel as frames.
            frames_hook: Rewrites the encoded frames before they are sent (to
                make a message malformed); the message is then not kept for
                retransmission.
            envelope_fields: ``sender``, ``sender_incarnation``, ``receiver``,
                ``receiver_incarnation`` overrides.

        Returns:
            The sequence number used.
        """
        return self.peer._call(
            lambda: self._send(body, seq, ack, hold, delay, oob_threshold, frames_hook, envelope_fields)
        )

    def send_frames(self, frames: Sequence[Any], *, label: str = "raw frames", seq: int = 0) -> None:
        """Send frames exactly as given (garbage, truncated or hand-made messages)."""
        self.peer._call(lambda: self._transmit(list(frames), None, label=label, seq=seq))

    def resend(self, seq: int, *, ack: int | None = None) -> None:
        """Send the message recorded under ``seq`` again, same sequence number and body."""
        self.peer._call(lambda: self._resend(seq, ack))

    def next_seq(self) -> int:
        """Allocate a sequence number without sending anything (to build gaps)."""
        return self.peer._call(self.out.allocate)

    def reset_session(self) -> None:
        """Forget both sessions with the remote (as a peer that never had one): the
        next Hello starts afresh and sequenced messages are numbered from 1 again."""

        def do() -> None:
            self.out = OutboundSession()
            self.inbound = InboundSession()
            self.state = "new"
            self.welcome = None
            self.refusal = None
            self._hello = None

        self.peer._call(do)

    def hold_acks(self) -> None:
        """From now on carry the current ack unchanged and send no ack heartbeats."""

        def do() -> None:
            self.acks_held = True
            self.held_ack = self.inbound.delivered

        self.peer._call(do)

    def release_acks(self) -> None:
        """Carry real acks again, and send one at once."""

        def do() -> None:
            self.acks_held = False
            self._send_heartbeat()

        self.peer._call(do)

    def set_retransmit(self, on: bool) -> None:
        self.peer._call(lambda: setattr(self, "retransmit", on))

    # ------------------------------------------------------------ I/O thread
    def _envelope(self, body: Any, seq: int, ack: int | None, overrides: dict[str, Any]) -> Envelope:
        env = Envelope(
            sender=self.peer.peer_id,
            sender_incarnation=self.peer.incarnation,
            receiver=self.remote,
            receiver_incarnation=self.remote_incarnation,
            seq=seq,
            ack=self._ack_value() if ack is None else ack,
            body=body,
        )
        return replace(env, **overrides) if overrides else env

    def _ack_value(self) -> int:
        return self.held_ack if self.acks_held else self.inbound.delivered

    def _hello_body(self, fields: dict[str, Any]) -> Hello:
        hello = Hello(
            protocol_major=fields.pop("protocol_major", PROTOCOL_MAJOR),
            protocol_minor=fields.pop("protocol_minor", PROTOCOL_MINOR),
            address=fields.pop("address", self.peer.address),
            features=tuple(fields.pop("features", self.peer.features)),
            max_frame_bytes=fields.pop("max_frame_bytes", self.peer.max_frame_bytes),
            heartbeat_interval_ms=fields.pop("heartbeat_interval_ms", self.peer.heartbeat_ms),
        )
        if fields:
            raise WireError(f"unknown Hello fields: {sorted(fields)}")
        return hello

    def _send_hello(self, fields: dict[str, Any]) -> Envelope:
        env_fields = {k: fields.pop(k) for k in list(fields) if k in _ENVELOPE_FIELDS}
        hello = self._hello_body(fields)
        env = self._envelope(hello, 0, None, env_fields)
        self._hello = env
        if self.state in ("new", "refused", "closed"):
            self.state = "hello-sent"
        self._transmit(encode(env), env)
        self._hello_due = time.monotonic() + RETRANSMIT_S
        return env

    def _send(
        self,
        body: Any,
        seq: int | None,
        ack: int | None,
        hold: bool,
        delay: float,
        oob_threshold: int | None,
        frames_hook: Callable[[list[Any]], list[Any]] | None,
        overrides: dict[str, Any],
    ) -> int:
        if seq is None:
            sequenced = not isinstance(body, UNSEQUENCED) and not (
                isinstance(body, ProtocolError) and not self.live
            )
            seq = self.out.allocate() if sequenced else 0
        elif seq >= self.out.next_seq:
            self.out.next_seq = seq + 1  # an explicit number past the end allocates up to it
        env = self._envelope(body, seq, ack, overrides)
        if type(body).__name__ == "Goodbye":
            self.said_goodbye = True
        frames = encode(env) if oob_threshold is None else encode(env, oob_threshold=oob_threshold)
        if frames_hook is not None:
            frames = frames_hook(list(frames))
        elif seq > 0:
            self.out.record(seq, _Sent(frames, env))
        if hold:
            self.peer._record_out(self, env, frames, "withheld (not sent)")
        elif delay > 0:
            self.peer._timers.append((time.monotonic() + delay, lambda: self._transmit(frames, env, note="delayed")))
        else:
            self._transmit(frames, env)
        return seq

    def _resend(self, seq: int, ack: int | None) -> None:
        sent = self.out.unacked.get(seq) or self.peer._sent_by_seq.get((self.remote, seq))
        if sent is None or sent.envelope is None:
            raise WireError(f"nothing recorded under seq {seq} to {self.remote}")
        env = replace(sent.envelope, ack=self._ack_value() if ack is None else ack)
        self._transmit(encode(env), env, note="resent")

    def _transmit(self, frames: list[Any], env: Envelope | None, *, note: str = "", label: str = "", seq: int = 0) -> None:
        peer = self.peer
        if peer._silent or self._dealer is None:
            peer._record_out(self, env, frames, "not sent: " + ("silent" if peer._silent else "closed"), label=label, seq=seq)
            return
        try:
            # Never block the peer's loop: a connection that cannot be made (a mechanism
            # the IUT does not speak, say) leaves the DEALER with nowhere to queue.
            self._dealer.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
        except zmq.Again:
            peer._record_out(self, env, frames, "not sent: no connection to send on", label=label, seq=seq)
            return
        except zmq.ZMQError as exc:
            peer._record_out(self, env, frames, f"not sent: {exc}", label=label, seq=seq)
            return
        now = time.monotonic()
        self._last_sent = now
        if env is not None:
            if env.seq > 0:
                peer._sent_by_seq[(self.remote, env.seq)] = _Sent(frames, env)
            if env.ack >= self.inbound.delivered:
                self._ack_due = None
        peer._record_out(self, env, frames, note or "sent", label=label, seq=seq)

    def _send_heartbeat(self) -> None:
        env = self._envelope(Heartbeat(), 0, None, {})
        self._transmit(encode(env), env)

    def _tick(self, now: float) -> None:
        peer = self.peer
        if peer._silent:
            return
        if self.state == "hello-sent" and self.resend_hello and self._hello is not None and now >= self._hello_due:
            env = replace(self._hello, ack=self._ack_value())
            self._transmit(encode(env), env, note="resent")
            self._hello_due = now + RETRANSMIT_S
        if self.state != "live":
            return
        if peer.heartbeats and now - self._last_sent >= peer.heartbeat_ms / 2000.0:
            self._send_heartbeat()
        elif peer.acks and not self.acks_held and self._ack_due is not None and now >= self._ack_due:
            self._send_heartbeat()
        if self.retransmit and self.out.unacked:
            if self.out.acked != self._acked_at_progress:
                self._acked_at_progress = self.out.acked
                self._last_progress = now
            elif now - self._last_progress >= RETRANSMIT_S:
                for _seq, sent in self.out.pending():
                    if sent.envelope is not None:
                        env = replace(sent.envelope, ack=self._ack_value())
                        self._transmit(encode(env), env, note="retransmitted")
                self._last_progress = now


_ENVELOPE_FIELDS = ("sender", "sender_incarnation", "receiver", "receiver_incarnation", "seq", "ack")


class WirePeer:
    """A suite-controlled RefRPC peer.

    Args:
        peer_id: Its PeerId.
        incarnation: Its incarnation (nonzero).
        trace: The case's trace, appended to by this peer.
        clock: The case's clock.
        features: Features offered in Hello and Welcome.
        heartbeat_ms: The interval announced in Hello/Welcome; heartbeats are
            sent at half of it so that a busy suite is never mistaken for dead.
        max_frame_bytes: Announced, and enforced on what arrives.
    """

    def __init__(
        self,
        peer_id: str,
        incarnation: int,
        *,
        trace: list[TraceRecord],
        clock: Clock | None = None,
        features: Iterable[str] = DEFAULT_FEATURES,
        heartbeat_ms: int = DEFAULT_HEARTBEAT_MS,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        cluster_key: Any = None,
        key_name: str = "",
        client_key: tuple[bytes, bytes] | None = None,
        router_key: tuple[bytes, bytes] | None = None,
        server_key: bytes | None = None,
    ) -> None:
        #: CURVE (SEC-016): the cluster key, and the PeerId whose member key the DEALERs
        #: present (normally our own; another one makes a peer that lies, SEC-011).
        self.cluster_key = cluster_key
        self.key_name = key_name or peer_id
        #: A cluster with a head (SEC-022, SEC-040): the key pair the DEALERs present
        #: instead of the derived member key, with a join proof for it (None: derived);
        #: the pair the ROUTER serves with instead of SEC-016's server key; and the
        #: server key the DEALERs expect instead of SEC-016's (z85).
        self.client_key = client_key
        self.router_key = router_key
        self.server_key = server_key
        self.peer_id = peer_id
        self.incarnation = incarnation
        self.features = tuple(features)
        self.heartbeat_ms = heartbeat_ms
        self.max_frame_bytes = max_frame_bytes
        self.trace = trace
        self.clock = clock or Clock()
        #: Allocates this peer's object, task and forward ids (ID-003).
        self.ids = IdAllocator(peer_id, incarnation)
        #: Send heartbeats on live sessions (LIV-001).
        self.heartbeats = True
        #: Send ack heartbeats within the ack delay (SES-004).
        self.acks = True
        #: Answer an incoming Hello with Welcome.
        self.accept_hello = True
        #: Links by remote PeerId.
        self.links: dict[str, Link] = {}
        #: Delivered messages, in delivery order.
        self.inbox: list[Arrival] = []
        #: Frames that did not decode: (time, error text, frame sizes).
        self.malformed: list[tuple[float, str, list[int]]] = []
        #: Stored forms this peer serves to FetchRequests, by object id.
        self.stored: dict[str, bytes] = {}
        #: How each of them is served (chunk size, losses, compression).
        self._serving: dict[str, _Serving] = {}
        #: Every chunk served or withheld, in order.
        self.served: list[ServedChunk] = []
        #: The requests refused as :meth:`serve`'s ``refuse_lz4`` says: (seconds since
        #: the case started, the request), in order.
        self.lz4_refusals: list[tuple[float, FetchRequest]] = []
        #: FetchRequests this peer received, in order (also in the inbox).
        self.fetch_requests: list[FetchRequest] = []
        #: As an owner, answer a RegisterBorrower for an object this peer allocated
        #: at once, without error, when this says so (an honest owner must answer,
        #: BOR-003); a case that answers some registrations itself narrows it.
        self.auto_grant: Callable[[RegisterBorrower], bool] = lambda reg: True
        #: Grants recorded as owner: (object id, forward id) -> borrower, until released.
        self.grants: dict[tuple[str, str], str] = {}
        #: As an owner, the ObjectStatus to answer a GetObjectStatus with at once, or None
        #: to leave it to the case (the default: cases script their answers).
        self.answer_status: Callable[[GetObjectStatus], ObjectStatus | None] = lambda req: None
        #: Ever told to go silent (the IUT has then probably declared it dead).
        self.went_silent = False
        self._cv = threading.Condition()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._timers: list[tuple[float, Callable[[], None]]] = []
        self._sent_by_seq: dict[tuple[str, int], _Sent] = {}
        self._silent = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        ctx = zmq.Context.instance()
        self._router = ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.RCVHWM, 100_000)
        if cluster_key is not None:  # the cluster's server key; no ZAP handler: every member may answer
            self._router.setsockopt(zmq.CURVE_SERVER, 1)
            self._router.setsockopt(zmq.CURVE_SECRETKEY,
                                    router_key[1] if router_key is not None else cluster_key.server_secret)
        self._router.bind("tcp://127.0.0.1:*")
        self.address: str = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._thread = threading.Thread(target=self._loop, name=f"wire-{peer_id}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ case API
    def connect(self, remote: str, address: str, incarnation: int = 0) -> Link:
        """Open a DEALER to a remote peer (no message is sent yet)."""
        return self._call(lambda: self._link(remote, address, incarnation))

    def link(self, remote: str) -> Link:
        """The link to ``remote`` (which must exist)."""
        with self._cv:
            return self.links[remote]

    def expect(
        self,
        types: type | tuple[type, ...],
        where: Predicate | None = None,
        *,
        remote: str | None = None,
        timeout: float = 10.0,
        what: str = "",
        consume: bool = True,
        give_up: Callable[[], str | None] | None = None,
    ) -> Arrival:
        """Wait for the first delivered, not yet consumed message of a type.

        Messages that do not match (interleaved Heartbeats, acks, other replies)
        are left where they are, so the order in which a case expects things
        need not be the order in which the remote sends them (CNF-014).

        ``give_up`` is asked at least twice a second; a reason from it ends the
        wait at once (the process under test has died, say).

        Raises:
            ExpectTimeout: Nothing matched within ``timeout`` seconds, or ``give_up`` gave a reason.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for arrival in self.inbox:
                    if arrival.consumed or not isinstance(arrival.body, types):
                        continue
                    if remote is not None and arrival.remote != remote:
                        continue
                    if where is not None and not where(arrival.body):
                        continue
                    if consume:
                        arrival.consumed = True
                    return arrival
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(self._describe_wait(types, what, timeout))
                reason = give_up() if give_up is not None else None
                if reason:
                    raise ExpectTimeout(f"no {what or 'message'} arrived: {reason}")
                self._cv.wait(min(left, 0.5))

    def received(self, types: type | tuple[type, ...], where: Predicate | None = None, *, remote: str | None = None) -> list[Arrival]:
        """Every delivered message of a type so far, consumed or not."""
        with self._cv:
            return [
                a
                for a in self.inbox
                if isinstance(a.body, types)
                and (remote is None or a.remote == remote)
                and (where is None or where(a.body))
            ]

    def wait_until(
        self, condition: Callable[[], bool], timeout: float, what: str = "a condition",
        give_up: Callable[[], str | None] | None = None,
    ) -> None:
        """Wait, under this peer's lock, until ``condition()`` holds.

        Raises:
            ExpectTimeout: It did not hold within ``timeout`` seconds, or ``give_up`` gave a reason.
        """
        deadline = time.monotonic() + timeout
        with self._cv:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExpectTimeout(f"{what} did not happen within {timeout:g} s")
                reason = give_up() if give_up is not None else None
                if reason:
                    raise ExpectTimeout(f"{what} did not happen: {reason}")
                self._cv.wait(min(left, 0.5))

    def serve(
        self,
        object_id: str,
        stored_form: bytes,
        *,
        chunk_bytes: int | None = None,
        lose: Callable[[FetchRequest, int, int], bool] | None = None,
        compress: Callable[[FetchRequest, int], bool] | None = None,
        ignore_negotiation: bool = False,
        refuse: Callable[[FetchRequest], bool | ErrorCode] | None = None,
        refuse_lz4: bool = False,
    ) -> None:
        """Answer FetchRequests for ``object_id`` with chunks of ``stored_form`` (FET-001).

        Every chunk served is recorded in :attr:`served`.

        Args:
            object_id: The object.
            stored_form: Its stored form (OBJ-010).
            chunk_bytes: The largest chunk to send, if smaller than the request's
                ``chunkBytes`` (a holder may send smaller chunks, FET-001, FET-007).
            lose: Called with the request and a chunk's ``[offset, end)`` on the
                I/O thread; True withholds that chunk, as if it were lost on the
                way (the fetcher must resume, FET-002, FET-006).
            compress: Called with the request and a chunk's offset; True sends
                that chunk compressed as one LZ4 frame (FET-008). Only where
                ``lz4`` is in use on the session and the request has
                ``acceptLz4`` (FET-003, HS-021); otherwise every chunk is plain.
            ignore_negotiation: Compress as ``compress`` says whatever the session
                and the request say: a case that breaks HS-021 on purpose.
            refuse: Called with each request on the I/O thread; True answers it with
                one error chunk ``RESOURCE_EXHAUSTED`` (a busy holder, FET-009), an
                :class:`ErrorCode` with one error chunk of that code (``OBJECT_FREED``:
                a holder without a copy, FET-004).
            refuse_lz4: Answer every request with ``acceptLz4`` = true with a
                sequenced ``ProtocolError(FEATURE_NOT_NEGOTIATED)`` with relatedSeq 0
                and no chunk, as a holder that does not use lz4 on the session does
                (HS-021, FET-004, GEN-012); the fetcher must resume without the flag
                (FET-067). Each refused request is recorded in :attr:`lz4_refusals`.
        """
        with self._cv:
            self.stored[object_id] = stored_form
            self._serving[object_id] = _Serving(stored_form, chunk_bytes, lose, compress, ignore_negotiation, refuse,
                                                refuse_lz4)

    def go_silent(self) -> None:
        """Send nothing more (no heartbeats, acks, answers); keep receiving and recording."""
        def do() -> None:
            self._silent = True
            self.went_silent = True

        self._call(do)

    def resume(self) -> None:
        """Undo :meth:`go_silent`."""
        self._call(lambda: setattr(self, "_silent", False))

    def close(self) -> None:
        """Die: close every socket at once (linger 0) and stop the I/O thread."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------ internals
    def _describe_wait(self, types: type | tuple[type, ...], what: str, timeout: float) -> str:
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        pending = [
            f"{a.body.__class__.__name__}(seq {a.seq})" for a in self.inbox if not a.consumed and not isinstance(a.body, Heartbeat)
        ]
        beats = sum(1 for a in self.inbox if isinstance(a.body, Heartbeat))
        return (
            f"no {what or names} arrived at {self.peer_id} within {timeout:g} s; "
            f"unconsumed: {', '.join(pending[-12:]) or 'nothing'}; heartbeats so far: {beats}"
        )

    def _call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        if self._closed:
            raise WireError(f"wire peer {self.peer_id} is closed")
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[Any] = Future()
        with self._cv:
            self._commands.append((fn, fut))
        os.write(self._wake_w, b"x")
        return fut.result(timeout=timeout)

    def new_dealer(self, address: str) -> Any:
        """A DEALER connected to ``address`` as this peer's links connect theirs: routing id
        ``{peer}/{incarnation:x}`` (ZMQ-013), linger 0, and this peer's member key when
        the run authenticates (SEC-016). The caller closes it."""
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.SNDHWM, 100_000)
        dealer.setsockopt(zmq.RECONNECT_IVL, 100)
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        dealer.setsockopt_string(zmq.ROUTING_ID, f"{self.peer_id}/{self.incarnation:x}")
        if self.cluster_key is not None:  # SEC-016: a member's client key; SEC-022: or one's own
            public, secret = self.client_key or self.cluster_key.member_keys(self.key_name)
            dealer.setsockopt(zmq.CURVE_SERVERKEY, self.server_key or self.cluster_key.server_public)
            dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
            dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
            if self.client_key is not None:
                proof = self.cluster_key.join_proof(self.peer_id, public)
                dealer.setsockopt(zmq.METADATA, f"X-RefRPC-Join:{proof}".encode())
        dealer.connect(address)
        return dealer

    def _link(self, remote: str, address: str, incarnation: int) -> Link:
        link = self.links.get(remote)
        if link is None:
            link = Link(peer=self, remote=remote, remote_address=address, remote_incarnation=incarnation)
            link._dealer = self.new_dealer(address)
            self.links[remote] = link
        elif incarnation:
            link.remote_incarnation = incarnation
        return link

    def _record_out(self, link: Link, env: Envelope | None, frames: list[Any], disposition: str, *, label: str = "", seq: int = 0) -> None:
        sizes = [len(f) if isinstance(f, (bytes, bytearray)) else memoryview(f).nbytes for f in frames]
        if env is not None:
            rec = TraceRecord(
                t=self.clock.now(), direction="out", local=self.peer_id, remote=link.remote,
                type=type(env.body).__name__, seq=env.seq, ack=env.ack, summary=summarize_body(env.body),
                disposition=disposition, frame_sizes=sizes, envelope=env,
                frame0=bytes(frames[0]) if frames else b"", local_incarnation=self.incarnation,
            )
        else:
            rec = TraceRecord(
                t=self.clock.now(), direction="out", local=self.peer_id, remote=link.remote,
                type="(raw)", seq=seq, summary=label, disposition=disposition, frame_sizes=sizes,
                frame0=bytes(frames[0]) if frames else b"", local_incarnation=self.incarnation,
            )
        self.trace.append(rec)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._closed:
                events = dict(poller.poll(20))
                if self._wake_r in events:
                    os.read(self._wake_r, 4096)
                with self._cv:
                    if self._closed:
                        break
                    if self._router in events:
                        for _ in range(256):
                            try:
                                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
                            except zmq.Again:
                                break
                            self._on_frames(frames[1:])
                    while self._commands:
                        fn, fut = self._commands.popleft()
                        try:
                            fut.set_result(fn())
                        except BaseException as exc:  # handed to the case thread
                            fut.set_exception(exc)
                    now = time.monotonic()
                    if self._timers:
                        due = [t for t in self._timers if t[0] <= now]
                        self._timers = [t for t in self._timers if t[0] > now]
                        for _, fn in sorted(due, key=lambda t: t[0]):
                            fn()
                    for link in list(self.links.values()):
                        link._tick(now)
                    self._cv.notify_all()
        finally:
            with self._cv:
                for link in self.links.values():
                    if link._dealer is not None:
                        link._dealer.close(linger=0)
                        link._dealer = None
                    link.state = "closed"
                self._router.close(linger=0)
                while self._commands:
                    _, fut = self._commands.popleft()
                    fut.set_exception(WireError(f"wire peer {self.peer_id} closed"))
                self._cv.notify_all()

    def _on_frames(self, frames: list[bytes]) -> None:
        now = self.clock.now()
        sizes = [len(f) for f in frames]
        try:
            env = decode(frames, max_frame_bytes=self.max_frame_bytes)
        except DecodeError as exc:
            self.malformed.append((now, f"{type(exc).__name__}: {exc}", sizes))
            self.trace.append(TraceRecord(
                t=now, direction="in", local=self.peer_id, remote=exc.sender, type="?", seq=exc.seq,
                ack=exc.ack, summary=str(exc), disposition=f"malformed ({type(exc).__name__})", frame_sizes=sizes,
                frame0=bytes(frames[0]) if frames else b"", local_incarnation=self.incarnation,
            ))
            return
        rec = TraceRecord(
            t=now, direction="in", local=self.peer_id, remote=env.sender, type=type(env.body).__name__,
            seq=env.seq, ack=env.ack, summary=summarize_body(env.body), frame_sizes=sizes, envelope=env,
            frame0=bytes(frames[0]), local_incarnation=self.incarnation,
        )
        self.trace.append(rec)
        if env.receiver != self.peer_id or env.receiver_incarnation not in (self.incarnation, 0):
            rec.disposition = "addressed to another peer or incarnation"
            self._deliver(env, env.sender)
            return
        body = env.body
        link = self.links.get(env.sender)
        if isinstance(body, Hello):
            if link is None:
                link = self._link(env.sender, body.address, env.sender_incarnation)
            link.remote_incarnation = env.sender_incarnation
            if self.accept_hello:
                self._answer_hello(link, env)
            rec.disposition = "delivered"
            self._deliver(env, env.sender)
            return
        if link is None:
            rec.disposition = "no link"
            self._deliver(env, env.sender)
            return
        if link.remote_incarnation and env.sender_incarnation != link.remote_incarnation:
            rec.disposition = "from another incarnation"
            self._deliver(env, env.sender)
            return
        link.acks_seen.append(env.ack)
        link.arrivals += 1
        if link.state == "live":
            link.out.on_ack(env.ack)
        if isinstance(body, Welcome) and link.state == "hello-sent" and env.seq == 0:
            link.remote_incarnation = env.sender_incarnation
            link.welcome = env
            link.features = tuple(f for f in body.features if f in self.features)
            link.state = "live"
            link._last_progress = time.monotonic()
        elif isinstance(body, ProtocolError) and env.seq == 0 and link.state == "hello-sent":
            link.refusal = env
            link.state = "refused"
        if env.seq == 0:
            rec.disposition = "delivered"
            self._deliver(env, env.sender)
            if isinstance(body, FetchRequest):
                self.fetch_requests.append(body)
                self._serve_fetch(link, body)
            return
        disposition, ready = link.inbound.receive(env.seq, env)
        link.seq_arrivals.append((env.seq, disposition))
        rec.disposition = disposition
        for _seq, delivered in ready:
            self._deliver(delivered, env.sender)
            self._as_owner(link, delivered.body)
        if ready and link._ack_due is None:
            link._ack_due = time.monotonic() + ACK_DELAY_S

    def _as_owner(self, link: Link, body: Any) -> None:
        """The bookkeeping of an owner that the suite does not script: grants and releases."""
        if isinstance(body, RegisterBorrower) and body.object_id.startswith(self.ids.prefix):
            if self.auto_grant(body):
                self.grants[(body.object_id, body.forward_id)] = body.borrower
                answer = link._envelope(BorrowerRegistered(body.object_id, body.forward_id), link.out.allocate(), None, {})
                frames = encode(answer)
                link.out.record(answer.seq, _Sent(frames, answer))
                link._transmit(frames, answer, note="sent (granted automatically)")
        elif isinstance(body, ReleaseBorrows):
            for rel in body.releases:
                for fid in rel.forward_ids:
                    self.grants.pop((rel.object_id, fid), None)
        elif isinstance(body, GetObjectStatus):
            status = self.answer_status(body)
            if status is not None:
                answer = link._envelope(status, link.out.allocate(), None, {})
                frames = encode(answer)
                link.out.record(answer.seq, _Sent(frames, answer))
                link._transmit(frames, answer, note="sent (answered automatically)")

    def _deliver(self, env: Envelope, remote: str) -> None:
        self.inbox.append(Arrival(index=len(self.inbox), t=self.clock.now(), remote=remote, envelope=env))

    def _answer_hello(self, link: Link, hello_env: Envelope) -> None:
        hello: Hello = hello_env.body
        if link.our_welcome is None or link.our_welcome.receiver_incarnation != hello_env.sender_incarnation:
            common = tuple(f for f in self.features if f in hello.features)
            welcome = Welcome(
                protocol_major=PROTOCOL_MAJOR,
                protocol_minor=min(PROTOCOL_MINOR, hello.protocol_minor),
                address=self.address,
                features=common,
                max_frame_bytes=self.max_frame_bytes,
                heartbeat_interval_ms=self.heartbeat_ms,
            )
            link.our_welcome = Envelope(
                self.peer_id, self.incarnation, link.remote, hello_env.sender_incarnation, 0, 0, welcome
            )
            if link.state != "live":
                link.features = common
                link.state = "live"
                link._last_progress = time.monotonic()
        env = replace(link.our_welcome, ack=link._ack_value())
        link._transmit(encode(env), env)

    def _serve_fetch(self, link: Link, req: FetchRequest) -> None:
        serving = self._serving.get(req.object_id)
        if serving is None:
            stored = self.stored.get(req.object_id)
            if stored is None:
                return  # the case answers (or not) by itself
            serving = _Serving(stored)
        stored = serving.form
        total = len(stored)
        if serving.refuse_lz4 and req.accept_lz4:
            # HS-021: a request that breaks a feature rule is discarded unanswered by any
            # chunk; the refusal names no request (relatedSeq 0) and, on a live session,
            # is sequenced (GEN-012).
            self.lz4_refusals.append((self.clock.now(), req))
            error = ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, "acceptLz4 needs feature lz4", "HS-021")
            link._send(ProtocolError(error, related_seq=0), None, None, False, 0.0, None, None, {})
            return
        refusal = serving.refuse(req) if serving.refuse is not None else False
        if refusal:
            code = refusal if isinstance(refusal, ErrorCode) else ErrorCode.RESOURCE_EXHAUSTED
            chunk = FetchChunk(
                req.object_id, req.request_id, req.offset, total if code is ErrorCode.RESOURCE_EXHAUSTED else 0, True,
                error=ErrorInfo(code, "refused on purpose", "FET-009" if code is ErrorCode.RESOURCE_EXHAUSTED else "FET-004"),
            )
            link._transmit(encode(link._envelope(chunk, 0, None, {})), link._envelope(chunk, 0, None, {}))
            return
        if req.offset > total:
            chunk = FetchChunk(
                req.object_id, req.request_id, req.offset, total, True,
                error=ErrorInfo(ErrorCode.MALFORMED, "offset beyond the end", "FET-014"),
            )
            link._transmit(encode(link._envelope(chunk, 0, None, {})), link._envelope(chunk, 0, None, {}))
            return
        end = total if req.length < 0 else min(total, req.offset + req.length)
        step = max(1, min(req.chunk_bytes, 1 << 20, serving.chunk_bytes or req.chunk_bytes))
        # FET-003, HS-021: compress only where lz4 is in use and the fetcher accepts it.
        may_compress = serving.compress is not None and (
            serving.ignore_negotiation or (req.accept_lz4 and "lz4" in link.features)
        )
        offset = req.offset
        while True:
            stop = min(end, offset + step)
            data = stored[offset:stop]
            packed = bool(may_compress and serving.compress is not None and serving.compress(req, offset))
            if packed:
                data = lz4.frame.compress(data)
            chunk = FetchChunk(req.object_id, req.request_id, offset, total, stop >= end, packed, data)
            env = link._envelope(chunk, 0, None, {})
            lost = serving.lose is not None and serving.lose(req, offset, stop)
            self.served.append(ServedChunk(
                req.object_id, req.request_id, offset, stop, not lost, packed, len(self.fetch_requests), self.clock.now()
            ))
            if lost:
                self._record_out(link, env, encode(env), "withheld (lost on purpose)")
            else:
                link._transmit(encode(env), env)
            if stop >= end:
                break
            offset = stop


def stored_chunks(arrivals: Sequence[Arrival], request_id: int) -> list[FetchChunk]:
    """The FetchChunks of one request, in arrival order."""
    return [a.body for a in arrivals if isinstance(a.body, FetchChunk) and a.body.request_id == request_id]
