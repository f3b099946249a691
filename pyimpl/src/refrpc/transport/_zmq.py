"""The ZeroMQ transport: one ROUTER in, one DEALER out per destination.

It moves multipart messages and nothing else: it never looks inside a frame,
never takes a sender's identity from ZeroMQ (ZMQ-004) and never retries a lost
message (the session layer does, SES-003). Sends never block (ZMQ-009): what
ZeroMQ cannot take at once waits in a bounded per-destination backlog, flushed
when the DEALER becomes writable, or is dropped and counted. Frames of 64 KiB
or more go zero-copy (ZMQ-006), and the transport pins their buffers (a
``memoryview`` export, so a ``bytearray`` cannot be resized under ZeroMQ) until
their :class:`zmq.MessageTracker` says ZeroMQ is done; smaller frames are
copied during :meth:`ZmqTransport.send`. One thread owns a transport.

Given a :class:`~refrpc.transport.ClusterKey`, every socket uses CURVE
(SEC-002): the ROUTER is a CURVE server with the cluster's server key and a
ZAP handler that records each client's public key as its User-Id; DEALERs are
CURVE clients with this peer's member key. Each message received then carries
that User-Id (:class:`Received`), which the runtime checks against the
envelope's sender (SEC-011); the transport itself still never looks inside.
Given also an :class:`~refrpc.transport.OwnKey` (a cluster with a head), the
DEALERs present that key pair instead and carry its join proof as connection
metadata, which each received message carries too (SEC-022); and the ROUTER
serves with that key pair, not the derived server key (SEC-040). A DEALER then
expects at each address the server key the runtime names with
:meth:`ZmqTransport.expect` (the key bound to the peer there), and a message for
an address whose key is not known is dropped (counted in ``unkeyed``), never
sent to whoever answers there.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, Sequence

import zmq

from ._curve import JOIN_PROPERTY

#: Frames of at least this many bytes are sent without copying (ZMQ-006).
ZERO_COPY_THRESHOLD = 64 * 1024
#: The default ``maxFrameBytes`` (ZMQ-007).
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Messages ZeroMQ may queue per DEALER / on the ROUTER (ZMQ-008: >= 10,000).
DEFAULT_HWM = 10_000
#: Messages a destination's backlog holds before new ones are dropped.
DEFAULT_BACKLOG_LIMIT = 1_000

Buffer = Any  # bytes, bytearray, memoryview, zmq.Frame: anything with the buffer protocol


def _nbytes(frame: Buffer) -> int:
    return len(frame) if type(frame) is bytes else memoryview(frame).nbytes


class Received(list):  # type: ignore[type-arg]
    """The frames of a message that arrived over an authenticated connection.

    ``user_id`` is the ZAP User-Id of the connection it came through: the
    sender's CURVE public key, z85-encoded (SEC-011); ``join`` the join proof that
    connection announced (SEC-022), or None.
    """

    __slots__ = ("user_id", "join")

    def __init__(self, frames: list[Any], user_id: str | None, join: str | None = None) -> None:
        super().__init__(frames)
        self.user_id = user_id
        self.join = join


def _authenticator(context: zmq.Context[Any]) -> Any:
    """A ZAP handler for ``context`` that admits every CURVE client that completed the
    handshake and names it by its public key (the User-Id SEC-011 checks)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location="*")  # CURVE_ALLOW_ANY: the runtime binds keys to PeerIds
    return auth


#: A backlogged message: its frames (small ones already copied to ``bytes``)
#: and the pins (``memoryview`` exports) of its big frames.
_Outgoing = tuple[list[Buffer], list[memoryview]]


class _Route:
    """The DEALER to one destination address and its backlog."""

    __slots__ = ("socket", "backlog", "server_key")

    def __init__(self, socket: zmq.Socket[Any], server_key: bytes | None = None) -> None:
        #: The DEALER connected to the destination (ZMQ-003).
        self.socket = socket
        #: The CURVE server key the DEALER expects there (None: no CURVE).
        self.server_key = server_key
        #: Messages ZeroMQ could not take yet, oldest first.
        self.backlog: deque[_Outgoing] = deque()


class ZmqTransport:
    """A peer's ZeroMQ endpoint: receives on one ROUTER, sends through DEALERs.

    Args:
        bind: The endpoint to bind the ROUTER at, e.g. ``tcp://127.0.0.1:0``
            (port 0: the system picks one) or ``ipc:///tmp/peer-a``. The
            endpoint actually bound is :attr:`address`.
        context: The ZeroMQ context to use; when omitted the transport makes
            its own and terminates it in :meth:`close`.
        max_frame_bytes: This peer's ``maxFrameBytes``: set as the ROUTER's
            ``ZMQ_MAXMSGSIZE`` (ZMQ-007). libzmq applies it to each frame and
            disconnects a sender that exceeds it; the whole-message limit is
            the codec's check (``decode(max_frame_bytes=...)``).
        identity: The DEALERs' routing id, e.g. ``"a/7"`` (ZMQ-013); only for
            debugging, receivers never use it (ZMQ-004).
        sndhwm: Each DEALER's ``ZMQ_SNDHWM`` in messages (ZMQ-008).
        rcvhwm: The ROUTER's ``ZMQ_RCVHWM`` in messages (ZMQ-008).
        backlog_limit: Messages held per destination while ZeroMQ cannot take
            them; beyond that they are dropped (ZMQ-009).
        cluster_key: A :class:`~refrpc.transport.ClusterKey`: authenticate every
            connection with CURVE (SEC-002, SEC-016); None for the NULL mechanism.
        peer_id: This peer's PeerId, whose member key the DEALERs present
            (needed with ``cluster_key``).
        own_key: An :class:`~refrpc.transport.OwnKey`: the DEALERs present it and
            its join proof instead of the derived member key (SEC-022), and the
            ROUTER serves with it instead of the derived server key (SEC-040).

    Example:
        >>> a = ZmqTransport("tcp://127.0.0.1:0")
        >>> b = ZmqTransport("tcp://127.0.0.1:0")
        >>> a.send(b.address, [b"hello"])  # waits in a's backlog until connected
        >>> msg = None
        >>> while msg is None:  # a.poll flushes the backlog once the DEALER connects
        ...     _ = a.poll(10)
        ...     msg = b.recv(10)
        >>> msg
        [b'hello']
        >>> a.close(); b.close()
    """

    def __init__(
        self,
        bind: str,
        *,
        context: zmq.Context[Any] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        identity: str | bytes | None = None,
        sndhwm: int = DEFAULT_HWM,
        rcvhwm: int = DEFAULT_HWM,
        backlog_limit: int = DEFAULT_BACKLOG_LIMIT,
        cluster_key: Any = None,
        peer_id: str = "",
        own_key: Any = None,
    ) -> None:
        #: Whether :meth:`close` terminates the context (we made it).
        self._own_context = context is None
        #: The context all our sockets live in.
        self.context: zmq.Context[Any] = zmq.Context() if context is None else context
        #: The largest frame the ROUTER accepts (ZMQ-007).
        self.max_frame_bytes = max_frame_bytes
        #: DEALER routing id (ZMQ-013), or None for ZeroMQ's own.
        self._identity = identity.encode() if isinstance(identity, str) else identity
        #: SNDHWM for new DEALERs.
        self._sndhwm = sndhwm
        #: Backlog bound per destination.
        self.backlog_limit = backlog_limit
        #: Messages given to :meth:`send` that never reached ZeroMQ.
        self.dropped = 0
        #: Destination address -> its DEALER and backlog.
        self._routes: dict[str, _Route] = {}
        #: Addresses whose backlog is not empty (flush only these).
        self._backlogged: set[str] = set()
        #: Zero-copy sends ZeroMQ may still be reading: (tracker, pins).
        self._pending: list[tuple[zmq.MessageTracker, list[memoryview]]] = []
        self._closed = False
        #: A poller kept for the common case of nothing backlogged (see poll).
        self._idle_poller: zmq.Poller | None = None
        self._idle_key: tuple[Any, ...] = ()
        #: The cluster key (CURVE on), or None.
        self.cluster_key = cluster_key
        #: The (public, secret) client keys our DEALERs present.
        self._client_keys = None if cluster_key is None else (
            (own_key.public, own_key.secret) if own_key is not None else cluster_key.member_keys(peer_id))
        #: The join proof our DEALERs announce (SEC-022), or None; a head's (several, comma-
        #: separated) changes when its credentials do, and new connections carry the new one.
        self.join_proof = own_key.proof if own_key is not None and cluster_key is not None else None
        #: The ZAP handler (CURVE on), stopped in close().
        self._auth: Any = None
        if cluster_key is not None and not peer_id:
            raise ValueError("a transport with a cluster key needs its peer id")
        #: Whether each peer serves with a key of its own (SEC-040): a DEALER then
        #: connects only to an address whose server key :meth:`expect` named.
        self.own_server_keys = cluster_key is not None and own_key is not None
        #: Address -> the CURVE server key expected there (see :meth:`expect`).
        self._server_keys: dict[str, bytes] = {}
        #: Messages dropped because no server key was known for their address.
        self.unkeyed = 0
        server_secret = None if cluster_key is None else (
            own_key.secret if own_key is not None else cluster_key.server_secret)

        router = self.context.socket(zmq.ROUTER)
        try:
            if cluster_key is not None:  # SEC-002: CURVE server, every client through ZAP
                self._auth = _authenticator(self.context)
                router.setsockopt(zmq.CURVE_SERVER, 1)
                router.setsockopt(zmq.CURVE_SECRETKEY, server_secret)
                router.setsockopt(zmq.ZAP_DOMAIN, b"refrpc")
            router.setsockopt(zmq.LINGER, 0)
            router.setsockopt(zmq.RCVHWM, rcvhwm)  # ZMQ-008
            router.setsockopt(zmq.MAXMSGSIZE, max_frame_bytes)  # ZMQ-007
            # Routing ids are not ours to trust (ZMQ-004): a reconnecting DEALER
            # that reuses one takes over instead of being refused.
            router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            # libzmq removes a stale ipc socket file before binding (ZMQ-012).
            router.bind(bind)  # ZMQ-001
            endpoint = router.getsockopt(zmq.LAST_ENDPOINT)
        except BaseException:
            router.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
            if self._own_context:
                self.context.term()
            raise
        #: The ROUTER every message arrives on (ZMQ-001); poll it, don't read it.
        self.router: zmq.Socket[Any] = router
        #: The endpoint bound (port 0 resolved), to announce; not after a
        #: wildcard bind, which gives ``tcp://0.0.0.0:port`` (ZMQ-002).
        self.address: str = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)

    # -- sending -------------------------------------------------------------

    def send(self, address: str, frames: Sequence[Buffer]) -> None:
        """Send one multipart message to the ROUTER bound at ``address``.

        Never blocks (ZMQ-009). The message goes to ZeroMQ now, or waits in the
        destination's backlog (behind earlier ones, so order per destination
        is kept), or, when that backlog is full, is dropped and counted in
        :attr:`dropped`. Frames of 64 KiB or more are sent without copying and
        must stay unchanged until :attr:`pending_sends` no longer counts them.

        Raises:
            RuntimeError: The transport is closed.
            ValueError: ``frames`` is empty, or ``address`` is not an endpoint
                ZeroMQ can connect to (an address from a peer's Hello is not
                to be trusted, ZMQ-002).
        """
        self._check_open()
        if not frames:
            raise ValueError("a message has at least one frame")
        if self._pending:
            self._reap()
        route = self._routes.get(address)
        if route is None:
            server_key = self._server_key(address)
            if server_key is False:  # SEC-040: nobody's key is known there; send to nobody
                self.unkeyed += 1
                self.dropped += 1
                return
            route = self._routes[address] = _Route(self._connect(address, server_key), server_key)
        if len(frames) == 1 and not route.backlog and type(frames[0]) is bytes and len(frames[0]) < ZERO_COPY_THRESHOLD:
            try:  # the usual message: one small frame, nothing waiting before it
                route.socket.send(frames[0], zmq.NOBLOCK, copy=True)
                return
            except zmq.Again:  # no connection takes it now: it waits in the backlog
                self._enqueue(address, route, frames)
                return
        if route.backlog:
            self._flush_route(address, route)
        if not route.backlog and self._try_send(route.socket, frames, None):
            return
        self._enqueue(address, route, frames)

    def expect(self, address: str, server_key: bytes | str | None) -> None:
        """Name the CURVE server key (z85) of the peer at ``address``: connections there
        complete only with a server that proves it holds that key (SEC-040). A DEALER
        that expects another key is closed (its backlog dropped, counted) so that the
        next :meth:`send` connects anew; None forgets the key. Without CURVE: nothing."""
        if self.cluster_key is None:
            return
        key = server_key.encode("ascii") if isinstance(server_key, str) else server_key
        if key is None:
            self._server_keys.pop(address, None)
        elif self._server_keys.get(address) != key:
            self._server_keys[address] = key
        route = self._routes.get(address)
        if route is not None and route.server_key != self._server_key(address):
            self.forget(address)

    def _server_key(self, address: str) -> bytes | None | bool:
        """The server key a DEALER to ``address`` expects: None without CURVE, False
        if it is to be a peer's own key (SEC-040) and none is known."""
        if self.cluster_key is None:
            return None
        key = self._server_keys.get(address)
        if key is not None:
            return key
        return False if self.own_server_keys else self.cluster_key.server_public

    def flush(self) -> None:
        """Hand backlogged messages to ZeroMQ where it can take them now."""
        self._reap()
        for address in sorted(self._backlogged):
            self._flush_route(address, self._routes[address])

    def forget(self, address: str) -> None:
        """On fencing the incarnation at ``address``: close its DEALER, linger 0 (ZMQ-010).

        Its backlog is dropped (counted); the next :meth:`send` connects anew.
        """
        route = self._routes.pop(address, None)
        if route is None:
            return
        self.dropped += len(route.backlog)
        route.backlog.clear()
        self._backlogged.discard(address)
        route.socket.close(linger=0)

    @property
    def connected(self) -> tuple[str, ...]:
        """The addresses that have a DEALER now, sorted."""
        return tuple(sorted(self._routes))

    def backlog(self, address: str) -> int:
        """How many messages for ``address`` wait for ZeroMQ to take them."""
        route = self._routes.get(address)
        return len(route.backlog) if route else 0

    @property
    def pending_sends(self) -> int:
        """Zero-copy messages whose buffers ZeroMQ may still be reading."""
        self._reap()
        return len(self._pending)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("transport is closed")

    def _connect(self, address: str, server_key: Any = None) -> zmq.Socket[Any]:
        dealer = self.context.socket(zmq.DEALER)
        try:
            dealer.setsockopt(zmq.IMMEDIATE, 1)  # ZMQ-008
            dealer.setsockopt(zmq.RECONNECT_IVL, 100)
            dealer.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            dealer.setsockopt(zmq.SNDHWM, self._sndhwm)
            dealer.setsockopt(zmq.LINGER, 1000)  # closes below pass their own linger
            if self._identity:
                dealer.setsockopt(zmq.ROUTING_ID, self._identity[:255])  # ZMQ-013
            if self._client_keys is not None:  # SEC-016, SEC-040: our client key, the server key expected there
                dealer.setsockopt(zmq.CURVE_SERVERKEY, server_key)
                dealer.setsockopt(zmq.CURVE_PUBLICKEY, self._client_keys[0])
                dealer.setsockopt(zmq.CURVE_SECRETKEY, self._client_keys[1])
                if self.join_proof is not None:  # SEC-022: sent in the handshake, kept on every message
                    dealer.setsockopt(zmq.METADATA, f"{JOIN_PROPERTY}:{self.join_proof}".encode())
            dealer.connect(address)  # ZMQ-003
        except zmq.ZMQError as exc:
            dealer.close(linger=0)
            raise ValueError(f"cannot connect to {address!r}: {exc}") from exc
        except BaseException:
            dealer.close(linger=0)
            raise
        return dealer

    def _try_send(
        self, dealer: zmq.Socket[Any], frames: Sequence[Buffer], pins: list[memoryview] | None
    ) -> bool:
        """Give one message to ZeroMQ; False (nothing sent) if it would block."""
        last = len(frames) - 1
        trackers: list[zmq.MessageTracker] = []
        new_pins: list[memoryview] = []
        for i, frame in enumerate(frames):
            flags = zmq.NOBLOCK if i == last else zmq.NOBLOCK | zmq.SNDMORE
            big = _nbytes(frame) >= ZERO_COPY_THRESHOLD
            try:
                if big:  # ZMQ-006: ZeroMQ reads the caller's buffer
                    if isinstance(frame, zmq.Frame):  # a received frame: untracked
                        frame = frame.buffer
                    trackers.append(dealer.send(frame, flags, copy=False, track=True))
                    if pins is None:
                        new_pins.append(memoryview(frame))
                else:
                    dealer.send(frame, flags, copy=True)
            except zmq.Again:
                if i == 0:
                    _release(new_pins)
                    return False  # nothing went out: the caller may queue it
                # Later parts are refused only if the pipe died mid-message;
                # libzmq then discards the rest, which must still be "sent" so
                # the next message starts clean.
                self.dropped += 1
                for rest in range(i + 1, last + 1):
                    try:
                        dealer.send(b"", zmq.NOBLOCK | (zmq.SNDMORE if rest < last else 0))
                    except zmq.Again:
                        pass
                break
        pins = new_pins if pins is None else pins
        if trackers:
            self._pending.append((zmq.MessageTracker(*trackers), pins))
        else:
            _release(pins)
        return True

    def _enqueue(self, address: str, route: _Route, frames: Sequence[Buffer]) -> None:
        if len(route.backlog) >= self.backlog_limit:
            self.dropped += 1  # ZMQ-009: lost; the session layer retransmits
            return
        copied: list[Buffer] = []
        pins: list[memoryview] = []
        for frame in frames:
            if _nbytes(frame) >= ZERO_COPY_THRESHOLD:
                copied.append(frame)
                pins.append(memoryview(frame))
            else:  # small frames are copied now, as a direct send would have
                copied.append(frame if type(frame) is bytes else bytes(frame))
        route.backlog.append((copied, pins))
        self._backlogged.add(address)

    def _flush_route(self, address: str, route: _Route) -> bool:
        """Send from the backlog while ZeroMQ takes it; True if any went."""
        progressed = False
        backlog = route.backlog
        while backlog:
            frames, pins = backlog[0]
            if not self._try_send(route.socket, frames, pins):
                break
            backlog.popleft()  # its pins now belong to the pending send
            progressed = True
        if not backlog:
            self._backlogged.discard(address)
        return progressed

    def _reap(self) -> None:
        """Release the pins of zero-copy sends ZeroMQ has finished with."""
        if not self._pending:
            return
        still: list[tuple[zmq.MessageTracker, list[memoryview]]] = []
        for tracker, pins in self._pending:
            if tracker.done:
                _release(pins)
            else:
                still.append((tracker, pins))
        self._pending = still

    # -- receiving -----------------------------------------------------------

    def recv(self, timeout_ms: int) -> list[Buffer] | None:
        """One message from the ROUTER, without its routing-id frame (ZMQ-004).

        Args:
            timeout_ms: How long to wait: 0 returns at once, -1 waits until a
                message comes. While waiting, backlogs are flushed as DEALERs
                become writable.

        Returns:
            The frames (``bytes`` below 64 KiB, zero-copy :class:`zmq.Frame`
            from there on), or None if nothing came in time.
        """
        self._check_open()
        if timeout_ms == 0 and self.cluster_key is None:  # the loop's fast path: no poller, no flush
            return self._recv_now()
        if timeout_ms == 0:
            try:
                parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return None
            return self._frames(parts)
        self._reap()
        if not self.router.get(zmq.EVENTS) & zmq.POLLIN and not self.poll(timeout_ms):
            return None
        try:
            parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        return self._frames(parts)

    def _recv_now(self) -> list[Buffer] | None:
        """One waiting message, or None; without authentication. Frame 0 (the
        envelope) arrives as ``bytes``; later frames as :meth:`_frames` gives them.
        Cheaper than ``recv_multipart``: no Frame object for the small frames."""
        router = self.router
        try:
            router.recv(zmq.NOBLOCK)  # the routing id (ZMQ-004); a message arrives whole (A3)
        except zmq.Again:
            return None
        more = router.get
        if not more(zmq.RCVMORE):
            return []  # a routing id alone: no RefRPC message
        frames: list[Buffer] = [router.recv(zmq.NOBLOCK)]
        while more(zmq.RCVMORE):
            part = router.recv(zmq.NOBLOCK, copy=False)
            frames.append(part.bytes if len(part) < ZERO_COPY_THRESHOLD else part)
        return frames

    def _frames(self, parts: list[zmq.Frame]) -> list[Buffer]:
        frames = [p.bytes if len(p) < ZERO_COPY_THRESHOLD else p for p in parts[1:]]
        if self.cluster_key is None:
            return frames
        try:  # SEC-011: the key the sender's connection authenticated with
            user_id = parts[-1].get("User-Id")
        except zmq.ZMQError:
            user_id = None
        join = None
        if self.join_proof is not None:  # SEC-022: the join proof it announced, if any (own keys only)
            try:
                join = parts[-1].get(JOIN_PROPERTY)
            except zmq.ZMQError:
                pass
        return Received(frames, user_id, join)

    def poll(self, timeout_ms: int, *, also: Sequence[Any] = ()) -> bool:
        """Wait until the ROUTER (or a socket/fd in ``also``, e.g. the
        runtime's wakeup socket) is readable, flushing backlogged DEALERs as
        they become writable.

        Args:
            timeout_ms: 0 to check and return, -1 to wait indefinitely.
            also: More sockets or file descriptors to wait on for reading.

        Returns:
            True if the ROUTER or something in ``also`` is readable.
        """
        self._check_open()
        self.flush()
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000
        stuck: set[str] = set()  # writable but took nothing: don't spin on them
        while True:
            waiting = {self._routes[a].socket: a for a in sorted(self._backlogged - stuck)}
            if waiting:
                poller = zmq.Poller()
                poller.register(self.router, zmq.POLLIN)
                for item in also:
                    poller.register(item, zmq.POLLIN)
                for dealer in waiting:
                    poller.register(dealer, zmq.POLLOUT)
            else:
                poller = self._reading_poller(also)  # the usual case: nothing backlogged
            wait = None if deadline is None else max(0, math.ceil((deadline - time.monotonic()) * 1000))
            ready = dict(poller.poll(wait))
            for dealer, address in waiting.items():
                if ready.get(dealer, 0) & zmq.POLLOUT:
                    if not self._flush_route(address, self._routes[address]):
                        stuck.add(address)
            self._reap()
            if any(ready.get(s, 0) & zmq.POLLIN for s in (self.router, *also)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def wait(self, timeout_ms: int, *, also: Sequence[Any] = ()) -> bool:
        """Sleep until the ROUTER (or something in ``also``) is readable, touching
        no DEALER: another thread may be sending meanwhile (the runtime's loop
        sleeps here without its lock). Backlogs are not flushed; see :meth:`flush`.

        Returns:
            True if the ROUTER or something in ``also`` is readable.
        """
        self._check_open()
        return bool(self._reading_poller(also).poll(None if timeout_ms < 0 else timeout_ms))

    def _reading_poller(self, also: Sequence[Any]) -> zmq.Poller:
        """A poller for the ROUTER and ``also``, readable only; built once per set of inputs."""
        key = tuple(also)
        if self._idle_poller is None or self._idle_key != key:
            self._idle_poller = zmq.Poller()
            self._idle_poller.register(self.router, zmq.POLLIN)
            for item in also:
                self._idle_poller.register(item, zmq.POLLIN)
            self._idle_key = key
        return self._idle_poller

    @property
    def backlogged(self) -> bool:
        """Whether any message waits for ZeroMQ to take it (flush it soon)."""
        return bool(self._backlogged)

    def fileno(self) -> int:
        """The ROUTER's ``ZMQ_FD``, for foreign event loops.

        It is edge-triggered: after it wakes you, read ``router.get(zmq.EVENTS)``
        and :meth:`recv` with timeout 0 until nothing is left.
        """
        return int(self.router.getsockopt(zmq.FD))

    # -- closing -------------------------------------------------------------

    def close(self, linger_ms: int = 0) -> None:
        """Close every socket (linger 0 unless told) and an owned context.

        Idempotent. What is still backlogged is dropped, and with linger 0 so
        is whatever ZeroMQ still queues (a Goodbye wants ``linger_ms`` > 0).
        """
        if self._closed:
            return
        if linger_ms:
            self.flush()
        self._closed = True
        for address in sorted(self._routes):
            route = self._routes[address]
            self.dropped += len(route.backlog)
            route.backlog.clear()
            route.socket.close(linger=linger_ms)
        self._routes.clear()
        self._backlogged.clear()
        self.router.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self.context.term()  # returns once ZeroMQ has let go of every buffer
        for _tracker, pins in self._pending:
            _release(pins)
        self._pending.clear()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> ZmqTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ZmqTransport {self.address}{' closed' if self._closed else ''}>"


def _release(pins: list[memoryview]) -> None:
    for pin in pins:
        pin.release()
    pins.clear()


def probe_server_key(address: str, server_key: bytes | str, timeout_s: float) -> str:
    """Whether the CURVE server at ``address`` holds the secret of ``server_key`` (z85):
    connect with a throw-away client key and watch the handshake (nothing is sent).

    Returns:
        ``"ok"``: the handshake completed; ``"refused"``: a server answered there and
        the handshake failed (another server key, or no CURVE at all); ``"silent"``:
        no handshake ended within ``timeout_s`` (nobody listens, or not yet).
    """
    from zmq.utils.monitor import recv_monitor_message

    key = server_key.encode("ascii") if isinstance(server_key, str) else server_key
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    monitor = None
    try:
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.CURVE_SERVERKEY, key)
        public, secret = zmq.curve_keypair()
        dealer.setsockopt(zmq.CURVE_PUBLICKEY, public)
        dealer.setsockopt(zmq.CURVE_SECRETKEY, secret)
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        dealer.connect(address)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not monitor.poll(max(1, math.ceil(left * 1000))):
                continue
            event = recv_monitor_message(monitor)["event"]
            return "ok" if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else "refused"
        return "silent"
    except zmq.ZMQError as exc:
        raise ValueError(f"cannot connect to {address!r}: {exc}") from exc
    finally:
        if monitor is not None:
            dealer.disable_monitor()
            monitor.close(linger=0)
        dealer.close(linger=0)
        context.term()
