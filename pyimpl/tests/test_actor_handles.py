"""Actor handles that travel (ACT-019..ACT-021) and actors reclaimed when the last
handle anywhere is dropped (ACT-009), on real processes: a driver and two workers."""

from __future__ import annotations

import gc

import pytest

import refrpc
from refrpc.testing import wait_until
from refrpc.transport import FaultRule

import actor_fixtures as af

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    refrpc.init(2)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def _on(peer, function, *args):
    return refrpc.api._call_on(peer, f"actor_fixtures:{function}", *args)


def _host(ctx, handle):
    node = ctx.node
    return node.call(lambda: node.core.owned_actors[handle.actor_id].host).result()


def _other(ctx, peer):
    return next(p for p in ("w1", "w2") if p != peer)


@pytest.mark.parametrize("where", ["other", "host"])
def test_a_task_calls_an_actor_through_a_passed_handle_with_its_own_order(cluster, where):
    # log = Log.remote(); log_through.remote(log, "task", 20) while the driver calls too:
    # each caller's calls run in its own order                         ACT-003, ACT-020, ACT-021
    log = af.Log.remote()
    host = _host(cluster, log)
    peer = host if where == "host" else _other(cluster, host)  # "host": through the loopback
    mine = [log.append.remote("driver", i) for i in range(20)]
    theirs = _on(peer, "log_through", log, "task", 20)
    refrpc.get(mine, timeout=30)
    entries = refrpc.get(log.read.remote(), timeout=30)
    assert [i for c, i in entries if c == "driver"] == list(range(20))
    assert [i for c, i in entries if c == "task"] == list(range(20))
    assert sorted(theirs) == theirs and len(theirs) == 20


def test_calls_through_a_passed_handle_that_beat_the_creation_wait_for_it(cluster):
    # log = Log.remote(), its CreateActor slow to reach the host; log_through.remote(log, ...)
    # on the other worker: its calls reach the host first, wait there, then run in order   ACT-023
    node = cluster.node
    injector = node.set_faults([FaultRule("delay", "send", "CreateActor", delay_ms=1500)]).result(10)
    try:
        log = af.Log.remote()
        host = _host(cluster, log)
        theirs = _on(_other(cluster, host), "log_through", log, "task", 5)
        assert injector.applied[0] == 1 and sorted(theirs) == theirs and len(theirs) == 5
        assert [i for c, i in refrpc.get(log.read.remote(), timeout=30) if c == "task"] == list(range(5))
    finally:
        node.set_faults([]).result(10)
    log.kill()


def test_a_handle_inside_a_value_and_in_another_actor(cluster, tmp_path):
    # t = Tracked.remote(m); add_through.remote({"actor": t}); r = Relay.remote(t); r.bump.remote()
    t = af.Tracked.remote(str(tmp_path / "freed"))
    assert refrpc.get(af.add_through.remote({"actor": t}), timeout=30) == 1
    r = af.Relay.remote(t)
    assert refrpc.get(r.bump.remote(), timeout=30) == 11
    assert refrpc.get(t.add.remote(0), timeout=30) == 11
    r.kill()


def test_the_actor_is_freed_once_no_process_holds_a_handle(cluster, tmp_path):
    # t = Tracked.remote(m); keep_handle(t) on another worker (the task ends, the copy stays);
    # del t: the actor lives; drop_handles() there: its instance is freed on its host   ACT-009
    marker = tmp_path / "freed"
    t = af.Tracked.remote(str(marker))
    aid = t.actor_id
    host = _host(cluster, t)
    keeper = _other(cluster, host)
    assert refrpc.get(t.add.remote(1), timeout=30) == 1
    assert _on(keeper, "keep_handle", t) == keeper
    node = cluster.node
    del t
    gc.collect()
    # The driver let go of its handle; the keeper's grant keeps the handle object.
    assert wait_until(lambda: node.call(lambda: node.core.owned[aid].local_refs == 0).result(), 20)
    assert node.call(lambda: bool(node.core.owned[aid].borrowers)).result()
    assert aid in _on(host, "hosted_actors") and not marker.exists()
    _on(keeper, "drop_handles")
    assert wait_until(marker.exists, 20)  # the instance's __del__ ran on its host
    assert aid not in _on(host, "hosted_actors")
    assert wait_until(lambda: node.call(lambda: aid not in node.core.owned_actors and aid not in node.core.owned).result(), 20)


def test_dropping_the_only_handle_frees_the_actor_after_its_calls(cluster, tmp_path):
    # get(Tracked.remote(m).add.remote(5)) == 5: the call keeps the actor until it is answered
    marker = tmp_path / "freed"
    assert refrpc.get(af.Tracked.remote(str(marker)).add.remote(5), timeout=30) == 5
    gc.collect()
    assert wait_until(marker.exists, 20)


def test_a_named_actor_is_found_from_any_process_and_lives_while_named(cluster, tmp_path):
    # c = Tracked.options(name="counter").remote(m); get_actor("counter") in a task and here;
    # a second "counter" is refused; with no handle left it lives on; kill frees the name   ACT-022
    marker = tmp_path / "freed"
    c = af.Tracked.options(name="counter").remote(str(marker))
    aid = c.actor_id
    assert refrpc.get(c.add.remote(1), timeout=30) == 1
    assert refrpc.get(af.add_to_named.remote("counter", 2), timeout=30) == 3
    with pytest.raises(ValueError, match="counter"):
        af.Tracked.options(name="counter").remote(str(tmp_path / "other"))
    del c
    gc.collect()
    node = cluster.node
    assert wait_until(lambda: node.call(lambda: node.core.owned[aid].local_refs == 1).result(), 20)  # the name's
    again = refrpc.get_actor("counter")
    assert again.actor_id == aid and refrpc.get(again.add.remote(0), timeout=30) == 3
    assert not marker.exists()
    refrpc.kill(again)
    with pytest.raises(ValueError, match="no live actor"):
        refrpc.get_actor("counter")
    del again
    gc.collect()
    assert wait_until(marker.exists, 20)
    fresh = af.Tracked.options(name="counter").remote(str(tmp_path / "fresh"))  # the name is free again
    assert refrpc.get(af.add_to_named.remote("counter", 5), timeout=30) == 5
    refrpc.kill(fresh)


def test_a_detached_actor_is_owned_by_the_head_and_killed_from_a_task(cluster, tmp_path):
    # d = Tracked.options(name="det", lifetime="detached").remote(m); a task kills it by name
    d = af.Tracked.options(name="det", lifetime="detached").remote(str(tmp_path / "freed"))
    node = cluster.node  # the head of a local cluster is its driver
    assert node.call(lambda: node.core.owned_actors[d.actor_id].host).result() in ("w1", "w2")
    assert refrpc.get(d.add.remote(4), timeout=30) == 4
    assert refrpc.get(af.kill_named.remote("det"), timeout=30) is True
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(d.add.remote(1), timeout=30)
    with pytest.raises(ValueError):
        refrpc.get_actor("det")
    with pytest.raises(ValueError, match="name"):
        af.Tracked.options(lifetime="detached")
