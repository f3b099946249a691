"""The sans-IO core's actor rules that concern concurrency and order (ACT-003,
ACT-013, ACT-018), driven with exact stimuli."""

from __future__ import annotations

from corekit import Net, Stub, bodies, checked_peer, of_type, raw, ref, result, shared
from refrpc.core import events as ev
from refrpc.core.messages import (
    ActorState,
    ActorStatus,
    Arg,
    ArgKind,
    CreateActor,
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    KillActor,
    ObjectState,
    ObjectStatus,
    SubmitTask,
    TaskReply,
)


def create_actor(net: Net, concurrency: int = 0, owner: str = "D", host: str = "H") -> str:
    aid = net.ids[owner].next()
    net.handle(owner, ev.CreateActorRequest(net.sid(owner, "actor"), aid, "Counter", (), host, 0, concurrency))
    net.deliver_all()
    net.handle(host, ev.ActorReady(net.sid(host, "ready"), aid))
    net.deliver_all()
    return aid


def test_create_actor_carries_the_concurrency_and_the_host_hands_over_that_many_calls():
    # D: a = Counter.options(max_concurrency=2).remote(); four calls        ACT-013, ACT-018
    net = Net(("D", "H"))
    aid = create_actor(net, 2)
    assert [m.max_concurrency for m in net.sent_bodies(CreateActor)] == [2]
    assert [s.max_concurrency for s in of_type(net.log["H"], ev.StartActor)] == [2]
    calls = [net.submit("D", "m", actor=aid)[0] for _ in range(4)]
    net.deliver_all()
    assert [r.task_id for r in net.runs("H")] == calls[:2]  # two run at once, in order
    out = net.finish("H", calls[1], result(b"second ends first"))  # ACT-018: any order
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [calls[2]]
    out = net.finish("H", calls[0], result(b"first"))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [calls[3]]


def test_without_concurrency_one_call_runs_at_a_time():
    # D: a = Counter.remote(); three calls: the host hands over one after another   ACT-013
    net = Net(("D", "H"))
    aid = create_actor(net)
    assert [m.max_concurrency for m in net.sent_bodies(CreateActor)] == [0]
    calls = [net.submit("D", "m", actor=aid)[0] for _ in range(3)]
    net.deliver_all()
    assert [r.task_id for r in net.runs("H")] == calls[:1]
    for i, tid in enumerate(calls):
        out = net.finish("H", tid, result())
        assert [r.task_id for r in of_type(out, ev.RunTask)] == calls[i + 1:i + 2]


def test_a_call_whose_argument_failed_does_not_hold_up_the_calls_behind_it():
    # D: x = fails.remote() on W; a.m.remote(x); a.m.remote(1)              TASK-009, ACT-003
    net = Net(("D", "H", "W"))
    aid = create_actor(net)
    tx, (x,) = net.submit("D", "fails", executor="W")
    first, (y1,) = net.submit("D", "m", ref(x), actor=aid)
    second, (y2,) = net.submit("D", "m", actor=aid)
    net.deliver_all()
    assert [r.task_id for r in net.runs("H")] == []  # the first waits for x; the second waits for it
    net.finish("W", tx, ev.TaskResult(error=ErrorInfo(ErrorCode.TASK_FAILED, "no")))
    net.deliver_all()
    assert net["D"].owned[y1].error.code is ErrorCode.TASK_FAILED
    assert [r.task_id for r in net.runs("H")] == [second]
    net.finish("H", second, result(b"ran"))
    net.deliver_all()
    assert net["D"].owned[y2].state == "ready"


# ---------------------------------------------------------------- handles (ACT-009, ACT-019..ACT-021)
def create_with_handle(net: Net, owner: str = "D", host: str = "H") -> str:
    # Counter.remote() as the Python API does it: CreateActor, then the handle object (same id).
    aid = create_actor(net, owner=owner, host=host)
    net.handle(owner, ev.Put(net.sid(owner, "handle"), aid, raw(b"descriptor")))
    return aid


def test_dropping_the_handle_object_kills_the_actor_and_then_forgets_it():
    # D: a = Counter.remote(); del a                                        ACT-009
    net = Net(("D", "H"))
    aid = create_with_handle(net)
    net.handle("D", ev.DropRef(net.sid("D", "drop"), aid))
    net.deliver_all()
    assert [m.actor_id for m in net.sent_bodies(KillActor)] == [aid]
    assert [i.actor_id for i in of_type(net.log["H"], ev.StopActor)] == [aid]
    assert aid not in net["D"].owned and aid not in net["D"].owned_actors  # dead and unreachable


def test_a_call_in_flight_keeps_the_actor_until_it_is_answered():
    # D: y = Counter.remote().add.remote(1)   (the handle is dropped at once)   ACT-021
    net = Net(("D", "H"))
    aid = create_with_handle(net)
    tid, (y,) = net.submit("D", "add", actor=aid)
    net.handle("D", ev.DropRef(net.sid("D", "drop"), aid))
    net.deliver_all()
    assert net.sent_bodies(KillActor) == []
    net.finish("H", tid, result(b"1"))
    net.deliver_all()
    assert net["D"].owned[y].state == "ready"
    assert [m.actor_id for m in net.sent_bodies(KillActor)] == [aid]


def test_a_borrowed_handle_keeps_the_actor_and_its_release_kills_it():
    # D: a = Counter.remote(); keep.remote(shared(a)) on W (W keeps it); del a; W lets go   ACT-009, ACT-020
    net = Net(("D", "H", "W"))
    aid = create_with_handle(net)
    tid, _ = net.submit("D", "keep", shared(aid), executor="W")
    net.deliver_all()
    net.handle("W", ev.AddRef(net.sid("W", "keep"), aid))  # the task keeps the handle
    net.finish("W", tid, result())
    net.deliver_all()
    net.handle("D", ev.DropRef(net.sid("D", "drop"), aid))
    net.deliver_all()
    assert net.sent_bodies(KillActor) == [] and net["D"].owned[aid].borrowers
    net.handle("W", ev.DropRef(net.sid("W", "drop"), aid))
    net.deliver_all()
    assert [m.actor_id for m in net.sent_bodies(KillActor)] == [aid]


def test_the_host_calls_its_own_actor_through_a_handle_without_the_wire():
    # W hosts a; a task on W got shared(a) and calls a.add.remote() itself    ACT-021 (loopback)
    net = Net(("D", "W"))
    aid = create_with_handle(net, host="W")
    tid, _ = net.submit("D", "use", shared(aid), executor="W")
    net.deliver_all()
    sent_before = len(net.sent)
    call, (y,) = net.submit("W", "add", actor=aid, executor="W")
    assert [r.task_id for r in net.runs("W") if r.actor_id == aid] == [call]
    net.finish("W", call, result(b"6"))
    assert net["W"].owned[y].state == "ready"
    assert len(net.sent) == sent_before  # nothing went on the wire
    assert not any(k[2] == call for k in net["W"].exec_tasks)  # the record is gone (nothing to acknowledge)
    assert net["W"].borrowed[aid].submitted_task_refs == 0  # the call's hold on the handle is released


def test_a_message_to_an_earlier_incarnation_of_this_peer_id_is_not_looped_back():
    # W (restarted as a new incarnation) gets a ref its previous incarnation owned   ACT-021, FATE-001
    from corekit import Stub
    from refrpc.core import Peer
    from refrpc.core.messages import RefDescriptor, SubmitTask, Arg, ArgKind

    w = Peer("W", 0x22, "mem://W")
    d = Stub("D")
    d.greet(w)
    old = RefDescriptor("W.11.1", "W", 0x11, "mem://W", 10)  # owned by W's earlier incarnation 0x11
    w.handle(d.send(w, SubmitTask(d.oid("t"), "f", (Arg(ArgKind.REF, ref=old),), (d.oid("t.r0"),))))
    assert not w.loopback  # nothing handled as if W (0x22) owned it
    # LIV-020: its owner is dead; the task failed at once and the entry went with it.
    b = w.borrowed.get("W.11.1")
    assert b is None or b.error is None or b.error.code is not ErrorCode.NOT_OWNER


def test_a_fenced_callers_calls_stop_holding_the_actor_for_its_other_callers():
    # C got shared(a) from D and calls a.m() twice; D calls a.m(); C dies while its first
    # call runs: that call is stopped without a reply, its queued one is dropped, and
    # D's call starts at once; the actor stays alive                 TASK-064, FATE-003, ACT-013
    net = Net(("D", "H", "C"))
    aid = create_with_handle(net)
    use, _ = net.submit("D", "use", shared(aid), executor="C")
    net.deliver_all()
    c1, _ = net.submit("C", "m", actor=aid, executor="H")
    c2, _ = net.submit("C", "m", actor=aid, executor="H")
    net.deliver_all()
    d1, (y,) = net.submit("D", "m", actor=aid)
    net.deliver_all()
    assert [r.task_id for r in net.runs("H")] == [c1]
    net.kill("C", "H")
    net.deliver_all()
    assert [s.task_id for s in of_type(net.log["H"], ev.StopTask)] == [c1]
    assert [r.task_id for r in net.runs("H")] == [c1, d1]  # c2 never runs
    net.finish("H", d1, result(b"d"))
    net.deliver_all()
    assert net["D"].owned[y].state == "ready"
    assert net["H"].hosted[aid].state == "alive"


def _hosted_counter(concurrency: int = 0):
    """H hosts O's actor; C is another caller with a session to H."""
    h = checked_peer("H", 0x11)
    o, c = Stub("O"), Stub("C")
    o.greet(h)
    c.greet(h)
    aid = o.oid("a")
    h.handle(o.send(h, CreateActor(aid, "Counter", (), max_concurrency=concurrency)))
    h.handle(ev.ActorReady("ready", aid))
    return h, o, c, aid


def test_a_create_actor_reusing_another_owners_actor_id_is_refused():
    # C sends CreateActor with the id of O's actor hosted at H (ids are unique, ID-005):
    # refused MALFORMED, no constructor runs, and O's actor stays O's: C cannot kill it
    # and O's kill still reaches it                                   ACT-035, ACT-006
    from refrpc.core.messages import KillActor, ProtocolError

    h, o, c, aid = _hosted_counter()
    out = h.handle(c.send(h, CreateActor(aid, "Other", ())))
    [err] = [b for b in bodies(out, to="C") if isinstance(b, ProtocolError)]
    assert (err.error.code, err.error.requirement) == (ErrorCode.MALFORMED, "ACT-035")
    assert not of_type(out, ev.StartActor) and not of_type(out, ev.RunTask)
    assert h.hosted[aid].owner == "O"
    assert of_type(h.handle(c.send(h, KillActor(aid))), ev.StopActor) == []
    assert of_type(h.handle(o.send(h, KillActor(aid))), ev.StopActor)


def test_a_call_waiting_for_its_argument_holds_back_only_its_own_callers_calls():
    # C: a.add.remote(x) with x O's and unanswered; O: a.add.remote(2), then a.get.remote():
    # O's ready call starts at once, C's waits unstarted (ACT-034); C's call 2 waits for C's call 1
    h, o, c, aid = _hosted_counter()
    x = o.descriptor(o.oid("x"))
    c1 = SubmitTask(c.oid("c1"), "add", (Arg(ArgKind.REF, ref=x),), (c.oid("c1.r0"),), actor_id=aid, actor_seq=1)
    out = h.handle(c.send(h, c1))
    assert bodies(out, GetObjectStatus, to="O") == [GetObjectStatus(x.object_id, True, relay=True)]
    c2 = SubmitTask(c.oid("c2"), "get", (), (c.oid("c2.r0"),), actor_id=aid, actor_seq=2)
    assert of_type(h.handle(c.send(h, c2)), ev.RunTask) == []  # behind C's call 1 (ACT-003)
    o1 = SubmitTask(o.oid("o1"), "add", (), (o.oid("o1.r0"),), actor_id=aid, actor_seq=1)
    runs = of_type(h.handle(o.send(h, o1)), ev.RunTask)
    assert [r.task_id for r in runs] == [o1.task_id]  # not held back by C's unstarted call
    out = h.handle(o.send(h, ObjectStatus(x.object_id, ObjectState.READY, 1, value=raw(b"1"))))
    assert of_type(out, ev.RunTask) == []  # ready now, but O's call holds the one place (ACT-013)
    out = h.handle(ev.TaskFinished("fin-o1", o1.task_id, 1, (ev.TaskResult(value=raw(b"2")),)))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [c1.task_id]
    out = h.handle(ev.TaskFinished("fin-c1", c1.task_id, 1, (ev.TaskResult(value=raw(b"3")),)))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [c2.task_id]


def test_a_started_call_whose_fetch_failed_keeps_its_place_and_runs_once_its_argument_is_known_again():
    # C: a.add.remote(x), x stored at P; P cannot serve it; O names P again: the same call runs,
    # and C's call 2 never overtakes it                                        ACT-034, OBJ-013
    h, o, c, aid = _hosted_counter()
    x = o.descriptor(o.oid("x"))
    c1 = SubmitTask(c.oid("c1"), "add", (Arg(ArgKind.REF, ref=x),), (c.oid("c1.r0"),), actor_id=aid, actor_seq=1)
    h.handle(c.send(h, c1))
    where = ObjectStatus(x.object_id, ObjectState.READY, 500_000, ("P",), ("mem://P",))
    [run] = of_type(h.handle(o.send(h, where)), ev.RunTask)
    assert run.task_id == c1.task_id
    c2 = SubmitTask(c.oid("c2"), "get", (), (c.oid("c2.r0"),), actor_id=aid, actor_seq=2)
    assert of_type(h.handle(c.send(h, c2)), ev.RunTask) == []
    out = h.handle(ev.FetchFailed("fetch-failed", x.object_id, c1.task_id, 1))
    assert GetObjectStatus(x.object_id, True, relay=True) in bodies(out, to="O")
    assert of_type(out, ev.RunTask) == []  # call 2 does not take call 1's place
    [again] = of_type(h.handle(o.send(h, where)), ev.RunTask)
    assert again.task_id == c1.task_id
    out = h.handle(ev.TaskFinished("fin-c1", c1.task_id, 1, (ev.TaskResult(value=raw(b"1")),)))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [c2.task_id]


def test_a_creation_killed_while_its_arguments_resolve_never_runs_its_constructor():
    # O: a = Counter.remote(x) with x unanswered; kill(a) at once: DEAD now, and when x's
    # status comes the constructor does not run                                   ACT-029, ACT-006
    h = checked_peer("H", 0x11)
    o = Stub("O")
    o.greet(h)
    aid = o.oid("a")
    x = o.descriptor(o.oid("x"))
    out = h.handle(o.send(h, CreateActor(aid, "Counter", (Arg(ArgKind.REF, ref=x),))))
    assert bodies(out, GetObjectStatus, to="O") == [GetObjectStatus(x.object_id, True, relay=True)]
    (dead,) = bodies(h.handle(o.send(h, KillActor(aid))), ActorStatus)
    assert dead.state is ActorState.DEAD and dead.error.code is ErrorCode.ACTOR_DIED  # ACT-006's error
    out = h.handle(o.send(h, ObjectStatus(x.object_id, ObjectState.READY, 1, value=raw(b"1"))))
    assert of_type(out, ev.StartActor) == [] and bodies(out, ActorStatus) == []
    assert h.actor_creations == {} and not any(k[2] == f"{aid}#create" for k in h.exec_tasks)


def test_an_owners_death_ends_other_callers_calls_with_actor_died_at_once():
    # C got shared(a) from D and calls a.m() twice; D dies while C's first call runs:
    # H stops the actor and answers both of C's calls ERROR(ACTOR_DIED) at once, the
    # running one without waiting for its code; nothing goes to D, and the running
    # call's late result sends nothing more                           ACT-038, FATE-004
    net = Net(("D", "H", "C"))
    aid = create_with_handle(net)
    use, _ = net.submit("D", "use", shared(aid), executor="C")
    net.deliver_all()
    c1, (y1,) = net.submit("C", "m", actor=aid, executor="H")
    c2, (y2,) = net.submit("C", "m", actor=aid, executor="H")
    net.deliver_all()
    assert [r.task_id for r in net.runs("H")] == [c1]
    net.kill("D", "H")
    net.deliver_all()
    assert [i.actor_id for i in of_type(net.log["H"], ev.StopActor)] == [aid]
    assert c1 in [s.task_id for s in of_type(net.log["H"], ev.StopTask)]
    for y in (y1, y2):
        err = net["C"].owned[y].error
        assert err is not None and err.code is ErrorCode.ACTOR_DIED and err.requirement == "ACT-038"
    assert not [m for m in net.sent_bodies(ActorStatus) if m.state is ActorState.DEAD]
    replies = len(net.sent_bodies(TaskReply))
    net.finish("H", c1, result(b"late"))
    net.deliver_all()
    assert len(net.sent_bodies(TaskReply)) == replies  # TASK-005: one reply per call


def test_calls_to_an_actor_whose_constructor_raised_end_actor_died_with_the_reason():
    # D: a = Counter.remote(); a.m.remote() queued; the constructor raises KeyError;
    # then another call. Both calls end ACTOR_DIED (ACT-004: the actor is dead), naming
    # the constructor's error; the owner gets ActorStatus(DEAD, TASK_FAILED) (ACT-001).
    # (The queued call used to end TASK_FAILED, and a later one "no live actor here".)
    net = Net(("D", "H"))
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "Counter", (), "H", 0, 0))
    queued, (y1,) = net.submit("D", "m", actor=aid)
    net.deliver_all()
    why = ErrorInfo(ErrorCode.TASK_FAILED, "KeyError: 'start'", "TASK-007", "Traceback ...")
    net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid, why))
    net.deliver_all()
    [status] = [m for m in net.sent_bodies(ActorStatus) if m.actor_id == aid]
    assert status.state is ActorState.DEAD and status.error.code is ErrorCode.TASK_FAILED
    first = net["D"].owned[y1].error
    assert first.code is ErrorCode.ACTOR_DIED and "KeyError: 'start'" in first.message, first
    # A call the host gets later (from a caller that has not learnt of the death) says why too.
    h, caller = net["H"], Stub("C")
    caller.greet(h)
    late = SubmitTask(caller.oid("t"), "m", (), (caller.oid("t.r0"),), actor_id=aid, actor_seq=1)
    [reply] = bodies(h.handle(caller.send(h, late)), TaskReply)
    [ret] = reply.returns
    assert ret.error.code is ErrorCode.ACTOR_DIED and "KeyError: 'start'" in ret.error.message, ret.error
