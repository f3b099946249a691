"""session.md §3-§6 and tasks-and-rpc.md §7: heartbeats, death declarations, fate-sharing.

These cases start the IUT with short timings (CNF-012: 100 ms heartbeats, 4
misses) and announce 100 ms heartbeats from the suite's peers, so a silent peer
is declared dead after about 0.4 s; their bounds are tens of seconds.
"""

from __future__ import annotations

from typing import Any

from refrpc.core.messages import (
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    Goodbye,
    Heartbeat,
    Hello,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    ProtocolError,
    RefDescriptor,
    ReturnKind,
    SubmitTask,
    TaskReply,
    Welcome,
)

from .._build import by_ref, by_value, describe_return, make_bytes_value, portable
from .._case import case
from .._context import IUT, CaseContext
from .._wire import ExpectTimeout, WireError, WirePeer
from ._common import FAST_DETECTION, check_inline, expect_reply, open_session, run_echo, task

FAST_PEER = {"heartbeat_ms": 100}


@case(
    "liveness/LIV-001-CNF-012-heartbeats-when-idle",
    requirements=["LIV-001", "CNF-012", "SES-007"],
    iut_env=FAST_DETECTION,
    summary=(
        "The IUT is started with REFRPC_IUT_HEARTBEAT_MS=100. Its Welcome announces 100 ms, and on an idle "
        "session it keeps sending Heartbeats (sequence number 0)."
    ),
)
def heartbeats_when_idle(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer(**FAST_PEER)
    link = ctx.session(peer, iut)
    assert link.welcome is not None
    w: Welcome = link.welcome.body
    ctx.check("CNF-012", w.heartbeat_interval_ms == 100, "heartbeatIntervalMs 100 (from REFRPC_IUT_HEARTBEAT_MS)", w.heartbeat_interval_ms)
    ctx.wait_until(peer, lambda: len(peer.received(Heartbeat)) >= 5, requirement="LIV-001",
                   what="five Heartbeats on an idle session", timeout=10.0)
    beats = peer.received(Heartbeat)
    ctx.check("SES-007", all(a.seq == 0 for a in beats), "every Heartbeat with sequence number 0", sorted({a.seq for a in beats}))


@case(
    "liveness/LIV-003-LIV-004-FATE-003-silent-submitter",
    requirements=["LIV-003", "LIV-004", "FATE-003", "SES-017", "SES-018", "SES-020"],
    iut_env=FAST_DETECTION,
    summary=(
        "Suite peer A submits sleep(3000) and then goes silent; suite peer B keeps its session alive. The IUT "
        "must declare A dead (B receives PeerDeadNotice for A's incarnation), stop A's task and never send "
        "its reply. When A speaks again it should be told DECLARED_DEAD."
    ),
    timeout=90.0,
)
def silent_submitter(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    a = ctx.wire_peer("suite-a", **FAST_PEER)
    b = ctx.wire_peer("suite-b", **FAST_PEER)
    link_a = ctx.session(a, iut)
    ctx.session(b, iut)
    t = task(a, "sleep", [by_value(3000)])
    seq = link_a.send(t)
    ctx.wait_until(a, lambda: link_a.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    a.go_silent()
    notice = ctx.expect(b, PeerDeadNotice, lambda m: m.peer == a.peer_id, requirement="LIV-004",
                        what=f"PeerDeadNotice for the silent peer {a.peer_id}", timeout=20.0)
    ctx.check("LIV-004", notice.body.incarnation == a.incarnation, f"incarnation {a.incarnation}", notice.body.incarnation)
    ctx.check("LIV-003", True, "the silent peer declared dead", f"after {notice.t:.2f} s into the case")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    replies = a.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("FATE-003", not replies, "no TaskReply for the dead submitter's task", [str(r.body) for r in replies])
    a.resume()
    a.link(iut.peer_id).send(Heartbeat())
    try:
        arrival = a.expect(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD, timeout=ctx.bound(5.0))
        ctx.check("SES-017", arrival.body.error.requirement == "LIV-005", "error.requirement = 'LIV-005'", repr(arrival.body.error.requirement))
        env = arrival.envelope
        ctx.check("SES-018", (env.seq, env.ack, env.receiver_incarnation, arrival.body.related_seq) == (0, 0, a.incarnation, 0),
                  f"an answer without a session: seq 0, ack 0, receiverIncarnation {a.incarnation}, relatedSeq 0",
                  f"seq {env.seq}, ack {env.ack}, receiverIncarnation {env.receiver_incarnation}, relatedSeq {arrival.body.related_seq}")
    except ExpectTimeout as exc:
        ctx.check("SES-017", False, "ProtocolError(DECLARED_DEAD) answering the fenced peer", str(exc))


@case(
    "liveness/LIV-040-silent-handshake-not-announced",
    requirements=["LIV-040", "SEC-021", "SES-017"],
    iut_env=FAST_DETECTION,
    summary=(
        "Suite peer B keeps a live session with the IUT. Suite peer F greets the IUT (100 ms heartbeats "
        "announced) and then sends nothing at all: a handshake in progress. Once twenty of B's heartbeat "
        "intervals have passed (five times the detection timeout), F sends a Heartbeat, which should be "
        "answered DECLARED_DEAD (F was declared dead and fenced). B must never receive a PeerDeadNotice "
        "about F: a session that carried only a Hello concerns nobody else (checked after an echo on B, "
        "which any notice sent earlier would precede)."
    ),
    timeout=60.0,
)
def silent_handshake_not_announced(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("suite-b", **FAST_PEER)
    link_b = ctx.session(b, iut)
    f = ctx.wire_peer("greeter", **FAST_PEER)
    f.heartbeats = f.acks = False  # nothing but the Hello: a handshake in progress (SEC-021)
    link_f = f.connect(iut.peer_id, iut.address, iut.incarnation)
    try:
        link_f.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("SEC-021", "Welcome for F's Hello", str(exc))
    beats = len(b.received(Heartbeat))
    ctx.wait_until(b, lambda: len(b.received(Heartbeat)) >= beats + 20, requirement="LIV-001",
                   what="twenty more Heartbeats on B's session (F's detection timeout passes meanwhile)", timeout=20.0)
    f.link(iut.peer_id).send(Heartbeat())
    try:
        arrival = f.expect(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD, timeout=ctx.bound(5.0))
        ctx.check("SES-017", arrival.body.error.requirement == "LIV-005", "error.requirement = 'LIV-005'",
                  repr(arrival.body.error.requirement))
    except ExpectTimeout as exc:
        ctx.check("SES-017", False, "ProtocolError(DECLARED_DEAD) answering the silent greeter", str(exc))
    run_echo(ctx, b, link_b, "after F's death", requirement="TASK-005")
    notices = b.received(PeerDeadNotice, lambda m: m.peer == f.peer_id)
    ctx.check("LIV-040", not notices, f"no PeerDeadNotice about the silent greeter {f.peer_id}",
              [str(n.body) for n in notices])


@case(
    "liveness/FATE-001-TASK-009-owner-dies-during-resolution",
    requirements=["FATE-001", "TASK-009", "LIV-004", "REF-006"],
    iut_env=FAST_DETECTION,
    summary=(
        "Suite peer A owns X; suite peer B submits sum_bytes(X by ref). The IUT opens a session with A and "
        "asks for X; A goes silent instead of answering. The IUT must declare A dead, tell B "
        "(PeerDeadNotice), and fail B's task with OWNER_DIED."
    ),
    timeout=90.0,
)
def owner_dies_during_resolution(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    a = ctx.wire_peer("owner", **FAST_PEER)
    b = ctx.wire_peer("submitter", **FAST_PEER)
    link_b = ctx.session(b, iut)
    x = ctx.new_id(a)
    t = task(b, "sum_bytes", [by_ref(ctx.descriptor(a, x))])
    link_b.send(t)
    ctx.expect(a, GetObjectStatus, lambda m: m.object_id == x, requirement="REF-006",
               what="GetObjectStatus at the owner (after the IUT's Hello to it)", timeout=15.0)
    a.go_silent()
    reply = expect_reply(ctx, b, t, requirement="TASK-009", timeout=20.0)
    ret = reply.returns[0]
    ctx.check("TASK-009", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.OWNER_DIED,
              "ERROR(OWNER_DIED)", describe_return(ret))
    ctx.expect(b, PeerDeadNotice, lambda m: m.peer == a.peer_id and m.incarnation == a.incarnation, requirement="LIV-004",
               what=f"PeerDeadNotice for the silent owner {a.peer_id}", timeout=20.0)


@case(
    "liveness/LIV-006-FATE-003-goodbye-ends-submitter",
    requirements=["LIV-006", "LIV-016", "FATE-003", "SES-005", "SES-017"],
    iut_env=FAST_DETECTION,
    summary=(
        "A suite peer submits sleep(3000) and then sends Goodbye. The IUT should acknowledge the Goodbye "
        "(a Heartbeat whose ack covers it) and must fence the peer at once: the task is stopped and never "
        "answered, and a message sent afterwards is discarded (it should be answered DECLARED_DEAD)."
    ),
    timeout=60.0,
)
def goodbye(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer(**FAST_PEER)
    link = ctx.session(peer, iut)
    t = task(peer, "sleep", [by_value(3000)])
    link.send(t)
    gseq = link.send(Goodbye("conformance case ends this peer"))
    try:
        peer.wait_until(lambda: link.acked >= gseq, ctx.bound(5.0), "the ack of the Goodbye")
        acked = True
    except ExpectTimeout:
        acked = False
    ctx.check("LIV-016", acked, f"the Goodbye (seq {gseq}) acknowledged before the fence", f"acked up to {link.acked}",
              level="SHOULD")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    replies = peer.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("FATE-003", not replies, "no TaskReply for the task of the peer that left", [str(r.body) for r in replies])
    late = task(peer, "echo", [by_value("after goodbye")])
    link.send(late)
    try:
        peer.expect(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD, timeout=ctx.bound(5.0))
        ctx.check("SES-005", not peer.received(TaskReply, lambda m: m.task_id == late.task_id),
                  "the message sent after Goodbye discarded", "no reply")
        ctx.check("SES-017", True, "ProtocolError(DECLARED_DEAD) answering the fenced peer", "received")
    except ExpectTimeout as exc:
        ctx.check("SES-017", False, "ProtocolError(DECLARED_DEAD) answering the fenced peer", str(exc))


@case(
    "liveness/LIV-006-LIV-010-shutdown-says-goodbye",
    requirements=["LIV-006", "LIV-010", "CNF-008"],
    summary=(
        "With a live session that has carried a task, the suite asks the IUT to shut down. It answers null, "
        "should send Goodbye on the session as its last sequenced message, and exits with status 0."
    ),
)
def shutdown_says_goodbye(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    link = ctx.session(peer, iut)
    run_echo(ctx, peer, link, "a task first, so both directions have carried sequenced messages")
    iut.process.expect_exit()
    ctx.check("CNF-008", iut.control("shutdown") is None, "shutdown answers null", "")
    status = iut.process.wait_exit(ctx.bound(20.0))
    ctx.check("CNF-008", status == 0, "exit status 0", status)
    goodbyes = peer.received(Goodbye)
    ctx.check("LIV-006", bool(goodbyes), "Goodbye on the live session", "none" if not goodbyes else str(goodbyes[0].body))
    if goodbyes:
        later = [a for a in peer.inbox if a.seq > goodbyes[0].seq and a.remote == iut.peer_id]
        ctx.check("LIV-010", not later, "Goodbye the last sequenced message", [f"{a.body.__class__.__name__}(seq {a.seq})" for a in later])


@case(
    "liveness/LIV-004-LIV-008-peer-dead-notice-fences",
    requirements=["LIV-004", "LIV-008", "FATE-003", "SES-005"],
    iut_env=FAST_DETECTION,
    summary=(
        "Suite peer A submits sleep(3000); suite peer B then tells the IUT that A is dead (PeerDeadNotice). "
        "The IUT must fence A and run its death effects as if it had detected the death: A's task is "
        "stopped and never answered. Having learned of the death from a notice, it must not send a notice "
        "about A itself."
    ),
    timeout=60.0,
)
def peer_dead_notice(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    a = ctx.wire_peer("suite-a", **FAST_PEER)
    b = ctx.wire_peer("suite-b", **FAST_PEER)
    link_a = ctx.session(a, iut)
    link_b = ctx.session(b, iut)
    t = task(a, "sleep", [by_value(3000)])
    seq = link_a.send(t)
    ctx.wait_until(a, lambda: link_a.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    nseq = link_b.send(PeerDeadNotice(a.peer_id, a.incarnation, "declared dead by the conformance suite"))
    ctx.wait_until(b, lambda: link_b.acked >= nseq, requirement="SES-003", what="the IUT's ack of the PeerDeadNotice")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    replies = a.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("FATE-003", not replies, "no TaskReply for the task of the peer declared dead", [str(r.body) for r in replies])
    notices = b.received(PeerDeadNotice, lambda m: m.peer == a.peer_id)
    ctx.check("LIV-008", not notices, "no PeerDeadNotice about A from the IUT (it learned of the death from one)",
              [str(n.body) for n in notices])
    a.go_silent()  # fenced: the IUT will not hear from A again


@case(
    "liveness/HS-006-new-incarnation-fences-the-old",
    requirements=["HS-006", "FATE-003", "SES-005"],
    summary=(
        "Suite peer A submits sleep(3000); then, while A keeps its heartbeats going, a new incarnation of A "
        "(same PeerId) greets the IUT. The IUT must declare the old incarnation dead before answering: the "
        "old incarnation's task is stopped and never answered, and the new incarnation gets a session of "
        "its own (its echo runs)."
    ),
    timeout=60.0,
)
def new_incarnation(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    old = ctx.wire_peer("suite")
    link_old = ctx.session(old, iut)
    t = task(old, "sleep", [by_value(3000)])
    seq = link_old.send(t)
    ctx.wait_until(old, lambda: link_old.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    # The old incarnation keeps its heartbeats going: only the new one's Hello can fence it.
    new = ctx.wire_peer(restart_of=old)
    link_new = ctx.session(new, iut)
    run_echo(ctx, new, link_new, "the new incarnation", requirement="HS-006")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    replies = old.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("FATE-003", not replies, "no TaskReply for the old incarnation's task", [str(r.body) for r in replies])
    late = new.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("HS-006", not late, "the old incarnation's task not answered to the new one either", [str(r.body) for r in late])
    old.go_silent()  # fenced: the IUT will not talk to it again


@case(
    "liveness/LIV-020-ref-of-an-earlier-incarnation-of-the-iut",
    requirements=["LIV-020", "FATE-001", "TASK-009"],
    summary=(
        "Suite peer B submits sum_bytes(X by ref), X's descriptor naming the IUT's own PeerId with another "
        "incarnation: an earlier incarnation of the IUT, as a restarted worker meets in a retried task. The IUT "
        "must treat that owner as dead and fail the task with OWNER_DIED, promptly, not hang or answer NOT_OWNER."
    ),
    timeout=60.0,
)
def ref_of_an_earlier_incarnation(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    b = ctx.wire_peer("submitter")
    link_b = ctx.session(b, iut)
    earlier = iut.incarnation ^ 0x5A5A5A5A or 1
    x = f"{iut.peer_id}.{earlier:x}.7"
    ref = RefDescriptor(object_id=x, owner=iut.peer_id, owner_incarnation=earlier, owner_address=iut.address)
    t = task(b, "sum_bytes", [by_ref(ref)])
    link_b.send(t)
    reply = expect_reply(ctx, b, t, requirement="LIV-020", timeout=15.0)
    ret = reply.returns[0]
    ctx.check("LIV-020", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.OWNER_DIED,
              "ERROR(OWNER_DIED)", describe_return(ret))


@case(
    "liveness/LIV-009-SES-006-answer-to-a-stale-message",
    requirements=["LIV-009", "SES-006", "LIV-005"],
    summary=(
        "In a live session with suite peer P, the IUT receives from P's current incarnation "
        "ProtocolError(DECLARED_DEAD) with error.requirement = 'SES-006': the answer a restarted peer gives to "
        "a message addressed to its earlier incarnation. It never says that the IUT is dead: the IUT must not "
        "stop, and must answer an echo task afterwards."
    ),
)
def answer_to_a_stale_message(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    p = ctx.wire_peer("restarted")
    link = ctx.session(p, iut)
    run_echo(ctx, p, link, "before", requirement="TASK-005")
    link.send(ProtocolError(ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "SES-006"), 1), seq=0)
    run_echo(ctx, p, link, "still alive", requirement="LIV-009")


def _task_for_an_unanswering_peer(ctx: CaseContext) -> tuple[IUT, WirePeer, Any, WirePeer, dict[str, Any]]:
    """The IUT, a bystander B in session with it (and B's link), suite peer P that the
    IUT is told about (add_peer: no incarnation known) and that answers no Hello, and
    the IUT's echo submitted to P, waiting on the handshake."""
    iut = ctx.start_iut()
    b = ctx.wire_peer("bystander")
    link_b = ctx.session(b, iut)
    p = ctx.wire_peer("unanswering")
    p.accept_hello = False
    iut.add_peer(p, slots=1)
    sub = iut.submit("echo", [{"value": "never sent"}], executor=p.peer_id)
    return iut, b, link_b, p, sub


@case(
    "liveness/LIV-018-unanswered-handshake-fails-what-waited",
    requirements=["LIV-018", "LIV-015", "LIV-004", "HS-006", "CNF-029"],
    summary=(
        "The IUT is told about suite peer P (add_peer: no incarnation known) and asked to submit echo to it; P "
        "never answers the IUT's Hellos. After the handshake timeout (10 s by default) the IUT must mark P dead "
        "and fail what waited on it: get of the task's return answers WORKER_DIED, and P never received the "
        "queued SubmitTask. It fences nothing and tells nobody: a bystander in session gets no PeerDeadNotice "
        "naming P, and when P then greets the IUT it is answered Welcome, runs an echo, and a task the IUT "
        "submits to it afterwards reaches it."
    ),
    timeout=90.0,
)
def unanswered_handshake(ctx: CaseContext) -> None:
    iut, b, link_b, p, first = _task_for_an_unanswering_peer(ctx)
    got = iut.get(first["returns"][0], timeout_ms=25_000)
    ctx.check("LIV-018", got.get("error", {}).get("code") == "WORKER_DIED",
              "the task queued for a peer whose handshake timed out fails WORKER_DIED", got)
    ctx.check("LIV-015", bool(p.received(Hello)), "the IUT greeted P", "no Hello")
    ctx.check("LIV-018", not p.received(SubmitTask), "the queued SubmitTask never sent",
              [a.body.task_id for a in p.received(SubmitTask)])
    run_echo(ctx, b, link_b, "after P's handshake timed out")  # any notice to B came before this reply
    notices = b.received(PeerDeadNotice, lambda m: m.peer == p.peer_id)
    ctx.check("LIV-018", not notices, "no PeerDeadNotice naming P (no incarnation to name)",
              [str(a.body) for a in notices])
    p.accept_hello = True
    link_p = p.connect(iut.peer_id, iut.address, iut.incarnation)
    try:
        link_p.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("LIV-018", "Welcome for P's own Hello (nothing was fenced)", str(exc))
    run_echo(ctx, p, link_p, "P is back", requirement="LIV-018")
    second = iut.submit("echo", [{"value": "now it goes"}], executor=p.peer_id)
    ctx.expect(p, SubmitTask, lambda m: m.task_id == second["task_id"], requirement="LIV-018",
               what="the IUT's SubmitTask to P once P greeted it")


#: LIV-015's default handshake timeout, which the IUT runs with here (CNF-012), in seconds.
HANDSHAKE_TIMEOUT_S = 10.0


@case(
    "liveness/LIV-012-LIV-018-fence-ends-an-unanswered-handshake",
    requirements=["LIV-012", "LIV-018", "LIV-015", "CNF-029"],
    summary=(
        "The IUT is told about suite peer P (add_peer: no incarnation known) and asked to submit echo to it; P "
        "never answers the IUT's Hello, so the IUT's record for P is a handshake that names no incarnation. "
        "Bystander B, in session with the IUT, then sends PeerDeadNotice for P's incarnation. The fence must "
        "end that record at once as a death of P: get of the task's return answers WORKER_DIED well before "
        "the handshake timeout (10 s by default, CNF-012) would have ended it, and P never receives the "
        "SubmitTask."
    ),
    timeout=60.0,
)
def fence_ends_an_unanswered_handshake(ctx: CaseContext) -> None:
    iut, b, link_b, p, sub = _task_for_an_unanswering_peer(ctx)
    [rid] = sub["returns"]
    hello = ctx.expect(p, Hello, requirement="LIV-015", what="the IUT's Hello to P, with the task waiting on it")
    ctx.check("LIV-012", hello.envelope.receiver_incarnation == 0, "the IUT's Hello names no incarnation of P",
              hello.envelope.receiver_incarnation)
    seq = link_b.send(PeerDeadNotice(p.peer_id, p.incarnation, "the conformance suite declares P dead"))
    ctx.wait_until(b, lambda: link_b.acked >= seq, requirement="SES-003", what="the IUT's ack of B's PeerDeadNotice")
    left = HANDSHAKE_TIMEOUT_S - (ctx.clock.now() - hello.t)
    if left < 3.0:
        ctx.note(f"only {left:.1f} s of P's handshake timeout left once the notice was acknowledged: too late to tell "
                 "a fence from the timeout")
        got = iut.get(rid, timeout_ms=25_000)
    else:
        got = iut.get(rid, timeout_ms=int((left - 2.0) * 1000))
    ctx.check("LIV-012", got.get("error", {}).get("code") == "WORKER_DIED",
              "the task waiting on P's handshake fails WORKER_DIED once P/p is fenced, before the handshake timeout",
              got)
    ctx.check("LIV-012", not p.received(SubmitTask), "the waiting SubmitTask never sent to P",
              [a.body.task_id for a in p.received(SubmitTask)])
    iut.drop(rid)


@case(
    "liveness/LIV-031-HS-015-refused-handshake-ends-queued-task-as-a-death",
    requirements=["LIV-031", "HS-015"],
    summary=(
        "The IUT is told of suite peer P (the only peer with slots) and asked to submit echo to it with no "
        "retries, so it greets P with the task queued. P refuses that Hello with ProtocolError "
        "PROTOCOL_VERSION. The refusal is a death of P for the IUT (HS-015): the queued task must end as a death ends it, with WORKER_DIED (its retries spent), not with the refusal's "
        "code, and the SubmitTask is never sent."
    ),
)
def refused_handshake_ends_queued_task(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer()
    peer.accept_hello = False  # the case answers the IUT's Hello itself: a refusal
    iut.add_peer(peer, slots=1)
    sub = iut.submit("echo", [{"value": "never sent"}], executor=peer.peer_id)
    ctx.expect(peer, Hello, requirement="HS-001", what="Hello from the IUT, the task queued")
    link = peer.link(iut.peer_id)
    link.send(ProtocolError(ErrorInfo(ErrorCode.PROTOCOL_VERSION, "refused on purpose", "HS-002")))
    got = iut.get(sub["returns"][0])
    code = got.get("error", {}).get("code") if isinstance(got.get("error"), dict) else None
    ctx.check("LIV-031", code == "WORKER_DIED", "the queued task's return fails with WORKER_DIED, as for a death", got)
    sent = peer.received(SubmitTask)
    ctx.check("HS-015", not sent, "the queued SubmitTask never sent to the peer that refused", f"{len(sent)} sent")


@case(
    "liveness/ID-016-owner-without-an-address-waits-for-one",
    requirements=["ID-016", "LIV-015", "TASK-002"],
    summary=(
        "Suite peer S submits sum_bytes(X by ref), X owned by suite peer B, which the IUT has never heard of, "
        "through a descriptor with an empty ownerAddress: the IUT knows no address for B. It must keep the "
        "task waiting (a round trip with S shows it has taken the task; no reply comes), not declare B dead "
        "before the handshake timeout. S then submits sum_bytes(Y by ref), Y owned by B, with B's address: the "
        "IUT's Hello reaches B at that address (within the timeout), B answers both GetObjectStatus with the "
        "values, and both tasks answer their sums."
    ),
)
def owner_without_an_address_waits_for_one(ctx: CaseContext) -> None:
    iut, s, link = open_session(ctx, peer_name="submitter")
    b = ctx.wire_peer("owner")
    data_x, data_y = make_bytes_value(500), make_bytes_value(700)
    x, y = ctx.new_id(b), ctx.new_id(b)
    unaddressed = RefDescriptor(object_id=x, owner=b.peer_id, owner_incarnation=b.incarnation, owner_address="",
                                size_hint=portable(data_x).size)
    t1 = task(s, "sum_bytes", [by_ref(unaddressed)])
    link.send(t1)
    run_echo(ctx, s, link, "the task is in", requirement="TASK-005")
    early = [describe_return(r) for a in s.received(TaskReply, lambda m: m.task_id == t1.task_id) for r in a.body.returns]
    ctx.check("ID-016", not early, "no reply yet for the task whose owner has no known address (not declared dead "
              "before the handshake timeout)", early)
    t2 = task(s, "sum_bytes", [by_ref(ctx.descriptor(b, y, size_hint=portable(data_y).size))])
    link.send(t2)
    ctx.expect(b, Hello, requirement="ID-016", what="the IUT's Hello at B's address, once a descriptor named it",
               timeout=10.0)
    values = {x: portable(data_x), y: portable(data_y)}
    answered: set[str] = set()
    link_b = b.link(iut.peer_id)
    while answered != set(values):
        asked = ctx.expect(b, GetObjectStatus, lambda m: m.object_id in values and m.object_id not in answered,
                           requirement="TASK-002", what="the IUT's GetObjectStatus for X and for Y").body
        answered.add(asked.object_id)
        value = values[asked.object_id]
        link_b.send(ObjectStatus(asked.object_id, ObjectState.READY, size=value.size, value=value))
    check_inline(ctx, expect_reply(ctx, s, t1, requirement="ID-016"), sum(data_x), requirement="ID-016",
                 note="sum_bytes(X), its owner reached once an address was learnt")
    check_inline(ctx, expect_reply(ctx, s, t2), sum(data_y), requirement="TASK-002", note="sum_bytes(Y)")


@case(
    "liveness/SES-015-LIV-017-fence-outlives-the-next-incarnation",
    requirements=["SES-015", "LIV-017", "SES-020", "SES-017", "HS-006"],
    summary=(
        "Suite peer W tells the IUT that suite peer A's incarnation is dead (PeerDeadNotice); a new incarnation of "
        "A (same PeerId, another address) then opens a session and runs echo. The record that the old "
        "incarnation is fenced must outlive its replacement: a task the old incarnation sends on its old session "
        "never runs, and a new Hello from it opens no session (and does not displace the new incarnation, whose "
        "next echo runs). The Hello should be refused DECLARED_DEAD (a recommendation, SES-017); a refusal must "
        "go to the address kept with the fence record, the old incarnation's (SES-020)."
    ),
    timeout=60.0,
)
def fence_outlives_the_next_incarnation(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    old = ctx.wire_peer("suite")
    link_old = ctx.session(old, iut)
    watcher = ctx.wire_peer("watcher")
    link_w = ctx.session(watcher, iut)
    run_echo(ctx, old, link_old, "before the fence")
    nseq = link_w.send(PeerDeadNotice(old.peer_id, old.incarnation, "declared dead by the conformance suite"))
    ctx.wait_until(watcher, lambda: link_w.acked >= nseq, requirement="SES-003", what="the IUT's ack of the PeerDeadNotice")
    old.heartbeats = False  # from now on the old incarnation speaks only when the case makes it
    new = ctx.wire_peer(restart_of=old)
    link_new = ctx.session(new, iut)
    run_echo(ctx, new, link_new, "the new incarnation", requirement="HS-006")

    stale = task(old, "echo", [by_value("from a fenced incarnation")])
    link_old.send(stale)
    link_old.reset_session()
    link_old.hello()
    try:  # longer than SES-017's one answer per second, so a rate limit cannot hide the answer
        old.wait_until(lambda: link_old.state in ("live", "refused"), 5.0, what="an answer to the fenced incarnation's Hello")
    except ExpectTimeout:
        pass
    ctx.check("SES-015", link_old.state != "live", "no session opened for the fenced incarnation's Hello",
              "Welcomed: the fence was forgotten")
    refusal = link_old.refusal.body if link_old.refusal is not None else None
    if link_old.state == "refused" and refusal is not None:
        ctx.check("SES-020", refusal.error.code is ErrorCode.DECLARED_DEAD, "the Hello refused DECLARED_DEAD",
                  refusal.error.code.name)
    else:
        misrouted = [a for a in new.inbox if isinstance(a.body, ProtocolError) and a.envelope.receiver_incarnation == old.incarnation]
        ctx.check("SES-020", not misrouted, "no answer for the old incarnation sent to the new one's address",
                  f"{len(misrouted)} sent there")
        ctx.check("SES-017", False, "the fenced incarnation's Hello answered ProtocolError(DECLARED_DEAD)",
                  f"no answer within 5 s (session {link_old.state})")
    old.go_silent()
    run_echo(ctx, new, link_new, "still the new incarnation", requirement="LIV-017")
    ran = [a for a in (*old.received(TaskReply), *new.received(TaskReply)) if a.body.task_id == stale.task_id]
    ctx.check("SES-015", not ran, "the fenced incarnation's task never runs", f"{len(ran)} replies")
