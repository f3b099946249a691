"""The data plane: fetching stored values from a peer on another host (FET-*).

Both sides run on the node's loop thread. The fetcher asks one location for the
whole stored form; the holder streams it back in chunks (each compressed with
lz4 on its own when the session negotiated it and it pays), all at once, so the
transfer is pipelined. Chunks travel outside the session (FET-005): a lost
chunk is noticed by the fetcher and asked for again (FET-002, FET-006).
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
from ..store import ObjectNotFound, StoreError

if TYPE_CHECKING:
    from ._node import Node

#: Chunks at least this large are tried with lz4 (smaller ones rarely pay).
LZ4_MIN_BYTES = 4096
#: No chunk for this long: ask again for what is missing (FET-006).
PROGRESS_TIMEOUT_S = 5.0


@dataclass
class _Fetch:
    object_id: str
    locations: list[tuple[PeerId, str]]
    future: Future[int] = field(default_factory=Future)
    request_id: int = 0
    total: int = -1
    last_progress: float = 0.0
    attempts: int = 0
    #: The location the current request went to.
    asked: PeerId = ""


class FetchService:
    """Fetcher and holder sides of FET-*, for one node."""

    def __init__(self, node: Node, chunk_bytes: int = 1 << 20) -> None:
        self.node = node
        self.chunk_bytes = chunk_bytes
        self._ids = itertools.count(1)
        self._by_request: dict[int, _Fetch] = {}
        self._by_object: dict[str, _Fetch] = {}
        #: Bytes received as chunks, and how many of them arrived compressed.
        self.received = 0
        self.received_compressed = 0

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
        self._request(f, 0, -1)
        return f.future

    def _known_dead(self, peer: PeerId) -> bool:
        core = self.node.core
        r = core.remotes.get(peer)
        if r is not None:
            return r.state == "dead"
        return any(p == peer for p, _ in core.fenced)  # never in session, but fenced

    def _request(self, f: _Fetch, offset: int, length: int) -> None:
        f.request_id = next(self._ids)  # FET-012: never reused
        f.last_progress = time.monotonic()
        f.attempts += 1
        self._by_request[f.request_id] = f
        peer, address = f.locations[(f.attempts - 1) % len(f.locations)]
        f.asked = peer
        remote = self.node.core.remotes.get(peer)
        lz4_ok = remote is not None and "lz4" in remote.features  # HS-021: only where the session uses lz4
        msg = FetchRequest(f.object_id, f.request_id, offset, length, self.chunk_bytes, lz4_ok)
        self.node.handle(ev.SendData(self.node.sid(), peer, 0, address, msg))

    def _on_chunk(self, sender: PeerId, c: FetchChunk) -> None:
        f = self._by_request.get(c.request_id)
        if f is None or f.object_id != c.object_id:
            return  # FET-013: not a request we wait for
        store = self.node.store
        if c.error is not None:
            self._fail(f, c.error)
            return
        try:
            if f.total < 0:
                f.total = c.total_size
                store.put_bytes(c.object_id, c.total_size)
            elif c.total_size != f.total:  # FET-010: the holder's copy changed size
                raise StoreError("chunks disagree on the total size")
            data = lz4.frame.decompress(c.data) if c.lz4 else c.data
            self.received += len(data)
            self.received_compressed += len(c.data) if c.lz4 else 0
            store.write_chunk(c.object_id, c.offset, data)
        except (StoreError, RuntimeError, ValueError) as exc:
            store.free(c.object_id)
            self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, f"fetch of {c.object_id} failed: {exc}"))
            return
        f.last_progress = time.monotonic()
        if c.last:
            self._complete_or_resume(f)

    def _complete_or_resume(self, f: _Fetch) -> None:
        store = self.node.store
        missing = store.missing(f.object_id)
        if missing:
            start, end = missing[0]
            self._request(f, start, end - start)  # FET-002
            return
        try:
            size = store.seal(f.object_id)
        except StoreError as exc:
            store.free(f.object_id)
            self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, f"fetched copy of {f.object_id} is corrupt: {exc}"))
            return
        self._done(f)
        # LOC-002: the owner learns about the new copy (and frees it with the object).
        self.node.handle(ev.CopyStored(self.node.sid(), f.object_id, size))
        f.future.set_result(size)

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
            f.future.set_exception(ObjectNotFound(f"{f.object_id}: {info.code.value}: {info.message}"))

    def _done(self, f: _Fetch) -> None:
        self._by_object.pop(f.object_id, None)
        for rid in [r for r, g in self._by_request.items() if g is f]:
            del self._by_request[rid]

    def peer_died(self, peer: PeerId) -> None:
        """Death effects, step 11: fetches from a dead holder end now, not after the
        progress timeout: the next location is asked (FET-002), or, with none left,
        the fetch fails and its getter asks the owner again (OBJ-013)."""
        for f in list(self._by_object.values()):
            if not any(p == peer for p, _ in f.locations):
                continue
            f.locations = [(p, a) for p, a in f.locations if p != peer]
            if not f.locations:
                self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, f"the holder {peer} died"))
            elif f.asked == peer:
                f.attempts = 0  # the remaining locations get their full share of tries
                if f.total < 0:
                    self._request(f, 0, -1)
                else:
                    self._complete_or_resume(f)

    def tick(self) -> None:
        """FET-006: a fetch with no progress for a while asks again for what is missing."""
        now = time.monotonic()
        for f in list(self._by_object.values()):
            if now - f.last_progress < PROGRESS_TIMEOUT_S:
                continue
            if f.attempts >= 3 * max(1, len(f.locations)):
                self._fail(f, ErrorInfo(ErrorCode.OBJECT_LOST, "no location answered"))
            elif f.total < 0:
                self._request(f, 0, -1)
            else:
                self._complete_or_resume(f)

    # ------------------------------------------------------------ holder
    def _on_request(self, d: ev.DeliverData, r: FetchRequest) -> None:
        store = self.node.store
        send = lambda chunk: self.node.handle(ev.SendData(self.node.sid(), d.sender, d.sender_incarnation, d.sender_address, chunk))
        try:
            total = store.size(r.object_id)
        except (ObjectNotFound, StoreError):
            err = ErrorInfo(ErrorCode.OBJECT_FREED, f"no copy of {r.object_id} here", "FET-004")
            send(FetchChunk(r.object_id, r.request_id, r.offset, 0, True, error=err))
            return
        if r.offset > total or r.length < -1 or r.chunk_bytes < 1:
            err = ErrorInfo(ErrorCode.MALFORMED, "offset beyond the end, length below -1 or no chunk size", "FET-014")
            send(FetchChunk(r.object_id, r.request_id, r.offset, total, True, error=err))
            return
        end = total if r.length < 0 else min(total, r.offset + r.length)
        remote = self.node.core.remotes.get(d.sender)
        may_compress = r.accept_lz4 and remote is not None and "lz4" in remote.features  # FET-003
        step = max(1, min(r.chunk_bytes, self.node.config.max_frame_bytes - (64 << 10)))  # FET-007
        offset = r.offset
        while True:
            n = min(step, end - offset)
            try:
                data = store.get_bytes(r.object_id, offset, n)
            except (ObjectNotFound, StoreError):
                # The copy vanished from the store: the owner hears of it first (LOC-006),
                # then the fetcher gets a typed answer; the loop must not die of it.
                self.node.handle(ev.CopyLost(self.node.sid(), r.object_id))
                err = ErrorInfo(ErrorCode.OBJECT_FREED, f"the copy of {r.object_id} here is gone", "FET-004")
                send(FetchChunk(r.object_id, r.request_id, offset, total, True, error=err))
                return
            compressed = False
            if may_compress and n >= LZ4_MIN_BYTES:
                packed = lz4.frame.compress(data)
                if len(packed) < n * 0.9:  # only when it pays
                    data, compressed = packed, True
            last = offset + n >= end
            send(FetchChunk(r.object_id, r.request_id, offset, total, last, compressed, data))
            offset += n
            if last:
                return

    def on_data(self, d: ev.DeliverData) -> None:
        if isinstance(d.message, FetchRequest):
            self._on_request(d, d.message)
        elif isinstance(d.message, FetchChunk):
            self._on_chunk(d.sender, d.message)
