"""The wire peer's session bookkeeping (session.md section 2), without sockets."""

from __future__ import annotations

import pytest

from refrpc_conformance._session import InboundSession, OutboundSession

pytestmark = pytest.mark.timeout(30)


def test_in_order_messages_are_delivered_one_by_one():
    s: InboundSession[str] = InboundSession()
    assert s.receive(1, "a") == ("delivered", [(1, "a")])
    assert s.receive(2, "b") == ("delivered", [(2, "b")])
    assert s.delivered == 2


def test_a_gap_is_buffered_and_filled_in_sequence_order_ses_002():
    s: InboundSession[str] = InboundSession()
    assert s.receive(3, "c") == ("buffered", [])
    assert s.receive(2, "b") == ("buffered", [])
    assert s.delivered == 0
    assert s.receive(1, "a") == ("delivered", [(1, "a"), (2, "b"), (3, "c")])
    assert s.delivered == 3 and not s.buffer


def test_duplicates_of_delivered_or_buffered_messages_are_discarded_and_counted():
    s: InboundSession[str] = InboundSession()
    s.receive(1, "a")
    s.receive(3, "c")
    assert s.receive(1, "a again") == ("duplicate", [])
    assert s.receive(3, "c again") == ("duplicate", [])
    assert s.duplicates == 2
    assert s.receive(2, "b") == ("delivered", [(2, "b"), (3, "c")])


def test_beyond_the_window_is_dropped_not_buffered():
    s: InboundSession[str] = InboundSession(window=4)
    assert s.receive(6, "x") == ("outside-window", [])
    assert s.receive(5, "y") == ("buffered", [])


def test_sequence_number_zero_is_not_a_session_message():
    with pytest.raises(ValueError):
        InboundSession().receive(0, "hello")


def test_acks_drop_what_they_cover_and_bogus_or_backward_acks_are_recorded_ses_008():
    s: OutboundSession[str] = OutboundSession()
    for body in "abc":
        s.record(s.allocate(), body)
    assert s.on_ack(2) == [1, 2]
    assert s.pending() == [(3, "c")]
    assert s.on_ack(1) == [] and s.regressions == [(2, 1)]
    assert s.on_ack(99) == [] and s.bogus_acks == [99]
    assert s.acked == 2 and s.highest_allocated == 3
