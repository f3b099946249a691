"""A cluster on several hosts (namespaces of refrpc.testing.hosts): membership that
follows the cluster (CLU-*), actor handles across hosts, a lost host, the head's death.

One bed and one cluster for the whole module (each start costs seconds), used in
order: h1 runs the head and one worker, h2 one worker, h3 the drivers, h4 a worker
that joins later and is then lost. Each worker offers a resource named after its
host, so that a task can be sent to a host on purpose.
"""

from __future__ import annotations

import pytest

from refrpc.testing import hosts, wait_until
from refrpc.testing.hostjobs import BedCluster

WHY = hosts.unavailable()
pytestmark = [pytest.mark.timeout(240), pytest.mark.skipif(bool(WHY), reason=WHY or "")]


@pytest.fixture(scope="module")
def cluster():
    with hosts.HostBed(4) as bed:
        c = BedCluster(bed)
        try:
            c.start_head(1, 1, {"h1": 1})
            c.join(2, 1, {"h2": 1}, rejoin_timeout=0)  # gives up at once when the head is gone (last test)
            c.wait_workers({"h1": 1, "h2": 1})
            c.first = c.driver(3)
            yield c
        finally:
            c.close()
            for h in bed.hosts:  # nothing of the cluster is left on any host
                assert bed.shm(h.name) == [], (h.name, bed.shm(h.name))
                assert len(bed.pids(h.name)) <= 1, (h.name, bed.pids(h.name))  # the host's anchor only


def test_tasks_and_nested_tasks_use_every_host(cluster):
    # refrpc.init(address=head) on h3; tasks, and tasks a task on h1 submits to h2
    d = cluster.first
    out = d("where", n=12, delay=0.02)
    assert not out["errors"] and set(out["values"]) == {"h1", "h2"}
    # h1's worker registered before h2's: it knows h2 from the head's push (CLU-010).
    out = d("nested", n=2, k=3, outer={"h1": 1}, resources={"h2": 1})
    assert not out["errors"] and out["values"] == [["h1", "h2", "h2", "h2"]] * 2
    out = d("data", sizes=[300_000, 2_000_000])  # values made on one host, read on others
    assert not out["errors"] and out["right"] == [True, True]


@pytest.mark.skipif(bool(hosts.loss_unavailable()), reason=hosts.loss_unavailable() or "")
def test_a_lossy_link_slows_the_cluster_but_loses_no_value(cluster):
    # h2's link loses 3% of its packets each way: TCP resends them, so tasks on h2 and
    # values made on one host and read on another all come back right, and nobody is
    # declared dead for the resends' delay.
    d, bed = cluster.first, cluster.bed
    before = d("view")
    bed.degrade(2, 0.03)
    try:
        out = d("where", n=6, resources={"h2": 1}, timeout=60)
        assert out == {"values": ["h2"] * 6, "errors": []}
        # Made on h2, read on h1, across the lossy link. Segmentation offload on the
        # bed's veth links can make 4 MB a few dozen packets, so a round may lose none:
        # send rounds until one was lost (each right), at most five: none lost in five
        # means the drop rules are not working.
        for _ in range(5):
            out = d("data", sizes=[300_000, 4_000_000], make_on={"h2": 1}, read_on={"h1": 1}, timeout=120)
            assert not out["errors"] and out["right"] == [True, True]
            if sum(bed.dropped(h.name) for h in bed.hosts) > 0:
                break
        assert sum(bed.dropped(h.name) for h in bed.hosts) > 0  # packets really were lost on the way
    finally:
        bed.degrade(2, 0)
    after = d("view")
    assert after["workers"] == before["workers"] and after["fenced"] == before["fenced"]


@pytest.mark.skipif(bool(hosts.delay_unavailable()), reason=hosts.delay_unavailable() or "")
def test_a_slow_link_slows_the_cluster_but_declares_nobody_dead(cluster):
    # h2's link holds every packet back 30 ms each way, far below the detection
    # timeout: each task on h2 costs at least the 60 ms round trip, values cross the
    # link right, and nobody is declared dead for the delay.
    d, bed = cluster.first, cluster.bed
    before = d("view")
    bed.delay(2, 0.03)
    try:
        out = d("round_trips", n=5, resources={"h2": 1}, timeout=60)
        assert out["values"] == ["h2"] * 5 and min(out["seconds"]) >= 0.06, out
        out = d("data", sizes=[300_000, 4_000_000], make_on={"h2": 1}, read_on={"h1": 1}, timeout=120)
        assert not out["errors"] and out["right"] == [True, True]
        assert bed.delayed(1) > 0 and bed.delayed(2) > 0
    finally:
        bed.delay(2, 0)
    after = d("view")
    assert after["workers"] == before["workers"] and after["fenced"] == before["fenced"]


def test_a_worker_that_joins_later_is_used_by_earlier_workers_and_drivers(cluster):
    d = cluster.first
    before = d("view")["version"]
    cluster.join(4, 1, {"h4": 1})
    cluster.wait_workers({"h1": 1, "h2": 1, "h4": 1})
    assert wait_until(lambda: any(w.startswith("h4-") for w in d("view")["workers"]), 30)
    assert d("view")["version"] > before  # CLU-008
    assert d("where", n=2, resources={"h4": 1}, timeout=30) == {"values": ["h4", "h4"], "errors": []}
    for outer in ("h1", "h2"):
        out = d("nested", n=1, k=2, outer={outer: 1}, resources={"h4": 1}, timeout=30)
        assert out == {"values": [[outer, "h4", "h4"]], "errors": []}


def test_an_actor_handle_passed_to_tasks_on_other_hosts(cluster):
    # log = Log.remote() on h2; add_through.remote(log, caller, 5) on h4 and h1;
    # each caller's calls run in its order (ACT-003); the actor goes with the last handle (ACT-009)
    d = cluster.first
    made = d("actor", resources={"h2": 0.5})
    assert made["host"] == "h2"
    out = d("through", n=3, k=5, resources={"h4": 0.3})
    assert out["hosts"] == ["h4"] * 3
    out = d("through", n=2, k=5, resources={"h1": 0.4})
    assert out["hosts"] == ["h1"] * 2
    by_caller: dict[str, list[int]] = {}
    for caller, i in out["entries"]:
        by_caller.setdefault(caller, []).append(i)
    assert by_caller == {f"c{i}": list(range(5)) * (2 if i < 2 else 1) for i in range(3)}
    assert made["id"] in d("actors")
    d("drop_actor")  # the driver's handle was the last one: the tasks' copies are gone
    assert wait_until(lambda: made["id"] not in d("actors"), 30), d("actors")


def test_a_lost_host_is_fenced_by_every_member_also_without_a_session(cluster):
    # A second driver that never talked to h4 learns of its death from the head (CLU-012).
    fresh = cluster.driver(3)
    assert any(w.startswith("h4-") for w in fresh("view")["workers"])
    cluster.bed.lose(4)
    h4 = [p for p, h in cluster.workers() if h == "h4"]
    assert wait_until(lambda: not [p for p, h in cluster.workers() if h == "h4"], 30)
    assert wait_until(lambda: set(h4) <= set(fresh("view")["fenced"]), 30), fresh("view")
    assert not set(h4) & set(fresh("view")["dead"])  # fenced without a session
    out = fresh("where", n=6, retries=0, timeout=30)  # nothing goes to the lost host
    assert not out["errors"] and set(out["values"]) <= {"h1", "h2"}
    # h1's worker fenced it too: a task it sends to h4 fails at once (TASK-022), no hang.
    out = fresh("nested", n=1, k=1, outer={"h1": 1}, resources={"h4": 1}, timeout=60, bound=90)
    assert out["errors"] and out["values"] == [None]
    fresh.close()


def test_the_head_s_death_ends_the_cluster_with_typed_errors(cluster):
    # The head's host is lost: the workers that joined it leave, try to join it again
    # (here: once) and give up (CLU-016); a driver's calls end with typed errors, never a hang.
    d = cluster.first
    cluster.bed.lose(1)
    out = d("where", n=3, timeout=30, bound=90)  # h2's worker may still run them, or be gone
    assert all(v == "h2" for v in out["values"] if v is not None)
    assert len(out["errors"]) == out["values"].count(None)
    joined = cluster.joined["h2"]
    assert joined.wait(90) == 0
    log = "".join(cluster.logs["h2"])
    assert "could not register with its head" in log and "is gone" in log, log
    out = d("where", n=3, timeout=30, bound=90)  # no worker left: typed errors at once
    assert out["values"] == [None] * 3 and out["errors"] == ["RefRPCError"] * 3
