"""trace-format.md: an IUT that records traces records a run the trace checker finds clean.

The IUT records its side of the case (CNF-023) next to the suite's own side, and
``refrpc-trace check`` (tools/trace) reads the merged run: every finding it makes,
and every problem with the format, fails the case under the requirement it names.
"""

from __future__ import annotations

import secrets

from refrpc.core.messages import ReturnKind, ReturnValue, SubmitTask, TaskReply

from .._build import by_value, portable, shared
from .._case import case
from .._context import CaseContext
from .._trace import write_canonical
from ._common import expect_reply, task
from .tasks import fetch_all


@case(
    "trace/TRC-003-TRC-008-iut-trace-checks-clean",
    requirements=["CNF-023", "TRC-001", "TRC-002", "TRC-003", "TRC-004", "TRC-005", "TRC-008", "SM-002"],
    features=("core", "borrowing"),
    summary=(
        "For an IUT that claims trace recording (records_traces = true), the suite runs a small mixed "
        "workload with REFRPC_TRACE_DIR set: an echo, a stored result the suite fetches, a hold whose ref is "
        "registered and later released, a task the IUT submits to the suite, and a put object the IUT drops. The IUT then shuts down "
        "cleanly. Its trace, merged with the suite's own side, must read without format problems, and "
        "refrpc-trace check must find nothing; each finding fails the case under the requirement it names."
    ),
    timeout=90.0,
)
def iut_trace_checks_clean(ctx: CaseContext) -> None:
    if not ctx.config.records_traces:
        ctx.skip("the IUT does not claim trace recording (records_traces in its config)")
    try:
        import refrpc_trace
    except ImportError:
        ctx.skip("refrpc-trace (tools/trace) is not installed, so the merged trace cannot be checked")
    directory = ctx.run_dir / "trace-check" / f"{ctx.spec.id.replace('/', '__')}.{secrets.token_hex(4)}"
    directory.mkdir(parents=True, exist_ok=True)
    iut = ctx.start_iut(env={"REFRPC_TRACE_DIR": str(directory)})
    peer = ctx.wire_peer("suite")
    link = ctx.session(peer, iut)
    iut.add_peer(peer, slots=1)
    t = task(peer, "echo", [by_value([1, "two"])])
    link.send(t)
    expect_reply(ctx, peer, t)
    big = task(peer, "make_bytes", [by_value(iut.inline_threshold + 20_000)])
    link.send(big)
    ret = expect_reply(ctx, peer, big).returns[0]
    if ret.kind is ReturnKind.STORED:
        fetch_all(ctx, peer, link, ret.object_id, request_id=1, chunk_bytes=1 << 16)
    x = ctx.new_id(peer)
    keep = task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))])
    link.send(keep)
    expect_reply(ctx, peer, keep)
    iut.drop_held()
    sub = iut.submit("echo", [{"value": 7}], executor=peer.peer_id)
    st: SubmitTask = ctx.expect(peer, SubmitTask, lambda m: m.task_id == sub["task_id"], requirement="TASK-001",
                                what="the IUT's SubmitTask").body
    link.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(7)),)))
    ctx.check("CNF-001", iut.get(sub["returns"][0]).get("value") == 7, "the IUT reads its task's result", "")
    iut.drop(sub["returns"][0])
    iut.drop(iut.put("put, then dropped"))  # its creation is recorded as the ready --put--> ready row (SM-002)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    iut.process.expect_exit()
    iut.control("shutdown")
    iut.process.wait_exit(ctx.bound(20.0))
    peer.go_silent()
    write_canonical(ctx.trace, directory)
    files = sorted(p.name for p in directory.iterdir())
    mine = [f for f in files if f.startswith(f"{iut.peer_id}.")]
    ctx.require("CNF-023", bool(mine), f"a trace file of {iut.peer_id} in REFRPC_TRACE_DIR (TRC-011 names it)", files)
    findings, diag = refrpc_trace.check([directory])
    errors = [p for p in diag.problems if p.severity in ("error", "warning")]  # a note is a crash mid-record, TRC-012
    for p in errors:
        ctx.check(p.requirement or "TRC-001", False, "a trace that reads without problems", f"{p.message} ({p.path})")
    for f in findings:
        ctx.check(f.requirement, False, "no finding of refrpc-trace check", f.render()[:2000])
    ctx.check("TRC-008", not findings and not errors, "refrpc-trace check finds nothing in the merged run",
              f"{len(findings)} finding(s), {len(errors)} problem(s)")
    ctx.note(f"merged run checked: {', '.join(files)}")

