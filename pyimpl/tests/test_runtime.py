"""The runtime on real processes: a local cluster of two workers over ZeroMQ ipc://."""

from __future__ import annotations

import gc

import pytest

import refrpc
from refrpc.store import list_segments

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    refrpc.init(2)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def _settled(ctx, timeout=20.0) -> bool:
    """Wait (bounded) until the driver's ownership table is empty."""
    from refrpc.testing import wait_until

    gc.collect()
    node = ctx.node
    return wait_until(lambda: node.call(lambda: not node.core.owned and not node.core.borrowed).result(), timeout)


def test_call_returns_a_ref_and_get_its_value(cluster):
    # r = add.remote(1, 2); get(r) == 3
    r = rf.add.remote(1, 2)
    assert isinstance(r, refrpc.Ref)
    assert refrpc.get(r, timeout=30) == 3
    assert refrpc.get([rf.add.remote(i, i) for i in range(10)], timeout=30) == [2 * i for i in range(10)]


def test_large_values_stay_where_they_are_made_and_pass_by_reference(cluster):
    # big = make_bytes.remote(300 KB); length.remote(big) -> the value never visits the driver
    big = rf.make_bytes.remote(300_000)
    assert refrpc.get(rf.length.remote(big), timeout=30) == 300_000
    p = refrpc.put(b"y" * 200_000)
    assert refrpc.get(rf.length.remote(p), timeout=30) == 200_000
    assert bytes(refrpc.get(p)) == b"y" * 200_000


def test_task_errors_come_back_typed_with_the_remote_traceback(cluster):
    with pytest.raises(refrpc.TaskError) as info:
        refrpc.get(rf.fail.remote("no good"), timeout=30)
    assert "ValueError: no good" in str(info.value)
    assert "Traceback" in info.value.detail


def test_a_task_error_is_caught_as_the_exception_the_task_raised(cluster):
    # try: get(fail.remote("no good")) except ValueError as e: e.cause   TASK-007, TASK-018
    with pytest.raises(ValueError) as info:
        refrpc.get(rf.fail.remote("no good"), timeout=30)
    err = info.value
    assert isinstance(err, refrpc.TaskError) and isinstance(err, refrpc.RefRPCError)
    assert isinstance(err.cause, ValueError) and str(err.cause) == "no good"
    assert "Remote traceback" in str(err) and "no good" in err.detail
    with pytest.raises(refrpc.TaskError):  # and as a TaskError, as before
        refrpc.get(rf.fail.remote("again"), timeout=30)


def test_an_error_two_tasks_down_is_caught_as_itself_and_reads_its_attributes(cluster):
    # except Pair: where the task that raised it was a child's child; and
    # except OverQuota as e: e.user   (the cause's attributes read through the error)
    with pytest.raises(rf.Pair) as through:
        refrpc.get(rf.raise_through.remote("pair"), timeout=30)
    assert type(through.value.cause) is rf.Pair and through.value.cause.args == (1, 2)
    with pytest.raises(rf.OverQuota) as direct:
        refrpc.get(rf.raise_custom.remote("quota"), timeout=30)
    assert (direct.value.user, direct.value.limit) == ("ann", 5)
    with pytest.raises(AttributeError):
        direct.value.no_such_attribute
    # OverQuota(user, limit) two tasks down: its __init__ takes other arguments, so
    # the middle task sends the exception at the bottom of its chain, rebuilt here
    with pytest.raises(rf.OverQuota) as deep:
        refrpc.get(rf.raise_through.remote("quota"), timeout=30)
    assert (deep.value.user, deep.value.limit) == ("ann", 5) and type(deep.value.cause) is rf.OverQuota


def test_a_custom_exception_comes_back_as_itself_whatever_its_init_takes(cluster):
    # class OverQuota(Exception): def __init__(self, user, limit): super().__init__(f"...")
    # pickle would call OverQuota(message) and fail; the caller still catches it as
    # itself with its attributes, and one that cannot be pickled at all still names
    # its class and keeps the remote traceback.
    with pytest.raises(rf.Pair) as pair:
        refrpc.get(rf.raise_custom.remote("pair"), timeout=30)
    assert type(pair.value.cause) is rf.Pair and pair.value.cause.args == (1, 2)
    with pytest.raises(rf.OverQuota) as quota:
        refrpc.get(rf.raise_custom.remote("quota"), timeout=30)
    cause = quota.value.cause
    assert type(cause) is rf.OverQuota and (cause.user, cause.limit) == ("ann", 5)
    assert str(cause) == "ann is over its quota of 5"
    with pytest.raises(refrpc.TaskError) as locked:
        refrpc.get(rf.raise_custom.remote("locked"), timeout=30)
    assert locked.value.cause is None
    assert str(locked.value).startswith("Locked: held") and "raise Locked" in locked.value.detail


def test_a_named_task_s_errors_begin_with_its_name(cluster):
    # f.options(name="checkout").remote(...): as Ray's task names
    named = rf.fail.options(name="checkout")
    with pytest.raises(ValueError, match="^task 'checkout': ValueError: no stock"):
        refrpc.get(named.remote("no stock"), timeout=30)
    with pytest.raises(ValueError, match="^task 'checkout': ValueError: kept"):  # other options keep the name
        refrpc.get(named.options(num_cpus=0.5).remote("kept"), timeout=30)
    with pytest.raises(ValueError, match="^ValueError: unnamed"):
        refrpc.get(rf.fail.remote("unnamed"), timeout=30)
    for bad in ("", 3):
        with pytest.raises(ValueError):
            rf.fail.options(name=bad)


def test_multiple_returns(cluster):
    a, b = rf.split.remote(b"abcdef")
    assert refrpc.get([a, b], timeout=30) == [b"abc", b"def"]


def test_wait_returns_ready_and_pending(cluster):
    refs = [rf.add.remote(i, 1) for i in range(6)]
    ready, pending = refrpc.wait(refs, num_returns=3, timeout=30)
    assert len(ready) == 3 and len(pending) == 3
    assert set(map(id, ready + pending)) == set(map(id, refs))


def test_wait_takes_the_first_ready_in_order_and_honours_its_timeout(cluster):
    # fast = [add.remote(...)...]; slow = sleep_ms.remote(3000); wait([slow, *fast], num_returns=2)
    fast = [rf.add.remote(i, 1) for i in range(3)]
    assert refrpc.get(fast, timeout=30) == [1, 2, 3]
    slow = rf.sleep_ms.remote(3_000)
    ready, pending = refrpc.wait([slow, *fast], num_returns=2, timeout=30)
    assert ready == fast[:2] and pending == [slow, fast[2]]  # ready in the order given; pending keeps order
    ready, pending = refrpc.wait([slow], num_returns=1, timeout=0.2)
    assert ready == [] and pending == [slow]  # the timeout passed: nothing ready, no error
    assert refrpc.wait([]) == ([], [])
    assert refrpc.wait(fast, num_returns=0) == ([], fast)
    with pytest.raises(ValueError):
        refrpc.wait(fast, num_returns=4)


def test_as_completed_yields_each_ref_when_it_is_ready(cluster):
    # for r in as_completed([slow, fast]): ...  -- fast first, then slow; every ref once
    fast = [rf.add.remote(i, 1) for i in range(4)]
    assert refrpc.get(fast, timeout=30) == [1, 2, 3, 4]  # both workers are idle again
    slow = rf.sleep_ms.remote(1_000)
    order = list(refrpc.as_completed([slow, *fast], timeout=30))
    assert order == [*fast, slow]
    with pytest.raises(refrpc.GetTimeoutError):
        list(refrpc.as_completed([rf.sleep_ms.remote(3_000)], timeout=0.2))
    assert list(refrpc.as_completed([])) == []


def test_get_with_progress_shows_a_bar_and_returns_the_values(cluster, capfd):
    refs = [rf.add.remote(i, i) for i in range(20)]
    assert refrpc.get(refs, timeout=30, progress="adding") == [2 * i for i in range(20)]
    err = capfd.readouterr().err
    assert "adding" in err and "20/20" in err


def test_a_failed_task_counts_as_ready_for_wait(cluster):
    bad = rf.fail.remote("no")
    ready, pending = refrpc.wait([bad], timeout=30)
    assert ready == [bad] and not pending
    with pytest.raises(refrpc.TaskError):
        refrpc.get(bad, timeout=30)


def test_the_wait_loop_over_many_refs_costs_in_proportion_to_what_is_ready(cluster):
    # while refs: ready, refs = wait(refs, num_returns=1)  -- a call looks at the refs
    # before the first ready one, not at the whole list, so the loop is linear. Counted
    # in Gets the node registers (a timing would be flaky): at most one per object.
    node = cluster.node
    registered = []
    real = node.get_result

    def counting(oid, urgent=False):
        registered.append(oid)
        return real(oid, urgent)

    refs = [rf.add.remote(i, 0) for i in range(300)]
    node.get_result = counting
    try:
        seen = []
        while refs:
            ready, refs = refrpc.wait(refs, num_returns=1, timeout=30)
            assert len(ready) == 1
            seen.append(refrpc.get(ready[0], timeout=30))
    finally:
        del node.get_result
    assert sorted(seen) == list(range(300))
    waits = [oid for oid in registered]
    assert len(waits) - len(set(waits)) <= 300  # each object watched at most once besides its own get


def test_one_wait_call_runs_as_many_python_lines_for_2000_refs_as_for_100(cluster):
    # wait(refs, num_returns=1) with the first ref ready: the Python lines one call
    # runs (on this thread) do not grow with the list (finding 3: each call cost ~25 us
    # per ref passed). Counted with a line tracer, so any per-ref loop in Python shows,
    # wherever it is; copying the list in C does not.
    import sys

    done = rf.add.remote(1, 0)
    assert refrpc.get(done, timeout=30) == 1
    pending = [rf.spin_ms.remote(30_000) for _ in range(2)]  # never ready during the test

    def lines_run(n: int) -> int:
        refs = [done] + [pending[i % 2] for i in range(n - 1)]
        refrpc.wait(refs, num_returns=1, timeout=30)  # warm: ids cached, watches set up
        count = [0]

        def tracer(frame, event, arg):
            if event == "line":
                count[0] += 1
            return tracer

        sys.settrace(tracer)
        try:
            ready, rest = refrpc.wait(refs, num_returns=1, timeout=30)
        finally:
            sys.settrace(None)
        assert ready == [done] and len(rest) == n - 1
        return count[0]

    small, large = lines_run(100), lines_run(2000)
    assert large <= small + 20, (small, large)
    for r in pending:
        refrpc.cancel(r, force=False)


def test_a_wait_call_reads_only_the_refs_before_the_ones_it_returns(cluster, monkeypatch):
    # refs all done; while refs: ready, refs = wait(refs)  -- each call reads the id of
    # the one ref it returns, not the whole list (the loop stays linear), and what it
    # returns as pending is checked once: a non-Ref put into it is refused when reached.
    refs = [rf.add.remote(i, 0) for i in range(200)]
    assert refrpc.get(refs, timeout=30) == list(range(200))
    reads = []
    real = refrpc.api._ref_id
    monkeypatch.setattr(refrpc.api, "_ref_id", lambda r: reads.append(1) or real(r))
    pending, seen = refs, []
    while pending:
        ready, pending = refrpc.wait(pending, num_returns=1, timeout=30)
        assert isinstance(pending, list)
        seen += ready
    assert seen == refs  # in order: each was ready
    assert len(reads) == len(refs)  # one id read per call
    with pytest.raises(TypeError):
        refrpc.wait([*refs[:3], "not a ref"], num_returns=1)  # a list of its own is checked whole
    _, pending = refrpc.wait(refs[:3], num_returns=1, timeout=30)
    pending.insert(0, "not a ref")
    with pytest.raises(TypeError):
        refrpc.wait(pending, num_returns=1)


def test_an_argument_the_worker_cannot_load_fails_the_task_and_jams_nothing(cluster):
    # r = identity.remote(Unloadable()) -- unpickling it on the worker raises
    # (as a class the worker cannot import would): a typed error, and every
    # worker keeps serving (before, the executor thread died and get hung).
    bad = [rf.identity.remote(rf.Unloadable()) for _ in range(4)]  # on every worker
    for r in bad:
        with pytest.raises(refrpc.TaskError, match="could not be loaded"):
            refrpc.get(r, timeout=30)
    assert refrpc.get([rf.add.remote(i, 1) for i in range(10)], timeout=30) == list(range(1, 11))


def test_an_argument_error_names_the_function_shipped_by_value(cluster):
    # A function the workers cannot import travels by value and runs under a runner;
    # the error names the program's function, not the runner.
    def keep(x):
        return x

    with pytest.raises(refrpc.TaskError) as caught:
        refrpc.get(refrpc.remote(keep).remote(rf.Unloadable()), timeout=30)
    message = str(caught.value)
    assert message.startswith(f"{__name__}:test_an_argument_error_names_the_function_shipped_by_value.<locals>.keep: "
                              "an argument could not be loaded")
    assert "call_by_value" not in message


def test_a_result_that_cannot_be_stored_fails_the_task_and_jams_nothing(cluster):
    with pytest.raises(refrpc.TaskError, match="lock"):
        refrpc.get(rf.unpicklable_result.remote(), timeout=30)
    assert refrpc.get([rf.add.remote(i, 2) for i in range(10)], timeout=30) == list(range(2, 12))


def test_a_task_that_calls_sys_exit_fails_and_jams_nothing(cluster):
    # r = f.remote() where f calls sys.exit(3): SystemExit is no Exception, and it
    # used to end the worker's task thread unanswered (get hung, and every later
    # task on that worker queued behind the slot it never gave back).
    refs = [rf.exits.remote(3) for _ in range(4)]  # on every worker
    for r in refs:
        with pytest.raises(refrpc.TaskError, match="SystemExit"):
            refrpc.get(r, timeout=30)
    assert refrpc.get([rf.add.remote(i, 3) for i in range(10)], timeout=30) == list(range(3, 13))


def test_actor_constructors_take_keyword_arguments_and_kill_stops_the_actor(cluster):
    # c = Counter.remote(start=5); c.add.remote(n=2) -> 7; refrpc.kill(c)
    c = rf.Counter.remote(start=5)
    assert refrpc.get(c.add.remote(n=2), timeout=30) == 7
    refrpc.kill(c)
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(c.add.remote(1), timeout=30)
    with pytest.raises(TypeError):
        refrpc.kill("not an actor")


def test_shared_ref_returned_nested_comes_back_as_a_ref(cluster):
    # x = put(data); [x2] = get(nest.remote(shared(x))); get(x2) == data
    x = refrpc.put(b"payload")
    (x2,) = refrpc.get(rf.nest.remote(refrpc.shared(x)), timeout=30)
    assert isinstance(x2, refrpc.Ref) and x2.id == x.id
    del x
    assert refrpc.get(x2, timeout=30) == b"payload"


def test_a_value_naming_one_ref_twice_keeps_it_while_either_place_holds_it(cluster):
    # [x, x] = get(twice.remote(...)); del one: the other still reads x. Before, each
    # place was a handle of its own over one count, and the first to go freed x.
    a, b = refrpc.get(rf.twice.remote(200_000), timeout=30)
    assert a is b  # one handle for one nested entry
    del a
    gc.collect()
    assert len(refrpc.get(b, timeout=30)) == 200_000
    # The same on the executor's side: a task given [y, y] drops one and reads the other.
    y = refrpc.put(b"u" * 150_000)
    assert refrpc.get(rf.drop_first_read_second.remote([refrpc.shared(y), refrpc.shared(y)]), timeout=30) == 150_000


def test_shared_ref_forwarded_through_a_nested_task(cluster):
    # A -> B -> C: the driver shares x with w?, which shares it with a nested task.
    x = refrpc.put(b"forwarded-" * 20_000)
    (inner,) = refrpc.get(rf.forward.remote(refrpc.shared(x)), timeout=30)
    del x
    (back,) = refrpc.get(inner, timeout=30)
    assert bytes(refrpc.get(back, timeout=30)) == b"forwarded-" * 20_000


def test_callee_can_get_a_shared_ref_itself(cluster):
    x = refrpc.put(b"z" * 150_000)
    assert refrpc.get(rf.deref.remote(refrpc.shared(x)), timeout=30) == 150_000


def test_actor_calls_run_in_order_and_keep_refs(cluster):
    c = rf.Counter.remote(10)
    results = [c.add.remote(i) for i in range(1, 6)]
    assert refrpc.get(results, timeout=30) == [11, 13, 16, 20, 25]
    x = refrpc.put(b"kept")
    assert refrpc.get(c.keep.remote(refrpc.shared(x)), timeout=30) == 1
    del x  # only the actor holds it now (BOR-007)
    (kept,) = refrpc.get(c.kept_refs.remote(), timeout=30)
    assert refrpc.get(kept, timeout=30) == b"kept"
    del kept
    assert refrpc.get(c.forget.remote(), timeout=30) == 0
    c.kill()


def test_zero_copy_get_of_a_large_array_made_by_another_process(cluster):
    np = pytest.importorskip("numpy")
    ref = rf.make_array.remote(64 * 1024 * 1024)
    arr = refrpc.get(ref, timeout=60)
    assert arr.shape == (64 * 1024 * 1024,)
    assert not arr.flags.writeable  # immutable: mapped read-only
    # The array's memory is the worker's shared-memory segment, not a copy.
    mapping = cluster.node.store.mapping(ref.id)
    base = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    start = arr.__array_interface__["data"][0]
    assert base <= start < base + len(mapping)
    del arr


def _rss_anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def test_get_of_a_1_gib_array_made_by_another_process_copies_nothing(cluster):
    # arr = get(make_array.remote(1 GiB)): the driver maps the worker's segment;
    # its private memory does not grow by anything like the array's size.
    np = pytest.importorskip("numpy")
    import shutil

    if shutil.disk_usage("/dev/shm").free < 3 << 30:
        pytest.skip("needs 3 GiB free in /dev/shm")
    ref = rf.make_array.remote(1 << 30)
    refrpc.wait([ref], num_returns=1, timeout=120)
    before = _rss_anon_bytes()
    arr = refrpc.get(ref, timeout=120)
    assert arr.nbytes == 1 << 30 and not arr.flags.writeable
    assert int(arr[:: 1 << 20].sum()) == 0  # every MiB starts at a multiple of 256
    grown = _rss_anon_bytes() - before
    assert grown < 64 << 20, f"the driver's private memory grew by {grown >> 20} MiB"
    mapping = cluster.node.store.mapping(ref.id)
    base = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    assert base <= arr.__array_interface__["data"][0] < base + len(mapping)
    del arr, ref


def test_bad_arguments_are_typed_errors(cluster):
    with pytest.raises(TypeError):
        refrpc.get(42)
    with pytest.raises(TypeError):
        refrpc.shared("not a ref")
    with pytest.raises(TypeError):
        rf.add(1, 2)


def test_await_and_future(cluster):
    import asyncio

    async def main():
        return await rf.add.remote(20, 22)

    assert asyncio.run(main()) == 42
    assert rf.add.remote(1, 1).future().result(30) == 2


def test_a_task_runs_where_its_large_argument_already_is(cluster):
    # Placement: the owner sends g(x) to the worker holding x's bytes (locality).
    x = rf.make_array.remote(2_000_000)  # stored on the worker that made it
    refrpc.get(x, timeout=30)
    holder = cluster.node.call(lambda: list(cluster.node.core.owned[x.id].locations)).result()
    assert len(holder) == 1
    where = [refrpc.get(rf.where.remote(x), timeout=30) for _ in range(4)]
    assert where == holder * 4


def test_portable_arguments_get_portable_results(cluster):
    # A caller in another language sends portable values and reads portable results.
    from refrpc.core import events as ev
    from refrpc.core.messages import Encoding
    from refrpc.serialization import deserialize, serialize

    node = cluster.node
    args = tuple(ev.ArgSpec(value=serialize(v, ref_hook=lambda o: None, portable=True)) for v in (40, 2))
    assert all(a.value.encoding is Encoding.PORTABLE for a in args)

    def do():
        task_id, rids = node.ids.task(1)
        node.handle(ev.Submit(node.sid(), task_id, "remote_fixtures:add", args, rids))
        return rids[0]

    rid = node.call(do).result()
    res = node.get_result(rid).result(30)
    assert res.value.encoding is Encoding.PORTABLE
    assert deserialize(res.value, ref_factory=lambda d: d) == 42
    node.handle_soon(lambda sid: ev.DropRef(sid, rid)).result()


def test_functions_workers_cannot_import_travel_by_value(cluster):
    # A lambda or a local function is shipped once with cloudpickle, by reference.
    scale = 3
    times = refrpc.remote(lambda x: x * scale)
    assert refrpc.get([times.remote(i) for i in range(5)], timeout=30) == [0, 3, 6, 9, 12]

    def local_concat(a, b):
        return a + b

    assert refrpc.get(refrpc.remote(local_concat).remote(b"ab", b"cd"), timeout=30) == b"abcd"


def test_bad_input_gives_typed_errors_and_loses_nothing(cluster):
    import threading

    from refrpc.serialization import SerializationError

    node = cluster.node
    # A Ref made by hand (or for another cluster's object): typed error, no hang.
    forged = refrpc.Ref(node, "someone-else.1.1", counted=True)
    with pytest.raises(refrpc.RefRPCError):
        refrpc.get(forged, timeout=30)
    del forged
    # An argument that cannot be pickled: a clear error before anything is sent.
    with pytest.raises(SerializationError, match="pickle"):
        rf.add.remote(threading.Lock(), 1)
    # A result that cannot be pickled: the task fails with a typed error.
    with pytest.raises(refrpc.TaskError):
        refrpc.get(refrpc.remote(lambda: threading.Lock()).remote(), timeout=30)
    # get with a timeout on something that never finishes in time: GetTimeoutError.
    slow = rf.sleep_ms.remote(2000)
    with pytest.raises(refrpc.GetTimeoutError):
        refrpc.get(slow, timeout=0.05)
    assert refrpc.get(slow, timeout=30) == 2000
    # ... and the cluster still works.
    assert refrpc.get(rf.add.remote(2, 3), timeout=30) == 5


def test_keyword_arguments(cluster):
    assert refrpc.get(rf.add.remote(1, b=2), timeout=30) == 3
    assert refrpc.get(rf.add.remote(a=b"x", b=b"y"), timeout=30) == b"xy"
    big = refrpc.put(b"k" * 200_000)
    assert refrpc.get(rf.length.remote(x=big), timeout=30) == 200_000  # a Ref keyword is dereferenced
    c = rf.Counter.remote(1)
    assert refrpc.get(c.add.remote(n=4), timeout=30) == 5  # actor methods take keywords too
    c.kill()


def test_memory_view_says_why_each_object_is_alive(cluster):
    x = refrpc.put(b"m" * 300_000)
    y = rf.nest.remote(refrpc.shared(x))
    refrpc.get(y, timeout=30)
    view = refrpc.memory()
    line = next(row for row in view.splitlines() if row.startswith(x.id))
    assert "1 local ref(s)" in line and "driver" in line  # stored at the driver, held here
    assert "live objects" in view.splitlines()[-1]
    del x, y


def test_short_tasks_do_not_wait_behind_a_long_one(cluster, tmp_path):
    # slow = long_task.remote(); quick = [add.remote(i, 1) for i in range(10)]
    # The driver keeps the short tasks until a worker has a free slot (TASK-012), so
    # they all run on the idle worker while the long one holds the other.
    release = str(tmp_path / "release")
    slow = rf.hold_until.remote(release)
    try:
        quick = [rf.add.remote(i, 1) for i in range(10)]
        assert refrpc.get(quick, timeout=20) == [i + 1 for i in range(10)]
        assert refrpc.wait([slow], timeout=0)[1] == [slow]  # still running
    finally:
        open(release, "w").close()
    assert refrpc.get(slow, timeout=30) is True


def test_short_script_tasks_do_not_wait_behind_a_long_script_task(cluster, tmp_path):
    # Functions defined in the script travel by value through one runner function;
    # each is judged quick or not by its own tasks (TASK-020), so once `quick` ran
    # quickly, `slow` still counts as unknown and nothing is pipelined behind it.
    release = str(tmp_path / "release")

    def quick(i):
        return i + 1

    def slow(path):
        return rf.hold_until.__wrapped__(path)

    q, s = refrpc.remote(quick), refrpc.remote(slow)
    assert refrpc.get(q.remote(0), timeout=30) == 1  # the runner is known quick now
    held = s.remote(release)
    try:
        refs = [q.remote(i) for i in range(10)]
        assert refrpc.get(refs, timeout=10) == [i + 1 for i in range(10)]
        assert refrpc.wait([held], timeout=0)[1] == [held]  # still running
    finally:
        open(release, "w").close()
    assert refrpc.get(held, timeout=30) is True


def test_short_tasks_are_not_sent_ahead_behind_a_function_that_ran_quickly_once(cluster, tmp_path):
    # refrpc.get(long.remote(0.01)); l = long.remote(5); [short.remote(i) ...]: long
    # counts as quick from its last task, but short tasks are only ever sent ahead
    # behind tasks of their own function (TASK-020), so none waits behind l.
    release = str(tmp_path / "release")

    def long(path):
        return rf.hold_until.__wrapped__(path) if path else "quick"

    def short(i):
        return i * 2

    lg, sh = refrpc.remote(long), refrpc.remote(short)
    assert refrpc.get([sh.remote(i) for i in range(20)], timeout=30) == [i * 2 for i in range(20)]  # short is quick
    assert refrpc.get(lg.remote(""), timeout=30) == "quick"  # long looks quick once
    held = lg.remote(release)
    try:
        refs = [sh.remote(i) for i in range(10)]
        assert refrpc.get(refs, timeout=10) == [i * 2 for i in range(10)]
        assert refrpc.wait([held], timeout=0)[1] == [held]  # still running
    finally:
        open(release, "w").close()
    assert refrpc.get(held, timeout=30) is True


# Runs last (pytest keeps file order): everything the tests above made is gone.
def test_everything_is_reclaimed_once_refs_are_dropped(cluster):
    # After every test above dropped its refs, the driver's table and the
    # cluster's shared memory end empty (OWN-005, GC-004).
    assert _settled(cluster), cluster.node.call(lambda: cluster.node.core.table()).result()
    from refrpc.testing import wait_until

    assert wait_until(lambda: not list_segments(cluster.cluster.namespace), 20), list_segments(cluster.cluster.namespace)


def test_tasks_that_wait_for_tasks_they_submit_never_deadlock(cluster):
    # fib(n) gets fib(n-1) and fib(n-2), submitted to the other worker, which submits
    # back to this one: each worker's only turn is held by a task waiting in get. A
    # waiting task lends its turn, so the tasks queued behind it run meanwhile.
    assert refrpc.get(rf.fib.remote(10), timeout=60) == 55
    # The threads started for waiting tasks end once idle: a worker keeps a few.
    from refrpc.runtime._executor import IDLE_THREADS_KEPT
    from refrpc.testing import wait_until

    for worker in cluster.cluster.workers:
        def few(w=worker) -> bool:
            return refrpc.api._call_on(w, "remote_fixtures:executor_threads") <= IDLE_THREADS_KEPT + 1

        assert wait_until(few, 20), (worker, refrpc.api._call_on(worker, "remote_fixtures:executor_threads"))
    assert refrpc.get(rf.first_ready.remote(4), timeout=60) == [0, 2, 4, 6]  # refrpc.wait too
    # An actor's calls still never overlap or overtake: record(2) waits for the call
    # before it, which waits for a task.
    ledger = rf.Ledger.remote()
    first, second = ledger.record_after_task.remote(1), ledger.record.remote(2)
    assert refrpc.get([first, second], timeout=60) == [[1], [1, 2]]


def test_a_call_on_a_named_peer_needs_a_registered_name_and_leaves_the_session_working(cluster):
    # runtime helpers run functions by name; anything else is refused at home, before a
    # sequenced message that could never be encoded stalls the session with that peer
    with pytest.raises(TypeError, match="module:name"):
        refrpc.api._call_on("w1", lambda: 1)
    assert refrpc.api._call_on("w1", "remote_fixtures:add", 2, 3) == 5
