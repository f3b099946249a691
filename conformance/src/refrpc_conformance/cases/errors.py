"""errors.md and the error paths of tasks: failing tasks, unknown functions, bad replies."""

from __future__ import annotations

from refrpc.core.messages import (
    ErrorCode,
    ErrorInfo,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ReturnKind,
    ReturnValue,
    TaskReply,
)

from .._build import by_ref, by_value, describe_return, portable
from .._case import case
from .._context import CaseContext
from ._common import (
    check_error_code,
    check_requirement_named,
    expect_protocol_error,
    expect_reply,
    open_session,
    run_echo,
    task,
)


@case(
    "errors/TASK-007-fail-fixture-task-failed",
    requirements=["TASK-007", "CNF-001"],
    summary=(
        "fail(msg) raises; the reply's return must be ERROR(TASK_FAILED) with the exception's text (which "
        "contains msg) in error.message."
    ),
)
def fail_fixture(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    msg = "conformance-boom-4711"
    t = task(peer, "fail", [by_value(msg)])
    link.send(t)
    reply = expect_reply(ctx, peer, t)
    ret = reply.returns[0]
    ok = ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.TASK_FAILED
    ctx.check("TASK-007", ok, "ERROR(TASK_FAILED)", describe_return(ret))
    if ok and ret.error is not None:
        ctx.check("TASK-007", msg in ret.error.message, f"error.message contains {msg!r}", repr(ret.error.message))


@case(
    "errors/CNF-003-wrong-argument-type-task-failed",
    requirements=["CNF-003", "TASK-007"],
    summary=(
        "sum_bytes is given an int64 where it takes data, and make_bytes a text where it takes an int64. "
        "Fixtures must raise on a wrong argument type, so each return is ERROR(TASK_FAILED)."
    ),
)
def wrong_argument_type(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    for function, arg in (("sum_bytes", 42), ("make_bytes", "ten")):
        t = task(peer, function, [by_value(arg)])
        link.send(t)
        ret = expect_reply(ctx, peer, t).returns[0]
        ctx.check("CNF-003", ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is ErrorCode.TASK_FAILED,
                  "ERROR(TASK_FAILED)", describe_return(ret), note=f"{function}({arg!r})")


@case(
    "errors/GEN-005-reply-for-task-never-submitted",
    requirements=["GEN-005", "ERR-001", "ERR-004"],
    summary=(
        "The suite sends a TaskReply for a task id the IUT never allocated. The IUT answers "
        "ProtocolError(WRONG_STATE) with relatedSeq = that message's number, changes nothing, and the "
        "session goes on."
    ),
)
def reply_for_unknown_task(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    bogus = f"{iut.peer_id}.never-allocated.1"
    seq = link.send(TaskReply(bogus, 1, (ReturnValue(f"{bogus}.r0", ReturnKind.INLINE, value=portable(1)),)))
    err = expect_protocol_error(ctx, peer, requirement="GEN-005", what=f"ProtocolError about seq {seq}", related_seq=seq)
    check_error_code(ctx, err, (ErrorCode.WRONG_STATE,), requirement="GEN-005")
    check_requirement_named(ctx, err)
    run_echo(ctx, peer, link, "after", requirement="GEN-005")


@case(
    "errors/GEN-008-protocol-error-not-answered",
    requirements=["GEN-008"],
    summary=(
        "The suite sends an unsolicited ProtocolError in the session. The IUT must not answer it with a "
        "ProtocolError: none arrives before the reply to the next task."
    ),
)
def protocol_error_not_answered(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.send(ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "an unsolicited error from the conformance suite", "GEN-004"), related_seq=0))
    run_echo(ctx, peer, link, "after", requirement="GEN-008")
    got = peer.received(ProtocolError)
    ctx.check("GEN-008", not got, "no ProtocolError in answer", [str(a.body) for a in got])


@case(
    "errors/TASK-009-ERR-007-argument-error-propagated",
    requirements=["TASK-009", "ERR-007"],
    summary=(
        "Two tasks take a ref argument owned by the suite. For the first the suite answers FAILED with "
        "OBJECT_LOST, for the second FREED. Each task's return must be an ERROR with that argument's code "
        "(OBJECT_LOST, OBJECT_FREED), without running the function."
    ),
)
def argument_error(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    cases = [
        (ObjectState.FAILED, ErrorInfo(ErrorCode.OBJECT_LOST, "lost on purpose by the conformance suite"), ErrorCode.OBJECT_LOST),
        (ObjectState.FREED, None, ErrorCode.OBJECT_FREED),
    ]
    for state, error, code in cases:
        x = ctx.new_id(peer)
        t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x))])
        link.send(t)
        ctx.expect(peer, GetObjectStatus, lambda m, x=x: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
        link.send(ObjectStatus(x, state, error=error))
        reply = expect_reply(ctx, peer, t)
        ret = reply.returns[0]
        ok = ret.kind is ReturnKind.ERROR and ret.error is not None and ret.error.code is code
        ctx.check("TASK-009" if state is ObjectState.FREED else "ERR-007", ok, f"ERROR {code.value}", describe_return(ret),
                  note=f"argument answered {state.value}")


@case(
    "errors/TASK-006-TASK-010-unknown-function-every-return",
    requirements=["TASK-006", "TASK-010"],
    summary=(
        "A task names a function the IUT does not have, with two return ids. Both returns must be "
        "ERROR(UNKNOWN_FUNCTION), in the order of returnIds."
    ),
)
def unknown_function(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    t = task(peer, "conformance.no_such_function", [by_value(1)], num_returns=2)
    link.send(t)
    reply = expect_reply(ctx, peer, t)
    ctx.check("TASK-010", [r.object_id for r in reply.returns] == list(t.return_ids), f"returns {list(t.return_ids)} in order",
              [r.object_id for r in reply.returns])
    for r in reply.returns:
        ctx.check("TASK-006", r.kind is ReturnKind.ERROR and r.error is not None and r.error.code is ErrorCode.UNKNOWN_FUNCTION,
                  "ERROR(UNKNOWN_FUNCTION)", describe_return(r), note=r.object_id)
