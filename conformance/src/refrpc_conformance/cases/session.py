"""session.md: sequence numbers, duplicates, reordering, acks, retransmission, incarnations."""

from __future__ import annotations

import time
from typing import Any

from refrpc.core.messages import CancelTask, ErrorCode, ErrorInfo, Heartbeat, PeerDeadNotice, ProtocolError, SubmitTask, TaskReply

from .._build import by_value
from .._craft import add_frame
from .._case import case
from .._context import CaseContext
from ._common import (
    check_error_code,
    check_no_session_opened,
    expect_protocol_error,
    expect_reply,
    open_session,
    resync_after_bad_message,
    run_echo,
    task,
)


@case(
    "session/SES-002-duplicate-seq-discarded",
    requirements=["SES-002"],
    summary=(
        "The suite sends echo as sequenced message n, gets the reply, sends the very same message (same "
        "sequence number) again, then echo as n+1. The copy is discarded: the first task has exactly one "
        "reply, and n+1 runs."
    ),
)
def duplicate_seq(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    t1 = task(peer, "echo", [by_value("once")])
    seq = link.send(t1)
    expect_reply(ctx, peer, t1)
    link.resend(seq)
    run_echo(ctx, peer, link, "next")  # sent after the copy on the same connection: handled after it
    replies = peer.received(TaskReply, lambda m: m.task_id == t1.task_id)
    ctx.check("SES-002", len(replies) == 1, "exactly one TaskReply for the task whose message was duplicated",
              f"{len(replies)} TaskReplies (seqs {[a.seq for a in replies]})")


@case(
    "session/SES-002-SES-003-reordered-buffered",
    requirements=["SES-002", "SES-003"],
    summary=(
        "The suite sends sequenced message n+1 before n. The IUT buffers n+1 and does not acknowledge it while "
        "n is missing (its acks stay below n); once n arrives it delivers both, runs both tasks once, and its "
        "ack reaches n+1."
    ),
)
def reordered(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    run_echo(ctx, peer, link, "warm-up")
    a, b = link.next_seq(), link.next_seq()
    t_a = task(peer, "echo", [by_value("a")])
    t_b = task(peer, "echo", [by_value("b")])
    link.send(t_b, seq=b)
    # Let the IUT see b: wait for two of its heartbeats sent after b went out.
    beats_before = len(peer.received(Heartbeat))
    ctx.wait_until(peer, lambda: len(peer.received(Heartbeat)) >= beats_before + 2, requirement="LIV-001",
                   what="two heartbeats from the IUT after message n+1 was sent", timeout=10.0)
    early = [x for x in link.acks_seen if x >= a]
    ctx.check("SES-003", not early, f"acks below {a} while message {a} is missing", f"acks seen: {sorted(set(link.acks_seen))[-5:]}")
    ctx.check("SES-002", not peer.received(TaskReply, lambda m: m.task_id == t_b.task_id),
              "message n+1 not delivered before n", "no reply yet" if not peer.received(TaskReply, lambda m: m.task_id == t_b.task_id) else "already answered")
    link.send(t_a, seq=a)
    expect_reply(ctx, peer, t_a, requirement="SES-002")
    expect_reply(ctx, peer, t_b, requirement="SES-002")
    ctx.wait_until(peer, lambda: link.acked >= b, requirement="SES-003", what=f"an ack of {b}")
    for t in (t_a, t_b):
        n = len(peer.received(TaskReply, lambda m, t=t: m.task_id == t.task_id))
        ctx.check("SES-002", n == 1, f"one reply for {t.task_id}", n)


@case(
    "session/SES-003-SES-008-acks-carried",
    requirements=["SES-003", "SES-008"],
    summary=(
        "The suite sends three sequenced messages that need no answer (CancelTask for unknown tasks, which "
        "are ignored, TASK-013). The IUT's acks reach 3, never exceed what was sent, and never go backwards."
    ),
)
def acks_carried(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    for i in range(3):
        link.send(CancelTask(f"{ctx.new_id(peer)}-unknown"))
    ctx.wait_until(peer, lambda: link.acked >= 3, requirement="SES-003", what="an envelope acknowledging message 3")
    ctx.check("SES-003", not link.out.bogus_acks, "no ack above the highest sequence number sent", link.out.bogus_acks)
    ctx.check("SES-003", not link.out.regressions, "acks never decrease", link.out.regressions)


@case(
    "session/SES-003-SES-011-retransmit-unacked",
    requirements=["SES-003", "SES-011"],
    summary=(
        "The suite withholds its acks, submits echo and waits: the IUT must retransmit its TaskReply with the "
        "same sequence number and an identical body until acknowledged."
    ),
)
def retransmit_unacked(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.hold_acks()
    t = task(peer, "echo", [by_value("again")])
    link.send(t)
    reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="TASK-005", what="the TaskReply")
    ctx.wait_until(peer, lambda: sum(1 for s, _ in link.seq_arrivals if s == reply.seq) >= 2, requirement="SES-003",
                   what=f"a retransmission of seq {reply.seq} (no ack was sent)", timeout=10.0)
    copies = [r.envelope for r in ctx.trace if r.direction == "in" and r.envelope is not None and r.seq == reply.seq and r.remote == iut.peer_id]
    ctx.check("SES-011", all(c.body == reply.body for c in copies), "every copy with an identical body",
              f"{len(copies)} copies, {len({repr(c.body) for c in copies})} distinct bodies")
    link.release_acks()


@case(
    "session/SES-008-ack-above-sent-ignored",
    requirements=["SES-008", "SES-003"],
    summary=(
        "The suite withholds its acks and sends a Heartbeat whose ack is 1000 above anything the IUT sent. "
        "The IUT must ignore that ack: the TaskReply it sends next is still retransmitted until really "
        "acknowledged."
    ),
)
def ack_above_sent(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.hold_acks()
    link.send(Heartbeat(), ack=link.delivered + 1000)
    t = task(peer, "echo", [by_value("x")])
    link.send(t)
    reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="TASK-005", what="the TaskReply")
    ctx.wait_until(peer, lambda: sum(1 for s, _ in link.seq_arrivals if s == reply.seq) >= 2, requirement="SES-008",
                   what=f"a retransmission of seq {reply.seq}: the bogus ack must not have covered it", timeout=10.0)
    link.release_acks()
    run_echo(ctx, peer, link, "still working", requirement="SES-008")


@case(
    "session/SES-006-wrong-receiver-incarnation",
    requirements=["SES-006", "SES-016"],
    summary=(
        "In a live session the suite sends a task addressed to another incarnation of the IUT. The IUT "
        "discards it and answers ProtocolError(DECLARED_DEAD) with sequence number 0 naming SES-006; the "
        "message's sequence number is not consumed (the check comes before sequencing), so a correct task "
        "with the same number then runs."
    ),
)
def wrong_receiver_incarnation(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    wrong = task(peer, "echo", [by_value("to a dead incarnation")])
    seq = link.next_seq()
    link.send(wrong, seq=seq, receiver_incarnation=iut.incarnation ^ 0x5A5A)
    arrival = ctx.expect(peer, ProtocolError, requirement="SES-006", what="ProtocolError(DECLARED_DEAD)")
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, (ErrorCode.DECLARED_DEAD,), requirement="SES-006")
    ctx.check("SES-006", arrival.seq == 0, "sequence number 0", arrival.seq)
    ctx.check("SES-006", err.error.requirement == "SES-006", "error.requirement = 'SES-006'", repr(err.error.requirement))
    right = task(peer, "echo", [by_value("to the live incarnation")])
    link.send(right, seq=seq)
    expect_reply(ctx, peer, right, requirement="SES-016")
    ctx.check("SES-006", not peer.received(TaskReply, lambda m: m.task_id == wrong.task_id),
              "the misaddressed task never runs", "no reply")


@case(
    "session/SES-014-GEN-010-zero-receiver-incarnation",
    requirements=["SES-014", "GEN-004", "GEN-010", "GEN-012"],
    summary=(
        "In a live session the suite sends a task with receiverIncarnation 0 (legal only in a Hello). It is "
        "malformed and rejected before sequencing (SES-016's second check): the IUT answers "
        "ProtocolError(MALFORMED) with sequence number 0, relatedSeq = the task's sequence number and "
        "requirement SES-014, does not run the task, and does not consume the number, so a task sent next "
        "under the same number runs."
    ),
)
def zero_receiver_incarnation(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    bad = task(peer, "echo", [by_value("malformed")])
    seq = link.send(bad, receiver_incarnation=0)
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="SES-014",
                         what=f"ProtocolError about seq {seq}")
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, (ErrorCode.MALFORMED,), requirement="SES-014")
    ctx.check("SES-014", err.error.requirement == "SES-014", "error.requirement 'SES-014'", repr(err.error.requirement))
    ctx.check("GEN-012", arrival.seq == 0, "the answer sent with sequence number 0 (rejected before sequencing)",
              f"seq {arrival.seq}")
    consumed = resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-004")
    ctx.check("SES-014", not consumed, f"seq {seq} not consumed: a task sent next under that number runs",
              "consumed: the next task with that number was taken for a duplicate")
    ctx.check("SES-014", not peer.received(TaskReply, lambda m: m.task_id == bad.task_id), "the malformed task never runs", "no reply")


@case(
    "session/SES-010-sequenced-before-hello-discarded",
    requirements=["SES-010", "HS-001"],
    summary=(
        "A suite peer with no session sends a sequenced task (seq 1). The IUT discards it (it may answer "
        "WRONG_STATE); after a handshake, a task sent as seq 1 runs and the first one never does."
    ),
)
def sequenced_before_hello(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    link = peer.connect(iut.peer_id, iut.address, iut.incarnation)
    check_no_session_opened(ctx, iut, peer, link, requirement="SES-010")
    for arrival in peer.received(ProtocolError):
        check_error_code(ctx, arrival.body, (ErrorCode.WRONG_STATE,), requirement="SES-010", note="the optional answer")


@case(
    "session/GEN-016-heartbeat-with-a-sequence-number",
    requirements=["GEN-016", "GEN-005", "GEN-012"],
    summary=(
        "In a live session the suite sends a Heartbeat with the next sequence number (a Heartbeat travels "
        "outside the session, SES-007). It is a sequenced message of the session: the IUT answers "
        "ProtocolError(WRONG_STATE) as a sequenced message with relatedSeq = its number, and consumes the "
        "number, so a task sent under the same number is a duplicate and one sent under the next runs."
    ),
)
def heartbeat_with_a_sequence_number(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    run_echo(ctx, peer, link, "before")
    seq = link.next_seq()
    link.send(Heartbeat(), seq=seq)
    arrival = ctx.expect(peer, ProtocolError, lambda m: m.related_seq == seq, requirement="GEN-016",
                         what=f"ProtocolError about the Heartbeat sent as seq {seq}")
    err: ProtocolError = arrival.body
    check_error_code(ctx, err, (ErrorCode.WRONG_STATE,), requirement="GEN-016")
    ctx.check("GEN-012", arrival.seq > 0, "the answer sent as a sequenced message (it answers a message of the session)",
              f"seq {arrival.seq}")
    consumed = resync_after_bad_message(ctx, iut, peer, link, seq, requirement="GEN-016")
    ctx.check("GEN-016", consumed, f"seq {seq} consumed by the Heartbeat: a task sent next under that number is a duplicate",
              "not consumed: the task sent next under that number ran")


@case(
    "session/GEN-019-refused-message-answered-once-in-turn",
    requirements=["GEN-019", "GEN-010", "SES-002"],
    summary=(
        "A malformed task with a readable envelope (one frame no payload references) is sent as sequenced "
        "message n and answered ProtocolError(MALFORMED) about n; the very same message sent again under n "
        "gets no second answer. Another one is then sent early, as n+2 while n+1 is missing: it is not "
        "answered (two IUT heartbeats later) until n+1 arrives, and then once, by a ProtocolError whose ack "
        "covers n+2. Both numbers are consumed and the session goes on."
    ),
)
def refused_message_answered_once_in_turn(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)

    def answers(seq: int) -> list:
        return peer.received(ProtocolError, lambda m: m.related_seq == seq)

    first = task(peer, "echo", [by_value(b"\x07" * 100)])
    n = link.send(first, frames_hook=add_frame())
    expect_protocol_error(ctx, peer, requirement="GEN-010", what=f"ProtocolError(MALFORMED) about seq {n}", related_seq=n)
    link.send(first, seq=n, frames_hook=add_frame())  # a retransmission whose ack was lost
    run_echo(ctx, peer, link, "after the copy")  # sent after the copy on the same connection: handled after it
    ctx.check("GEN-019", len(answers(n)) == 1, f"one ProtocolError about seq {n} (its copy is a duplicate, unanswered)",
              f"{len(answers(n))} ProtocolErrors about seq {n}")

    gap, early = link.next_seq(), link.next_seq()
    link.send(task(peer, "echo", [by_value(b"\x08" * 100)]), seq=early, frames_hook=add_frame())
    beats_before = len(peer.received(Heartbeat))
    ctx.wait_until(peer, lambda: len(peer.received(Heartbeat)) >= beats_before + 2, requirement="LIV-001",
                   what=f"two heartbeats from the IUT after message {early} was sent", timeout=10.0)
    ctx.check("GEN-019", not answers(early), f"no answer to seq {early} while seq {gap} is missing",
              f"answered early (ack {[a.envelope.ack for a in answers(early)]})")
    t_gap = task(peer, "echo", [by_value("fills the gap")])
    link.send(t_gap, seq=gap)
    expect_reply(ctx, peer, t_gap, requirement="SES-002")
    expect_protocol_error(ctx, peer, requirement="GEN-019", what=f"ProtocolError about seq {early} once {gap} arrived",
                          related_seq=early)
    acks = [a.envelope.ack for a in answers(early)]
    ctx.check("GEN-019", all(ack >= early for ack in acks), f"the answer about seq {early} made in turn (its ack covers {early})",
              f"acks {acks}")
    run_echo(ctx, peer, link, "after the early one")  # seq early + 1: the early number was consumed
    ctx.check("GEN-019", len(answers(early)) == 1, f"one ProtocolError about seq {early}", f"{len(answers(early))}")


@case(
    "session/ZMQ-015-second-dealer-with-the-same-routing-id",
    requirements=["ZMQ-015", "ZMQ-004", "ZMQ-013"],
    summary=(
        "With a session open, the suite connects a second DEALER to the IUT's ROUTER presenting the same routing "
        "id as the first (as a peer does whose old DEALER is still closing, or that answers through another "
        "DEALER) and sends the session's next task through it. The IUT's ROUTER hands the routing id over "
        "(ZMQ_ROUTER_HANDOVER) instead of refusing the connection, so the task runs and is answered."
    ),
)
def second_dealer_with_the_same_routing_id(ctx: CaseContext) -> None:
    from refrpc.codec import encode
    from refrpc.core.messages import Envelope

    iut, peer, link = open_session(ctx)
    run_echo(ctx, peer, link, "through the first DEALER")
    dealer = peer.new_dealer(iut.address)  # the same routing id as the link's DEALER
    try:
        t = task(peer, "echo", [by_value("through the second DEALER")])
        seq = link.next_seq()
        env = Envelope(peer.peer_id, peer.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, t)
        dealer.send_multipart(encode(env), copy=True)  # queued until connected (no ZMQ_IMMEDIATE here)
        reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="ZMQ-015",
                           what="the TaskReply for the task sent through a second DEALER with the same routing id")
        ctx.check("ZMQ-015", reply.body.task_id == t.task_id, "the task sent on the second connection ran", "it ran")
    finally:
        dealer.close(linger=0)


@case(
    "session/SES-038-ERR-003-unsequenced-error-ends-the-request",
    requirements=["SES-038", "ERR-003", "SES-018"],
    summary=(
        "The IUT submits echo to suite executor E. Two ProtocolErrors with sequence number 0 name the "
        "SubmitTask's sequence number: first one from another incarnation of E, with which the IUT has no "
        "session (an answer without a session: its relatedSeq names nothing), FEATURE_NOT_NEGOTIATED; then one "
        "from E's own incarnation, MALFORMED. The second is an answer on the session, classified by its "
        "sender and not by its sequence number: the task fails with its code, and get answers MALFORMED, "
        "never FEATURE_NOT_NEGOTIATED."
    ),
)
def unsequenced_error_ends_the_request(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    ret = iut.submit("echo", [{"value": "refused"}], executor=e.peer_id)["returns"][0]
    arrival = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (ret,), requirement="TASK-001",
                         what="the IUT's SubmitTask of echo")
    link = e.link(iut.peer_id)
    stranger = ProtocolError(ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, "from an incarnation without a session", "HS-004"),
                             related_seq=arrival.seq)
    link.send(stranger, seq=0, sender_incarnation=e.incarnation ^ 0x5A5A)
    link.send(ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "refused by the conformance suite", "GEN-004"),
                            related_seq=arrival.seq), seq=0)
    got = iut.get(ret, timeout_ms=5_000)
    ctx.check("SES-038", got.get("error", {}).get("code") == "MALFORMED",
              "get answers MALFORMED: the error with sequence number 0 from the live session ended the task "
              "(and the one from another incarnation named nothing)", got)


@case(
    "session/SES-039-wrong-state-answer-is-no-death",
    requirements=["SES-039", "SES-018", "SES-010", "LIV-004"],
    summary=(
        "In a live session suite peer S sends ProtocolError(WRONG_STATE) with sequence number 0 and relatedSeq 0, "
        "the answer a peer that forgot the session (or a healthy initiator whose Welcome was lost) may send. The "
        "IUT must take it as information only: S's next task runs (S not declared dead nor fenced), and suite "
        "peer W, in session with the IUT too, is told of no death (no PeerDeadNotice before the reply to its own "
        "task)."
    ),
)
def wrong_state_answer_is_no_death(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    watcher = ctx.wire_peer("watcher")
    link_w = ctx.session(watcher, iut)
    link.send(ProtocolError(ErrorInfo(ErrorCode.WRONG_STATE, "no session with that incarnation", "SES-010")), seq=0)
    run_echo(ctx, peer, link, "still-alive", requirement="SES-039")
    run_echo(ctx, watcher, link_w, "watching", requirement="TASK-005")
    dead = [a.body for a in peer.received(ProtocolError) if a.body.error.code is ErrorCode.DECLARED_DEAD]
    ctx.check("SES-039", not dead, "S never answered DECLARED_DEAD (not fenced)", [str(d) for d in dead])
    notices = watcher.received(PeerDeadNotice, lambda m: m.peer == peer.peer_id)
    ctx.check("SES-039", not notices, "no PeerDeadNotice about S", [str(n.body) for n in notices])


def _copies_of(ctx: CaseContext, peer_id: str, iut_id: str, seq: int, after: float = -1.0) -> list:
    """The sequenced envelopes numbered ``seq`` that the IUT sent ``peer_id`` (copies included)."""
    return [r for r in ctx.trace if r.direction == "in" and r.local == peer_id and r.remote == iut_id
            and r.envelope is not None and r.seq == seq and r.t > after]


@case(
    "session/SES-001-numbered-from-1-without-gaps",
    requirements=["SES-001", "SES-011"],
    summary=(
        "The suite sends five echo tasks on a new session and acknowledges what arrives. The IUT's sequenced "
        "messages on the session (its five TaskReplies) must carry the numbers 1, 2, 3, 4, 5: from 1, without "
        "a gap and without reuse (every copy of a number carries the same body)."
    ),
)
def numbered_from_1_without_gaps(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    tasks = [task(peer, "echo", [by_value(f"number {i}")]) for i in range(5)]
    for t in tasks:
        link.send(t)

    def numbers() -> list[int]:
        return sorted({s for s, _ in link.seq_arrivals})

    ctx.wait_until(peer, lambda: len(numbers()) >= len(tasks), requirement="SES-001",
                   what=f"{len(tasks)} distinct sequence numbers from the IUT (one TaskReply per task)")
    got = numbers()
    ctx.check("SES-001", got[:len(tasks)] == list(range(1, len(tasks) + 1)),
              f"sequence numbers 1..{len(tasks)}, without a gap", got)
    for seq in got:
        bodies = {repr(r.envelope.body) for r in _copies_of(ctx, peer.peer_id, iut.peer_id, seq)}
        ctx.check("SES-001", len(bodies) == 1, f"seq {seq} used for one message only (no reuse)",
                  f"{len(bodies)} distinct bodies under seq {seq}")
    for t in tasks:
        expect_reply(ctx, peer, t, requirement="SES-001")


@case(
    "session/SES-019-answer-without-a-session-acknowledges-nothing",
    requirements=["SES-019", "SES-008", "SES-003"],
    summary=(
        "The suite withholds its acks, submits echo, and sees the IUT retransmit its TaskReply. A "
        "ProtocolError(WRONG_STATE) with sequence number 0 then arrives from another incarnation of the "
        "suite's PeerId, with which the IUT has no session, carrying an ack that covers the reply. It is an "
        "answer without a session and acknowledges nothing: the IUT keeps retransmitting the reply (two more "
        "copies) until the session's own ack covers it."
    ),
)
def answer_without_a_session_acknowledges_nothing(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.hold_acks()
    t = task(peer, "echo", [by_value("unacknowledged")])
    link.send(t)
    reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="TASK-005", what="the TaskReply")
    ctx.wait_until(peer, lambda: sum(1 for s, _ in link.seq_arrivals if s == reply.seq) >= 2, requirement="SES-003",
                   what=f"a retransmission of seq {reply.seq} (no ack was sent)", timeout=10.0)
    stranger = ProtocolError(ErrorInfo(ErrorCode.WRONG_STATE, "no session with that incarnation", "SES-010"))
    link.send(stranger, seq=0, ack=reply.seq, sender_incarnation=peer.incarnation ^ 0x5A5A)
    before = sum(1 for s, _ in link.seq_arrivals if s == reply.seq)
    ctx.wait_until(peer, lambda: sum(1 for s, _ in link.seq_arrivals if s == reply.seq) >= before + 2, requirement="SES-019",
                   what=f"two more copies of seq {reply.seq}: the ack of an answer without a session covers nothing",
                   timeout=15.0)
    link.release_acks()
    run_echo(ctx, peer, link, "after the stranger", requirement="SES-019")


def _reply_never_acknowledged(ctx: CaseContext) -> tuple[Any, Any, Any, Any, Any, Any]:
    """P (acks held) submits echo and sees its TaskReply retransmitted; W is a second
    peer in session with the IUT. Returns (iut, P, P's link, W, W's link, the reply)."""
    iut, peer, link = open_session(ctx)
    watcher = ctx.wire_peer("watcher")
    link_w = ctx.session(watcher, iut)
    link.hold_acks()
    t = task(peer, "echo", [by_value("never acknowledged")])
    link.send(t)
    reply = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="TASK-005", what="the TaskReply")
    ctx.wait_until(peer, lambda: sum(1 for s, _ in link.seq_arrivals if s == reply.seq) >= 2, requirement="SES-003",
                   what=f"a retransmission of seq {reply.seq} (no ack was sent)", timeout=10.0)
    return iut, peer, link, watcher, link_w, reply


@case(
    "session/SES-013-nothing-resent-to-a-fenced-incarnation",
    requirements=["SES-013", "SES-005", "LIV-004"],
    summary=(
        "Suite peer P withholds its acks and submits echo; the IUT retransmits the TaskReply. Suite peer W "
        "then tells the IUT that P's incarnation is dead (PeerDeadNotice). Fencing P, the IUT must drop every "
        "message it has not had acknowledged by P: after the notice is acknowledged and one more IUT heartbeat "
        "has reached W, no copy of the reply reaches P during four more of W's heartbeats from the IUT."
    ),
    timeout=60.0,
)
def nothing_resent_to_a_fenced_incarnation(ctx: CaseContext) -> None:
    iut, peer, link, watcher, link_w, reply = _reply_never_acknowledged(ctx)
    nseq = link_w.send(PeerDeadNotice(peer.peer_id, peer.incarnation, "declared dead by the conformance suite"))
    ctx.wait_until(watcher, lambda: link_w.acked >= nseq, requirement="SES-003", what="the IUT's ack of the PeerDeadNotice")

    def beats() -> int:
        return len(watcher.received(Heartbeat))

    start = beats()
    ctx.wait_until(watcher, lambda: beats() >= start + 1, requirement="LIV-001", what="a heartbeat from the IUT to W")
    fenced_at = ctx.clock.now()
    ctx.wait_until(watcher, lambda: beats() >= start + 5, requirement="LIV-001",
                   what="four more heartbeats from the IUT to W", timeout=30.0)
    late = _copies_of(ctx, peer.peer_id, iut.peer_id, reply.seq, after=fenced_at)
    ctx.check("SES-013", not late, f"no copy of seq {reply.seq} sent to P's fenced incarnation",
              f"{len(late)} copies after the fence, at {[round(r.t - fenced_at, 2) for r in late]} s")
    peer.go_silent()


@case(
    "session/SES-012-stalled-session-is-a-death",
    requirements=["SES-012", "LIV-003", "LIV-004"],
    summary=(
        "Suite peer P keeps its heartbeats going but never acknowledges the IUT's TaskReply (its acks are "
        "frozen), so the IUT's oldest unacknowledged message stays unacknowledged although retransmitted. After "
        "the stall limit (10 s by default) the IUT must declare P dead as for silence: suite peer W, in session "
        "with the IUT, gets a PeerDeadNotice about P (within 40 s), and P's next task is never run."
    ),
    timeout=90.0,
)
def stalled_session_is_a_death(ctx: CaseContext) -> None:
    iut, peer, link, watcher, link_w, reply = _reply_never_acknowledged(ctx)
    ctx.expect(watcher, PeerDeadNotice, lambda m: m.peer == peer.peer_id and m.incarnation == peer.incarnation,
               requirement="SES-012", what=f"a PeerDeadNotice about {peer.peer_id}, whose session stalled", timeout=40.0)
    late = task(peer, "echo", [by_value("after the stall")])
    link.send(late)
    run_echo(ctx, watcher, link_w, "the watcher is still served", requirement="SES-012")
    ctx.check("SES-012", not peer.received(TaskReply, lambda m: m.task_id == late.task_id),
              "the stalled peer's next task never runs (it is fenced)", "it ran")
    peer.go_silent()


#: How long the fenced incarnation of the SES-017 case keeps greeting, and how often.
FENCED_HELLO_S = 2.5
FENCED_HELLO_EVERY_S = 0.1
#: Answers sent a second apart arrive at least this far apart (room for delays on the way).
ANSWER_GAP_FLOOR_S = 0.5


@case(
    "session/SES-017-declared-dead-at-most-once-a-second",
    requirements=["SES-017", "SES-005", "SES-018"],
    summary=(
        "Suite peer W tells the IUT that suite peer A's incarnation is dead (PeerDeadNotice). A, fenced, then "
        "greets the IUT afresh every 100 ms for 2.5 s (each Hello resent every 200 ms until answered, as a "
        "peer that does not know it was declared dead does). The IUT should answer A's incarnation with "
        "ProtocolError(DECLARED_DEAD), sequence number 0, but at most once a second: at least one answer "
        "arrives, and no two arrive under half a second apart (room for delays on the way; a recommendation, "
        "SES-017)."
    ),
    timeout=60.0,
)
def declared_dead_at_most_once_a_second(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    old = ctx.wire_peer("suite")
    link = ctx.session(old, iut)
    watcher = ctx.wire_peer("watcher")
    link_w = ctx.session(watcher, iut)
    run_echo(ctx, old, link, "before the fence")
    old.heartbeats = False  # from now on A speaks only when the case makes it
    nseq = link_w.send(PeerDeadNotice(old.peer_id, old.incarnation, "declared dead by the conformance suite"))
    ctx.wait_until(watcher, lambda: link_w.acked >= nseq, requirement="SES-003", what="the IUT's ack of the PeerDeadNotice")
    start = old.clock.now()
    hellos = 0
    while old.clock.now() - start < FENCED_HELLO_S:
        link.reset_session()
        link.hello()
        hellos += 1
        time.sleep(FENCED_HELLO_EVERY_S)  # the stimulus: a fenced peer greeting several times a second
    link.reset_session()  # no more resends
    old.go_silent()
    end = old.clock.now()
    answers = [a for a in old.inbox if isinstance(a.body, ProtocolError) and a.body.error.code is ErrorCode.DECLARED_DEAD
               and a.envelope.receiver_incarnation == old.incarnation and start <= a.t]
    times = [round(a.t - start, 2) for a in answers]
    ctx.note(f"{hellos} Hellos sent over {end - start:.2f} s; DECLARED_DEAD answers at {times} s")
    ctx.check("SES-017", bool(answers), "the fenced incarnation's Hellos answered ProtocolError(DECLARED_DEAD)",
              "no answer")
    ctx.check("SES-018", all(a.seq == 0 for a in answers), "every answer with sequence number 0",
              [a.seq for a in answers])
    # A second apart when sent; the suite allows half of it for delays on the way (a
    # peer without the limit answers every Hello, 100 ms apart or less).
    gaps = [b.t - a.t for a, b in zip(answers, answers[1:])]
    ctx.check("SES-017", all(g >= ANSWER_GAP_FLOOR_S for g in gaps),
              f"at most one answer a second to that incarnation (no two arriving under {ANSWER_GAP_FLOOR_S} s apart)",
              f"{len(answers)} answers, gaps {[round(g, 2) for g in gaps]} s")
