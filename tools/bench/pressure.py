#!/usr/bin/env python3
"""Memory benchmarks: the store's data path and a working set larger than memory.

    python tools/bench/pressure.py [--quick] [--json out.json] [--workers N] [--only ROW,...]

Rows, each printed beside the floor measured in the same run:

* ``put_big``: put of a 100 MB numpy array, back to back (each ref dies before the
  next put, so the store can reuse the memory); floors: the same copy into warm
  shared memory (a /dev/shm mapping written before) and into fresh pages.
* ``chain_big``: ``g.remote(f.remote())``, f makes 100 MB, g sums it; floor: the
  same two steps in this process.
* ``rl_broadcast``: per round, 20 MB of weights put and 8 tasks that read them,
  consumed with ``wait``; floor: the same reads in this process.
* ``param_server``: per round, 8 tasks each make a 20 MB gradient and an actor adds
  them into its parameters; floor: the same in this process.
* ``working_set_3x``: a MapReduce whose live objects total 3x the host's store limit
  (which all its processes share): time, bytes spilled and restored, next to the same
  run with limits large enough to need no spilling; afterwards nothing may be
  left in /dev/shm or in the spill directory.

Nothing here passes or fails on a timing; a wrong answer is an error in its row.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import mmap
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:  # workers inherit sys.path: they import this module by name
    sys.path.insert(0, HERE)
if importlib.util.find_spec("refrpc") is None:
    sys.path.insert(0, os.path.join(REPO, "pyimpl", "src"))

import numpy as np  # noqa: E402

import refrpc  # noqa: E402
from run import _check as check  # noqa: E402
from run import timed_ms as timed  # noqa: E402

MB = 1_000_000
GET_TIMEOUT = 300.0
SETTINGS = {
    "full": dict(big_bytes=100 * MB, reps=7, rl_bytes=20 * MB, rl_tasks=8, rounds=10, ws_limit=128 * MB,
                 ws_part=8 * MB, ws_reps=3),
    "quick": dict(big_bytes=20 * MB, reps=3, rl_bytes=4 * MB, rl_tasks=4, rounds=3, ws_limit=32 * MB,
                  ws_part=2 * MB, ws_reps=1),
}


# ---------------------------------------------------------------- remote work
def make_array(nbytes: int) -> np.ndarray:
    return np.ones(nbytes // 8)


def array_sum(a: np.ndarray) -> float:
    return float(a.sum())


def train(weights: np.ndarray, i: int) -> float:
    """An RL trainer's step, reduced to reading every weight once."""
    return float(weights.sum()) + i


def gradient(nbytes: int, i: int) -> np.ndarray:
    return np.full(nbytes // 8, float(i))


def partition(seed: int, nbytes: int) -> np.ndarray:
    return np.full(nbytes // 8, float(seed))


make_array_task = refrpc.remote(make_array)
array_sum_task = refrpc.remote(array_sum)
train_task = refrpc.remote(train)
gradient_task = refrpc.remote(gradient)
partition_task = refrpc.remote(partition)


@refrpc.remote
class ParameterServer:
    def __init__(self, nbytes: int) -> None:
        self.params = np.zeros(nbytes // 8)

    def apply(self, *grads: np.ndarray) -> float:
        for g in grads:
            self.params += g
        return float(self.params[0])


# ---------------------------------------------------------------- helpers
def store_totals() -> dict[str, int]:
    """Spill and restore counters summed over every process of the cluster."""
    from refrpc.runtime import _status

    node = refrpc.api._ctx.node
    peers = [node.peer_id, *node.call(lambda: list(node.core.workers)).result()]
    total = {"bytes_spilled": 0, "bytes_restored": 0, "spills": 0, "restores": 0, "bytes_reused": 0}
    for report in _status.stores(node, peers, 30).values():
        if report is not None:
            for k in total:
                total[k] += report["usage"].get(k, 0)
    return total


# ---------------------------------------------------------------- rows
def put_big(cfg: dict[str, int]) -> dict[str, Any]:
    n = cfg["big_bytes"]
    arr = np.ones(n // 8)
    fresh = timed(lambda: arr.copy(), cfg["reps"])
    with tempfile.TemporaryFile(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as f:
        f.truncate(n)
        mm = mmap.mmap(f.fileno(), n)
        dst = np.frombuffer(mm, dtype=arr.dtype)
        warm = timed(lambda: np.copyto(dst, arr), cfg["reps"])
        del dst
        mm.close()
    put = timed(lambda: refrpc.put(arr), cfg["reps"])
    return {"value_ms": put["median_ms"], "gb_per_s": n / put["median_ms"] / 1e6,
            "floor_ms": warm["median_ms"], "floor_gb_per_s": n / warm["median_ms"] / 1e6,
            "fresh_pages_ms": fresh["median_ms"], "fresh_gb_per_s": n / fresh["median_ms"] / 1e6,
            "ratio": put["median_ms"] / warm["median_ms"], "target": ">= 10 GB/s and >= 0.5x the warm copy's rate",
            "samples_ms": put["samples_ms"]}


def chain_big(cfg: dict[str, int]) -> dict[str, Any]:
    n = cfg["big_bytes"]
    local = timed(lambda: check(array_sum(make_array(n)), float(n // 8)), cfg["reps"])
    row = timed(lambda: check(refrpc.get(array_sum_task.remote(make_array_task.remote(n)), timeout=GET_TIMEOUT),
                              float(n // 8)), cfg["reps"])
    return {"value_ms": row["median_ms"], "floor_ms": local["median_ms"], "ratio": row["median_ms"] / local["median_ms"],
            "target": "<= 1.5x one process", "samples_ms": row["samples_ms"]}


def rl_broadcast(cfg: dict[str, int]) -> dict[str, Any]:
    n, k, rounds = cfg["rl_bytes"], cfg["rl_tasks"], cfg["rounds"]
    base = np.ones(n // 8)
    expected = [float(n // 8) + i for i in range(k)]

    def local_round() -> None:
        weights = base.copy()  # the learner's new weights
        check([train(weights, i) for i in range(k)], expected)

    def refrpc_round() -> None:
        ref = refrpc.put(base.copy())
        pending = [train_task.remote(ref, i) for i in range(k)]
        got: list[float] = []
        while pending:
            done, pending = refrpc.wait(pending, num_returns=1, timeout=GET_TIMEOUT)
            got += refrpc.get(done, timeout=GET_TIMEOUT)
        check(sorted(got), expected)

    local = timed(local_round, rounds)
    row = timed(refrpc_round, rounds)
    return {"value_ms": row["median_ms"], "floor_ms": local["median_ms"], "ratio": row["median_ms"] / local["median_ms"],
            "target": "<= 1.3x one process", "samples_ms": row["samples_ms"]}


def param_server(cfg: dict[str, int]) -> dict[str, Any]:
    n, k, rounds = cfg["rl_bytes"], cfg["rl_tasks"], cfg["rounds"]
    params = np.zeros(n // 8)
    step = float(sum(range(k)))

    def local_round() -> None:
        for g in [gradient(n, i) for i in range(k)]:
            params.__iadd__(g)

    server = ParameterServer.remote(n)
    state = {"round": 0}

    def refrpc_round() -> None:
        state["round"] += 1
        got = refrpc.get(server.apply.remote(*[gradient_task.remote(n, i) for i in range(k)]), timeout=GET_TIMEOUT)
        check(got, step * state["round"])

    local = timed(local_round, rounds)
    row = timed(refrpc_round, rounds)
    refrpc.kill(server)
    return {"value_ms": row["median_ms"], "floor_ms": local["median_ms"], "ratio": row["median_ms"] / local["median_ms"],
            "target": "<= 1.3x one process", "samples_ms": row["samples_ms"]}


def _working_set(workers: int, limit: int, part: int, live: int) -> dict[str, Any]:
    """One MapReduce on a fresh cluster whose host's stores share ``limit``: maps make
    ``live // part`` partitions, all alive until every reduce (a sum each) is done."""
    from refrpc.store import list_segments, list_spilled

    refrpc.init(workers, object_store_memory=limit)
    ctx = refrpc.api._ctx
    namespace, spill_dir = ctx.cluster.namespace, ctx.node.store.spill_directory
    try:
        count = live // part
        array_sum_task.remote(partition_task.remote(0, part))  # warm the workers up
        t0 = time.perf_counter()
        parts = [partition_task.remote(i, part) for i in range(count)]
        sums = refrpc.get([array_sum_task.remote(p) for p in parts], timeout=GET_TIMEOUT)
        total = sum(sums)
        elapsed = (time.perf_counter() - t0) * 1e3
        check(total, float(sum(range(count)) * (part // 8)))
        counters = store_totals()
        del parts
    finally:
        refrpc.shutdown()
    left = list_segments(namespace, pooled=True) + (list_spilled(namespace, spill_dir) if os.path.isdir(spill_dir) else [])
    return {"ms": elapsed, "objects": count, **counters, "left_behind": left, "spill_dir_removed": not os.path.exists(spill_dir)}


def working_set_3x(cfg: dict[str, int], workers: int) -> dict[str, Any]:
    limit, part = cfg["ws_limit"] * (workers + 1), cfg["ws_part"]  # the host's limit: ws_limit per process
    live = 3 * limit  # 3x the limit the host's stores share (the driver's included)
    small = [_working_set(workers, limit, part, live) for _ in range(cfg["ws_reps"])]
    big = [_working_set(workers, 4 * live, part, live) for _ in range(cfg["ws_reps"])]
    s = statistics.median(r["ms"] for r in small)
    b = statistics.median(r["ms"] for r in big)
    return {"value_ms": s, "floor_ms": b, "ratio": s / b, "target": "<= 3x the in-memory time, nothing left behind",
            "live_bytes": live, "limit": limit, "spilling": small, "in_memory": big,
            "left_behind": sorted({n for r in small + big for n in r["left_behind"]})}


ROWS: dict[str, Callable[..., dict[str, Any]]] = {
    "put_big": put_big, "chain_big": chain_big, "rl_broadcast": rl_broadcast, "param_server": param_server,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    cfg = SETTINGS["quick" if args.quick else "full"]
    only = {x for x in args.only.split(",") if x}
    results: dict[str, Any] = {}
    wanted = [name for name in [*ROWS, "working_set_3x"] if not only or name in only]
    shared = [name for name in wanted if name in ROWS]
    if shared:
        refrpc.init(args.workers)
        try:
            for name in shared:
                try:
                    results[name] = ROWS[name](cfg)
                except Exception as exc:  # noqa: BLE001 - a failing row shows its error
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            refrpc.shutdown()
    if "working_set_3x" in wanted:
        try:
            results["working_set_3x"] = working_set_3x(cfg, args.workers)
        except Exception as exc:  # noqa: BLE001
            results["working_set_3x"] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f"\n{'row':<16} {'RefRPC':>12} {'floor':>12} {'ratio':>7}  target / notes")
    for name, row in results.items():
        if "error" in row:
            print(f"{name:<16} ERROR {row['error']}")
            continue
        note = row["target"]
        if name == "put_big":
            note += (f"; {row['gb_per_s']:.1f} GB/s vs warm {row['floor_gb_per_s']:.1f} GB/s, "
                     f"fresh pages {row['fresh_gb_per_s']:.1f} GB/s")
        if name == "working_set_3x":
            spilled = statistics.median(r["bytes_spilled"] for r in row["spilling"])
            restored = statistics.median(r["bytes_restored"] for r in row["spilling"])
            note += (f"; {row['live_bytes'] / MB:.0f} MB live, limit {row['limit'] / MB:.0f} MB for the host's"
                     f" {args.workers + 1} processes; spilled {spilled / MB:.0f} MB, restored {restored / MB:.0f} MB;"
                     f" floor = same run with no spilling; left behind: {row['left_behind'] or 'nothing'}")
        print(f"{name:<16} {row['value_ms']:>10.1f}ms {row['floor_ms']:>10.1f}ms {row['ratio']:>6.2f}x  {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "cpus": os.cpu_count(),
                       "settings": cfg, "results": results}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
