"""An object store in the process's own memory."""

from __future__ import annotations

import threading
from typing import Any

from .. import codec
from ..core.messages import ObjectId, Value
from ._base import (
    CorruptObject,
    Coverage,
    IncompleteObject,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    StoreClosed,
    StoreError,
    clip_range,
)


def _byte_view(data: Any) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class MemoryStore(ObjectStore):
    """Stored forms kept in this process: ``bytes`` for values put here,
    ``bytearray`` for fetched copies (handed out only as read-only views).

    Example:
        >>> from refrpc.core.messages import Encoding, Value
        >>> store = MemoryStore()
        >>> size = store.put("x", Value(Encoding.RAW, b"abc"))
        >>> bytes(store.get("x").data), store.size("x") == size
        (b'abc', True)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sealed: dict[ObjectId, bytes | bytearray] = {}
        self._building: dict[ObjectId, tuple[bytearray, Coverage]] = {}
        self._used = 0
        self._closed = False

    # ------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _sealed_bytes(self, object_id: ObjectId) -> bytes | bytearray:
        with self._lock:
            self._check_open()
            try:
                return self._sealed[object_id]
            except KeyError:
                raise ObjectNotFound(f"no object {object_id!r} in this store") from None

    def _reserve(self, object_id: ObjectId) -> None:
        self._check_open()
        if object_id in self._sealed or object_id in self._building:
            raise ObjectExists(f"object {object_id!r} is already in this store")

    # ------------------------------------------------------------ writing
    def put(self, object_id: ObjectId, value: Value) -> int:
        data = codec.encode_value(value)
        with self._lock:
            self._reserve(object_id)
            self._sealed[object_id] = data
            self._used += len(data)
        return len(data)

    def put_bytes(self, object_id: ObjectId, size: int) -> None:
        if size <= 0:
            raise StoreError(f"a stored form has at least one byte, not {size}")
        with self._lock:
            self._reserve(object_id)
            self._building[object_id] = (bytearray(size), Coverage(size))
            self._used += size

    def _assembly(self, object_id: ObjectId) -> tuple[bytearray, Coverage]:
        with self._lock:
            self._check_open()
            try:
                return self._building[object_id]
            except KeyError:
                raise ObjectNotFound(f"object {object_id!r} is not being assembled here") from None

    def write_chunk(self, object_id: ObjectId, offset: int, data: Any) -> None:
        buf, coverage = self._assembly(object_id)
        chunk = _byte_view(data)
        if offset < 0 or offset + len(chunk) > len(buf):
            raise StoreError(
                f"chunk [{offset}, {offset + len(chunk)}) does not fit the object's {len(buf)} bytes"
            )
        buf[offset : offset + len(chunk)] = chunk
        with self._lock:
            coverage.add(offset, offset + len(chunk))

    def assembled_bytes(self, object_id: ObjectId, offset: int, length: int) -> bytes | None:
        buf, coverage = self._assembly(object_id)
        with self._lock:
            if not coverage.covers(offset, offset + length):
                return None
            return bytes(buf[offset : offset + length])

    def missing(self, object_id: ObjectId) -> list[tuple[int, int]]:
        _, coverage = self._assembly(object_id)
        with self._lock:
            return coverage.missing()

    def seal(self, object_id: ObjectId) -> int:
        with self._lock:
            self._check_open()
            buf, coverage = self._building.get(object_id, (None, None))
            if buf is None or coverage is None:
                raise ObjectNotFound(f"object {object_id!r} is not being assembled here")
            gaps = coverage.missing()
            if gaps:
                raise IncompleteObject(f"object {object_id!r} lacks bytes {gaps[:3]} (FET-010)")
            del self._building[object_id]
            self._used -= len(buf)
        try:
            codec.decode_value(buf, zero_copy=True)
        except codec.DecodeError as exc:
            raise CorruptObject(f"object {object_id!r} is not a stored value: {exc}") from None
        with self._lock:
            self._reserve(object_id)
            self._sealed[object_id] = buf
            self._used += len(buf)
        return len(buf)

    # ------------------------------------------------------------ reading
    def get(self, object_id: ObjectId) -> Value:
        data = self._sealed_bytes(object_id)
        try:
            return codec.decode_value(data, zero_copy=True)
        except codec.DecodeError as exc:
            raise CorruptObject(f"object {object_id!r}: {exc}") from None

    def get_bytes(self, object_id: ObjectId, offset: int = 0, length: int = -1) -> memoryview:
        data = self._sealed_bytes(object_id)
        start, end = clip_range(len(data), offset, length)
        return memoryview(data).toreadonly()[start:end]

    def contains(self, object_id: ObjectId) -> bool:
        with self._lock:
            return object_id in self._sealed

    def size(self, object_id: ObjectId) -> int:
        return len(self._sealed_bytes(object_id))

    @property
    def used_bytes(self) -> int:
        return self._used

    def object_ids(self) -> list[ObjectId]:
        with self._lock:
            return list(self._sealed)

    # ------------------------------------------------------------ freeing
    def free(self, object_id: ObjectId) -> bool:
        with self._lock:
            data = self._sealed.pop(object_id, None)
            if data is None:
                data = self._building.pop(object_id, (None, None))[0]
            if data is None:
                return False
            self._used -= len(data)
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._sealed.clear()
            self._building.clear()
            self._used = 0
