"""ownership.md §3 and §4 with the IUT as owner: releases that must be ignored,
grants of a dead borrower, and the owner's tables after a long run."""

from __future__ import annotations

from refrpc.core.messages import (
    BorrowerRegistered,
    BorrowRelease,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    RegisterBorrower,
    ReleaseBorrows,
)

from .._case import case
from .._context import CaseContext
from .._wire import Link, WirePeer
from ._common import FAST_DETECTION


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
