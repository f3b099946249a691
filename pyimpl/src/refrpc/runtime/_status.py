"""The cluster as a status view sees it: its peers, their roles and CPU slots, and
what each is doing, for ``refrpc.nodes()``, ``refrpc.cluster_resources()`` and
``refrpc status``.

Who is in the cluster comes from the process that knows: a driver that started a
local cluster knows its workers (their processes, names, addresses); a driver
that joined a multi-host cluster asks the head (a membership task,
``_membership.cluster``). What each peer is doing comes from the peer itself,
through the protocol: an ``IntrospectRequest`` asking for its ``PeerSummary``
(INT-006), which its protocol layer answers even while every task slot is busy.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..core import events as ev
from ..core.messages import PeerSummary
from ._membership import HEAD
from ._node import Node
from ._refs import call_on, submit_to, value_of


def _roster(node: Node, cluster: Any) -> list[dict[str, Any]]:
    """Every peer of the cluster as far as this process knows it, with no activity yet."""
    core_workers, named = node.call(lambda: (dict(node.core.workers), dict(node.core.worker_resources))).result(10)
    if cluster is not None:  # this process started the cluster: it knows every worker
        rows = [_row(node.peer_id, "driver", node.address, 0, socket.gethostname(), os.getpid())]
        for name, address in cluster.workers.items():
            slots = core_workers.get(name, (address, 1))[1]
            proc = cluster.processes.get(name)
            row = _row(name, "worker", address, slots, socket.gethostname(), proc.pid if proc is not None else 0,
                       named.get(name, {}))
            row["restarts"] = sum(1 for r in cluster.restarts if r.name == name)
            rows.append(row)
        return rows
    if HEAD in node.call(lambda: set(node.core.remotes)).result(10) and node.peer_id != HEAD:
        members = call_on(node, HEAD, "refrpc.runtime._membership:cluster", timeout=10)
        return [_row(*m) for m in members]
    # A worker (or a head) asking: itself and the peers it places tasks on.
    rows = [_row(node.peer_id, "worker" if node.peer_id != HEAD else "head", node.address, 0, socket.gethostname(), os.getpid())]
    rows += [_row(p, "worker", a, s, "", 0, named.get(p, {})) for p, (a, s) in core_workers.items() if p != node.peer_id]
    return rows


def _row(peer: str, role: str, address: str, slots: int, host: str, pid: int,
         resources: dict[str, float] | None = None) -> dict[str, Any]:
    return {"id": peer, "role": role, "address": address, "alive": True, "host": host, "pid": pid,
            "incarnation": 0, "resources": {"CPU": float(slots), **(resources or {})} if role == "worker" else {}}


def _activity(summary: PeerSummary | None) -> dict[str, Any]:
    if summary is None:  # INT-008: the peer sent none; we know nothing of what it does
        return {"tasks": None, "executing": None, "actors": None, "objects": None}
    return {
        "tasks": {c.state: c.count for c in summary.owned_tasks},
        "executing": {c.state: c.count for c in summary.executing_tasks},
        "actors": [{"id": a.actor_id, "owner": a.peer, "state": a.state} for a in summary.hosted_actors],
        "objects": {"owned": summary.owned_objects, "borrowed": summary.borrowed_objects},
    }


def nodes(node: Node, cluster: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Each peer of the cluster as a dict (see ``refrpc.nodes``)."""
    rows = _roster(node, cluster)
    unknown = [r for r in rows if r["id"] != node.peer_id and r["address"] and not r["address"].endswith(":0")]
    if unknown:  # a session with each (a no-op where one exists), so that each can be asked
        node.handle_soon(*[lambda sid, p=r["id"], a=r["address"]: ev.Connect(sid, p, a) for r in unknown]).result(10)
    remotes = node.call(lambda: {p: (r.state, r.incarnation) for p, r in node.core.remotes.items()}).result(10)
    asked = {row["id"]: node.introspect(row["id"], summary=True) for row in rows}
    books = {}
    for row in rows:  # what each worker's executor says is taken from it now
        if row["role"] == "worker" and row["id"] != node.peer_id and row["alive"]:
            try:
                books[row["id"]] = submit_to(node, row["id"], "refrpc.runtime._status:book_report")
            except Exception:  # noqa: BLE001 - no session with it: shown as unknown
                pass
    deadline = time.monotonic() + timeout
    for row in rows:
        peer = row["id"]
        if peer == node.peer_id:
            row["incarnation"] = node.incarnation
        else:
            state, incarnation = remotes.get(peer, ("connecting", 0))
            row["alive"] = state != "dead"
            row["incarnation"] = incarnation
        try:
            result = asked[peer].result(timeout)
            error = result.error
        except Exception as exc:  # it did not answer in time
            result, error = None, exc
        if error is not None:
            row["alive"] = row["alive"] and "dead" not in str(getattr(error, "message", error))
            row.update(_activity(None))
        else:
            row.update(_activity(result.summary))
        row["taken"] = {} if row["role"] != "worker" else None
        if row["role"] == "worker" and peer == node.peer_id:
            row["taken"] = book_report()["taken"]
        elif peer in books:
            try:
                row["taken"] = value_of(node, books.pop(peer), deadline)["taken"]
            except Exception:  # noqa: BLE001 - dead, or it did not answer in time
                pass
    return rows


def book_report() -> dict[str, dict[str, float]]:
    """What this process's executor offers and what its running tasks and live actors
    take from it now (``{"offer": {...}, "taken": {...}}``, CPU slots and named
    resources). Run on a worker by :func:`nodes` (a runtime task that takes nothing
    and never waits for a slot), or called here."""
    from ._refs import context

    executor = context.executor
    if executor is None:  # a driver: it offers nothing
        return {"offer": {}, "taken": {}}
    offer, taken = executor.book()
    return {"offer": offer, "taken": taken}


def cluster_resources(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The resources of the live peers, summed (see ``refrpc.cluster_resources``)."""
    total: dict[str, float] = {}
    for row in rows:
        if row["alive"]:
            for name, amount in row["resources"].items():
                total[name] = total.get(name, 0.0) + amount
    return total


def available_resources(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``cluster_resources`` less what is taken now: by each live worker's running
    tasks and the actors it hosts, as its executor counts them (``taken``). A host's
    CPU slots are pooled (a task may take more than one worker offers, TASK-040), so
    what is free is counted per host and never below 0. A worker that did not say
    what it has taken counts as having nothing free."""
    total = cluster_resources(rows)
    hosts: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["alive"] and row["role"] == "worker":
            hosts.setdefault(row["host"] or row["id"], []).append(row)
    free = {name: 0.0 for name in total}
    for workers in hosts.values():
        offered: dict[str, float] = {}
        for row in workers:
            taken = row.get("taken")
            for name, amount in row["resources"].items():
                offered[name] = offered.get(name, 0.0) + amount - (amount if taken is None else taken.get(name, 0.0))
        for name, amount in offered.items():
            free[name] = free.get(name, 0.0) + max(0.0, amount)
    return free


# ---------------------------------------------------------------- object stores
def store_report() -> dict[str, Any]:
    """This process's object store: its usage (limit, bytes and objects by kind,
    spill counters) and its objects with where each lies (``memory`` or ``disk``).
    Run on a peer by :func:`stores` (a runtime task), or called here."""
    from ._refs import context

    store = context.node.store
    usage = store.usage() if hasattr(store, "usage") else {"limit": None, "used_bytes": store.used_bytes}
    objects = store.objects() if hasattr(store, "objects") else [(oid, store.size(oid), "primary", "memory")
                                                                  for oid in store.object_ids()]
    return {"usage": usage, "objects": [list(o) for o in objects]}


def stores(node: Node, peers: list[str], timeout: float = 10.0) -> dict[str, dict[str, Any] | None]:
    """:func:`store_report` of each peer (this node's own without asking); None for
    a peer that did not answer within ``timeout`` seconds (e.g. every slot busy)."""
    out: dict[str, dict[str, Any] | None] = {}
    for peer in peers:
        try:
            out[peer] = store_report() if peer == node.peer_id else call_on(
                node, peer, "refrpc.runtime._status:store_report", timeout=timeout)
        except Exception:  # noqa: BLE001 - dead, unreachable or busy: shown as unknown
            out[peer] = None
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "none"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def store_table(reports: dict[str, dict[str, Any] | None]) -> list[str]:
    """Lines of a table: per process, limit, what the stores sharing that limit hold
    (its host's, OBJ-065), used, pinned, secondary, spilled (bytes/objects)."""
    lines = [f"{'object store':<34} {'limit':>10} {'host used':>10} {'used':>16} {'pinned':>16} {'secondary':>16} "
             f"{'spilled':>16} {'spills/restores':>16}"]
    for peer, report in reports.items():
        if report is None:
            lines.append(f"{peer:<34} (did not answer)")
            continue
        u = report["usage"]
        used_objects = u.get("primary_objects", 0) + u.get("secondary_objects", 0)

        def pair(kind: str, objects: int | None = None) -> str:
            count = u.get(f"{kind}_objects", 0) if objects is None else objects
            return f"{_size(u.get(f'{kind}_bytes', 0))}/{count}"

        host = u.get("host_used_bytes", u.get("used_bytes", 0))
        lines.append(f"{peer:<34} {_size(u.get('limit')):>10} {_size(host):>10} {pair('used', used_objects):>16} "
                     f"{pair('pinned'):>16} "
                     f"{pair('secondary'):>16} {pair('spilled'):>16} {u.get('spills', 0):>8}/{u.get('restores', 0):<7}")
    return lines
