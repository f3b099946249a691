"""An object store in POSIX shared memory: one file under ``/dev/shm`` per object,
kept and reused after the object is freed, with a byte limit and spilling to disk.

Plain files and ``mmap`` rather than :class:`multiprocessing.shared_memory.SharedMemory`:
the latter registers every segment with multiprocessing's resource tracker,
which unlinks (and warns about) segments when the process that *attached* them
exits, and its mappings are always writable. Here:

* the writer fills a segment through a writable mapping of its own, makes the
  file read-only (0400) and publishes it under its final name
  ``refrpc-{namespace}-{hash}`` (a hard link, so publishing never replaces a
  segment and readers never see a partial one);
* readers (in any process) open it read-only, take a *shared* ``flock`` on it and
  map it with ``mmap.ACCESS_READ``. The lock lives as long as the mapping (the
  mapping keeps a duplicate of the descriptor the lock is on): it is how the writer
  knows that someone still reads the memory;
* :meth:`SharedMemoryStore.free` renames the file out of sight and tries an
  *exclusive* ``flock`` without waiting. If it gets it, nobody maps the segment:
  it goes to the store's **pool** and its pages (already faulted in, already in
  the writer's mapping) take the next value of about that size, written at
  memory-copy speed instead of the speed of pages the kernel must find and zero.
  If someone still maps it, the file is unlinked as before: the reader's mapping
  stays valid until it drops it (POSIX semantics), and its memory is never reused
  under it.

With a ``capacity``, the store never holds more than that many bytes in shared
memory (objects plus pool). A value that needs room first takes it from the pool,
then *spills* objects nobody maps to files in ``spill_directory``, least recently
used first and fetched (secondary) copies before primary ones; a spilled object
is still held: :meth:`~SharedMemoryStore.get_bytes` reads it from its file (a
fetch is served from disk) and :meth:`~SharedMemoryStore.get` restores it to
memory first. When nothing more can go, the call gets :class:`StoreFull` (an
:class:`~refrpc.ObjectStoreFullError`) naming what uses the memory.

Segments, pooled segments and spill files a crashed process left behind are
removed with :func:`cleanup_namespace` (the spill files with :func:`cleanup_spill`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import re
import secrets
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

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
from ._host import HostLedger, cleanup_ledger, orphaned_namespaces

#: Where segments live: ``/dev/shm`` (tmpfs) where it exists.
DEFAULT_DIRECTORY = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PARTIAL = ".partial"
#: Suffix of a pooled segment: freed, nobody maps it, kept to be reused.
_POOL = ".pool"
#: Suffix of a spill file (in the spill directory), and of one being written.
_SPILL = ".spill"
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_HASH_HEX = 32  # 128 bits of SHA-256
_COPY_STEP = 1 << 30  # os.write/readinto move at most ~2 GiB per call
#: Tries to read an object that the background relief thread spills meanwhile (OBJ-066).
_READ_ATTEMPTS = 4
#: Segments smaller than this are never pooled (a fresh small file is cheap).
POOL_MIN_BYTES = 64 * 1024
#: At most this many segments wait in a pool (each keeps two descriptors).
POOL_MAX_SEGMENTS = 32
#: Bytes a store without a capacity keeps in its pool at most.
DEFAULT_POOL_BYTES = 512 * 1024 * 1024
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
#: How often a store with a limit looks whether its host is past its high-water mark
#: or another store of the host waits for room (seconds).
RELIEF_POLL_S = 0.05
#: After a relief pass found nothing it may spill, how long before it looks again
#: (unless the store's own objects change meanwhile).
RELIEF_RETRY_S = 1.0
#: The longest a store waits for the host's other stores to make room for a value,
#: and the longest it waits while none of them gives any back (seconds).
HOST_WAIT_S = 10.0
HOST_STALL_S = 2.0
#: ... for a call on one of :attr:`SharedMemoryStore.quick_threads` (an event loop).
QUICK_WAIT_S = 0.2


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


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def cleanup_writer(namespace: str, writer: str, *, directory: str | None = None, spill_directory: str | None = None) -> int:
    """Unlink every segment (object, partial or pooled) ``writer`` left in ``namespace``,
    and its spill files in ``spill_directory`` if given (it died: its copies are lost
    anyway, LOC-004). Returns how many files were removed."""
    directory = directory or DEFAULT_DIRECTORY
    prefix = f"refrpc-{_check_namespace(namespace)}-{_writer_tag(writer)}"
    removed = 0
    if not writer:
        return 0
    for name in list_segments(namespace, directory=directory, pooled=True):
        if name.startswith(prefix):
            removed += _unlink_quietly(os.path.join(directory, name))
    if spill_directory:
        for name in list_spilled(namespace, spill_directory):
            if name.startswith(prefix):
                removed += _unlink_quietly(os.path.join(spill_directory, name))
    return removed


def _pattern(namespace: str, suffixes: tuple[str, ...]) -> re.Pattern[str]:
    prefix = re.escape(f"refrpc-{_check_namespace(namespace)}-")
    ends = "|".join(re.escape(s) for s in suffixes)
    return re.compile(f"{prefix}(?:[0-9a-f]{{8}}-)?[0-9a-f]{{{_HASH_HEX}}}(?:{ends})?")


def _listing(directory: str, pattern: re.Pattern[str]) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if pattern.fullmatch(name))


def list_segments(namespace: str, *, directory: str | None = None, pooled: bool = False) -> list[str]:
    """Names of the object segments (sealed or partial) of ``namespace``, sorted;
    with ``pooled``, the pooled ones too (memory a live store keeps for reuse)."""
    suffixes = (_PARTIAL, _POOL) if pooled else (_PARTIAL,)
    return _listing(directory or DEFAULT_DIRECTORY, _pattern(namespace, suffixes))


def list_spilled(namespace: str, spill_directory: str) -> list[str]:
    """Names of the spill files (written or being written) of ``namespace`` in ``spill_directory``."""
    return _listing(spill_directory, _pattern(namespace, (_SPILL, _SPILL + _PARTIAL)))


def cleanup_namespace(namespace: str, *, directory: str | None = None) -> int:
    """Unlink every segment of ``namespace``, pooled ones included (at cluster
    shutdown, or after a crash). Processes that map them keep their mappings.
    Returns how many were removed."""
    directory = directory or DEFAULT_DIRECTORY
    cleanup_ledger(directory, namespace)
    return sum(_unlink_quietly(os.path.join(directory, name))
               for name in list_segments(namespace, directory=directory, pooled=True))


def sweep_orphans(*, directory: str | None = None) -> dict[str, int]:
    """Remove what clusters whose every process is gone left on this host: the segments
    and ledger of each namespace no live process holds a ledger slot of (OBJ-035), and
    the spill files in its default spill directory. A process killed with SIGKILL
    cleans nothing; this runs when a cluster process starts (``refrpc start``,
    ``refrpc.init()``) and at ``refrpc stop``. Returns the files removed per namespace."""
    from ._limits import default_spill_directory

    directory = directory or DEFAULT_DIRECTORY
    removed: dict[str, int] = {}
    for namespace in orphaned_namespaces(directory):
        if not _NAMESPACE.fullmatch(namespace):
            continue
        count = int(cleanup_ledger(directory, namespace)) + cleanup_namespace(namespace, directory=directory)
        spill = default_spill_directory(namespace)
        count += cleanup_spill(namespace, spill)
        try:
            os.rmdir(spill)
        except OSError:
            pass  # not there, or holds what is not ours
        removed[namespace] = count
    return removed


def cleanup_spill(namespace: str, spill_directory: str) -> int:
    """Unlink every spill file of ``namespace`` in ``spill_directory``; returns how many."""
    return sum(_unlink_quietly(os.path.join(spill_directory, name)) for name in list_spilled(namespace, spill_directory))


def _unlink_all(paths: set[str]) -> None:
    """Finalizer: unlink what a store created (it must not refer to the store)."""
    for path in list(paths):
        try:
            os.unlink(path)
        except OSError:
            pass
        paths.discard(path)


def _release(mm: mmap.mmap | None) -> bool:
    """Unmap now if nobody uses the mapping (True); else it goes when its last view goes."""
    if mm is not None:
        try:
            mm.close()
        except BufferError:
            return False
    return True


def _store_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG, errno.EDQUOT):
        return StoreFull(f"no room for {what}: {exc.strerror}")
    return StoreError(f"cannot write {what}: {exc}")


def _map_readonly(path: str) -> mmap.mmap:
    """Map ``path`` read-only, holding a shared lock on it for as long as the mapping lives.

    The writer takes the exclusive lock before it reuses a segment's memory, so a
    segment some mapping still shows is never overwritten. A segment that is being
    recycled (the writer holds the lock, or the name now shows another file) is
    reported as missing: the object it held was freed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileNotFoundError(errno.ENOENT, "the segment is being recycled", path) from None
        mine, now = os.fstat(fd), os.stat(path)
        if (mine.st_ino, mine.st_dev) != (now.st_ino, now.st_dev):
            raise FileNotFoundError(errno.ENOENT, "the segment was recycled", path)
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)  # keeps a duplicate of fd: the lock lives with it
    finally:
        os.close(fd)


def _exclusive(path: str) -> int:
    """An fd of ``path`` holding its exclusive lock, or -1: someone maps it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1
    return fd


def _copy_into(target: Any, parts: Any) -> None:
    """Copy the byte-like ``parts`` one after another into the writable buffer ``target``."""
    position = 0
    for part in parts:
        view = memoryview(part)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        target[position : position + len(view)] = view
        position += len(view)


@dataclass(slots=True)
class _Segment:
    path: str
    size: int
    #: Read-only mapping (for reading here); lazily made.
    mm: mmap.mmap | None = None
    #: The bytes written so far, while being assembled from chunks.
    coverage: Coverage | None = None
    #: The writer's writable mapping of a segment this store wrote (None for an attached one).
    wmm: mmap.mmap | None = None
    #: A fetched (secondary) copy, not one this peer made.
    fetched: bool = False
    #: The spill file while the object is on disk ("" while in memory).
    spilled: str = ""
    #: Being spilled right now (free leaves the spill file to the spiller).
    spilling: bool = False
    #: A pooled segment: an fd holding its exclusive lock.
    lock_fd: int = -1


class SharedMemoryStore(ObjectStore):
    """Each object in its own shared-memory segment, readable by other processes.

    Args:
        namespace: Names this store's segments (``refrpc-{namespace}-...``); use one
            per cluster (or per peer) so they can be listed and cleaned up together.
        directory: Where segments are created; ``/dev/shm`` by default.
        writer: Who writes this store's segments (a peer id); part of every name.
        capacity: The most bytes of shared memory the store holds (objects being
            assembled, objects in memory and its pool); None: no limit.
        spill_directory: Where objects that do not fit go (one file each); None:
            nothing is spilled, a value that does not fit raises :class:`StoreFull`.
        pool_bytes: The most bytes of freed segments kept for reuse (by default a
            quarter of ``capacity``, or 512 MiB without one); 0: none are kept.
        share_limit: ``capacity`` is the limit of every store of this namespace on
            this host *together* (OBJ-065): each store accounts its memory in the
            host's ledger (:class:`~refrpc.store._host.HostLedger`), takes room only
            while the sum stays within the limit, and when its own memory cannot make
            enough room, asks the others to spill and waits for them (bounded).
        high_water: A fraction of ``capacity`` (0 < f <= 1; None: 1): past it (the
            host's stores together, with ``share_limit``), a background thread spills
            this store's least recently used unpinned objects, as room is made for a
            value (OBJ-066), until the memory is back under the mark, so that values
            rarely wait for disk writes.

    Objects this store wrote (:meth:`put`, :meth:`seal`) are *owned*: :meth:`free`
    and :meth:`close` recycle or unlink them. Objects other processes wrote are
    *attached* (:meth:`attach`): this store only maps them, and
    :meth:`free`/:meth:`close` only drop the mapping.
    """

    def __init__(self, namespace: str, *, directory: str | None = None, writer: str = "",
                 capacity: int | None = None, spill_directory: str | None = None,
                 pool_bytes: int | None = None, share_limit: bool = False,
                 high_water: float | None = None) -> None:
        self.namespace = _check_namespace(namespace)
        #: Who writes this store's segments (a peer id); part of every segment name.
        self.writer = writer
        self.directory = directory or DEFAULT_DIRECTORY
        if capacity is not None and capacity <= 0:
            raise ValueError(f"a store's capacity is a positive number of bytes, not {capacity!r}")
        if high_water is not None and not 0 < high_water <= 1:
            raise ValueError(f"a high-water mark is a fraction of the limit in (0, 1], not {high_water!r}")
        self.capacity = capacity
        self.spill_directory = spill_directory
        #: Past this many bytes in memory (the host's, with share_limit), spilling starts
        #: in the background (OBJ-066); None: only when a value does not fit.
        self.high_water = None if capacity is None or high_water is None or high_water >= 1 else int(capacity * high_water)
        default_pool = DEFAULT_POOL_BYTES if capacity is None else capacity // 4
        self.pool_bytes = default_pool if pool_bytes is None else pool_bytes
        self._lock = threading.Lock()
        #: One caller at a time makes room (spilling does I/O without holding _lock).
        self._room = threading.Lock()
        self._owned: dict[ObjectId, _Segment] = {}  # least recently used first
        self._building: dict[ObjectId, _Segment] = {}
        self._attached: dict[ObjectId, _Segment] = {}
        self._pool: list[_Segment] = []  # oldest first
        #: Objects being brought back from disk, each by one caller; the others wait on
        #: its event and then look again (two restores of one object would each take
        #: its size in memory, and the second would read a spill file the first removed).
        self._restoring: dict[ObjectId, threading.Event] = {}
        #: This store's slot in its host's ledger (share_limit), else None.
        self._ledger: HostLedger | None = None
        self._used_b = 0  # in memory: owned (not spilled) and being assembled (see _used)
        self._pooled_b = 0
        self._closed = False
        #: Bytes written to and read back from spill files, and how often (this store's life).
        self.counters = {"bytes_spilled": 0, "spills": 0, "bytes_restored": 0, "restores": 0,
                         "bytes_reused": 0, "reuses": 0, "full_errors": 0}
        #: Every path this store created and has not unlinked yet.
        self._paths: set[str] = set()
        self._finalizer = weakref.finalize(self, _unlink_all, self._paths)
        if share_limit and capacity is not None:
            self._ledger = HostLedger(self.directory, self.namespace)
            weakref.finalize(self, self._ledger.close)
        self._wake = threading.Event()
        #: Idents of threads whose calls wait at most QUICK_WAIT_S for the host's other
        #: stores (an event loop that must keep answering heartbeats).
        self.quick_threads: set[int] = set()
        self._relief_stuck: tuple[int, int] = (-1, -1)
        self._relief_retry_at = 0.0
        if capacity is not None and (self._ledger is not None or self.high_water is not None):
            threading.Thread(target=_relief_loop, args=(weakref.ref(self), self._wake),
                             name=f"refrpc-store-relief-{self.namespace}", daemon=True).start()
        #: Told (object id, True) when an object is spilled, (object id, False) when it
        #: is restored or freed while spilled; called without the store's lock held.
        self.on_spill: Callable[[ObjectId, bool], None] | None = None

    # Every change of the memory a store takes is told to its host's ledger (OBJ-065).
    @property
    def _used(self) -> int:
        return self._used_b

    @_used.setter
    def _used(self, value: int) -> None:
        self._used_b = value
        if self._ledger is not None:
            self._ledger.set(value + self._pooled_b)

    @property
    def _pooled(self) -> int:
        return self._pooled_b

    @_pooled.setter
    def _pooled(self, value: int) -> None:
        self._pooled_b = value
        if self._ledger is not None:
            self._ledger.set(self._used_b + value)

    def _fits(self, size: int) -> bool:
        """Whether ``size`` more bytes fit the limit (the host's, with a ledger: then
        they are taken in the ledger at once). Called under ``_lock``."""
        assert self.capacity is not None
        mine = self._used_b + self._pooled_b + size
        if self._ledger is None:
            return mine <= self.capacity
        return self._ledger.try_set(mine, self.capacity)

    @property
    def ledger(self) -> HostLedger | None:
        """This store's slot in its host's ledger (with ``share_limit``), else None."""
        return self._ledger

    def host_used_bytes(self) -> int:
        """Bytes of shared memory the stores sharing this one's limit hold together
        (only this store's without ``share_limit``)."""
        if self._ledger is None:
            return self._used_b + self._pooled_b
        return self._ledger.host_used()

    def segment_path(self, object_id: ObjectId, writer: str | None = None) -> str:
        """The file that holds (or would hold) ``object_id`` written by ``writer`` (default: us)."""
        return os.path.join(self.directory, segment_name(self.namespace, object_id, self.writer if writer is None else writer))

    def spill_path(self, object_id: ObjectId) -> str:
        """The file an object of ours goes to when spilled."""
        assert self.spill_directory is not None
        return os.path.join(self.spill_directory, segment_name(self.namespace, object_id, self.writer) + _SPILL)

    # ------------------------------------------------------------ helpers
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")

    def _allocate(self, size: int, mapped: bool = True) -> _Segment:
        """A writable segment of ``size`` bytes under a fresh partial name, counted as
        used: a pooled one reused if one fits (mapped, its pages warm), else a new
        file (with ``mapped``, its pages reserved and mapped writable; else empty,
        for the caller to write). Makes room first (see :meth:`_make_room`)."""
        with self._lock:
            self._check_open()
            candidates = [s for s in self._pool if s.size >= size] or self._pool[-1:]
            pooled = min(candidates, key=lambda s: s.size) if candidates else None
            if pooled is not None:
                self._pool.remove(pooled)
                self._pooled -= pooled.size
        try:
            self._make_room(size)
        except BaseException:
            if pooled is not None:
                self._drop_pooled(pooled)
            raise
        try:
            if pooled is not None:
                try:
                    return self._reuse(pooled, size)
                except OSError:
                    self._drop_pooled(pooled)  # e.g. no room to grow it: a fresh file may still fit
            return self._fresh(size, mapped)
        except BaseException:
            with self._lock:
                self._used -= size
            raise

    def _scratch_path(self, suffix: str) -> str:
        """A new name for a segment that holds no published object (being written, or
        pooled): random, with the writer's tag, so cleanup finds it (cleanup_writer)."""
        return os.path.join(self.directory, f"refrpc-{self.namespace}-{_writer_tag(self.writer)}{secrets.token_hex(16)}{suffix}")

    def _fresh(self, size: int, mapped: bool) -> _Segment:
        path = self._scratch_path(_PARTIAL)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._paths.add(path)
        wmm = None
        try:
            if mapped:
                # Reserve the pages now: writing into a mapping of a full tmpfs
                # would kill the process with SIGBUS instead of raising.
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
                else:  # pragma: no cover - not Linux
                    os.ftruncate(fd, size)
                wmm = mmap.mmap(fd, size)
        except BaseException:
            self._unlink(path)
            raise
        finally:
            os.close(fd)
        return _Segment(path, size, wmm=wmm)

    def _reuse(self, segment: _Segment, size: int) -> _Segment:
        """Turn a pooled segment into a writable one of ``size`` bytes (still locked)."""
        assert segment.wmm is not None
        if size > segment.size:
            os.posix_fallocate(segment.lock_fd, 0, size)  # reserve the extra pages (see _fresh)
        if size != segment.size:
            segment.wmm.resize(size)  # a smaller size hands the tail's pages back
        partial = self._scratch_path(_PARTIAL)
        os.rename(segment.path, partial)
        self._paths.discard(segment.path)
        self._paths.add(partial)
        self.counters["reuses"] += 1
        self.counters["bytes_reused"] += size
        return _Segment(partial, size, wmm=segment.wmm, lock_fd=segment.lock_fd)

    def _drop_pooled(self, segment: _Segment) -> None:
        if segment.lock_fd >= 0:
            os.close(segment.lock_fd)
            segment.lock_fd = -1
        _release(segment.wmm)
        segment.wmm = None
        self._unlink(segment.path)

    def _create(self, object_id: ObjectId, size: int, fetched: bool = False, mapped: bool = True) -> _Segment:
        """Reserve ``object_id`` and a writable partial segment for it, making room first."""
        path = self.segment_path(object_id)
        with self._lock:
            self._check_open()
            if object_id in self._owned or object_id in self._building or os.path.exists(path):
                raise ObjectExists(f"object {object_id!r} is already in namespace {self.namespace!r}")
            placeholder = self._building[object_id] = _Segment("", size, fetched=fetched)
        try:
            segment = self._allocate(size, mapped)
        except BaseException as exc:
            with self._lock:
                self._building.pop(object_id, None)
            if isinstance(exc, OSError):
                raise _store_error(exc, f"object {object_id!r}") from exc
            raise
        segment.fetched = fetched
        with self._lock:
            if self._building.get(object_id) is placeholder and not self._closed:
                self._building[object_id] = segment
                return segment
        self._discard(segment)  # freed or closed meanwhile
        raise StoreClosed(f"object {object_id!r} was dropped while it was being stored")

    def _discard(self, segment: _Segment) -> None:
        with self._lock:
            self._used -= segment.size
        if segment.lock_fd >= 0:
            os.close(segment.lock_fd)
            segment.lock_fd = -1
        _release(segment.mm)
        _release(segment.wmm)
        segment.mm = segment.wmm = None
        self._unlink(segment.path)

    def _abort(self, object_id: ObjectId, segment: _Segment) -> None:
        with self._lock:
            if self._building.get(object_id) is not segment:
                return
            del self._building[object_id]
        self._discard(segment)

    def _unlink(self, path: str) -> None:
        if path:
            _unlink_quietly(path)
            self._paths.discard(path)

    def _publish(self, object_id: ObjectId, segment: _Segment) -> None:
        """Make a written partial segment read-only and visible under its name."""
        final = self.segment_path(object_id)
        try:
            os.chmod(segment.path, 0o400)
            if segment.lock_fd >= 0:  # a reused segment: readers may lock it from now on
                fcntl.flock(segment.lock_fd, fcntl.LOCK_UN)  # also for the mapping's duplicate of it
                os.close(segment.lock_fd)
                segment.lock_fd = -1
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
            self._discard(segment)
            raise StoreClosed(f"object {object_id!r} was dropped while it was being stored")

    def _readable(self, object_id: ObjectId) -> tuple[_Segment, memoryview]:
        """The owned or attached segment of a sealed object, mapped read-only
        (restored from its spill file first if it is on disk), and a view of the
        mapping taken under the lock (while it lives, nobody unmaps it)."""
        for attempt in range(_READ_ATTEMPTS):
            with self._lock:
                self._check_open()
                segment = self._owned.get(object_id) or self._attached.get(object_id)
                if segment is None:
                    raise ObjectNotFound(f"no object {object_id!r} in this store")
                if object_id in self._owned:
                    self._owned[object_id] = self._owned.pop(object_id)  # most recently used
                spilled = bool(segment.spilled)
            if spilled:
                self._restore(object_id, segment)
            with self._lock:
                if segment.mm is not None:
                    return segment, memoryview(segment.mm)
                try:
                    segment.mm = _map_readonly(segment.path)
                    return segment, memoryview(segment.mm)
                except FileNotFoundError:
                    if segment.spilled:
                        # Spilled between our look and the mapping (the background relief
                        # thread, OBJ-066): the copy is on disk now, so read it from there.
                        # Never "gone": its spill file holds it.
                        if attempt + 1 < _READ_ATTEMPTS:
                            continue
                        break
                    # Removed behind our back (a /dev/shm cleaner, systemd's RemoveIPC):
                    # the copy is lost. Forget it, so that the store says so from now on.
                    if self._owned.get(object_id) is segment:
                        del self._owned[object_id]
                        self._used -= segment.size
                    self._attached.pop(object_id, None)
                    self._paths.discard(segment.path)
                    raise ObjectNotFound(f"the segment of {object_id!r} is gone") from None
        raise ObjectNotFound(f"object {object_id!r} kept moving to disk while it was read")

    @staticmethod
    def _decode(object_id: ObjectId, mm: Any) -> Value:
        try:
            return codec.decode_value(mm, zero_copy=True)
        except codec.DecodeError as exc:
            raise CorruptObject(f"object {object_id!r}: {exc}") from None

    # ------------------------------------------------------------ room
    def _full(self, needed: int, why: str) -> StoreFull:
        self.counters["full_errors"] += 1
        usage = self.usage()
        return StoreFull(
            f"no room for {needed:,} bytes in this object store ({why}): limit {self.capacity:,} bytes; "
            f"{usage['primary_bytes']:,} bytes in {usage['primary_objects']} primary copies, "
            f"{usage['secondary_bytes']:,} in {usage['secondary_objects']} fetched copies, "
            f"{usage['pinned_bytes']:,} of them mapped by readers (cannot move), "
            f"{usage['building_bytes']:,} being written, {usage['spilled_bytes']:,} spilled to disk",
            usage)

    def _make_room(self, size: int) -> None:
        """Count ``size`` more bytes as used, after making room for them: pooled
        segments go first, then unpinned objects are spilled (see the module docs)."""
        if self.capacity is None:
            with self._lock:
                self._used += size
            return
        if size > self.capacity:
            raise self._full(size, "larger than the whole limit")
        quick = threading.get_ident() in self.quick_threads
        if not self._room_for(size, True, QUICK_WAIT_S if quick else HOST_WAIT_S):
            raise self._full(size, "spilling is off" if self.spill_directory is None else "nothing more can be spilled")

    def make_room_for(self, size: int) -> bool:
        """Make ``size`` bytes free under the limit without taking them, as a value that
        needs room would (pooled memory, then spills, then the host's other stores),
        waiting for them if need be: before a copy that a thread which must not wait
        long will make (a fetch assembled on an event loop). False if it could not."""
        if self.capacity is None or size <= 0:
            return True
        if size > self.capacity:
            return False
        try:
            return self._room_for(size, False, HOST_WAIT_S)
        except StoreError:
            return False

    def _room_for(self, size: int, take: bool, wait: float) -> bool:
        """Make room for ``size`` bytes (and with ``take``, count them as used); False
        if nothing more can be made. Waits at most ``wait`` seconds for other stores."""
        assert self.capacity is not None
        deadline = time.monotonic() + wait
        with self._room:
            while True:
                with self._lock:
                    self._check_open()
                    if not take and self.host_used_bytes() + size <= self.capacity:
                        return True
                    if take and self._fits(size):
                        self._used += size
                        if self.high_water is not None and self.host_used_bytes() > self.high_water:
                            self._wake.set()  # OBJ-066: spill in the background, not in this call
                        return True
                    victim = self._pool.pop(0) if self._pool else None
                    if victim is not None:
                        self._pooled -= victim.size
                if victim is not None:
                    self._drop_pooled(victim)
                    continue
                if self.spill_directory is not None and self._spill_one(size):
                    continue
                # Nothing of ours can go: the host's other stores may still give room (OBJ-065).
                if self._ledger is not None and self._wait_for_host(size, deadline):
                    continue
                return False

    def _wait_for_host(self, size: int, deadline: float) -> bool:
        """Ask the host's other stores to make room for ``size`` bytes and wait until the
        host has it (True), or until nobody gives any back for HOST_STALL_S, the deadline
        passes or nobody else holds memory (False)."""
        assert self._ledger is not None and self.capacity is not None
        if not self._ledger.others():
            return False
        self._ledger.want(size)
        try:
            lowest, since = self._ledger.host_used(), time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline or now - since > HOST_STALL_S:
                    return False
                time.sleep(0.002)
                used = self._ledger.host_used()
                if used + size <= self.capacity:
                    return True
                if used < lowest:
                    lowest, since = used, now
        finally:
            self._ledger.want(0)

    def _relief_target(self) -> int | None:
        """The most bytes the host (this store, without a ledger) should hold now: under
        the high-water mark, and far enough under the limit for what another store of
        the host waits for; None: no need to spill."""
        assert self.capacity is not None
        targets = [] if self.high_water is None else [self.high_water]
        wanted = self._ledger.wanted if self._ledger is not None else 0
        if wanted > 0:
            targets.append(self.capacity - wanted)
        return min(targets) if targets else None

    def relieve(self) -> int:
        """Spill (and drop pooled memory) while the host is past its high-water mark or
        another store of the host waits for room (OBJ-066, OBJ-065): pooled segments
        first, then unpinned objects in OBJ-031's order. Never waits for a caller that
        is making room. Returns the bytes given back."""
        if self.capacity is None or self._closed:
            return 0
        target = self._relief_target()
        if target is None or self.host_used_bytes() <= target:
            return 0
        now = time.monotonic()
        if now < self._relief_retry_at and self._relief_stuck == (len(self._owned), self._used_b):
            return 0  # nothing could go last time and nothing changed here since (readers may unpin)
        if not self._room.acquire(blocking=False):
            return 0  # a caller is making room right now
        freed = 0
        try:
            while not self._closed:
                target = self._relief_target()
                if target is None or self.host_used_bytes() <= target:
                    break
                with self._lock:
                    victim = self._pool.pop(0) if self._pool else None
                    if victim is not None:
                        self._pooled -= victim.size
                if victim is not None:
                    self._drop_pooled(victim)
                    freed += victim.size
                    continue
                before = self._used
                if self.spill_directory is None or not self._spill_one(0, quiet=True):
                    if self._relief_target() is not None and self.host_used_bytes() > (self._relief_target() or 0):
                        self._relief_stuck = (len(self._owned), self._used_b)  # all pinned: look again later
                        self._relief_retry_at = time.monotonic() + RELIEF_RETRY_S
                    break
                freed += max(0, before - self._used)
        except StoreError:
            pass  # the spill storage is full: values that need room will get the typed error
        finally:
            self._room.release()
        return freed

    def _spill_one(self, needed: int, quiet: bool = False) -> bool:
        """Write one object nobody maps to its spill file and free its memory: the
        least recently used fetched copy, else the least recently used primary one.
        False if there is none. Raises StoreFull if the spill file cannot be written.

        With ``quiet`` (spilling ahead of need, OBJ-066), the spill happens only if the
        host is still past its relief target once the spills the host's other stores
        are writing right now are counted as done (so that they do not all spill for
        the same excess); a failed write raises a plain StoreError."""
        with self._lock:
            candidates = [(oid, s) for oid, s in self._owned.items() if not s.spilled and not s.spilling]
        candidates.sort(key=lambda item: not item[1].fetched)  # stable: fetched ones first, each kind in LRU order
        for object_id, segment in candidates:
            with self._lock:
                if self._owned.get(object_id) is not segment or not _release(segment.mm):
                    continue  # freed meanwhile, or a value of it is in use in this process
                segment.mm = None
                lock_fd = _exclusive(segment.path)
                if lock_fd < 0:
                    continue  # another process maps it: pinned
                segment.spilling = True
            if quiet and not self._begin_relief(segment.size):
                with self._lock:
                    segment.spilling = False
                    freed = self._owned.get(object_id) is not segment
                os.close(lock_fd)
                if freed:
                    self._discard(segment)
                return False  # the host needs no more
            try:
                self._write_spill(object_id, segment, needed, lock_fd, quiet)
            except BaseException:
                with self._lock:
                    segment.spilling = False
                    freed = self._owned.get(object_id) is not segment  # free() left it to us
                os.close(lock_fd)
                if freed:
                    self._discard(segment)
                raise
            finally:
                if quiet and self._ledger is not None:
                    self._ledger.end_relief(segment.size)
            os.close(lock_fd)
            return True
        return False

    def _begin_relief(self, size: int) -> bool:
        """Whether the host still needs a spill of ``size`` bytes ahead of need (counted
        in the ledger as being spilled until :meth:`HostLedger.end_relief`)."""
        target = self._relief_target()
        if target is None:
            return False
        if self._ledger is None:
            return self.host_used_bytes() > target
        return self._ledger.begin_relief(size, target)

    def _write_spill(self, object_id: ObjectId, segment: _Segment, needed: int, source: int,
                     quiet: bool = False) -> None:
        """Copy a segment (``source``: an fd of it holding its exclusive lock) to its
        spill file, then let its memory go."""
        final = self.spill_path(object_id)
        partial = final + _PARTIAL
        try:
            try:
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the directory went (a process that left removed it when empty)
                os.makedirs(os.path.dirname(partial), mode=0o700, exist_ok=True)
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                position = 0
                while position < segment.size:
                    sent = os.sendfile(fd, source, position, min(_COPY_STEP, segment.size - position))
                    if not sent:
                        raise OSError(errno.EIO, "the segment is shorter than its object")
                    position += sent
            finally:
                os.close(fd)
            os.rename(partial, final)
        except OSError as exc:
            _unlink_quietly(partial)  # never a partial spill file
            if quiet:  # spilling ahead of need: nobody gets an error
                raise StoreError(f"spilling {object_id!r} failed: {exc.strerror or exc}") from exc
            self.counters["full_errors"] += 1
            usage = self.usage()
            raise StoreFull(f"no room for {needed:,} bytes: spilling {object_id!r} ({segment.size:,} bytes) "
                            f"to {self.spill_directory} failed: {exc.strerror or exc}", usage) from exc
        self._paths.add(final)
        with self._lock:
            segment.spilling = False
            if self._owned.get(object_id) is not segment:  # freed while it was being written
                gone = True
            else:
                gone = False
                segment.spilled = final
                self._used -= segment.size
                self.counters["spills"] += 1
                self.counters["bytes_spilled"] += segment.size
        self._unlink(segment.path)
        _release(segment.wmm)
        segment.wmm = None
        if gone:
            self._unlink(final)
            with self._lock:
                self._used -= segment.size
        elif self.on_spill is not None:
            self.on_spill(object_id, True)

    def _restore(self, object_id: ObjectId, segment: _Segment) -> None:
        """Bring a spilled object back into memory (making room for it), or wait while
        another caller does; the caller looks at the segment again afterwards. A
        caller whose restorer failed (no room, a stop) tries itself: its own error is
        the one it raises."""
        while True:
            with self._lock:
                if self._owned.get(object_id) is not segment or not segment.spilled:
                    return  # freed, or brought back meanwhile
                busy = self._restoring.get(object_id)
                if busy is None:
                    done = self._restoring[object_id] = threading.Event()
                    break
            busy.wait()
        try:
            self._restore_alone(object_id, segment, segment.spilled)
        finally:
            with self._lock:
                del self._restoring[object_id]
            done.set()

    def _restore_alone(self, object_id: ObjectId, segment: _Segment, spill: str) -> None:
        try:
            fresh = self._allocate(segment.size)
        except BaseException as exc:
            if isinstance(exc, OSError):
                raise _store_error(exc, f"object {object_id!r}") from exc
            raise
        assert fresh.wmm is not None
        try:
            try:
                file = open(spill, "rb", buffering=0)
            except FileNotFoundError:
                with self._lock:
                    freed = self._owned.get(object_id) is not segment
                if freed:
                    raise ObjectNotFound(f"object {object_id!r} was freed while it was read") from None
                raise ObjectNotFound(f"the spill file of {object_id!r} is gone ({spill})") from None
            with file:
                view = memoryview(fresh.wmm)
                try:
                    position = 0
                    while position < fresh.size:
                        got = file.readinto(view[position : position + _COPY_STEP])
                        if not got:
                            raise CorruptObject(f"the spill file of {object_id!r} is short")
                        position += got
                finally:
                    view.release()
            os.chmod(fresh.path, 0o400)
            if fresh.lock_fd >= 0:
                fcntl.flock(fresh.lock_fd, fcntl.LOCK_UN)
                os.close(fresh.lock_fd)
                fresh.lock_fd = -1
            final = self.segment_path(object_id)
            try:
                os.link(fresh.path, final)
            except FileExistsError:  # a segment of that name is there already (never ours to replace)
                self._discard(fresh)
                return
            self._paths.add(final)
        except BaseException:
            self._discard(fresh)
            raise
        self._unlink(fresh.path)
        with self._lock:
            if self._owned.get(object_id) is segment and segment.spilled:
                spill = segment.spilled
                segment.spilled, segment.path, segment.wmm = "", final, fresh.wmm
                self.counters["restores"] += 1
                self.counters["bytes_restored"] += segment.size
            else:  # freed meanwhile
                spill = ""
        if spill:
            self._unlink(spill)
            if self.on_spill is not None:
                self.on_spill(object_id, False)
        else:
            fresh.path = final
            self._discard(fresh)

    # ------------------------------------------------------------ writing
    def put(self, object_id: ObjectId, value: Value) -> int:
        parts = codec.encode_value_parts(value)
        size = sum(memoryview(part).nbytes for part in parts)
        segment = self._create(object_id, size, mapped=False)
        try:
            if segment.wmm is not None:  # a reused segment: a copy into warm pages
                _copy_into(segment.wmm, parts)
            else:  # a new file: write() finds, zeroes and fills each page in one pass
                with open(segment.path, "r+b", buffering=0) as file:
                    for part in parts:
                        view = memoryview(part)
                        if view.format != "B" or view.ndim != 1:
                            view = view.cast("B")
                        while view:
                            view = view[file.write(view[:_COPY_STEP]) :]
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
        segment = self._create(object_id, size, fetched=True)
        segment.coverage = Coverage(size)

    def _assembly(self, object_id: ObjectId) -> _Segment:
        with self._lock:
            self._check_open()
            segment = self._building.get(object_id)
            if segment is None or segment.wmm is None or segment.coverage is None:
                raise ObjectNotFound(f"object {object_id!r} is not being assembled here")
            return segment

    def write_chunk(self, object_id: ObjectId, offset: int, data: Any) -> None:
        segment = self._assembly(object_id)
        assert segment.wmm is not None and segment.coverage is not None
        chunk = memoryview(data)
        if chunk.format != "B" or chunk.ndim != 1:
            chunk = chunk.cast("B")
        if offset < 0 or offset + len(chunk) > segment.size:
            raise StoreError(
                f"chunk [{offset}, {offset + len(chunk)}) does not fit the object's {segment.size} bytes"
            )
        segment.wmm[offset : offset + len(chunk)] = chunk
        with self._lock:
            segment.coverage.add(offset, offset + len(chunk))

    def assembled_bytes(self, object_id: ObjectId, offset: int, length: int) -> bytes | None:
        segment = self._assembly(object_id)
        assert segment.wmm is not None and segment.coverage is not None
        with self._lock:
            if not segment.coverage.covers(offset, offset + length):
                return None
            # A copy: once sealed or aborted, the segment's file may be reused for
            # another value while a send still reads the bytes.
            return segment.wmm[offset : offset + length]

    def missing(self, object_id: ObjectId) -> list[tuple[int, int]]:
        segment = self._assembly(object_id)
        assert segment.coverage is not None
        with self._lock:
            return segment.coverage.missing()

    def seal(self, object_id: ObjectId) -> int:
        segment = self._assembly(object_id)
        assert segment.wmm is not None and segment.coverage is not None
        with self._lock:
            gaps = segment.coverage.missing()
        if gaps:
            raise IncompleteObject(f"object {object_id!r} lacks bytes {gaps[:3]} (FET-010)")
        try:
            view = memoryview(segment.wmm).toreadonly()
            try:
                codec.decode_value(view, zero_copy=True)
            finally:
                view.release()
        except codec.DecodeError as exc:
            self._abort(object_id, segment)
            raise CorruptObject(f"object {object_id!r} is not a stored value: {exc}") from None
        segment.coverage = None
        self._publish(object_id, segment)
        return segment.size

    # ------------------------------------------------------------ reading
    def get(self, object_id: ObjectId) -> Value:
        """The value of an object this store holds (owned or attached), zero-copy."""
        _, view = self._readable(object_id)
        return self._decode(object_id, view)

    def attach(self, object_id: ObjectId, writer: str | None = None) -> Value:
        """Map the segment of ``object_id`` (written by any process in this
        namespace) read-only and return its value; the payloads are read-only
        ``memoryview``\\ s of the mapping (no copy).

        Raises:
            ObjectNotFound: No sealed segment of that id in the namespace (also
                while another process has it spilled to disk: fetch it from that
                process then, which serves it from its spill file).
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
        segment, _ = self._readable(object_id)
        assert segment.mm is not None
        return segment.mm

    def get_bytes(self, object_id: ObjectId, offset: int = 0, length: int = -1) -> memoryview:
        """Bytes of the stored form; a spilled object's are read from its file
        (a fetch is served from disk, the object stays there)."""
        with self._lock:
            self._check_open()
            segment = self._owned.get(object_id)
            spill = segment.spilled if segment is not None else ""
        if spill:
            start, end = clip_range(segment.size, offset, length)  # type: ignore[union-attr]
            try:
                with open(spill, "rb", buffering=0) as file:
                    file.seek(start)
                    data = file.read(end - start)
            except FileNotFoundError:
                with self._lock:
                    lost = self._owned.get(object_id) is segment and segment.spilled == spill  # type: ignore[union-attr]
                if lost:  # removed behind our back: the copy is gone (LOC-006)
                    raise ObjectNotFound(f"the spill file of {object_id!r} is gone ({spill})") from None
                return self.get_bytes(object_id, offset, length)  # restored or freed meanwhile: look again
            except OSError as exc:  # OBJ-032: unreadable spill bytes are a lost copy (LOC-006)
                raise CorruptObject(f"the spill file of {object_id!r} cannot be read: {exc}") from exc
            if len(data) != end - start:
                raise CorruptObject(f"the spill file of {object_id!r} is short: {len(data)} of {end - start} bytes")
            return memoryview(data).toreadonly()
        segment, view = self._readable(object_id)
        start, end = clip_range(segment.size, offset, length)
        return view[start:end]

    def contains(self, object_id: ObjectId) -> bool:
        with self._lock:
            return object_id in self._owned or object_id in self._attached

    def size(self, object_id: ObjectId) -> int:
        with self._lock:
            segment = self._owned.get(object_id) or self._attached.get(object_id)
        if segment is None:
            raise ObjectNotFound(f"no object {object_id!r} in this store")
        return segment.size

    def where(self, object_id: ObjectId) -> str:
        """``"memory"``, ``"disk"`` (spilled) or ``""`` (not held here)."""
        with self._lock:
            segment = self._owned.get(object_id) or self._attached.get(object_id)
            return "" if segment is None else "disk" if segment.spilled else "memory"

    @property
    def used_bytes(self) -> int:
        """Bytes of shared memory this store's objects take (owned, in memory, or
        being assembled; not attached ones, not the pool, not spilled ones)."""
        return self._used

    @property
    def free_bytes(self) -> int | None:
        """Bytes a new value can take without spilling (the pool counts as free);
        None without a capacity."""
        if self.capacity is None:
            return None
        if self._ledger is not None:  # the host's stores share the limit (OBJ-065)
            return max(0, self.capacity - self._ledger.host_used() + self._pooled_b)
        return max(0, self.capacity - self._used)

    def usage(self) -> dict[str, Any]:
        """What the store holds, by kind: bytes and objects of primary copies
        (made here) and secondary ones (fetched) in memory, of those some other
        mapping pins (cannot be spilled), being assembled, spilled to disk, pooled,
        plus the limit and the spill/restore counters."""
        with self._lock:
            owned = list(self._owned.items())
            building = sum(s.size for s in self._building.values())
            pooled, used = self._pooled, self._used
        out: dict[str, Any] = {"limit": self.capacity, "used_bytes": used, "pooled_bytes": pooled,
                               "building_bytes": building, "spill_directory": self.spill_directory or "",
                               "shared_limit": self._ledger is not None, "high_water": self.high_water,
                               "host_used_bytes": self.host_used_bytes(),
                               "host_stores": self._ledger.stores() if self._ledger is not None else 1}
        for kind in ("primary", "secondary", "pinned", "spilled"):
            out[f"{kind}_bytes"] = out[f"{kind}_objects"] = 0

        def count(kind: str, segment: _Segment) -> None:
            out[f"{kind}_bytes"] += segment.size
            out[f"{kind}_objects"] += 1

        for _, segment in owned:
            if segment.spilled:
                count("spilled", segment)
                continue
            count("secondary" if segment.fetched else "primary", segment)
            if self._pinned(segment):
                count("pinned", segment)
        out.update(self.counters)
        return out

    def _pinned(self, segment: _Segment) -> bool:
        """Whether a mapping in use (in this process or another) holds the segment."""
        with self._lock:
            if not _release(segment.mm):
                return True  # a value of it is in use here
            segment.mm = None
        fd = _exclusive(segment.path)
        if fd < 0:
            return True
        os.close(fd)
        return False

    def objects(self) -> list[tuple[ObjectId, int, str, str]]:
        """Every object this store owns: (id, size, ``primary``/``secondary``, ``memory``/``disk``)."""
        with self._lock:
            return [(oid, s.size, "secondary" if s.fetched else "primary", "disk" if s.spilled else "memory")
                    for oid, s in self._owned.items()]

    def object_ids(self) -> list[ObjectId]:
        """Ids of the sealed objects this store owns (not attached ones), oldest first."""
        with self._lock:
            return list(self._owned)

    # ------------------------------------------------------------ freeing
    def free(self, object_id: ObjectId) -> bool:
        """Recycle or unlink an owned object (or abort one being assembled), or detach
        an attached one. Mappings still in use stay valid until dropped: a segment
        something maps is unlinked, never reused."""
        with self._lock:
            segment = self._owned.pop(object_id, None)
            if segment is not None and not segment.spilled and not segment.spilling:
                self._used -= segment.size
        if segment is not None:
            if segment.spilling:
                return True  # the spiller sees it gone and cleans up
            if segment.spilled:
                self._unlink(segment.spilled)
                if self.on_spill is not None:
                    self.on_spill(object_id, False)
                return True
            self._recycle(segment)
            return True
        with self._lock:
            building = self._building.get(object_id)
        if building is not None:
            self._abort(object_id, building)
            return True
        return self.detach(object_id)

    def _recycle(self, segment: _Segment) -> None:
        """Pool a freed segment if nobody maps it and the pool has room; else unlink it."""
        unmapped = _release(segment.mm)
        segment.mm = None
        keep = (unmapped and segment.size >= POOL_MIN_BYTES and segment.size <= self.pool_bytes
                and not self._closed)
        if not keep:
            self._unlink(segment.path)
            _release(segment.wmm)
            segment.wmm = None
            return
        pooled = self._scratch_path(_POOL)  # never the object's name: the same id may be stored again
        try:
            os.rename(segment.path, pooled)  # from now on no reader finds it by name
            self._paths.discard(segment.path)
            self._paths.add(pooled)
            os.chmod(pooled, 0o600)
            fd = os.open(pooled, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self._unlink(segment.path)
            self._unlink(pooled)
            _release(segment.wmm)
            segment.wmm = None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a reader maps it: its memory must stay as it is
            os.close(fd)
            self._unlink(pooled)
            _release(segment.wmm)
            segment.wmm = None
            return
        if segment.wmm is None:  # written with write(): map it now (cheap; pages fault in on first reuse)
            try:
                segment.wmm = mmap.mmap(fd, segment.size)
            except OSError:
                os.close(fd)
                self._unlink(pooled)
                return
        segment.path, segment.lock_fd = pooled, fd
        dropped: list[_Segment] = []
        with self._lock:
            self._pool.append(segment)
            self._pooled += segment.size
            while self._pool and (self._pooled > self.pool_bytes or len(self._pool) > POOL_MAX_SEGMENTS
                                  or (self.capacity is not None and self._used + self._pooled > self.capacity)):
                old = self._pool.pop(0)
                self._pooled -= old.size
                dropped.append(old)
        for old in dropped:
            self._drop_pooled(old)

    def close(self) -> None:
        """Unlink every segment and spill file this store created, drop every mapping. Idempotent."""
        with self._lock:
            self._closed = True
            segments = [*self._owned.values(), *self._building.values(), *self._attached.values(), *self._pool]
            self._owned.clear()
            self._building.clear()
            self._attached.clear()
            self._pool.clear()
            self._used_b = self._pooled_b = 0
        self._wake.set()  # the relief thread ends
        if self._ledger is not None:
            self._ledger.close()  # this store's bytes no longer count for the host
        for segment in segments:
            if segment.lock_fd >= 0:
                os.close(segment.lock_fd)
                segment.lock_fd = -1
            _release(segment.mm)
            _release(segment.wmm)
        _unlink_all(self._paths)

    def __repr__(self) -> str:
        return (
            f"<SharedMemoryStore {self.namespace!r} at {self.directory}: "
            f"{len(self._owned)} objects, {self._used} bytes>"
        )


def _relief_loop(ref: "weakref.ReferenceType[SharedMemoryStore]", wake: threading.Event) -> None:
    """A store's background relief (OBJ-065, OBJ-066): every RELIEF_POLL_S, or when a
    value takes the store past its high-water mark, spill what the host needs. Holds
    the store only while it works, and ends when the store is closed or gone."""
    while True:
        wake.wait(RELIEF_POLL_S)
        wake.clear()
        store = ref()
        if store is None or store._closed:
            return
        try:
            store.relieve()
        except StoreClosed:
            return
        except Exception:  # noqa: BLE001 - a background helper must never die of one value
            pass
        del store
