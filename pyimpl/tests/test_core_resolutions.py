"""Core behaviour the spec pins down where a reader once had to guess: a rejected
submission of a cancelled task, malformed and unexpected TaskReplies, actor calls
on the wire, refused self-registrations, grants of two incarnations of one PeerId,
and the envelope checks a malformed frame goes through first."""

from __future__ import annotations

import pytest

from corekit import Stub, bodies, checked_peer, frames, of_type, raw
from refrpc.core import Config, Peer
from refrpc.core import events as ev
from refrpc.core.messages import (
    Arg,
    ArgKind,
    BorrowerRegistered,
    BorrowRelease,
    ErrorCode,
    ErrorInfo,
    ProtocolError,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

INC = 0xA1
PREFIX = f"A.{INC:x}."


def peer(config: Config | None = None) -> Peer:
    return checked_peer("A", INC, config)


def with_worker() -> tuple[Peer, Stub]:
    a = peer()
    s = Stub("S")
    s.greet(a)
    a.handle(ev.AddPeer("add", "S", s.address))
    return a, s


def test_a_rejected_submission_of_a_cancelled_task_releases_its_arguments():
    # x = put(v); t = f.remote(x) on S; cancel(t); S refuses the SubmitTask   ERR-003, TASK-014
    a, s = with_worker()
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    out = a.handle(ev.Submit("submit", PREFIX + "2", "f", (ev.ArgSpec(object_id=x),), (PREFIX + "2.r0",), executor="S"))
    [sent] = frames(out, SubmitTask, to="S")
    a.handle(ev.Cancel("cancel", PREFIX + "2"))
    assert a.owned[x].submitted_task_refs == 1  # TASK-014: kept until the reply
    a.handle(s.send(a, ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "no"), sent.seq)))
    assert a.owned[x].submitted_task_refs == 0  # no reply will come: released now
    assert not a.tasks[PREFIX + "2"].holding_args


def test_a_reply_that_does_not_name_the_tasks_returns_fails_the_task():
    # t = f.remote() on S; S replies for a return id t does not have           TASK-019, TASK-010
    a, s = with_worker()
    a.handle(ev.Submit("submit", PREFIX + "2", "f", (), (PREFIX + "2.r0",), executor="S"))
    bad = TaskReply(PREFIX + "2", 1, (ReturnValue(PREFIX + "9.r0", ReturnKind.INLINE, value=raw(b"x")),))
    out = a.handle(s.send(a, bad))
    [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
    assert err.error.code is ErrorCode.MALFORMED and err.error.requirement == "TASK-019"
    assert a.owned[PREFIX + "2.r0"].state == "failed"
    assert a.owned[PREFIX + "2.r0"].error.code is ErrorCode.MALFORMED
    [res] = of_type(a.handle(ev.Get("get", 1, PREFIX + "2.r0")), ev.GetResult)
    assert res.error is not None and res.error.code is ErrorCode.MALFORMED


@pytest.mark.parametrize("rv", [
    ReturnValue(PREFIX + "2.r0", ReturnKind.INLINE),  # no value
    ReturnValue(PREFIX + "2.r0", ReturnKind.STORED, size=300),  # no location
    ReturnValue(PREFIX + "2.r0", ReturnKind.STORED, location="S", size=-1),  # no size
    ReturnValue(PREFIX + "2.r0", ReturnKind.ERROR),  # no error
    ReturnValue(PREFIX + "2.r0", ReturnKind.STORED, location="T", size=300),  # another peer's store
])
def test_a_return_without_the_member_its_kind_needs_fails_the_task(rv):
    # t = f.remote() on S; S's reply names the right return, without its content    VAL-019, TASK-019
    a, s = with_worker()
    a.handle(ev.Submit("submit", PREFIX + "2", "f", (), (PREFIX + "2.r0",), executor="S"))
    out = a.handle(s.send(a, TaskReply(PREFIX + "2", 1, (rv,))))
    [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
    assert err.error.code is ErrorCode.MALFORMED
    assert a.owned[PREFIX + "2.r0"].state == "failed"
    assert a.owned[PREFIX + "2.r0"].error.code is ErrorCode.MALFORMED
    assert not a.owned[PREFIX + "2.r0"].locations  # nothing recorded that A could not address
    assert "T" not in a.remotes  # disposing of it frees at the sender only (TASK-015), never at T


def test_a_reply_for_a_task_never_allocated_still_releases_its_grants():
    # S sends A a TaskReply for a task A never submitted, with a grant made out to A
    # on S's object y                                                          TASK-019, GEN-005, BOR-013
    a, s = with_worker()
    y = s.descriptor(s.oid("y"), forward_id=s.oid("g1"))
    stray = TaskReply("Z.1.t", 1, (ReturnValue("Z.1.t.r0", ReturnKind.INLINE, value=raw(b"x", (y,))),))
    out = a.handle(s.send(a, stray))
    [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
    assert err.error.code is ErrorCode.WRONG_STATE
    releases = [r for b in bodies(out, ReleaseBorrows, to="S") for r in b.releases]  # type: ignore[attr-defined]
    assert [(r.object_id, r.forward_ids) for r in releases] == [(s.oid("y"), (s.oid("g1"),))]
    assert s.oid("y") not in a.borrowed


def test_actor_calls_go_out_as_attempt_one_without_retries():
    # c = Counter.remote(); c.add.options(max_retries=3).remote()              ACT-017
    a, s = with_worker()
    a.handle(ev.CreateActorRequest("create", PREFIX + "a", "Counter", (), executor="S"))
    out = a.handle(ev.Submit("call", PREFIX + "3", "add", (), (PREFIX + "3.r0",), 3, True, PREFIX + "a"))
    [call] = bodies(out, SubmitTask, to="S")
    assert (call.attempt, call.max_retries, call.retry_exceptions) == (1, 0, False)  # type: ignore[attr-defined]


def _reply_waiting_on_a_self_registration(answer: ErrorInfo | None) -> tuple[Peer, Stub, list[ev.Instruction]]:
    # A reads x (S's object) out of a value it owns: it registers itself with S
    # (BOR-008). Then S's task arrives with x nested in a value argument, and A's
    # program keeps x after it: the reply waits for the registration in flight (BOR-021).
    a, s = with_worker()
    x = s.descriptor(s.oid("x"))
    c = PREFIX + "c"
    a.handle(ev.Put("put", c, raw(b"c")))
    out = a.handle(ev.Materialize("mat", c, (x,)))
    [reg] = bodies(out, RegisterBorrower, to="S")
    t = SubmitTask(s.oid("t"), "keep", (Arg(ArgKind.VALUE, value=raw(b"v", (x,))),), (s.oid("t.r0"),))
    a.handle(s.send(a, t))
    out = a.handle(ev.TaskFinished("done", s.oid("t"), 1, (ev.TaskResult(raw(b"r")),), (s.oid("x"),)))
    assert bodies(out, TaskReply, to="S") == []  # not before the grant (BOR-007)
    out = a.handle(s.send(a, BorrowerRegistered(s.oid("x"), reg.forward_id, answer)))  # type: ignore[attr-defined]
    return a, s, out


def test_a_reply_waiting_on_a_self_registration_goes_out_when_it_is_granted():
    # BOR-021, BOR-007
    a, s, out = _reply_waiting_on_a_self_registration(None)
    [reply] = bodies(out, TaskReply, to="S")
    assert [d.object_id for d in reply.retained] == [s.oid("x")]  # type: ignore[attr-defined]


def test_a_refused_self_registration_is_left_out_of_retained():
    # BOR-026: the reply goes out, retained names confirmed grants only, the ref fails
    a, s, out = _reply_waiting_on_a_self_registration(ErrorInfo(ErrorCode.OBJECT_FREED, "gone"))
    [reply] = bodies(out, TaskReply, to="S")
    assert reply.retained == ()  # type: ignore[attr-defined]
    assert a.borrowed[s.oid("x")].state == "failed"


def test_fencing_an_old_incarnation_keeps_the_grants_of_the_new_one():
    # A owns x. P restarts; a forwarder F registers the new P/5 as a borrower of x
    # while A still has a session with the old P/4. P/5 then greets A, which fences
    # P/4: the grant for P/5 must survive                                      BOR-009, HS-006
    a = peer()
    old, new, f = Stub("P", incarnation=4), Stub("P", incarnation=5), Stub("F")
    old.greet(a)
    f.greet(a)
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    a.owned[x].borrowers["F"] = {"g0": "A"}  # F holds x (a grant A made for it)
    a.owned[x].grant_incarnations["g0"] = f.incarnation
    a.handle(f.send(a, RegisterBorrower(x, "P", 5, new.address, "F.1.g1")))
    a.handle(ev.DropRef("drop", x))
    a.handle(f.send(a, ReleaseBorrows((BorrowRelease(x, ("g0",)),))))
    assert a.owned[x].borrowers == {"P": {"F.1.g1": "F"}}
    new.greet(a)  # HS-006: P/4 is fenced now
    assert ("P", 4) in a.fenced
    assert a.owned[x].borrowers == {"P": {"F.1.g1": "F"}}  # still held by P/5
    a.handle(new.send(a, ReleaseBorrows((BorrowRelease(x, ("F.1.g1",)),))))
    assert x not in a.owned


def test_a_notice_about_an_old_incarnation_drops_only_its_grants():
    # A is in session with P/5; a PeerDeadNotice names P/4, which still had a grant  LIV-012, BOR-009
    from refrpc.core.messages import PeerDeadNotice

    a = peer()
    new, f = Stub("P", incarnation=5), Stub("F")
    new.greet(a)
    f.greet(a)
    x = PREFIX + "1"
    a.handle(ev.Put("put", x, raw(b"v")))
    a.handle(f.send(a, RegisterBorrower(x, "P", 4, new.address, "F.1.g1")))
    a.handle(f.send(a, RegisterBorrower(x, "P", 5, new.address, "F.1.g2")))
    a.handle(ev.DropRef("drop", x))
    a.handle(f.send(a, PeerDeadNotice("P", 4)))
    assert a.owned[x].borrowers == {"P": {"F.1.g2": "F"}}
    a.handle(new.send(a, ReleaseBorrows((BorrowRelease(x, ("F.1.g2",)),))))
    assert x not in a.owned


def test_a_malformed_frame_goes_through_the_envelope_checks_first():
    # S sends a frame that does not decode, addressed to an earlier incarnation
    # of A: it is answered as SES-006 says (DECLARED_DEAD, sequence number 0), not
    # with MALFORMED, and its number is not consumed                           GEN-004, SES-016
    a, s = with_worker()
    bad = ErrorInfo(ErrorCode.MALFORMED, "does not decode")
    out = a.handle(ev.ReceiveMalformed("m1", "S", s.incarnation, bad, 1, "A", INC + 1))
    [env] = frames(out, ProtocolError, to="S")
    assert env.seq == 0 and env.body.error.code is ErrorCode.DECLARED_DEAD  # type: ignore[attr-defined]
    assert a.remotes["S"].delivered == 0
    out = a.handle(ev.ReceiveMalformed("m2", "S", s.incarnation, bad, 1, "B", INC))
    assert frames(out, to="S") == []  # not for A: discarded
    out = a.handle(ev.ReceiveMalformed("m3", "S", s.incarnation, bad, 1, "A", INC))
    [env] = frames(out, ProtocolError, to="S")
    assert env.seq == 1 and env.body.related_seq == 1 and a.remotes["S"].delivered == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("stored", [False, True])
def test_a_return_embedding_refs_for_a_submitter_without_borrowing_is_an_error_reply(stored):
    # S (core only) runs t on A; t returns a value embedding S's own ref x      HS-017
    from corekit import result, stored_result

    a = peer()
    s = Stub("S", features=("core",))
    s.greet(a)
    x = s.descriptor(s.oid("x"))
    tid = s.oid("t1")
    a.handle(s.send(a, SubmitTask(tid, "f", (), (tid + ".r0",))))
    res = stored_result(300_000, (x,)) if stored else result(b"r", (x,))
    out = a.handle(ev.TaskFinished("finished", tid, 1, (res,), ()))
    [reply] = [b for b in bodies(out, to="S") if isinstance(b, TaskReply)]  # sent all the same
    [rv] = reply.returns
    assert rv.kind is ReturnKind.ERROR and rv.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    assert rv.error.requirement == "HS-017"
    assert bool(of_type(out, ev.FreeCopy)) is stored  # a stored copy made for it is dropped
