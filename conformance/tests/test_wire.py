"""The scripted wire peer: two of them talking to each other over real ZeroMQ sockets."""

from __future__ import annotations

import lz4.frame
import pytest

from refrpc.core.messages import (
    BorrowerRegistered,
    BorrowRelease,
    CancelTask,
    FetchChunk,
    FetchRequest,
    Heartbeat,
    RegisterBorrower,
    ReleaseBorrows,
    Welcome,
)
from refrpc_conformance import ExpectTimeout, WirePeer, make_bytes_value, portable, stored_form
from refrpc_conformance._trace import TraceRecord
from refrpc_conformance._wire import DEFAULT_FEATURES

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair():
    trace: list[TraceRecord] = []
    a = WirePeer("peer-a", 0xA, trace=trace)
    b = WirePeer("peer-b", 0xB, trace=trace)
    try:
        link = a.connect("peer-b", b.address, 0xB)
        link.handshake(10)
        yield a, b, link, trace
    finally:
        a.close()
        b.close()


def cancels(peer: WirePeer) -> list[str]:
    return [x.body.task_id for x in peer.received(CancelTask)]


def test_handshake_opens_both_sessions_with_the_common_features(pair):
    a, b, link, trace = pair
    assert link.live and link.remote_incarnation == 0xB
    assert isinstance(link.welcome.body, Welcome) and link.welcome.receiver_incarnation == 0xA
    back = b.link("peer-a")
    assert back.live and back.remote_incarnation == 0xA and set(back.features) == set(link.features)
    # Each peer records what it sent after sending it, so the two peers' records may be in either order.
    first: dict[str, str] = {}
    for r in trace:
        if r.direction == "out":
            first.setdefault(r.local, r.type)
    assert first == {"peer-a": "Hello", "peer-b": "Welcome"}


def test_sequenced_messages_arrive_once_and_in_order_whatever_the_sending_order(pair):
    a, b, link, _ = pair
    link.send(CancelTask("t1"))
    s3, s4 = link.next_seq(), link.next_seq()
    link.send(CancelTask("t4"), seq=s4)  # ahead of a gap
    link.resend(1)  # a duplicate of a delivered one
    b.wait_until(lambda: any(d == "buffered" for _, d in b.link("peer-a").seq_arrivals), 5, "t4 buffered")
    assert cancels(b) == ["t1"]
    link.send(CancelTask("t3"), seq=s3)
    b.wait_until(lambda: len(cancels(b)) == 3, 5, "all delivered")
    assert cancels(b) == ["t1", "t3", "t4"]
    assert ("duplicate" in {d for _, d in b.link("peer-a").seq_arrivals}) and b.link("peer-a").inbound.duplicates == 1
    a.wait_until(lambda: link.acked == 3, 5, "acks up to 3")  # b's ack heartbeats (SES-004)


def test_held_acks_make_a_retransmitting_peer_resend_with_the_same_seq(pair):
    a, b, link, _ = pair
    back = b.link("peer-a")
    back.set_retransmit(True)
    link.hold_acks()
    seq = back.send(CancelTask("from-b"))
    a.wait_until(lambda: sum(1 for s, _ in link.seq_arrivals if s == seq) >= 2, 5, "a retransmission")
    assert len(a.received(CancelTask)) == 1  # delivered once
    link.release_acks()
    b.wait_until(lambda: back.acked >= seq and not back.out.unacked, 5, "acked")


def test_expect_skips_what_does_not_match_and_leaves_it_for_later(pair):
    a, b, link, _ = pair
    for t in ("x", "y", "z"):
        link.send(CancelTask(t))
    assert b.expect(CancelTask, lambda m: m.task_id == "z", timeout=5).body.task_id == "z"
    assert b.expect(CancelTask, timeout=5).body.task_id == "x"
    assert b.expect(CancelTask, timeout=5).body.task_id == "y"
    with pytest.raises(ExpectTimeout, match="no CancelTask arrived"):
        b.expect(CancelTask, timeout=0.3)
    assert b.expect(Heartbeat, timeout=5).seq == 0


def test_owner_duties_grants_releases_and_fetch_serving(pair):
    a, b, link, _ = pair
    oid = a.ids.new()
    back = b.link("peer-a")
    back.send(RegisterBorrower(oid, "peer-c", 3, "tcp://127.0.0.1:1", "f1"))
    back.send(RegisterBorrower("not-ours.1", "peer-c", 3, "tcp://127.0.0.1:1", "f2"))
    answer = b.expect(BorrowerRegistered, timeout=5).body
    assert (answer.object_id, answer.forward_id, answer.error) == (oid, "f1", None)
    assert a.grants == {(oid, "f1"): "peer-c"}  # the id a did not allocate is left to the case
    back.send(ReleaseBorrows((BorrowRelease(oid, ("f1",)),)))
    a.wait_until(lambda: not a.grants, 5, "release recorded")
    form = stored_form(portable(make_bytes_value(5000)))
    a.serve(oid, form)
    back.send(FetchRequest(oid, 9, 100, -1, 1000))
    b.wait_until(lambda: any(c.body.last for c in b.received(FetchChunk)), 5, "last chunk")
    chunks = [c.body for c in b.received(FetchChunk)]
    assert b"".join(c.data for c in chunks) == form[100:] and all(len(c.data) <= 1000 for c in chunks)


def test_a_silent_peer_sends_nothing_but_still_records_what_arrives(pair):
    a, b, link, trace = pair
    a.go_silent()
    sent_before = sum(1 for r in trace if r.local == "peer-a" and r.direction == "out" and r.disposition == "sent")
    b.link("peer-a").send(CancelTask("while-silent"))
    a.wait_until(lambda: bool(a.received(CancelTask)), 5, "arrival at the silent peer")
    a.wait_until(lambda: len(a.received(Heartbeat)) >= 2, 5, "time passing")
    sent_after = sum(1 for r in trace if r.local == "peer-a" and r.direction == "out" and r.disposition == "sent")
    assert sent_after == sent_before
    assert a.went_silent


def _fetched(peer: WirePeer, request_id: int) -> list[FetchChunk]:
    return [c.body for c in peer.received(FetchChunk) if c.body.request_id == request_id]


def test_serving_in_smaller_chunks_with_a_loss_and_no_lz4_where_the_session_lacks_it(pair):
    a, b, link, trace = pair
    oid = a.ids.new()
    form = stored_form(portable(make_bytes_value(5000)))
    a.serve(oid, form, chunk_bytes=1000, lose=lambda req, lo, hi: req.request_id == 1 and lo <= 2500 < hi,
            compress=lambda req, offset: True)
    back = b.link("peer-a")
    back.send(FetchRequest(oid, 1, 0, -1, 4096, True))
    b.wait_until(lambda: any(c.last for c in _fetched(b, 1)), 5, "last chunk")
    chunks = _fetched(b, 1)
    assert all(len(c.data) <= 1000 and not c.lz4 for c in chunks)  # lz4 not in use: never compressed (HS-021)
    assert [c.offset for c in chunks] == [o for o in range(0, len(form), 1000) if o != 2000]
    lost = [s for s in a.served if not s.sent]
    assert [(s.offset, s.end, s.request_id) for s in lost] == [(2000, 3000, 1)]
    assert any(r.disposition == "withheld (lost on purpose)" and r.type == "FetchChunk" for r in trace)
    back.send(FetchRequest(oid, 2, 2000, 1000, 4096))  # the resumption is served in full
    b.wait_until(lambda: any(c.last for c in _fetched(b, 2)), 5, "resumed chunk")
    assert [(c.offset, c.data) for c in _fetched(b, 2)] == [(2000, form[2000:3000])]
    assert a.served[-1].requests_before == 2


def test_serving_lz4_only_when_negotiated_and_accepted_or_when_told_to_break_the_rule():
    trace: list[TraceRecord] = []
    a = WirePeer("peer-a", 0xA, trace=trace, features=DEFAULT_FEATURES + ("lz4",))
    b = WirePeer("peer-b", 0xB, trace=trace, features=DEFAULT_FEATURES + ("lz4",))
    try:
        link = a.connect("peer-b", b.address, 0xB)
        link.handshake(10)
        assert "lz4" in link.features
        oid = b.ids.new()
        form = stored_form(portable(make_bytes_value(20_000)))
        b.serve(oid, form, chunk_bytes=8192, compress=lambda req, offset: offset == 0)
        link.send(FetchRequest(oid, 1, 0, -1, 65536, True))
        link.send(FetchRequest(oid, 2, 0, -1, 65536, False))
        a.wait_until(lambda: all(any(c.last for c in _fetched(a, r)) for r in (1, 2)), 5, "both fetches")
        packed = _fetched(a, 1)
        assert [c.lz4 for c in packed] == [True, False, False]
        assert lz4.frame.decompress(packed[0].data) + b"".join(c.data for c in packed[1:]) == form
        assert not any(c.lz4 for c in _fetched(a, 2))  # not accepted: plain
    finally:
        a.close()
        b.close()


def test_a_peer_told_to_break_hs021_compresses_on_a_session_without_lz4(pair):
    a, b, link, _ = pair
    oid = a.ids.new()
    form = stored_form(portable(make_bytes_value(3000)))
    a.serve(oid, form, compress=lambda req, offset: True, ignore_negotiation=True)
    b.link("peer-a").send(FetchRequest(oid, 5, 0, -1, 65536, False))
    b.wait_until(lambda: any(c.last for c in _fetched(b, 5)), 5, "the chunk")
    (chunk,) = _fetched(b, 5)
    assert chunk.lz4 and lz4.frame.decompress(chunk.data) == form
