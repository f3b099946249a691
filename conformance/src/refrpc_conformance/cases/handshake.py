"""handshake.md: Hello and Welcome, versions, features, unknown messages."""

from __future__ import annotations

import time
from dataclasses import replace

from refrpc.core.messages import (
    CreateActor,
    Envelope,
    ErrorCode,
    ErrorInfo,
    Goodbye,
    Heartbeat,
    Hello,
    ProtocolError,
    RegisterBorrower,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Welcome,
)

from .._build import by_value, portable, shared
from .._case import case
from .._context import CaseContext
from .._control import ControlError
from .._craft import replace_bytes, with_discriminant
from .._wire import ExpectTimeout, Link, WireError
from ._common import (
    check_error_code,
    check_no_session_opened,
    expect_protocol_error,
    open_session,
    run_echo,
    task,
)

MIB = 1 << 20


@case(
    "handshake/HS-002-HS-010-welcome-answers-hello",
    requirements=["HS-002", "HS-003", "HS-004", "HS-005", "HS-007", "HS-010", "HS-012", "HS-016", "HS-022", "SES-007", "GEN-007"],
    summary=(
        "The suite sends a Hello with minor version 7, the features core, borrowing, recovery, lz4 and an unknown "
        "x- feature, and checks every field of the Welcome: its own major version 0 and the smaller minor "
        "version 1, its address, exactly the common features, a frame limit of at least 1 MiB, sequence "
        "number 0, addressed to the suite's incarnation."
    ),
)
def welcome_answers_hello(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    offered = ("core", "borrowing", "recovery", "lz4", "x-conformance-probe")
    peer = ctx.wire_peer(features=offered)
    link = peer.connect(iut.peer_id, iut.address)
    link.hello(protocol_minor=7)
    arrival = ctx.expect(peer, (Welcome, ProtocolError), requirement="HS-002", what="Welcome answering a Hello of major version 0")
    env: Envelope = arrival.envelope
    ctx.require("HS-002", isinstance(env.body, Welcome), "Welcome", f"{type(env.body).__name__}: {env.body}")
    w: Welcome = env.body
    ctx.check("SES-007", env.seq == 0, "Welcome with sequence number 0", f"seq {env.seq}")
    ctx.check("HS-010", env.receiver_incarnation == peer.incarnation, f"receiverIncarnation = {peer.incarnation}", env.receiver_incarnation)
    ctx.check("HS-010", env.sender == iut.peer_id and env.sender_incarnation == iut.incarnation,
              f"sender {iut.peer_id}/{iut.incarnation} (from its ready event)", f"{env.sender}/{env.sender_incarnation}")
    ctx.check("HS-016", w.protocol_major == 0, "protocolMajor 0", w.protocol_major)
    ctx.check("HS-003", w.protocol_minor == 1, "protocolMinor 1 (the smaller of 7 and 1)", w.protocol_minor)
    ctx.check("HS-010", w.address == iut.address, f"address {iut.address!r}", repr(w.address))
    common = {f for f in offered if f in iut.features}
    ctx.check("HS-004", set(w.features) == common, f"the common features {sorted(common)}", sorted(w.features),
              note="features offered by the suite, intersected with those in the IUT's ready event")
    ctx.check("HS-007", "core" in w.features, "core among the features", list(w.features))
    ctx.check("HS-005", "x-conformance-probe" not in w.features, "the unknown feature ignored", list(w.features))
    ctx.check("GEN-007", not any(f.startswith("x-") for f in w.features), "no x- feature in use", list(w.features))
    ctx.check("HS-022", len(set(w.features)) == len(w.features), "each feature listed once", list(w.features))
    ctx.check("HS-012", w.max_frame_bytes >= MIB, "maxFrameBytes >= 1 MiB", w.max_frame_bytes)


def _refused(ctx: CaseContext, requirement: str, codes: tuple[ErrorCode, ...], **hello: object) -> tuple[Link, ProtocolError]:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    link = peer.connect(iut.peer_id, iut.address)
    link.resend_hello = False
    link.hello(**hello)
    arrival = ctx.expect(peer, (ProtocolError, Welcome), requirement=requirement, what="ProtocolError refusing the Hello")
    ctx.require(requirement, isinstance(arrival.body, ProtocolError), "ProtocolError, no Welcome", type(arrival.body).__name__)
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, codes, requirement=requirement)
    ctx.check("SES-007", arrival.seq == 0, "the refusal sent with sequence number 0", f"seq {arrival.seq}")
    ctx.check("ERR-001", err.related_seq == 0, "relatedSeq 0 (the Hello had no sequence number)", err.related_seq)
    env = arrival.envelope
    ctx.check("SES-018", (env.receiver, env.receiver_incarnation, env.ack) == (peer.peer_id, peer.incarnation, 0),
              f"an answer without a session: receiver {peer.peer_id}, receiverIncarnation {peer.incarnation} (the Hello's "
              "sender, never 0), ack 0", f"receiver {env.receiver}, receiverIncarnation {env.receiver_incarnation}, ack {env.ack}")
    link.resend_hello = True
    check_no_session_opened(ctx, iut, peer, link, requirement=requirement)
    return link, err


@case(
    "handshake/HS-002-unknown-major-refused",
    requirements=["HS-002", "SES-007", "SES-018", "ERR-001", "SES-010"],
    summary=(
        "A Hello with protocolMajor 1 is refused with ProtocolError(PROTOCOL_VERSION), sequence number 0, and "
        "no session is opened: a sequenced message sent next is discarded, and a later valid Hello starts a "
        "session whose first message is again number 1."
    ),
)
def unknown_major_refused(ctx: CaseContext) -> None:
    _refused(ctx, "HS-002", (ErrorCode.PROTOCOL_VERSION,), protocol_major=1)


@case(
    "handshake/HS-011-hello-without-core-refused",
    requirements=["HS-011", "HS-007", "SES-007", "ERR-001", "SES-010"],
    summary=(
        "A Hello that offers only `borrowing` (no `core`) is refused with ProtocolError(FEATURE_NOT_NEGOTIATED) "
        "naming HS-007, sequence number 0, and no session is opened."
    ),
)
def hello_without_core_refused(ctx: CaseContext) -> None:
    _link, err = _refused(ctx, "HS-011", (ErrorCode.FEATURE_NOT_NEGOTIATED,), features=("borrowing",))
    ctx.check("HS-011", err.error.requirement == "HS-007", "error.requirement = 'HS-007'", repr(err.error.requirement))


@case(
    "handshake/HS-012-small-frame-limit-malformed",
    requirements=["HS-012", "GEN-004", "SES-007", "ERR-001", "SES-010"],
    summary=(
        "A Hello announcing maxFrameBytes of 64 KiB (below the 1 MiB minimum) is malformed: it is answered "
        "with ProtocolError(MALFORMED) (the sender is identifiable) and no session is opened."
    ),
)
def small_frame_limit_malformed(ctx: CaseContext) -> None:
    _refused(ctx, "HS-012", (ErrorCode.MALFORMED,), max_frame_bytes=64 * 1024)


@case(
    "handshake/HS-025-LIV-021-odd-hello-fields-accepted",
    requirements=["HS-025", "HS-005", "HS-022", "LIV-021", "LIV-007"],
    summary=(
        "The suite's Hello lists core twice, a feature name HS-022 does not allow, and announces "
        "heartbeatIntervalMs 0. None of these makes a Hello refusable (HS-025): the IUT must answer Welcome with "
        "core once and without the bad name, and must take the interval 0 as not announced (LIV-021), using "
        "its own: the session stays live and a task runs on it, half a second later too."
    ),
)
def odd_hello_fields_accepted(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    offered = ("core", "core", "not a feature!")
    peer = ctx.wire_peer(features=offered)
    link = peer.connect(iut.peer_id, iut.address)
    link.hello(heartbeat_interval_ms=0)
    arrival = ctx.expect(peer, (Welcome, ProtocolError), requirement="HS-025",
                         what="Welcome answering a Hello with a repeated feature, a bad feature name and interval 0")
    ctx.require("HS-025", isinstance(arrival.body, Welcome), "Welcome, not a refusal",
                f"{type(arrival.body).__name__}: {arrival.body}")
    w: Welcome = arrival.body
    ctx.check("HS-022", list(w.features).count("core") == 1, "core listed once in the Welcome", list(w.features))
    ctx.check("HS-005", "not a feature!" not in w.features, "the bad name ignored", list(w.features))
    run_echo(ctx, peer, link, "first", requirement="LIV-021")
    time.sleep(0.5)  # a stimulus: half a second of session life, long past a zero detection timeout
    run_echo(ctx, peer, link, "second", requirement="LIV-021")


@case(
    "handshake/HS-009-repeated-hello-same-welcome",
    requirements=["HS-009", "SES-002"],
    summary=(
        "After a session is live and one task has run, the suite sends its Hello again. The IUT answers with a "
        "Welcome carrying the same negotiated values and keeps the session: the next task (sequence number 2) "
        "runs, and its reply continues the IUT's own numbering."
    ),
)
def repeated_hello(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    first = link.welcome
    assert first is not None
    run_echo(ctx, peer, link, "one")
    first_reply_seq = max(a.seq for a in peer.received(TaskReply))
    before = len(peer.received(Welcome))  # the first Welcome stays in the inbox: wait for a new one
    link.hello()
    ctx.wait_until(peer, lambda: len(peer.received(Welcome)) > before, requirement="HS-009",
                   what="a Welcome answering the repeated Hello")
    again = peer.received(Welcome)[before]
    w0, w1 = first.body, again.body
    ctx.check("HS-009", (w1.protocol_major, w1.protocol_minor, w1.address, set(w1.features), w1.max_frame_bytes, w1.heartbeat_interval_ms)
              == (w0.protocol_major, w0.protocol_minor, w0.address, set(w0.features), w0.max_frame_bytes, w0.heartbeat_interval_ms),
              f"the same negotiated values as the first Welcome ({w0})", str(w1))
    t = task(peer, "echo", [by_value("two")])
    seq = link.send(t)
    reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="HS-009",
                       what=f"TaskReply for the task sent with seq {seq} after the repeated Hello (session state kept)")
    ctx.check("HS-009", reply.seq > first_reply_seq, f"the IUT's numbering continues after seq {first_reply_seq}",
              f"reply has seq {reply.seq}")


@case(
    "handshake/HS-036-repeated-hello-not-renegotiated",
    requirements=["HS-036", "HS-009"],
    summary=(
        "After a session is live and one task has run, the suite sends its Hello again, this time offering "
        "`core` alone, protocol minor 0, another frame limit and another heartbeat interval. The IUT answers "
        "with a Welcome carrying the values negotiated when the session opened (the same features, minor "
        "version, frame limit and interval as its first Welcome), and the session goes on: the next task runs."
    ),
)
def repeated_hello_not_renegotiated(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    first = link.welcome
    assert first is not None
    run_echo(ctx, peer, link, "one", requirement="HS-036")
    before = len(peer.received(Welcome))
    link.hello(features=("core",), protocol_minor=0, max_frame_bytes=2 << 20,
               heartbeat_interval_ms=peer.heartbeat_ms * 2)
    ctx.wait_until(peer, lambda: len(peer.received(Welcome)) > before, requirement="HS-036",
                   what="a Welcome answering the repeated Hello")
    again = peer.received(Welcome)[before]
    w0, w1 = first.body, again.body
    ctx.check("HS-036", (w1.protocol_minor, set(w1.features), w1.max_frame_bytes, w1.heartbeat_interval_ms)
              == (w0.protocol_minor, set(w0.features), w0.max_frame_bytes, w0.heartbeat_interval_ms),
              f"the values negotiated when the session opened ({w0})", str(w1))
    run_echo(ctx, peer, link, "two", requirement="HS-036")


@case(
    "handshake/HS-004-feature-not-negotiated",
    requirements=["HS-004", "ERR-001", "GEN-010", "GEN-012"],
    summary=(
        "On a session where only `core` is in use, the suite sends a SubmitTask with a `shared` argument (a "
        "borrowing feature). The IUT discards it and answers ProtocolError(FEATURE_NOT_NEGOTIATED), sequenced, "
        "with that message's sequence number, which counts as delivered: the next message, numbered after it, "
        "runs."
    ),
)
def feature_not_negotiated(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx, features=("core",))
    x = ctx.descriptor(peer, ctx.new_id(peer))
    bad = task(peer, "forward", [shared(x)])
    seq = link.send(bad)
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="HS-004",
                         what=f"ProtocolError about seq {seq}")
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, (ErrorCode.FEATURE_NOT_NEGOTIATED,), requirement="HS-004")
    ctx.check("GEN-012", arrival.seq > 0, "the ProtocolError sequenced (it answers a message of the live session)",
              f"seq {arrival.seq}")
    run_echo(ctx, peer, link, "after", requirement="HS-004")
    answered = peer.received(TaskReply, lambda m: m.task_id == bad.task_id)
    ctx.check("HS-004", not answered, "the offending SubmitTask discarded (no TaskReply)", f"{len(answered)} replies")


@case(
    "handshake/REF-004-ERR-010-feature-before-incarnation-0",
    requirements=["REF-004", "ERR-010", "HS-004"],
    summary=(
        "On a session where only `core` is in use, the suite sends a SubmitTask with a `shared` argument whose "
        "descriptor names its owner's incarnation as 0. It breaks a feature rule (ERR-010 step 3) and REF-004, "
        "which is judged at delivery (step 5): the one answer is ProtocolError(FEATURE_NOT_NEGOTIATED), never "
        "MALFORMED, and the session goes on."
    ),
)
def feature_before_incarnation_0(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx, features=("core",))
    x = replace(ctx.descriptor(peer, ctx.new_id(peer)), owner_incarnation=0)
    bad = task(peer, "forward", [shared(x)])
    seq = link.send(bad)
    err = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="REF-004",
                     what=f"ProtocolError about seq {seq}").body
    check_error_code(ctx, err, (ErrorCode.FEATURE_NOT_NEGOTIATED,), requirement="REF-004")
    run_echo(ctx, peer, link, "after", requirement="HS-004")
    answers = peer.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("ERR-010", len(answers) == 1, "one answer for the message", f"{len(answers)} ProtocolErrors")


@case(
    "handshake/ID-013-ERR-010-feature-before-incarnation-0",
    requirements=["ID-013", "ERR-010", "HS-004"],
    summary=(
        "On a session where only `core` is in use, the suite sends a RegisterBorrower for an object the IUT "
        "owns whose borrowerIncarnation is 0. It breaks a feature rule (ERR-010 step 3: RegisterBorrower needs "
        "`borrowing`) and ID-013, which is judged at delivery (step 5): the one answer is "
        "ProtocolError(FEATURE_NOT_NEGOTIATED), never MALFORMED, and the session goes on."
    ),
)
def register_borrower_feature_before_incarnation_0(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx, features=("core",))
    x = iut.put(b"owned by the IUT")
    seq = link.send(RegisterBorrower(x, peer.peer_id, 0, peer.address, ctx.new_id(peer)))
    err = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="ID-013",
                     what=f"ProtocolError about seq {seq}").body
    check_error_code(ctx, err, (ErrorCode.FEATURE_NOT_NEGOTIATED,), requirement="ID-013")
    run_echo(ctx, peer, link, "after", requirement="HS-004")
    answers = peer.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("ERR-010", len(answers) == 1, "one answer for the message", f"{len(answers)} ProtocolErrors")


@case(
    "handshake/SES-042-sender-incarnation-0-unanswered",
    requirements=["SES-042", "SES-016", "SES-018", "ID-002"],
    summary=(
        "A second suite peer sends the IUT a Hello whose envelope names sender incarnation 0, and the suite's "
        "live peer sends a Heartbeat with sender incarnation 0 addressed to an earlier incarnation of the IUT "
        "(which SES-006 would answer DECLARED_DEAD to a real incarnation). Both are discarded unanswered: no "
        "Welcome and no ProtocolError is addressed to incarnation 0, and the live session goes on."
    ),
)
def sender_incarnation_0_unanswered(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    zero = ctx.wire_peer("zero")
    zero_link = zero.connect(iut.peer_id, iut.address, iut.incarnation)
    zero_link.hello(sender_incarnation=0)
    earlier = iut.incarnation ^ 1 or 2
    link.send(Heartbeat(), sender_incarnation=0, receiver_incarnation=earlier)
    run_echo(ctx, peer, link, "after", requirement="SES-042")
    iut.quiesce()
    welcomed = [str(a.body) for a in zero.received((Welcome, ProtocolError))]
    ctx.check("SES-042", not welcomed, "the Hello from incarnation 0 discarded without an answer", welcomed)
    to_zero = [str(a.body) for a in peer.received(ProtocolError, lambda m: True)
               if a.envelope.receiver_incarnation == 0]
    ctx.check("SES-042", not to_zero, "nothing answered to incarnation 0 (SES-018: never 0)", to_zero)
    run_echo(ctx, peer, link, "last", requirement="SES-042")


@case(
    "handshake/GEN-001-GEN-006-unknown-message-in-session",
    requirements=["GEN-001", "GEN-006"],
    summary=(
        "In a live session the suite sends a message of type 64 (reserved for experiments). The IUT answers "
        "ProtocolError(UNKNOWN_MESSAGE) with relatedSeq set to its sequence number, counts it as delivered, "
        "and the next message runs."
    ),
)
def unknown_message_in_session(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    run_echo(ctx, peer, link, "before")
    seq = link.next_seq()
    env = Envelope(peer.peer_id, peer.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, SubmitTask("", "", (), ()))
    link.send_frames(with_discriminant(env), label="message type 64", seq=seq)
    err = expect_protocol_error(ctx, peer, requirement="GEN-006", what=f"ProtocolError about the type-64 message (seq {seq})", related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.UNKNOWN_MESSAGE,), requirement="GEN-001")
    run_echo(ctx, peer, link, "after", requirement="GEN-001")


@case(
    "handshake/GEN-009-unknown-message-outside-session",
    requirements=["GEN-009"],
    summary=(
        "The suite sends a message of type 64 with sequence number 0. The IUT discards it, may answer "
        "UNKNOWN_MESSAGE or WRONG_STATE with relatedSeq 0, and the session is unaffected."
    ),
)
def unknown_message_outside_session(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    env = Envelope(peer.peer_id, peer.incarnation, iut.peer_id, iut.incarnation, 0, link.delivered, SubmitTask("", "", (), ()))
    link.send_frames(with_discriminant(env), label="message type 64, seq 0")
    run_echo(ctx, peer, link, "after", requirement="GEN-009")
    for arrival in peer.received(ProtocolError):
        err: ProtocolError = arrival.body
        check_error_code(ctx, err, (ErrorCode.UNKNOWN_MESSAGE, ErrorCode.WRONG_STATE), requirement="GEN-009",
                         note="the optional answer")
        ctx.check("GEN-009", err.related_seq == 0, "relatedSeq 0", err.related_seq, note="the optional answer")
    if not peer.received(ProtocolError):
        ctx.note("the IUT did not answer the type-64 message sent outside the session (allowed)")


@case(
    "handshake/HS-001-HS-013-iut-initiates",
    requirements=["HS-001", "HS-013", "HS-016", "HS-007", "HS-012", "ZMQ-001", "SES-014", "TASK-001"],
    summary=(
        "The IUT is told of a suite peer (add_peer) and asked to submit echo(5) to it. It must greet first: "
        "Hello with sequence number 0, version 0.1, `core`, its own address, a frame limit of at least 1 MiB; "
        "after the suite's Welcome it sends the SubmitTask as sequenced message 1. The suite answers, and the "
        "IUT's `get` returns 5."
    ),
)
def iut_initiates(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    iut.add_peer(peer, slots=1)
    sub = iut.submit("echo", [{"value": 5}], executor=peer.peer_id)
    hello_arrival = ctx.expect(peer, Hello, requirement="HS-001", what="Hello from the IUT")
    first_in = next(r for r in ctx.trace if r.direction == "in")
    ctx.check("HS-001", first_in.type == "Hello", "Hello before any other message", f"first message: {first_in.type}")
    env = hello_arrival.envelope
    h: Hello = env.body
    ctx.check("SES-007", env.seq == 0, "Hello with sequence number 0", env.seq)
    ctx.check("SES-014", env.receiver_incarnation in (0, peer.incarnation), f"receiverIncarnation 0 or {peer.incarnation}", env.receiver_incarnation)
    ctx.check("HS-016", (h.protocol_major, h.protocol_minor) == (0, 1), "version 0.1", f"{h.protocol_major}.{h.protocol_minor}")
    ctx.check("HS-007", "core" in h.features, "core offered", list(h.features))
    ctx.check("ZMQ-001", h.address == iut.address, f"its bound address {iut.address!r}", repr(h.address))
    ctx.check("HS-012", h.max_frame_bytes >= MIB, "maxFrameBytes >= 1 MiB", h.max_frame_bytes)
    arrival = ctx.expect(peer, SubmitTask, requirement="HS-013", what="the queued SubmitTask after the Welcome")
    t: SubmitTask = arrival.body
    ctx.check("HS-013", arrival.seq == 1, "the first sequenced message numbered 1", f"seq {arrival.seq}")
    ctx.check("TASK-001", t.task_id == sub["task_id"] and list(t.return_ids) == list(sub["returns"]),
              f"task id {sub['task_id']} and return ids {sub['returns']} as the control channel reported",
              f"{t.task_id}, {list(t.return_ids)}")
    link = peer.link(iut.peer_id)
    link.send(TaskReply(t.task_id, t.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(5)) for r in t.return_ids)))
    got = iut.get(sub["returns"][0])
    ctx.check("TASK-001", got.get("value") == 5, "get() of the return gives 5", got)


@case(
    "handshake/HS-008-hello-resent",
    requirements=["HS-008"],
    summary=(
        "The suite ignores the IUT's first Hello. The IUT must send Hello again (every 200 ms by default) "
        "until it is answered; the suite answers the second one and the queued task arrives."
    ),
)
def hello_resent(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    peer.accept_hello = False
    iut.add_peer(peer, slots=1)
    iut.submit("echo", [{"value": "x"}], executor=peer.peer_id)
    ctx.expect(peer, Hello, requirement="HS-008", what="the IUT's first Hello")
    peer._call(lambda: setattr(peer, "accept_hello", True))
    ctx.expect(peer, Hello, requirement="HS-008", what="a second Hello, the first having gone unanswered", timeout=8.0)
    ctx.expect(peer, SubmitTask, requirement="HS-008", what="the queued SubmitTask once the resent Hello is answered")


@case(
    "handshake/HS-023-simultaneous-hellos",
    requirements=["HS-023", "HS-013", "HS-014", "HS-001"],
    summary=(
        "The IUT is told of suite peer P and asked to submit echo(3) to it, so it greets P. P does not answer "
        "that Hello; it greets the IUT with a Hello of its own instead (both are initiators). The IUT must "
        "answer with Welcome and, its session now open in both directions, send its queued SubmitTask as "
        "sequenced message 1 without waiting for a Welcome from P. P's late Welcome changes nothing: P "
        "answers the task and the IUT's get returns 3."
    ),
)
def simultaneous_hellos(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    peer.accept_hello = False  # the case answers the IUT's Hello itself, late
    iut.add_peer(peer, slots=1)
    sub = iut.submit("echo", [{"value": 3}], executor=peer.peer_id)
    their_hello = ctx.expect(peer, Hello, requirement="HS-001", what="Hello from the IUT")
    link = peer.link(iut.peer_id)
    try:
        link.handshake(ctx.bound(10.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("HS-023", "Welcome answering the suite's Hello while the IUT's own is unanswered", str(exc))
    arrival = ctx.expect(peer, SubmitTask, requirement="HS-023",
                         what="the queued SubmitTask, sent once the IUT's Welcome opened the session", timeout=10.0)
    ctx.check("HS-023", arrival.seq == 1, "the queued task sent as sequenced message 1", f"seq {arrival.seq}")
    hello: Hello = their_hello.body
    late = Welcome(0, min(1, hello.protocol_minor), peer.address, tuple(f for f in peer.features if f in hello.features),
                   peer.max_frame_bytes, peer.heartbeat_ms)
    link.send(late, receiver_incarnation=iut.incarnation)
    t: SubmitTask = arrival.body
    link.send(TaskReply(t.task_id, t.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(3)) for r in t.return_ids)))
    got = iut.get(sub["returns"][0])
    ctx.check("HS-014", got.get("value") == 3, "the late Welcome ignored; get() of the return gives 3", got)
    again = [a for a in peer.received(SubmitTask) if a.body.task_id == t.task_id]
    ctx.check("HS-023", len(again) == 1, "the task sent once (not again after the late Welcome)", f"{len(again)} times")


#: The largest handshake limit the SEC-021 case reaches (CNF-031).
MOST_HANDSHAKES = 400


@case(
    "handshake/SEC-021-oldest-handshake-forgotten",
    requirements=["SEC-021", "SES-010", "HS-009", "HS-001"],
    summary=(
        "N + 1 suite peers greet the IUT one after another, announcing a heartbeat interval of 10 s, and then send "
        "nothing at all (no heartbeat, no ack), "
        "where N is the config's `limits.handshakes` (128 by default, CNF-031): each gets a Welcome, and the "
        "last Hello makes the IUT forget the oldest handshake in progress. The oldest peer then sends a "
        "sequenced echo task (seq 1), which must be discarded (no session), greets again with the same "
        "incarnation (answered Welcome, not DECLARED_DEAD: forgetting fences nobody) and sends another echo as "
        "seq 1 of the new session, which must run; had the old handshake been kept, the first echo would have "
        "run and the second been a duplicate. The newest peer's handshake was kept: its echo runs."
    ),
    timeout=120.0,
)
def oldest_handshake_forgotten(ctx: CaseContext) -> None:
    n = ctx.config.limit("handshakes")
    if n > MOST_HANDSHAKES:
        ctx.skip(f"limits.handshakes is {n}: more peers than a case makes (at most {MOST_HANDSHAKES}, CNF-031)")
    iut = ctx.start_iut()
    links: list[Link] = []
    for i in range(n + 1):
        # An interval of 10 s announced: the IUT's detection timeout for these silent peers is
        # then a minute (LIV-007), longer than the case, so none is declared dead by silence.
        p = ctx.wire_peer(f"greeter{i}", heartbeat_ms=10_000)
        p.heartbeats = p.acks = False  # nothing but the Hello: a handshake in progress
        link = p.connect(iut.peer_id, iut.address, iut.incarnation)
        try:
            link.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
        except (WireError, ExpectTimeout) as exc:
            ctx.fail("SEC-021", f"Welcome for Hello {i + 1} of {n + 1} (a handshake beyond the limit forgets "
                     "the oldest, it is not refused)", str(exc))
        links.append(link)
    oldest, newest = links[0], links[-1]
    stray = task(oldest.peer, "echo", [by_value("to a forgotten session")])
    oldest.send(stray)
    oldest.reset_session()
    try:
        oldest.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
    except WireError as exc:
        ctx.fail("SEC-021", "Welcome for the forgotten peer's new Hello (forgetting fences nobody)", str(exc))
    except ExpectTimeout as exc:
        ctx.fail("HS-001", "Welcome for the forgotten peer's new Hello", str(exc))
    after = task(oldest.peer, "echo", [by_value("in the new session")])
    oldest.send(after)
    first: TaskReply = ctx.expect(oldest.peer, TaskReply, lambda m: m.task_id in (stray.task_id, after.task_id),
                                  requirement="SEC-021", what="a TaskReply from the IUT to the oldest peer").body
    ctx.check("SEC-021", first.task_id == after.task_id,
              f"the oldest of {n + 1} handshakes in progress forgotten: its seq 1 discarded (SES-010), the new "
              "session's seq 1 run", "the message sent in the old session ran: the handshake was kept")
    newest.peer.acks = True
    run_echo(ctx, newest.peer, newest, "the newest handshake kept", requirement="SEC-021")
    for link in links[1:-1]:
        link.peer.close()


@case(
    "handshake/SES-020-SES-006-hello-to-an-earlier-incarnation",
    requirements=["SES-020", "SES-006", "SES-018"],
    summary=(
        "A suite peer the IUT has never heard of sends a Hello whose receiverIncarnation names another "
        "incarnation of the IUT (one it learnt from an old descriptor, say). The IUT has no record of the "
        "sender, so it answers at the Hello's own address: ProtocolError(DECLARED_DEAD) naming SES-006, as an "
        "answer without a session (sequence number 0, ack 0, the Hello's incarnation as receiver). A Hello "
        "naming no incarnation is then welcomed and the session runs a task."
    ),
)
def hello_to_an_earlier_incarnation(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    link = peer.connect(iut.peer_id, iut.address)
    link.resend_hello = False
    link.hello(receiver_incarnation=iut.incarnation ^ 0x5A5A)
    arrival = ctx.expect(peer, (ProtocolError, Welcome), requirement="SES-020",
                         what="ProtocolError(DECLARED_DEAD) at the Hello's address")
    ctx.require("SES-006", isinstance(arrival.body, ProtocolError), "ProtocolError, no Welcome", type(arrival.body).__name__)
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, (ErrorCode.DECLARED_DEAD,), requirement="SES-006")
    ctx.check("SES-006", err.error.requirement == "SES-006", "error.requirement 'SES-006'", repr(err.error.requirement))
    env = arrival.envelope
    ctx.check("SES-018", (arrival.seq, env.receiver_incarnation, env.ack, err.related_seq) == (0, peer.incarnation, 0, 0),
              f"an answer without a session: seq 0, receiverIncarnation {peer.incarnation}, ack 0, relatedSeq 0",
              f"seq {arrival.seq}, receiverIncarnation {env.receiver_incarnation}, ack {env.ack}, relatedSeq {err.related_seq}")
    link.reset_session()
    link.resend_hello = True
    try:
        link.handshake(ctx.bound(10.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("SES-006", "a Welcome for a Hello that names no incarnation (the refusal opened nothing)", str(exc))
    run_echo(ctx, peer, link, "after", requirement="SES-006")


@case(
    "handshake/HS-035-task-the-session-cannot-carry-fails-at-home",
    requirements=["HS-035", "HS-017", "HS-019", "ERR-003"],
    features=("core", "borrowing"),
    summary=(
        "Suite executor E offers `core` alone. The IUT is asked to submit forward(X as a shared argument) to E, X "
        "a value it put: a first attempt its session with E cannot carry (HS-017). The IUT must not send it: "
        "get of its return answers FEATURE_NOT_NEGOTIATED at once, and an echo submitted to E next is the first "
        "SubmitTask E receives (the session is in order, so the refused task would have come before it). An "
        "IUT that claims `actors` is also asked to create a Counter on E: no CreateActor reaches E (HS-019), "
        "and a call on that actor fails."
    ),
)
def task_the_session_cannot_carry(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor", features=("core",))
    iut.add_peer(e, slots=1)
    x = iut.put(b"shared with nobody")
    ret = iut.submit("forward", [{"shared": x}], executor=e.peer_id)["returns"][0]
    got = iut.get(ret, timeout_ms=5_000)
    code = str(got.get("error", {}).get("code", ""))
    ctx.check("HS-035", code == "FEATURE_NOT_NEGOTIATED",
              "get answers FEATURE_NOT_NEGOTIATED: the task failed at home, as if E had refused it", got)
    call_ret = None
    if "actors" in iut.features:
        try:
            actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 1}], "host": e.peer_id})["actor_id"]
            call_ret = iut.control("actor_call", actor_id=actor, method="get", args=[])["returns"][0]
        except ControlError as exc:
            ctx.note(f"the IUT refused the actor on E through the control channel: {exc}")
    probe = iut.submit("echo", [{"value": "probe"}], executor=e.peer_id)["returns"][0]
    arrival = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (probe,), requirement="HS-035",
                         what="the probe echo's SubmitTask")
    t: SubmitTask = arrival.body
    e.link(iut.peer_id).send(TaskReply(t.task_id, t.attempt, (ReturnValue(probe, ReturnKind.INLINE, value=portable("probe")),)))
    ctx.check("TASK-005", iut.get(probe).get("value") == "probe", "the probe echo answered", "no answer")
    sent = [type(a.body).__name__ for a in e.received((SubmitTask, CreateActor)) if a.body is not t]
    ctx.check("HS-035", not sent, "nothing sent to E before the probe: neither the task with a shared argument nor "
              "a CreateActor (a session with core alone carries neither)", sent)
    if call_ret is not None:
        after = iut.get(call_ret, timeout_ms=5_000)
        ctx.check("HS-035", "error" in after, "a call on the actor E's session cannot carry fails (the actor is dead)", after)


@case(
    "handshake/GEN-040-unknown-message-answer-ends-one-request",
    requirements=["GEN-040", "ERR-003", "GEN-001"],
    summary=(
        "The IUT submits echo to suite executor E, and E answers the SubmitTask with a sequenced "
        "ProtocolError(UNKNOWN_MESSAGE) naming its sequence number, as a peer lacking the type would. The IUT "
        "must end that task with the error's code (get answers UNKNOWN_MESSAGE) and change nothing it sends "
        "later: a second echo to E is sent as the next sequenced message of the same session (not failed at "
        "home, no new Hello, no Goodbye), E answers it, and get returns its value."
    ),
)
def unknown_message_answer_ends_one_request(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    first = iut.submit("echo", [{"value": "first"}], executor=e.peer_id)["returns"][0]
    arrival = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (first,), requirement="TASK-001",
                         what="the IUT's SubmitTask of the first echo")
    link = e.link(iut.peer_id)
    link.send(ProtocolError(ErrorInfo(ErrorCode.UNKNOWN_MESSAGE, "the conformance suite plays a peer without SubmitTask",
                                      "GEN-001"), related_seq=arrival.seq))
    got = iut.get(first, timeout_ms=5_000)
    ctx.check("GEN-040", got.get("error", {}).get("code") == "UNKNOWN_MESSAGE",
              "get answers UNKNOWN_MESSAGE: the request the error names ended with its code (ERR-003)", got)
    hellos_before = len(e.received((Hello, Goodbye)))
    second = iut.submit("echo", [{"value": "second"}], executor=e.peer_id)["returns"][0]
    again = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (second,), requirement="GEN-040",
                       what="the second echo's SubmitTask, sent as the rules call for it", timeout=10.0)
    t: SubmitTask = again.body
    ctx.check("GEN-040", again.seq == arrival.seq + 1,
              f"the next sequenced message of the same session (seq {arrival.seq + 1})", f"seq {again.seq}")
    link.send(TaskReply(t.task_id, t.attempt, (ReturnValue(second, ReturnKind.INLINE, value=portable("second")),)))
    got2 = iut.get(second)
    ctx.check("GEN-040", got2.get("value") == "second", "the second echo answered: get returns 'second'", got2)
    ended = [type(a.body).__name__ for a in e.received((Hello, Goodbye))][hellos_before:]
    ctx.check("GEN-040", not ended, "the session not ended or opened again (no Goodbye, no new Hello)", ended)


@case(
    "handshake/HS-036-HS-025-repeated-hello-checked-session-kept",
    requirements=["HS-036", "HS-025", "SES-018", "HS-009", "GEN-004", "ID-011", "GEN-012"],
    summary=(
        "After a session is live and one task has run, the suite sends its Hello again three times, each "
        "breaking one rule of HS-025: without `core`, with protocolMajor 1, with a 64 KiB frame limit. Each is "
        "refused as HS-025 says (FEATURE_NOT_NEGOTIATED, PROTOCOL_VERSION, MALFORMED; sequence number 0), and "
        "a Hello with an empty address gets no answer at all. The live session is left exactly as it was: the "
        "next task runs under the next sequence number, the IUT's numbering continues, and a plain repeated "
        "Hello is answered with the Welcome of the values negotiated first. A last repeated Hello that does not "
        "decode (its address is not UTF-8, ID-011) is answered ProtocolError(MALFORMED), not ignored, as a "
        "sequenced message of the session with relatedSeq 0 (it is no Hello, GEN-012), and the session goes on."
    ),
)
def repeated_hello_checked_session_kept(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    first = link.welcome
    assert first is not None
    run_echo(ctx, peer, link, "one", requirement="HS-036")
    first_reply_seq = max(a.seq for a in peer.received(TaskReply))
    answers = (ProtocolError, Welcome)
    for what, fields, code in (
        ("without core", {"features": ("borrowing",)}, ErrorCode.FEATURE_NOT_NEGOTIATED),
        ("of major version 1", {"protocol_major": 1}, ErrorCode.PROTOCOL_VERSION),
        ("announcing 64 KiB frames", {"max_frame_bytes": 64 * 1024}, ErrorCode.MALFORMED),
    ):
        before = len(peer.received(answers))
        link.hello(**fields)
        ctx.wait_until(peer, lambda: len(peer.received(answers)) > before, requirement="HS-036",
                       what=f"an answer to the repeated Hello {what}")
        arrival = peer.received(answers)[before]
        ctx.require("HS-036", isinstance(arrival.body, ProtocolError), f"the repeated Hello {what} refused",
                    f"{type(arrival.body).__name__}: {arrival.body}")
        check_error_code(ctx, arrival.body, (code,), requirement="HS-036", note=f"the repeated Hello {what}")
        ctx.check("SES-018", arrival.seq == 0, "the refusal sent as an answer without a session (seq 0)",
                  f"seq {arrival.seq}", note=f"the repeated Hello {what}")
    before = len(peer.received(answers))
    link.hello(address="")
    run_echo(ctx, peer, link, "two", requirement="HS-036")
    iut.quiesce()
    late = [str(a.body) for a in peer.received(answers)[before:]]
    ctx.check("HS-036", not late, "the repeated Hello with an empty address discarded without an answer", late)
    second_reply = max(a.seq for a in peer.received(TaskReply))
    ctx.check("HS-036", second_reply == first_reply_seq + 1,
              f"the IUT's numbering of the live session continues (reply seq {first_reply_seq + 1})", f"seq {second_reply}")
    before = len(peer.received(Welcome))
    link.hello()
    ctx.wait_until(peer, lambda: len(peer.received(Welcome)) > before, requirement="HS-036",
                   what="a Welcome answering a plain repeated Hello")
    w0, w1 = first.body, peer.received(Welcome)[before].body
    ctx.check("HS-036", (w1.protocol_minor, set(w1.features), w1.max_frame_bytes, w1.heartbeat_interval_ms)
              == (w0.protocol_minor, set(w0.features), w0.max_frame_bytes, w0.heartbeat_interval_ms),
              f"the values negotiated when the session opened ({w0})", str(w1))
    run_echo(ctx, peer, link, "three", requirement="HS-036")
    before = len(peer.received(answers))
    link.hello(address=_BAD_ADDRESS, frames_hook=replace_bytes(_BAD_ADDRESS.encode(), _BAD_ADDRESS_BYTES))
    ctx.wait_until(peer, lambda: len(peer.received(answers)) > before, requirement="HS-036",
                   what="an answer to the repeated Hello that does not decode (its address is not UTF-8)")
    arrival = peer.received(answers)[before]
    ctx.require("HS-036", isinstance(arrival.body, ProtocolError), "the undecodable Hello answered ProtocolError",
                f"{type(arrival.body).__name__}: {arrival.body}")
    check_error_code(ctx, arrival.body, (ErrorCode.MALFORMED,), requirement="HS-036", note="the undecodable Hello")
    ctx.check("GEN-012", arrival.seq != 0 and arrival.body.related_seq == 0,
              "a sequenced message of the live session (seq > 0), relatedSeq 0: a frame that does not decode is "
              "no Hello (HS-036)", f"seq {arrival.seq}, relatedSeq {arrival.body.related_seq}")
    run_echo(ctx, peer, link, "four", requirement="HS-036")


#: A Hello address that the case makes invalid UTF-8 on the wire (ID-011: such a Hello does not decode).
_BAD_ADDRESS = "tcp://hs036.invalid:1"
_BAD_ADDRESS_BYTES = b"tcp://hs036\xffinvalid:1"
