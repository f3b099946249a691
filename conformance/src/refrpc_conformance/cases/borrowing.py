"""ownership.md §3: the suite as owner lends refs; the IUT registers, forwards and releases."""

from __future__ import annotations

import time
from dataclasses import replace

from refrpc.core.messages import (
    BorrowConfirmed,
    BorrowerRegistered,
    BorrowRelease,
    ConfirmBorrow,
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    Heartbeat,
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

from .._build import PortableRef, by_value, describe_return, portable, read_portable, shared
from .._case import case
from .._context import IUT, CaseContext
from .._wire import WirePeer
from ._common import (
    check_own_grants_released,
    expect_reply,
    leave_with_goodbye,
    open_session,
    released_forward_ids,
    task,
)

#: How long an owner waits before answering a registration: the requester must not go
#: ahead in that time (a stimulus, not a wait for a verdict).
ANSWER_DELAY_S = 0.3


@case(
    "borrowing/BOR-007-BOR-005-hold-registers-then-releases",
    requirements=["BOR-007", "BOR-005", "BOR-019", "ID-008", "CNF-001", "CNF-004", "CNF-008"],
    features=("core", "borrowing"),
    summary=(
        "The suite owns X and submits hold(shared X). The IUT keeps X after the task, so before replying it "
        "must register itself (RegisterBorrower naming itself, with a fresh forwardId) and wait for the "
        "answer, which the suite delays; the reply lists X in `retained` under that grant. drop_held then "
        "drops the one held ref, and the IUT releases exactly that grant (ReleaseBorrows, batched or not)."
    ),
)
def hold_registers(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    peer.auto_grant = lambda r: r.object_id != x  # the case answers for X itself
    t = task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))])
    link.send(t)
    reg: RegisterBorrower = ctx.expect(peer, RegisterBorrower, lambda m: m.object_id == x, requirement="BOR-007",
                                       what=f"RegisterBorrower for {x} before the reply").body
    ctx.check("BOR-007", (reg.borrower, reg.borrower_incarnation, reg.borrower_address) == (iut.peer_id, iut.incarnation, iut.address),
              f"borrower = the IUT itself ({iut.peer_id}/{iut.incarnation} at {iut.address})",
              f"{reg.borrower}/{reg.borrower_incarnation} at {reg.borrower_address}")
    ctx.check("ID-008", bool(reg.forward_id), "a fresh, non-empty forwardId", repr(reg.forward_id))
    time.sleep(ANSWER_DELAY_S)
    early = peer.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("BOR-007", not early, "no TaskReply before BorrowerRegistered", f"{len(early)} replies already")
    link.send(BorrowerRegistered(x, reg.forward_id))
    reply = expect_reply(ctx, peer, t)
    ret = reply.returns[0]
    ctx.check("CNF-001", ret.kind is ReturnKind.INLINE and ret.value is not None and read_portable(ret.value) is None,
              "hold returns null", describe_return(ret))
    kept = [d for d in reply.retained if d.object_id == x]
    ctx.check("BOR-007", len(kept) == 1 and kept[0].forward_id == reg.forward_id,
              f"X in `retained` with forwardId {reg.forward_id!r}", [(d.object_id, d.forward_id) for d in reply.retained])
    ctx.check("BOR-019", not released_forward_ids(peer, x), "no release while the ref is held", sorted(released_forward_ids(peer, x)))
    dropped = iut.drop_held()
    ctx.check("CNF-008", dropped == 1, "drop_held drops 1 ref", dropped)
    ctx.wait_until(peer, lambda: reg.forward_id in released_forward_ids(peer, x), requirement="BOR-005",
                   what=f"ReleaseBorrows for {x} naming {reg.forward_id!r}", timeout=10.0)
    ctx.check("BOR-005", released_forward_ids(peer, x) == {reg.forward_id}, f"exactly the grant {reg.forward_id!r}",
              sorted(released_forward_ids(peer, x)))


def _forward_setup(ctx: CaseContext) -> tuple[IUT, WirePeer, WirePeer, str, SubmitTask, RegisterBorrower]:
    iut = ctx.start_iut()
    owner = ctx.wire_peer("owner")
    sub = ctx.wire_peer("submitter")
    link_s = ctx.session(sub, iut)
    x = ctx.new_id(owner)
    # The case answers the registration for the submitter; any other (the IUT's own) is granted.
    owner.auto_grant = lambda r: not (r.object_id == x and r.borrower == sub.peer_id)
    t = task(sub, "forward", [shared(ctx.descriptor(owner, x, size_hint=8))])
    link_s.send(t)
    reg: RegisterBorrower = ctx.expect(owner, RegisterBorrower, lambda m: m.object_id == x, requirement="BOR-002",
                                       what=f"RegisterBorrower for {x} at its owner, before the ref goes to the submitter",
                                       timeout=15.0).body
    ctx.check("BOR-002", (reg.borrower, reg.borrower_incarnation, reg.borrower_address) == (sub.peer_id, sub.incarnation, sub.address),
              f"borrower = the submitter {sub.peer_id}/{sub.incarnation} at {sub.address}",
              f"{reg.borrower}/{reg.borrower_incarnation} at {reg.borrower_address}")
    time.sleep(ANSWER_DELAY_S)
    early = sub.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("BOR-002", not early, "no TaskReply to the submitter before the owner's BorrowerRegistered", f"{len(early)} replies")
    return iut, owner, sub, x, t, reg


@case(
    "borrowing/BOR-002-REF-003-forward-to-third-party",
    requirements=["BOR-002", "REF-001", "REF-003", "BOR-020", "BOR-005", "CNF-001"],
    features=("core", "borrowing"),
    summary=(
        "Suite peer A owns X; suite peer B submits forward(shared X). Returning X to B hands a ref B does not "
        "own, so the IUT must first register B with A (RegisterBorrower naming B) and wait for the answer, "
        "which A delays; only then may B get the reply, whose nested descriptor carries A's identity "
        "unchanged and the forwardId of that grant."
    ),
)
def forward_to_third_party(ctx: CaseContext) -> None:
    iut, owner, sub, x, t, reg = _forward_setup(ctx)
    owner.link(iut.peer_id).send(BorrowerRegistered(x, reg.forward_id))
    reply = expect_reply(ctx, sub, t)
    ret = reply.returns[0]
    ctx.require("BOR-002", ret.kind is ReturnKind.INLINE and ret.value is not None and len(ret.value.nested) == 1,
                "an inline value with one nested ref", describe_return(ret))
    assert ret.value is not None
    ctx.check("CNF-001", read_portable(ret.value) == PortableRef(0), "Portable.ref 0", repr(read_portable(ret.value)))
    d = ret.value.nested[0]
    ctx.check("REF-003", (d.object_id, d.owner, d.owner_incarnation, d.owner_address) == (x, owner.peer_id, owner.incarnation, owner.address),
              "X's descriptor with the owner's identity unchanged", f"{d.object_id}, {d.owner}/{d.owner_incarnation} at {d.owner_address}")
    ctx.check("BOR-020", d.forward_id == reg.forward_id, f"forwardId {reg.forward_id!r} (the grant registered for B)", repr(d.forward_id))
    check_own_grants_released(ctx, iut, owner, x)


@case(
    "borrowing/BOR-003-refused-registration-fails-send",
    requirements=["BOR-003", "BOR-002", "BOR-005"],
    features=("core", "borrowing"),
    summary=(
        "As in the forward case, but the owner refuses the registration with OBJECT_FREED. The IUT must "
        "fail that send: the task's return becomes ERROR(OBJECT_FREED) and no ref reaches the submitter."
    ),
)
def refused_registration(ctx: CaseContext) -> None:
    iut, owner, sub, x, t, reg = _forward_setup(ctx)
    owner.link(iut.peer_id).send(
        BorrowerRegistered(x, reg.forward_id, ErrorInfo(ErrorCode.OBJECT_FREED, "refused by the conformance suite", "BOR-003"))
    )
    reply = expect_reply(ctx, sub, t)
    ret = reply.returns[0]
    ctx.check("BOR-003", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.OBJECT_FREED,
              "ERROR(OBJECT_FREED)", describe_return(ret))
    check_own_grants_released(ctx, iut, owner, x)


@case(
    "borrowing/OWN-004-OWN-005-borrowed-object-outlives-owner-ref",
    requirements=["OWN-004", "OWN-005", "BOR-003", "BOR-007", "INT-005", "OBJ-003"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X and submits hold(shared X) to a suite peer, which keeps X: it registers itself with "
        "the IUT (RegisterBorrower) and gets the grant (BorrowerRegistered, no error) before replying. The "
        "IUT's program then drops X. While the suite's grant exists X must stay: its table lists the suite "
        "as borrower and GetObjectStatus answers READY. Once the suite releases the grant, X is reclaimed: "
        "FREED, and no table entry."
    ),
)
def borrowed_object_outlives_owner_ref(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer("borrower")
    iut.add_peer(peer, slots=1)
    x = iut.put(b"kept by a borrower")
    sub = iut.submit("hold", [{"shared": x}], executor=peer.peer_id)
    t: SubmitTask = ctx.expect(peer, SubmitTask, requirement="TASK-001", what="the SubmitTask from the IUT").body
    link = peer.link(iut.peer_id)
    ref = t.args[0].ref if t.args and t.args[0].ref is not None else None
    ctx.require("TASK-003", ref is not None and ref.object_id == x, f"a shared argument naming {x}", str(t.args))
    assert ref is not None
    fid = ctx.new_id(peer)
    link.send(RegisterBorrower(x, peer.peer_id, peer.incarnation, peer.address, fid))
    answer: BorrowerRegistered = ctx.expect(peer, BorrowerRegistered, lambda m: m.forward_id == fid, requirement="BOR-003",
                                            what=f"BorrowerRegistered for {fid}").body
    ctx.require("BOR-003", answer.error is None, "the grant recorded (no error)", str(answer.error))
    kept = replace(ref, forward_id=fid)
    link.send(TaskReply(t.task_id, t.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(None)) for r in t.return_ids),
                        retained=(kept,)))
    ctx.check("CNF-001", iut.get(sub["returns"][0]).get("value", "missing") is None, "get() of hold's return is null", "")
    iut.drop(x)
    iut.quiesce()
    entry = iut.entry(x)
    ctx.check("OWN-004", entry is not None, f"{x} still in the owner's table while borrowed", "gone" if entry is None else entry)
    if entry is not None:
        ctx.check("INT-005", entry.get("borrowers") == [peer.peer_id], f"borrowers = [{peer.peer_id!r}]", entry.get("borrowers"))
    link.send(GetObjectStatus(x, wait=False))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == x, requirement="OWN-004", what=f"ObjectStatus for {x}").body
    ctx.check("OWN-004", st.state is ObjectState.READY, "READY (a borrower still holds it)", st.state.value)
    link.send(ReleaseBorrows((BorrowRelease(x, (fid,)),)))
    iut.quiesce()
    link.send(GetObjectStatus(x, wait=False))
    st = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == x and m.state is not ObjectState.READY, requirement="OWN-005",
                    what=f"ObjectStatus for {x} after the last grant was released").body
    ctx.check("OBJ-003", st.state is ObjectState.FREED, "FREED", st.state.value)
    ctx.check("OWN-005", iut.entry(x) is None, f"no table entry for {x}", iut.entry(x))


@case(
    "borrowing/BOR-004-GC-002-nest-grant-and-chained-release",
    requirements=["BOR-004", "BOR-007", "GC-002", "BOR-017", "BOR-005", "REF-003", "OBJ-004", "OWN-005", "CNF-001"],
    features=("core", "borrowing"),
    summary=(
        "The suite owns X and submits nest(shared X): the IUT puts a new object N whose value embeds X and "
        "returns a ref to N. The IUT owns N, so the descriptor it returns carries its own identity and a "
        "grant it created for the suite (non-empty forwardId); it keeps X inside N, so it registered itself "
        "for X, and its table shows X contained in N. N's status is READY with the value [ref 0] and X "
        "nested. When the suite releases N, the IUT reclaims it and, X no longer being contained, releases "
        "its grant on X."
    ),
)
def nest_chain(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    t = task(peer, "nest", [shared(ctx.descriptor(peer, x, size_hint=8))])
    link.send(t)
    ret = expect_reply(ctx, peer, t).returns[0]
    ctx.require("CNF-001", ret.kind is ReturnKind.INLINE and ret.value is not None and len(ret.value.nested) == 1,
                "an inline value holding one ref", describe_return(ret))
    assert ret.value is not None
    ctx.check("CNF-001", read_portable(ret.value) == PortableRef(0), "Portable.ref 0", repr(read_portable(ret.value)))
    n = ret.value.nested[0]
    ctx.check("REF-003", (n.owner, n.owner_incarnation, n.owner_address) == (iut.peer_id, iut.incarnation, iut.address),
              "N owned by the IUT, with its own identity", f"{n.owner}/{n.owner_incarnation} at {n.owner_address}")
    ctx.check("BOR-004", bool(n.forward_id), "a grant the owner created for the suite (non-empty forwardId)", repr(n.forward_id))
    own = [fid for (oid, fid), b in peer.grants.items() if oid == x and b == iut.peer_id]
    ctx.check("BOR-007", bool(own), f"the IUT registered itself for {x} before replying (it keeps X inside N)", own)
    entry = iut.entry(x)
    ctx.check("GC-002", entry is not None and n.object_id in (entry.get("containedIn") or []),
              f"the IUT's entry for X lists N ({n.object_id}) in containedIn", entry)
    link.send(GetObjectStatus(n.object_id, wait=True))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == n.object_id, requirement="OBJ-004",
                                  what=f"ObjectStatus for N ({n.object_id})").body
    ctx.require("OBJ-004", st.state is ObjectState.READY and st.value is not None, "READY with the value", st.state.value)
    assert st.value is not None
    ctx.check("CNF-001", read_portable(st.value) == [PortableRef(0)] and [d.object_id for d in st.value.nested] == [x],
              f"the value [ref 0] with {x} nested", f"{read_portable(st.value)!r}, nested {[d.object_id for d in st.value.nested]}")
    ctx.check("BOR-017", all(not d.forward_id for d in st.value.nested), "nested forwardIds cleared in ObjectStatus",
              [d.forward_id for d in st.value.nested])
    link.send(ReleaseBorrows((BorrowRelease(n.object_id, (n.forward_id,)),)))
    iut.quiesce()
    ctx.wait_until(peer, lambda: not any(oid == x and b == iut.peer_id for (oid, _), b in peer.grants.items()),
                   requirement="BOR-005", what=f"the IUT's release of its grant on {x} once N is reclaimed", timeout=10.0)
    link.send(GetObjectStatus(n.object_id, wait=False))
    st = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == n.object_id and m.state is not ObjectState.READY,
                    requirement="OWN-005", what="ObjectStatus for N after the suite released it").body
    ctx.check("OWN-005", st.state is ObjectState.FREED, "FREED", st.state.value)


def _borrowers(iut: IUT, object_id: str) -> list[str] | None:
    """The borrowers the IUT's table lists for an object it owns (None: no entry)."""
    entry = iut.entry(object_id)
    return None if entry is None else list(entry.get("borrowers") or [])


@case(
    "borrowing/BOR-010-BOR-011-confirm-borrow-after-forwarder-death",
    requirements=["BOR-010", "BOR-011", "OWN-011", "BOR-003", "OWN-004", "OWN-005", "BOR-012"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X and Y, submits hold(shared X) and hold(shared Y) to suite peer F, and drops both. While "
        "the tasks run, F registers suite peer B as borrower of each (as a forwarder about to hand them on): "
        "the IUT records the grants, answers F, and opens a session with B. F then says Goodbye before B has "
        "either ref. The IUT must keep both grants (F requested them, B holds them) and ask B with "
        "ConfirmBorrow naming F's incarnation. B answers held = true for X and held = false for Y: the phantom "
        "grant on Y goes and Y, out of scope, is reclaimed; X stays, with B as borrower, until B releases it."
    ),
    timeout=60.0,
)
def confirm_borrow_after_forwarder_death(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    f = ctx.wire_peer("forwarder")
    b = ctx.wire_peer("borrower")
    iut.add_peer(f, slots=0)
    x = iut.put(b"reaches the borrower")
    y = iut.put(b"never reaches the borrower")
    for oid in (x, y):
        sub = iut.submit("hold", [{"shared": oid}], executor=f.peer_id)
        ctx.expect(f, SubmitTask, lambda m, tid=sub["task_id"]: m.task_id == tid, requirement="TASK-001",
                   what=f"the SubmitTask hold({oid}) at F")
    link_f = f.link(iut.peer_id)
    grants: dict[str, str] = {}
    for oid in (x, y):
        grants[oid] = ctx.new_id(f)
        link_f.send(RegisterBorrower(oid, b.peer_id, b.incarnation, b.address, grants[oid]))
    for oid, fid in grants.items():
        answer: BorrowerRegistered = ctx.expect(f, BorrowerRegistered, lambda m, fid=fid: m.forward_id == fid, requirement="BOR-003",
                                                what=f"BorrowerRegistered for B's grant {fid} on {oid}").body
        ctx.require("BOR-003", answer.error is None, "the grant recorded (no error)", str(answer.error))
    ctx.wait_until(b, lambda: iut.peer_id in b.links and b.links[iut.peer_id].live, requirement="OWN-011",
                   what="a session the IUT opens with the borrower B, whose grants it recorded", timeout=15.0)
    iut.drop(x)
    iut.drop(y)
    for oid in (x, y):
        ctx.check("OWN-004", _borrowers(iut, oid) == [b.peer_id], f"{oid} kept, with B as its borrower",
                  _borrowers(iut, oid), note="after the program dropped it, while F's task runs")
    leave_with_goodbye(ctx, f, iut)
    confirms: dict[str, ConfirmBorrow] = {}
    for oid in (x, y):
        confirms[oid] = ctx.expect(b, ConfirmBorrow, lambda m, oid=oid: m.object_id == oid, requirement="BOR-010",
                                   what=f"ConfirmBorrow for {oid} at the borrower after its forwarder's death").body
        c = confirms[oid]
        ctx.check("BOR-010", c.forward_id == grants[oid], f"forwardId {grants[oid]} (B's grant)", c.forward_id)
        ctx.check("BOR-012", (c.forwarder, c.forwarder_incarnation) == (f.peer_id, f.incarnation),
                  f"the requester recorded with the grant: forwarder {f.peer_id}/{f.incarnation}",
                  f"forwarder {c.forwarder}/{c.forwarder_incarnation}")
    for oid in (x, y):  # B has not answered: the grants F requested must still be there
        ctx.check("BOR-010", _borrowers(iut, oid) == [b.peer_id], f"B's grant on {oid} kept until B answers",
                  _borrowers(iut, oid), note="F fenced, ConfirmBorrow unanswered")
    link_b = b.link(iut.peer_id)
    link_b.send(BorrowConfirmed(x, grants[x], True))
    link_b.send(BorrowConfirmed(y, grants[y], False))
    ctx.poll_until(lambda: iut.entry(y) is None, requirement="BOR-011",
                   what=f"Y ({y}) reclaimed once B said it never held it (held = false)", timeout=10.0)
    ctx.check("BOR-011", _borrowers(iut, x) == [b.peer_id], "X kept with B as borrower (held = true)", _borrowers(iut, x))
    link_b.send(ReleaseBorrows((BorrowRelease(x, (grants[x],)),)))
    ctx.poll_until(lambda: iut.entry(x) is None, requirement="OWN-005", what=f"X ({x}) reclaimed once B released it", timeout=10.0)


@case(
    "borrowing/BOR-011-SES-005-confirm-borrow-fences-first",
    requirements=["BOR-011", "SES-005", "FATE-003", "BOR-007"],
    features=("core", "borrowing"),
    summary=(
        "Suite peer O owns X and submits hold(shared X), so the IUT holds X under a grant of its own. Suite peer "
        "F submits sleep(3000) to the IUT. O then sends the IUT ConfirmBorrow for its grant on X naming F as a "
        "dead forwarder, and another for a grant the IUT never had. The IUT must fence F before answering: "
        "F's task is stopped and never answered, and an echo F sends after the answer must not run. It answers "
        "held = true for its grant and held = false for the other."
    ),
    timeout=60.0,
)
def confirm_borrow_fences_first(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    o = ctx.wire_peer("owner")
    f = ctx.wire_peer("forwarder")
    link_o = ctx.session(o, iut)
    link_f = ctx.session(f, iut)
    x = ctx.new_id(o)
    t = task(o, "hold", [shared(ctx.descriptor(o, x, size_hint=8))])
    link_o.send(t)
    reply = expect_reply(ctx, o, t)
    kept = [d.forward_id for d in reply.retained if d.object_id == x]
    ctx.require("BOR-007", len(kept) == 1 and (x, kept[0]) in o.grants, "X retained under a grant the IUT registered",
                [(d.object_id, d.forward_id) for d in reply.retained])
    sleeper = task(f, "sleep", [by_value(3000)])
    seq = link_f.send(sleeper)
    ctx.wait_until(f, lambda: link_f.acked >= seq, requirement="SES-003", what="the IUT's ack of F's sleep task")
    unknown = f"{o.ids.prefix}never-granted"
    link_o.send(ConfirmBorrow(x, kept[0], f.peer_id, f.incarnation))
    link_o.send(ConfirmBorrow(x, unknown, f.peer_id, f.incarnation))
    answers = {}
    for fid in (kept[0], unknown):
        answers[fid] = ctx.expect(o, BorrowConfirmed, lambda m, fid=fid: m.forward_id == fid, requirement="BOR-011",
                                  what=f"BorrowConfirmed for grant {fid}").body
    ctx.check("BOR-011", answers[kept[0]].held is True and answers[kept[0]].object_id == x,
              f"held = true for its own grant {kept[0]}", str(answers[kept[0]]))
    ctx.check("BOR-011", answers[unknown].held is False, "held = false for a grant it never had", str(answers[unknown]))
    late = task(f, "echo", [by_value("after the ConfirmBorrow")])
    link_f.send(late)
    quiet = iut.quiesce(15_000)
    ctx.check("", quiet, "the IUT quiescent within 15 s", "quiescent" if quiet else "not quiescent")
    replies = f.received(TaskReply, lambda m: m.task_id in (sleeper.task_id, late.task_id))
    ctx.check("FATE-003", not any(r.body.task_id == sleeper.task_id for r in replies),
              "F's task stopped and never answered (F fenced)", [str(r.body) for r in replies])
    ctx.check("SES-005", not any(r.body.task_id == late.task_id for r in replies),
              "F's message sent after the ConfirmBorrow was answered discarded (F fenced before the answer)",
              [str(r.body) for r in replies])
    f.go_silent()  # fenced: the IUT will not hear from F again


@case(
    "borrowing/CNF-013-BOR-007-two-iuts-borrow-and-reclaim",
    requirements=["CNF-013", "BOR-007", "OWN-004", "OWN-005", "BOR-005", "INT-005"],
    features=("core", "borrowing"),
    summary=(
        "Two IUT instances, A and B, each with its own endpoint and PeerId. A puts X and submits hold(shared X) "
        "to B, which keeps X: B must register with A before replying, so once A's get of the task returns, A's "
        "table lists B as X's borrower and B's lists X as borrowed from A. A's program drops X; X stays while B "
        "holds it. drop_held on B makes B release its grant: A reclaims X (no entry left) and B forgets it. "
        "Nothing passes through the suite, so the tables are the evidence."
    ),
    timeout=60.0,
)
def two_iuts(ctx: CaseContext) -> None:
    a = ctx.start_iut()
    b = ctx.start_iut()
    ctx.check("CNF-013", a.peer_id != b.peer_id and a.address != b.address, "two IUTs with their own PeerId and endpoint",
              f"{a.peer_id} at {a.address}, {b.peer_id} at {b.address}")
    a.control("add_peer", peer_id=b.peer_id, address=b.address, slots=0)
    x = a.put(b"owned by A, borrowed by B")
    sub = a.submit("hold", [{"shared": x}], executor=b.peer_id)
    got = a.get(sub["returns"][0])
    ctx.require("CNF-001", "value" in got and got["value"] is None, "get() of hold's return at A is null", got)
    ctx.check("BOR-007", _borrowers(a, x) == [b.peer_id], f"A lists B ({b.peer_id}) as X's borrower once B replied",
              a.entry(x))
    held = b.entry(x)
    ctx.check("BOR-007", held is not None and held.get("role") == "borrower" and held.get("owner") == a.peer_id,
              f"B holds X as a borrower of {a.peer_id}", held)
    a.drop(x)
    a.quiesce()
    ctx.check("OWN-004", _borrowers(a, x) == [b.peer_id], "X still at A, borrowed by B, after A's program dropped it",
              a.entry(x))
    dropped = b.drop_held()
    ctx.check("CNF-008", dropped == 1, "drop_held at B drops 1 ref", dropped)
    ctx.poll_until(lambda: a.entry(x) is None, requirement="OWN-005", what=f"A reclaims X ({x}) once B released it", timeout=10.0)
    ctx.poll_until(lambda: b.entry(x) is None, requirement="BOR-005", what=f"B deletes its entry for X ({x})", timeout=10.0)


@case(
    "borrowing/BOR-002-TASK-011-ref-nested-in-a-value-argument",
    requirements=["BOR-002", "TASK-011", "REF-001", "REF-003", "BOR-020", "BOR-005"],
    features=("core", "borrowing"),
    summary=(
        "Suite peer S submits echo(v), where the value argument v embeds a ref to X, owned by suite peer O: "
        "the IUT holds X only under its task hold (TASK-011). Returning v hands X to S, which does not own it, "
        "so the IUT must register S with O and wait for O's answer before replying. O answers any "
        "registration the IUT makes for itself first (an executor that waits only for its own would reply "
        "then) and S's last; a probe task S sends after the IUT has read O's answers must be answered before "
        "echo's reply, which must carry the forwardId of S's grant."
    ),
)
def ref_nested_in_value_argument(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    o = ctx.wire_peer("owner")
    s = ctx.wire_peer("submitter")
    link_s = ctx.session(s, iut)
    x = ctx.new_id(o)
    o.auto_grant = lambda r: False  # the case answers every registration itself
    t = task(s, "echo", [by_value([PortableRef(0)], (ctx.descriptor(o, x, size_hint=8),))])
    link_s.send(t)
    reg_s: RegisterBorrower = ctx.expect(o, RegisterBorrower, lambda m: m.object_id == x and m.borrower == s.peer_id,
                                         requirement="BOR-002", what=f"RegisterBorrower for {x} naming the submitter",
                                         timeout=15.0).body
    link_o = o.link(iut.peer_id)
    # A round trip on the IUT's session with O: whatever the IUT sent O before is there now.
    link_o.send(GetObjectStatus(f"{o.ids.prefix}probe", wait=False))
    ctx.expect(o, ObjectStatus, lambda m: m.object_id == f"{o.ids.prefix}probe", requirement="OBJ-002",
               what="the IUT's answer to a probe GetObjectStatus")
    own = [a.body for a in o.received(RegisterBorrower, lambda m: m.object_id == x and m.borrower == iut.peer_id)]
    if own:
        ctx.note(f"the IUT also registered itself for {x} ({len(own)} time(s)); granted before the submitter's")
    for reg in own:
        o.grants[(x, reg.forward_id)] = iut.peer_id
        seq = link_o.send(BorrowerRegistered(x, reg.forward_id))
        ctx.wait_until(o, lambda: link_o.acked >= seq, requirement="SES-003", what="the IUT's ack of its own grant")
    probe = task(s, "echo", [by_value("probe")])
    link_s.send(probe)
    expect_reply(ctx, s, probe)
    early = s.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("BOR-002", not early, "no reply to echo(v) while S's registration is unanswered",
              f"{len(early)} reply(ies) before O's answer")
    o.grants[(x, reg_s.forward_id)] = s.peer_id
    link_o.send(BorrowerRegistered(x, reg_s.forward_id))
    reply = expect_reply(ctx, s, t)
    ret = reply.returns[0]
    ctx.require("TASK-011", ret.kind is ReturnKind.INLINE and ret.value is not None and len(ret.value.nested) == 1,
                "echo returns v: an inline value with one nested ref", describe_return(ret))
    assert ret.value is not None
    d = ret.value.nested[0]
    ctx.check("REF-003", (d.object_id, d.owner, d.owner_incarnation, d.owner_address) == (x, o.peer_id, o.incarnation, o.address),
              "X's descriptor with the owner's identity unchanged", f"{d.object_id}, {d.owner}/{d.owner_incarnation}")
    ctx.check("BOR-020", d.forward_id == reg_s.forward_id, f"forwardId {reg_s.forward_id!r} (S's grant)", repr(d.forward_id))
    check_own_grants_released(ctx, iut, o, x)


@case(
    "borrowing/BOR-021-one-self-registration-in-flight",
    requirements=["BOR-021", "BOR-007"],
    features=("core", "borrowing"),
    summary=(
        "The suite owns X and submits hold(shared X) twice. Each task keeps X after it ends, so the IUT needs a "
        "grant of its own (BOR-007), and the suite leaves the first RegisterBorrower unanswered: while it is in "
        "flight (until the IUT has acknowledged both tasks and sent two more heartbeats) no second "
        "RegisterBorrower for X may come. Once it is granted, both tasks are answered, and each lists X in "
        "`retained` only under a grant the suite made."
    ),
)
def one_self_registration_in_flight(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    peer.auto_grant = lambda r: r.object_id != x  # the case answers for X itself
    tasks = [task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))]) for _ in range(2)]
    seqs = [link.send(t) for t in tasks]
    first: RegisterBorrower = ctx.expect(peer, RegisterBorrower, lambda m: m.object_id == x, requirement="BOR-007",
                                         what=f"RegisterBorrower for {x}").body
    ctx.wait_until(peer, lambda: link.acked >= seqs[-1], requirement="SES-003", what="the IUT's ack of both tasks")
    beats = len(peer.received(Heartbeat))
    ctx.wait_until(peer, lambda: len(peer.received(Heartbeat)) >= beats + 2, requirement="LIV-001",
                   what="two heartbeats from the IUT after it acknowledged both tasks", timeout=10.0)
    regs = [a.body for a in peer.received(RegisterBorrower, lambda m: m.object_id == x)]
    ctx.check("BOR-021", len(regs) == 1, f"one RegisterBorrower for {x} while it is unanswered",
              f"{len(regs)}, forwardIds {[r.forward_id for r in regs]}")
    granted = {first.forward_id}

    def grant(reg: RegisterBorrower) -> bool:
        granted.add(reg.forward_id)
        return True

    peer.auto_grant = grant
    link.send(BorrowerRegistered(x, first.forward_id))
    for t in tasks:
        reply = expect_reply(ctx, peer, t, requirement="BOR-021")
        kept = [d.forward_id for d in reply.retained if d.object_id == x]
        ctx.check("BOR-007", len(kept) == 1 and kept[0] in granted, f"X retained once, under a grant the suite made ({sorted(granted)})",
                  kept)


@case(
    "borrowing/BOR-026-refused-registration-not-retained",
    requirements=["BOR-026", "BOR-007", "BOR-003"],
    features=("core", "borrowing"),
    summary=(
        "The suite owns X and submits hold(shared X); the IUT keeps X after the task and registers itself "
        "(BOR-007). The suite refuses that registration (BorrowerRegistered with error RESOURCE_EXHAUSTED). The "
        "IUT must still reply, and its `retained` must not list X: it names only grants the owner confirmed."
    ),
)
def refused_registration_not_retained(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    peer.auto_grant = lambda r: r.object_id != x  # the case answers for X itself
    t = task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))])
    link.send(t)
    reg: RegisterBorrower = ctx.expect(peer, RegisterBorrower, lambda m: m.object_id == x, requirement="BOR-007",
                                       what=f"RegisterBorrower for {x} before the reply").body
    link.send(BorrowerRegistered(x, reg.forward_id, ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, "refused by the conformance suite", "SEC-008")))
    reply = expect_reply(ctx, peer, t, requirement="BOR-026")
    kept = [(d.object_id, d.forward_id) for d in reply.retained if d.object_id == x]
    ctx.check("BOR-026", not kept, f"{x} not in `retained` (its registration was refused)", kept)


@case(
    "borrowing/BOR-024-no-release-to-a-fenced-owner",
    requirements=["BOR-024", "BOR-007", "FATE-001"],
    features=("core", "borrowing"),
    summary=(
        "Suite peer O owns X and submits hold(shared X); the IUT registers itself and keeps X. Suite peer W then "
        "tells the IUT that O's incarnation is dead, and a new incarnation of O (same PeerId) opens a session. "
        "When drop_held drops the IUT's last hold on X, the IUT must send ReleaseBorrows for X to nobody: not to "
        "the fenced incarnation, and not to the new one, which never granted anything (until the IUT is "
        "quiescent and two more of its heartbeats have reached the new incarnation)."
    ),
    timeout=60.0,
)
def no_release_to_a_fenced_owner(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    owner = ctx.wire_peer("owner")
    link_o = ctx.session(owner, iut)
    watcher = ctx.wire_peer("watcher")
    link_w = ctx.session(watcher, iut)
    x = ctx.new_id(owner)
    t = task(owner, "hold", [shared(ctx.descriptor(owner, x, size_hint=8))])
    link_o.send(t)
    reply = expect_reply(ctx, owner, t)
    ctx.require("BOR-007", any(d.object_id == x for d in reply.retained), f"{x} in `retained`",
                [d.object_id for d in reply.retained])
    nseq = link_w.send(PeerDeadNotice(owner.peer_id, owner.incarnation, "declared dead by the conformance suite"))
    ctx.wait_until(watcher, lambda: link_w.acked >= nseq, requirement="SES-003", what="the IUT's ack of the PeerDeadNotice")
    owner.heartbeats = False
    restarted = ctx.wire_peer(restart_of=owner)
    link_r = ctx.session(restarted, iut)
    dropped = iut.drop_held()
    ctx.check("CNF-008", dropped == 1, "drop_held drops 1 ref", dropped)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    beats = len(restarted.received(Heartbeat))
    ctx.wait_until(restarted, lambda: len(restarted.received(Heartbeat)) >= beats + 2, requirement="LIV-001",
                   what="two heartbeats from the IUT to the new incarnation", timeout=10.0)
    for peer in (owner, restarted):
        released = released_forward_ids(peer, x)
        ctx.check("BOR-024", not released, f"no ReleaseBorrows for {x} reaches {peer.peer_id}/{peer.incarnation:x}",
                  sorted(released))
    owner.go_silent()
