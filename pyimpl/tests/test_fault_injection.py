"""Lost, duplicated, delayed messages and a partition, on real processes and sockets.

The simulator checks the protocol under injected faults in one process; these
tests check the runtime: the fault rules (``refrpc.transport.FaultRule``) act on
real ZeroMQ messages between a driver and worker processes, and each test
asserts what a program depends on: a task runs exactly as often as the spec
says, ``get`` returns the value or the error the spec names, values are
reclaimed when the last ref goes and never before, and nothing is left behind
(no owned entry at the driver, no shared-memory segment on the host).

Rules reach the driver at runtime (``node.set_faults``) and the workers at
start (``REFRPC_FAULTS``, with ``at`` naming the worker). The first tests check
the fault injector itself, in one process, over an in-memory network.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import pytest

import refrpc
from refrpc import codec
from refrpc.core import events as ev
from refrpc.core.messages import Envelope, Goodbye, Heartbeat, TaskReply
from refrpc.store import list_segments, segment_name
from refrpc.testing import faults_report, set_faults, wait_until
from refrpc.transport import (
    FAULTS_ENV,
    FaultRule,
    FaultyTransport,
    MemoryNetwork,
    dump_faults,
    faults_from_env,
    parse_faults,
)

import fault_fixtures as ff
import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)

#: Large enough to be stored in shared memory, not inline (TASK-004, OBJ-009).
BIG = 300_000


# ------------------------------------------------------------------ the injector itself
def frames(sender: str, receiver: str, body: Any = None) -> list[bytes]:
    return codec.encode(Envelope(sender, 1, receiver, 2, seq=1, ack=0, body=body or Heartbeat()))


def test_peek_reads_sender_receiver_and_type_without_decoding() -> None:
    small = frames("driver", "w1", Goodbye("bye"))
    big = frames("w1", "driver", Goodbye("x" * 200_000))  # frame 0 over 64 KiB
    assert codec.peek(small) == ("driver", "w1", "Goodbye")
    assert codec.peek([memoryview(big[0])]) == ("w1", "driver", "Goodbye")
    reply = frames("w2", "driver", TaskReply("t1", 1, (), ()))
    assert codec.peek(reply) == ("w2", "driver", "TaskReply")
    assert codec.peek([b"not a capnp message"]) == ("", "", "")


def test_rules_are_checked_and_travel_as_json() -> None:
    rules = (
        FaultRule("drop", "receive", "SubmitTask", at="w1"),
        FaultRule("delay", "send", "ReleaseBorrows", peer="driver", count=None, delay_ms=300),
    )
    assert parse_faults(dump_faults(rules)) == rules
    assert faults_from_env("w1", {FAULTS_ENV: dump_faults(rules)}) == rules
    assert faults_from_env("w2", {FAULTS_ENV: dump_faults(rules)}) == rules[1:]
    assert faults_from_env("w1", {}) == ()
    # A typo must fail loudly, not turn a fault test into a test of nothing.
    for bad in (
        {"action": "drop", "message": "TaskResult"},
        {"action": "lose"},
        {"action": "drop", "direction": "recv"},
        {"action": "delay"},
        {"action": "drop", "nth": 0},
        {"action": "drop", "peers": "w1"},
    ):
        with pytest.raises(ValueError):
            FaultRule.from_dict(bad)
    with pytest.raises(ValueError):
        parse_faults("drop everything")


def test_drop_duplicate_and_delay_act_on_the_chosen_messages_only() -> None:
    net = MemoryNetwork()
    a, b = net.transport("a"), net.transport("b")
    now = [0.0]
    faulty = FaultyTransport(
        a,
        [
            FaultRule("drop", "send", "Heartbeat", peer="b", nth=2),          # the 2nd heartbeat
            FaultRule("duplicate", "send", "Goodbye"),                        # the 1st goodbye
            FaultRule("delay", "send", "TaskReply", count=None, delay_ms=100),
        ],
        clock=lambda: now[0],
    )
    for body in (Heartbeat(), Heartbeat(), Heartbeat(), Goodbye("1"), Goodbye("2"), TaskReply("t", 1, (), ())):
        faulty.send("b", frames("a", "b", body))
    got = [codec.decode(m).body for m in iter(lambda: b.recv(0), None)]
    assert [type(x).__name__ for x in got] == ["Heartbeat", "Heartbeat", "Goodbye", "Goodbye", "Goodbye"]
    assert [x.reason for x in got if isinstance(x, Goodbye)] == ["1", "1", "2"]
    assert faulty.holding == 1 and faulty.applied == [1, 1, 1] and faulty.matched == [3, 2, 1]
    now[0] = 0.05
    faulty.flush()
    assert b.recv(0) is None  # not due yet
    now[0] = 0.1
    faulty.flush()
    assert type(codec.decode(b.recv(0)).body).__name__ == "TaskReply"
    assert faulty.holding == 0


def test_receive_rules_drop_duplicate_and_reorder() -> None:
    net = MemoryNetwork()
    a, b = net.transport("a"), net.transport("b")
    now = [0.0]
    faulty = FaultyTransport(
        b,
        [
            FaultRule("delay", "receive", "Goodbye", nth=1, delay_ms=50),  # overtaken by the next
            FaultRule("duplicate", "receive", "Goodbye", nth=2),
            FaultRule("drop", "receive", peer="c", count=None),            # everything from c
        ],
        clock=lambda: now[0],
    )
    a.send("b", frames("a", "b", Goodbye("first")))
    a.send("b", frames("a", "b", Goodbye("second")))
    a.send("b", frames("c", "b", Goodbye("from c")))
    got = [codec.decode(m).body.reason for m in iter(lambda: faulty.recv(0), None)]
    assert got == ["second", "second"]
    assert not faulty.poll(0)
    now[0] = 0.06
    assert faulty.poll(0)
    assert codec.decode(faulty.recv(0)).body.reason == "first"
    assert faulty.recv(0) is None and faulty.applied == [1, 1, 1]


# ------------------------------------------------------------------ real processes
@contextlib.contextmanager
def cluster(workers: int, monkeypatch: pytest.MonkeyPatch, *worker_rules: FaultRule) -> Iterator[Any]:
    """A local cluster whose workers start with ``worker_rules`` (REFRPC_FAULTS)."""
    if worker_rules:
        monkeypatch.setenv(FAULTS_ENV, dump_faults(worker_rules))
    refrpc.init(workers)
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    try:
        yield refrpc.api._ctx.node
    finally:
        refrpc.shutdown()


def on_workers(rule: FaultRule, workers: int) -> list[FaultRule]:
    """The same rule for each worker w1..wN (never the driver)."""
    return [dataclasses.replace(rule, at=f"w{i}") for i in range(1, workers + 1)]


def submit_to(peer: str, function: str, *args: Any, max_retries: int = 0) -> refrpc.Ref[Any]:
    """``f.remote(*args)`` run first on ``peer`` (placement would pick any worker);
    a retry (RPC-004) goes wherever placement sends it."""
    api = refrpc.api
    node = api._node()
    specs, keep = refrpc.runtime._refs.arg_specs(node, args)
    task_id, rids = node.new_task_ids(1)
    node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, function, tuple(specs), rids, max_retries, False, "", peer))
    del keep
    return api.Ref(node, rids[0], counted=True)


RECORD = "fault_fixtures:record"
BLOCKING = "fault_fixtures:record_then_wait"


def executions(log: Path) -> list[tuple[str, str]]:
    """(token, peer) for each time a `record` task ran."""
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def stored_at_driver(node: Any, object_id: str) -> bool:
    """Whether the driver still owns ``object_id`` and its segment still exists."""
    namespace = refrpc.api._ctx.cluster.namespace
    owned = node.call(lambda: object_id in node.core.owned).result()
    return bool(owned) and segment_name(namespace, object_id, "driver") in list_segments(namespace)


def assert_nothing_left(node: Any) -> None:
    """The driver owns nothing and no segment is left on the host (GC, LOC-004)."""
    namespace = refrpc.api._ctx.cluster.namespace
    assert wait_until(lambda: node.call(lambda: not node.core.owned and not node.core.tasks).result(), 30), node.call(node.core.table).result()
    assert wait_until(lambda: not list_segments(namespace), 30), list_segments(namespace)


def test_a_lost_request_is_retransmitted_and_runs_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SES-003: the driver's session retransmits a SubmitTask the network lost;
    SES-002, RPC-001: it runs exactly once and the caller gets its value."""
    # x = record.remote(log, "a")  with the first SubmitTask to w1 lost on the wire
    log = tmp_path / "runs"
    with cluster(2, monkeypatch) as node:
        assert node.transport is node.wire  # no rules: the loop talks to ZeroMQ directly
        node.set_faults([FaultRule("drop", "send", "SubmitTask", peer="w1")]).result()
        x = submit_to("w1", RECORD, str(log), "a")
        assert refrpc.get(x, timeout=30) == "a"
        assert executions(log) == [("a", "w1")]
        report = faults_report()
        assert report["applied"] == [1]  # it was lost ...
        assert report["matched"][0] >= 2  # ... and sent again (the retransmission)
        del x
        assert_nothing_left(node)


def test_a_lost_reply_is_retransmitted_and_the_task_not_run_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SES-003: w1's session retransmits the TaskReply the network lost (inline and
    stored returns); RPC-001, RPC-002: the task is not executed again."""
    # x = record.remote(log, "a"); y = record.remote(log, "b", BIG)  with w1's first two replies lost
    log = tmp_path / "runs"
    with cluster(2, monkeypatch, FaultRule("drop", "send", "TaskReply", peer="driver", count=2, at="w1")) as node:
        x = submit_to("w1", RECORD, str(log), "a")
        y = submit_to("w1", RECORD, str(log), "b", BIG)
        assert refrpc.get(x, timeout=30) == "a"
        assert refrpc.get(y, timeout=30) == b"b" * BIG
        assert sorted(executions(log)) == [("a", "w1"), ("b", "w1")]
        report = faults_report("w1")
        assert report["applied"] == [2] and report["matched"][0] >= 4, report
        assert sorted(executions(log)) == [("a", "w1"), ("b", "w1")]
        del x, y
        assert_nothing_left(node)


@pytest.mark.parametrize("late", [False, True], ids=["back-to-back", "late"])
def test_a_duplicated_request_runs_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, late: bool) -> None:
    """SES-002, RPC-001: a SubmitTask delivered twice runs once. "late": the second
    copy reaches w1 a second after the first, when the task has been replied to and
    its reply acknowledged (RPC-002 lets w1 forget it); it still does not run again."""
    # xs = [record.remote(log, i) for i in range(4)]  with every SubmitTask sent twice
    log = tmp_path / "runs"
    late_rules = [FaultRule("delay", "receive", "SubmitTask", nth=2, count=1, delay_ms=1000, at="w1")] if late else []
    with cluster(2, monkeypatch, *late_rules) as node:
        node.set_faults([FaultRule("duplicate", "send", "SubmitTask", peer="w1", count=None)]).result()
        xs = [submit_to("w1", RECORD, str(log), f"t{i}") for i in range(4)]
        assert refrpc.get(xs, timeout=30) == [f"t{i}" for i in range(4)]
        assert faults_report()["applied"][0] >= 4
        if late:
            # Wait for the late copy to have been delivered to w1.
            assert wait_until(lambda: (r := faults_report("w1"))["applied"] == [1] and r["holding"] == 0, 30)
            assert refrpc.get(submit_to("w1", RECORD, str(log), "after"), timeout=30) == "after"
        expected = [(f"t{i}", "w1") for i in range(4)] + ([("after", "w1")] if late else [])
        assert sorted(executions(log)) == sorted(expected)
        del xs
        assert_nothing_left(node)


def test_a_duplicated_reply_is_seen_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SES-002: every TaskReply w1 sends arrives twice; the caller sees one result
    per task, no error, and nothing leaks: the stored returns are freed once their
    refs go (the duplicate does not register a second copy or a second task)."""
    # xs = [record.remote(log, i, BIG if i % 2 else 0) for i in range(4)]  with replies doubled
    log = tmp_path / "runs"
    with cluster(2, monkeypatch) as node:
        # Set on the running worker by a control call (the other tests use REFRPC_FAULTS).
        set_faults([FaultRule("duplicate", "send", "TaskReply", count=None)], peer="w1")
        xs = [submit_to("w1", RECORD, str(log), f"t{i}", BIG if i % 2 else 0) for i in range(4)]
        values = refrpc.get(xs, timeout=30)
        assert values == ["t0", b"t1" * (BIG // 2), "t2", b"t3" * (BIG // 2)]
        assert sorted(executions(log)) == [(f"t{i}", "w1") for i in range(4)]
        assert faults_report("w1")["applied"][0] >= 4
        del xs, values
        assert_nothing_left(node)


DELAY_MS = 400


def test_delayed_registration_and_release_reclaim_exactly_when_the_last_ref_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BOR-007: an actor that keeps a ref registers itself before it replies; its
    RegisterBorrower is delayed, so the driver's only hold meanwhile is the
    submitted-task ref (BOR-006): the value must survive it (OWN-004, never
    early). BOR-005: the actor's ReleaseBorrows is delayed too; the value is
    reclaimed once it arrives (OWN-005), and not before."""
    # x = put(big); k = Keeper.remote(); k.keep.remote(shared(x)); del x; ...; k.forget.remote()
    delays = [
        FaultRule("delay", "send", "RegisterBorrower", count=None, delay_ms=DELAY_MS),
        FaultRule("delay", "send", "ReleaseBorrows", count=None, delay_ms=DELAY_MS),
    ]
    with cluster(2, monkeypatch, *[r for rule in delays for r in on_workers(rule, 2)]) as node:
        x = refrpc.put(b"v" * BIG)
        xid = x.id
        keeper = ff.Keeper.remote()
        kept = keeper.keep.remote(refrpc.shared(x))
        del x  # now only the submitted task holds it, until the (delayed) grant
        assert refrpc.get(kept, timeout=30) == 1
        host = refrpc.get(keeper.host.remote(), timeout=30)

        assert stored_at_driver(node, xid)
        assert refrpc.get(keeper.sizes.remote(), timeout=30) == [BIG]
        assert stored_at_driver(node, xid)  # held by the actor's grant alone
        assert faults_report(host)["applied"][0] >= 1  # the registration was delayed
        assert refrpc.get(keeper.forget.remote(), timeout=30) == 0
        # The release is on its way, held back DELAY_MS; then the value goes.
        assert wait_until(lambda: not stored_at_driver(node, xid), 30)
        assert faults_report(host)["applied"][1] >= 1
        del kept, keeper
        assert_nothing_left(node)


def test_a_forwarding_chain_under_reordered_ownership_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ownership section 7.3: a ref forwarded through two workers while every
    RegisterBorrower, BorrowerRegistered and ReleaseBorrows is delayed, so that
    messages on different sessions overtake each other. BOR-002 (register before
    send) and BOR-007 keep the value alive while anyone can reach it; once the
    last ref goes it is reclaimed, and nothing is left."""
    # x = put(big); outer = forward.remote(shared(x)); del x
    # [y] = get(outer)   # y: a worker's object whose value holds x
    # [x2] = get(y); get(x2)
    delays = [
        FaultRule("delay", "send", "RegisterBorrower", count=None, delay_ms=300),
        FaultRule("delay", "send", "ReleaseBorrows", count=None, delay_ms=500),
    ]
    worker_rules = [r for rule in delays for r in on_workers(rule, 2)]
    with cluster(2, monkeypatch, *worker_rules) as node:
        node.set_faults([FaultRule("delay", "send", "BorrowerRegistered", count=None, delay_ms=300)]).result()
        x = refrpc.put(b"f" * BIG)
        xid = x.id
        outer = rf.forward.remote(refrpc.shared(x))
        del x
        (y,) = refrpc.get(outer, timeout=30)
        del outer

        # Let every delayed message land: x is then reachable only through y.
        assert wait_until(lambda: all(faults_report(w)["holding"] == 0 for w in ("w1", "w2")), 30)
        assert stored_at_driver(node, xid)
        (x2,) = refrpc.get(y, timeout=30)
        assert refrpc.get(x2, timeout=30) == b"f" * BIG
        applied = [faults_report(w)["applied"] for w in ("w1", "w2")]
        assert sum(a[0] for a in applied) >= 1, applied  # registrations were delayed
        assert faults_report()["applied"][0] >= 1
        del x2, y
        assert wait_until(lambda: not stored_at_driver(node, xid), 30)
        assert_nothing_left(node)


def test_a_partitioned_worker_is_declared_dead_and_stops_when_the_partition_heals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every message from w1 to the driver is lost for longer than the detection
    timeout, while w1 runs a task. LIV-003: the driver declares w1 dead. RPC-004:
    the retryable task is run again on w2 (at-least-once: it had started on w1);
    the task with max_retries=0 fails with WorkerDiedError naming w1. LIV-005:
    while cut off, w1 runs on; once the partition heals, the driver answers w1's
    next message with DECLARED_DEAD (SES-017) and w1 stops: its process exits.

    Why the exit can only be LIV-005: the driver heartbeats every 10 s, so w1
    would take 60 s to find it silent (LIV-007: the remote's interval times the
    local miss limit), and w1 has no unacknowledged message that could stall its
    session (SES-012): its only task is still running. The driver still finds w1
    silent after 6 x 250 ms.
    """
    # a = record_then_wait.options(max_retries=1).remote(log, "a", gate)
    # b = record_then_wait.remote(log, "b", gate)   # both on w1, which is then cut off
    config = refrpc.api._config
    monkeypatch.setattr(refrpc.api, "_config", lambda: dataclasses.replace(config(), heartbeat_interval_ms=10_000))
    log, gate = tmp_path / "runs", tmp_path / "gate"
    with cluster(2, monkeypatch) as node:
        w1 = refrpc.api._ctx.cluster.processes["w1"]
        # A live session first: the partition then hits heartbeats and acks, not a handshake.
        assert refrpc.get(submit_to("w1", RECORD, str(log), "warm-up"), timeout=30) == "warm-up"
        node.set_faults([FaultRule("drop", "receive", peer="w1", count=None)]).result()
        a = submit_to("w1", BLOCKING, str(log), "a", str(gate), max_retries=1)
        b = submit_to("w1", BLOCKING, str(log), "b", str(gate), max_retries=0)
        with pytest.raises(refrpc.WorkerDiedError, match="w1"):
            refrpc.get(b, timeout=30)
        assert node.call(lambda: node.core.remotes["w1"].state).result() == "dead"
        # Declared dead, but alive and cut off: it does not stop by itself.
        assert not wait_until(lambda: w1.poll() is not None, 3)
        node.set_faults([]).result()  # the partition heals
        assert node.transport is node.wire  # and injection is off again
        assert wait_until(lambda: w1.poll() is not None, 30), "w1 never learned it was declared dead"
        gate.touch()
        assert refrpc.get(a, timeout=30) == "a"
        runs = executions(log)
        assert ("a", "w1") in runs and ("a", "w2") in runs and len([r for r in runs if r[0] == "a"]) == 2  # RPC-004, RPC-009
        assert [r for r in runs if r[0] == "b"] == []  # queued behind a on w1, never retried
        assert refrpc.get(submit_to("w2", RECORD, str(log), "after"), timeout=30) == "after"
        del a, b
        assert_nothing_left(node)
