"""handshake.md §4 and transport-zeromq.md §2: malformed, truncated and oversized input.

Every case here ends with the IUT still running and answering, which the runner
checks after each case; the cases check the answers and that the session goes on.
"""

from __future__ import annotations

from dataclasses import replace

from refrpc.core.messages import (
    Arg,
    ArgKind,
    Envelope,
    ErrorCode,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    ProtocolError,
    ReturnKind,
    TaskReply,
)

from .._build import PortableRef, by_ref, by_value, portable, read_portable, shared
from .._case import case
from .._context import CaseContext
from .._craft import (
    add_frame,
    drop_payload_frames,
    garbage,
    in_segments,
    overstate_first_segment,
    replace_bytes,
    segment_count,
    truncate,
    with_arg_kind,
)
from ._common import (
    check_error_code,
    check_inline,
    check_requirement_named,
    expect_protocol_error,
    expect_reply,
    open_session,
    resync_after_bad_message,
    run_echo,
    task,
)

MIB = 1 << 20


@case(
    "malformed/GEN-004-garbage-frame",
    requirements=["GEN-004"],
    summary=(
        "The suite sends one frame of random bytes (not an envelope; the sender cannot be identified). The "
        "IUT discards it without crashing or blocking, and the session goes on."
    ),
)
def garbage_frame(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.send_frames(garbage(300), label="300 random bytes")
    link.send_frames([b""], label="an empty frame")
    link.send_frames([b"\x00" * 8, b"x"], label="a zero segment table and a stray frame")
    run_echo(ctx, peer, link, "after garbage", requirement="GEN-004")


@case(
    "malformed/GEN-004-GEN-010-truncated-envelope",
    requirements=["GEN-004", "GEN-010"],
    summary=(
        "The suite sends a task whose frame 0 is cut in half. The IUT discards it without crashing, answers "
        "MALFORMED if it can read the sender, never runs it, and the session goes on (whether its sequence "
        "number is consumed must agree with the answer)."
    ),
)
def truncated(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    bad = task(peer, "echo", [by_value("x" * 200)])
    seq = link.send(bad, frames_hook=truncate(0.5))
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-004")
    for arrival in peer.received(ProtocolError, lambda m: m.related_seq in (0, seq)):
        check_error_code(ctx, arrival.body, (ErrorCode.MALFORMED,), requirement="GEN-004", note="the answer to the truncated frame")
    ctx.check("GEN-004", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the truncated task never runs", "no reply")


def _malformed_in_session(ctx: CaseContext, hook_label: str, hook: object, requirement: str, *, oob: bool = False) -> None:
    iut, peer, link = open_session(ctx)
    bad = task(peer, "echo", [by_value(b"\x07" * 100)])
    seq = link.send(bad, frames_hook=hook, oob_threshold=16 if oob else None)  # type: ignore[arg-type]
    err = expect_protocol_error(ctx, peer, requirement="GEN-004", what=f"ProtocolError(MALFORMED) about seq {seq} ({hook_label})",
                                related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement=requirement)
    check_requirement_named(ctx, err)
    consumed = resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-010")
    ctx.check("GEN-010", consumed, f"seq {seq} counted as delivered (its envelope is readable)", "consumed" if consumed else "not consumed")
    ctx.check(requirement, not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the malformed task never runs", "no reply")


@case(
    "malformed/ZMQ-005-GEN-010-payload-frame-missing",
    requirements=["ZMQ-005", "GEN-004", "GEN-010", "ERR-004"],
    summary=(
        "A task whose argument's data travels as frame 1 is sent without frame 1, so a Payload names a "
        "frame that is not there. The envelope is readable: the IUT answers ProtocolError(MALFORMED) with "
        "relatedSeq = its number, counts the number as delivered, and does not run the task."
    ),
)
def payload_frame_missing(ctx: CaseContext) -> None:
    _malformed_in_session(ctx, "payload frame missing", drop_payload_frames, "ZMQ-005", oob=True)


@case(
    "malformed/ZMQ-005-GEN-010-unreferenced-frame",
    requirements=["ZMQ-005", "GEN-004", "GEN-010", "ERR-004"],
    summary=(
        "A valid task is sent with one extra frame that no Payload references. The message is malformed: "
        "ProtocolError(MALFORMED) with relatedSeq = its number, number consumed, task not run."
    ),
)
def unreferenced_frame(ctx: CaseContext) -> None:
    _malformed_in_session(ctx, "unreferenced frame", add_frame(), "ZMQ-005")


@case(
    "malformed/REF-004-empty-owner-descriptor",
    requirements=["REF-004", "GEN-004", "GEN-010"],
    summary=(
        "A task's ref argument has an empty owner. The message is malformed: ProtocolError(MALFORMED) with "
        "relatedSeq = its number, the number consumed, no GetObjectStatus sent for it, the task not run."
    ),
)
def empty_owner(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    desc = ctx.descriptor(peer, x)
    bad = task(peer, "sum_bytes", [by_ref(replace(desc, owner=""))])
    seq = link.send(bad)
    err = expect_protocol_error(ctx, peer, requirement="REF-004", what=f"ProtocolError about seq {seq}", related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="REF-004")
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-010")
    ctx.check("REF-004", not peer.received(GetObjectStatus, lambda m: m.object_id == x), "no GetObjectStatus for the bad descriptor", "none")
    ctx.check("REF-004", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the task never runs", "no reply")


@case(
    "malformed/REF-007-descriptor-names-another-owner",
    requirements=["REF-007", "GEN-004", "GEN-010"],
    features=("core", "borrowing"),
    summary=(
        "The IUT puts X. The suite then sends two tasks naming X as owned by the suite: one as a ref "
        "argument, one nested in a value argument (outside the value's data). Each is malformed: "
        "ProtocolError(MALFORMED) with relatedSeq = its number, the number consumed, the task not run, "
        "and X still the IUT's own object with no borrower and no GetObjectStatus sent for it."
    ),
)
def conflicting_owner(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = iut.put(b"owned by the IUT")
    claimed = ctx.descriptor(peer, x)  # x, but naming the suite's peer as its owner
    for label, arg in (("a ref argument", by_ref(claimed)), ("a nested ref", by_value(PortableRef(0), [claimed]))):
        bad = task(peer, "echo", [arg])
        seq = link.send(bad)
        err = expect_protocol_error(ctx, peer, requirement="REF-007", what=f"ProtocolError about seq {seq} ({label})",
                                    related_seq=seq)
        check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="REF-007", note=label)
        resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-010")
        ctx.check("REF-007", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), f"the task with {label} never runs",
                  "no reply")
    ctx.check("REF-007", not peer.received(GetObjectStatus, lambda m: m.object_id == x), f"no GetObjectStatus for {x}", "none")
    entry = iut.entry(x)
    ctx.check("REF-007", entry is not None and entry.get("role") == "owner" and not entry.get("borrowers"),
              f"{x} still owned by the IUT, with no borrower", entry)


@case(
    "malformed/ID-011-empty-function-and-invalid-utf8",
    requirements=["ID-011", "TASK-006", "GEN-004", "GEN-010"],
    summary=(
        "Tasks whose `function` is empty, or 1000 bytes long, are no malformed messages: each is answered "
        "by a TaskReply with every return ERROR(UNKNOWN_FUNCTION), and no ProtocolError names it. A task "
        "whose `function` holds bytes that are not UTF-8 is malformed: ProtocolError(MALFORMED) about its "
        "number, the number consumed, no reply."
    ),
)
def text_fields(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    for label, name in (("an empty function", ""), ("a 1000-byte function", "f" * 1000)):
        t = task(peer, name, [by_value("x")])
        seq = link.send(t)
        reply = expect_reply(ctx, peer, t, requirement="ID-011", timeout=10.0)
        codes = [rv.error.code.value if rv.kind is ReturnKind.ERROR and rv.error else rv.kind.value for rv in reply.returns]
        ctx.check("ID-011", bool(codes) and all(c == ErrorCode.UNKNOWN_FUNCTION.value for c in codes),
                  f"every return ERROR(UNKNOWN_FUNCTION) for {label}", codes)
        ctx.check("ID-011", not peer.received(ProtocolError, lambda m: m.related_seq == seq),
                  f"no ProtocolError about the task with {label}", "none")
    marker = b"not-utf8-function"
    bad = task(peer, marker.decode(), [by_value("x")])
    seq = link.send(bad, frames_hook=replace_bytes(marker, b"not-\xff\xfe\xc0\x80-function"))
    err = expect_protocol_error(ctx, peer, requirement="ID-011", what=f"ProtocolError about seq {seq} (function not UTF-8)",
                                related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="ID-011")
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-010")
    ctx.check("ID-011", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the task with a function "
              "that is not UTF-8 never runs", "no reply")


@case(
    "malformed/VAL-015-arg-member-mismatch",
    requirements=["VAL-015", "GEN-004"],
    summary=(
        "A task argument of kind `ref` carries a value instead of a descriptor. The message is malformed: "
        "ProtocolError(MALFORMED) about its number, and the task does not run."
    ),
)
def arg_member_mismatch(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    bad = task(peer, "sum_bytes", [Arg(ArgKind.REF, value=portable(b"abc"))])
    seq = link.send(bad)
    err = expect_protocol_error(ctx, peer, requirement="VAL-015", what=f"ProtocolError about seq {seq}", related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="VAL-015")
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-004")
    ctx.check("VAL-015", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the task never runs", "no reply")


@case(
    "malformed/GEN-003-unknown-enum-value",
    requirements=["GEN-003", "GEN-004"],
    summary=(
        "A task argument's ArgKind has the value 9, which no version of the schema defines. The IUT rejects "
        "that one message with ProtocolError(MALFORMED) and the session goes on."
    ),
)
def unknown_enum(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    bad = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x))])
    seq = link.next_seq()
    env = Envelope(peer.peer_id, peer.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, bad)
    link.send_frames(with_arg_kind(env, 9), label="SubmitTask with ArgKind 9", seq=seq)
    err = expect_protocol_error(ctx, peer, requirement="GEN-003", what=f"ProtocolError about seq {seq}", related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="GEN-003")
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-003")
    ctx.check("GEN-003", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the task never runs", "no reply")


@case(
    "malformed/GEN-004-ZMQ-007-oversized-message",
    requirements=["GEN-004", "ZMQ-007"],
    summary=(
        "The suite sends a task whose argument is one byte larger than the maxFrameBytes the IUT announced. "
        "The IUT discards it without crashing (it may answer MALFORMED, or its socket may drop it); the task "
        "never runs and the session goes on."
    ),
    timeout=90.0,
)
def oversized(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    assert link.welcome is not None
    limit = link.welcome.body.max_frame_bytes
    if limit > 256 * MIB:
        ctx.skip(f"the IUT accepts frames of {limit} bytes; the suite sends at most 256 MiB")
    link.set_retransmit(True)  # a socket that drops the message may drop the connection with it
    bad = task(peer, "echo", [by_value(bytes(limit + 1))])
    seq = link.send(bad, frames_hook=lambda frames: frames)  # never retransmitted
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-004")
    ctx.check("GEN-004", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the oversized task never runs", "no reply")
    for arrival in peer.received(ProtocolError, lambda m: m.related_seq == seq):
        check_error_code(ctx, arrival.body, (ErrorCode.MALFORMED,), requirement="GEN-004", note="the answer to the oversized message")


@case(
    "malformed/VAL-021-bad-portable-argument-fails-the-task",
    requirements=["VAL-021", "VAL-006", "TASK-007"],
    summary=(
        "The suite submits echo with a portable argument whose only node is a ref to nested index 3 while "
        "`nested` is empty (VAL-006). A value's data is checked when it is decoded, not when the message "
        "arrives: the SubmitTask is not malformed (no ProtocolError names its sequence number), and the task "
        "fails as a function that raised would, with every return ERROR(TASK_FAILED); the session goes on."
    ),
)
def bad_portable_argument(ctx: CaseContext) -> None:
    from refrpc.core.messages import ReturnKind

    from .._build import PortableRef

    iut, peer, link = open_session(ctx)
    bad = task(peer, "echo", [by_value(PortableRef(3))])
    seq = link.send(bad)
    reply: TaskReply = ctx.expect(peer, TaskReply, lambda m: m.task_id == bad.task_id, requirement="VAL-021",
                                  what=f"TaskReply for the task whose argument refers to a missing nested ref").body
    codes = [r.error.code.name if r.kind is ReturnKind.ERROR and r.error is not None else r.kind.value for r in reply.returns]
    ctx.check("VAL-021", bool(codes) and all(c == "TASK_FAILED" for c in codes),
              "every return ERROR(TASK_FAILED): the argument fails where it is decoded", codes)
    ctx.check("VAL-021", not peer.received(ProtocolError, lambda m: m.related_seq == seq),
              f"no ProtocolError about seq {seq}: the message itself is well formed", "a ProtocolError named it")
    run_echo(ctx, peer, link, "after", requirement="VAL-021")


@case(
    "malformed/VAL-004-VAL-021-bytes-after-a-portable-argument",
    requirements=["VAL-004", "VAL-021", "TASK-007"],
    summary=(
        "The suite submits echo with a portable argument whose data is the message of the text \"tail\" "
        "followed by one word of zero bytes. A portable value's data is exactly one Cap'n Proto message, with no "
        "bytes after its last segment (VAL-004), checked when the value is decoded: the SubmitTask is not "
        "malformed (no ProtocolError names its sequence number), and the task fails with every return "
        "ERROR(TASK_FAILED), never echo's \"tail\"; the same argument without the extra word is echoed."
    ),
)
def bytes_after_a_portable_argument(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    good = portable("tail")
    padded = replace(good, data=bytes(good.data) + bytes(8))
    bad = task(peer, "echo", [Arg(kind=ArgKind.VALUE, value=padded)])
    seq = link.send(bad)
    reply = expect_reply(ctx, peer, bad, requirement="VAL-021", timeout=10.0)
    codes = [r.error.code.name if r.kind is ReturnKind.ERROR and r.error is not None else r.kind.value for r in reply.returns]
    ctx.check("VAL-004", bool(codes) and all(c == "TASK_FAILED" for c in codes),
              "every return ERROR(TASK_FAILED): a word after the argument's message is not ignored", codes)
    ctx.check("VAL-021", not peer.received(ProtocolError, lambda m: m.related_seq == seq),
              f"no ProtocolError about seq {seq}: the value's data is checked where it is read", "a ProtocolError named it")
    run_echo(ctx, peer, link, "tail", requirement="VAL-004")


@case(
    "malformed/VAL-028-text-read-as-capnp-reads-it",
    requirements=["VAL-028", "ID-011", "TASK-006", "GEN-004", "GEN-010"],
    summary=(
        "A Text field is Cap'n Proto's byte list ending in a 0 byte. A task whose `function` is \"echo\", a 0 byte "
        "and \"tail\" names no registered function (the 0 is part of the text, not its end): every return "
        "ERROR(UNKNOWN_FUNCTION), never echo's result, and no ProtocolError. A task whose `function`'s last byte "
        "is not 0 is malformed: ProtocolError(MALFORMED) about its number, the number consumed, no reply."
    ),
)
def text_read_as_capnp_reads_it(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    inner = task(peer, "echo\0tail", [by_value("x")])
    seq = link.send(inner)
    reply = expect_reply(ctx, peer, inner, requirement="VAL-028", timeout=10.0)
    codes = [rv.error.code.value if rv.kind is ReturnKind.ERROR and rv.error else rv.kind.value for rv in reply.returns]
    ctx.check("VAL-028", bool(codes) and all(c == ErrorCode.UNKNOWN_FUNCTION.value for c in codes),
              "every return ERROR(UNKNOWN_FUNCTION): a 0 byte inside the text is part of it (not echo)", codes)
    ctx.check("VAL-028", not peer.received(ProtocolError, lambda m: m.related_seq == seq),
              "no ProtocolError about the function with a 0 byte inside", "none")
    marker = b"no-terminating-nul"
    bad = task(peer, marker.decode(), [by_value("x")])
    seq = link.send(bad, frames_hook=replace_bytes(marker + b"\0", marker + b"X"))
    err = expect_protocol_error(ctx, peer, requirement="VAL-028", related_seq=seq,
                                what=f"ProtocolError about seq {seq} (a Text whose last byte is not 0)")
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="VAL-028")
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-010")
    ctx.check("VAL-028", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id),
              "the task whose function is not NUL-terminated never runs", "no reply")


@case(
    "malformed/ZMQ-020-segmented-frame-0",
    requirements=["ZMQ-020", "GEN-004"],
    summary=(
        "The suite sends sum_bytes with a 20,000-byte value argument inline, frame 0 laid out by Cap'n Proto's "
        "own message builder in two segments joined by a far pointer (as the reference encoder lays out large "
        "messages). The IUT must decode all of it: the task runs and returns the sum of the bytes. A task whose "
        "segment table declares more words than frame 0 holds is malformed: never run, answered MALFORMED if "
        "at all, and the session goes on."
    ),
)
def segmented_frame_0(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = bytes(i % 251 for i in range(20_000))
    t = task(peer, "sum_bytes", [by_value(data)])
    seq = link.next_seq()
    frames = in_segments(Envelope(peer.peer_id, peer.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, t))
    segments = segment_count(frames[0])
    if segments < 2:
        ctx.abort(f"the suite's own frame has {segments} segment; it meant to send two or more")
    link.send_frames(frames, label=f"SubmitTask(sum_bytes) in {segments} segments", seq=seq)
    reply = expect_reply(ctx, peer, t, requirement="ZMQ-020", timeout=10.0)
    check_inline(ctx, reply, sum(data), requirement="ZMQ-020", note=f"sum_bytes of the value read from {segments} segments")
    bad = task(peer, "echo", [by_value("overstated")])
    seq = link.send(bad, frames_hook=overstate_first_segment(64))
    resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-004")
    ctx.check("ZMQ-020", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id),
              "the task whose segment table declares more than frame 0 holds never runs", "no reply")
    for arrival in peer.received(ProtocolError, lambda m: m.related_seq == seq):
        check_error_code(ctx, arrival.body, (ErrorCode.MALFORMED,), requirement="ZMQ-020", note="the answer to the overstated table")


@case(
    "malformed/ERR-010-first-broken-rule-answers",
    requirements=["ERR-010", "HS-004", "HS-017", "VAL-015", "ID-007", "GEN-019"],
    summary=(
        "On a session where only `core` is in use, the suite sends two SubmitTasks that each break two rules. "
        "The first has a `shared` argument (borrowing not in use, HS-017) and an argument of kind `ref` "
        "carrying a value (VAL-015, a rule of the message's own handling): features come first, so it is "
        "answered FEATURE_NOT_NEGOTIATED. The second has a `shared` argument and a return id of 257 bytes "
        "(ID-007, checked as the message is read): MALFORMED. Each gets exactly one answer and never runs."
    ),
)
def first_broken_rule_answers(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx, features=("core",))
    x = ctx.descriptor(peer, ctx.new_id(peer))
    both = task(peer, "forward", [shared(x), Arg(ArgKind.REF, value=portable(b"abc"))])
    long_id = peer.ids.prefix + "r" * (257 - len(peer.ids.prefix))
    with_long_id = replace(task(peer, "forward", [shared(x)]), return_ids=(long_id,))
    cases = [
        (both, ErrorCode.FEATURE_NOT_NEGOTIATED, "a shared argument without borrowing and an argument without its member"),
        (with_long_id, ErrorCode.MALFORMED, "a shared argument without borrowing and a return id of 257 bytes"),
    ]
    sent = []
    for body, code, what in cases:
        seq = link.send(body)
        sent.append(seq)
        err = expect_protocol_error(ctx, peer, requirement="ERR-010", related_seq=seq, what=f"ProtocolError about {what}")
        check_error_code(ctx, err, (code,), requirement="ERR-010", note=what)
    run_echo(ctx, peer, link, "after", requirement="GEN-010")
    for seq in sent:
        answers = peer.received(ProtocolError, lambda m, seq=seq: m.related_seq == seq)
        ctx.check("GEN-019", len(answers) == 1, f"exactly one answer to seq {seq}", f"{len(answers)} answers")
    ran = peer.received(TaskReply, lambda m: m.task_id in (both.task_id, with_long_id.task_id))
    ctx.check("ERR-010", not ran, "neither task runs", f"{len(ran)} replies")


@case(
    "malformed/ID-013-REF-004-incarnation-0",
    requirements=["ID-013", "REF-004", "GEN-004", "GEN-010"],
    summary=(
        "The suite sends a PeerDeadNotice naming incarnation 0 of a made-up peer, then a task whose ref argument "
        "names its owner's incarnation as 0. Both are malformed (ID-013, REF-004): each is answered "
        "ProtocolError(MALFORMED) about its sequence number, the task never runs and asks nobody for status, "
        "and the session goes on."
    ),
)
def incarnation_zero(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    seq = link.send(PeerDeadNotice("nobody", 0, "made up"))
    err = expect_protocol_error(ctx, peer, requirement="ID-013", what=f"ProtocolError about the notice (seq {seq})",
                                related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="ID-013")
    x = ctx.new_id(peer)
    bad = task(peer, "sum_bytes", [by_ref(replace(ctx.descriptor(peer, x), owner_incarnation=0))])
    seq = link.send(bad)
    err = expect_protocol_error(ctx, peer, requirement="REF-004", what=f"ProtocolError about the task (seq {seq})",
                                related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="REF-004")
    run_echo(ctx, peer, link, "after incarnation 0", requirement="GEN-010")
    ctx.check("REF-004", not peer.received(GetObjectStatus, lambda m: m.object_id == x), "no GetObjectStatus for the bad descriptor", "none")
    ctx.check("REF-004", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the task never runs", "no reply")


@case(
    "malformed/ID-013-REF-006-empty-owner-address",
    requirements=["ID-013", "REF-006", "TASK-002"],
    summary=(
        "The suite submits sum_bytes(X by ref), X owned by the suite, with the descriptor's ownerAddress empty: "
        "the sender gives no address, which is not malformed (ID-013). The IUT has a live session with X's "
        "owner, so it must use it: no ProtocolError, a GetObjectStatus for X on that session, and, once the "
        "suite answers with X's value inline, the right sum."
    ),
)
def empty_owner_address(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = bytes(range(256)) * 4
    x = ctx.new_id(peer)
    t = task(peer, "sum_bytes", [by_ref(replace(ctx.descriptor(peer, x), owner_address=""))])
    seq = link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="ID-013",
               what=f"GetObjectStatus for {x} on the live session, its descriptor's address empty")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(data), value=portable(data)))
    reply = expect_reply(ctx, peer, t)
    refused = peer.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("ID-013", not refused, "no ProtocolError about the task: an empty address is not malformed",
              [f"{e.body.error.code.value} ({e.body.error.requirement})" for e in refused])
    check_inline(ctx, reply, sum(data), requirement="ID-013", note="sum_bytes of X, reached through the live session")


def _portable_with_member(discriminant: int) -> bytes:
    """A portable message whose root's union discriminant is ``discriminant`` (found by
    difference: ``null`` and ``ref`` 0 differ in that field alone)."""
    from refrpc.codec import encode_portable

    a, b = encode_portable(None), encode_portable(PortableRef(0))
    at = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b) or len(at) != 1:
        raise ValueError(f"cannot locate the Portable discriminant (bytes {at})")
    start = at[0] - (at[0] % 2)
    data = bytearray(a)
    data[start : start + 2] = discriminant.to_bytes(2, "little")
    return bytes(data)


#: How deep VAL-007 says every reader accepts portable values.
ACCEPTED_DEPTH = 64


@case(
    "malformed/VAL-005-VAL-007-VAL-014-portable-rules-checked-where-read",
    requirements=["VAL-005", "VAL-007", "VAL-014", "VAL-021"],
    summary=(
        "The suite submits echo with portable arguments that break a rule of their data: a map whose two "
        "entries have the key \"ka\" (VAL-005), and a root node whose union member is 99, which no schema "
        "defines (VAL-014). Each SubmitTask is well formed (no ProtocolError names it, VAL-021) and each task "
        f"fails with every return ERROR(TASK_FAILED), never an echoed value. echo of a map with keys \"zb\", "
        f"\"ka\" answers them in that order (VAL-005), and echo of {ACCEPTED_DEPTH} lists nested in each other "
        "answers the same value (VAL-007: every reader accepts that depth)."
    ),
)
def portable_rules_checked_where_read(ctx: CaseContext) -> None:
    from refrpc.codec import encode_portable
    from refrpc.core.messages import Encoding, Value

    iut, peer, link = open_session(ctx)
    twice = encode_portable({"ka": 1, "kb": 2})
    if twice.count(b"kb") != 1:
        raise ValueError("cannot locate the second key")
    bad_values = {
        "VAL-005": ("a map repeating its key \"ka\"", twice.replace(b"kb", b"ka")),
        "VAL-014": ("a node whose union member is 99", _portable_with_member(99)),
    }
    for requirement, (what, data) in bad_values.items():
        bad = task(peer, "echo", [Arg(kind=ArgKind.VALUE, value=Value(Encoding.PORTABLE, data))])
        seq = link.send(bad)
        reply = expect_reply(ctx, peer, bad, requirement=requirement, timeout=10.0)
        codes = [r.error.code.name if r.kind is ReturnKind.ERROR and r.error is not None else r.kind.value
                 for r in reply.returns]
        ctx.check(requirement, bool(codes) and all(c == "TASK_FAILED" for c in codes),
                  f"every return ERROR(TASK_FAILED) for {what}: a reader treats it as malformed where it decodes it",
                  codes)
        ctx.check("VAL-021", not peer.received(ProtocolError, lambda m, seq=seq: m.related_seq == seq),
                  f"no ProtocolError about seq {seq} ({what}): a value's data is checked where it is read",
                  "a ProtocolError named it")
    ordered = task(peer, "echo", [by_value({"zb": 1, "ka": 2})])
    link.send(ordered)
    reply = expect_reply(ctx, peer, ordered, requirement="VAL-005")
    try:
        got = read_portable(reply.returns[0].value) if reply.returns and reply.returns[0].value is not None else None
    except Exception as exc:
        got = f"unreadable: {exc}"
    ctx.check("VAL-005", isinstance(got, dict) and list(got.items()) == [("zb", 1), ("ka", 2)],
              "the map echoed with its entries in the order sent: zb, ka",
              list(got.items()) if isinstance(got, dict) else got)
    deep: object = "bottom"
    for _ in range(ACCEPTED_DEPTH):
        deep = [deep]
    nested = task(peer, "echo", [by_value(deep)])
    link.send(nested)
    check_inline(ctx, expect_reply(ctx, peer, nested, requirement="VAL-007"), deep, requirement="VAL-007",
                 note=f"echo of {ACCEPTED_DEPTH} nested lists")
