"""Broadcast through relays (LOC-020..LOC-023, FET-040..FET-043).

Seven nodes in this process over tcp://127.0.0.1: an owner and six consumers on
three "hosts" (two per shared-memory namespace, so a consumer can map only the
copies of its own host). Every consumer runs a task that takes the same stored
value; the owner lists each consumer that asks after another as a relay, so the
copies flow down a chain of fetchers instead of six times out of the owner.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator

import pytest

from refrpc.core import events as ev
from refrpc.core.messages import Encoding, Value
from refrpc.runtime import Node, _fetch, working_node
from refrpc.serialization import deserialize
from refrpc.store import list_segments
from refrpc.testing import wait_until
from refrpc.transport import FaultRule

pytestmark = pytest.mark.timeout(90)

SIZE = 4 << 20
CONSUMERS = [f"w{i}" for i in range(1, 7)]


class Hosts:
    def __init__(self) -> None:
        self.namespaces = [f"bc{secrets.token_hex(3)}" for _ in range(4)]
        self.owner = Node("owner", "tcp://127.0.0.1:0", self.namespaces[0], insecure=True)  # no cluster key on 127.0.0.1
        self.workers: dict[str, Node] = {}
        self.executors = []
        for i, name in enumerate(CONSUMERS):
            node, executor = working_node(name, "tcp://127.0.0.1:0", self.namespaces[1 + i // 2], insecure=True)
            node.fetcher.chunk_bytes = 64 * 1024  # many chunks, so relays serve while they receive
            self.workers[name] = node
            self.executors.append(executor)
            self.owner.handle_soon(lambda sid, n=name, a=node.address: ev.AddPeer(sid, n, a, 1)).result()

    def put(self, data: bytes) -> str:
        node = self.owner

        def do() -> str:
            oid = node.ids.next()
            size = node.store.put(oid, Value(Encoding.RAW, data))
            node.handle(ev.Put(node.sid(), oid, Value(Encoding.RAW, b""), True, size))
            return oid

        return node.call(do).result()

    def consume(self, oid: str, retries: int = 0, names: list[str] = CONSUMERS) -> list[str]:
        """digest.remote(x) on each of ``names``; the return ids."""
        node = self.owner

        def do() -> list[str]:
            out = []
            for name in names:
                task_id, rids = node.ids.task(1)
                node.handle(ev.Submit(node.sid(), task_id, "remote_fixtures:digest", (ev.ArgSpec(object_id=oid),), rids,
                                      max_retries=retries, executor=name))
                out.append(rids[0])
            return out

        return node.call(do).result()

    def outcome(self, rid: str) -> object:
        res = self.owner.get_result(rid).result(60)
        if res.error is not None:
            return res.error
        return deserialize(res.value, ref_factory=lambda d: d)

    def drop(self, *oids: str) -> None:
        self.owner.handle_soon(*[lambda sid, o=o: ev.DropRef(sid, o) for o in oids]).result()

    def stop(self) -> None:
        for executor in self.executors:
            executor.stop()
        for node in [self.owner, *self.workers.values()]:
            node.stop()


@pytest.fixture
def hosts(monkeypatch) -> Iterator[Hosts]:
    monkeypatch.setattr(_fetch, "RANGE_BYTES", 512 * 1024)  # several ranges in flight (FET-015)
    h = Hosts()
    try:
        yield h
    finally:
        h.stop()
        for ns in h.namespaces:
            assert not list_segments(ns), ns


def test_six_consumers_get_the_value_mostly_from_each_other(hosts):
    # x = put(4 MiB); [digest.remote(x) on w1..w6] -- three hosts, two consumers each.
    # Every consumer gets the right bytes (FET-010), and the owner, instead of sending
    # six copies, sends about one: the others come from relays          LOC-021, FET-040
    data = os.urandom(SIZE)
    x = hosts.put(data)
    rids = hosts.consume(x)
    want = hashlib.sha256(data).hexdigest()
    assert [hosts.outcome(r) for r in rids] == [want] * len(CONSUMERS)
    served_by_owner = sum(hosts.owner.fetcher.served.values())
    relayed = sum(w.fetcher.relayed for w in hosts.workers.values())
    served_by_consumers = sum(sum(w.fetcher.served.values()) for w in hosts.workers.values())
    assert served_by_owner <= 2 * SIZE, (served_by_owner, hosts.owner.fetcher.served)
    assert served_by_consumers >= (len(CONSUMERS) - 2) * SIZE
    assert relayed > 0  # served while still being received (FET-042), not only once complete
    # Every consumer ends as a location (AddLocation, LOC-022), not a relay.
    entry = lambda: hosts.owner.call(lambda: (dict(hosts.owner.core.owned[x].relays), list(hosts.owner.core.owned[x].locations))).result()  # noqa: E731
    relays, _ = entry()
    assert relays == {}
    hosts.drop(x, *rids)


def test_a_request_that_comes_before_the_relay_fetches_waits_for_its_fetch(hosts, monkeypatch):
    # x = put(4 MiB); digest.remote(x) on w1, whose fetch begins late (its executor is
    # slow to start it); then digest.remote(x) on w3, to whom the owner lists w1 as a
    # relay. w3's request reaches w1 before w1 fetches anything: w1 holds it, then
    # serves it from its own fetch, and the owner sends one copy, not two     FET-042
    import threading

    # What is checked is the parked request; on a loaded machine a relay stalled for the
    # progress timeout would send w3 to the owner instead (FET-006), a different path.
    monkeypatch.setattr(_fetch, "PROGRESS_TIMEOUT_S", 60.0)
    data = os.urandom(SIZE)
    x = hosts.put(data)
    w1, w3 = hosts.workers["w1"], hosts.workers["w3"]
    started = threading.Event()
    fetch = w1.fetch

    def late_fetch(object_id, locations):
        started.set()
        assert wait_until(lambda: w1.call(lambda: bool(w1.fetcher._parked)).result(), 20)  # w3's request waits
        return fetch(object_id, locations)

    monkeypatch.setattr(w1, "fetch", late_fetch)
    rids = hosts.consume(x, names=["w1"])
    assert started.wait(20)
    rids += hosts.consume(x, names=["w3"])
    want = hashlib.sha256(data).hexdigest()
    assert [hosts.outcome(r) for r in rids] == [want, want]
    assert w1.fetcher.served.get("w3", 0) >= SIZE
    assert hosts.owner.fetcher.served.get("w3", 0) == 0
    hosts.drop(x, *rids)


def test_a_relay_that_dies_mid_transfer_leaves_right_values_or_typed_errors(hosts):
    # x = put(4 MiB); digest.remote(x) on w1..w6; w1, the first fetcher and so the
    # relay of the chain, receives two chunks and then nothing; then it is cut off
    # for good (its heartbeats stop). Those that fetched through it go on from the next
    # source of their answer (FET-041, FET-006); w1's own task runs again elsewhere
    # (RPC-004). Nobody hangs, nobody gets spliced bytes.
    data = os.urandom(SIZE)
    x = hosts.put(data)
    w1 = hosts.workers["w1"]
    w1.set_faults([FaultRule("drop", "receive", "FetchChunk", nth=3, count=None)]).result(10)
    rids = hosts.consume(x, retries=1, names=CONSUMERS[:1])
    assert wait_until(lambda: w1.fetcher.received > 0, 30)  # w1 is fetching (and stalled)
    rids += hosts.consume(x, retries=1, names=CONSUMERS[1:])
    # The chain forms behind w1 (w2 asks w1 first and gets what w1 has), then w1 dies.
    assert wait_until(lambda: sum(w1.fetcher.served.values()) > 0, 30)
    w1.set_faults([FaultRule("drop", "send", count=None), FaultRule("drop", "receive", count=None)]).result(10)
    want = hashlib.sha256(data).hexdigest()
    outcomes = [hosts.outcome(r) for r in rids]
    for name, got in zip(CONSUMERS, outcomes):
        assert got == want or (hasattr(got, "code") and got.code is not None), (name, got)
    assert outcomes.count(want) >= len(CONSUMERS) - 1, outcomes
    relays = hosts.owner.call(lambda: list(hosts.owner.core.owned[x].relays)).result()
    assert "w1" not in relays  # declared dead: never listed again (LOC-022)
    hosts.drop(x, *rids)
    w1.set_faults([]).result(10)


def _datapath():
    import importlib
    import sys
    from pathlib import Path

    bench = str(Path(__file__).resolve().parents[2] / "tools" / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("datapath")


@pytest.mark.timeout(180)
def test_broadcast_on_the_host_bed_and_a_relay_host_lost_mid_transfer():
    # The multi-host test bed: the owner on h1, four consumers on h2..h5, each host
    # with its own network stack and /dev/shm, links shaped to 100 Mbit/s. A clean
    # broadcast of 8 MiB: every consumer right, the owner sends about one copy
    # (LOC-021, FET-040). Then again, and the first fetcher (the head of the relay
    # chain: whichever consumer asked the owner first) loses its host for good once
    # it has received a quarter: the others end with the right bytes (FET-041: on
    # from the next source of their answer), its own task with a typed error, and
    # nothing hangs.
    datapath = _datapath()
    why = datapath.bed_unavailable()
    if why:
        pytest.skip(why)
    hosts = datapath.BedHosts(5, "100mbit")
    try:
        res = datapath.run_scenario(hosts, 4, {"kind": "loss", "bytes": 8 << 20, "reps": 1})
    finally:
        hosts.close()
    assert res["clean_owner_sent"] <= 1.5 * (8 << 20), res
    outcomes, victim = res["outcomes"], res["victim"]
    assert sorted(outcomes) == ["c1", "c2", "c3", "c4"] and victim in outcomes
    assert all(outcomes[c] is True for c in outcomes if c != victim), outcomes
    assert outcomes[victim] is True or isinstance(outcomes[victim], str), outcomes
