"""The IUT as the submitter and owner of task returns: refs that come back inside
values (GC-002, GC-003), secondary copies it fetches (LOC-002, LOC-003), replies it
does not adopt (TASK-015, BOR-013) and what its program sees (CNF-018)."""

from __future__ import annotations

from refrpc.core.messages import (
    AddLocation,
    CancelTask,
    ErrorCode,
    ErrorInfo,
    FetchChunk,
    FetchRequest,
    FreeObjects,
    GetObjectStatus,
    Hello,
    ObjectState,
    ProtocolError,
    ObjectStatus,
    RefDescriptor,
    ReleaseBorrows,
    RemoveLocation,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import PortableRef, make_bytes_value, portable, stored_form
from .._craft import drop_payload_frames, drop_protocol_error_info
from .._case import case
from .._context import IUT, CaseContext
from .._control import ControlError, Ref
from .._wire import WirePeer
from ._common import leave_with_goodbye, released_forward_ids

#: The size of X, the stored object the IUT fetches (well above any inline threshold).
X_SIZE = 200_000


def _granted(ctx: CaseContext, owner: WirePeer, to: IUT, object_id: str, *, size: int = -1) -> RefDescriptor:
    """A descriptor of ``owner``'s object carrying a grant made out to ``to`` (as if an
    executor had registered it, BOR-002); the owner records the grant."""
    fid = ctx.new_id(owner)
    owner.grants[(object_id, fid)] = to.peer_id
    return ctx.descriptor(owner, object_id, size_hint=size, forward_id=fid)


def _next_task(ctx: CaseContext, e: WirePeer, function: str) -> SubmitTask:
    st: SubmitTask = ctx.expect(e, SubmitTask, lambda m: m.function == function, requirement="TASK-001",
                                what=f"the IUT's SubmitTask({function})").body
    return st


def _probe_copy(ctx: CaseContext, prober: WirePeer, iut: IUT, object_id: str, request_id: int) -> bool:
    """Ask the IUT for the first bytes of its copy of ``object_id``: whether it serves them."""
    prober.link(iut.peer_id).send(FetchRequest(object_id, request_id, 0, 64, 4096))
    chunk: FetchChunk = ctx.expect(prober, FetchChunk, lambda m: m.request_id == request_id, requirement="FET-004",
                                   what=f"the IUT's answer to a FetchRequest for {object_id}").body
    return chunk.error is None


@case(
    "borrowing/GC-002-LOC-002-LOC-003-refs-in-returned-values",
    requirements=["GC-002", "GC-003", "GC-007", "BOR-005", "LOC-002", "LOC-003", "LOC-006", "REF-006", "CNF-018", "CNF-017",
                  "TASK-018"],
    features=("core", "borrowing"),
    summary=(
        "The IUT submits two tasks to suite executor E, which answers each with a value embedding a ref owned by "
        "suite peer O (X in R1; Y and Z in R2), each with a grant made out to the IUT, and a third with "
        "ERROR(TASK_FAILED). The IUT must hold X contained-in R1, and Y and Z contained-in R2 (its table says "
        "so, and nothing is released); the failed return also carries a value, which the IUT accepts (TASK-018), and "
        "get of it names TASK_FAILED. Its program then reads R1 and X: the IUT "
        "fetches X from suite location W, and if it keeps that copy it must announce it (AddLocation) and be "
        "able to serve it. Dropping R2 must release the grants of Y and Z (a chained release), in one message "
        "(GC-007, a recommendation); dropping R1 and X must "
        "release X's grant and, for an announced copy that it drops, send RemoveLocation before it answers "
        "a fetch with an error."
    ),
    timeout=90.0,
)
def refs_in_returned_values(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    o = ctx.wire_peer("owner")
    w = ctx.wire_peer("location")
    iut.add_peer(e, slots=4)
    x, y, z = ctx.new_id(o), ctx.new_id(o), ctx.new_id(o)
    x_form = stored_form(portable(make_bytes_value(X_SIZE)))
    w.serve(x, x_form)
    dx, dy, dz = _granted(ctx, o, iut, x, size=len(x_form)), _granted(ctx, o, iut, y, size=8), _granted(ctx, o, iut, z, size=8)
    r1 = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)["returns"][0]
    r2 = iut.submit("echo", [{"value": "y"}], executor=e.peer_id)["returns"][0]
    r3 = iut.submit("fail", [{"value": "on purpose"}], executor=e.peer_id)["returns"][0]
    for nested in ((dx,), (dy, dz)):
        st = _next_task(ctx, e, "echo")
        link_e = e.link(iut.peer_id)  # there once the IUT's Hello came
        tree = [PortableRef(i) for i in range(len(nested))]
        link_e.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE,
                                                                   value=portable(tree, nested)),)))
    st = _next_task(ctx, e, "fail")
    # TASK-018: the error return also carries a value (the exception, as an executor may send it).
    link_e.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.ERROR,
                                                               value=portable("the exception, as raised"),
                                                               error=ErrorInfo(ErrorCode.TASK_FAILED, "on purpose", "TASK-007")),)))
    failed = iut.get(r3)
    ctx.check("CNF-018", failed.get("error", {}).get("code") == "TASK_FAILED", "get answers the error code 'TASK_FAILED'",
              failed)
    ctx.check("TASK-018", not e.received(ProtocolError), "a value on an error return accepted (no ProtocolError)",
              [str(a.body) for a in e.received(ProtocolError)])
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    for oid, container in ((x, r1), (y, r2), (z, r2)):
        entry = iut.entry(oid)
        ctx.check("GC-002", entry is not None and entry.get("containedIn") == [container],
                  f"{oid} held contained-in {container}", entry)
    early = released_forward_ids(o, x) | released_forward_ids(o, y) | released_forward_ids(o, z)
    ctx.check("GC-002", not early, "no release while the return values embed X and Y", sorted(early))
    # The program reads R1 (it now holds X itself) and then X, which is stored at W.
    value = iut.get(r1).get("value")
    ctx.require("CNF-017", value == [Ref(x)], f"get(R1) = [{{'ref': {x!r}}}]", value)
    answer = ObjectStatus(x, ObjectState.READY, len(x_form), (w.peer_id,), (w.address,))
    o.answer_status = lambda m: answer if m.object_id == x else None  # the owner answers when asked
    got = iut.get(x).get("value")
    ctx.check("OBJ-002", bool(o.received(GetObjectStatus, lambda m: m.object_id == x)), f"GetObjectStatus for {x} at its owner",
              "none")
    ctx.check("CNF-001", got == make_bytes_value(X_SIZE), f"get(X) = the {X_SIZE} bytes", f"{type(got).__name__}")
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    announced = bool(o.received(AddLocation, lambda m: m.object_id == x))
    serves = _probe_copy(ctx, o, iut, x, 901)
    if serves:
        ctx.check("LOC-002", announced, "the copy the IUT serves was announced with AddLocation", "never announced")
    else:
        ctx.note("the IUT keeps no copy of X after reading it")
        if announced:
            ctx.check("LOC-006", bool(o.received(RemoveLocation, lambda m: m.object_id == x)),
                      "RemoveLocation before a fetch of an announced copy is refused", "no RemoveLocation")
    # Chained release: R2 goes, so Y (held only contained-in R2) goes.
    iut.drop(r2)
    ctx.wait_until(o, lambda: dy.forward_id in released_forward_ids(o, y) and dz.forward_id in released_forward_ids(o, z),
                   requirement="GC-003", what="ReleaseBorrows for the grants of Y and Z once R2 is dropped", timeout=10.0)
    carrying = [a for a in o.received(ReleaseBorrows) if any(rel.object_id in (y, z) for rel in a.body.releases)]
    ctx.check("GC-007", len(carrying) == 1, "the releases caused by dropping R2 batched in one ReleaseBorrows",
              f"{len(carrying)} messages", level="SHOULD")
    iut.drop(r1)
    iut.drop(r3)
    iut.quiesce()
    ctx.check("BOR-005", dx.forward_id not in released_forward_ids(o, x), "X's grant kept while the program holds X",
              sorted(released_forward_ids(o, x)))
    iut.drop(x)
    ctx.wait_until(o, lambda: dx.forward_id in released_forward_ids(o, x), requirement="BOR-005",
                   what=f"ReleaseBorrows for X's grant {dx.forward_id!r} once every hold is gone", timeout=10.0)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    if announced:
        still = _probe_copy(ctx, o, iut, x, 902)
        removed = bool(o.received(RemoveLocation, lambda m: m.object_id == x))
        ctx.check("LOC-003", still or removed, "an announced copy that is dropped is withdrawn with RemoveLocation",
                  "the copy is gone and no RemoveLocation came")
    ctx.check("", not iut.table(), "an empty table at the end", iut.table())


@case(
    "tasks/TASK-015-TASK-016-reply-to-a-cancelled-task-disposed",
    requirements=["TASK-015", "TASK-016", "TASK-014", "BOR-013", "TASK-008", "CNF-018", "CNF-008"],
    features=("core", "borrowing"),
    summary=(
        "The IUT submits a task to suite executor E, which holds it. The IUT's program cancels it: get must "
        "answer TASK_CANCELLED at once, and E gets CancelTask. E then replies anyway, with one return stored at "
        "E and one inline value embedding Y (owned by suite peer O) with a grant made out to the IUT. The "
        "reply is not adopted, so the IUT must dispose of it: release Y's grant to O and free the stored return "
        "at E (FreeObjects); the returns stay failed with TASK_CANCELLED and nothing is left in its tables."
    ),
    timeout=60.0,
)
def cancelled_reply_disposed(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    o = ctx.wire_peer("owner")
    iut.add_peer(e, slots=1)
    y = ctx.new_id(o)
    dy = _granted(ctx, o, iut, y, size=8)
    sub = iut.submit("echo", [{"value": "cancel me"}], executor=e.peer_id, num_returns=2)
    st = _next_task(ctx, e, "echo")
    iut.cancel(sub["task_id"])
    for rid in sub["returns"]:
        got = iut.get(rid, timeout_ms=10_000)
        code = str(got.get("error", {}).get("code", ""))
        ctx.check("TASK-008", code.replace("_", "").lower() == "taskcancelled", "the returns failed with TASK_CANCELLED at once",
                  got, level="MUST")
        ctx.check("CNF-018", code == "TASK_CANCELLED", "the code spelled as the registry does: 'TASK_CANCELLED'", repr(code))
    ctx.expect(e, CancelTask, lambda m: m.task_id == st.task_id, requirement="TASK-008", what="CancelTask at the executor")
    stored_rid, inline_rid = st.return_ids
    e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(stored_rid, ReturnKind.STORED, location=e.peer_id, size=123_456),
        ReturnValue(inline_rid, ReturnKind.INLINE, value=portable([PortableRef(0)], (dy,))),
    )))
    ctx.wait_until(o, lambda: dy.forward_id in released_forward_ids(o, y), requirement="TASK-015",
                   what=f"ReleaseBorrows for the grant {dy.forward_id!r} the unadopted reply carried", timeout=10.0)
    ctx.wait_until(e, lambda: any(stored_rid in a.body.object_ids for a in e.received(FreeObjects)), requirement="TASK-015",
                   what=f"FreeObjects for the unadopted stored return {stored_rid}", timeout=10.0)
    for rid in sub["returns"]:
        got = iut.get(rid, timeout_ms=10_000)
        ctx.check("TASK-016", str(got.get("error", {}).get("code", "")).replace("_", "").lower() == "taskcancelled",
                  "the returns are still failed with TASK_CANCELLED after the reply", got)
        iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-014", counts.get("submitted_tasks") == 0, "the cancelled task forgotten once its reply came", counts)
    ctx.check("TASK-016", not iut.table(), "an empty table", iut.table())



@case(
    "tasks/TASK-019-mismatched-reply-fails-the-task",
    requirements=["TASK-019", "TASK-010", "ERR-001", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E, which answers with a TaskReply for the right task and attempt "
        "whose one return names an object id the task does not have. The reply is malformed: the IUT must answer "
        "it with ProtocolError(MALFORMED) about the reply's sequence number, and fail the task's return with "
        "MALFORMED rather than leave it pending for ever; then nothing is left in its tables."
    ),
    timeout=60.0,
)
def mismatched_reply(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    wrong = st.return_ids[0] + ".not-mine"
    seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(wrong, ReturnKind.INLINE, value=portable("x")),
    )))
    err = ctx.expect(e, ProtocolError, lambda m: m.related_seq == seq, requirement="TASK-019",
                     what=f"ProtocolError about the malformed reply (seq {seq})", timeout=10.0).body
    ctx.check("TASK-019", err.error.code is ErrorCode.MALFORMED, "code MALFORMED", err.error.code.name)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    code = str(got.get("error", {}).get("code", ""))
    ctx.check("TASK-019", code == "MALFORMED", "get of the return answers error MALFORMED", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-019", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "tasks/GEN-030-undecodable-reply-fails-the-task",
    requirements=["GEN-030", "GEN-010", "TASK-019", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E, which answers with a TaskReply for the right task and attempt "
        "whose inline value travels as an out-of-band frame, sent without that frame: a Payload names a frame "
        "that is not there (ZMQ-005), so the reply does not decode, but its header and its taskId and attempt "
        "can be read. The IUT must answer ProtocolError(MALFORMED) about the reply's sequence number and fail "
        "the task's return with MALFORMED at once (GEN-030), rather than leave it pending until E dies; then "
        "nothing is left in its tables."
    ),
    timeout=60.0,
)
def undecodable_reply(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    reply = TaskReply(st.task_id, st.attempt, (
        ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(b"\x07" * 100)),))
    seq = e.link(iut.peer_id).send(reply, oob_threshold=16, frames_hook=drop_payload_frames)
    err = ctx.expect(e, ProtocolError, lambda m: m.related_seq == seq, requirement="GEN-010",
                     what=f"ProtocolError about the undecodable reply (seq {seq})", timeout=10.0).body
    ctx.check("GEN-010", err.error.code is ErrorCode.MALFORMED, "code MALFORMED", err.error.code.name)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    code = str(got.get("error", {}).get("code", ""))
    ctx.check("GEN-030", code == "MALFORMED", "get of the return answers error MALFORMED within 5 s", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("GEN-030", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "tasks/GEN-030-GEN-008-refusal-without-error-fails-the-task",
    requirements=["GEN-030", "GEN-008", "ERR-003", "VAL-020", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E, which refuses the SubmitTask with a ProtocolError whose "
        "relatedSeq names it but whose required `error` is missing (a null pointer: malformed, VAL-020). The "
        "IUT must not answer that ProtocolError with a ProtocolError (GEN-008), and must still end the request "
        "it names: the task's return fails with MALFORMED at once (GEN-030), rather than stay pending until "
        "E dies."
    ),
    timeout=60.0,
)
def refusal_without_error(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    arrival = ctx.expect(e, SubmitTask, lambda m: m.function == "echo", requirement="TASK-001",
                         what="the IUT's SubmitTask")
    refusal = ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "placeholder", "GEN-004"), related_seq=arrival.envelope.seq)
    seq = e.link(iut.peer_id).send(refusal, frames_hook=drop_protocol_error_info)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    code = str(got.get("error", {}).get("code", ""))
    ctx.check("GEN-030", code == "MALFORMED", "get of the return answers error MALFORMED within 5 s", got)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    answered = e.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("GEN-008", not answered, "no ProtocolError about the malformed ProtocolError",
              [str(a.body) for a in answered])


@case(
    "tasks/GEN-041-reply-using-a-feature-not-in-use-fails-the-task",
    requirements=["GEN-041", "HS-004", "HS-017", "CNF-018"],
    summary=(
        "Suite executor E offers only `core`, so the session with the IUT has no `borrowing`. The IUT submits "
        "echo to E, which answers the right task and attempt with a TaskReply whose `retained` names a ref (a "
        "borrowing feature). The IUT must refuse it with ProtocolError(FEATURE_NOT_NEGOTIATED) about its "
        "sequence number and also fail the task's return with FEATURE_NOT_NEGOTIATED at once, rather than leave "
        "it pending until E dies; then nothing is left in its tables."
    ),
    timeout=60.0,
)
def reply_using_a_feature_not_in_use(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor", features=("core",))
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    kept = ctx.descriptor(e, ctx.new_id(e))
    reply = TaskReply(st.task_id, st.attempt, (
        ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable("x")),), retained=(kept,))
    seq = e.link(iut.peer_id).send(reply)
    err = ctx.expect(e, ProtocolError, lambda m: m.related_seq == seq, requirement="HS-004",
                     what=f"ProtocolError about the reply (seq {seq})", timeout=10.0).body
    ctx.check("HS-004", err.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED, "code FEATURE_NOT_NEGOTIATED",
              err.error.code.name)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    code = str(got.get("error", {}).get("code", ""))
    ctx.check("GEN-041", code == "FEATURE_NOT_NEGOTIATED",
              "get of the return answers error FEATURE_NOT_NEGOTIATED within 5 s", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("GEN-041", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "tasks/TASK-024-named-executor-never-queued",
    requirements=["TASK-024", "TASK-001", "CNF-008"],
    summary=(
        "The IUT's program names the executor of every task (the control channel's submit does). Suite executor "
        "E is added with 1 slot and holds the IUT's first task; suite peer F is added with 0 slots. A second task "
        "to E and a third to F must still be sent at once (slot limits, queueing and pipelining apply only to "
        "tasks the program did not place on a named executor); once E and F reply, the returns read back and "
        "nothing is left in the IUT's tables."
    ),
    timeout=60.0,
)
def named_executor_never_queued(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    f = ctx.wire_peer("spare")
    iut.add_peer(e, slots=1)
    iut.add_peer(f, slots=0)
    subs = [iut.submit("echo", [{"value": "a"}], executor=e.peer_id)]
    first = _next_task(ctx, e, "echo")  # E keeps it: its one slot is taken
    subs.append(iut.submit("echo", [{"value": "b"}], executor=e.peer_id))
    subs.append(iut.submit("echo", [{"value": "c"}], executor=f.peer_id))
    sent = [first]
    for peer, sub, name in ((e, subs[1], "E, whose one slot is taken"), (f, subs[2], "F, added with 0 slots")):
        st: SubmitTask = ctx.expect(peer, SubmitTask, lambda m, t=sub["task_id"]: m.task_id == t, requirement="TASK-024",
                                    what=f"the SubmitTask of {sub['task_id']} at {name}, sent at once", timeout=5.0).body
        sent.append(st)
    for peer, st, value in ((e, sent[0], "a"), (e, sent[1], "b"), (f, sent[2], "c")):
        peer.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
            ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable(value)),)))
    for sub, value in zip(subs, "abc"):
        [rid] = sub["returns"]
        got = iut.get(rid, timeout_ms=10_000)
        ctx.check("TASK-024", got == {"value": value}, f"get of {rid} answers {value!r}", got)
        iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-024", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the three tasks and their returns forgotten once dropped", (counts, iut.table()))


def _refusal(ctx: CaseContext, iut: IUT, op: str, what: str, requirement: str, **args: object) -> None:
    """``op`` must be answered ``ok: false`` with ``bad_request`` (CNF-024, CNF-029)."""
    try:
        result = iut.control(op, **args)
    except ControlError as exc:
        ctx.check(requirement, exc.code == "bad_request", f"{what}: ok false with bad_request", f"{exc.code}: {exc.message}")
    else:
        ctx.check(requirement, False, f"{what}: ok false with bad_request", f"ok true: {result!r}")


@case(
    "tasks/CNF-029-CNF-024-control-refusals-and-failures-through-get",
    requirements=["CNF-029", "CNF-024", "TASK-024", "CNF-018"],
    summary=(
        "Which control requests fail at once and which fail later through get. Answered ok false with "
        "bad_request: a get, drop or ref argument naming a ref the control channel does not hold (never a "
        "registry code such as UNKNOWN_OBJECT), a submit to a PeerId the IUT was never told about or to itself, "
        "a cancel of a task it keeps no record of, a get without timeout_ms. Answered ok true and failed through "
        "get: a submit to an executor the IUT has fenced (it said Goodbye), whose return fails with WORKER_DIED."
    ),
    timeout=60.0,
)
def control_refusals(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=0)
    unheld = f"{e.peer_id}.0.999"
    _refusal(ctx, iut, "get", "get of a ref the control channel does not hold", "CNF-024", object_id=unheld, timeout_ms=1000)
    _refusal(ctx, iut, "drop", "drop of a ref the control channel does not hold", "CNF-024", object_id=unheld)
    _refusal(ctx, iut, "submit", "submit with a ref argument the control channel does not hold", "CNF-024",
             function="echo", args=[{"ref": unheld}], executor=e.peer_id)
    _refusal(ctx, iut, "submit", "submit to a PeerId never added", "CNF-029",
             function="echo", args=[{"value": 1}], executor="nobody-ever-added")
    _refusal(ctx, iut, "submit", "submit to the IUT itself", "CNF-029",
             function="echo", args=[{"value": 1}], executor=iut.peer_id)
    _refusal(ctx, iut, "cancel", "cancel of a task the IUT never submitted", "CNF-029", task_id=f"{iut.peer_id}.0.999")
    x = iut.put(7)
    _refusal(ctx, iut, "get", "get without timeout_ms", "CNF-029", object_id=x)
    iut.drop(x)
    sub = iut.submit("echo", [{"value": "before"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable("before")),)))
    first = iut.get(sub["returns"][0], timeout_ms=10_000)
    ctx.check("TASK-005", first == {"value": "before"}, "get of the first task's return answers 'before'", first)
    iut.drop(sub["returns"][0])
    leave_with_goodbye(ctx, e, iut)
    try:
        late = iut.submit("echo", [{"value": "after"}], executor=e.peer_id)
    except ControlError as exc:
        ctx.check("CNF-029", False, "a submit to a fenced executor answered ok true", f"{exc.code}: {exc.message}")
        return
    [rid] = late["returns"]
    got = iut.get(rid, timeout_ms=10_000)
    ctx.check("TASK-024", got.get("error", {}).get("code") == "WORKER_DIED",
              "its return fails with WORKER_DIED through get", got)
    iut.drop(rid)


@case(
    "tasks/VAL-019-TASK-019-return-without-its-member",
    requirements=["VAL-019", "TASK-019", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E, which answers with a TaskReply naming the right return id "
        "with kind inline but no value. The reply is malformed: the IUT must answer it with "
        "ProtocolError(MALFORMED) and fail the return with MALFORMED, rather than adopt it (as a value of "
        "nothing, or as an error it made up) or leave it pending; then nothing is left in its tables."
    ),
    timeout=60.0,
)
def return_without_its_member(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE),)))
    err = ctx.expect(e, ProtocolError, lambda m: m.related_seq == seq, requirement="VAL-019",
                     what=f"ProtocolError about the malformed reply (seq {seq})", timeout=10.0).body
    ctx.check("VAL-019", err.error.code is ErrorCode.MALFORMED, "code MALFORMED", err.error.code.name)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    ctx.check("VAL-019", got.get("error", {}).get("code") == "MALFORMED", "get of the return answers error MALFORMED", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-019", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "tasks/VAL-019-TASK-019-stored-return-held-elsewhere",
    requirements=["VAL-019", "TASK-019", "CNF-018"],
    summary=(
        "The IUT submits echo to suite executor E, which answers with a TaskReply whose return is stored, "
        "of a plausible size, but names as its location a PeerId other than E (one the IUT has no address "
        "for). The location of a stored return must be the executor that sent the reply: the IUT must "
        "answer ProtocolError(MALFORMED) and fail the return with MALFORMED, not record a location it "
        "cannot reach (or quietly replace it with E); then nothing is left in its tables."
    ),
    timeout=60.0,
)
def stored_return_held_elsewhere(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    elsewhere = ReturnValue(st.return_ids[0], ReturnKind.STORED, location="suite-nobody", size=4096)
    seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (elsewhere,)))
    err = ctx.expect(e, ProtocolError, lambda m: m.related_seq == seq, requirement="VAL-019",
                     what=f"ProtocolError about the reply naming another holder (seq {seq})", timeout=10.0).body
    ctx.check("VAL-019", err.error.code is ErrorCode.MALFORMED, "code MALFORMED", err.error.code.name)
    [rid] = sub["returns"]
    got = iut.get(rid, timeout_ms=5_000)
    ctx.check("VAL-019", got.get("error", {}).get("code") == "MALFORMED", "get of the return answers error MALFORMED", got)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    counts = iut.counts()
    ctx.check("TASK-019", counts.get("submitted_tasks") == 0 and not iut.table(),
              "the failed task and its return forgotten once dropped", (counts, iut.table()))


@case(
    "tasks/VAL-019-BOR-013-grants-in-unused-members-released",
    requirements=["VAL-019", "VAL-020", "BOR-013", "BOR-005", "TASK-018", "CNF-018"],
    features=("core", "borrowing"),
    summary=(
        "The IUT submits a task with three returns to suite executor E, which answers with returns that also "
        "set members their kind does not use, each naming a ref owned by suite peer O with a grant made out to "
        "the IUT: an inline return whose value embeds V and whose nested lists V's grant again and Y's; a "
        "stored return (at E) whose value embeds Z; an error return (TASK_FAILED) whose value embeds W. The "
        "reply is well formed (no ProtocolError) and adopted: get of the inline return answers [V] and of the "
        "error return TASK_FAILED. The IUT must not read the unused members (no entry for Y, Z or W) but must "
        "release the grants of Y, Z and W to O at once; V's grant, which the member the kind uses names too, "
        "stays until the program drops the return and V."
    ),
    timeout=60.0,
)
def grants_in_unused_members_released(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    o = ctx.wire_peer("owner")
    iut.add_peer(e, slots=1)
    v, y, z, w = (ctx.new_id(o) for _ in range(4))
    dv, dy, dz, dw = (_granted(ctx, o, iut, oid, size=8) for oid in (v, y, z, w))
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id, num_returns=3)
    st = _next_task(ctx, e, "echo")
    r_inline, r_stored, r_error = st.return_ids
    seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(r_inline, ReturnKind.INLINE, value=portable([PortableRef(0)], (dv,)), nested=(dv, dy)),
        ReturnValue(r_stored, ReturnKind.STORED, value=portable([PortableRef(0)], (dz,)), location=e.peer_id, size=4096),
        ReturnValue(r_error, ReturnKind.ERROR, value=portable([PortableRef(0)], (dw,)),
                    error=ErrorInfo(ErrorCode.TASK_FAILED, "on purpose", "TASK-007")),
    )))
    unused = {y: dy, z: dz, w: dw}
    ctx.wait_until(o, lambda: all(d.forward_id in released_forward_ids(o, oid) for oid, d in unused.items()),
                   requirement="VAL-019",
                   what="ReleaseBorrows for the grants of Y, Z and W, named only in members their return's kind does not use",
                   timeout=10.0)
    refused = e.received(ProtocolError, lambda m: m.related_seq == seq)
    ctx.check("VAL-020", not refused, "the reply with unused members set is not refused (no ProtocolError)",
              [str(a.body) for a in refused])
    got = iut.get(sub["returns"][0], timeout_ms=10_000)
    ctx.require("VAL-019", got == {"value": [Ref(v)]}, f"get of the inline return answers [{{'ref': {v!r}}}] (its value)", got)
    failed = iut.get(sub["returns"][2], timeout_ms=10_000)
    ctx.check("TASK-018", failed.get("error", {}).get("code") == "TASK_FAILED", "get of the error return answers TASK_FAILED",
              failed)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    for oid in unused:
        ctx.check("VAL-019", iut.entry(oid) is None, f"nothing recorded or held for {oid}, named in an unused member",
                  iut.entry(oid))
    ctx.check("VAL-019", dv.forward_id not in released_forward_ids(o, v),
              "V's grant kept while the program holds the return and V (the used member names it too)",
              sorted(released_forward_ids(o, v)))
    for rid in (*sub["returns"], v):
        iut.drop(rid)
    ctx.wait_until(o, lambda: dv.forward_id in released_forward_ids(o, v), requirement="BOR-005",
                   what=f"ReleaseBorrows for V's grant {dv.forward_id!r} once the return and V are dropped", timeout=10.0)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    ctx.check("", not iut.table(), "an empty table at the end", iut.table())


@case(
    "tasks/VAL-021-CNF-018-undecodable-value-got-as-malformed",
    requirements=["VAL-021", "CNF-018", "VAL-004"],
    summary=(
        "The IUT submits echo to suite executor E, which answers with a well-formed TaskReply whose inline "
        "portable value has one word of zero bytes after its message (VAL-004). The reply is not malformed "
        "(no ProtocolError about it): the value fails only where it is read, so the control channel's get "
        "answers {\"error\": {\"code\": \"MALFORMED\"}} (CNF-018; never ok: false, never another code), and "
        "nothing in the IUT's tables changes: the return's entry is the same after the get as before it, and a "
        "second get decodes the value again and fails the same way."
    ),
    timeout=60.0,
)
def undecodable_value_got_as_malformed(ctx: CaseContext) -> None:
    from dataclasses import replace

    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub = iut.submit("echo", [{"value": "x"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    good = portable("x")
    padded = replace(good, data=bytes(good.data) + bytes(8))
    seq = e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (
        ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=padded),)))
    ctx.wait_until(e, lambda: e.link(iut.peer_id).acked >= seq, requirement="SES-003",
                   what=f"the IUT's ack of the reply (seq {seq})")
    [rid] = sub["returns"]
    before = iut.entry(rid)
    answers = []
    for attempt in ("first", "second"):
        try:
            answers.append(iut.control("get", object_id=rid, timeout_ms=5_000, timeout=15.0))
        except ControlError as exc:
            answers.append(f"ok: false, {exc.code}: {exc.message[:120]}")
        got = answers[-1]
        code = got.get("error", {}).get("code") if isinstance(got, dict) else None
        ctx.check("VAL-021", code == "MALFORMED",
                  f"the {attempt} get of the return answers {{\"error\": {{\"code\": \"MALFORMED\"}}}}", got)
    after = iut.entry(rid)
    ctx.check("VAL-021", before is not None and after == before,
              "the return's table entry is the same after both gets as before them", {"before": before, "after": after})
    errors = [str(a.body) for a in e.received(ProtocolError, lambda m: m.related_seq == seq)]
    ctx.check("VAL-021", not errors, f"no ProtocolError about the reply (seq {seq}): its value is read only when got",
              errors)
    iut.drop(rid)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")


@case(
    "tasks/ZMQ-007-TASK-011-argument-beyond-the-executors-frame-limit",
    requirements=["ZMQ-007", "TASK-011", "CNF-018", "TASK-001"],
    summary=(
        "Suite executor E announces the smallest frame limit allowed (maxFrameBytes 1 MiB). The IUT is asked to "
        "submit echo to E with a value argument of 1.5 MiB, then echo('probe'). No message beyond E's limit may "
        "arrive at E: the IUT either stores the value and passes it as a ref (a SubmitTask within the limit, the "
        "recommendation), or fails the task at home, so that get of its return answers RESOURCE_EXHAUSTED. The "
        "probe, sent after it on the same session, must arrive and be answered."
    ),
    timeout=60.0,
)
def argument_beyond_frame_limit(ctx: CaseContext) -> None:
    mib = 1 << 20
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor", max_frame_bytes=mib)
    iut.add_peer(e, slots=1)
    data = bytes(range(256)) * (6 * 1024)
    big = iut.submit("echo", [{"value": data}], executor=e.peer_id)["returns"][0]
    probe = iut.submit("echo", [{"value": "probe"}], executor=e.peer_id)["returns"][0]
    # Everything the IUT sent on the session before the probe has arrived (or been dropped) once
    # the probe is there; a message dropped for its size leaves a gap the probe waits behind.
    ctx.wait_until(e, lambda: bool(e.malformed or e.received(SubmitTask, lambda m: m.return_ids == (probe,))),
                   requirement="TASK-001", what="the IUT's SubmitTask of echo('probe')")
    ctx.require("ZMQ-007", not e.malformed, "no message beyond the 1 MiB E announced",
                [f"{why} (frames {sizes})" for _, why, sizes in e.malformed])
    st: SubmitTask = e.received(SubmitTask, lambda m: m.return_ids == (probe,))[0].body
    sent = e.received(SubmitTask, lambda m: m.return_ids == (big,))
    if sent:
        kinds = [a.kind.value for a in sent[0].body.args]
        ctx.note(f"the 1.5 MiB argument went as {kinds} (stored and passed by reference, as ZMQ-007 recommends)")
    else:
        got = iut.get(big, timeout_ms=10_000)
        ctx.check("ZMQ-007", got.get("error", {}).get("code") == "RESOURCE_EXHAUSTED",
                  "the task not sent fails at home: get answers RESOURCE_EXHAUSTED", got)
    e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt,
                                        (ReturnValue(probe, ReturnKind.INLINE, value=portable("probe")),)))
    ctx.check("TASK-001", iut.get(probe).get("value") == "probe", "get(probe) = 'probe'", iut.get(probe))


@case(
    "tasks/ZMQ-021-ZMQ-007-queued-task-checked-with-the-announced-limit",
    requirements=["ZMQ-021", "ZMQ-007", "HS-001", "TASK-001"],
    summary=(
        "Suite executor E does not answer the IUT's first Hello. While the handshake is in progress the IUT is "
        "asked to submit echo to E with a value argument of 1.5 MiB, then echo('probe'): both wait in the "
        "IUT's queue (HS-001). E then welcomes the IUT with the smallest frame limit allowed, 1 MiB. Each queued "
        "message is checked against that limit when it is sent: no message beyond it may arrive at E (the IUT "
        "passes the value by reference, or fails the task at home, so that get answers RESOURCE_EXHAUSTED), "
        "and the probe arrives and is answered."
    ),
    timeout=60.0,
)
def queued_task_checked_with_announced_limit(ctx: CaseContext) -> None:
    mib = 1 << 20
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor", max_frame_bytes=mib)
    e.accept_hello = False  # the case lets the IUT's Hello go unanswered until both tasks are queued
    iut.add_peer(e, slots=1)
    data = bytes(range(256)) * (6 * 1024)
    big = iut.submit("echo", [{"value": data}], executor=e.peer_id)["returns"][0]
    probe = iut.submit("echo", [{"value": "probe"}], executor=e.peer_id)["returns"][0]
    ctx.expect(e, Hello, requirement="HS-001", what="the IUT's Hello to E")
    ctx.check("HS-001", not e.received(SubmitTask), "nothing but Hello before the Welcome", "a SubmitTask arrived")
    e._call(lambda: setattr(e, "accept_hello", True))  # the next Hello (HS-008) is welcomed
    ctx.wait_until(e, lambda: bool(e.malformed or e.received(SubmitTask, lambda m: m.return_ids == (probe,))),
                   requirement="TASK-001", what="the IUT's SubmitTask of echo('probe') after the Welcome", timeout=20.0)
    ctx.require("ZMQ-021", not e.malformed, "no queued message beyond the 1 MiB E announced in its Welcome",
                [f"{why} (frames {sizes})" for _, why, sizes in e.malformed])
    st: SubmitTask = e.received(SubmitTask, lambda m: m.return_ids == (probe,))[0].body
    sent = e.received(SubmitTask, lambda m: m.return_ids == (big,))
    if sent:
        ctx.note(f"the 1.5 MiB argument went as {[a.kind.value for a in sent[0].body.args]}")
    else:
        got = iut.get(big, timeout_ms=10_000)
        ctx.check("ZMQ-021", got.get("error", {}).get("code") == "RESOURCE_EXHAUSTED",
                  "the queued task not sent fails at home: get answers RESOURCE_EXHAUSTED", got)
    e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt,
                                        (ReturnValue(probe, ReturnKind.INLINE, value=portable("probe")),)))
    ctx.check("TASK-001", iut.get(probe).get("value") == "probe", "get(probe) = 'probe'", iut.get(probe))


@case(
    "borrowing/OBJ-017-CNF-018-owner-answers-become-get-outcomes",
    requirements=["OBJ-017", "CNF-018", "ERR-003", "OBJ-002"],
    features=("core", "borrowing"),
    summary=(
        "The IUT submits echo to suite executor E, which answers with a value embedding five refs X1..X5 owned by "
        "suite peer O (grants made out to the IUT). The IUT's program reads the value and then each X, and O "
        "answers each GetObjectStatus differently: X1 FAILED with TASK_FAILED, X2 FREED without an error, X3 "
        "UNKNOWN with NOT_OWNER, X4 UNKNOWN without an error, and X5 with a ProtocolError(RESOURCE_EXHAUSTED) "
        "naming the GetObjectStatus (ERR-003, as an owner refusing a wait under SEC-009 does). get must answer "
        "TASK_FAILED, OBJECT_FREED, NOT_OWNER, UNKNOWN_OBJECT and RESOURCE_EXHAUSTED, and a second get of X5 "
        "the same without asking O again: each outcome is final."
    ),
    timeout=60.0,
)
def owner_answers_become_outcomes(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    o = ctx.wire_peer("owner")
    iut.add_peer(e, slots=1)
    xs = [ctx.new_id(o) for _ in range(5)]
    descriptors = tuple(_granted(ctx, o, iut, x, size=8) for x in xs)
    r = iut.submit("echo", [{"value": "refs"}], executor=e.peer_id)["returns"][0]
    st = _next_task(ctx, e, "echo")
    e.link(iut.peer_id).send(TaskReply(st.task_id, st.attempt, (ReturnValue(
        st.return_ids[0], ReturnKind.INLINE, value=portable([PortableRef(i) for i in range(5)], descriptors)),)))
    value = iut.get(r).get("value")
    ctx.require("CNF-017", value == [Ref(x) for x in xs], "get(R) = the five refs", value)
    answers = {
        xs[0]: ObjectStatus(xs[0], ObjectState.FAILED, error=ErrorInfo(ErrorCode.TASK_FAILED, "failed at O", "TASK-007")),
        xs[1]: ObjectStatus(xs[1], ObjectState.FREED),
        xs[2]: ObjectStatus(xs[2], ObjectState.UNKNOWN, error=ErrorInfo(ErrorCode.NOT_OWNER, "not mine", "OBJ-007")),
        xs[3]: ObjectStatus(xs[3], ObjectState.UNKNOWN),
    }
    o.answer_status = lambda m: answers.get(m.object_id)
    expected = ["TASK_FAILED", "OBJECT_FREED", "NOT_OWNER", "UNKNOWN_OBJECT"]
    for x, code, what in zip(xs, expected, ("FAILED (TASK_FAILED)", "FREED", "UNKNOWN (NOT_OWNER)", "UNKNOWN")):
        got = iut.get(x, timeout_ms=10_000)
        ctx.check("OBJ-017", got.get("error", {}).get("code") == code, f"an owner's {what} answer: get answers {code}",
                  got, note=x)
    pending = iut.process.request_async("get", object_id=xs[4], timeout_ms=10_000)
    asked = ctx.expect(o, GetObjectStatus, lambda m: m.object_id == xs[4], requirement="OBJ-002",
                       what=f"GetObjectStatus for {xs[4]}")
    o.link(iut.peer_id).send(ProtocolError(ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, "too many waits", "SEC-009"),
                                           related_seq=asked.seq))
    try:
        got = pending.result(timeout=ctx.bound(20.0))
    except Exception as exc:  # a timeout of the control request, or the IUT gone
        ctx.fail("OBJ-017", "an answer to get once O refused the GetObjectStatus", f"{type(exc).__name__}: {exc}")
    ctx.check("OBJ-017", (got or {}).get("error", {}).get("code") == "RESOURCE_EXHAUSTED",
              "a ProtocolError naming the GetObjectStatus (RESOURCE_EXHAUSTED): get answers RESOURCE_EXHAUSTED", got)
    again = iut.get(xs[4], timeout_ms=10_000)
    ctx.check("OBJ-017", again.get("error", {}).get("code") == "RESOURCE_EXHAUSTED",
              "get again: the same outcome (the entry failed for good)", again)
    asks = len(o.received(GetObjectStatus, lambda m: m.object_id == xs[4]))
    ctx.check("OBJ-017", asks == 1, "O not asked again about X5", f"{asks} GetObjectStatus")
