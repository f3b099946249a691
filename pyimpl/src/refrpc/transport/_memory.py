"""An in-process transport with the ZeroMQ transport's interface, for tests.

A :class:`MemoryNetwork` is a set of inboxes keyed by address; each
:class:`MemoryTransport` owns one. :meth:`MemoryTransport.send` copies every
frame to ``bytes`` (as the wire would) and appends the message to the
destination's inbox at once, so a single-threaded test is deterministic: no
sockets, no background threads, delivery in send order. A message to an
address nobody is bound at is lost and counted, as ZeroMQ would lose it
(ZMQ-009). Like a ROUTER with ``ZMQ_MAXMSGSIZE`` (ZMQ-007), a receiver
discards a message any frame of which is larger than its ``max_frame_bytes``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Sequence

from ._zmq import DEFAULT_MAX_FRAME_BYTES

Buffer = Any


class MemoryNetwork:
    """The in-process "wire": who is bound where.

    Example:
        >>> net = MemoryNetwork()
        >>> a, b = net.transport("mem://a"), net.transport()
        >>> a.send(b.address, [b"hi", bytearray(b"there")])
        >>> b.recv(0)
        [b'hi', b'there']
    """

    def __init__(self) -> None:
        #: Address -> the transport bound there.
        self._bound: dict[str, MemoryTransport] = {}
        #: Numbers the addresses of transports made without one.
        self._next = 1
        #: Guards ``_bound`` and every inbox, for tests that use threads.
        self.lock = threading.Condition()

    def transport(self, address: str | None = None, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> MemoryTransport:
        """Bind a new transport at ``address`` (default: a fresh ``mem://N``).

        Raises:
            ValueError: Something is already bound at ``address``.
        """
        with self.lock:
            if address is None:
                while f"mem://{self._next}" in self._bound:
                    self._next += 1
                address = f"mem://{self._next}"
                self._next += 1
            if address in self._bound:
                raise ValueError(f"address in use: {address}")
            transport = MemoryTransport(self, address, max_frame_bytes)
            self._bound[address] = transport
            return transport

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses bound now, sorted."""
        with self.lock:
            return tuple(sorted(self._bound))

    def _deliver(self, address: str, frames: list[bytes]) -> bool:
        with self.lock:
            receiver = self._bound.get(address)
            if receiver is None:
                return False
            if any(len(f) > receiver.max_frame_bytes for f in frames):
                receiver.oversized += 1  # ZMQ-007: dropped, as libzmq would
                return True
            receiver._inbox.append(frames)
            self.lock.notify_all()
            return True

    def _unbind(self, transport: MemoryTransport) -> None:
        with self.lock:
            if self._bound.get(transport.address) is transport:
                del self._bound[transport.address]
            self.lock.notify_all()


class MemoryTransport:
    """One peer's endpoint on a :class:`MemoryNetwork`; made by :meth:`MemoryNetwork.transport`."""

    def __init__(self, network: MemoryNetwork, address: str, max_frame_bytes: int) -> None:
        #: The network this transport is bound on.
        self.network = network
        #: Where other transports send to reach this one.
        self.address = address
        #: Frames larger than this are discarded on arrival (ZMQ-007).
        self.max_frame_bytes = max_frame_bytes
        #: Messages sent to an address nobody was bound at.
        self.dropped = 0
        #: Messages discarded on arrival because a frame was too large.
        self.oversized = 0
        #: Messages that arrived and were not received yet, oldest first.
        self._inbox: deque[list[bytes]] = deque()
        #: Addresses this transport has sent to since it last forgot them.
        self._connected: set[str] = set()
        self._closed = False

    def send(self, address: str, frames: Sequence[Buffer]) -> None:
        """Copy ``frames`` into ``address``'s inbox, or count the message as dropped."""
        if self._closed:
            raise RuntimeError("transport is closed")
        if not frames:
            raise ValueError("a message has at least one frame")
        self._connected.add(address)
        wire = [f if type(f) is bytes else bytes(f) for f in frames]
        if not self.network._deliver(address, wire):
            self.dropped += 1

    def recv(self, timeout_ms: int) -> list[Buffer] | None:
        """The oldest message in the inbox, waiting up to ``timeout_ms`` (-1: forever)."""
        if self._closed:
            raise RuntimeError("transport is closed")
        if not self.poll(timeout_ms):
            return None
        with self.network.lock:
            return list(self._inbox.popleft()) if self._inbox else None

    def poll(self, timeout_ms: int) -> bool:
        """Whether a message is waiting; waits up to ``timeout_ms`` for one.

        With one thread nothing can arrive while waiting, so only a message
        already there counts; the wait matters only to threaded tests.
        """
        with self.network.lock:
            if self._inbox or timeout_ms == 0:
                return bool(self._inbox)
            timeout = None if timeout_ms < 0 else timeout_ms / 1000
            return self.network.lock.wait_for(lambda: bool(self._inbox) or self._closed, timeout) and bool(self._inbox)

    def wait(self, timeout_ms: int, *, also: Sequence[Any] = ()) -> bool:
        """Like :meth:`poll`; ``also`` (file descriptors) is not watched, so a
        sleeper wakes for a message or at the timeout only."""
        return self.poll(timeout_ms)

    @property
    def backlogged(self) -> bool:
        """Always False: nothing waits to be sent."""
        return False

    def flush(self) -> None:
        """Nothing to flush: :meth:`send` delivers at once."""

    def forget(self, address: str) -> None:
        """Drop the "connection" to ``address`` (ZMQ-010); the next send makes a new one."""
        self._connected.discard(address)

    @property
    def connected(self) -> tuple[str, ...]:
        """The addresses sent to and not forgotten since, sorted."""
        return tuple(sorted(self._connected))

    def backlog(self, address: str) -> int:
        """Always 0: nothing waits to be sent."""
        return 0

    @property
    def pending_sends(self) -> int:
        """Always 0: frames are copied when sent."""
        return 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, linger_ms: int = 0) -> None:
        """Unbind and discard the inbox; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.network._unbind(self)
        with self.network.lock:
            self._inbox.clear()
            self._connected.clear()

    def __enter__(self) -> MemoryTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.address}{' closed' if self._closed else ''}>"
