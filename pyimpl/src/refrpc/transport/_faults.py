"""Fault injection on a real transport: drop, duplicate or delay chosen messages.

The session layer promises exactly-once, in-order delivery over a network that
may lose, duplicate and reorder messages (SES-002, SES-003), and the protocol
above it promises at-most-once execution (RPC-001) and safe reclamation under
reordering across sessions (ownership.md section 7.3). To check those promises
on real processes and real ZeroMQ sockets, a :class:`FaultyTransport` wraps a
peer's transport and applies a list of :class:`FaultRule`: each names the
messages it acts on (direction, message type, the other peer, which
occurrences) and what happens to them.

A runtime installs the wrapper only while rules are set; a node without rules
uses its :class:`~refrpc.transport.ZmqTransport` directly, so fault injection
costs nothing when it is off. Rules come from :meth:`refrpc.runtime.Node.set_faults`
or, for processes started for you (the workers of ``refrpc.init()``), from the
``REFRPC_FAULTS`` environment variable (:func:`faults_from_env`).

Example:
    >>> rules = parse_faults('[{"action": "drop", "message": "SubmitTask", "at": "w1",'
    ...                      ' "direction": "receive"}]')
    >>> rules[0]
    FaultRule(action='drop', direction='receive', message='SubmitTask', peer='', nth=1, count=1, delay_ms=0, at='w1')
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..core.messages import MESSAGE_TYPES

#: The environment variable that carries rules to processes started for you.
FAULTS_ENV = "REFRPC_FAULTS"
#: What a rule can do to a message.
ACTIONS = ("drop", "duplicate", "delay")
#: Which way a message goes, seen from the process applying the rule.
DIRECTIONS = ("send", "receive")
_TYPE_NAMES = frozenset(cls.__name__ for cls in MESSAGE_TYPES)
#: The fault log keeps at most this many events (a partition drops forever).
LOG_LIMIT = 10_000

Buffer = Any
#: ``frames -> (sender, receiver, message type)``: :func:`refrpc.codec.peek`.
Classifier = Callable[[Sequence[Buffer]], tuple[str, str, str]]


@dataclass(frozen=True, slots=True)
class FaultRule:
    """What to do to which messages.

    A message matches a rule when it goes the rule's ``direction``, is of its
    ``message`` type and is to or from its ``peer`` (an empty field matches
    anything). A rule counts the messages it matches, from 1, and acts on the
    ``count`` of them starting with the ``nth``. Retransmissions are new
    matches: the session layer resends a lost message with its original
    sequence number (SES-011), and a rule that should lose it for good must
    match those too (``count=None``). When several rules act on one message,
    the first in the list wins; every matching rule still counts it.

    Example: lose the first ``SubmitTask`` this peer sends to ``w1``, then
    every message ``w2`` sends it for as long as the rule is in force::

        [FaultRule("drop", "send", "SubmitTask", peer="w1"),
         FaultRule("drop", "receive", peer="w2", count=None)]
    """

    #: ``"drop"`` (the message is lost), ``"duplicate"`` (it is delivered
    #: twice, back to back) or ``"delay"`` (it is held for ``delay_ms``, then
    #: delivered after messages sent later: reordering).
    action: str
    #: ``"send"``: messages this peer sends; ``"receive"``: messages it
    #: receives, before its session layer sees them.
    direction: str = "send"
    #: The message type as named in :mod:`refrpc.core.messages`
    #: (``"SubmitTask"``, ``"TaskReply"``, ``"RegisterBorrower"``...); empty: any.
    message: str = ""
    #: The other peer's PeerId (the receiver of a sent message, the sender of a
    #: received one); empty: any.
    peer: str = ""
    #: The first matching message to act on, counting from 1.
    nth: int = 1
    #: How many matching messages to act on from the ``nth`` on; None: every
    #: one (with ``"drop"``, a partition until the rule is removed).
    count: int | None = 1
    #: How long a delayed message is held, in milliseconds.
    delay_ms: int = 0
    #: Only the peer with this PeerId applies the rule; empty: every peer given
    #: it. Lets one ``REFRPC_FAULTS`` value address each process of a cluster.
    at: str = ""

    def __post_init__(self) -> None:
        # A typo must not turn a fault test into a test of nothing.
        if self.action not in ACTIONS:
            raise ValueError(f"fault action {self.action!r} is not one of {ACTIONS}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"fault direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.message and self.message not in _TYPE_NAMES:
            raise ValueError(f"no message type {self.message!r} (see refrpc.core.messages)")
        if self.nth < 1:
            raise ValueError(f"nth counts from 1, not {self.nth}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count is at least 1 (or None for all), not {self.count}")
        if (self.action == "delay") != (self.delay_ms > 0):
            raise ValueError("delay_ms > 0 goes with action 'delay', and only with it")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        """A rule from its JSON form: an object with the attributes as keys."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault rule keys {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (for ``REFRPC_FAULTS`` or a control call)."""
        return dataclasses.asdict(self)

    def applies_at(self, peer_id: str) -> bool:
        """Whether the peer ``peer_id`` applies this rule."""
        return not self.at or self.at == peer_id


def parse_faults(text: str) -> tuple[FaultRule, ...]:
    """Rules from JSON: a list of rule objects (or one object).

    Raises:
        ValueError: The text is not JSON, or a rule is not valid.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"fault rules are not JSON: {exc}") from None
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
        raise ValueError("fault rules are a JSON list of objects")
    return tuple(FaultRule.from_dict(d) for d in items)


def faults_from_env(peer_id: str, environ: Any = None) -> tuple[FaultRule, ...]:
    """The rules of ``REFRPC_FAULTS`` that the peer ``peer_id`` applies (none if unset)."""
    text = (os.environ if environ is None else environ).get(FAULTS_ENV, "")
    if not text.strip():
        return ()
    return tuple(r for r in parse_faults(text) if r.applies_at(peer_id))


def dump_faults(rules: Iterable[FaultRule]) -> str:
    """The JSON text of rules, e.g. to set ``REFRPC_FAULTS``."""
    return json.dumps([r.to_dict() for r in rules])


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One application of a rule, for the log (:attr:`FaultyTransport.log`)."""

    #: Index of the rule in the rule list in force.
    rule: int
    action: str
    direction: str
    #: The other peer, and the message type, as peeked.
    peer: str
    message: str
    #: The transport's clock (seconds, monotonic) when it happened.
    at: float


class FaultyTransport:
    """A transport that applies :class:`FaultRule` to the messages of another.

    It implements the :class:`~refrpc.transport.Transport` interface and hands
    every message that survives to ``inner`` (or takes it from there), so the
    messages really travel, or really don't, over ``inner``'s sockets. Like any
    transport, one thread uses it. Attributes it does not define are
    ``inner``'s (``router``, ``fileno``...).

    Args:
        inner: The transport that carries the messages.
        rules: The rules in force; :meth:`set_rules` replaces them.
        classify: Reads ``(sender, receiver, message type)`` from a message's
            frames; :func:`refrpc.codec.peek` by default.
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        inner: Any,
        rules: Iterable[FaultRule] = (),
        *,
        classify: Classifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if classify is None:
            from ..codec import peek as classify
        #: The transport that carries the messages.
        self.inner = inner
        self._classify = classify
        self._clock = clock
        #: The rules in force.
        self.rules: tuple[FaultRule, ...] = ()
        #: Per rule: how many messages it matched, and how many it acted on.
        self.matched: list[int] = []
        self.applied: list[int] = []
        #: The latest applications, oldest first (at most LOG_LIMIT).
        self.log: list[FaultEvent] = []
        #: Delayed sends: (due, tie-breaker, address, frames), a heap.
        self._held_out: list[tuple[float, int, str, list[Buffer]]] = []
        #: Delayed or duplicated receives: (due, tie-breaker, frames), a heap.
        self._held_in: list[tuple[float, int, list[Buffer]]] = []
        self._order = itertools.count()
        self.set_rules(rules)

    # ------------------------------------------------------------ rules
    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        """Replace the rules; their counts start from zero. Held messages stay held."""
        self.rules = tuple(rules)
        self.matched = [0] * len(self.rules)
        self.applied = [0] * len(self.rules)

    @property
    def holding(self) -> int:
        """Messages held back (delayed or a duplicate not yet delivered)."""
        return len(self._held_out) + len(self._held_in)

    def _decide(self, direction: str, frames: Sequence[Buffer]) -> str:
        """The action for one message ("" for none); counts matches."""
        if not self.rules:
            return ""
        sender, receiver, message = self._classify(frames)
        peer = receiver if direction == "send" else sender
        chosen = ""
        for i, rule in enumerate(self.rules):
            if rule.direction != direction or (rule.message and rule.message != message) or (rule.peer and rule.peer != peer):
                continue
            self.matched[i] += 1
            n = self.matched[i] - rule.nth  # 0 for the nth match
            if chosen or n < 0 or (rule.count is not None and n >= rule.count):
                continue
            chosen = rule.action if rule.action != "delay" else f"delay:{rule.delay_ms}"
            self.applied[i] += 1
            if len(self.log) >= LOG_LIMIT:
                del self.log[: LOG_LIMIT // 2]
            self.log.append(FaultEvent(i, rule.action, direction, peer, message, self._clock()))
        return chosen

    # ------------------------------------------------------------ sending
    @property
    def address(self) -> str:
        return self.inner.address  # type: ignore[no-any-return]

    @property
    def dropped(self) -> int:
        """Messages the wire lost (``inner.dropped``); not the ones a rule dropped."""
        return self.inner.dropped  # type: ignore[no-any-return]

    def send(self, address: str, frames: Sequence[Buffer]) -> None:
        """Send, unless a rule drops, duplicates or delays the message."""
        self._release_sends()
        action = self._decide("send", frames)
        if not action:
            self.inner.send(address, frames)
        elif action == "duplicate":
            self.inner.send(address, frames)
            self.inner.send(address, frames)
        elif action.startswith("delay:"):
            due = self._clock() + int(action[6:]) / 1000
            # A copy: the caller may reuse big (zero-copy) buffers once send returns.
            kept = [f if type(f) is bytes else bytes(f) for f in frames]
            heapq.heappush(self._held_out, (due, next(self._order), address, kept))
        # "drop": nothing goes out.

    def flush(self) -> None:
        """Send delayed messages that are due, then flush ``inner``."""
        self._release_sends()
        self.inner.flush()

    def _release_sends(self) -> None:
        held = self._held_out
        if not held:
            return
        now = self._clock()
        while held and held[0][0] <= now:
            _, _, address, frames = heapq.heappop(held)
            try:
                self.inner.send(address, frames)
            except ValueError:
                pass  # an address that went bad meanwhile: lost, as on a real network

    def forget(self, address: str) -> None:
        """Close the connection to ``address``; delayed sends to it are lost."""
        self._held_out = [h for h in self._held_out if h[2] != address]
        heapq.heapify(self._held_out)
        self.inner.forget(address)

    @property
    def pending_sends(self) -> int:
        return self.inner.pending_sends  # type: ignore[no-any-return]

    # ------------------------------------------------------------ receiving
    def recv(self, timeout_ms: int) -> list[Buffer] | None:
        """The next message a rule lets through (delayed ones when due), or None after ``timeout_ms``."""
        end = None if timeout_ms < 0 else self._clock() + timeout_ms / 1000
        while True:
            frames = self._due_receive()
            if frames is not None:
                return frames
            frames = self.inner.recv(0)
            if frames is not None:
                frames = self._on_receive(frames)
                if frames is not None:
                    return frames
                continue  # dropped or held: look at the next one
            left = None if end is None else end - self._clock()
            if left is not None and left <= 0:
                return None
            self.poll(-1 if left is None else max(1, int(left * 1000)))

    def _on_receive(self, frames: list[Buffer]) -> list[Buffer] | None:
        action = self._decide("receive", frames)
        if not action:
            return frames
        if action == "drop":
            return None
        if action == "duplicate":
            heapq.heappush(self._held_in, (self._clock(), next(self._order), frames))
            return frames
        due = self._clock() + int(action[6:]) / 1000
        heapq.heappush(self._held_in, (due, next(self._order), frames))
        return None

    def _due_receive(self) -> list[Buffer] | None:
        held = self._held_in
        if held and held[0][0] <= self._clock():
            return heapq.heappop(held)[2]
        return None

    def poll(self, timeout_ms: int, *, also: Sequence[Any] = ()) -> bool:
        """Like ``inner.poll``, but also wakes when a held message is due."""
        self._release_sends()
        if self._receive_due():
            return True
        wait = self._until_due(timeout_ms)
        ready = bool(self.inner.poll(wait, also=also)) if also else bool(self.inner.poll(wait))
        self._release_sends()
        return ready or self._receive_due()

    def wait(self, timeout_ms: int, *, also: Sequence[Any] = ()) -> bool:
        """Like ``inner.wait``, but wakes when a held message is due (sends nothing)."""
        if self._receive_due():
            return True
        return bool(self.inner.wait(self._until_due(timeout_ms), also=also)) or self._receive_due()

    def _receive_due(self) -> bool:
        """Whether a held (delayed or duplicated) receive is due now."""
        return bool(self._held_in and self._held_in[0][0] <= self._clock())

    def _until_due(self, timeout_ms: int) -> int:
        """``timeout_ms``, cut short to when the next held message is due."""
        dues = [h[0][0] for h in (self._held_in, self._held_out) if h]
        if not dues:
            return timeout_ms
        until = max(0, int((min(dues) - self._clock()) * 1000) + 1)
        return until if timeout_ms < 0 else min(timeout_ms, until)

    @property
    def backlogged(self) -> bool:
        """Whether the wire has a backlog, or a delayed send is held here."""
        return bool(self._held_out) or bool(getattr(self.inner, "backlogged", False))

    # ------------------------------------------------------------ the rest
    def close(self, linger_ms: int = 0) -> None:
        """Close ``inner``; held messages are lost."""
        self._held_out.clear()
        self._held_in.clear()
        self.inner.close(linger_ms)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found here: the inner transport's extras.
        if name == "inner":  # not set yet (during __init__): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<FaultyTransport {len(self.rules)} rules, {self.holding} held, over {self.inner!r}>"
