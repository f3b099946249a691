"""Session bookkeeping for the suite's wire peer (session.md §2), without sockets.

The suite plays a peer, so it has to keep its half of every session honestly:
number what it sends (SES-001), deliver what it receives once and in order
(SES-002), carry acks (SES-003) and drop acknowledged messages (SES-008). These
two small classes do that and nothing else; the wire peer decides when to send.
Unlike an implementation, they also record what the remote did wrong (an ack
above anything sent, a duplicate), because cases check it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: Default receive window (SES-002, SES-009).
DEFAULT_WINDOW = 4096


@dataclass
class InboundSession(Generic[T]):
    """The receiving end of one session: the remote's sequenced messages to us."""

    #: Messages beyond the next expected one that are buffered at most.
    window: int = DEFAULT_WINDOW
    #: Highest sequence number delivered in order (what our acks carry).
    delivered: int = 0
    #: Messages that arrived ahead of a gap, by sequence number.
    buffer: dict[int, T] = field(default_factory=dict)
    #: How many copies of already-delivered sequence numbers arrived.
    duplicates: int = 0

    def receive(self, seq: int, item: T) -> tuple[str, list[tuple[int, T]]]:
        """Take one sequenced message (seq >= 1).

        Returns:
            ``(disposition, delivered)``: the disposition is ``"delivered"``,
            ``"buffered"``, ``"duplicate"`` or ``"outside-window"``; delivered
            lists the messages now deliverable in order, this one first if it
            was the next expected.
        """
        if seq < 1:
            raise ValueError("sequence number 0 is outside the session")
        if seq <= self.delivered or seq in self.buffer:
            self.duplicates += 1
            return "duplicate", []
        if seq > self.delivered + 1 + self.window:
            return "outside-window", []
        if seq != self.delivered + 1:
            self.buffer[seq] = item
            return "buffered", []
        out = [(seq, item)]
        self.delivered = seq
        while self.delivered + 1 in self.buffer:
            self.delivered += 1
            out.append((self.delivered, self.buffer.pop(self.delivered)))
        return "delivered", out


@dataclass
class OutboundSession(Generic[T]):
    """The sending end of one session: our sequenced messages to the remote."""

    #: The next sequence number to allocate (SES-001).
    next_seq: int = 1
    #: Highest ack received from the remote that did not exceed what we allocated.
    acked: int = 0
    #: Sent (or allocated and withheld) messages not yet covered by an ack, by seq.
    unacked: dict[int, T] = field(default_factory=dict)
    #: Acks the remote sent that were larger than any sequence number we allocated.
    bogus_acks: list[int] = field(default_factory=list)
    #: Acks that went backwards (smaller than one seen before).
    regressions: list[tuple[int, int]] = field(default_factory=list)

    @property
    def highest_allocated(self) -> int:
        return self.next_seq - 1

    def allocate(self) -> int:
        """A fresh sequence number."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def record(self, seq: int, item: T) -> None:
        """Keep ``item`` until an ack covers ``seq``."""
        if seq > self.acked:
            self.unacked[seq] = item

    def on_ack(self, ack: int) -> list[int]:
        """Take the remote's cumulative ack (SES-008).

        Returns:
            The sequence numbers it newly acknowledged.
        """
        if ack > self.highest_allocated:
            self.bogus_acks.append(ack)
            return []
        if ack < self.acked:
            self.regressions.append((self.acked, ack))
            return []
        newly = sorted(s for s in self.unacked if s <= ack)
        for s in newly:
            del self.unacked[s]
        self.acked = ack
        return newly

    def pending(self) -> list[tuple[int, T]]:
        """Unacknowledged messages in increasing order (SES-011)."""
        return sorted(self.unacked.items())
