"""Recovery cost: the chain and the MapReduce of the benchmark suite with one worker
killed (``kill -9``) mid-run, next to the same run without a failure.

Each repetition starts a fresh local cluster (the local cluster does not restart a
killed worker, so every killed run needs one), warms it up with one run, times one
run without a failure, then times one run during which the worker running the
oldest unfinished task is killed at ``KILL_AT`` of the time the run without a
failure took. The killed worker's tasks are retried elsewhere (RPC-004) and its
stored values rebuilt from lineage (LIN-003); every answer is checked. The report
gives the medians over the repetitions and their difference, the recovery cost:
noticing the death (the local cluster's supervisor reports a worker's exit at once,
LIV-014) plus the work done again.

run.py calls :func:`run_recovery` and prints the table; this module only measures.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import refrpc
import workloads as wl
from refrpc.testing import wait_until

#: When the worker is killed, as a fraction of the run's time without a failure.
KILL_AT = 0.5
#: Every get is bounded: a lost reply is an error, not a hang.
GET_TIMEOUT = 120.0
#: Retries each task may use (RPC-004, LIN-003; RPC-009 counts both).
RETRIES = 2


@dataclass
class Recovery:
    name: str
    label: str
    #: One run of the workload on the current cluster; raises if an answer is wrong.
    run: Callable[[], None]


def _check(got: Any, expected: Any) -> None:
    if got != expected:
        raise AssertionError(f"wrong answer: {got!r}, expected {expected!r}")


def recovery_benchmarks(cfg: dict[str, int]) -> list[Recovery]:
    """The chain and the MapReduce of run.py, with retries."""
    n = cfg["big_bytes"]
    make = wl.make_array_task.options(max_retries=RETRIES)
    total = wl.array_sum_task.options(max_retries=RETRIES)

    def chain() -> None:
        _check(refrpc.get(total.remote(make.remote(n)), timeout=GET_TIMEOUT), float(n // 8))

    m, parts, size = cfg["maps"], cfg["partitions"], cfg["partition_bytes"]
    mapper = refrpc.remote(wl.map_partitions).options(num_returns=parts, max_retries=RETRIES)
    reducer = wl.reduce_task.options(max_retries=RETRIES)
    expected = [wl.expected_reduce(m, parts, size, j) for j in range(parts)]

    def mapreduce() -> None:
        mapped = [mapper.remote(i, parts, size) for i in range(m)]
        reduced = [reducer.remote(*[mapped[i][j] for i in range(m)]) for j in range(parts)]
        del mapped
        _check(refrpc.get(reduced, timeout=GET_TIMEOUT), expected)

    mb = n // 1_000_000
    return [
        Recovery("recovery_chain", f"g.remote(f.remote()) over {mb} MB", chain),
        Recovery("recovery_mapreduce", f"MapReduce {m} maps x {parts} partitions of {size // 1_000_000} MB", mapreduce),
    ]


def _busiest_worker() -> str:
    """The worker running the oldest unfinished task, as the driver sees it (internal
    API); the first worker if none is running."""
    ctx = refrpc.api._ctx
    node = ctx.node

    def pick() -> str:
        for t in node.core.tasks.values():
            if t.state == "submitted" and t.executor in ctx.cluster.processes:
                return t.executor
        return ""

    return node.call(pick).result(10) or next(iter(ctx.cluster.processes))


def _killer(delay: float, killed: dict[str, Any]) -> threading.Thread:
    """After ``delay`` s, kill -9 the busiest worker; ``killed`` gets who and when."""

    def run() -> None:
        time.sleep(delay)
        victim = _busiest_worker()
        cluster = refrpc.api._ctx.cluster
        incarnation = cluster.incarnations[victim]
        os.kill(cluster.processes[victim].pid, signal.SIGKILL)
        killed.update(worker=victim, incarnation=incarnation, at=time.perf_counter())

    t = threading.Thread(target=run, name="bench-killer", daemon=True)
    t.start()
    return t


def _dead(worker: str, incarnation: int) -> bool:
    """Whether the driver fenced that incarnation of ``worker`` (the local cluster's
    supervisor then starts a new one under the same name)."""
    node = refrpc.api._ctx.node
    return node.call(lambda: (worker, incarnation) in node.core.fenced).result(10)


def measure(bench: Recovery, workers: int, reps: int) -> dict[str, Any]:
    """``reps`` fresh clusters: a run without a failure and a run with one worker killed."""
    runs = []
    for _ in range(reps):
        refrpc.init(workers)
        try:
            bench.run()  # warm-up: imports, first sessions, first segments
            t0 = time.perf_counter()
            bench.run()
            ok_ms = (time.perf_counter() - t0) * 1e3
            killed: dict[str, Any] = {}
            killer = _killer(KILL_AT * ok_ms / 1e3, killed)
            t0 = time.perf_counter()
            bench.run()
            end = time.perf_counter()
            killer.join()
            failed_ms = (end - t0) * 1e3
            # The death must have been noticed (else the row would not measure recovery).
            wait_until(lambda: _dead(killed["worker"], killed["incarnation"]), 30)
            runs.append({
                "no_failure_ms": ok_ms, "one_killed_ms": failed_ms, "killed": killed["worker"],
                "killed_at_ms": (killed["at"] - t0) * 1e3, "killed_mid_run": killed["at"] < end,
                "declared_dead": _dead(killed["worker"], killed["incarnation"]),
            })
        finally:
            refrpc.shutdown()
    ok = statistics.median(r["no_failure_ms"] for r in runs)
    failed = statistics.median(r["one_killed_ms"] for r in runs)
    mid = sum(r["killed_mid_run"] for r in runs)
    return {
        "value": failed, "no_failure_ms": ok, "one_killed_ms": failed, "recovery_ms": failed - ok,
        "kill_at": KILL_AT, "killed_mid_run": mid, "reps": len(runs), "runs": runs,
        "note": "" if mid == len(runs) else f"{len(runs) - mid}/{len(runs)} kills came after the run",
    }


def run_recovery(cfg: dict[str, int], workers: int, only: set[str],
                 guarded: Callable[[Callable[[], dict[str, Any]], float], dict[str, Any]],
                 progress: Callable[[str, dict[str, Any]], None]) -> tuple[list[Recovery], dict[str, dict[str, Any]]]:
    """Every recovery benchmark (those in ``only``, if given), each under ``guarded``."""
    benches = [b for b in recovery_benchmarks(cfg) if not only or b.name in only]
    results: dict[str, dict[str, Any]] = {}
    for b in benches:
        results[b.name] = {"label": b.label, "unit": "ms", **guarded(lambda b=b: measure(b, workers, cfg["recovery_reps"]), cfg["timeout_s"])}
        if refrpc.is_initialized():  # a run that raised left its cluster up
            refrpc.shutdown()
        progress(b.name, results[b.name])
    return benches, results
