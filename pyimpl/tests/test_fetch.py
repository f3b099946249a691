"""Cross-host fetch (FET-*): two peers with separate object stores, over tcp://127.0.0.1.

Each node gets its own shared-memory namespace, so neither can map the other's
values: exactly the situation of two hosts. The worker must fetch the argument
in chunks (lz4-compressed where that pays), tell the owner about its copy, and
drop it when the owner frees the object.
"""

from __future__ import annotations

import secrets

import pytest

from refrpc.core import events as ev
from refrpc.core.messages import Encoding, Value
from refrpc.runtime import Node, working_node
from refrpc.testing import wait_until
from refrpc.store import list_segments

pytestmark = pytest.mark.timeout(60)


#: The executor of each "w1" node the fixture made, by the node's id().
EXECUTORS: dict[int, object] = {}


@pytest.fixture
def two_hosts(request):
    ns_a, ns_b = f"ta{secrets.token_hex(3)}", f"tb{secrets.token_hex(3)}"
    a = Node("owner", "tcp://127.0.0.1:0", ns_a, insecure=True)  # two "hosts" on 127.0.0.1, no cluster key
    b, executor = working_node("w1", "tcp://127.0.0.1:0", ns_b, insecure=True, **getattr(request, "param", {}))
    EXECUTORS[id(b)] = executor
    b.fetcher.chunk_bytes = 64 * 1024  # force many chunks
    try:
        a.handle_soon(lambda sid: ev.AddPeer(sid, "w1", b.address, 1)).result()
        yield a, b, ns_a, ns_b
    finally:
        EXECUTORS.pop(id(b), None)
        executor.stop()
        a.stop()
        b.stop()
        assert not list_segments(ns_a) and not list_segments(ns_b)


def _put(node: Node, data: bytes) -> str:
    value = Value(Encoding.RAW, data)

    def do() -> str:
        oid = node.ids.next()
        size = node.store.put(oid, value)
        node.handle(ev.Put(node.sid(), oid, Value(Encoding.RAW, b""), True, size))
        return oid

    return node.call(do).result()


def _submit(node: Node, function: str, *object_ids: str, executor: str = "") -> str:
    def do() -> str:
        task_id, rids = node.ids.task(1)
        node.handle(ev.Submit(node.sid(), task_id, function, tuple(ev.ArgSpec(object_id=o) for o in object_ids), rids,
                              executor=executor))
        return rids[0]

    return node.call(do).result()


def test_a_large_argument_is_fetched_in_chunks_and_freed_with_its_object(two_hosts):
    a, b, ns_a, ns_b = two_hosts
    # x = put(1 MB); n = length.remote(x) -- x lives on the owner's host only
    data = b"refrpc " * 150_000
    x = _put(a, data)
    n = _submit(a, "remote_fixtures:length", x)
    res = a.get_result(n).result(30)
    assert res.error is None, res.error
    from refrpc.serialization import deserialize

    assert deserialize(res.value, ref_factory=lambda d: d) == len(data)
    # The worker fetched it in many chunks, compressed (FET-001, FET-003) ...
    assert b.fetcher.received >= len(data)
    assert 0 < b.fetcher.received_compressed < b.fetcher.received
    # The fetched copy is a secondary one: the worker drops it (and tells the owner,
    # LOC-003) once it holds no ref any more; the owner's primary copy stays (GC-005).
    assert wait_until(lambda: not list_segments(ns_b), 10), list_segments(ns_b)
    locations = lambda: a.call(lambda: list(a.core.owned[x].locations)).result()  # noqa: E731
    assert wait_until(lambda: locations() == ["owner"], 10), locations()  # RemoveLocation arrived
    assert list_segments(ns_a)
    # Dropping the last refs frees the primary copy (OWN-005).
    a.handle_soon(lambda sid: ev.DropRef(sid, x), lambda sid: ev.DropRef(sid, n)).result()
    assert wait_until(lambda: not list_segments(ns_a), 10), list_segments(ns_a)
    assert a.call(lambda: dict(a.core.owned)).result() == {}


def test_fetch_of_a_value_the_holder_no_longer_has_is_a_typed_failure(two_hosts):
    a, b, ns_a, ns_b = two_hosts
    x = _put(a, b"y" * 300_000)
    a.call(lambda: a.store.free(x)).result()  # the holder lost its copy (FET-004)
    fut = b.fetch(x, (("owner", a.address),))
    from refrpc.store import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        fut.result(20)
    a.handle_soon(lambda sid: ev.DropRef(sid, x)).result()


def test_a_fetch_from_a_holder_already_declared_dead_fails_at_once(two_hosts):
    # x = put(300 KB) on "owner"; w1 has declared owner dead (LIV-003) before its
    # executor gets to a task that needs x. Asking the dead holder would wait out the
    # progress timeout three times (15 s); the fetch fails at once instead, so the
    # getter asks the owner again (FET-002, OBJ-013).
    a, b, ns_a, ns_b = two_hosts
    x = _put(a, b"z" * 300_000)
    b.handle_soon(lambda sid: ev.PeerFailed(sid, "owner", a.incarnation, "test: declared dead")).result()
    fut = b.fetch(x, (("owner", a.address),))
    assert fut.done()  # settled on the loop thread before fetch() returned: no request went out
    from refrpc.store import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        fut.result(0)
    a.handle_soon(lambda sid: ev.DropRef(sid, x)).result()


def test_a_fetch_abandoned_half_way_leaves_no_partial_segment(two_hosts):
    # x = put(1 MB) on "owner"; w1 fetches it in 64 KiB chunks, but every chunk after
    # the first is lost, then w1 declares the holder dead. The fetch fails (FET-002,
    # death effects step 11) and the copy it had started writing is freed with it: a
    # partial segment left behind would leak shared memory for the life of the
    # process (GC-004) and make the next fetch of x fail with ObjectExists.
    from refrpc.store import ObjectNotFound
    from refrpc.transport import FaultRule

    a, b, ns_a, ns_b = two_hosts
    x = _put(a, bytes(range(256)) * 4096)
    b.set_faults([FaultRule("drop", "receive", "FetchChunk", peer="owner", nth=2, count=None)]).result(10)
    fut = b.fetch(x, (("owner", a.address),))
    assert wait_until(lambda: list_segments(ns_b), 10)  # the copy is being written
    b.handle_soon(lambda sid: ev.PeerFailed(sid, "owner", a.incarnation, "test: declared dead")).result()
    with pytest.raises(ObjectNotFound):
        fut.result(10)
    assert wait_until(lambda: not list_segments(ns_b), 10), list_segments(ns_b)
    b.set_faults([]).result(10)
    if not a.core.stopped:  # a's next heartbeat to w1 is answered DECLARED_DEAD, and a stops (LIV-005)
        try:
            a.handle_soon(lambda sid: ev.DropRef(sid, x)).result()
        except RuntimeError:
            assert a.core.stopped  # it stopped meanwhile; its store goes when it closes


def test_a_large_value_is_fetched_in_bounded_ranges(two_hosts, monkeypatch):
    # x = put(1 MB) on "owner"; w1 fetches it with ranges of 128 KiB (8 MiB in
    # production): every request asks for one bounded range, never "to the end",
    # and at most 4 are outstanding at once                                      FET-015
    from refrpc.core.messages import FetchRequest
    from refrpc.runtime import _fetch

    monkeypatch.setattr(_fetch, "RANGE_BYTES", 128 * 1024)
    a, b, ns_a, ns_b = two_hosts
    data = bytes(range(256)) * 4096
    x = _put(a, data)
    asked: list[FetchRequest] = []
    on_data = a.fetcher.on_data

    def spy(d):  # the holder's side, on a's loop thread
        if isinstance(d.message, FetchRequest):
            asked.append(d.message)
        on_data(d)

    a.fetcher.on_data = spy
    size = b.fetch(x, (("owner", a.address),)).result(20)
    assert size > len(data)
    assert asked and all(0 < r.length <= 128 * 1024 for r in asked)
    assert sum(r.length for r in asked) == size  # nothing asked twice, nothing missed
    a.fetcher.on_data = on_data
    a.handle_soon(lambda sid: ev.DropRef(sid, x)).result()


def test_a_source_answering_store_full_is_dropped_and_the_owner_asked_again(two_hosts):
    # x = put(300 KB) on "owner"; its only source answers every FetchRequest with an
    # OBJECT_STORE_FULL chunk (a peer whose own store had no room to restore it).
    # That is the source's trouble, not a lack of room in the fetcher's store: the
    # fetch drops the source and, with none left, fails as "look again" (FET-041,
    # FET-066), so the getter asks the owner again (OBJ-013) instead of raising
    # ObjectStoreFullError to a program whose own store has room.
    from refrpc.core.messages import ErrorCode, ErrorInfo, FetchChunk
    from refrpc.store import ObjectNotFound, StoreFull

    a, b, ns_a, ns_b = two_hosts
    x = _put(a, b"q" * 300_000)

    def refuse(d, r):
        err = ErrorInfo(ErrorCode.OBJECT_STORE_FULL, "no room to restore it", "OBJ-036")
        a.handle(ev.SendData(a.sid(), d.sender, d.sender_incarnation, d.sender_address,
                             FetchChunk(r.object_id, r.request_id, r.offset, 0, True, error=err)))

    a.fetcher._on_request = refuse
    fut = b.fetch(x, (("owner", a.address),))
    with pytest.raises(ObjectNotFound) as info:
        fut.result(20)
    assert not isinstance(info.value, StoreFull)
    assert "object_store_full" in str(info.value)
    assert wait_until(lambda: not list_segments(ns_b), 10), list_segments(ns_b)
    a.handle_soon(lambda sid: ev.DropRef(sid, x)).result()


def test_a_task_whose_argument_does_not_come_gives_its_cpu_to_the_next_task(two_hosts):
    # n = length.remote(x), x on the owner's host, but w1 receives none of its chunks
    # (a slow or silent holder); s = add.options(executor w1).remote(1, 2) arrives
    # after it. w1 has one CPU slot: n gives it back while its argument is fetched
    # (TASK-056), so s runs at once instead of after n's fetch has given up (three
    # progress timeouts, FET-006). Once chunks flow again, n ends right.
    from refrpc.serialization import deserialize, serialize
    from refrpc.transport import FaultRule

    a, b, ns_a, ns_b = two_hosts
    data = b"q" * 300_000
    x = _put(a, data)
    b.set_faults([FaultRule("drop", "receive", "FetchChunk", peer="owner", count=None)]).result(10)
    n = _submit(a, "remote_fixtures:length", x)
    assert wait_until(lambda: b.call(lambda: x in b.fetcher._by_object).result(), 10)  # n waits for x

    def submit_small() -> str:
        task_id, rids = a.ids.task(1)
        args = tuple(ev.ArgSpec(value=serialize(v, ref_hook=lambda o: None)) for v in (1, 2))
        a.handle(ev.Submit(a.sid(), task_id, "remote_fixtures:add", args, rids, executor="w1"))
        return rids[0]

    s = a.call(submit_small).result()
    res = a.get_result(s).result(10)  # well inside one progress timeout (5 s)
    assert res.error is None and deserialize(res.value, ref_factory=lambda d: d) == 3
    assert not a.get_result(n).done()  # n still waits for its argument
    b.set_faults([]).result(10)
    res = a.get_result(n).result(30)  # its fetch asks again once the holder was silent too long
    assert res.error is None and deserialize(res.value, ref_factory=lambda d: d) == len(data)
    a.handle_soon(lambda sid: ev.DropRef(sid, x), lambda sid: ev.DropRef(sid, n), lambda sid: ev.DropRef(sid, s)).result()


def test_a_submitter_s_tasks_give_back_their_cpu_for_fetches_up_to_a_bound(two_hosts, monkeypatch):
    # With the bound at 1: two tasks of one submitter whose argument never comes. The
    # first gives its CPU back (TASK-056); the second keeps it while it fetches, so a
    # submitter whose arguments never come cannot make the executor start a thread
    # per task. Once chunks flow again, both end right.
    from refrpc.runtime import _executor
    from refrpc.serialization import deserialize
    from refrpc.transport import FaultRule

    a, b, ns_a, ns_b = two_hosts
    monkeypatch.setattr(_executor, "MAX_WAITS_PER_SUBMITTER", 1)
    executor = EXECUTORS[id(b)]
    data = b"w" * 300_000
    x = _put(a, data)
    b.set_faults([FaultRule("drop", "receive", "FetchChunk", peer="owner", count=None)]).result(10)
    first, second = (_submit(a, "remote_fixtures:length", x, executor="w1") for _ in range(2))  # both sent at once

    def state() -> tuple[dict, float]:
        return dict(executor._submitter_waits), executor.book()[1]["CPU"]

    assert wait_until(lambda: state() == ({"owner": 1}, 1.0), 10), state()
    b.set_faults([]).result(10)
    for rid in (first, second):
        res = a.get_result(rid).result(30)
        assert res.error is None and deserialize(res.value, ref_factory=lambda d: d) == len(data)
    assert executor._submitter_waits == {}
    a.handle_soon(lambda sid: ev.DropRef(sid, x), lambda sid: ev.DropRef(sid, first), lambda sid: ev.DropRef(sid, second)).result()


def _one_held_back_for_memory(a, b):
    """w1's store holds 1 MB (the fixture's parameter) and w1 has one CPU slot. first =
    length.remote(x) and second = length.remote(y), x and y 600 KB each on the owner's
    host: only one of them fits at a time (OBJ-037). first is admitted and its fetch
    stalls (no chunk reaches w1); second waits in admission for first's bytes. Returns
    (executor, [x, y], first, second)."""
    from refrpc.transport import FaultRule

    executor = EXECUTORS[id(b)]
    x, y = _put(a, b"x" * 600_000), _put(a, b"y" * 600_000)
    b.set_faults([FaultRule("drop", "receive", "FetchChunk", peer="owner", count=None)]).result(10)
    first = _submit(a, "remote_fixtures:length", x, executor="w1")
    assert wait_until(lambda: b.call(lambda: x in b.fetcher._by_object).result(), 10)  # first waits for x
    second = _submit(a, "remote_fixtures:length", y, executor="w1")
    assert wait_until(lambda: executor.admission.waiting() == 1, 10)  # second waits for memory
    return executor, [x, y], first, second


def _length_of(a, rid: str) -> int:
    from refrpc.serialization import deserialize

    res = a.get_result(rid).result(40)
    assert res.error is None, res.error
    return deserialize(res.value, ref_factory=lambda d: d)


@pytest.mark.parametrize("two_hosts", [{"object_store_memory": 1_000_000}], indirect=True)
def test_a_task_waiting_for_memory_gives_its_cpu_to_the_task_whose_bytes_it_waits_for(two_hosts):
    # first's fetch stalls, so it gives its CPU back (TASK-056); second takes the CPU
    # and waits in admission for first's bytes. It must give the CPU back too: else
    # first, its chunks flowing again, could not take its CPU back to run, and both
    # would wait out admission's 60 s limit.
    a, b, ns_a, ns_b = two_hosts
    executor, objects, first, second = _one_held_back_for_memory(a, b)
    # Both gave their CPU back: the slot is free for any other task meanwhile.
    assert wait_until(lambda: executor.book()[1]["CPU"] == 0.0, 10), executor.book()
    b.set_faults([]).result(10)
    assert _length_of(a, first) == _length_of(a, second) == 600_000
    assert executor.admission.gave_up_waiting == 0  # second was admitted when first ended
    assert executor._submitter_waits == {}
    a.handle_soon(*(lambda sid, o=o: ev.DropRef(sid, o) for o in (*objects, first, second))).result()


@pytest.mark.parametrize("two_hosts", [{"object_store_memory": 1_000_000}], indirect=True)
def test_a_task_stopped_while_it_waits_for_memory_ends_at_once_and_blocks_nobody(two_hosts):
    # second, waiting in admission behind first's bytes, is cancelled by its owner
    # (TASK-008). It ends TASK_CANCELLED while first's fetch still stalls, it leaves
    # the admission queue, and first then ends right.
    from refrpc.core.messages import ErrorCode

    a, b, ns_a, ns_b = two_hosts
    executor, objects, first, second = _one_held_back_for_memory(a, b)
    a.handle_soon(lambda sid: ev.Cancel(sid, second.rsplit(".r", 1)[0])).result()
    res = a.get_result(second).result(10)  # well before first's fetch could end
    assert res.error is not None and res.error.code == ErrorCode.TASK_CANCELLED, res.error
    assert wait_until(lambda: executor.admission.waiting() == 0, 10)  # the executor's stop reached it
    assert not a.get_result(first).done()
    b.set_faults([]).result(10)
    assert _length_of(a, first) == 600_000
    assert executor._submitter_waits == {}
    assert wait_until(lambda: executor.book()[1]["CPU"] == 0.0, 10)  # its slot is free once it has ended
    a.handle_soon(*(lambda sid, o=o: ev.DropRef(sid, o) for o in (*objects, first, second))).result()


def test_an_lz4_chunk_never_decompresses_past_its_range():
    # A holder's lz4 chunk is read into at most the bytes left in its range: a frame of
    # 64 MiB of zeros (a few hundred KiB on the wire) or a header claiming 2**62 bytes
    # is a bad chunk (FET-008, OBJ-077), never a 64 MiB allocation or a MemoryError
    # that escapes the bad-copy count; a good frame within its range reads whole.
    import tracemalloc

    import lz4.frame

    from refrpc.runtime._fetch import _decompress

    good = lz4.frame.compress(b"a" * 100, store_size=True)
    assert _decompress(good, 100) == b"a" * 100
    assert _decompress(good, 99) is None  # more than its range holds
    assert _decompress(b"not a frame", 100) is None
    claims = bytearray(good)
    claims[6:14] = (1 << 62).to_bytes(8, "little")  # the content size in the header (checksum now wrong, too)
    assert _decompress(bytes(claims), 1 << 20) is None
    zeros = lz4.frame.compress(bytes(64 << 20))
    tracemalloc.start()
    try:
        assert _decompress(zeros, 1 << 20) is None
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
    finally:
        tracemalloc.stop()


def test_a_holder_refusing_accept_lz4_gets_the_range_asked_again_at_once(two_hosts, monkeypatch):
    # The holder "owner" does not use lz4 on its session with w1 although w1 does, so
    # it discards w1's FetchRequest (acceptLz4 = true) and answers
    # ProtocolError(FEATURE_NOT_NEGOTIATED) with relatedSeq 0 (HS-021, FET-004). w1
    # asks for the same range again at once, from the same holder, without acceptLz4,
    # and never sets it on that session again: with a progress timeout of an hour, a
    # fetcher that waited for it (FET-006) would never finish              FET-067
    from refrpc.core.messages import FetchRequest
    from refrpc.runtime import _fetch

    monkeypatch.setattr(_fetch, "PROGRESS_TIMEOUT_S", 3600.0)
    a, b, ns_a, ns_b = two_hosts
    y = _put(a, b"warm" * 1000)
    assert b.fetch(y, (("owner", a.address),)).result(20) > 0  # the session is open, lz4 in use on w1's side

    def drop_lz4() -> None:
        r = a.core.remotes["w1"]
        r.features = tuple(f for f in r.features if f != "lz4")
        r.all_features = False

    a.call(drop_lz4).result()
    served: list[FetchRequest] = []
    on_data = a.fetcher.on_data

    def spy(d):  # what reaches the holder's fetch service (the refused request does not)
        if isinstance(d.message, FetchRequest):
            served.append(d.message)
        on_data(d)

    a.fetcher.on_data = spy
    data = bytes(range(256)) * 2048
    x = _put(a, data)
    size = b.fetch(x, (("owner", a.address),)).result(20)
    assert size > len(data)
    assert served and not any(r.accept_lz4 for r in served)
    assert served[0].offset == 0
    assert b.call(lambda: ("owner", a.incarnation) in b.fetcher._lz4_refused).result()
    a.fetcher.on_data = on_data
    a.handle_soon(lambda sid: ev.DropRef(sid, x), lambda sid: ev.DropRef(sid, y)).result()
