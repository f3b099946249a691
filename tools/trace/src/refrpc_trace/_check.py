"""What the end of a run shows: leaks at quiescence, deaths not handled, holders.

:func:`end_checks` runs once the whole run has been replayed. The run is
quiescent then: every trace has ended, so whatever an owner still keeps alive
at the end of its trace, and nothing reaches, is a leak. Each finding cites the
requirement broken and the shortest sequence of records showing it.

:func:`holders` answers "who holds this object now, and why" from the replay's
state at any point of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._findings import Kind
from ._replay import Replay
from ._state import SCOPE_COUNTERS, Obj, PeerKey


def end_checks(r: Replay) -> None:
    """Judge the state left at the end of the run (call after :meth:`Replay.finish`)."""
    for o in list(r.objects.values()):
        if o.owner is None:
            continue
        _grant_leaks(r, o)
        if o.owner in r.dead or o.owner in r.stopped:
            _fate_checks(r, o)
            continue  # the objects of a dead owner die with it (FATE-001)
        _entry_leaks(r, o)
        _borrower_entry_leaks(r, o)
        _value_leaks(r, o)
        _fate_checks(r, o)
    for (owner, oid, fid), ev in r.confirm_due.items():
        o = r.find(oid)
        g = o.grants.get(fid) if o is not None else None
        if g is None or owner in r.dead or g.borrower in r.fenced.get(owner, {}):
            continue
        r.finding("BOR-010", Kind.OWNER_DEATH, f"{r.label(owner)} kept grant {fid} of {oid} that the dead "
                  f"{r.label(g.requester)} requested for {r.label(g.borrower)}, but never sent ConfirmBorrow to it",
                  [g.cause, ev], oid)


def _traced(r: Replay, peer: PeerKey) -> bool:
    return peer in r.run.by_key


def _grant_leaks(r: Replay, o: Obj) -> None:
    owner = o.owner
    assert owner is not None
    for fid, g in o.grants.items():
        b = g.borrower
        if b == owner or b in r.dead or b in r.fenced.get(owner, {}):
            continue
        released = o.releases.get(b, {}).get(fid) or o.releases.get(g.requester, {}).get(fid)
        if released is not None:
            continue  # the release was sent; the owner had not applied it when the run ended
        if not _traced(r, b):
            continue  # nothing to say about a peer whose trace is missing
        dropped = o.dropped.get(b)
        learned = r.fenced.get(b, {}).get(owner)
        later = r.last_send.get((b, owner))
        # B had to release when its holds reached zero (BOR-005); if the owner died
        # before B sent it anything more, B may have been about to (and then must not, BOR-024).
        chance = owner not in r.dead and owner not in r.stopped or (
            later is not None and later.index > dropped.index and (learned is None or learned.index > later.index)
        ) if dropped is not None else False
        if dropped is not None and (learned is None or learned.index > dropped.index) and chance:
            r.finding("BOR-005", Kind.LEAK, f"{o.object_id} leaks: {r.label(b)} stopped holding it but never "
                      f"released grant {fid}, so its owner {r.label(owner)} keeps it alive for nothing",
                      [g.cause, dropped], o.object_id)
            continue
        if owner in r.dead or owner in r.stopped:
            continue
        zero = _all_zero(o.counters.get(b))
        if zero and b in o.recorded_entries and o.entries.get(b) is not None:
            r.finding("BOR-005", Kind.LEAK, f"{o.object_id} leaks: every hold of {r.label(b)} on it is zero but it "
                      f"neither released grant {fid} nor deleted its entry", [g.cause, o.last_hold.get(b)],
                      o.object_id)
            continue
        f = g.requester
        if (f not in (b, owner) and not g.delivered and fid not in o.sent_grants and _traced(r, f)
                and f not in r.dead and b not in o.received and b not in o.entries):
            r.finding("BOR-014", Kind.LEAK, f"{o.object_id} leaks: {r.label(f)} obtained grant {fid} for "
                      f"{r.label(b)} but never sent it the ref, and never released the grant", [g.cause],
                      o.object_id)


def _all_zero(counters: dict[str, int] | None) -> bool:
    return counters is not None and all(counters.get(c, 0) == 0 for c in SCOPE_COUNTERS)


def _entry_leaks(r: Replay, o: Obj) -> None:
    owner = o.owner
    assert owner is not None
    mine = o.counters.get(owner)
    if mine is None or not _all_zero(mine) or o.state not in ("ready", "failed"):
        return
    if o.grants:
        return  # kept by grants: judged by _grant_leaks
    r.finding("OWN-005", Kind.LEAK, f"{o.object_id} leaks: every counter of its owner {r.label(owner)} is zero and "
              f"nothing holds a grant, but it stays {o.state} instead of being reclaimed",
              [o.state_cause, o.last_hold.get(owner)], o.object_id)


def _borrower_entry_leaks(r: Replay, o: Obj) -> None:
    """BOR-005: a non-owner whose holds are all zero must delete its entry (and release its grants)."""
    owner = o.owner
    for peer in o.recorded_entries:
        if peer == owner or peer in r.dead or peer in r.stopped or o.entries.get(peer) is None:
            continue
        if owner is not None and r.fenced.get(peer, {}).get(owner) is not None:
            continue
        if any(g.borrower == peer for g in o.grants.values()):
            continue  # judged with its grant by _grant_leaks
        if _all_zero(o.counters.get(peer)):
            r.finding("BOR-005", Kind.LEAK, f"{r.label(peer)} keeps an entry for {o.object_id} although every hold "
                      "on it is zero", [o.last_hold.get(peer)], o.object_id)


def _value_leaks(r: Replay, o: Obj) -> None:
    owner = o.owner
    assert owner is not None
    if o.reclaimed is None or o.state not in ("released", "deleted"):
        return
    dead_ids = {p for p, _ in r.dead}
    for loc, ev in o.locations.items():  # FreeObjects removes a location: these were never told
        if loc == owner[0] or loc in dead_ids:
            continue
        if loc not in o.freed_at:
            r.finding("OWN-005", Kind.LEAK, f"the value of {o.object_id} leaks at {loc}: its owner "
                      f"{r.label(owner)} reclaimed it but never sent FreeObjects to that location",
                      [ev, o.reclaimed], o.object_id)
    for loc, ev in o.copies.items():
        if loc in dead_ids or loc == owner[0]:
            continue
        freed = o.free_received.get(loc)  # not o.freed_at: one still in flight when the holder left is no leak
        if freed is not None:
            r.finding("GC-004", Kind.LEAK, f"the copy of {o.object_id} at {loc} leaks: the owner told it to drop "
                      "the copy and it never did", [ev, o.freed_at.get(loc), freed], o.object_id)


def _fate_checks(r: Replay, o: Obj) -> None:
    """FATE-001, FATE-002: what peers that declared the owner dead did with it."""
    owner = o.owner
    if owner is None:
        return
    for peer, state in o.entries.items():
        fence = r.fenced.get(peer, {}).get(owner)
        if fence is None or peer not in o.recorded_entries or state in ("failed",):
            continue
        if peer in r.dead or peer in r.stopped:
            continue
        r.finding("FATE-001", Kind.OWNER_DEATH, f"{r.label(peer)} declared {r.label(owner)} dead but its entry for "
                  f"{o.object_id} stays {state}: it must fail with OWNER_DIED", [fence], o.object_id)
    for loc, ev in o.copies.items():
        key = o.copy_keys.get(loc)  # the incarnation that stored it: a later one never held it
        fence = r.fenced.get(key, {}).get(owner) if key is not None else None
        if fence is not None and key not in r.dead:
            r.finding("FATE-002", Kind.OWNER_DEATH, f"{loc} keeps its copy of {o.object_id} after declaring its "
                      f"owner {r.label(owner)} dead", [ev, fence], o.object_id)


# ---------------------------------------------------------------- holders
@dataclass
class Holder:
    """One peer holding a ref, and why."""

    peer: str
    reasons: list[str] = field(default_factory=list)
    #: Records (``#N``) that show each reason.
    evidence: list[int] = field(default_factory=list)

    def add(self, reason: str, index: int | None = None) -> None:
        self.reasons.append(reason)
        if index is not None:
            self.evidence.append(index)


def holders(r: Replay, oid: str) -> tuple[Obj | None, list[Holder]]:
    """Who holds a ref to ``oid`` at the replay's current point, and why.

    Reasons, from the messages and (when recorded) hold events: the owner's
    handles, pending tasks and containment; borrowers' grants; executors'
    task holds; containment in other values; registrations in flight.
    """
    o = r.find(oid)
    if o is None:
        return None, []
    out: dict[PeerKey, Holder] = {}

    def h(peer: PeerKey) -> Holder:
        if peer not in out:
            out[peer] = Holder(r.label(peer))
        return out[peer]

    owner = o.owner
    dead = r.dead
    if owner is not None and owner not in dead and o.state not in ("deleted",):
        h(owner).add(f"owner (entry {o.state or 'unknown'})", o.state_cause.index if o.state_cause else None)
    for peer, counters in o.counters.items():
        if peer in dead:
            continue
        for counter, value in counters.items():
            if value > 0 and counter != "lineageRefs":
                h(peer).add(f"{counter} = {value} (hold events)", o.last_hold[peer].index if peer in o.last_hold else None)
    for (submitter, task), ev in o.task_refs.items():
        if submitter not in dead:
            h(submitter).add(f"pending task {task.replace('actor:', 'actor creation ')}", ev.index)
    for (executor, submitter, task, attempt), ev in o.task_holds.items():
        if executor not in dead:
            h(executor).add(f"task hold for {task} (attempt {attempt}) from {r.label(submitter)}", ev.index)
    for container, (holder, ev) in o.contained_in.items():
        c = r.find(container)
        if holder not in dead and (c is None or c.reclaimed is None) and (c is None or c.state != "deleted"):
            h(holder).add(f"contained in {container}", ev.index)
    for fid, g in o.grants.items():
        if g.borrower in dead:
            continue
        via = f", requested by {r.label(g.requester)}" if g.requester != g.borrower else ""
        state = "" if g.delivered or g.borrower in o.received or g.requester == g.borrower else ", not delivered yet"
        h(g.borrower).add(f"borrowed under grant {fid}{via}{state}", g.cause.index)
    for fid, (borrower, requester, ev) in o.registering.items():
        if requester not in dead:
            h(requester).add(f"registering {r.label(borrower)} as borrower ({fid})", ev.index)
    for peer, state in o.entries.items():
        if peer not in out and peer not in dead and peer in o.recorded_entries:
            h(peer).add(f"borrower entry ({state})")
    return o, list(out.values())
