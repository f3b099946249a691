"""The data plane: fetching stored values from a peer on another host (FET-*).

Both sides run on the node's loop thread. The fetcher asks its preferred
source (the first relay the owner listed, FET-040, else the primary, FET-011)
for the stored form in ranges of at most 8 MiB, at most 4 outstanding (FET-015);
a source that has no copy sends it on to the next one (FET-041). The holder
streams each range back in chunks (each compressed with lz4 on its own when the
session negotiated it and it pays) that fit the fetcher's announced frame limit
(FET-007). Chunks travel outside the session (FET-005): a lost chunk is noticed
by the fetcher and asked for again (FET-002, FET-006); a range the holder refuses
as RESOURCE_EXHAUSTED is asked for again after a growing delay (FET-009, ERR-009).

While it fetches, a peer is a relay (LOC-020): it serves the bytes it has
received to other fetchers, each chunk as soon as its bytes are all here
(FET-042), and answers what is left with OBJECT_FREED if its own fetch fails
(FET-043).
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import lz4.frame

from ..core import events as ev
from ..core.messages import ErrorCode, ErrorInfo, FetchChunk, FetchRequest, PeerId
from ..errors import RefRPCError
from ..store import ObjectNotFound, StoreError, StoreFull

if TYPE_CHECKING:
    from ._node import Node

#: Chunks at least this large are tried with lz4 (smaller ones rarely pay).
LZ4_MIN_BYTES = 4096
#: After a chunk that lz4 did not shrink enough, this many chunks of the same request
#: go without trying (incompressible data costs a compression per chunk otherwise).
LZ4_BACKOFF_CHUNKS = 8
#: No chunk for this long: ask again for what is missing (FET-006).
PROGRESS_TIMEOUT_S = 5.0
#: The largest range one FetchRequest asks for, and how many may be outstanding (FET-015).
RANGE_BYTES = 8 << 20
MAX_OUTSTANDING = 4
#: Room left in a frame for the envelope around a chunk's data (FET-007).
FRAME_HEADROOM = 64 << 10
#: FET-020: the smallest chunk a holder serves, whatever a request asks for.
MIN_CHUNK_BYTES = 1024
#: FET-009: requests served at once for one fetcher incarnation, and for everyone.
MAX_SERVED_PER_FETCHER = 4
MAX_SERVED = 64
#: FET-020: what the holder sends per turn of the loop, over all requests it serves,
#: so that serving never keeps the loop from heartbeats and other peers' messages.
SERVE_BYTES_PER_TURN = 8 << 20
SERVE_CHUNKS_PER_TURN = 256
#: How long a request for an object this peer offered to relay, but has not begun to
#: fetch yet, waits for that fetch before it is answered OBJECT_FREED (FET-042).
PARK_S = 1.0
#: Objects whose count of bad copies in a row is kept at most (OBJ-077): an object freed
#: after one or two bad copies is forgotten with the oldest, never kept for ever.
BAD_COPIES_KEPT = 4096
#: Waits before asking a holder that answered RESOURCE_EXHAUSTED again (ERR-009).
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0
#: Bad copies of one object in a row (OBJ-076, FET-008) after which its read fails
#: for good with MALFORMED (OBJ-077).
BAD_COPY_LIMIT = 3


class BadCopies(RefRPCError):
    """Every one of the last BAD_COPY_LIMIT fetches of the object brought a bad copy
    (not a stored form, OBJ-076, or a chunk that did not decompress, FET-008): the
    read fails for good (OBJ-077)."""

    requirement = "OBJ-076"

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.MALFORMED)


@dataclass
class _Fetch:
    object_id: str
    locations: list[tuple[PeerId, str]]
    future: Future[int] = field(default_factory=Future)
    total: int = -1
    last_progress: float = 0.0
    #: Failures so far (timeouts, dead holders); the fetch gives up after a few per location.
    failures: int = 0
    #: Index in ``locations`` of the holder asked now: the first (the primary, FET-011)
    #: until it fails the fetch.
    where: int = 0
    #: The location the current requests go to.
    asked: PeerId = ""
    #: Ranges asked for and not yet ended: request id -> (offset, length).
    outstanding: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: The first byte no range has asked for yet (the first pass over the object).
    next_offset: int = 0
    #: Ranges the holder refused (RESOURCE_EXHAUSTED), asked for again at ``retry_at``.
    refused: list[tuple[int, int]] = field(default_factory=list)
    retry_at: float = 0.0
    retry_delay: float = RETRY_FIRST_S
    #: The holders whose chunks brought bytes of this copy (OBJ-067, SEC-005).
    sources: set[PeerId] = field(default_factory=set)
    #: The outstanding requests sent with acceptLz4 = true (FET-067).
    lz4_requests: set[int] = field(default_factory=set)


@dataclass
class _Serving:
    """A request this holder serves, chunk by chunk, a few per turn of the loop (FET-020).

    A relay (LOC-020) serves from the copy it is assembling: ``total`` and ``end``
    stay -1 until its own fetch has learnt the size, and a chunk waits until its
    bytes have arrived (FET-042)."""

    fetcher: PeerId
    incarnation: int
    address: str
    request: FetchRequest
    total: int
    end: int
    step: int
    may_compress: bool
    #: The next byte to send.
    offset: int
    #: Chunks to send without trying lz4, after tries that did not pay (FET-016).
    skip_lz4: int = 0


#: What a chunk of a relayed request does when its bytes have not arrived yet.
_WAIT = -1


def _decompress(data: bytes, most: int) -> bytes | None:
    """An lz4 chunk's bytes, at most ``most`` of them; None if it does not decompress
    whole within that (a frame claiming more, or no frame at all). Nothing larger is
    ever allocated, whatever the frame's header claims."""
    d = lz4.frame.LZ4FrameDecompressor()
    try:
        out = d.decompress(data, max_length=most + 1)
    except Exception:  # noqa: BLE001 - any failure of a peer's bytes is a bad chunk
        return None
    return out if d.eof and len(out) <= most else None


class FetchService:
    """Fetcher and holder sides of FET-*, for one node."""

    def __init__(self, node: Node, chunk_bytes: int = 1 << 20) -> None:
        self.node = node
        # FET-007: never more than our own frame limit allows.
        self.chunk_bytes = max(1, min(chunk_bytes, node.config.max_frame_bytes - FRAME_HEADROOM))
        self._ids = itertools.count(1)
        self._by_request: dict[int, _Fetch] = {}
        self._by_object: dict[str, _Fetch] = {}
        #: Objects whose last fetches brought bad copies, and how many in a row (OBJ-077).
        self.bad_copies: dict[str, int] = {}
        #: Requests being served, oldest first (FET-009, FET-020).
        self._serving: list[_Serving] = []
        #: Bytes received as chunks, and how many of them arrived compressed.
        self.received = 0
        self.received_compressed = 0
        #: Bytes of stored forms sent to each fetcher (uncompressed), and of them from
        #: copies still being assembled here (relayed, FET-042).
        self.served: dict[PeerId, int] = {}
        self.relayed = 0
        #: Requests that came before our own fetch of the object they ask for, which the
        #: owner already lists us as relaying: (arrival, delivery), by object (FET-042).
        self._parked: dict[str, list[tuple[float, ev.DeliverData]]] = {}
        #: The sessions (holder, its incarnation) that refused our acceptLz4 (FET-067):
        #: no request on them carries it again. Dropped when the holder dies.
        self._lz4_refused: set[tuple[PeerId, int]] = set()

    # ------------------------------------------------------------ fetcher
    def fetch(self, object_id: str, locations: tuple[tuple[PeerId, str], ...]) -> Future[int]:
        """Copy ``object_id`` into the local store; the future gets its size (loop thread)."""
        f = self._by_object.get(object_id)
        if f is not None:
            return f.future
        # A holder already declared dead has no copy to give: asking it would only wait
        # out the progress timeout, try after try (FET-006). Without a live location the
        # fetch fails now and the getter asks the owner again (OBJ-013).
        others = [(p, a) for p, a in locations if p != self.node.peer_id and not self._known_dead(p)]
        f = _Fetch(object_id, others)
        if not others:
            f.future.set_exception(ObjectNotFound(f"no other location holds {object_id}"))
            return f.future
        self._by_object[object_id] = f
        self._start(f)
        for _, d in self._parked.pop(object_id, []):  # they waited for this fetch: served from it now
            self._on_request(d, d.message)
        return f.future

    def _known_dead(self, peer: PeerId) -> bool:
        core = self.node.core
        r = core.remotes.get(peer)
        if r is not None:
            return r.state == "dead"
        return any(p == peer for p, _ in core.fenced)  # never in session, but fenced

    def _start(self, f: _Fetch) -> None:
        """Ask from the start, or resume what is missing (FET-002), from the current location."""
        f.outstanding.clear()
        f.lz4_requests.clear()
        f.refused.clear()
        if f.total < 0:
            f.next_offset = 0
            self._request(f, 0, RANGE_BYTES)  # the size is not known yet: one range first (FET-015)
        else:
            f.next_offset = f.total  # what is left comes back gap by gap
            self._complete_or_resume(f)

    def _request(self, f: _Fetch, offset: int, length: int) -> None:
        request_id = next(self._ids)  # FET-012: never reused
        f.last_progress = time.monotonic()
        f.outstanding[request_id] = (offset, length)
        self._by_request[request_id] = f
        peer, address = f.locations[f.where % len(f.locations)]
        f.asked = peer
        remote = self.node.core.remotes.get(peer)
        # HS-021, FET-017: only where the session uses lz4; FET-067: never again on a
        # session whose holder refused it.
        lz4_ok = (remote is not None and "lz4" in remote.features
                  and (peer, remote.incarnation) not in self._lz4_refused)
        if lz4_ok:
            f.lz4_requests.add(request_id)
        msg = FetchRequest(f.object_id, request_id, offset, length, self.chunk_bytes, lz4_ok)
        self.node.handle(ev.SendData(self.node.sid(), peer, 0, address, msg))

    def _fill(self, f: _Fetch) -> None:
        """FET-015: keep up to MAX_OUTSTANDING ranges of at most RANGE_BYTES in flight."""
        while len(f.outstanding) < MAX_OUTSTANDING and f.next_offset < f.total:
            length = min(RANGE_BYTES, f.total - f.next_offset)
            self._request(f, f.next_offset, length)
            f.next_offset += length

    def _on_chunk(self, sender: PeerId, c: FetchChunk) -> None:
        f = self._by_request.get(c.request_id)
        if f is None or f.object_id != c.object_id or c.request_id not in f.outstanding:
            return  # FET-013: not a request we wait for
        store = self.node.store
        if c.error is not None:
            rng = f.outstanding.pop(c.request_id)
            del self._by_request[c.request_id]
            f.lz4_requests.discard(c.request_id)
            if c.error.code == ErrorCode.RESOURCE_EXHAUSTED:
                # FET-009, ERR-009: the holder is busy, not empty: the same range, later.
                f.refused.append(rng)
                if not f.retry_at:
                    f.retry_at = time.monotonic() + f.retry_delay
                    f.retry_delay = min(RETRY_MAX_S, f.retry_delay * 2)
                f.last_progress = time.monotonic()
                return
            # FET-041: this source has no copy (a relay that has not started, or gave up,
            # FET-043), or refused the range: the next source of the same answer.
            self._source_failed(f, sender, c.error)
            return
        try:
            if f.total < 0:
                f.total = c.total_size
                f.next_offset = min(RANGE_BYTES, f.total)
                store.put_bytes(c.object_id, c.total_size)
            elif c.total_size != f.total:  # FET-010: the holder's copy changed size
                raise StoreError("chunks disagree on the total size")
            if c.lz4:
                data = _decompress(c.data, self._room_in_range(f, c))
                if data is None:  # FET-008: a bad chunk, as a bad copy (OBJ-076, OBJ-077)
                    store.free(c.object_id)
                    self._bad_copy(f, f"a chunk of {c.object_id} from {sender} does not decompress "
                                      "to bytes within its range")
                    return
            else:
                data = c.data
            self.received += len(data)
            self.received_compressed += len(c.data) if c.lz4 else 0
            store.write_chunk(c.object_id, c.offset, data)
            f.sources.add(sender)
        except (StoreError, RuntimeError, ValueError) as exc:
            store.free(c.object_id)
            code = ErrorCode.OBJECT_STORE_FULL if isinstance(exc, StoreFull) else ErrorCode.OBJECT_LOST  # OBJ-036
            self._fail(f, ErrorInfo(code, f"fetch of {c.object_id} failed: {exc}"))
            return
        f.last_progress = time.monotonic()
        f.retry_delay = RETRY_FIRST_S  # ERR-009: progress, back to the first delay
        if self._serving:
            self.serve()  # FET-042: requests relayed from this copy may go on now
        if c.last:
            del f.outstanding[c.request_id]
            del self._by_request[c.request_id]
            f.lz4_requests.discard(c.request_id)
            self._fill(f)
            if not f.outstanding and not f.refused and f.next_offset >= f.total:
                self._complete_or_resume(f)

    @staticmethod
    def _room_in_range(f: _Fetch, c: FetchChunk) -> int:
        """The most bytes chunk ``c`` may carry: up to the end of the range it answers
        (and of the object)."""
        start, length = f.outstanding[c.request_id]
        return max(0, min(start + length, f.total) - c.offset)

    def _complete_or_resume(self, f: _Fetch) -> None:
        store = self.node.store
        missing = store.missing(f.object_id)
        if missing:
            start, end = missing[0]
            self._request(f, start, min(end - start, RANGE_BYTES))  # FET-002, FET-015
            return
        try:
            size = store.seal(f.object_id)
        except StoreError as exc:
            store.free(f.object_id)
            self._bad_copy(f, f"fetched copy of {f.object_id} is corrupt: {exc}")
            return
        self.bad_copies.pop(f.object_id, None)  # OBJ-077: a good copy; the count starts again
        self._done(f)
        self.node.fetched_from[f.object_id] = frozenset(f.sources)
        # LOC-002: the owner learns about the new copy (and frees it with the object).
        self.node.handle(ev.CopyStored(self.node.sid(), f.object_id, size))
        f.future.set_result(size)

    def _source_failed(self, f: _Fetch, peer: PeerId, info: ErrorInfo) -> None:
        """FET-041: ``peer`` cannot serve this fetch: go on from the next source of
        the same answer (what arrived stays, FET-002), or fail with none left."""
        f.locations = [(p, a) for p, a in f.locations if p != peer]
        if not f.locations:
            # Whatever the last source answered (OBJECT_STORE_FULL included: its store,
            # not ours, had no room), it is not the loss of the object and not a lack
            # of room here: the getter asks the owner again (OBJ-013, FET-066).
            self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST,
                                    f"no source of the answer left; {peer} answered {info.code.value}: {info.message}"))
            return
        self._forget_requests(f)
        f.where = 0
        self._start(f)

    def _bad_copy(self, f: _Fetch, detail: str) -> None:
        """OBJ-076, FET-008: a bad copy fails the fetch; the getter asks the owner again
        (OBJ-013), unless it is the BAD_COPY_LIMIT-th in a row: then the read fails for
        good with MALFORMED (OBJ-077). (The caller has freed what was written.)"""
        n = self.bad_copies.pop(f.object_id, 0) + 1
        if n < BAD_COPY_LIMIT:
            self.bad_copies[f.object_id] = n  # newest last: the oldest go first past the bound
            while len(self.bad_copies) > BAD_COPIES_KEPT:
                del self.bad_copies[next(iter(self.bad_copies))]
            self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, detail))
            return
        self._fail(f, ErrorInfo(ErrorCode.MALFORMED, f"{detail} ({n} bad copies in a row)", "OBJ-076"))

    def _fail(self, f: _Fetch, info: ErrorInfo) -> None:
        self._done(f)
        if f.total >= 0:
            # The copy being written is abandoned: free its partial segment now, or it
            # would outlive the fetch (and make the next fetch of the object fail).
            try:
                self.node.store.free(f.object_id)
            except StoreError:
                pass  # already freed by the caller
        if not f.future.done():
            if info.code == ErrorCode.OBJECT_STORE_FULL:  # no room in this store (OBJ-036): do not look again
                f.future.set_exception(StoreFull(info.message))
            elif info.code == ErrorCode.MALFORMED:  # OBJ-077: bad copies only: do not look again
                f.future.set_exception(BadCopies(info.message))
            else:
                f.future.set_exception(ObjectNotFound(f"{f.object_id}: {info.code.value}: {info.message}"))
        if self._serving:
            self.serve()  # FET-043: requests relayed from the abandoned copy are refused now

    def _done(self, f: _Fetch) -> None:
        self._by_object.pop(f.object_id, None)
        for rid in [r for r, g in self._by_request.items() if g is f]:
            del self._by_request[rid]
        f.outstanding.clear()
        f.lz4_requests.clear()

    def _forget_requests(self, f: _Fetch) -> None:
        for rid in f.outstanding:
            self._by_request.pop(rid, None)
        f.outstanding.clear()
        f.lz4_requests.clear()

    def lz4_refused(self, peer: PeerId) -> None:
        """FET-067: ``peer`` answered a FetchRequest of ours with
        ``ProtocolError(FEATURE_NOT_NEGOTIATED)`` and relatedSeq 0 (it names no
        request, GEN-012). Every request outstanding there with acceptLz4 = true is
        refused: its range is asked for again at once, from the same holder, without
        acceptLz4, as is every later request on that session. Requests without the
        flag stay outstanding."""
        r = self.node.core.remotes.get(peer)
        if r is None or r.state != "alive":
            return
        self._lz4_refused.add((peer, r.incarnation))
        for f in list(self._by_object.values()):
            if f.asked != peer or not f.lz4_requests:
                continue
            refused = [rid for rid in f.lz4_requests if rid in f.outstanding]
            f.lz4_requests.clear()
            if not refused:
                continue
            ranges = [f.outstanding.pop(rid) for rid in sorted(refused)]
            for rid in refused:
                self._by_request.pop(rid, None)
            f.last_progress = time.monotonic()
            if f.total < 0:
                self._request(f, 0, RANGE_BYTES)  # nothing arrived yet, not even the size
                continue
            gaps = self.node.store.missing(f.object_id)
            for offset, length in ranges:  # FET-002: from the first missing byte of each
                end = min(offset + length, f.total)
                for lo, hi in gaps:
                    lo, hi = max(lo, offset), min(hi, end)
                    if lo < hi:
                        self._request(f, lo, hi - lo)
            self._fill(f)
            if not f.outstanding and not f.refused and f.next_offset >= f.total:
                self._complete_or_resume(f)

    def peer_died(self, peer: PeerId) -> None:
        """Death effects, step 11: fetches from a dead holder end now, not after the
        progress timeout: the next location is asked (FET-002), or, with none left,
        the fetch fails and its getter asks the owner again (OBJ-013). Requests
        it was being served end too."""
        self._serving = [j for j in self._serving if j.fetcher != peer]
        self._lz4_refused = {s for s in self._lz4_refused if s[0] != peer}
        for oid in list(self._parked):
            self._parked[oid] = [(at, d) for at, d in self._parked[oid] if d.sender != peer]
        for f in list(self._by_object.values()):
            if not any(p == peer for p, _ in f.locations):
                continue
            f.locations = [(p, a) for p, a in f.locations if p != peer]
            if not f.locations:
                self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, f"the holder {peer} died"))
            elif f.asked == peer:
                self._forget_requests(f)
                f.where = 0  # the first remaining location: the primary if it lives (FET-011)
                self._start(f)

    def tick(self) -> None:
        """FET-006: a fetch with no progress for a while asks again for what is missing;
        ranges refused as RESOURCE_EXHAUSTED are asked for again when their delay is over."""
        self.serve()
        now = time.monotonic()
        if self._parked:
            self._expire_parked(now)
        for f in list(self._by_object.values()):
            if f.retry_at and now >= f.retry_at:
                f.retry_at = 0.0
                again, f.refused = f.refused, []
                for offset, length in again:
                    self._request(f, offset, length)
                continue
            if now - f.last_progress < PROGRESS_TIMEOUT_S:
                continue
            r = self.node.core.remotes.get(f.asked)
            if r is not None and r.state == "connecting":
                # FET-006: requests queued behind a handshake (FET-005) are not sent yet; their
                # clock starts when the session opens. A failed handshake fails the source.
                f.last_progress = now
                continue
            f.failures += 1
            if f.failures >= 3 * max(1, len(f.locations)):
                self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, "no location answered"))
                continue
            self._forget_requests(f)
            f.where = f.failures  # FET-011: the other locations, in their order, once the first failed
            self._start(f)

    # ------------------------------------------------------------ holder
    def _copy_size(self, object_id: str) -> int | None:
        """The size of the copy here: sealed, or being assembled by a fetch of ours
        (a relay, LOC-020: -1 until the fetch has learnt it); None without one."""
        try:
            return self.node.store.size(object_id)
        except (ObjectNotFound, StoreError):
            pass
        f = self._by_object.get(object_id)
        return None if f is None else f.total

    def _about_to_fetch(self, object_id: str) -> bool:
        """Whether this peer offered to relay ``object_id`` (LOC-020) and has not given up."""
        b = self.node.core.borrowed.get(object_id)
        return b is not None and b.relay_offered

    def _expire_parked(self, now: float) -> None:
        """FET-042: a parked request whose fetch never began is answered OBJECT_FREED."""
        for oid in list(self._parked):
            keep = []
            for at, d in self._parked[oid]:
                if now - at < PARK_S and self._about_to_fetch(oid):
                    keep.append((at, d))
                    continue
                r = d.message
                err = ErrorInfo(ErrorCode.OBJECT_FREED, f"no copy of {oid} here", "FET-004")
                self.node.handle(ev.SendData(self.node.sid(), d.sender, d.sender_incarnation, d.sender_address,
                                             FetchChunk(oid, r.request_id, r.offset, 0, True, error=err)))
            if keep:
                self._parked[oid] = keep
            else:
                del self._parked[oid]

    def _on_request(self, d: ev.DeliverData, r: FetchRequest) -> None:
        send = lambda chunk: self.node.handle(ev.SendData(self.node.sid(), d.sender, d.sender_incarnation, d.sender_address, chunk))
        total = self._copy_size(r.object_id)
        if total is None and self._about_to_fetch(r.object_id):
            # The owner listed us as a relay before our own fetch began: wait for it a little.
            self._parked.setdefault(r.object_id, []).append((time.monotonic(), d))
            return
        if total is None:
            err = ErrorInfo(ErrorCode.OBJECT_FREED, f"no copy of {r.object_id} here", "FET-004")
            send(FetchChunk(r.object_id, r.request_id, r.offset, 0, True, error=err))
            return
        if (total >= 0 and r.offset > total) or r.length < -1 or r.chunk_bytes < 1:
            err = ErrorInfo(ErrorCode.MALFORMED, "offset beyond the end, length below -1 or no chunk size", "FET-014")
            send(FetchChunk(r.object_id, r.request_id, r.offset, max(total, 0), True, error=err))
            return
        # FET-009: a bounded number of requests served at once, per fetcher and in all;
        # beyond, a single RESOURCE_EXHAUSTED chunk, never silence.
        mine = sum(1 for job in self._serving if job.fetcher == d.sender and job.incarnation == d.sender_incarnation)
        if mine >= MAX_SERVED_PER_FETCHER or len(self._serving) >= MAX_SERVED:
            err = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, f"serving {mine} requests of yours, {len(self._serving)} in all",
                            "FET-009")
            send(FetchChunk(r.object_id, r.request_id, r.offset, max(total, 0), True, error=err))
            return
        end = -1 if total < 0 else total if r.length < 0 else min(total, r.offset + r.length)
        remote = self.node.core.remotes.get(d.sender)
        may_compress = r.accept_lz4 and remote is not None and "lz4" in remote.features  # FET-003
        # FET-007: every chunk fits the frame limit the fetcher announced, whatever it asked;
        # FET-020: and is never smaller than MIN_CHUNK_BYTES (unless it ends the range).
        limit = remote.max_frame_bytes if remote is not None and remote.max_frame_bytes else self.node.config.max_frame_bytes
        step = max(MIN_CHUNK_BYTES, min(r.chunk_bytes, limit - FRAME_HEADROOM))
        self._serving.append(_Serving(d.sender, d.sender_incarnation, d.sender_address, r, total, end, step, may_compress,
                                      r.offset))
        self.serve()

    def serve(self) -> None:
        """Send the next chunks of the requests being served, at most a turn's budget (FET-020)."""
        budget_bytes, budget_chunks = SERVE_BYTES_PER_TURN, SERVE_CHUNKS_PER_TURN
        while self._serving and budget_bytes > 0 and budget_chunks > 0:
            moved = False
            for job in list(self._serving):  # round robin: one chunk each per pass
                sent = self._send_chunk(job)
                if sent == _WAIT:
                    continue  # a relayed chunk whose bytes have not arrived (FET-042)
                moved = True
                budget_bytes -= sent
                budget_chunks -= 1
                if budget_bytes <= 0 or budget_chunks <= 0:
                    break
            if not moved:
                break

    def _send_chunk(self, job: _Serving) -> int:
        """Send ``job``'s next chunk; end the job after its last. The bytes sent, or
        _WAIT for a relayed chunk whose bytes are not all here yet (FET-042)."""
        store = self.node.store
        r = job.request
        send = lambda chunk: self.node.handle(ev.SendData(self.node.sid(), job.fetcher, job.incarnation, job.address, chunk))
        total = self._copy_size(r.object_id)
        if total is not None and total < 0:
            return _WAIT  # our own fetch has not learnt the size yet
        if total is not None and job.total < 0:  # a relayed request: the size is known now
            job.total = total
            if r.offset > total:
                self._serving.remove(job)
                err = ErrorInfo(ErrorCode.MALFORMED, "offset beyond the end", "FET-014")
                send(FetchChunk(r.object_id, r.request_id, r.offset, total, True, error=err))
                return 0
            job.end = total if r.length < 0 else min(total, r.offset + r.length)
        n = min(job.step, job.end - job.offset)
        relayed = False
        try:
            if total is None or total != job.total:
                raise ObjectNotFound(r.object_id)  # FET-043: the copy is gone (or another one)
            try:
                data = store.get_bytes(r.object_id, job.offset, n)
            except ObjectNotFound:
                part = store.assembled_bytes(r.object_id, job.offset, n)  # FET-042
                if part is None:
                    return _WAIT
                data, relayed = memoryview(part), True
        except (ObjectNotFound, StoreError):
            # The copy vanished from the store: the owner hears of it first (LOC-006),
            # then the fetcher gets a typed answer; the loop must not die of it (where
            # no copy was ever kept, a relay's abandoned assembly, FET-043, the core
            # has nothing to tell).
            self._serving.remove(job)
            self.node.handle(ev.CopyLost(self.node.sid(), r.object_id))
            err = ErrorInfo(ErrorCode.OBJECT_FREED, f"the copy of {r.object_id} here is gone", "FET-004")
            send(FetchChunk(r.object_id, r.request_id, job.offset, job.total, True, error=err))
            return 0
        compressed = False
        if job.skip_lz4:
            job.skip_lz4 -= 1
        elif job.may_compress and n >= LZ4_MIN_BYTES:
            packed = lz4.frame.compress(data)
            if len(packed) < n * 0.9:  # only when it pays
                data, compressed = packed, True
            else:
                job.skip_lz4 = LZ4_BACKOFF_CHUNKS
        last = job.offset + n >= job.end
        if last:
            self._serving.remove(job)
        send(FetchChunk(r.object_id, r.request_id, job.offset, job.total, last, compressed, data))
        job.offset += n
        self.served[job.fetcher] = self.served.get(job.fetcher, 0) + n
        if relayed:
            self.relayed += n
        return max(n, 1)

    def on_data(self, d: ev.DeliverData) -> None:
        if isinstance(d.message, FetchRequest):
            self._on_request(d, d.message)
        elif isinstance(d.message, FetchChunk):
            self._on_chunk(d.sender, d.message)
