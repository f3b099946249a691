"""Ownership, borrowing, reclamation, tasks, lineage, fate-sharing and actors in the core.

Real cores on the in-memory link of :mod:`corekit` (pairs and trios), and scripted
stubs where a test needs an exact input a correct peer would not send on its own.
Each test starts with a comment showing the user program it models; requirement
ids are those of spec/ownership.md, spec/tasks-and-rpc.md and
spec/objects-and-fetch.md.
"""

from __future__ import annotations

import pytest

from corekit import Net, Stub, bodies, checked_peer, frames, is_, of_type, raw, ref, result, shared, stored_result, val
from refrpc.core import Config, Peer
from refrpc.core import events as ev
from refrpc.core.messages import (
    Arg,
    ArgKind,
    AddLocation,
    BorrowConfirmed,
    BorrowerRegistered,
    BorrowRelease,
    CancelTask,
    ConfirmBorrow,
    CreateActor,
    Encoding,
    ErrorCode,
    ErrorInfo,
    FreeObjects,
    GetObjectStatus,
    Heartbeat,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    ProtocolError,
    RefDescriptor,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
)


def peer(name: str, incarnation: int) -> Peer:
    return checked_peer(name, incarnation)


def lend(net: Net, owner: str, holder: str, data: bytes = b"x") -> tuple[str, str]:
    """``owner`` puts X and hands it to ``holder`` inside a task result (BOR-004).

    Models, on ``holder``:  y = give.remote()   (runs on ``owner``, returns [X])
    Afterwards ``holder`` holds X contained in its own object y, under the owner's grant.
    """
    x = net.put(owner, data)
    tid, (y,) = net.submit(holder, "give", executor=owner)
    net.deliver_all()
    net.finish(owner, tid, result(b"y", (net[owner]._descriptor(x),)))
    net.deliver_all()
    return x, y


def grants_of(net: Net, owner: str, oid: str) -> dict:
    return {b: dict(g) for b, g in net[owner].owned[oid].borrowers.items()}


# ================================================================ put, get, drop
def test_put_creates_a_ready_entry_and_the_last_drop_deletes_it():
    # D: x = put(b"v"); del x                                               OWN-008, OWN-005
    net = Net(("D",))
    x = net.put("D", b"v")
    assert net.last["D"] == []
    e = net["D"].owned[x]
    assert (e.state, e.local_refs, e.value) == ("ready", 1, raw(b"v"))
    assert net.drop_ref("D", x) == []  # inline: nothing to free elsewhere
    assert x not in net["D"].owned
    [res] = of_type(net.get("D", x), ev.GetResult)
    assert res.error.code is ErrorCode.OBJECT_FREED


def test_stored_put_is_freed_from_the_local_store():
    # D: x = put(big)  (the shell wrote it to the store); del x              OWN-005, LOC-001
    net = Net(("D",))
    x = net.put("D", b"B" * 300_000, stored=True)
    assert list(net["D"].owned[x].locations) == ["D"]
    [res] = of_type(net.get("D", x), ev.GetResult)
    assert (res.value, res.locations, res.size) == (None, (("D", "mem://D"),), 300_000)
    assert net.drop_ref("D", x) == [ev.FreeCopy(net.last["D"][0].stimulus_id, x)]


def test_value_is_kept_while_any_hold_remains_and_freed_with_the_last():
    # D: x = put(big); x2 = x; c = put([x]); y = f.remote(x) on W
    #    del x; del x2; del c  -> x lives on for f; f returns -> x is freed  OWN-004, GC-002, GC-003, BOR-006
    net = Net(("D", "W"))
    x = net.put("D", b"B" * 200_000, stored=True)
    net.add_ref("D", x)
    c = net.put("D", b"c", nested=(x,))
    tid, (y,) = net.submit("D", "f", ref(x), executor="W")
    net.deliver_all(hold=is_(SubmitTask))
    e = net["D"].owned[x]
    assert (e.local_refs, e.submitted_task_refs, list(e.contained_in)) == (2, 1, [c])
    for step in (lambda: net.drop_ref("D", x), lambda: net.drop_ref("D", x), lambda: net.drop_ref("D", c)):
        assert of_type(step(), ev.FreeCopy) == []
        assert net["D"].owned[x].state == "ready"
    assert net["D"].owned[x].in_scope()
    net.deliver_all()
    out = net.finish("W", tid, result(b"ok"))
    out = net.deliver(lambda f: isinstance(f.body, TaskReply))
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [x]
    assert x not in net["D"].owned


def test_stored_task_result_is_freed_at_its_location():
    # D: y = make.remote(200_000) on W (W keeps the big result); get(y); del y   TASK-004, LOC-001, OWN-005, GC-004
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "make", executor="W")
    net.deliver_all()
    net.finish("W", tid, stored_result(200_000))
    assert net["W"].copies == {y: "D"}  # the primary copy is pinned until FreeObjects (GC-005)
    net.deliver_all()
    [res] = of_type(net.get("D", y), ev.GetResult)
    assert (res.value, res.locations, res.size) == (None, (("W", "mem://W"),), 200_000)
    net.drop_ref("D", y)
    assert bodies(net.last["D"], FreeObjects) == [FreeObjects((y,))]
    out = net.deliver_all()
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [y]
    assert net["W"].copies == {}


def test_inline_task_result_lives_in_the_owner_entry():
    # D: y = f.remote() on W, returning a small value; get(y)                 TASK-004, TASK-005
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "f", executor="W")
    net.deliver_all()
    [reply] = bodies(net.finish("W", tid, result(b"small")), TaskReply)
    assert reply.returns == (ReturnValue(y, ReturnKind.INLINE, raw(b"small")),)
    assert net["W"].copies == {}
    net.deliver_all()
    [res] = of_type(net.get("D", y), ev.GetResult)
    assert (res.value, res.locations) == (raw(b"small"), ())


def test_pending_result_dropped_early_is_reclaimed_the_moment_it_settles():
    # D: y = make.remote() on W; del y  (before W finishes)                  OWN-009
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "make", executor="W")
    net.deliver_all()
    net.drop_ref("D", y)
    assert net["D"].owned[y].state == "pending"
    net.finish("W", tid, stored_result(300_000))
    net.deliver(lambda f: isinstance(f.body, TaskReply))
    assert y not in net["D"].owned
    assert bodies(net.last["D"], FreeObjects) == [FreeObjects((y,))]


# ================================================================ submitted-task refs
def test_task_counts_one_hold_however_often_it_mentions_a_ref():
    # D: x = put(v); y1 = f.remote(x, shared(x), [x]); y2 = g.remote(x)        BOR-006
    net = Net(("D", "W"))
    x = net.put("D")
    d = net["D"]._descriptor(x)
    t1, _ = net.submit("D", "f", ref(x), shared(x), val(b"l", (d,)), executor="W")
    assert net["D"].owned[x].submitted_task_refs == 1
    t2, _ = net.submit("D", "g", ref(x), executor="W")
    assert net["D"].owned[x].submitted_task_refs == 2
    net.deliver_all()
    net.finish("W", t1, result())
    net.deliver_all()
    assert net["D"].owned[x].submitted_task_refs == 1
    net.finish("W", t2, result())
    net.deliver_all()
    assert net["D"].owned[x].submitted_task_refs == 0


def test_retry_adds_no_submitted_task_ref():
    # D: y = f.options(max_retries=1).remote(x); W1 dies; W2 runs attempt 2     BOR-006, RPC-004
    net = Net(("D", "W1", "W2"))
    x = net.put("D")
    tid, (y,) = net.submit("D", "f", ref(x), executor="W1", retries=1)
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    assert net["D"].owned[x].submitted_task_refs == 1
    net.finish("W2", tid, result(), attempt=2)
    net.deliver_all()
    assert net["D"].owned[x].submitted_task_refs == 0


def test_executor_holds_refs_of_its_arguments_until_it_replies():
    # S: y = f.remote(shared(x)) on E, x owned by S                            BOR-001, TASK-003
    net = Net(("S", "E"))
    x = net.put("S")
    tid, (y,) = net.submit("S", "f", shared(x), executor="E")
    net.deliver_all()
    [run] = net.runs("E")
    assert run.args[0].ref.object_id == x and run.args[0].ref.forward_id == ""
    assert net["E"].borrowed[x].task_holds == 1
    net.finish("E", tid, result())
    assert x not in net["E"].borrowed
    assert bodies(net.last["E"], ReleaseBorrows) == []  # a task hold is no grant


# ================================================================ asking the owner
def owner_with_pending_task() -> tuple[Peer, Stub, str]:
    """O submitted y = f.remote() to stub W, which has not answered yet."""
    o = peer("O", 0x0A)
    o.handle(ev.AddPeer("add", "W", "mem://W"))
    o.handle(ev.Submit("submit", "O.a.1", "f", (), ("O.a.1.r0",), executor="W"))
    w = Stub("W")
    o.handle(w.welcome(o))
    return o, w, "O.a.1.r0"


def test_status_wait_on_a_pending_object_is_answered_when_it_settles():
    # G: get(y) where y = f.remote() is still running at O's executor         OBJ-002, OBJ-004
    o, w, y = owner_with_pending_task()
    g = Stub("G")
    g.greet(o)
    assert o.handle(g.send(o, GetObjectStatus(y, wait=True))) == []
    reply = TaskReply("O.a.1", 1, (ReturnValue(y, ReturnKind.INLINE, raw(b"val")),))
    out = o.handle(w.send(o, reply))
    assert bodies(out, ObjectStatus, to="G") == [ObjectStatus(y, ObjectState.READY, 3, (), (), raw(b"val"))]


def test_status_waits_per_peer_are_bounded():
    # G waits on three pending objects of O, whose bound is two waits a peer: the
    # third is refused RESOURCE_EXHAUSTED as a request (relatedSeq), nothing is
    # remembered; asking again for a waited object is no new wait, another peer has
    # a bound of its own, and a settled object makes room again.               SEC-009
    from refrpc.core import Config

    o = checked_peer("O", 0x0A, Config(max_status_waits=2))
    o.handle(ev.AddPeer("add", "W", "mem://W"))
    ys = []
    for n in range(3):
        tid = f"O.a.{n + 1}"
        o.handle(ev.Submit("submit", tid, "f", (), (f"{tid}.r0",), executor="W"))
        ys.append(f"{tid}.r0")
    w = Stub("W")
    o.handle(w.welcome(o))
    g, h = Stub("G"), Stub("H")
    g.greet(o)
    h.greet(o)
    assert bodies(o.handle(g.send(o, GetObjectStatus(ys[0], wait=True)))) == []
    assert bodies(o.handle(g.send(o, GetObjectStatus(ys[1], wait=True)))) == []
    assert bodies(o.handle(g.send(o, GetObjectStatus(ys[1], wait=True)))) == []  # the same wait again
    env = g.send(o, GetObjectStatus(ys[2], wait=True))
    (refusal,) = bodies(o.handle(env), ProtocolError, to="G")
    assert refusal.error.code is ErrorCode.RESOURCE_EXHAUSTED and refusal.error.requirement == "SEC-009"
    assert refusal.related_seq == g.out_seq  # the asker's request ends (ERR-003, OBJ-017)
    assert ys[2] not in o.status_waiters and o.status_wait_counts == {"G": 2}
    assert bodies(o.handle(g.send(o, GetObjectStatus(ys[2], wait=False)))) == [ObjectStatus(ys[2], ObjectState.PENDING)]
    assert bodies(o.handle(h.send(o, GetObjectStatus(ys[2], wait=True)))) == []  # H's own bound
    out = o.handle(w.send(o, TaskReply("O.a.1", 1, (ReturnValue(ys[0], ReturnKind.INLINE, raw(b"val")),))))
    assert [s.object_id for s in bodies(out, ObjectStatus, to="G")] == [ys[0]]
    assert bodies(o.handle(g.send(o, GetObjectStatus(ys[2], wait=True)))) == []  # room again
    assert o.status_wait_counts == {"G": 2, "H": 1}


def test_status_without_wait_is_answered_at_once():
    # G polls y, which is still pending                                       OBJ-005
    o, _, y = owner_with_pending_task()
    g = Stub("G")
    g.greet(o)
    assert bodies(o.handle(g.send(o, GetObjectStatus(y, wait=False)))) == [ObjectStatus(y, ObjectState.PENDING)]


def test_settling_answers_waiters_before_reclaiming():
    # O: y = f.remote(); del y  while G waits on y                             OWN-010, OWN-009
    o, w, y = owner_with_pending_task()
    g = Stub("G")
    g.greet(o)
    o.handle(g.send(o, GetObjectStatus(y, wait=True)))
    o.handle(ev.DropRef("drop", y))
    out = o.handle(w.send(o, TaskReply("O.a.1", 1, (ReturnValue(y, ReturnKind.INLINE, raw(b"val")),))))
    [status] = bodies(out, ObjectStatus)
    assert status.state is ObjectState.READY and status.value == raw(b"val")
    assert y not in o.owned


@pytest.mark.parametrize("oid, state, code", [
    ("O.a.999", ObjectState.FREED, None),  # allocated here (prefix, counter reached), gone   OBJ-003
    ("O.a.999.r5", ObjectState.FREED, None),  # a return id of counter 999, however many returns   ID-006
    ("O.a.1000", ObjectState.UNKNOWN, None),  # prefix, but a counter not reached yet          ID-006
    ("O.a.x", ObjectState.UNKNOWN, None),  # prefix, no counter                                ID-006
    ("Z.1.1", ObjectState.UNKNOWN, None),  # never allocated here                    OBJ-003, OBJ-007
])
def test_status_of_objects_the_owner_does_not_have(oid, state, code):
    # G asks O about an id O reclaimed / never allocated                      OBJ-003, ID-006
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.999", Value(Encoding.RAW, b"v")))  # O's counter reaches 999
    o.handle(ev.DropRef("drop", "O.a.999"))
    g = Stub("G")
    g.greet(o)
    [status] = bodies(o.handle(g.send(o, GetObjectStatus(oid))))
    assert status.state is state and status.value is None


def test_status_asked_of_a_borrower_is_not_owner():
    # G asks A about X, which A only borrows from O                            OBJ-007
    a = peer("A", 0xA1)
    o, g = Stub("O"), Stub("G")
    o.greet(a)
    g.greet(a)
    x = o.descriptor(o.oid(1))
    a.handle(o.send(a, SubmitTask(o.oid("t"), "f", (Arg(ArgKind.SHARED, ref=x),), (o.oid("t.r0"),))))
    [status] = bodies(a.handle(g.send(a, GetObjectStatus(x.object_id))))
    assert status.state is ObjectState.UNKNOWN and status.error.code is ErrorCode.NOT_OWNER


def test_pickle_value_is_not_sent_to_a_peer_without_python_pickle():
    # O: x = put(pickled object); G (no python-pickle on the session) asks     OBJ-012, HS-020
    o = peer("O", 0x0A)
    g = Stub("G")
    g.greet(o)
    o.handle(ev.Put("put", "O.a.1", Value(Encoding.PICKLE, b"\x80\x05N."), False, 4))
    [status] = bodies(o.handle(g.send(o, GetObjectStatus("O.a.1"))))
    assert status.state is ObjectState.FAILED and status.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    assert o.owned["O.a.1"].state == "ready"


def test_add_location_for_an_object_not_ready_is_answered_with_free():
    # G reports a copy of y, which is still pending at O                      LOC-005
    o, _, y = owner_with_pending_task()
    g = Stub("G")
    g.greet(o)
    assert bodies(o.handle(g.send(o, AddLocation(y, 10)))) == [FreeObjects((y,))]
    assert dict(o.owned[y].locations) == {}


def test_free_objects_drops_only_copies_of_the_senders_objects():
    # G keeps a secondary copy of O's X; O frees it (and an id G never had)   GC-004, LOC-002
    g = peer("G", 0x61)
    o = Stub("O")
    o.greet(g)
    x = o.descriptor(o.oid(1))
    g.handle(o.send(g, SubmitTask(o.oid("t"), "f", (Arg(ArgKind.SHARED, ref=x),), (o.oid("t.r0"),))))
    assert bodies(g.handle(ev.CopyStored("stored", x.object_id, 10))) == [AddLocation(x.object_id, 10)]
    out = g.handle(o.send(g, FreeObjects((o.oid(77), x.object_id))))
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [x.object_id]
    assert g.copies == {}


# ================================================================ borrowing
def test_owner_grants_a_ref_it_sends_itself_without_any_message():
    # S: y = give.remote() on O, which returns [X] (O owns X)                 BOR-004, BOR-012, REF-001
    net = Net(("O", "S"))
    x = net.put("O")
    tid, (y,) = net.submit("S", "give", executor="O")
    net.deliver_all()
    out = net.finish("O", tid, result(b"y", (net["O"]._descriptor(x),)))
    [reply] = bodies(out, TaskReply)
    [d] = reply.returns[0].value.nested
    assert bodies(out, RegisterBorrower) == []
    assert d.forward_id and grants_of(net, "O", x) == {"S": {d.forward_id: "O"}}
    net.deliver_all()
    b = net["S"].borrowed[x]
    assert (list(b.grants), list(b.contained_in)) == ([d.forward_id], [y])


def test_grant_is_released_with_exactly_its_forward_id_when_the_holder_lets_go():
    # S: y = give.remote() on O; del y                                        BOR-005, GC-003, OWN-005
    net = Net(("O", "S"))
    x, y = lend(net, "O", "S")
    [fid] = net["S"].borrowed[x].grants
    net.drop_ref("O", x)  # only S's grant keeps X now
    assert net["O"].owned[x].state == "ready"
    net.drop_ref("S", y)
    assert bodies(net.last["S"], ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(x, (fid,)),))]
    assert x not in net["S"].borrowed
    net.deliver_all()
    assert x not in net["O"].owned


def test_releases_caused_by_one_event_go_in_one_message_per_owner():
    # S: y = give2.remote() on O, returning [X1, X2]; del y                    BOR-005, GC-007
    net = Net(("O", "S"))
    x1, x2 = net.put("O", b"1"), net.put("O", b"2")
    tid, (y,) = net.submit("S", "give2", executor="O")
    net.deliver_all()
    net.finish("O", tid, result(b"y", (net["O"]._descriptor(x1), net["O"]._descriptor(x2))))
    net.deliver_all()
    [f1], [f2] = net["S"].borrowed[x1].grants, net["S"].borrowed[x2].grants
    net.drop_ref("S", y)
    assert bodies(net.last["S"], ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(x1, (f1,)), BorrowRelease(x2, (f2,))))]


def forward_through(net: Net, hold_registered: bool = True) -> tuple[str, str, str, str]:
    """The BOR-002 chain: O owns X; S borrows it; S runs f(shared X) on E; f returns [X].

    Stops with E's RegisterBorrower answered at O and, if ``hold_registered``, the
    BorrowerRegistered still in flight to E. Returns (x, y of S's task, S's task id, forward id).
    """
    x, _ = lend(net, "O", "S")
    tid, (y1,) = net.submit("S", "f", shared(x), executor="E")
    net.deliver_all()
    net.finish("E", tid, result(b"z", (net["E"]._descriptor(x),)))
    [reg] = bodies(net.last["E"], RegisterBorrower)
    net.deliver_all(hold=is_(BorrowerRegistered, dst="E") if hold_registered else None)
    return x, y1, tid, reg.forward_id


def test_forwarder_registers_the_receiver_before_sending_the_ref():
    # S: y1 = f.remote(shared(x)) on E; f returns [x]; x is owned by O        BOR-002, BOR-003, BOR-012
    net = Net(("O", "S", "E"))
    x, _ = lend(net, "O", "S")
    tid, (y1,) = net.submit("S", "f", shared(x), executor="E")
    net.deliver_all()
    out = net.finish("E", tid, result(b"z", (net["E"]._descriptor(x),)))
    [reg] = bodies(out, RegisterBorrower)
    assert (reg.object_id, reg.borrower, reg.borrower_incarnation) == (x, "S", net.inc("S"))
    assert bodies(out, TaskReply) == []
    b = net["E"].borrowed[x]
    assert (b.task_holds, b.outgoing_registrations) == (1, 1)  # E keeps its hold meanwhile
    net.deliver_all(hold=is_(BorrowerRegistered, dst="E"))
    assert grants_of(net, "O", x)["S"][reg.forward_id] == "E"
    assert net.sent_bodies(TaskReply, src="E") == []
    out = net.deliver(is_(BorrowerRegistered, dst="E"))
    [reply] = bodies(out, TaskReply)
    assert [d.forward_id for d in reply.returns[0].value.nested] == [reg.forward_id]
    assert x not in net["E"].borrowed and bodies(out, ReleaseBorrows) == []
    net.deliver_all()
    assert reg.forward_id in net["S"].borrowed[x].grants
    assert y1 in net["S"].borrowed[x].contained_in


def test_refused_registration_turns_the_return_into_that_error():
    # S: y = f.remote(shared(x)) on E; f returns [x]; X's owner says it is freed   BOR-003
    e = peer("E", 0xE1)
    s, o = Stub("S"), Stub("O", incarnation=0x0B)
    s.greet(e)
    x = o.descriptor(o.oid(1))
    e.handle(s.send(e, SubmitTask(s.oid("t"), "f", (Arg(ArgKind.SHARED, ref=x),), (s.oid("t.r0"),))))
    e.handle(o.welcome(e))
    [reg] = bodies(e.handle(ev.TaskFinished("fin", s.oid("t"), 1, (ev.TaskResult(value=raw(b"z", (x,))),))), RegisterBorrower)
    info = ErrorInfo(ErrorCode.OBJECT_FREED, "gone", "BOR-003")
    out = e.handle(o.send(e, BorrowerRegistered(x.object_id, reg.forward_id, info)))
    [reply] = bodies(out, TaskReply)
    assert reply.returns == (ReturnValue(s.oid("t.r0"), ReturnKind.ERROR, error=info),)


def test_owner_refuses_to_register_itself_as_borrower():
    # a buggy forwarder asks O to record O as borrower of its own X           BOR-025
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f = Stub("F")
    f.greet(o)
    [answer] = bodies(o.handle(f.send(o, RegisterBorrower("O.a.1", "O", 0x0A, "mem://O", f.oid("f1")))))
    assert answer.error.code is ErrorCode.WRONG_STATE
    assert o.owned["O.a.1"].borrowers == {}


def test_owner_refuses_a_grant_for_a_fenced_borrower():
    # F forwards X to B, but O already declared B dead                        BOR-015
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f = Stub("F")
    f.greet(o)
    o.handle(ev.PeerFailed("failed", "B", 0xB))
    [answer] = bodies(o.handle(f.send(o, RegisterBorrower("O.a.1", "B", 0xB, "mem://B", f.oid("f1")))))
    assert answer.error.code is ErrorCode.PEER_DIED
    assert o.owned["O.a.1"].borrowers == {}


def test_executor_that_keeps_a_ref_registers_itself_before_replying():
    # S: a.keep.remote(shared(x)) -- the callee stores x beyond the call      BOR-007, BOR-012
    net = Net(("O", "S", "E"))
    x, _ = lend(net, "O", "S")
    tid, (y1,) = net.submit("S", "keep", shared(x), executor="E")
    net.deliver_all()
    net.add_ref("E", x)  # the program keeps a handle
    out = net.finish("E", tid, result(b"kept"))
    [reg] = bodies(out, RegisterBorrower)
    assert (reg.borrower, bodies(out, TaskReply)) == ("E", [])
    net.deliver_all(hold=is_(BorrowerRegistered, dst="E"))
    assert grants_of(net, "O", x)["E"] == {reg.forward_id: "E"}
    out = net.deliver(is_(BorrowerRegistered, dst="E"))
    [reply] = bodies(out, TaskReply)
    assert [(d.object_id, d.forward_id) for d in reply.retained] == [(x, reg.forward_id)]
    b = net["E"].borrowed[x]
    assert (list(b.grants), b.local_refs, b.task_holds) == ([reg.forward_id], 1, 0)


def test_one_self_registration_serves_every_task_that_keeps_the_ref():
    # S: a.keep.remote(shared(x)); a.keep.remote(shared(x)) -- both calls keep x   BOR-021, BOR-007
    net = Net(("O", "S", "E"))
    x, _ = lend(net, "O", "S")
    t1, _ = net.submit("S", "keep", shared(x), executor="E")
    t2, _ = net.submit("S", "keep", shared(x), executor="E")
    net.deliver_all()
    net.add_ref("E", x)
    [reg] = bodies(net.finish("E", t1, result()), RegisterBorrower)
    assert bodies(net.finish("E", t2, result()), RegisterBorrower) == []
    net.deliver_all(hold=is_(TaskReply))
    replies = [f.body for f in net.in_flight(TaskReply, src="E")]
    assert sorted(r.task_id for r in replies) == sorted([t1, t2])
    assert {d.forward_id for r in replies for d in r.retained} == {reg.forward_id}


def test_one_status_request_serves_every_local_wait():
    # G: get(x); get(x); y = f.remote(x) run here -- one question to the owner     OBJ-014, OBJ-002
    g = peer("G", 0x61)
    o = Stub("O")
    o.greet(g)
    x = o.descriptor(o.oid(1))
    out = g.handle(o.send(g, SubmitTask(o.oid("t"), "f", (Arg(ArgKind.REF, ref=x),), (o.oid("t.r0"),))))
    out += g.handle(ev.Get("g1", 1, x.object_id), ev.Get("g2", 2, x.object_id))
    assert bodies(out, GetObjectStatus) == [GetObjectStatus(x.object_id, True, relay=True)]
    out = g.handle(o.send(g, ObjectStatus(x.object_id, ObjectState.READY, 1, (), (), raw(b"v"))))
    assert sorted(r.request_id for r in of_type(out, ev.GetResult)) == [1, 2]
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [o.oid("t")]


def test_materialized_ref_pins_its_container_until_the_grant_arrives():
    # G: y = give.remote() on O, returning [C]; c = get(y)[0]; v = get(c); x = v[0]
    #    del y; del c  (C must live until G's own grant for x exists)          BOR-008, OWN-012
    net = Net(("O", "G"))
    x = net.put("O", b"x")
    c = net.put("O", b"c", nested=(x,))
    tid, (y,) = net.submit("G", "give", executor="O")
    net.deliver_all()
    net.finish("O", tid, result(b"y", (net["O"]._descriptor(c),)))
    net.deliver_all()
    [gc] = net["G"].borrowed[c].grants
    [yv] = of_type(net.get("G", y), ev.GetResult)
    net.handle("G", ev.Materialize(net.sid("G", "m"), y, yv.value.nested))
    assert bodies(net.last["G"], RegisterBorrower) == []  # G holds a grant for C already
    net.get("G", c, request_id=2)
    net.deliver_all()
    cv = net.results("G")[2].value
    assert [d.forward_id for d in cv.nested] == [""]  # BOR-017
    out = net.handle("G", ev.Materialize(net.sid("G", "m"), c, cv.nested))
    [reg] = bodies(out, RegisterBorrower)
    assert (reg.object_id, reg.borrower) == (x, "G")
    assert net["G"].borrowed[c].pins == 1
    net.drop_ref("G", y)
    net.drop_ref("G", c)
    assert c in net["G"].borrowed and net.sent_bodies(ReleaseBorrows, src="G") == []
    net.deliver_all(hold=is_(BorrowerRegistered, dst="G"))
    out = net.deliver(is_(BorrowerRegistered, dst="G"))
    assert c not in net["G"].borrowed
    assert bodies(out, ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(c, (gc,)),))]
    assert list(net["G"].borrowed[x].grants) == [reg.forward_id]


def test_value_read_from_the_owner_carries_no_grants():
    # S: y = give.remote() (value [X] with S's grant); G reads y from S        BOR-017, GC-002
    net = Net(("O", "S"))
    x, y = lend(net, "O", "S")
    assert [d.forward_id for d in net["S"].owned[y].value.nested] == [""]
    g = Stub("G")
    g.greet(net["S"])
    [status] = bodies(net["S"].handle(g.send(net["S"], GetObjectStatus(y))))
    assert [d.forward_id for d in status.value.nested] == [""]


def test_borrower_death_removes_its_grants():
    # S: y = give.remote() on O; S crashes                                    BOR-009, FATE-005
    net = Net(("O", "S"))
    x, y = lend(net, "O", "S")
    net.drop_ref("O", x)
    assert net["O"].owned[x].borrowers
    net.kill("S", "O")
    assert x not in net["O"].owned


def test_forwarder_death_before_delivery_removes_the_phantom_grant():
    # E registered S for X at O, then died before sending its reply            BOR-010, BOR-011
    net = Net(("O", "S", "E"))
    x, y1, tid, fid = forward_through(net)
    e = net.kill("E", "O")
    [confirm] = net.sent_bodies(ConfirmBorrow)
    assert confirm == ConfirmBorrow(x, fid, "E", e)
    out = net.deliver(is_(ConfirmBorrow, dst="S"))
    kinds = [type(i) for i in out]
    assert kinds.index(ev.PeerDeclaredDead) < kinds.index(ev.SendFrame)  # fence, then answer
    assert bodies(out, BorrowConfirmed) == [BorrowConfirmed(x, fid, False)]
    assert ("E", e) in net["S"].fenced
    net.deliver_all()
    assert fid not in grants_of(net, "O", x).get("S", {})


def test_ref_in_flight_from_a_dead_forwarder_never_lands_after_confirm_said_no():
    # E's reply carrying X is still on its way when O asks S               BOR-011, SES-005
    net = Net(("O", "S", "E"))
    x, y1, tid, fid = forward_through(net)
    net.deliver(is_(BorrowerRegistered, dst="E"))  # E sends its reply ...
    [late] = net.in_flight(TaskReply, src="E")
    net.flights.remove(late)  # ... which the network holds back
    net.kill("E", "O")
    net.deliver(is_(ConfirmBorrow, dst="S"))
    assert net.sent_bodies(BorrowConfirmed) == [BorrowConfirmed(x, fid, False)]
    net.handle("S", ev.Receive("late-reply", late.envelope))
    assert fid not in net["S"].borrowed[x].grants
    assert net["S"].owned[y1].state == "failed"


def test_forwarder_death_after_delivery_keeps_the_grant():
    # E's reply reached S before O declared E dead                          BOR-010, BOR-011
    net = Net(("O", "S", "E"))
    x, y1, tid, fid = forward_through(net, hold_registered=False)
    assert fid in net["S"].borrowed[x].grants
    net.kill("E", "O")
    net.deliver_all()
    assert net.sent_bodies(BorrowConfirmed) == [BorrowConfirmed(x, fid, True)]
    assert grants_of(net, "O", x)["S"][fid] == "E"


def test_owner_death_fails_a_forward_still_waiting_for_its_grant():
    # E was registering S for X when X's owner O died                         FATE-007, BOR-003
    net = Net(("O", "S", "E"))
    x, y1, tid, fid = forward_through(net)
    net.kill("O", "E")
    [reply] = bodies(net.last["E"], TaskReply)
    assert reply.returns[0].kind is ReturnKind.ERROR and reply.returns[0].error.code is ErrorCode.OWNER_DIED
    assert x not in net["E"].borrowed


def test_requester_releases_a_grant_for_a_receiver_that_died_and_the_owner_accepts():
    # S died while E's registration for it was in flight                     BOR-014, FATE-003
    net = Net(("O", "S", "E"))
    x, y1, tid, fid = forward_through(net)
    assert fid in grants_of(net, "O", x)["S"]
    net.kill("S", "E")
    out = net.deliver(is_(BorrowerRegistered, dst="E"))
    assert bodies(out, ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(x, (fid,)),))]
    assert bodies(out, TaskReply) == []
    net.deliver_all()
    assert fid not in grants_of(net, "O", x).get("S", {})


@pytest.mark.parametrize("refusal_first", [
    False,
    True,
])
def test_requester_releases_the_other_grants_of_a_value_that_became_an_error(refusal_first):
    # S: y = f.remote(shared(x1), shared(x2)) on E; f returns [x1, x2];
    #    O2 refuses x2 (freed), O grants x1                                    BOR-014, BOR-003
    e = peer("E", 0xE1)
    s, o1, o2 = Stub("S"), Stub("O1", incarnation=0x1), Stub("O2", incarnation=0x2)
    s.greet(e)
    x1, x2 = o1.descriptor(o1.oid(1)), o2.descriptor(o2.oid(1))
    args = (Arg(ArgKind.SHARED, ref=x1), Arg(ArgKind.SHARED, ref=x2))
    e.handle(s.send(e, SubmitTask(s.oid("t"), "f", args, (s.oid("t.r0"),))))
    e.handle(o1.welcome(e), o2.welcome(e))
    out = e.handle(ev.TaskFinished("fin", s.oid("t"), 1, (ev.TaskResult(value=raw(b"z", (x1, x2))),)))
    f1, f2 = (r.forward_id for r in bodies(out, RegisterBorrower))
    grant = o1.send(e, BorrowerRegistered(x1.object_id, f1))
    refuse = o2.send(e, BorrowerRegistered(x2.object_id, f2, ErrorInfo(ErrorCode.OBJECT_FREED, "gone", "BOR-003")))
    out = e.handle(*((refuse, grant) if refusal_first else (grant, refuse)))
    assert bodies(out, ReleaseBorrows, to="O1") == [ReleaseBorrows((BorrowRelease(x1.object_id, (f1,)),))]
    [reply] = bodies(out, TaskReply)
    assert reply.returns[0].kind is ReturnKind.ERROR and reply.returns[0].error.code is ErrorCode.OBJECT_FREED


def test_owner_accepts_a_release_from_the_grant_requester():
    # F obtained a grant for B, then abandoned the send                       BOR-014, BOR-018
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f = Stub("F")
    f.greet(o)
    o.handle(f.send(o, RegisterBorrower("O.a.1", "B", 0xB, "mem://B", f.oid("f1"))))
    o.handle(ev.DropRef("drop", "O.a.1"))
    assert "O.a.1" in o.owned
    o.handle(f.send(o, ReleaseBorrows((BorrowRelease("O.a.1", (f.oid("f1"),)),))))
    assert "O.a.1" not in o.owned


def test_release_by_a_third_peer_is_ignored():
    # Z releases a grant that is neither its own nor requested by it          BOR-018
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f, z = Stub("F"), Stub("Z")
    f.greet(o)
    z.greet(o)
    o.handle(f.send(o, RegisterBorrower("O.a.1", "B", 0xB, "mem://B", f.oid("f1"))))
    o.handle(z.send(o, ReleaseBorrows((BorrowRelease("O.a.1", (f.oid("f1"),)),))))
    assert o.owned["O.a.1"].borrowers == {"B": {f.oid("f1"): "F"}}


def test_borrow_confirmed_false_removes_only_a_grant_of_the_senders_own_incarnation():
    # F registers B's newer incarnation as borrower while O still has a session with
    # B's older one; the older one, and a third peer, answer held = false unasked:
    # neither removes the grant. Its own borrower incarnation can.                BOR-022
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f, z, b_old = Stub("F"), Stub("Z"), Stub("B", incarnation=0xB)
    for s in (f, z, b_old):
        s.greet(o)
    g = f.oid("f1")
    o.handle(f.send(o, RegisterBorrower("O.a.1", "B", 0xC, "mem://B", g)))
    o.handle(ev.DropRef("drop", "O.a.1"))
    o.handle(z.send(o, BorrowConfirmed("O.a.1", g, False)))
    o.handle(b_old.send(o, BorrowConfirmed("O.a.1", g, False)))
    assert o.owned["O.a.1"].borrowers == {"B": {g: "F"}}
    b_new = Stub("B", incarnation=0xC)
    b_new.greet(o)
    o.handle(b_new.send(o, BorrowConfirmed("O.a.1", g, False)))
    assert "O.a.1" not in o.owned


def test_repeated_and_unknown_releases_leave_the_senders_other_grant():
    # B holds g1 and g2 on X; releases g1, then g1 again under a new sequence
    # number, then a grant that never existed: only g1 goes                 BOR-018
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    b = Stub("B")
    b.greet(o)
    g1, g2 = b.oid("g1"), b.oid("g2")
    o.handle(b.send(o, RegisterBorrower("O.a.1", "B", b.incarnation, "mem://B", g1)))
    o.handle(b.send(o, RegisterBorrower("O.a.1", "B", b.incarnation, "mem://B", g2)))
    o.handle(ev.DropRef("drop", "O.a.1"))
    for fid in (g1, g1, b.oid("never")):
        o.handle(b.send(o, ReleaseBorrows((BorrowRelease("O.a.1", (fid,)),))))
        assert o.owned["O.a.1"].borrowers == {"B": {g2: "B"}}
    o.handle(b.send(o, ReleaseBorrows((BorrowRelease("O.a.1", (g2,)),))))
    assert "O.a.1" not in o.owned
    # releasing is idempotent, also for an object that is gone
    o.handle(b.send(o, ReleaseBorrows((BorrowRelease("O.a.1", (g2,)),))))
    assert "O.a.1" not in o.owned


def test_owner_opens_a_session_with_a_borrower_it_grants_to():
    # F forwards O's X to B, whom O has never talked to                      OWN-011, BOR-003
    o = peer("O", 0x0A)
    o.handle(ev.Put("put", "O.a.1", raw(b"x")))
    f = Stub("F")
    f.greet(o)
    out = o.handle(f.send(o, RegisterBorrower("O.a.1", "B", 0xB, "mem://B", f.oid("f1"))))
    hello = [i for i in of_type(out, ev.SendFrame) if i.envelope.receiver == "B"]
    assert [(i.address, type(i.envelope.body).__name__) for i in hello] == [("mem://B", "Hello")]
    assert bodies(out, BorrowerRegistered, to="F") == [BorrowerRegistered("O.a.1", f.oid("f1"))]


def test_reply_for_a_cancelled_task_gives_back_the_grants_it_carries():
    # D: y = f.remote() on W; cancel(y); W's reply embeds W's own ref Z       TASK-016, BOR-013
    d, w, tid, y = stub_executor(retries=0)
    d.handle(ev.Cancel("cancel", tid))
    z = w.descriptor(w.oid(5), forward_id=w.oid("f5"))
    out = d.handle(w.send(d, TaskReply(tid, 1, (ReturnValue(y, ReturnKind.INLINE, raw(b"v", (z,))),))))
    assert bodies(out, ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(z.object_id, (z.forward_id,)),))]
    assert d.owned[y].error.code is ErrorCode.TASK_CANCELLED
    assert d.owned["D.d1.9"].submitted_task_refs == 0 and z.object_id not in d.borrowed


def test_argument_whose_owner_is_dead_fails_the_task_without_running_it():
    # S: y = f.remote(x) on E, where x's owner O is already known dead at E   TASK-009, REF-002, FATE-001
    e = peer("E", 0xE1)
    s = Stub("S")
    s.greet(e)
    e.handle(ev.PeerFailed("failed", "O", 0x0B))
    x = RefDescriptor("O.b.1", "O", 0x0B, "mem://O")
    out = e.handle(s.send(e, SubmitTask(s.oid("t"), "f", (Arg(ArgKind.REF, ref=x),), (s.oid("t.r0"),))))
    assert of_type(out, ev.RunTask) == []
    assert [fr.receiver for fr in frames(out)] == ["S"]  # nobody contacts the dead owner
    [reply] = bodies(out, TaskReply)
    assert reply.returns[0].error.code is ErrorCode.OWNER_DIED


def test_argument_the_owner_reports_freed_fails_the_task_with_that_code():
    # S: y = f.remote(x) on E; O answers that x was freed                    TASK-009, ERR-007
    e = peer("E", 0xE1)
    s, o = Stub("S"), Stub("O", incarnation=0x0B)
    s.greet(e)
    x = o.descriptor(o.oid(1))
    out = e.handle(s.send(e, SubmitTask(s.oid("t"), "f", (Arg(ArgKind.REF, ref=x),), (s.oid("t.r0"),))))
    assert of_type(out, ev.RunTask) == []
    out = e.handle(o.welcome(e))
    assert bodies(out, GetObjectStatus, to="O") == [GetObjectStatus(x.object_id, True, relay=True)]
    out = e.handle(o.send(e, ObjectStatus(x.object_id, ObjectState.FREED)))
    [reply] = bodies(out, TaskReply)
    assert reply.returns[0].error.code is ErrorCode.OBJECT_FREED and of_type(out, ev.RunTask) == []


# ================================================================ lineage
def test_released_entry_keeps_lineage_and_lost_value_is_rebuilt_with_its_argument():
    # D: a = f.options(max_retries=1).remote()           (stored on W1)
    #    b = g.options(max_retries=1).remote(a)          (stored on W2)
    #    del a                     -> a released once g is done, lineage kept
    #    W2 dies                   -> b lost: re-run f (for a), then g         LIN-002, LIN-003, LIN-004, RPC-007
    net = Net(("D", "W1", "W2"))
    ta, (a,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", ta, stored_result(500))
    net.deliver_all()
    tb, (b,) = net.submit("D", "g", ref(a), executor="W2", retries=1)
    assert net["D"].owned[a].lineage_refs == 1
    net.drop_ref("D", a)
    net.deliver_all()
    [run] = net.runs("W2")
    assert run.args[0].locations == (("W1", "mem://W1"),)
    net.finish("W2", tb, stored_result(700))
    net.deliver_all()
    e = net["D"].owned[a]
    assert (e.state, e.value, dict(e.locations)) == ("released", None, {})
    assert net.sent_bodies(FreeObjects, dst="W1") == [FreeObjects((a,))]
    sent_before = len(net.sent)
    net.kill("W2", "D")
    resubmitted = [f.body for f in net.sent[sent_before:] if isinstance(f.body, SubmitTask)]
    first_f = net["D"].tasks[ta].spec
    assert [(m.task_id, m.attempt) for m in resubmitted] == [(ta, 2), (tb, 2)]
    assert resubmitted[0].args == first_f.args and resubmitted[1].return_ids == (b,)
    assert (net["D"].owned[a].state, net["D"].owned[b].state) == ("pending", "pending")
    net.deliver_all()
    net.finish("W1", ta, stored_result(500), attempt=2)
    net.deliver_all()
    [run_g] = [r for r in net.runs("W1") if r.task_id == tb]
    net.finish("W1", tb, stored_result(700), attempt=2)
    net.deliver_all()
    assert net["D"].owned[b].state == "ready"
    assert net["D"].owned[a].state == "released"  # LIN-004: back once g's hold is gone


def test_every_lost_return_of_a_task_is_rebuilt_by_its_one_retry():
    # D: a, b = f.options(num_returns=2, max_retries=1).remote()   (both stored on W1)
    #    W1 dies: a is lost -> f re-run (attempt 2, its last); b is lost too and
    #    must wait for that same run, not fail OBJECT_LOST      LIN-003, LIN-007, RPC-009
    net = Net(("D", "W1", "W2"))
    tid, (a, b) = net.submit("D", "f", executor="W1", retries=1, returns=2)
    net.deliver_all()
    net.finish("W1", tid, stored_result(500), stored_result(600))
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    d = net["D"]
    assert (d.owned[a].state, d.owned[b].state) == ("pending", "pending")
    assert [(f.dst, f.body.attempt) for f in net.sent if isinstance(f.body, SubmitTask)] == [("W1", 1), ("W2", 2)]
    net.finish("W2", tid, stored_result(500), stored_result(600), attempt=2)
    net.deliver_all()
    assert (d.owned[a].state, d.owned[b].state) == ("ready", "ready")
    assert dict(d.owned[a].locations) == dict(d.owned[b].locations) == {"W2": None}


def test_lost_put_object_fails_with_object_lost():
    # D: x = put(big); the store loses it                                    LIN-003, LIN-006
    net = Net(("D",))
    x = net.put("D", b"B" * 200_000, stored=True)
    net.handle("D", ev.CopyLost(net.sid("D", "lost"), x))
    [res] = of_type(net.get("D", x), ev.GetResult)
    assert res.error.code is ErrorCode.OBJECT_LOST


def test_lost_result_of_a_non_retryable_task_fails_with_object_lost():
    # D: y = make.remote() (max_retries=0) stored on W; W dies              LIN-003, LIN-006, LOC-004
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "make", executor="W")
    net.deliver_all()
    net.finish("W", tid, stored_result(300_000))
    net.deliver_all()
    net.kill("W", "D")
    assert net["D"].owned[y].error.code is ErrorCode.OBJECT_LOST
    assert net.sent_bodies(SubmitTask) == [net["D"].tasks[tid].spec]


def _lineage_net(limit: int) -> Net:
    from refrpc.core import Config

    return Net(("D", "W1", "W2"), config=Config(max_lineage_bytes=limit))


@pytest.mark.parametrize("made_by", ["put", "task without retries"])
def test_reconstruction_needing_a_released_argument_that_cannot_be_rebuilt_fails_at_once(made_by):
    # D: a = put(v)  (or a = f.remote() with max_retries=0)
    #    b = g.options(max_retries=1).remote(a)   (stored on W2); del a -> a released
    #    W2 dies: b's rebuild needs a, which nothing can re-create: b fails with
    #    OBJECT_LOST in that step, and no attempt of g is sent              LIN-014, LIN-003
    net = Net(("D", "W1", "W2"))
    if made_by == "put":
        a = net.put("D", b"v")
    else:
        ta, (a,) = net.submit("D", "f", executor="W1")
        net.deliver_all()
        net.finish("W1", ta, result(b"v"))
        net.deliver_all()
    tb, (b,) = net.submit("D", "g", ref(a), executor="W2", retries=1)
    net.drop_ref("D", a)
    net.deliver_all()
    net.finish("W2", tb, stored_result(700))
    net.deliver_all()
    d = net["D"]
    assert d.owned[a].state == "released"
    net.kill("W2", "D")
    net.deliver_all()
    assert d.owned[b].state == "failed" and d.owned[b].error.code is ErrorCode.OBJECT_LOST
    assert d.owned[b].error.requirement == "LIN-014" and a in d.owned[b].error.message
    assert d.owned[a].state == "released"  # never moved: LIN-006 forbids rebuilding it
    assert not [f for f in net.sent if isinstance(f.body, SubmitTask) and f.body.function == "g" and f.body.attempt > 1]
    [res] = of_type(net.get("D", b), ev.GetResult)
    assert res.error.code is ErrorCode.OBJECT_LOST
    net.drop_ref("D", b)
    net.deliver_all()
    assert d.owned == {} and d.lineage == {}


def test_lineage_bound_evicts_the_oldest_task_and_its_lost_value_fails_with_lineage_evicted():
    # D keeps room for one task's lineage: a = f(), then b = g(); f is evicted.
    # W1 (holding a) dies: a can't be rebuilt -> LINEAGE_EVICTED, not OBJECT_LOST   LIN-005, LIN-010
    from refrpc.core._tasks import lineage_cost

    net = _lineage_net(300)
    ta, (a,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", ta, stored_result(500))
    net.deliver_all()
    assert list(net["D"].lineage) == [ta] and net["D"].lineage_bytes == lineage_cost(net["D"].tasks[ta].spec)
    tb, (b,) = net.submit("D", "g", executor="W2", retries=1)
    net.deliver_all()
    net.finish("W2", tb, stored_result(600))
    net.deliver_all()
    d = net["D"]
    assert list(d.lineage) == [tb] and ta not in d.tasks  # the oldest went first
    assert d.owned[a].lineage_evicted and not d.owned[b].lineage_evicted
    assert any(ev_ == "lineage_evicted" for _, ev_, _ in d.story(ta))
    net.kill("W1", "D")
    assert d.owned[a].state == "failed" and d.owned[a].error.code is ErrorCode.LINEAGE_EVICTED
    [res] = of_type(net.get("D", a), ev.GetResult)
    assert res.error.code is ErrorCode.LINEAGE_EVICTED
    assert not [f for f in net.sent if isinstance(f.body, SubmitTask) and f.body.attempt > 1]


def test_reconstruction_needing_an_evicted_argument_fails_with_lineage_evicted():
    # a = f(); b = g(a); del a (released, kept as b's lineage); then f's lineage is
    # evicted, which deletes a at once. W2 (holding b) dies: b's rebuild needs a.   LIN-005, LIN-010, LIN-002
    net = _lineage_net(10**6)
    ta, (a,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", ta, stored_result(500))
    net.deliver_all()
    tb, (b,) = net.submit("D", "g", ref(a), executor="W2", retries=1)
    net.drop_ref("D", a)
    net.deliver_all()
    net.finish("W2", tb, stored_result(700))
    net.deliver_all()
    d = net["D"]
    assert d.owned[a].state == "released" and list(d.lineage) == [ta, tb]
    d._evict_lineage(d.tasks[ta])  # what a smaller bound would have done
    d.validate()
    assert a not in d.owned and list(d.lineage) == [tb]
    net.kill("W2", "D")
    assert d.owned[b].state == "failed" and d.owned[b].error.code is ErrorCode.LINEAGE_EVICTED
    assert a in d.owned[b].error.message
    assert not [f for f in net.sent if isinstance(f.body, SubmitTask) and f.body.attempt > 1]
    net.drop_ref("D", b)
    net.deliver_all()
    assert d.owned == {} and d.tasks == {} and d.lineage == {} and d.lineage_bytes == 0


def test_evicting_lineage_releases_arguments_kept_only_for_it():
    # a = f(); b = g(a); del a -> a released for b's lineage. Evicting g's lineage
    # makes a unneeded: it is deleted and FreeObjects is not sent twice.            LIN-010, OWN-006
    net = _lineage_net(10**6)
    ta, (a,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", ta, stored_result(500))
    net.deliver_all()
    tb, (b,) = net.submit("D", "g", ref(a), executor="W2", retries=1)
    net.drop_ref("D", a)
    net.deliver_all()
    net.finish("W2", tb, stored_result(700))
    net.deliver_all()
    d = net["D"]
    d._evict_lineage(d.tasks[tb])
    d.validate()
    assert a not in d.owned and ta not in d.tasks and d.owned[b].state == "ready"
    assert list(d.lineage) == []


def test_lineage_within_the_bound_still_rebuilds():
    # The bound holds the task: the lost value is rebuilt as LIN-003 says.           LIN-003, LIN-010
    net = _lineage_net(10**6)
    ta, (a,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", ta, stored_result(500))
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    assert net["D"].owned[a].state == "pending"
    assert [(f.dst, f.body.attempt) for f in net.sent if isinstance(f.body, SubmitTask)] == [("W1", 1), ("W2", 2)]


# ================================================================ retries and duplicates
def test_executor_death_retries_on_another_executor():
    # D: y = f.options(max_retries=1).remote(); W1 dies                      RPC-004, RPC-010
    net = Net(("D", "W1", "W2"))
    tid, (y,) = net.submit("D", "f", executor="W1", retries=1)
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    assert [(f.dst, f.body.attempt) for f in net.sent if isinstance(f.body, SubmitTask)] == [("W1", 1), ("W2", 2)]
    assert [r.attempt for r in net.runs("W2")] == [2]


def test_executor_death_without_retries_fails_with_worker_died_naming_it():
    # D: y = f.remote(x); W dies                                             RPC-004, BOR-006
    net = Net(("D", "W"))
    x = net.put("D")
    tid, (y,) = net.submit("D", "f", ref(x), executor="W")
    net.deliver_all()
    net.kill("W", "D")
    err = net["D"].owned[y].error
    assert err.code is ErrorCode.WORKER_DIED and "W" in err.message
    assert net["D"].owned[x].submitted_task_refs == 0


def test_duplicate_submit_runs_once_and_a_finished_one_is_answered_again():
    # a submitter that re-sends SubmitTask on a new seq                      RPC-001, RPC-008
    w = peer("W", 0x01)
    s = Stub("S")
    s.greet(w)
    spec = SubmitTask(s.oid("t"), "f", (), (s.oid("t.r0"),))
    assert len(of_type(w.handle(s.send(w, spec)), ev.RunTask)) == 1
    assert w.handle(s.send(w, spec)) == []  # resolving/running: ignored
    [reply] = bodies(w.handle(ev.TaskFinished("fin", spec.task_id, 1, (ev.TaskResult(value=raw(b"r")),))), TaskReply)
    out = w.handle(s.send(w, spec))
    assert bodies(out) == [reply] and of_type(out, ev.RunTask) == []


def test_a_task_id_another_peer_runs_here_is_another_task_and_takes_nothing_from_it():
    # L sends a SubmitTask reusing the id and attempt of S's running task (ids are
    # unique, ID-005, but L lies): it is another task. Both run, each reply goes to its
    # own submitter, and L's cancel stops L's task only. Refusing it instead would let
    # L deny S a task by sending S's next id first; indexing it by id alone sent S's
    # reply to L, and S waited for ever                                TASK-068, ID-005
    from refrpc.core.messages import CancelTask, ProtocolError

    w = peer("W", 0x01)
    s, liar = Stub("S"), Stub("L")
    s.greet(w)
    liar.greet(w)
    spec = SubmitTask(s.oid("t"), "f", (), (s.oid("t.r0"),))
    [first] = of_type(w.handle(s.send(w, spec)), ev.RunTask)
    out = w.handle(liar.send(w, SubmitTask(spec.task_id, "g", (), (liar.oid("x.r0"),))))
    assert [b for b in bodies(out, to="L") if isinstance(b, ProtocolError)] == []
    [second] = of_type(out, ev.RunTask)
    assert second.function == "g" and second.task_id != first.task_id and second.owner == "L"
    assert first.task_id == spec.task_id  # the first keeps its own id in the runtime
    [stop] = of_type(w.handle(liar.send(w, CancelTask(spec.task_id))), ev.StopTask)
    assert stop.task_id == second.task_id  # L's cancel reaches L's task, not S's
    out = w.handle(ev.TaskFinished("fin", first.task_id, 1, (ev.TaskResult(value=raw(b"r")),)))
    [reply] = bodies(out, TaskReply)
    assert reply.task_id == spec.task_id and bodies(out, to="L") == []
    assert [e.body for e in s.take(out)] == [reply]
    out = w.handle(ev.TaskFinished("fin2", second.task_id, 1, (ev.TaskResult(error=None, value=raw(b"g")),)))
    [l_reply] = bodies(out, TaskReply)
    assert l_reply.task_id == spec.task_id and [r.object_id for r in l_reply.returns] == [liar.oid("x.r0")]
    assert [e.body for e in liar.take(out)] == [l_reply] and s.take(out) == []


def test_reply_record_is_forgotten_once_acknowledged():
    # the submitter acknowledges W's reply                                     RPC-002
    w = peer("W", 0x01)
    s = Stub("S")
    s.greet(w)
    spec = SubmitTask(s.oid("t"), "f", (), (s.oid("t.r0"),))
    w.handle(s.send(w, spec))
    [env] = frames(w.handle(ev.TaskFinished("fin", spec.task_id, 1, (ev.TaskResult(value=raw(b"r")),))))
    assert w.exec_tasks
    w.handle(s.unsequenced(w, Heartbeat(), ack=env.seq - 1))
    assert w.exec_tasks
    w.handle(s.unsequenced(w, Heartbeat(), ack=env.seq))
    assert w.exec_tasks == {}


def stub_executor(retries: int = 1, retry_exceptions: bool = True) -> tuple[Peer, Stub, str, str]:
    d = peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Put("put", "D.d1.9", raw(b"x")))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (ev.ArgSpec(object_id="D.d1.9"),), ("D.d1.1.r0",), retries, retry_exceptions, executor="W"))
    w = Stub("W")
    d.handle(w.welcome(d))
    return d, w, "D.d1.1", "D.d1.1.r0"


def test_reply_for_an_older_attempt_is_ignored_but_disposed_of():
    # D: y = f.options(max_retries=1, retry_exceptions=True).remote(); attempt 1 raised;
    #    a stale copy of attempt 1's reply (with a stored result) arrives      RPC-005, RPC-006, TASK-015
    d, w, tid, y = stub_executor()
    raised = ErrorInfo(ErrorCode.TASK_FAILED, "ValueError", "TASK-007")
    out = d.handle(w.send(d, TaskReply(tid, 1, (ReturnValue(y, ReturnKind.ERROR, error=raised),))))
    [retry] = bodies(out, SubmitTask)
    assert retry.attempt == 2 and d.owned[y].state == "pending"
    stale = TaskReply(tid, 1, (ReturnValue(y, ReturnKind.STORED, location="W", size=10),))
    out = d.handle(w.send(d, stale))
    assert bodies(out, ProtocolError) == []
    assert d.owned[y].state == "pending" and d.owned["D.d1.9"].submitted_task_refs == 1
    assert bodies(out) == [FreeObjects((y,))]
    d.handle(w.send(d, TaskReply(tid, 2, (ReturnValue(y, ReturnKind.INLINE, raw(b"ok")),))))
    assert d.owned[y].value == raw(b"ok") and d.owned["D.d1.9"].submitted_task_refs == 0


def test_retry_is_decided_per_reply_and_a_final_code_in_another_return_does_not_stop_it():
    # D: a, b, c = f.options(num_returns=3, max_retries=1, retry_exceptions=True).remote() on W;
    #    attempt 1's reply: a raised, b did not fit W's store, c is ready: the whole
    #    task is sent again; attempt 2's reply is adopted return by return      RPC-005, OBJ-062
    d = peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0", "D.d1.1.r1", "D.d1.1.r2"), 1, True, executor="W"))
    w = Stub("W")
    d.handle(w.welcome(d))
    a, b, c = "D.d1.1.r0", "D.d1.1.r1", "D.d1.1.r2"
    raised = ErrorInfo(ErrorCode.TASK_FAILED, "ValueError", "TASK-007")
    full = ErrorInfo(ErrorCode.OBJECT_STORE_FULL, "no room", "OBJ-036")
    out = d.handle(w.send(d, TaskReply("D.d1.1", 1, (ReturnValue(a, ReturnKind.ERROR, error=raised),
                                                      ReturnValue(b, ReturnKind.ERROR, error=full),
                                                      ReturnValue(c, ReturnKind.INLINE, raw(b"c"))))))
    [retry] = bodies(out, SubmitTask)
    assert retry.attempt == 2 and all(d.owned[x].state == "pending" for x in (a, b, c))
    out = d.handle(w.send(d, TaskReply("D.d1.1", 2, (ReturnValue(a, ReturnKind.ERROR, error=raised),
                                                      ReturnValue(b, ReturnKind.ERROR, error=full),
                                                      ReturnValue(c, ReturnKind.INLINE, raw(b"c"))))))
    assert bodies(out, SubmitTask) == []
    assert (d.owned[a].error.code, d.owned[b].error.code) == (ErrorCode.TASK_FAILED, ErrorCode.OBJECT_STORE_FULL)
    assert d.owned[c].value == raw(b"c")


def test_an_error_return_carries_the_raised_exception_to_the_owners_program():
    # D: y = f.remote() on W; f raises, and W sends the exception with the error   TASK-007, TASK-018
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "f", executor="W")
    net.deliver_all()
    exc = raw(b"the exception, pickled")
    raised = ErrorInfo(ErrorCode.TASK_FAILED, "KeyError: 'k'", "TASK-007")
    net.finish("W", tid, ev.TaskResult(value=exc, error=raised))
    [reply] = net.sent_bodies(TaskReply, src="W")
    assert reply.returns[0].kind is ReturnKind.ERROR and reply.returns[0].value == exc
    net.deliver_all()
    [res] = of_type(net.get("D", y), ev.GetResult)
    assert res.error == raised and res.value == exc  # the error decides; the exception rides along
    assert net["D"].owned[y].state == "failed"


def test_an_exception_embedding_refs_is_not_sent_with_an_error():
    # A value with nested refs would need grants: TASK-018 forbids it, the executor sends the error alone.
    net = Net(("D", "W"))
    x = net.put("D", b"x")
    tid, (y,) = net.submit("D", "f", shared(x), executor="W")
    net.deliver_all()
    [run] = net.runs("W")
    nested = run.args[0].ref
    raised = ErrorInfo(ErrorCode.TASK_FAILED, "E", "TASK-007")
    net.finish("W", tid, ev.TaskResult(value=raw(b"e", (nested,)), error=raised))
    [reply] = net.sent_bodies(TaskReply, src="W")
    assert reply.returns[0].value is None and reply.returns[0].error == raised


def test_protocol_error_naming_a_submit_fails_that_task():
    # D: y = f.remote(x) on W, and W cannot accept the SubmitTask           ERR-003
    d, w, tid, y = stub_executor(retries=0)
    info = ErrorInfo(ErrorCode.UNKNOWN_MESSAGE, "no such message here", "GEN-001")
    out = d.handle(w.send(d, ProtocolError(info, related_seq=1)))
    assert [i.error for i in of_type(out, ev.RemoteError)] == [info]
    assert d.owned[y].error.code is ErrorCode.UNKNOWN_MESSAGE
    assert d.owned["D.d1.9"].submitted_task_refs == 0


def test_an_answered_submit_is_no_longer_a_request_an_error_can_end():
    # D: y = f.remote(x) on W; W replies; a late error names the SubmitTask   ERR-003
    d, w, tid, y = stub_executor(retries=0)
    session = d.remotes["W"]
    assert session.requests == {1: ("SubmitTask", tid)} and session.submit_seqs == {tid: 1}
    d.handle(w.send(d, TaskReply(tid, 1, (ReturnValue(y, ReturnKind.INLINE, raw(b"ok")),))))
    assert session.requests == {} and session.submit_seqs == {}  # only unanswered requests are kept
    info = ErrorInfo(ErrorCode.WRONG_STATE, "late", "GEN-005")
    out = d.handle(w.send(d, ProtocolError(info, related_seq=1)))
    assert [i.error for i in of_type(out, ev.RemoteError)] == [info]  # logged, and it ends nothing
    assert d.owned[y].value == raw(b"ok") and d.owned[y].error is None


# ================================================================ cancellation
def test_cancel_fails_the_returns_at_once_but_keeps_argument_holds_until_the_reply():
    # D: y = f.remote(x) on W; cancel(y)                                      TASK-008, TASK-014, TASK-016
    net = Net(("D", "W"))
    x = net.put("D", b"B" * 200_000, stored=True)
    tid, (y,) = net.submit("D", "f", shared(x), executor="W")
    net.deliver_all()
    out = net.handle("D", ev.Cancel(net.sid("D", "cancel"), tid))
    assert bodies(out, CancelTask) == [CancelTask(tid)]
    [res] = of_type(net.get("D", y), ev.GetResult)
    assert res.error.code is ErrorCode.TASK_CANCELLED
    net.drop_ref("D", x)
    assert net["D"].owned[x].submitted_task_refs == 1  # W may still be reading x
    out = net.deliver_all()
    assert [i.task_id for i in of_type(out, ev.StopTask)] == [tid]
    net.finish("W", tid, result(b"late"))
    out = net.deliver_all()
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [x]
    assert net["D"].owned[y].error.code is ErrorCode.TASK_CANCELLED


def test_cancelled_task_releases_its_holds_when_the_executor_dies():
    # D: y = f.remote(x) on W; cancel(y); W dies before answering           TASK-014
    net = Net(("D", "W"))
    x = net.put("D")
    tid, (y,) = net.submit("D", "f", shared(x), executor="W")
    net.deliver_all()
    net.handle("D", ev.Cancel(net.sid("D", "cancel"), tid))
    net.drop_ref("D", x)
    assert x in net["D"].owned
    net.kill("W", "D")
    assert x not in net["D"].owned


def test_cancel_before_the_task_starts_answers_task_cancelled():
    # D: y = f.remote(x_remote) on W; cancel arrives while W resolves x      TASK-008
    w = peer("W", 0x01)
    s, o = Stub("S"), Stub("O", incarnation=0x0B)
    s.greet(w)
    x = o.descriptor(o.oid(1))
    w.handle(s.send(w, SubmitTask(s.oid("t"), "f", (Arg(ArgKind.REF, ref=x),), (s.oid("t.r0"),))))
    out = w.handle(s.send(w, CancelTask(s.oid("t"))))
    assert of_type(out, ev.RunTask) == []
    [reply] = bodies(out, TaskReply)
    assert reply.returns[0].error.code is ErrorCode.TASK_CANCELLED


# ================================================================ fate-sharing
def test_owner_death_fails_borrowed_refs_and_drops_copies():
    # G: y = give.remote() on O (returns [X]); G keeps a copy of X; get(X); O dies   FATE-001, FATE-002, BOR-024
    net = Net(("O", "G"))
    x, y = lend(net, "O", "G")
    net.handle("G", ev.CopyStored(net.sid("G", "copy"), x, 1))
    net.deliver_all()
    net.get("G", x, request_id=5)
    net.drop(is_(GetObjectStatus))  # O never answers
    net.kill("O", "G")
    out = net.last["G"]
    [res] = [g for g in of_type(out, ev.GetResult) if g.request_id == 5]
    assert res.error.code is ErrorCode.OWNER_DIED and "O" in res.error.message
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [x]
    assert net["G"].borrowed[x].state == "failed"
    net.drop_ref("G", y)
    assert x not in net["G"].borrowed and bodies(net.last["G"], ReleaseBorrows) == []


def test_executor_stops_the_tasks_of_a_dead_submitter_and_sends_nothing():
    # S: y = f.remote(shared(x)) on E; S dies while f runs                    FATE-003, FATE-008
    net = Net(("S", "E"))
    x = net.put("S")
    tid, (y,) = net.submit("S", "f", shared(x), executor="E")
    net.deliver_all()
    net.kill("S", "E")
    assert [(i.task_id, i.attempt) for i in of_type(net.last["E"], ev.StopTask)] == [(tid, 1)]
    assert net["E"].borrowed == {} and net["E"].exec_tasks == {}
    assert net.finish("E", tid, result()) == []


def test_stored_result_of_an_orphaned_task_is_dropped():
    # S: y = make.remote() on E (big result); S dies; the task still finishes  FATE-008
    net = Net(("S", "E"))
    tid, (y,) = net.submit("S", "make", executor="E")
    net.deliver_all()
    net.kill("S", "E")
    out = net.finish("E", tid, stored_result(300_000))
    assert [i.object_id for i in of_type(out, ev.FreeCopy)] == [y]


# ================================================================ actors
def create_actor(net: Net, owner: str = "D", host: str = "H") -> str:
    aid = net.ids[owner].next()
    net.handle(owner, ev.CreateActorRequest(net.sid(owner, "actor"), aid, "Counter", (), host))
    return aid


def test_actor_calls_wait_for_the_constructor_then_run_one_at_a_time_in_order():
    # D: a = Counter.remote(); a.add.remote(1); a.add.remote(2); a.get.remote()   ACT-001, ACT-003, ACT-012, ACT-013
    net = Net(("D", "H"))
    aid = create_actor(net)
    calls = [net.submit("D", m, actor=aid)[0] for m in ("add1", "add2", "get")]
    net.deliver_all()
    assert [type(i) for i in net.log["H"] if not isinstance(i, ev.SendFrame)] == [ev.StartActor]
    out = net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [calls[0]]
    net.deliver_all()
    assert [c.state for c in of_type(net.log["D"], ev.ActorStateChanged)] == ["alive"]
    for i, tid in enumerate(calls):
        out = net.finish("H", tid, result(b"%d" % i))
        expected = [calls[i + 1]] if i + 1 < len(calls) else []
        assert [r.task_id for r in of_type(out, ev.RunTask)] == expected


def test_actor_runs_a_callers_calls_in_increasing_actor_seq():
    # a caller whose calls 2 and 1 reach the host in that order              ACT-003
    h = peer("H", 0x11)
    s = Stub("S")
    s.greet(h)
    aid = s.oid("a")
    h.handle(s.send(h, CreateActor(aid, "C", ())))
    h.handle(ev.ActorReady("ready", aid))
    seqs = []
    for n in (2, 1):
        call = SubmitTask(s.oid(f"c{n}"), "m", (), (s.oid(f"c{n}.r0"),), actor_id=aid, actor_seq=n)
        for run in of_type(h.handle(s.send(h, call)), ev.RunTask):
            seqs.append(n)
            h.handle(ev.TaskFinished(f"fin-{run.task_id}", run.task_id, 1, (ev.TaskResult(value=raw(b"")),)))
    assert seqs == sorted(seqs)


def test_a_waiting_call_whose_actor_seq_another_call_started_is_answered_at_once():
    # a faulty caller sends two calls with actorSeq 1 before the actor is ready: the
    # first starts, and the other is answered WRONG_STATE naming ACT-003 then, as a
    # late call is; it never runs                                         ACT-003, ACT-014
    h = peer("H", 0x11)
    s = Stub("S")
    s.greet(h)
    aid = s.oid("a")
    h.handle(s.send(h, CreateActor(aid, "C", ())))
    for name in ("c1", "c1bis"):
        h.handle(s.send(h, SubmitTask(s.oid(name), "m", (), (s.oid(f"{name}.r0"),), actor_id=aid, actor_seq=1)))
    out = h.handle(ev.ActorReady("ready", aid))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [s.oid("c1")]
    [reply] = bodies(out, TaskReply)
    assert reply.task_id == s.oid("c1bis")
    assert [(rv.kind, rv.error.code, rv.error.requirement) for rv in reply.returns] == [
        (ReturnKind.ERROR, ErrorCode.WRONG_STATE, "ACT-003")]
    out = h.handle(ev.TaskFinished("fin", s.oid("c1"), 1, (ev.TaskResult(value=raw(b"")),)))
    assert of_type(out, ev.RunTask) == []


def test_a_call_that_beats_the_actors_creation_waits_for_it():
    # O: a = Counter.remote(); use.remote(a) on C; C: a.add.remote(1) reaches H
    # before O's CreateActor (another session): H holds it, then runs it   ACT-023
    h = peer("H", 0x11)
    o, c = Stub("O"), Stub("C")
    o.greet(h)
    c.greet(h)
    aid = o.oid("a")
    call = SubmitTask(c.oid("c1"), "add", (), (c.oid("c1.r0"),), actor_id=aid, actor_seq=1)
    out = h.handle(c.send(h, call))
    assert bodies(out, TaskReply) == [] and of_type(out, ev.RunTask) == []  # held, not refused
    h.handle(o.send(h, CreateActor(aid, "C", ())))
    runs = of_type(h.handle(ev.ActorReady("ready", aid)), ev.RunTask)
    assert [r.task_id for r in runs] == [call.task_id]
    assert h.held_actor_calls == {}


def test_a_call_for_an_actor_never_created_is_answered_after_the_wait():
    # C calls an actor H never hears of: ACTOR_DIED once the wait is over, not before   ACT-023, ACT-004
    h = peer("H", 0x11)
    c = Stub("C")
    c.greet(h)
    wait = h.config.actor_create_wait_ms
    call = SubmitTask(c.oid("c1"), "add", (), (c.oid("c1.r0"),), actor_id=c.oid("nobody"), actor_seq=1)
    h.handle(ev.Tick("t0", 1000))
    h.handle(c.send(h, call))

    def until(now: int) -> list[TaskReply]:  # time passes; C stays alive (LIV-002)
        out = []
        for t in range(h.now_ms + 200, now + 1, 200):
            out += h.handle(c.unsequenced(h, Heartbeat()), ev.Tick(c.sid("t"), t))
        return bodies(out + h.handle(ev.Tick(c.sid("t"), now)), TaskReply)

    assert until(1000 + wait - 1) == []
    (reply,) = until(1000 + wait)
    assert reply.task_id == call.task_id and reply.returns[0].error.code is ErrorCode.ACTOR_DIED
    assert h.held_actor_calls == {}


def test_held_actor_calls_are_bounded():
    # a stranger's flood of calls for made-up actors: beyond the bound, ACTOR_DIED at once   ACT-023
    h = checked_peer("H", 0x11, Config(max_held_actor_calls=2))
    c = Stub("C")
    c.greet(h)
    replies = []
    for n in range(3):
        call = SubmitTask(c.oid(f"c{n}"), "m", (), (c.oid(f"c{n}.r0"),), actor_id=c.oid(f"x{n}"), actor_seq=1)
        replies += bodies(h.handle(c.send(h, call)), TaskReply)
    assert [r.task_id for r in replies] == [c.oid("c2")]
    assert replies[0].returns[0].error.code is ErrorCode.ACTOR_DIED


def test_a_held_call_that_is_cancelled_is_answered_at_once():
    # C: y = a.add.remote(1); cancel(y) while H still waits for a's creation   ACT-023, TASK-008
    h = peer("H", 0x11)
    c = Stub("C")
    c.greet(h)
    call = SubmitTask(c.oid("c1"), "add", (), (c.oid("c1.r0"),), actor_id=c.oid("later"), actor_seq=1)
    h.handle(c.send(h, call))
    (reply,) = bodies(h.handle(c.send(h, CancelTask(call.task_id))), TaskReply)
    assert reply.returns[0].error.code is ErrorCode.TASK_CANCELLED
    assert h.held_actor_calls == {}


def test_a_held_call_of_a_caller_that_dies_is_dropped():
    # C's call waits for a1; C dies; the creation comes: nothing of C's runs   ACT-023, FATE-003
    h = peer("H", 0x11)
    o, c = Stub("O"), Stub("C")
    o.greet(h)
    c.greet(h)
    aid = o.oid("a")
    h.handle(c.send(h, SubmitTask(c.oid("c1"), "add", (), (c.oid("c1.r0"),), actor_id=aid, actor_seq=1)))
    h.handle(o.send(h, PeerDeadNotice("C", c.incarnation)))
    h.handle(o.send(h, CreateActor(aid, "C", ())))
    assert of_type(h.handle(ev.ActorReady("ready", aid)), ev.RunTask) == []


def test_call_to_a_killed_actor_fails_with_actor_died():
    # D: a = Counter.remote(); kill(a); a.add.remote(1)                      ACT-004, ACT-006
    net = Net(("D", "H"))
    aid = create_actor(net)
    net.deliver_all()
    net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid))
    net.deliver_all()
    net.handle("D", ev.KillActorRequest(net.sid("D", "kill"), aid))
    net.deliver_all()
    assert [i.actor_id for i in of_type(net.log["H"], ev.StopActor)] == [aid]
    assert [c.state for c in of_type(net.log["D"], ev.ActorStateChanged)] == ["alive", "dead"]
    tid, (y,) = net.submit("D", "add", actor=aid)
    net.deliver_all()
    assert net["D"].owned[y].error.code is ErrorCode.ACTOR_DIED


def test_kill_ends_the_running_call_with_actor_died():
    # D: a = Counter.remote(); y = a.slow.remote(); kill(a)                  ACT-006
    net = Net(("D", "H"))
    aid = create_actor(net)
    tid, (y,) = net.submit("D", "slow", actor=aid)
    net.deliver_all()
    net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid))
    net.deliver_all()
    net.handle("D", ev.KillActorRequest(net.sid("D", "kill"), aid))
    net.deliver_all()
    net.finish("H", tid, result(b"done anyway"))
    net.deliver_all()
    assert net["D"].owned[y].error.code is ErrorCode.ACTOR_DIED


def test_owner_death_stops_its_actors():
    # D: a = Counter.remote(); D crashes                                     FATE-004, ACT-005
    net = Net(("D", "H"))
    aid = create_actor(net)
    net.deliver_all()
    net.handle("H", ev.ActorReady(net.sid("H", "ready"), aid))
    net.deliver_all()
    net.kill("D", "H")
    assert [i.actor_id for i in of_type(net.last["H"], ev.StopActor)] == [aid]
    assert net["H"].hosted == {}


def test_host_death_fails_pending_calls_with_actor_died_and_never_retries():
    # D: a = Counter.remote(); y = a.add.options(max_retries=3).remote(); H dies   ACT-007
    net = Net(("D", "H", "W"))
    aid = create_actor(net)
    tid, (y,) = net.submit("D", "add", actor=aid, retries=3)
    net.deliver_all()
    net.kill("H", "D")
    assert net["D"].owned[y].error.code is ErrorCode.ACTOR_DIED
    assert [m.attempt for m in net.sent_bodies(SubmitTask)] == [1]


def test_stored_value_with_nested_refs_is_not_offered_to_a_peer_without_borrowing():
    # O: x = put(v); y = put([x]) stored; G (no borrowing on the session) asks y   OBJ-012, HS-017
    o = peer("O", 0x0A)
    g = Stub("G", features=("core",))
    g.greet(o)
    o.handle(ev.Put("put", "O.a.1", Value(Encoding.RAW, b"x"), False, 1))
    o.handle(ev.Put("put", "O.a.2", Value(Encoding.PORTABLE, b"", (), (o._descriptor("O.a.1"),)), True, 4096))
    [status] = bodies(o.handle(g.send(o, GetObjectStatus("O.a.2"))))
    assert status.state is ObjectState.FAILED and status.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    assert status.locations == () and o.owned["O.a.2"].state == "ready"
    # A peer with borrowing is offered the copy as before.
    h = Stub("H")
    h.greet(o)
    [status] = bodies(o.handle(h.send(o, GetObjectStatus("O.a.2"))))
    assert status.state is ObjectState.READY and status.locations == ("O",)


def test_a_lost_stored_value_lets_go_of_its_nested_refs_and_a_rebuilt_one_takes_its_own():
    # D: x = put(b"x"); a = f.options(max_retries=1).remote(shared(x))   (f returns [x], stored on W1)
    #    W1 dies: a is lost and rebuilt on W2, whose run returns no ref: x is no longer
    #    held contained-in a, neither while a is rebuilt nor after       GC-003, LIN-003
    net = Net(("D", "W1", "W2"))
    x = net.put("D", b"x")
    tid, (a,) = net.submit("D", "f", shared(x), executor="W1", retries=1)
    net.deliver_all()
    net.finish("W1", tid, stored_result(500, (net["W1"]._descriptor(x),)))
    net.deliver_all()
    d = net["D"]
    assert a in d.owned[x].contained_in
    net.kill("W1", "D")
    net.deliver_all()
    assert d.owned[a].state == "pending" and a not in d.owned[x].contained_in
    net.finish("W2", tid, stored_result(500), attempt=2)
    net.deliver_all()
    assert d.owned[a].state == "ready" and a not in d.owned[x].contained_in


def test_a_member_is_not_made_to_fence_its_head_by_an_owners_confirm_borrow():
    # E is S's head (judged by S's own session only); O fenced E and asks S about the
    # grant E requested for it: S does not fence E on O's word and answers held, the
    # safe side, so the grant stays until S releases it or dies       BOR-011, CLU-015, CLU-034
    net = Net(("O", "S", "E"), configs={"S": Config(unannounced=("E",))})
    x, y1, tid, fid = forward_through(net)
    e = net.kill("E", "O")
    out = net.deliver(is_(ConfirmBorrow, dst="S"))
    assert bodies(out, BorrowConfirmed) == [BorrowConfirmed(x, fid, True)]
    assert ("E", e) not in net["S"].fenced
    net.deliver_all()
    assert fid in grants_of(net, "O", x).get("S", {})


def test_grants_in_members_a_return_kind_does_not_use_are_given_back():
    # W's reply puts grants where its kind does not read them: in ReturnValue.nested of an
    # inline return, in the value of a stored one; D keeps neither and releases both   VAL-019, BOR-013
    d, w, tid, y = stub_executor(retries=0)
    z1 = w.descriptor(w.oid(5), forward_id=w.oid("f5"))
    z2 = w.descriptor(w.oid(6), forward_id=w.oid("f6"))
    inline = ReturnValue(y, ReturnKind.INLINE, raw(b"v"), nested=(z1,))
    out = d.handle(w.send(d, TaskReply(tid, 1, (inline,))))
    assert bodies(out, ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(z1.object_id, (z1.forward_id,)),))]
    assert d.owned[y].state == "ready" and d.owned[y].nested == () and z1.object_id not in d.borrowed
    d2, w2, tid2, y2 = stub_executor(retries=0)
    stored = ReturnValue(y2, ReturnKind.STORED, raw(b"ignored", (z2,)), location="W", size=500)
    out = d2.handle(w2.send(d2, TaskReply(tid2, 1, (stored,))))
    assert bodies(out, ReleaseBorrows) == [ReleaseBorrows((BorrowRelease(z2.object_id, (z2.forward_id,)),))]
    assert d2.owned[y2].state == "ready" and z2.object_id not in d2.borrowed


def test_a_task_that_may_not_run_again_is_kept_while_its_return_is_held():
    # D: y = f.options(max_retries=0).remote() on W; W replies; y is still held  LIN-001, RPC-014
    d, w, tid, y = stub_executor(retries=0)
    d.handle(w.send(d, TaskReply(tid, 1, (ReturnValue(y, ReturnKind.INLINE, raw(b"ok")),))))
    assert d.owned[y].state == "ready"
    assert tid in d.tasks  # its record is y's lineage, although f may not run again
    d.handle(ev.DropRef("drop", y))
    assert y not in d.owned and tid not in d.tasks  # forgotten with its last return's entry
