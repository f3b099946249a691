"""Membership views applied by a member (CLU-011, CLU-012), without a cluster.

A real core stands in for the member; the view is what the head would push.
"""

from __future__ import annotations

import threading

import pytest

from refrpc.core import Config, Peer
from refrpc.core import events as ev
from refrpc.runtime import _membership as m


class _Member:
    """The part of a runtime Node that applying a view uses: a core behind a lock."""

    def __init__(self, name: str = "driver-h3-1") -> None:
        self.peer_id = name
        self.core = Peer(name, 0xD, "mem://" + name, Config())
        self.core.handle(ev.Tick("t", 0))
        self.lock = threading.RLock()
        self.view_version = 0
        self._n = 0

    def handle_soon(self, *makers):
        class Done:
            def result(self, timeout=None):
                return None

        with self.lock:
            for make in makers:
                self._n += 1
                self.core.handle(make(f"{self.peer_id}:{self._n}"))
        return Done()


def _view(version, members=(), incarnations=None, dead=()):
    return {"version": version, "members": list(members), "incarnations": incarnations or {}, "dead": list(dead)}


W1 = ("h1-1-w1", "tcp://10.0.0.1:5001", 1, "h1", {"h1": 1.0})
W2 = ("h2-1-w1", "tcp://10.0.0.2:5001", 1, "h2", {})


def test_a_view_adds_its_workers_as_live_executors():
    me = _Member()
    assert m.apply_view(me, _view(3, [W1, W2], {W1[0]: 0x11, W2[0]: 0x21})) == 3
    assert set(me.core.workers) == {W1[0], W2[0]}
    assert me.core.worker_resources[W1[0]] == {"h1": 1.0}


def test_an_older_view_is_ignored():
    # Views may overtake each other in flight; only a newer one counts      CLU-011
    me = _Member()
    m.apply_view(me, _view(5, [W1], {W1[0]: 0x11}))
    assert m.apply_view(me, _view(4, [W1, W2], {W1[0]: 0x11, W2[0]: 0x21})) == 5
    assert set(me.core.workers) == {W1[0]}
    assert m.apply_view(me, _view(5, [W1, W2])) == 5  # the same version again: nothing
    assert set(me.core.workers) == {W1[0]}


def test_a_dead_incarnation_is_fenced_without_a_session_and_gets_no_work():
    # The member never talked to w2; the head says w2/0x21 died            CLU-011, CLU-012, LIV-012
    me = _Member()
    m.apply_view(me, _view(1, [W1, W2], {W1[0]: 0x11, W2[0]: 0x21}))
    m.apply_view(me, _view(2, [W1], {W1[0]: 0x11}, [(W2[0], 0x21, "silent")]))
    assert (W2[0], 0x21) in me.core.fenced
    assert not me.core._is_live(W2[0]) and me.core._is_live(W1[0])


def test_a_newer_incarnation_in_the_view_succeeds_the_dead_one():
    # w1 restarted: the view lists w1/0x11 dead and w1/0x12 at a new address  CLU-007, CLU-011
    me = _Member()
    m.apply_view(me, _view(1, [W1], {W1[0]: 0x11}))
    moved = (W1[0], "tcp://10.0.0.1:5002", 1, "h1", {"h1": 1.0})
    m.apply_view(me, _view(2, [moved], {W1[0]: 0x12}, [(W1[0], 0x11, "replaced")]))
    assert (W1[0], 0x11) in me.core.fenced
    assert me.core._is_live(W1[0])
    assert me.core.workers[W1[0]][0] == "tcp://10.0.0.1:5002"
    assert me.core.remotes[W1[0]].incarnation == 0x12


def test_a_new_incarnation_of_a_worker_fenced_earlier_is_met_again():
    # This member fenced w2/0x21 (from a view, never in session); w2 restarts as 0x22
    # and registers: the next view lists 0x22 only. Without meeting it, the member
    # would take w2 for dead for ever: no task placed there, no fetch from it.   CLU-011
    me = _Member()
    m.apply_view(me, _view(1, [W1], {W1[0]: 0x11}, [(W2[0], 0x21, "silent")]))
    assert not me.core._is_live(W2[0])
    back = (W2[0], "tcp://10.0.0.2:5002", 1, "h2", {})
    m.apply_view(me, _view(2, [W1, back], {W1[0]: 0x11, W2[0]: 0x22}, [(W2[0], 0x21, "silent")]))
    assert me.core._is_live(W2[0]) and me.core.remotes[W2[0]].incarnation == 0x22
    assert me.core.remotes[W2[0]].address == "tcp://10.0.0.2:5002"


def test_the_member_itself_in_a_view_is_left_out():
    me = _Member(W1[0])
    m.apply_view(me, _view(1, [W1, W2], {W1[0]: 0x11, W2[0]: 0x21}, [(W1[0], 0x10, "old me")]))
    assert set(me.core.workers) == {W2[0]}
    assert (W1[0], 0x10) not in me.core.fenced


def test_learn_runs_only_for_the_head(monkeypatch):
    # CLU-013: a view from any other member is refused
    import pytest

    from refrpc.runtime import _executor

    monkeypatch.setattr(_executor, "current_owner", lambda: "driver-h3-1")
    with pytest.raises(PermissionError, match="CLU-013"):
        m.learn(_view(9, [W1]))


def test_the_head_registers_a_member_only_under_its_own_peer_id(monkeypatch):
    # CLU-013: a member cannot register (and so replace and fence) another
    import pytest

    from refrpc.runtime import _executor

    monkeypatch.setattr(_executor, "current_owner", lambda: "h9-1-w1")
    with pytest.raises(PermissionError, match="CLU-013"):
        m.register(W1[0], W1[1], 1, "h1", 0, {}, 0x11)
    with pytest.raises(PermissionError, match="CLU-013"):
        m.register_driver("driver-h3-1", "tcp://10.0.0.3:5000", "h3", 0, 0x31)


def test_the_address_towards_a_head_is_a_local_address():
    assert m.address_towards("tcp://127.0.0.1:7001") == "127.0.0.1"
    assert m.address_towards("tcp://no-such-host.invalid:7001") == "127.0.0.1"  # no route: loopback
    assert m.address_towards("tcp://bad") == "127.0.0.1"


#: Released by the test: what keeps a worker's only task slot busy meanwhile.
_RELEASE = threading.Event()


def _hold() -> bool:
    return _RELEASE.wait(60)


def test_a_busy_member_applies_a_view_at_once():
    # A worker's only slot runs a long task of the program; the head's view still
    # applies at once (it is not queued behind that task), and the task goes on  CLU-033
    from refrpc.testing import MemoryCluster, wait_until

    _RELEASE.clear()
    with MemoryCluster(workers=1, driver="head") as c:
        node, (executor,) = c.workers["w1"], c._executors
        busy = c.submit("test_membership:_hold")
        try:
            assert wait_until(executor.busy, 10)
            view = c.submit("refrpc.runtime._membership:learn", _view(3, [W2]), num_cpus=0)
            assert c.get(view, timeout=10) == 3
            assert node.view_version == 3 and "h2-1-w1" in node.call(lambda: dict(node.core.workers)).result(10)
        finally:
            _RELEASE.set()
        assert c.get(busy, timeout=10) is True


def test_the_heads_membership_calls_do_not_wait_behind_a_long_task():
    # A member's long task holds the head's only turn; members() (what a joining
    # driver and `refrpc status` ask) is still answered at once              CLU-033
    from refrpc.testing import MemoryCluster, wait_until

    _RELEASE.clear()
    with MemoryCluster(workers=1, driver="d") as c:
        (executor,) = c._executors
        executor.node.admits_joiners = True  # the one worker plays the head (CLU-076)
        busy = c.submit("test_membership:_hold")
        try:
            assert wait_until(executor.busy, 10)
            listed = c.submit("refrpc.runtime._membership:members", num_cpus=0)
            assert c.get(listed, timeout=10) == []
        finally:
            _RELEASE.set()
        assert c.get(busy, timeout=10) is True


def test_another_incarnation_in_a_view_fences_no_live_record():
    # The member holds w1/0x11 (a live record); the view lists w1 under 0x12 and its
    # dead list does not name 0x11 (it fell off): an address book entry is no
    # evidence of a death, so 0x11 stays as it is; an incarnation 0 (the head knows
    # none) fences or replaces nothing either                              CLU-063, CLU-042
    me = _Member()
    m.apply_view(me, _view(1, [W1], {W1[0]: 0x11}))
    me.handle_soon(lambda sid: ev.Connect(sid, W1[0], W1[1], 0x11))  # greets w1/0x11
    m.apply_view(me, _view(2, [W1], {W1[0]: 0x12}))
    r = me.core.remotes[W1[0]]
    assert (W1[0], 0x11) not in me.core.fenced and r.state != "dead" and r.incarnation == 0x11
    m.apply_view(me, _view(3, [W1], {W1[0]: 0}))
    assert not me.core.fenced and r.state != "dead" and me.core.remotes[W1[0]] is r and r.incarnation == 0x11


class _Head:
    """The part of the head's Node that registering and building views use."""

    own_key = None

    def __init__(self) -> None:
        self.peer_id, self.lock = "head", threading.RLock()
        self.members: dict = {}
        self.drivers: dict = {}

    def handle_soon(self, *makers):
        return type("Done", (), {"result": lambda self, timeout=None: None})()

    def call(self, fn):
        return type("Done", (), {"result": lambda self, timeout=None: {}})()


def _fresh_registry(monkeypatch) -> _Head:
    head = _Head()
    monkeypatch.setattr(m, "_head_node", lambda: head)
    monkeypatch.setattr(m, "_only_oneself", lambda peer: None)
    monkeypatch.setattr(m.PUSHER, "start", lambda node: None)
    monkeypatch.setattr(m.PUSHER, "wait_pushed", lambda *a: None)
    monkeypatch.setattr(m.PUSHER, "applied", {})
    for name in ("DEAD", "INCARNATIONS", "RESOURCES", "PIDS", "ROW_AT", "DEAD_AT", "KEY_AT"):
        monkeypatch.setattr(m, name, {})
    monkeypatch.setattr(m, "VERSION", [0])
    return head


def test_a_push_to_a_member_that_applied_a_version_carries_only_what_changed_since(monkeypatch):
    # CLU-071: the registry remembers in which version each row, death and key
    # changed; a view "since v" carries only what changed after v, under the version
    # of the whole view, and a member that applies it over v ends with what the
    # whole view would have given it (applying only adds, CLU-042).
    head = _fresh_registry(monkeypatch)
    m.register(*W1[:4], 0, W1[4], 0x11)  # version 1
    m.register(*W2[:4], 0, W2[4], 0x21)  # version 2
    at2 = m._view(head)
    with head.lock:  # as noticed() does, holding the node's lock
        del head.members[W2[0]]
        m._died(W2[0], 0x21, "silent")  # version 3
    m.register(*W1[:4], 0, W1[4], 0x12)  # version 4: w1 replaced by a new incarnation
    whole = m._view(head)
    assert whole["version"] == 4 and [r[0] for r in whole["members"]] == [W1[0]]
    assert whole["dead"] == [(W2[0], 0x21, "silent"), (W1[0], 0x11, "replaced by a new incarnation")]
    since2 = m._view(head, 2, 4)
    assert since2["version"] == 4 and since2["dead"] == whole["dead"]
    assert [r[0] for r in since2["members"]] == [W1[0]] and since2["incarnations"] == {W1[0]: 0x12}
    since3 = m._view(head, 3, 4)
    assert since3["dead"] == [(W1[0], 0x11, "replaced by a new incarnation")]
    assert [r[0] for r in since3["members"]] == [W1[0]]
    assert m._view(head, 4, 4)["members"] == [] and m._view(head, 4, 4)["dead"] == []
    # A member at version 2 that applies the changes since 2 is where the whole view puts it.
    by_parts, by_whole = _Member(), _Member()
    m.apply_view(by_parts, at2)
    m.apply_view(by_parts, since2)
    m.apply_view(by_whole, whole)
    for node in (by_parts, by_whole):
        assert node.view_version == 4
        assert {(W2[0], 0x21), (W1[0], 0x11)} <= node.core.fenced
        assert node.core.workers[W1[0]] == by_whole.core.workers[W1[0]]


def test_the_head_pushes_changes_only_to_the_incarnation_that_said_it_applied_them(monkeypatch):
    # CLU-071: what a member applied is learnt from its answer to a push, for the
    # incarnation pushed to, never above the version pushed; a new registration
    # (a restarted member) gets the whole view again.
    _fresh_registry(monkeypatch)
    m.register(*W1[:4], 0, W1[4], 0x11)
    pusher = m.PUSHER
    pusher._applied(W1[0], 1, 1)
    assert pusher.applied == {(W1[0], 0x11): 1}
    pusher._applied(W1[0], 3, 2)  # it answered an older version than was sent: nothing learnt
    pusher._applied(W1[0], 2, "2")  # not a version
    assert pusher.applied == {(W1[0], 0x11): 1}
    pusher._applied(W1[0], 2, 9)  # it applied more, from elsewhere: only what was sent counts
    assert pusher.applied == {(W1[0], 0x11): 2}
    m.register(*W1[:4], 0, W1[4], 0x12)  # restarted: starts again from the whole view
    assert pusher.applied == {}


def test_a_views_dead_list_keeps_the_1024_most_recent_deaths(monkeypatch):
    # CLU-032: a worker replaced by a new incarnation is a death like any other: the
    # view lists it last and drops the oldest, never more than 1024 entries.
    head = _fresh_registry(monkeypatch)
    monkeypatch.setattr(m, "DEAD", {(f"h{i}-1-w1", 1): "silent" for i in range(m.DEAD_KEPT)})
    monkeypatch.setattr(m, "INCARNATIONS", {W1[0]: 0x11})
    monkeypatch.setattr(m, "VERSION", [5])
    view = m.register(W1[0], W1[1], 1, "h1", 0, {}, 0x12)
    assert len(view["dead"]) == m.DEAD_KEPT
    assert view["dead"][-1] == (W1[0], 0x11, "replaced by a new incarnation")
    assert ("h0-1-w1", 1, "silent") not in view["dead"]  # the oldest went
    assert view["incarnations"] == {W1[0]: 0x12}


def test_a_membership_result_is_pickled_whatever_its_arguments_were():
    # A caller that sent the view portable still gets learn's answer pickled: every
    # membership result is pickle, so a member needs no second reader        CLU-030
    from refrpc.core.messages import Encoding
    from refrpc.testing import MemoryCluster

    with MemoryCluster(workers=1, driver="head") as c:
        node = c.driver
        view = c.submit("refrpc.runtime._membership:learn", _view(2, [W2]), executor="w1", num_cpus=0,
                        portable=True)
        assert c.get(view, timeout=10) == 2
        assert node.call(lambda: node.core.owned[view.id].value.encoding).result(10) is Encoding.PICKLE


def test_rotate_takes_exactly_64_hex_digits(monkeypatch):
    # CLU-052: `join` is 64 hexadecimal digits, either case, and nothing else: the
    # spaces bytes.fromhex would skip, 0x prefixes and other lengths are refused
    # before anything changes.
    rotated = []

    class Key:
        public = b"K" * 40

        def rotate(self, credential, grace, now):
            rotated.append((credential, grace))

        def join_proofs(self, *args):
            return b""

    head = _fresh_registry(monkeypatch)
    head.own_key = head.cluster_key = Key()
    head.keys = {}
    head.clock = lambda: 0.0
    head.wire = type("Wire", (), {"join_proof": b""})()
    good = "ab" * 32
    for bad in (" " + good, good[:32] + " " + good[32:], "0x" + good[2:], good + "00", good[:-2], "zz" * 32):
        with pytest.raises(ValueError):
            m.rotate(bad, 1.0)
    assert rotated == []
    assert m.rotate(good.upper(), 5.0) is True and rotated == [(bytes.fromhex(good), 5.0)]


def test_a_member_that_is_not_the_head_serves_no_head_calls(monkeypatch):
    # CLU-076: a worker given register_driver (or any head call) fails it and records
    # nothing: before, it kept a registry of its own and started pushing views.
    head = _fresh_registry(monkeypatch)
    head.peer_id = "h2-1-w1"  # a worker, not the head
    started = []
    monkeypatch.setattr(m.PUSHER, "start", lambda node: started.append(node))
    for call in (lambda: m.register_driver("driver-x", "tcp://10.0.0.9:1", "h9", 0, 7),
                 lambda: m.register(*W1[:4], 0, W1[4], 0x11), m.members, m.drivers, m.peers, m.cluster,
                 lambda: m.rotate("ab" * 32, 1.0)):
        with pytest.raises(PermissionError, match="not the head"):
            call()
    assert started == [] and head.members == {} and head.drivers == {} and m.VERSION == [0]
