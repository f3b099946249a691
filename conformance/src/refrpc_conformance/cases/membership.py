"""membership.md: the head's registry as joiners see it, through the membership calls."""

from __future__ import annotations

from typing import Any

from refrpc.core.messages import ErrorCode

from .._case import case
from .._context import CaseContext
from .security import joiner, membership_call, start_head, welcomed

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


@case(
    "membership/CLU-067-CLU-013-register-records-the-caller-s-incarnation",
    requirements=["CLU-067", "CLU-013", "CLU-032", "CLU-050", "CLU-005", "CLU-031", "CNF-051"],
    summary=(
        "The IUT is the head of a cluster whose joiners the suite plays, and runs the membership calls (pickled, "
        "CLU-030). Worker W joins and calls `register` with its own PeerId, address and incarnation: the view it "
        "returns is a dict of exactly the five keys, lists W in `members` with its address, W's incarnation in "
        "`incarnations`, and W's public key and the head's in `keys`. W then calls `register` naming another "
        "PeerId: the head must fail it with TASK_FAILED, and a later view lists no such worker. Worker X, which "
        "passes 0 for its incarnation, is accepted and listed with 0 (CLU-067: a head must not refuse it). Driver "
        "D calls `register_driver` with its own incarnation and gets the whole view, W and X included. Needs "
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
    ok, view = membership_call(ctx, d, d_link, "register_driver", (d.peer_id, d.address, "suite-host", 0, d.incarnation),
                               requirement="CLU-006")
    view = _view_check(ctx, ok, view, "register_driver with the caller's own incarnation")
    ctx.check("CLU-032", {w.peer_id, x.peer_id} <= set(_listed(view)) and d.peer_id not in _listed(view),
              f"register_driver returns the whole view: {w.peer_id} and {x.peer_id} in `members`, the driver not",
              _listed(view))
