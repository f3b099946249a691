"""objects-and-fetch.md §5: resumed and compressed fetches, with the IUT as fetcher and as holder.

As fetcher, the IUT resolves a ``ref`` argument the suite owns and serves from its
own wire peer (:meth:`WirePeer.serve`), which loses chunks or compresses them on
purpose. As holder, the IUT serves a stored result to the suite.
"""

from __future__ import annotations

import pickle
from typing import Any

import lz4.frame

from refrpc.core.messages import (
    AddLocation,
    Encoding,
    ErrorCode,
    FetchChunk,
    FetchRequest,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    ProtocolError,
    ReturnKind,
    TaskReply,
    Value,
)

from .._build import by_ref, by_value, describe_return, make_bytes_value, portable, read_portable, read_stored_form, stored_form
from .._case import case
from .._context import IUT, CaseContext
from .._wire import DEFAULT_FEATURES, Link, WirePeer
from ._common import check_inline, expect_reply, open_session, task
from .tasks import MIB, check_chunks, fetch_all

#: What the suite's peers offer in the compression cases.
LZ4_FEATURES = DEFAULT_FEATURES + ("lz4",)
#: The suite serves its objects in chunks of at most this many bytes.
SUITE_CHUNK = 64 * 1024
#: Bytes of the data of the objects the IUT fetches from the suite.
FETCHED_SIZE = 300_000
#: How long a fetcher may take to notice a lost chunk: its progress timeout (FET-006,
#: 5 s by default) with room for a loaded machine. Only a hung IUT waits it out.
RESUME_BOUND_S = 40.0


def _fetch_through_task(
    ctx: CaseContext, peer: WirePeer, link: Link, **serve_options: Any
) -> tuple[str, bytes, TaskReply]:
    """The suite owns a stored object X and submits ``sum_bytes(X by ref)``; it names
    itself as X's only location and serves X as ``serve_options`` say.

    Returns:
        X's id, the data of X's value, and the task's reply.
    """
    data = make_bytes_value(FETCHED_SIZE)
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    peer.serve(x, form, chunk_bytes=SUITE_CHUNK, **serve_options)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,), location_addresses=(peer.address,)))
    return x, data, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S)


def _lose_once(positions: set[int]) -> Any:
    """A ``lose`` rule for :meth:`WirePeer.serve`: withhold, once each, the chunks holding these byte positions."""

    def lose(req: FetchRequest, offset: int, end: int) -> bool:
        hit = {b for b in positions if offset <= b < end}
        positions.difference_update(hit)
        return bool(hit)

    return lose


def _check_resumed(ctx: CaseContext, peer: WirePeer, object_id: str) -> list[FetchRequest]:
    """FET-002, FET-005, FET-012 on the IUT's FetchRequests for ``object_id``.

    Every request sent after a chunk was withheld is a resumption. Each must start
    at the first missing byte of a gap in what the suite had delivered when the
    request arrived: that byte not delivered, the one before it delivered (or
    offset 0). A fetcher that resumes several gaps at once passes too.

    Returns:
        The resumed requests.
    """
    arrivals = [a for a in peer.received(FetchRequest) if a.body.object_id == object_id]
    ctx.check("FET-005", all(a.seq == 0 for a in arrivals), "every FetchRequest sent with sequence number 0",
              [a.seq for a in arrivals])
    ids = [a.body.request_id for a in arrivals]
    ctx.check("FET-012", len(set(ids)) == len(ids), "a new requestId for every request (resumptions included)", ids)
    served = [c for c in list(peer.served) if c.object_id == object_id]
    resumed: list[FetchRequest] = []
    for position, req in enumerate(list(peer.fetch_requests)):
        if req.object_id != object_id:
            continue
        before = [c for c in served if c.requests_before <= position]
        if all(c.sent for c in before):
            continue  # nothing lost yet: not a resumption
        resumed.append(req)
        delivered = sorted((c.offset, c.end) for c in before if c.sent)

        def covered(b: int) -> bool:
            return any(lo <= b < hi for lo, hi in delivered)

        gaps = _gaps(delivered, max((c.end for c in served), default=0))
        ctx.check(
            "FET-002", not covered(req.offset) and (req.offset == 0 or covered(req.offset - 1)),
            f"the resumed request starts at the first missing byte of a gap (missing then: {gaps})",
            f"request {req.request_id}: offset {req.offset}, length {req.length}",
        )
    ctx.check("FET-002", bool(resumed), "a new FetchRequest for the missing bytes",
              f"{len(resumed)} resumed request(s) among {len(arrivals)}")
    return resumed


def _gaps(delivered: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    """The byte ranges of [0, total) not covered by ``delivered`` (sorted)."""
    gaps, at = [], 0
    for lo, hi in delivered:
        if lo > at:
            gaps.append((at, lo))
        at = max(at, hi)
    if at < total:
        gaps.append((at, total))
    return gaps


def unpack_chunk(ctx: CaseContext, chunk: FetchChunk, *, note: str) -> bytes | None:
    """A chunk's uncompressed bytes; a compressed one must be exactly one LZ4 frame (FET-008)."""
    if not chunk.lz4:
        return chunk.data
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(chunk.data)
        ok = d.eof and not d.unused_data
        why = "" if ok else ("an incomplete frame" if not d.eof else f"{len(d.unused_data)} bytes after the frame")
    except RuntimeError as exc:
        out, ok, why = b"", False, str(exc)
    ctx.check("FET-008", ok, "a compressed chunk's data is exactly one LZ4 frame",
              f"chunk at offset {chunk.offset}: {why}" if why else "one frame", note=note)
    return out if ok else None


def check_compressed_chunks(
    ctx: CaseContext, chunks: list[FetchChunk], *, chunk_bytes: int, expected: bytes, note: str
) -> int:
    """Chunks that may be compressed: each decodes alone (FET-003, FET-008), carries at most
    ``chunk_bytes`` uncompressed bytes at its uncompressed offset (FET-001, FET-008), and
    together they give ``expected``.

    Returns:
        How many chunks were compressed.
    """
    ctx.check("FET-001", [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True],
              "last = true on the final chunk only", [c.last for c in chunks], note=note)
    got = bytearray()
    for c in sorted(chunks, key=lambda c: c.offset):
        raw = unpack_chunk(ctx, c, note=note)
        if raw is None:
            return sum(c.lz4 for c in chunks)
        ctx.check("FET-001", len(raw) <= chunk_bytes, f"at most {chunk_bytes} uncompressed bytes per chunk",
                  f"{len(raw)} at offset {c.offset}", note=note)
        ctx.check("FET-008", c.offset == len(got), f"offsets count uncompressed bytes (next at {len(got)})",
                  f"chunk at {c.offset}", note=note)
        got += raw
    ctx.check("FET-008", bytes(got) == expected, f"the {len(expected)} bytes of the stored form once decompressed",
              f"{len(got)} bytes, {'equal' if bytes(got) == expected else 'different'}", note=note)
    return sum(c.lz4 for c in chunks)


def _lz4_session(ctx: CaseContext) -> tuple[IUT, WirePeer, Link]:
    """An IUT and a suite peer that both offer lz4: the session must use it (HS-004)."""
    iut = ctx.start_iut()
    peer = ctx.wire_peer(features=LZ4_FEATURES)
    link = ctx.session(peer, iut)
    ctx.require("HS-004", "lz4" in link.features, "lz4 in use on the session (both peers offer it)", list(link.features))
    return iut, peer, link


def _stored_result(ctx: CaseContext, iut: IUT, peer: WirePeer, link: Link, n: int) -> str:
    """make_bytes(n) at the IUT, returned stored; its object id."""
    t = task(peer, "make_bytes", [by_value(n)])
    link.send(t)
    ret = expect_reply(ctx, peer, t).returns[0]
    ctx.require("TASK-004", ret.kind is ReturnKind.STORED, "a stored return", describe_return(ret))
    return ret.object_id


@case(
    "fetch/FET-002-FET-010-resume-after-lost-chunks",
    requirements=["FET-002", "FET-010", "FET-012", "FET-005", "TASK-002"],
    summary=(
        "The suite owns a stored object X (300,000 bytes) and submits sum_bytes(X by ref), naming itself as X's "
        "only location. It serves X in chunks of at most 64 KiB but withholds, once each, the two chunks holding "
        "bytes 70,000 and 200,000, as if they were lost. The IUT must ask again for what is missing, with new "
        "FetchRequests (new requestIds, sequence number 0) that each start at the first missing byte of a gap "
        "(at once or after its progress timeout), and must reply with the right sum: a fetch is complete only "
        "with every byte."
    ),
    timeout=90.0,
)
def resume_after_lost_chunks(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    to_lose = {70_000, 200_000}
    x, data, reply = _fetch_through_task(ctx, peer, link, lose=_lose_once(to_lose))
    ctx.require("", not to_lose, "the suite withheld both chunks",
                f"bytes {sorted(to_lose)} never requested" if to_lose else "withheld", note="the suite's own setup")
    check_inline(ctx, reply, sum(data), requirement="FET-010", note="sum_bytes of X after the lost chunks were fetched again")
    resumed = _check_resumed(ctx, peer, x)
    ctx.note(f"the IUT resumed with {len(resumed)} request(s): {[(r.offset, r.length) for r in resumed]}")


@case(
    "fetch/FET-006-FET-002-resume-after-stalled-fetch",
    requirements=["FET-006", "FET-002", "FET-012", "TASK-002"],
    summary=(
        "As in the lost-chunks case, but the chunk the suite withholds is the final one (marked last), so "
        "nothing tells the IUT that its fetch is incomplete except that no chunk comes. After its fetch progress "
        "timeout (5 s by default) it must treat the missing bytes as lost and resume from the first missing byte "
        "with a new request, then reply with the right sum."
    ),
    timeout=90.0,
)
def resume_after_stall(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    form_size = len(stored_form(portable(make_bytes_value(FETCHED_SIZE))))
    to_lose = {form_size - 1}
    x, data, reply = _fetch_through_task(ctx, peer, link, lose=_lose_once(to_lose))
    ctx.require("", not to_lose, "the suite withheld the final chunk", "never requested" if to_lose else "withheld",
                note="the suite's own setup")
    check_inline(ctx, reply, sum(data), requirement="FET-006", note="sum_bytes of X after the stalled fetch resumed")
    resumed = _check_resumed(ctx, peer, x)
    lost_at = next((c.t for c in peer.served if c.object_id == x and not c.sent), None)
    asked_at = [a.t for a in peer.received(FetchRequest) if resumed and a.body.request_id == resumed[0].request_id]
    if lost_at is not None and asked_at:
        ctx.note(f"the IUT resumed {asked_at[0] - lost_at:.2f} s after the final chunk was withheld")


@case(
    "fetch/OBJ-067-SEC-005-pickled-stored-form-not-read",
    requirements=["OBJ-067", "SEC-005", "FET-004"],
    summary=(
        "On a session without python-pickle (the suite never offers it), the suite owns a stored object X whose stored form is a value in "
        "the pickle encoding (a pickled bytes object of 300,000 bytes) and submits sum_bytes(X by ref), naming "
        "itself as X's only location. The IUT cannot know the encoding before it has fetched X; once it has, "
        "it must not unpickle it: the task fails with FEATURE_NOT_NEGOTIATED (a sum means the IUT unpickled "
        "bytes that came on a session without python-pickle), and the IUT keeps no copy of X: a FetchRequest "
        "for X is then answered with one error chunk (OBJECT_FREED or UNKNOWN_OBJECT)."
    ),
    timeout=90.0,
)
def pickled_stored_form_not_read(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    data = make_bytes_value(FETCHED_SIZE)
    form = stored_form(Value(Encoding.PICKLE, pickle.dumps(data, protocol=5)))
    x = ctx.new_id(peer)
    peer.serve(x, form, chunk_bytes=SUITE_CHUNK)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,), location_addresses=(peer.address,)))
    reply = expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S)
    fetched = [a.body for a in peer.received(FetchRequest) if a.body.object_id == x]
    ctx.require("", bool(fetched), "the IUT fetched X (it cannot know the encoding before)", "no FetchRequest for X",
                note="the suite's own setup")
    ret = reply.returns[0] if len(reply.returns) == 1 else None
    ctx.check("OBJ-067", ret is not None and ret.error is not None and ret.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED,
              "the task fails with FEATURE_NOT_NEGOTIATED, nothing unpickled",
              describe_return(ret) if ret is not None else f"{len(reply.returns)} returns")
    if ret is not None and ret.error is not None:
        ctx.note(f"the error names requirement {ret.error.requirement!r}: {ret.error.message!r:.160}")
    chunks = fetch_all(ctx, peer, link, x, request_id=5, chunk_bytes=SUITE_CHUNK, requirement="FET-004")
    ctx.check("OBJ-067", len(chunks) == 1 and chunks[0].error is not None
              and chunks[0].error.code in (ErrorCode.OBJECT_FREED, ErrorCode.UNKNOWN_OBJECT) and not chunks[0].data,
              "no copy of X kept: one error chunk, OBJECT_FREED or UNKNOWN_OBJECT",
              [f"error={c.error.code.value if c.error else None} data={len(c.data)} last={c.last}" for c in chunks])


@case(
    "fetch/FET-008-HS-021-lz4-chunks-accepted",
    requirements=["FET-008", "FET-003", "HS-021", "HS-004", "TASK-002"],
    features=("core", "lz4"),
    summary=(
        "On a session where both peers offer lz4, the suite owns a stored object X and submits sum_bytes(X by "
        "ref). If the IUT's FetchRequest accepts lz4, the suite sends every chunk but the last compressed (each "
        "one LZ4 frame, compressed on its own; the holder may send any chunk uncompressed), and the IUT must "
        "decompress them and reply with the right sum. An IUT that does not set acceptLz4 gets plain chunks "
        "(the case notes it); acceptLz4 is only allowed where lz4 is in use."
    ),
)
def lz4_chunks_accepted(ctx: CaseContext) -> None:
    iut, peer, link = _lz4_session(ctx)
    total = len(stored_form(portable(make_bytes_value(FETCHED_SIZE))))
    x, data, reply = _fetch_through_task(ctx, peer, link, compress=lambda req, offset: offset + SUITE_CHUNK < total)
    check_inline(ctx, reply, sum(data), requirement="FET-008", note="sum_bytes of X, fetched in lz4 chunks")
    requests = [r for r in peer.fetch_requests if r.object_id == x]
    accepted = any(r.accept_lz4 for r in requests)
    packed = [c for c in peer.served if c.object_id == x and c.lz4]
    if accepted:
        ctx.check("", bool(packed), "the suite sent compressed chunks", f"{len(packed)} compressed",
                  note="the suite's own setup")
        ctx.note(f"the IUT accepted lz4 and read {len(packed)} compressed chunk(s) and 1 plain one")
    else:
        ctx.note("the IUT did not set acceptLz4 although lz4 is in use: every chunk went uncompressed")


@case(
    "fetch/FET-003-FET-008-holder-compresses-only-when-accepted",
    requirements=["FET-003", "FET-008", "FET-001", "HS-021"],
    features=("core", "lz4"),
    summary=(
        "On a session where lz4 is in use, the suite fetches a stored result of the IUT twice, in 64 KiB chunks: "
        "with acceptLz4 = false no chunk may be compressed; with acceptLz4 = true the IUT may compress any "
        "chunk, and each compressed one must be exactly one LZ4 frame that decompresses on its own to at most "
        "64 KiB, at its uncompressed offset, giving the same bytes as the plain fetch."
    ),
)
def holder_lz4(ctx: CaseContext) -> None:
    iut, peer, link = _lz4_session(ctx)
    oid = _stored_result(ctx, iut, peer, link, iut.inline_threshold + 200_000)
    plain = fetch_all(ctx, peer, link, oid, request_id=1, chunk_bytes=SUITE_CHUNK, accept_lz4=False)
    ctx.check("FET-003", not any(c.lz4 for c in plain), "no compressed chunk when the request has acceptLz4 = false",
              f"{sum(c.lz4 for c in plain)} of {len(plain)} compressed")
    total = plain[0].total_size
    whole = check_chunks(ctx, plain, start=0, end=total, chunk_bytes=SUITE_CHUNK, total=total, note="acceptLz4 = false")
    packed = fetch_all(ctx, peer, link, oid, request_id=2, chunk_bytes=SUITE_CHUNK, accept_lz4=True)
    n = check_compressed_chunks(ctx, packed, chunk_bytes=SUITE_CHUNK, expected=whole, note="acceptLz4 = true")
    ctx.note(f"with acceptLz4 the IUT compressed {n} of {len(packed)} chunks")


@case(
    "fetch/FET-003-compression-choice",
    requirements=["FET-003", "FET-008"],
    features=("core", "lz4"),
    informational=True,
    summary=(
        "Records an option the spec leaves open: on a session where lz4 is in use, whether the IUT as holder "
        "compresses the chunks of a highly compressible stored value when the fetcher accepts lz4 (it MAY send "
        "any chunk uncompressed), and how much it saves. Compressed chunks must still be valid LZ4 frames."
    ),
)
def compression_choice(ctx: CaseContext) -> None:
    iut, peer, link = _lz4_session(ctx)
    oid = _stored_result(ctx, iut, peer, link, iut.inline_threshold + 400_000)
    chunks = fetch_all(ctx, peer, link, oid, request_id=1, chunk_bytes=128 * 1024, accept_lz4=True)
    wire = sum(len(c.data) for c in chunks)
    total = chunks[0].total_size
    plain = b""
    raw = [unpack_chunk(ctx, c, note="acceptLz4 = true, 128 KiB chunks") for c in chunks]
    if all(r is not None for r in raw):
        plain = b"".join(r for r in raw if r is not None)
    compressed = sum(c.lz4 for c in chunks)
    ctx.note(
        f"as holder, with acceptLz4 and 128 KiB chunks, the IUT compressed {compressed} of {len(chunks)} chunk(s): "
        f"{wire} bytes on the wire for a stored form of {total} bytes"
        + (f" ({wire / total:.1%})" if total else "")
    )
    ctx.check("FET-001", len(plain) == total or not all(r is not None for r in raw), f"{total} bytes once decompressed",
              len(plain), note="acceptLz4 = true")


@case(
    "fetch/HS-004-HS-021-lz4-fields-without-lz4",
    requirements=["HS-004", "HS-021", "FET-003", "FET-002", "TASK-002"],
    summary=(
        "On a session where lz4 is not in use (the suite does not offer it), the suite breaks HS-021 twice on "
        "purpose. As fetcher it asks for a stored result of the IUT with acceptLz4 = true: the IUT must discard "
        "the request and answer ProtocolError(FEATURE_NOT_NEGOTIATED), and must never send a compressed chunk. "
        "As holder of X (sum_bytes(X by ref)) it sends the first chunk compressed: the IUT must discard that "
        "chunk and answer FEATURE_NOT_NEGOTIATED, then fetch the missing bytes again and reply with the right sum."
    ),
    timeout=90.0,
)
def lz4_fields_without_lz4(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    ctx.require("", "lz4" not in link.features, "lz4 not in use on the session", list(link.features), note="the suite's own setup")
    oid = _stored_result(ctx, iut, peer, link, iut.inline_threshold + 20_000)
    before = len(peer.received(ProtocolError))
    link.send(FetchRequest(oid, 1, 0, -1, SUITE_CHUNK, True))
    ctx.expect(peer, (FetchChunk, ProtocolError),
               lambda m: (isinstance(m, FetchChunk) and m.request_id == 1 and m.last) or isinstance(m, ProtocolError),
               requirement="HS-004", what="ProtocolError(FEATURE_NOT_NEGOTIATED) answering acceptLz4 = true (or chunks)")
    errors = [a.body for a in peer.received(ProtocolError)[before:]]
    chunks = [a.body for a in peer.received(FetchChunk, lambda m: m.request_id == 1)]
    ctx.check("HS-021", not any(c.lz4 for c in chunks), "no compressed chunk on a session without lz4",
              f"{sum(c.lz4 for c in chunks)} of {len(chunks)} chunks compressed")
    ctx.check("HS-004", bool(errors) and errors[0].error.code is ErrorCode.FEATURE_NOT_NEGOTIATED and not chunks,
              "the request discarded (no chunk) and answered ProtocolError(FEATURE_NOT_NEGOTIATED)",
              f"{len(chunks)} chunk(s); errors: {[f'{e.error.code.value} ({e.error.requirement})' for e in errors]}",
              note="FetchRequest with acceptLz4 = true")

    packed_once: set[str] = set()

    def compress_first(req: FetchRequest, offset: int) -> bool:
        if offset == 0 and not packed_once:
            packed_once.add(req.object_id)
            return True
        return False

    before = len(peer.received(ProtocolError))
    x, data, reply = _fetch_through_task(ctx, peer, link, compress=compress_first, ignore_negotiation=True)
    ctx.require("", bool(packed_once), "the suite sent a compressed first chunk", "sent" if packed_once else "none sent",
                note="the suite's own setup")
    check_inline(ctx, reply, sum(data), requirement="TASK-002", note="sum_bytes of X, every byte fetched plain in the end")
    errors = [a.body for a in peer.received(ProtocolError)[before:]]
    ctx.check("HS-004", any(e.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED for e in errors),
              "ProtocolError(FEATURE_NOT_NEGOTIATED) answering the compressed chunk",
              [f"{e.error.code.value} ({e.error.requirement})" for e in errors] or "none", note="FetchChunk with lz4 = true")
    starts = [r.offset for r in peer.fetch_requests if r.object_id == x]
    ctx.check("HS-004", len(starts) >= 2 and starts[1] == 0,
              "the compressed chunk discarded: its bytes asked for again (a request from offset 0)",
              f"requests from offsets {starts}", note="FetchChunk with lz4 = true")


# ---------------------------------------------------------------- limits and choices
#: Bytes of the data of the object the range case fetches: more than one 8 MiB range.
RANGED_SIZE = 9 * MIB
#: The most one FetchRequest should ask for, and the smallest delay before asking
#: a busy holder again (FET-015, ERR-009).
MAX_RANGE = 8 * MIB
RETRY_DELAY_S = 0.05


def _fetch_from(
    ctx: CaseContext, peer: WirePeer, link: Link, size: int, holders: list[WirePeer], **serve_options: Any
) -> tuple[str, bytes, TaskReply]:
    """As :func:`_fetch_through_task`, with ``holders`` as X's locations (the first one primary)."""
    data = make_bytes_value(size)
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    for h in holders:
        h.serve(x, form, chunk_bytes=MIB, **serve_options)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=tuple(h.peer_id for h in holders),
                           location_addresses=tuple(h.address for h in holders)))
    return x, data, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S)


@case(
    "fetch/FET-015-ranges-bounded",
    requirements=["FET-015", "FET-002", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X of 9 MiB (more than one 8 MiB range) and submits sum_bytes(X by ref), "
        "naming itself as the only location. Every FetchRequest the IUT sends for X should ask for one range of "
        "1 byte to 8 MiB (never -1, 'to the end', not even the first one, sent before the size is known), the "
        "requests together should cover X with nothing asked twice, and the IUT must reply with the right sum."
    ),
    timeout=120.0,
)
def ranges_bounded(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x, data, reply = _fetch_from(ctx, peer, link, RANGED_SIZE, [peer])
    check_inline(ctx, reply, sum(data), requirement="FET-010", note="sum_bytes of a 9 MiB X")
    asked = [r for r in peer.fetch_requests if r.object_id == x]
    lengths = [r.length for r in asked]
    ctx.check("FET-015", bool(asked) and all(0 < n <= MAX_RANGE for n in lengths),
              "every request asks for a range of 1 byte to 8 MiB", lengths)
    ctx.note(f"the IUT asked for {[(r.offset, r.length) for r in asked]}")


@case(
    "fetch/FET-009-ERR-009-busy-holder-asked-again",
    requirements=["FET-009", "ERR-009", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref), naming itself as the only location, but "
        "answers the IUT's first FetchRequest for X with one error chunk RESOURCE_EXHAUSTED (a busy holder). The "
        "IUT should ask the same holder again for the same range after a delay (ERR-009: at least 50 ms), not take "
        "the refusal as a missing copy, and must reply with the right sum."
    ),
    timeout=90.0,
)
def busy_holder(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    refused: list[FetchRequest] = []

    def refuse(req: FetchRequest) -> bool:
        if refused:
            return False
        refused.append(req)
        return True

    x, data, reply = _fetch_from(ctx, peer, link, FETCHED_SIZE, [peer], refuse=refuse)
    check_inline(ctx, reply, sum(data), requirement="FET-010", note="sum_bytes of X after a refused request")
    arrivals = [a for a in peer.received(FetchRequest) if a.body.object_id == x]
    ctx.require("", bool(refused) and len(arrivals) >= 1, "the suite refused the first request", len(arrivals),
                note="the suite's own setup")
    first = arrivals[0]
    again = [a for a in arrivals[1:] if a.body.offset == first.body.offset]
    ctx.check("FET-009", bool(again), f"the same holder asked again for the range at offset {first.body.offset}",
              [(a.body.offset, a.body.length) for a in arrivals[1:]])
    if again:
        gap = again[0].t - first.t
        ctx.check("ERR-009", gap >= RETRY_DELAY_S, f"a wait of at least {RETRY_DELAY_S * 1000:.0f} ms before asking again",
                  f"{gap * 1000:.1f} ms")


@case(
    "fetch/FET-011-primary-location-first",
    requirements=["FET-011", "OBJ-008", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref); its ObjectStatus lists two suite peers "
        "that both hold X, the primary first. Neither shares a store with the IUT, so the IUT should fetch from "
        "the primary (the first location) and ask the other only if the primary fails it; it must reply with "
        "the right sum."
    ),
    timeout=90.0,
)
def primary_first(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    primary, secondary = ctx.wire_peer("primary"), ctx.wire_peer("secondary")
    x, data, reply = _fetch_from(ctx, peer, link, FETCHED_SIZE, [primary, secondary])
    check_inline(ctx, reply, sum(data), requirement="FET-010", note="sum_bytes of X fetched from one of two locations")
    to_primary = [r for r in primary.fetch_requests if r.object_id == x]
    to_secondary = [r for r in secondary.fetch_requests if r.object_id == x]
    ctx.check("FET-011", bool(to_primary) and not to_secondary, "every request to the primary, none to the other location",
              f"{len(to_primary)} to the primary, {len(to_secondary)} to the secondary")


@case(
    "fetch/FET-007-chunks-fit-fetcher-limit",
    requirements=["FET-007", "FET-001", "TASK-004"],
    summary=(
        "The suite announces the smallest frame limit allowed (maxFrameBytes 1 MiB) and fetches a 3 MiB stored "
        "result of make_bytes from the IUT with a FetchRequest that leaves chunkBytes at its default (1 MiB). The "
        "IUT must make every FetchChunk, envelope and payload together, fit the 1 MiB the suite announced (so use "
        "chunks smaller than asked), and its chunks must still cover the stored form."
    ),
    timeout=90.0,
)
def chunks_fit_limit(ctx: CaseContext) -> None:
    from refrpc.codec import encode

    iut, peer, link = open_session(ctx, max_frame_bytes=MIB)
    oid = _stored_result(ctx, iut, peer, link, 3 * MIB)
    link.send(FetchRequest(oid, 1, 0, -1, MIB, False))
    chunks: list[Any] = []
    while True:
        arrival = ctx.expect(peer, FetchChunk, lambda m: m.request_id == 1, requirement="FET-007",
                             what=f"FetchChunk {len(chunks) + 1}, within the 1 MiB frame limit", timeout=10.0)
        chunks.append(arrival)
        if arrival.body.last:
            break
    sizes = [sum(len(f) for f in encode(a.envelope)) for a in chunks]
    ctx.check("FET-007", all(n <= MIB for n in sizes), "every chunk message at most 1,048,576 bytes", sizes)
    total = chunks[0].body.total_size
    # A chunk over the limit never reaches the suite (it drops frames beyond what it announced,
    # as ZMQ-007 lets a receiver do): the bytes it carried are missing.
    got = sum(len(a.body.data) for a in chunks)
    ctx.check("FET-007", got == total, f"all {total} bytes in chunks that fit the limit",
              f"{got} bytes arrived in {len(chunks)} chunk(s)")
    check_chunks(ctx, [a.body for a in chunks], start=0, end=total, chunk_bytes=MIB, total=total, note="the whole stored form")


#: The store limit the spilling case gives the IUT (REFRPC_IUT_STORE_LIMIT): 1 MiB.
SPILL_LIMIT = MIB
#: The environment that starts the IUT with that store limit (conformance-hooks.md section 3).
SMALL_STORE = {"REFRPC_IUT_STORE_LIMIT": str(SPILL_LIMIT)}
#: make_bytes results the case has the IUT keep: together well over the limit.
SPILL_RESULTS = 4
SPILL_SIZE = 400_000


@case(
    "fetch/OBJ-032-spilled-copy-still-served",
    requirements=["OBJ-032", "OBJ-030", "FET-001", "OBJ-010"],
    summary=(
        "The IUT is started with a store limit of 1 MiB (REFRPC_IUT_STORE_LIMIT, conformance-hooks.md section 3) "
        "and runs make_bytes(400,000) four times; it keeps every result (the suite holds them all), 1.6 MB of "
        "stored forms in all, so it must spill some of them to stay within its limit (OBJ-030). The suite then "
        "fetches every result, the oldest first: each must be served in full with the bytes make_bytes made, a "
        "spilled copy like any other (OBJ-032). An IUT without store limits ignores the variable and passes by "
        "serving every fetch."
    ),
    iut_env=SMALL_STORE,
    timeout=90.0,
)
def spilled_copy_still_served(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    oids = [_stored_result(ctx, iut, peer, link, SPILL_SIZE) for _ in range(SPILL_RESULTS)]
    expected = make_bytes_value(SPILL_SIZE)
    for i, oid in enumerate(oids):
        chunks = fetch_all(ctx, peer, link, oid, request_id=100 + i, chunk_bytes=256 * 1024, requirement="OBJ-032")
        if chunks[-1].error is not None:
            ctx.fail("OBJ-032", f"result {i + 1} of {SPILL_RESULTS} served", f"{chunks[-1].error.code.value}: {chunks[-1].error.message}")
            continue
        total = chunks[0].total_size
        data = check_chunks(ctx, chunks, start=0, end=total, chunk_bytes=256 * 1024, total=total,
                            note=f"result {i + 1} of {SPILL_RESULTS}")
        try:
            got = read_portable(read_stored_form(data))
        except Exception as exc:  # noqa: BLE001 - a bad stored form is the finding
            ctx.fail("OBJ-010", "a stored form that decodes as a portable Value", str(exc))
            continue
        ctx.check("OBJ-032", got == expected, f"result {i + 1}: the bytes make_bytes made",
                  "equal" if got == expected else "different")


@case(
    "fetch/OBJ-060-reply-says-what-the-store-can-take",
    requirements=["OBJ-060", "OBJ-061", "OBJ-030"],
    summary=(
        "The IUT is started with a store limit of 1 MiB (REFRPC_IUT_STORE_LIMIT) and runs make_bytes(400,000) "
        "twice, one after the other; the suite keeps both results (800,000 bytes of stored forms, within the "
        "limit, so nothing needs spilling). Each TaskReply's storeFreeBytes should say what the IUT's store can "
        "still take without spilling: the limit less the stored forms it holds, so 1 MiB less the first "
        "result's size, then less both (memory kept only for reuse counts as free). An IUT that sends -1 (it "
        "has no limit or does not say), or another figure, is graded by OBJ-060's SHOULD."
    ),
    iut_env=SMALL_STORE,
    timeout=60.0,
)
def reply_says_what_the_store_can_take(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    held = 0
    for i in range(2):
        t = task(peer, "make_bytes", [by_value(SPILL_SIZE)])
        link.send(t)
        reply = expect_reply(ctx, peer, t)
        ret = reply.returns[0]
        ctx.require("TASK-004", ret.kind is ReturnKind.STORED, "a stored return", describe_return(ret))
        held += ret.size
        free = reply.store_free_bytes
        if not ctx.check("OBJ-060", free != -1, f"result {i + 1}: storeFreeBytes set (the IUT has a store limit)",
                         "-1 (not said)"):
            continue
        ctx.check("OBJ-060", free == SPILL_LIMIT - held,
                  f"result {i + 1}: the limit less the stored forms held ({SPILL_LIMIT:,} - {held:,} = {SPILL_LIMIT - held:,})",
                  f"{free:,}")


#: An argument larger than the IUT's whole store limit: no room can be made for it (OBJ-036).
TOO_BIG_ARG = SPILL_LIMIT + 200_000


@case(
    "fetch/TASK-042-argument-without-room",
    requirements=["TASK-042", "OBJ-036", "OBJ-060"],
    summary=(
        "The IUT is started with a store limit of 1 MiB (REFRPC_IUT_STORE_LIMIT). The suite owns a stored object X "
        f"of {TOO_BIG_ARG:,} bytes (more than the whole limit), names itself as its only location and submits "
        "sum_bytes(X by ref) to the IUT. The IUT cannot bring X into its store, so it must reply without running "
        "the function, with every return ERROR(OBJECT_STORE_FULL) (requirement OBJ-036; not TASK_FAILED: the "
        "argument did not fail, the executor's store did), and that reply should carry the IUT's own "
        "storeFreeBytes, not -1 (an IUT that states no store figure is graded by the SHOULD of OBJ-060)."
    ),
    iut_env=SMALL_STORE,
    timeout=60.0,
)
def argument_without_room(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    _x, _data, reply = _fetch_from(ctx, peer, link, TOO_BIG_ARG, [peer])
    codes = [r.error.code if r.kind is ReturnKind.ERROR and r.error is not None else r.kind for r in reply.returns]
    ctx.check("TASK-042", bool(codes) and all(c is ErrorCode.OBJECT_STORE_FULL for c in codes),
              "every return ERROR(OBJECT_STORE_FULL)", [describe_return(r) for r in reply.returns])
    named = [r.error.requirement for r in reply.returns if r.error is not None]
    ctx.check("TASK-042", bool(named) and all(n == "OBJ-036" for n in named), "error.requirement OBJ-036", named)
    ctx.check("TASK-042", reply.store_free_bytes >= 0, "storeFreeBytes stated (the IUT has a store limit)",
              reply.store_free_bytes, level="SHOULD")


#: The stored result the holder-limit case fetches: about 2,000 chunks of 1 KiB a request,
#: so that a request is still in service when the next ones arrive.
SERVED_SIZE = 2 * MIB
#: The largest per-fetcher limit the holder-limit case reaches (CNF-031).
MOST_FETCHES_PER_FETCHER = 16


@case(
    "fetch/FET-009-FET-020-holder-limits-requests-and-chunk-sizes",
    requirements=["FET-009", "FET-020", "FET-001", "FET-004", "TASK-004"],
    summary=(
        "The suite fetches a stored result of make_bytes (2 MiB) from the IUT with L + 1 FetchRequests sent at "
        "once, each for the whole stored form with chunkBytes 1 (L is the config's `limits.fetches_per_fetcher`, "
        "4 by default, CNF-031). The IUT must answer every request, never by silence: each with its chunks up to "
        "`last`, or with one error chunk RESOURCE_EXHAUSTED (`last` = true); it must never have more than L of "
        "them in service at once (from a request's first chunk to its last); and no chunk of a served request but "
        "the last may be smaller than 1 KiB, whatever chunkBytes asked."
    ),
    timeout=90.0,
)
def holder_limits(ctx: CaseContext) -> None:
    limit = ctx.config.limit("fetches_per_fetcher")
    if limit > MOST_FETCHES_PER_FETCHER:
        ctx.skip(f"limits.fetches_per_fetcher is {limit}: more requests than a case makes (at most "
                 f"{MOST_FETCHES_PER_FETCHER}, CNF-031)")
    iut, peer, link = open_session(ctx)
    oid = _stored_result(ctx, iut, peer, link, SERVED_SIZE)
    ids = list(range(1, limit + 2))
    for request_id in ids:
        link.send(FetchRequest(oid, request_id, 0, -1, 1, False))
    first: FetchChunk = ctx.expect(peer, FetchChunk, lambda m: m.request_id in ids and m.error is None,
                                   requirement="FET-001", what="a first chunk").body
    if not first.last and len(first.data) < 1024:  # stop before a million tiny chunks come
        ctx.fail("FET-020", "a first chunk of at least 1,024 bytes (chunkBytes 1 asked for less)",
                 f"request {first.request_id}: {len(first.data)} bytes")
    ended: set[int] = set()
    while len(ended) < len(ids):
        arrival = ctx.expect(peer, FetchChunk, lambda m: m.request_id in ids and m.request_id not in ended and m.last,
                             requirement="FET-009", what=f"the last chunk of every request (still open: "
                             f"{sorted(set(ids) - ended)})", timeout=30.0)
        ended.add(arrival.body.request_id)
    chunks = [a.body for a in peer.received(FetchChunk) if a.body.request_id in ids]
    refused = {c.request_id: c for c in chunks if c.error is not None}
    for c in refused.values():
        ctx.check("FET-009", c.error.code is ErrorCode.RESOURCE_EXHAUSTED and c.last,
                  "a request not served is answered with one chunk RESOURCE_EXHAUSTED, last = true",
                  f"request {c.request_id}: {c.error.code.name}, last = {c.last}")
    in_service: set[int] = set()
    most = 0
    for c in chunks:
        if c.request_id in refused:
            continue
        in_service.add(c.request_id)
        most = max(most, len(in_service))
        if c.last:
            in_service.discard(c.request_id)
    ctx.check("FET-009", most <= limit, f"at most {limit} of one fetcher's requests in service at once",
              f"{most} at once ({len(refused)} refused)")
    ctx.note(f"{len(refused)} of {len(ids)} requests refused RESOURCE_EXHAUSTED; at most {most} served at once")
    for request_id in ids:
        if request_id in refused:
            continue
        served = [c for c in chunks if c.request_id == request_id]
        small = [(c.offset, len(c.data)) for c in served[:-1] if len(c.data) < 1024]
        ctx.check("FET-020", not small, "every chunk but the last of at least 1,024 bytes (chunkBytes 1 asked for less)",
                  f"request {request_id}: {len(small)} smaller chunks, the first {small[:3]}")
        got = sum(len(c.data) for c in served)
        ctx.check("FET-001", got == served[-1].total_size, f"request {request_id}: the whole stored form",
                  f"{got} of {served[-1].total_size} bytes")


@case(
    "fetch/FET-018-OBJ-013-no-splice-across-answers",
    requirements=["FET-018", "FET-006", "OBJ-013", "FET-010", "TASK-002"],
    summary=(
        "Suite peer S owns X and submits sum_bytes(X by ref). Its first ObjectStatus names location W1, which "
        "serves the first half of X's stored form and then dies. The IUT must ask S again (OBJ-013); this time S "
        "names W2, which holds a stored form of the same size but other bytes (a rebuilt object's stored form "
        "may differ, OBJ-016). The IUT must not splice W1's bytes with W2's: it fetches from W2 from offset 0, "
        "and the task answers the sum of W2's value."
    ),
    timeout=90.0,
)
def no_splice_across_answers(ctx: CaseContext) -> None:
    iut, s, link = open_session(ctx, peer_name="owner")
    w1, w2 = ctx.wire_peer("first-location"), ctx.wire_peer("second-location")
    data1 = make_bytes_value(FETCHED_SIZE)
    data2 = bytes((b + 1) % 256 for b in data1)
    form1, form2 = stored_form(portable(data1)), stored_form(portable(data2))
    ctx.require("OBJ-010", len(form1) == len(form2), "two stored forms of one size", (len(form1), len(form2)))
    x = ctx.new_id(s)
    half = len(form1) // 2
    w1.serve(x, form1, chunk_bytes=SUITE_CHUNK, lose=lambda req, offset, end: offset >= half)
    w2.serve(x, form2, chunk_bytes=SUITE_CHUNK)
    t = task(s, "sum_bytes", [by_ref(ctx.descriptor(s, x, size_hint=len(form1)))])
    link.send(t)
    ctx.expect(s, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, len(form1), (w1.peer_id,), (w1.address,)))
    ctx.wait_until(w1, lambda: any(c.sent for c in w1.served), requirement="FET-001", what="W1 serving the first half")
    w1.go_silent()  # dies (what it sent still arrives): the IUT must go elsewhere (FET-006), and only the owner can say where (OBJ-013)
    ctx.expect(s, GetObjectStatus, lambda m: m.object_id == x, requirement="OBJ-013",
               what=f"a second GetObjectStatus for {x} once its only location died", timeout=30.0)
    link.send(ObjectStatus(x, ObjectState.READY, len(form2), (w2.peer_id,), (w2.address,)))
    reply = expect_reply(ctx, s, t, timeout=RESUME_BOUND_S)
    requests = [r for r in w2.fetch_requests if r.object_id == x]
    ctx.check("FET-018", bool(requests) and min(r.offset for r in requests) == 0,
              "the fetch from W2 starts again at offset 0 (nothing kept from W1)",
              [(r.offset, r.length) for r in requests])
    check_inline(ctx, reply, sum(data2), requirement="FET-018", note="sum_bytes(X): all of it from W2")


@case(
    "fetch/OBJ-076-bad-stored-form-is-no-copy",
    requirements=["OBJ-076", "OBJ-013", "FET-008", "LOC-002"],
    summary=(
        "Suite peer S owns X and submits sum_bytes(X by ref). Its first ObjectStatus names location W1, which "
        "serves bytes of the announced size that do not decode as a Value (every byte 0xFF: a segment table "
        "naming four billion segments). A stored form is not a message: no ProtocolError answers it. The IUT "
        "must treat the fetch as failed at W1: it keeps no copy (no AddLocation for X) and asks S again; this "
        "time S names W2, which serves X's real stored form, and the task answers the sum of its value."
    ),
    timeout=90.0,
)
def bad_stored_form_is_no_copy(ctx: CaseContext) -> None:
    _bad_copy_then_a_good_one(ctx, lambda form: b"\xff" * len(form), "bytes that are not a Value")


@case(
    "fetch/OBJ-076-OBJ-010-stored-form-with-bytes-after-it",
    requirements=["OBJ-076", "OBJ-010", "OBJ-013"],
    summary=(
        "As fetch/OBJ-076-bad-stored-form-is-no-copy, but W1 serves X's real stored form followed by one word of "
        "zero bytes (the size it announces counts them): a stored form is exactly one message, its segments "
        "covering every byte (OBJ-010), so the copy fails OBJ-076's check. The IUT must keep no copy (no "
        "AddLocation for X) and ask S again, without a ProtocolError; W2 then serves X's stored form and the "
        "task answers the sum of its value."
    ),
    timeout=90.0,
)
def stored_form_with_bytes_after_it(ctx: CaseContext) -> None:
    _bad_copy_then_a_good_one(ctx, lambda form: form + bytes(8), "X's stored form and a word after it")


@case(
    "fetch/OBJ-077-bad-copies-in-a-row-fail-the-argument",
    requirements=["OBJ-077", "OBJ-076", "OBJ-013", "TASK-009"],
    summary=(
        "Suite peer S owns X and submits sum_bytes(X by ref); every ObjectStatus it sends names location W1, "
        "which always serves X's real stored form followed by one word of zero bytes (not a stored form, "
        "OBJ-076). The IUT asks S again after each bad copy (OBJ-013), and after the third bad copy in a row "
        "it stops: the task is answered, without running, with its return ERROR(MALFORMED) (naming OBJ-076), "
        "and W1 was asked for exactly three copies."
    ),
    timeout=90.0,
)
def bad_copies_in_a_row_fail_the_argument(ctx: CaseContext) -> None:
    iut, s, link = open_session(ctx, peer_name="owner")
    w1 = ctx.wire_peer("bad-location")
    form = stored_form(portable(make_bytes_value(FETCHED_SIZE)))
    bad = form + bytes(8)
    x = ctx.new_id(s)
    w1.serve(x, bad, chunk_bytes=SUITE_CHUNK)
    t = task(s, "sum_bytes", [by_ref(ctx.descriptor(s, x, size_hint=len(bad)))])
    link.send(t)
    asks = lambda: s.received(GetObjectStatus, lambda m: m.object_id == x)  # noqa: E731
    ended = lambda: bool(s.received(TaskReply, lambda m: m.task_id == t.task_id))  # noqa: E731
    answered = 0
    while not ended() and answered < 6:  # more than 3 bad copies asked for: the IUT did not stop
        ctx.wait_until(s, lambda: ended() or len(asks()) > answered, requirement="OBJ-077",
                       what=f"a GetObjectStatus for {x} (asked again after a bad copy) or the TaskReply", timeout=30.0)
        while answered < len(asks()):
            link.send(ObjectStatus(x, ObjectState.READY, len(bad), (w1.peer_id,), (w1.address,)))
            answered += 1
    reply = expect_reply(ctx, s, t, requirement="OBJ-077", timeout=30.0)
    tries = [r for r in w1.fetch_requests if r.object_id == x and r.offset == 0]
    ctx.check("OBJ-077", len(tries) == 3, "exactly three copies asked of W1 (the third bad one in a row ends the read)",
              f"{len(tries)} fetches from offset 0")
    [ret] = reply.returns
    ctx.require("OBJ-077", ret.error is not None and ret.error.code is ErrorCode.MALFORMED,
                "the return ERROR(MALFORMED): the argument's copies were all bad", describe_return(ret))
    ctx.check("ERR-004", ret.error.requirement == "OBJ-076", 'error.requirement "OBJ-076"', repr(ret.error.requirement),
              level="SHOULD")
    kept = [str(a.body) for a in s.received(AddLocation) if a.body.object_id == x]
    ctx.check("OBJ-076", not kept, "no AddLocation for a bad copy", kept)


def _bad_copy_then_a_good_one(ctx: CaseContext, spoil: Any, what: str) -> None:
    """Owner S names W1, which serves ``spoil(form)``; then W2, which serves ``form``."""
    iut, s, link = open_session(ctx, peer_name="owner")
    w1, w2 = ctx.wire_peer("bad-location"), ctx.wire_peer("good-location")
    data = make_bytes_value(FETCHED_SIZE)
    form = stored_form(portable(data))
    bad = spoil(form)
    x = ctx.new_id(s)
    w1.serve(x, bad, chunk_bytes=SUITE_CHUNK)
    w2.serve(x, form, chunk_bytes=SUITE_CHUNK)
    t = task(s, "sum_bytes", [by_ref(ctx.descriptor(s, x, size_hint=len(bad)))])
    link.send(t)
    ctx.expect(s, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, len(bad), (w1.peer_id,), (w1.address,)))
    asked = lambda: len(s.received(GetObjectStatus, lambda m: m.object_id == x)) >= 2  # noqa: E731
    ended = lambda: bool(s.received(TaskReply, lambda m: m.task_id == t.task_id))  # noqa: E731
    ctx.wait_until(s, lambda: asked() or ended(), requirement="OBJ-076",
                   what=f"a second GetObjectStatus for {x} once W1's bytes ({what}) turned out not to be a stored form",
                   timeout=30.0)
    kept = [str(a.body) for a in s.received(AddLocation) if a.body.object_id == x]
    ctx.check("OBJ-076", not kept, f"no AddLocation for the bad copy ({what}: not kept)", kept)
    ctx.require("OBJ-076", asked(), f"a second GetObjectStatus for {x}: the fetch failed at W1, the owner asked again",
                "the task ended without asking again: " + "; ".join(
                    describe_return(r) for a in s.received(TaskReply, lambda m: m.task_id == t.task_id) for r in a.body.returns))
    link.send(ObjectStatus(x, ObjectState.READY, len(form), (w2.peer_id,), (w2.address,)))
    reply = expect_reply(ctx, s, t, timeout=RESUME_BOUND_S)
    check_inline(ctx, reply, sum(data), requirement="OBJ-076", note="sum_bytes(X), fetched again from W2")
    errors = [str(a.body) for a in w1.received(ProtocolError)]
    ctx.check("OBJ-076", not errors, "nothing about the stored form answered as a malformed message", errors)


@case(
    "fetch/FET-013-chunks-of-other-requests-ignored",
    requirements=["FET-013", "TASK-002", "FET-001"],
    summary=(
        "The suite owns a stored object X (200,000 bytes) and submits sum_bytes(X by ref), answering the IUT's "
        "GetObjectStatus with READY and itself as the only location. Before it serves each FetchRequest it "
        "sends a FetchChunk for X whose requestId the IUT never used: the whole stored form of other bytes of "
        "the same size, marked last. The IUT must ignore those chunks (FET-013) and compute on X's own bytes."
    ),
)
def chunks_of_other_requests_ignored(ctx: CaseContext) -> None:
    from refrpc.codec import encode

    iut, peer, link = open_session(ctx)
    data = make_bytes_value(200_000)
    other = stored_form(portable(bytes(255 - b for b in data)))
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    if len(other) != len(form):
        raise ValueError("the stray stored form must have X's size")
    strays: list[int] = []

    def stray_first(req: FetchRequest) -> bool:  # on the I/O thread, before the request is served
        stray_id = req.request_id + 1_000_003
        strays.append(stray_id)
        chunk = FetchChunk(x, stray_id, 0, len(other), True, data=other)
        env = link._envelope(chunk, 0, None, {})
        link._transmit(encode(env), env, note="sent (a requestId the IUT never used)")
        return False

    peer.serve(x, form, refuse=stray_first)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,), location_addresses=(peer.address,)))
    reply = expect_reply(ctx, peer, t, timeout=30.0)
    ctx.require("FET-001", bool(strays), "at least one FetchRequest for X", "none")
    used = {r.request_id for r in peer.fetch_requests}
    ctx.note(f"stray chunks sent under requestIds {strays}; the IUT's own requests: {sorted(used)}")
    if used & set(strays):
        ctx.note("the IUT later used a requestId a stray chunk had carried; the check still holds")
    check_inline(ctx, reply, sum(data), requirement="FET-013",
                 note=f"sum_bytes of X's own bytes (the strays would give {sum(255 - b for b in data)})")


@case(
    "fetch/FET-017-no-accept-lz4-without-lz4",
    requirements=["FET-017", "HS-021", "FET-001"],
    summary=(
        "On a session where the suite offers no lz4 (so lz4 is not in use, whatever the IUT offers), the suite "
        "owns a stored object X and submits sum_bytes(X by ref), naming itself as X's only location. Every "
        "FetchRequest the IUT sends must carry acceptLz4 = false, and the task answers the right sum."
    ),
)
def no_accept_lz4_without_lz4(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    ctx.check("", "lz4" not in link.features, "lz4 not in use on the session", link.features, note="the suite's own setup")
    x, data, reply = _fetch_through_task(ctx, peer, link)
    check_inline(ctx, reply, sum(data), requirement="FET-001", note="sum_bytes of X, fetched from the suite")
    requests = [r for r in peer.fetch_requests if r.object_id == x]
    ctx.check("FET-001", bool(requests), f"at least one FetchRequest for {x}", "none")
    flagged = [r.request_id for r in requests if r.accept_lz4]
    ctx.check("FET-017", not flagged, "acceptLz4 = false on every FetchRequest (lz4 is not in use)",
              f"acceptLz4 = true on requests {flagged} of {len(requests)}")


@case(
    "fetch/FET-067-refused-accept-lz4-resumed-at-once",
    requirements=["FET-067", "FET-002", "FET-006", "HS-021", "TASK-002"],
    features=("core", "lz4"),
    summary=(
        "On a session where both peers offer lz4, the suite owns a stored object X and submits sum_bytes(X by "
        "ref). It answers every FetchRequest with acceptLz4 = true as a holder that does not use lz4 would: no "
        "chunk, and a sequenced ProtocolError(FEATURE_NOT_NEGOTIATED) with relatedSeq 0. The IUT must ask for "
        "the refused range again at once (from the first missing byte), without acceptLz4, and reply with the "
        "right sum; once it has asked without the flag it must never set it again on that session. Then, to "
        "measure what 'at once' must beat, the suite serves a second object Y with its final chunk withheld: "
        "the IUT's requests for Y carry no acceptLz4, and its resumption of X must have come sooner than its "
        "progress timeout (FET-006) resumes Y. An IUT that never sets acceptLz4 is not refused (the case notes it)."
    ),
    timeout=150.0,
)
def refused_accept_lz4_resumed_at_once(ctx: CaseContext) -> None:
    iut, peer, link = _lz4_session(ctx)
    data = make_bytes_value(FETCHED_SIZE)
    form = stored_form(portable(data))
    x = ctx.new_id(peer)
    peer.serve(x, form, chunk_bytes=SUITE_CHUNK, refuse_lz4=True)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002", what=f"GetObjectStatus for {x}")
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(peer.peer_id,), location_addresses=(peer.address,)))
    first = ctx.expect(peer, FetchRequest, lambda m: m.object_id == x, requirement="TASK-002", what=f"a FetchRequest for {x}")
    if not first.body.accept_lz4:
        ctx.note("the IUT did not set acceptLz4 although lz4 is in use: nothing was refused (FET-067 not exercised)")
        check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="TASK-002",
                     note="sum_bytes of X")
        return

    def plain_requests() -> list[Any]:
        return [a for a in peer.received(FetchRequest) if a.body.object_id == x and not a.body.accept_lz4]

    ctx.wait_until(peer, lambda: bool(plain_requests()), requirement="FET-067",
                   what=f"a FetchRequest for {x} without acceptLz4 after the refusal", timeout=RESUME_BOUND_S)
    reply = expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S)
    check_inline(ctx, reply, sum(data), requirement="FET-067", note="sum_bytes of X, fetched after the refusal")
    arrivals = [a for a in peer.received(FetchRequest) if a.body.object_id == x]
    resumed = plain_requests()[0]
    refusals = list(peer.lz4_refusals)
    ctx.check("FET-002", resumed.body.offset in {r.offset for _, r in refusals},
              "the first request without acceptLz4 starts where a refused range started (nothing of X was sent)",
              f"offset {resumed.body.offset}; refused ranges {[(r.offset, r.length) for _, r in refusals]}")
    flagged = [a.body.request_id for a in arrivals if a.index > resumed.index and a.body.accept_lz4]
    ctx.check("FET-067", not flagged, "no acceptLz4 on the session once the IUT asked without it",
              f"acceptLz4 = true again on requests {flagged}" if flagged else "none")
    refused_at = max((at for at, _ in refusals if at <= resumed.t), default=first.t)
    delay = resumed.t - refused_at

    # The yardstick: how long the IUT's progress timeout takes to resume a stalled fetch (FET-006).
    y_size = len(stored_form(portable(make_bytes_value(FETCHED_SIZE))))
    to_lose = {y_size - 1}
    y, y_data, y_reply = _fetch_through_task(ctx, peer, link, refuse_lz4=True, lose=_lose_once(to_lose))
    check_inline(ctx, y_reply, sum(y_data), requirement="FET-006", note="sum_bytes of Y after its stalled fetch resumed")
    y_arrivals = [a for a in peer.received(FetchRequest) if a.body.object_id == y]
    y_flagged = [a.body.request_id for a in y_arrivals if a.body.accept_lz4]
    ctx.check("FET-067", not y_flagged, "no acceptLz4 on any request for Y: the session's holder refused it",
              f"acceptLz4 = true on requests {y_flagged}" if y_flagged else "none")
    lost_at = next((c.t for c in peer.served if c.object_id == y and not c.sent), None)
    ctx.require("", lost_at is not None and not to_lose, "the suite withheld Y's final chunk", "not withheld",
                note="the suite's own setup")
    stalled = [a.t - lost_at for a in y_arrivals if a.t > lost_at]
    ctx.require("FET-006", bool(stalled), "a request resuming Y after its final chunk was withheld", "none")
    ctx.check("FET-067", delay < stalled[0],
              f"X's refused range asked for again sooner than the IUT resumes a stalled fetch ({stalled[0]:.2f} s for Y)",
              f"{delay:.3f} s after the refusal")
