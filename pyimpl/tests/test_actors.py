"""Actors on real processes: their own threads, concurrency, handles that travel,
names and reclamation (ACT-*). One worker, so that every actor and task shares it."""

from __future__ import annotations

import pytest

import refrpc

import actor_fixtures as af

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def one_worker():
    refrpc.init(1)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def test_a_long_actor_call_does_not_delay_tasks_on_the_same_worker(one_worker, tmp_path):
    # g = Gate.remote(); long = g.block_until.remote(path)   (blocks its thread)
    # get([add.remote(i, 1) ...]) returns while `long` still runs on the same worker
    g = af.Gate.remote()
    assert refrpc.get(g.ping.remote(), timeout=30) == 1
    gate = tmp_path / "open"
    long = g.block_until.remote(str(gate))
    assert refrpc.get([af.add.remote(i, 1) for i in range(5)], timeout=15) == [1, 2, 3, 4, 5]
    assert refrpc.wait([long], timeout=0) == ([], [long])  # still blocked
    gate.touch()
    assert refrpc.get(long, timeout=30) is True
    g.kill()


def test_a_long_task_does_not_delay_an_actors_calls(one_worker, tmp_path):
    # long = block_until.remote(path); g.ping.remote() answers while `long` runs
    g = af.Gate.remote()
    gate = tmp_path / "open"
    long = af.block_until.remote(str(gate))
    assert refrpc.get([g.ping.remote() for _ in range(3)], timeout=15) == [1, 2, 3]
    assert refrpc.wait([long], timeout=0) == ([], [long])
    gate.touch()
    assert refrpc.get(long, timeout=30) is True
    g.kill()
