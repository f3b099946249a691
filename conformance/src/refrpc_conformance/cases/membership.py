"""membership.md: the head's registry as joiners see it, through the membership calls."""

from __future__ import annotations

from typing import Any

from refrpc.core.messages import ErrorCode

from .._case import case
from .._context import CaseContext
from .security import MEMBER_FEATURES, MEMBERSHIP, joiner, membership_call, start_head, welcomed

#: The keys of a whole view (CLU-032).
VIEW_KEYS = {"version", "members", "incarnations", "dead", "keys"}


def _view_check(ctx: CaseContext, ok: bool, view: Any, what: str) -> dict[str, Any]:
    """``view`` must be a whole view (CLU-032); returns it (a failure stops the case)."""
    if not ok:
        ctx.fail("CLU-067", f"{what} accepted, returning the view",
                 f"error {view.code.name} ({view.message!r:.160})")
    if not isinstance(view, dict) or set(view) != VIEW_KEYS:
        ctx.fail("CLU-032", f"{what} returns a dict with exactly the keys {sorted(VIEW_KEYS)}",
                 sorted(view) if isinstance(view, dict) else type(view).__name__)
    return view


def _listed(view: dict[str, Any]) -> list[Any]:
    return [row[0] for row in view.get("members", []) if isinstance(row, (tuple, list)) and row]


def _joined_member(ctx: CaseContext) -> tuple[Any, Any]:
    """The suite's head (PeerId ``head``, no cluster key) and the IUT started as a member
    that joined through it, without authentication (CNF-052); skips otherwise."""
    if not ctx.config.unauthenticated_member:
        ctx.skip("the IUT's config does not say it can be a member of a cluster without authentication "
                 "(unauthenticated_member = true)")
    head = ctx.wire_peer("head", cluster_key=None, features=MEMBER_FEATURES)
    if head.peer_id != "head":
        ctx.abort(f"the suite's head got the PeerId {head.peer_id!r}, not 'head'")
    return head, ctx.start_iut(env={"REFRPC_KEY_FILE": "", "REFRPC_IUT_JOINED_HEAD": head.address})


@case(
    "membership/CLU-067-CLU-013-register-records-the-caller-s-incarnation",
    requirements=["CLU-067", "CLU-013", "CLU-032", "CLU-050", "CLU-005", "CLU-006", "CLU-030", "CLU-031", "CNF-051"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, and runs the membership calls (pickled, "
        "CLU-030). Worker W joins and calls `register` with its own PeerId, address and incarnation: the view it "
        "returns is a dict of exactly the five keys, lists W in `members` with its address, W's incarnation in "
        "`incarnations`, and W's public key and the head's in `keys`. W then calls `register` naming another "
        "PeerId: the head must fail it with TASK_FAILED, and a later view lists no such worker. Worker X, which "
        "passes 0 for its incarnation, is accepted and listed with 0 (CLU-067: a head must not refuse it). Driver "
        "D first calls `members` before it registers (CLU-006): the head answers with the live workers, W and X, "
        "and not D. D then calls `register_driver` with its own incarnation and gets the whole view, W and X included. Needs "
        "`head_membership = true`."
    ),
)
def register_records_the_callers_incarnation(ctx: CaseContext) -> None:
    import zmq

    key, head_pair, iut = start_head(ctx, membership=True)
    head_public = head_pair[0]
    w_pair = zmq.curve_keypair()
    w = joiner(ctx, iut, key, head_public, "worker", pair=w_pair)
    w_link = welcomed(ctx, w, iut, "SEC-023", "a joiner with a valid join proof")
    ok, view = membership_call(ctx, w, w_link, "register",
                               (w.peer_id, w.address, 1, "suite-host", 0, {}, w.incarnation), requirement="CLU-005")
    view = _view_check(ctx, ok, view, "register with the caller's own incarnation")
    rows = [row for row in view["members"] if isinstance(row, (tuple, list)) and row and row[0] == w.peer_id]
    ctx.check("CLU-005", len(rows) == 1 and rows[0][1] == w.address,
              f"`members` lists {w.peer_id} once, at {w.address}", rows)
    ctx.check("CLU-067", view["incarnations"].get(w.peer_id) == w.incarnation,
              f"`incarnations` gives {w.peer_id} the incarnation it passed, {w.incarnation}",
              view["incarnations"].get(w.peer_id))
    keys = view["keys"]
    ctx.check("CLU-050", keys.get(w.peer_id) == w_pair[0].decode() and keys.get(iut.peer_id) == head_public.decode(),
              f"`keys` binds {w.peer_id} to its key and {iut.peer_id} to the head's", keys)

    ok, refused = membership_call(ctx, w, w_link, "register",
                                  ("someone-else", w.address, 1, "suite-host", 0, {}, w.incarnation ^ 1),
                                  requirement="CLU-013")
    ctx.check("CLU-013", not ok and refused.code is ErrorCode.TASK_FAILED,
              "register naming another PeerId than the caller's: ERROR(TASK_FAILED)",
              f"returned {refused!r:.80}" if ok else f"error {refused.code.name}")

    x = joiner(ctx, iut, key, head_public, "no-incarnation")
    x_link = welcomed(ctx, x, iut, "SEC-023", "a second joiner")
    ok, view = membership_call(ctx, x, x_link, "register", (x.peer_id, x.address, 1, "suite-host", 0, {}, 0),
                               requirement="CLU-067")
    view = _view_check(ctx, ok, view, "register passing 0 for the incarnation")
    ctx.check("CLU-067", view["incarnations"].get(x.peer_id, "absent") == 0,
              f"`incarnations` gives {x.peer_id}, which passed 0, the incarnation 0", view["incarnations"])
    ctx.check("CLU-013", "someone-else" not in _listed(view),
              "the refused registration left no trace: `members` lists no `someone-else`", _listed(view))

    d = joiner(ctx, iut, key, head_public, "driver")
    d_link = welcomed(ctx, d, iut, "SEC-023", "a joining driver")
    ok, live = membership_call(ctx, d, d_link, "members", (), requirement="CLU-006")
    ctx.check("CLU-006", ok and isinstance(live, list) and {w.peer_id, x.peer_id} <= set(_listed({"members": live}))
              and d.peer_id not in _listed({"members": live}),
              f"`members`, called before the driver registers, answers the live workers: {w.peer_id} and {x.peer_id}",
              f"returned {live!r:.200}" if ok else f"error {live.code.name} ({live.message!r:.120})")
    ok, view = membership_call(ctx, d, d_link, "register_driver", (d.peer_id, d.address, "suite-host", 0, d.incarnation),
                               requirement="CLU-006")
    view = _view_check(ctx, ok, view, "register_driver with the caller's own incarnation")
    ctx.check("CLU-032", {w.peer_id, x.peer_id} <= set(_listed(view)) and d.peer_id not in _listed(view),
              f"register_driver returns the whole view: {w.peer_id} and {x.peer_id} in `members`, the driver not",
              _listed(view))


def _learn(ctx: CaseContext, peer: Any, link: Any, version: int, requirement: str) -> tuple[bool, Any]:
    """Push a view of ``version`` that lists nobody (applying it changes nothing else)."""
    view = {"version": version, "members": [], "incarnations": {}, "dead": [], "keys": {}}
    return membership_call(ctx, peer, link, "learn", (view,), requirement=requirement)


def _said(ok: bool, result: Any) -> str:
    return f"returned {result!r:.80}" if ok else f"error {result.code.name} ({result.message!r:.120})"


@case(
    "membership/SEC-026-CLU-013-views-only-from-the-head-joined-through",
    requirements=["SEC-026", "CLU-013", "CLU-011", "CLU-031", "CNF-052"],
    summary=(
        "The IUT is a member of a cluster without authentication that joined through the head at address A "
        "(the suite's `head`, whose ROUTER is at A), started without a key file. A suite peer `stranger` pushes it "
        "a view (`learn`, pickled, version 7): it must fail with TASK_FAILED (CLU-013). A peer that claims the "
        "PeerId `head` from another address pushes version 5: it SHOULD fail with TASK_FAILED, the view not "
        "applied (SEC-026). The head at A, greeting as a new incarnation, pushes version 2: `learn` returns 2 "
        "(the last view applied: neither refused view was); then version 1: it returns what it returned for "
        "version 2, the older view ignored (CLU-011). Needs `unauthenticated_member = true`."
    ),
)
def views_only_from_the_head_joined_through(ctx: CaseContext) -> None:
    head, iut = _joined_member(ctx)
    stranger = ctx.wire_peer("stranger", cluster_key=None, features=MEMBER_FEATURES)
    ok, result = _learn(ctx, stranger, ctx.session(stranger, iut), 7, "CLU-013")
    ctx.check("CLU-013", not ok and result.code is ErrorCode.TASK_FAILED,
              "learn from a submitter that is not `head`: ERROR(TASK_FAILED)", _said(ok, result))
    false_head = ctx.wire_peer(restart_of=head, cluster_key=None, features=MEMBER_FEATURES)
    ok, result = _learn(ctx, false_head, ctx.session(false_head, iut), 5, "SEC-026")
    ctx.check("SEC-026", not ok and result.code is ErrorCode.TASK_FAILED,
              f"learn from a `head` at {false_head.address}, not the address joined through: ERROR(TASK_FAILED)",
              _said(ok, result))
    link = ctx.session(head, iut)  # the head at A: an incarnation the IUT has not met (HS-006)
    ok, result = _learn(ctx, head, link, 2, "SEC-026")
    ctx.check("CLU-011", ok and type(result) is int and result >= 2,
              "learn of version 2 from the head returns the version applied last, at least 2", _said(ok, result))
    ctx.check("SEC-026", ok and result == 2,
              f"learn of version 2 from the head at {head.address}, the address joined through, returns 2: "
              "no refused view was applied", _said(ok, result))
    last = result
    ok, result = _learn(ctx, head, link, 1, "CLU-011")
    ctx.check("CLU-011", ok and result == last,
              f"learn of an older view (version 1) is ignored: it returns {last!r}, the last applied", _said(ok, result))


@case(
    "membership/CLU-063-listed-incarnation-is-no-death",
    requirements=["CLU-063", "CLU-011", "CNF-052"],
    summary=(
        "The IUT is a member of a cluster without authentication that joined through the suite's head. Worker W "
        "(incarnation i1) opens a session with it and runs echo. The head pushes a view (version 1) that lists W "
        "under another incarnation i2 at another address, and names no death: the IUT must not fence i1 for "
        "that, so W (i1) still runs echo and gets no DECLARED_DEAD. The head then pushes version 2, whose `dead` "
        "lists i1 and whose `members` list i2: the IUT must now greet W's incarnation i2 at its listed address, "
        "with `receiverIncarnation` = i2. Needs `unauthenticated_member = true`."
    ),
)
def listed_incarnation_is_no_death(ctx: CaseContext) -> None:
    from refrpc.core.messages import Hello, ProtocolError

    from ._common import run_echo

    head, iut = _joined_member(ctx)
    w1 = ctx.wire_peer("worker", cluster_key=None)
    w1_link = ctx.session(w1, iut)
    run_echo(ctx, w1, w1_link, "before any view", requirement="CLU-063")
    w2 = ctx.wire_peer(restart_of=w1, cluster_key=None)
    row = (w2.peer_id, w2.address, 1, "suite-host", {})
    head_link = ctx.session(head, iut)
    view = {"version": 1, "members": [row], "incarnations": {w2.peer_id: w2.incarnation}, "dead": [], "keys": {}}
    ok, result = membership_call(ctx, head, head_link, "learn", (view,), requirement="CLU-011")
    ctx.check("CLU-011", ok and result == 1, "learn of version 1 returns 1", _said(ok, result))
    run_echo(ctx, w1, w1_link, "listed under another incarnation", requirement="CLU-063")
    dead = w1.received(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD)
    ctx.check("CLU-063", not dead, f"no DECLARED_DEAD for {w1.peer_id}'s incarnation the view does not list",
              [str(a.body.error) for a in dead])
    view = {"version": 2, "members": [row], "incarnations": {w2.peer_id: w2.incarnation},
            "dead": [(w1.peer_id, w1.incarnation, "the suite says so")], "keys": {}}
    ok, result = membership_call(ctx, head, head_link, "learn", (view,), requirement="CLU-011")
    ctx.check("CLU-011", ok and result == 2, "learn of version 2 returns 2", _said(ok, result))
    ctx.expect(w2, Hello, requirement="CLU-063", timeout=15.0,
               what=f"a Hello from the IUT to {w2.peer_id}'s listed incarnation at {w2.address}, once the one it "
                    "held is dead")
    greeted = [a.envelope.receiver_incarnation for a in w2.received(Hello)]
    ctx.check("CLU-063", w2.incarnation in greeted, f"the Hello names receiverIncarnation {w2.incarnation}", greeted)


@case(
    "membership/CLU-030-head-answers-pickled-whatever-the-arguments",
    requirements=["CLU-030", "CNF-051"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, and runs the membership calls. Joiner W "
        "calls `members` with no argument, then `register` with every argument `portable` (its PeerId, address, "
        "1, a host name, 0, an empty map and the incarnation 0, lists where CLU-031 has tuples). Membership values "
        "are pickled in both directions whatever the call's other values are (CLU-030): `members` must answer a "
        "pickled list, and `register` either a pickled view (the head read the portable arguments, which it may) "
        "or ERROR(TASK_FAILED) (it may refuse them), never a portable result. Needs `head_membership = true`."
    ),
)
def head_answers_pickled_whatever_the_arguments(ctx: CaseContext) -> None:
    from refrpc.core.messages import Arg, ArgKind, Encoding, ReturnKind

    from .._build import describe_return, portable, read_pickled
    from ._common import expect_reply, task

    key, head_pair, iut = start_head(ctx, membership=True)
    w = joiner(ctx, iut, key, head_pair[0], "worker")
    link = welcomed(ctx, w, iut, "SEC-023", "a joiner with a valid join proof")
    ok, live = membership_call(ctx, w, link, "members", (), requirement="CLU-030")
    ctx.check("CLU-030", ok and isinstance(live, list), "`members` with no argument answers a pickled list",
              _said(ok, live))
    args = [w.peer_id, w.address, 1, "suite-host", 0, {}, 0]
    t = task(w, f"{MEMBERSHIP}:register", [Arg(kind=ArgKind.VALUE, value=portable(a)) for a in args])
    link.send(t)
    reply = expect_reply(ctx, w, t, requirement="CLU-030")
    if len(reply.returns) != 1:
        ctx.fail("TASK-010", "one ReturnValue", f"{len(reply.returns)} returns")
    ret = reply.returns[0]
    if ret.error is not None:
        ctx.check("CLU-030", ret.error.code is ErrorCode.TASK_FAILED,
                  "`register` with portable arguments: a pickled view or ERROR(TASK_FAILED)", describe_return(ret))
        return
    encoding = ret.value.encoding if ret.kind is ReturnKind.INLINE and ret.value is not None else None
    ctx.require("CLU-030", encoding is Encoding.PICKLE,
                "`register` with portable arguments answers its view pickled", describe_return(ret))
    assert ret.value is not None
    try:
        view = read_pickled(ret.value)
    except ValueError as exc:
        ctx.fail("CLU-030", "`register`'s result a pickle of CLU-030's built-in types", str(exc))
    ctx.check("CLU-030", isinstance(view, dict) and w.peer_id in _listed(view),
              f"the pickled view lists {w.peer_id}", f"{view!r:.200}")


@case(
    "membership/BOR-011-CLU-034-member-never-fences-its-head-on-confirm-borrow",
    requirements=["BOR-011", "CLU-034", "CNF-052"],
    summary=(
        "The IUT is a member of a cluster without authentication that joined through the suite's head, which "
        "pushes it a view (version 1). Suite peer O, an owner, sends the IUT ConfirmBorrow for a grant on O's "
        "object X naming the head's live incarnation as a dead forwarder, then another naming suite peer F. A "
        "member judges its head by its own session only (BOR-011's exception): it must not fence the head on "
        "O's word, and answers held = true for the first (the safe side) though it holds no grant; it fences F "
        "and answers held = false for the second. The head then pushes version 2, and `learn` returns 2: the "
        "head's session goes on. Needs `unauthenticated_member = true`."
    ),
)
def member_never_fences_its_head_on_confirm_borrow(ctx: CaseContext) -> None:
    from refrpc.core.messages import BorrowConfirmed, ConfirmBorrow, ProtocolError

    head, iut = _joined_member(ctx)
    head_link = ctx.session(head, iut)
    ok, result = _learn(ctx, head, head_link, 1, "CLU-011")
    ctx.check("CLU-011", ok and result == 1, "learn of version 1 returns 1", _said(ok, result))
    o = ctx.wire_peer("owner", cluster_key=None)
    f = ctx.wire_peer("forwarder", cluster_key=None)
    o_link = ctx.session(o, iut)
    x = ctx.new_id(o)
    via_head, via_f = ctx.new_id(o), ctx.new_id(o)
    o_link.send(ConfirmBorrow(x, via_head, head.peer_id, head.incarnation))
    o_link.send(ConfirmBorrow(x, via_f, f.peer_id, f.incarnation))
    answers = {}
    for fid, who in ((via_head, "the head"), (via_f, "F")):
        answers[fid] = ctx.expect(o, BorrowConfirmed, lambda m, fid=fid: m.forward_id == fid, requirement="BOR-011",
                                  what=f"BorrowConfirmed for the grant {fid} naming {who} as forwarder").body
    ctx.check("BOR-011", answers[via_head].held is True,
              "held = true for a ConfirmBorrow naming the head: a member does not fence its head on an owner's word",
              str(answers[via_head]))
    ctx.check("BOR-011", answers[via_f].held is False, "held = false for a grant it never had, forwarded by F",
              str(answers[via_f]))
    ok, result = _learn(ctx, head, head_link, 2, "BOR-011")
    ctx.check("BOR-011", ok and result == 2,
              "the head, not fenced, is still heard: learn of version 2 returns 2", _said(ok, result))
    dead = head.received(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD)
    ctx.check("BOR-011", not dead, "no DECLARED_DEAD to the head", [str(a.body.error) for a in dead])
