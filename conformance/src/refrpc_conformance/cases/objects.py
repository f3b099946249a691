"""objects-and-fetch.md: the IUT as owner answering for its objects, and as a holder serving fetches."""

from __future__ import annotations

from refrpc.core.messages import (
    AddLocation,
    ArgKind,
    ErrorCode,
    FetchChunk,
    FetchRequest,
    FreeObjects,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

from .._build import by_value, describe_return, make_bytes_value, portable, read_portable, read_stored_form
from .._case import case
from .._context import CaseContext
from ._common import expect_reply, open_session, task
from .tasks import check_chunks, fetch_all


@case(
    "fetch/FET-002-FET-014-byte-ranges",
    requirements=["FET-002", "FET-014", "FET-001"],
    summary=(
        "From a stored result the suite fetches a range in the middle (offset 1000, 5000 bytes), a range "
        "running past the end (served up to the end), a range starting exactly at the end and one of length 0 "
        "(each an empty range: one empty chunk, last, no error, the right totalSize), and a range starting past "
        "the end (one chunk, last, error MALFORMED). The bytes of each range equal the same bytes of the whole "
        "stored form."
    ),
)
def byte_ranges(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    t = task(peer, "make_bytes", [by_value(iut.inline_threshold + 20_000)])
    link.send(t)
    ret = expect_reply(ctx, peer, t).returns[0]
    ctx.require("TASK-004", ret.kind is ReturnKind.STORED, "a stored return", describe_return(ret))
    whole_chunks = fetch_all(ctx, peer, link, ret.object_id, request_id=10, chunk_bytes=1 << 20)
    total = whole_chunks[0].total_size
    whole = check_chunks(ctx, whole_chunks, start=0, end=total, chunk_bytes=1 << 20, total=total, note="whole object")
    middle = fetch_all(ctx, peer, link, ret.object_id, request_id=11, chunk_bytes=2048, offset=1000, length=5000, requirement="FET-002")
    got = check_chunks(ctx, middle, start=1000, end=6000, chunk_bytes=2048, total=total, note="range [1000, 6000)")
    ctx.check("FET-002", got == whole[1000:6000], "the bytes [1000, 6000) of the stored form", "equal" if got == whole[1000:6000] else "different")
    tail = fetch_all(ctx, peer, link, ret.object_id, request_id=12, chunk_bytes=4096, offset=total - 10, length=100, requirement="FET-014")
    got = check_chunks(ctx, tail, start=total - 10, end=total, chunk_bytes=4096, total=total, note="range past the end")
    ctx.check("FET-014", got == whole[-10:], "the last 10 bytes (a range past the end is served up to the end)", f"{len(got)} bytes")
    for rid, offset, length, what in ((14, total, -1, "offset = totalSize"), (15, 500, 0, "length 0")):
        empty = fetch_all(ctx, peer, link, ret.object_id, request_id=rid, chunk_bytes=4096, offset=offset, length=length,
                          requirement="FET-014")
        ctx.check("FET-014", len(empty) == 1 and empty[0].last and empty[0].error is None and not empty[0].data
                  and empty[0].offset == offset and empty[0].total_size == total,
                  f"an empty range ({what}): one chunk at offset {offset}, last, empty, no error, totalSize {total}",
                  [f"offset={c.offset} last={c.last} error={c.error.code.value if c.error else None} data={len(c.data)} "
                   f"total={c.total_size}" for c in empty])
    beyond = fetch_all(ctx, peer, link, ret.object_id, request_id=13, chunk_bytes=4096, offset=total + 10, requirement="FET-014")
    ctx.check("FET-014", len(beyond) == 1 and beyond[0].last and beyond[0].error is not None and beyond[0].error.code is ErrorCode.MALFORMED
              and not beyond[0].data, "one chunk, last, empty, error MALFORMED",
              [f"last={c.last} error={c.error} data={len(c.data)}" for c in beyond])


@case(
    "fetch/FET-004-no-copy-error-chunk",
    requirements=["FET-004"],
    summary=(
        "The suite fetches an object the IUT holds no copy of. The answer is a single FetchChunk, last, "
        "with empty data and error OBJECT_FREED or UNKNOWN_OBJECT."
    ),
)
def no_copy(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.send(FetchRequest(f"{peer.peer_id}.never.1", 77, 0, -1, 65536))
    arrival = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 77, requirement="FET-004", what="a FetchChunk answering request 77")
    c: FetchChunk = arrival.body
    ctx.check("FET-004", c.last and not c.data and c.error is not None and c.error.code in (ErrorCode.OBJECT_FREED, ErrorCode.UNKNOWN_OBJECT),
              "last, no data, error OBJECT_FREED or UNKNOWN_OBJECT", f"last={c.last} data={len(c.data)} error={c.error}")


@case(
    "fetch/FET-004-FET-014-order-of-holder-checks",
    requirements=["FET-004", "FET-014"],
    summary=(
        "A holder checks a FetchRequest in a fixed order and answers the first failure only: whether it has a "
        "copy (FET-004), then the range (FET-014). A request with chunkBytes 0 for an object the IUT holds no "
        "copy of must be answered OBJECT_FREED or UNKNOWN_OBJECT, not MALFORMED; for an object the IUT stores, "
        "offset beyond the end with length 0 is MALFORMED (not an empty range)."
    ),
)
def holder_check_order(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    link.send(FetchRequest(f"{peer.peer_id}.never.1", 81, 0, 64, 0))
    c: FetchChunk = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 81, requirement="FET-004",
                               what="a FetchChunk answering request 81").body
    ctx.check("FET-004", c.last and c.error is not None and c.error.code in (ErrorCode.OBJECT_FREED, ErrorCode.UNKNOWN_OBJECT),
              "no copy comes first: error OBJECT_FREED or UNKNOWN_OBJECT, last", f"last={c.last} error={c.error}")
    x = iut.put(make_bytes_value(300_000))
    link.send(FetchRequest(x, 82, 10_000_000, 0, 65536))
    c = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 82, requirement="FET-014",
                   what="a FetchChunk answering request 82").body
    ctx.check("FET-014", c.last and c.error is not None and c.error.code is ErrorCode.MALFORMED,
              "offset beyond the end with length 0: error MALFORMED", f"last={c.last} error={c.error}")


@case(
    "objects/OBJ-002-OBJ-004-OBJ-008-iut-owned-put-objects",
    requirements=["OBJ-002", "OBJ-004", "OBJ-008", "OBJ-011", "OBJ-010", "LOC-001"],
    summary=(
        "The IUT puts a small value and a large one. Asked with GetObjectStatus, it answers READY: with the "
        "value inline for the small one, and for the large one with its size and the IUT itself as the "
        "primary location (locations and addresses of equal length). The suite fetches the large one and "
        "decodes it."
    ),
)
def put_objects(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    small_data = b"small value"
    small = iut.put(small_data)
    big_data = make_bytes_value(iut.inline_threshold + 10_000)
    big = iut.put(big_data)
    link.send(GetObjectStatus(small, wait=True))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == small, requirement="OBJ-002",
                                  what=f"ObjectStatus for {small}").body
    ctx.check("OBJ-004", st.state is ObjectState.READY and st.value is not None, "READY with the value", f"{st.state.value}, value={st.value is not None}")
    if st.value is not None:
        ctx.check("OBJ-004", read_portable(st.value) == small_data, repr(small_data), repr(read_portable(st.value)))
    link.send(GetObjectStatus(big, wait=False))
    st = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == big, requirement="OBJ-002", what=f"ObjectStatus for {big}").body
    ctx.check("OBJ-004", st.state is ObjectState.READY and bool(st.locations), "READY with locations", f"{st.state.value}, locations={list(st.locations)}")
    ctx.check("OBJ-008", len(st.locations) == len(st.location_addresses), "as many addresses as locations",
              f"{list(st.locations)} / {list(st.location_addresses)}")
    ctx.check("LOC-001", st.locations[:1] == (iut.peer_id,), f"primary location {iut.peer_id!r} (the owner of a put)", list(st.locations))
    ctx.check("OBJ-008", st.location_addresses[:1] == (iut.address,), f"its address {iut.address!r}", list(st.location_addresses))
    chunks = fetch_all(ctx, peer, link, big, request_id=5, chunk_bytes=1 << 20)
    total = chunks[0].total_size
    ctx.check("OBJ-011", st.size == total, f"ObjectStatus.size = the stored form's size {total}", st.size)
    data = check_chunks(ctx, chunks, start=0, end=total, chunk_bytes=1 << 20, total=total, note="the put value")
    try:
        got = read_portable(read_stored_form(data))
    except Exception as exc:
        ctx.fail("OBJ-010", "a stored form that decodes as a portable Value", str(exc))
    ctx.check("OBJ-010", got == big_data, "the put bytes", "equal" if got == big_data else "different")


@case(
    "objects/OBJ-003-OBJ-007-freed-and-unknown-ids",
    requirements=["OBJ-003", "OBJ-007", "OWN-005"],
    summary=(
        "The IUT puts a value and drops its only ref, so the object is reclaimed. GetObjectStatus for it "
        "must answer FREED (the IUT allocated the id); for an id the IUT never allocated, UNKNOWN."
    ),
)
def freed_and_unknown(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = iut.put(b"short-lived")
    iut.drop(x)
    link.send(GetObjectStatus(x, wait=True))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == x, requirement="OBJ-003", what=f"ObjectStatus for {x}").body
    ctx.check("OBJ-003", st.state is ObjectState.FREED, "FREED", st.state.value)
    other = f"{peer.peer_id}.{peer.incarnation:x}.999"
    link.send(GetObjectStatus(other, wait=True))
    st = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == other, requirement="OBJ-007", what=f"ObjectStatus for {other}").body
    ctx.check("OBJ-007", st.state is ObjectState.UNKNOWN, "UNKNOWN", st.state.value)
    if st.error is not None:
        ctx.check("OBJ-007", st.error.code is ErrorCode.UNKNOWN_OBJECT, "error UNKNOWN_OBJECT (or none)", st.error.code.value)


@case(
    "objects/BOR-006-REF-001-iut-submits-ref-argument",
    requirements=["BOR-006", "REF-001", "REF-003", "OBJ-002", "TASK-001", "OWN-008"],
    summary=(
        "The IUT puts X and submits sum_bytes(X by ref) to a suite peer acting as executor. The SubmitTask "
        "carries X's descriptor with the IUT's identity and an empty forwardId; while the task is pending the "
        "IUT's table counts one submitted-task ref on X and a pending return; the suite resolves X through "
        "GetObjectStatus, replies, and the IUT's get gives the sum and the count drops back to 0."
    ),
)
def iut_submits_ref(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    peer = ctx.wire_peer("executor")
    iut.add_peer(peer, slots=1)
    data = make_bytes_value(500)
    x = iut.put(data)
    sub = iut.submit("sum_bytes", [{"ref": x}], executor=peer.peer_id)
    t: SubmitTask = ctx.expect(peer, SubmitTask, requirement="TASK-001", what="the SubmitTask from the IUT").body
    ctx.require("TASK-001", len(t.args) == 1 and t.args[0].kind is ArgKind.REF and t.args[0].ref is not None,
                "one REF argument", str(t.args))
    ref = t.args[0].ref
    assert ref is not None
    ctx.check("REF-003", (ref.object_id, ref.owner, ref.owner_incarnation, ref.owner_address) == (x, iut.peer_id, iut.incarnation, iut.address),
              f"descriptor of {x} owned by {iut.peer_id}/{iut.incarnation} at {iut.address}",
              f"{ref.object_id} owned by {ref.owner}/{ref.owner_incarnation} at {ref.owner_address}")
    ctx.check("REF-001", ref.forward_id == "", "empty forwardId (covered by the submitter's task hold)", repr(ref.forward_id))
    entry = iut.entry(x)
    ctx.check("BOR-006", entry is not None and entry.get("submittedTaskRefs") == 1, "submittedTaskRefs = 1 while the task is pending",
              entry)
    ret_entry = iut.entry(sub["returns"][0])
    ctx.check("OWN-008", ret_entry is not None and ret_entry.get("state") == "pending" and ret_entry.get("role") == "owner",
              "the return owned and pending", ret_entry)
    link = peer.link(iut.peer_id)
    link.send(GetObjectStatus(x, wait=True))
    st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == x, requirement="OBJ-002", what=f"ObjectStatus for {x}").body
    ctx.require("OBJ-002", st.state is ObjectState.READY and st.value is not None, "READY with the value", f"{st.state.value}")
    assert st.value is not None
    total = sum(read_portable(st.value))
    link.send(TaskReply(t.task_id, t.attempt, tuple(ReturnValue(r, ReturnKind.INLINE, value=portable(total)) for r in t.return_ids)))
    got = iut.get(sub["returns"][0])
    ctx.check("OBJ-002", got.get("value") == sum(data), f"get() = {sum(data)}", got)
    iut.quiesce()
    entry = iut.entry(x)
    ctx.check("BOR-006", entry is not None and entry.get("submittedTaskRefs") == 0, "submittedTaskRefs = 0 after the reply", entry)


@case(
    "objects/LOC-005-add-location-for-unknown-object",
    requirements=["LOC-005"],
    summary=(
        "The suite tells the IUT it holds a copy of an object the IUT never allocated (AddLocation). The IUT "
        "must not record the location and answers FreeObjects naming the object."
    ),
)
def add_location_unknown(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = iut.put(b"ready object")  # for an id of the IUT's own form
    unknown = x + "-never"
    link.send(AddLocation(unknown, 1234))
    ctx.expect(peer, FreeObjects, lambda m: unknown in m.object_ids, requirement="LOC-005",
               what=f"FreeObjects naming {unknown}")
    ctx.check("LOC-005", iut.entry(unknown) is None, "no table entry for the unknown object", iut.entry(unknown))


@case(
    "objects/OBJ-012-value-with-refs-not-answered-without-borrowing",
    requirements=["OBJ-012", "HS-017", "OBJ-002"],
    summary=(
        "The IUT puts A, then X = [A] (inline, its value nests a ref) and Y = [A, 150,000 bytes] (stored, its "
        "stored form nests a ref). A suite peer whose session has `core` alone asks for X's and Y's status: "
        "each answer must be FAILED with FEATURE_NOT_NEGOTIATED (the value, or the locations of a stored form, "
        "would hand it refs it cannot register for), and no value or location is sent. The answer changes "
        "nothing at the owner: a suite peer with `borrowing` then gets READY for both (X with its value), and "
        "the IUT's own get of X still answers [A]."
    ),
)
def value_with_refs_without_borrowing(ctx: CaseContext) -> None:
    from .._control import Ref

    iut = ctx.start_iut()
    plain = ctx.wire_peer("core-only", features=("core",))
    full = ctx.wire_peer("borrower")
    link_plain = ctx.session(plain, iut)
    link_full = ctx.session(full, iut)
    if "borrowing" not in link_full.features:
        ctx.skip("the IUT does not use borrowing on any session: no object of its can nest a ref a peer reads")
    a = iut.put("inner")
    x = iut.put([Ref(a)])
    y = iut.put([Ref(a), make_bytes_value(150_000)])
    for oid, what in ((x, "X (inline value nesting A)"), (y, "Y (stored form nesting A)")):
        link_plain.send(GetObjectStatus(oid, wait=False))
        st: ObjectStatus = ctx.expect(plain, ObjectStatus, lambda m, oid=oid: m.object_id == oid, requirement="OBJ-012",
                                      what=f"ObjectStatus for {what} on the core-only session").body
        code = st.error.code if st.error is not None else None
        ctx.check("OBJ-012", st.state is ObjectState.FAILED and code is ErrorCode.FEATURE_NOT_NEGOTIATED,
                  f"{what}: FAILED with FEATURE_NOT_NEGOTIATED", f"{st.state.value} {code.value if code else ''}")
        ctx.check("OBJ-012", st.value is None and not st.locations and not st.relays,
                  f"{what}: no value, location or relay sent to a peer without borrowing",
                  f"value {st.value is not None}, locations {list(st.locations)}, relays {list(st.relays)}")
    for oid, what in ((x, "X"), (y, "Y")):
        link_full.send(GetObjectStatus(oid, wait=False))
        st = ctx.expect(full, ObjectStatus, lambda m, oid=oid: m.object_id == oid, requirement="OBJ-012",
                        what=f"ObjectStatus for {what} on the session with borrowing").body
        ctx.check("OBJ-012", st.state is ObjectState.READY, f"{what} still READY for a peer with borrowing", st.state.value)
        if oid == x:
            ctx.check("OBJ-002", st.value is not None and len(st.value.nested) == 1 and st.value.nested[0].object_id == a,
                      "X's value, nesting A", st.value and [d.object_id for d in st.value.nested])
    got = iut.get(x)
    ctx.check("OBJ-012", got.get("value") == [Ref(a)], "the IUT's own get of X answers [A]", got)


@case(
    "objects/GC-004-LOC-003-free-objects-drops-the-primary-copy",
    requirements=["GC-004", "GC-005", "LOC-003", "FET-004"],
    summary=(
        "The suite submits make_bytes(150000): the IUT stores the result R as its primary copy and the suite, "
        "R's owner, fetches a first range of it. The suite then sends FreeObjects naming R and an id the IUT "
        "holds nothing of. The IUT must drop its copy: a FetchRequest for R, sent once a probe echo sent after "
        "the FreeObjects is answered, gets one error chunk OBJECT_FREED (no copy, FET-004). The unknown id is "
        "ignored (no ProtocolError), and no RemoveLocation is sent for R (the owner freed it, LOC-003)."
    ),
)
def free_objects_drops_the_primary_copy(ctx: CaseContext) -> None:
    from refrpc.core.messages import ProtocolError, RemoveLocation

    from ._common import run_echo

    iut, peer, link = open_session(ctx)
    t = task(peer, "make_bytes", [by_value(150_000)])
    link.send(t)
    reply = expect_reply(ctx, peer, t)
    ctx.require("TASK-004", [r.kind for r in reply.returns] == [ReturnKind.STORED], "one stored return",
                [describe_return(r) for r in reply.returns])
    r = reply.returns[0].object_id
    link.send(FetchRequest(r, 1, 0, 4096, 4096, False))
    first: FetchChunk = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 1, requirement="FET-001",
                                   what=f"the first 4 KiB of {r}").body
    ctx.require("GC-005", first.error is None and len(first.data) == 4096, "4 KiB of R served before FreeObjects",
                str(first.error) if first.error else f"{len(first.data)} bytes")
    stranger = ctx.new_id(peer)
    free_seq = link.send(FreeObjects((r, stranger)))
    run_echo(ctx, peer, link, "after FreeObjects", requirement="GC-004")
    link.send(FetchRequest(r, 2, 0, -1, 65536, False))
    chunk: FetchChunk = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 2, requirement="GC-004",
                                   what=f"the answer to a FetchRequest for {r} after FreeObjects").body
    code = chunk.error.code if chunk.error is not None else None
    ctx.check("GC-004", code is ErrorCode.OBJECT_FREED and chunk.last and not chunk.data,
              "one error chunk OBJECT_FREED: the copy was dropped on the owner's FreeObjects",
              f"{code.value if code else 'data'} ({len(chunk.data)} bytes, last={chunk.last})")
    iut.quiesce()
    refused = peer.received(ProtocolError, lambda m: m.related_seq == free_seq)
    ctx.check("GC-004", not refused, f"no ProtocolError about the FreeObjects (seq {free_seq}) naming an id it holds nothing of",
              [f"{a.body.error.code.value}: {a.body.error.message}" for a in refused] or "none")
    removed = peer.received(RemoveLocation, lambda m: m.object_id == r)
    ctx.check("LOC-003", not removed, "no RemoveLocation for a copy the owner freed", f"{len(removed)} RemoveLocation")
