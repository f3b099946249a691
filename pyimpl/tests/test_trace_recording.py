"""Recording traces (spec trace-format.md): pyimpl writes one canonical trace per
process when asked, and the traces of a run describe it consistently.

A user turns recording on with ``refrpc.init(trace_dir=...)``, the environment
variable ``REFRPC_TRACE_DIR`` or ``refrpc start --trace-dir``, then hands the
directory to the trace inspector. What the inspector relies on is checked here on
real processes: every file reads back, records are numbered without gaps and
timed monotonically, each send pairs with its receive in the other peer's file by
the envelope alone, the core's transitions appear, a worker killed with SIGKILL
leaves a readable trace, and nothing is written when recording is off. The core's
trace hooks are also checked in simulation, where every run can be compared with
the same run untraced.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import refrpc
from refrpc import api, codec
from refrpc.codec import TraceEncoder, TraceFormatError, TraceKind, TraceRecord, read_trace, trace_file_name
from refrpc.core import events as ev
from refrpc.core import tables
from refrpc.core.messages import PROTOCOL_MAJOR, PROTOCOL_MINOR
from refrpc.testing import WORKLOADS, Faults, run, wait_until
from refrpc.testing._runner import cluster_for
from refrpc.testing._sim import RandomChooser

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)
SRC = Path(refrpc.__file__).resolve().parents[1]
TRACE_ENV = "REFRPC_TRACE_DIR"
#: Event names of the spec's registry (trace-format.md section 4); others must start with x- (TRC-007).
REGISTRY = {"transition", "discarded", "peer-declared-dead", "fail-stop", "hold", "grant-added", "grant-removed",
            "location-added", "location-removed", "relay-added", "relay-removed", "copy-stored", "copy-dropped",
            "program"}
#: The state an entry of each table is in when it first appears (state-machines.md):
#: creating an entry is not a transition, so a trace shows none.
INITIAL = {"owner-object": "pending", "borrower-object": "unresolved", "owner-task": "submitted",
           "executor-task": "resolving", "peer": "connecting"}
#: States no event leaves: an entry seen again after one is a new entry.
TERMINAL = {state for table in tables.ALL_TABLES.values() for row in table.values() for state, _ in row.values()
            if not table.get(state)}


# ---------------------------------------------------------------- reading traces
def read_file(path: Path) -> tuple[list[TraceRecord], TraceFormatError | None]:
    """Every complete record, and the error that ended reading early (if any)."""
    records: list[TraceRecord] = []
    with open(path, "rb") as f:
        try:
            for r in read_trace(f):
                records.append(r)
        except TraceFormatError as exc:
            return records, exc
    return records, None


def read_dir(directory: Path) -> dict[str, list[TraceRecord]]:
    """peer -> its complete trace; every file must read to its end."""
    out = {}
    for path in sorted(directory.glob("*.rrtrace")):
        records, error = read_file(path)
        assert error is None, f"{path.name}: {error}"
        out[records[0].peer] = records
    return out


def header(frame0: bytes) -> dict[str, Any]:
    """The envelope header and message type of frame 0 (out-of-band payloads are not in a trace)."""
    with codec.schema().Envelope.from_bytes(frame0) as e:
        return {"sender": e.sender, "senderIncarnation": e.senderIncarnation, "receiver": e.receiver,
                "receiverIncarnation": e.receiverIncarnation, "seq": e.seq, "ack": e.ack, "type": e.body.which()}


def events(records: list[TraceRecord], name: str) -> Iterator[tuple[TraceRecord, dict[str, Any]]]:
    for r in records:
        if r.kind == TraceKind.EVENT and r.event_name == name:
            yield r, json.loads(r.detail)


def messages(records: list[TraceRecord], kind: TraceKind) -> Iterator[tuple[TraceRecord, dict[str, Any]]]:
    for r in records:
        if r.kind == kind:
            yield r, header(r.envelope)


def transitions_chain(records: list[TraceRecord]) -> list[str]:
    """Problems with the transitions of one trace: each must be legal and leave the
    state the entry is in (the last transition's end; a new entry's initial state)."""
    problems = []
    state: dict[tuple, str] = {}
    for r in records:
        if r.kind != TraceKind.EVENT or r.event_name != "transition":
            continue
        d = json.loads(r.detail)
        key = (d["table"], d["key"], d.get("attempt", 0) if d["table"] == "executor-task" else 0)
        if state.get(key, "deleted") in TERMINAL:
            state[key] = INITIAL[d["table"]]
        if d["event"] == "put":
            state[key] = "ready"  # a put creates the entry in ready; the put row records it
        row = tables.ALL_TABLES[d["table"]].get(d["from"], {}).get(d["event"])
        if row is None or row != (d["to"], d["requirement"]):
            problems.append(f"record {r.record_no}: illegal {d}")
        if state.get(key) != d["from"]:
            problems.append(f"record {r.record_no}: {key} was {state.get(key)}, the transition leaves {d['from']}")
        state[key] = d["to"]
    return problems


# ---------------------------------------------------------------- the codec's fast writer
names = st.text(max_size=12)
u64 = st.integers(0, 2**64 - 1)


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(peer=st.text(min_size=1, max_size=12), incarnation=u64, record_no=u64, ns=u64, kind=st.sampled_from(list(TraceKind)),
       remote=names, remote_inc=u64, seq=u64, envelope=st.binary(max_size=40), event=names, oid=names, tid=names,
       detail=names, major=st.integers(0, 2**16 - 1), minor=st.integers(0, 2**16 - 1), impl=names)
def test_fast_encoder_writes_records_any_reader_reads_back_exactly(peer, incarnation, record_no, ns, kind, remote,
                                                                   remote_inc, seq, envelope, event, oid, tid, detail,
                                                                   major, minor, impl) -> None:
    # TRC-001: the recorder's hand-laid records are standard Cap'n Proto TraceRecords.
    data = TraceEncoder(peer, incarnation).encode(record_no, ns, kind, remote, remote_inc, seq, envelope, event, oid,
                                                  tid, detail, major, minor, impl)
    assert codec.decode_trace_record(data) == TraceRecord(peer, incarnation, record_no, ns, kind, remote, remote_inc,
                                                          seq, envelope, event, oid, tid, detail, major, minor, impl)
    assert len(data) % 8 == 0


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(peer=st.text(max_size=12), incarnation=u64, record_no=u64, ns=u64, remote=names, remote_inc=u64, seq=u64,
       envelope=st.binary(max_size=40), event=names, oid=names, tid=names, detail=names,
       kind=st.sampled_from([TraceKind.SEND, TraceKind.RECV]))
def test_fast_encoder_event_and_message_records_are_the_general_records(peer, incarnation, record_no, ns, remote,
                                                                        remote_inc, seq, envelope, event, oid, tid,
                                                                        detail, kind) -> None:
    # The recorder's shortcuts for events and messages (texts that recur laid out once)
    # write byte for byte what the general writer does, the first time and from the cache.
    enc = TraceEncoder(peer, incarnation)
    for _ in range(2):
        assert enc.event(record_no, ns, event, oid, tid, detail) == enc.encode(
            record_no, ns, TraceKind.EVENT, "", 0, 0, b"", event, oid, tid, detail)
        assert enc.message(record_no, ns, kind, remote, remote_inc, seq, envelope, detail) == enc.encode(
            record_no, ns, kind, remote, remote_inc, seq, envelope, "", "", "", detail)


# ---------------------------------------------------------------- the recorder, alone
def test_recorder_writes_what_it_was_given_in_order_once_flushed(tmp_path: Path) -> None:
    # TRC-003..TRC-009: records are only remembered on the loop's path and encoded at
    # the flush; what reaches the file is every record in order, numbered without
    # gaps, each detail exactly the event's plus its cause.
    import zmq

    from refrpc.runtime._tracing import TraceRecorder

    rec = TraceRecorder(str(tmp_path), "p1", 42)
    task_move = {"table": "executor-task", "key": "t1", "from": "running", "event": "finished", "to": "replied",
                 "requirement": "TASK-006", "attempt": 2}
    peer_move = {"table": "peer", "key": "w1", "from": "live", "event": "silence", "to": "dead",
                 "requirement": "LIV-003", "incarnation": str(2**64 - 1)}
    rec.sent(b"frame-out", "w1", 7, 3, "p1:1")
    rec.received(zmq.Frame(b"frame-in"), "w1", 7, 4, "p1:2")
    rec.core_event(ev.TraceEvent("p1:2", "discarded", "", "", {"reason": "duplicate"}))  # as the core reports it
    rec.core_event(ev.TraceEvent("p1:2", "transition", "", "t1", task_move))
    rec.core_event(ev.TraceEvent("p1:3", "transition", "", "", peer_move))
    rec.core_event(ev.TraceEvent("p1:3", "hold", "o1", "", {"counter": "localRefs", "delta": -1, "value": 0}))
    assert [r.kind for r in _read(rec.path)] == [TraceKind.HEADER]  # nothing encoded yet
    rec.flush()
    records = _read(rec.path)
    assert [r.record_no for r in records] == list(range(7))
    send, recv, discarded, task, peer, hold = records[1:]
    assert (send.kind, send.remote_peer, send.remote_incarnation, send.seq, send.envelope) == (TraceKind.SEND, "w1", 7, 3, b"frame-out")
    assert (recv.kind, recv.seq, recv.envelope, json.loads(recv.detail)) == (TraceKind.RECV, 4, b"frame-in", {"cause": "p1:2"})
    assert json.loads(discarded.detail) == {"reason": "duplicate", "recordNo": recv.record_no, "cause": "p1:2"}
    assert (task.event_name, task.task_id, json.loads(task.detail)) == ("transition", "t1", {**task_move, "cause": "p1:2"})
    assert json.loads(peer.detail) == {**peer_move, "cause": "p1:3"}  # the incarnation too (registry, peer table)
    assert (hold.object_id, json.loads(hold.detail)) == ("o1", {"counter": "localRefs", "delta": -1, "value": 0, "cause": "p1:3"})
    rec.close()


def test_recorder_flushes_by_itself_when_many_records_wait(tmp_path: Path) -> None:
    # The memory records waiting for the clock's flush take is bounded: a burst
    # reaches the file without a tick.
    from refrpc.runtime import _tracing

    rec = _tracing.TraceRecorder(str(tmp_path), "p1", 1)
    for i in range(_tracing.FLUSH_RECORDS + 10):
        rec.event("program", f"o{i}", "", {"op": "get"}, f"p1:{i}")
    on_disk = _read(rec.path)
    assert len(on_disk) >= _tracing.FLUSH_RECORDS  # without tick() or flush()
    assert [r.object_id for r in on_disk[1:3]] == ["o0", "o1"]
    rec.close()
    assert len(_read(rec.path)) == _tracing.FLUSH_RECORDS + 11


def _read(path: str) -> list[TraceRecord]:
    with open(path, "rb") as f:
        return list(read_trace(f))


# ---------------------------------------------------------------- the core's hooks, in simulation
PROFILES = {"none": Faults(), "drop-dup": Faults(drop=0.1, duplicate=0.1), "kill-one": Faults(drop=0.05, duplicate=0.05, kills=1),
            "kill-owner": Faults(kills=1, kill_driver=True)}


def _simulate(workload: str, seed: int, faults: Faults, traced: bool) -> tuple[Any, dict[str, list[ev.TraceEvent]]]:
    cl = cluster_for(workload, 4, RandomChooser(seed), faults)
    seen: dict[str, list[ev.TraceEvent]] = defaultdict(list)
    carry_out = cl.carry_out

    def shell(p: Any, ins: ev.Instruction) -> None:
        if isinstance(ins, ev.TraceEvent):
            seen[p.name].append(ins)
        else:
            carry_out(p, ins)

    cl.carry_out = shell  # type: ignore[method-assign]
    for p in cl.peers.values():
        p.core.trace_events = traced
    return run(workload, cl, seed=seed), seen


def _as_records(evs: list[ev.TraceEvent]) -> list[TraceRecord]:
    return [TraceRecord("p", 1, i + 1, i, TraceKind.EVENT, event_name=e.name, object_id=e.object_id, task_id=e.task_id,
                        detail=json.dumps(e.detail)) for i, e in enumerate(evs)]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_core_trace_events_change_nothing_and_tell_every_transition(profile: str) -> None:
    # TRC-008, TRC-007: with trace events on, the same seeded run takes the same steps
    # (tracing observes, never decides), every transition is legal and leaves the
    # state the entry is in, and each hold event's value is the counter after the
    # previous one plus its delta.
    counted: dict[str, int] = defaultdict(int)
    for workload in sorted(WORKLOADS):
        for seed in range(4):
            plain, none = _simulate(workload, seed, PROFILES[profile], traced=False)
            traced, seen = _simulate(workload, seed, PROFILES[profile], traced=True)
            assert not none
            assert (plain.steps, plain.messages, plain.killed, plain.completed, plain.errors) == \
                (traced.steps, traced.messages, traced.killed, traced.completed, traced.errors), (workload, seed)
            for peer, evs in seen.items():
                assert not transitions_chain(_as_records(evs)), (workload, seed, peer, transitions_chain(_as_records(evs))[:3])
                values: dict[tuple[str, str], int] = {}
                for e in evs:
                    assert e.name in REGISTRY or e.name.startswith("x-")
                    counted[e.name] += 1
                    if e.name == "transition" and e.detail["to"] == "deleted":
                        values = {k: v for k, v in values.items() if k[0] != e.object_id}  # the entry is gone
                    if e.name == "hold" and e.detail["counter"] != "containedIn":
                        key = (e.object_id, e.detail["counter"])
                        if key in values:
                            assert max(0, values[key] + e.detail["delta"]) == e.detail["value"], (workload, seed, peer, e)
                        values[key] = e.detail["value"]
    assert counted["transition"] and counted["hold"], counted
    if profile != "none":
        assert counted["peer-declared-dead"] or counted["discarded"], counted


def test_a_put_and_a_submit_record_the_programs_handle_as_a_hold() -> None:
    # The program's handle on a put value and on each return of a submitted task is a
    # localRefs hold of 1 from the start (OWN-001): a trace cut short while the program
    # still holds them shows them held, and the inspector finds no leak (it used to
    # see every counter at zero once the task had ended).                   TRC-007
    from corekit import Stub, checked_peer, val

    from refrpc.core import IdAllocator
    from refrpc.core.messages import Encoding, Value

    d = checked_peer("D", 0x501)
    w = Stub("W")
    d.handle(ev.AddPeer("s1", "W", w.address, 1))
    w.greet(d)
    d.trace_events = True
    ids = IdAllocator("D", 0x501)
    put_id = ids.next()
    tid, (rid,) = ids.task(1)
    out = d.handle(ev.Put("s2", put_id, Value(Encoding.RAW, b"x" * 10)))
    out += d.handle(ev.Submit("s3", tid, "f", (val(b"a"),), (rid,)))
    holds = [(e.object_id, e.detail["counter"], e.detail["delta"], e.detail["value"])
             for e in out if isinstance(e, ev.TraceEvent) and e.name == "hold"]
    assert (put_id, "localRefs", 1, 1) in holds and (rid, "localRefs", 1, 1) in holds


# ---------------------------------------------------------------- a real cluster
@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # import refrpc
    # refrpc.init(2, trace_dir=D)
    # a = add.remote(1, 2); n = length.remote(make_bytes.remote(200_000))
    # x = refrpc.put(b"y" * 300_000); inner = forward.remote(refrpc.shared(x))
    # refrpc.wait([a, n], num_returns=2); refrpc.get([a, n, inner]); refrpc.shutdown()
    directory = tmp_path_factory.mktemp("traces")
    refrpc.init(2, trace_dir=directory)
    try:
        node, cluster = api._ctx.node, api._ctx.cluster
        incarnations = {"driver": node.incarnation, **cluster.incarnations}
        a = rf.add.remote(1, 2)
        n = rf.length.remote(rf.make_bytes.remote(200_000))
        x = refrpc.put(b"y" * 300_000)
        inner = rf.forward.remote(refrpc.shared(x))
        ready, _ = refrpc.wait([a, n], num_returns=2, timeout=60)
        assert len(ready) == 2
        got = refrpc.get([a, n, inner], timeout=60)
        assert got[:2] == [3, 200_000]
        assert refrpc.get(refrpc.get(got[2][0], timeout=60)[0], timeout=60) == b"y" * 300_000
        where = {w: api._call_on(w, "refrpc.runtime._tracing:recording_path") for w in cluster.workers}
        run = {"dir": directory, "incarnations": incarnations, "add": a.id, "length": n.id, "where": where,
               "driver_path": node.tracer.path}
    finally:
        refrpc.shutdown()  # every process has left: its trace is complete
    return run


def test_every_process_records_its_own_file_named_as_TRC_011(recorded: dict[str, Any]) -> None:
    directory, incarnations = recorded["dir"], recorded["incarnations"]
    expected = {trace_file_name(peer, inc) for peer, inc in incarnations.items()}
    assert {p.name for p in directory.iterdir()} == expected
    assert Path(recorded["driver_path"]).name == trace_file_name("driver", incarnations["driver"])
    for worker, path in recorded["where"].items():  # each worker says where it records
        assert Path(path) == directory / trace_file_name(worker, incarnations[worker])


def test_each_trace_reads_back_whole_with_header_and_gapless_numbers(recorded: dict[str, Any]) -> None:
    # TRC-001, TRC-002, TRC-004, TRC-007, TRC-009.
    traces = read_dir(recorded["dir"])
    assert set(traces) == set(recorded["incarnations"])
    for peer, records in traces.items():
        first = records[0]
        assert first.kind == TraceKind.HEADER and first.record_no == 0
        assert (first.peer, first.incarnation) == (peer, recorded["incarnations"][peer])
        assert (first.protocol_major, first.protocol_minor) == (PROTOCOL_MAJOR, PROTOCOL_MINOR)
        assert first.implementation == f"refrpc-py/{refrpc.__version__}"
        assert all(r.kind != TraceKind.HEADER for r in records[1:])
        assert [r.record_no for r in records] == list(range(len(records)))
        assert all(b.monotonic_ns >= a.monotonic_ns for a, b in zip(records, records[1:]))
        assert all((r.peer, r.incarnation) == (first.peer, first.incarnation) for r in records)
        for r in records[1:]:
            detail = json.loads(r.detail)
            assert isinstance(detail, dict) and detail["cause"].startswith(f"{peer}:")  # TRC-009
            if r.kind == TraceKind.EVENT:
                assert r.event_name in REGISTRY or r.event_name.startswith("x-"), r.event_name


def test_send_and_recv_records_agree_with_their_envelopes(recorded: dict[str, Any]) -> None:
    # TRC-005: the envelope is frame 0 as it went on the wire; the copied fields agree with it.
    for peer, records in read_dir(recorded["dir"]).items():
        sent = list(messages(records, TraceKind.SEND))
        received = list(messages(records, TraceKind.RECV))
        assert sent and received, peer
        for r, h in sent:
            assert (h["sender"], h["senderIncarnation"]) == (peer, r.incarnation)
            assert (r.remote_peer, r.remote_incarnation, r.seq) == (h["receiver"], h["receiverIncarnation"], h["seq"])
        for r, h in received:
            assert h["receiver"] == peer and h["receiverIncarnation"] in (0, r.incarnation)
            assert (r.remote_peer, r.remote_incarnation, r.seq) == (h["sender"], h["senderIncarnation"], h["seq"])
        # The 200 kB and 300 kB values went out of band: frame 0 alone is what is kept.
        assert max(len(r.envelope) for r in records) < 64 * 1024


def test_sends_pair_with_receives_by_envelope_alone(recorded: dict[str, Any]) -> None:
    # TRC-006, TRC-003: a sequenced message is (sender, senderIncarnation, receiver,
    # receiverIncarnation, seq); one outside the session pairs on the same peers and its body.
    traces = read_dir(recorded["dir"])
    sends: dict[tuple, list[str]] = defaultdict(list)
    recvs: dict[tuple, list[str]] = defaultdict(list)
    acked: dict[tuple, int] = defaultdict(int)  # session (sender, inc, receiver, inc) -> highest seq acked
    unsequenced_sends: dict[tuple, int] = defaultdict(int)
    unsequenced_recvs: dict[tuple, int] = defaultdict(int)
    for peer, records in traces.items():
        for r, h in messages(records, TraceKind.SEND):
            key = (h["sender"], h["senderIncarnation"], h["receiver"], h["receiverIncarnation"], h["seq"])
            if h["seq"]:
                sends[key].append(h["type"])
            else:
                unsequenced_sends[key[:4] + (h["type"],)] += 1
        for r, h in messages(records, TraceKind.RECV):
            key = (h["sender"], h["senderIncarnation"], h["receiver"], h["receiverIncarnation"], h["seq"])
            if h["seq"]:
                recvs[key].append(h["type"])
            else:
                unsequenced_recvs[key[:4] + (h["type"],)] += 1
            # The ack in what the other side sent is about what this side sent it, in this session.
            session = (peer, h["receiverIncarnation"], h["sender"], h["senderIncarnation"])
            acked[session] = max(acked[session], h["ack"])
    # Every receive was sent: no message comes from nowhere, and its type is the one sent.
    for key, types in recvs.items():
        assert key in sends and set(types) == set(sends[key]), key
    for key, count in unsequenced_recvs.items():
        assert unsequenced_sends[key] >= count, key
    # Everything a receiver acknowledged, it received: each such send has its receive.
    paired = 0
    for key, types in sends.items():
        if key[4] <= acked[key[:4]]:
            assert key in recvs, (key, types)
            paired += 1
    assert paired >= 6
    # Every task the driver submitted reached a worker, and its reply came back.
    submitted = [k for k, t in sends.items() if k[0] == "driver" and "submitTask" in t]
    assert len(submitted) >= 4 and all(k in recvs for k in submitted)
    replies = [k for k, t in recvs.items() if k[2] == "driver" and "taskReply" in t]
    assert len(replies) >= len(submitted)


def test_a_tasks_life_appears_as_transitions_on_both_sides(recorded: dict[str, Any]) -> None:
    # TRC-008: submitted -> finished at the owner, resolving -> running -> replied at
    # the executor, pending -> ready for the return; the program call that began it.
    traces = read_dir(recorded["dir"])
    driver = traces["driver"]
    calls = [(r.task_id, d) for r, d in events(driver, "program") if d["op"] == "remote" and recorded["add"] in d["returns"]]
    assert len(calls) == 1 and calls[0][1]["function"].endswith("add")
    task = calls[0][0]
    owner = [(d["from"], d["to"]) for r, d in events(driver, "transition") if r.task_id == task]
    assert ("submitted", "finished") in owner
    ret = [(d["from"], d["event"], d["to"]) for r, d in events(driver, "transition") if r.object_id == recorded["add"]]
    assert ret[0] == ("pending", "task_succeeded", "ready")
    executed = [(p, d["event"]) for p, records in traces.items() if p != "driver"
                for r, d in events(records, "transition") if r.task_id == task and d["table"] == "executor-task"]
    assert len({p for p, _ in executed}) == 1
    assert [e for _, e in executed][:2] == ["args_ready", "finished"]
    for peer, records in traces.items():
        assert not transitions_chain(records), (peer, transitions_chain(records)[:3])
    # The workers saw the driver leave: its Goodbye fenced it (LIV-006).
    for peer, records in traces.items():
        if peer != "driver":
            deaths = [d for r, d in events(records, "peer-declared-dead") if d["peer"] == "driver"]
            assert deaths and deaths[0]["source"] == "goodbye"
            assert deaths[0]["incarnation"] == str(recorded["incarnations"]["driver"])  # UInt64 as decimal text


def test_program_calls_appear_in_the_order_the_program_made_them(recorded: dict[str, Any]) -> None:
    # The optional program events (trace-format.md section 4): remote, put, wait (one
    # event naming every ref, before the gets it makes), get.
    driver = read_dir(recorded["dir"])["driver"]
    calls = [(d["op"], r.object_id, d) for r, d in events(driver, "program")]
    waits = [d for op, _, d in calls if op == "wait"]
    assert waits == [{"op": "wait", "objects": [recorded["add"], recorded["length"]], "numReturns": 2, "cause": waits[0]["cause"]}]
    ops = [op for op, _, _ in calls]
    assert ops.index("wait") > ops.index("put") and ops.index("wait") < ops.index("get")


def test_a_worker_killed_with_sigkill_leaves_a_readable_trace(tmp_path: Path) -> None:
    # TRC-012: the process dies at a random moment of a burst of tasks; its trace is
    # every complete record it had written, at most the last one cut short, and
    # what happened long enough before the kill (the flush interval) is there.
    # The other peers' traces record its death.
    refrpc.init(2, trace_dir=tmp_path)
    try:
        cluster, node = api._ctx.cluster, api._ctx.node
        victim = "w1"
        path = tmp_path / trace_file_name(victim, cluster.incarnations[victim])
        assert api._call_on(victim, "remote_fixtures:add", 2, 3) == 5

        def submit_on_disk() -> bool:
            records, _ = read_file(path)
            return any(r.kind == TraceKind.RECV and header(r.envelope)["type"] == "submitTask" for r in records)

        # Recorded while the worker runs, not at its exit: the periodic flush put it there.
        assert wait_until(submit_on_disk, 20, step=0.02)
        burst = [rf.sleep_ms.remote(5) for _ in range(40)]
        time.sleep(random.Random(6).uniform(0.05, 0.4))  # a seeded kill moment: the stimulus, not a wait
        killed = cluster.incarnations[victim]
        os.kill(cluster.processes[victim].pid, signal.SIGKILL)
        # Fenced (the supervisor then starts a new incarnation of it).
        assert wait_until(lambda: (victim, killed) in node.call(lambda: set(node.core.fenced)).result(10), 30)
        del burst
    finally:
        refrpc.shutdown()
    records, error = read_file(path)
    assert error is None or error.truncated, error  # cut short, never garbage
    assert records[0].kind == TraceKind.HEADER and [r.record_no for r in records] == list(range(len(records)))
    assert any(r.kind == TraceKind.RECV and header(r.envelope)["type"] == "submitTask" for r in records)
    driver = read_dir(tmp_path)["driver"]
    deaths = [d for r, d in events(driver, "peer-declared-dead") if d["peer"] == victim]
    assert len(deaths) == 1 and deaths[0]["incarnation"] == str(killed)
    assert deaths[0]["source"] in ("external", "detected")  # the supervisor, or heartbeat silence
    assert any(d["key"] == victim and d["to"] == "dead" for _, d in events(driver, "transition"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TRACE_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_cli_flag_and_environment_variable_record_worker_only_processes(tmp_path: Path) -> None:
    # refrpc start --head --num-workers 1 --trace-dir D1           (host 1: no driver)
    # REFRPC_TRACE_DIR=D2 refrpc start --address HEAD --num-workers 1   (host 2)
    flag_dir, env_dir = tmp_path / "flag", tmp_path / "env"
    procs: list[subprocess.Popen[str]] = []
    try:
        key_file = str(tmp_path / "cluster.key")
        head = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--head", "--num-workers", "1",
                                 "--trace-dir", str(flag_dir), "--key-file", key_file],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        procs.append(head)
        line = head.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"tcp://[0-9.]+:\d+", line)
        assert match, line
        host = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--address", match.group(0),
                                 "--num-workers", "1", "--key-file", key_file],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(**{TRACE_ENV: str(env_dir)}))
        procs.append(host)

        joiner = f"{socket.gethostname()}-{host.pid}-w1"  # the name `refrpc start` gives its first worker

        def registered() -> bool:
            # The joining worker's registration (a task on the head) is in the head's
            # trace while both still run: the periodic flush put it there.
            files = list(flag_dir.glob("head.*.rrtrace"))
            if not files or not list(env_dir.glob("*.rrtrace")):
                return False
            records, _ = read_file(files[0])
            return any(r.kind == TraceKind.RECV and r.remote_peer == joiner and header(r.envelope)["type"] == "submitTask"
                       for r in records)

        assert wait_until(registered, 60, step=0.1), sorted(p.name for p in tmp_path.rglob("*"))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
    by_flag = read_dir(flag_dir)
    by_env = read_dir(env_dir)
    assert "head" in by_flag and len(by_flag) == 2  # the head and its worker
    assert list(by_env) == [joiner]  # the joining host's worker: its process only had the variable
    records = by_env[joiner]
    # Its registration request pairs with the head's receive (TRC-006), across hosts' files.
    asks = [h for _, h in messages(records, TraceKind.SEND) if h["receiver"] == "head" and h["type"] == "submitTask"]
    got = {(h["sender"], h["senderIncarnation"], h["receiverIncarnation"], h["seq"])
           for _, h in messages(by_flag["head"], TraceKind.RECV)}
    assert asks and all((h["sender"], h["senderIncarnation"], h["receiverIncarnation"], h["seq"]) in got for h in asks)


def test_recording_off_by_default_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # refrpc.init(1); get(add.remote(1, 2)): no trace anywhere, no trace events in the core.
    monkeypatch.delenv(TRACE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    refrpc.init(1)
    try:
        node = api._ctx.node
        assert refrpc.get(rf.add.remote(1, 2), timeout=60) == 3
        assert node.tracer is None and not node.core.trace_events
        assert api._call_on("w1", "refrpc.runtime._tracing:recording_path") == ""
    finally:
        refrpc.shutdown()
    assert not list(tmp_path.rglob("*"))
