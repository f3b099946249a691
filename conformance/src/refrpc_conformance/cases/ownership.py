"""ownership.md §3 and §4 with the IUT as owner: releases that must be ignored,
grants of a dead borrower, and the owner's tables after a long run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from refrpc.core.messages import (
    ArgKind,
    BorrowConfirmed,
    BorrowerRegistered,
    BorrowRelease,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_value, make_bytes_value, portable, shared
from .._case import case
from .._context import CaseContext
from .._wire import Link, WirePeer
from ._common import FAST_DETECTION, task


def register(ctx: CaseContext, peer: WirePeer, link: Link, object_id: str, *, requirement: str = "BOR-003") -> str:
    """``peer`` registers itself as a borrower of the IUT's ``object_id`` (a fresh grant); its forward id."""
    fid = ctx.new_id(peer)
    link.send(RegisterBorrower(object_id, peer.peer_id, peer.incarnation, peer.address, fid))
    answer: BorrowerRegistered = ctx.expect(peer, BorrowerRegistered, lambda m: m.forward_id == fid, requirement=requirement,
                                            what=f"BorrowerRegistered for {fid}").body
    ctx.require(requirement, answer.error is None, f"the grant {fid} recorded (no error)", str(answer.error))
    return fid


def status(ctx: CaseContext, peer: WirePeer, link: Link, object_id: str, *, requirement: str) -> ObjectState:
    """Ask the IUT (as owner) for an object's state, without waiting."""
    link.send(GetObjectStatus(object_id, wait=False))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == object_id, requirement=requirement,
                                  what=f"ObjectStatus for {object_id}").body
    return st.state


def release(link: Link, object_id: str, *fids: str) -> int:
    return link.send(ReleaseBorrows((BorrowRelease(object_id, tuple(fids)),)))


@case(
    "borrowing/BOR-018-stale-and-unknown-releases-ignored",
    requirements=["BOR-018", "OWN-004", "BOR-003", "OWN-005", "OBJ-003"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X and drops its own ref; suite peer B holds two grants on X (g1 and g2, registered "
        "for itself). B releases g1, then releases g1 again under a new sequence number, then releases a "
        "grant that never existed; suite peer Q releases g2, a grant that is neither its own nor one it "
        "requested. All but the first release must be ignored: X stays READY with B as borrower, since g2 "
        "still exists. When B releases g2, X is reclaimed (FREED, no table entry)."
    ),
)
def stale_releases(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("borrower")
    q = ctx.wire_peer("stranger")
    link_b = ctx.session(b, iut)
    link_q = ctx.session(q, iut)
    x = iut.put(b"lent twice")
    g1 = register(ctx, b, link_b, x)
    g2 = register(ctx, b, link_b, x)
    iut.drop(x)
    release(link_b, x, g1)
    release(link_b, x, g1)  # already released: a new sequence number, not a session duplicate
    release(link_b, x, ctx.new_id(b))  # a grant the owner never recorded
    release(link_q, x, g2)  # B's grant, released by a peer that is neither its borrower nor its requester
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    state = status(ctx, b, link_b, x, requirement="BOR-018")
    ctx.check("BOR-018", state is ObjectState.READY,
              "READY: the repeated, unknown and foreign releases changed nothing, and g2 still holds X",
              f"{state.value}: a release that should have been ignored removed g2")
    entry = iut.entry(x)
    ctx.check("OWN-004", entry is not None and entry.get("borrowers") == [b.peer_id],
              f"{x} in the table with borrowers [{b.peer_id!r}]", entry)
    release(link_b, x, g2)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    state = status(ctx, b, link_b, x, requirement="OWN-005")
    ctx.check("OWN-005", state is ObjectState.FREED, "FREED once the last grant is released", state.value)
    ctx.check("OWN-005", iut.entry(x) is None, f"no table entry for {x}", iut.entry(x))


@case(
    "liveness/BOR-009-dead-borrowers-grants-dropped",
    requirements=["BOR-009", "LIV-003", "LIV-004", "OWN-005", "OBJ-003"],
    features=("core", "borrowing"),
    iut_env=FAST_DETECTION,
    summary=(
        "The IUT puts X and drops its own ref while suite peer B holds a grant on it, so X stays. B then goes "
        "silent. The IUT must declare B dead (suite peer W, which keeps its session alive, gets a "
        "PeerDeadNotice) and remove B's grants: X is reclaimed (FREED, no table entry)."
    ),
    timeout=60.0,
)
def dead_borrower(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("borrower", heartbeat_ms=100)
    w = ctx.wire_peer("witness", heartbeat_ms=100)
    link_b = ctx.session(b, iut)
    link_w = ctx.session(w, iut)
    x = iut.put(b"lent to a peer that dies")
    register(ctx, b, link_b, x)
    iut.drop(x)
    iut.quiesce()
    state = status(ctx, w, link_w, x, requirement="OWN-004")
    ctx.require("OWN-004", state is ObjectState.READY, "READY while B's grant exists", state.value)
    b.go_silent()
    ctx.expect(w, PeerDeadNotice, lambda m: m.peer == b.peer_id, requirement="LIV-004",
               what=f"PeerDeadNotice for the silent borrower {b.peer_id}", timeout=20.0)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    state = status(ctx, w, link_w, x, requirement="BOR-009")
    ctx.check("BOR-009", state is ObjectState.FREED, "FREED: the dead borrower's grant is gone, and with it the last hold",
              state.value)
    ctx.check("BOR-009", iut.entry(x) is None, f"no table entry for {x}", iut.entry(x))


#: How much work the metadata case does: tasks the IUT executes, objects it puts,
#: tasks it submits. Hundreds in all, and still about two seconds.
EXECUTED_ECHO, EXECUTED_HOLD, HELD_OBJECTS, PUTS, SUBMITTED, SUBMITTED_KEPT = 120, 60, 20, 60, 40, 12


def serve_submissions(ctx: CaseContext, e: WirePeer, iut_peer: str, n: int, *, keep: Callable[[SubmitTask], bool]) -> None:
    """Suite executor ``e`` answers ``n`` SubmitTasks with inline nulls; for those ``keep``
    picks, it first registers itself for their shared arguments (BOR-007) and releases
    those grants after replying, as an executor that keeps and then drops a ref would."""
    link = e.link(iut_peer)
    kept: list[tuple[str, str]] = []
    for _ in range(n):
        st: SubmitTask = ctx.expect(e, SubmitTask, requirement="TASK-001", what="a SubmitTask from the IUT").body
        retained = []
        if keep(st):
            for a in st.args:
                if a.ref is not None and a.kind is ArgKind.SHARED:
                    fid = register(ctx, e, link, a.ref.object_id)
                    retained.append(replace(a.ref, forward_id=fid))
                    kept.append((a.ref.object_id, fid))
        link.send(TaskReply(st.task_id, st.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(None)) for r in st.return_ids),
                            retained=tuple(retained)))
    for oid, fid in kept:
        release(link, oid, fid)


@case(
    "gc/RPC-014-OWN-005-metadata-shrinks-after-many-tasks",
    requirements=["RPC-014", "RPC-002", "OWN-005", "OWN-006", "BOR-005", "CNF-022", "CNF-019"],
    features=("core", "borrowing"),
    summary=(
        f"A run of a few hundred operations, then a check that nothing is left behind. As executor the IUT runs "
        f"{EXECUTED_ECHO} echo tasks and {EXECUTED_HOLD} hold(shared X) tasks on {HELD_OBJECTS} suite-owned objects "
        f"(self-registrations, then releases after drop_held). As owner it puts {PUTS} values (some stored) and "
        f"submits {SUBMITTED} tasks to a suite executor with ref and shared arguments, {SUBMITTED_KEPT} of which "
        "the executor keeps for a while (grants, then releases); then it drops every ref. Once quiescent, its "
        "ownership table must be empty and its task tables too (counts: no executor record once its reply is "
        "acknowledged, no submitted task once settled and not needed as lineage): metadata that only grows is "
        "a leak."
    ),
    timeout=120.0,
)
def metadata_shrinks(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    s = ctx.wire_peer("submitter")
    e = ctx.wire_peer("executor")
    link_s = ctx.session(s, iut)
    iut.add_peer(e, slots=4)
    # The IUT as executor.
    objects = [ctx.new_id(s) for _ in range(HELD_OBJECTS)]
    tasks = [task(s, "echo", [by_value(i)]) for i in range(EXECUTED_ECHO)]
    tasks += [task(s, "hold", [shared(ctx.descriptor(s, objects[i % HELD_OBJECTS], size_hint=8))]) for i in range(EXECUTED_HOLD)]
    for t in tasks:
        link_s.send(t)
    wanted = {t.task_id for t in tasks}
    ctx.wait_until(s, lambda: wanted <= {a.body.task_id for a in s.received(TaskReply)}, requirement="TASK-005",
                   what=f"replies to all {len(tasks)} tasks", timeout=60.0)
    ctx.check("CNF-008", iut.drop_held() == EXECUTED_HOLD, f"drop_held drops {EXECUTED_HOLD} refs", "")
    # The IUT as owner and submitter.
    puts = [iut.put(make_bytes_value(iut.inline_threshold + 10_000 if i % 10 == 0 else 100 + i)) for i in range(PUTS)]
    returns: list[str] = []
    submitted: list[dict[str, Any]] = []
    for i in range(SUBMITTED):
        arg = {"shared": puts[i % PUTS]} if i < SUBMITTED_KEPT else {"ref": puts[i % PUTS]} if i % 2 else {"value": i}
        submitted.append(iut.submit("echo", [arg], executor=e.peer_id))
        returns.extend(submitted[-1]["returns"])
    kept_tasks = {sub["task_id"] for sub in submitted[:SUBMITTED_KEPT]}
    serve_submissions(ctx, e, iut.peer_id, SUBMITTED, keep=lambda st: st.task_id in kept_tasks)
    for oid in returns + puts:
        iut.drop(oid)
    iut.gc()
    ctx.check("CNF-019", iut.quiesce(30_000), "the IUT quiescent within 30 s", "not quiescent")
    for oid in objects:
        ctx.check("BOR-005", not any(k[0] == oid for k in s.grants), f"every grant the IUT took on {oid} released",
                  sorted(fid for (o, fid) in s.grants if o == oid))
    left = iut.table()
    ctx.check("OWN-005", not left, "an empty ownership table (every object reclaimed, every borrowed entry gone)",
              [(r.get("objectId"), r.get("role"), r.get("state")) for r in left][:20])
    counts = iut.counts()
    ctx.check("RPC-014", counts.get("executor_tasks") == 0,
              "no executor task record left (every reply acknowledged)", counts)
    ctx.check("RPC-014", counts.get("submitted_tasks") == 0,
              "no submitted task left (all settled, none needed as lineage)", counts)


def _borrowers_of(iut: Any, object_id: str) -> list[str] | None:
    entry = iut.entry(object_id)
    return None if entry is None else sorted(entry.get("borrowers") or [])


@case(
    "borrowing/BOR-015-BOR-016-registrations-by-borrower-and-state",
    requirements=["BOR-015", "BOR-016", "BOR-003", "OWN-005"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X. Suite peer D opens a session and says Goodbye (fenced at once, LIV-006); suite peer F "
        "then registers D's incarnation as a borrower of X (as a forwarder would): the IUT must refuse with "
        "PEER_DIED and record nothing, so X has no borrower and is reclaimed once the program drops it. The "
        "IUT also submits echo and fail to suite executor E (added with no slots): E leaves echo's return R "
        "pending and answers fail's return Q with TASK_FAILED. F registers itself for R (pending) and for Q "
        "(failed): the IUT must accept both like a ready object's, listing F as their borrower until F releases."
    ),
    timeout=60.0,
)
def registrations_by_borrower_and_state(ctx: CaseContext) -> None:
    from refrpc.core.messages import ErrorCode, ErrorInfo

    from ._common import leave_with_goodbye

    iut = ctx.start_iut()
    d = ctx.wire_peer("dead-borrower")
    f = ctx.wire_peer("forwarder")
    e = ctx.wire_peer("executor")
    ctx.session(d, iut)
    link_f = ctx.session(f, iut)
    x = iut.put(b"lent to nobody dead")
    leave_with_goodbye(ctx, d, iut)
    fid = ctx.new_id(f)
    link_f.send(RegisterBorrower(x, d.peer_id, d.incarnation, d.address, fid))
    answer: BorrowerRegistered = ctx.expect(f, BorrowerRegistered, lambda m: m.forward_id == fid, requirement="BOR-015",
                                            what=f"BorrowerRegistered for the fenced borrower's grant {fid}").body
    code = answer.error.code if answer.error is not None else None
    ctx.check("BOR-015", code is ErrorCode.PEER_DIED, "refused with PEER_DIED (the borrower incarnation is fenced)",
              code.value if code is not None else "accepted (no error)")
    ctx.check("BOR-015", _borrowers_of(iut, x) == [], "nothing recorded: X lists no borrower", _borrowers_of(iut, x))
    iut.drop(x)
    ctx.poll_until(lambda: iut.entry(x) is None, requirement="BOR-015",
                   what=f"X ({x}) reclaimed once the program dropped it (no grant was recorded)", timeout=10.0)

    iut.add_peer(e, slots=0)
    pending = iut.submit("echo", [{"value": "not yet"}], executor=e.peer_id)
    failing = iut.submit("fail", [{"value": "on purpose"}], executor=e.peer_id)
    [r] = pending["returns"]
    [q] = failing["returns"]
    tasks = {}
    for sub in (pending, failing):
        tasks[sub["task_id"]] = ctx.expect(e, SubmitTask, lambda m, tid=sub["task_id"]: m.task_id == tid,
                                           requirement="TASK-001", what=f"SubmitTask {sub['task_id']} at E").body
    st = tasks[failing["task_id"]]
    link_e = e.link(iut.peer_id)
    link_e.send(TaskReply(st.task_id, st.attempt, tuple(
        ReturnValue(rid, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.TASK_FAILED, "fail: on purpose", "TASK-007"))
        for rid in st.return_ids)))
    got = iut.get(q, timeout_ms=5_000)
    ctx.require("TASK-007", (got.get("error") or {}).get("code") == "TASK_FAILED", "Q failed with TASK_FAILED", got)
    fids = {}
    for oid, state in ((r, "pending"), (q, "failed")):
        fids[oid] = ctx.new_id(f)
        link_f.send(RegisterBorrower(oid, f.peer_id, f.incarnation, f.address, fids[oid]))
        got_answer: BorrowerRegistered = ctx.expect(
            f, BorrowerRegistered, lambda m, fid=fids[oid]: m.forward_id == fid, requirement="BOR-016",
            what=f"BorrowerRegistered for F's grant on the {state} object {oid}").body
        ctx.check("BOR-016", got_answer.error is None, f"the registration for the {state} object accepted (no error)",
                  str(got_answer.error))
        ctx.check("BOR-016", _borrowers_of(iut, oid) == [f.peer_id], f"F listed as borrower of the {state} object",
                  _borrowers_of(iut, oid))
    for oid, fid in fids.items():
        release(link_f, oid, fid)
    st = tasks[pending["task_id"]]
    link_e.send(TaskReply(st.task_id, st.attempt, tuple(
        ReturnValue(rid, ReturnKind.INLINE, value=portable("not yet")) for rid in st.return_ids)))
    got = iut.get(r, timeout_ms=5_000)
    ctx.check("TASK-005", got.get("value") == "not yet", "R ready once E answers", got)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")


@case(
    "borrowing/BOR-022-confirmation-of-a-released-grant-ignored",
    requirements=["BOR-022", "BOR-018", "OWN-005"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X and drops its own ref; suite peer B holds two grants on X (g1 and g2). B releases g1 and "
        "then sends BorrowConfirmed for g1 with held = true, a confirmation of a grant the owner no longer has "
        "(as one that crossed the release would be). The IUT must ignore it: X stays READY under g2 alone, and "
        "when B releases g2, X is reclaimed (FREED, no table entry)."
    ),
)
def confirmation_of_a_released_grant_ignored(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("borrower")
    link_b = ctx.session(b, iut)
    x = iut.put(b"lent twice")
    g1 = register(ctx, b, link_b, x)
    g2 = register(ctx, b, link_b, x)
    iut.drop(x)
    release(link_b, x, g1)
    link_b.send(BorrowConfirmed(x, g1, True))
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    state = status(ctx, b, link_b, x, requirement="OWN-004")
    ctx.check("OWN-004", state is ObjectState.READY, "READY: g2 still holds X", state.value)
    release(link_b, x, g2)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    state = status(ctx, b, link_b, x, requirement="BOR-022")
    ctx.check("BOR-022", state is ObjectState.FREED,
              "FREED once g2 is released: the confirmation of the released g1 recorded nothing",
              f"{state.value}: the BorrowConfirmed for g1 brought the grant back")
    ctx.check("BOR-022", iut.entry(x) is None, f"no table entry for {x}", iut.entry(x))
