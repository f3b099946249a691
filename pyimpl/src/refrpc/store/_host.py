"""One host's shared account of object-store memory (OBJ-065).

The processes of one host (one shared-memory namespace) keep their stores under one
limit: each process has a *slot* in a small file next to the segments,
``refrpc-{namespace}.ledger``, where it writes how many bytes of shared memory its
store takes (objects in memory, being assembled, pooled). A store that wants more
adds up every slot and takes the bytes only if the sum stays within the limit; the
check and the update happen under an exclusive ``flock`` of the file, so two
processes never both take the last free bytes.

A dead process's bytes are given back without anyone's help: each process holds a
POSIX record lock (``lockf``) on its slot's bytes for as long as it lives, which the
kernel drops when the process dies, however it dies. A slot whose lock can be taken
belongs to nobody: its bytes no longer count, and its slot is reused.

A slot also carries how many bytes its process waits for (:meth:`HostLedger.want`):
the other processes' stores spill until the host is that far under its limit (see
:class:`~refrpc.store.SharedMemoryStore`), and the bytes it is spilling ahead of need
(so that the host's stores do not all spill for the same excess).

POSIX record locks belong to a process, not to a descriptor, and closing *any*
descriptor of the file drops all of them: so a process opens each ledger once and
its stores share that descriptor (:func:`_open`), each with a slot of its own.
"""

from __future__ import annotations

import fcntl
from array import array
import mmap
import os
import sys
import threading
from dataclasses import dataclass, field

#: Slots in a ledger: processes of one host whose stores share a limit.
SLOTS = 512
_WORD = 8
_HEADER_WORDS = 8  # [1]: highest slot in use + 1; the others are unused
#: [0]: pid, [1]: bytes, [2]: bytes being spilled ahead of need, [3]: bytes wanted,
#: [4]: bytes reserved by calls admitted to fetch their arguments (OBJ-037)
_SLOT_WORDS = 5
_SIZE = (_HEADER_WORDS + SLOTS * _SLOT_WORDS) * _WORD
_HIGH = 1
_ZEROS = array("q", [0] * _SLOT_WORDS)


def ledger_path(directory: str, namespace: str) -> str:
    """The ledger file of ``namespace`` in the shared-memory ``directory``."""
    return os.path.join(directory, f"refrpc-{namespace}.ledger")


@dataclass
class _File:
    """A process's one open descriptor of a ledger, shared by its stores."""

    path: str
    fd: int
    mm: mmap.mmap
    words: memoryview
    pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    slots: set[int] = field(default_factory=set)


_FILES: dict[str, _File] = {}
_FILES_LOCK = threading.Lock()


def _open(path: str) -> _File:
    with _FILES_LOCK:
        f = _FILES.get(path)
        if f is not None and f.pid == os.getpid():
            return f
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SIZE:
                    os.ftruncate(fd, _SIZE)  # zeroes: no slot in use
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            mm = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        f = _FILES[path] = _File(path, fd, mm, memoryview(mm).cast("q"), os.getpid())
        return f


def _close(f: _File) -> None:
    with _FILES_LOCK:
        if f.slots or _FILES.get(f.path) is not f:
            return
        del _FILES[f.path]
    f.words.release()
    f.mm.close()
    os.close(f.fd)  # drops this process's record locks on the file (it holds none now)


class HostLedger:
    """This store's slot in its host's ledger (see the module docs)."""

    def __init__(self, directory: str, namespace: str) -> None:
        self.path = ledger_path(directory, namespace)
        self._f = _open(self.path)
        self.slot = -1
        self._mine = 0
        with self._locked() as w:
            high = w[_HIGH]
            for slot in range(SLOTS):
                if slot in self._f.slots or not self._take(slot):
                    continue
                self.slot = slot
                self._f.slots.add(slot)
                at = self._at(slot)
                w[at : at + _SLOT_WORDS] = array("q", [os.getpid()] + [0] * (_SLOT_WORDS - 1))
                w[_HIGH] = max(high, slot + 1)
                break
        if self.slot < 0:
            _close(self._f)
            raise OSError(f"no free slot in {self.path}: more than {SLOTS} stores on this host")

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _at(slot: int) -> int:
        return _HEADER_WORDS + slot * _SLOT_WORDS

    def _take(self, slot: int) -> bool:
        """Take ``slot``'s record lock (held while this process lives); False if a live process holds it."""
        try:
            fcntl.lockf(self._f.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SLOT_WORDS * _WORD, self._at(slot) * _WORD)
            return True
        except OSError:
            return False

    def _empty(self, w: memoryview, slot: int) -> None:
        """Clear ``slot`` and let go of its record lock (taken by :meth:`_take`, or ours)."""
        at = self._at(slot)
        w[at : at + _SLOT_WORDS] = _ZEROS
        fcntl.lockf(self._f.fd, fcntl.LOCK_UN, _SLOT_WORDS * _WORD, at * _WORD)

    def _locked(self) -> "_Held":
        return _Held(self._f)

    def _others(self, w: memoryview, reap: bool) -> int:
        """Bytes the other slots hold; with ``reap``, a slot nobody holds is emptied first."""
        total = 0
        for slot in range(min(w[_HIGH], SLOTS)):
            if slot == self.slot:
                continue
            at = self._at(slot)
            if not w[at + 1]:
                continue
            if reap and slot not in self._f.slots and self._take(slot):
                # Its process is gone: its bytes are free again (its files are removed by
                # whoever cleans up after it, OBJ-035).
                self._empty(w, slot)
                continue
            total += w[at + 1]
        return total

    # ------------------------------------------------------------ accounting
    @property
    def mine(self) -> int:
        """The bytes this store's slot says it holds."""
        return self._mine

    def set(self, nbytes: int) -> None:
        """Say that this store now holds ``nbytes`` (no check against the limit)."""
        if self.slot < 0:
            return  # closed: its bytes no longer count
        with self._locked() as w:
            self._mine = w[self._at(self.slot) + 1] = max(0, nbytes)

    def try_set(self, nbytes: int, limit: int) -> bool:
        """Say that this store holds ``nbytes``, if the host's stores together then stay
        within ``limit`` (a smaller figure than now is always taken); else change nothing."""
        if self.slot < 0:
            return nbytes <= limit
        with self._locked() as w:
            if nbytes > self._mine and nbytes + self._others(w, False) > limit:
                if nbytes + self._others(w, True) > limit:  # look for the dead only when it matters
                    return False
            self._mine = w[self._at(self.slot) + 1] = max(0, nbytes)
            return True

    def host_used(self) -> int:
        """Bytes the host's stores hold together (a snapshot taken without the lock)."""
        w = self._f.words
        return self._mine + sum(w[self._at(s) + 1] for s in range(min(w[_HIGH], SLOTS)) if s != self.slot)

    def others(self) -> int:
        """Bytes the other live stores of the host hold (dead ones are reaped)."""
        with self._locked() as w:
            return self._others(w, True)

    def stores(self) -> int:
        """How many stores of the host hold bytes, this one included."""
        w = self._f.words
        return 1 + sum(1 for s in range(min(w[_HIGH], SLOTS)) if s != self.slot and w[self._at(s) + 1])

    def begin_relief(self, nbytes: int, target: int) -> bool:
        """Count ``nbytes`` as being spilled ahead of need by this store, if the host
        still holds more than ``target`` once every such spill under way is done;
        else (False) count nothing. Each True is followed by :meth:`end_relief`."""
        if self.slot < 0:
            return False
        with self._locked() as w:
            self._reap_flagged(w)
            pending = sum(w[self._at(s) + 2] for s in range(min(w[_HIGH], SLOTS)))
            if self._mine + self._others(w, False) - pending <= target:
                return False
            w[self._at(self.slot) + 2] += nbytes
            return True

    def end_relief(self, nbytes: int) -> None:
        """A spill counted by :meth:`begin_relief` ended (written or not)."""
        if self.slot < 0:
            return
        with self._locked() as w:
            at = self._at(self.slot) + 2
            w[at] = max(0, w[at] - nbytes)

    @property
    def wanted(self) -> int:
        """The most bytes another store of the host waits for (0: none; a snapshot). A
        store that dies waiting asks for nothing any more: its slot is emptied."""
        w = self._f.words
        if not any(w[self._at(s) + 3] for s in range(min(w[_HIGH], SLOTS)) if s != self.slot):
            return 0
        with self._locked() as w:
            self._reap_flagged(w)
            return max((w[self._at(s) + 3] for s in range(min(w[_HIGH], SLOTS)) if s != self.slot), default=0)

    def _reap_flagged(self, w: memoryview) -> None:
        """Empty the slots of dead stores that still say they wait or spill."""
        for slot in range(min(w[_HIGH], SLOTS)):
            at = self._at(slot)
            if (slot != self.slot and slot not in self._f.slots and (w[at + 2] or w[at + 3] or w[at + 4])
                    and self._take(slot)):
                self._empty(w, slot)

    def reserve(self, nbytes: int, limit: int) -> bool:
        """Reserve ``nbytes`` for a call that will fetch its arguments into this host's
        stores (OBJ-037), if what the host's stores have reserved, plus ``nbytes``,
        stays within ``limit``, or if nothing is reserved on the host (one call always
        goes: one larger than the limit then fails with the typed error rather than
        wait for ever). False: nothing changed (ask again once others release)."""
        if self.slot < 0:
            return True
        with self._locked() as w:
            self._reap_flagged(w)
            total = sum(w[self._at(s) + 4] for s in range(min(w[_HIGH], SLOTS)))
            if total and total + nbytes > limit:
                return False
            w[self._at(self.slot) + 4] += nbytes
            return True

    def unreserve(self, nbytes: int) -> None:
        """A call admitted by :meth:`reserve` ended: its bytes are free for others."""
        if self.slot < 0:
            return
        with self._locked() as w:
            at = self._at(self.slot) + 4
            w[at] = max(0, w[at] - nbytes)

    def reserved(self) -> int:
        """Bytes the host's stores have reserved for admitted calls (a snapshot)."""
        w = self._f.words
        return sum(w[self._at(s) + 4] for s in range(min(w[_HIGH], SLOTS)))

    def want(self, nbytes: int) -> None:
        """Ask the other stores to make ``nbytes`` free (0: no longer needed)."""
        if self.slot < 0:
            return
        with self._locked() as w:
            w[self._at(self.slot) + 3] = max(0, nbytes)

    def _anyone_else(self, w: memoryview) -> bool:
        """Whether a live store other than this one has a slot (dead ones are emptied)."""
        for slot in range(min(w[_HIGH], SLOTS)):
            if slot == self.slot:
                continue
            if slot in self._f.slots:
                return True
            at = self._at(slot)
            if not w[at]:
                continue
            if not self._take(slot):
                return True
            self._empty(w, slot)
        return False

    def close(self) -> None:
        """Give the slot back (its bytes no longer count); the last store of the host
        to leave removes the file (a cluster whose processes all left, however they left)."""
        if self.slot < 0:
            return
        with self._locked() as w:
            at = self._at(self.slot)
            w[at : at + _SLOT_WORDS] = _ZEROS
            if not self._anyone_else(w):
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            fcntl.lockf(self._f.fd, fcntl.LOCK_UN, _SLOT_WORDS * _WORD, at * _WORD)
            self._f.slots.discard(self.slot)
        self.slot = -1
        self._mine = 0
        _close(self._f)


class _Held:
    """The ledger's exclusive lock: this process's threads, then other processes."""

    def __init__(self, f: _File) -> None:
        self._f = f

    def __enter__(self) -> memoryview:
        self._f.lock.acquire()
        try:
            fcntl.flock(self._f.fd, fcntl.LOCK_EX)
        except BaseException:
            self._f.lock.release()
            raise
        return self._f.words

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._f.fd, fcntl.LOCK_UN)
        self._f.lock.release()


def cleanup_ledger(directory: str, namespace: str) -> bool:
    """Remove a namespace's ledger file (when the cluster stops); True if it was there."""
    try:
        os.unlink(ledger_path(directory, namespace))
        return True
    except FileNotFoundError:
        return False


def orphaned_namespaces(directory: str) -> list[str]:
    """Namespaces in ``directory`` whose every process is gone (killed, say, so it
    removed nothing): their ledger had a slot taken once, and now no live process
    holds a record lock on any of it. A ledger being created has had no slot taken
    yet, so it is never one. A ledger this process has open is never tested (testing
    another descriptor of it and closing that would drop this process's own record
    locks)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    with _FILES_LOCK:
        mine = {path for path, f in _FILES.items() if f.pid == os.getpid()}
    found = []
    for name in sorted(names):
        if not (name.startswith("refrpc-") and name.endswith(".ledger")):
            continue
        path = os.path.join(directory, name)
        if path in mine:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_size < _SIZE:
                continue  # being created
            try:  # the whole file: no slot of it is held by a live process
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
            except OSError:
                continue
            used = int.from_bytes(os.pread(fd, _WORD, _HIGH * _WORD), sys.byteorder, signed=True)
            if used > 0:
                found.append(name[len("refrpc-") : -len(".ledger")])
        finally:
            os.close(fd)  # drops the test lock (this process holds no other lock on it)
    return found
