"""Placement by free memory at the submitter (TASK-041, OBJ-060) and the spilled mark
of an ownership-table row (INT-020).

Real cores on the in-memory link of :mod:`corekit`. D is the driver; A and B are
executors with 2 slots each, each on a host of its own (so an argument D holds
must be copied into the executor's store). An executor tells D how much its store
can still take in each TaskReply. Each test starts with the user program it models.
"""

from __future__ import annotations

from corekit import Net, raw, ref, result, stored_result
from refrpc.core import events as ev
from refrpc.core.messages import SubmitTask, TaskReply

MB = 10**6


def trio() -> Net:
    net = Net(("D", "A", "B"))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def big_put(net: Net, size: int) -> str:
    """D: x = refrpc.put(array of ``size`` bytes) -- stored in D's own store."""
    oid = net.ids["D"].next()
    net.handle("D", ev.Put(net.sid("D", "put"), oid, raw(b""), True, size))
    return oid


def report_free(net: Net, executor: str, free: int) -> None:
    """D: f.remote() on ``executor``, whose reply says its store can take ``free`` more bytes."""
    tid, _ = net.submit("D", "f", executor=executor)
    net.deliver_all()
    net.handle(executor, ev.TaskFinished(net.sid(executor, "finished"), tid, 1, (result(),), store_free_bytes=free))
    net.deliver_all()


def executor_of(net: Net, tid: str) -> str:
    return net["D"].tasks[tid].executor


def with_reports(**free: int) -> tuple[Net, str]:
    """D holds x (put, 30 MB); each executor named has reported its free bytes."""
    net = trio()
    x = big_put(net, 30 * MB)
    for executor, n in free.items():
        report_free(net, executor, n)
    return net, x


def placed(net: Net, *args: ev.ArgSpec) -> str:
    """D: g.remote(*args), delivered; the task id."""
    g = net.submit("D", "g", *args)[0]
    net.deliver_all()
    return g


def test_the_reply_says_how_much_the_store_can_take():
    # Executor A, with a store limit, finishes a task: its reply carries the free bytes (OBJ-060).
    net = trio()
    report_free(net, "A", 12 * MB)
    assert net.sent_bodies(TaskReply, src="A")[-1].store_free_bytes == 12 * MB
    assert net["D"].remotes["A"].store_free == 12 * MB
    # Without a store limit the shell says nothing: -1, and D knows nothing.
    report_free(net, "B", -1)
    assert net.sent_bodies(TaskReply, src="B")[-1].store_free_bytes == -1
    assert net["D"].remotes["B"].store_free == -1


def test_a_task_goes_to_the_executor_with_memory_for_its_argument():
    # D: x = put(30 MB); A said it can take 10 MB more, B said nothing; g.remote(x) -> B.
    # (By load alone A and B tie and A, the first, would get it.)
    net, x = with_reports(A=10 * MB)
    assert executor_of(net, placed(net, ref(x))) == "B"


def test_when_no_executor_has_memory_placement_is_as_before():
    # D: x = put(30 MB); A and B both said 10 MB; g.remote(x) goes by load (A, the first),
    # and A's own admission holds it until memory frees (OBJ-037).
    net, x = with_reports(A=10 * MB, B=10 * MB)
    assert executor_of(net, placed(net, ref(x))) == "A"


def test_an_argument_already_on_the_executor_needs_no_memory():
    # D: x = make.remote() (30 MB, stored on A); A is full (0 free); g.remote(x) runs on A:
    # nothing is copied there.
    net = trio()
    tid, (x,) = net.submit("D", "make", executor="A")
    net.deliver_all()
    net.handle("A", ev.TaskFinished(net.sid("A", "finished"), tid, 1, (stored_result(30 * MB),), store_free_bytes=0))
    net.deliver_all()
    assert net["D"].remotes["A"].store_free == 0
    assert executor_of(net, placed(net, ref(x))) == "A"


def test_a_shared_argument_is_not_counted():
    # D: x = put(30 MB); A said 10 MB; g.remote(shared(x)): the executor gets the ref,
    # not the bytes, so A (the first by load) is fine.
    net, x = with_reports(A=10 * MB)
    assert executor_of(net, placed(net, ev.ArgSpec(object_id=x, shared=True))) == "A"


def test_tasks_sent_count_against_the_reported_memory_until_the_next_reply():
    # D: x = put(30 MB); A said 70 MB, B 5 MB; g.remote(x) -> A, then D counts
    # 40 MB left there; the next reply's word replaces the estimate.
    net, x = with_reports(A=70 * MB, B=5 * MB)
    g = placed(net, ref(x))
    assert executor_of(net, g) == "A"
    assert net["D"].remotes["A"].store_free == 40 * MB
    net.handle("A", ev.TaskFinished(net.sid("A", "finished"), g, 1, (result(),), store_free_bytes=66 * MB))
    net.deliver_all()
    assert net["D"].remotes["A"].store_free == 66 * MB


def test_a_queued_task_does_not_wait_for_memory_at_the_submitter():
    # D: x = put(30 MB); A said 10 MB, B said 50 MB; both busy (2 tasks each);
    # g.remote(x) waits for a slot. A's slot frees first: g goes there (the only free
    # executor), where A's own admission holds it if need be (OBJ-037): the submitter
    # prefers memory among free executors but never queues a task for it.
    net, x = with_reports(A=10 * MB, B=50 * MB)
    tids = [net.submit("D", "busy")[0] for _ in range(4)]
    net.deliver_all()
    on_a = [t for t in tids if executor_of(net, t) == "A"]
    g = placed(net, ref(x))
    assert net["D"].tasks[g].state == "queued"
    net.handle("A", ev.TaskFinished(net.sid("A", "finished"), on_a[0], 1, (result(),), store_free_bytes=10 * MB))
    net.deliver_all()
    assert executor_of(net, g) == "A"


def test_a_spilled_copy_is_marked_in_the_table():
    # D: x = put(30 MB); D's store spills it, then a get restores it (INT-020).
    net = trio()
    x = big_put(net, 30 * MB)

    def row() -> bool:
        return {e.object_id: e for e in net["D"].table()}[x].spilled

    assert not row()
    net.handle("D", ev.CopySpilled(net.sid("D", "spill"), x, True))
    assert row()
    net.handle("D", ev.CopySpilled(net.sid("D", "restore"), x, False))
    assert not row()
