"""tasks-and-rpc.md §8: actors (feature `actors`), with the fixture class Counter."""

from __future__ import annotations

import time
from typing import Any
from dataclasses import replace

from refrpc.core.messages import (
    ActorState,
    ActorStatus,
    BorrowerRegistered,
    BorrowRelease,
    CreateActor,
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    KillActor,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_ref, by_value, describe_return, portable, read_portable, stored_form
from .._case import case
from .._context import IUT, CaseContext
from .._control import ControlError, to_json_value
from .._wire import WirePeer
from ._common import check_inline, expect_reply, leave_with_goodbye, open_session, task


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


@case(
    "actors/ACT-014-ACT-015-unknown-method-and-seq-gap",
    requirements=["ACT-015", "ACT-014", "ACT-003", "ACT-013"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(0) on the IUT and calls add(1) (actorSeq 1), then a method the class does "
        "not have (actorSeq 2): every return ERROR(UNKNOWN_FUNCTION), and the actor lives on. It then skips "
        "actorSeq 3 and 4 and calls add(2) as actorSeq 5: the IUT must not wait for the missing numbers (the "
        "reply is 3). A call with actorSeq 4 sent after that must not run: ERROR(WRONG_STATE). A last get "
        "(actorSeq 6) answers 3: the refused call changed nothing."
    ),
)
def unknown_method_and_gap(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = ctx.new_id(peer)
    link.send(CreateActor(actor, "Counter", (by_value(0),)))
    st: ActorStatus = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")

    def call(method: str, seq: int, *args: object) -> TaskReply:
        t = task(peer, method, [by_value(a) for a in args], actor_id=actor, actor_seq=seq)
        link.send(t)
        return expect_reply(ctx, peer, t, requirement="ACT-014" if seq == 5 else "TASK-005", timeout=10.0)

    check_inline(ctx, call("add", 1, 1), 1, requirement="ACT-003", note="add(1), actorSeq 1")
    ret = call("conformance_no_such_method", 2).returns[0]
    ctx.check("ACT-015", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.UNKNOWN_FUNCTION,
              "ERROR(UNKNOWN_FUNCTION) for a method the class does not have", describe_return(ret))
    dead = peer.received(ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE)
    ctx.check("ACT-015", not dead, "the actor stays alive (no ActorStatus DEAD)", [str(d.body) for d in dead])
    check_inline(ctx, call("add", 5, 2), 3, requirement="ACT-014", note="add(2) with actorSeq 5, after a gap (3 and 4 never sent)")
    ret = call("add", 4, 10).returns[0]
    ctx.check("ACT-014", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.WRONG_STATE,
              "ERROR(WRONG_STATE) for actorSeq 4 after actorSeq 5 ran", describe_return(ret))
    check_inline(ctx, call("get", 6), 3, requirement="ACT-014", note="get (actorSeq 6): the refused call did not run")


def _counter(ctx: CaseContext, iut: IUT, peer: WirePeer, start: int) -> str:
    """The suite creates a Counter(``start``) on the IUT over ``peer``'s session; its actor id."""
    actor = ctx.new_id(peer)
    peer.link(iut.peer_id).send(CreateActor(actor, "Counter", (by_value(start),)))
    st: ActorStatus = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    return actor


@case(
    "actors/ACT-035-actor-id-of-another-owner-refused",
    requirements=["ACT-035", "ACT-006", "ACT-003"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter(1) on the IUT. A second suite peer L, on its own session, sends a "
        "CreateActor with O's actor id (a class of its own): the IUT must refuse it with ProtocolError(MALFORMED) "
        "whose relatedSeq is that message's seq and whose requirement is ACT-035, and start nothing for it. O's "
        "actor stays O's: a get by O answers 1, a KillActor from L changes nothing (O's next get still answers "
        "1), and O's own KillActor is answered ActorStatus(DEAD)."
    ),
)
def actor_id_of_another_owner(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx, peer_name="owner")
    actor = _counter(ctx, iut, peer, 1)
    liar = ctx.wire_peer("liar")
    liar_link = ctx.session(liar, iut)
    bad_seq = liar_link.send(CreateActor(actor, "Counter", (by_value(100),)))
    err: ProtocolError = ctx.expect(liar, ProtocolError, lambda m: m.related_seq == bad_seq, requirement="ACT-035",
                                    what=f"ProtocolError about seq {bad_seq} (a CreateActor reusing O's actor id)").body
    ctx.check("ACT-035", (err.error.code, err.error.requirement) == (ErrorCode.MALFORMED, "ACT-035"),
              'code MALFORMED, requirement "ACT-035"', f"{err.error.code.value}, {err.error.requirement!r}")
    statuses = liar.received(ActorStatus, lambda m: m.actor_id == actor)
    ctx.check("ACT-035", not statuses, f"no ActorStatus to {liar.peer_id} (no constructor started for it)",
              [str(a.body) for a in statuses] or "none")

    def get(seq: int) -> TaskReply:
        t = task(peer, "get", [], actor_id=actor, actor_seq=seq)
        link.send(t)
        return expect_reply(ctx, peer, t, requirement="ACT-035", timeout=10.0)

    check_inline(ctx, get(1), 1, requirement="ACT-035", note="O's actor still holds O's state after the refusal")
    kill_seq = liar_link.send(KillActor(actor))
    ctx.wait_until(liar, lambda: liar_link.acked >= kill_seq, requirement="SES-003",
                   what=f"the IUT's ack of {liar.peer_id}'s KillActor (seq {kill_seq})")
    check_inline(ctx, get(2), 1, requirement="ACT-006", note=f"a KillActor from {liar.peer_id}, not the owner, stops nothing")
    link.send(KillActor(actor))
    dead: ActorStatus = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE,
                                   requirement="ACT-006", what="ActorStatus(DEAD) after O's KillActor").body
    ctx.check("ACT-006", dead.state is ActorState.DEAD, "DEAD", dead.state.value)


@case(
    "actors/ACT-014-ACT-003-calls-arriving-out-of-order",
    requirements=["ACT-014", "ACT-003", "ACT-018"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(0) on the IUT (concurrency 1) and calls add(X by ref) as actorSeq 1, X the "
        "suite's, unanswered: the call waits for its argument and keeps its place. Then come get as actorSeq 5 and "
        "add(10) as actorSeq 3, in that order: neither may run before call 1. Once X (1) is answered, the lowest "
        "waiting number starts first: call 3 answers 11, and get (call 5) 11. Then add(Y by ref) as actorSeq 6 "
        "waits for Y, and add(1000) as actorSeq 4 (below 5, which already started) must be refused at once, on "
        "arrival, with ERROR(WRONG_STATE) while call 6 still waits; once Y (2) is answered call 6 answers 13, and "
        "a last get 13: the refused call changed nothing."
    ),
)
def calls_arriving_out_of_order(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = _counter(ctx, iut, peer, 0)
    last_seq = [0]

    def call(method: str, seq: int, *args: object, ref: str = "") -> SubmitTask:
        arguments = [by_ref(ctx.descriptor(peer, ref))] if ref else [by_value(a) for a in args]
        t = task(peer, method, arguments, actor_id=actor, actor_seq=seq, cpu_demand=0)
        last_seq[0] = link.send(t)
        return t

    def waits_for(oid: str) -> None:
        ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == oid, requirement="TASK-002",
                   what=f"GetObjectStatus for the call's argument {oid}")

    def answer(oid: str, n: int) -> None:
        value = portable(n)
        link.send(ObjectStatus(oid, ObjectState.READY, size=value.size, value=value))

    def answered(t: SubmitTask) -> bool:
        return bool(peer.received(TaskReply, lambda m: m.task_id == t.task_id))

    x, y = ctx.new_id(peer), ctx.new_id(peer)
    first = call("add", 1, ref=x)
    waits_for(x)
    fifth = call("get", 5)
    third = call("add", 3, 10)
    probe = task(peer, "echo", [by_value("probe")], cpu_demand=0)
    link.send(probe)
    expect_reply(ctx, peer, probe)  # the session is in order: calls 5 and 3 have arrived
    early = [t.actor_seq for t in (fifth, third) if answered(t)]
    ctx.check("ACT-014", not early, "no call starts before call 1, which waits for its argument and keeps its place",
              f"calls {early} answered first")
    answer(x, 1)
    check_inline(ctx, expect_reply(ctx, peer, first), 1, requirement="ACT-003", note="add(X = 1), actorSeq 1")
    check_inline(ctx, expect_reply(ctx, peer, third, requirement="ACT-014"), 11, requirement="ACT-014",
                 note="add(10), actorSeq 3, arrived after actorSeq 5: the lowest waiting number starts first")
    check_inline(ctx, expect_reply(ctx, peer, fifth, requirement="ACT-014"), 11, requirement="ACT-014",
                 note="get, actorSeq 5: runs after call 3")
    sixth = call("add", 6, ref=y)
    waits_for(y)
    late = call("add", 4, 1000)
    reply = expect_reply(ctx, peer, late, requirement="ACT-014", timeout=10.0)
    ctx.check("ACT-014", not answered(sixth), "actorSeq 4 refused on arrival, while call 6 still waits for its argument",
              "answered only after call 6")
    ret = reply.returns[0]
    ctx.check("ACT-014", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.WRONG_STATE,
              "ERROR(WRONG_STATE) for actorSeq 4, below the highest started (5)", describe_return(ret))
    answer(y, 2)
    check_inline(ctx, expect_reply(ctx, peer, sixth), 13, requirement="ACT-014", note="add(Y = 2), actorSeq 6")
    last = call("get", 7)
    check_inline(ctx, expect_reply(ctx, peer, last), 13, requirement="ACT-014", note="get, actorSeq 7: call 4 did not run")
    dead = peer.received(ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE)
    ctx.check("ACT-014", not dead, "the actor stays alive", [str(d.body) for d in dead])


@case(
    "actors/ACT-014-ACT-003-waiting-call-whose-number-started-answered-at-once",
    requirements=["ACT-014", "ACT-003", "ACT-034"],
    features=("core", "actors"),
    summary=(
        "A faulty caller: the suite creates a Counter(0) on the IUT and sends add(X by ref) as actorSeq 1, X the "
        "suite's, unanswered, so the call waits for its argument; then add(10) by value, another task also "
        "numbered actorSeq 1. The second call is ready and no lower number waits, so it starts (ACT-034) and "
        "answers 10; the first, whose number a started call now has, can never run (ACT-003) and must be "
        "answered at once with ERROR(WRONG_STATE), while X is still unanswered. Once X (1) is answered nothing "
        "more runs: a last get (actorSeq 2) answers 10, and the actor stays alive."
    ),
)
def waiting_call_overtaken_by_its_number(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = _counter(ctx, iut, peer, 0)
    x = ctx.new_id(peer)
    first = task(peer, "add", [by_ref(ctx.descriptor(peer, x))], actor_id=actor, actor_seq=1, cpu_demand=0)
    link.send(first)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002",
               what=f"GetObjectStatus for the call's argument {x}")
    twin = task(peer, "add", [by_value(10)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link.send(twin)
    check_inline(ctx, expect_reply(ctx, peer, twin, requirement="ACT-034", timeout=10.0), 10, requirement="ACT-034",
                 note="add(10), actorSeq 1, ready while the other call numbered 1 waits")
    reply = expect_reply(ctx, peer, first, requirement="ACT-014", timeout=10.0)
    ret = reply.returns[0]
    ctx.check("ACT-014", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.WRONG_STATE,
              "ERROR(WRONG_STATE) for the waiting call once another call numbered 1 started, before its argument "
              "is answered", describe_return(ret))
    value = portable(1)
    link.send(ObjectStatus(x, ObjectState.READY, size=value.size, value=value))
    last = task(peer, "get", [], actor_id=actor, actor_seq=2, cpu_demand=0)
    link.send(last)
    check_inline(ctx, expect_reply(ctx, peer, last), 10, requirement="ACT-003",
                 note="get, actorSeq 2: the refused call never ran")
    dead = peer.received(ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE)
    ctx.check("ACT-014", not dead, "the actor stays alive", [str(d.body) for d in dead])


@case(
    "actors/ZMQ-007-ACT-016-creation-beyond-the-hosts-frame-limit",
    requirements=["ZMQ-007", "ACT-016", "ACT-001"],
    features=("core", "actors"),
    summary=(
        "Suite host H announces the smallest frame limit allowed (maxFrameBytes 1 MiB). The IUT is asked to "
        "create a Counter on H with a value argument of 1.5 MiB, to call get on it, and then to submit "
        "echo('probe') to H. No message beyond H's limit may arrive at H: the IUT either stores the argument and "
        "passes it as a ref (a CreateActor within the limit, the recommendation), or fails the creation at home, "
        "so that the actor is dead and its call fails with ACTOR_DIED (at home, or answered so by H if it is sent, "
        "ACT-004). The probe, "
        "sent after them on the same session, must arrive and be answered."
    ),
    timeout=60.0,
)
def creation_beyond_frame_limit(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host", max_frame_bytes=1 << 20)
    iut.add_peer(h, slots=1)
    data = bytes(range(256)) * (6 * 1024)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": to_json_value(data)}],
                                           "host": h.peer_id})["actor_id"]
    call = iut.control("actor_call", actor_id=actor, method="get", args=[])["returns"][0]
    probe = iut.submit("echo", [{"value": "probe"}], executor=h.peer_id)["returns"][0]
    ctx.wait_until(h, lambda: bool(h.malformed or h.received(SubmitTask, lambda m: m.return_ids == (probe,))),
                   requirement="TASK-001", what="the IUT's SubmitTask of echo('probe')")
    ctx.require("ZMQ-007", not h.malformed, "no message beyond the 1 MiB H announced",
                [f"{why} (frames {sizes})" for _, why, sizes in h.malformed])
    st: SubmitTask = h.received(SubmitTask, lambda m: m.return_ids == (probe,))[0].body
    link = h.link(iut.peer_id)
    link.send(TaskReply(st.task_id, st.attempt, (ReturnValue(probe, ReturnKind.INLINE, value=portable("probe")),)))
    ctx.check("TASK-001", iut.get(probe).get("value") == "probe", "get(probe) = 'probe'", iut.get(probe))
    sent = h.received(CreateActor, lambda m: m.actor_id == actor)
    if sent:
        kinds = [a.kind.value for a in sent[0].body.args]
        ctx.note(f"the 1.5 MiB argument went as {kinds} (stored and passed by reference, as ZMQ-007 recommends)")
        return
    for c in h.received(SubmitTask, lambda m: m.actor_id == actor):
        # A call sent all the same (ACT-016 allows it): H hosts no such actor and answers as ACT-004 says.
        dead = ErrorInfo(ErrorCode.ACTOR_DIED, f"no actor {actor} here", "ACT-004")
        link.send(TaskReply(c.body.task_id, c.body.attempt,
                            tuple(ReturnValue(r, ReturnKind.ERROR, error=dead) for r in c.body.return_ids)))
    got = iut.get(call, timeout_ms=10_000)
    ctx.check("ACT-016", got.get("error", {}).get("code") == "ACTOR_DIED",
              "the creation not sent leaves the actor dead: its call fails with ACTOR_DIED", got)


@case(
    "actors/TASK-063-ACT-006-call-stopped-with-its-actor-answered-at-once",
    requirements=["TASK-063", "ACT-006", "TASK-005"],
    features=("core", "actors"),
    summary=(
        "The suite creates a Counter(0) on the IUT and calls add(X by ref) as actorSeq 1, where X is stored only "
        "at suite peer H, which withholds every chunk: the call has started and waits for X's bytes. The suite "
        "then kills the actor (KillActor). The call must be answered ERROR(ACTOR_DIED) at once, while H still "
        "withholds X (not when the call's code ends, nor at the stop grace), and that TaskReply must come before "
        "ActorStatus(DEAD). H then serves X: nothing more is sent for the call (one reply)."
    ),
    timeout=60.0,
)
def call_stopped_with_its_actor(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    actor = _counter(ctx, iut, peer, 0)
    h = ctx.wire_peer("silent-holder")
    form = stored_form(portable(1))
    x = ctx.new_id(peer)
    released = [False]
    h.serve(x, form, lose=lambda req, start, end: not released[0])
    running = task(peer, "add", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))], actor_id=actor, actor_seq=1,
                   cpu_demand=0)
    link.send(running)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, len(form), (h.peer_id,), (h.address,)))
    ctx.wait_until(h, lambda: bool(h.fetch_requests), requirement="FET-001", what=f"H's FetchRequest for {x}", timeout=30.0)
    link.send(KillActor(actor))
    dead = ctx.expect(peer, ActorStatus, lambda m: m.actor_id == actor and m.state is not ActorState.ALIVE,
                      requirement="ACT-006", what="ActorStatus(DEAD) after KillActor", timeout=10.0)
    ctx.check("ACT-006", dead.body.state is ActorState.DEAD, "DEAD", dead.body.state.value)
    replies = peer.received(TaskReply, lambda m: m.task_id == running.task_id)
    ctx.check("TASK-063", bool(replies) and replies[0].seq < dead.seq,
              "the call stopped with its actor answered at once, before ActorStatus(DEAD)",
              f"its reply came after ActorStatus(DEAD) (seq {replies[0].seq} > {dead.seq})" if replies
              else "no reply by the time ActorStatus(DEAD) came")
    if replies:
        ret = replies[0].body.returns[0]
        ctx.check("TASK-063", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.ACTOR_DIED,
                  "ERROR(ACTOR_DIED)", describe_return(ret))
    released[0] = True  # H serves X now, should the IUT still ask for it
    probe = task(peer, "echo", [by_value("probe")], cpu_demand=0)
    link.send(probe)
    expect_reply(ctx, peer, probe)
    iut.quiesce(10_000)
    count = len(peer.received(TaskReply, lambda m: m.task_id == running.task_id))
    ctx.check("TASK-005", count == 1, "one reply for the stopped call", f"{count} replies")


@case(
    "actors/ACT-038-owner-death-ends-other-callers-calls",
    requirements=["ACT-038", "FATE-004", "TASK-063", "TASK-005"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter(0) on the IUT. A second suite peer C, another caller, calls add(X by ref) "
        "as its actorSeq 1, where X is C's own and stored only at suite peer H, which withholds every chunk: the "
        "call has started and waits for X's bytes. C then calls add(1) as actorSeq 2, queued behind it. O leaves "
        "with Goodbye (fenced at once), so the IUT stops the actor (FATE-004). Both of C's calls must be answered "
        "ERROR(ACTOR_DIED) at once, while H still withholds X (not when the running call's code ends). H then "
        "serves X: nothing more is sent for either call (one reply each)."
    ),
    timeout=60.0,
)
def owner_death_ends_other_callers_calls(ctx: CaseContext) -> None:
    iut, o, link_o = open_session(ctx, peer_name="owner")
    actor = _counter(ctx, iut, o, 0)
    c = ctx.wire_peer("caller")
    link_c = ctx.session(c, iut)
    h = ctx.wire_peer("silent-holder")
    form = stored_form(portable(1))
    x = ctx.new_id(c)
    released = [False]
    h.serve(x, form, lose=lambda req, start, end: not released[0])
    running = task(c, "add", [by_ref(ctx.descriptor(c, x, size_hint=len(form)))], actor_id=actor, actor_seq=1,
                   cpu_demand=0)
    link_c.send(running)
    ctx.expect(c, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link_c.send(ObjectStatus(x, ObjectState.READY, len(form), (h.peer_id,), (h.address,)))
    ctx.wait_until(h, lambda: bool(h.fetch_requests), requirement="FET-001", what=f"H's FetchRequest for {x}", timeout=30.0)
    queued = task(c, "add", [by_value(1)], actor_id=actor, actor_seq=2, cpu_demand=0)
    link_c.send(queued)
    probe = task(c, "echo", [by_value("probe")], cpu_demand=0)
    link_c.send(probe)
    expect_reply(ctx, c, probe)  # the queued call arrived before O leaves (one session keeps its order)
    leave_with_goodbye(ctx, o, iut)
    for call, state in ((running, "running"), (queued, "queued")):  # H still withholds X
        ret = expect_reply(ctx, c, call, requirement="ACT-038", timeout=10.0).returns[0]
        ctx.check("ACT-038", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.ACTOR_DIED,
                  f"ERROR(ACTOR_DIED) for C's {state} call once the owner is fenced", describe_return(ret))
    released[0] = True  # H serves X now, should the IUT still ask for it
    again = task(c, "echo", [by_value("probe")], cpu_demand=0)
    link_c.send(again)
    expect_reply(ctx, c, again)
    iut.quiesce(10_000)
    for call in (running, queued):
        count = len(c.received(TaskReply, lambda m, tid=call.task_id: m.task_id == tid))
        ctx.check("TASK-005", count == 1, f"one reply for actorSeq {call.actor_seq}", f"{count} replies")


def _counter_with_a_waiting_call(ctx: CaseContext) -> tuple[str, WirePeer, Any, str, WirePeer, str, SubmitTask]:
    """Suite peer O creates a Counter(0) on the IUT; a second suite peer C calls
    add(X by ref) as its actorSeq 1, X being O's and not answered yet, so C's call waits
    for its argument (the IUT asks O for X's status). Returns (iut, O, O's link, the
    actor, C, X, C's call)."""
    iut, o, link_o = open_session(ctx, peer_name="owner")
    actor = ctx.new_id(o)
    link_o.send(CreateActor(actor, "Counter", (by_value(0),)))
    st: ActorStatus = ctx.expect(o, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    c = ctx.wire_peer("caller")
    link_c = ctx.session(c, iut)
    x = ctx.new_id(o)
    call = task(c, "add", [by_ref(ctx.descriptor(o, x))], actor_id=actor, actor_seq=1, cpu_demand=0)
    link_c.send(call)
    ctx.expect(o, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002",
               what=f"GetObjectStatus for C's argument {x}")
    return iut, o, link_o, actor, c, x, call


@case(
    "actors/TASK-064-fenced-caller-releases-the-actor",
    requirements=["TASK-064", "FATE-003", "ACT-013", "ACT-021"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter(0) on the IUT (concurrency 1). A second suite peer C, another caller, "
        "calls add(X by ref) as its actorSeq 1, where X is O's and O never answers for it: the call waits for "
        "its argument, unstarted. O then calls add(2) (its actorSeq 1), which runs before it (ACT-034). C leaves "
        "with Goodbye (fenced at once; X's owner O lives on, so the argument does not fail): C's waiting call "
        "must be dropped without ever holding the actor, so O's add(2) is answered 2, the actor lives on and "
        "O's next call, get, runs and answers 2 (C's call never ran)."
    ),
    timeout=60.0,
)
def fenced_caller_releases_the_actor(ctx: CaseContext) -> None:
    iut, o, link_o, actor, c, x, _ = _counter_with_a_waiting_call(ctx)  # O never answers for X
    mine = task(o, "add", [by_value(2)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link_o.send(mine)
    leave_with_goodbye(ctx, c, iut)
    check_inline(ctx, expect_reply(ctx, o, mine, requirement="TASK-064", timeout=15.0), 2, requirement="TASK-064",
                 note="O's add(2), once the fenced caller's waiting call is dropped")
    get = task(o, "get", [], actor_id=actor, actor_seq=2, cpu_demand=0)
    link_o.send(get)
    check_inline(ctx, expect_reply(ctx, o, get, requirement="TASK-064"), 2, requirement="TASK-064",
                 note="get: the actor lives on, and C's call never ran")


@case(
    "actors/ACT-034-unready-call-holds-back-only-its-caller",
    requirements=["ACT-034", "ACT-013", "ACT-003"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter(0) on the IUT (concurrency 1). A second suite peer C calls add(X by ref) "
        "as its actorSeq 1, X O's, and O does not answer for X yet: C's call waits for its argument, unstarted. "
        "O then calls add(2) (its actorSeq 1): it is ready and the actor's one place is free, so it must run and "
        "be answered 2 while C's call still waits (a call that is not ready holds back only its own caller's "
        "calls). O then answers X (1): C's call answers 3, and O's get (actorSeq 2) 3."
    ),
    timeout=60.0,
)
def unready_call_holds_back_only_its_caller(ctx: CaseContext) -> None:
    iut, o, link_o, actor, c, x, waiting = _counter_with_a_waiting_call(ctx)
    mine = task(o, "add", [by_value(2)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link_o.send(mine)
    check_inline(ctx, expect_reply(ctx, o, mine, requirement="ACT-034", timeout=10.0), 2, requirement="ACT-034",
                 note="O's add(2), while C's call waits for its argument")
    ctx.check("ACT-034", not c.received(TaskReply, lambda m: m.task_id == waiting.task_id),
              "C's call, whose argument is unanswered, has not run", "C's call was answered before X was")
    value = portable(1)
    link_o.send(ObjectStatus(x, ObjectState.READY, size=value.size, value=value))
    check_inline(ctx, expect_reply(ctx, c, waiting, requirement="ACT-034"), 3, requirement="ACT-034",
                 note="C's add(X = 1), once X is answered")
    get = task(o, "get", [], actor_id=actor, actor_seq=2, cpu_demand=0)
    link_o.send(get)
    check_inline(ctx, expect_reply(ctx, o, get, requirement="ACT-034"), 3, requirement="ACT-034",
                 note="get: both calls ran, once each")


def _host_answers(ctx: CaseContext, host: WirePeer, iut_peer: str) -> CreateActor:
    """``host`` gets the IUT's CreateActor and reports the actor alive."""
    create: CreateActor = ctx.expect(host, CreateActor, requirement="ACT-001", what=f"CreateActor at {host.peer_id}").body
    host.link(iut_peer).send(ActorStatus(create.actor_id, ActorState.ALIVE))
    return create


@case(
    "actors/ACT-003-ACT-007-iut-owns-an-actor",
    requirements=["ACT-001", "ACT-003", "ACT-010", "ACT-007", "ACT-011", "OWN-001", "CNF-008", "CNF-018"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter(5) hosted by suite peer H (maxRestarts 0) and calls add(1), add(2) and get(): "
        "H must receive one CreateActor and then three SubmitTasks naming the actor, the methods as function "
        "names and actorSeq 1, 2, 3 in that order; H answers 6, 8, 8 and the IUT's get returns them. Two more "
        "calls reach H, which then leaves (Goodbye) without answering: both calls must fail with ACTOR_DIED, "
        "never be retried, and the actor must not be re-created on suite peer H2 (no restarts allowed)."
    ),
)
def iut_owns_an_actor(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    h2 = ctx.wire_peer("spare")
    iut.add_peer(h, slots=1)
    iut.add_peer(h2, slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 5}], "host": h.peer_id})["actor_id"]
    create = _host_answers(ctx, h, iut.peer_id)
    ctx.check("ACT-001", (create.actor_id, create.class_name, create.max_restarts) == (actor, "Counter", 0),
              f"CreateActor({actor}, Counter, maxRestarts 0)", f"{create.actor_id}, {create.class_name}, {create.max_restarts}")
    link_h = h.link(iut.peer_id)
    calls = [("add", [{"value": 1}], 6), ("add", [{"value": 2}], 8), ("get", [], 8)]
    returns = [iut.control("actor_call", actor_id=actor, method=m, args=a)["returns"][0] for m, a, _ in calls]
    seen = []
    for method, _, result in calls:
        st: SubmitTask = ctx.expect(h, SubmitTask, requirement="ACT-003", what=f"the call {method}").body
        seen.append((st.function, st.actor_id, st.actor_seq))
        link_h.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(result)),)))
    ctx.check("ACT-003", seen == [("add", actor, 1), ("add", actor, 2), ("get", actor, 3)],
              "add, add, get with actorSeq 1, 2, 3 (ACT-010: the method is the function name)", seen)
    got = [iut.get(r).get("value") for r in returns]
    ctx.check("ACT-003", got == [6, 8, 8], "the IUT reads 6, 8, 8", got)
    pending = [iut.control("actor_call", actor_id=actor, method="add", args=[{"value": 1}])["returns"][0] for _ in range(2)]
    for _ in pending:
        ctx.expect(h, SubmitTask, requirement="ACT-003", what="a call the host will not answer")
    leave_with_goodbye(ctx, h, iut)
    for rid in pending:
        got_err = iut.get(rid, timeout_ms=10_000)
        code = str(got_err.get("error", {}).get("code", ""))
        ctx.check("ACT-007", code == "ACTOR_DIED", "the unanswered call fails with ACTOR_DIED", got_err)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    retried = h2.received((SubmitTask, CreateActor))
    ctx.check("ACT-007", not any(isinstance(a.body, SubmitTask) for a in retried), "no call retried elsewhere",
              [type(a.body).__name__ for a in retried])
    ctx.check("ACT-011", not any(isinstance(a.body, CreateActor) for a in retried),
              "the actor not re-created (maxRestarts 0)", [type(a.body).__name__ for a in retried])


@case(
    "actors/ACT-013-ACT-018-concurrent-actor-replies-in-any-order",
    requirements=["ACT-013", "ACT-018", "ACT-003", "CNF-008"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter(0) hosted by suite peer H with maxConcurrency 3: H must receive CreateActor "
        "with maxConcurrency 3. The IUT calls add(1), add(2) and add(3); H receives all three (actorSeq 1, 2, 3) "
        "and answers them in the order 3, 1, 2 with 6, 1, 3: the IUT must take each reply for its own call "
        "(ACT-018: with concurrency, calls end in any order)."
    ),
)
def concurrent_replies_in_any_order(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    iut.add_peer(h, slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 0}], "host": h.peer_id,
                                            "max_concurrency": 3})["actor_id"]
    create = _host_answers(ctx, h, iut.peer_id)
    ctx.check("ACT-013", create.max_concurrency == 3, "CreateActor with maxConcurrency 3", create.max_concurrency)
    returns = [iut.control("actor_call", actor_id=actor, method="add", args=[{"value": n}])["returns"][0] for n in (1, 2, 3)]
    calls = [ctx.expect(h, SubmitTask, requirement="ACT-003", what=f"call {n}").body for n in (1, 2, 3)]
    ctx.check("ACT-003", [c.actor_seq for c in calls] == [1, 2, 3], "actorSeq 1, 2, 3", [c.actor_seq for c in calls])
    link_h = h.link(iut.peer_id)
    for st, result in ((calls[2], 6), (calls[0], 1), (calls[1], 3)):
        link_h.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(result)),)))
    got = [iut.get(r).get("value") for r in returns]
    ctx.check("ACT-018", got == [1, 3, 6], "each reply read for its own call: 1, 3, 6", got)


@case(
    "actors/ACT-011-ACT-002-restarts-bounded",
    requirements=["ACT-011", "ACT-002", "ACT-007", "ACT-014"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter hosted by suite peer H1 with maxRestarts 1. H1 leaves (Goodbye): the IUT may "
        "re-create the actor (same actorId) on suite peer H2, once. If it does, H2 reports it alive and then "
        "leaves too: now no restart is left, and the IUT must not create the actor again anywhere (H3 gets "
        "nothing); a call made after that fails with ACTOR_DIED."
    ),
)
def restarts_bounded(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    hosts = [ctx.wire_peer(f"host{i}") for i in (1, 2, 3)]
    iut.add_peer(hosts[0], slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 0}], "host": hosts[0].peer_id,
                                            "max_restarts": 1})["actor_id"]
    _host_answers(ctx, hosts[0], iut.peer_id)
    iut.add_peer(hosts[1], slots=1)
    leave_with_goodbye(ctx, hosts[0], iut)
    again = _recreated_or_quiet(ctx, iut, hosts[1], actor)
    if not again:
        ctx.note("the IUT did not re-create the actor after its host left (ACT-011 permits either)")
        ctx.check("ACT-011", True, "at most maxRestarts (1) re-creations", "none")
        return
    hosts[1].link(iut.peer_id).send(ActorStatus(actor, ActorState.ALIVE))
    iut.add_peer(hosts[2], slots=1)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    leave_with_goodbye(ctx, hosts[1], iut)
    third = _recreated_or_quiet(ctx, iut, hosts[2], actor)
    ctx.require("ACT-011", not third, "no second re-creation: maxRestarts 1 is used up", "CreateActor at a third host",
                level="MUST")
    rid = iut.control("actor_call", actor_id=actor, method="get", args=[])["returns"][0]
    got = iut.get(rid, timeout_ms=10_000)
    ctx.check("ACT-007", str(got.get("error", {}).get("code", "")) == "ACTOR_DIED", "a call to the dead actor fails with ACTOR_DIED", got)


def _recreated_or_quiet(ctx: CaseContext, iut: IUT, spare: WirePeer, actor: str) -> bool:
    """After the actor's host left: True once ``spare`` gets a CreateActor for it, False once the
    IUT is quiescent without one (a re-creation is a request, so it keeps the IUT busy)."""
    for _ in range(40):
        if spare.received(CreateActor, lambda m: m.actor_id == actor):
            return True
        if iut.quiesce(500):
            return bool(spare.received(CreateActor, lambda m: m.actor_id == actor))
    ctx.fail("", "a re-creation at the spare host, or quiescence", "neither within 20 s")


@case(
    "actors/ACT-009-ACT-019-ACT-020-handle-borrowed-then-released",
    requirements=["ACT-009", "ACT-019", "ACT-020", "BOR-007", "OWN-004", "OWN-005", "CNF-008"],
    features=("core", "borrowing", "actors"),
    summary=(
        "The IUT creates a Counter hosted by suite peer H, with its handle object (ACT-019: object id = actor id), "
        "and passes the handle to suite peer B as hold(shared handle). B keeps it: it registers itself "
        "(RegisterBorrower) and replies with the handle in `retained`. B reads the handle object: READY, a "
        "portable map naming the actor, its owner and its host H. The IUT's program drops its handle: the actor "
        "must live on (H gets no KillActor while B holds the handle). B releases its grant: the IUT must reclaim "
        "the handle object and kill the actor (H gets KillActor)."
    ),
)
def handle_borrowed_then_released(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    b = ctx.wire_peer("borrower")
    iut.add_peer(h, slots=1)
    iut.add_peer(b, slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 0}], "host": h.peer_id,
                                            "handle": True})["actor_id"]
    _host_answers(ctx, h, iut.peer_id)
    sub = iut.submit("hold", [{"shared": actor}], executor=b.peer_id)
    t: SubmitTask = ctx.expect(b, SubmitTask, requirement="ACT-020", what="hold(shared handle) at B").body
    ref = t.args[0].ref if t.args and t.args[0].ref is not None else None
    ctx.require("ACT-020", ref is not None and ref.object_id == actor and ref.owner == iut.peer_id,
                f"a shared ref to the handle object {actor}, owned by the IUT", str(t.args))
    assert ref is not None
    link = b.link(iut.peer_id)
    fid = ctx.new_id(b)
    link.send(RegisterBorrower(actor, b.peer_id, b.incarnation, b.address, fid))
    answer: BorrowerRegistered = ctx.expect(b, BorrowerRegistered, lambda m: m.forward_id == fid, requirement="BOR-003",
                                            what=f"BorrowerRegistered for {fid}").body
    ctx.require("BOR-003", answer.error is None, "the grant recorded (no error)", str(answer.error))
    link.send(TaskReply(t.task_id, t.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(None)) for r in t.return_ids),
                        retained=(replace(ref, forward_id=fid),)))
    iut.get(sub["returns"][0])
    link.send(GetObjectStatus(actor, wait=False))
    st: ObjectStatus = ctx.expect(b, ObjectStatus, lambda m: m.object_id == actor, requirement="ACT-019",
                                  what=f"ObjectStatus for the handle object {actor}").body
    ctx.require("ACT-019", st.state is ObjectState.READY and st.value is not None, "READY with an inline value",
                f"{st.state.value} {st.value!r:.80}")
    assert st.value is not None
    try:
        descriptor = read_portable(st.value)
    except Exception as exc:
        descriptor = f"not portable: {exc}"
    want = {"actorId": actor, "owner": iut.peer_id, "host": h.peer_id}
    ctx.check("ACT-019", isinstance(descriptor, dict) and {k: descriptor.get(k) for k in want} == want
              and isinstance(descriptor.get("className"), str) and isinstance(descriptor.get("hostAddress"), str),
              f"a portable map with {want} and text className, hostAddress", descriptor)
    iut.drop(actor)
    iut.quiesce()
    ctx.check("ACT-009", not h.received(KillActor), "no KillActor while B holds the handle",
              [str(a.body) for a in h.received(KillActor)])
    ctx.check("OWN-004", iut.entry(actor) is not None, "the handle object still in the IUT's table", "gone")
    link.send(ReleaseBorrows((BorrowRelease(actor, (fid,)),)))
    kill: KillActor = ctx.expect(h, KillActor, requirement="ACT-009", what="KillActor once no one holds the handle",
                                 timeout=10.0).body
    ctx.check("ACT-009", kill.actor_id == actor, f"KillActor({actor})", kill.actor_id)
    h.link(iut.peer_id).send(ActorStatus(actor, ActorState.DEAD))
    iut.quiesce()
    ctx.check("OWN-005", iut.entry(actor) is None, "the handle object reclaimed", iut.entry(actor))


@case(
    "actors/ACT-023-call-before-creation-waits",
    requirements=["ACT-023", "ACT-004", "ACT-003", "CNF-031"],
    features=("core", "actors"),
    summary=(
        "Suite peer C calls add(1) (actorSeq 1) on an actor that suite peer O will own but has not created yet, "
        "then an echo task on the same session: the echo is answered and the call is not (the IUT holds it). "
        "O then sends CreateActor(Counter, [5]): the actor comes up and C's call is answered 6. A call for an "
        "actor nobody creates is answered ERROR(ACTOR_DIED) once the creation wait is over (10 s unless the "
        "config's `limits.actor_create_wait_ms` says otherwise), and not before."
    ),
)
def call_before_creation_waits(ctx: CaseContext) -> None:
    iut, owner, link_o = open_session(ctx, peer_name="owner")
    caller = ctx.wire_peer("caller")
    link_c = ctx.session(caller, iut)
    actor = ctx.new_id(owner)
    early = task(caller, "add", [by_value(1)], actor_id=actor, actor_seq=1)
    link_c.send(early)
    probe = task(caller, "echo", [by_value("probe")])
    link_c.send(probe)
    expect_reply(ctx, caller, probe)
    answered = caller.received(TaskReply, lambda m: m.task_id == early.task_id)
    ctx.check("ACT-023", not answered, "no answer to the call while its actor is not created",
              [describe_return(a.body.returns[0]) for a in answered])
    link_o.send(CreateActor(actor, "Counter", (by_value(5),)))
    st: ActorStatus = ctx.expect(owner, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    check_inline(ctx, expect_reply(ctx, caller, early, requirement="ACT-023"), 6, requirement="ACT-023",
                 note="the held call runs once the actor is created")
    wait_s = ctx.config.limit("actor_create_wait_ms") / 1000
    nobody = task(caller, "add", [by_value(1)], actor_id=ctx.new_id(owner), actor_seq=1)
    sent_at = time.monotonic()
    link_c.send(nobody)
    ret = expect_reply(ctx, caller, nobody, requirement="ACT-023", timeout=wait_s + 10).returns[0]
    waited = time.monotonic() - sent_at
    ctx.check("ACT-004", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.ACTOR_DIED,
              "ERROR(ACTOR_DIED)", describe_return(ret))
    ctx.check("ACT-023", waited >= wait_s * 0.9, f"answered after the creation wait ({wait_s:g} s)", f"after {waited:.2f} s")


@case(
    "actors/GEN-024-restarting-status-is-no-death",
    requirements=["GEN-024", "ACT-002", "GEN-003", "ACT-003"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter(5) hosted by suite peer H, which reports it ALIVE, then RESTARTING (a state "
        "version 0.1 reserves and never sends), then ALIVE again. The RESTARTING status is no malformed message "
        "(no ProtocolError names it) and does not end the actor: a call made after both statuses were "
        "acknowledged reaches H, and the IUT's get returns H's answer; H is never sent KillActor."
    ),
)
def restarting_status_is_no_death(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    iut.add_peer(h, slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 5}], "host": h.peer_id})["actor_id"]
    _host_answers(ctx, h, iut.peer_id)
    link_h = h.link(iut.peer_id)
    restarting = link_h.send(ActorStatus(actor, ActorState.RESTARTING))
    last = link_h.send(ActorStatus(actor, ActorState.ALIVE))
    ctx.wait_until(h, lambda: link_h.acked >= last, requirement="SES-003", what="the IUT's ack of both statuses")
    try:
        rid = iut.control("actor_call", actor_id=actor, method="add", args=[{"value": 1}])["returns"][0]
    except ControlError as exc:
        ctx.fail("GEN-024", "the actor still callable after RESTARTING and ALIVE", f"actor_call refused: {exc}")
    st: SubmitTask = ctx.expect(h, SubmitTask, lambda m: m.actor_id == actor, requirement="GEN-024",
                                what="the call at H: the actor was not ended by RESTARTING", timeout=10.0).body
    link_h.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(6)),)))
    got = iut.get(rid, timeout_ms=10_000)
    ctx.check("GEN-024", got.get("value") == 6, "get of the call returns H's answer, 6", got)
    refused = h.received(ProtocolError, lambda m: m.related_seq == restarting)
    ctx.check("GEN-024", not refused, "no ProtocolError about the RESTARTING status (a known enumerant)",
              [str(a.body) for a in refused])
    killed = h.received(KillActor)
    ctx.check("GEN-024", not killed, "no KillActor sent to H", [str(a.body) for a in killed])
