"""Fair dispatch at the submitter (TASK-012): tasks wait in the submitter's queue
until an executor has a free slot, instead of being committed to a busy executor.

Real cores on the in-memory link of :mod:`corekit`. D is the driver; A and B are
executors with 2 slots each (``Net`` registers every peer with 2 slots). Each test
starts with the user program it models.
"""

from __future__ import annotations

import pytest

from corekit import Net, Stub, bodies, checked_peer, ref, result, stored_result, val
from refrpc.core import Config, IdAllocator
from refrpc.core import events as ev
from refrpc.core.errors import LocalUsageError
from refrpc.core.messages import CancelTask, ErrorCode, GetObjectStatus, SubmitTask


def trio() -> Net:
    net = Net(("D", "A", "B"))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def sent_to(net: Net, executor: str) -> list[str]:
    """Task ids D has sent to ``executor``, in order."""
    return [b.task_id for b in net.sent_bodies(SubmitTask, src="D", dst=executor)]


def finish_on(net: Net, executor: str, tid: str, data: bytes = b"r") -> None:
    net.deliver_all()
    net.finish(executor, tid, result(data))
    net.deliver_all()


def test_tasks_beyond_the_free_slots_wait_at_the_submitter():
    # D: refs = [f.remote() for _ in range(6)]      4 slots in all: 2 go out later
    net = trio()
    tids = [net.submit("D", "f")[0] for _ in range(6)]
    net.deliver_all()
    assert sorted(sent_to(net, "A") + sent_to(net, "B")) == sorted(tids[:4])
    assert (len(sent_to(net, "A")), len(sent_to(net, "B"))) == (2, 2)
    assert [net["D"].tasks[t].state for t in tids[4:]] == ["queued", "queued"]
    assert all(net["D"].owned[net["D"].tasks[t].spec.return_ids[0]].state == "pending" for t in tids[4:])
    # One task on B ends: the oldest queued task goes to B, the next still waits.
    finish_on(net, "B", sent_to(net, "B")[0])
    assert sent_to(net, "B")[-1] == tids[4]
    assert net["D"].tasks[tids[5]].state == "queued"
    finish_on(net, "A", sent_to(net, "A")[0])
    assert sent_to(net, "A")[-1] == tids[5]


def test_short_tasks_do_not_wait_behind_a_long_one():
    # D: slow = long.remote(); quick = [short.remote() for _ in range(10)]
    # A and B with one slot each; the long task holds A; every short one runs on B.
    net = Net(("D", "A", "B"), workers=False)
    for w in ("A", "B"):
        net.handle("D", ev.AddPeer(net.sid("D", "add"), w, f"mem://{w}", 1))
    net.connect("D", "A")
    net.connect("D", "B")
    slow = net.submit("D", "long")[0]
    quick = [net.submit("D", "short")[0] for _ in range(10)]
    net.deliver_all()
    long_on = net["D"].tasks[slow].executor
    other = "B" if long_on == "A" else "A"
    for tid in quick:
        assert net["D"].tasks[tid].executor == other
        finish_on(net, other, tid)
    assert sent_to(net, long_on) == [slow]
    assert sent_to(net, other) == quick


def test_a_cancelled_queued_task_is_never_sent_and_releases_its_arguments():
    # D: x = put(v); refs = [f.remote(x) for _ in range(5)]; cancel(refs[4])
    net = trio()
    x = net.put("D", b"v")
    tids = [net.submit("D", "f", ref(x))[0] for _ in range(5)]
    net.deliver_all()
    last = net["D"].tasks[tids[4]]
    assert last.state == "queued"
    assert net["D"].owned[x].submitted_task_refs == 5
    out = net.handle("D", ev.Cancel(net.sid("D", "cancel"), tids[4]))
    assert bodies(out, CancelTask) == []  # nothing was sent, nothing to stop
    rid = last.spec.return_ids[0]
    assert net["D"].owned[rid].error.code == ErrorCode.TASK_CANCELLED
    assert net["D"].owned[x].submitted_task_refs == 4
    for tid in tids[:4]:
        finish_on(net, net["D"].tasks[tid].executor, tid)
    assert tids[4] not in sent_to(net, "A") + sent_to(net, "B")
    assert net["D"].owned[x].submitted_task_refs == 0


def big_object_on(net: Net, executor: str, size: int) -> str:
    """D: x = make.remote() -- run on ``executor``, which stores a ``size``-byte result."""
    tid, (x,) = net.submit("D", "make", executor=executor)
    net.deliver_all()
    net.finish(executor, tid, stored_result(size))
    net.deliver_all()
    assert net["D"].owned[x].locations.keys() == {executor}
    return x


def fill(net: Net, executor: str, n: int = 2) -> list[str]:
    tids = [net.submit("D", "busy", executor=executor)[0] for _ in range(n)]
    net.deliver_all()
    return tids


def test_a_task_waits_for_the_executor_holding_its_large_argument():
    # D: x = make.remote() (8 MiB, on A); A busy; y = g.remote(x); z = h.remote()
    net = trio()
    x = big_object_on(net, "A", 8 << 20)
    busy = fill(net, "A")
    g = net.submit("D", "g", ref(x))[0]
    h = net.submit("D", "h")[0]
    net.deliver_all()
    assert net["D"].tasks[g].state == "queued"  # not copied over to the idle B
    assert net["D"].tasks[h].executor == "B"  # and it holds nothing else back
    finish_on(net, "A", busy[0])
    assert net["D"].tasks[g].executor == "A"
    assert sent_to(net, "B") == [h]


def test_a_small_argument_does_not_keep_a_task_off_an_idle_executor():
    # D: x = make.remote() (4 KiB, on A); A busy; y = g.remote(x)  -> runs on B
    net = trio()
    x = big_object_on(net, "A", 4096)
    fill(net, "A")
    g = net.submit("D", "g", ref(x))[0]
    net.deliver_all()
    assert net["D"].tasks[g].executor == "B"


def test_a_queued_task_waiting_for_a_dead_holder_goes_anywhere():
    # D: x on A (8 MiB); A busy; y = g.remote(x); A dies -> g goes to B, which will
    # find x lost and say so; it does not wait for A forever.
    net = trio()
    x = big_object_on(net, "A", 8 << 20)
    fill(net, "A")
    g = net.submit("D", "g", ref(x))[0]
    net.deliver_all()
    assert net["D"].tasks[g].state == "queued"
    net.kill("A", "D")
    net.deliver_all()
    assert net["D"].tasks[g].executor == "B"


def test_retries_skip_the_queue():
    # D: r = flaky.options(max_retries=1).remote(); 4 more tasks; r's executor dies
    net = trio()
    first, _ = net.submit("D", "flaky", retries=1)
    others = [net.submit("D", "f")[0] for _ in range(4)]
    net.deliver_all()
    ex = net["D"].tasks[first].executor
    survivor = "B" if ex == "A" else "A"
    assert net["D"].tasks[others[-1]].state == "queued"
    net.kill(ex, "D")
    net.deliver_all()
    t = net["D"].tasks[first]
    assert (t.state, t.spec.attempt, t.executor) == ("submitted", 2, survivor)


def test_a_task_that_waits_gets_its_queued_producer_sent_at_once():
    # A runs a task that submitted work and waits for it:  refrpc.get(child.remote())
    # where A's own slots on B are all taken: the waited-for child is sent anyway.
    net = Net(("A", "B"))
    net.connect("A", "B")
    tids = [net.submit("A", "f")[0] for _ in range(3)]
    net.deliver_all()
    child = net["A"].tasks[tids[2]]
    assert child.state == "queued"
    net.handle("A", ev.Get(net.sid("A", "get"), 7, child.spec.return_ids[0], urgent=True))
    net.deliver_all()
    assert (child.state, child.executor) == ("submitted", "B")
    # A plain get from the program's own thread does not jump the queue.
    more = net.submit("A", "f")[0]
    net.get("A", net["A"].tasks[more].spec.return_ids[0], request_id=8)
    assert net["A"].tasks[more].state == "queued"


def test_a_waiting_status_request_sends_the_queued_producer():
    # A borrower waits (GetObjectStatus wait=true) for an object whose task is queued.
    d = checked_peer("D", 0x501)
    w = Stub("W")
    d.handle(ev.AddPeer("s1", "W", w.address, 1))
    w.greet(d)
    ids = IdAllocator("D", 0x501)
    made = [ids.task(1) for _ in range(2)]
    for n, (tid, rids) in enumerate(made):
        d.handle(ev.Submit(f"s{n + 2}", tid, "f", (val(b"a"),), rids))
    assert [d.tasks[tid].state for tid, _ in made] == ["submitted", "queued"]
    (tid, (rid,)) = made[1]
    out = d.handle(w.send(d, GetObjectStatus(rid, True)))
    assert [e.body.task_id for e in w.take(out) if isinstance(e.body, SubmitTask)] == [tid]


def test_queued_tasks_fail_when_no_executor_is_left():
    # D: 6 tasks on A and B (2 slots each); both die; the queued ones fail at once.
    net = trio()
    tids = [net.submit("D", "f")[0] for _ in range(6)]
    net.deliver_all()
    net.kill("A", "D")
    net.kill("B", "D")
    for tid in tids[4:]:
        rid = net["D"].tasks[tid].spec.return_ids[0]
        assert net["D"].owned[rid].error.code == ErrorCode.RESOURCE_EXHAUSTED


def test_actor_calls_take_no_task_slot():
    # D: a = Actor.remote() on A; 5 calls; f.remote() x2 still both go to A or B at once
    net = trio()
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "C", (), "A"))
    net.deliver_all()
    for _ in range(5):
        net.submit("D", "C.m", actor=aid)
    net.deliver_all()
    assert net["D"].remotes["A"].load == 0
    tids = [net.submit("D", "f")[0] for _ in range(4)]
    net.deliver_all()
    assert all(net["D"].tasks[t].state == "submitted" for t in tids)


def one_slot_each() -> Net:
    """A and B with one slot each; pipelining up to 4 tasks per slot."""
    net = Net(("D", "A", "B"), config=Config(pipeline_depth=4), workers=False)
    for w in ("A", "B"):
        net.handle("D", ev.AddPeer(net.sid("D", "add"), w, f"mem://{w}", 1))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def test_quick_functions_are_pipelined_beyond_the_slots():
    # D: get(f.remote()); refs = [f.remote() for _ in range(10)]
    # f finished within pipeline_ms, so up to 4 per slot go out at once (8 here);
    # a function never seen is sent only to free slots.
    net = one_slot_each()
    first = net.submit("D", "f")[0]
    finish_on(net, net["D"].tasks[first].executor, first)
    assert net["D"].quick_functions == {"f": True}
    tids = [net.submit("D", "f")[0] for _ in range(10)]
    net.deliver_all()
    assert [net["D"].tasks[t].state for t in tids] == ["submitted"] * 8 + ["queued"] * 2
    unknown = [net.submit("D", "g")[0] for _ in range(2)]
    assert all(net["D"].tasks[t].state == "queued" for t in unknown)


def test_nothing_is_pipelined_behind_a_slow_or_old_task():
    # D: quick f known; slow = g.remote() (never seen: not known quick) takes A;
    # then f tasks: pipelined on B only. After pipeline_ms, B's in-flight tasks are
    # old: nothing more is added behind them.
    net = one_slot_each()
    first = net.submit("D", "f")[0]
    finish_on(net, net["D"].tasks[first].executor, first)
    slow = net.submit("D", "g")[0]
    net.deliver_all()
    long_on = net["D"].tasks[slow].executor
    other = "B" if long_on == "A" else "A"
    tids = [net.submit("D", "f")[0] for _ in range(6)]
    net.deliver_all()
    assert [net["D"].tasks[t].executor for t in tids[:4]] == [other] * 4
    assert all(net["D"].tasks[t].state == "queued" for t in tids[4:])
    net.tick(net["D"].config.pipeline_ms + 20)
    finish_on(net, other, tids[0])  # three old ones still in flight: nothing is added
    assert net["D"].tasks[tids[4]].state == "queued"
    # f took longer than pipeline_ms this time: it is no longer known quick, so
    # once the slot is really free one task goes, and none behind it.
    assert net["D"].quick_functions["f"] is False
    for tid in tids[1:4]:
        finish_on(net, other, tid)
    assert net["D"].tasks[tids[4]].executor == other
    assert net["D"].tasks[tids[5]].state == "queued"


def test_code_shipped_through_one_runner_is_judged_per_shipped_function():
    # D: quick = refrpc.remote(lambda: 1); slow = refrpc.remote(lambda: sleep(5)), both
    # defined in the script, so both run through one runner function by value; quick
    # ran quickly once. slow.remote(), then quick.remote() x6: the slow one's executor
    # takes nothing behind it, though the runner's name is known quick (TASK-020).
    net = one_slot_each()
    first = net.submit("D", "runner", speed_key="code-quick")[0]
    finish_on(net, net["D"].tasks[first].executor, first)
    slow = net.submit("D", "runner", speed_key="code-slow")[0]
    net.deliver_all()
    long_on = net["D"].tasks[slow].executor
    other = "B" if long_on == "A" else "A"
    tids = [net.submit("D", "runner", speed_key="code-quick")[0] for _ in range(6)]
    net.deliver_all()
    assert [net["D"].tasks[t].executor for t in tids[:4]] == [other] * 4
    assert all(net["D"].tasks[t].state == "queued" for t in tids[4:])
    assert sent_to(net, long_on) == [slow] or sent_to(net, long_on) == [first, slow]


def gpu_cluster() -> Net:
    """A with one slot and one "gpu"; B with two slots and no gpu."""
    net = Net(("D", "A", "B"), workers=False)
    net.handle("D", ev.AddPeer(net.sid("D", "add"), "A", "mem://A", 1, (("gpu", 1.0),)))
    net.handle("D", ev.AddPeer(net.sid("D", "add"), "B", "mem://B", 2))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def submit_with(net: Net, function: str, num_cpus: float = 1.0, resources: tuple = ()) -> str:
    task_id, rids = net.ids["D"].task(1)
    net.handle("D", ev.Submit(net.sid("D", "submit"), task_id, function, (), rids, num_cpus=num_cpus, resources=resources))
    return task_id


def test_a_task_asking_for_a_resource_goes_only_where_it_is_offered():
    # D: train.options(resources={"gpu": 1}).remote() x2; then plain tasks
    net = gpu_cluster()
    first = submit_with(net, "train", resources=(("gpu", 1.0),))
    second = submit_with(net, "train", resources=(("gpu", 1.0),))
    plain = [submit_with(net, "f") for _ in range(2)]
    net.deliver_all()
    assert net["D"].tasks[first].executor == "A"
    assert net["D"].tasks[second].state == "queued"  # the one gpu is taken
    assert [net["D"].tasks[t].executor for t in plain] == ["B", "B"]  # not held back
    finish_on(net, "A", first)
    assert net["D"].tasks[second].executor == "A"


def test_a_task_no_executor_can_ever_run_fails_at_once():
    # D: f.options(resources={"tpu": 1}).remote(); f.options(num_cpus=4).remote()
    net = gpu_cluster()
    for tid in (submit_with(net, "f", resources=(("tpu", 1.0),)), submit_with(net, "f", num_cpus=4)):
        e = net["D"].owned[net["D"].tasks[tid].spec.return_ids[0]]
        assert e.error.code == ErrorCode.RESOURCE_EXHAUSTED and "offers" in e.error.message


def test_num_cpus_counts_slots_and_zero_never_waits():
    # D: big = f.options(num_cpus=2).remote() fills B; small = f.remote() waits for A;
    #    free = f.options(num_cpus=0).remote() goes at once
    net = gpu_cluster()
    big = submit_with(net, "f", num_cpus=2)
    a_task = submit_with(net, "f")
    small = submit_with(net, "f")
    free = submit_with(net, "f", num_cpus=0)
    net.deliver_all()
    assert net["D"].tasks[big].executor == "B"
    assert net["D"].tasks[a_task].executor == "A"
    assert net["D"].tasks[small].state == "queued"
    assert net["D"].tasks[free].state == "submitted"
    finish_on(net, "B", big)
    assert net["D"].tasks[small].executor == "B"


def test_a_task_is_pipelined_only_behind_tasks_of_its_own_function():
    # D: long.remote(0.01) and short.remote() both answered at once (both known quick);
    # then long.remote(5) goes to A and short.remote() to B, the two slots; more
    # short.remote() x6 are sent ahead behind the short task on B only, never behind
    # long on A, which may run long this time (the audit's 5 s for short tasks)  TASK-020
    net = one_slot_each()
    finish_on(net, "A", net.submit("D", "long", executor="A")[0])
    finish_on(net, "B", net.submit("D", "short", executor="B")[0])
    slow = net.submit("D", "long")[0]
    net.deliver_all()
    first = net.submit("D", "short")[0]
    net.deliver_all()
    assert (net["D"].tasks[slow].executor, net["D"].tasks[first].executor) == ("A", "B")
    more = [net.submit("D", "short")[0] for _ in range(6)]
    net.deliver_all()
    placed = [net["D"].tasks[t].executor for t in more]
    assert "A" not in placed and placed.count("B") == 3  # pipeline_depth 4 per slot
    assert [net["D"].tasks[t].state for t in more[3:]] == ["queued"] * 3


def _actor_on(net: Net, host: str, num_cpus: float) -> str:
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "C", (), host, num_cpus=num_cpus))
    net.deliver_all()
    return aid


def test_nothing_is_pipelined_onto_a_slot_an_actor_holds():
    # One host, A and B with a slot each; f is known quick. a = C.options(num_cpus=1)
    # .remote() holds B's slot for its life; two h.options(num_cpus=0.5) fill A's.
    # f.remote(): B has nothing of D's in flight, but its slot is not free and nothing
    # there runs to pipeline behind: f waits at D instead of going to B, where it would
    # wait behind the actor for ever (the host's count, two slots taken by three tasks
    # in flight, did not show it)                                    TASK-020, TASK-030
    net = one_host_cluster("h1", "h1")
    finish_on(net, "B", net.submit("D", "f", executor="B")[0])  # f answered at once: quick
    _actor_on(net, "B", 1.0)
    halves = [submit_with(net, "h", num_cpus=0.5) for _ in range(2)]
    f = submit_with(net, "f")
    net.deliver_all()
    assert [net["D"].tasks[t].executor for t in halves] == ["A", "A"]
    assert net["D"].tasks[f].state == "queued"
    finish_on(net, "A", halves[0])
    finish_on(net, "A", halves[1])
    assert net["D"].tasks[f].executor == "A"


def test_a_task_that_takes_nothing_is_not_in_flight_for_pipelining():
    # One host, A and B with a slot each. a = C.options(num_cpus=1).remote() holds B's
    # slot; g (unknown speed) runs on A; z = book.options(num_cpus=0) runs on B, known
    # quick. f.remote(): z takes no slot, so nothing of D's that takes one is in flight
    # on B to pipeline behind: f waits at D (it used to go to B, behind the actor, and
    # the host's pool then counted three slots taken of two: a gpu task waiting for A's
    # slot never went)                                                TASK-020, TASK-051
    net = one_host_cluster("h1", "h1")
    _actor_on(net, "B", 1.0)
    first_z = submit_with(net, "book", num_cpus=0)
    net.deliver_all()
    finish_on(net, "B", first_z)  # book answered at once: quick
    g = submit_with(net, "g")
    z = submit_with(net, "book", num_cpus=0)
    f = submit_with(net, "f")
    net.deliver_all()
    assert (net["D"].tasks[g].executor, net["D"].tasks[z].executor) == ("A", "B")
    assert net["D"].tasks[f].state == "queued"
    assert net["D"].remotes["B"].load == 0 and net["D"].remotes["A"].load == 1
    finish_on(net, "A", g)
    assert net["D"].tasks[f].executor == "A"


def test_an_actor_holds_its_resources_for_its_life():
    # D: a = Trainer.options(resources={"gpu": 1}).remote(); train.options(gpu).remote() waits
    net = gpu_cluster()
    aid = net.ids["D"].next()
    net.handle("D", ev.CreateActorRequest(net.sid("D", "actor"), aid, "Trainer", (), resources=(("gpu", 1.0),)))
    net.deliver_all()
    assert net["D"].owned_actors[aid].host == "A"
    waiting = submit_with(net, "train", resources=(("gpu", 1.0),))
    net.deliver_all()
    assert net["D"].tasks[waiting].state == "queued"
    net.handle("D", ev.KillActorRequest(net.sid("D", "kill"), aid))
    net.deliver_all()
    assert net["D"].tasks[waiting].executor == "A"


def test_negative_demands_are_refused_and_change_nothing():
    net = gpu_cluster()
    before = len(net["D"].tasks)
    with pytest.raises(LocalUsageError):
        submit_with(net, "f", num_cpus=-1)
    assert len(net["D"].tasks) == before


def one_host_cluster(*hosts: str) -> Net:
    """A and B with one slot each, on the given hosts ("" for hosts of their own)."""
    net = Net(("D", "A", "B"), workers=False)
    for w, host in zip(("A", "B"), hosts):
        net.handle("D", ev.AddPeer(net.sid("D", "add"), w, f"mem://{w}", 1, (), host))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def test_executors_of_one_host_pool_their_slots():
    # D: big = f.options(num_cpus=2).remote() on a host of two 1-slot workers runs;
    #    plain tasks wait until it ends (the host's 2 slots are taken)        TASK-040
    net = one_host_cluster("h1", "h1")
    big = submit_with(net, "f", num_cpus=2)
    plain = [submit_with(net, "f") for _ in range(2)]
    net.deliver_all()
    on = net["D"].tasks[big].executor
    assert on in ("A", "B")
    assert [net["D"].tasks[t].state for t in plain] == ["queued", "queued"]
    finish_on(net, on, big)
    assert sorted(net["D"].tasks[t].executor for t in plain) == ["A", "B"]


def test_slots_of_different_hosts_are_not_pooled():
    # The same two workers on hosts of their own: 2 CPUs fit on neither      TASK-040, TASK-030
    for hosts in (("h1", "h2"), ("", "")):
        net = one_host_cluster(*hosts)
        tid = submit_with(net, "f", num_cpus=2)
        e = net["D"].owned[net["D"].tasks[tid].spec.return_ids[0]]
        assert e.error.code == ErrorCode.RESOURCE_EXHAUSTED and "offers" in e.error.message


def test_a_pooled_host_that_loses_a_worker_holds_less():
    # A dies: its host now offers 1 slot, so a 2-CPU task fails at once      TASK-040, TASK-030
    net = one_host_cluster("h1", "h1")
    net.handle("D", ev.PeerFailed(net.sid("D", "failed"), "A", net.inc("A")))
    tid = submit_with(net, "f", num_cpus=2)
    e = net["D"].owned[net["D"].tasks[tid].spec.return_ids[0]]
    assert e.error.code == ErrorCode.RESOURCE_EXHAUSTED
