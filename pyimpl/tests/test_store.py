"""Object stores: stored forms in memory and in shared memory (OBJ-010, FET-*).

The cross-process test checks the point of the shared-memory store: a large
numpy array made by one process is read by another through a read-only
mapping, with no private copy.
"""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

import refrpc
from refrpc import codec
from refrpc.core.messages import Encoding, RefDescriptor, Value
from refrpc.serialization import deserialize, serialize
from refrpc.store import (
    DEFAULT_DIRECTORY,
    CorruptObject,
    IncompleteObject,
    MemoryStore,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    SharedMemoryStore,
    StoreClosed,
    StoreError,
    cleanup_namespace,
    list_segments,
    segment_name,
)

np = pytest.importorskip("numpy")

SRC = str(Path(refrpc.__file__).resolve().parents[1])
SLOW = os.environ.get("REFRPC_SLOW") == "1"
MiB = 1 << 20


def no_refs(obj: object) -> None:
    return None


def desc(i: int) -> RefDescriptor:
    return RefDescriptor(f"obj-{i}", "owner", 1, "tcp://127.0.0.1:7000")


def sample_value(n: int = 100_000) -> Value:
    return serialize({"a": np.arange(n, dtype=np.int32), "b": [1, "x"]}, ref_hook=no_refs)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH", "")) if p)
    return env


def shm_free_bytes() -> int:
    st = os.statvfs(DEFAULT_DIRECTORY)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield ns
    cleanup_namespace(ns)  # whatever the test did, leave nothing behind


@pytest.fixture(params=["memory", "shm"])
def store(request: pytest.FixtureRequest, namespace: str) -> Iterator[ObjectStore]:
    s: ObjectStore = MemoryStore() if request.param == "memory" else SharedMemoryStore(namespace)
    yield s
    s.close()


# ---------------------------------------------------------------- both stores
def test_put_get_free(store: ObjectStore) -> None:
    value = Value(Encoding.PICKLE, b"pickle", (b"buf0", b"b" * 70_000), (desc(1), desc(2)))
    size = store.put("x", value)
    assert size == len(codec.encode_value(value)) == store.size("x") == store.used_bytes
    assert store.contains("x") and "x" in store and len(store) == 1 and store.object_ids() == ["x"]
    got = store.get("x")
    assert got == value
    assert all(type(p) is memoryview and p.readonly for p in (got.data, *got.buffers))
    with pytest.raises(ObjectExists):
        store.put("x", value)
    store.put("y", Value(Encoding.RAW, b"y"))
    assert store.object_ids() == ["x", "y"]
    assert store.free("x") is True and store.free("x") is False
    assert not store.contains("x") and store.object_ids() == ["y"]
    with pytest.raises(ObjectNotFound):
        store.get("x")
    with pytest.raises(ObjectNotFound):
        store.size("x")
    assert got == value  # views handed out stay valid after free
    assert store.used_bytes == store.size("y")


def test_numpy_value_round_trips_without_copy(store: ObjectStore) -> None:
    value = sample_value()
    store.put("arr", value)
    obj = deserialize(store.get("arr"), ref_factory=lambda d: d)
    assert np.array_equal(obj["a"], np.arange(100_000, dtype=np.int32)) and obj["b"] == [1, "x"]
    assert not obj["a"].flags.writeable
    whole = store.get_bytes("arr")
    base = int(np.frombuffer(whole, dtype=np.uint8).__array_interface__["data"][0])
    low = obj["a"].__array_interface__["data"][0]
    assert base <= low and low + obj["a"].nbytes <= base + len(whole)  # in the stored bytes
    with pytest.raises(ValueError):
        obj["a"][0] = 5


def test_get_bytes_ranges(store: ObjectStore) -> None:
    value = sample_value(1000)
    size = store.put("x", value)
    stored = codec.encode_value(value)
    assert store.get_bytes("x") == stored and store.get_bytes("x").readonly
    assert store.get_bytes("x", 10, 100) == stored[10:110]
    assert store.get_bytes("x", size - 5, 100) == stored[-5:]  # served up to the end (FET-014)
    assert store.get_bytes("x", size, 10) == b""
    for offset in (size + 1, -1):
        with pytest.raises(StoreError):
            store.get_bytes("x", offset, 1)
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope")


def test_chunked_assembly(store: ObjectStore) -> None:
    value = sample_value()
    stored = codec.encode_value(value)
    store.put_bytes("copy", len(stored))
    assert not store.contains("copy") and store.used_bytes == len(stored)
    assert store.missing("copy") == [(0, len(stored))]
    with pytest.raises(ObjectExists):
        store.put_bytes("copy", 10)
    chunks = [(off, stored[off : off + 4096]) for off in range(0, len(stored), 4096)]
    random.Random(1).shuffle(chunks)  # chunks arrive in any order
    for offset, chunk in chunks:
        with pytest.raises(ObjectNotFound):
            store.get("copy")
        store.write_chunk("copy", offset, memoryview(chunk))
    with pytest.raises(StoreError):
        store.write_chunk("copy", len(stored) - 2, b"abc")
    assert store.seal("copy") == len(stored) == store.size("copy")
    assert store.get("copy") == value and store.get_bytes("copy") == stored
    with pytest.raises(ObjectNotFound):
        store.write_chunk("copy", 0, b"x")  # sealed: immutable
    with pytest.raises(ObjectNotFound):
        store.seal("never-started")
    with pytest.raises(StoreError):
        store.put_bytes("empty", 0)


def test_an_assembly_serves_the_bytes_it_has(store: ObjectStore) -> None:
    # A relay serves a range of its copy once every byte of it has arrived (FET-042).
    stored = codec.encode_value(sample_value())
    with pytest.raises(ObjectNotFound):
        store.assembled_bytes("copy", 0, 10)  # nothing being assembled
    store.put_bytes("copy", len(stored))
    store.write_chunk("copy", 0, stored[:5000])
    store.write_chunk("copy", 8000, stored[8000:])
    assert bytes(store.assembled_bytes("copy", 100, 4900)) == stored[100:5000]
    assert store.assembled_bytes("copy", 4000, 2000) is None  # [5000, 8000) has not arrived
    assert bytes(store.assembled_bytes("copy", 8000, 10)) == stored[8000:8010]
    early = store.assembled_bytes("copy", 0, 100)
    store.write_chunk("copy", 5000, stored[5000:8000])
    assert bytes(store.assembled_bytes("copy", 4000, 2000)) == stored[4000:6000]
    store.seal("copy")
    assert bytes(early) == stored[:100]  # a view handed out stays valid after the seal
    with pytest.raises(ObjectNotFound):
        store.assembled_bytes("copy", 0, 10)  # sealed: read with get_bytes


def test_incomplete_and_corrupt_assemblies(store: ObjectStore) -> None:
    stored = codec.encode_value(sample_value(1000))
    half = len(stored) // 2
    store.put_bytes("obj", len(stored))
    store.write_chunk("obj", 0, stored[:100])
    store.write_chunk("obj", 50, stored[50:half])  # overlapping chunks are fine
    assert store.missing("obj") == [(half, len(stored))]
    with pytest.raises(IncompleteObject):
        store.seal("obj")  # FET-010: the rest never came; it stays for a resume
    store.write_chunk("obj", half, stored[half:])
    assert store.missing("obj") == []
    assert store.seal("obj") == len(stored)
    store.put_bytes("bad", len(stored))
    store.write_chunk("bad", 0, bytes(len(stored)))  # complete, but not a stored form
    with pytest.raises(CorruptObject):
        store.seal("bad")
    assert not store.contains("bad") and store.used_bytes == len(stored)  # discarded
    with pytest.raises(ObjectNotFound):
        store.missing("bad")
    store.put_bytes("bad", len(stored))  # the id is free again
    assert store.free("bad") is True and store.used_bytes == len(stored)


def test_too_large_payload_is_an_encode_error(store: ObjectStore) -> None:
    huge = Value(Encoding.RAW, b"", (memoryview(bytearray(codec.MAX_PAYLOAD_BYTES + 1)),))
    with pytest.raises(codec.EncodeError):
        store.put("huge", huge)
    assert not store.contains("huge") and store.used_bytes == 0


def test_closed_store(store: ObjectStore) -> None:
    store.put("x", Value(Encoding.RAW, b"x"))
    store.close()
    store.close()
    assert store.object_ids() == [] and store.used_bytes == 0
    for call in (lambda: store.get("x"), lambda: store.put("y", Value(Encoding.RAW, b"y"))):
        with pytest.raises(StoreClosed):
            call()


# ---------------------------------------------------------------- shared memory
def test_segments_are_named_read_only_and_unlinked(namespace: str) -> None:
    store = SharedMemoryStore(namespace)
    try:
        store.put("a", Value(Encoding.RAW, b"a"))
        store.put("b", Value(Encoding.RAW, b"b"))
        names = sorted(segment_name(namespace, oid) for oid in ("a", "b"))
        assert list_segments(namespace) == names
        mode = stat.S_IMODE(os.stat(store.segment_path("a")).st_mode)
        assert mode == 0o400  # sealed: nobody writes it any more
        store.put_bytes("c", 64)  # a partial segment is listed too (crash cleanup)
        assert len(list_segments(namespace)) == 3
        store.free("a")
        left = list_segments(namespace)  # "a" is gone; "c" is still a partial segment (a name of its own)
        assert len(left) == 2 and segment_name(namespace, "b") in left and sum(n.endswith(".partial") for n in left) == 1
    finally:
        store.close()
    assert list_segments(namespace) == []


def test_namespaces_are_separate(namespace: str) -> None:
    with SharedMemoryStore(namespace) as a, SharedMemoryStore(namespace + "-sub") as b:
        a.put("x", Value(Encoding.RAW, b"x"))
        b.put("x", Value(Encoding.RAW, b"y"))
        assert list_segments(namespace) == [segment_name(namespace, "x")]
        assert cleanup_namespace(namespace) == 1
        assert list_segments(namespace + "-sub") == [segment_name(namespace + "-sub", "x")]
    assert list_segments(namespace + "-sub") == []
    for bad in ("", "a/b", "x" * 101, "spaces no"):
        with pytest.raises(ValueError):
            SharedMemoryStore(bad)


def test_reader_maps_read_only_and_outlives_free(namespace: str) -> None:
    writer, reader = SharedMemoryStore(namespace), SharedMemoryStore(namespace)
    try:
        value = sample_value()
        writer.put("v", value)
        with pytest.raises(ObjectExists):
            reader.put("v", value)  # the segment exists in the namespace
        with pytest.raises(ObjectNotFound):
            reader.attach("missing")
        got = reader.attach("v")
        assert got == value and reader.contains("v") and reader.object_ids() == []
        view = reader.get_bytes("v")
        with pytest.raises(TypeError):
            view[0] = 0  # the mapping is read-only
        arr = deserialize(got, ref_factory=lambda d: d)["a"]
        with pytest.raises(ValueError):
            arr[0] = 1
        writer.free("v")
        assert list_segments(namespace) == []
        assert np.array_equal(arr, np.arange(100_000, dtype=np.int32))  # still mapped (POSIX)
        del arr, view, got
        assert reader.detach("v") is True
        with pytest.raises(ObjectNotFound):
            reader.attach("v")
        writer.put("w", value)
        reader.attach("w")
        reader.close()  # a reader never unlinks what it did not write
        assert list_segments(namespace) == [segment_name(namespace, "w")]
    finally:
        writer.close()
        reader.close()
    assert list_segments(namespace) == []


CRASHER = r"""
import os, sys
from refrpc.core.messages import Encoding, Value
from refrpc.store import SharedMemoryStore
store = SharedMemoryStore(sys.argv[1])
store.put("a", Value(Encoding.RAW, b"a"))
store.put_bytes("b", 100)
if sys.argv[2] == "crash":
    os._exit(1)  # no finalizers: the segments stay
"""


@pytest.mark.timeout(60)
def test_leftovers_of_a_crash_are_cleaned_up(namespace: str) -> None:
    run = [sys.executable, "-c", CRASHER, namespace]
    subprocess.run([*run, "exit"], env=child_env(), check=True, timeout=50)
    assert list_segments(namespace) == []  # a store that is not closed cleans up at exit
    subprocess.run([*run, "crash"], env=child_env(), timeout=50)
    assert len(list_segments(namespace)) == 2
    assert cleanup_namespace(namespace) == 2 and list_segments(namespace) == []


# ---------------------------------------------------------------- cross-process zero copy
WRITER = r"""
import sys
import numpy as np
from refrpc.serialization import serialize
from refrpc.store import SharedMemoryStore
namespace, count, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = SharedMemoryStore(namespace)
arrays = [np.arange(i * (nbytes // 8), (i + 1) * (nbytes // 8), dtype=np.int64) for i in range(count)]
print(store.put("big", serialize(arrays, ref_hook=lambda o: None)), flush=True)
sys.stdin.readline()  # hold the segment until the parent has read it
store.close()
"""


def memory_kib() -> dict[str, int]:
    """This process's anonymous (private copies) and shared-memory resident sizes."""
    fields: dict[str, int] = {}
    for path in ("/proc/self/status", "/proc/self/smaps_rollup"):
        for line in Path(path).read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssShmem", "Private_Dirty", "Private_Clean") and rest.split():
                fields[key] = int(rest.split()[0])
    return fields


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    return {key: round((after[key] - before[key]) / 1024, 1) for key in before}  # MiB


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and /dev/shm")
@pytest.mark.parametrize(
    "count,nbytes",
    [
        pytest.param(1, 256 * MiB, id="256MiB"),
        pytest.param(
            4, 256 * MiB, id="1GiB", marks=pytest.mark.skipif(not SLOW, reason="slow: set REFRPC_SLOW=1")
        ),
    ],
)
def test_another_process_reads_a_large_array_without_copying(namespace: str, count: int, nbytes: int) -> None:
    total = count * nbytes
    if shm_free_bytes() < total + 64 * MiB:
        pytest.skip(f"{DEFAULT_DIRECTORY} has less than {total // MiB} MiB free")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, namespace, str(count), str(nbytes)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    reader = SharedMemoryStore(namespace)
    arrays: Any = None
    mapping: Any = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        size = int(proc.stdout.readline())
        assert total < size < total + 4096
        before = memory_kib()
        arrays = deserialize(reader.attach("big"), ref_factory=lambda d: d)
        attached = memory_kib()
        mapping = reader.mapping("big")
        base = int(np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0])
        for arr in arrays:  # every array lies inside the shared mapping: not a copy
            low = arr.__array_interface__["data"][0]
            assert base <= low and low + arr.nbytes <= base + len(mapping)
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = -1
        n = count * (nbytes // 8)
        assert sum(int(arr.sum()) for arr in arrays) == n * (n - 1) // 2  # touch every page
        touched = memory_kib()
        report = {"after attach": grew(before, attached), "after reading all": grew(before, touched)}
        print(f"\n[zero-copy {total // MiB} MiB] growth in MiB: {report}")
        # Attaching and unpickling copies nothing; reading maps shared pages, not private ones.
        assert grew(before, attached)["RssAnon"] < 16 and grew(before, attached)["RssShmem"] < 16
        assert grew(before, touched)["RssAnon"] < 16
        assert grew(before, touched)["RssShmem"] > 0.9 * total / MiB  # the data was read in place
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0
        assert list_segments(namespace) == []  # the writer freed it: our mapping stays valid
        assert int(arrays[-1][-1]) == n - 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        del arrays, mapping
        reader.close()
    assert list_segments(namespace) == []
