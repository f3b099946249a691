"""Global checks of the spec's guarantees over a simulated cluster.

``safety_violations`` runs after every step; ``liveness_violations`` once the
cluster is quiescent. Both return human-readable problems citing the guarantee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._sim import Cluster


def safety_violations(cl: Cluster) -> list[str]:
    """OWN-004 across peers: a live, non-orphaned holder's object still has its value."""
    dead = cl.dead_view()
    out: list[str] = []
    for p in cl.peers.values():
        if not p.alive or (p.name, p.core.incarnation) in dead:
            continue
        # Holds that exist only for a dead peer (a task it submitted, a registration
        # made out to it) protect nothing live: fate-sharing (FATE-003) excuses them.
        orphan: dict[str, int] = {}
        for ex in p.core.exec_tasks.values():
            if (ex.owner, ex.owner_incarnation) in dead:
                for oid in ex.held:
                    orphan[oid] = orphan.get(oid, 0) + 1
        dead_names = {name for name, _ in dead}
        for reg in p.core.outgoing.values():
            if reg.purpose[0] in ("reply", "abandon") and reg.borrower in dead_names:
                orphan[reg.object_id] = orphan.get(reg.object_id, 0) + 1
        for oid, b in p.core.borrowed.items():
            if b.state == "failed":
                continue
            owner = cl.peers.get(b.owner)
            if owner is None or not owner.alive or (b.owner, b.ref.owner_incarnation) in dead:
                continue
            if b.holds() - orphan.get(oid, 0) <= 0:
                continue
            e = owner.core.owned.get(oid)
            if e is None or e.state == "released":
                out.append(
                    f"SAFETY (OWN-004): {p.name} holds {oid} (holds={b.holds()}, grants={list(b.grants)}) "
                    f"but its owner {b.owner} has {'no entry' if e is None else 'released it'}\n"
                    f"  owner story: {owner.core.story(oid)}\n  holder story: {p.core.story(oid)}"
                )
    return out


def primary_copy_violations(cl: Cluster) -> list[str]:
    """GC-005: a live holder keeps the primary copy of every value its live owner
    still lists as ready there (only the owner's FreeObjects may drop it)."""
    dead = cl.dead_view()
    out = []
    for owner in cl.peers.values():
        if not owner.alive or (owner.name, owner.core.incarnation) in dead:
            continue
        for oid, e in owner.core.owned.items():
            if e.state != "ready" or not e.locations or e.value is not None:
                continue
            primary = next(iter(e.locations))
            holder = cl.peers.get(primary)
            if holder is None or not holder.alive or (primary, holder.core.incarnation) in dead:
                continue
            if oid not in holder.store:
                out.append(f"SAFETY (GC-005): {owner.name} lists {oid} as ready at {primary}, which dropped its primary copy\n"
                           f"  owner story: {owner.core.story(oid)}\n  holder story: {holder.core.story(oid)}")
    return out


def relay_violations(cl: Cluster) -> list[str]:
    """LOC-020, LOC-022: an owner keeps relays only for a ready object fetched from
    stored copies, and a relay is never also a location (it holds no whole copy)."""
    out = []
    for owner in cl.peers.values():
        if not owner.alive:
            continue
        for oid, e in owner.core.owned.items():
            if not e.relays:
                continue
            if e.state != "ready" or e.value is not None:
                out.append(f"SAFETY (LOC-022): {owner.name} keeps relays {list(e.relays)} for {oid}, "
                           f"which is {e.state}{' and inline' if e.value is not None else ''}\n"
                           f"  owner story: {owner.core.story(oid)}")
            both = [p for p in e.relays if p in e.locations]
            if both:
                out.append(f"SAFETY (LOC-022): {owner.name} lists {both} as relays and locations of {oid}\n"
                           f"  owner story: {owner.core.story(oid)}")
    return out


def liveness_violations(cl: Cluster) -> list[str]:
    """G-liveness: once quiescent with every handle dropped, nothing is left anywhere."""
    out: list[str] = []
    for p in cl.peers.values():
        if not p.alive:
            continue
        c = p.core
        leftovers = {
            "owned": list(c.owned),
            "borrowed": list(c.borrowed),
            "tasks": list(c.tasks),
            "exec_tasks": [k[2] for k in c.exec_tasks],
            "outgoing": list(c.outgoing),
            "copies": list(c.copies),
            "store": list(p.store),
            "running": [k[0] for k in p.running],
            "status_waiters": list(c.status_waiters),
            "status_wait_counts": list(c.status_wait_counts),
        }
        for what, items in leftovers.items():
            if items:
                stories = "\n".join(f"    {i}: {c.story(i)}" for i in items[:3] if isinstance(i, str))
                out.append(f"LIVENESS: {p.name} still has {what} {items[:5]}\n{stories}")
    return out
