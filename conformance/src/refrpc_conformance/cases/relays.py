"""objects-and-fetch.md §6: relays, with the IUT as fetcher, as relay and as owner.

As fetcher, the IUT resolves a ``ref`` argument the suite owns; the suite's
ObjectStatus names suite peers as relays and locations. As relay, the IUT is
fetching such an argument while another suite peer fetches from it. As owner,
the IUT answers two suite peers that offer to relay one of its put values.
"""

from __future__ import annotations

from refrpc.core.messages import (
    ErrorCode,
    FetchChunk,
    FetchRequest,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    RemoveLocation,
)

from .._build import by_ref, make_bytes_value, portable, stored_form
from .._case import case
from .._context import CaseContext
from .._wire import Link, WirePeer
from ._common import check_inline, expect_reply, open_session, task
from .fetch import FETCHED_SIZE, RESUME_BOUND_S, SUITE_CHUNK

#: The downstream peer's chunk size when it fetches from the IUT as a relay.
DOWN_CHUNK = 32 * 1024


def _offer(ctx: CaseContext, peer: WirePeer, link: Link, holders: list[WirePeer], relays: list[WirePeer],
           empty: tuple[WirePeer, ...] = (), **serve_options) -> tuple[str, bytes, bytes, object, GetObjectStatus]:
    """The suite owns a stored object X (FETCHED_SIZE bytes of data) and submits
    ``sum_bytes(X by ref)``; it answers the IUT's GetObjectStatus with ``holders`` as
    X's locations and ``relays`` as its relays, each of which serves X, except those
    in ``empty``, which answer every request OBJECT_FREED (no copy, FET-004).

    Returns:
        X's id, its data, its stored form, the task, and the IUT's GetObjectStatus.
    """
    data = make_bytes_value(FETCHED_SIZE)
    x = ctx.new_id(peer)
    form = stored_form(portable(data))
    for h in holders + relays:
        if h in empty:
            h.serve(x, form, chunk_bytes=SUITE_CHUNK, refuse=lambda req: ErrorCode.OBJECT_FREED)
        else:
            h.serve(x, form, chunk_bytes=SUITE_CHUNK, **serve_options)
    t = task(peer, "sum_bytes", [by_ref(ctx.descriptor(peer, x, size_hint=len(form)))])
    link.send(t)
    ask: GetObjectStatus = ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="TASK-002",
                                      what=f"GetObjectStatus for {x}").body
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=tuple(h.peer_id for h in holders),
                           location_addresses=tuple(h.address for h in holders),
                           relays=tuple(r.peer_id for r in relays), relay_addresses=tuple(r.address for r in relays)))
    return x, data, form, t, ask


def _collect(ctx: CaseContext, peer: WirePeer, request_id: int, *, requirement: str, timeout: float) -> list[FetchChunk]:
    """The chunks answering ``request_id``, up to the one marked last."""
    chunks: list[FetchChunk] = []
    while not chunks or not chunks[-1].last:
        chunks.append(ctx.expect(peer, FetchChunk, lambda m: m.request_id == request_id, requirement=requirement,
                                 what=f"FetchChunk {len(chunks) + 1} of request {request_id}", timeout=timeout).body)
    return chunks


def _bytes_of(ctx: CaseContext, chunks: list[FetchChunk], start: int, *, requirement: str, note: str) -> bytes:
    ctx.check(requirement, all(c.error is None for c in chunks), "no error chunk",
              [c.error.code.value for c in chunks if c.error is not None], note=note)
    ctx.check("FET-001", [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True],
              "last = true on the final chunk only", [c.last for c in chunks], note=note)
    ctx.check("FET-020", all(len(c.data) <= DOWN_CHUNK for c in chunks), f"every chunk at most {DOWN_CHUNK} bytes",
              [len(c.data) for c in chunks], note=note)
    got, at = bytearray(), start
    for c in chunks:
        if c.offset != at:
            ctx.check(requirement, False, f"chunks in order of offset from {start}", f"chunk at {c.offset} where {at} was expected",
                      note=note)
            break
        got += c.data
        at += len(c.data)
    return bytes(got)


@case(
    "fetch/FET-040-relays-before-locations",
    requirements=["FET-040", "FET-018", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref); its ObjectStatus lists one suite peer as "
        "X's location (the primary) and another as a relay, both serving X. The IUT should fetch from the relay "
        "and ask the primary only if the relay fails it, and must reply with the right sum."
    ),
    timeout=90.0,
)
def relays_first(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    primary, relay = ctx.wire_peer("primary"), ctx.wire_peer("relay")
    x, data, form, t, ask = _offer(ctx, peer, link, [primary], [relay])
    check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="FET-010",
                 note="sum_bytes of X, fetched from a relay")
    to_relay = [r for r in relay.fetch_requests if r.object_id == x]
    to_primary = [r for r in primary.fetch_requests if r.object_id == x]
    ctx.check("FET-040", bool(to_relay) and not to_primary, "every request to the relay, none to the primary",
              f"{len(to_relay)} to the relay, {len(to_primary)} to the primary")


@case(
    "fetch/FET-041-no-copy-goes-to-the-next-source",
    requirements=["FET-041", "OBJ-013", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref); its ObjectStatus lists two suite peers "
        "as X's locations. The primary answers every FetchRequest for X with one error chunk OBJECT_FREED (it has "
        "no copy). The IUT must not take that as the loss of X: it must go on from the other location of the same "
        "answer and reply with the right sum."
    ),
    timeout=90.0,
)
def next_source(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    primary, secondary = ctx.wire_peer("primary"), ctx.wire_peer("secondary")
    x, data, form, t, ask = _offer(ctx, peer, link, [primary, secondary], [], empty=(primary,))
    check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="FET-041",
                 note="sum_bytes of X, whose first location has no copy")
    ctx.check("FET-041", any(r.object_id == x for r in secondary.fetch_requests), "requests to the second location",
              f"{sum(r.object_id == x for r in secondary.fetch_requests)} request(s)")
    asked_again = [a for a in peer.received(GetObjectStatus) if a.body.object_id == x][1:]
    ctx.note(f"the IUT asked the owner {len(asked_again)} more time(s)")


@case(
    "fetch/FET-042-iut-relays-the-bytes-it-has",
    requirements=["FET-042", "LOC-020", "FET-001", "FET-014"],
    summary=(
        "The suite owns a stored object X (300,000 bytes) and submits sum_bytes(X by ref), naming itself as X's "
        "only location; it serves X in chunks of 64 KiB but withholds, once, every chunk from byte 131,072 on, so "
        "the IUT holds only the first 128 KiB until its progress timeout makes it ask again. If the IUT offered to "
        "relay (GetObjectStatus.relay), a second suite peer then fetches from it: the range it already holds "
        "must come back at once and equal X's bytes; a range past what it holds must come back once those bytes "
        "have arrived, equal too (not refused, not spliced). An IUT that does not offer to relay is UNSUPPORTED."
    ),
    timeout=120.0,
)
def iut_relays(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    half = 2 * SUITE_CHUNK
    withheld: set[int] = set()

    def lose(req: FetchRequest, offset: int, end: int) -> bool:
        if offset >= half and offset not in withheld:
            withheld.add(offset)
            return True
        return False

    x, data, form, t, ask = _offer(ctx, peer, link, [peer], [], lose=lose)
    if not ask.relay:
        expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S)
        ctx.skip("the IUT does not offer to relay (GetObjectStatus.relay = false; LOC-020 is a MAY)")
    ctx.wait_until(peer, lambda: bool(withheld), requirement="", what="the suite withheld the rest of X", timeout=20.0)
    down = ctx.wire_peer("downstream")
    down_link = ctx.session(down, iut)
    down_link.send(FetchRequest(x, 1, 0, half, DOWN_CHUNK))
    got = _bytes_of(ctx, _collect(ctx, down, 1, requirement="FET-042", timeout=10.0), 0, requirement="FET-042",
                    note="the first 128 KiB, which the IUT holds")
    ctx.check("FET-042", got == form[:half], "the first 128 KiB of X's stored form",
              "equal" if got == form[:half] else f"{len(got)} bytes, different")
    down_link.send(FetchRequest(x, 2, half, -1, DOWN_CHUNK))
    rest = _collect(ctx, down, 2, requirement="FET-042", timeout=RESUME_BOUND_S)
    got = _bytes_of(ctx, rest, half, requirement="FET-042", note="the rest, which the IUT was still fetching")
    ctx.check("FET-042", got == form[half:], "the rest of X's stored form once it arrived at the IUT",
              "equal" if got == form[half:] else f"{len(got)} bytes, different")
    check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="FET-010",
                 note="sum_bytes of X")


@case(
    "fetch/FET-043-relay-refuses-what-it-will-not-get",
    requirements=["FET-043", "FET-042", "LOC-023", "OBJ-013", "FET-018", "FET-004"],
    summary=(
        "As in the relay case, but X's only location is a separate suite peer that serves the first 128 KiB and "
        "then dies. While the IUT, relaying X, waits for the rest, a second suite peer asks it for the last 32 KiB "
        "it has and the rest, and must get those 32 KiB at once. Once the IUT has given up on its own fetch (the "
        "location is declared dead) it must end that request with one error chunk OBJECT_FREED, last, whose "
        "offset is the first byte it did not send (FET-004: an error chunk after data); it should tell the owner with RemoveLocation, then ask the owner "
        "again (OBJ-013), fetch X from the new location the suite names, and reply with the right sum. An IUT that "
        "does not offer to relay is UNSUPPORTED."
    ),
    timeout=120.0,
)
def relay_gives_up(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    half = 2 * SUITE_CHUNK
    holder = ctx.wire_peer("holder")
    x, data, form, t, ask = _offer(ctx, peer, link, [holder], [], lose=lambda req, offset, end: offset >= half)
    if not ask.relay:
        holder.close()
        ctx.skip("the IUT does not offer to relay (GetObjectStatus.relay = false; LOC-020 is a MAY)")
    ctx.wait_until(holder, lambda: any(not c.sent for c in holder.served), requirement="",
                   what="the holder withheld the rest of X", timeout=20.0)
    down = ctx.wire_peer("downstream")
    down_link = ctx.session(down, iut)
    down_link.send(FetchRequest(x, 1, half - DOWN_CHUNK, -1, DOWN_CHUNK))  # one chunk it has, then the gap
    holder.close()  # dies: the IUT declares it dead (LIV-003) and its fetch has no location left
    chunks = _collect(ctx, down, 1, requirement="FET-043", timeout=RESUME_BOUND_S)
    last = chunks[-1]
    ctx.check("FET-043", last.error is not None and last.error.code is ErrorCode.OBJECT_FREED and not last.data,
              "the request ends with one error chunk OBJECT_FREED, last, no data",
              f"error={last.error.code.value if last.error else None} data={len(last.data)} after {len(chunks) - 1} chunk(s)")
    served = [c for c in chunks if c.error is None]
    ctx.check("FET-042", all(form[c.offset:c.offset + len(c.data)] == bytes(c.data) for c in served),
              "any bytes sent before the refusal are X's", f"{len(served)} data chunk(s)")
    ctx.check("FET-042", sum(len(c.data) for c in served) == DOWN_CHUNK,
              f"the {DOWN_CHUNK:,} bytes the relay had were served before the refusal",
              [(c.offset, len(c.data)) for c in served])
    unsent = served[-1].offset + len(served[-1].data) if served else half - DOWN_CHUNK
    ctx.check("FET-004", last.offset == unsent and (not served or last.total_size == served[-1].total_size),
              f"the error chunk after data names the first byte not sent ({unsent:,}) and the size the data chunks "
              "carried", f"offset {last.offset:,}, totalSize {last.total_size:,}")
    again = ctx.expect(peer, GetObjectStatus, lambda m: m.object_id == x, requirement="OBJ-013",
                       what=f"GetObjectStatus for {x} again", timeout=RESUME_BOUND_S)
    removed = [a for a in peer.received(RemoveLocation) if a.body.object_id == x and a.t <= again.t]
    ctx.check("LOC-023", bool(removed), "RemoveLocation for X before asking again", f"{len(removed)} RemoveLocation(s)")
    spare = ctx.wire_peer("spare")
    spare.serve(x, form, chunk_bytes=SUITE_CHUNK)
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(spare.peer_id,), location_addresses=(spare.address,)))
    check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="FET-010",
                 note="sum_bytes of X, fetched again from the new location")


@case(
    "objects/LOC-020-LOC-022-iut-lists-relays",
    requirements=["LOC-020", "LOC-021", "LOC-022", "OBJ-008"],
    summary=(
        "The IUT puts a large value X. Suite peer A asks GetObjectStatus(X, relay = true), then suite peer B asks "
        "the same. A's answer lists X's locations and no relay naming A; B's answer may list A as a relay (the "
        "IUT lists relays: LOC-020 is a MAY, an IUT that lists none is UNSUPPORTED), with A's address, never B "
        "itself, and never as a location. After A sends RemoveLocation(X), a third ask by B lists A no more."
    ),
)
def iut_lists_relays(ctx: CaseContext) -> None:
    iut, a, link_a = open_session(ctx, peer_name="fetcher-a")
    x = iut.put(make_bytes_value(iut.inline_threshold + 20_000))
    b = ctx.wire_peer("fetcher-b")
    link_b = ctx.session(b, iut)

    def status(peer: WirePeer, link: Link, what: str, relay: bool = True) -> ObjectStatus:
        link.send(GetObjectStatus(x, wait=True, relay=relay))
        st: ObjectStatus = ctx.expect(peer, ObjectStatus, lambda m: m.object_id == x, requirement="OBJ-002", what=what).body
        return st

    first = status(a, link_a, f"ObjectStatus for {x} to A")
    ctx.check("OBJ-004", first.state is ObjectState.READY and bool(first.locations), "READY with locations",
              f"{first.state.value}, {list(first.locations)}")
    ctx.check("LOC-021", a.peer_id not in first.relays and len(first.relays) == len(first.relay_addresses),
              "no relay naming A itself; as many relay addresses as relays", f"{list(first.relays)} / {list(first.relay_addresses)}")
    second = status(b, link_b, f"ObjectStatus for {x} to B")
    ctx.check("LOC-021", len(second.relays) == len(second.relay_addresses) and b.peer_id not in second.relays,
              "as many relay addresses as relays, none naming B", f"{list(second.relays)} / {list(second.relay_addresses)}")
    ctx.check("LOC-022", a.peer_id not in second.locations, "A, a relay, is not a location", list(second.locations))
    if a.peer_id not in second.relays:
        ctx.skip("the IUT lists no relays (LOC-020 is a MAY)")
    i = second.relays.index(a.peer_id)
    ctx.check("LOC-021", second.relay_addresses[i] == a.address, f"A's address {a.address!r}", second.relay_addresses[i])
    link_a.send(RemoveLocation(x))
    # B's next answer comes after A's RemoveLocation is handled: ask through A's session first, so the
    # IUT has certainly handled the RemoveLocation before it answers B (a session is ordered, SES-001).
    status(a, link_a, f"ObjectStatus for {x} to A, after its RemoveLocation", relay=False)
    third = status(b, link_b, f"ObjectStatus for {x} to B, after A's RemoveLocation")
    ctx.check("LOC-022", a.peer_id not in third.relays, "A is no longer a relay after its RemoveLocation", list(third.relays))


@case(
    "fetch/FET-066-a-full-source-is-not-a-full-fetcher",
    requirements=["FET-066", "FET-041", "OBJ-013", "FET-010", "TASK-002"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref); its first ObjectStatus lists one suite "
        "peer as X's only location, which answers every FetchRequest for X with one error chunk OBJECT_STORE_FULL "
        "(its own store has no room). That is the source's trouble, not the IUT's: the IUT must not fail the task "
        "with OBJECT_STORE_FULL, but ask the owner again (GetObjectStatus); the suite then names a second location "
        "that serves X, and the IUT must reply with the right sum."
    ),
    timeout=90.0,
)
def full_source(ctx: CaseContext) -> None:
    from refrpc.core.messages import TaskReply

    iut, peer, link = open_session(ctx)
    full, good = ctx.wire_peer("full"), ctx.wire_peer("good")
    x, data, form, t, ask = _offer(ctx, peer, link, [full], [], refuse=lambda req: ErrorCode.OBJECT_STORE_FULL)
    good.serve(x, form, chunk_bytes=SUITE_CHUNK)
    arrival = ctx.expect(
        peer, (GetObjectStatus, TaskReply),
        lambda m: m.object_id == x if isinstance(m, GetObjectStatus) else m.task_id == t.task_id,
        requirement="FET-066", what=f"a second GetObjectStatus for {x} (or the task's reply)", timeout=RESUME_BOUND_S)
    if isinstance(arrival.body, TaskReply):
        codes = [r.error.code.value for r in arrival.body.returns if r.error is not None]
        ctx.check("FET-066", False, "the owner asked again, not a reply", f"a reply with errors {codes}")
        return
    link.send(ObjectStatus(x, ObjectState.READY, size=len(form), locations=(good.peer_id,),
                           location_addresses=(good.address,)))
    check_inline(ctx, expect_reply(ctx, peer, t, timeout=RESUME_BOUND_S), sum(data), requirement="FET-066",
                 note="sum_bytes of X, whose first source answered OBJECT_STORE_FULL")
    ctx.check("FET-041", any(r.object_id == x for r in full.fetch_requests), "requests to the full source first",
              f"{sum(r.object_id == x for r in full.fetch_requests)} request(s)")


@case(
    "fetch/OBJ-015-failed-after-ready-fails-the-task",
    requirements=["OBJ-015", "OBJ-013", "TASK-009", "FET-041"],
    summary=(
        "The suite owns a stored object X and submits sum_bytes(X by ref); its first ObjectStatus says READY and "
        "lists one suite peer as X's only location, which has no copy (one error chunk OBJECT_FREED). The IUT asks "
        "the owner again, and the owner now answers FAILED with OBJECT_LOST (X was lost and could not be rebuilt). "
        "A non-owner must take FAILED after READY: the task fails with the argument's error, every return "
        "ERROR(OBJECT_LOST) (TASK-009), and nothing more is fetched."
    ),
    timeout=90.0,
)
def failed_after_ready(ctx: CaseContext) -> None:
    from refrpc.core.messages import ErrorInfo, ReturnKind, TaskReply

    iut, peer, link = open_session(ctx)
    empty = ctx.wire_peer("empty")
    x, _data, _form, t, _ask = _offer(ctx, peer, link, [empty], [], empty=(empty,))
    arrival = ctx.expect(
        peer, (GetObjectStatus, TaskReply),
        lambda m: m.object_id == x if isinstance(m, GetObjectStatus) else m.task_id == t.task_id,
        requirement="OBJ-013", what=f"a second GetObjectStatus for {x} (or the task's reply)", timeout=RESUME_BOUND_S)
    if isinstance(arrival.body, TaskReply):
        codes = [r.error.code.value for r in arrival.body.returns if r.error is not None]
        ctx.check("OBJ-013", False, "the owner asked again once the only location had no copy", f"a reply with errors {codes}")
        return
    link.send(ObjectStatus(x, ObjectState.FAILED, error=ErrorInfo(ErrorCode.OBJECT_LOST, f"{x} lost, not rebuilt", "LIN-003")))
    reply = expect_reply(ctx, peer, t, requirement="OBJ-015", timeout=15.0)
    codes = [r.error.code if r.kind is ReturnKind.ERROR and r.error is not None else None for r in reply.returns]
    ctx.check("OBJ-015", bool(codes) and all(c is ErrorCode.OBJECT_LOST for c in codes),
              "every return ERROR(OBJECT_LOST): the owner's FAILED after READY ends the argument",
              [c.value if c else "not an error" for c in codes])
    before = len(empty.fetch_requests)
    iut.quiesce()
    ctx.check("OBJ-015", len(empty.fetch_requests) == before, "nothing fetched after the FAILED answer",
              f"{len(empty.fetch_requests) - before} more FetchRequest(s)")
