#!/usr/bin/env python3
"""RefRPC's benchmark suite: the floor first, then RefRPC, side by side.

One command, one machine, one run::

    python tools/bench/run.py [--quick] [--json out.json] [--workers N] [--only NAME,...]

1. **Floor and baselines** (no RefRPC): raw ZeroMQ over ``ipc://`` (64 B round
   trip, pipelined echo, 1 MiB and 100 MB streaming; zmq_floor.py's code), and
   pass-by-value baselines doing the same work as the RefRPC benchmarks: a
   ZeroMQ server that sums an array sent to it or sends one back, a
   multiprocessing pool, a pickle round trip, a memory copy.
2. **RefRPC** on a local cluster of ``--workers`` processes: no-op task round
   trip, 2,000 no-op tasks, actor calls (sync and async), put+get of 1 KB, put
   of a 100 MB numpy array and its get from a task and in the driver (with a
   zero-copy check), the chain ``g.remote(f.remote())`` over 100 MB, a
   MapReduce (8 maps x 8 partitions of 1 MB, 8 reduces), and cluster start to
   first result (in a fresh subprocess). The cluster the benchmarks share must
   have every worker alive: a start that lost one is recorded (JSON
   ``refrpc.cluster.starts``) and done again, up to three times.
3. **Recovery** (recovery.py): the chain and the MapReduce on fresh clusters, each
   run once without a failure and once with the busiest worker killed (``kill -9``)
   halfway through, median of ``recovery_reps`` clusters: what a worker's death
   costs a running program.
4. **Tracing** (tracing.py): the task round trip, the batch of no-op tasks and the
   1 KB put+get on fresh clusters with trace recording off and on
   (``refrpc.init(trace_dir=...)``), median of ``trace_reps`` pairs: what
   recording every message and event costs, and how many bytes it writes; on
   Linux also the CPU time of all the cluster's processes per no-op task.
5. **Where a task's time goes** (costsplit.py): each piece of a no-op task's path
   (the two cores, encoding and decoding, the two thread hand-offs, pickling)
   timed alone in this process, printed beside the round trip and the ZeroMQ
   floor of the same run; and a long-running driver (``long_tasks`` no-op tasks
   in batches) with its RSS after the first batch and after the last.
6. Tables (benchmark | RefRPC | floor/baseline | ratio; recovery: no failure | one
   worker killed | recovery cost; tracing: off | on | overhead) and, with ``--json``,
   every raw number with the machine and the date.

The ratio is the floor's multiple that RefRPC costs: RefRPC time / floor time,
or floor rate / RefRPC rate; above 1 RefRPC is slower than the floor. Nothing
here passes or fails on a timing: a benchmark that raises shows its error in
its row and the run goes on. ``--quick`` shrinks iteration counts (and the
large arrays) so that the whole run takes well under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import multiprocessing as mp
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Workers inherit sys.path (as PYTHONPATH), so they can import `workloads` too.
if HERE not in sys.path:
    sys.path.insert(0, HERE)
if importlib.util.find_spec("refrpc") is None:  # run from a checkout without PYTHONPATH=pyimpl/src
    sys.path.insert(0, os.path.join(REPO, "pyimpl", "src"))

import numpy as np  # noqa: E402

import costsplit  # noqa: E402
import recovery  # noqa: E402
import refrpc  # noqa: E402
from refrpc.testing.fuzz import rss_bytes  # noqa: E402
import tracing  # noqa: E402
import workloads as wl  # noqa: E402
import zmq_floor  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024

#: Sizes and iteration counts of a run.
SETTINGS: dict[str, dict[str, int]] = {
    "default": dict(
        zmq_rounds=5000, stream_1mib=1000, stream_big=10, big_bytes=100 * MB, big_reps=5,
        rt_calls=1000, batch=2000, long_tasks=1_000_000, long_batch=10_000, split_n=2000, actor_sync=1000, actor_async=2000, small_calls=1000,
        maps=8, partitions=8, partition_bytes=1 * MB, mr_reps=3, start_reps=3, recovery_reps=3, trace_reps=5,
        timeout_s=180, long_timeout_s=900,
    ),
    "quick": dict(
        zmq_rounds=1000, stream_1mib=100, stream_big=2, big_bytes=20 * MB, big_reps=2,
        rt_calls=200, batch=500, long_tasks=20_000, long_batch=2_000, split_n=300, actor_sync=200, actor_async=500, small_calls=200,
        maps=8, partitions=8, partition_bytes=1 * MB, mr_reps=1, start_reps=1, recovery_reps=1, trace_reps=1,
        timeout_s=60, long_timeout_s=120,
    ),
}

GET_TIMEOUT = 120.0  # every refrpc.get is bounded: a lost reply is an error, not a hang


# ---------------------------------------------------------------- measuring helpers
class BenchTimeout(Exception):
    """A benchmark ran past its time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise BenchTimeout("ran past its time limit")


def guarded(fn: Callable[[], dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """Run one benchmark; an exception (or running past ``timeout_s``) becomes ``error``."""
    started = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        out = fn()
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, KeyboardInterrupt too
        if isinstance(exc, KeyboardInterrupt):
            raise
        out = {"value": None, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    out["wall_s"] = time.perf_counter() - started
    return out


def summary_us(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)
    return {
        "n": len(s),
        "p50_us": s[len(s) // 2] / 1e3,
        "p99_us": s[min(len(s) - 1, int(len(s) * 0.99))] / 1e3,
        "mean_us": statistics.fmean(s) / 1e3,
        "min_us": s[0] / 1e3,
        "max_us": s[-1] / 1e3,
    }


def timed_ms(fn: Callable[[], Any], reps: int, warmup: int = 1) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` + ``reps`` times; the median and every sample, in ms."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples), "samples_ms": samples}


def size_label(nbytes: int) -> str:
    return f"{nbytes // MB} MB" if nbytes >= MB else f"{nbytes // 1000} KB"


# ---------------------------------------------------------------- 1. floor and baselines
def floor_benchmarks(cfg: dict[str, int], workers: int) -> list[tuple[str, str, str, Callable[[], dict[str, Any]]]]:
    """(name, label, unit, function) of every floor/baseline measurement, in order."""
    big = cfg["big_bytes"]
    zmq_box: dict[str, Any] = {}

    def zmq_session() -> zmq_floor.Floor:
        if "floor" not in zmq_box:
            zmq_box["floor"] = zmq_floor.Floor("ipc").__enter__()
        return zmq_box["floor"]

    echoes: list[dict[str, Any]] = []

    def echo() -> dict[str, Any]:
        if not echoes:  # p50 and p99 come from the same samples
            echoes.append(zmq_session().echo(cfg["zmq_rounds"]))
        return {"value": echoes[0]["p50_us"], **echoes[0]}

    def echo_p99() -> dict[str, Any]:
        row = echo()
        return {**row, "value": row["p99_us"]}

    def pair() -> dict[str, Any]:
        row = zmq_session().pair(cfg["zmq_rounds"])
        return {"value": row["p50_us"], **row}

    def pipelined() -> dict[str, Any]:
        row = zmq_session().pipelined(cfg["batch"])
        return {"value": row["msgs_per_s"], **row}

    def stream_1mib() -> dict[str, Any]:
        row = zmq_session().stream(MiB, cfg["stream_1mib"])
        return {"value": row["mib_per_s"], **row}

    def stream_big() -> dict[str, Any]:
        row = zmq_session().stream(big, cfg["stream_big"])
        return {"value": row["seconds"] / row["n"] * 1e3, "mib_per_s": row["mib_per_s"], **row}

    arrays: list[np.ndarray] = []

    def array() -> np.ndarray:  # made on first use: importing this module stays cheap
        if not arrays:
            arrays.append(np.ones(big // 8))
        return arrays[0]

    def zmq_sum() -> dict[str, Any]:
        f, arr = zmq_session(), array()
        expected = float(arr.size)
        row = timed_ms(lambda: _check(f.array_sum(arr), expected), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def zmq_make() -> dict[str, Any]:
        f = zmq_session()
        row = timed_ms(lambda: _check(f.make_array(big).size, big // 8), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def zmq_chain() -> dict[str, Any]:
        f = zmq_session()
        row = timed_ms(lambda: _check(f.array_sum(f.make_array(big)), float(big // 8)), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def close_zmq() -> None:
        if "floor" in zmq_box:
            zmq_box.pop("floor").__exit__(None, None, None)

    def memcpy() -> dict[str, Any]:
        arr = array()
        row = timed_ms(lambda: arr.copy(), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def memcpy_warm() -> dict[str, Any]:
        # The store's best case: a copy into shared memory whose pages are already
        # there (a reused segment). A /dev/shm file mapped once, written once first.
        import mmap
        import tempfile

        arr = array()
        where = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        with tempfile.TemporaryFile(dir=where) as f:
            f.truncate(arr.nbytes)
            mm = mmap.mmap(f.fileno(), arr.nbytes)
            dst = np.frombuffer(mm, dtype=arr.dtype)
            try:
                row = timed_ms(lambda: np.copyto(dst, arr), cfg["big_reps"])
            finally:
                del dst
                mm.close()
        return {"value": row["median_ms"], "gb_per_s": arr.nbytes / row["median_ms"] / 1e6, **row}

    def local_sum() -> dict[str, Any]:
        arr = array()
        row = timed_ms(lambda: arr.sum(), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def pickle_1kb() -> dict[str, Any]:
        payload = os.urandom(1024)
        samples = []
        for i in range(cfg["small_calls"] + 50):
            t0 = time.perf_counter_ns()
            pickle.loads(pickle.dumps(payload, protocol=5))
            if i >= 50:
                samples.append(time.perf_counter_ns() - t0)
        row = summary_us(samples)
        return {"value": row["p50_us"], **row}

    pool_box: dict[str, Any] = {}

    def pool() -> Any:
        if "pool" not in pool_box:
            pool_box["pool"] = mp.get_context("spawn").Pool(workers)
            pool_box["pool"].apply(wl.noop)  # the workers are up
        return pool_box["pool"]

    def mp_tasks() -> dict[str, Any]:
        p, n = pool(), cfg["batch"]
        t0 = time.perf_counter()
        results = [p.apply_async(wl.noop) for _ in range(n)]
        for r in results:
            r.get(GET_TIMEOUT)
        elapsed = time.perf_counter() - t0
        return {"value": n / elapsed, "n": n, "seconds": elapsed}

    def mp_roundtrip() -> dict[str, Any]:
        p = pool()
        samples = []
        for i in range(cfg["rt_calls"] + 20):
            t0 = time.perf_counter_ns()
            p.apply(wl.noop)
            if i >= 20:
                samples.append(time.perf_counter_ns() - t0)
        row = summary_us(samples)
        return {"value": row["p50_us"], **row}

    def mp_sum() -> dict[str, Any]:
        p, arr = pool(), array()
        row = timed_ms(lambda: _check(p.apply(wl.array_sum, (arr,)), float(arr.size)), cfg["big_reps"])
        return {"value": row["median_ms"], **row}

    def mp_mapreduce() -> dict[str, Any]:
        p = pool()
        m, parts, size = cfg["maps"], cfg["partitions"], cfg["partition_bytes"]

        def once() -> None:
            mapped = p.starmap(wl.map_partitions, [(i, parts, size) for i in range(m)])
            reduced = p.starmap(wl.reduce_partitions, [tuple(mapped[i][j] for i in range(m)) for j in range(parts)])
            _check(reduced, [wl.expected_reduce(m, parts, size, j) for j in range(parts)])

        row = timed_ms(once, cfg["mr_reps"])
        return {"value": row["median_ms"], **row}

    def close_pool() -> None:
        if "pool" in pool_box:
            p = pool_box.pop("pool")
            p.terminate()
            p.join()

    def mp_start() -> dict[str, Any]:
        row = _child_runs("mp-start", workers, cfg["start_reps"])
        return {"value": row["median_ms"], **row}

    def closing(fn: Callable[[], dict[str, Any]], close: Callable[[], None]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            try:
                return fn()
            finally:
                close()

        return run

    B = size_label(big)
    return [
        ("zmq_rtt_p50", "ZeroMQ echo 64 B ipc, p50", "us", echo),
        ("zmq_rtt_p99", "ZeroMQ echo 64 B ipc, p99", "us", echo_p99),
        ("zmq_pair_p50", "ZeroMQ round trip in RefRPC's socket pattern, p50", "us", pair),
        ("zmq_pipelined", "ZeroMQ echo 64 B, 256 in flight", "msg/s", pipelined),
        ("zmq_stream_1mib", "ZeroMQ stream of 1 MiB messages", "MiB/s", stream_1mib),
        ("zmq_stream_big", f"ZeroMQ stream of {B} messages, per message", "ms", stream_big),
        ("zmq_sum_big", f"by value: send {B} to a process that sums it", "ms", zmq_sum),
        ("zmq_make_big", f"by value: a process makes {B} and sends it here", "ms", zmq_make),
        ("zmq_chain_big", f"by value: process makes {B} -> here -> process sums it", "ms", closing(zmq_chain, close_zmq)),
        ("memcpy_big", f"copy of {B} into fresh memory (np.copy)", "ms", memcpy),
        ("memcpy_warm_big", f"copy of {B} into warm shared memory (np.copyto)", "ms", memcpy_warm),
        ("sum_big_local", f"sum of {B} in this process", "ms", local_sum),
        ("pickle_1kb", "pickle dumps+loads of 1 KB, p50", "us", pickle_1kb),
        ("mp_roundtrip_p50", "multiprocessing Pool.apply(noop), p50", "us", mp_roundtrip),
        ("mp_tasks", f"multiprocessing Pool: {cfg['batch']} apply_async(noop)", "tasks/s", mp_tasks),
        ("mp_sum_big", f"multiprocessing Pool: apply(sum, {B} array)", "ms", mp_sum),
        ("mp_mapreduce", "multiprocessing Pool: the same MapReduce, by value", "ms", closing(mp_mapreduce, close_pool)),
        ("mp_start", f"multiprocessing Pool({workers}) start to first result (fresh process)", "ms", mp_start),
    ]


def _check(got: Any, expected: Any) -> Any:
    if got != expected:
        raise AssertionError(f"wrong answer: {got!r}, expected {expected!r}")
    return got


# ---------------------------------------------------------------- 2. RefRPC
@dataclass
class Bench:
    name: str
    label: str
    unit: str
    higher_is_better: bool
    floor: str  # the floor/baseline measurement it is compared with
    fn: Callable[[dict[str, int]], dict[str, Any]]
    #: Its time limit: this setting's name (``timeout_s`` for most).
    limit: str = "timeout_s"


def _get(ref: Any) -> Any:
    return refrpc.get(ref, timeout=GET_TIMEOUT)


_ROUNDTRIPS: list[dict[str, Any]] = []  # p50 and p99 come from the same samples


def bench_task_roundtrip(cfg: dict[str, int]) -> dict[str, Any]:
    if _ROUNDTRIPS:
        return {**_ROUNDTRIPS[0], "value": _ROUNDTRIPS[0]["p50_us"]}
    for _ in range(20):
        _get(wl.noop_task.remote())
    total, submit, wait = [], [], []
    clock = time.perf_counter_ns
    for _ in range(cfg["rt_calls"]):
        t0 = clock()
        ref = wl.noop_task.remote()
        t1 = clock()
        _get(ref)
        t2 = clock()
        total.append(t2 - t0)
        submit.append(t1 - t0)
        wait.append(t2 - t1)
    row = {**summary_us(total), "submit_us": summary_us(submit), "get_us": summary_us(wait)}
    _ROUNDTRIPS.append(row)
    return {"value": row["p50_us"], **row}


def bench_task_roundtrip_p99(cfg: dict[str, int]) -> dict[str, Any]:
    return {**bench_task_roundtrip(cfg), "value": _ROUNDTRIPS[0]["p99_us"]}


def bench_tasks_batch(cfg: dict[str, int]) -> dict[str, Any]:
    _get([wl.noop_task.remote() for _ in range(20)])
    n = cfg["batch"]
    t0 = time.perf_counter()
    refs = [wl.noop_task.remote() for _ in range(n)]
    t1 = time.perf_counter()
    _get(refs)
    t2 = time.perf_counter()
    return {
        "value": n / (t2 - t0),
        "n": n,
        "seconds": t2 - t0,
        "submit_seconds": t1 - t0,
        "gather_seconds": t2 - t1,
        "submits_per_s": n / (t1 - t0),
    }


def bench_long_driver(cfg: dict[str, int]) -> dict[str, Any]:
    """A long-running driver: ``long_tasks`` no-op tasks in batches of ``long_batch``,
    each submitted then gathered; the driver's RSS after the first batch and after
    the last (flat memory: within 10% is the target)."""
    import gc

    n, batch = cfg["long_tasks"], cfg["long_batch"]
    t0 = time.perf_counter()
    rss: list[tuple[int, int]] = []  # (tasks done, RSS) after the first batch and every tenth of the run
    tenth = max(batch, n // 10)
    for done in range(0, n, batch):
        _get([wl.noop_task.remote() for _ in range(min(batch, n - done))])
        now = min(done + batch, n)
        if done == 0 or now % tenth == 0 or now == n:
            gc.collect()
            rss.append((now, rss_bytes(os.getpid())))
    seconds = time.perf_counter() - t0
    first, last = rss[0][1], rss[-1][1]
    curve = ", ".join(f"{k:,}: {v / MB:.1f}" for k, v in rss)
    return {"value": (last - first) / first * 100 if first else None, "rss_first_batch_mb": first / MB,
            "rss_last_batch_mb": last / MB, "rss_mb_after": {k: v / MB for k, v in rss}, "tasks": n, "batch": batch,
            "seconds": seconds, "tasks_per_s": n / seconds,
            "note": f"RSS {first / MB:.1f} MB after the first batch, {last / MB:.1f} MB after {n:,} tasks "
                    f"(MB after each tenth: {curve})"}


def _verdict(met: bool) -> str:
    return "met" if met else "NOT MET"


def bench_wait_loop(cfg: dict[str, int]) -> dict[str, Any]:
    """``while refs: ready, refs = wait(refs, num_returns=1)`` over ``batch`` no-op
    tasks, against submitting the same number and one ``get`` of them all (same run);
    the value is the loop's time over the get's (target: at most 2)."""
    n = cfg["batch"]
    _get([wl.noop_task.remote() for _ in range(20)])
    t0 = time.perf_counter()
    _get([wl.noop_task.remote() for _ in range(n)])
    got = time.perf_counter() - t0
    t0 = time.perf_counter()
    refs = [wl.noop_task.remote() for _ in range(n)]
    done = 0
    while refs:
        ready, refs = refrpc.wait(refs, num_returns=1, timeout=GET_TIMEOUT)
        if not ready:
            raise BenchTimeout("wait returned nothing within its timeout")
        done += len(ready)
    looped = time.perf_counter() - t0
    return {"value": looped / got, "n": n, "wait_loop_s": looped, "get_s": got,
            "note": f"{n:,} refs: wait loop {looped * 1e3:.0f} ms, one get {got * 1e3:.0f} ms; "
                    f"target at most 2x: {_verdict(looped / got <= 2)}"}


def bench_short_behind_long(cfg: dict[str, int]) -> dict[str, Any]:
    """One 5 s task, then 10 no-op tasks submitted behind it: time from submitting
    the short ones until all of them are done (target: at most 500 ms), against the
    same 10 on an idle cluster (same run)."""
    _get([wl.noop_task.remote() for _ in range(20)])
    t0 = time.perf_counter()
    _get([wl.noop_task.remote() for _ in range(10)])
    idle = time.perf_counter() - t0
    slow = wl.sleep_s.remote(5.0)
    t0 = time.perf_counter()
    _get([wl.noop_task.remote() for _ in range(10)])
    behind = time.perf_counter() - t0
    _get(slow)
    return {"value": behind * 1e3, "idle_ms": idle * 1e3,
            "note": f"10 short tasks behind one 5 s task: {behind * 1e3:.0f} ms (idle cluster: {idle * 1e3:.0f} ms); "
                    f"target at most 500 ms: {_verdict(behind <= 0.5)}"}


def bench_cost_split(cfg: dict[str, int]) -> dict[str, Any]:
    """Each piece of a no-op task's path, alone (costsplit.py); the value is their sum."""
    split = costsplit.measure(cfg["split_n"])
    return {"value": sum(split.values()), **split}


def _actor() -> Any:
    actor = wl.Counter.remote()
    _get(actor.ping.remote())  # started
    return actor


def bench_actor_sync(cfg: dict[str, int]) -> dict[str, Any]:
    actor = _actor()
    try:
        for _ in range(20):
            _get(actor.ping.remote())
        samples = []
        clock = time.perf_counter_ns
        for _ in range(cfg["actor_sync"]):
            t0 = clock()
            _get(actor.incr.remote())
            samples.append(clock() - t0)
        row = summary_us(samples)
        return {"value": row["p50_us"], **row}
    finally:
        actor.kill()


def bench_actor_async(cfg: dict[str, int]) -> dict[str, Any]:
    actor = _actor()
    try:
        n = cfg["actor_async"]
        t0 = time.perf_counter()
        refs = [actor.incr.remote() for _ in range(n)]
        t1 = time.perf_counter()
        values = _get(refs)
        t2 = time.perf_counter()
        _check(values, list(range(1, n + 1)))  # in order (ACT-003)
        return {"value": n / (t2 - t0), "n": n, "seconds": t2 - t0, "submit_seconds": t1 - t0, "gather_seconds": t2 - t1}
    finally:
        actor.kill()


def bench_put_get_small(cfg: dict[str, int]) -> dict[str, Any]:
    payload = os.urandom(1024)
    total, puts, gets = [], [], []
    clock = time.perf_counter_ns
    for i in range(cfg["small_calls"] + 20):
        t0 = clock()
        ref = refrpc.put(payload)
        t1 = clock()
        got = _get(ref)
        t2 = clock()
        if i < 20:
            _check(got, payload)
            continue
        total.append(t2 - t0)
        puts.append(t1 - t0)
        gets.append(t2 - t1)
        del ref
    row = summary_us(total)
    return {"value": row["p50_us"], **row, "put_us": summary_us(puts), "get_us": summary_us(gets)}


def _big_array(cfg: dict[str, int]) -> np.ndarray:
    return np.ones(cfg["big_bytes"] // 8)


def bench_put_big(cfg: dict[str, int]) -> dict[str, Any]:
    # Back to back: each ref dies at once, so each put after the first can take the
    # memory the one before it freed (the store's pool).
    arr = _big_array(cfg)
    row = timed_ms(lambda: refrpc.put(arr), cfg["big_reps"])
    return {"value": row["median_ms"], "bytes": arr.nbytes, "gb_per_s": arr.nbytes / row["median_ms"] / 1e6, **row}


def bench_get_big_task(cfg: dict[str, int]) -> dict[str, Any]:
    arr = _big_array(cfg)
    ref = refrpc.put(arr)
    del arr
    row = timed_ms(lambda: _check(_get(wl.array_sum_task.remote(ref)), float(cfg["big_bytes"] // 8)), cfg["big_reps"])
    return {"value": row["median_ms"], **row}


def _zero_copy(ref: Any, arr: np.ndarray) -> dict[str, Any]:
    """Does ``arr`` live in the shared-memory segment of ``ref`` (not a copy)?"""
    try:
        mapping = refrpc.api._ctx.node.store.mapping(ref.id)
        base = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
        start = arr.__array_interface__["data"][0]
        shares = bool(base <= start < base + len(mapping))
    except Exception as exc:  # noqa: BLE001 - an internal API may change; say so
        return {"zero_copy": None, "zero_copy_check": f"{type(exc).__name__}: {exc}"}
    return {"zero_copy": shares, "read_only": not arr.flags.writeable}


def _driver_get(cfg: dict[str, int], make: Callable[[], Any]) -> dict[str, Any]:
    samples, checks = [], []
    for i in range(cfg["big_reps"] + 1):
        ref = make()
        refrpc.wait([ref], timeout=GET_TIMEOUT)  # ready: only the get is timed
        t0 = time.perf_counter()
        got = _get(ref)
        elapsed = (time.perf_counter() - t0) * 1e3
        _check(got.shape, (cfg["big_bytes"] // 8,))
        checks.append(_zero_copy(ref, got))
        if i:  # the first is a warm-up
            samples.append(elapsed)
        del got, ref
    zero_copy = all(c.get("zero_copy") for c in checks)
    return {
        "value": statistics.median(samples),
        "median_ms": statistics.median(samples),
        "samples_ms": samples,
        "zero_copy": zero_copy,
        "checks": checks,
        "note": "zero-copy" if zero_copy else "COPIED",
    }


def bench_get_big_driver(cfg: dict[str, int]) -> dict[str, Any]:
    arr = _big_array(cfg)
    return _driver_get(cfg, lambda: refrpc.put(arr))


def bench_get_big_from_worker(cfg: dict[str, int]) -> dict[str, Any]:
    return _driver_get(cfg, lambda: wl.make_array_task.remote(cfg["big_bytes"]))


def bench_chain(cfg: dict[str, int]) -> dict[str, Any]:
    n = cfg["big_bytes"]
    row = timed_ms(lambda: _check(_get(wl.array_sum_task.remote(wl.make_array_task.remote(n))), float(n // 8)), cfg["big_reps"])
    return {"value": row["median_ms"], **row}


def bench_mapreduce(cfg: dict[str, int]) -> dict[str, Any]:
    m, parts, size = cfg["maps"], cfg["partitions"], cfg["partition_bytes"]
    mapper = wl.map_task(parts)
    expected = [wl.expected_reduce(m, parts, size, j) for j in range(parts)]

    def once() -> None:
        mapped = [mapper.remote(i, parts, size) for i in range(m)]
        reduced = [wl.reduce_task.remote(*[mapped[i][j] for i in range(m)]) for j in range(parts)]
        _check(_get(reduced), expected)

    row = timed_ms(once, cfg["mr_reps"])
    return {"value": row["median_ms"], "maps": m, "partitions": parts, "partition_bytes": size, **row}


def bench_cluster_start(cfg: dict[str, int], workers: int) -> dict[str, Any]:
    row = _child_runs("cluster-start", workers, cfg["start_reps"])
    lost = sum(1 for r in row["runs"] if r.get("workers_alive") != workers)
    note = f"{lost}/{len(row['runs'])} lost a worker" if lost else ""
    return {"value": row["median_ms"], **row, "starts_losing_a_worker": lost, "note": note}


def refrpc_benchmarks(cfg: dict[str, int], workers: int) -> list[Bench]:
    B = size_label(cfg["big_bytes"])
    mr = f"MapReduce {cfg['maps']} maps x {cfg['partitions']} partitions of {size_label(cfg['partition_bytes'])}"
    return [
        Bench("cluster_start", f"cluster start ({workers} workers) to first result", "ms", False, "mp_start",
              lambda c: bench_cluster_start(c, workers)),
        Bench("task_roundtrip_p50", "no-op task round trip, p50", "us", False, "zmq_rtt_p50", bench_task_roundtrip),
        Bench("task_roundtrip_p99", "no-op task round trip, p99", "us", False, "zmq_rtt_p99", bench_task_roundtrip_p99),
        Bench("tasks_batch", f"{cfg['batch']} no-op tasks submitted, then gathered", "tasks/s", True, "zmq_pipelined",
              bench_tasks_batch),
        Bench("actor_sync_p50", "actor call, one at a time, p50", "us", False, "zmq_rtt_p50", bench_actor_sync),
        Bench("actor_async", f"{cfg['actor_async']} actor calls submitted, then gathered", "calls/s", True,
              "zmq_pipelined", bench_actor_async),
        Bench("put_get_1kb_p50", "put + get of 1 KB, p50", "us", False, "pickle_1kb", bench_put_get_small),
        Bench("put_big", f"put of a {B} numpy array, back to back after frees", "ms", False, "memcpy_warm_big",
              bench_put_big),
        Bench("get_big_task", f"task sums a put {B} array (get in another process)", "ms", False, "zmq_sum_big",
              bench_get_big_task),
        Bench("get_big_driver", f"get of a put {B} array in the driver", "ms", False, "zmq_stream_big",
              bench_get_big_driver),
        Bench("get_big_from_worker", f"get in the driver of {B} a worker made", "ms", False, "zmq_make_big",
              bench_get_big_from_worker),
        Bench("chain_big", f"g.remote(f.remote()): f makes {B}, g sums it", "ms", False, "zmq_chain_big", bench_chain),
        Bench("mapreduce", mr, "ms", False, "mp_mapreduce", bench_mapreduce),
        Bench("wait_loop", f"wait(num_returns=1) loop over {cfg['batch']} refs / one get of them", "x", False, "",
              bench_wait_loop),
        Bench("short_behind_long", "10 no-op tasks submitted behind one 5 s task, until all done", "ms", False, "",
              bench_short_behind_long),
        Bench("task_cost_split", "a no-op task's pieces, each alone, summed (split below)", "us", False, "zmq_rtt_p50",
              bench_cost_split),
        Bench("long_driver_rss", f"driver RSS growth over {cfg['long_tasks']:,} no-op tasks", "%", False, "",
              bench_long_driver, limit="long_timeout_s"),
    ]


#: The names every run reports (the smoke test checks them).
FLOOR_NAMES = [name for name, *_ in floor_benchmarks(SETTINGS["quick"], 2)]
BENCH_NAMES = [b.name for b in refrpc_benchmarks(SETTINGS["quick"], 2)]
RECOVERY_NAMES = [b.name for b in recovery.recovery_benchmarks(SETTINGS["quick"])]
TRACING_NAMES = [t.name for t in tracing.traced_benchmarks(refrpc_benchmarks(SETTINGS["quick"], 2))]


# ---------------------------------------------------------------- fresh-process starts
def _child_runs(kind: str, workers: int, reps: int) -> dict[str, Any]:
    """Run ``run.py --child KIND`` ``reps`` times; each prints one JSON line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", kind, "--workers", str(workers)],
            capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"child {kind} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        runs.append({**json.loads(lines[-1]), "process_wall_ms": wall * 1e3})
    return {"median_ms": statistics.median(r["first_result_ms"] for r in runs), "runs": runs}


def child(kind: str, workers: int) -> int:
    """A fresh process: start, run one no-op, get it, stop; print the times as JSON."""
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    if kind == "cluster-start":
        refrpc.init(workers)
        try:
            t1 = time.perf_counter()
            _get(wl.noop_task.remote())
            t2 = time.perf_counter()
            try:  # did every worker come up? (not timed)
                _get([wl.noop_task.remote() for _ in range(2 * workers)])
                extra["health"] = cluster_health()
                extra["workers_alive"] = extra["health"]["alive"]
            except Exception as exc:  # noqa: BLE001 - reported with the times
                extra["health"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            t3 = time.perf_counter()
            refrpc.shutdown()
    elif kind == "mp-start":
        pool = mp.get_context("spawn").Pool(workers)
        try:
            t1 = time.perf_counter()
            pool.apply(wl.noop)
            t2 = time.perf_counter()
        finally:
            t3 = time.perf_counter()
            pool.terminate()
            pool.join()
    else:
        raise SystemExit(f"unknown child {kind}")
    t4 = time.perf_counter()
    out = {"init_ms": (t1 - t0) * 1e3, "first_result_ms": (t2 - t0) * 1e3, "shutdown_ms": (t4 - t3) * 1e3, **extra}
    print(json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------- 3. report
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("us", "ms"):
        if unit == "us" and value >= 1_000:
            value, unit = value / 1e3, "ms"
        if unit == "ms" and value >= 10_000:
            value, unit = value / 1e3, "s"
        if unit == "ms" and value < 1:
            value, unit = value * 1e3, "us"
        return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    if unit in ("x", "%"):  # ratios and growth: a decimal tells
        return f"{value:.2f} {unit}" if abs(value) < 10 else f"{value:.1f} {unit}"
    return f"{value:,.0f} {unit}"


def ratio(bench: Bench, mine: float | None, floor: float | None) -> float | None:
    if not mine or not floor:
        return None
    return floor / mine if bench.higher_is_better else mine / floor


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def print_floor(floor: dict[str, dict[str, Any]], labels: dict[str, tuple[str, str]]) -> None:
    print("\nFloor and pass-by-value baselines (no RefRPC)")
    print(f"{'measurement':<66} {'figure':>14}")
    for name, row in floor.items():
        label, unit = labels[name]
        figure = fmt(row.get("value"), unit) if row.get("error") is None else "ERROR"
        print(f"{cut(label, 66):<66} {figure:>14}")
        if row.get("error"):
            print(f"    {cut(row['error'], 110)}")


def print_table(benches: list[Bench], results: dict[str, dict[str, Any]], floor: dict[str, dict[str, Any]],
                labels: dict[str, tuple[str, str]]) -> None:
    print("\nRefRPC against the floor (ratio = RefRPC cost / floor cost; above 1 is slower)")
    print(f"{'benchmark':<52} {'RefRPC':>22} {'floor/baseline':>14} {'ratio':>7}  compared with")
    for b in benches:
        row = results.get(b.name, {"error": "not run"})
        f = floor.get(b.floor, {})
        mine, theirs = row.get("value"), f.get("value")
        if row.get("error"):
            figure = "ERROR"
        else:
            figure = fmt(mine, b.unit) + (f" ({row['note']})" if row.get("note") else "")
        r = ratio(b, mine, theirs)
        print(
            f"{cut(b.label, 52):<52} {figure:>22} {fmt(theirs, labels.get(b.floor, ('', b.unit))[1]):>14} "
            f"{(f'{r:.2f}x' if r is not None else '-'):>7}  {cut(labels.get(b.floor, (b.floor, ''))[0], 60)}"
        )
        if row.get("error"):
            print(f"    {cut(row['error'], 110)}")


def _printed_error(label: str, row: dict[str, Any]) -> bool:
    """Print a row that failed (its label and error) and say so; rows that ran print nothing here."""
    if not row.get("error"):
        return False
    print(f"{cut(label, 52):<52} {'ERROR':>14}")
    print(f"    {cut(row['error'], 110)}")
    return True


def print_recovery(benches: list[recovery.Recovery], results: dict[str, dict[str, Any]], reps: int) -> None:
    if not benches:
        return
    print(f"\nRecovery: one worker killed (kill -9) at {recovery.KILL_AT:.0%} of the run, median of {reps} fresh cluster(s)")
    print(f"{'benchmark':<52} {'no failure':>14} {'one killed':>22} {'recovery':>10}  killed")
    for b in benches:
        row = results.get(b.name, {"error": "not run"})
        if _printed_error(b.label, row):
            continue
        killed = ", ".join(sorted({r["killed"] for r in row["runs"]}))
        figure = fmt(row["one_killed_ms"], "ms") + (f" ({row['note']})" if row.get("note") else "")
        print(f"{cut(b.label, 52):<52} {fmt(row['no_failure_ms'], 'ms'):>14} {figure:>22} "
              f"{('+' if row['recovery_ms'] >= 0 else '-') + fmt(abs(row['recovery_ms']), 'ms'):>10}  {killed}")


def print_tracing(rows: list[tracing.Traced], results: dict[str, dict[str, Any]], reps: int) -> None:
    if not rows:
        return
    print(f"\nTracing: trace recording off and on (refrpc.init(trace_dir=...)), median of {reps} pair(s) of fresh clusters")
    print(f"{'benchmark':<52} {'off':>14} {'on':>14} {'overhead':>9}  trace written")
    for t in rows:
        row = results.get(t.name, {"error": "not run"})
        if _printed_error(t.label, row):
            continue
        written = f"{row['trace_bytes'] / 1e6:.1f} MB in {row['trace_files']} files"
        print(f"{cut(t.label, 52):<52} {fmt(row['off'], t.unit):>14} {fmt(row['on'], t.unit):>14} "
              f"{row['overhead_pct']:>+8.1f}%  {written}")


def cluster_line(info: dict[str, Any], workers: int) -> str:
    starts = info.get("starts") or []
    if not starts:
        return f"cluster: not started ({info.get('error', 'not run')})"
    lost = [s for s in starts if s.get("alive") != s.get("of")]
    line = f"cluster: {starts[-1].get('alive')}/{workers} workers alive after start"
    if lost:
        line += f" ({len(lost)} of {len(starts)} starts lost a worker: {[s.get('states') or s.get('error') for s in lost]})"
    end = info.get("health_at_end")
    if end:
        line += f"; at the end {end.get('alive', '?')}/{workers} alive"
    return line


def _git_dirty() -> bool | None:
    """Whether the runtime (pyimpl/src) has uncommitted changes: then the commit alone does not say what ran."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "pyimpl/src"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except Exception:  # noqa: BLE001
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001 - not a checkout: no commit to report
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations and smaller arrays (CI)")
    ap.add_argument("--json", help="write every raw number here")
    ap.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core, at least 2)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names to run (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workers = args.workers or max(2, os.cpu_count() or 1)
    if args.child:
        return child(args.child, workers)

    mode = "quick" if args.quick else "default"
    cfg = SETTINGS[mode]
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    started = time.perf_counter()
    print(f"RefRPC benchmarks ({mode}), {workers} workers, {os.cpu_count()} CPUs", flush=True)

    # 1. the floor first, with nothing else running
    floor: dict[str, dict[str, Any]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for name, label, unit, fn in floor_benchmarks(cfg, workers):
        labels[name] = (label, unit)
        floor[name] = {"label": label, "unit": unit, **guarded(fn, cfg["timeout_s"])}
        print(f"  floor {name:<20} {fmt(floor[name].get('value'), unit):>14}  {floor[name].get('error') or ''}", flush=True)

    # 2. RefRPC: a fresh process for cluster start, then one cluster for the rest
    benches = refrpc_benchmarks(cfg, workers)
    if only:
        benches = [b for b in benches if b.name in only]
    results: dict[str, dict[str, Any]] = {}
    first, rest = [b for b in benches if b.name == "cluster_start"], [b for b in benches if b.name != "cluster_start"]
    for b in first:
        results[b.name] = guarded(lambda b=b: b.fn(cfg), cfg["timeout_s"])
        print(f"  refrpc {b.name:<20} {fmt(results[b.name].get('value'), b.unit):>14}  {results[b.name].get('error') or ''}", flush=True)
    init_info: dict[str, Any] = {}
    try:
        init_info = guarded(lambda: start_cluster(workers), cfg["timeout_s"])
        for b in rest:
            if init_info.get("error"):
                results[b.name] = {"value": None, "error": f"refrpc.init failed: {init_info['error']}"}
                continue
            results[b.name] = guarded(lambda b=b: b.fn(cfg), cfg[b.limit])
            print(f"  refrpc {b.name:<20} {fmt(results[b.name].get('value'), b.unit):>14}  {results[b.name].get('error') or ''}", flush=True)
    finally:
        if refrpc.is_initialized():
            try:
                init_info["health_at_end"] = cluster_health()
            except Exception as exc:  # noqa: BLE001
                init_info["health_at_end"] = {"error": f"{type(exc).__name__}: {exc}"}
        t0 = time.perf_counter()
        try:
            refrpc.shutdown()
        except Exception as exc:  # noqa: BLE001 - reported, the report still comes
            init_info["shutdown_error"] = f"{type(exc).__name__}: {exc}"
        init_info["shutdown_s"] = time.perf_counter() - t0

    # 3. recovery: fresh clusters, one worker killed in each
    def progress(name: str, row: dict[str, Any]) -> None:
        figure = "" if row.get("error") else f"{fmt(row.get('no_failure_ms'), 'ms')} -> {fmt(row.get('one_killed_ms'), 'ms')}"
        print(f"  recovery {name:<18} {figure:>22}  {row.get('error') or ''}", flush=True)

    recoveries, recovered = recovery.run_recovery(cfg, workers, only, guarded, progress)

    # 4. tracing: fresh clusters, recording off and on
    def traced_progress(name: str, row: dict[str, Any]) -> None:
        figure = "" if row.get("error") else f"{row['overhead_pct']:+.1f}%"
        print(f"  tracing {name:<28} {figure:>10}  {row.get('error') or ''}", flush=True)

    traced, traced_rows = tracing.run_tracing(cfg, workers, only, refrpc_benchmarks(cfg, workers), guarded,
                                              traced_progress, reset=_ROUNDTRIPS.clear)

    # 5. the report
    print_floor(floor, labels)
    print_table(benches, results, floor, labels)
    print(cluster_line(init_info, workers))
    if "task_cost_split" in results:
        rt = results.get("task_roundtrip_p50", {}).get("value")
        costsplit.print_split(results["task_cost_split"], rt, floor.get("zmq_rtt_p50", {}).get("value"))
    if results.get("long_driver_rss", {}).get("note"):
        print(f"\nLong-running driver: {results['long_driver_rss']['note']}")
    print_recovery(recoveries, recovered, cfg["recovery_reps"])
    print_tracing(traced, traced_rows, cfg["trace_reps"])
    wall = time.perf_counter() - started
    print(f"\ntotal {wall:.1f} s", flush=True)
    for b in benches:
        results[b.name].update(label=b.label, unit=b.unit, higher_is_better=b.higher_is_better, floor=b.floor,
                               floor_value=floor.get(b.floor, {}).get("value"),
                               ratio=ratio(b, results[b.name].get("value"), floor.get(b.floor, {}).get("value")))
    report = {
        "suite": "refrpc-bench",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": {**zmq_floor.machine(), "numpy": np.__version__, "implementation": platform.python_implementation()},
        "refrpc": {"version": getattr(refrpc, "__version__", None), "path": os.path.dirname(refrpc.__file__),
                   "commit": _git_commit(), "runtime_dirty": _git_dirty(), "workers": workers, "cluster": init_info},
        "settings": cfg,
        "wall_seconds": wall,
        "ratio": "RefRPC cost / floor cost: RefRPC time / floor time, or floor rate / RefRPC rate",
        "floor": floor,
        "benchmarks": results,
        "recovery": recovered,
        "tracing": traced_rows,
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)
            out.write("\n")
    return 0


def cluster_health() -> dict[str, Any]:
    """Which workers of the local cluster are alive, as the driver sees them (internal API)."""
    ctx = refrpc.api._ctx
    node, cluster = ctx.node, ctx.cluster
    names = list(cluster.workers)

    def states() -> dict[str, str]:
        return {w: node.core.remotes[w].state if w in node.core.remotes else "unknown" for w in names}

    seen = node.call(states).result(timeout=10)
    exits = {w: p.poll() for w, p in cluster.processes.items()}
    alive = [w for w in names if seen.get(w) != "dead" and exits.get(w) is None]
    return {"alive": len(alive), "of": len(names), "states": seen, "exit_codes": exits}


def start_cluster(workers: int, attempts: int = 3) -> dict[str, Any]:
    """``refrpc.init``, then make sure every worker is up (a start that lost one is
    recorded and done again: the benchmarks measure ``workers`` workers)."""
    log: list[dict[str, Any]] = []
    for attempt in range(1, attempts + 1):
        t0 = time.perf_counter()
        refrpc.init(workers)
        init_ms = (time.perf_counter() - t0) * 1e3
        try:
            _get([wl.noop_task.remote() for _ in range(2 * workers)])
            warm_ms = (time.perf_counter() - t0) * 1e3 - init_ms
            time.sleep(0.1)
            health = cluster_health()
        except Exception as exc:  # noqa: BLE001 - a failed start is recorded, then retried
            health = {"alive": 0, "of": workers, "error": f"{type(exc).__name__}: {exc}"}
            warm_ms = None
        log.append({"attempt": attempt, "init_ms": init_ms, "first_tasks_ms": warm_ms, **health})
        if health["alive"] == health["of"] or attempt == attempts:
            break
        print(f"  cluster start {attempt} lost workers: {health.get('states') or health.get('error')}; starting again",
              flush=True)
        refrpc.shutdown()
    return {"value": log[-1]["init_ms"], "starts": log, "workers_alive": log[-1]["alive"]}


if __name__ == "__main__":
    sys.exit(main())
