"""Limits: identifier lengths (ID-007, a MUST), one status request per object
(OBJ-014) and a bounded rate of ProtocolErrors (ERR-008), both recommendations."""

from __future__ import annotations

from refrpc.core.messages import (
    CancelTask,
    Envelope,
    ErrorCode,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
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
