"""REF-007: a delivered message whose descriptor names another owner (or owner
incarnation) than the entry the receiver keeps for that object id is malformed;
the entry is never merged with it. A TaskReply goes through TASK-019."""

from __future__ import annotations

from dataclasses import replace

from corekit import Stub, bodies, checked_peer, frames, of_type, raw
from refrpc.core import events as ev
from refrpc.core.messages import (
    Arg,
    ArgKind,
    CreateActor,
    ErrorCode,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)
from refrpc.core.peer import Peer

INC = 0xA1
PREFIX = f"A.{INC:x}."


def with_stub() -> tuple[Peer, Stub]:
    a = checked_peer("A", INC)
    s = Stub("S")
    s.greet(a)
    a.handle(ev.AddPeer("add", "S", s.address))
    return a, s


def refused(out: list[ev.Instruction], seq: int) -> ProtocolError:
    [err] = [b for b in bodies(out, ProtocolError, to="S")]
    assert isinstance(err, ProtocolError)
    assert err.error.code is ErrorCode.MALFORMED and err.error.requirement == "REF-007"
    assert err.related_seq == seq
    return err


def submit(s: Stub, tid: str, *args: Arg) -> SubmitTask:
    return SubmitTask(tid, "f", args, (tid + ".r0",))


def test_a_task_naming_an_object_of_the_receiver_under_another_owner_is_malformed():
    # A owns x; S sends a task whose ref argument names x as owned by S         REF-007, GEN-004, GEN-010
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    bad = submit(s, s.oid("t1"), Arg(ArgKind.REF, ref=s.descriptor(x)))
    stim = s.send(a, bad)
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert not of_type(out, ev.RunTask)
    assert x not in a.borrowed and a.owned[x].borrowers == {}  # nothing merged
    assert not a.exec_tasks
    # GEN-010: the number was used up; the next message runs.
    out = a.handle(s.send(a, submit(s, s.oid("t2"), Arg(ArgKind.VALUE, value=raw(b"ok")))))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [s.oid("t2")]


def test_a_descriptor_of_the_receivers_object_with_another_incarnation_is_malformed():
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    mine = a.descriptor(x)
    stim = s.send(a, submit(s, s.oid("t1"), Arg(ArgKind.SHARED, ref=replace(mine, owner_incarnation=INC + 1))))
    refused(a.handle(stim), stim.envelope.seq)
    # The same descriptor with this incarnation is fine.
    out = a.handle(s.send(a, submit(s, s.oid("t2"), Arg(ArgKind.SHARED, ref=mine))))
    assert not bodies(out, ProtocolError) and of_type(out, ev.RunTask)


def test_a_nested_descriptor_conflicting_with_a_borrowed_entry_is_malformed():
    # A holds y (owned by S, incarnation i) under a task hold of a running task; a
    # second task nests a descriptor of y naming S with another incarnation      REF-007
    a, s = with_stub()
    y = s.descriptor(s.oid("y"))
    out = a.handle(s.send(a, submit(s, s.oid("t1"), Arg(ArgKind.SHARED, ref=y))))
    assert of_type(out, ev.RunTask) and a.borrowed[y.object_id].task_holds == 1
    other = replace(y, owner_incarnation=y.owner_incarnation + 1)
    stim = s.send(a, submit(s, s.oid("t2"), Arg(ArgKind.VALUE, value=raw(b"n", (other,)))))
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert not of_type(out, ev.RunTask)
    b = a.borrowed[y.object_id]
    assert (b.ref.owner_incarnation, b.task_holds) == (y.owner_incarnation, 1)


def test_two_descriptors_of_one_object_that_disagree_in_one_message_are_malformed():
    a, s = with_stub()
    y = s.descriptor(s.oid("y"))
    stim = s.send(a, submit(s, s.oid("t1"), Arg(ArgKind.SHARED, ref=y), Arg(ArgKind.SHARED, ref=replace(y, owner="T"))))
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert y.object_id not in a.borrowed and not a.exec_tasks


def test_a_conflicting_actor_creation_is_malformed():
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    stim = s.send(a, CreateActor(s.oid("actor"), "Counter", (Arg(ArgKind.REF, ref=s.descriptor(x)),)))
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert not a.hosted


def _submitted(a: Peer, s: Stub, retries: int = 0) -> tuple[str, str]:
    tid = PREFIX + "2"
    out = a.handle(ev.Submit("submit", tid, "f", (), (tid + ".r0",), retries, True, executor="S"))
    assert frames(out, SubmitTask, to="S")
    return tid, tid + ".r0"


def test_a_reply_with_a_conflicting_descriptor_fails_the_task_without_a_retry():
    # A owns x; t = f.remote() on S with retries; S's reply returns a value nesting
    # x as owned by S, with a grant, beside a good grant on S's z       REF-007, TASK-019, TASK-015
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    tid, r0 = _submitted(a, s, retries=3)
    bad_x = s.descriptor(x, forward_id=s.oid("g1"))
    z = s.descriptor(s.oid("z"), forward_id=s.oid("g2"))
    reply = TaskReply(tid, 1, (ReturnValue(r0, ReturnKind.INLINE, value=raw(b"r", (bad_x, z))),))
    stim = s.send(a, reply)
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert not frames(out, SubmitTask)  # no retry
    assert a.owned[r0].state == "failed" and a.owned[r0].error.code is ErrorCode.MALFORMED
    [res] = of_type(a.handle(ev.Get("get", 1, r0)), ev.GetResult)
    assert res.error is not None and res.error.code is ErrorCode.MALFORMED
    # Disposed of (TASK-015): z's grant released; x's descriptor merged into nothing.
    releases = [(r.object_id, r.forward_ids) for b in bodies(out, ReleaseBorrows, to="S") for r in b.releases]  # type: ignore[attr-defined]
    assert releases == [(s.oid("z"), (s.oid("g2"),))]
    assert x not in a.borrowed and a.owned[x].borrowers == {} and a.owned[x].state == "ready"


def test_a_stale_reply_with_a_conflicting_descriptor_is_answered_malformed():
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    tid, r0 = _submitted(a, s)
    a.handle(s.send(a, TaskReply(tid, 1, (ReturnValue(r0, ReturnKind.INLINE, value=raw(b"ok")),))))
    assert a.owned[r0].state == "ready"
    stim = s.send(a, TaskReply(tid, 1, (ReturnValue(r0, ReturnKind.INLINE, value=raw(b"r", (s.descriptor(x),))),)))
    refused(a.handle(stim), stim.envelope.seq)
    assert a.owned[r0].state == "ready"  # the settled task is untouched


def test_a_reply_whose_retained_ref_conflicts_is_malformed():
    # t = f.remote(shared y) where y is S's; the reply's retained names y under
    # another owner incarnation                                                  REF-007
    a, s = with_stub()
    y = s.descriptor(s.oid("y"))
    a.handle(s.send(a, submit(s, s.oid("t0"), Arg(ArgKind.SHARED, ref=y))))  # A now holds y (task hold)
    tid, r0 = _submitted(a, s)
    reply = TaskReply(tid, 1, (ReturnValue(r0, ReturnKind.INLINE, value=raw(b"r")),),
                      retained=(replace(y, owner_incarnation=y.owner_incarnation + 1, forward_id=s.oid("g")),))
    stim = s.send(a, reply)
    refused(a.handle(stim), stim.envelope.seq)
    assert a.owned[r0].state == "failed"


def test_a_refused_status_answer_fails_the_borrowers_get_at_once():
    # A borrows y from S (a task hold) and its program gets y; S's ObjectStatus
    # nests a descriptor of A's own x naming S as owner: refused, and the get
    # fails MALFORMED now, not when S dies                                 REF-007, OBJ-017
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    y = s.descriptor(s.oid("y"))
    a.handle(s.send(a, submit(s, s.oid("t1"), Arg(ArgKind.SHARED, ref=y))))
    out = a.handle(ev.Get("get", 7, y.object_id))
    assert not of_type(out, ev.GetResult) and bodies(out, GetObjectStatus, to="S")
    stim = s.send(a, ObjectStatus(y.object_id, ObjectState.READY, 1, (), (), raw(b"r", (s.descriptor(x),))))
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    [res] = of_type(out, ev.GetResult)
    assert res.request_id == 7 and res.error is not None
    assert res.error.code is ErrorCode.MALFORMED and res.error.requirement == "REF-007"
    assert a.borrowed[y.object_id].state == "failed" and a.owned[x].borrowers == {}  # nothing merged
    # For good: a later get of y is answered at once with the same error, and S is not asked again.
    out = a.handle(ev.Get("get", 8, y.object_id))
    [res] = of_type(out, ev.GetResult)
    assert res.error is not None and res.error.code is ErrorCode.MALFORMED
    assert not bodies(out, GetObjectStatus)


def test_a_conflicting_status_answer_nobody_waits_for_changes_nothing():
    # The same answer for an object A does not hold (released meanwhile): only refused.
    a, s = with_stub()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    stim = s.send(a, ObjectStatus(s.oid("gone"), ObjectState.READY, 1, (), (), raw(b"r", (s.descriptor(x),))))
    out = a.handle(stim)
    refused(out, stim.envelope.seq)
    assert not of_type(out, ev.GetResult) and s.oid("gone") not in a.borrowed
