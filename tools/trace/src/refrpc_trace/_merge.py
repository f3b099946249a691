"""Merging the traces of a run into one happened-before order.

Sends are paired with receives by the rules of the trace format only (TRC-006),
never by time: a sequenced message by (sender, sender incarnation, receiver,
receiver incarnation, seq), a message outside the session (seq 0) by the same
plus identical body, in order. (The receiver incarnation, read from the
envelope like the rest, keeps apart the sessions a sender opens with two
incarnations of one restarted peer, whose seq numbers both start at 1.)

:class:`Merger` reads every file at once, one record ahead each, and emits a
record only when everything that happened before it has been emitted: the
records before it in its own trace and, for a receive, the send it pairs with.
Among the records that may go next it picks the earliest on an *aligned clock*:
each trace's monotonic clock plus an offset, raised whenever a receive would
otherwise come before its send. (Peers of one host share a monotonic clock and
need no offset; other traces start aligned at their first records.)

Memory stays bounded by the number of messages in flight, not the length of the
run: a send is remembered until its receive is emitted or the receiver's trace
ends, a receive is forgotten once emitted.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from refrpc.codec import DecodeError, TraceKind, TraceRecord
from refrpc.core.messages import Envelope

from ._findings import Evidence, Finding, Kind, Severity
from ._messages import decode_frame0, describe_decode_error, summary
from ._source import Progress, Run, TraceFile

#: Event names of the registry (trace-format.md section 4, TRC-007).
EVENT_NAMES = frozenset({
    "transition", "discarded", "peer-declared-dead", "peer-forgotten", "fail-stop", "hold", "grant-added", "grant-removed",
    "location-added", "location-removed", "relay-added", "relay-removed", "copy-stored", "copy-dropped",
    "program",
})
#: Traces whose first records lie within this many ns are taken to share one clock.
SHARED_CLOCK_NS = 3600 * 10**9
#: Delivered sequence numbers remembered per session (to name duplicates).
_DELIVERED_KEPT = 8192
#: Longest text kept in an Evidence (findings and life lines keep many).
_EVIDENCE_TEXT = 240
#: Unreceived copies of one message outside the session kept for pairing.
_QUEUE_KEPT = 1024


class Status:
    """What an :class:`Item` is, beyond its kind."""

    FIRST = "sent"  #: the first transmission of a message
    RETRANSMIT = "retransmitted"  #: a later transmission of a message already sent
    DELIVERED = "delivered"  #: the receive that delivered the message
    DUPLICATE = "duplicate"  #: a later receive of a message already received
    UNPAIRED = "unpaired"  #: a receive whose send is in no trace
    EARLY = "before-send"  #: a receive the traces put before its send
    UNDECODABLE = "undecodable"  #: frame 0 does not decode
    DISCARDED = "discarded"  #: a receive the receiver did not deliver (its `discarded` event)
    EVENT = "event"


@dataclass(slots=True, eq=False)
class Item:
    """One record of the run, in merged order, decoded."""

    #: Position in the merged order (``#N``), from 1.
    index: int
    file: TraceFile
    rec: TraceRecord
    #: Seconds since the start of the run on the aligned clock.
    time_s: float
    #: Message type name, event name, or "" when frame 0 does not decode.
    type: str
    env: Envelope | None = None
    #: Why frame 0 did not decode, or "".
    error: str = ""
    #: One of :class:`Status`.
    status: str = Status.EVENT
    #: For a receive: the ``index`` of the send it pairs with (0: none).
    #: For a retransmission: the ``index`` of the first transmission.
    pair: int = 0
    #: The parsed ``detail`` JSON object (empty if none or invalid).
    detail: dict[str, Any] = field(default_factory=dict)
    #: Label of the other peer (send/recv).
    remote: str = ""

    @property
    def peer(self) -> str:
        return self.file.label

    @property
    def kind(self) -> TraceKind:
        return self.rec.kind

    @property
    def is_message(self) -> bool:
        return self.rec.kind is TraceKind.SEND or self.rec.kind is TraceKind.RECV

    def text(self) -> str:
        """One line: who, to/from whom, and the message or event."""
        if self.rec.kind is TraceKind.EVENT:
            subject = self.rec.object_id or self.rec.task_id
            detail = " ".join(f"{k}={v}" for k, v in self.detail.items() if k not in ("cause",))
            return f"event {self.type}{' ' + subject if subject else ''}{' ' + detail if detail else ''}"
        arrow = "->" if self.rec.kind is TraceKind.SEND else "<-"
        body = summary(self.env.body) if self.env is not None else (self.error or "undecodable")
        seq = f" seq {self.env.seq}" if self.env is not None and self.env.seq else ""
        return f"{arrow} {self.remote}: {body}{seq}"

    def evidence(self) -> Evidence:
        text = self.text()
        if len(text) > _EVIDENCE_TEXT:
            text = text[: _EVIDENCE_TEXT - 3] + "..."
        return Evidence(self.index, self.time_s, self.peer, text)


@dataclass(slots=True)
class _Sent:
    index: int
    t_ns: int
    type: str


@dataclass(slots=True)
class _Session:
    pending: dict[int, _Sent] = field(default_factory=dict)
    delivered: dict[int, int] = field(default_factory=dict)
    floor: int = 0
    #: seqs whose receive was emitted before any send (inconsistent traces)
    early: set[int] = field(default_factory=set)


class _Cursor:
    __slots__ = ("order", "file", "records", "head", "env", "error", "key", "offset", "done", "last_t")

    def __init__(self, order: int, file: TraceFile, records: Iterator[TraceRecord], offset: int) -> None:
        self.order = order
        self.file = file
        self.records = records
        self.head: TraceRecord | None = None
        self.env: Envelope | None = None
        self.error = ""
        self.key: tuple[Any, ...] | None = None
        self.offset = offset
        self.done = False
        self.last_t = 0


def _pair_key(env: Envelope) -> tuple[Any, ...]:
    if env.seq:
        return ("s", env.sender, env.sender_incarnation, env.receiver, env.receiver_incarnation, env.seq)
    return ("u", env.sender, env.sender_incarnation, env.receiver, env.receiver_incarnation, hash(env.body))


class Merger:
    """Iterates the merged, decoded records of a :class:`Run` (see the module doc).

    Attributes:
        unreceived: Sends never received, by (sender, receiver, type), for
            receivers that have a trace.
        to_untraced: Messages sent to peer incarnations that have no trace.
        from_untraced: Receives from peer incarnations that have no trace.
    """

    def __init__(self, run: Run, progress: Progress | None = None) -> None:
        self.run = run
        self.progress = progress
        self.unreceived: Counter[tuple[str, str, str]] = Counter()
        self.to_untraced: Counter[tuple[str, int]] = Counter()
        self.from_untraced: Counter[tuple[str, int]] = Counter()
        self.early = 0
        self.count = 0
        self.end_s = 0.0
        self._sessions: dict[tuple[Any, ...], _Session] = {}
        self._queues: dict[tuple[Any, ...], deque[_Sent]] = {}
        self._early_u: Counter[tuple[Any, ...]] = Counter()
        self._files = {f.key for f in run.files}
        self._peers_live: Counter[str] = Counter(f.peer for f in run.files)
        starts = [f.start_ns for f in run.files]
        shared = bool(starts) and max(starts) - min(starts) < SHARED_CLOCK_NS
        self._cursors = [
            _Cursor(i, f, run.records(f, progress), 0 if shared else -f.start_ns)
            for i, f in enumerate(run.files)
        ]
        self._t0 = min((f.start_ns + c.offset for f, c in zip(run.files, self._cursors)), default=0)
        self._exhausted: set[tuple[str, int]] = set()
        # recent receives per file: record_no -> (index, session key, seq, sent) for `discarded`
        self._recent: dict[tuple[str, int], deque[tuple[Item, tuple[Any, ...] | None, _Sent | None]]] = {}

    # ------------------------------------------------------------ loading heads
    def _load(self, c: _Cursor) -> None:
        rec = next(c.records, None)
        c.head = rec
        c.env = None
        c.error = ""
        c.key = None
        if rec is None:
            c.done = True
            return
        if rec.kind is TraceKind.SEND or rec.kind is TraceKind.RECV:
            try:
                c.env = decode_frame0(rec.envelope)
            except DecodeError as err:
                c.error = describe_decode_error(err)
                return
            except Exception as err:  # the codec promises DecodeError; stay robust all the same
                c.error = f"undecodable ({type(err).__name__})"
                return
            c.key = _pair_key(c.env)

    def _has_trace(self, peer: str, incarnation: int) -> bool:
        """Whether a receive of a message to this peer incarnation can still be read."""
        if incarnation == 0:
            return self._peers_live[peer] > 0
        return (peer, incarnation) in self._files and (peer, incarnation) not in self._exhausted

    def _ready(self, c: _Cursor) -> bool:
        """Whether the head of ``c`` may be emitted now."""
        rec = c.head
        assert rec is not None
        if rec.kind is not TraceKind.RECV or c.key is None or c.env is None:
            return True
        env = c.env
        sender = (env.sender, env.sender_incarnation)
        if sender not in self._files or sender in self._exhausted:
            return True
        if env.seq:
            s = self._sessions.get(c.key[:5])
            return s is not None and (env.seq in s.pending or env.seq in s.delivered or env.seq <= s.floor)
        q = self._queues.get(c.key)
        return bool(q)

    # ------------------------------------------------------------ the merge
    def __iter__(self) -> Iterator[Item]:
        heap: list[tuple[int, int]] = []
        waiting: dict[tuple[Any, ...], list[_Cursor]] = {}
        for c in self._cursors:
            self._load(c)
        blocked: list[_Cursor] = []

        def place(c: _Cursor) -> None:
            if c.done:
                self._exhausted.add(c.file.key)
                self._peers_live[c.file.peer] -= 1
                self._purge(c.file)
                # receives waiting on this sender can go now
                for key in [k for k in waiting if (k[1], k[2]) == c.file.key]:
                    for w in waiting.pop(key):
                        blocked.remove(w)
                        heapq.heappush(heap, (self._candidate(w), w.order))
                return
            if self._ready(c):
                heapq.heappush(heap, (self._candidate(c), c.order))
            else:
                assert c.key is not None
                waiting.setdefault(c.key[:5] if c.key[0] == "s" else c.key, []).append(c)
                blocked.append(c)

        for c in self._cursors:
            place(c)
        while heap or blocked:
            if heap:
                _, order = heapq.heappop(heap)
                c = self._cursors[order]
                forced = False
            else:  # every head waits for a send that no trace can still deliver first
                c = min(blocked, key=lambda w: (self._candidate(w), w.order))
                blocked.remove(c)
                for key, ws in list(waiting.items()):
                    if c in ws:
                        ws.remove(c)
                        if not ws:
                            del waiting[key]
                forced = True
            item = self._emit(c, forced)
            yield item
            if item.rec.kind is TraceKind.SEND and item.env is not None and item.status == Status.FIRST:
                key = item.env.seq and _pair_key(item.env)[:5] or _pair_key(item.env)
                for w in waiting.pop(key, ()):  # type: ignore[call-overload]
                    blocked.remove(w)
                    if self._ready(w):
                        heapq.heappush(heap, (self._candidate(w), w.order))
                    else:
                        place(w)
            self._load(c)
            place(c)
        if self.progress is not None:
            self.progress.report(final=True)
        for s_key, s in self._sessions.items():
            for sent in s.pending.values():
                self.unreceived[(self.run.label(s_key[1], s_key[2]), self.run.label(s_key[3], s_key[4]), sent.type)] += 1
        for q_key, q in self._queues.items():
            for sent in q:
                self.unreceived[(self.run.label(q_key[1], q_key[2]), self.run.label(q_key[3], q_key[4]), sent.type)] += 1
        if self.early:
            self.run.diag.problem(Severity.WARNING, f"{self.early} receives are recorded before the send they pair "
                                  "with could be placed (a send missing from its trace, or traces that disagree); "
                                  "they are shown unpaired")

    def _candidate(self, c: _Cursor) -> int:
        """Aligned time at which the head of ``c`` would be emitted."""
        rec = c.head
        assert rec is not None
        t = rec.monotonic_ns + c.offset
        sent = self._lookup(c) if rec.kind is TraceKind.RECV else None
        if sent is not None and sent.t_ns > t:
            t = sent.t_ns
        return max(t, c.last_t)

    def _lookup(self, c: _Cursor) -> _Sent | None:
        if c.key is None or c.env is None:
            return None
        if c.env.seq:
            s = self._sessions.get(c.key[:5])
            return s.pending.get(c.env.seq) if s is not None else None
        q = self._queues.get(c.key)
        return q[0] if q else None

    def _emit(self, c: _Cursor, forced: bool) -> Item:
        rec = c.head
        assert rec is not None
        self.count += 1
        t = rec.monotonic_ns + c.offset
        item = Item(self.count, c.file, rec, 0.0, "", c.env, c.error)
        if rec.kind is TraceKind.EVENT:
            item.type = rec.event_name
            item.status = Status.EVENT
            self._event(item)
        else:
            item.type = type(c.env.body).__name__ if c.env is not None else ""
            item.remote = self.run.label(rec.remote_peer, rec.remote_incarnation)
            if c.env is None:
                item.status = Status.UNDECODABLE
            else:
                self._check_fields(item)
            if rec.kind is TraceKind.SEND:
                self._send(item, c, t)
            else:
                t = self._recv(item, c, t, forced)
        t = max(t, c.last_t)
        if t > rec.monotonic_ns + c.offset:
            c.offset = t - rec.monotonic_ns
        c.last_t = t
        item.time_s = (t - self._t0) / 1e9
        self.end_s = max(self.end_s, item.time_s)
        if rec.detail and not item.detail:
            self._detail(item)
        return item

    def _detail(self, item: Item) -> None:
        try:
            detail = json.loads(item.rec.detail)
        except ValueError:
            detail = None
        if isinstance(detail, dict):
            item.detail = detail
        else:
            self._violation(item, "TRC-009", "detail is not a JSON object")

    def _event(self, item: Item) -> None:
        rec = item.rec
        if rec.detail:
            self._detail(item)
        name = rec.event_name
        if name not in EVENT_NAMES and not name.startswith("x-"):
            self._violation(item, "TRC-007", f"event name {name!r} is not in the registry and does not start with x-")
        if name == "discarded":
            self._discarded(item)

    def _violation(self, item: Item, requirement: str, text: str) -> None:
        self.run.diag.finding(Finding(requirement, Kind.TRACE_FORMAT, f"{item.peer}: {text}", (item.evidence(),)),
                              group=str(item.file.path))

    def _check_fields(self, item: Item) -> None:
        env, rec = item.env, item.rec
        assert env is not None
        if rec.kind is TraceKind.SEND:
            ok = (env.sender, env.sender_incarnation, env.receiver, env.receiver_incarnation, env.seq) == (
                rec.peer, rec.incarnation, rec.remote_peer, rec.remote_incarnation, rec.seq)
        else:  # (a frame addressed to another peer is recorded too, then discarded)
            ok = (env.sender, env.sender_incarnation, env.seq) == (rec.remote_peer, rec.remote_incarnation, rec.seq)
        if not ok:
            self._violation(item, "TRC-005", "the record's remotePeer/remoteIncarnation/seq disagree with its envelope")

    # ------------------------------------------------------------ sends and receives
    def _send(self, item: Item, c: _Cursor, t: int) -> None:
        env = item.env
        if env is None:
            item.status = Status.FIRST
            return
        item.status = Status.FIRST
        if not self._has_trace(env.receiver, env.receiver_incarnation):
            if env.receiver in self.run.peers and ((env.receiver, env.receiver_incarnation) in self._files
                                                   or env.receiver_incarnation == 0):
                self.unreceived[(item.peer, item.remote, item.type)] += 1  # its trace has ended
            else:
                self.to_untraced[(env.receiver, env.receiver_incarnation)] += 1
            return
        sent = _Sent(item.index, t, item.type)
        if env.seq:
            s = self._sessions.setdefault(_pair_key(env)[:5], _Session())
            if env.seq in s.early:
                s.early.discard(env.seq)
                return
            first = s.pending.get(env.seq)
            if first is not None:
                item.status, item.pair = Status.RETRANSMIT, first.index
            elif env.seq in s.delivered or env.seq <= s.floor:
                item.status, item.pair = Status.RETRANSMIT, s.delivered.get(env.seq, 0)
            else:
                s.pending[env.seq] = sent
        else:
            key = _pair_key(env)
            if self._early_u[key]:
                self._early_u[key] -= 1
                return
            q = self._queues.setdefault(key, deque())
            q.append(sent)
            if len(q) > _QUEUE_KEPT:
                lost = q.popleft()
                self.unreceived[(item.peer, item.remote, lost.type)] += 1

    def _recv(self, item: Item, c: _Cursor, t: int, forced: bool) -> int:
        env = item.env
        if env is None:
            self._remember(item, None, None)
            return t
        sender = (env.sender, env.sender_incarnation)
        if sender not in self._files:
            self.from_untraced[sender] += 1
            item.status = Status.UNPAIRED
            return t
        sent: _Sent | None = None
        skey: tuple[Any, ...] | None = None
        if env.seq:
            skey = _pair_key(env)[:5]
            s = self._sessions.setdefault(skey, _Session())
            sent = s.pending.pop(env.seq, None)
            if sent is not None:
                item.status, item.pair = Status.DELIVERED, sent.index
                s.delivered[env.seq] = sent.index
                if len(s.delivered) > _DELIVERED_KEPT:
                    for old in list(s.delivered)[: _DELIVERED_KEPT // 2]:
                        s.floor = max(s.floor, old)
                        del s.delivered[old]
            elif env.seq in s.delivered or env.seq <= s.floor:
                item.status, item.pair = Status.DUPLICATE, s.delivered.get(env.seq, 0)
            else:
                item.status = Status.EARLY if forced else Status.UNPAIRED
                if forced:
                    s.early.add(env.seq)
                    s.delivered[env.seq] = 0
        else:
            q = self._queues.get(_pair_key(env))
            if q:
                sent = q.popleft()
                item.status, item.pair = Status.DELIVERED, sent.index
            else:
                item.status = Status.EARLY if forced else Status.UNPAIRED
                if forced:
                    self._early_u[_pair_key(env)] += 1
        if item.status == Status.EARLY:
            self.early += 1
        self._remember(item, skey, sent)
        if sent is not None and sent.t_ns > t:
            return sent.t_ns
        return t

    def _remember(self, item: Item, skey: tuple[Any, ...] | None, sent: _Sent | None) -> None:
        recent = self._recent.get(item.file.key)
        if recent is None:
            recent = self._recent[item.file.key] = deque(maxlen=256)
        recent.append((item, skey, sent))

    def _discarded(self, item: Item) -> None:
        """A `discarded` event: its receive did not deliver the message; a later copy may."""
        number = item.detail.get("recordNo")
        recent = self._recent.get(item.file.key)
        if not isinstance(number, int) or not recent:
            return
        for recv, skey, sent in reversed(recent):
            if recv.rec.record_no != number:
                continue
            item.pair = recv.index
            was = recv.status
            recv.status = Status.DISCARDED
            if was == Status.DELIVERED and skey is not None and sent is not None and recv.env is not None:
                s = self._sessions.get(skey)
                if s is not None:
                    s.delivered.pop(recv.env.seq, None)
                    s.pending[recv.env.seq] = sent
            return

    def _purge(self, f: TraceFile) -> None:
        """The receiver's trace ended: what was sent to it will never be received there."""
        gone = [k for k in self._sessions if (k[3], k[4]) == f.key or (k[4] == 0 and k[3] == f.peer
                                                                          and self._peers_live[f.peer] <= 0)]
        for k in gone:
            s = self._sessions.pop(k)
            for sent in s.pending.values():
                self.unreceived[(self.run.label(k[1], k[2]), self.run.label(k[3], k[4]), sent.type)] += 1
        gone = [k for k in self._queues if (k[3], k[4]) == f.key or (k[4] == 0 and k[3] == f.peer
                                                                        and self._peers_live[f.peer] <= 0)]
        for k in gone:
            for sent in self._queues.pop(k):
                self.unreceived[(self.run.label(k[1], k[2]), self.run.label(k[3], k[4]), sent.type)] += 1
