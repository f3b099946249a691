"""Limits: identifier lengths (ID-007, a MUST), one status request per object
(OBJ-014), a bounded rate of ProtocolErrors (ERR-008) and bounded status waits per
peer (SEC-009), the last three recommendations."""

from __future__ import annotations

from refrpc.core.messages import (
    CancelTask,
    Envelope,
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ResourceAmount,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_ref, by_value, make_bytes_value, portable
from .._case import case
from .._context import CaseContext
from .._craft import with_discriminant
from ._common import check_error_code, check_inline, expect_reply, open_session, run_echo, task


@case(
    "malformed/ID-007-identifier-length-limits",
    requirements=["ID-007", "ID-001", "ID-003", "GEN-004", "GEN-010", "ERR-004"],
    summary=(
        "In a live session the suite sends three messages whose ids break ID-007: a GetObjectStatus for an "
        "object id of 257 bytes, a CancelTask with an empty task id, and a SubmitTask whose ref argument "
        "names an owner PeerId of 129 bytes. Each is malformed: answered ProtocolError(MALFORMED) with its "
        "sequence number, never acted on (no ObjectStatus, no TaskReply), its number consumed, and the "
        "session goes on."
    ),
)
def identifier_limits(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    long_id = f"{peer.ids.prefix}" + "x" * (257 - len(peer.ids.prefix))
    owner = ctx.descriptor(peer, ctx.new_id(peer))
    bad_owner = type(owner)(owner.object_id, "p" * 129, owner.owner_incarnation, owner.owner_address)
    probe = task(peer, "sum_bytes", [by_ref(bad_owner)])
    messages = [
        ("an object id of 257 bytes", GetObjectStatus(long_id, wait=False)),
        ("an empty task id", CancelTask("")),
        ("an owner PeerId of 129 bytes", probe),
    ]
    for what, body in messages:
        seq = link.send(body)
        arrival = ctx.expect(peer, ProtocolError, lambda m, seq=seq: m.related_seq == seq, requirement="ID-007",
                             what=f"ProtocolError about {what} (seq {seq})")
        err: ProtocolError = arrival.body
        check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="ID-007", note=what)
        ctx.check("GEN-010", arrival.seq > 0, "the answer is sequenced (the message's number was consumed)",
                  f"seq {arrival.seq}", note=what)
        ctx.check("ERR-004", err.error.requirement in ("ID-007", "ID-001", "ID-003", "GEN-004"),
                  "error.requirement names the broken rule", repr(err.error.requirement), note=what, level="SHOULD")
    run_echo(ctx, peer, link, "after", requirement="GEN-010")
    ctx.check("ID-007", not peer.received(ObjectStatus, lambda m: m.object_id == long_id),
              "no ObjectStatus for the over-long id", "answered")
    ctx.check("ID-007", not peer.received(TaskReply, lambda m: m.task_id == probe.task_id),
              "no TaskReply for the task with the over-long owner", "answered")


@case(
    "malformed/ID-010-id-fields-and-no-others",
    requirements=["ID-010", "ID-007", "ID-011", "TASK-007", "GEN-004"],
    summary=(
        "ID-007's limits apply to exactly the id fields of ID-010, each element of a list included, and to no "
        "other Text. The suite sends a SubmitTask whose second return id is 257 bytes (an element of "
        "`returnIds`): MALFORMED, never run. The IUT then submits echo to suite executor E, which answers with "
        "every return ERROR(TASK_FAILED) whose message is 1,000 bytes (`ErrorInfo.message` is no id): the reply "
        "is not malformed (no ProtocolError names it) and get answers TASK_FAILED."
    ),
)
def id_fields_and_no_others(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    long_id = peer.ids.prefix + "r" * (257 - len(peer.ids.prefix))
    t = task(peer, "echo", [by_value("x")])
    bad = SubmitTask(t.task_id, t.function, t.args, (t.return_ids[0], long_id))
    seq = link.send(bad)
    err = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="ID-010",
                     what=f"ProtocolError about a return id of 257 bytes in a list (seq {seq})").body
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="ID-010", note="returnIds[1] of 257 bytes")
    run_echo(ctx, peer, link, "after", requirement="GEN-010")
    ctx.check("ID-010", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id),
              "the task with an over-long return id never runs", "no reply")
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    ret = iut.submit("echo", [{"value": "fails"}], executor=e.peer_id)["returns"][0]
    st: SubmitTask = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (ret,), requirement="TASK-001",
                                what="the IUT's SubmitTask of echo").body
    message = "a long error message, no id: " + "m" * 971
    reply_seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, tuple(
        ReturnValue(r, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.TASK_FAILED, message, "TASK-007")) for r in st.return_ids)))
    got = iut.get(ret, timeout_ms=5_000)
    ctx.check("ID-010", got.get("error", {}).get("code") == "TASK_FAILED",
              "get answers TASK_FAILED: an error message of 1,000 bytes is no over-long id", got)
    refused = e.received(ProtocolError, lambda m: m.related_seq == reply_seq)
    ctx.check("ID-010", not refused, "no ProtocolError about the reply", [str(a.body) for a in refused])


@case(
    "objects/OBJ-014-one-status-request-per-object",
    requirements=["OBJ-014", "OBJ-002", "TASK-002"],
    summary=(
        "Suite peer O owns X and does not answer at first; suite peer S submits sum_bytes(X by ref) three "
        "times. The IUT should ask O for X's status once, however many resolutions wait for it. Once O "
        "answers (X inline), all three tasks reply with the sum."
    ),
)
def one_status_request(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    o = ctx.wire_peer("owner")
    s = ctx.wire_peer("submitter")
    link_s = ctx.session(s, iut)
    x = ctx.new_id(o)
    data = make_bytes_value(1000)
    tasks = [task(s, "sum_bytes", [by_ref(ctx.descriptor(o, x, size_hint=len(data)))]) for _ in range(3)]
    last = 0
    for t in tasks:
        last = link_s.send(t)
    ctx.wait_until(s, lambda: link_s.acked >= last, requirement="SES-003", what="the IUT's ack of the three tasks")
    ctx.wait_until(o, lambda: bool(o.received(GetObjectStatus, lambda m: m.object_id == x)), requirement="TASK-002",
                   what=f"GetObjectStatus for {x}")
    link_o = o.link(iut.peer_id)
    # A round trip on the IUT's session with O: every status request already sent is there now.
    link_o.send(GetObjectStatus(f"{o.ids.prefix}probe", wait=False))
    ctx.expect(o, ObjectStatus, lambda m: m.object_id == f"{o.ids.prefix}probe", requirement="OBJ-002",
               what="the IUT's answer to a probe GetObjectStatus")
    asked = o.received(GetObjectStatus, lambda m: m.object_id == x)
    ctx.check("OBJ-014", len(asked) == 1, "one GetObjectStatus for X, for three waiting resolutions",
              f"{len(asked)} requests", level="SHOULD")
    link_o.send(ObjectStatus(x, ObjectState.READY, len(data), value=portable(data)))
    expected = sum(data)
    for t in tasks:
        check_inline(ctx, expect_reply(ctx, s, t), expected, requirement="TASK-002", note="sum_bytes(X)")


#: The burst of bad messages, and the rate ERR-008 recommends.
BURST, RATE = 250, 100


@case(
    "errors/ERR-008-protocol-errors-rate-limited",
    requirements=["ERR-008", "GEN-001", "GEN-006", "SEC-010"],
    summary=(
        f"Suite peer B sends {BURST} messages of an unknown type (64) in one burst. Each must be consumed "
        "(GEN-001: the session goes on), and the IUT should answer at most 100 of them with ProtocolError in "
        "any one second (ERR-008). Meanwhile suite peer A's task must still be answered (SEC-010)."
    ),
)
def protocol_errors_rate_limited(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    a = ctx.wire_peer("bystander")
    b = ctx.wire_peer("noisy")
    link_a = ctx.session(a, iut)
    link_b = ctx.session(b, iut)
    first = 0
    for _ in range(BURST):
        seq = link_b.next_seq()
        first = first or seq
        env = Envelope(b.peer_id, b.incarnation, iut.peer_id, iut.incarnation, seq, link_b.delivered, SubmitTask("", "", (), ()))
        link_b.send_frames(with_discriminant(env), label="message type 64", seq=seq)
    run_echo(ctx, a, link_a, "meanwhile", requirement="SEC-010")
    t = task(b, "echo", [by_value("after the burst")])
    link_b.send(t)
    expect_reply(ctx, b, t, requirement="GEN-001", timeout=20.0)
    errors = [e for e in b.received(ProtocolError) if first <= e.body.related_seq < first + BURST]
    times = sorted(e.t for e in errors)
    worst = max((sum(1 for u in times if s <= u < s + 1.0) for s in times), default=0)
    ctx.check("ERR-008", worst <= RATE, f"at most {RATE} ProtocolErrors in any one second",
              f"{worst} in one second ({len(errors)} in all)", level="SHOULD")


@case(
    "errors/ERR-008-refused-request-answered-past-the-limit",
    requirements=["ERR-008", "ERR-003", "TASK-054"],
    summary=(
        f"Suite peer B sends {BURST} messages of an unknown type (64) in one burst, then at once a SubmitTask "
        "whose resources name `gpu` twice (TASK-054: refused MALFORMED). However many ProtocolErrors the burst "
        "used up, the refusal of that delivered request must be sent (ERR-008's exemption: nothing else would "
        "end the request at B)."
    ),
)
def refused_request_answered_past_the_limit(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("noisy")
    link_b = ctx.session(b, iut)
    for _ in range(BURST):
        seq = link_b.next_seq()
        env = Envelope(b.peer_id, b.incarnation, iut.peer_id, iut.incarnation, seq, link_b.delivered, SubmitTask("", "", (), ()))
        link_b.send_frames(with_discriminant(env), label="message type 64", seq=seq)
    bad = task(b, "echo", [by_value(4)], cpu_demand=0, resources=(ResourceAmount("gpu", 1), ResourceAmount("gpu", 1)))
    seq = link_b.send(bad)
    arrival = ctx.expect(b, ProtocolError, lambda m: m.related_seq == seq, requirement="ERR-008",
                         what=f"the refusal of the SubmitTask (seq {seq}) sent after the burst", timeout=10.0)
    ctx.check("TASK-054", arrival.body.error.code is ErrorCode.MALFORMED, "code MALFORMED", arrival.body.error.code.value)


#: The largest status-wait limit the SEC-009 case reaches (CNF-031).
MOST_STATUS_WAITS = 1000


@case(
    "objects/SEC-009-OBJ-002-status-waits-bounded-per-peer",
    requirements=["SEC-009", "OBJ-002", "OBJ-005", "ERR-003", "CNF-031"],
    summary=(
        "The IUT submits one task with N + 1 returns to suite executor E, which does not answer yet (N is the "
        "config's `limits.status_waits`, CNF-031; the case is UNSUPPORTED above 1,000). Suite peer G asks the IUT "
        "for every return with GetObjectStatus(wait = true), the first one twice: the N + 1st should be refused "
        "with ProtocolError(RESOURCE_EXHAUSTED) naming its sequence number, the first N remembered (no answer "
        "while pending; a repeated wait is not a new one), and a wait = false question still answered PENDING. "
        "Once E answers, G gets an ObjectStatus READY for each remembered wait, and asks again for the refused "
        "return, which is answered too."
    ),
    timeout=60.0,
)
def status_waits_bounded(ctx: CaseContext) -> None:
    n = ctx.config.limit("status_waits")
    if n > MOST_STATUS_WAITS:
        ctx.skip(f"limits.status_waits is {n} (the default unless the config names it): more waits than a case "
                 f"makes (at most {MOST_STATUS_WAITS}, CNF-031)")
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    g = ctx.wire_peer("asker")
    iut.add_peer(e, slots=1)
    returns = iut.submit("echo", [{"value": "later"}], executor=e.peer_id, num_returns=n + 1)["returns"]
    st: SubmitTask = ctx.expect(e, SubmitTask, lambda m: m.function == "echo", requirement="TASK-001",
                                what="the IUT's SubmitTask").body
    link_g = ctx.session(g, iut)
    seqs = [link_g.send(GetObjectStatus(oid, wait=True)) for oid in [returns[0]] + returns]
    probe = link_g.send(GetObjectStatus(returns[-1], wait=False))
    answer: ObjectStatus = ctx.expect(g, ObjectStatus, lambda m: m.object_id == returns[-1], requirement="OBJ-005",
                                      what=f"ObjectStatus answering the wait = false question (seq {probe})").body
    ctx.check("OBJ-005", answer.state is ObjectState.PENDING, "state PENDING for a return not yet settled", answer.state.name)
    refused = [a.body for a in g.received(ProtocolError) if a.body.related_seq in seqs]
    codes = {err.related_seq: err.error.code.name for err in refused}
    ctx.check("SEC-009", codes == {seqs[-1]: "RESOURCE_EXHAUSTED"},
              f"the wait beyond {n} (seq {seqs[-1]}) refused RESOURCE_EXHAUSTED, and no other", codes or "no refusal")
    early = [s.body.object_id for s in g.received(ObjectStatus) if s.body.object_id != returns[-1]]
    ctx.check("OBJ-002", not early, "no answer to a wait while its object is pending", early)
    link_e = e.link(iut.peer_id)
    link_e.send(TaskReply(st.task_id, st.attempt, tuple(ReturnValue(oid, ReturnKind.INLINE, portable(i))
                                                        for i, oid in enumerate(st.return_ids))))
    for oid in returns[:-1]:
        status: ObjectStatus = ctx.expect(g, ObjectStatus, lambda m, oid=oid: m.object_id == oid, requirement="OBJ-002",
                                          what=f"ObjectStatus for {oid} once it settled").body
        ctx.check("OBJ-002", status.state is ObjectState.READY, f"{oid} READY", status.state.name)
    again = link_g.send(GetObjectStatus(returns[-1], wait=True))
    late: ObjectStatus = ctx.expect(
        g, ObjectStatus, lambda m: m.object_id == returns[-1] and m.state is not ObjectState.PENDING,
        requirement="OBJ-002", what=f"the answer to the refused return asked again (seq {again})").body
    ctx.check("OBJ-002", late.state is ObjectState.READY, f"{returns[-1]} READY", late.state.name)


#: How much text the oversized-error case has ``fail`` raise: more than the frame limit
#: the suite announces (the smallest allowed, HS-012).
OVERSIZED_MESSAGE = (1 << 20) + 200_000


@case(
    "tasks/ZMQ-022-ZMQ-007-error-reply-fits-the-limit",
    requirements=["ZMQ-022", "ZMQ-007", "TASK-007"],
    summary=(
        "The suite announces the smallest frame limit allowed (maxFrameBytes 1 MiB) and submits fail(msg) with a "
        "text msg of 1.2 MB (sent within the IUT's own limit). The error the function raises contains msg, so a "
        "reply carrying it whole would exceed the limit the suite announced, and the suite would drop it unread "
        "(ZMQ-007). The IUT must still answer, with a TaskReply that fits 1 MiB, envelope and all: its return "
        "an error, TASK_FAILED with its texts cut to fit (the code is kept: RESOURCE_EXHAUSTED is only for "
        "values that do not fit). A reply that never comes fails the case."
    ),
    timeout=60.0,
)
def error_reply_fits_the_limit(ctx: CaseContext) -> None:
    from refrpc.codec import encode

    iut, peer, link = open_session(ctx, max_frame_bytes=1 << 20)
    t = task(peer, "fail", [by_value("x" * OVERSIZED_MESSAGE)])
    link.send(t)
    arrival = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="ZMQ-022",
                         what="a TaskReply within the 1 MiB the suite announced", timeout=30.0)
    size = sum(len(f) for f in encode(arrival.envelope))
    ctx.check("ZMQ-022", size <= 1 << 20, "the reply, envelope and all, at most 1,048,576 bytes", f"{size} bytes")
    reply: TaskReply = arrival.body
    errors = [rv.error for rv in reply.returns]
    fits = bool(errors) and all(e is not None and e.code is ErrorCode.TASK_FAILED for e in errors)
    ctx.check("ZMQ-022", fits, "every return ERROR(TASK_FAILED), its texts cut to fit",
              [f"{e.code.value} ({e.requirement})" if e is not None else "a value" for e in errors])
