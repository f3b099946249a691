"""Tasks that submit tasks, on real processes: on a one-worker cluster the children
run on the worker of their parent (TASK-023, TASK-056), and cancelling a parent
cancels the children it submitted unless told not to."""

from __future__ import annotations

import pytest

import refrpc
from refrpc.testing import wait_until

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def one_worker():
    refrpc.init(1)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def test_a_task_that_waits_for_its_child_runs_on_a_one_worker_cluster(one_worker):
    # The child can only run on the worker that runs its parent: the parent's wait
    # gives that worker's CPU back, as Ray's does.
    assert refrpc.get(rf.fib.remote(6), timeout=60) == 8
    assert refrpc.get(rf.first_ready.remote(3), timeout=60) == [0, 2, 4]
