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


def test_async_methods_run_concurrently_on_the_actors_event_loop(one_worker):
    # r = Rendezvous.remote(); r.meet.remote("a", "b"), r.meet.remote("b", "a")
    # each awaits the other's event: both return only if they run at once   ACT-013, ACT-018
    r = af.Rendezvous.remote()
    assert refrpc.get([r.meet.remote("a", "b"), r.meet.remote("b", "a")], timeout=30) == ["a", "b"]
    assert refrpc.get(r.awaited.remote(refrpc.shared(af.add.remote(41, 1))), timeout=30) == 42
    r.kill()


def test_max_concurrency_1_keeps_an_async_actors_calls_in_order(one_worker):
    # r = Rendezvous.options(max_concurrency=1).remote(); record(0..19) run one at a time   ACT-003
    r = af.Rendezvous.options(max_concurrency=1).remote()
    assert refrpc.get([r.record.remote(i) for i in range(20)], timeout=30) == list(range(20))
    assert refrpc.get(r.recorded.remote(), timeout=30) == list(range(20))
    with pytest.raises(TimeoutError) as info:
        refrpc.get(r.meet.remote("a", "b", 0.2), timeout=30)  # nobody else may run meanwhile
    assert isinstance(info.value, refrpc.TaskError)  # TASK-018, with an OSError subclass
    r.kill()


def test_a_sync_actor_with_max_concurrency_runs_calls_on_several_threads(one_worker):
    # t = ThreadedRendezvous.remote()   (@remote(max_concurrency=2)); two calls meet
    t = af.ThreadedRendezvous.remote()
    assert refrpc.get([t.meet.remote("a", "b"), t.meet.remote("b", "a")], timeout=30) == ["a", "b"]
    t.kill()


def test_killing_an_async_actor_ends_its_waiting_calls(one_worker):
    # r = Rendezvous.remote(); f = r.forever.remote(); kill(r) -> ActorDiedError   ACT-006
    r = af.Rendezvous.remote()
    f = r.forever.remote()
    assert refrpc.get(r.record.remote(1), timeout=30) == 1  # the loop still serves calls
    refrpc.kill(r)
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(f, timeout=30)
    with pytest.raises(ValueError):
        af.Rendezvous.options(max_concurrency=0)


@pytest.mark.parametrize("cls", ["Gate", "Rendezvous"])
def test_a_method_that_calls_sys_exit_fails_and_the_actor_serves_on(one_worker, cls):
    # a.exit.remote(2) raises SystemExit (no Exception) in a thread or on the event
    # loop: that call fails with a TaskError, and the next call is answered (before,
    # neither was: the thread, or the loop, ended)
    a = getattr(af, cls).remote()
    with pytest.raises(refrpc.TaskError, match="SystemExit"):
        refrpc.get(a.exit.remote(2), timeout=30)
    if cls == "Gate":
        assert refrpc.get(a.ping.remote(), timeout=30) == 1
    else:
        assert refrpc.get(a.awaited.remote(refrpc.shared(af.add.remote(1, 1))), timeout=30) == 2
    a.kill()


def test_calls_to_an_actor_whose_constructor_raised_fail_actor_died_with_the_reason(one_worker):
    # a = NoStart.remote("start"): __init__ raises KeyError('start'). The call made at
    # once (queued at the host) and one made later both raise ActorDiedError naming
    # the constructor's error (the first used to raise a plain TaskError, the later
    # one "no live actor ... here" without a reason).
    a = af.NoStart.remote("start")
    first = a.ping.remote()
    with pytest.raises(refrpc.ActorDiedError, match="KeyError: 'start'"):
        refrpc.get(first, timeout=30)
    with pytest.raises(refrpc.ActorDiedError, match="KeyError: 'start'"):
        refrpc.get(a.ping.remote(), timeout=30)
    assert refrpc.get(af.add.remote(1, 1), timeout=30) == 2  # the worker serves on


def test_an_actor_class_its_worker_cannot_find_dies_unknown_function(one_worker, tmp_path, monkeypatch):
    # An actor class in a module only this driver can import (ACT-001, ACT-039): the
    # worker answers UNKNOWN_FUNCTION, not TASK_FAILED (its constructor never ran).
    import importlib
    import sys

    (tmp_path / "only_here_mod.py").write_text(
        "import refrpc\n\n@refrpc.remote\nclass OnlyHere:\n    def ping(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("only_here_mod")
    try:
        a = mod.OnlyHere.remote()
        with pytest.raises(refrpc.ActorDiedError, match="its class is unknown on its host"):
            refrpc.get(a.ping.remote(), timeout=30)
    finally:
        sys.modules.pop("only_here_mod", None)
