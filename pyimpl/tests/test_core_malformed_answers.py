"""Malformed answers end the requests they answer (GEN-030).

A sequenced answer that does not decode still names, most of the time, the request
it answers: its header and its correlating key (a TaskReply's task id and attempt)
can be read although something else in its body is wrong. The codec reads that key
(:attr:`refrpc.codec.DecodeError.answer`) and the core ends the request with
MALFORMED instead of leaving it open until its peer dies.
"""

from __future__ import annotations

from corekit import Stub, address, bodies, checked_peer, of_type
from refrpc import codec
from refrpc.core import Peer
from refrpc.core import events as ev
from refrpc.core.messages import (
    Arg,
    ArgKind,
    BorrowConfirmed,
    BorrowerRegistered,
    ConfirmBorrow,
    Encoding,
    ErrorCode,
    ErrorInfo,
    FreeObjects,
    IntrospectReply,
    IntrospectRequest,
    PeerDeadNotice,
    ProtocolError,
    RefDescriptor,
    RegisterBorrower,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
)


def broken(receive: ev.Receive) -> codec.DecodeError:
    """The decode error of ``receive``'s message once its last out-of-band frame is
    lost in transit: every Payload that named it points out of range (GEN-017)."""
    frames = codec.encode(receive.envelope, oob_threshold=0)
    assert len(frames) > 1
    try:
        codec.decode(frames[:-1])
    except codec.DecodeError as exc:
        return exc
    raise AssertionError("the frames decoded")


def big_reply(task_id: str, attempt: int = 1) -> TaskReply:
    value = Value(Encoding.RAW, b"v" * 4096)
    return TaskReply(task_id, attempt, (ReturnValue(f"{task_id}.r0", ReturnKind.INLINE, value=value),))


def malformed(exc: codec.DecodeError) -> ev.ReceiveMalformed:
    return ev.ReceiveMalformed("bad", exc.sender, exc.sender_incarnation, exc.error, exc.seq,
                               exc.receiver, exc.receiver_incarnation, exc.answer)


def submitted(max_retries: int = 0):
    """D submits t to W, a scripted executor that has opened its session."""
    d = checked_peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W", max_retries=max_retries))
    w = Stub("W", incarnation=0x3)
    out = d.handle(w.welcome(d))
    [spec] = bodies(out, SubmitTask)
    return d, w, spec


def test_codec_reads_the_key_of_a_malformed_answer():
    d = checked_peer("D", 0xD1)
    w = Stub("W", incarnation=0x3)
    exc = broken(w.send(d, big_reply("D.d1.1", attempt=2)))
    assert exc.seq == 1 and exc.answer == ("TaskReply", ("D.d1.1", 2))
    # A request (not an answer) has no key to read: nothing for GEN-030 to end.
    arg = Arg(ArgKind.VALUE, value=Value(Encoding.RAW, b"a" * 4096))
    exc = broken(w.send(d, SubmitTask("W.3.1", "f", (arg,), ("W.3.1.r0",))))
    assert exc.seq == 2 and exc.answer is None


def test_malformed_task_reply_fails_the_task_at_once():
    # D: y = f.remote() on W; W's reply loses a frame and cannot be decoded   GEN-030, TASK-019
    d, w, spec = submitted(max_retries=3)
    out = d.handle(malformed(broken(w.send(d, big_reply(spec.task_id)))))
    [err] = bodies(out, ProtocolError)
    assert (err.error.code, err.related_seq) == (ErrorCode.MALFORMED, 1)
    e = d.owned["D.d1.1.r0"]
    assert e.state == "failed" and e.error.code is ErrorCode.MALFORMED  # no retry either
    assert bodies(out, SubmitTask) == []


def test_malformed_reply_held_behind_a_gap_fails_the_task_when_its_turn_comes():
    # W's seq 2 (the broken reply) arrives before its seq 1                   GEN-030, GEN-019
    d, w, spec = submitted()
    w.out_seq = 1
    d.handle(malformed(broken(w.send(d, big_reply(spec.task_id)))))
    assert d.owned["D.d1.1.r0"].state == "pending"  # not yet: seq 1 is missing
    w.out_seq = 0
    d.handle(w.send(d, FreeObjects(())))
    assert d.owned["D.d1.1.r0"].state == "failed"


def test_malformed_reply_for_another_attempt_changes_nothing():
    # a broken reply naming attempt 2 while attempt 1 is current              GEN-030, TASK-015
    d, w, spec = submitted()
    d.handle(malformed(broken(w.send(d, big_reply(spec.task_id, attempt=2)))))
    assert d.owned["D.d1.1.r0"].state == "pending"


# ---------------------------------------------------------------- incarnation 0
def test_a_descriptor_naming_owner_incarnation_0_is_malformed():
    # S sends a task whose ref argument names its owner's incarnation as 0    REF-004, GEN-010
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    ref = RefDescriptor(s.oid(1), "S", 0, s.address)
    stim = s.send(a, SubmitTask(s.oid("t1"), "f", (Arg(ArgKind.REF, ref=ref),), (s.oid("t1.r0"),)))
    out = a.handle(stim)
    [err] = bodies(out, ProtocolError)
    assert (err.error.code, err.error.requirement, err.related_seq) == (ErrorCode.MALFORMED, "REF-004", 1)
    assert not of_type(out, ev.RunTask) and s.oid(1) not in a.borrowed


def test_incarnation_0_where_one_is_recorded_or_fenced_is_malformed():
    # a notice, a ConfirmBorrow and a RegisterBorrower naming incarnation 0    ID-013
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    a.handle(ev.Put("put", "A.a1.1", Value(Encoding.RAW, b"v")))
    for seq, body in enumerate((PeerDeadNotice("W", 0, "gone"),
                                ConfirmBorrow(s.oid(1), "f1", "W", 0),
                                RegisterBorrower("A.a1.1", "B", 0, "mem://B", "S.f1")), start=1):
        out = a.handle(s.send(a, body))
        [err] = bodies(out, ProtocolError)
        assert (err.error.code, err.error.requirement, err.related_seq) == (ErrorCode.MALFORMED, "ID-013", seq)
        assert not bodies(out, BorrowConfirmed) and not bodies(out, BorrowerRegistered)
    assert a.fenced == set() and a.owned["A.a1.1"].borrowers == {}



def test_incarnation_0_is_judged_after_the_feature_check():
    # S, without borrowing, sends a RegisterBorrower naming incarnation 0   ID-013, ERR-010, HS-004
    a = checked_peer("A", 0xA1)
    s = Stub("S", features=("core",))
    s.greet(a)
    a.handle(ev.Put("put", "A.a1.1", Value(Encoding.RAW, b"v")))
    out = a.handle(s.send(a, RegisterBorrower("A.a1.1", "B", 0, "mem://B", "S.f1")))
    [err] = bodies(out, ProtocolError)
    assert (err.error.code, err.related_seq) == (ErrorCode.FEATURE_NOT_NEGOTIATED, 1)
    assert a.owned["A.a1.1"].borrowers == {}

# ---------------------------------------------------------------- answers too large to send
def test_a_reply_too_large_for_the_submitters_frames_fails_every_return():
    # S (1 MiB frames) runs f on A, which returns 11 values of 100 KiB inline   ZMQ-022, ZMQ-007
    a = checked_peer("A", 0xA1)
    s = Stub("S", max_frame_bytes=1 << 20)
    s.greet(a)
    tid = s.oid("t1")
    rids = tuple(f"{tid}.r{i}" for i in range(11))
    a.handle(s.send(a, SubmitTask(tid, "f", (), rids)))
    big = ev.TaskResult(value=Value(Encoding.RAW, b"v" * 100 * 1024))
    stored = ev.TaskResult(value=Value(Encoding.RAW, b""), stored=True, size=1 << 20)
    out = a.handle(ev.TaskFinished("done", tid, 1, (*[big] * 10, stored), return_ids=rids))
    [reply] = bodies(out, TaskReply)
    assert [rv.kind for rv in reply.returns] == [ReturnKind.ERROR] * 11
    assert {(rv.error.code, rv.error.requirement) for rv in reply.returns} == {(ErrorCode.RESOURCE_EXHAUSTED, "ZMQ-022")}
    assert [f.object_id for f in of_type(out, ev.FreeCopy)] == [rids[10]]  # the stored copy nobody will free
    # The same values fit a submitter with the default 64 MiB frames.
    a2 = checked_peer("A", 0xA2)
    s2 = Stub("S")
    s2.greet(a2)
    a2.handle(s2.send(a2, SubmitTask(tid, "f", (), rids)))
    [reply] = bodies(a2.handle(ev.TaskFinished("done", tid, 1, (*[big] * 10, stored), return_ids=rids)), TaskReply)
    assert [rv.kind for rv in reply.returns] == [ReturnKind.INLINE] * 10 + [ReturnKind.STORED]


def test_an_error_too_large_for_the_submitters_frames_is_cut_and_keeps_its_code():
    # S (1 MiB frames) runs f on A, which raises with a 1.2 MB message and a 1.2 MB
    # traceback: the texts are cut (the traceback first) so that the reply fits, and
    # the return stays TASK_FAILED, never RESOURCE_EXHAUSTED            ZMQ-022, TASK-007
    from refrpc.core.messages import FRAME_HEADROOM, ErrorInfo

    a = checked_peer("A", 0xA1)
    s = Stub("S", max_frame_bytes=1 << 20)
    s.greet(a)
    tid = s.oid("t1")
    rids = (f"{tid}.r0", f"{tid}.r1")
    a.handle(s.send(a, SubmitTask(tid, "f", (), rids)))
    message, detail = "é" * 600_000, "Traceback\n" + "x" * 1_200_000
    raised = ev.TaskResult(error=ErrorInfo(ErrorCode.TASK_FAILED, message, "TASK-007", detail))
    small = ev.TaskResult(value=Value(Encoding.RAW, b"v" * 1000))
    [reply] = bodies(a.handle(ev.TaskFinished("done", tid, 1, (raised, small), return_ids=rids)), TaskReply)
    err = reply.returns[0].error
    assert reply.returns[0].kind is ReturnKind.ERROR and (err.code, err.requirement) == (ErrorCode.TASK_FAILED, "TASK-007")
    assert err.detail == "" and message.startswith(err.message) and err.message  # cut, on a character boundary
    assert len(err.message.encode()) + 1000 <= (1 << 20) - FRAME_HEADROOM
    assert reply.returns[1].kind is ReturnKind.INLINE
    # A traceback alone too large is cut, and the message kept whole.
    tid2 = s.oid("t2")
    a.handle(s.send(a, SubmitTask(tid2, "f", (), (f"{tid2}.r0",))))
    raised = ev.TaskResult(error=ErrorInfo(ErrorCode.TASK_FAILED, "ValueError: no", "TASK-007", detail))
    [reply] = bodies(a.handle(ev.TaskFinished("done", tid2, 1, (raised,), return_ids=(f"{tid2}.r0",))), TaskReply)
    err = reply.returns[0].error
    assert (err.code, err.message) == (ErrorCode.TASK_FAILED, "ValueError: no") and detail.startswith(err.detail) and err.detail


def test_a_table_too_large_for_the_requesters_frames_is_sent_as_a_summary():
    # S (1 MiB frames) asks A, which owns 10,000 objects, for its whole table   ZMQ-023, INT-007
    a = Peer("A", 0xA1, address("A"))  # not checked after every call: 10,000 puts
    s = Stub("S", max_frame_bytes=1 << 20)
    s.greet(a)
    for i in range(1, 10_001):
        a.handle(ev.Put("put", f"A.a1.{i}", Value(Encoding.RAW, b"v")))
    [reply] = bodies(a.handle(s.send(a, IntrospectRequest(7))), IntrospectReply)
    assert reply.request_id == 7 and reply.entries == () and reply.summary is not None
    # A small table is listed as INT-001 says.
    small = checked_peer("B", 0xB1)
    small.handle(ev.Put("put", "B.b1.1", Value(Encoding.RAW, b"v")))
    s2 = Stub("S", max_frame_bytes=1 << 20)
    s2.greet(small)
    [reply] = bodies(small.handle(s2.send(small, IntrospectRequest(8))), IntrospectReply)
    assert [e.object_id for e in reply.entries] == ["B.b1.1"] and reply.summary is None


def test_the_executor_stores_the_largest_inline_returns_until_the_reply_fits():
    # f returns 100 KiB, 10 KiB and 60 KiB inline to a submitter with room for 120 KiB   ZMQ-022
    from types import SimpleNamespace

    from refrpc.runtime._executor import Executor

    put: list[str] = []
    store = SimpleNamespace(put=lambda oid, value: put.append(oid) or len(value.data) + 64)
    fake = SimpleNamespace(node=SimpleNamespace(store=store))
    sizes = (100, 10, 60)
    results = [ev.TaskResult(value=Value(Encoding.RAW, b"v" * (k * 1024))) for k in sizes]
    Executor._fit(fake, ("r0", "r1", "r2"), results, 120 * 1024)  # type: ignore[arg-type]
    assert put == ["r0"]
    assert [r.stored for r in results] == [True, False, False] and results[0].size == 100 * 1024 + 64


def test_an_undecodable_introspect_reply_ends_the_request():
    # D introspects W; W's IntrospectReply cannot be decoded, its requestId can   GEN-030, INT-001
    d = checked_peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Introspect("i", 5, "W"))
    w = Stub("W", incarnation=0x3)
    d.handle(w.welcome(d))
    bad = ev.ReceiveMalformed("bad", "W", w.incarnation, ErrorInfo(ErrorCode.MALFORMED, "junk"), 1, "D", 0xD1,
                              ("IntrospectReply", (5,)))
    out = d.handle(bad)
    [res] = of_type(out, ev.IntrospectResult)
    assert res.request_id == 5 and res.error is not None and res.error.code is ErrorCode.MALFORMED
    # Another request id names nothing: the request table is unchanged.
    assert d.handle(ev.ReceiveMalformed("bad2", "W", w.incarnation, ErrorInfo(ErrorCode.MALFORMED, "junk"), 2, "D",
                                        0xD1, ("IntrospectReply", (6,)))) and not d.introspections


def test_a_reply_that_uses_a_feature_not_in_use_fails_the_task_at_once():
    # D: y = f.remote() on W; the session has no borrowing, and W's reply names a
    # retained ref: refused FEATURE_NOT_NEGOTIATED, and y fails with it, no retry   HS-004, GEN-030
    d = checked_peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W", max_retries=3))
    w = Stub("W", incarnation=0x3, features=("core", "recovery"))
    [spec] = bodies(d.handle(w.welcome(d)), SubmitTask)
    held = RefDescriptor("O.5.1", "O", 5, "mem://O", -1, "")
    reply = TaskReply(spec.task_id, 1, (ReturnValue(f"{spec.task_id}.r0", ReturnKind.INLINE,
                                                    value=Value(Encoding.RAW, b"v")),), retained=(held,))
    out = d.handle(w.send(d, reply))
    [err] = bodies(out, ProtocolError)
    assert (err.error.code, err.related_seq) == (ErrorCode.FEATURE_NOT_NEGOTIATED, 1)
    e = d.owned["D.d1.1.r0"]
    assert e.state == "failed" and e.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    assert bodies(out, SubmitTask) == []


def _protocol_error_without_error(sender: Stub, to: str, to_incarnation: int, seq: int, related_seq: int) -> bytes:
    """A ProtocolError whose required `error` pointer is null (VAL-020: malformed)."""
    from refrpc.codec._schema import schema

    m = schema().Envelope.new_message()
    m.sender, m.senderIncarnation, m.receiver, m.receiverIncarnation, m.seq = sender.name, sender.incarnation, to, to_incarnation, seq
    m.body.init("protocolError").relatedSeq = related_seq
    return m.to_bytes()


def test_a_malformed_protocol_error_is_not_answered_and_ends_the_request_it_names():
    # W refuses D's SubmitTask with a ProtocolError that has no `error`: D answers nothing
    # (GEN-008) and still ends the task it names, with MALFORMED              GEN-030, GEN-008
    d, w, spec = submitted(max_retries=3)
    related = d.remotes["W"].submit_seqs[spec.task_id]
    w.out_seq += 1
    try:
        codec.decode([_protocol_error_without_error(w, "D", 0xD1, w.out_seq, related)])
    except codec.DecodeError as exc:
        bad = exc
    assert bad.answer == ("ProtocolError", (related,))
    out = d.handle(malformed(bad))
    assert bodies(out, ProtocolError) == []
    e = d.owned["D.d1.1.r0"]
    assert e.state == "failed" and e.error.code is ErrorCode.MALFORMED and bodies(out, SubmitTask) == []  # no retry
    assert d.remotes["W"].delivered == w.out_seq  # its number is consumed all the same (GEN-010)
    # One that names no request of D's (or cannot be read at all) ends nothing, and is not answered either.
    w.out_seq += 1
    try:
        codec.decode([_protocol_error_without_error(w, "D", 0xD1, w.out_seq, 999)])
    except codec.DecodeError as exc:
        bad = exc
    assert bodies(d.handle(malformed(bad)), ProtocolError) == []


def test_a_task_naming_a_return_id_twice_is_refused_malformed():
    # S submits f with returnIds [r0, r0]: two replies' worth of one object would leave
    # two copies under one id at A; A refuses it, runs nothing, keeps no record  VAL-030, ERR-003
    a = checked_peer("A", 0xA1)
    s = Stub("S")
    s.greet(a)
    tid = s.oid("t1")
    out = a.handle(s.send(a, SubmitTask(tid, "f", (), (f"{tid}.r0", f"{tid}.r0"))))
    [err] = bodies(out, ProtocolError)
    assert (err.error.code, err.error.requirement, err.related_seq) == (ErrorCode.MALFORMED, "VAL-030", s.out_seq)
    assert of_type(out, ev.RunTask) == [] and a.exec_tasks == {}
    # The same task with distinct ids runs.
    out = a.handle(s.send(a, SubmitTask(tid, "f", (), (f"{tid}.r0", f"{tid}.r1"))))
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [tid]
