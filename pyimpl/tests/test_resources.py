"""Resources on real processes: CPU slots and named resources offered by a local
cluster's workers and asked for by tasks and actors (TASK-012)."""

from __future__ import annotations

import pytest

import refrpc
from refrpc.testing import wait_until

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    # Two workers; the machine offers one "gpu", which w1 gets.
    refrpc.init(2, resources={"gpu": 1})
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def _state(ctx, ref) -> str:
    node = ctx.node
    return node.call(lambda: node.core.tasks[node.core.owned[ref.id].task_id].state).result(10)


def test_the_cluster_offers_what_it_was_started_with(cluster):
    assert refrpc.cluster_resources() == {"CPU": 2.0, "gpu": 1.0}
    rows = {n["id"]: n["resources"] for n in refrpc.nodes() if n["role"] == "worker"}
    assert rows == {"w1": {"CPU": 1.0, "gpu": 1.0}, "w2": {"CPU": 1.0}}


def test_tasks_asking_for_a_resource_take_turns_on_the_worker_that_has_it(cluster, tmp_path):
    # a = hold.options(resources={"gpu": 1}).remote(); b = where.options(resources={"gpu": 1}).remote()
    # b waits for a's gpu while plain tasks go on running on the other worker.
    release = str(tmp_path / "release")
    gpu = {"gpu": 1}
    first = rf.hold_until.options(resources=gpu).remote(release)
    second = rf.where.options(resources=gpu).remote(0)
    try:
        assert wait_until(lambda: _state(cluster, second) == "queued", 20)
        assert refrpc.get([rf.add.remote(i, 1) for i in range(4)], timeout=30) == [1, 2, 3, 4]
        assert _state(cluster, second) == "queued"
    finally:
        open(release, "w").close()
    assert refrpc.get(first, timeout=30) is True
    assert refrpc.get(second, timeout=30) == "w1"


def test_a_task_no_worker_can_hold_fails_at_once(cluster):
    with pytest.raises(refrpc.RefRPCError, match="offers"):
        refrpc.get(rf.add.options(resources={"tpu": 1}).remote(1, 2), timeout=10)
    with pytest.raises(refrpc.RefRPCError, match="offers"):
        refrpc.get(rf.add.options(num_cpus=3).remote(1, 2), timeout=10)  # the host has 2 slots in all


def test_a_task_taking_every_slot_of_the_host_runs_alone(cluster, tmp_path):
    # @refrpc.remote(num_cpus=2) on a machine with 2 workers of one slot each: it runs
    # (the host's slots are pooled), and a plain task waits until it ends    TASK-040
    release = str(tmp_path / "release")
    big = rf.occupy_until.options(num_cpus=2).remote(release)
    try:
        assert wait_until(lambda: _state(cluster, big) == "submitted", 20)
        plain = rf.add.remote(1, 1)
        assert wait_until(lambda: _state(cluster, plain) == "queued", 20)
        assert _state(cluster, big) == "submitted"
    finally:
        open(release, "w").close()
    assert refrpc.get([big, plain], timeout=30) == [True, 2]


def test_zero_cpus_takes_no_slot_at_the_submitter_or_the_worker(cluster, tmp_path):
    # Both slots taken by long tasks: a plain task waits in the driver's queue, a
    # num_cpus=0 task is sent at once and starts at once beside the long one on its
    # worker (TASK-051), so its value comes while both long tasks still run.
    release = str(tmp_path / "release")
    long = [rf.block_until.remote(release) for _ in range(2)]
    try:
        plain = rf.add.remote(1, 1)
        free = rf.add.options(num_cpus=0).remote(2, 3)
        assert refrpc.get(free, timeout=30) == 5
        assert _state(cluster, plain) == "queued"
        assert [_state(cluster, ref) for ref in long] == ["submitted", "submitted"]
    finally:
        open(release, "w").close()
    assert refrpc.get(plain, timeout=30) == 2
    assert refrpc.get(long, timeout=30) == [True, True]


def test_an_actor_keeps_its_resources_while_it_lives(cluster):
    # t = Counter.options(resources={"gpu": 1}).remote(): a gpu task waits until t is killed.
    counter = rf.Counter.options(resources={"gpu": 1}).remote(0)
    assert refrpc.get(counter.add.remote(1), timeout=30) == 1
    waiting = rf.where.options(resources={"gpu": 1}).remote(0)
    assert wait_until(lambda: _state(cluster, waiting) == "queued", 20)
    refrpc.kill(counter)
    assert refrpc.get(waiting, timeout=30) == "w1"


def test_available_resources_less_what_running_tasks_and_live_actors_take(cluster, tmp_path):
    # One task taking half a CPU and the gpu runs: 1.5 CPU and no gpu are free; an
    # actor holding a CPU for its life: 1 CPU free until it is killed.
    full = {"CPU": 2.0, "gpu": 1.0}
    assert wait_until(lambda: refrpc.available_resources() == full, 20)
    release = str(tmp_path / "release")
    task = rf.block_until.options(num_cpus=0.5, resources={"gpu": 1}).remote(release)
    try:
        assert wait_until(lambda: refrpc.available_resources() == {"CPU": 1.5, "gpu": 0.0}, 20), refrpc.available_resources()
        taken = {n["id"]: n["taken"] for n in refrpc.nodes() if n["role"] == "worker"}
        assert taken == {"w1": {"CPU": 0.5, "gpu": 1.0}, "w2": {"CPU": 0.0}}, taken
    finally:
        open(release, "w").close()
    assert refrpc.get(task, timeout=30) is True
    counter = rf.Counter.options(num_cpus=1).remote(0)
    assert refrpc.get(counter.add.remote(1), timeout=30) == 1
    assert wait_until(lambda: refrpc.available_resources() == {"CPU": 1.0, "gpu": 1.0}, 20), refrpc.available_resources()
    refrpc.kill(counter)
    assert wait_until(lambda: refrpc.available_resources() == full, 20), refrpc.available_resources()


@pytest.mark.parametrize("options", [
    {"num_cpus": -1}, {"num_cpus": "2"}, {"resources": {"CPU": 1}}, {"resources": {"gpu": -1}}, {"resources": {"": 1}},
])
def test_bad_demands_are_refused_when_given(options):
    with pytest.raises((ValueError, TypeError)):
        rf.add.options(**options)
    with pytest.raises((ValueError, TypeError)):
        rf.Counter.options(**options)


def test_looking_at_the_cluster_never_sends_work_behind_an_actor_holding_a_slot(cluster):
    # counter = Counter.options(num_cpus=1).remote() holds one worker's only slot for
    # its life. Asking nodes() / available_resources() sends each worker a status task
    # that takes nothing; plain tasks submitted right after must all run on the other
    # worker, never be sent behind the actor (they used to wait there for ever: the
    # submitter took the status task for work in flight and sent a task after it).
    counter = rf.Counter.options(num_cpus=1).remote(0)
    assert refrpc.get(counter.add.remote(1), timeout=30) == 1
    busy = {n["id"] for n in refrpc.nodes() if n["role"] == "worker" and n["taken"].get("CPU") == 1.0}
    assert len(busy) == 1, refrpc.nodes()
    for _ in range(3):
        refrpc.available_resources()
        placed = refrpc.get([rf.where.remote(i) for i in range(6)], timeout=30)
        assert busy.isdisjoint(placed), placed
    refrpc.kill(counter)
