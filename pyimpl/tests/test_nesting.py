"""Tasks that submit tasks, on real processes: on a one-worker cluster the children
run on the worker of their parent (TASK-023, TASK-056), and cancelling a parent
cancels the children it submitted unless told not to."""

from __future__ import annotations

import pytest

import refrpc
from refrpc.testing import wait_until

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=[1, 2], ids=["one_worker", "two_workers"])
def cluster(request):
    # One worker: parent and child share it (the loopback); two: the child goes to the
    # other worker, and the cancel travels as a CancelTask.
    refrpc.init(request.param)
    try:
        yield request.param
    finally:
        refrpc.shutdown()


def test_a_task_that_waits_for_its_children_runs_even_on_one_worker(cluster):
    # The child can only run on the worker that runs its parent: the parent's wait
    # gives that worker's CPU back, as Ray's does.
    assert refrpc.get(rf.fib.remote(6), timeout=60) == 8
    assert refrpc.get(rf.first_ready.remote(3), timeout=60) == [0, 2, 4]


def _worker_is_free() -> bool:
    return refrpc.get(rf.add.remote(1, 1), timeout=30) == 2


def test_cancelling_a_task_cancels_the_child_it_waits_for(cluster, tmp_path):
    ref = rf.wait_for_child.remote(str(tmp_path), 60)
    assert wait_until(lambda: (tmp_path / "started").exists(), timeout=60)
    assert refrpc.cancel(ref) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(ref, timeout=30)
    # The child was stopped too: its worker is free long before the child's 60 s are up.
    assert wait_until(lambda: (tmp_path / "stopped").exists(), timeout=30)
    assert _worker_is_free()
    assert not (tmp_path / "finished").exists()


def test_cancelling_a_task_cancels_the_child_queued_behind_it(cluster, tmp_path):
    if cluster != 1:
        pytest.skip("on two workers the child does not queue behind its parent")
    ref = rf.submit_and_spin.remote(str(tmp_path), 60)
    assert wait_until(lambda: (tmp_path / "parent").exists(), timeout=60)  # the child is submitted
    assert refrpc.cancel(ref) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(ref, timeout=30)
    # The child, queued on the only worker behind this task, never runs its 60 s (it
    # would start before the task submitted next, which waits its turn behind it).
    assert _worker_is_free()
    assert not (tmp_path / "finished").exists()


def test_a_cancel_that_is_not_recursive_leaves_the_children_running(cluster, tmp_path):
    ref = rf.wait_for_child.remote(str(tmp_path), 3)
    assert wait_until(lambda: (tmp_path / "started").exists(), timeout=60)
    assert refrpc.cancel(ref, recursive=False) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(ref, timeout=30)
    assert wait_until(lambda: (tmp_path / "finished").exists(), timeout=60)  # it ran to its end
    assert not (tmp_path / "stopped").exists()
    assert _worker_is_free()
