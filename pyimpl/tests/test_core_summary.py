"""A peer's summary (INT-006..INT-009): what a status tool asks a busy peer for.

Real cores on the in-memory link of :mod:`corekit`. D is the driver; A and B are
executors with 2 slots each. Each test starts with the user program it models.
"""

from __future__ import annotations

from corekit import Net, bodies
from refrpc.core import events as ev
from refrpc.core.messages import IntrospectReply, IntrospectRequest, PeerSummary, StateCount


def trio() -> Net:
    net = Net(("D", "A", "B"))
    net.connect("D", "A")
    net.connect("D", "B")
    return net


def ask(net: Net, asker: str, peer: str, request_id: int = 7) -> ev.IntrospectResult:
    net.handle(asker, ev.Introspect(net.sid(asker, "introspect"), request_id, peer, summary=True))
    net.deliver_all()
    (result,) = [i for i in net.log[asker] if isinstance(i, ev.IntrospectResult) and i.request_id == request_id]
    return result


def test_a_summary_counts_tasks_by_state_at_the_owner_and_at_the_executors():
    # D: refs = [f.remote() for _ in range(6)]    4 slots: 4 sent, 2 queued at D
    #    refrpc.nodes()                            counts per state, from every peer
    net = trio()
    tids = [net.submit("D", "f")[0] for _ in range(6)]
    net.deliver_all()
    here = ask(net, "D", "D")
    assert here.summary is not None and here.entries == ()
    assert here.summary.owned_tasks == (StateCount("queued", 2), StateCount("submitted", 4))  # INT-009: sorted by name
    assert here.summary.owned_objects == 6 and here.summary.executing_tasks == ()
    a = ask(net, "D", "A", 8)
    assert a.error is None and a.peer == "A"
    assert a.summary == PeerSummary(executing_tasks=(StateCount("running", 2),))
    # The request asked for the summary; the table is left out (INT-007).
    (request,) = bodies(net.log["D"], IntrospectRequest, to="A")
    (reply,) = [b for b in net.sent_bodies(IntrospectReply, src="A")]
    assert request.summary is True and reply.entries == () and reply.summary == a.summary
    assert len(tids) == 6


def test_a_plain_request_gets_the_table_and_no_summary():
    # refrpc.memory(): the table as before (INT-001), no summary (INT-008 reads none as unknown)
    net = trio()
    net.put("A", b"v")
    net.handle("D", ev.Introspect(net.sid("D", "introspect"), 9, "A"))
    out = net.deliver_all()
    (result,) = [i for i in out if isinstance(i, ev.IntrospectResult)]
    assert result.summary is None and len(result.entries) == 1
