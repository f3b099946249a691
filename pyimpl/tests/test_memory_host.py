"""One limit for a host's stores, on real processes (OBJ-065), and spilling that starts
at a high-water mark, in the background, not in the call that stores a value (OBJ-066).

The other store of the host runs in a child process (``_holder``) that puts what it
is told, says so on stdout, and keeps its store until its stdin closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from typing import Iterator

import pytest

from refrpc.core.messages import Encoding, Value
from refrpc.store import SharedMemoryStore, StoreFull, cleanup_namespace, cleanup_writer, list_spilled
from refrpc.store._host import ledger_path
from refrpc.store._shm import _writer_tag
from refrpc.testing import wait_until

pytestmark = pytest.mark.timeout(60)

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
MB = 1 << 20

_HOLDER = r"""
import sys
from refrpc.core.messages import Encoding, Value
from refrpc.store import SharedMemoryStore
namespace, capacity, spill, nbytes = sys.argv[1], int(sys.argv[2]), sys.argv[3] or None, int(sys.argv[4])
store = SharedMemoryStore(namespace, writer="holder", capacity=capacity, spill_directory=spill, share_limit=True)
store.put("holder.1", Value(Encoding.RAW, b"h" * nbytes))
print("ready", flush=True)
sys.stdin.read()
print(store.where("holder.1"), flush=True)
store.close()
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"host-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield ns
    cleanup_namespace(ns)
    assert not os.path.exists(ledger_path("/dev/shm", ns))  # the ledger goes with the namespace


@pytest.fixture
def spill_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="refrpc-spill-test-") as d:
        yield d


def _holder(namespace: str, capacity: int, nbytes: int, spill: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, namespace, str(capacity), spill, str(nbytes)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate("", timeout=30)
    return out.strip()


def _raw(nbytes: int) -> Value:
    return Value(Encoding.RAW, b"x" * nbytes)


def test_one_busy_store_uses_what_idle_ones_do_not(namespace: str) -> None:
    # Two processes, an 8 MiB limit for the host. A split limit would give each 4 MiB;
    # shared, this one stores 6 MiB next to the other's 1 MiB, with nothing spilled.
    other = _holder(namespace, 8 * MB, 1 * MB)
    try:
        with SharedMemoryStore(namespace, writer="busy", capacity=8 * MB, share_limit=True) as store:
            store.put("busy.1", _raw(6 * MB))
            usage = store.usage()
            assert usage["shared_limit"] and usage["host_stores"] == 2
            assert 7 * MB <= usage["host_used_bytes"] <= 8 * MB
            assert store.free_bytes == 8 * MB - usage["host_used_bytes"]
            # The host is full now: with nothing of its own to spill and the other store
            # unable to spill (no spill directory), a value that does not fit fails.
            with pytest.raises(StoreFull):
                store.put("busy.2", _raw(2 * MB))
            assert store.where("busy.1") == "memory"
    finally:
        assert _finish(other) == "memory"


def test_a_store_short_of_room_gets_it_from_an_idle_one(namespace: str, spill_dir: str) -> None:
    # The other process holds 5 MiB it does not use; this one needs 5 MiB and has
    # nothing to spill. The other store spills its value (OBJ-031 order) for it.
    other = _holder(namespace, 8 * MB, 5 * MB, spill_dir)
    try:
        with SharedMemoryStore(namespace, writer="busy", capacity=8 * MB, share_limit=True) as store:
            store.put("busy.1", _raw(5 * MB))
            assert store.usage()["host_used_bytes"] <= 8 * MB
            assert store.where("busy.1") == "memory"
            tag = f"refrpc-{namespace}-{_writer_tag('holder')}"
            assert [n for n in list_spilled(namespace, spill_dir) if n.startswith(tag)]
    finally:
        assert _finish(other) == "disk"
    assert list_spilled(namespace, spill_dir) == []  # the holder removed its spill file when it closed


def test_a_dead_process_gives_its_bytes_back(namespace: str) -> None:
    # The other process holds 6 MiB and is killed: the kernel drops its slot's lock,
    # so its bytes no longer count, before anyone has cleaned up its files.
    other = _holder(namespace, 8 * MB, 6 * MB)
    with SharedMemoryStore(namespace, writer="busy", capacity=8 * MB, share_limit=True) as store:
        assert store.usage()["host_used_bytes"] >= 6 * MB
        os.kill(other.pid, signal.SIGKILL)
        other.wait(30)
        store.put("busy.1", _raw(6 * MB))  # no spill directory: it fits only if the dead bytes were given back
        assert store.where("busy.1") == "memory"
        assert store.usage()["host_stores"] == 1
    assert cleanup_writer(namespace, "holder") == 1  # its segment, left for whoever cleans up after it


def test_past_the_high_water_mark_values_spill_in_the_background(namespace: str, spill_dir: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # A 10 MiB limit with its mark at half: four 2 MiB values take it past the mark but
    # fit the limit. No put waits for a disk write; the store's background thread
    # spills the least recently used values until it is back under the mark.
    spilled_on: list[str] = []
    real = SharedMemoryStore._write_spill

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        spilled_on.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SharedMemoryStore, "_write_spill", record)
    with SharedMemoryStore(namespace, writer="w", capacity=10 * MB, spill_directory=spill_dir,
                           high_water=0.5) as store:
        assert store.high_water == 5 * MB
        ids = [f"w.{i}" for i in range(4)]
        for i, oid in enumerate(ids):
            store.put(oid, Value(Encoding.RAW, bytes([i]) * (2 * MB)))
        assert wait_until(lambda: store.used_bytes + store.usage()["pooled_bytes"] <= 5 * MB, 20), store.usage()
        assert spilled_on and all(name.startswith("refrpc-store-relief") for name in spilled_on), spilled_on
        assert store.where(ids[0]) == "disk" and store.where(ids[-1]) == "memory"  # oldest first
        for i, oid in enumerate(ids):  # nothing lost: a spilled value is restored for get (OBJ-033)
            assert bytes(store.get(oid).data[:1]) == bytes([i])


def test_a_bad_high_water_mark_is_refused(namespace: str) -> None:
    for bad in (0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="high-water"):
            SharedMemoryStore(namespace, capacity=8 * MB, high_water=bad)
    from refrpc.store import parse_high_water

    for bad in ("lots", 0, 2, True, None):
        with pytest.raises(ValueError, match="object_store_high_water"):
            parse_high_water(bad)
    assert parse_high_water("0.8") == 0.8 and parse_high_water(1) == 1.0


def test_room_is_made_ahead_of_a_copy_without_taking_it(namespace: str, spill_dir: str) -> None:
    # What an executor does before it fetches a call's arguments (the fetch itself runs
    # on the event loop, which waits for other stores only briefly): the idle process
    # spills its 5 MiB so that 5 MiB are free, and nothing is counted as taken here.
    other = _holder(namespace, 8 * MB, 5 * MB, spill_dir)
    try:
        with SharedMemoryStore(namespace, writer="busy", capacity=8 * MB, share_limit=True) as store:
            assert store.make_room_for(5 * MB)
            assert store.used_bytes == 0 and store.free_bytes >= 5 * MB
            assert not store.make_room_for(9 * MB)  # more than the whole limit
    finally:
        assert _finish(other) == "disk"


_WAITER = r"""
import sys
from refrpc.store._host import HostLedger
ledger = HostLedger(sys.argv[1], sys.argv[2])
ledger.set(1 << 20)
ledger.want(5 << 20)
print("waiting", flush=True)
sys.stdin.read()
"""


def test_a_store_that_dies_waiting_for_room_asks_for_nothing_any_more(namespace: str) -> None:
    # Another process asks the host for 5 MiB (what a store short of room does) and is
    # killed while it waits: the host's stores must not go on spilling for it.
    from refrpc.store import DEFAULT_DIRECTORY
    from refrpc.store._host import HostLedger

    proc = subprocess.Popen([sys.executable, "-c", _WAITER, DEFAULT_DIRECTORY, namespace], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "waiting"
        ledger = HostLedger(DEFAULT_DIRECTORY, namespace)
        try:
            assert ledger.wanted == 5 * MB and ledger.others() == 1 * MB
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            assert ledger.wanted == 0 and ledger.others() == 0
        finally:
            ledger.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


_KEEPER = r"""
import sys
from refrpc.core.messages import Encoding, Value
from refrpc.store import SharedMemoryStore
namespace, directory = sys.argv[1], sys.argv[2]
store = SharedMemoryStore(namespace, directory=directory, writer="keeper", capacity=8 << 20, share_limit=True)
store.put("keeper.1", Value(Encoding.RAW, b"k" * (1 << 20)))
print("ready", flush=True)
sys.stdin.read()
"""


def test_what_a_killed_cluster_left_is_swept_and_nothing_live_is() -> None:
    # Two "clusters" of one process each keep a store in their own namespace; one is
    # killed with SIGKILL, so it removes nothing. A sweep (as refrpc start, init() and
    # refrpc stop run) removes the dead one's segment and ledger, and leaves the live
    # one's and this process's own (whose ledger slots this process holds) alone.
    from refrpc.store import sweep_orphans

    with tempfile.TemporaryDirectory(prefix="refrpc-sweep-test-") as directory:
        env = {**os.environ, "PYTHONPATH": SRC}
        procs = {ns: subprocess.Popen([sys.executable, "-c", _KEEPER, ns, directory], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env) for ns in ("dead", "live")}
        try:
            for proc in procs.values():
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            with SharedMemoryStore("mine", directory=directory, writer="me", capacity=8 << 20, share_limit=True) as mine:
                mine.put("me.1", _raw(1 << 20))
                procs["dead"].kill()
                procs["dead"].wait(10)
                files = lambda ns: sorted(n for n in os.listdir(directory) if n.startswith(f"refrpc-{ns}-") or n == f"refrpc-{ns}.ledger")  # noqa: E731
                assert len(files("dead")) == 2 and len(files("live")) == 2 and len(files("mine")) == 2
                assert sweep_orphans(directory=directory) == {"dead": 2}
                assert files("dead") == []
                assert len(files("live")) == 2 and len(files("mine")) == 2
                assert mine.get("me.1").data == b"x" * (1 << 20)  # this process's store still works
                mine.put("me.2", _raw(1 << 20))
        finally:
            for proc in procs.values():
                proc.kill()
                proc.communicate(timeout=10)
        assert sweep_orphans(directory=directory) == {"live": 2}
        assert os.listdir(directory) == []
