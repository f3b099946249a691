"""A supervised worker replaced by a new incarnation (PeerFailed with a successor):
the work its death leaves without an executor goes to the new incarnation.

Real cores on the in-memory link of :mod:`corekit`. D is the driver; A is its only
executor (2 slots). Each test starts with the user program it models.
"""

from __future__ import annotations

from corekit import Net, address, result
from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode, SubmitTask


def pair() -> Net:
    net = Net(("D", "A"))
    net.connect("D", "A")
    return net


def sent_to_incarnation(net: Net, incarnation: int) -> list[tuple[str, int]]:
    return [(f.body.task_id, f.body.attempt) for f in net.sent
            if isinstance(f.body, SubmitTask) and f.dst == "A" and f.envelope.receiver_incarnation == incarnation]


def test_retries_and_queued_tasks_go_to_the_successor_of_the_only_worker():
    # refrpc.init(1)-like: three tasks on a 2-slot worker (two sent, one queued);
    # the worker is killed and its supervisor starts it again at once.
    net = pair()
    tids = [net.submit("D", "f", retries=1)[0] for _ in range(3)]
    net.deliver_all()
    old = net.inc("A")
    net.kill("A")
    new = net.add("A").incarnation
    net.handle("D", ev.PeerFailed(net.sid("D", "failed"), "A", old, "exited", new, address("A")))
    assert [t.state for t in (net["D"].tasks[tid] for tid in tids)].count("failed") == 0
    net.handle("A", ev.Tick(net.sid("A", "boot"), net.now))
    net.deliver_all()
    # The retries at once (TASK-021); the queued first attempt once a slot frees (TASK-020).
    assert sorted(sent_to_incarnation(net, new)) == sorted([(tids[0], 2), (tids[1], 2)])
    assert net["D"].tasks[tids[2]].state == "queued"
    assert ("A", old) in net["D"].fenced and net["D"].remotes["A"].incarnation == new
    net.finish("A", tids[0], result(), attempt=2)
    net.deliver_all()
    assert sent_to_incarnation(net, new)[-1] == (tids[2], 1)


def test_without_a_successor_they_fail_as_before():
    # The same death, reported without a successor: no executor is left (TASK-022).
    net = pair()
    tids = [net.submit("D", "f", retries=1)[0] for _ in range(3)]
    net.deliver_all()
    old = net.inc("A")
    net.kill("A")
    net.handle("D", ev.PeerFailed(net.sid("D", "failed"), "A", old, "exited"))
    assert all(net["D"].tasks[tid].state == "failed" for tid in tids)
    e = net["D"].owned[net["D"].tasks[tids[0]].spec.return_ids[0]]
    assert e.error is not None and e.error.code is ErrorCode.RESOURCE_EXHAUSTED


def test_a_restarted_peer_takes_refs_of_its_earlier_incarnation_as_owned_by_the_dead():
    # A was restarted under the same PeerId; a value it now reads embeds a ref its
    # earlier incarnation owned (LIV-020): that owner is dead (FATE-001). A must not
    # ask itself for the status (it used to answer itself NOT_OWNER).
    from refrpc.core.messages import RefDescriptor

    net = pair()
    old = net.inc("A")
    net.kill("A")
    net.add("A")
    net.handle("A", ev.Tick(net.sid("A", "boot"), net.now))
    container = net.put("A", b"holder")
    theirs = RefDescriptor(f"A.{old:x}.7", "A", old, address("A"))
    net.handle("A", ev.Materialize(net.sid("A", "materialize"), container, (theirs,)))
    b = net["A"].borrowed[theirs.object_id]
    assert b.state == "failed" and b.error.code is ErrorCode.OWNER_DIED
    assert not [f for f in net.flights if f.src == "A" and f.dst == "A"]
    net.get("A", theirs.object_id, request_id=5)
    (got,) = [i for i in net.last["A"] if isinstance(i, ev.GetResult)]
    assert got.error is not None and got.error.code is ErrorCode.OWNER_DIED


def test_a_declared_dead_answer_to_a_stale_message_does_not_stop_the_sender():
    # The restarted A answers a message D had addressed to A's earlier incarnation
    # with DECLARED_DEAD (SES-006). D already knows the new incarnation (the shell
    # reported it with the death): the answer is about the old A, not D (LIV-009).
    from refrpc.core.messages import Envelope, ErrorInfo, ProtocolError

    net = pair()
    old = net.inc("A")
    net.kill("A")
    new = net.add("A").incarnation
    net.handle("D", ev.PeerFailed(net.sid("D", "failed"), "A", old, "exited", new, address("A")))
    stale = ProtocolError(ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "SES-006"), 3)
    env = Envelope("A", new, "D", net.inc("D"), 0, 0, stale)
    net.handle("D", ev.Receive(net.sid("D", "recv"), env))
    assert not net["D"].stopped
    assert net["D"].remotes["A"].incarnation == new and net["D"].remotes["A"].state != "dead"


def test_the_fence_of_an_earlier_incarnation_of_oneself_is_traced_once():
    # The same restarted A, tracing: the fence LIV-020 implies is a fence like any
    # other (SES-015), so it has its peer-declared-dead event, with source
    # "earlier-self", once however many of that incarnation's refs arrive. TRC-008
    from refrpc.core.messages import RefDescriptor

    net = pair()
    old = net.inc("A")
    net.kill("A")
    net.add("A")
    net.handle("A", ev.Tick(net.sid("A", "boot"), net.now))
    net["A"].trace_events = True
    container = net.put("A", b"holder")
    refs = tuple(RefDescriptor(f"A.{old:x}.{n}", "A", old, address("A")) for n in (7, 8))
    out = net.handle("A", ev.Materialize(net.sid("A", "materialize"), container, refs))
    fences = [t.detail for t in out if isinstance(t, ev.TraceEvent) and t.name == "peer-declared-dead"]
    assert fences == [{"peer": "A", "incarnation": str(old), "reason": "an earlier incarnation of this peer",
                       "source": "earlier-self"}]
    assert ("A", old) in net["A"].fenced
