"""Cluster membership for multi-host clusters: who can run tasks, and where.

Membership is not part of the wire protocol: it is ordinary RefRPC tasks run on
the head peer (``refrpc start --head``). A worker that starts registers itself
with :func:`register`; a driver that joins asks :func:`members` and adds every
member to its placement candidates. Both run on the head's executor.
"""

from __future__ import annotations

import socket
import time

from ..core import events as ev
from ._refs import current_node

#: The head's peer id in every cluster started with ``refrpc start --head``.
HEAD = "head"


def _head_node():
    return current_node()


#: On the head: the process id each registered worker and driver gave (for status).
PIDS: dict[str, int] = {}


#: On the head: the named resources each registered worker offers (TASK-012).
RESOURCES: dict[str, dict[str, float]] = {}


def spread(resources: dict[str, float] | None, names: list[str]) -> dict[str, dict[str, float]]:
    """Share the resources one host offers among its worker processes, so that the
    cluster offers what was asked in all: with at least one of a resource per worker,
    each gets an equal share; with less, the first workers get one each (the last a
    fraction) and the others none. ``{"gpu": 1}`` over w1, w2 -> w1 has the gpu."""
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for name, total in (resources or {}).items():
        if total >= len(names):
            for n in names:
                out[n][name] = total / len(names)
            continue
        left = float(total)
        for n in names:
            if left <= 0:
                break
            out[n][name] = min(1.0, left)
            left -= out[n][name]
    return out


def _adds(rows: list[tuple[str, str, int, str, dict[str, float]]]) -> list:
    """AddPeer stimuli for members as :func:`members` gives them (the receiving peer's
    own row only tells its core which host it is on, TASK-041)."""
    return [lambda sid, p=p, a=a, s=s, r=r, h=h: ev.AddPeer(sid, p, a, s, tuple(sorted(r.items())), h)
            for p, a, s, h, r in rows]


def register(peer: str, address: str, slots: int, host: str, pid: int = 0,
             resources: dict[str, float] | None = None) -> list[tuple[str, str, int, str, dict[str, float]]]:
    """Run on the head: record a worker (its CPU slots and named resources) and
    return every member known so far, as :func:`members` does."""
    node = _head_node()
    members = node.members
    members[peer] = (address, slots, host, time.time())
    PIDS[peer] = pid
    RESOURCES[peer] = dict(resources or {})
    node.handle_soon(*_adds([(peer, address, slots, host, RESOURCES[peer])])).result()
    return [(p, a, s, h, RESOURCES.get(p, {})) for p, (a, s, h, _) in members.items()]


def register_driver(peer: str, address: str, host: str, pid: int = 0) -> None:
    """Run on the head: record a driver (it runs no tasks, but `refrpc memory` shows it)."""
    _head_node().drivers[peer] = (address, 0, host, time.time())
    PIDS[peer] = pid


def peers() -> list[tuple[str, str, int, str]]:
    """Run on the head: every live worker and driver (for `refrpc memory`)."""
    node = _head_node()
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    everyone = {**node.members, **node.drivers}
    return [(p, a, s, h) for p, (a, s, h, _) in everyone.items() if p not in dead]


def drivers() -> list[tuple[str, str]]:
    """Run on the head: every live driver as (peer, address). A worker that registers
    opens a session with each, so that a driver that placed work on an earlier
    incarnation of the same worker learns of the new one (HS-006) and uses it."""
    node = _head_node()
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    return [(p, a) for p, (a, _s, _h, _t) in node.drivers.items() if p not in dead]


def members() -> list[tuple[str, str, int, str, dict[str, float]]]:
    """Run on the head: every registered worker as (peer, address, slots, host, resources)."""
    node = _head_node()
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    return [(p, a, s, h, RESOURCES.get(p, {})) for p, (a, s, h, _) in node.members.items() if p not in dead]


def cluster() -> list[tuple[str, str, str, int, str, int, dict[str, float]]]:
    """Run on the head: every live peer as (peer, role, address, slots, host, pid, resources),
    the head first, then the workers, then the drivers (for ``refrpc status``)."""
    import os

    node = _head_node()
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    rows = [(node.peer_id, "head", node.address, 0, socket.gethostname(), os.getpid(), {})]
    rows += [(p, "worker", a, s, h, PIDS.get(p, 0), RESOURCES.get(p, {})) for p, (a, s, h, _) in node.members.items()
             if p not in dead]
    rows += [(p, "driver", a, 0, h, PIDS.get(p, 0), {}) for p, (a, _s, h, _) in node.drivers.items() if p not in dead]
    return rows
