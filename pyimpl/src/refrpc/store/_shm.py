"""An object store in POSIX shared memory: one file under ``/dev/shm`` per object.

Plain files and ``mmap`` rather than :class:`multiprocessing.shared_memory.SharedMemory`:
the latter registers every segment with multiprocessing's resource tracker,
which unlinks (and warns about) segments when the process that *attached* them
exits, and its mappings are always writable. Here:

* the writer creates ``refrpc-{namespace}-{hash}.partial`` (mode 0600), writes the
  stored form, makes it read-only (0400) and publishes it under its final name
  (a hard link, so publishing never replaces a segment and readers never see a
  partial one);
* readers (in any process) open it read-only and map it with
  ``mmap.ACCESS_READ``: a reader cannot write to the value, and numpy arrays
  unpickled from the mapping are read-only views of it;
* :meth:`SharedMemoryStore.free` unlinks the file; readers that still map it keep
  a valid mapping until they drop it (POSIX semantics), then the memory is
  released.

Segments a crashed process left behind are removed with :func:`cleanup_namespace`.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import tempfile
import threading
import weakref
from dataclasses import dataclass
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
    StoreFull,
    clip_range,
)

#: Where segments live: ``/dev/shm`` (tmpfs) where it exists.
DEFAULT_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PARTIAL = ".partial"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_HASH_HEX = 32  # 128 bits of SHA-256
_WRITE_STEP = 1 << 30  # os.write moves at most ~2 GiB per call


def _check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"a namespace is 1 to 100 of [A-Za-z0-9_.-], not {namespace!r}")
    return namespace


def segment_name(namespace: str, object_id: ObjectId, writer: str = "") -> str:
    """The name of the segment that holds ``object_id`` written by ``writer`` in ``namespace``:
    ``refrpc-{namespace}-{first 128 bits of SHA-256(object id, writer), hex}``.

    The writer is part of the name because two processes of one host may each hold
    a copy of the same object (a task re-run after its first executor died): each
    copy is its own segment, and freeing one never touches the other.
    """
    key = f"{object_id}\0{writer}" if writer else object_id
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]
    return f"refrpc-{_check_namespace(namespace)}-{_writer_tag(writer)}{digest}"


def _writer_tag(writer: str) -> str:
    """8 hex digits naming the writer, so one writer's segments can be found (or "")."""
    return hashlib.sha256(writer.encode("utf-8", "surrogatepass")).hexdigest()[:8] + "-" if writer else ""


def cleanup_writer(namespace: str, writer: str, *, directory: str | None = None) -> int:
    """Unlink every segment ``writer`` left in ``namespace`` (it died: its copies are
    lost anyway, LOC-004). Returns how many were removed."""
    directory = directory or DEFAULT_DIRECTORY
    prefix = f"refrpc-{_check_namespace(namespace)}-{_writer_tag(writer)}"
    removed = 0
    for name in list_segments(namespace, directory=directory):
        if writer and name.startswith(prefix):
            try:
                os.unlink(os.path.join(directory, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _pattern(namespace: str) -> re.Pattern[str]:
    prefix = re.escape(f"refrpc-{_check_namespace(namespace)}-")
    return re.compile(f"{prefix}(?:[0-9a-f]{{8}}-)?[0-9a-f]{{{_HASH_HEX}}}(?:{re.escape(_PARTIAL)})?")


def list_segments(namespace: str, *, directory: str | None = None) -> list[str]:
    """Names of the segments (sealed or partial) of ``namespace``, sorted."""
    pattern = _pattern(namespace)
    try:
        names = os.listdir(directory or DEFAULT_DIRECTORY)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if pattern.fullmatch(name))


def cleanup_namespace(namespace: str, *, directory: str | None = None) -> int:
    """Unlink every segment of ``namespace`` (at cluster shutdown, or after a
    crash). Processes that map them keep their mappings. Returns how many were
    removed."""
    directory = directory or DEFAULT_DIRECTORY
    removed = 0
    for name in list_segments(namespace, directory=directory):
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _unlink_all(paths: set[str]) -> None:
    """Finalizer: unlink what a store created (it must not refer to the store)."""
    for path in list(paths):
        try:
            os.unlink(path)
        except OSError:
            pass
        paths.discard(path)


def _release(mm: mmap.mmap | None) -> None:
    """Unmap now if nobody uses the mapping; else when its last view goes."""
    if mm is not None:
        try:
            mm.close()
        except BufferError:
            pass


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
        return StoreFull(f"no room for {what}: {exc.strerror}")
    return StoreError(f"cannot write {what}: {exc}")


def _map_readonly(path: str) -> mmap.mmap:
    with open(path, "rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


@dataclass(slots=True)
class _Segment:
    path: str
    size: int
    #: Read-only mapping (sealed) or writable one (being assembled); lazily made.
    mm: mmap.mmap | None = None
    #: The bytes written so far, while being assembled from chunks.
    coverage: Coverage | None = None


class SharedMemoryStore(ObjectStore):
    """Each object in its own shared-memory segment, readable by other processes.

    Args:
        namespace: Names this store's segments (``refrpc-{namespace}-...``); use one
            per cluster (or per peer) so they can be listed and cleaned up together.
        directory: Where segments are created; ``/dev/shm`` by default.

    Objects this store wrote (:meth:`put`, :meth:`seal`) are *owned*: :meth:`free`
    and :meth:`close` unlink them. Objects other processes wrote are *attached*
    (:meth:`attach`): this store only maps them, and :meth:`free`/:meth:`close`
    only drop the mapping.
    """

    def __init__(self, namespace: str, *, directory: str | None = None, writer: str = "") -> None:
        self.namespace = _check_namespace(namespace)
        #: Who writes this store's segments (a peer id); part of every segment name.
        self.writer = writer
        self.directory = directory or DEFAULT_DIRECTORY
        self._lock = threading.Lock()
        self._owned: dict[ObjectId, _Segment] = {}
        self._building: dict[ObjectId, _Segment] = {}
        self._attached: dict[ObjectId, _Segment] = {}
        self._used = 0
        self._closed = False
        #: Every path this store created and has not unlinked yet.
        self._paths: set[str] = set()
        self._finalizer = weakref.finalize(self, _unlink_all, self._paths)

    def segment_path(self, object_id: ObjectId, writer: str | None = None) -> str:
        """The file that holds (or would hold) ``object_id`` written by ``writer`` (default: us)."""
        return os.path.join(self.directory, segment_name(self.namespace, object_id, self.writer if writer is None else writer))

    # ------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _create(self, object_id: ObjectId, size: int) -> tuple[_Segment, int]:
        """Reserve ``object_id`` and create its partial file; returns it and its fd."""
        path = self.segment_path(object_id)
        with self._lock:
            self._check_open()
            if object_id in self._owned or object_id in self._building or os.path.exists(path):
                raise ObjectExists(f"object {object_id!r} is already in namespace {self.namespace!r}")
            partial = path + _PARTIAL
            try:
                fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise ObjectExists(f"object {object_id!r} is being written by someone else") from None
            except OSError as exc:
                raise _store_error(exc, f"object {object_id!r}") from exc
            self._paths.add(partial)
            segment = self._building[object_id] = _Segment(partial, size)
            self._used += size
        return segment, fd

    def _abort(self, object_id: ObjectId, segment: _Segment) -> None:
        with self._lock:
            if self._building.get(object_id) is segment:
                del self._building[object_id]
                self._used -= segment.size
        _release(segment.mm)
        segment.mm = None
        self._unlink(segment.path)

    def _unlink(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self._paths.discard(path)

    def _publish(self, object_id: ObjectId, segment: _Segment) -> None:
        """Make a written partial segment read-only and visible under its name."""
        final = self.segment_path(object_id)
        try:
            os.chmod(segment.path, 0o400)
            os.link(segment.path, final)  # never replaces an existing segment
        except FileExistsError:
            self._abort(object_id, segment)
            raise ObjectExists(f"object {object_id!r} appeared in namespace {self.namespace!r}") from None
        except BaseException:
            self._abort(object_id, segment)
            raise
        self._paths.add(final)
        self._unlink(segment.path)
        with self._lock:
            published = self._building.get(object_id) is segment
            if published:
                del self._building[object_id]
                segment.path = final
                self._owned[object_id] = segment
        if not published:  # freed or closed while it was being written
            self._unlink(final)
            raise StoreClosed(f"object {object_id!r} was dropped while it was being stored")

    def _readable(self, object_id: ObjectId) -> _Segment:
        """The owned or attached segment of a sealed object, mapped read-only."""
        with self._lock:
            self._check_open()
            segment = self._owned.get(object_id) or self._attached.get(object_id)
            if segment is None:
                raise ObjectNotFound(f"no object {object_id!r} in this store")
            if segment.mm is None:
                try:
                    segment.mm = _map_readonly(segment.path)
                except FileNotFoundError:
                    # Removed behind our back (a /dev/shm cleaner, systemd's RemoveIPC):
                    # the copy is lost. Forget it, so that the store says so from now on.
                    if self._owned.get(object_id) is segment:
                        del self._owned[object_id]
                        self._used -= segment.size
                    self._attached.pop(object_id, None)
                    self._paths.discard(segment.path)
                    raise ObjectNotFound(f"the segment of {object_id!r} is gone") from None
            return segment

    @staticmethod
    def _decode(object_id: ObjectId, mm: mmap.mmap) -> Value:
        try:
            return codec.decode_value(mm, zero_copy=True)
        except codec.DecodeError as exc:
            raise CorruptObject(f"object {object_id!r}: {exc}") from None

    # ------------------------------------------------------------ writing
    def put(self, object_id: ObjectId, value: Value) -> int:
        parts = codec.encode_value_parts(value)
        size = sum(len(part) for part in parts)
        segment, fd = self._create(object_id, size)
        try:
            with open(fd, "wb", buffering=0, closefd=True) as file:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        view = view[file.write(view[:_WRITE_STEP]) :]
        except BaseException as exc:
            self._abort(object_id, segment)
            if isinstance(exc, OSError):
                raise _store_error(exc, f"object {object_id!r}") from exc
            raise
        self._publish(object_id, segment)
        return size

    def put_bytes(self, object_id: ObjectId, size: int) -> None:
        if size <= 0:
            raise StoreError(f"a stored form has at least one byte, not {size}")
        segment, fd = self._create(object_id, size)
        try:
            # Reserve the pages now: writing into a mapping of a full tmpfs
            # would kill the process with SIGBUS instead of raising.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - not Linux
                os.ftruncate(fd, size)
            segment.mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
            segment.coverage = Coverage(size)
        except BaseException as exc:
            self._abort(object_id, segment)
            if isinstance(exc, OSError):
                raise _store_error(exc, f"object {object_id!r}") from exc
            raise
        finally:
            os.close(fd)

    def _assembly(self, object_id: ObjectId) -> _Segment:
        with self._lock:
            self._check_open()
            segment = self._building.get(object_id)
            if segment is None or segment.mm is None or segment.coverage is None:
                raise ObjectNotFound(f"object {object_id!r} is not being assembled here")
            return segment

    def write_chunk(self, object_id: ObjectId, offset: int, data: Any) -> None:
        segment = self._assembly(object_id)
        assert segment.mm is not None and segment.coverage is not None
        chunk = memoryview(data)
        if chunk.format != "B" or chunk.ndim != 1:
            chunk = chunk.cast("B")
        if offset < 0 or offset + len(chunk) > segment.size:
            raise StoreError(
                f"chunk [{offset}, {offset + len(chunk)}) does not fit the object's {segment.size} bytes"
            )
        segment.mm[offset : offset + len(chunk)] = chunk
        with self._lock:
            segment.coverage.add(offset, offset + len(chunk))

    def assembled_bytes(self, object_id: ObjectId, offset: int, length: int) -> memoryview | None:
        segment = self._assembly(object_id)
        assert segment.mm is not None and segment.coverage is not None
        with self._lock:
            if not segment.coverage.covers(offset, offset + length):
                return None
            # A view, not a copy: bytes once written never change (LOC-008), and the
            # mapping outlives a seal or an abort for as long as the view is used (_release).
            return memoryview(segment.mm)[offset : offset + length].toreadonly()

    def missing(self, object_id: ObjectId) -> list[tuple[int, int]]:
        segment = self._assembly(object_id)
        assert segment.coverage is not None
        with self._lock:
            return segment.coverage.missing()

    def seal(self, object_id: ObjectId) -> int:
        segment = self._assembly(object_id)
        assert segment.mm is not None and segment.coverage is not None
        with self._lock:
            gaps = segment.coverage.missing()
        if gaps:
            raise IncompleteObject(f"object {object_id!r} lacks bytes {gaps[:3]} (FET-010)")
        try:
            codec.decode_value(segment.mm, zero_copy=True)
        except codec.DecodeError as exc:
            self._abort(object_id, segment)
            raise CorruptObject(f"object {object_id!r} is not a stored value: {exc}") from None
        _release(segment.mm)  # the writable mapping; readers map read-only
        segment.mm = None
        self._publish(object_id, segment)
        return segment.size

    # ------------------------------------------------------------ reading
    def get(self, object_id: ObjectId) -> Value:
        """The value of an object this store holds (owned or attached), zero-copy."""
        segment = self._readable(object_id)
        assert segment.mm is not None
        return self._decode(object_id, segment.mm)

    def attach(self, object_id: ObjectId, writer: str | None = None) -> Value:
        """Map the segment of ``object_id`` (written by any process in this
        namespace) read-only and return its value; the payloads are read-only
        ``memoryview``\\ s of the mapping (no copy).

        Raises:
            ObjectNotFound: No sealed segment of that id in the namespace.
            CorruptObject: The segment does not hold a stored form.
        """
        path = self.segment_path(object_id, writer)
        with self._lock:
            self._check_open()
            known = object_id in self._owned or object_id in self._attached
            if not known:
                try:
                    mm = _map_readonly(path)
                except FileNotFoundError:
                    raise ObjectNotFound(f"no segment for {object_id!r} in namespace {self.namespace!r}") from None
                except ValueError:  # an empty file: nobody's stored form
                    raise CorruptObject(f"the segment of {object_id!r} is empty") from None
                self._attached[object_id] = _Segment(path, len(mm), mm)
        try:
            return self.get(object_id)
        except CorruptObject:
            self.detach(object_id)
            raise

    def detach(self, object_id: ObjectId) -> bool:
        """Drop this store's mapping of an attached object; returns whether it was attached."""
        if object_id not in self._attached:  # the usual case (never mapped here): no lock taken
            return False
        with self._lock:
            segment = self._attached.pop(object_id, None)
        if segment is None:
            return False
        _release(segment.mm)
        return True

    def mapping(self, object_id: ObjectId) -> mmap.mmap:
        """The read-only mapping behind an owned or attached object (diagnostics)."""
        segment = self._readable(object_id)
        assert segment.mm is not None
        return segment.mm

    def get_bytes(self, object_id: ObjectId, offset: int = 0, length: int = -1) -> memoryview:
        segment = self._readable(object_id)
        start, end = clip_range(segment.size, offset, length)
        return memoryview(segment.mm)[start:end]  # type: ignore[arg-type]

    def contains(self, object_id: ObjectId) -> bool:
        with self._lock:
            return object_id in self._owned or object_id in self._attached

    def size(self, object_id: ObjectId) -> int:
        with self._lock:
            segment = self._owned.get(object_id) or self._attached.get(object_id)
        if segment is None:
            raise ObjectNotFound(f"no object {object_id!r} in this store")
        return segment.size

    @property
    def used_bytes(self) -> int:
        """Bytes of the segments this store owns or is assembling (not attached ones)."""
        return self._used

    def object_ids(self) -> list[ObjectId]:
        """Ids of the sealed objects this store owns (not attached ones), oldest first."""
        with self._lock:
            return list(self._owned)

    # ------------------------------------------------------------ freeing
    def free(self, object_id: ObjectId) -> bool:
        """Unlink an owned object (or abort one being assembled), or detach an
        attached one. Mappings still in use stay valid until dropped."""
        with self._lock:
            segment = self._owned.pop(object_id, None)
            if segment is not None:
                self._used -= segment.size
        if segment is not None:
            self._unlink(segment.path)
            _release(segment.mm)
            return True
        with self._lock:
            segment = self._building.get(object_id)
        if segment is not None:
            self._abort(object_id, segment)
            return True
        return self.detach(object_id)

    def close(self) -> None:
        """Unlink every segment this store created, drop every mapping. Idempotent."""
        with self._lock:
            self._closed = True
            segments = [*self._owned.values(), *self._building.values(), *self._attached.values()]
            self._owned.clear()
            self._building.clear()
            self._attached.clear()
            self._used = 0
        for segment in segments:
            _release(segment.mm)
        _unlink_all(self._paths)

    def __repr__(self) -> str:
        return (
            f"<SharedMemoryStore {self.namespace!r} at {self.directory}: "
            f"{len(self._owned)} objects, {self._used} bytes>"
        )
