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
from typing import Any

from ..core import events as ev
from ..core.messages import PeerSummary
from ._membership import HEAD
from ._node import Node
from ._refs import call_on


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
    return rows


def cluster_resources(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The resources of the live peers, summed (see ``refrpc.cluster_resources``)."""
    total: dict[str, float] = {}
    for row in rows:
        if row["alive"]:
            for name, amount in row["resources"].items():
                total[name] = total.get(name, 0.0) + amount
    return total


def available_resources(rows: list[dict[str, Any]]) -> dict[str, float]:
    """``cluster_resources`` less one CPU per task each live worker runs now."""
    free = cluster_resources(rows)
    if "CPU" in free:
        busy = sum(sum((r["executing"] or {}).values()) - (r["executing"] or {}).get("replied", 0)
                   for r in rows if r["alive"] and r["role"] == "worker")
        free["CPU"] = max(0.0, free["CPU"] - busy)
    return free
