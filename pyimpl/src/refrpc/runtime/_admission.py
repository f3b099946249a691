"""Memory-aware admission of calls on an executor (OBJ-037).

Before a call loads its arguments, the executor counts the bytes it will have to
copy into its own store: each stored argument that no process of this host holds
in shared memory (it lives on another host, or its holder spilled it to disk) is
fetched into this store (FET-001) and stays there, mapped by the call, until the
call ends. The call is *admitted* when those bytes, plus the bytes the calls
admitted before it reserved and have not released, fit the store's limit; else
it waits, in the order calls arrived, until a call that holds bytes ends. One call
is always admitted when nothing is reserved (a call needing more than the whole
limit then fails with ``OBJECT_STORE_FULL``, OBJ-036, rather than wait forever),
and a call never waits longer than :data:`ADMISSION_WAIT_S`: past it, it goes on
and its fetch makes room by spilling, or fails with the typed error.

Where the host's stores share one limit (OBJ-065), so do the reservations: they
are kept in the host's ledger (:meth:`HostLedger.reserve`), so that two workers of
a host never both start fetching what only one of them can hold while the other's
call pins it. A call waiting for another process's reservation looks again every
:data:`POLL_S` (nothing wakes it across processes).
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any

#: The longest a call waits for memory before it tries anyway.
ADMISSION_WAIT_S = 60.0
#: How often a call waiting for the host's other processes looks at the ledger again.
POLL_S = 0.02


class Admission:
    """FIFO admission by bytes against a store's limit (see the module docs)."""

    def __init__(self, capacity: int | None, ledger: Any = None) -> None:
        self.capacity = capacity
        #: The host's ledger (a HostLedger) where reservations are shared, or None.
        self.ledger = ledger
        self._cv = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()
        self._held: dict[int, int] = {}
        #: Bytes reserved by admitted calls that have not ended.
        self.reserved = 0
        #: Calls that had to wait, and calls that waited past ADMISSION_WAIT_S.
        self.waited = 0
        self.gave_up_waiting = 0

    def try_acquire(self, key: int, need: int) -> bool:
        """Admit the call ``key`` at once if nothing waits ahead of it and its ``need``
        bytes fit; else admit nothing and return False (the caller then waits in
        :meth:`acquire`, having given its CPU back meanwhile)."""
        if self.capacity is None or need <= 0:
            return True
        with self._cv:
            if self._queue or not self._fits(need):
                return False
            self._admit(key, need)
            return True

    def acquire(self, key: int, need: int, timeout: float = ADMISSION_WAIT_S,
                abort: threading.Event | None = None) -> bool:
        """Admit the call ``key`` needing ``need`` bytes: at once if they fit, else
        after the calls ahead of it, when enough bytes are released. Returns False,
        having admitted nothing, if ``abort`` was set meanwhile (the call was stopped;
        :meth:`wake` ends the wait at once)."""
        if self.capacity is None or need <= 0:
            return True
        ticket = object()
        deadline = time.monotonic() + timeout
        with self._cv:
            self._queue.append(ticket)
            try:
                waited = False
                while not (self._queue[0] is ticket and self._fits(need)):
                    if abort is not None and abort.is_set():
                        return False
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.gave_up_waiting += 1
                        if self.ledger is not None:
                            self.ledger.reserve(need, 1 << 62)  # goes anyway: still counted for the others
                        break
                    waited = True
                    self._cv.wait(left if self.ledger is None else min(left, POLL_S))
                self.waited += waited
                self._admit(key, need)
                return True
            finally:
                # Admitted, given up, or left by an exception (a stop sent into the
                # waiting thread): either way the calls behind it must not wait for it.
                self._queue.remove(ticket)
                self._cv.notify_all()

    def try_acquire_more(self, key: int, need: int) -> bool:
        """:meth:`acquire_more` if the bytes fit now; else nothing, and False."""
        if self.capacity is None or need <= 0:
            return True
        with self._cv:
            if not self._fits(need):
                return False
            self._admit(key, need)
            return True

    def acquire_more(self, key: int, need: int, timeout: float = ADMISSION_WAIT_S,
                     abort: threading.Event | None = None) -> bool:
        """``need`` more bytes for the call ``key``, already admitted, that must fetch
        an argument it counted as mapped (its holder spilled it meanwhile): granted as
        soon as they fit, ahead of the calls not admitted yet (which wait for bytes such
        calls hold). Bounded and abortable as :meth:`acquire`."""
        if self.capacity is None or need <= 0:
            return True
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._fits(need):
                if abort is not None and abort.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    self.gave_up_waiting += 1
                    if self.ledger is not None:
                        self.ledger.reserve(need, 1 << 62)
                    break
                self._cv.wait(left if self.ledger is None else min(left, POLL_S))
            self._admit(key, need)
            return True

    def wait_for_others(self, key: int, timeout: float = ADMISSION_WAIT_S,
                        abort: threading.Event | None = None) -> bool:
        """The call ``key`` found no room for its fetch: wait until a call that holds
        bytes (on this host, with a ledger) releases some. False at once if no other
        call holds any (the call is alone: no room will come), or if ``abort`` was set
        or ``timeout`` passed first."""
        if self.capacity is None:
            return False
        deadline = time.monotonic() + timeout
        with self._cv:
            own = self._held.get(key, 0)
            before = self._others(own)
            if before <= 0:
                return False
            while self._others(own) >= before:
                if abort is not None and abort.is_set():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left if self.ledger is None else min(left, POLL_S))
            return True

    def _others(self, own: int) -> int:
        """Bytes reserved by calls other than one holding ``own`` (host-wide with a ledger)."""
        total = self.ledger.reserved() if self.ledger is not None else self.reserved
        return total - own

    def wake(self) -> None:
        """Make every waiting call look at its ``abort`` event now."""
        with self._cv:
            self._cv.notify_all()

    def _admit(self, key: int, need: int) -> None:
        """Count ``need`` bytes as reserved by ``key`` (holding ``_cv``; a ledger's
        share is already reserved by ``_fits``)."""
        self.reserved += need
        self._held[key] = self._held.get(key, 0) + need
        self._cv.notify_all()

    def _fits(self, need: int) -> bool:
        """Whether ``need`` more bytes may be reserved now (and, with a ledger, reserve them)."""
        assert self.capacity is not None
        if self.ledger is not None:
            return bool(self.ledger.reserve(need, self.capacity))
        return self.reserved == 0 or self.reserved + need <= self.capacity

    def release(self, key: int) -> None:
        """The call ``key`` ended: its bytes are free for the calls waiting."""
        if key not in self._held:  # admitted with nothing to fetch (most calls): no lock to take
            return
        with self._cv:
            held = self._held.pop(key, 0)
            if held:
                self.reserved -= held
                if self.ledger is not None:
                    self.ledger.unreserve(held)
                self._cv.notify_all()

    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)


def arguments_to_fetch(store: Any, args: Any) -> dict[str, int]:
    """The stored arguments of ``args`` (ResolvedArgs) that a call will copy into
    ``store``, with their sizes: those of known size with no segment on this host to
    map (another host's, or spilled by their holder), and not already held by
    ``store`` itself."""
    counted: dict[str, int] = {}
    segment_path = getattr(store, "segment_path", None)
    for a in args:
        if a.value is not None or a.ref is not None or not a.object_id or a.size <= 0:
            continue
        if store.contains(a.object_id):
            continue
        if segment_path is not None and any(os.path.exists(segment_path(a.object_id, peer)) for peer, _ in a.locations):
            continue  # mapped from this host's shared memory: nothing is copied here
        counted[a.object_id] = a.size
    return counted
