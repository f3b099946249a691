"""The store interface and its errors (see :mod:`refrpc.store`)."""

from __future__ import annotations

import abc
from typing import Any

from ..core.messages import ObjectId, Value
from ..errors import ObjectStoreFullError, RefRPCError


class StoreError(RefRPCError):
    """Base class of the store's errors (a :class:`~refrpc.RefRPCError`)."""


class ObjectNotFound(StoreError, LookupError):
    """The store holds no sealed object of that id (FET-004's ``OBJECT_FREED``/
    ``UNKNOWN_OBJECT``, for a holder)."""


class ObjectExists(StoreError):
    """The store already holds, or is assembling, an object of that id."""


class IncompleteObject(StoreError):
    """:meth:`ObjectStore.seal` on an object some of whose bytes were never
    written (FET-010); it stays being assembled: write the missing ranges
    (:meth:`ObjectStore.missing`) and seal again."""


class CorruptObject(StoreError):
    """The bytes are not a valid stored form (a fetched copy that was corrupted
    or incomplete, a segment someone else damaged)."""


class StoreFull(StoreError, ObjectStoreFullError):
    """No room for the object: the store is at its capacity and nothing more can be
    spilled, or the shared-memory file system is full. An
    :class:`~refrpc.ObjectStoreFullError`: ``usage`` says what holds the memory."""

    def __init__(self, message: str, usage: dict | None = None) -> None:
        ObjectStoreFullError.__init__(self, message, usage=usage)


class StoreClosed(StoreError):
    """The store was closed."""


def clip_range(size: int, offset: int, length: int) -> tuple[int, int]:
    """The byte range ``[start, end)`` that a fetch of ``(offset, length)`` covers.

    A negative ``length`` means "to the end"; a range past the end is served up
    to the end (FET-014). An offset beyond the end is a :class:`StoreError`
    (the holder answers ``MALFORMED``, FET-014).
    """
    if offset < 0 or offset > size:
        raise StoreError(f"offset {offset} is outside the object's {size} bytes (FET-014)")
    end = size if length < 0 else min(size, offset + length)
    return offset, end


class Coverage:
    """The byte ranges written so far into an object being assembled."""

    __slots__ = ("size", "_ranges")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ranges: list[tuple[int, int]] = []  # sorted, disjoint, not touching

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        merged: list[tuple[int, int]] = []
        for a, b in self._ranges:
            if b < start or a > end:
                merged.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        merged.append((start, end))
        merged.sort()
        self._ranges = merged

    def covers(self, start: int, end: int) -> bool:
        """Whether every byte of ``[start, end)`` has been written."""
        return start >= end or any(a <= start and end <= b for a, b in self._ranges)

    def missing(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` ranges not written yet, in order."""
        gaps, position = [], 0
        for a, b in self._ranges:
            if a > position:
                gaps.append((position, a))
            position = b
        if position < self.size:
            gaps.append((position, self.size))
        return gaps


class ObjectStore(abc.ABC):
    """The bytes of a peer's stored objects. See the module docs."""

    @abc.abstractmethod
    def put(self, object_id: ObjectId, value: Value) -> int:
        """Store ``value`` in its stored form and seal it.

        Returns:
            The object's size: the length of its stored form (OBJ-011).

        Raises:
            ObjectExists: The id is already stored or being assembled.
            refrpc.codec.EncodeError: The value has no stored form (a buffer over
                :data:`refrpc.codec.MAX_PAYLOAD_BYTES`).
        """

    @abc.abstractmethod
    def get(self, object_id: ObjectId) -> Value:
        """The stored value, decoded without copying its payloads.

        ``data`` and ``buffers`` are read-only ``memoryview``\\ s of the stored
        bytes; they stay valid after :meth:`free` for as long as they are
        referenced.

        Raises:
            ObjectNotFound: No sealed object of that id.
            CorruptObject: The stored bytes do not decode.
        """

    @abc.abstractmethod
    def get_bytes(self, object_id: ObjectId, offset: int = 0, length: int = -1) -> memoryview:
        """A read-only view of bytes ``[offset, offset+length)`` of the stored form
        (for ``FetchChunk``); see :func:`clip_range` for the range rules.

        Raises:
            ObjectNotFound: No sealed object of that id.
            StoreError: ``offset`` is beyond the end.
        """

    @abc.abstractmethod
    def put_bytes(self, object_id: ObjectId, size: int) -> None:
        """Start assembling a fetched copy of ``size`` bytes (zero-filled).

        Raises:
            ObjectExists: The id is already stored or being assembled.
            StoreError: ``size`` is not positive.
        """

    @abc.abstractmethod
    def write_chunk(self, object_id: ObjectId, offset: int, data: Any) -> None:
        """Write a received chunk into an object being assembled.

        Raises:
            ObjectNotFound: No object of that id is being assembled.
            StoreError: The chunk does not fit in the object.
        """

    @abc.abstractmethod
    def missing(self, object_id: ObjectId) -> list[tuple[int, int]]:
        """The byte ranges ``[start, end)`` of an object being assembled that no
        chunk has covered yet (where to resume a fetch, FET-002).

        Raises:
            ObjectNotFound: No object of that id is being assembled.
        """

    def assembled_bytes(self, object_id: ObjectId, offset: int, length: int) -> memoryview | bytes | None:
        """Bytes ``[offset, offset+length)`` of an object being assembled, if every
        one of them has been written, else None (a relay serves what it has, FET-041).

        Raises:
            ObjectNotFound: No object of that id is being assembled (a store that
                cannot read an assembly says so for every id).
        """
        raise ObjectNotFound(f"object {object_id!r} is not being assembled here")

    @abc.abstractmethod
    def seal(self, object_id: ObjectId) -> int:
        """Finish assembling: check that every byte was written (FET-010) and
        that the bytes are a stored form, make the object readable (and
        immutable). Returns its size.

        Raises:
            ObjectNotFound: No object of that id is being assembled.
            IncompleteObject: Some bytes were never written; nothing changes.
            CorruptObject: The bytes are not a stored form; the partial object
                is discarded.
        """

    @abc.abstractmethod
    def contains(self, object_id: ObjectId) -> bool:
        """Whether a sealed object of that id is stored here."""

    @abc.abstractmethod
    def free(self, object_id: ObjectId) -> bool:
        """Drop the object (sealed, or being assembled). Views handed out stay
        valid until dropped. Returns whether there was anything to free."""

    @abc.abstractmethod
    def size(self, object_id: ObjectId) -> int:
        """The size of a sealed object (its stored form's length).

        Raises:
            ObjectNotFound: No sealed object of that id.
        """

    @property
    @abc.abstractmethod
    def used_bytes(self) -> int:
        """Bytes held: sealed objects plus objects being assembled."""

    @abc.abstractmethod
    def object_ids(self) -> list[ObjectId]:
        """The ids of the sealed objects, oldest first."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free everything the store owns. Idempotent; the store is unusable after."""

    def __contains__(self, object_id: object) -> bool:
        return isinstance(object_id, str) and self.contains(object_id)

    def __len__(self) -> int:
        return len(self.object_ids())

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
