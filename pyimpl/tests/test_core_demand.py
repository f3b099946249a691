"""A task's demand travels in SubmitTask (TASK-050, TASK-054, ACT-025), an actor's in
CreateActor (ACT-026): what the submitter's core sends and what the executor's core
hands its executor.

Real cores on the in-memory link of :mod:`corekit`; D submits, A executes.
"""

from __future__ import annotations

import pytest

from corekit import Net, Stub, bodies, checked_peer, of_type
from refrpc.core import events as ev
from refrpc.core.messages import (ActorState, ActorStatus, CreateActor, ErrorCode, ErrorInfo, ProtocolError,
                                  ResourceAmount, SubmitTask, TaskReply)


def pair() -> Net:
    net = Net(("D", "A"))
    net.connect("D", "A")
    return net


def submit(net: Net, num_cpus: float = 1.0, resources: tuple = (), actor: str = "") -> str:
    task_id, rids = net.ids["D"].task(1)
    net.handle("D", ev.Submit(net.sid("D", "submit"), task_id, "f", (), rids, 0, False, actor, "A",
                              num_cpus=num_cpus, resources=resources))
    net.deliver_all()
    return task_id


def test_the_demand_travels_in_ten_thousandths_and_reaches_the_executor():
    # D: f.options(num_cpus=0.5, resources={"gpu": 1}).remote() on A
    net = pair()
    tid = submit(net, 0.5, (("gpu", 1.0),))
    [spec] = [b for b in net.sent_bodies(SubmitTask, src="D") if b.task_id == tid]
    assert (spec.cpu_demand, spec.resources) == (5000, (ResourceAmount("gpu", 10000),))
    [run] = [r for r in net.runs("A") if r.task_id == tid]
    assert (run.cpu_demand, run.resources) == (5000, (("gpu", 10000),))


def test_the_default_demand_is_one_slot_and_zero_is_none():
    # D: f.remote(); f.options(num_cpus=0).remote()
    net = pair()
    one, zero = submit(net), submit(net, 0.0)
    demands = {b.task_id: (b.cpu_demand, b.resources) for b in net.sent_bodies(SubmitTask, src="D")}
    assert demands[one] == (10000, ()) and demands[zero] == (0, ())


def test_a_demand_below_the_unit_is_rounded_up_never_to_nothing():
    # f.options(num_cpus=0.00001): it still takes CPU (TASK-050)
    net = pair()
    tid = submit(net, 0.00001)
    [spec] = [b for b in net.sent_bodies(SubmitTask, src="D") if b.task_id == tid]
    assert spec.cpu_demand == 1


def test_a_huge_cpu_demand_is_sent_as_the_largest_the_field_holds():
    net = pair()
    tid = submit(net, 2.0**31 - 1)
    [spec] = [b for b in net.sent_bodies(SubmitTask, src="D") if b.task_id == tid]
    assert spec.cpu_demand == 2**32 - 1


@pytest.mark.parametrize("resources", [
    (ResourceAmount("gpu", 1), ResourceAmount("gpu", 1)), (ResourceAmount("CPU", 1),), (ResourceAmount("", 1),),
])
def test_resources_named_twice_empty_or_cpu_are_malformed(resources):
    # S sends a SubmitTask whose resources break TASK-054: refused as MALFORMED,
    # nothing runs, and the session goes on                                  TASK-054, ERR-003
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    out = a.handle(s.send(a, SubmitTask(s.oid("t"), "f", (), (s.oid("t.r0"),), resources=resources)))
    assert not of_type(out, ev.RunTask)
    [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
    assert (err.error.code, err.error.requirement) == (ErrorCode.MALFORMED, "TASK-054")
    assert of_type(a.handle(s.send(a, SubmitTask(s.oid("next"), "f", (), (s.oid("next.r0"),)))), ev.RunTask)


def test_an_actor_call_takes_nothing():
    # D: a = Counter.remote(); a.add.options(num_cpus=2).remote() travels with no demand  ACT-025
    net = Net(("D", "H"))
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "Counter", (), "H", 0, 0))
    net.deliver_all()
    net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid))
    net.deliver_all()
    task_id, rids = net.ids["D"].task(1)
    net.handle("D", ev.Submit(net.sid("D", "submit"), task_id, "add", (), rids, 0, False, aid,
                              num_cpus=2.0, resources=(("gpu", 1.0),)))
    net.deliver_all()
    [spec] = [b for b in net.sent_bodies(SubmitTask, src="D") if b.task_id == task_id]
    assert (spec.cpu_demand, spec.resources) == (0, ())


def _create(net: Net, num_cpus: float = 0.0, resources: tuple = ()) -> tuple[str, list[ev.Instruction]]:
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "Counter", (), "H", 0, 0, num_cpus, resources))
    return aid, net.deliver_all()


def test_an_actors_lifetime_demand_travels_in_create_actor_and_reaches_the_executor():
    # D: Counter.options(num_cpus=2, resources={"gpu": 1}).remote() on H; Counter.remote()   ACT-026
    net = Net(("D", "H"))
    aid, out = _create(net, 2.0, (("gpu", 1.0),))
    [msg] = [b for b in net.sent_bodies(CreateActor, src="D") if b.actor_id == aid]
    assert (msg.cpu_demand, msg.resources) == (20000, (ResourceAmount("gpu", 10000),))
    [start] = of_type(out, ev.StartActor)
    assert (start.cpu_demand, start.resources) == (20000, (("gpu", 10000),))
    plain, out = _create(net)
    [msg] = [b for b in net.sent_bodies(CreateActor, src="D") if b.actor_id == plain]
    assert (msg.cpu_demand, msg.resources) == (0, ())  # an actor takes no CPU for its life by default
    assert [(s.cpu_demand, s.resources) for s in of_type(out, ev.StartActor)] == [(0, ())]


def test_create_actor_resources_named_twice_are_malformed():
    # S sends CreateActor naming gpu twice: MALFORMED naming TASK-054, no actor   ACT-030
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    twice = (ResourceAmount("gpu", 1), ResourceAmount("gpu", 1))
    out = a.handle(s.send(a, CreateActor(s.oid("a"), "Counter", (), resources=twice)))
    assert not of_type(out, ev.StartActor)
    [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
    assert (err.error.code, err.error.requirement) == (ErrorCode.MALFORMED, "TASK-054")


def test_a_creation_the_host_can_never_hold_kills_the_actor_and_its_queued_calls_die():
    # H's executor answers the creation RESOURCE_EXHAUSTED (ACT-028): D hears DEAD with
    # that error, and a call queued behind the creation is answered ACTOR_DIED  ACT-028, ACT-004
    net = Net(("D", "H"))
    aid, _ = _create(net, 0.0, (("gpu", 2.0),))
    task_id, rids = net.ids["D"].task(1)
    net.handle("D", ev.Submit(net.sid("D", "call"), task_id, "add", (), rids, 0, False, aid))
    net.deliver_all()
    info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, "asks for 2 'gpu'; H offers 1", "ACT-028")
    net.handle("H", ev.ActorReady(net.sid("H", "refused"), aid, info))
    net.deliver_all()
    [status] = [b for b in net.sent_bodies(ActorStatus, src="H") if b.actor_id == aid]
    assert status.state is ActorState.DEAD and status.error.code is ErrorCode.RESOURCE_EXHAUSTED
    [reply] = [b for b in net.sent_bodies(TaskReply, src="H") if b.task_id == task_id]
    assert [r.error.code for r in reply.returns] == [ErrorCode.ACTOR_DIED]


@pytest.mark.parametrize("constructed", [False, True])
def test_an_actor_killed_while_its_creation_waits_is_forgotten_and_never_reported_alive(constructed):
    # D kills the actor while H's executor still holds its creation back (or runs its
    # constructor): H reports DEAD once, never ALIVE after it, and forgets the creation
    # when the executor answers it; an instance built after the stop is stopped.   ACT-029
    net = Net(("D", "H"))
    aid, _ = _create(net, 1.0)
    net.handle("D", ev.KillActorRequest(net.sid("D", "kill"), aid))
    out = net.deliver_all()
    assert len(of_type(out, ev.StopActor)) == 1
    error = None if constructed else ErrorInfo(ErrorCode.ACTOR_DIED, "stopped before it was created", "ACT-029")
    out = net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid, error))
    net.deliver_all()
    assert [b.state for b in net.sent_bodies(ActorStatus, src="H") if b.actor_id == aid] == [ActorState.DEAD]
    assert len(of_type(out, ev.StopActor)) == (1 if constructed else 0)
    assert not net["H"].actor_creations and not net["H"].exec_tasks

def test_a_decimal_demand_converts_exactly_on_both_sides():
    # f.options(num_cpus=0.14, resources={"gpu": 0.14}) sent to a worker that registered
    # {"gpu": 0.14}: 0.14 is 1400 at the submitter (binary arithmetic would give 1401, a
    # task that could never run there) and in the worker's offer alike   TASK-050, CLU-059
    from refrpc.core._tasks import MAX_RESOURCE_UNITS, to_units
    net = pair()
    tid = submit(net, 0.14, (("gpu", 0.14),))
    [spec] = [b for b in net.sent_bodies(SubmitTask, src="D") if b.task_id == tid]
    assert (spec.cpu_demand, spec.resources) == (1400, (ResourceAmount("gpu", 1400),))
    assert to_units(0.14, MAX_RESOURCE_UNITS) == 1400  # what Executor.offer admits by


@pytest.mark.parametrize("amount, units", [
    (0.07, 700), (0.14, 1400), (0.33333, 3334), (1.1, 11000), (1e-05, 1), (1e-11, 1),
    (1.00000000001, 10001), (0.12345678, 1235), (3, 30000), (0.0, 0),
])
def test_the_conversion_table_of_task_050(amount, units):
    # the worked table of TASK-050: the decimal value of the shortest form, times
    # 10,000 exactly, rounded up; a non-zero amount never becomes 0        TASK-050
    from refrpc.core._tasks import MAX_RESOURCE_UNITS, to_units
    assert to_units(amount, MAX_RESOURCE_UNITS) == units


def test_an_actor_call_numbered_0_never_runs():
    # S creates an actor on A, then sends a call with actorSeq 0: refused WRONG_STATE
    # naming ACT-003 on arrival, the actor stays alive, and call 1 runs       VAL-020, ACT-014
    from refrpc.core.messages import CreateActor, ReturnKind, TaskReply
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    aid = s.oid("actor")
    a.handle(s.send(a, CreateActor(aid, "Counter", ())))
    a.handle(ev.ActorReady("ready", aid))
    out = a.handle(s.send(a, SubmitTask(s.oid("t0"), "m", (), (s.oid("t0.r0"),), actor_id=aid, actor_seq=0, cpu_demand=0)))
    assert not of_type(out, ev.RunTask)
    [reply] = [b for b in bodies(out, to="S") if isinstance(b, TaskReply)]
    [rv] = reply.returns
    assert rv.kind == ReturnKind.ERROR and (rv.error.code, rv.error.requirement) == (ErrorCode.WRONG_STATE, "ACT-003")
    out = a.handle(s.send(a, SubmitTask(s.oid("t1"), "m", (), (s.oid("t1.r0"),), actor_id=aid, actor_seq=1, cpu_demand=0)))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [s.oid("t1")]
