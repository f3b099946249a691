"""A handle held away from the actor's owner follows the actor when its owner
re-creates it on another host (ACT-011, ACT-021), on real processes with kill -9."""

from __future__ import annotations

import os
import signal

import pytest

import refrpc
from refrpc.testing import wait_until

import actor_fixtures as af

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("successor_met", [False, True])
def test_a_passed_handle_follows_its_actor_to_a_new_host(tmp_path, successor_met):
    # t = Tracked.options(max_restarts=1).remote(m); keep_handle(t) on worker K; kill -9 the host;
    # K's next call through its copy reaches the new instance (fresh state). With
    # successor_met, K has already met the host's restarted incarnation (same PeerId,
    # alive, without the actor) when it calls: the handle still follows the actor.
    refrpc.init(3)
    try:
        ctx = refrpc.api._ctx
        node = ctx.node
        t = af.Tracked.options(max_restarts=1).remote(str(tmp_path / "freed"))
        aid = t.actor_id
        host = node.call(lambda: node.core.owned_actors[aid].host).result()
        keeper = next(p for p in ("w1", "w2", "w3") if p != host)
        assert refrpc.api._call_on(keeper, "actor_fixtures:keep_handle", t) == keeper
        assert refrpc.api._call_on(keeper, "actor_fixtures:add_kept", 1) == 1
        killed = ctx.cluster.processes[host].pid
        os.kill(killed, signal.SIGKILL)

        def moved() -> bool:
            a = node.call(lambda: node.core.owned_actors[aid]).result()
            return a.host != host and a.state == "alive"

        assert wait_until(moved, 30)
        assert wait_until(lambda: refrpc.api._call_on(keeper, "actor_fixtures:peer_state", host) == "dead", 30)
        if successor_met:
            assert wait_until(lambda: ctx.cluster.processes[host].poll() is None and
                              ctx.cluster.processes[host].pid != killed, 30)
            # the successor calls K, which so learns of it (HS-006)
            assert wait_until(lambda: _reaches(host), 30)
            assert refrpc.api._call_on(host, "actor_fixtures:call_peer", keeper) == keeper
            assert refrpc.api._call_on(keeper, "actor_fixtures:peer_state", host) == "alive"
        assert refrpc.api._call_on(keeper, "actor_fixtures:add_kept", 2) == 2  # the new instance: 0 + 2
        assert refrpc.get(t.add.remote(3), timeout=30) == 5
    finally:
        refrpc.shutdown()


def _reaches(peer: str) -> bool:
    try:
        return refrpc.api._call_on(peer, "actor_fixtures:_me", timeout=10) == peer
    except refrpc.RefRPCError:
        return False


def test_a_call_after_the_restarts_are_used_up_says_so(tmp_path):
    # t = Tracked.options(max_restarts=1).remote(m); kill -9 its host twice: a call then
    # fails at once, saying the restarts are used up (not after waiting at a host that
    # never had the actor).
    refrpc.init(2)
    try:
        ctx = refrpc.api._ctx
        node = ctx.node
        t = af.Tracked.options(max_restarts=1).remote(str(tmp_path / "freed"))
        assert refrpc.get(t.add.remote(1), timeout=30) == 1
        aid = t.actor_id

        def actor() -> tuple[str, str]:
            return node.call(lambda: (node.core.owned_actors[aid].host, node.core.owned_actors[aid].state)).result()

        first, _ = actor()
        os.kill(ctx.cluster.processes[first].pid, signal.SIGKILL)
        assert wait_until(lambda: actor()[0] != first and actor()[1] == "alive", 30)
        assert refrpc.get(t.add.remote(2), timeout=30) == 2  # the new instance
        os.kill(ctx.cluster.processes[actor()[0]].pid, signal.SIGKILL)
        assert wait_until(lambda: actor()[1] == "dead", 30)
        with pytest.raises(refrpc.ActorDiedError, match=r"restarts are used up \(max_restarts=1\)"):
            refrpc.get(t.add.remote(3), timeout=30)
    finally:
        refrpc.shutdown()
