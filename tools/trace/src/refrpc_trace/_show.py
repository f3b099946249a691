"""``show``: the merged, decoded message list, with requests matched to replies.

Each message is listed once, at its first transmission (``#N``), with the
receive only when it says something more (a duplicate, a receive from a peer
with no trace, a frame that did not decode). A reply names the request it
answers (``re #N``) and how long after it came; requests are matched by the
ids the protocol gives them (task id and attempt, object and forward id,
request id), never by time.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any, Iterable

from refrpc.codec import TraceKind

from ._merge import Item, Merger, Status
from ._messages import object_ids, program_objects, reply_is_final, reply_key, request_key, task_ids
from ._source import Run

#: Requests remembered while waiting for their replies.
_OPEN_REQUESTS = 100_000
#: Events shown without --events.
NOTABLE_EVENTS = frozenset({"peer-declared-dead", "fail-stop", "discarded"})


class TimeError(ValueError):
    """A time argument that cannot be read."""


@dataclass(frozen=True)
class TimePoint:
    """A point of the run: ``#N`` (a record of the merged order) or seconds on the aligned clock."""

    index: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> "TimePoint":
        t = text.strip()
        if t.startswith("#") and t[1:].isdigit():
            return cls(index=int(t[1:]))
        hit = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s|us)?", t)
        if hit is None:
            raise TimeError(f"{text!r} is not a time: use #N (a record number of show) or seconds (1.5, 1.5s, 1500ms)")
        value = float(hit.group(1))
        unit = hit.group(2) or "s"
        return cls(seconds=value / {"s": 1, "ms": 1e3, "us": 1e6}[unit])

    def reached(self, item: Item) -> bool:
        """Whether ``item`` is at or after this point."""
        if self.index is not None:
            return item.index >= self.index
        assert self.seconds is not None
        return item.time_s >= self.seconds

    def passed(self, item: Item) -> bool:
        """Whether ``item`` lies after this point."""
        if self.index is not None:
            return item.index > self.index
        assert self.seconds is not None
        return item.time_s > self.seconds

    def __str__(self) -> str:
        return f"#{self.index}" if self.index is not None else f"{self.seconds:.6f}s"


@dataclass
class ShowFilter:
    """What ``show`` lists. Empty sets match everything."""

    peers: set[str] = field(default_factory=set)
    objects: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    since: TimePoint | None = None
    until: TimePoint | None = None
    #: Include every event (hold events only with ``everything``).
    events: bool = False
    #: Include heartbeats, retransmissions, duplicates and hold events.
    everything: bool = False

    def __post_init__(self) -> None:
        self.types = {t.lower() for t in self.types}

    def wants(self, item: Item) -> bool:
        if self.since is not None and not self.since.reached(item):
            return False
        if self.until is not None and self.until.passed(item):
            return False
        kind = item.rec.kind
        typ = item.type.lower()
        if self.types and typ not in self.types:
            return False
        if kind is TraceKind.EVENT:
            if not self.types and not (self.events or item.type in NOTABLE_EVENTS or self.everything):
                return False
            if item.type == "hold" and not (self.everything or self.types):
                return False
        else:
            if item.type == "Heartbeat" and not (self.everything or self.types):
                return False
            if not self._visible_record(item):
                return False
        if self.peers and item.peer not in self.peers and item.file.peer not in self.peers and (
                item.remote not in self.peers and item.rec.remote_peer not in self.peers):
            return False
        if self.objects and not (self.objects & self._objects(item)):
            return False
        if self.tasks and not (self.tasks & self._tasks(item)):
            return False
        return True

    def _visible_record(self, item: Item) -> bool:
        st = item.status
        if item.rec.kind is TraceKind.SEND:
            return st == Status.FIRST or self.everything
        return st in (Status.UNPAIRED, Status.EARLY, Status.UNDECODABLE) or (
            self.everything and st != Status.DELIVERED)

    @staticmethod
    def _objects(item: Item) -> set[str]:
        if item.env is not None:
            return object_ids(item.env.body)
        ids = {item.rec.object_id} if item.rec.object_id else set()
        key = item.detail.get("key")
        if isinstance(key, str):
            ids.add(key)
        return ids | program_objects(item.detail)

    @staticmethod
    def _tasks(item: Item) -> set[str]:
        if item.env is not None:
            return task_ids(item.env.body)
        ids = {item.rec.task_id} if item.rec.task_id else set()
        key = item.detail.get("key")
        if isinstance(key, str):
            ids.add(key)
        return ids | program_objects(item.detail)


class Matcher:
    """Matches replies to requests as the merged records go by."""

    def __init__(self) -> None:
        self.open: OrderedDict[tuple[object, ...], list[tuple[int, float]]] = OrderedDict()

    def see(self, item: Item) -> tuple[int, float] | None:
        """Record a request; for a reply, return (request index, request time)."""
        if item.rec.kind is not TraceKind.SEND or item.status != Status.FIRST or item.env is None:
            return None
        env = item.env
        rq = request_key(env.sender, env.receiver, env.body)
        if rq is not None:
            self.open.setdefault(rq, []).append((item.index, item.time_s))
            if len(self.open) > _OPEN_REQUESTS:
                self.open.popitem(last=False)
            return None
        rp = reply_key(env.sender, env.receiver, env.body)
        if rp is None:
            return None
        waiting = self.open.get(rp)
        if not waiting:
            return None
        first = waiting[0]
        if reply_is_final(env.body):
            waiting.pop(0)
            if not waiting:
                del self.open[rp]
        return first


def line(item: Item, reply_to: tuple[int, float] | None) -> str:
    """The text line of one record in ``show``."""
    tail = ""
    if reply_to is not None:
        tail = f"   re #{reply_to[0]} (+{(item.time_s - reply_to[1]) * 1e3:.1f} ms)"
    st = item.status
    if item.rec.kind is TraceKind.RECV:
        why = {Status.UNPAIRED: "received; no send of it in any trace", Status.EARLY: "received before its send",
               Status.UNDECODABLE: "received", Status.DUPLICATE: f"duplicate of #{item.pair}",
               Status.DISCARDED: "discarded"}.get(st, st)
        tail += f"   [{why}]"
    elif st == Status.RETRANSMIT:
        tail += f"   [retransmission of #{item.pair}]" if item.pair else "   [retransmission]"
    if item.rec.kind is TraceKind.EVENT and item.type == "discarded" and item.pair:
        tail += f"   [of #{item.pair}]"
    return f"#{item.index:<7} {item.time_s:11.6f}s  {item.peer:<12} {item.text()}{tail}"


def to_json(item: Item, reply_to: tuple[int, float] | None) -> dict[str, Any]:
    rec = item.rec
    out: dict[str, Any] = {
        "index": item.index, "time_s": round(item.time_s, 9), "peer": item.peer, "kind": rec.kind.value,
        "type": item.type, "status": item.status, "text": item.text(),
    }
    if item.is_message:
        out.update(remote=item.remote, seq=rec.seq, pair=item.pair or None)
        if item.error:
            out["error"] = item.error
    else:
        out.update(object_id=rec.object_id, task_id=rec.task_id, detail=item.detail)
    if reply_to is not None:
        out["reply_to"] = reply_to[0]
    return out


def show(run: Run, merger: Iterable[Item], flt: ShowFilter, out: IO[str], *, as_json: bool = False,
         limit: int | None = None) -> int:
    """Write the filtered records to ``out``; returns how many were shown."""
    matcher = Matcher()
    shown = 0
    for item in merger:
        reply_to = matcher.see(item)
        if not flt.wants(item):
            continue
        if limit is not None and shown >= limit:
            if not as_json:
                out.write(f"-- stopped after {limit} lines (--limit)\n")
            return shown
        shown += 1
        if as_json:
            out.write(json.dumps(to_json(item, reply_to)) + "\n")
        else:
            out.write(line(item, reply_to) + "\n")
    if not as_json and isinstance(merger, Merger):
        for (sender, receiver, typ), n in sorted(merger.unreceived.items()):
            if typ == "Heartbeat" and not flt.everything:
                continue
            out.write(f"-- {n} {typ} from {sender} to {receiver} never received (lost, or the receiver stopped)\n")
    return shown
