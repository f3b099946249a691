"""ownership.md §3: the suite as owner lends refs; the IUT registers, forwards and releases."""

from __future__ import annotations

import time
from dataclasses import replace

from refrpc.core.messages import (
    BorrowerRegistered,
    BorrowRelease,
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import PortableRef, describe_return, portable, read_portable, shared
from .._case import case
from .._context import IUT, CaseContext
from .._wire import WirePeer
from ._common import check_own_grants_released, expect_reply, open_session, released_forward_ids, task

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
