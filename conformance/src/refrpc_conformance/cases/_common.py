"""Steps many cases share: open a session, run a task, wait for an error."""

from __future__ import annotations

from typing import Any, Iterable

from refrpc.core.messages import (
    Arg,
    Goodbye,
    ReleaseBorrows,
    ErrorCode,
    ProtocolError,
    ReturnKind,
    SubmitTask,
    TaskReply,
    Welcome,
)

from .._build import by_value, describe_return, read_portable, submit_task
from .._context import IUT, CaseContext
from .._wire import Arrival, ExpectTimeout, Link, WireError, WirePeer

#: Short heartbeats and detection for cases about liveness (CNF-012): 100 ms x 4.
FAST_DETECTION = {"REFRPC_IUT_HEARTBEAT_MS": "100", "REFRPC_IUT_MISS_LIMIT": "4"}


def open_session(ctx: CaseContext, *, peer_name: str = "suite", **peer_options: Any) -> tuple[IUT, WirePeer, Link]:
    """Start an IUT, make a wire peer, complete the handshake."""
    iut = ctx.start_iut()
    peer = ctx.wire_peer(peer_name, **peer_options)
    link = ctx.session(peer, iut)
    return iut, peer, link


def task(peer: WirePeer, function: str, args: Iterable[Arg] = (), **fields: Any) -> SubmitTask:
    """A SubmitTask with a fresh task id from ``peer``."""
    return submit_task(peer.ids.new(), function, args, **fields)


def send_task(link: Link, t: SubmitTask, **send_options: Any) -> int:
    return link.send(t, **send_options)


def expect_reply(
    ctx: CaseContext, peer: WirePeer, t: SubmitTask, *, requirement: str = "TASK-005", timeout: float = 20.0
) -> TaskReply:
    """Wait for the TaskReply of ``t``; none is a failure of ``requirement``."""
    arrival = ctx.expect(
        peer, TaskReply, lambda m: m.task_id == t.task_id, requirement=requirement,
        what=f"TaskReply for task {t.task_id} ({t.function})", timeout=timeout,
    )
    reply: TaskReply = arrival.body
    return reply


def run_echo(ctx: CaseContext, peer: WirePeer, link: Link, tree: Any = "ping", *, requirement: str = "TASK-005", **send_options: Any) -> TaskReply:
    """Submit ``echo(tree)`` and check that the reply carries it back."""
    t = task(peer, "echo", [by_value(tree)])
    link.send(t, **send_options)
    reply = expect_reply(ctx, peer, t, requirement=requirement)
    check_inline(ctx, reply, tree, requirement="CNF-001", note=f"echo({tree!r:.60}) returns its argument")
    return reply


def check_inline(ctx: CaseContext, reply: TaskReply, expected: Any, *, requirement: str, note: str = "") -> bool:
    """Check that a reply has one inline portable return equal to ``expected``."""
    if len(reply.returns) != 1:
        return ctx.check("TASK-010", False, "one ReturnValue", f"{len(reply.returns)} returns", note=note)
    ret = reply.returns[0]
    if ret.kind is not ReturnKind.INLINE or ret.value is None:
        return ctx.check(requirement, False, f"inline {expected!r:.100}", describe_return(ret), note=note)
    try:
        got = read_portable(ret.value)
    except Exception as exc:
        return ctx.check("VAL-017", False, "a portable value the submitter can read", f"{exc}", note=note)
    return ctx.check(requirement, got == expected, f"{expected!r:.200}", f"{got!r:.200}", note=note)


def expect_protocol_error(
    ctx: CaseContext,
    peer: WirePeer,
    *,
    requirement: str,
    what: str,
    related_seq: int | None = None,
    timeout: float = 10.0,
) -> ProtocolError:
    """Wait for a ProtocolError (about ``related_seq`` if given)."""
    arrival = ctx.expect(
        peer, ProtocolError, (lambda m: m.related_seq == related_seq) if related_seq is not None else None,
        requirement=requirement, what=what, timeout=timeout,
    )
    err: ProtocolError = arrival.body
    return err


def check_error_code(ctx: CaseContext, err: ProtocolError, codes: Iterable[ErrorCode], *, requirement: str, note: str = "") -> bool:
    allowed = tuple(codes)
    return ctx.check(
        requirement, err.error.code in allowed, " or ".join(c.value for c in allowed),
        f"{err.error.code.value} ({err.error.message!r:.120}, requirement {err.error.requirement!r})", note=note,
    )


def check_requirement_named(ctx: CaseContext, err: ProtocolError, note: str = "") -> None:
    """ERR-004 (SHOULD): the error names the requirement it enforces, and the id exists."""
    req = err.error.requirement
    ctx.check(
        "ERR-004", bool(req) and req in ctx.requirements if len(ctx.requirements) else bool(req),
        "error.requirement names a requirement id of the spec", repr(req), note=note,
    )


def check_no_session_opened(ctx: CaseContext, iut: IUT, peer: WirePeer, link: Link, *, requirement: str) -> None:
    """Show that the IUT opened no session with ``link`` after it refused a Hello.

    A sequenced ``echo`` at sequence number 1 is sent without a session: the IUT
    must discard it (SES-010). Then a valid handshake opens a session and a
    second ``echo``, again at sequence number 1, must run: had the first been
    delivered, the second would be a duplicate and never run. The first must
    never be answered.
    """
    stray = task(peer, "echo", [by_value("stray")])
    link.send(stray, seq=1)
    link.reset_session()
    try:
        link.handshake(ctx.bound(15.0), give_up=ctx.iut_died)
    except (WireError, ExpectTimeout) as exc:
        ctx.fail("HS-002", "Welcome answering a valid Hello after the refused one", str(exc))
    after = task(peer, "echo", [by_value("after")])
    link.send(after)
    expect_reply(ctx, peer, after, requirement=requirement)
    answered = peer.received(TaskReply, lambda m: m.task_id == stray.task_id)
    ctx.check(
        "SES-010", not answered, "the sequenced message sent with no session is discarded, never run",
        f"{len(answered)} TaskReply for it" if answered else "discarded", note="message sent before any session",
    )


def welcome_of(arrival: Arrival) -> Welcome:
    body: Welcome = arrival.body
    return body


def resync_after_bad_message(
    ctx: CaseContext, iut: IUT, peer: WirePeer, link: Link, bad_seq: int, *, requirement: str
) -> bool:
    """Find out whether the IUT consumed the sequence number of a bad message, and
    check that the session goes on either way.

    Two echo tasks follow: A with the bad message's number, B with the next one.
    If the IUT counted the bad message as delivered (GEN-001, GEN-010), A is a
    duplicate and only B runs; if it discarded the message before the session
    saw it, both run. B must run in both cases: a session that stalls on bad
    input breaks GEN-004. The answer must agree with how the IUT replied: a
    sequenced ProtocolError answers a message of the session, whose number is
    then consumed (GEN-010).

    Returns:
        Whether the bad message's sequence number was consumed.
    """
    a = task(peer, "echo", [by_value("probe-a")])
    b = task(peer, "echo", [by_value("probe-b")])
    link.send(a, seq=bad_seq)
    link.send(b, seq=bad_seq + 1)
    expect_reply(ctx, peer, b, requirement=requirement)
    iut.quiesce()
    consumed = not peer.received(TaskReply, lambda m: m.task_id == a.task_id)
    errors = [e for e in peer.received(ProtocolError) if e.body.related_seq == bad_seq]
    sequenced = [e for e in errors if e.seq > 0]
    if sequenced:
        ctx.check("GEN-010", consumed, f"seq {bad_seq} counted as delivered (the ProtocolError answering it is sequenced)",
                  "consumed" if consumed else "not consumed: a later message with that number ran")
    ctx.note(f"the IUT {'consumed' if consumed else 'did not consume'} sequence number {bad_seq} of the bad message")
    return consumed


def released_forward_ids(peer: WirePeer, object_id: str) -> set[str]:
    """Every forward id released for ``object_id`` so far, across ReleaseBorrows messages (batched or not)."""
    out: set[str] = set()
    for arrival in peer.received(ReleaseBorrows):
        for rel in arrival.body.releases:
            if rel.object_id == object_id:
                out.update(rel.forward_ids)
    return out


def check_own_grants_released(ctx: CaseContext, iut: IUT, owner: WirePeer, object_id: str) -> None:
    """After a task that keeps nothing, every grant the IUT took for itself on the object is released (BOR-005)."""
    own = [fid for (oid, fid), b in owner.grants.items() if oid == object_id and b == iut.peer_id]
    if not own:
        return
    ctx.note(f"the IUT registered itself for {object_id} ({len(own)} grant(s)) although the task keeps nothing")
    iut.quiesce()
    ctx.wait_until(owner, lambda: not any(oid == object_id and b == iut.peer_id for (oid, _), b in owner.grants.items()),
                   requirement="BOR-005", what=f"ReleaseBorrows for the IUT's own grant(s) {own} on {object_id}", timeout=10.0)


def leave_with_goodbye(ctx: CaseContext, peer: WirePeer, iut: IUT) -> None:
    """``peer`` leaves: Goodbye on its session with the IUT (LIV-006: fenced at once), then
    it sends nothing more."""
    link = peer.link(iut.peer_id)
    seq = link.send(Goodbye("the conformance suite ends this peer"))
    ctx.wait_until(peer, lambda: link.acked >= seq or bool(peer.received(ProtocolError)), requirement="SES-003",
                   what=f"the IUT's ack of {peer.peer_id}'s Goodbye")
    peer.go_silent()
