"""tasks-and-rpc.md §2 and objects-and-fetch.md: submitting tasks and their results."""

from __future__ import annotations

from refrpc.core.messages import (
    CancelTask,
    ErrorCode,
    FetchChunk,
    FetchRequest,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    RegisterBorrower,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import (
    PortableRef,
    by_ref,
    by_value,
    describe_return,
    make_bytes_value,
    portable,
    read_portable,
    read_stored_form,
    shared,
    stored_form,
)
from .._case import case
from .._context import CaseContext
from .._wire import ExpectTimeout, Link, WirePeer
from ._common import check_inline, check_own_grants_released, expect_reply, open_session, run_echo, task

MIB = 1 << 20


def fetch_all(ctx: CaseContext, peer: WirePeer, link: Link, object_id: str, *, request_id: int, chunk_bytes: int,
              offset: int = 0, length: int = -1, requirement: str = "FET-001", accept_lz4: bool = False) -> list[FetchChunk]:
    """Send one FetchRequest and collect its chunks up to the one marked last."""
    link.send(FetchRequest(object_id, request_id, offset, length, chunk_bytes, accept_lz4))
    chunks: list[FetchChunk] = []
    while True:
        arrival = ctx.expect(peer, FetchChunk, lambda m: m.request_id == request_id, requirement=requirement,
                             what=f"FetchChunk {len(chunks) + 1} of request {request_id}", timeout=10.0)
        if not chunks:
            ctx.check("FET-005", arrival.seq == 0, "FetchChunk sent with sequence number 0", arrival.seq, note=f"request {request_id}")
        chunks.append(arrival.body)
        if arrival.body.last:
            return chunks


def check_chunks(ctx: CaseContext, chunks: list[FetchChunk], *, start: int, end: int, chunk_bytes: int, total: int, note: str) -> bytes:
    """FET-001: chunks cover [start, end) in order, each at most chunk_bytes, last only on the final one."""
    ctx.check("FET-001", all(not c.lz4 for c in chunks), "no lz4 chunk (not asked for)", [c.lz4 for c in chunks], note=note)
    ctx.check("FET-001", [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True],
              "last = true on the final chunk only", [c.last for c in chunks], note=note)
    ctx.check("FET-001", all(len(c.data) <= chunk_bytes for c in chunks), f"every chunk at most {chunk_bytes} bytes",
              [len(c.data) for c in chunks], note=note)
    ctx.check("OBJ-011", all(c.total_size == total for c in chunks), f"totalSize {total} in every chunk",
              sorted({c.total_size for c in chunks}), note=note)
    got = bytearray()
    covered = start
    for c in sorted(chunks, key=lambda c: c.offset):
        if c.offset != covered:
            ctx.check("FET-001", False, f"contiguous chunks from {start}", f"chunk at {c.offset} where {covered} was expected", note=note)
            break
        got += c.data
        covered += len(c.data)
    ctx.check("FET-001", covered == end, f"bytes [{start}, {end}) covered", f"[{start}, {covered})", note=note)
    return bytes(got)


@case(
    "tasks/TASK-011-TASK-010-echo-by-value-inline",
    requirements=["TASK-011", "TASK-010", "TASK-004", "TASK-005", "CNF-001", "VAL-017"],
    summary=(
        "echo() gets a value argument holding every portable type (null, bool, int64, float64, text, data, "
        "list, map). The reply names the task and attempt 1, has one inline return whose objectId is the "
        "return id, and the value is the argument, unchanged."
    ),
)
def echo_by_value(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    tree = [None, True, -(2**62), 2.5, "text é", b"\x00\x01bytes", [1, [2, [3]]], {"k": "v", "n": [None]}]
    t = task(peer, "echo", [by_value(tree)])
    link.send(t)
    reply = expect_reply(ctx, peer, t)
    ctx.check("TASK-005", reply.attempt == 1, "attempt 1", reply.attempt)
    ctx.check("TASK-010", [r.object_id for r in reply.returns] == list(t.return_ids), f"returns for {list(t.return_ids)}",
              [r.object_id for r in reply.returns])
    check_inline(ctx, reply, tree, requirement="TASK-011", note="echo of every portable type")


@case(
    "tasks/TASK-004-OBJ-010-stored-result-fetched-in-chunks",
    requirements=["TASK-004", "OBJ-010", "OBJ-011", "FET-001", "FET-005", "CNF-001"],
    summary=(
        "make_bytes(n) with n well under the IUT's inline threshold returns inline; with n above it, the return is "
        "stored: location = the IUT, size = the stored form's size. The suite fetches it with 64 KiB chunks: "
        "the chunks (sequence number 0) cover the stored form exactly, the last one only is marked last, and "
        "the stored form decodes as a Value whose data is the expected bytes."
    ),
)
def stored_result(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    small = task(peer, "make_bytes", [by_value(1000)])
    link.send(small)
    check_inline(ctx, expect_reply(ctx, peer, small), make_bytes_value(1000), requirement="TASK-004", note="1000 bytes: inline")
    n = iut.inline_threshold + 100_000
    big = task(peer, "make_bytes", [by_value(n)])
    link.send(big)
    reply = expect_reply(ctx, peer, big)
    ret = reply.returns[0]
    ctx.require("TASK-004", ret.kind is ReturnKind.STORED, f"stored (size above the threshold {iut.inline_threshold})", describe_return(ret))
    ctx.check("TASK-004", ret.location == iut.peer_id, f"location = the executor {iut.peer_id!r}", repr(ret.location))
    chunk = 64 * 1024
    chunks = fetch_all(ctx, peer, link, ret.object_id, request_id=1, chunk_bytes=chunk)
    total = chunks[0].total_size
    ctx.check("OBJ-011", ret.size == total, f"ReturnValue.size = the stored form's size ({total})", ret.size)
    data = check_chunks(ctx, chunks, start=0, end=total, chunk_bytes=chunk, total=total, note="whole object")
    try:
        value = read_stored_form(data)
        got = read_portable(value)
    except Exception as exc:
        ctx.fail("OBJ-010", "a stored form that decodes as a Value with a portable tree", f"{exc}")
    ctx.check("CNF-001", got == make_bytes_value(n), f"make_bytes({n}): byte i = i mod 256",
              f"{len(got) if isinstance(got, bytes) else type(got).__name__} bytes, "
              f"{'equal' if got == make_bytes_value(n) else 'different'}")


@case(
    "tasks/TASK-002-OBJ-002-ref-argument-resolved-from-owner",
    requirements=["TASK-002", "OBJ-002", "CNF-001"],
    summary=(
        "The suite owns an object X (1000 bytes, inline) and submits sum_bytes(X by ref). The IUT must ask the "
        "suite for X with GetObjectStatus(wait = true); the suite answers READY with the value, and the "
        "reply is the sum of the bytes."
    ),
)
def ref_argument_inline(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = make_bytes_value(1000)
    x = ctx.new_id(peer)
    value = portable(data)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=value.size))])
    link.send(t)
    asked = ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002",
                       what=f"GetObjectStatus for the ref argument {x}")
    ctx.check("TASK-002", asked.body.wait is True, "wait = true", asked.body.wait)
    link.send(ObjectStatus(x, ObjectState.READY, size=value.size, value=value))
    check_inline(ctx, expect_reply(ctx, peer, t), sum(data), requirement="TASK-002", note="sum_bytes of the resolved value")


@case(
    "tasks/TASK-002-FET-001-ref-argument-fetched-from-location",
    requirements=["TASK-002", "FET-001", "FET-007", "FET-012", "HS-021", "OBJ-002"],
    summary=(
        "The suite owns a stored object X (300,000 bytes) and submits sum_bytes(X by ref). It answers the "
        "IUT's GetObjectStatus with READY and itself as the only location; the IUT must fetch the stored "
        "form from the suite (FetchRequest with a chunk size between 1 byte and its frame limit minus 64 "
        "KiB, no lz4 unless negotiated) and reply with the sum."
    ),
)
def ref_argument_fetched(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = make_bytes_value(300_000)
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    peer.serve(x, form)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,), location_addresses=(peer.address,)))
    reply = expect_reply(ctx, peer, t, timeout=30.0)
    check_inline(ctx, reply, sum(data), requirement="TASK-002", note="sum_bytes of the fetched value")
    requests = list(peer.fetch_requests)
    ctx.require("FET-001", bool(requests), "at least one FetchRequest for X", "none")
    welcome = link.welcome.body if link.welcome else None
    limit = (welcome.max_frame_bytes if welcome else 64 * MIB) - 64 * 1024
    ctx.check("FET-007", all(1 <= r.chunk_bytes <= limit for r in requests), f"chunkBytes in [1, {limit}]", [r.chunk_bytes for r in requests])
    lz4 = "lz4" in link.features
    ctx.check("HS-021", lz4 or not any(r.accept_lz4 for r in requests), "acceptLz4 false (lz4 not in use)", [r.accept_lz4 for r in requests])
    ids = [r.request_id for r in requests]
    ctx.check("FET-012", len(set(ids)) == len(ids), "request ids not reused", ids)


@case(
    "tasks/TASK-003-REF-001-shared-argument-returned-to-owner",
    requirements=["TASK-003", "REF-001", "BOR-025", "BOR-005", "CNF-001"],
    features=("core", "borrowing"),
    summary=(
        "The suite owns X and submits forward(shared X). forward returns the ref it was given; since the "
        "submitter owns X, the IUT needs no grant: the reply's value is Portable.ref 0 with nested = [X], "
        "owner fields copied, and an empty forwardId; the IUT sends no RegisterBorrower naming the owner."
    ),
)
def shared_argument(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    desc = ctx.descriptor(peer, x, size_hint=16)
    t = task(peer, "forward", [shared(desc)])
    link.send(t)
    reply = expect_reply(ctx, peer, t)
    ret = reply.returns[0]
    ctx.require("TASK-003", ret.kind is ReturnKind.INLINE and ret.value is not None, "an inline value holding the ref", describe_return(ret))
    assert ret.value is not None
    ctx.check("CNF-001", read_portable(ret.value) == PortableRef(0), "Portable.ref 0", repr(read_portable(ret.value)))
    nested = ret.value.nested
    ctx.require("TASK-003", len(nested) == 1, "one nested ref", f"{len(nested)} nested refs")
    got = nested[0]
    ctx.check("REF-001", (got.object_id, got.owner, got.owner_incarnation, got.owner_address) ==
              (x, peer.peer_id, peer.incarnation, peer.address), "the descriptor of X as the suite sent it",
              f"{got.object_id}, {got.owner}/{got.owner_incarnation} at {got.owner_address}")
    ctx.check("REF-001", got.forward_id == "", "empty forwardId (the receiver is the owner)", repr(got.forward_id))
    naming_owner = peer.received(RegisterBorrower, lambda m: m.borrower == peer.peer_id)
    ctx.check("BOR-025", not naming_owner, "no RegisterBorrower naming the owner as borrower", [str(r.body) for r in naming_owner])
    check_own_grants_released(ctx, iut, peer, x)


#: How long the task cancelled while running would sleep if nothing stopped it.
CANCELLED_SLEEP_MS = 8000


def _cancel_outcome(ctx: CaseContext, t: SubmitTask, reply: TaskReply, ran: object, *, note: str) -> bool:
    """TASK-008, TASK-010: every return of a cancelled task's reply is ERROR(TASK_CANCELLED), or
    (the task having run anyway) what it produced. Returns whether the task was cut short."""
    ctx.check("TASK-010", [r.object_id for r in reply.returns] == list(t.return_ids), f"returns for {list(t.return_ids)}",
              [r.object_id for r in reply.returns], note=note)
    errors = [r.error.code if r.kind is ReturnKind.ERROR and r.error is not None else None for r in reply.returns]
    cancelled = bool(errors) and all(c is ErrorCode.TASK_CANCELLED for c in errors)
    finished = all(_is_inline(r, ran) for r in reply.returns)
    ctx.check("TASK-008", cancelled or finished, f"every return ERROR(TASK_CANCELLED), or {ran!r} if the task ran anyway",
              [describe_return(r) for r in reply.returns], level="MUST", note=note)
    return cancelled


def _is_inline(ret: ReturnValue, expected: object) -> bool:
    if ret.kind is not ReturnKind.INLINE or ret.value is None:
        return False
    try:
        return bool(read_portable(ret.value) == expected)
    except Exception:
        return False


@case(
    "tasks/TASK-008-cancel-before-start",
    requirements=["TASK-008", "TASK-005", "TASK-010"],
    summary=(
        "The suite owns X and submits sum_bytes(X by ref). While the IUT waits for X's status (the task cannot "
        "have started), the suite sends CancelTask and only then answers with X's value. The IUT should not "
        "start the task, and then must reply once, with every return ERROR(TASK_CANCELLED); an IUT that runs it "
        "anyway replies with the sum and misses the recommendation."
    ),
)
def cancel_before_start(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = make_bytes_value(1000)
    x = ctx.new_id(peer)
    value = portable(data)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=value.size))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(CancelTask(t.task_id))
    link.send(ObjectStatus(x, ObjectState.READY, size=value.size, value=value))  # after the cancel, same session
    reply = expect_reply(ctx, peer, t)
    cancelled = _cancel_outcome(ctx, t, reply, sum(data), note="cancelled while resolving its argument")
    ctx.check("TASK-008", cancelled, "the task not started once cancelled (its returns TASK_CANCELLED)",
              "cancelled" if cancelled else "it ran", level="SHOULD")
    iut.quiesce()
    replies = peer.received(TaskReply, lambda m: m.task_id == t.task_id)
    ctx.check("TASK-005", len(replies) == 1, "exactly one TaskReply", f"{len(replies)}")


@case(
    "tasks/TASK-008-TASK-013-cancel-running-and-ignored-cancels",
    requirements=["TASK-008", "TASK-013", "TASK-005"],
    summary=(
        f"The suite submits sleep({CANCELLED_SLEEP_MS}) and, once the IUT has acknowledged it, sends CancelTask. "
        "The IUT should stop the running task and must reply once: every return ERROR(TASK_CANCELLED) if it "
        "was stopped, null if it slept to the end, and nothing else (not TASK_FAILED for the stop). CancelTasks "
        "for a task already replied to and for a task id never sent must be ignored: no second reply, no "
        "ProtocolError, and the session goes on."
    ),
)
def cancel_running(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    t = task(peer, "sleep", [by_value(CANCELLED_SLEEP_MS)])
    seq = link.send(t)
    ctx.wait_until(peer, lambda: link.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    link.send(CancelTask(t.task_id))
    reply = expect_reply(ctx, peer, t, timeout=CANCELLED_SLEEP_MS / 1000 + 20)
    stopped = _cancel_outcome(ctx, t, reply, None, note="cancelled while running")
    ctx.check("TASK-008", stopped, "the running task stopped (not slept to the end)", "stopped" if stopped else "ran to the end",
              level="SHOULD")
    echo = run_echo(ctx, peer, link, "after the cancel")
    errors_before = len(peer.received(ProtocolError))
    late = [link.send(CancelTask(t.task_id)), link.send(CancelTask(echo.task_id)),
            link.send(CancelTask(f"{peer.ids.prefix}never-sent"))]
    run_echo(ctx, peer, link, "after the ignored cancels", requirement="TASK-013")
    iut.quiesce()
    errors = [a.body for a in peer.received(ProtocolError)[errors_before:]]
    ctx.check("TASK-013", not errors, f"no ProtocolError for the CancelTasks (seqs {late}) of replied and unknown tasks",
              [f"{e.error.code.value} about seq {e.related_seq}" for e in errors] or "none")
    for task_id in (t.task_id, echo.task_id):
        replies = peer.received(TaskReply, lambda m: m.task_id == task_id)
        ctx.check("TASK-005", len(replies) == 1, f"exactly one TaskReply for {task_id}", f"{len(replies)}")


#: How long the first submitter's task sleeps: the second peer's messages arrive while it runs.
HELD_SLEEP_MS = 3000


@case(
    "tasks/TASK-068-TASK-013-task-id-of-another-submitter-kept-apart",
    requirements=["TASK-068", "TASK-013", "TASK-005", "TASK-010"],
    summary=(
        f"Suite peer S submits sleep({HELD_SLEEP_MS}). Once the IUT has acknowledged it, a second suite peer L, "
        "on its own session, sends a SubmitTask with S's task id and attempt (echo('liar'), with a return id of "
        "L's). The IUT must take it as another task: no ProtocolError about it, and L gets a TaskReply for that "
        "task id with its own return id and 'liar'. L then sends CancelTask for that task id: it reaches only L's "
        "task (TASK-013 keys a cancel by its sender). S must get one TaskReply for its task, with its own return "
        "ids and the sleep's null, and L no other; L's session goes on."
    ),
)
def task_id_of_another_submitter(ctx: CaseContext) -> None:
    # Every clause checked here is one of TASK-068's MUSTs.
    must = {"level": "MUST"}
    iut, peer, link = open_session(ctx, peer_name="submitter")
    liar = ctx.wire_peer("liar")
    liar_link = ctx.session(liar, iut)
    t = task(peer, "sleep", [by_value(HELD_SLEEP_MS)])
    seq = link.send(t)
    ctx.wait_until(peer, lambda: link.acked >= seq, requirement="SES-003", what="the IUT's ack of the sleep task")
    reuse = SubmitTask(t.task_id, "echo", (by_value("liar"),), (liar.ids.new(),), attempt=t.attempt)
    reuse_seq = liar_link.send(reuse)
    try:
        theirs: TaskReply | None = liar.expect(
            TaskReply, lambda m: m.task_id == t.task_id, timeout=ctx.bound(20.0),
            what=f"TaskReply to {liar.peer_id} for the task id it reused", give_up=ctx.iut_died).body
    except ExpectTimeout as exc:
        theirs = None
        refusals = [f"{a.body.error.code.value} ({a.body.error.requirement})"
                    for a in liar.received(ProtocolError, lambda m: m.related_seq == reuse_seq)]
        ctx.check("TASK-068", False, f"a TaskReply to {liar.peer_id}: its SubmitTask is another task, run as any other",
                  f"{exc}; ProtocolErrors about it: {refusals or 'none'}", **must)
    if theirs is not None:
        mine = len(theirs.returns) == 1 and _is_inline(theirs.returns[0], "liar")
        ctx.check("TASK-068", [r.object_id for r in theirs.returns] == list(reuse.return_ids) and mine,
                  f"{liar.peer_id}'s own return id {list(reuse.return_ids)} with inline 'liar'",
                  [f"{r.object_id}: {describe_return(r)}" for r in theirs.returns],
                  note=f"the reply to {liar.peer_id}'s echo, sent while S's sleep runs", **must)
    cancel_seq = liar_link.send(CancelTask(t.task_id))
    ctx.wait_until(liar, lambda: liar_link.acked >= cancel_seq, requirement="SES-003",
                   what=f"the IUT's ack of {liar.peer_id}'s CancelTask (seq {cancel_seq})")
    while_running = not peer.received(TaskReply, lambda m: m.task_id == t.task_id)
    if not while_running:
        ctx.note(f"S's reply came before {liar.peer_id}'s CancelTask was delivered: the cancel met a finished task")
    try:
        reply: TaskReply | None = peer.expect(
            TaskReply, lambda m: m.task_id == t.task_id, timeout=ctx.bound(HELD_SLEEP_MS / 1000 + 20),
            what=f"TaskReply for task {t.task_id} (sleep)", give_up=ctx.iut_died).body
    except ExpectTimeout as exc:
        reply = None
        ctx.check("TASK-068", False, f"S's TaskReply for {t.task_id}: the first task's reply goes to its own submitter",
                  str(exc), **must)
    if reply is not None:
        ctx.check("TASK-010", [r.object_id for r in reply.returns] == list(t.return_ids),
                  f"S's own return ids {list(t.return_ids)}", [r.object_id for r in reply.returns])
        slept = len(reply.returns) == 1 and _is_inline(reply.returns[0], None)
        ctx.check("TASK-013" if while_running else "TASK-068", slept, "one inline null: S's sleep ran to its end",
                  [describe_return(r) for r in reply.returns],
                  note=f"{liar.peer_id}'s SubmitTask and CancelTask left S's task as it was", **must)
    run_echo(ctx, liar, liar_link, "after its reused id")
    iut.quiesce()
    about = liar.received(ProtocolError, lambda m: m.related_seq in (reuse_seq, cancel_seq))
    ctx.check("TASK-068", not about, f"no ProtocolError to {liar.peer_id} about its SubmitTask or CancelTask",
              [f"{a.body.error.code.value} ({a.body.error.requirement}) about seq {a.body.related_seq}" for a in about]
              or "none", **must)
    taken = [a.body for a in liar.received(TaskReply, lambda m: m.task_id == t.task_id)]
    ctx.check("TASK-068", all(list(r.returns and [x.object_id for x in r.returns]) == list(reuse.return_ids)
                              for r in taken),
              f"every TaskReply to {liar.peer_id} for that id carries its own return ids, never S's",
              [[x.object_id for x in r.returns] for r in taken], **must)
    if reply is not None:
        replies = peer.received(TaskReply, lambda m: m.task_id == t.task_id)
        ctx.check("TASK-005", len(replies) == 1, f"exactly one TaskReply to S for {t.task_id}", f"{len(replies)}")


__all__ = ["check_chunks", "fetch_all"]


#: Bytes whose base64 uses both characters that differ in the URL-safe alphabet, and padding.
_B64_BYTES = bytes([0xFB, 0xFF, 0xBF, 0x00, 0x3E])


@case(
    "tasks/CNF-043-base64-data-written-exactly",
    requirements=["CNF-043", "CNF-008", "VAL-004"],
    summary=(
        "The suite puts {\"data\": \"+/+/AD4=\"} (standard alphabet, one `=` of padding) and the empty data, and "
        "reads both back with get: the IUT must write exactly `+/+/AD4=` and the empty string. It then submits "
        "echo({\"data\": ...}) to suite executor E: the argument travels as a `portable` value whose data member "
        "holds the five bytes (never a raw value), and E's answer, five other bytes, is read back by get in "
        "the standard alphabet with its padding."
    ),
)
def base64_data_written_exactly(ctx: CaseContext) -> None:
    import base64

    iut = ctx.start_iut()
    text = base64.b64encode(_B64_BYTES).decode("ascii")
    for data, what in ((text, "five bytes"), ("", "empty data")):
        oid = iut.control("put", value={"data": data})["object_id"]
        got = iut.control("get", object_id=oid, timeout_ms=5_000)
        ctx.check("CNF-043", got == {"value": {"data": data}}, f"get of the put {what} writes {{'data': {data!r}}}", got)
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.control("submit", function="echo", args=[{"value": {"data": text}}], executor=e.peer_id, num_returns=1)
    ret = sub["returns"][0]
    t: SubmitTask = ctx.expect(e, SubmitTask, lambda m: m.return_ids == (ret,), requirement="TASK-001",
                               what="the IUT's SubmitTask of echo").body
    arg = t.args[0] if len(t.args) == 1 else None
    try:
        tree = read_portable(arg.value) if arg is not None and arg.value is not None else None
    except ValueError as exc:
        tree = f"not portable: {exc}"
    ctx.check("CNF-043", tree == _B64_BYTES, f"the argument a portable value whose data member is {_B64_BYTES!r}",
              repr(tree) if arg is not None else f"{len(t.args)} arguments")
    answer = bytes([0xF8, 0x3F, 0xFF, 0xFE])
    e.link(iut.peer_id).send(TaskReply(t.task_id, t.attempt, (ReturnValue(ret, ReturnKind.INLINE, value=portable(answer)),)))
    got = iut.control("get", object_id=ret, timeout_ms=10_000)
    want = base64.b64encode(answer).decode("ascii")
    ctx.check("CNF-043", got == {"value": {"data": want}}, f"get of E's answer writes {{'data': {want!r}}}", got)


#: Values that are not JSON portable values (CNF-057), with what each breaks.
_NOT_PORTABLE = (
    (1.5, "a bare number with a fraction"),
    (1.0, "a bare 1.0"),
    (1e300, "a bare number with an exponent"),
    ([1, 2.5], "a bare 2.5 in a list"),
    ({"x": 1}, "an object that is no wrapper"),
    ({}, "an empty object"),
    ({"data": "", "x": 1}, "a data wrapper with a second key"),
    ({"float64": 1.5, "data": ""}, "a float64 wrapper with a second key"),
    ({"map": [["k", {"x": 1}]]}, "a map whose value is no wrapper"),
)
#: float64s that must come back as the same double (CNF-057), as the suite writes them.
_DOUBLES = (-0.0, 0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 123456789.125, 1e22, 3)


@case(
    "tasks/CNF-057-json-value-grammar",
    requirements=["CNF-057", "CNF-008"],
    summary=(
        "The suite puts values that are not JSON portable values: bare numbers with a fraction or an exponent "
        "(1.5, 1.0, 1e+300, and 2.5 inside a list), objects that are not one of the four wrappers ({\"x\": 1}, {}, "
        "and one as a map's value), and wrappers with a second key ({\"data\": \"\", \"x\": 1}): each put must be "
        "answered ok: false with bad_request. It then puts float64s (-0.0, 0.1, 1/3, the smallest subnormal, the "
        "smallest normal, the largest double, 123456789.125, 1e22, and 3 written without a fraction) and NaN and "
        "the infinities, and reads each back with get: each must come back as {\"float64\": x} where x read as "
        "an IEEE 754 double is the same double (-0.0 keeping its sign), NaN and the infinities as their strings."
    ),
)
def json_value_grammar(ctx: CaseContext) -> None:
    import struct

    from .._control import ControlError

    iut = ctx.start_iut()
    for value, what in _NOT_PORTABLE:
        try:
            answer = iut.control("put", value=value)
        except ControlError as exc:
            answer = exc.code
        ctx.check("CNF-057", answer == "bad_request", f"put of {what} ({value!r}) answered bad_request", answer)
    for x in _DOUBLES:
        oid = iut.control("put", value={"float64": x})["object_id"]
        got = iut.control("get", object_id=oid, timeout_ms=5_000)
        back = got.get("value", {}).get("float64") if isinstance(got, dict) and isinstance(got.get("value"), dict) else None
        # bit for bit: -0.0 keeps its sign (a "-0" reads as the integer 0, whose double is +0.0)
        same = (isinstance(back, (int, float)) and not isinstance(back, bool)
                and struct.pack("<d", float(back)) == struct.pack("<d", float(x)))
        ctx.check("CNF-057", same and got == {"value": {"float64": back}},
                  f"get of the put {{\"float64\": {x!r}}} answers the same double", got)
    for text in ("nan", "inf", "-inf"):
        oid = iut.control("put", value={"float64": text})["object_id"]
        got = iut.control("get", object_id=oid, timeout_ms=5_000)
        ctx.check("CNF-057", got == {"value": {"float64": text}}, f"get of the put {{\"float64\": {text!r}}} answers it",
                  got)
