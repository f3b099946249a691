"""tasks-and-rpc.md §8: actors (feature `actors`), with the fixture class Counter."""

from __future__ import annotations

from refrpc.core.messages import ActorState, ActorStatus, CreateActor, ErrorCode, KillActor, ReturnKind

from .._build import by_value, describe_return
from .._case import case
from .._context import CaseContext
from ._common import check_inline, expect_reply, open_session, task


@case(
    "actors/ACT-001-ACT-003-ACT-006-counter-lifecycle",
    requirements=["ACT-001", "ACT-003", "ACT-004", "ACT-006", "ACT-010", "CNF-001"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(5) on the IUT: ActorStatus(ALIVE). It calls add(1), add(2) and get() "
        "with actorSeq 1, 2, 3: the replies are 6, 8 and 8 (calls run in order). After KillActor the IUT "
        "answers ActorStatus(DEAD), and a further call fails with ACTOR_DIED. A class the IUT does not "
        "have is answered ActorStatus(DEAD) with UNKNOWN_FUNCTION."
    ),
)
def counter_lifecycle(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = ctx.new_id(peer)
    link.send(CreateActor(actor, "Counter", (by_value(5),)))
    st: ActorStatus = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    calls = [("add", [by_value(1)], 6), ("add", [by_value(2)], 8), ("get", [], 8)]
    sent = []
    for n, (method, args, _) in enumerate(calls, start=1):
        t = task(peer, method, args, actor_id=actor, actor_seq=n)
        link.send(t)
        sent.append(t)
    for t, (method, _, expected) in zip(sent, calls):
        check_inline(ctx, expect_reply(ctx, peer, t), expected, requirement="ACT-003",
                     note=f"{method} (actorSeq {t.actor_seq}) runs after the calls before it")
    link.send(KillActor(actor))
    dead: ActorStatus = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE,
                                   requirement="ACT-006", what="ActorStatus(DEAD) after KillActor").body
    ctx.check("ACT-006", dead.state is ActorState.DEAD, "DEAD", dead.state.value)
    late = task(peer, "get", [], actor_id=actor, actor_seq=4)
    link.send(late)
    ret = expect_reply(ctx, peer, late, requirement="ACT-004").returns[0]
    ctx.check("ACT-004", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.ACTOR_DIED,
              "ERROR(ACTOR_DIED)", describe_return(ret))
    other = ctx.new_id(peer)
    link.send(CreateActor(other, "conformance.NoSuchClass", ()))
    st = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == other, requirement="ACT-001", what=f"ActorStatus for {other}").body
    ctx.check("ACT-001", st.state is ActorState.DEAD and st.error is not None and st.error.code is ErrorCode.UNKNOWN_FUNCTION,
              "DEAD with UNKNOWN_FUNCTION", f"{st.state.value} {st.error}")
