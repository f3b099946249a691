"""tasks-and-rpc.md §5.1: an executor admits tasks by the demand SubmitTask carries,
and an actor's host holds the lifetime demand its CreateActor carries (ACT-027).

The IUT offers one CPU slot and no named resource (CNF-038), to the actors it hosts
as to its tasks (CNF-044). Each task case keeps that slot busy with a long ``sleep``,
sends a second task, and judges by the order of the replies: a task that may run
beside the sleep is answered first; the sleep is then cancelled (TASK-008), so
nothing waits for it to end. The actor cases hold the slot with a Counter instead.
"""

from __future__ import annotations

from dataclasses import replace

from refrpc.core.messages import (
    ActorState,
    ActorStatus,
    CancelTask,
    CreateActor,
    ErrorCode,
    KillActor,
    ProtocolError,
    ResourceAmount,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_value, describe_return, portable, read_portable
from .._case import case
from .._context import CaseContext
from .._control import ControlError
from .._wire import Link, WirePeer
from ._common import expect_reply, open_session, task

#: How long the task that holds the slot would sleep if nothing stopped it: longer than
#: the suite waits for the other task's reply, so an IUT that runs the other behind it
#: is caught by the order of the replies.
HOLD_MS = 30000
ONE_SLOT, HALF_SLOT = 10000, 5000


def _hold_slot(ctx: CaseContext, peer: WirePeer, link: Link, cpu: int) -> SubmitTask:
    """Send sleep(HOLD_MS) taking ``cpu`` and wait until the IUT has acknowledged it."""
    holder = task(peer, "sleep", [by_value(HOLD_MS)], cpu_demand=cpu)
    seq = link.send(holder)
    ctx.wait_until(peer, lambda: link.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    return holder


def _answered_beside(ctx: CaseContext, peer: WirePeer, link: Link, holder: SubmitTask, other: SubmitTask,
                     requirement: str, note: str) -> TaskReply:
    """``other`` is answered while ``holder`` still sleeps; then ``holder`` is cancelled."""
    reply = expect_reply(ctx, peer, other, requirement=requirement, timeout=HOLD_MS / 1000 - 5)
    early = not peer.received(TaskReply, lambda m: m.task_id == holder.task_id)
    ctx.check(requirement, early, f"{other.function} answered while sleep({HOLD_MS}) still runs",
              "answered first" if early else "answered after the sleep", note=note)
    link.send(CancelTask(holder.task_id))
    expect_reply(ctx, peer, holder, timeout=HOLD_MS / 1000 + 20)
    return reply


def _echoed(ctx: CaseContext, reply: TaskReply, expected: object, requirement: str, note: str) -> None:
    ok = [r.kind for r in reply.returns] == [ReturnKind.INLINE] and _value(reply) == expected
    ctx.check(requirement, ok, f"one inline return {expected!r}", [describe_return(r) for r in reply.returns], note=note)


def _value(reply: TaskReply) -> object:
    try:
        return read_portable(reply.returns[0].value)
    except Exception:
        return None


@case(
    "tasks/TASK-050-two-half-slot-tasks-run-at-once",
    requirements=["TASK-050", "CNF-038"],
    summary=(
        f"The suite sends sleep({HOLD_MS}) with cpuDemand 5000 (half the IUT's one slot) and, once it is "
        "acknowledged, echo(1) with cpuDemand 5000. Both fit the slot, so echo must be answered while the sleep "
        "still runs; the sleep is then cancelled."
    ),
)
def half_slot_tasks(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    holder = _hold_slot(ctx, peer, link, HALF_SLOT)
    other = task(peer, "echo", [by_value(1)], cpu_demand=HALF_SLOT)
    link.send(other)
    reply = _answered_beside(ctx, peer, link, holder, other, "TASK-050", "two tasks of half a slot")
    _echoed(ctx, reply, 1, "TASK-050", "the half-slot echo")
    iut.quiesce()


@case(
    "tasks/TASK-051-task-taking-nothing-runs-beside-a-full-slot",
    requirements=["TASK-051", "CNF-038"],
    summary=(
        f"The suite sends sleep({HOLD_MS}) taking the IUT's whole slot (cpuDemand 10000) and, once it is "
        "acknowledged, echo(2) with cpuDemand 0. A task that takes nothing must not wait for the running one: "
        "echo is answered while the sleep still runs; the sleep is then cancelled."
    ),
)
def zero_cpu_task(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    holder = _hold_slot(ctx, peer, link, ONE_SLOT)
    other = task(peer, "echo", [by_value(2)], cpu_demand=0)
    link.send(other)
    reply = _answered_beside(ctx, peer, link, holder, other, "TASK-051", "a task of cpuDemand 0")
    _echoed(ctx, reply, 2, "TASK-051", "the zero-CPU echo")
    iut.quiesce()


@case(
    "tasks/TASK-053-named-resource-not-offered",
    requirements=["TASK-053", "CNF-038"],
    summary=(
        f"The suite sends sleep({HOLD_MS}) taking the IUT's whole slot and then echo(3) asking for one `gpu` "
        "(cpuDemand 0), which the IUT does not offer. The echo can never run there: it must be answered at once "
        "(while the sleep runs) with every return ERROR(RESOURCE_EXHAUSTED), without running."
    ),
)
def resource_not_offered(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    holder = _hold_slot(ctx, peer, link, ONE_SLOT)
    other = task(peer, "echo", [by_value(3)], cpu_demand=0, resources=(ResourceAmount("gpu", ONE_SLOT),))
    link.send(other)
    reply = _answered_beside(ctx, peer, link, holder, other, "TASK-053", "a task asking for a gpu")
    codes = [r.error.code if r.kind is ReturnKind.ERROR and r.error is not None else None for r in reply.returns]
    ctx.check("TASK-053", codes == [ErrorCode.RESOURCE_EXHAUSTED], "every return ERROR(RESOURCE_EXHAUSTED)",
              [describe_return(r) for r in reply.returns])
    iut.quiesce()


@case(
    "tasks/TASK-054-resource-named-twice-is-malformed",
    requirements=["TASK-054", "ERR-003"],
    summary=(
        "The suite sends echo(4) whose resources name `gpu` twice. The IUT must answer ProtocolError(MALFORMED) "
        "about that message and run nothing; the session goes on (a plain echo is answered)."
    ),
)
def resource_named_twice(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    bad = task(peer, "echo", [by_value(4)], cpu_demand=0,
               resources=(ResourceAmount("gpu", 1), ResourceAmount("gpu", 1)))
    seq = link.send(bad)
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="TASK-054",
                         what=f"ProtocolError about seq {seq}")
    ctx.check("TASK-054", arrival.body.error.code is ErrorCode.MALFORMED, "code MALFORMED", arrival.body.error.code.value)
    good = task(peer, "echo", [by_value(5)])
    link.send(good)
    _echoed(ctx, expect_reply(ctx, peer, good), 5, "TASK-054", "the echo sent after the malformed task")
    iut.quiesce()
    ran = peer.received(TaskReply, lambda m: m.task_id == bad.task_id)
    ctx.check("TASK-054", not ran, "no TaskReply for the malformed task", f"{len(ran)}")


@case(
    "tasks/VAL-030-return-id-named-twice-is-malformed",
    requirements=["VAL-030", "ERR-003"],
    summary=(
        "The suite sends echo(4) whose returnIds name the same id twice. The IUT must answer "
        "ProtocolError(MALFORMED) about that message and run nothing; the session goes on (the same task id "
        "sent again with two distinct return ids is answered)."
    ),
)
def return_id_named_twice(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    good = task(peer, "echo", [by_value(4)], num_returns=2)
    bad = replace(good, return_ids=(good.return_ids[0], good.return_ids[0]))
    seq = link.send(bad)
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="VAL-030",
                         what=f"ProtocolError about seq {seq}")
    ctx.check("VAL-030", arrival.body.error.code is ErrorCode.MALFORMED, "code MALFORMED", arrival.body.error.code.value)
    iut.quiesce()
    ran = peer.received(TaskReply, lambda m: m.task_id == bad.task_id)
    ctx.check("VAL-030", not ran, "no TaskReply for the malformed task", f"{len(ran)}")
    link.send(good)
    reply = expect_reply(ctx, peer, good, requirement="VAL-030")
    ctx.check("VAL-030", [r.object_id for r in reply.returns] == list(good.return_ids),
              "the task with distinct return ids answered", [r.object_id for r in reply.returns])


def _actor_status(ctx: CaseContext, peer: WirePeer, actor: str, requirement: str, what: str) -> ActorStatus:
    return ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor, requirement=requirement, what=what).body


@case(
    "actors/ACT-027-actor-holds-the-slot-a-task-waits-for",
    requirements=["ACT-027", "ACT-025", "CNF-044"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(0) whose CreateActor takes the IUT's whole CPU slot for its life "
        "(cpuDemand 10000): ActorStatus(ALIVE). It then sends echo(7) taking one slot and, once that is "
        "acknowledged, echo(8) taking nothing and a call add(1) of the actor: both must be answered while "
        "echo(7) waits (the actor holds the slot; its calls take nothing). After KillActor, ActorStatus(DEAD) "
        "and then echo(7)'s reply 7: the slot is free once the actor is dead."
    ),
)
def actor_holds_the_slot(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = ctx.new_id(peer)
    link.send(CreateActor(actor, "Counter", (by_value(0),), cpu_demand=ONE_SLOT))
    st = _actor_status(ctx, peer, actor, "ACT-027", f"ActorStatus for {actor}")
    ctx.require("ACT-027", st.state is ActorState.ALIVE, "ALIVE (the slot is free: the actor fits)",
                f"{st.state.value} {st.error or ''}")
    gated = task(peer, "echo", [by_value(7)], cpu_demand=ONE_SLOT)
    seq = link.send(gated)
    ctx.wait_until(peer, lambda: link.acked >= seq, requirement="SES-003", what="the IUT's ack of echo(7)")
    probe = task(peer, "echo", [by_value(8)], cpu_demand=0)
    call = task(peer, "add", [by_value(1)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link.send(probe)
    link.send(call)
    _echoed(ctx, expect_reply(ctx, peer, probe, requirement="TASK-051"), 8, "TASK-051", "the zero-CPU echo")
    _echoed(ctx, expect_reply(ctx, peer, call, requirement="ACT-025"), 1, "ACT-025", "the actor's call")
    waited = not peer.received(TaskReply, lambda m: m.task_id == gated.task_id)
    ctx.check("ACT-027", waited, "echo(7), taking the slot the actor holds, not answered while the actor lives",
              "waits" if waited else "answered: it ran beside the actor")
    link.send(KillActor(actor))
    dead = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE,
                      requirement="ACT-006", what="ActorStatus(DEAD) after KillActor").body
    ctx.check("ACT-006", dead.state is ActorState.DEAD, "DEAD", dead.state.value)
    _echoed(ctx, expect_reply(ctx, peer, gated, requirement="ACT-027"), 7, "ACT-027",
            "echo(7) once the actor is dead")
    iut.quiesce()


@case(
    "actors/ACT-028-ACT-030-actor-asking-for-a-resource-not-offered",
    requirements=["ACT-028", "ACT-030", "ACT-004", "CNF-038"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(0) whose CreateActor asks for one `gpu` for its life, which the IUT does "
        "not offer, and sends a call add(1) of it right after: ActorStatus(DEAD) with RESOURCE_EXHAUSTED, "
        "and the call fails with ACTOR_DIED. A CreateActor naming `gpu` twice is refused with "
        "ProtocolError(MALFORMED) and no ActorStatus; the session goes on (a plain echo is answered)."
    ),
)
def actor_resource_not_offered(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = ctx.new_id(peer)
    link.send(CreateActor(actor, "Counter", (by_value(0),), resources=(ResourceAmount("gpu", ONE_SLOT),)))
    call = task(peer, "add", [by_value(1)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link.send(call)
    st = _actor_status(ctx, peer, actor, "ACT-028", f"ActorStatus for {actor}")
    ctx.check("ACT-028", st.state is ActorState.DEAD and st.error is not None
              and st.error.code is ErrorCode.RESOURCE_EXHAUSTED, "DEAD with RESOURCE_EXHAUSTED",
              f"{st.state.value} {st.error or ''}")
    ret = expect_reply(ctx, peer, call, requirement="ACT-004").returns[0]
    ctx.check("ACT-004", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.ACTOR_DIED,
              "ERROR(ACTOR_DIED)", describe_return(ret))
    twice = ctx.new_id(peer)
    seq = link.send(CreateActor(twice, "Counter", (by_value(0),),
                                resources=(ResourceAmount("gpu", 1), ResourceAmount("gpu", 1))))
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="ACT-030",
                         what=f"ProtocolError about seq {seq}")
    ctx.check("ACT-030", arrival.body.error.code is ErrorCode.MALFORMED, "code MALFORMED", arrival.body.error.code.value)
    good = task(peer, "echo", [by_value(9)])
    link.send(good)
    _echoed(ctx, expect_reply(ctx, peer, good), 9, "ACT-030", "the echo sent after the malformed CreateActor")
    iut.quiesce()
    status = peer.received(ActorStatus, lambda m: m.actor_id == twice)
    ctx.check("ACT-030", not status, "no ActorStatus for the malformed CreateActor", f"{len(status)}")


#: TASK-061's worked values (amount -> ten-thousandths), and the two field limits.
DEMAND_TABLE = ((0.07, 700), (0.14, 1400), (0.33333, 3334), (1.1, 11000), (1e-05, 1), (1e-11, 1),
                (1.00000000001, 10001), (0.12345678, 1235), (3, 30000), (0, 0))
CPU_LIMIT, RESOURCE_LIMIT = 2**32 - 1, 2**64 - 1


@case(
    "tasks/TASK-061-CNF-053-demand-converted-exactly",
    requirements=["TASK-061", "TASK-050", "CNF-053"],
    summary=(
        "The IUT submits echo tasks to suite peer E, one for each worked value of TASK-061, each asking that "
        "amount of CPU and of a named resource `gpu` (control channel `submit` with `num_cpus` and "
        "`resources`, CNF-053). Each SubmitTask must carry the amount converted exactly: cpuDemand 1400 and "
        "gpu 1400 for 0.14 (binary arithmetic gives 1401), 1 for 1e-11 (a demand that is not 0 never becomes "
        "0), no `gpu` entry for 0. A CPU amount of 1e10 is sent as 4,294,967,295 and a `gpu` amount of 1e20 as "
        "2^64 - 1. A negative amount is refused (bad_request) and nothing is sent for it."
    ),
)
def demand_converted_exactly(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    asked = [(amount, want, want, amount) for amount, want in DEMAND_TABLE]
    asked.append((1e10, CPU_LIMIT, RESOURCE_LIMIT, 1e20))
    returns = []
    for n, (cpus, _, _, gpu) in enumerate(asked):
        sub = iut.submit("echo", [{"value": n}], executor=e.peer_id, num_cpus=cpus, resources={"gpu": gpu})
        returns.append(sub["returns"][0])
    for n, (cpus, want_cpu, want_gpu, gpu) in enumerate(asked):
        st: SubmitTask = ctx.expect(e, SubmitTask, lambda m, n=n: m.args and m.args[0].value is not None
                                    and read_portable(m.args[0].value) == n, requirement="TASK-050",
                                    what=f"the SubmitTask of echo({n})").body
        ctx.check("TASK-061", st.cpu_demand == want_cpu, f"cpuDemand {want_cpu} for num_cpus {cpus!r}", st.cpu_demand)
        got = {r.name: r.amount for r in st.resources}
        want = {"gpu": want_gpu} if want_gpu else {}
        ctx.check("TASK-061", got == want, f"resources {want} for gpu {gpu!r}", got)
        e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE,
                                                                                 value=portable(n)),)))
    for n, rid in enumerate(returns):
        got_value = iut.get(rid)
        ctx.check("TASK-005", got_value.get("value") == n, f"echo({n}) returns {n}", got_value)
    before = len(e.received(SubmitTask))
    for bad in ({"num_cpus": -1}, {"resources": {"gpu": -0.5}}):
        try:
            iut.submit("echo", [{"value": "negative"}], executor=e.peer_id, **bad)
        except ControlError as exc:
            ctx.check("CNF-053", exc.code == "bad_request", f"{bad} answered bad_request", exc.code)
        else:
            ctx.check("CNF-053", False, f"{bad} answered bad_request", "accepted")
    iut.quiesce()
    ctx.check("TASK-061", len(e.received(SubmitTask)) == before, "nothing sent for a negative amount",
              f"{len(e.received(SubmitTask)) - before} SubmitTask")


@case(
    "tasks/TASK-055-TASK-008-waiting-task-reserves-and-leaves-when-cancelled",
    requirements=["TASK-055", "TASK-008", "CNF-038"],
    summary=(
        f"The suite sends sleep({HOLD_MS}) taking half the IUT's one slot (cpuDemand 5000) and, once it is "
        "acknowledged, echo(\"big\") taking the whole slot (it cannot fit and waits, reserving CPU) and then "
        "echo(\"small\") taking half a slot (it would fit beside the sleep, but the waiting task before it "
        "reserves CPU, so it must not start first), then a probe echo taking nothing (answered at once, "
        "TASK-051). Once the probe is answered the suite cancels echo(\"big\"): a waiting task that is cancelled "
        "leaves the order at once and is answered with every return ERROR(TASK_CANCELLED) while the sleep "
        "still runs, and only then may echo(\"small\") start: its reply must acknowledge the CancelTask (it "
        "was sent after the IUT received it). The sleep is then cancelled."
    ),
)
def waiting_task_reserves(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    holder = _hold_slot(ctx, peer, link, HALF_SLOT)
    big = task(peer, "echo", [by_value("big")], cpu_demand=ONE_SLOT)
    small = task(peer, "echo", [by_value("small")], cpu_demand=HALF_SLOT)
    probe = task(peer, "echo", [by_value("probe")], cpu_demand=0)
    link.send(big)
    link.send(small)
    link.send(probe)
    _echoed(ctx, expect_reply(ctx, peer, probe, requirement="TASK-051"), "probe", "TASK-051", "the zero-CPU probe")
    cancel_seq = link.send(CancelTask(big.task_id))
    reply = expect_reply(ctx, peer, big, requirement="TASK-055", timeout=10.0)
    early = not peer.received(TaskReply, lambda m: m.task_id == holder.task_id)
    ctx.check("TASK-055", early, f"the cancelled waiting task answered at once, while sleep({HOLD_MS}) still runs",
              "answered first" if early else "answered only once the sleep ended")
    codes = [r.error.code if r.kind is ReturnKind.ERROR and r.error is not None else None for r in reply.returns]
    ctx.check("TASK-008", codes == [ErrorCode.TASK_CANCELLED], "every return ERROR(TASK_CANCELLED) (it never started)",
              [describe_return(r) for r in reply.returns])
    arrival = ctx.expect(peer, TaskReply, lambda m: m.task_id == small.task_id, requirement="TASK-055",
                         what="the reply of echo(\"small\") once the task before it left", timeout=HOLD_MS / 1000 - 5)
    _echoed(ctx, arrival.body, "small", "TASK-055", "the half-slot echo behind the waiting one")
    ctx.check("TASK-055", arrival.envelope.ack >= cancel_seq,
              f"echo(\"small\") answered only after the IUT received the CancelTask of the waiting task (ack >= {cancel_seq})",
              f"its reply acknowledges seq {arrival.envelope.ack}: it started before the task reserving CPU ahead of it")
    link.send(CancelTask(holder.task_id))
    expect_reply(ctx, peer, holder, timeout=HOLD_MS / 1000 + 20)
    iut.quiesce()
