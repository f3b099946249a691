"""The runtime shell's own promises, on real nodes: a real Node runs over the
in-memory network (no sockets), finalizers never block, the story log stays bounded.

These hold whatever the transport: the node's lock guards the core, whichever
thread feeds it, and the loop only reads the transport and ticks.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

from refrpc.core import Peer
from refrpc.core import events as ev
from refrpc.core.messages import Encoding, Value
from refrpc.core.state import Config
from refrpc.runtime import Node
from refrpc.runtime._refs import Ref, value_of
from refrpc.serialization import serialize
from refrpc.testing import MemoryCluster, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def memory_pair():
    """A driver node and a worker node (with an executor) on one MemoryNetwork."""
    with MemoryCluster(workers=1) as cluster:
        yield cluster.driver, cluster.workers["w1"]


def _submit(node: Node, function: str, *values: object) -> Ref[object]:
    args = tuple(ev.ArgSpec(value=serialize(v, ref_hook=lambda o: None)) for v in values)

    def do() -> str:
        task_id, rids = node.new_task_ids(1)
        node.handle(ev.Submit(node.sid(), task_id, function, args, rids))
        return rids[0]

    return Ref(node, node.call(do).result(), counted=True)


def test_a_real_node_runs_tasks_over_the_memory_network(memory_pair):
    # r = operator.add(40, 2) on w1, over no socket at all; get(r) == 42
    driver, worker = memory_pair
    refs = [_submit(driver, "operator:add", i, 40) for i in range(20)]
    assert [value_of(driver, r, None) for r in refs] == [i + 40 for i in range(20)]
    assert driver.stats["messages_sent"] >= 20 and worker.stats["messages_received"] >= 20
    # Every result read and every handle dropped: the driver's table empties (GC-001).
    del refs
    gc.collect()
    assert wait_until(lambda: driver.call(lambda: not driver.core.owned).result(), 10)


def test_a_memory_cluster_runs_tasks_on_each_of_its_workers():
    # The public harness: real nodes, no sockets; a task sent to a worker runs there (TASK-001).
    with MemoryCluster(workers=2) as c:
        for name, node in c.workers.items():
            before = node.stats["messages_received"]
            assert c.get(c.submit("operator:mul", 21, 2, executor=name)) == 42
            assert node.stats["messages_received"] > before
        refs = [c.submit("operator:mul", i, 2) for i in range(10)]
        assert [c.get(r) for r in refs] == [2 * i for i in range(10)]


def test_a_task_error_travels_back_typed_over_the_memory_network(memory_pair):
    from refrpc.errors import TaskError

    driver, _ = memory_pair
    r = _submit(driver, "operator:truediv", 1, 0)
    with pytest.raises(TaskError, match="ZeroDivisionError"):
        value_of(driver, r, None)


def test_a_dying_ref_never_waits_for_the_nodes_lock(memory_pair):
    # A finalizer can run on any thread at any bytecode, also while another thread
    # holds the node's lock (or this thread does, mid-handle): it must only queue.
    driver, _ = memory_pair
    r = _submit(driver, "operator:add", 1, 2)
    oid = r.id
    assert value_of(driver, r, None) == 3
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with driver.lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(5)
        done = threading.Event()

        def drop() -> None:
            nonlocal r
            del r
            gc.collect()
            done.set()

        dropper = threading.Thread(target=drop)
        dropper.start()
        assert done.wait(5), "Ref.__del__ blocked on the node's lock"
        assert list(driver.released) == [oid]  # queued, not applied yet
    finally:
        release.set()
        holder.join(10)
        dropper.join(10)
    # Whoever takes the lock next applies it: the object is reclaimed (OWN-003, GC-001).
    assert wait_until(lambda: driver.call(lambda: oid not in driver.core.owned).result(), 10)
    assert not driver.released


def test_a_ref_dying_inside_a_handler_is_applied_afterwards(memory_pair):
    # A Ref released while this very thread is inside the core (e.g. a collection
    # triggered mid-handle) must not re-enter the core: it is applied after.
    driver, _ = memory_pair
    r = _submit(driver, "operator:add", 2, 2)
    assert value_of(driver, r, None) == 4
    oid = r.id
    with driver.lock:
        del r
        gc.collect()
        assert oid in driver.core.owned  # not re-entered
    driver.call(lambda: None).result()  # a call is a barrier for released handles
    assert oid not in driver.core.owned


def test_the_story_log_forgets_the_oldest_keys():
    # A long-running driver sees millions of object ids: its story log must stay bounded.
    p = Peer("a", 7, "tcp://127.0.0.1:1", Config(story_keys=50))
    p.handle(ev.Tick("t", 1))
    for i in range(1, 1001):
        oid = f"a.7.{i}"
        p.handle(ev.Put(f"s{i}", oid, Value(Encoding.RAW, b"x")), ev.DropRef(f"d{i}", oid))
    assert len(p.stories) <= 50
    assert p.story("a.7.1000")  # the latest are kept
    assert not p.story("a.7.1")  # the oldest are forgotten


def test_the_loop_hands_freed_memory_back_to_the_system_now_and_then(monkeypatch):
    # A long-running peer does not keep the high-water mark of its heap forever:
    # its loop calls malloc_trim every HEAP_TRIM_S seconds (where the C library has it)
    from refrpc.runtime import _node

    calls = []
    monkeypatch.setattr(_node, "HEAP_TRIM_S", 0.05)
    monkeypatch.setattr(_node, "heap_trimmer", lambda: lambda: calls.append(1))
    with MemoryCluster(workers=1) as cluster:
        node = cluster.workers["w1"]
        assert wait_until(lambda: node.heap_trims >= 3, 10)
    assert len(calls) >= 3


def test_the_heap_trimmer_is_glibcs_malloc_trim_where_there_is_one():
    from refrpc.runtime._node import heap_trimmer

    trim = heap_trimmer()
    if trim is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    assert trim() in (0, 1)  # 1: memory was released, 0: there was none to release


_ARENAS = """
import ctypes, sys, threading
from refrpc.runtime._node import limit_arenas
print("limited" if limit_arenas() else "left", flush=True)
barrier = threading.Barrier(8)
def work():
    barrier.wait()  # all allocate at once: each contends for an arena
    keep = []
    for _ in range(20000):
        keep.append(bytearray(2048))
        if len(keep) > 100:
            keep.pop(0)
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" line per arena, on stderr
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("user_choice", ["", "3"])
def test_a_head_or_worker_keeps_at_most_two_malloc_arenas_unless_the_user_chose(user_choice):
    # Eight threads allocating at once in a process that called limit_arenas (as a
    # head and a worker do first): glibc spreads them over at most ARENA_MAX arenas,
    # so memory one thread frees serves the others (a fuzzed worker's RSS grew with
    # each arena a new thread took). MALLOC_ARENA_MAX set by the user wins.
    import subprocess

    from refrpc.runtime._node import ARENA_MAX, heap_trimmer

    if heap_trimmer() is None:
        pytest.skip("not glibc: no arenas to limit")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env["PYTHONPATH"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    if user_choice:
        env["MALLOC_ARENA_MAX"] = user_choice
    done = subprocess.run([sys.executable, "-c", _ARENAS], env=env, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    arenas = sum(line.startswith("Arena ") for line in done.stderr.splitlines())
    if user_choice:
        assert done.stdout.strip() == "left" and arenas == int(user_choice)
    else:
        assert done.stdout.strip() == "limited" and 1 <= arenas <= ARENA_MAX
