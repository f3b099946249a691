"""``lineage``: the tasks and objects an object was built from.

An object's lineage is the task that returned it (its ``SubmitTask``: function,
arguments, LIN-001) and, recursively, the lineage of every object that task's
arguments mention; objects created by ``put`` (a ``put`` transition) are
leaves. Traces are read file by file, in any order (lineage needs no merge).

Memory stays bounded: one pass keeps an index of at most ``index_limit``
tasks; when a run has more, the lineage is found level by level instead, one
pass per level, keeping only the tasks on the way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator

from refrpc.codec import TraceKind
from refrpc.core import messages as m

from ._messages import arg_object_ids, decode_frame0, peek_type
from ._source import Progress, Run


@dataclass(frozen=True)
class Producer:
    """How an object came to be."""

    object_id: str
    #: "task" (a return of a task), "put", or "unknown" (no record says).
    how: str
    task_id: str = ""
    function: str = ""
    submitter: str = ""
    executor: str = ""
    #: Attempts seen (1, and more for retries and reconstructions).
    attempts: tuple[int, ...] = ()
    #: Objects the task's arguments mention, in order.
    args: tuple[str, ...] = ()
    #: Where the put was recorded.
    peer: str = ""


@dataclass
class Lineage:
    """The lineage of one object: producers by object id, and the order to print them."""

    root: str
    producers: dict[str, Producer] = field(default_factory=dict)
    #: True when ``max_depth`` cut the lineage short.
    truncated: bool = False

    def walk(self) -> Iterator[tuple[int, Producer]]:
        """(depth, producer) in depth-first order, each object once."""
        seen: set[str] = set()
        stack = [(0, self.root)]
        while stack:
            depth, oid = stack.pop()
            p = self.producers.get(oid, Producer(oid, "unknown"))
            yield depth, p
            if oid in seen:
                continue
            seen.add(oid)
            stack.extend((depth + 1, a) for a in reversed(p.args))

    def render(self) -> list[str]:
        lines: list[str] = []
        shown: set[str] = set()
        for depth, p in self.walk():
            pad = "  " * depth + ("<- " if depth else "")
            again = p.object_id in shown and p.how == "task"
            shown.add(p.object_id)
            if p.how == "task":
                tries = f" attempts {','.join(map(str, p.attempts))}" if p.attempts != (1,) else ""
                what = (f"return of task {p.task_id} {p.function}"
                        f" (submitted by {p.submitter}, ran on {p.executor}){tries}")
                if again:
                    what = f"return of task {p.task_id} (see above)"
            elif p.how == "put":
                what = f"put at {p.peer}"
            else:
                what = "origin unknown (no SubmitTask or put of it in the traces)"
            lines.append(f"{pad}{p.object_id}: {what}")
        if self.truncated:
            lines.append("... (cut at --depth)")
        return lines


def _is_put(detail: str) -> bool:
    try:
        d = json.loads(detail)
    except ValueError:
        return False
    return isinstance(d, dict) and d.get("table") == "owner-object" and d.get("event") == "put"


def _producers(run: Run, wanted: set[str] | None, limit: int,
               progress: Progress | None) -> tuple[dict[str, Producer], bool]:
    """Producers of ``wanted`` objects (all, if None, up to ``limit``); True if the limit was hit."""
    found: dict[str, Producer] = {}
    traced = set(run.by_key)
    over = False
    for tf in run.files:
        for rec in run.records(tf, progress):
            if rec.kind is TraceKind.EVENT:
                if rec.event_name == "transition" and rec.object_id and '"put"' in rec.detail and (
                        wanted is None or rec.object_id in wanted) and _is_put(rec.detail):
                    found.setdefault(rec.object_id, Producer(rec.object_id, "put", peer=tf.label))
                continue
            if rec.kind is TraceKind.SEND:
                pass
            elif rec.kind is TraceKind.RECV and (rec.remote_peer, rec.remote_incarnation) not in traced:
                pass  # the submitter has no trace: its SubmitTask is known from the receive only
            else:
                continue
            if peek_type(rec.envelope) != "SubmitTask":
                continue
            try:
                body = decode_frame0(rec.envelope).body
            except Exception:
                continue
            assert isinstance(body, m.SubmitTask)
            returns = body.return_ids if wanted is None else [r for r in body.return_ids if r in wanted]
            if not returns:
                continue
            sub, exe = (tf.label, run.label(rec.remote_peer, rec.remote_incarnation))
            if rec.kind is TraceKind.RECV:
                sub, exe = exe, sub
            args = arg_object_ids(body)
            for rid in returns:
                old = found.get(rid)
                attempts = tuple(sorted({*(old.attempts if old else ()), body.attempt}))
                found[rid] = Producer(rid, "task", body.task_id, body.function, sub, exe, attempts, args)
            if wanted is None and len(found) > limit:
                over = True
                return found, over
    return found, over


def lineage(run: Run, object_id: str, *, max_depth: int = 1000, index_limit: int = 200_000,
            progress: Progress | None = None) -> Lineage:
    """The lineage of ``object_id`` in ``run``."""
    result = Lineage(object_id)
    index, over = _producers(run, None, index_limit, progress)
    if not over:
        frontier = [object_id]
        depth = 0
        while frontier:
            if depth > max_depth:
                result.truncated = True
                break
            nxt: list[str] = []
            for oid in frontier:
                if oid in result.producers:
                    continue
                p = index.get(oid)
                if p is not None:
                    result.producers[oid] = p
                    nxt.extend(p.args)
            frontier, depth = nxt, depth + 1
        return result
    del index
    wanted = {object_id}
    depth = 0
    while wanted:
        if depth > max_depth:
            result.truncated = True
            break
        found, _ = _producers(run, wanted, index_limit, progress)
        result.producers.update(found)
        wanted = {a for p in found.values() for a in p.args if a not in result.producers}
        depth += 1
    return result
