"""``export --perfetto``: the run as Chrome/Perfetto trace-event JSON.

One process per peer incarnation, with a ``messages`` thread (a slice per
message sent or received, an arrow from each send to the receive that
delivered it) and an ``events`` thread (the trace's local events as instants).
Each object is an async slice on its owner, from creation to reclamation, with
its life-line steps as instants inside; its reference counts (grants, pending
tasks, task holds, containment) are a counter track, for the first
``counter_limit`` objects, next to a ``live objects`` counter per owner.

Events are written as they are produced, so the export runs in bounded memory.
Slices of one thread never overlap (each lasts until the next one begins, at
most 1 ms), which is what the viewers need to nest them and bind arrows.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import IO, Any

from refrpc.codec import TraceKind

from ._merge import Item, Status
from ._source import Run
from ._state import Obj, Step

MESSAGES_TID = 1
EVENTS_TID = 2
#: Smallest slice and shift between slices of one thread, in microseconds.
_EPS = 0.001
#: Longest slice, in microseconds.
_MAX_SLICE = 1000.0
_PENDING_SENDS = 1_000_000
_CLOSING_STEPS = frozenset({"freed", "deleted", "owner-died"})


class PerfettoWriter:
    """Writes trace-event JSON to ``out`` as records and life-line steps arrive."""

    def __init__(self, run: Run, out: IO[str], *, counter_limit: int = 64, everything: bool = False) -> None:
        self.run = run
        self.out = out
        self.counter_limit = counter_limit
        self.everything = everything
        self.events = 0
        self._pids: dict[tuple[str, int], int] = {}
        self._last_ts: dict[tuple[int, int], float] = {}
        self._pending: dict[tuple[int, int], dict[str, Any]] = {}
        self._sends: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._open: dict[str, tuple[int, float]] = {}
        self._counted: set[str] = set()
        self._live: dict[int, int] = {}
        self._end_ts = 0.0
        self._first = True
        out.write('{"displayTimeUnit": "ms", "traceEvents": [\n')
        for f in run.files:
            self._pid(f.key, f"{f.label} ({f.implementation})")

    # ------------------------------------------------------------ plumbing
    def _emit(self, ev: dict[str, Any]) -> None:
        if not self._first:
            self.out.write(",\n")
        self._first = False
        self.out.write(json.dumps(ev, separators=(",", ":")))
        self.events += 1

    def _pid(self, key: tuple[str, int], name: str | None = None) -> int:
        pid = self._pids.get(key)
        if pid is None:
            pid = self._pids[key] = len(self._pids) + 1
            label = name or f"{self.run.label(*key)} (no trace)"
            self._emit({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": label}})
            self._emit({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
            for tid, tname in ((MESSAGES_TID, "messages"), (EVENTS_TID, "events")):
                self._emit({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tname}})
        return pid

    def _slice(self, pid: int, tid: int, ts: float, ev: dict[str, Any]) -> float:
        """Queue a slice on (pid, tid) starting no earlier than ``ts``; returns its start."""
        track = (pid, tid)
        last = self._last_ts.get(track)
        if last is not None and ts < last + _EPS:
            ts = last + _EPS
        prev = self._pending.pop(track, None)
        if prev is not None:
            prev["dur"] = round(min(ts - prev["ts"], _MAX_SLICE), 3)
            self._emit(prev)
        ev.update(ph="X", pid=pid, tid=tid, ts=round(ts, 3))
        ts = ev["ts"]
        self._pending[track] = ev
        self._last_ts[track] = ts
        self._end_ts = max(self._end_ts, ts)
        return float(ts)

    # ------------------------------------------------------------ records
    def item(self, it: Item) -> None:
        """Take the next record of the merged run."""
        kind = it.rec.kind
        pid = self._pid(it.file.key)
        ts = it.time_s * 1e6
        self._end_ts = max(self._end_ts, ts)
        if kind is TraceKind.EVENT:
            if it.type == "hold" and not self.everything:
                return
            args = {"index": it.index, "text": it.text()}
            scope = "p" if it.type in ("peer-declared-dead", "fail-stop") else "t"
            self._emit({"ph": "i", "s": scope, "name": it.type, "cat": "event", "pid": pid, "tid": EVENTS_TID,
                        "ts": round(ts, 3), "args": args})
            return
        if it.type == "Heartbeat" and not self.everything:
            return
        name = it.type or "undecodable"
        cat = "send" if kind is TraceKind.SEND else "recv"
        flow_from = None
        if kind is TraceKind.RECV and it.status == Status.DELIVERED and it.pair:
            flow_from = self._sends.pop(it.pair, None)
            if flow_from is not None:
                ts = max(ts, flow_from[1])
        start = self._slice(pid, MESSAGES_TID, ts, {
            "name": name, "cat": cat,
            "args": {"index": it.index, "status": it.status, "peer": it.peer, "remote": it.remote,
                     "text": it.text()},
        })
        if kind is TraceKind.SEND and it.status == Status.FIRST:
            self._sends[it.index] = (pid, start)
            if len(self._sends) > _PENDING_SENDS:
                self._sends.popitem(last=False)
        if flow_from is not None:
            spid, sts = flow_from
            self._emit({"ph": "s", "id": it.pair, "name": name, "cat": "message", "pid": spid,
                        "tid": MESSAGES_TID, "ts": sts})
            self._emit({"ph": "f", "bp": "e", "id": it.pair, "name": name, "cat": "message", "pid": pid,
                        "tid": MESSAGES_TID, "ts": start})

    # ------------------------------------------------------------ objects
    def step(self, o: Obj, st: Step) -> None:
        """Take a life-line step of an object (the Replay's ``on_step``)."""
        owner = o.owner
        if owner is None:
            return
        pid = self._pid(owner)
        ts = round(st.evidence.time_s * 1e6, 3)
        oid = o.object_id
        opened = self._open.get(oid)
        if st.what == "created" and opened is None:
            self._open[oid] = (pid, ts)
            self._emit({"ph": "b", "cat": "object", "name": oid, "id": oid, "pid": pid, "ts": ts,
                        "args": {"text": st.text}})
            self._live[pid] = self._live.get(pid, 0) + 1
            self._emit({"ph": "C", "name": "live objects", "pid": pid, "ts": ts, "args": {"objects": self._live[pid]}})
            if len(self._counted) < self.counter_limit:
                self._counted.add(oid)
        elif opened is not None:
            bpid, bts = opened
            ts = max(ts, bts)
            if st.what in _CLOSING_STEPS:
                del self._open[oid]
                self._emit({"ph": "e", "cat": "object", "name": oid, "id": oid, "pid": bpid, "ts": ts,
                            "args": {"text": st.text}})
                self._live[bpid] -= 1
                self._emit({"ph": "C", "name": "live objects", "pid": bpid, "ts": ts,
                            "args": {"objects": self._live[bpid]}})
            else:
                self._emit({"ph": "n", "cat": "object", "name": st.what, "id": oid, "pid": bpid, "ts": ts,
                            "args": {"text": st.text, "peer": st.evidence.peer, "index": st.evidence.index}})
        if oid in self._counted:
            counts = {
                "grants": len(o.grants),
                "pending tasks": len(o.task_refs),
                "task holds": len(o.task_holds),
                "contained in": len(o.contained_in),
            }
            local = (o.counters.get(owner) or {}).get("localRefs")
            if local is not None:
                counts["local refs"] = local
            self._emit({"ph": "C", "name": f"refs {oid}", "pid": pid, "ts": ts, "args": counts})

    def close(self) -> None:
        """Finish the JSON document: end open slices and object lifetimes at the end of the run."""
        end = round(self._end_ts + _EPS, 3)
        for track, ev in list(self._pending.items()):
            ev["dur"] = round(min(max(end - ev["ts"], _EPS), _MAX_SLICE), 3)
            self._emit(ev)
        self._pending.clear()
        for oid, (pid, bts) in list(self._open.items()):
            self._emit({"ph": "e", "cat": "object", "name": oid, "id": oid, "pid": pid, "ts": max(end, bts),
                        "args": {"text": "alive at the end of the run"}})
        self._open.clear()
        self.out.write("\n]}\n")
