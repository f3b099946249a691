"""Merging traces: sends pair with receives by the envelope alone (TRC-006), never by
time, and the merged order respects happened-before (a send before its receive,
each trace in record order), whatever the peers' clocks say."""

from __future__ import annotations

from pathlib import Path

import pytest

from refrpc.codec import TraceKind, TraceRecord
from refrpc.core import messages as m

from refrpc_trace import Merger, Status, open_run

from tracekit import Net, Peer

pytestmark = pytest.mark.timeout(60)


def merged(net: Net, tmp_path: Path) -> list:
    net.write(tmp_path / "run")
    return list(Merger(open_run([tmp_path / "run"])))


def shift(peer: Peer, ns: int) -> None:
    """Move a peer's clock (another host, or a skewed one)."""
    peer.records = [TraceRecord(r.peer, r.incarnation, r.record_no, r.monotonic_ns + ns, r.kind, r.remote_peer,
                                r.remote_incarnation, r.seq, r.envelope, r.event_name, r.object_id, r.task_id,
                                r.detail, r.protocol_major, r.protocol_minor, r.implementation)
                    for r in peer.records]


def assert_happened_before(items: list) -> None:
    by_index = {it.index: it for it in items}
    last: dict[str, tuple[int, float]] = {}
    for it in items:
        prev = last.get(it.peer)
        if prev is not None:
            assert it.rec.record_no > prev[0] and it.time_s >= prev[1], it.text()  # each trace in order
        last[it.peer] = (it.rec.record_no, it.time_s)
        if it.rec.kind is TraceKind.RECV and it.pair:
            send = by_index[it.pair]
            assert send.index < it.index and send.time_s <= it.time_s, (send.text(), it.text())
            assert send.env == it.env


def test_pairs_hold_across_hosts_whose_clocks_disagree(tmp_path: Path) -> None:
    # three peers on three hosts: monotonic clocks hours apart, one of them behind by
    # more than a message's flight, so its receives carry earlier times than the sends
    net = Net()
    a, b, c = net.peer("a"), net.peer("b"), net.peer("c")
    net.connect(a, b)
    net.connect(b, c)
    for i in range(5):
        net.msg(a, b, m.CancelTask(f"t{i}"))
        net.msg(b, c, m.CancelTask(f"u{i}"))
        net.msg(c, a, m.CancelTask(f"v{i}"), deliver=False)
    shift(b, 7 * 3600 * 10**9)
    shift(c, 2 * 3600 * 10**9 - 4_000_000_000)
    items = merged(net, tmp_path)
    assert_happened_before(items)
    recvs = [it for it in items if it.rec.kind is TraceKind.RECV]
    assert recvs and all(it.status == Status.DELIVERED for it in recvs)
    assert len(recvs) == 4 + 10  # two handshakes and ten messages; c's messages to a were never received


def test_a_skewed_clock_on_one_host_never_puts_a_receive_before_its_send(tmp_path: Path) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    for i in range(20):
        net.msg(a, b, m.CancelTask(f"t{i}"))
        net.msg(b, a, m.CancelTask(f"r{i}"))
    shift(b, -50_000_000)  # b's clock 50 ms behind: every receive of b "happens" before its send
    items = merged(net, tmp_path)
    assert_happened_before(items)
    assert [it.type for it in items if it.peer == "b" and it.rec.kind is TraceKind.RECV][:3] == \
        ["Hello", "CancelTask", "CancelTask"]


def test_a_retransmitted_message_is_one_message_and_a_duplicate_receive_is_named(tmp_path: Path) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    env = a.envelope(b, m.CancelTask("t1"))
    frame0 = a.send_env(env)
    a.send_env(env)  # retransmitted after 200 ms without an ack (SES-003)
    b.recv_env(env, frame0)
    b.recv_env(env, frame0)  # both copies arrived
    items = merged(net, tmp_path)
    sends = [it for it in items if it.type == "CancelTask" and it.rec.kind is TraceKind.SEND]
    recvs = [it for it in items if it.type == "CancelTask" and it.rec.kind is TraceKind.RECV]
    assert [s.status for s in sends] == [Status.FIRST, Status.RETRANSMIT]
    assert sends[1].pair == sends[0].index
    assert [r.status for r in recvs] == [Status.DELIVERED, Status.DUPLICATE]
    assert recvs[0].pair == recvs[1].pair == sends[0].index


def test_messages_outside_the_session_pair_in_order_by_identical_body(tmp_path: Path) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    net.msg(a, b, m.Heartbeat(), deliver=False)  # lost
    f1 = net.msg(a, b, m.FetchRequest("o1", 7))
    net.msg(a, b, m.Heartbeat())
    net.msg(a, b, m.FetchRequest("o1", 8))
    items = merged(net, tmp_path)
    by_index = {it.index: it for it in items}
    for it in items:
        if it.rec.kind is TraceKind.RECV and it.type in ("Heartbeat", "FetchRequest"):
            assert it.status == Status.DELIVERED
            send = by_index[it.pair]
            assert send.env.body == it.env.body
    heartbeat_recv = next(it for it in items if it.rec.kind is TraceKind.RECV and it.type == "Heartbeat")
    first_heartbeat = next(it for it in items if it.rec.kind is TraceKind.SEND and it.type == "Heartbeat")
    assert heartbeat_recv.pair == first_heartbeat.index  # "paired in order" (the first one was lost)
    assert f1  # the frame exists


def test_sessions_with_two_incarnations_of_a_restarted_peer_do_not_mix(tmp_path: Path) -> None:
    # b restarts: a's sessions with b/1 and b/2 both number their messages from 1
    net = Net()
    a, b1 = net.peer("a"), net.peer("b", 0x111)
    net.connect(a, b1)
    net.msg(a, b1, m.CancelTask("to-first"))
    b2 = net.peer("b", 0x222)
    net.connect(a, b2)
    net.msg(a, b2, m.CancelTask("to-second"))
    items = merged(net, tmp_path)
    by_index = {it.index: it for it in items}
    got = {}
    for it in items:
        if it.rec.kind is TraceKind.RECV and it.type == "CancelTask":
            got[it.file.incarnation] = by_index[it.pair].env.body.task_id
    assert got == {0x111: "to-first", 0x222: "to-second"}
    assert {it.peer for it in items} == {"a", "b~111", "b~222"}


def test_a_discarded_receive_is_not_the_delivery_of_its_message(tmp_path: Path) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    env = a.envelope(b, m.CancelTask("t1"))
    frame0 = a.send_env(env)
    b.recv_env(env, frame0)
    b.event("discarded", reason="no-session", recordNo=b.records[-1].record_no)
    a.send_env(env)
    b.recv_env(env, frame0)
    items = merged(net, tmp_path)
    recvs = [it for it in items if it.type == "CancelTask" and it.rec.kind is TraceKind.RECV]
    assert [r.status for r in recvs] == [Status.DISCARDED, Status.DELIVERED]
    discarded = next(it for it in items if it.type == "discarded")
    assert discarded.pair == recvs[0].index


def test_a_receive_from_a_peer_without_trace_is_kept_unpaired(tmp_path: Path) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    net.msg(a, b, m.CancelTask("t1"))
    net.write(tmp_path / "run", only=(b,))
    run = open_run([tmp_path / "run"])
    merger = Merger(run)
    items = list(merger)
    assert [it.status for it in items if it.rec.kind is TraceKind.RECV] == [Status.UNPAIRED, Status.UNPAIRED]
    assert merger.from_untraced[("a", a.inc)] == 2
