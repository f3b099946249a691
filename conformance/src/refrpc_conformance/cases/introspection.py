"""messages.md §2.7 and §3: IntrospectRequest and IntrospectReply, against the control channel's `table`."""

from __future__ import annotations

from typing import Any

from refrpc.core.messages import BorrowerRegistered, IntrospectReply, IntrospectRequest, RegisterBorrower, TableEntry, TaskReply

from .._build import by_value, make_bytes_value, shared
from .._case import case
from .._context import CaseContext
from .._wire import ExpectTimeout
from ._common import expect_reply, open_session, run_echo, task
from .fetch import SMALL_STORE, SPILL_LIMIT, SPILL_SIZE

#: TableEntry fields, in the lowerCamelCase of `table` entries (conformance-hooks.md §2).
FIELDS = {
    "object_id": "objectId",
    "owner": "owner",
    "role": "role",
    "state": "state",
    "local_refs": "localRefs",
    "submitted_task_refs": "submittedTaskRefs",
    "contained_in": "containedIn",
    "borrowers": "borrowers",
    "locations": "locations",
    "lineage_refs": "lineageRefs",
    "size": "size",
    "spilled": "spilled",
}


def as_table_row(entry: TableEntry) -> dict[str, Any]:
    """A TableEntry as the control channel's `table` writes it."""
    row = {}
    for attr, key in FIELDS.items():
        value = getattr(entry, attr)
        row[key] = list(value) if isinstance(value, tuple) else value
    return row


@case(
    "introspection/INT-001-INT-005-reply-matches-table",
    requirements=["INT-001", "INT-005", "INT-004", "INT-002", "CNF-008"],
    features=("core", "borrowing"),
    summary=(
        "The IUT owns a small put value S, with two suite peers registered as its borrowers (zeta first, then "
        "alpha), and a large one L stored at itself, and borrows X from suite peer alpha (hold(shared X)). "
        "Asked with IntrospectRequest, it must answer IntrospectReply echoing the requestId, with one "
        "TableEntry per entry of its table and the same fields as the control channel's `table`: S lists its "
        "borrowers once each in ascending order, L its own PeerId as primary location, X is a borrower row "
        "naming alpha as owner. An unsolicited IntrospectReply full of wrong counts must change nothing. (An "
        "IUT that restricts introspection answers with no entries; the case then notes it.)"
    ),
)
def reply_matches_table(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    zeta = ctx.wire_peer("zeta-borrower")
    alpha = ctx.wire_peer("alpha-borrower")
    link_z = ctx.session(zeta, iut)
    link_a = ctx.session(alpha, iut)
    small = iut.put(b"borrowed twice")
    large = iut.put(make_bytes_value(iut.inline_threshold + 10_000))
    for peer, link in ((zeta, link_z), (alpha, link_a)):
        fid = ctx.new_id(peer)
        link.send(RegisterBorrower(small, peer.peer_id, peer.incarnation, peer.address, fid))
        answer: BorrowerRegistered = ctx.expect(peer, BorrowerRegistered, lambda m, fid=fid: m.forward_id == fid,
                                                requirement="BOR-003", what=f"BorrowerRegistered for {fid}").body
        ctx.require("BOR-003", answer.error is None, "the grant recorded", str(answer.error))
    x = ctx.new_id(alpha)
    t = task(alpha, "hold", [shared(ctx.descriptor(alpha, x, size_hint=8))])
    link_a.send(t)
    expect_reply(ctx, alpha, t)
    iut.quiesce()
    link_z.send(IntrospectRequest(4242))
    reply: IntrospectReply = ctx.expect(zeta, IntrospectReply, lambda m: m.request_id == 4242, requirement="INT-001",
                                        what="IntrospectReply echoing requestId 4242").body
    table = iut.table()
    if not reply.entries:
        ctx.note("the IUT answered with no entries: it restricts introspection to trusted peers (INT-002)")
    else:
        rows = [as_table_row(e) for e in reply.entries]
        ids = [r["objectId"] for r in rows]
        ctx.check("INT-001", len(set(ids)) == len(ids), "one TableEntry per object", ids)
        by_id = {r["objectId"]: r for r in rows}
        listed = {e.get("objectId"): e for e in table}
        ctx.check("INT-001", sorted(by_id) == sorted(listed), "the objects `table` lists", f"reply {sorted(by_id)}; table {sorted(listed)}")
        for oid in sorted(set(by_id) & set(listed)):
            ctx.check("INT-001", by_id[oid] == listed[oid], f"{oid}: the fields `table` gives", f"reply {by_id[oid]}; table {listed[oid]}")
        s, big, held = by_id.get(small, {}), by_id.get(large, {}), by_id.get(x, {})
        expected = sorted([zeta.peer_id, alpha.peer_id], key=lambda p: p.encode())
        ctx.check("INT-005", s.get("borrowers") == expected, f"S's borrowers once each, in ascending byte order: {expected}", s)
        ctx.check("INT-005", (big.get("locations") or [None])[0] == iut.peer_id, f"L's primary location first: {iut.peer_id}", big)
        ctx.check("INT-001", (held.get("role"), held.get("owner"), held.get("borrowers"), held.get("lineageRefs")) ==
                  ("borrower", alpha.peer_id, [], 0), f"X a borrower row: owner {alpha.peer_id}, no borrowers, lineageRefs 0", held)
        ctx.check("INT-001", (s.get("role"), s.get("owner"), s.get("state"), s.get("localRefs")) == ("owner", iut.peer_id, "ready", 1),
                  "S an owner row: ready, one local ref", s)
    bogus = IntrospectReply(4242, tuple(
        TableEntry(oid, iut.peer_id, "owner", "ready", 99, 99, ("nowhere.1",), ("nobody",), ("nobody",), 99, 1)
        for oid in (small, large, x)
    ))
    link_a.send(bogus)
    run_echo(ctx, alpha, link_a, "after the unsolicited IntrospectReply", requirement="INT-004")
    iut.quiesce()
    after = iut.table()
    ctx.check("INT-004", after == table, "the table unchanged by an IntrospectReply", "unchanged" if after == table else f"before {table}; after {after}")


@case(
    "introspection/INT-006-INT-009-summary-counts",
    requirements=["INT-006", "INT-009", "INT-007", "INT-004"],
    features=("core",),
    summary=(
        "The IUT owns two put values and runs a 3 s `sleep` task for suite peer alpha. Asked with "
        "IntrospectRequest(summary = true) while the task runs, it must answer IntrospectReply echoing the "
        "requestId with a summary (`some`): one executing task (resolving or running), as many owned objects "
        "as `table` lists owner rows, every count list sorted by state name with no zero count, actor lists "
        "sorted by actorId. The entries may be left out (INT-007). The answer must not wait for the task."
    ),
    timeout=60.0,
)
def summary_counts(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    alpha = ctx.wire_peer("alpha-status")
    link = ctx.session(alpha, iut)
    iut.put(b"one")
    iut.put(b"two")
    t = task(alpha, "sleep", [by_value(3000)])
    seq = link.send(t)
    ctx.wait_until(alpha, lambda: link.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    link.send(IntrospectRequest(4343, True))
    arrival = ctx.expect(alpha, IntrospectReply, lambda m: m.request_id == 4343, requirement="INT-006",
                         what="IntrospectReply echoing requestId 4343", timeout=2.0)
    replies = alpha.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("INT-006", not replies, "the answer before the running task's reply", [str(r.body) for r in replies])
    summary = arrival.body.summary
    ctx.require("INT-006", summary is not None, "a summary (some)", "none")
    owner_rows = sum(1 for e in iut.table() if e.get("role") == "owner")
    ctx.check("INT-006", summary.owned_objects == owner_rows, f"ownedObjects = {owner_rows} (the owner rows of `table`)",
              summary.owned_objects)
    executing = {c.state: c.count for c in summary.executing_tasks}
    ctx.check("INT-006", sum(executing.values()) == 1 and set(executing) <= {"resolving", "running"},
              "one executing task, resolving or running", executing)
    for name, counts in (("ownedTasks", summary.owned_tasks), ("executingTasks", summary.executing_tasks)):
        states = [c.state for c in counts]
        ctx.check("INT-009", states == sorted(set(states), key=str.encode) and all(c.count >= 1 for c in counts),
                  f"{name}: each state once, ascending, no zero count", [(c.state, c.count) for c in counts])
    for name, actors in (("hostedActors", summary.hosted_actors), ("ownedActors", summary.owned_actors)):
        ids = [a.actor_id for a in actors]
        ctx.check("INT-009", ids == sorted(set(ids), key=str.encode), f"{name}: each actor once, ascending", ids)
    expect_reply(ctx, alpha, t)


#: How many values of SPILL_SIZE the spilled-mark case puts into a store of SPILL_LIMIT.
SPILL_PUTS = 4


@case(
    "introspection/INT-020-spilled-copies-are-marked",
    requirements=["INT-020", "OBJ-030", "OBJ-033"],
    summary=(
        "The IUT is started with a store limit of 1 MiB (REFRPC_IUT_STORE_LIMIT) and puts four values of "
        "400,000 bytes (1.6 MB of stored forms, all held), so it must spill some (OBJ-030). In its `table`, "
        "`spilled` should mark its copies on disk: the rows not marked must fit the limit. A `get` of the oldest "
        "then restores it (OBJ-033) and must give its bytes; the rows not marked must still fit the limit "
        "afterwards. An IUT without store limits marks nothing and is graded by INT-020's SHOULD."
    ),
    iut_env=SMALL_STORE,
    timeout=60.0,
)
def spilled_copies_are_marked(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    data = make_bytes_value(SPILL_SIZE)
    oids = [iut.put(data) for _ in range(SPILL_PUTS)]

    def check_rows(when: str) -> None:
        rows = [e for e in iut.table() if e.get("objectId") in oids]
        ctx.require("INT-001", len(rows) == len(oids), f"a row for each of the {len(oids)} puts", f"{len(rows)} rows")
        odd = [r["objectId"] for r in rows if not isinstance(r.get("spilled"), bool)]
        ctx.require("INT-020", not odd, "`spilled` a boolean in every row", f"not in {odd}")
        in_memory = sum(r["size"] for r in rows if not r["spilled"])
        ctx.check("INT-020", in_memory <= SPILL_LIMIT,
                  f"{when}: the rows not marked spilled fit the store limit ({SPILL_LIMIT:,} bytes)",
                  f"{in_memory:,} bytes in {sum(not r['spilled'] for r in rows)} rows not marked")

    check_rows("after the puts")
    got = iut.get(oids[0])
    ctx.require("OBJ-033", got.get("value") == data, "the oldest put's bytes, restored", str(got)[:200])
    check_rows("after the get")


#: Refs the ZMQ-023 case has the IUT hold, each with an id of 256 bytes owned by a peer
#: with a long PeerId: well over 1 MiB of table however it is encoded (about 400 bytes of
#: texts per entry).
BIG_TABLE_REFS = 3000


@case(
    "introspection/ZMQ-023-INT-007-table-beyond-the-frame-limit-summarized",
    requirements=["ZMQ-023", "INT-007", "ZMQ-007"],
    summary=(
        "The suite announces the smallest frame limit allowed (maxFrameBytes 1 MiB) and has the IUT hold 3,000 "
        "refs it owns (hold with a shared ref, once each), every object id 256 bytes long and the owner's PeerId "
        "over 80: the IUT's ownership table no longer fits 1 MiB. An IntrospectRequest must then be answered "
        "with an IntrospectReply that fits, envelope and all, with no entries and the summary set (the counts, "
        "which a requester reads as \"not listed\"), never with a reply the suite would have to drop unread "
        "(ZMQ-007). Skipped if the IUT lists no entries to the suite even for a small table (it restricts "
        "introspection, INT-002)."
    ),
    timeout=300.0,
)
def table_beyond_the_frame_limit(ctx: CaseContext) -> None:
    from refrpc.codec import encode

    # A slow heartbeat: sending 3,000 tasks on a loaded machine can hold up the suite
    # peer's heartbeats, and this case is not about liveness (LIV-007: the IUT waits
    # six of the intervals the suite announces).
    iut, peer, link = open_session(ctx, peer_name="suite-" + "o" * 80, max_frame_bytes=1 << 20, heartbeat_ms=1000)
    iut.put(b"listed")
    link.send(IntrospectRequest(1))
    small: IntrospectReply = ctx.expect(peer, IntrospectReply, lambda m: m.request_id == 1, requirement="INT-001",
                                        what="IntrospectReply for a table of one object").body
    if not small.entries:
        ctx.skip("the IUT lists no entries to the suite (it restricts introspection, INT-002)")
    # Sent 250 at a time, each batch once the replies have caught up with all but the
    # last one: a burst of 3,000 on a loaded machine starves both sides' heartbeats.
    # The replies must keep coming: none for 30 s fails the case, a slow but steady IUT
    # (a loaded machine) does not.
    def replies_up_to(count: int) -> None:
        while (seen := len(peer.received(TaskReply))) < count:
            ctx.wait_until(peer, lambda seen=seen: len(peer.received(TaskReply)) > seen, requirement="TASK-005",
                           what=f"a reply to one more of the {BIG_TABLE_REFS} hold tasks (after {seen})",
                           timeout=30.0)

    for i in range(BIG_TABLE_REFS):
        if i and i % 250 == 0:
            replies_up_to(i - 250)
        x = ctx.new_id(peer)
        x = f"{x}.{'p' * (255 - len(x))}"
        link.send(task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))]))
    replies_up_to(BIG_TABLE_REFS)
    iut.quiesce()
    link.send(IntrospectRequest(2))
    # ZMQ-023's first key word is the MAY of its parenthesis; what it checks here is its MUST.
    what = "an IntrospectReply within the 1 MiB the suite announced"
    try:
        arrival = peer.expect(IntrospectReply, lambda m: m.request_id == 2, timeout=ctx.bound(30.0), what=what,
                              give_up=ctx.iut_died)
    except ExpectTimeout as exc:
        ctx.check("ZMQ-023", False, what, str(exc), level="MUST")
        return
    size = sum(len(f) for f in encode(arrival.envelope))
    ctx.check("ZMQ-023", size <= 1 << 20, "the reply, envelope and all, at most 1,048,576 bytes", f"{size} bytes",
              level="MUST")
    reply: IntrospectReply = arrival.body
    ctx.check("ZMQ-023", not reply.entries and reply.summary is not None,
              "no entries and the summary set: the whole table does not fit",
              f"{len(reply.entries)} entries, summary {'set' if reply.summary is not None else 'not set'}", level="MUST")
