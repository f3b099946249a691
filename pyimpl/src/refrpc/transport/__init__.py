"""Transports: move the frames of multipart messages between peers.

A transport makes no protocol decisions. The runtime encodes a core
``SendFrame(address, envelope)`` with :func:`refrpc.codec.encode` and hands the
frames to :meth:`Transport.send`; it takes each message from
:meth:`Transport.recv`, decodes it with :func:`refrpc.codec.decode` and feeds
the core ``Receive`` (or ``ReceiveMalformed``). Messages may be lost
(ZMQ-009); the session layer above retransmits.

* :class:`ZmqTransport`: the real one (``spec/transport-zeromq.md``).
* :class:`MemoryNetwork` / :class:`MemoryTransport`: in-process and
  deterministic, for tests of a runtime without sockets.
* :class:`FaultyTransport`: wraps another transport and drops, duplicates or
  delays the messages its :class:`FaultRule` list names, to test the session
  layer and the protocol on real sockets (``REFRPC_FAULTS``).

Example:
    >>> net = MemoryNetwork()
    >>> a, b = net.transport(), net.transport()
    >>> a.send(b.address, [b"frame 0", b"frame 1"])
    >>> b.recv(0)
    [b'frame 0', b'frame 1']
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from ._curve import KEY_FILE_ENV, OWN_KEY_ENV, ClusterKey, HeadKey, KeyFileError, OwnKey, key_from_env
from ._faults import (
    FAULTS_ENV,
    FaultEvent,
    FaultRule,
    FaultyTransport,
    dump_faults,
    faults_from_env,
    parse_faults,
)
from ._memory import MemoryNetwork, MemoryTransport
from ._zmq import (
    DEFAULT_BACKLOG_LIMIT,
    DEFAULT_HWM,
    DEFAULT_MAX_FRAME_BYTES,
    ZERO_COPY_THRESHOLD,
    Received,
    ZmqTransport,
    probe_server_key,
)


@runtime_checkable
class Transport(Protocol):
    """What a runtime needs from a transport. One thread uses a transport.

    Attributes:
        address: Where this peer receives: the endpoint it announces in
            ``Hello.address`` / ``Welcome.address`` (ZMQ-001, ZMQ-002).
        dropped: Messages given to :meth:`send` that were lost before
            reaching the wire (backlog full, transport closing, forgotten).
    """

    address: str
    dropped: int

    def send(self, address: str, frames: Sequence[Any]) -> None:
        """Send one multipart message to the peer receiving at ``address``.

        Never blocks. The message may be lost (counted in ``dropped``).
        Frames of 64 KiB or more may be sent without copying: keep them
        unchanged while :attr:`pending_sends` counts them (ZMQ-006).
        """

    def recv(self, timeout_ms: int) -> list[Any] | None:
        """One whole message (a list of buffers), or None after ``timeout_ms``."""

    def poll(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` until :meth:`recv` has a message; True if so."""

    def flush(self) -> None:
        """Hand messages that could not be sent at once to the wire, if it takes them now."""

    def forget(self, address: str) -> None:
        """Close the connection to ``address`` at once (ZMQ-010, on fencing)."""

    @property
    def pending_sends(self) -> int:
        """Zero-copy messages whose buffers the wire may still be reading."""

    def close(self, linger_ms: int = 0) -> None:
        """Close everything; idempotent."""


__all__ = [
    "KEY_FILE_ENV",
    "OWN_KEY_ENV",
    "ClusterKey",
    "HeadKey",
    "KeyFileError",
    "OwnKey",
    "Received",
    "key_from_env",
    "DEFAULT_BACKLOG_LIMIT",
    "DEFAULT_HWM",
    "DEFAULT_MAX_FRAME_BYTES",
    "FAULTS_ENV",
    "ZERO_COPY_THRESHOLD",
    "FaultEvent",
    "FaultRule",
    "FaultyTransport",
    "MemoryNetwork",
    "MemoryTransport",
    "Transport",
    "ZmqTransport",
    "dump_faults",
    "faults_from_env",
    "parse_faults",
    "probe_server_key",
]
