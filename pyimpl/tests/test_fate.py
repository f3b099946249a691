"""Fate-sharing on real processes: what a program sees when a process dies.

Each test starts a local cluster (``refrpc.init(n)``: n worker processes talking
ZeroMQ over ipc://), kills or stops a worker for real (``kill -9``, SIGTERM,
SIGSTOP) and checks what the spec promises the program: retried tasks
(RPC-004, RPC-009), rebuilt values (LIN-003, LIN-004), typed errors
(RPC-004, LIN-006, FATE-001, ACT-007), freed copies and stopped orphans
(FATE-002, FATE-003), reclaimed values after a borrower's death (BOR-009,
FATE-005), restarted actors (ACT-002, ACT-011), graceful leaving (LIV-006),
frozen peers (LIV-003, LIV-005), copies that vanish from the store (LOC-003,
LOC-004) and fetches from a holder that dies (FET-002). After every test the
driver owns nothing and no shared-memory segment is left; after ``shutdown`` no
worker process is left either.

The remote functions are defined here, at module level: workers import this
module by name, as they would any module of a program.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import refrpc
from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode
from refrpc.runtime._cluster import FENCED_EXIT
from refrpc.store import DEFAULT_DIRECTORY, list_segments
from refrpc.testing import wait_until

pytestmark = pytest.mark.timeout(120)

#: Bigger than the inline threshold (100 KiB): stored where it is made (TASK-004).
BIG = 200_000


# ---------------------------------------------------------------- remote functions
def _here() -> str:
    return refrpc.api._ctx.node.peer_id


def _log(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def _runs(path: str | Path, tag: str = "") -> list[str]:
    """The workers that ran the runs logged in ``path`` (with ``tag``, if given), in order."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    runs = [line.split() for line in lines if line.startswith("run ")]
    return [run[1] for run in runs if len(run) == 3 and (not tag or run[2] == tag)]


def _first_run(path: str, tag: str) -> bool:
    return not _runs(path, tag)


@refrpc.remote
def slow_first(path: str, tag: str, ms: int, n: int = 0) -> Any:
    """Logs the run; the first run of ``tag`` takes ``ms``, later ones (retries) none.
    Returns ``tag``, or ``n`` bytes if ``n``."""
    first = _first_run(path, tag)
    _log(path, f"run {_here()} {tag}")
    if first:
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            time.sleep(0.01)
    return b"s" * n if n else tag


@refrpc.remote
def slow(path: str, tag: str, ms: int) -> str:
    """Logs the run, then takes ``ms`` every time."""
    _log(path, f"run {_here()} {tag}")
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        time.sleep(0.01)
    return tag


@refrpc.remote
def ticker(path: str, tag: str, ms: int) -> str:
    """Logs the run, then a tick every 20 ms for ``ms`` (so one can see it stop)."""
    _log(path, f"run {_here()} {tag}")
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        _log(path, f"tick {_here()} {tag}")
        time.sleep(0.02)
    return tag


@refrpc.remote
def raise_logged(path: str, tag: str) -> None:
    _log(path, f"run {_here()} {tag}")
    raise ValueError(f"{tag} failed")


@refrpc.remote
def make_logged(path: str, tag: str, n: int) -> bytes:
    _log(path, f"run {_here()} {tag}")
    return bytes([len(tag) % 256]) * n


@refrpc.remote
def grow_logged(path: str, tag: str, data: bytes) -> bytes:
    _log(path, f"run {_here()} {tag}")
    return bytes(data) + tag.encode() * 1000


@refrpc.remote
def length(data: Any) -> int:
    return len(data)


@refrpc.remote
def where() -> str:
    return _here()


@refrpc.remote
def death_of(peer: str) -> str:
    """How this worker learnt of ``peer``'s death (the event of its story)."""
    core = refrpc.api._ctx.node.core
    return next((event for _, event, detail in core.story(f"peer:{peer}") if detail.endswith("->dead")), "")


@refrpc.remote
def settings_here() -> tuple[int, int, int]:
    """The protocol settings this worker runs with."""
    cfg = refrpc.api._ctx.node.config
    return cfg.heartbeat_interval_ms, cfg.miss_limit, cfg.max_lineage_bytes


@refrpc.remote
def own_some(path: str, n: int) -> list[Any]:
    """Runs on W and makes W the owner (OWN-001) of: a task result stored on another
    worker, a put stored at W, and a long task (a ticker) running on another worker.
    Returns the three refs; the caller becomes their borrower."""
    stored = make_logged.remote(path, "stored", n)
    put = refrpc.put(b"p" * n)
    orphan = ticker.remote(path, "orphan", 60_000)
    refrpc.wait([stored], num_returns=1, timeout=30)
    return [stored, put, orphan]


@refrpc.remote
def waiter(path: str) -> str:
    """Waits in refrpc.get for a 60 s ticker it submitted (owned here)."""
    t = ticker.remote(path, "waited-on", 60_000)
    _log(path, f"run {_here()} waiter")
    refrpc.get(t, timeout=120)
    _log(path, f"resumed {_here()} waiter")
    return "done"


@refrpc.remote
def own_waiter(path: str) -> list[Any]:
    """Runs on W, which owns the waiter it submits elsewhere."""
    return [waiter.options(max_retries=0).remote(path)]


@refrpc.remote
def running_here() -> list[str]:
    """The tasks this worker's executor runs now, besides this one (running or waiting in a get)."""
    executor = refrpc.api._ctx.executor
    me = executor._local.key
    with executor._lock:
        return sorted(task for task, attempt in executor._running if (task, attempt) != me)


@refrpc.remote
def note(path: str, i: int) -> int:
    _log(path, f"order {_here()} {i}")
    return i


@refrpc.remote
def nested_wait(n: int) -> int:
    """Waits in get for tasks it submits: its worker starts threads for it."""
    return sum(refrpc.get([length.remote(b"x" * i) for i in range(n)], timeout=60))


@refrpc.remote
def copy_of(path: str, tag: str, data: bytes) -> bytes:
    _log(path, f"run {_here()} {tag}")
    return bytes(data)


@refrpc.remote
def own_made(path: str, n: int) -> list[Any]:
    """Runs on W and makes W the owner of two results stored on one other worker:
    one of a retryable task, one (a copy of it, placed with it, TASK-012) of a task
    with ``max_retries=0``. Returns their refs once both are ready."""
    rebuildable = make_logged.remote(path, "rebuildable", n)
    refrpc.wait([rebuildable], timeout=30)  # placement then knows where it is
    once = copy_of.options(max_retries=0).remote(path, "once", rebuildable)
    refrpc.wait([once], timeout=30)
    return [rebuildable, once]


@refrpc.remote
class Keeper:
    """Keeps the refs it is given (a borrower, BOR-007) and reads them on request."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def keep(self, ref: Any) -> int:
        self.kept.append(ref)
        return len(self.kept)

    def total(self) -> int:
        return sum(len(refrpc.get(r)) for r in self.kept)

    def forget(self) -> int:
        self.kept = []
        return 0


@refrpc.remote
class Tally:
    def __init__(self, start: int) -> None:
        self.value = start

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    def slow(self, path: str, ms: int) -> int:
        _log(path, f"run {_here()} actor-slow")
        time.sleep(ms / 1000)
        return self.value

    def big(self, n: int) -> bytes:
        return b"a" * n

    def where(self) -> str:
        return _here()


# ---------------------------------------------------------------- the cluster under test
class Cluster:
    """A local cluster, with ways to hurt its workers and to look inside the driver."""

    def __init__(self, n: int, **options: Any) -> None:
        refrpc.init(n, **options)
        ctx = refrpc.api._ctx
        # These tests follow what a program sees when a process dies and stays dead
        # (which worker a retry goes to, what is lost with it): no restarts here
        # (test_local_cluster.py tests those).
        ctx.cluster.restart = False
        self.node = ctx.node
        self.namespace: str = ctx.cluster.namespace
        self.processes = dict(ctx.cluster.processes)

    def core(self, fn: Any) -> Any:
        """Run ``fn(core)`` on the driver's loop thread (read-only looks)."""
        return self.node.call(lambda: fn(self.node.core)).result(10)

    def signal(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.kill(self.processes[name].pid, sig)

    def is_dead(self, name: str) -> bool:
        return self.core(lambda c: c.remotes.get(name) is not None and c.remotes[name].state == "dead")

    def wait_dead(self, name: str, timeout: float = 20.0) -> None:
        assert wait_until(lambda: self.is_dead(name), timeout), f"{name} was not declared dead"

    def death(self, name: str) -> tuple[str, str]:
        """How the driver learnt of ``name``'s death: (event, stimulus) from its story."""
        for sid, event, detail in self.core(lambda c: c.story(f"peer:{name}")):
            if detail.endswith("->dead"):
                return event, sid
        return "", ""

    def on(self, peer: str, fn: Any, *args: Any, max_retries: int | None = None) -> refrpc.Ref[Any]:
        """``fn.remote(*args)`` sent to ``peer`` (the first attempt; retries are placed anew)."""
        node = self.node
        specs, keep = refrpc.runtime._refs.arg_specs(node, args)
        task_id, rids = node.new_task_ids(1)
        retries = fn._max_retries if max_retries is None else max_retries
        node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, fn._name, tuple(specs), rids, retries, fn._retry_exceptions, "", peer))
        del keep
        return refrpc.Ref(node, rids[0], counted=True)

    def actor_on(self, peer: str, cls: Any, *args: Any, max_restarts: int = 0) -> refrpc.ActorHandle:
        """``cls.options(max_restarts=...).remote(*args)`` hosted by ``peer``."""
        node = self.node
        specs, keep = refrpc.runtime._refs.arg_specs(node, args)

        def create() -> str:
            aid = node.new_id()
            node.handle(ev.CreateActorRequest(node.sid(), aid, cls._name, tuple(specs), peer, max_restarts))
            return aid

        aid = node.call(create).result(10)
        del keep
        # No handle object (ACT-019): the actor lives until killed, as these tests expect.
        from refrpc.runtime._handles import methods_of

        return refrpc.ActorHandle(aid, cls._cls.__qualname__, methods_of(cls._cls), peer, "", None)

    def actor_host(self, handle: refrpc.ActorHandle) -> str:
        return self.core(lambda c: c.owned_actors[handle._actor_id].host)

    def owned(self, ref: refrpc.Ref[Any]) -> Any:
        return self.core(lambda c: c.owned.get(ref.id))

    def assert_clean(self) -> None:
        """The test dropped its refs: the driver owns and borrows nothing, no segment is left."""
        gc.collect()
        assert wait_until(lambda: self.core(lambda c: not c.owned and not c.borrowed), 20), self.core(lambda c: c.table())
        assert wait_until(lambda: not list_segments(self.namespace), 20), list_segments(self.namespace)


@pytest.fixture
def start() -> Iterator[Any]:
    """``start(n)`` starts a cluster of n workers; it is shut down after the test,
    which must leave no worker process and no segment behind."""
    started: list[Cluster] = []

    def start_cluster(n: int, **options: Any) -> Cluster:
        started.append(Cluster(n, **options))
        return started[-1]

    try:
        yield start_cluster
    finally:
        refrpc.shutdown()
        gc.collect()
    for c in started:
        assert all(p.poll() is not None for p in c.processes.values()), {n: p.poll() for n, p in c.processes.items()}
        assert not list_segments(c.namespace), list_segments(c.namespace)


@pytest.fixture
def log(tmp_path: Path) -> str:
    return str(tmp_path / "runs.log")


def _error(ref: refrpc.Ref[Any], timeout: float = 30.0) -> refrpc.RefRPCError:
    """The error ``get`` raises for ``ref`` (it must raise one, within ``timeout``)."""
    with pytest.raises(refrpc.RefRPCError) as info:
        refrpc.get(ref, timeout=timeout)
    err = info.value
    assert not isinstance(err, refrpc.GetTimeoutError), "get did not complete"
    err.__traceback__ = None  # its frames hold the Ref: the caller's `del ref` must free it
    return err


# ---------------------------------------------------------------- executor death
def test_a_retryable_task_whose_worker_is_killed_runs_again_elsewhere(start: Any, log: str) -> None:
    """RPC-004, RPC-010: a task with the API's default options is retryable
    (``max_retries`` = 3); kill -9 of the worker running it re-runs it on another
    worker as a new attempt, and the caller gets the value."""
    # r = slow_first.remote(...)      # default options
    # (the worker running it is killed)  get(r) == "t"
    c = start(2)
    assert slow_first._max_retries == 3  # the API's default (RPC-011 recommends 0; the API does not follow it)
    r = slow_first.remote(log, "t", 20_000)
    assert wait_until(lambda: _runs(log), 20)
    victim = _runs(log)[0]
    c.signal(victim)
    assert refrpc.get(r, timeout=60) == "t"
    runs = _runs(log)
    assert len(runs) == 2 and runs[1] != victim, runs
    del r
    c.assert_clean()


def test_a_task_without_retries_fails_with_worker_died_naming_the_worker(start: Any, log: str) -> None:
    """RPC-004: with ``max_retries=0`` the task is not run again; its return fails
    with WORKER_DIED (WorkerDiedError), naming the dead executor."""
    c = start(2)
    r = slow.options(max_retries=0).remote(log, "t", 30_000)
    assert wait_until(lambda: _runs(log), 20)
    victim = _runs(log)[0]
    c.signal(victim)
    err = _error(r)
    assert isinstance(err, refrpc.WorkerDiedError), repr(err)
    assert victim in str(err)
    assert _runs(log) == [victim]
    del r
    c.assert_clean()


def test_a_task_that_raises_is_retried_only_with_retry_exceptions(start: Any, log: str) -> None:
    """RPC-005: a task whose function raised is retried only when it asks for it
    (``retry_exceptions=True``), and then ``max_retries`` + 1 times in all."""
    c = start(2)
    with pytest.raises(refrpc.TaskError, match="once failed"):
        refrpc.get(raise_logged.remote(log, "once"), timeout=30)  # max_retries=3, retry_exceptions=False
    assert len(_runs(log, "once")) == 1
    with pytest.raises(refrpc.TaskError, match="thrice failed"):
        refrpc.get(raise_logged.options(max_retries=2, retry_exceptions=True).remote(log, "thrice"), timeout=30)
    assert len(_runs(log, "thrice")) == 3
    c.assert_clean()


def test_retries_after_deaths_draw_on_one_budget(start: Any, log: str) -> None:
    """RPC-009: ``max_retries=1`` allows two executions in all; when the executors of
    both die in turn, the task fails with WorkerDiedError naming the second, though a
    third worker is alive. RPC-010: the retry went to another worker."""
    c = start(3)
    r = slow.options(max_retries=1).remote(log, "t", 30_000)
    assert wait_until(lambda: _runs(log), 20)
    first = _runs(log)[0]
    c.signal(first)
    assert wait_until(lambda: len(_runs(log)) == 2, 30), _runs(log)
    second = _runs(log)[1]
    assert second != first
    c.signal(second)
    err = _error(r)
    assert isinstance(err, refrpc.WorkerDiedError) and second in str(err), repr(err)
    assert len(_runs(log)) == 2
    (third,) = set(c.processes) - {first, second}
    assert refrpc.get(where.remote(), timeout=30) == third  # the cluster still works
    del r
    c.assert_clean()


# ---------------------------------------------------------------- lost values and lineage
def test_a_lost_stored_result_is_rebuilt_from_lineage(start: Any, log: str) -> None:
    """LIN-003, LOC-004: the only copy of a stored result of a retryable task was on
    a worker killed after the task finished; the owner re-runs the task elsewhere and
    the value (and a task taking it as argument) comes out right."""
    # x = make_logged.remote(...)   # 200 KB, stored on w1
    # (w1 is killed)               get(x) is rebuilt
    c = start(2)
    x = c.on("w1", make_logged, log, "x", BIG)
    assert refrpc.wait([x], timeout=30)[0]
    assert list(c.owned(x).locations) == ["w1"]
    c.signal("w1")
    c.wait_dead("w1")  # until then its segment outlives it and get may still map it
    assert bytes(refrpc.get(x, timeout=60)) == bytes([1]) * BIG
    assert _runs(log) == ["w1", "w2"]
    assert refrpc.get(length.remote(x), timeout=30) == BIG
    del x
    c.assert_clean()


def test_a_lost_value_whose_lineage_was_evicted_fails_with_lineage_evicted(start: Any, log: str) -> None:
    """LIN-005, LIN-010: with no room for lineage (``max_lineage_bytes=0``) the
    driver forgets a task's specification as soon as it settles; when the value's
    only copy is then lost, ``get`` raises LineageEvictedError (an ObjectLostError)
    instead of re-running the task. A retry after an executor death still happens:
    only settled tasks are evicted."""
    c = start(2, max_lineage_bytes=0)
    x = c.on("w1", make_logged, log, "x", BIG)
    assert refrpc.wait([x], timeout=30)[0]
    assert c.core(lambda core: core.owned[x.id].lineage_evicted and not core.tasks and core.lineage_bytes == 0)
    c.signal("w1")
    c.wait_dead("w1")
    err = _error(x)
    assert isinstance(err, refrpc.LineageEvictedError) and isinstance(err, refrpc.ObjectLostError)
    assert err.code is ErrorCode.LINEAGE_EVICTED and x.id in str(err)
    assert _runs(log) == ["w1"]  # not re-run
    y = c.on("w2", make_logged, log, "y", BIG)  # settles normally while w2 lives
    assert bytes(refrpc.get(y, timeout=30)) == bytes([1]) * BIG
    del x, y
    c.assert_clean()


def test_a_lost_chain_is_rebuilt_recursively(start: Any, log: str) -> None:
    """LIN-002, LIN-003, LIN-004: x -> y -> z all stored on w1; the program keeps
    only z, so x and y are released (kept for lineage only). After w1 dies, z is
    lost; re-running its task needs y, and y's needs x: all three run again, in
    order, and z's value is right. Dropping z then deletes the lineage too."""
    # x = make(); y = grow(x); z = grow(y); del x, y
    # (w1 is killed)   get(z) == grow(grow(make()))
    c = start(2)
    x = c.on("w1", make_logged, log, "x", BIG)
    y = c.on("w1", grow_logged, log, "y", x)
    z = c.on("w1", grow_logged, log, "z", y)
    expected = bytes([1]) * BIG + b"y" * 1000 + b"z" * 1000
    assert refrpc.wait([z], timeout=30)[0]
    ids = x.id, y.id
    del x, y
    assert wait_until(lambda: c.core(lambda core: all(core.owned[i].state == "released" for i in ids)), 20)
    assert _runs(log) == ["w1", "w1", "w1"]
    c.signal("w1")
    c.wait_dead("w1")
    assert bytes(refrpc.get(z, timeout=60)) == expected
    assert _runs(log) == ["w1", "w1", "w1", "w2", "w2", "w2"]
    for i in ids:  # LIN-004: pending again, ready, released once z's task released it
        events = [e for _, e, _ in c.core(lambda core: core.story(i))]
        assert "reconstruct" in events, events
    del z
    c.assert_clean()


def test_a_lost_value_that_cannot_be_rebuilt_fails_typed(start: Any, log: str) -> None:
    """LIN-003, LIN-006, RPC-009: a lost stored result of a task with
    ``max_retries=0``, or of a task whose budget (``max_retries=1``) the death of
    its first executor used up, fails with OBJECT_LOST (ObjectLostError); so does a
    task that takes it as an argument (TASK-009). A get already waiting on a task
    whose argument dies with its executor completes, with that argument's error."""
    c = start(3)
    spent = c.on("w2", slow_first, log, "spent", 30_000, BIG, max_retries=1)
    assert wait_until(lambda: _runs(log, "spent"), 20)
    c.signal("w2")  # the retry (attempt 2) uses the whole budget
    assert len(refrpc.get(spent, timeout=60)) == BIG
    victim = _runs(log, "spent")[1]
    once = c.on(victim, make_logged, log, "once", BIG, max_retries=0)
    assert refrpc.wait([once], timeout=30)[0]
    # A get waiting on a consumer whose argument is still being made when its maker dies.
    maker = c.on(victim, slow, log, "maker", 30_000, max_retries=0)
    consumer = length.remote(maker)
    waiting = consumer.future()
    assert wait_until(lambda: _runs(log, "maker"), 20)
    c.signal(victim)
    c.wait_dead(victim)
    for lost in (once, spent):
        err = _error(lost)
        assert isinstance(err, refrpc.ObjectLostError) and err.code.name == "OBJECT_LOST", repr(err)
    err = _error(length.remote(once))
    assert isinstance(err, refrpc.ObjectLostError), repr(err)
    assert isinstance(waiting.exception(30), refrpc.WorkerDiedError)
    assert len(_runs(log, "once")) == 1 and len(_runs(log, "spent")) == 2
    del once, spent, lost, maker, consumer, waiting, err
    c.assert_clean()


def test_a_worker_owner_rebuilds_its_lost_value_for_the_driver(start: Any, log: str) -> None:
    """LIN-003, LIN-009: lineage is kept by the owner, here a worker W. Its two
    results stored on another worker X are lost when X is killed: W re-runs the
    retryable task elsewhere, and the driver, a borrower, gets the value; the result
    of W's task with ``max_retries=0`` fails with OBJECT_LOST, for the driver too."""
    c = start(3)
    rebuildable, once = refrpc.get(c.on("w1", own_made, log, BIG, max_retries=0), timeout=30)
    (holder,) = set(_runs(log))
    assert holder != "w1"
    c.signal(holder)
    c.wait_dead(holder)
    assert bytes(refrpc.get(rebuildable, timeout=60)) == bytes([11]) * BIG
    assert len(_runs(log, "rebuildable")) == 2 and _runs(log, "rebuildable")[1] not in (holder, "w1")
    err = _error(once)
    assert isinstance(err, refrpc.ObjectLostError) and err.code.name == "OBJECT_LOST", repr(err)
    del rebuildable, once, err
    c.assert_clean()


# ---------------------------------------------------------------- owner death
def _owner_of_some(c: Cluster, log: str, owner: str) -> list[refrpc.Ref[Any]]:
    """Run ``own_some`` on ``owner``: it owns a result stored on another worker, a put
    stored at itself and a long task running on another worker; the driver borrows
    all three. Returns the refs once the long task runs."""
    refs = refrpc.get(c.on(owner, own_some, log, BIG, max_retries=0), timeout=30)
    assert wait_until(lambda: _runs(log, "orphan"), 20)
    stored_on, orphan_on = _runs(log, "stored")[0], _runs(log, "orphan")[0]
    assert owner not in (stored_on, orphan_on)
    assert len(list_segments(c.namespace)) == 2  # the stored result and the put
    return refs


def test_an_orphaned_task_waiting_in_get_stops_at_once(start: Any, log: str) -> None:
    """FATE-003: W's task on X waits in refrpc.get (for a 60 s task of its own); W is
    killed; X stops the waiting task at once (a stop wakes a task waiting in a get),
    and it never resumes."""
    c = start(3)
    (w,) = refrpc.get(c.on("w1", own_waiter, log, max_retries=0), timeout=30)
    assert wait_until(lambda: _runs(log, "waiter") and _runs(log, "waited-on"), 20)
    waiter_on = _runs(log, "waiter")[0]
    task = w.id.rsplit(".", 1)[0]  # a return id is "{task id}.r{index}"
    assert task in refrpc.api._call_on(waiter_on, running_here._name)
    c.signal("w1")
    assert wait_until(lambda: task not in refrpc.api._call_on(waiter_on, running_here._name), 10)
    assert not [line for line in Path(log).read_text().splitlines() if line.startswith("resumed")]
    del w


def test_a_worker_runs_its_queued_tasks_in_order_after_tasks_waited(start: Any, log: str) -> None:
    """Tasks given to one worker start in the order they came, also once waiting tasks
    made its executor start more threads (only the thread holding the turn takes work)."""
    c = start(2)
    waits = [c.on("w1", nested_wait, 5) for _ in range(4)]
    assert refrpc.get(waits, timeout=60) == [10] * 4
    refs = [c.on("w1", note, log, i) for i in range(30)]
    assert refrpc.get(refs, timeout=60) == list(range(30))
    order = [int(line.split()[2]) for line in Path(log).read_text().splitlines() if line.startswith("order ")]
    assert order == list(range(30))


def test_the_objects_of_a_dead_owner_fail_everywhere_and_its_work_stops(start: Any, log: str) -> None:
    """FATE-001: after kill -9 of W, the driver's gets on the objects W owned end
    promptly with OWNER_DIED (OwnerDiedError) naming W. FATE-002: the copy of W's
    object stored on another worker is dropped (its segment is gone while that worker
    lives). FATE-003: the task W had sent to another worker is stopped: that worker's
    executor is free for new work at once, and the task ticks no more."""
    # [a, p, s] = get(own_some.remote())   # on W: a stored on w2/w3, p put at W, s a 60 s task
    # (W is killed)   get(a), get(p), get(s) -> OwnerDiedError
    c = start(3)
    refs = _owner_of_some(c, log, "w1")
    orphan_on = _runs(log, "orphan")[0]
    killed = time.monotonic()
    c.signal("w1")
    for ref in refs:
        err = _error(ref, timeout=20)
        assert isinstance(err, refrpc.OwnerDiedError) and "w1" in str(err), repr(err)
    took = time.monotonic() - killed
    assert took < 10, took  # prompt: the supervisor reports the exit at once (LIV-014)
    assert wait_until(lambda: not list_segments(c.namespace), 20), list_segments(c.namespace)
    # The orphan's worker runs new work now, not after the orphan's 60 s.
    assert refrpc.get(c.on(orphan_on, where), timeout=20) == orphan_on
    ticks = len(Path(log).read_text().splitlines())
    assert refrpc.get(c.on(orphan_on, where), timeout=20) == orphan_on
    assert len(Path(log).read_text().splitlines()) == ticks
    # Nothing of W's is left in the other workers' tables (FATE-002, FATE-003).
    for peer in set(c.processes) - {"w1"}:
        table = c.node.introspect(peer).result(10)
        assert table.error is None and not [e for e in table.entries if e.owner == "w1"], table
    del refs, ref, err
    c.assert_clean()


# ---------------------------------------------------------------- borrower death
def test_a_dead_borrowers_grant_goes_and_the_value_is_reclaimed(start: Any, log: str) -> None:
    """BOR-009, FATE-005: the driver owns x; an actor on w1 keeps a ref to it (a
    borrower, BOR-007). After kill -9 of w1 the owner removes w1's grant, so once
    the driver drops its own ref, x is reclaimed: the ownership table is empty and
    x's segment is gone."""
    # x = put(200 KB); keeper.keep.remote(shared(x)); del x   (keeper's host is killed)
    c = start(2)
    x = refrpc.put(b"x" * BIG)
    keeper = c.actor_on("w1", Keeper)
    assert refrpc.get(keeper.keep.remote(refrpc.shared(x)), timeout=30) == 1
    assert wait_until(lambda: c.owned(x).borrowers.keys() == {"w1"}, 20), c.owned(x)
    c.signal("w1")
    c.wait_dead("w1")
    assert not c.owned(x).borrowers
    del x, keeper
    c.assert_clean()


def test_a_value_another_live_borrower_holds_outlives_a_dead_borrower(start: Any, log: str) -> None:
    """BOR-009: only the dead borrower's grants go. x, kept by actors on w1 and w2,
    survives w1's death and the driver dropping its ref: w2's actor still reads it;
    once that actor forgets it too, x is reclaimed."""
    c = start(2)
    x = refrpc.put(b"x" * BIG)
    doomed, survivor = c.actor_on("w1", Keeper), c.actor_on("w2", Keeper)
    assert refrpc.get([doomed.keep.remote(refrpc.shared(x)), survivor.keep.remote(refrpc.shared(x))], timeout=30) == [1, 1]
    assert wait_until(lambda: c.owned(x).borrowers.keys() == {"w1", "w2"}, 20), c.owned(x)
    xid = x.id
    c.signal("w1")
    c.wait_dead("w1")
    del x
    gc.collect()
    assert wait_until(lambda: c.core(lambda core: core.owned[xid].local_refs == 0), 20)
    assert c.core(lambda core: list(core.owned[xid].borrowers)) == ["w2"]
    assert refrpc.get(survivor.total.remote(), timeout=30) == BIG
    assert list_segments(c.namespace)
    assert refrpc.get(survivor.forget.remote(), timeout=30) == 0
    del doomed, survivor
    c.assert_clean()


# ---------------------------------------------------------------- actor death
def test_calls_to_an_actor_whose_host_dies_fail_with_actor_died(start: Any, log: str) -> None:
    """ACT-007: kill -9 of the actor's host fails the running call and the queued
    one with ACTOR_DIED (ActorDiedError), without retrying them; with no restarts
    left (``max_restarts`` = 0) later calls fail the same way (ACT-004). LIN-006: a
    stored return of an actor call is not rebuilt: lost with the host, it fails
    with OBJECT_LOST."""
    c = start(2)
    tally = c.actor_on("w1", Tally, 10)
    assert refrpc.get(tally.add.remote(1), timeout=30) == 11
    big = tally.big.remote(BIG)
    assert refrpc.wait([big], timeout=30)[0]
    running, queued = tally.slow.remote(log, 30_000), tally.add.remote(1)
    assert wait_until(lambda: _runs(log), 20)
    c.signal("w1")
    for ref in (running, queued):
        err = _error(ref)
        assert isinstance(err, refrpc.ActorDiedError) and "w1" in str(err), repr(err)
    c.wait_dead("w1")
    assert isinstance(_error(tally.add.remote(1)), refrpc.ActorDiedError)
    err = _error(big)
    assert isinstance(err, refrpc.ObjectLostError) and err.code.name == "OBJECT_LOST", repr(err)
    assert _runs(log) == ["w1"]
    del tally, big, running, queued, ref, err
    c.assert_clean()


def test_an_actor_with_a_restart_comes_back_elsewhere_with_fresh_state(start: Any, log: str) -> None:
    """ACT-002, ACT-011: with ``max_restarts=1``, the owner re-creates the actor on
    another worker when its host dies: calls pending on the dead host still fail
    (ACT-007), later ones run on the new instance, whose state is the constructor's
    again (the old state is lost). When that host dies too, the restart is used up:
    calls fail with ActorDiedError."""
    # t = Tally.options(max_restarts=1).remote(10); t.add(5)   (host killed)   t.add(1) == 11
    c = start(3)
    tally = c.actor_on("w1", Tally, 10, max_restarts=1)
    assert refrpc.get(tally.add.remote(5), timeout=30) == 15
    running = tally.slow.remote(log, 30_000)
    assert wait_until(lambda: _runs(log), 20)
    c.signal("w1")
    assert isinstance(_error(running), refrpc.ActorDiedError)
    c.wait_dead("w1")
    assert refrpc.get(tally.add.remote(1), timeout=30) == 11  # 10 + 1: the state was lost
    host = refrpc.get(tally.where.remote(), timeout=30)
    assert host != "w1" and host == c.actor_host(tally)
    c.signal(host)
    c.wait_dead(host)
    err = _error(tally.add.remote(1))
    assert isinstance(err, refrpc.ActorDiedError), repr(err)
    del tally, running, err
    c.assert_clean()


# ---------------------------------------------------------------- leaving and shutting down
def test_a_worker_that_leaves_says_goodbye_and_its_objects_fail_at_once(start: Any, log: str) -> None:
    """LIV-006, LIV-010: a worker sent SIGTERM leaves cleanly: it sends Goodbye, and
    the driver fences it for that reason (its story says "goodbye", not "failed" from
    the supervisor nor "silence"); the objects it owned fail with OwnerDiedError
    (FATE-001), the copy of one on another worker is freed (FATE-002), and the
    process exits with status 0."""
    c = start(3)
    refs = _owner_of_some(c, log, "w1")
    c.signal("w1", signal.SIGTERM)
    c.wait_dead("w1")  # until it has left, w1 still answers for its objects
    for ref in refs:
        err = _error(ref, timeout=20)
        assert isinstance(err, refrpc.OwnerDiedError) and "w1" in str(err), repr(err)
    assert c.death("w1")[0] == "goodbye", c.core(lambda core: core.story("peer:w1"))
    assert wait_until(lambda: not list_segments(c.namespace), 20), list_segments(c.namespace)
    assert c.processes["w1"].wait(20) == 0
    for peer in ("w2", "w3"):  # every other peer got the Goodbye too
        assert refrpc.get(c.on(peer, death_of, "w1"), timeout=20) == "goodbye"
    del refs, ref, err
    c.assert_clean()


def test_shutdown_leaves_no_process_and_no_segment(start: Any, log: str) -> None:
    """The driver's ``shutdown`` with objects still alive everywhere (stored results
    on workers, a put, an actor, borrowed refs): every worker process exits and every
    segment of the cluster is removed (the fixture checks both after shutdown)."""
    c = start(2)
    keep = [c.on("w1", make_logged, log, "a", BIG), c.on("w2", make_logged, log, "b", BIG), refrpc.put(b"p" * BIG)]
    keeper = c.actor_on("w2", Keeper)
    assert refrpc.get(keeper.keep.remote(refrpc.shared(keep[0])), timeout=30) == 1
    assert refrpc.wait(keep, num_returns=3, timeout=30)[0]
    assert len(list_segments(c.namespace)) == 3
    refrpc.shutdown()
    assert all(p.wait(20) is not None for p in c.processes.values())
    assert not list_segments(c.namespace)


def test_shutdown_right_after_init_lets_every_worker_exit_cleanly() -> None:
    """LIV-006, LIV-015: ``shutdown()`` straight after ``init()``, before the workers'
    sessions with the driver are open: a worker still waiting for its handshake gets
    no Goodbye, and must not be left to wait out its 10 s handshake timeout or be
    killed; the cluster asks it to leave and it exits cleanly (status 0)."""
    refrpc.init(2)
    cluster = refrpc.api._ctx.cluster
    try:
        refrpc.shutdown()
    finally:
        refrpc.shutdown()
    assert {n: p.returncode for n, p in cluster.processes.items()} == {"w1": 0, "w2": 0}
    assert not list_segments(cluster.namespace)


def test_detection_and_lineage_settings_reach_every_process_of_the_cluster(start: Any) -> None:
    """LIV-013, LIN-010: init's heartbeat interval, miss limit and lineage bound are
    used by the driver and by every worker it starts; a worker frozen past the
    shorter timeout (100 ms x 3) is declared dead for its silence."""
    c = start(2, heartbeat_interval_ms=100, miss_limit=3, max_lineage_bytes=1 << 20)
    expected = (100, 3, 1 << 20)
    assert c.core(lambda core: (core.config.heartbeat_interval_ms, core.config.miss_limit, core.config.max_lineage_bytes)) == expected
    assert [refrpc.get(c.on(w, settings_here), timeout=30) for w in ("w1", "w2")] == [expected, expected]
    c.signal("w2", signal.SIGSTOP)
    try:
        c.wait_dead("w2")
        assert c.death("w2")[0] == "silence"
    finally:
        c.signal("w2", signal.SIGCONT)


@pytest.mark.parametrize("bad", [{"miss_limit": 1}, {"heartbeat_interval_ms": 0}, {"max_lineage_bytes": -1},
                                 {"miss_limit": 2.5}, {"heartbeat_interval_ms": True}])
def test_bad_settings_are_refused_before_anything_starts(bad: dict) -> None:
    """LIV-013 (missLimit >= 2) and the like: a bad setting is a ValueError naming it,
    and no cluster is left half started."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        refrpc.init(1, **bad)
    assert not refrpc.is_initialized()


# ---------------------------------------------------------------- slow peers
def test_a_peer_stopped_past_the_timeout_is_declared_dead_and_stops_when_resumed(start: Any, log: str) -> None:
    """LIV-003: a worker frozen (SIGSTOP) for longer than the detection timeout
    (250 ms x 6) is declared dead for its silence, and its task is retried on the
    other worker (RPC-004). LIV-005: once resumed (SIGCONT) it stops: the process
    exits, and the driver keeps the retry's result and its verdict."""
    c = start(2)
    r = slow_first.remote(log, "t", 20_000)
    assert wait_until(lambda: _runs(log), 20)
    frozen = _runs(log)[0]
    c.signal(frozen, signal.SIGSTOP)
    try:
        c.wait_dead(frozen)
        assert c.death(frozen)[0] == "silence"
        assert refrpc.get(r, timeout=60) == "t"
        assert len(_runs(log)) == 2 and _runs(log)[1] != frozen
    finally:
        c.signal(frozen, signal.SIGCONT)
    # It stops. Its own clock jumped too, so on resuming it finds the driver silent
    # and leaves with it (status 0) before anything tells it it was declared dead;
    # told first, it exits with FENCED_EXIT (LIV-005). Either way it is gone.
    assert c.processes[frozen].wait(30) in (0, FENCED_EXIT)
    assert c.death(frozen)[0] == "silence"  # and nothing it said after resuming changed that
    del r
    c.assert_clean()


def test_a_peer_stopped_shorter_than_the_timeout_is_not_declared_dead(start: Any, log: str) -> None:
    """LIV-003: a pause shorter than the detection timeout (1.5 s; the worker is
    frozen for 0.3 s) is not a death: the task running there finishes there, once,
    and the worker stays in the cluster."""
    c = start(2)
    r = slow_first.remote(log, "t", 600)
    assert wait_until(lambda: _runs(log), 20)
    paused = _runs(log)[0]
    c.signal(paused, signal.SIGSTOP)
    time.sleep(0.3)  # the stimulus: how long the worker is frozen
    c.signal(paused, signal.SIGCONT)
    assert refrpc.get(r, timeout=30) == "t"
    assert _runs(log) == [paused]
    assert not c.is_dead(paused) and c.processes[paused].poll() is None
    assert refrpc.get(c.on(paused, where), timeout=30) == paused
    del r
    c.assert_clean()


# ---------------------------------------------------------------- copies that vanish
def test_a_value_whose_only_copy_vanishes_is_lost_not_fatal(start: Any, log: str) -> None:
    """A put value can only be lost with its owner's own copy, and on this runtime
    that copy is a file under /dev/shm, which a cleaner (systemd's RemoveIPC, a tmp
    reaper) may delete behind the program's back. The holder tells the owner
    (LOC-003, LOC-006) instead of dying; the owner declares the object lost
    (LOC-004): a put value is not rebuilt, so gets (by the driver, or by a task
    taking it) fail with OBJECT_LOST (LIN-003, LIN-006); a lost result of a retryable
    task is rebuilt (LIN-003)."""
    c = start(2)
    by_worker, by_driver = refrpc.put(b"w" * BIG), refrpc.put(b"d" * BIG)
    made = c.on("w1", make_logged, log, "made", BIG)
    assert refrpc.wait([made], timeout=30)[0]
    for name in list_segments(c.namespace):
        os.unlink(os.path.join(DEFAULT_DIRECTORY, name))
    err = _error(length.remote(by_worker))  # the worker fetches from the driver, which finds its copy gone
    assert isinstance(err, refrpc.ObjectLostError) and err.code.name == "OBJECT_LOST", repr(err)
    err = _error(by_driver)
    assert isinstance(err, refrpc.ObjectLostError) and err.code.name == "OBJECT_LOST", repr(err)
    assert bytes(refrpc.get(made, timeout=30)) == bytes([4]) * BIG
    assert len(_runs(log)) == 2  # made again (on any worker: w1 is alive)
    assert not c.is_dead("w1") and refrpc.get(c.on("w1", where), timeout=30) == "w1"
    del by_worker, by_driver, made, err
    c.assert_clean()


def test_a_fetch_from_a_holder_that_dies_ends_at_once(start: Any, log: str, monkeypatch: Any) -> None:
    """Death effects step 11 (session.md), FET-002, OBJ-013: a worker h1 on another
    "host" (its own shared-memory namespace, so values cross by fetch) holds x; the
    driver's get fetches from h1, which is frozen and then killed. The fetch ends
    as soon as h1 is declared dead, not after the fetch progress timeout (FET-006,
    5 s a try), and the get goes back to the owner, which has rebuilt x (LIN-003)."""
    from refrpc.runtime import LocalCluster, _fetch

    c = start(1)
    node = c.node
    # The death comes from h1's supervisor when it is killed, not from its silence while
    # frozen (which would end the fetch before a loaded machine sees it running), and
    # never from the progress timeout, which this test tells apart from it.
    monkeypatch.setattr(_fetch, "PROGRESS_TIMEOUT_S", 300.0)
    miss_limit = node.call(lambda: node.core.config.miss_limit).result(10)
    node.call(lambda: setattr(node.core.config, "miss_limit", 400)).result(10)
    other = LocalCluster.start(1, node.address, node.incarnation, name_prefix="h")
    try:
        node.handle_soon(lambda sid: ev.AddPeer(sid, "h1", other.workers["h1"], 1)).result(10)
        other.watch(node, restart=False)  # h1 stays dead, as the rest of this module's workers
        x = c.on("h1", make_logged, log, "x", BIG)
        assert refrpc.wait([x], timeout=60)[0]
        other.processes["h1"].send_signal(signal.SIGSTOP)
        getting = x.future()
        fetching = lambda: node.call(lambda: [f.object_id for f in node.fetcher._by_object.values()]).result(10)
        assert wait_until(lambda: fetching() == [x.id], 20)
        other.processes["h1"].kill()
        c.wait_dead("h1")
        assert fetching() == []
        assert bytes(getting.result(30)) == bytes([1]) * BIG
        assert _runs(log) == ["h1", "w1"]
        del x, getting
        c.assert_clean()
    finally:
        node.call(lambda: setattr(node.core.config, "miss_limit", miss_limit)).result(10)
        refrpc.shutdown()
        other.stop()
    assert not list_segments(other.namespace)
