"""An executor admits its tasks by the demand each SubmitTask carries (TASK-050..TASK-056),
on real processes: a local cluster of one worker, which offers one CPU slot and one
"gpu"."""

from __future__ import annotations

import os

import pytest

import refrpc
from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode
from refrpc.runtime._refs import Ref, arg_specs
from refrpc.testing import wait_until

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster():
    refrpc.init(1, resources={"gpu": 1})
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def named(fn, peer, *args, num_cpus=1.0, resources=()):
    """``fn.remote(*args)`` sent to ``peer`` at once, whatever its load (TASK-024), with
    that demand: the executor's admission alone decides when it runs."""
    node = refrpc.api._ctx.node
    name, first = fn._target(node)
    specs, keep = arg_specs(node, args)

    def submit() -> str:
        task_id, rids = node.new_task_ids(1)
        node.handle(ev.Submit(node.sid(), task_id, name, tuple(first + specs), rids, 0, False, "", peer,
                              num_cpus=num_cpus, resources=tuple(resources)))
        return rids[0]

    ref = Ref(node, node.call(submit).result(), counted=True)
    del keep
    return ref


def test_two_half_cpu_tasks_that_wait_for_each_other_both_finish(cluster, tmp_path):
    # a = meet.options(num_cpus=0.5).remote(d, "a", "b"); b = meet.options(num_cpus=0.5).remote(d, "b", "a")
    # Each waits (20 s at most) for the other to run: on the one worker, they meet only
    # if it runs them at once. Run one at a time, the first gives up.       TASK-050
    meet = rf.meet.options(num_cpus=0.5)
    a = meet.remote(str(tmp_path), "a", "b")
    b = meet.remote(str(tmp_path), "b", "a")
    assert refrpc.get([a, b], timeout=60) == [True, True]


def test_a_zero_cpu_task_runs_while_a_long_task_holds_the_only_slot(cluster, tmp_path):
    # long = hold_running.remote(...); refrpc.get(add.options(num_cpus=0).remote(2, 3))
    # returns while long still runs.                                          TASK-051
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    long = rf.hold_running.remote(started, release)
    try:
        assert wait_until(lambda: os.path.exists(started), 30)
        assert refrpc.get(rf.add.options(num_cpus=0).remote(2, 3), timeout=20) == 5
        assert refrpc.wait([long], timeout=0)[0] == []  # still running
    finally:
        open(release, "w").close()
    assert refrpc.get(long, timeout=30) is True


def test_a_one_cpu_task_sent_to_a_busy_worker_waits_for_its_slot(cluster, tmp_path):
    # The driver names w1 for `exists` (1 CPU) while `long` holds w1's slot: w1 has it
    # (a zero-CPU probe sent after it has answered) but starts it only once long ends. TASK-050
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    long = rf.hold_running.remote(started, release)
    try:
        assert wait_until(lambda: os.path.exists(started), 30)
        plain = named(rf.exists, "w1", release)
        assert refrpc.get(named(rf.add, "w1", 1, 1, num_cpus=0), timeout=20) == 2
        assert refrpc.wait([plain], timeout=0)[0] == []
    finally:
        open(release, "w").close()
    assert refrpc.get(long, timeout=30) is True
    assert refrpc.get(plain, timeout=30) is True  # it started after long's release


def test_a_task_waiting_for_the_gpu_does_not_hold_back_cpu_tasks(cluster, tmp_path):
    # gpu1 holds the gpu (no CPU); gpu2 waits for it; a half-CPU task sent after gpu2
    # runs at once, and gpu2 runs once gpu1 ends.                             TASK-055
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    gpu = (("gpu", 1.0),)
    gpu1 = named(rf.hold_running, "w1", started, release, num_cpus=0, resources=gpu)
    try:
        assert wait_until(lambda: os.path.exists(started), 30)
        gpu2 = named(rf.exists, "w1", release, num_cpus=0, resources=gpu)
        assert refrpc.get(named(rf.add, "w1", 2, 2, num_cpus=0.5), timeout=20) == 4
        assert refrpc.wait([gpu2], timeout=0)[0] == []
    finally:
        open(release, "w").close()
    assert refrpc.get([gpu1, gpu2], timeout=30) == [True, True]


def test_a_task_asking_for_more_than_the_worker_offers_fails_with_resource_exhausted(cluster):
    # A named executor without enough "gpu" answers at once, without running it. TASK-053
    with pytest.raises(refrpc.RefRPCError) as info:
        refrpc.get(named(rf.add, "w1", 1, 2, resources=(("gpu", 2.0),)), timeout=20)
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert "gpu" in str(info.value)


def test_a_task_taking_more_cpu_than_offered_runs_alone(cluster, tmp_path):
    # big (2 CPUs, named to a 1-slot worker) runs; a half-CPU task sent after it waits
    # until it ends, a zero-CPU one does not.                                 TASK-052
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    big = named(rf.hold_running, "w1", started, release, num_cpus=2)
    try:
        assert wait_until(lambda: os.path.exists(started), 30)
        half = named(rf.exists, "w1", release, num_cpus=0.5)
        assert refrpc.get(named(rf.add, "w1", 1, 1, num_cpus=0), timeout=20) == 2
        assert refrpc.wait([half], timeout=0)[0] == []
    finally:
        open(release, "w").close()
    assert refrpc.get([big, half], timeout=30) == [True, True]

