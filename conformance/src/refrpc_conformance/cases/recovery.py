"""tasks-and-rpc.md §4.2 and §6: the IUT as owner retries tasks and rebuilds lost values.

The IUT submits tasks through the control channel to a suite peer E1 (added with
no slots, so only a ``submit`` naming it places work there) and has a second suite
peer E2 as a worker it may place retries on (``add_peer`` with one slot). E1 then
dies: it says Goodbye (fenced at once, LIV-006), or goes silent and is detected
(CNF-012 short timings).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from refrpc.core.messages import (
    Envelope,
    ErrorCode,
    ErrorInfo,
    FetchRequest,
    FreeObjects,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_ref, describe_return, make_bytes_value, portable, stored_form
from .._case import case
from .._context import IUT, CaseContext
from .._craft import with_error_code
from .._wire import WirePeer
from ._common import FAST_DETECTION, expect_reply, leave_with_goodbye, task

FAST_PEER = {"heartbeat_ms": 100}


def _executors(ctx: CaseContext, **peer_options: Any) -> tuple[IUT, WirePeer, WirePeer]:
    """An IUT, the executor E1 it will be told to use, and a spare worker E2."""
    iut = ctx.start_iut()
    e1 = ctx.wire_peer("dying-executor", **peer_options)
    e2 = ctx.wire_peer("spare-executor", **peer_options)
    iut.add_peer(e1, slots=0)
    iut.add_peer(e2, slots=1)
    return iut, e1, e2


def _submitted(ctx: CaseContext, peer: WirePeer, task_id: str, *, attempt: int = 1, requirement: str = "TASK-001",
               timeout: float = 10.0) -> SubmitTask:
    body: SubmitTask = ctx.expect(
        peer, SubmitTask, lambda m: m.task_id == task_id and m.attempt == attempt, requirement=requirement,
        what=f"SubmitTask {task_id} attempt {attempt} at {peer.peer_id}", timeout=timeout,
    ).body
    return body


def _check_same_task(ctx: CaseContext, first: SubmitTask, again: SubmitTask, *, note: str) -> None:
    """RPC-007: only ``attempt`` changes between submissions of one task."""
    differ = [f.name for f in fields(SubmitTask) if f.name != "attempt" and getattr(first, f.name) != getattr(again, f.name)]
    ctx.check("RPC-007", not differ,
              "the same task id, function, arguments, return ids, maxRetries, retryExceptions and actor fields",
              "identical" if not differ else "; ".join(f"{n}: {getattr(first, n)!r} then {getattr(again, n)!r}" for n in differ),
              note=note)


def _error_of(got: dict[str, Any]) -> tuple[str, str]:
    err = got.get("error") or {}
    return str(err.get("code", "")), str(err.get("message", ""))


@case(
    "rpc/RPC-004-RPC-007-retry-after-executor-death",
    requirements=["RPC-004", "RPC-007", "RPC-009", "BOR-006", "OWN-008"],
    features=("core", "recovery"),
    summary=(
        "The IUT puts X and submits to suite executor E1 two tasks: sum_bytes(X by ref) with max_retries = 1, "
        "and echo('once') with max_retries = 0. E1 says Goodbye before replying. The IUT must resubmit the "
        "retryable task as attempt 2 (same task id, function, arguments, return ids and options) to the live "
        "worker E2, whose reply settles it; the other task must not run again and its return fails with "
        "WORKER_DIED naming E1. X's submitted-task count stays 1 across the retry and drops to 0 after the reply."
    ),
    timeout=60.0,
)
def retry_after_executor_death(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    data = make_bytes_value(500)
    x = iut.put(data)
    retry = iut.submit("sum_bytes", [{"ref": x}], executor=e1.peer_id, max_retries=1)
    once = iut.submit("echo", [{"value": "once"}], executor=e1.peer_id)
    first = _submitted(ctx, e1, retry["task_id"])
    ctx.check("RPC-004", first.max_retries == 1, "maxRetries 1 on the wire", first.max_retries)
    _submitted(ctx, e1, once["task_id"])
    entry = iut.entry(x)
    ctx.check("BOR-006", entry is not None and entry.get("submittedTaskRefs") == 1, "submittedTaskRefs = 1 before the retry", entry)
    leave_with_goodbye(ctx, e1, iut)
    again = _submitted(ctx, e2, retry["task_id"], attempt=2, requirement="RPC-004", timeout=20.0)
    _check_same_task(ctx, first, again, note="the retry at E2")
    entry = iut.entry(x)
    ctx.check("BOR-006", entry is not None and entry.get("submittedTaskRefs") == 1,
              "submittedTaskRefs still 1 while the retry is pending (retries add no count)", entry)
    got = iut.get(once["returns"][0])
    code, message = _error_of(got)
    ctx.check("RPC-004", code == "WORKER_DIED" and e1.peer_id in message,
              f"the max_retries = 0 task fails with WORKER_DIED naming {e1.peer_id}", got)
    total = sum(data)
    e2.link(iut.peer_id).send(TaskReply(again.task_id, again.attempt,
                                        tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(total)) for r in again.return_ids)))
    got = iut.get(retry["returns"][0])
    ctx.check("RPC-004", got.get("value") == total, f"get() of the retried task = {total} (E2's reply adopted)", got)
    iut.quiesce()
    entry = iut.entry(x)
    ctx.check("BOR-006", entry is not None and entry.get("submittedTaskRefs") == 0, "submittedTaskRefs = 0 after the final reply", entry)
    rerun = e2.received(SubmitTask, lambda m: m.task_id == once["task_id"])
    ctx.check("RPC-009", not rerun, "the max_retries = 0 task not submitted again", [str(a.body) for a in rerun])


@case(
    "rpc/OBJ-062-store-full-is-final",
    requirements=["OBJ-062", "RPC-005", "RPC-009", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E1 with max_retries = 2 and retry_exceptions = true; spare worker "
        "E2 has a free slot. E1 replies with every return ERROR(OBJECT_STORE_FULL) (its store had no room, "
        "OBJ-036) and storeFreeBytes 0. OBJECT_STORE_FULL is not retryable: the IUT must settle the return as "
        "failed with it (get names OBJECT_STORE_FULL) and must not submit the task again, to E1 or E2, although "
        "its budget and retry_exceptions would allow a retry after TASK_FAILED."
    ),
    timeout=60.0,
)
def store_full_is_final(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    sub = iut.submit("echo", [{"value": "no room"}], executor=e1.peer_id, max_retries=2, retry_exceptions=True)
    first = _submitted(ctx, e1, sub["task_id"])
    full = ErrorInfo(ErrorCode.OBJECT_STORE_FULL, f"{e1.peer_id}: no room for an argument", "OBJ-036")
    e1.link(iut.peer_id).send(TaskReply(first.task_id, first.attempt, tuple(
        ReturnValue(r, ReturnKind.ERROR, error=full) for r in first.return_ids), store_free_bytes=0))
    got = iut.get(sub["returns"][0], timeout_ms=5_000)
    code, _message = _error_of(got)
    ctx.check("OBJ-062", code == "OBJECT_STORE_FULL", "get() fails with OBJECT_STORE_FULL", got)
    iut.quiesce(timeout_ms=2_000)
    again = [a for p in (e1, e2) for a in p.received(SubmitTask, lambda m: m.task_id == first.task_id and m.attempt > 1)]
    ctx.check("OBJ-062", not again, "the task not submitted again", [f"attempt {a.body.attempt}" for a in again])


@case(
    "rpc/TASK-022-RPC-004-retry-without-a-live-executor",
    requirements=["TASK-022", "RPC-004", "TASK-023", "CNF-018"],
    features=("core", "recovery"),
    summary=(
        "The IUT's only peer is suite executor E1, added with no slots, to which it submits echo with "
        "max_retries = 1. E1 says Goodbye before replying. The retry has budget but no live executor to go to: "
        "it must not wait for ever nor be reported as WORKER_DIED (the new attempt never ran anywhere), but fail "
        "with RESOURCE_EXHAUSTED; nothing is sent again and nothing is left in the IUT's tables."
    ),
    timeout=60.0,
)
def retry_without_live_executor(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e1 = ctx.wire_peer("dying-executor")
    iut.add_peer(e1, slots=0)
    sub = iut.submit("echo", [{"value": "again"}], executor=e1.peer_id, max_retries=1)
    _submitted(ctx, e1, sub["task_id"])
    leave_with_goodbye(ctx, e1, iut)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=15_000)
    code, _ = _error_of(got)
    ctx.check("TASK-022", code == "RESOURCE_EXHAUSTED",
              "the retry with no live executor fails with RESOURCE_EXHAUSTED (not WORKER_DIED, not a timeout)", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-022", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "rpc/TASK-024-RPC-004-dead-named-executor-never-retried",
    requirements=["TASK-024", "RPC-004", "RPC-009", "CNF-018"],
    features=("core", "recovery"),
    summary=(
        "The IUT runs a task on suite executor E1 (added with no slots) and spare worker E2 (one free slot) is "
        "live; E1 then says Goodbye, so the IUT has fenced it. The program next submits echo to E1 by name "
        "with max_retries = 2. That first attempt was never placed on a live executor, so it is no death of "
        "an executor running it: the IUT must fail it at once with WORKER_DIED naming E1, and must not retry "
        "it, neither to E1 nor to E2, whatever maxRetries allows; nothing is left in its tables."
    ),
    timeout=60.0,
)
def dead_named_executor_never_retried(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    before = iut.submit("echo", [{"value": "before"}], executor=e1.peer_id)
    st = _submitted(ctx, e1, before["task_id"])
    e1.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable("before")),)))
    got = iut.get(before["returns"][0], timeout_ms=10_000)
    ctx.check("TASK-005", got == {"value": "before"}, "get of the first task's return answers 'before'", got)
    iut.drop(before["returns"][0])
    leave_with_goodbye(ctx, e1, iut)
    late = iut.submit("echo", [{"value": "after"}], executor=e1.peer_id, max_retries=2)
    [rid] = late["returns"]
    got = iut.get(rid, timeout_ms=10_000)
    code, message = _error_of(got)
    ctx.check("TASK-024", code == "WORKER_DIED" and e1.peer_id in message,
              f"the task named to the fenced E1 fails with WORKER_DIED naming {e1.peer_id}, its retries unused", got)
    quiet = iut.quiesce(15_000)
    sent = [f"attempt {a.body.attempt} to {p.peer_id}" for p in (e1, e2)
            for a in p.received(SubmitTask, lambda m: m.task_id == late["task_id"])]
    ctx.require("TASK-024", not sent, "the task never sent: not to the dead E1, and not retried on E2", sent)
    ctx.check("", quiet, "the IUT quiescent within 15 s", "not quiescent")
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-024", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "lineage/LIN-003-LOC-004-lost-stored-result-reconstructed",
    requirements=["LIN-003", "LOC-004", "LIN-006", "RPC-007", "RPC-009", "LOC-001", "OBJ-006"],
    features=("core", "recovery"),
    iut_env=FAST_DETECTION,
    summary=(
        "The IUT submits to suite executor E1 make_bytes(n) twice, n above its inline threshold: task A with "
        "max_retries = 1, task B with max_retries = 0. E1 replies to both with stored returns located at E1, "
        "then goes silent without serving them. When the IUT declares E1 dead, the only copy of each value is "
        "gone while its return is still held, and the IUT must decide at once: A must be re-run as attempt 2 "
        "(same task) on the live worker E2 and be pending meanwhile, "
        "and a get of A must give the value E2 serves; B is not reconstructable, so a get of B must fail with "
        "OBJECT_LOST, and B must not run again."
    ),
    timeout=60.0,
)
def lost_value_reconstructed(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx, **FAST_PEER)
    n = iut.inline_threshold + 50_000
    a = iut.submit("make_bytes", [{"value": n}], executor=e1.peer_id, max_retries=1)
    b = iut.submit("make_bytes", [{"value": n + 1}], executor=e1.peer_id)
    first = _submitted(ctx, e1, a["task_id"])
    tb = _submitted(ctx, e1, b["task_id"])
    link1 = e1.link(iut.peer_id)
    forms: dict[str, bytes] = {}
    last = 0
    for t, size in ((first, n), (tb, n + 1)):
        form = stored_form(portable(make_bytes_value(size)))
        forms[t.task_id] = form
        last = link1.send(TaskReply(t.task_id, t.attempt, (ReturnValue(t.return_ids[0], ReturnKind.STORED, location=e1.peer_id, size=len(form)),)))
    ra, rb = a["returns"][0], b["returns"][0]
    ctx.wait_until(e1, lambda: link1.acked >= last, requirement="SES-003", what="the IUT's ack of both replies")
    entry = iut.entry(ra)
    ctx.check("LOC-001", entry is not None and entry.get("state") == "ready" and entry.get("locations") == [e1.peer_id],
              f"A ready with E1 ({e1.peer_id}) as its only location", entry)
    e1.go_silent()
    again = _submitted(ctx, e2, a["task_id"], attempt=2, requirement="LIN-003", timeout=20.0)
    _check_same_task(ctx, first, again, note="the reconstruction at E2")
    states = {oid: (iut.entry(oid) or {}).get("state") for oid in (a["returns"][0], b["returns"][0])}
    ctx.check("LOC-004", list(states.values()) == ["pending", "failed"],
              "once E1 is dead: A pending again (being rebuilt), B failed", states)
    form = forms[a["task_id"]]
    e2.serve(ra, form)
    e2.link(iut.peer_id).send(TaskReply(again.task_id, again.attempt,
                                        (ReturnValue(ra, ReturnKind.STORED, location=e2.peer_id, size=len(form)),)))
    got = iut.get(ra)
    ctx.check("LIN-003", got.get("value") == make_bytes_value(n), f"get() of A = make_bytes({n}) after the reconstruction",
              "equal" if got.get("value") == make_bytes_value(n) else got)
    fetched = e2.received(FetchRequest, lambda m: m.object_id == ra)
    ctx.check("FET-001", bool(fetched), f"the IUT fetched A from its new location {e2.peer_id}", f"{len(fetched)} FetchRequest(s)")
    got = iut.get(rb)
    code, message = _error_of(got)
    ctx.check("LIN-006", code == "OBJECT_LOST", "get() of B (max_retries = 0) fails with OBJECT_LOST", got)
    rerun = e2.received(SubmitTask, lambda m: m.task_id == b["task_id"])
    ctx.check("RPC-009", not rerun, "B (max_retries = 0) not run again", [str(r.body) for r in rerun])


@case(
    "lineage/LIN-002-LIN-004-released-argument-rebuilt",
    requirements=["LIN-002", "LIN-004", "OWN-005", "OWN-006", "LIN-003", "RPC-007"],
    features=("core", "recovery"),
    summary=(
        "The IUT submits a = make_bytes(n) and then b = echo(a by ref) to suite executor E1, both with "
        "max_retries = 1; E1 stores both results. The program drops a: it is out of scope, but b's task "
        "(reconstructable) still names it, so a must be kept as `released` (lineageRefs 1): its value freed "
        "at E1 (FreeObjects), its entry and lineage kept. E1 then leaves: b is lost while held, and "
        "rebuilding it needs a, which has no value either. The IUT must re-run a's task (attempt 2) and b's "
        "task (attempt 2) on the spare worker E2; get(b) then gives the bytes, and a goes back to `released`."
    ),
    timeout=60.0,
)
def released_argument_rebuilt(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    n = iut.inline_threshold + 20_000
    form = stored_form(portable(make_bytes_value(n)))
    a = iut.submit("make_bytes", [{"value": n}], executor=e1.peer_id, max_retries=1)
    ta = _submitted(ctx, e1, a["task_id"])
    link1 = e1.link(iut.peer_id)
    ra = a["returns"][0]
    link1.send(TaskReply(ta.task_id, 1, (ReturnValue(ra, ReturnKind.STORED, location=e1.peer_id, size=len(form)),)))
    b = iut.submit("echo", [{"ref": ra}], executor=e1.peer_id, max_retries=1)
    tb = _submitted(ctx, e1, b["task_id"])
    rb = b["returns"][0]
    seq = link1.send(TaskReply(tb.task_id, 1, (ReturnValue(rb, ReturnKind.STORED, location=e1.peer_id, size=len(form)),)))
    ctx.wait_until(e1, lambda: link1.acked >= seq, requirement="SES-003", what="the IUT's ack of b's reply")
    iut.drop(ra)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    entry = iut.entry(ra)
    ctx.check("LIN-002", entry is not None and entry.get("state") == "released" and entry.get("lineageRefs") == 1,
              "a kept as `released` with lineageRefs 1 (b's task names it)", entry)
    freed = any(ra in f.body.object_ids for f in e1.received(FreeObjects))
    ctx.check("OWN-005", freed, "a's value freed at its location E1 (FreeObjects)", "no FreeObjects for a")
    leave_with_goodbye(ctx, e1, iut)
    again_a = _submitted(ctx, e2, a["task_id"], attempt=2, requirement="LIN-004", timeout=15.0)
    _check_same_task(ctx, ta, again_a, note="a re-run to rebuild b")
    link2 = e2.link(iut.peer_id)
    e2.serve(ra, form)
    link2.send(TaskReply(again_a.task_id, 2, (ReturnValue(ra, ReturnKind.STORED, location=e2.peer_id, size=len(form)),)))
    again_b = _submitted(ctx, e2, b["task_id"], attempt=2, requirement="LIN-003", timeout=15.0)
    _check_same_task(ctx, tb, again_b, note="b re-run")
    e2.serve(rb, form)
    link2.send(TaskReply(again_b.task_id, 2, (ReturnValue(rb, ReturnKind.STORED, location=e2.peer_id, size=len(form)),)))
    got = iut.get(rb)
    ctx.check("LIN-003", got.get("value") == make_bytes_value(n), f"get(b) = make_bytes({n}) after the rebuild",
              "equal" if got.get("value") == make_bytes_value(n) else got)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    entry = iut.entry(ra)
    ctx.check("LIN-004", entry is not None and entry.get("state") == "released",
              "a back to `released` once b's task no longer needs its value", entry)


@case(
    "rpc/TASK-041-retry-goes-where-its-arguments-fit",
    requirements=["TASK-041", "OBJ-061", "RPC-004"],
    features=("core", "recovery"),
    summary=(
        "The IUT has two workers it may place retries on, FULL (added first) and ROOMY, each with one slot; each "
        "has run one task for it, FULL replying with storeFreeBytes = 0 and ROOMY with 1 TiB (OBJ-060). The IUT "
        "puts X (stored, larger than its inline threshold) and submits sum_bytes(X by ref), max_retries = 1, to "
        "suite executor E1, which says Goodbye before replying. The retry should go to ROOMY: FULL would have to "
        "copy X into a store that said it has no room (TASK-041), while both have a free slot and the same load. "
        "Whoever gets it replies, and the task must settle with the right sum either way (OBJ-061: the word is a "
        "hint, never a reason to fail)."
    ),
    timeout=60.0,
)
def retry_goes_where_its_arguments_fit(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e1 = ctx.wire_peer("dying-executor")
    full = ctx.wire_peer("full-worker")
    roomy = ctx.wire_peer("roomy-worker")
    iut.add_peer(e1, slots=0)
    iut.add_peer(full, slots=1)
    iut.add_peer(roomy, slots=1)
    for peer, free in ((full, 0), (roomy, 1 << 40)):
        sent = iut.submit("echo", [{"value": 1}], executor=peer.peer_id)
        st = _submitted(ctx, peer, sent["task_id"])
        peer.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, tuple(
            ReturnValue(r, ReturnKind.INLINE, value=portable(1)) for r in st.return_ids), store_free_bytes=free))
        got = iut.get(sent["returns"][0])
        ctx.require("TASK-005", got.get("value") == 1, f"the reply from {peer.peer_id} adopted", got)
    data = make_bytes_value(iut.inline_threshold + 100_000)
    x = iut.put(data)
    retry = iut.submit("sum_bytes", [{"ref": x}], executor=e1.peer_id, max_retries=1)
    _submitted(ctx, e1, retry["task_id"])
    leave_with_goodbye(ctx, e1, iut)

    def second() -> list[tuple[WirePeer, SubmitTask]]:
        return [(p, a.body) for p in (full, roomy) for a in p.received(SubmitTask)
                if a.body.task_id == retry["task_id"] and a.body.attempt == 2]

    ctx.poll_until(lambda: bool(second()), requirement="RPC-004", what="the retry at FULL or ROOMY", timeout=20.0)
    peer, again = second()[0]
    ctx.check("TASK-041", peer is roomy, f"the retry at {roomy.peer_id}, which said it has room for X",
              f"at {peer.peer_id}")
    total = sum(data)
    peer.link(iut.peer_id).send(TaskReply(again.task_id, again.attempt, tuple(
        ReturnValue(r, ReturnKind.INLINE, value=portable(total)) for r in again.return_ids)))
    got = iut.get(retry["returns"][0])
    ctx.check("OBJ-061", got.get("value") == total, f"get() of the retried task = {total}", got)


@case(
    "lineage/LOC-008-LIN-007-rerun-copy-of-a-ready-return-not-recorded",
    requirements=["LOC-008", "LIN-007", "LIN-003", "LOC-002", "TASK-015"],
    features=("core", "recovery"),
    iut_env=FAST_DETECTION,
    summary=(
        "The IUT submits a task with two returns and max_retries = 1 to suite executor E1, which replies with both "
        "stored at E1. Suite peer W announces a copy of the second return R2 (AddLocation). E1 then goes silent: "
        "R1's only copy is lost, R2 is still ready at W. The IUT must re-run the task at the spare worker E2; when "
        "E2 replies with both returns stored at E2, the IUT records E2 as R1's location but must not record it for "
        "R2 (its bytes may differ from W's copy): R2's locations stay [W], and R2's new copy at E2 is freed "
        "(FreeObjects), as a return it does not adopt."
    ),
    timeout=60.0,
)
def rerun_copy_not_recorded(ctx: CaseContext) -> None:
    from refrpc.core.messages import AddLocation

    iut, e1, e2 = _executors(ctx, **FAST_PEER)
    w = ctx.wire_peer("copy-holder", **FAST_PEER)
    link_w = ctx.session(w, iut)
    n = iut.inline_threshold + 50_000
    sub = iut.submit("echo", [{"value": "two returns"}], executor=e1.peer_id, max_retries=1, num_returns=2)
    r1, r2 = sub["returns"]
    first = _submitted(ctx, e1, sub["task_id"])
    form = stored_form(portable(make_bytes_value(n)))
    link1 = e1.link(iut.peer_id)
    last = link1.send(TaskReply(first.task_id, first.attempt, tuple(
        ReturnValue(r, ReturnKind.STORED, location=e1.peer_id, size=len(form)) for r in (r1, r2))))
    ctx.wait_until(e1, lambda: link1.acked >= last, requirement="SES-003", what="the IUT's ack of the reply")
    seq = link_w.send(AddLocation(r2, len(form)))
    ctx.wait_until(w, lambda: link_w.acked >= seq, requirement="SES-003", what="the IUT's ack of W's AddLocation")
    entry = iut.entry(r2) or {}
    ctx.require("LOC-002", entry.get("locations") == [e1.peer_id, w.peer_id], f"R2 at E1, then W", entry)
    e1.go_silent()
    again = _submitted(ctx, e2, sub["task_id"], attempt=2, requirement="LIN-003", timeout=20.0)
    link2 = e2.link(iut.peer_id)
    last = link2.send(TaskReply(again.task_id, again.attempt, tuple(
        ReturnValue(r, ReturnKind.STORED, location=e2.peer_id, size=len(form)) for r in (r1, r2))))
    ctx.wait_until(e2, lambda: link2.acked >= last, requirement="SES-003", what="the IUT's ack of the re-run's reply")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    e_r1, e_r2 = iut.entry(r1) or {}, iut.entry(r2) or {}
    ctx.check("LIN-003", e_r1.get("state") == "ready" and e_r1.get("locations") == [e2.peer_id],
              "R1 rebuilt: ready at E2 alone", e_r1)
    ctx.check("LOC-008", e_r2.get("state") == "ready" and e_r2.get("locations") == [w.peer_id],
              "R2 still ready at W alone: the re-run's copy at E2 not recorded", e_r2)
    freed = [oid for a in e2.received(FreeObjects) for oid in a.body.object_ids]
    ctx.check("LIN-007", r2 in freed and r1 not in freed, "R2's new copy at E2 freed (FreeObjects), R1's kept",
              freed)


#: An ErrorCode ordinal no version of the registry defines (ERR-002).
UNKNOWN_CODE = 200


@case(
    "rpc/ERR-002-unknown-error-code-is-final-and-passed-on",
    requirements=["ERR-002", "CNF-018", "TASK-009"],
    features=("core", "recovery"),
    summary=(
        "The IUT submits echo to suite executor E1 with max_retries = 2 and retry_exceptions = true; spare worker "
        f"E2 has a free slot. E1 replies with the return ERROR of code ordinal {UNKNOWN_CODE}, which no registry "
        "defines. The reply is no malformed message (no ProtocolError about it), the failure is not retryable "
        "(no attempt 2, to E1 or E2), and get answers the error as UNRECOGNIZED (the only registry name for a "
        "code the reader could not read, CNF-018). Then E1 sends the IUT sum_bytes(X by ref) for an X it owns "
        f"and answers the IUT's GetObjectStatus with FAILED and an error of code {UNKNOWN_CODE}: the IUT passes "
        "the argument's error on (TASK-009) as UNRECOGNIZED, with the same message, requirement and detail."
    ),
    timeout=60.0,
)
def unknown_error_code(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    sub = iut.submit("echo", [{"value": "newer"}], executor=e1.peer_id, max_retries=2, retry_exceptions=True)
    first = _submitted(ctx, e1, sub["task_id"])
    link = e1.link(iut.peer_id)
    newer = ErrorInfo(ErrorCode.TASK_FAILED, "failed in a way a later version names", "a rule of a later version", "its detail")
    reply = TaskReply(first.task_id, first.attempt, tuple(
        ReturnValue(r, ReturnKind.ERROR, error=newer) for r in first.return_ids))
    seq = link.next_seq()
    env = Envelope(e1.peer_id, e1.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, reply)
    link.send_frames(with_error_code(env, UNKNOWN_CODE), label=f"TaskReply with error code {UNKNOWN_CODE}", seq=seq)
    got = iut.get(sub["returns"][0], timeout_ms=5_000)
    code, _message = _error_of(got)
    ctx.check("ERR-002", bool(code) and code != "timeout", "get() fails with the reply's error", got)
    ctx.check("CNF-018", code == "UNRECOGNIZED", "the unknown code named UNRECOGNIZED", code or got)
    iut.quiesce(timeout_ms=2_000)
    refused = e1.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("ERR-002", not refused, f"no ProtocolError about the reply (seq {seq}): an unknown code is no malformed message",
              [f"{a.body.error.code.value}: {a.body.error.message}" for a in refused] or "none")
    again = [f"attempt {a.body.attempt} to {p.peer_id}" for p in (e1, e2)
             for a in p.received(SubmitTask, lambda m: m.task_id == first.task_id and m.attempt > 1)]
    ctx.check("ERR-002", not again, "the task not submitted again: an unknown code is a non-retryable failure",
              again or "none")

    x = ctx.new_id(e1)
    t = task(e1, "sum_bytes", [by_ref(ctx.descriptor(e1, x))])
    link.send(t)
    ctx.expect(e1, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    lost = ErrorInfo(ErrorCode.TASK_FAILED, "lost in a newer way", "another rule of a later version", "the owner's detail")
    status = ObjectStatus(x, ObjectState.FAILED, error=lost)
    seq = link.next_seq()
    env = Envelope(e1.peer_id, e1.incarnation, iut.peer_id, iut.incarnation, seq, link.delivered, status)
    link.send_frames(with_error_code(env, UNKNOWN_CODE), label=f"ObjectStatus FAILED with error code {UNKNOWN_CODE}", seq=seq)
    answer = expect_reply(ctx, e1, t, requirement="TASK-009")
    rets = answer.returns
    ok = len(rets) == 1 and rets[0].kind is ReturnKind.ERROR and rets[0].error is not None
    err = rets[0].error if ok else None
    ctx.check("ERR-002", err is not None and err.code is ErrorCode.UNRECOGNIZED,
              "the argument's unknown error passed on as ERROR(UNRECOGNIZED)", [describe_return(r) for r in rets])
    ctx.check("ERR-002", err is not None and (err.message, err.requirement, err.detail)
              == ("lost in a newer way", "another rule of a later version", "the owner's detail"),
              "with the message, requirement and detail it read", err and (err.message, err.requirement, err.detail))
    refused = e1.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("ERR-002", not refused, f"no ProtocolError about the ObjectStatus (seq {seq})",
              [f"{a.body.error.code.value}: {a.body.error.message}" for a in refused] or "none")


@case(
    "rpc/RPC-006-reply-for-another-attempt-ignored",
    requirements=["RPC-006", "TASK-005", "TASK-016"],
    summary=(
        "The IUT submits echo('current') to suite executor E. Before answering, E sends a well-formed TaskReply for "
        "the same task id but attempt 7, which the IUT never sent, carrying 'stale'. The IUT must ignore it: no "
        "ProtocolError about it, and the task is not settled by it. E then answers attempt 1 with 'current', "
        "which get returns."
    ),
)
def reply_for_another_attempt(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=0)
    sub = iut.submit("echo", [{"value": "current"}], executor=e.peer_id)
    st = _submitted(ctx, e, sub["task_id"])
    link = e.link(iut.peer_id)
    stale_seq = link.send(TaskReply(st.task_id, 7, tuple(
        ReturnValue(rid, ReturnKind.INLINE, value=portable("stale")) for rid in st.return_ids)))
    link.send(TaskReply(st.task_id, st.attempt, tuple(
        ReturnValue(rid, ReturnKind.INLINE, value=portable("current")) for rid in st.return_ids)))
    got = iut.get(sub["returns"][0], timeout_ms=5_000)
    ctx.check("RPC-006", got.get("value") == "current",
              "get returns the current attempt's value 'current' (the reply for attempt 7 settled nothing)", got)
    iut.quiesce(timeout_ms=2_000)
    refused = e.received(ProtocolError, lambda m: m.related_seq == stale_seq)
    ctx.check("RPC-006", not refused, f"no ProtocolError about the reply for another attempt (seq {stale_seq})",
              [f"{a.body.error.code.value}: {a.body.error.message}" for a in refused] or "none")
