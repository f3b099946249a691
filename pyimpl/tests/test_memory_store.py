"""The shared-memory store under pressure: reuse of freed segments (never under a
reader), the byte limit, spilling to disk and back, and the typed error when
nothing more can go (OBJ-030 to OBJ-036)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from typing import Iterator

import pytest

import refrpc
from refrpc.core.messages import Encoding, Value
from refrpc.serialization import deserialize, serialize
from refrpc.store import (
    SharedMemoryStore,
    StoreFull,
    cleanup_namespace,
    cleanup_writer,
    list_segments,
    list_spilled,
)

from memory_fixtures import tiny_tmpfs

np = pytest.importorskip("numpy")

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
MB = 1 << 20


def array_value(fill: int, nbytes: int = MB) -> Value:
    return serialize(np.full(nbytes // 8, fill, dtype=np.int64), ref_hook=lambda o: None)


def array_of(value: Value) -> "np.ndarray":
    return deserialize(value, ref_factory=lambda d: d)


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"mem-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield ns
    cleanup_namespace(ns)


@pytest.fixture
def spill_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="refrpc-spill-test-") as d:
        yield d


# ---------------------------------------------------------------- reuse
def test_a_freed_segment_takes_the_next_value(namespace: str) -> None:
    with SharedMemoryStore(namespace, writer="w") as store:
        store.put("a", array_value(1))
        store.free("a")
        assert store.counters["reuses"] == 0
        assert len(list_segments(namespace, pooled=True)) == 1 and list_segments(namespace) == []
        store.put("b", array_value(2))  # same size: the pooled segment, not a new file
        assert store.counters["reuses"] == 1
        assert (array_of(store.get("b")) == 2).all()
        assert list_segments(namespace, pooled=True) == list_segments(namespace)  # nothing pooled now
        store.put("c", array_value(3, MB // 2))  # smaller: nothing pooled, a new file
        store.free("b")
        store.put("d", array_value(4, MB // 2))  # the 1 MB segment, shrunk to fit
        assert store.counters["reuses"] == 2
        assert os.path.getsize(store.segment_path("d")) == store.size("d")
        assert (array_of(store.get("d")) == 4).all() and (array_of(store.get("c")) == 3).all()
    assert list_segments(namespace, pooled=True) == []


def test_memory_a_reader_maps_is_never_reused(namespace: str) -> None:
    writer, reader = SharedMemoryStore(namespace, writer="w"), SharedMemoryStore(namespace)
    try:
        writer.put("a", array_value(7))
        held = array_of(reader.attach("a", "w"))  # a zero-copy view: its mapping holds the segment
        writer.free("a")
        writer.put("b", array_value(8))
        assert writer.counters["reuses"] == 0  # the segment was unlinked, not pooled
        assert (held == 7).all()  # the reader's memory was not overwritten
        del held
        reader.detach("a")
        writer.free("b")  # nobody maps b: pooled
        writer.put("c", array_value(9))
        assert writer.counters["reuses"] == 1
    finally:
        reader.close()
        writer.close()


READER = r"""
import sys
from refrpc.serialization import deserialize
from refrpc.store import SharedMemoryStore
store = SharedMemoryStore(sys.argv[1])
arr = deserialize(store.attach("a", "w"), ref_factory=lambda d: d)
print(int(arr[0]), flush=True)
sys.stdin.readline()  # the test freed and rewrote meanwhile
print(int(arr.min()), int(arr.max()), flush=True)
"""


@pytest.mark.timeout(60)
def test_another_process_mapping_keeps_its_bytes(namespace: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p))
    with SharedMemoryStore(namespace, writer="w") as writer:
        writer.put("a", array_value(5))
        child = subprocess.Popen([sys.executable, "-c", READER, namespace], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "5"
            writer.free("a")
            for i in range(3):
                writer.put(f"n{i}", array_value(6))
                writer.free(f"n{i}")
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().split() == ["5", "5"]
        finally:
            child.kill()
            child.wait(30)


# ---------------------------------------------------------------- the limit
def test_a_value_over_the_whole_limit_fails_at_once(namespace: str) -> None:
    with SharedMemoryStore(namespace, writer="w", capacity=2 * MB) as store:
        with pytest.raises(refrpc.ObjectStoreFullError, match="larger than the whole limit") as info:
            store.put("big", array_value(1, 3 * MB))
        assert isinstance(info.value, StoreFull) and info.value.usage["limit"] == 2 * MB
        assert store.used_bytes == 0 and list_segments(namespace) == []
        store.put("ok", array_value(1))  # the store goes on working


def test_without_spilling_a_full_store_raises_with_its_usage(namespace: str) -> None:
    with SharedMemoryStore(namespace, writer="w", capacity=3 * MB, pool_bytes=3 * MB) as store:
        store.put("a", array_value(1))
        store.put("b", array_value(2))
        with pytest.raises(refrpc.ObjectStoreFullError) as info:
            store.put("c", array_value(3))
        assert info.value.usage["primary_objects"] == 2 and info.value.code == refrpc.ObjectStoreFullError(
            "").code
        assert "primary copies" in str(info.value)
        assert store.object_ids() == ["a", "b"] and (array_of(store.get("b")) == 2).all()
        store.free("a")
        store.put("c", array_value(3))  # room again: the freed segment takes it
        assert store.counters["reuses"] == 1


# ---------------------------------------------------------------- spilling
def test_spills_least_recently_used_and_restores_on_get(namespace: str, spill_dir: str) -> None:
    with SharedMemoryStore(namespace, writer="w", capacity=int(3.5 * MB), spill_directory=spill_dir) as store:
        for i in range(6):
            store.put(f"o{i}", array_value(i))
        usage = store.usage()
        assert usage["spilled_objects"] == 3 and usage["primary_objects"] == 3
        assert usage["used_bytes"] + usage["pooled_bytes"] <= 3.5 * MB
        assert [store.where(f"o{i}") for i in range(6)] == ["disk"] * 3 + ["memory"] * 3
        assert len(list_spilled(namespace, spill_dir)) == 3
        whole = bytes(store.get_bytes("o0"))  # served from its file; stays there
        assert store.where("o0") == "disk" and len(whole) == store.size("o0")
        assert (array_of(store.get("o0")) == 0).all()  # restored: another goes to disk
        assert store.where("o0") == "memory" and store.counters["restores"] == 1
        assert bytes(store.get_bytes("o0")) == whole
        assert sum(store.where(f"o{i}") == "disk" for i in range(6)) == 3
        for i in range(6):
            assert (array_of(store.get(f"o{i}")) == i).all()
        for i in range(6):
            store.free(f"o{i}")
        assert list_spilled(namespace, spill_dir) == [] and store.usage()["spilled_bytes"] == 0
        store.put("x", array_value(9))
        store.get("x")
    assert list_spilled(namespace, spill_dir) == [] and list_segments(namespace, pooled=True) == []


def test_the_store_tells_its_listener_what_it_spills_and_brings_back(namespace: str, spill_dir: str) -> None:
    # What a node turns into CopySpilled for its core (INT-020): each spill, each
    # restore, and the free of a spilled object, in the order they happen.
    with SharedMemoryStore(namespace, writer="w", capacity=int(3.5 * MB), spill_directory=spill_dir) as store:
        told: list[tuple[str, bool]] = []
        store.on_spill = lambda oid, spilled: told.append((oid, spilled))
        for i in range(4):
            store.put(f"o{i}", array_value(i))
        assert told == [("o0", True)] and store.where("o0") == "disk"
        store.get("o0")  # restored: o1, the least recently used now, makes room
        assert told[1:] == [("o1", True), ("o0", False)]
        store.free("o1")  # freed while on disk
        assert told[-1] == ("o1", False)
        store.put("o4", array_value(4))
        store.put("o5", array_value(5))  # room for it: something goes to disk again
        last = dict(told)  # the listener's view: each object's latest word
        on_disk = {oid for oid, spilled in last.items() if spilled}
        assert on_disk and on_disk == {f"o{i}" for i in range(6) if store.where(f"o{i}") == "disk"}


def test_close_removes_spill_files(namespace: str, spill_dir: str) -> None:
    store = SharedMemoryStore(namespace, writer="w", capacity=2 * MB, spill_directory=spill_dir)
    for i in range(4):
        store.put(f"o{i}", array_value(i))
    assert list_spilled(namespace, spill_dir)
    store.close()
    assert list_spilled(namespace, spill_dir) == [] and os.listdir(spill_dir) == []


def test_fetched_copies_spill_before_primary_ones(namespace: str, spill_dir: str) -> None:
    with SharedMemoryStore(namespace, writer="w", capacity=int(2.5 * MB), spill_directory=spill_dir) as store:
        store.put("mine", array_value(1))
        with SharedMemoryStore(namespace + "-src", writer="src") as source:
            source.put("theirs", array_value(2))
            raw = bytes(source.get_bytes("theirs"))
        store.put_bytes("theirs", len(raw))
        store.write_chunk("theirs", 0, raw)
        store.seal("theirs")
        store.put("more", array_value(3))
        assert store.where("theirs") == "disk" and store.where("mine") == "memory"
        assert store.usage()["secondary_objects"] == 0 and store.usage()["spilled_objects"] == 1


def test_pinned_objects_are_not_spilled(namespace: str, spill_dir: str) -> None:
    with SharedMemoryStore(namespace, writer="w", capacity=int(2.5 * MB), spill_directory=spill_dir) as store, \
            SharedMemoryStore(namespace) as reader:
        store.put("a", array_value(1))
        store.put("b", array_value(2))
        held = [array_of(reader.attach(oid, "w")) for oid in ("a", "b")]  # a running task maps both
        assert store.usage()["pinned_objects"] == 2
        with pytest.raises(refrpc.ObjectStoreFullError, match="nothing more can be spilled"):
            store.put("c", array_value(3))
        assert store.where("a") == "memory" and (held[0] == 1).all()
        del held
        reader.detach("a")
        store.put("c", array_value(3))  # a is free to go now
        assert store.where("a") == "disk" and store.where("b") == "memory"


@pytest.mark.timeout(60)
def test_a_full_spill_disk_leaves_the_object_in_memory(namespace: str) -> None:
    with tiny_tmpfs("1536k") as tiny:
        with SharedMemoryStore(namespace, writer="w", capacity=int(2.5 * MB), spill_directory=tiny) as store:
            store.put("a", array_value(1))
            store.put("b", array_value(2))
            store.put("c", array_value(3))  # a fits on the disk
            assert store.where("a") == "disk"
            with pytest.raises(refrpc.ObjectStoreFullError, match="failed"):
                store.put("d", array_value(4))  # b does not: the disk is full
            assert store.where("b") == "memory" and (array_of(store.get("b")) == 2).all()
            assert [n for n in os.listdir(tiny) if n.endswith(".partial")] == []  # no partial file
            assert store.usage()["spilled_objects"] == 1
            store.free("c")
            store.put("d", array_value(4))  # the node goes on working


def test_a_dead_writers_pool_and_spill_files_are_cleaned(namespace: str, spill_dir: str) -> None:
    store = SharedMemoryStore(namespace, writer="w", capacity=2 * MB, spill_directory=spill_dir, pool_bytes=2 * MB)
    try:
        for i in range(3):
            store.put(f"o{i}", array_value(i))
        store.free("o2")
        assert len(list_spilled(namespace, spill_dir)) == 2 and len(list_segments(namespace, pooled=True)) == 1
        assert cleanup_writer(namespace, "w", spill_directory=spill_dir) == 3
        assert list_spilled(namespace, spill_dir) == [] and list_segments(namespace, pooled=True) == []
    finally:
        store.close()


def test_an_object_stored_again_after_its_free_gets_its_own_segment(namespace: str) -> None:
    # A task re-run on the same worker stores the same return id again: the pooled
    # segment of its first copy and the new copy must never be confused.
    with SharedMemoryStore(namespace, writer="w") as store:
        store.put("x", array_value(1))
        store.free("x")  # pooled
        store.put("y", array_value(9, MB // 2))  # a fresh file: nothing pooled fits
        store.free("y")
        store.put("x", array_value(2, MB // 4))  # the same id again
        store.free("x")
        store.put("z", array_value(3))
        store.put("w", array_value(4, MB // 2))
        assert (array_of(store.get("z")) == 3).all() and (array_of(store.get("w")) == 4).all()
        assert len(set(list_segments(namespace, pooled=True))) == len(list_segments(namespace, pooled=True))


@pytest.mark.parametrize("damage", ["truncated", "unreadable"])
def test_a_damaged_spill_file_is_a_typed_error_not_short_bytes(namespace: str, spill_dir: str, damage: str) -> None:
    # Someone truncated a spill file, or it can no longer be read (here: a directory
    # took its place): a read gets CorruptObject (a StoreError, which a fetch serves
    # as a lost copy, OBJ-032), never fewer bytes than asked or an OSError.
    from refrpc.store import CorruptObject

    with SharedMemoryStore(namespace, writer="w", capacity=int(1.5 * MB), spill_directory=spill_dir) as store:
        store.put("a", array_value(1))
        store.put("b", array_value(2))
        assert store.where("a") == "disk"
        (name,) = list_spilled(namespace, spill_dir)
        path = os.path.join(spill_dir, name)
        if damage == "truncated":
            os.truncate(path, 100)
        else:
            os.unlink(path)
            os.mkdir(path)
        with pytest.raises(CorruptObject):
            store.get_bytes("a")
        assert (array_of(store.get("b")) == 2).all()  # the store goes on serving the rest
        if damage == "unreadable":
            os.rmdir(path)


def test_a_removed_spill_file_is_a_lost_copy_for_get_and_get_bytes(namespace: str, spill_dir: str) -> None:
    # A /tmp cleaner removed a spill file: the copy is gone, and both ways of reading
    # it say so with ObjectNotFound (a StoreError) instead of an OSError or a loop.
    from refrpc.store import ObjectNotFound

    with SharedMemoryStore(namespace, writer="w", capacity=int(1.5 * MB), spill_directory=spill_dir) as store:
        store.put("a", array_value(1))
        store.put("b", array_value(2))
        assert store.where("a") == "disk"
        (name,) = list_spilled(namespace, spill_dir)
        os.unlink(os.path.join(spill_dir, name))
        with pytest.raises(ObjectNotFound, match="spill file"):
            store.get_bytes("a")
        with pytest.raises(ObjectNotFound, match="spill file"):
            store.get("a")
        assert (array_of(store.get("b")) == 2).all()


def test_readers_whose_restorer_fails_keep_the_copy_on_disk(namespace: str, spill_dir: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Eight threads read a spilled object while bringing it back fails (no room under
    # memory pressure): each gets StoreFull (its own try, not a waiter's "gone"), the
    # copy stays on disk and counted as it was, and a later read brings it back.
    import threading
    import time

    with SharedMemoryStore(namespace, writer="w", capacity=int(1.5 * MB), spill_directory=spill_dir) as store:
        store.put("a", array_value(1))
        store.put("b", array_value(2))
        assert store.where("a") == "disk"
        used = store.usage()["used_bytes"]

        def no_room(object_id, segment, spill):
            time.sleep(0.05)  # long enough for the others to wait on this one
            raise StoreFull("no room (pressure)")

        monkeypatch.setattr(store, "_restore_alone", no_room)
        errors: list[str] = []

        def read() -> None:
            try:
                store.get("a")
                errors.append("read")
            except Exception as exc:  # noqa: BLE001 - judged below
                errors.append(type(exc).__name__)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == ["StoreFull"] * 8
        assert store.where("a") == "disk" and store.usage()["used_bytes"] == used
        assert len(list_spilled(namespace, spill_dir)) == 1
        monkeypatch.undo()
        assert (array_of(store.get("a")) == 1).all()


def test_readers_racing_to_bring_back_one_spilled_object_all_get_it(namespace: str, spill_dir: str) -> None:
    # Four threads read the same spilled object at once (an executor's argument and
    # fetches served by the loop): one brings it back, the others wait and map that
    # copy. None of them reads a spill file another just removed, and the store never
    # holds the object more than once (four copies would not fit: StoreFull).
    import threading

    with SharedMemoryStore(namespace, writer="w", capacity=int(3.5 * MB), spill_directory=spill_dir) as store:
        for i in range(6):
            store.put(f"o{i}", array_value(i))
        errors: list[str] = []
        raced = 0
        for turn in range(40):
            target = f"o{turn % 6}"
            if store.where(target) != "disk":
                continue
            raced += 1
            barrier = threading.Barrier(4)

            def read() -> None:
                barrier.wait(10)
                try:
                    assert (array_of(store.get(target)) == int(target[1:])).all()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(repr(exc))

            threads = [threading.Thread(target=read) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        assert raced >= 10 and errors == []
        assert store.counters["restores"] == raced
