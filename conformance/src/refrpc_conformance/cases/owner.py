"""Rules a loose implementation easily gets wrong, each with the IUT in the role that
must keep it: as owner, what it reclaims once an object settles (OWN-009, OWN-010,
OWN-013), a secondary copy that survives the primary (LOC-007), an argument nothing can
re-create (LIN-014) and a rebuild that dies (LIN-008); as submitter, a task sent once
(RPC-003), a retry decided from codes alone (RPC-015) and a re-sent reply (RPC-016); as
actor owner and host (ACT-005, ACT-012, ACT-016, ACT-024, ACT-029); as fetcher, status
lists of unequal length (LOC-024); as a peer that leaves (LIV-032); and the one
`error.requirement` a receiver reads (ERR-005) and long lists (GEN-011)."""

from __future__ import annotations

from refrpc.core.messages import (
    ActorState,
    ActorStatus,
    AddLocation,
    CreateActor,
    ErrorCode,
    ErrorInfo,
    FreeObjects,
    GetObjectStatus,
    KillActor,
    Goodbye,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import PortableRef, by_ref, by_value, make_bytes_value, portable, read_portable, stored_form
from .._case import case
from .._context import IUT, CaseContext
from .._wire import ExpectTimeout, Link, WirePeer
from ._common import expect_reply, leave_with_goodbye, open_session, released_forward_ids, task


def _next_task(ctx: CaseContext, e: WirePeer, function: str, *, requirement: str = "TASK-001") -> SubmitTask:
    st: SubmitTask = ctx.expect(e, SubmitTask, lambda m: m.function == function, requirement=requirement,
                                what=f"the IUT's SubmitTask({function})").body
    return st


def _delivered(ctx: CaseContext, peer: WirePeer, link: Link, seq: int, what: str) -> None:
    """Wait until the IUT acknowledges ``seq`` on ``link``: the message was delivered."""
    ctx.wait_until(peer, lambda: link.acked >= seq, requirement="SES-003", what=f"the IUT's ack of {what}")


def _status_now(ctx: CaseContext, peer: WirePeer, link: Link, object_id: str, *, requirement: str) -> ObjectStatus:
    """Ask the IUT (as owner) for an object's status without waiting; the answer to this request."""
    for earlier in peer.received(ObjectStatus, lambda m: m.object_id == object_id):
        earlier.consumed = True  # answers to earlier requests are not this one's
    link.send(GetObjectStatus(object_id, wait=False))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == object_id, requirement=requirement,
                                  what=f"ObjectStatus for {object_id}").body
    return st


def _executors(ctx: CaseContext) -> tuple[IUT, WirePeer, WirePeer]:
    """An IUT, the executor E1 its tasks name (no slots of its own), and a spare worker E2 with one slot."""
    iut = ctx.start_iut()
    e1 = ctx.wire_peer("dying-executor")
    e2 = ctx.wire_peer("spare-executor")
    iut.add_peer(e1, slots=0)
    iut.add_peer(e2, slots=1)
    return iut, e1, e2


def _code(got: dict) -> str:
    return str(got.get("error", {}).get("code", ""))


@case(
    "objects/OWN-009-OWN-010-OWN-013-returns-dropped-while-pending",
    requirements=["OWN-009", "OWN-010", "OWN-013", "OWN-005", "OBJ-002", "OBJ-003", "CNF-018"],
    summary=(
        "The IUT submits echo and fail to suite executor E, which holds both. Suite peer W asks for each return "
        "with GetObjectStatus(wait = true); the IUT's program then drops both returns while they are pending: "
        "they must stay pending (OWN-009; W's waits are not answered early). E replies, echo's return stored at E "
        "and fail's an error: W must be answered READY (location E) and FAILED (TASK_FAILED) first (OWN-010), "
        "and then both are reclaimed at once: FreeObjects for the stored return reaches E, a later status is "
        "FREED for both (OWN-013 for the failed one) and the table lists neither. A third task whose return "
        "failed while held is reclaimed the same way once the program drops it (OWN-013)."
    ),
    timeout=60.0,
)
def returns_dropped_while_pending(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    w = ctx.wire_peer("watcher")
    iut.add_peer(e, slots=1)
    link_w = ctx.session(w, iut)
    sub_a = iut.submit("echo", [{"value": "kept by nobody"}], executor=e.peer_id)
    st_a = _next_task(ctx, e, "echo")
    sub_b = iut.submit("fail", [{"value": "raised for nobody"}], executor=e.peer_id)
    st_b = _next_task(ctx, e, "fail")
    [ra], [rb] = sub_a["returns"], sub_b["returns"]
    last = 0
    for rid in (ra, rb):
        last = link_w.send(GetObjectStatus(rid, wait=True))
    _delivered(ctx, w, link_w, last, "W's GetObjectStatus(wait) requests")
    iut.drop(ra)
    iut.drop(rb)
    iut.quiesce(2_000)
    early = [a.body for a in w.received(ObjectStatus) if a.body.object_id in (ra, rb)]
    ctx.check("OWN-009", not early, "no answer to W while both returns are pending (out of scope, still pending)",
              [f"{s.object_id}: {s.state.value}" for s in early])
    for rid in (ra, rb):
        entry = iut.entry(rid)
        ctx.check("OWN-009", entry is not None and entry.get("state") == "pending",
                  f"{rid} still in the table as pending after the program dropped it", entry)
    link_e = e.link(iut.peer_id)
    link_e.send(TaskReply(st_a.task_id, st_a.attempt, (ReturnValue(st_a.return_ids[0], ReturnKind.STORED, location=e.peer_id,
                                                                   size=150_000),)))
    link_e.send(TaskReply(st_b.task_id, st_b.attempt, (ReturnValue(
        st_b.return_ids[0], ReturnKind.ERROR, error=ErrorInfo(ErrorCode.TASK_FAILED, "raised for nobody", "TASK-007")),)))
    st: ObjectStatus = ctx.expect(w, ObjectStatus, lambda m: m.object_id == ra, requirement="OWN-010",
                                  what=f"the answer to W's wait on {ra}").body
    ctx.check("OWN-010", st.state is ObjectState.READY and list(st.locations) == [e.peer_id],
              f"READY with location [{e.peer_id}]: the wait answered before the object is reclaimed",
              f"{st.state.value} locations {list(st.locations)}")
    st = ctx.expect(w, ObjectStatus, lambda m: m.object_id == rb, requirement="OWN-010",
                    what=f"the answer to W's wait on {rb}").body
    ctx.check("OWN-010", st.state is ObjectState.FAILED and st.error is not None and st.error.code is ErrorCode.TASK_FAILED,
              "FAILED with TASK_FAILED: the wait answered before the object is reclaimed",
              f"{st.state.value} {st.error.code.value if st.error else None}")
    ctx.wait_until(e, lambda: any(ra in a.body.object_ids for a in e.received(FreeObjects)), requirement="OWN-009",
                   what=f"FreeObjects for {ra} once it settled out of scope", timeout=10.0)
    for rid, rule in ((ra, "OWN-009"), (rb, "OWN-013")):
        st = _status_now(ctx, w, link_w, rid, requirement=rule)
        ctx.check(rule, st.state is ObjectState.FREED, f"{rid} FREED: reclaimed once settled", st.state.value)
        ctx.check(rule, iut.entry(rid) is None, f"no table entry for {rid}", iut.entry(rid))
    sub_c = iut.submit("fail", [{"value": "raised while held"}], executor=e.peer_id)
    st_c = _next_task(ctx, e, "fail")
    [rc] = sub_c["returns"]
    link_e.send(TaskReply(st_c.task_id, st_c.attempt, (ReturnValue(
        st_c.return_ids[0], ReturnKind.ERROR, error=ErrorInfo(ErrorCode.TASK_FAILED, "raised while held", "TASK-007")),)))
    got = iut.get(rc, timeout_ms=10_000)
    ctx.require("CNF-018", _code(got) == "TASK_FAILED", "get of the held failed return answers TASK_FAILED", got)
    st = _status_now(ctx, w, link_w, rc, requirement="OWN-013")
    ctx.check("OWN-013", st.state is ObjectState.FAILED, "FAILED while the program holds it", st.state.value)
    iut.drop(rc)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    st = _status_now(ctx, w, link_w, rc, requirement="OWN-013")
    ctx.check("OWN-013", st.state is ObjectState.FREED, "FREED once the program dropped the failed return (its error dropped)",
              f"{st.state.value} {st.error.code.value if st.error else ''}")
    ctx.check("OWN-013", iut.entry(rc) is None, f"no table entry for {rc}", iut.entry(rc))


@case(
    "objects/LOC-007-secondary-copy-keeps-the-object-ready",
    requirements=["LOC-007", "LOC-002", "OBJ-002", "FET-001"],
    summary=(
        "The IUT submits echo to suite executor E, which replies with the return stored at E (the primary copy). "
        "Suite peer F announces a secondary copy (AddLocation) and serves it. E then leaves (Goodbye): the primary "
        "copy is lost but a secondary remains, so the object must stay READY: F's status request is answered "
        "READY listing F (not FAILED with OBJECT_LOST), and the IUT's get reads the value from F."
    ),
    timeout=60.0,
)
def secondary_copy_keeps_the_object_ready(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    f = ctx.wire_peer("secondary")
    iut.add_peer(e, slots=1)
    link_f = ctx.session(f, iut)
    value = portable("a copy outlives its primary " * 8)
    form = stored_form(value)
    iut.submit("echo", [{"value": "unused"}], executor=e.peer_id)
    st_a = _next_task(ctx, e, "echo")
    rid = st_a.return_ids[0]
    e.link(iut.peer_id).send(TaskReply(st_a.task_id, st_a.attempt, (ReturnValue(rid, ReturnKind.STORED, location=e.peer_id,
                                                                                 size=len(form)),)))
    st = _status_now(ctx, f, link_f, rid, requirement="TASK-010")
    ctx.require("TASK-010", st.state is ObjectState.READY, "READY once E replied", st.state.value)
    f.serve(rid, form)
    seq = link_f.send(AddLocation(rid, len(form)))
    _delivered(ctx, f, link_f, seq, "F's AddLocation")
    leave_with_goodbye(ctx, e, iut)
    iut.quiesce(5_000)
    st = _status_now(ctx, f, link_f, rid, requirement="LOC-007")
    ctx.check("LOC-007", st.state is ObjectState.READY and f.peer_id in st.locations and e.peer_id not in st.locations,
              f"READY listing {f.peer_id} (the secondary copy) and not the dead primary {e.peer_id}",
              f"{st.state.value} locations {list(st.locations)} {st.error.code.value if st.error else ''}")
    got = iut.get(rid, timeout_ms=10_000)
    ctx.check("LOC-007", got.get("value") == read_portable(value), "get reads the value from the secondary copy", got)


@case(
    "borrowing/RPC-016-resent-reply-keeps-the-adopted-grant",
    requirements=["RPC-016", "TASK-015", "BOR-013", "BOR-005", "GC-002"],
    features=("core", "borrowing"),
    summary=(
        "The IUT submits echo to suite executor E, which replies with an inline value embedding Y (owned by suite "
        "peer O) under a grant made out to the IUT; the IUT adopts it. E then re-sends the same TaskReply under a "
        "new sequence number (as an executor does for a duplicate, RPC-001). The IUT already records that grant, "
        "so it must not release it on the re-sent reply's account: O gets no ReleaseBorrows for it while the "
        "program holds the return. Once the program drops the return, the grant is released, once."
    ),
    timeout=60.0,
)
def resent_reply_keeps_the_adopted_grant(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    o = ctx.wire_peer("owner")
    iut.add_peer(e, slots=1)
    y = ctx.new_id(o)
    fid = ctx.new_id(o)
    o.grants[(y, fid)] = iut.peer_id
    dy = ctx.descriptor(o, y, size_hint=8, forward_id=fid)
    sub = iut.submit("echo", [{"value": "unused"}], executor=e.peer_id)
    st = _next_task(ctx, e, "echo")
    [rid] = sub["returns"]
    reply = TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE,
                                                           value=portable([PortableRef(0)], (dy,))),))
    link_e = e.link(iut.peer_id)
    _delivered(ctx, e, link_e, link_e.send(reply), "the TaskReply")
    entry = iut.entry(rid)
    ctx.require("TASK-010", entry is not None and entry.get("state") == "ready", "the first reply adopted: the return ready",
                entry)
    seq = link_e.send(reply)
    _delivered(ctx, e, link_e, seq, "the re-sent TaskReply")
    ctx.check("", iut.quiesce(10_000), "the IUT quiescent within 10 s", "not quiescent")
    ctx.check("RPC-016", fid not in released_forward_ids(o, y),
              f"no ReleaseBorrows for the grant {fid!r}: the adopted value still relies on it",
              [str(a.body) for a in o.received(ReleaseBorrows)])
    iut.drop(rid)
    ctx.wait_until(o, lambda: fid in released_forward_ids(o, y), requirement="BOR-005",
                   what=f"ReleaseBorrows for {fid!r} once the return is dropped", timeout=10.0)
    iut.quiesce(5_000)
    count = sum(1 for a in o.received(ReleaseBorrows) for rel in a.body.releases if rel.object_id == y and fid in rel.forward_ids)
    ctx.check("RPC-016", count == 1, "the grant released exactly once", f"{count} releases")


@case(
    "rpc/RPC-015-propagated-failure-retried-like-any",
    requirements=["RPC-015", "RPC-005", "RPC-009", "TASK-009"],
    features=("core", "recovery"),
    summary=(
        "The IUT submits fail to suite executor E, whose reply fails its return X with TASK_FAILED. The IUT then "
        "submits echo(ref X) to E with max_retries 1 and retry_exceptions: E answers the return TASK_FAILED, as an "
        "executor passes on an argument's error (TASK-009). The IUT must decide the retry from the code alone, "
        "whatever it knows of X: attempt 2 reaches E; its TASK_FAILED ends the task (the budget spent), and get "
        "answers TASK_FAILED."
    ),
    timeout=60.0,
)
def propagated_failure_retried_like_any(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    sub_x = iut.submit("fail", [{"value": "X fails"}], executor=e.peer_id)
    st_x = _next_task(ctx, e, "fail")
    link_e = e.link(iut.peer_id)
    failed = ErrorInfo(ErrorCode.TASK_FAILED, "X fails", "TASK-007")
    link_e.send(TaskReply(st_x.task_id, st_x.attempt, (ReturnValue(st_x.return_ids[0], ReturnKind.ERROR, error=failed),)))
    [x] = sub_x["returns"]
    ctx.require("CNF-018", _code(iut.get(x, timeout_ms=10_000)) == "TASK_FAILED", "X failed with TASK_FAILED", "")
    sub = iut.submit("echo", [{"ref": x}], executor=e.peer_id, max_retries=1, retry_exceptions=True)
    [rid] = sub["returns"]
    first = ctx.expect(e, SubmitTask, lambda m: m.function == "echo", requirement="RPC-015",
                       what="the IUT's SubmitTask(echo(ref X)) (sent, though X failed: the executor resolves it)").body
    propagated = ErrorInfo(ErrorCode.TASK_FAILED, f"argument {x} failed: X fails", "TASK-009")
    link_e.send(TaskReply(first.task_id, first.attempt, (ReturnValue(first.return_ids[0], ReturnKind.ERROR, error=propagated),)))
    again = ctx.expect(e, SubmitTask, lambda m: m.task_id == first.task_id and m.attempt == first.attempt + 1,
                       requirement="RPC-015", what="attempt 2 of echo(ref X): a propagated TASK_FAILED is retried "
                       "like a raised one", timeout=10.0).body
    link_e.send(TaskReply(again.task_id, again.attempt, (ReturnValue(again.return_ids[0], ReturnKind.ERROR, error=propagated),)))
    got = iut.get(rid, timeout_ms=10_000)
    ctx.check("RPC-015", _code(got) == "TASK_FAILED", "get answers TASK_FAILED once the budget is spent", got)
    iut.quiesce(3_000)
    attempts = sorted(a.body.attempt for a in e.received(SubmitTask, lambda m: m.task_id == first.task_id))
    ctx.check("RPC-009", attempts == [1, 2], "attempts 1 and 2, no more", attempts)


@case(
    "actors/ACT-016-dead-from-a-live-host-is-final",
    requirements=["ACT-016", "ACT-006", "ACT-004", "ACT-011", "CNF-018"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter hosted by suite peer H with maxRestarts 2, H reports it ALIVE, and the IUT calls "
        "add(1). H, alive, then reports ActorStatus(DEAD) and only after it answers the call 6 (a call that was "
        "registering may be answered after the DEAD). The IUT must settle the pending call with that reply (get "
        "answers 6), treat the actor as dead for good: no CreateActor to H or to the spare executor S whatever "
        "restarts remain, and a later call fails with ACTOR_DIED (at once, or answered so by H)."
    ),
    timeout=60.0,
)
def dead_from_a_live_host_is_final(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    s = ctx.wire_peer("spare")
    iut.add_peer(h, slots=1)
    iut.add_peer(s, slots=1)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 5}], "host": h.peer_id,
                                            "max_restarts": 2})["actor_id"]
    create: CreateActor = ctx.expect(h, CreateActor, requirement="ACT-001", what=f"CreateActor at {h.peer_id}").body
    link_h = h.link(iut.peer_id)
    link_h.send(ActorStatus(create.actor_id, ActorState.ALIVE))
    r1 = iut.control("actor_call", actor_id=actor, method="add", args=[{"value": 1}])["returns"][0]
    call: SubmitTask = ctx.expect(h, SubmitTask, lambda m: m.actor_id == actor, requirement="ACT-003", what="the call add(1)").body
    link_h.send(ActorStatus(actor, ActorState.DEAD, ErrorInfo(ErrorCode.ACTOR_DIED, "the instance was lost", "ACT-008")))
    link_h.send(TaskReply(call.task_id, call.attempt, (ReturnValue(call.return_ids[0], ReturnKind.INLINE, value=portable(6)),)))
    got = iut.get(r1, timeout_ms=10_000)
    ctx.check("ACT-016", got.get("value") == 6, "the call pending at the DEAD settled by its reply: 6", got)
    r2 = iut.control("actor_call", actor_id=actor, method="add", args=[{"value": 1}])["returns"][0]

    def answer_late_calls() -> None:
        for a in h.received(SubmitTask, lambda m: m.actor_id == actor and m.task_id != call.task_id):
            if a.body.task_id not in answered:
                answered.add(a.body.task_id)
                link_h.send(TaskReply(a.body.task_id, a.body.attempt, tuple(
                    ReturnValue(r, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.ACTOR_DIED, "dead", "ACT-004"))
                    for r in a.body.return_ids)))

    answered: set[str] = set()
    try:
        h.wait_until(lambda: bool(h.received(SubmitTask, lambda m: m.actor_id == actor and m.task_id != call.task_id)),
                     ctx.bound(1.0), "a call sent after the DEAD")
    except ExpectTimeout:
        pass
    answer_late_calls()
    got = iut.get(r2, timeout_ms=10_000)
    ctx.check("ACT-016", _code(got) == "ACTOR_DIED", "a call after the DEAD fails with ACTOR_DIED", got)
    iut.quiesce(5_000)
    creates = [f"{p.peer_id}: {a.body.actor_id}" for p in (h, s) for a in p.received(CreateActor)]
    ctx.check("ACT-016", creates == [f"{h.peer_id}: {actor}"],
              "one CreateActor only: never re-created after a live host's DEAD, whatever maxRestarts leaves", creates)


@case(
    "actors/ACT-024-ACT-033-handle-names-the-host-address",
    requirements=["ACT-024", "ACT-033", "ACT-019"],
    features=("core", "actors"),
    summary=(
        "The IUT creates a Counter hosted by suite peer H with its handle object, at H's address as the suite gave "
        "it (add_peer). Suite peer B reads the handle object (GetObjectStatus): its descriptor must list actorId, "
        "owner, host, hostAddress and className in that order, with hostAddress exactly the address the IUT was "
        "given for H (never empty, since H is another peer)."
    ),
)
def handle_names_the_host_address(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    h = ctx.wire_peer("host")
    b = ctx.wire_peer("reader")
    iut.add_peer(h, slots=1)
    link_b = ctx.session(b, iut)
    actor = iut.control("actor_create", **{"class": "Counter", "args": [{"value": 0}], "host": h.peer_id,
                                            "handle": True})["actor_id"]
    create: CreateActor = ctx.expect(h, CreateActor, requirement="ACT-001", what=f"CreateActor at {h.peer_id}").body
    h.link(iut.peer_id).send(ActorStatus(create.actor_id, ActorState.ALIVE))
    st = _status_now(ctx, b, link_b, actor, requirement="ACT-019")
    ctx.require("ACT-019", st.state is ObjectState.READY and st.value is not None, "the handle object READY with an inline value",
                f"{st.state.value} {st.value!r:.80}")
    assert st.value is not None
    try:
        descriptor = read_portable(st.value)
    except Exception as exc:  # judged below
        descriptor = f"not portable: {exc}"
    ctx.require("ACT-019", isinstance(descriptor, dict), "a portable map", descriptor)
    assert isinstance(descriptor, dict)
    ctx.check("ACT-024", descriptor.get("hostAddress") != "", "hostAddress filled: the host is another peer",
              repr(descriptor.get("hostAddress")))
    ctx.check("ACT-033", descriptor.get("hostAddress") == h.address,
              f"hostAddress = {h.address!r}, the address the IUT was given for {h.peer_id}", repr(descriptor.get("hostAddress")))
    order = ["actorId", "owner", "host", "hostAddress", "className"]
    ctx.check("ACT-024", [k for k in descriptor if k in order] == order, f"the entries in the order {order}", list(descriptor))


@case(
    "errors/ERR-005-declared-dead-requirement-names-the-restart-only",
    requirements=["ERR-005", "SES-006", "SES-017", "LIV-006"],
    summary=(
        "Suite peer A sends a task addressed to another incarnation of the IUT: the DECLARED_DEAD answer must name "
        "requirement SES-006. Suite peer G says Goodbye (the IUT fences it) and then sends a task: if the IUT "
        "answers DECLARED_DEAD (SES-017, a recommendation), that answer concerns G's own incarnation, so its "
        "requirement must not be SES-006, which would tell G that the IUT restarted (LIV-009)."
    ),
)
def declared_dead_names_ses006_only_for_earlier_incarnations(ctx: CaseContext) -> None:
    iut, a, link_a = open_session(ctx, peer_name="stale")
    wrong = task(a, "echo", [by_value("to an earlier incarnation")])
    link_a.send(wrong, seq=link_a.next_seq(), receiver_incarnation=iut.incarnation ^ 0x5A5A)
    err: ProtocolError = ctx.expect(a, ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD, requirement="SES-006",
                                    what="ProtocolError(DECLARED_DEAD) for the misaddressed task").body
    ctx.check("ERR-005", err.error.requirement == "SES-006", "requirement 'SES-006': the message named an earlier incarnation",
              repr(err.error.requirement))
    g = ctx.wire_peer("leaver")
    link_g = ctx.session(g, iut)
    gseq = link_g.send(Goodbye("the conformance suite ends this peer"))
    _delivered(ctx, g, link_g, gseq, "G's Goodbye")
    late = task(g, "echo", [by_value("after Goodbye")])
    link_g.send(late)
    try:
        arrival = g.expect(ProtocolError, lambda m: m.error.code is ErrorCode.DECLARED_DEAD, timeout=ctx.bound(5.0))
    except ExpectTimeout:
        ctx.note("no DECLARED_DEAD for the fenced leaver's late task (SES-017 is a recommendation)")
        return
    req = arrival.body.error.requirement
    ctx.check("ERR-005", req != "SES-006", "a requirement other than 'SES-006': G's own incarnation is the dead one",
              repr(req))
    ctx.check("LIV-006", not g.received(TaskReply, lambda m: m.task_id == late.task_id), "the late task never runs", "ran")


@case(
    "malformed/GEN-011-long-list-is-no-malformed-message",
    requirements=["GEN-011", "GEN-004", "TASK-006"],
    summary=(
        "A SubmitTask of echo with 4,000 by-value arguments decodes well within the frame and traversal limits: "
        "no limit applies to a list's length, so it must not be answered MALFORMED. echo takes one argument, so "
        "the task fails with TASK_FAILED (CNF-003) in a TaskReply; the session goes on."
    ),
)
def long_list_is_no_malformed_message(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    many = task(peer, "echo", [by_value(i) for i in range(4_000)])
    seq = link.send(many)
    ctx.wait_until(peer, lambda: bool(peer.received(TaskReply, lambda m: m.task_id == many.task_id)
                                      or peer.received(ProtocolError, lambda m: m.related_seq == seq)),
                   requirement="TASK-005", what="a TaskReply (or a ProtocolError) for the task of 4,000 arguments", timeout=20.0)
    refused = [a.body for a in peer.received(ProtocolError) if a.body.related_seq == seq]
    ctx.require("GEN-011", not refused, "no ProtocolError about the long list",
                [f"{e.error.code.value}: {e.error.message}" for e in refused])
    reply = expect_reply(ctx, peer, many, requirement="GEN-011")
    codes = [r.error.code.value if r.error else r.kind.value for r in reply.returns]
    ctx.check("CNF-003", codes == [ErrorCode.TASK_FAILED.value], "one return ERROR(TASK_FAILED): echo takes one argument", codes)
    probe = task(peer, "echo", [by_value("after")])
    link.send(probe)
    expect_reply(ctx, peer, probe, requirement="GEN-004")


@case(
    "actors/ACT-005-actor-stopped-when-its-owner-leaves",
    requirements=["ACT-005", "FATE-004", "ACT-004", "ACT-021", "LIV-006"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter(5) on the IUT; a second suite peer C, another caller, calls add(1) and is "
        "answered 6. O then leaves (Goodbye: fenced at once). The actor dies with its owner: C's next call, add(1) "
        "as its actorSeq 2, must be answered ERROR(ACTOR_DIED), never run (7)."
    ),
    timeout=60.0,
)
def actor_stopped_when_its_owner_leaves(ctx: CaseContext) -> None:
    iut, o, link_o = open_session(ctx, peer_name="owner")
    actor = ctx.new_id(o)
    link_o.send(CreateActor(actor, "Counter", (by_value(5),)))
    st: ActorStatus = ctx.expect(o, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor}").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    c = ctx.wire_peer("caller")
    link_c = ctx.session(c, iut)
    first = task(c, "add", [by_value(1)], actor_id=actor, actor_seq=1, cpu_demand=0)
    link_c.send(first)
    reply = expect_reply(ctx, c, first, requirement="ACT-021")
    ctx.require("ACT-021", [r.kind for r in reply.returns] == [ReturnKind.INLINE] and reply.returns[0].value is not None
                and read_portable(reply.returns[0].value) == 6, "C's add(1) answered 6", str(reply.returns))
    leave_with_goodbye(ctx, o, iut)
    second = task(c, "add", [by_value(1)], actor_id=actor, actor_seq=2, cpu_demand=0)
    link_c.send(second)
    reply = expect_reply(ctx, c, second, requirement="ACT-005", timeout=15.0)
    codes = [r.error.code.value if r.error else (read_portable(r.value) if r.value else r.kind.value) for r in reply.returns]
    for rule in ("ACT-005", "FATE-004"):
        ctx.check(rule, codes == [ErrorCode.ACTOR_DIED.value],
                  "ERROR(ACTOR_DIED): the actor was stopped when its owner was fenced", codes)


@case(
    "lineage/LIN-014-unrebuildable-argument-ends-the-rebuild",
    requirements=["LIN-014", "LIN-002", "LIN-003", "CNF-018"],
    features=("core", "recovery"),
    summary=(
        "The IUT puts P (stored, above its inline threshold) and submits b = echo(P by ref) to suite executor E1 "
        "with max_retries 1; E1 stores b. The program drops P: b's task still names it, so P is kept `released` "
        "(LIN-002), its value gone, and nothing can re-create a put object. E1 leaves, so b is lost while held. "
        "The IUT must not re-run b's task: no SubmitTask reaches the spare worker E2, b fails with OBJECT_LOST "
        "naming LIN-014 (asked by E2, and through get), and P stays `released`."
    ),
    timeout=60.0,
)
def unrebuildable_argument_ends_the_rebuild(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    p = iut.put(b"\x07" * (iut.inline_threshold + 10_000))
    b = iut.submit("echo", [{"ref": p}], executor=e1.peer_id, max_retries=1)
    tb = _next_task(ctx, e1, "echo")
    [rb] = b["returns"]
    link1 = e1.link(iut.peer_id)
    seq = link1.send(TaskReply(tb.task_id, 1, (ReturnValue(rb, ReturnKind.STORED, location=e1.peer_id, size=50_000),)))
    _delivered(ctx, e1, link1, seq, "b's reply")
    iut.drop(p)
    ctx.check("", iut.quiesce(15_000), "the IUT quiescent within 15 s", "not quiescent")
    entry = iut.entry(p)
    ctx.require("LIN-002", entry is not None and entry.get("state") == "released",
                "P kept as `released` (b's reconstructable task names it)", entry)
    leave_with_goodbye(ctx, e1, iut)
    got = iut.get(rb, timeout_ms=10_000)
    ctx.check("LIN-014", _code(got) == "OBJECT_LOST", "get(b) answers OBJECT_LOST: its argument P cannot be re-created", got)
    link2 = e2.links.get(iut.peer_id) or ctx.session(e2, iut)
    st = _status_now(ctx, e2, link2, rb, requirement="LIN-014")
    ctx.check("LIN-014", st.state is ObjectState.FAILED and st.error is not None and st.error.code is ErrorCode.OBJECT_LOST
              and st.error.requirement == "LIN-014", "FAILED with OBJECT_LOST naming LIN-014",
              f"{st.state.value} {st.error.code.value + ' ' + repr(st.error.requirement) if st.error else ''}")
    ctx.check("LIN-014", not e2.received(SubmitTask), "no re-run sent: b's task needs an argument nothing can re-create",
              [f"{a.body.function} attempt {a.body.attempt}" for a in e2.received(SubmitTask)])
    entry = iut.entry(p)
    ctx.check("LIN-014", entry is not None and entry.get("state") == "released" or entry is None,
              "P stays `released` (never back to pending)", entry)


@case(
    "liveness/LIV-032-nothing-sequenced-after-goodbye",
    requirements=["LIV-032", "LIV-006", "LIV-010", "CNF-008"],
    summary=(
        "The IUT puts X; the suite peer stops acknowledging and asks the IUT to shut down. Once its Goodbye "
        "has arrived, the peer asks for X's status and submits echo, both sequenced. The leaving IUT must not "
        "answer either (no ObjectStatus, no TaskReply: nothing sequenced after the Goodbye), whatever it "
        "acknowledges meanwhile; the peer then acknowledges again and the IUT exits."
    ),
    timeout=60.0,
)
def nothing_sequenced_after_goodbye(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = iut.put(b"asked for after the Goodbye")
    link.hold_acks()
    iut.process.expect_exit()
    ctx.check("CNF-008", iut.control("shutdown") is None, "shutdown answers null", "")
    goodbye = ctx.expect(peer, Goodbye, requirement="LIV-006", what="the IUT's Goodbye", timeout=10.0)
    link.send(GetObjectStatus(x, wait=False))
    late = task(peer, "echo", [by_value("after the Goodbye")])
    seq = link.send(late)
    try:
        peer.wait_until(lambda: link.acked >= seq, ctx.bound(5.0), "the leaving IUT's ack of the two requests")
    except ExpectTimeout:
        ctx.note("the leaving IUT did not acknowledge the requests sent after its Goodbye (it may stop handling input)")
    link.release_acks()
    status = iut.process.wait_exit(ctx.bound(20.0))
    ctx.check("CNF-008", status == 0, "exit status 0", status)
    later = [f"{type(a.body).__name__}(seq {a.seq})" for a in peer.inbox if a.remote == iut.peer_id and a.seq > goodbye.seq]
    ctx.check("LIV-032", not later, "nothing sequenced after the Goodbye: the status request and the task left unanswered",
              later)


def _creation_waiting_for_its_argument(ctx: CaseContext) -> tuple[IUT, WirePeer, Link, str, str]:
    """Suite peer O creates a Counter on the IUT whose argument is X by ref, X being O's,
    unanswered: the IUT asks O for X's status and the constructor waits. Returns
    (iut, O, O's link, the actor id, X)."""
    iut, o, link_o = open_session(ctx, peer_name="owner")
    actor = ctx.new_id(o)
    x = ctx.new_id(o)
    link_o.send(CreateActor(actor, "Counter", (by_ref(ctx.descriptor(o, x)),)))
    ctx.expect(o, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002",
               what=f"GetObjectStatus for the constructor's argument {x}")
    return iut, o, link_o, actor, x


@case(
    "actors/ACT-029-killed-before-its-constructor-starts",
    requirements=["ACT-029", "ACT-006", "TASK-002"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter on the IUT whose argument is X by ref, X being O's: the IUT asks O for "
        "X's status and the constructor waits. O kills the actor: the IUT must answer ActorStatus(DEAD) at once. "
        "O then answers X READY; the creation is over, so the constructor never runs: no ActorStatus(ALIVE) "
        "follows, ever (checked after a later echo of O's is answered and the IUT is quiescent)."
    ),
    timeout=60.0,
)
def killed_before_its_constructor_starts(ctx: CaseContext) -> None:
    iut, o, link_o, actor, x = _creation_waiting_for_its_argument(ctx)
    link_o.send(KillActor(actor))
    # ACT-029 is a MAY as a whole (stopping the resolution early), but its answer to the
    # kill and the ALIVE it must never send afterwards are MUSTs: graded as such.
    what = f"ActorStatus(DEAD) for {actor}, killed before its constructor started"
    try:
        st: ActorStatus = o.expect(ActorStatus, lambda m: m.actor_id == actor, timeout=ctx.bound(10.0), what=what,
                                   give_up=ctx.iut_died).body
    except ExpectTimeout as exc:
        ctx.check("ACT-029", False, what, str(exc), level="MUST")
        return
    ctx.check("ACT-029", st.state is ActorState.DEAD, "DEAD", st.state.value, level="MUST")
    link_o.send(ObjectStatus(x, ObjectState.READY, size=portable(0).size, value=portable(0)))
    probe = task(o, "echo", [by_value("after the kill")])
    link_o.send(probe)
    expect_reply(ctx, o, probe)
    iut.quiesce(10_000)
    alive = [a.body.state.value for a in o.received(ActorStatus, lambda m: m.actor_id == actor)
             if a.body.state is ActorState.ALIVE]
    ctx.check("ACT-029", not alive, "no ActorStatus(ALIVE) after the kill: the constructor never runs", alive, level="MUST NOT")


@case(
    "actors/ACT-012-calls-before-alive-are-queued",
    requirements=["ACT-012", "ACT-003", "TASK-002"],
    features=("core", "actors"),
    summary=(
        "Suite peer O creates a Counter on the IUT whose argument is X by ref (X = 5, O's): the IUT asks O for X's "
        "status and the constructor waits. O calls add(1) and get() (actorSeq 1 and 2) before the actor is alive: "
        "the IUT must queue them, neither refused nor answered with an error. O then answers X READY: the actor "
        "comes up (ActorStatus(ALIVE)) and the calls run in order, answered 6 and 6."
    ),
    timeout=60.0,
)
def calls_before_alive_are_queued(ctx: CaseContext) -> None:
    iut, o, link_o, actor, x = _creation_waiting_for_its_argument(ctx)
    add = task(o, "add", [by_value(1)], actor_id=actor, actor_seq=1, cpu_demand=0)
    get = task(o, "get", [], actor_id=actor, actor_seq=2, cpu_demand=0)
    link_o.send(add)
    seq = link_o.send(get)
    _delivered(ctx, o, link_o, seq, "the two calls")
    early = [f"{type(a.body).__name__}" for a in o.inbox
             if isinstance(a.body, (TaskReply, ProtocolError)) or (isinstance(a.body, ActorStatus) and a.body.actor_id == actor)]
    ctx.check("ACT-012", not early, "nothing answered while the actor is not alive (the calls are queued)", early)
    link_o.send(ObjectStatus(x, ObjectState.READY, size=portable(5).size, value=portable(5)))
    st: ActorStatus = ctx.expect(o, ActorStatus, lambda m: m.actor_id == actor, requirement="ACT-001",
                                 what=f"ActorStatus for {actor} once its argument is answered").body
    ctx.require("ACT-001", st.state is ActorState.ALIVE, "ALIVE", f"{st.state.value} {st.error or ''}")
    got = []
    for t in (add, get):
        reply = expect_reply(ctx, o, t, requirement="ACT-012")
        ret = reply.returns[0] if reply.returns else None
        got.append(read_portable(ret.value) if ret is not None and ret.value is not None and ret.error is None
                   else (ret.error.code.value if ret is not None and ret.error else "nothing"))
    ctx.check("ACT-012", got == [6, 6], "the queued calls run once the actor is alive, in order: 6, 6", got)
    refused = [f"{a.body.error.code.value}: {a.body.error.message}" for a in o.received(ProtocolError)]
    ctx.check("ACT-012", not refused, "no ProtocolError about the early calls", refused)


@case(
    "fetch/LOC-024-unequal-status-lists-paired-up",
    requirements=["LOC-024", "OBJ-008", "VAL-020", "FET-001"],
    summary=(
        "The suite submits sum_bytes(X by ref) and answers the IUT's GetObjectStatus READY with one location "
        "(the suite, which serves X) but two location addresses, and one relay with no address. The IUT must not "
        "fail the answer: it pairs the lists up to the shorter one's length (the location with its address, no "
        "relay), fetches X from the suite and replies with the sum; no ProtocolError."
    ),
    timeout=60.0,
)
def unequal_status_lists_paired_up(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = make_bytes_value(150_000)
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    peer.serve(x, form)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    seq = link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,),
                                 location_addresses=(peer.address, "tcp://127.0.0.1:9"), relays=("suite-relay",)))
    # LOC-024 is a SHOULD as a whole (recording relays); its receiver's clause is a MUST NOT.
    what = f"TaskReply for sum_bytes(X) ({t.task_id})"
    try:
        answer = peer.expect((TaskReply, ProtocolError), lambda m: m.task_id == t.task_id if isinstance(m, TaskReply)
                             else m.related_seq == seq, timeout=ctx.bound(30.0), what=what, give_up=ctx.iut_died).body
    except ExpectTimeout as exc:
        ctx.require("LOC-024", False, what, str(exc), level="MUST NOT")
        return
    ctx.require("LOC-024", isinstance(answer, TaskReply), "the ObjectStatus taken, never refused", str(answer),
                level="MUST NOT")
    reply: TaskReply = answer
    ret = reply.returns[0] if reply.returns else None
    got = read_portable(ret.value) if ret is not None and ret.value is not None and ret.error is None else (
        ret.error.code.value if ret is not None and ret.error else "nothing")
    ctx.check("LOC-024", got == sum(data), f"sum_bytes(X) = {sum(data)}: the answer taken, the lists paired up", got,
              level="MUST NOT")
    refused = [f"{a.body.error.code.value}: {a.body.error.message}" for a in peer.received(ProtocolError)
               if a.body.related_seq == seq]
    ctx.check("LOC-024", not refused, "no ProtocolError about the ObjectStatus", refused, level="MUST NOT")


@case(
    "lineage/LIN-008-rebuild-whose-executor-dies-without-budget",
    requirements=["LIN-008", "LIN-003", "RPC-004", "RPC-009", "CNF-018"],
    features=("core", "recovery"),
    summary=(
        "The IUT submits b = echo(\"x\") to suite executor E1 with max_retries 1; E1 stores b. E1 leaves: b is lost "
        "while held, so the IUT re-runs its task as attempt 2 on the spare worker E2 (LIN-003). E2 leaves too, "
        "before replying: the rebuild's executor died with no budget left, so b must fail with WORKER_DIED, as a "
        "first run would (not OBJECT_LOST), and no third attempt is sent."
    ),
    timeout=60.0,
)
def rebuild_whose_executor_dies_without_budget(ctx: CaseContext) -> None:
    iut, e1, e2 = _executors(ctx)
    b = iut.submit("echo", [{"value": "x"}], executor=e1.peer_id, max_retries=1)
    tb = _next_task(ctx, e1, "echo")
    [rb] = b["returns"]
    link1 = e1.link(iut.peer_id)
    seq = link1.send(TaskReply(tb.task_id, 1, (ReturnValue(rb, ReturnKind.STORED, location=e1.peer_id, size=50_000),)))
    _delivered(ctx, e1, link1, seq, "b's reply")
    leave_with_goodbye(ctx, e1, iut)
    again: SubmitTask = ctx.expect(e2, SubmitTask, lambda m: m.task_id == tb.task_id, requirement="LIN-003",
                                   what="b's task re-run on E2 to rebuild the lost return", timeout=15.0).body
    ctx.check("LIN-003", again.attempt == 2, "attempt 2", again.attempt)
    leave_with_goodbye(ctx, e2, iut)
    got = iut.get(rb, timeout_ms=10_000)
    ctx.check("LIN-008", _code(got) == "WORKER_DIED", "get(b) answers WORKER_DIED: the rebuild's executor died, no budget left",
              got)
    iut.quiesce(5_000)
    attempts = sorted(a.body.attempt for p in (e1, e2) for a in p.received(SubmitTask, lambda m: m.task_id == tb.task_id))
    ctx.check("RPC-009", attempts == [1, 2], "attempts 1 and 2 only (the budget is max_retries + 1)", attempts)


@case(
    "rpc/RPC-003-unacknowledged-task-sent-in-one-message",
    requirements=["RPC-003", "SES-003", "SES-011", "TASK-005"],
    summary=(
        "The IUT submits echo to suite executor E, which then withholds its acks and holds the task unanswered. "
        "The IUT may only retransmit the SubmitTask it sent, under its original sequence number: every copy that "
        "arrives carries that number, none is a new sequenced message for the same task id and attempt, until E "
        "has seen two retransmissions. E then acknowledges and answers, and the IUT's get reads the value."
    ),
    timeout=60.0,
)
def unacknowledged_task_sent_in_one_message(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    e = ctx.wire_peer("executor")
    iut.add_peer(e, slots=1)
    warm = iut.submit("echo", [{"value": "warm-up"}], executor=e.peer_id)
    first = _next_task(ctx, e, "echo")
    link = e.link(iut.peer_id)
    link.send(TaskReply(first.task_id, first.attempt, (ReturnValue(first.return_ids[0], ReturnKind.INLINE,
                                                                   value=portable("warm-up")),)))
    ctx.require("TASK-005", iut.get(warm["returns"][0]).get("value") == "warm-up", "the warm-up task answered", "")
    link.hold_acks()
    sub = iut.submit("echo", [{"value": "held"}], executor=e.peer_id)
    arrival = ctx.expect(e, SubmitTask, lambda m: m.task_id == sub["task_id"], requirement="TASK-001",
                         what="the IUT's SubmitTask(echo) that E holds")
    ctx.wait_until(e, lambda: sum(1 for s, _ in link.seq_arrivals if s == arrival.seq) >= 3, requirement="SES-003",
                   what=f"two retransmissions of seq {arrival.seq} (E sent no ack)", timeout=20.0)
    copies = [a.seq for a in e.received(SubmitTask, lambda m: m.task_id == sub["task_id"])]
    ctx.check("RPC-003", copies == [arrival.seq],
              f"the task in one sequenced message (seq {arrival.seq}), retransmitted under that number only",
              f"delivered under seqs {copies}")
    st: SubmitTask = arrival.body
    link.release_acks()
    link.send(TaskReply(st.task_id, st.attempt, (ReturnValue(st.return_ids[0], ReturnKind.INLINE, value=portable("held")),)))
    got = iut.get(sub["returns"][0], timeout_ms=10_000)
    ctx.check("TASK-005", got.get("value") == "held", "get reads the reply's value", got)
