"""Tracing overhead: a few RefRPC benchmarks with trace recording off and on.

Recording (``refrpc.init(trace_dir=...)``, docs/tracing.md) writes a record for
every message each process sends and receives and for every local event of the
core. This section measures what that costs a running program: each repetition
starts a fresh cluster with recording off and a fresh one with it on (the order
alternates between repetitions, so neither always runs on a warmer machine),
warms it up, and runs the selected benchmarks of run.py on it. The report gives
the medians, the overhead (the extra time, or the lost throughput, in percent) and
what the traced runs wrote: bytes of trace per process and in all. Wall-clock
figures on a small shared machine move by tens of percent from one cluster to the
next; the CPU row (CPU time of every process of the cluster, driver and workers,
per no-op task of a batch, read from ``/proc``) is the steadier measure of what
recording costs.

run.py calls :func:`run_tracing` and prints the table; this module only measures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import refrpc
import workloads as wl
from refrpc import api

#: Every get is bounded: a lost reply is an error, not a hang.
GET_TIMEOUT = 120.0
#: The benchmarks of run.py measured both ways: latency, throughput, and the object path.
TRACED = ("task_roundtrip_p50", "tasks_batch", "put_get_1kb_p50")
#: This section's own row: CPU per task, where /proc tells it (Linux).
CPU_ROW = "tracing_cpu_per_task"


@dataclass
class Traced:
    name: str  # the section's row: "tracing_" + the benchmark's name
    bench: str  # the benchmark of run.py it runs
    label: str
    unit: str
    higher_is_better: bool
    #: Runs the benchmark on the current cluster; returns run.py's row (``value`` is the figure).
    fn: Callable[[dict[str, int]], dict[str, Any]]


def traced_benchmarks(benches: list[Any]) -> list[Traced]:
    """The rows of this section, from run.py's :class:`Bench` list, and the CPU row."""
    by_name = {b.name: b for b in benches}
    rows = [Traced(f"tracing_{n}", n, by_name[n].label, by_name[n].unit, by_name[n].higher_is_better, by_name[n].fn)
            for n in TRACED if n in by_name]
    if os.path.exists(f"/proc/{os.getpid()}/stat"):
        rows.append(Traced(CPU_ROW, "tasks_batch", "CPU per no-op task, all processes (batch)", "us", False,
                           cpu_per_task))
    return rows


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_task(cfg: dict[str, int]) -> dict[str, Any]:
    """CPU time, in microseconds, all the cluster's processes spend per no-op task
    of a batch of ``cfg["batch"]`` (submitted at once, then gathered)."""
    pids = [os.getpid(), *(p.pid for p in api._ctx.cluster.processes.values())]
    n = cfg["batch"]
    before = [_cpu_seconds(p) for p in pids]
    refrpc.get([wl.noop_task.remote() for _ in range(n)], timeout=GET_TIMEOUT)
    after = [_cpu_seconds(p) for p in pids]
    per_process = [(b - a) / n * 1e6 for a, b in zip(before, after)]
    return {"value": sum(per_process), "per_process_us": per_process}


def overhead(row: Traced, off: float, on: float) -> float:
    """What recording costs, in percent: extra time, or throughput lost."""
    return (off / on - 1) * 100 if row.higher_is_better else (on / off - 1) * 100


def _cluster_run(rows: list[Traced], cfg: dict[str, int], workers: int, trace_dir: str,
                 reset: Callable[[], None]) -> dict[str, float]:
    """One fresh cluster (recording into ``trace_dir``, or off for ``""``): each row's figure."""
    refrpc.init(workers, trace_dir=trace_dir)
    try:
        refrpc.get([wl.noop_task.remote() for _ in range(4 * workers)], timeout=GET_TIMEOUT)  # warm-up
        out = {}
        for row in rows:
            reset()  # run.py's benchmarks keep samples for their p99 rows: measure afresh
            out[row.name] = row.fn(cfg)["value"]
        return out
    finally:
        refrpc.shutdown()


def measure(rows: list[Traced], cfg: dict[str, int], workers: int, reset: Callable[[], None]) -> dict[str, dict[str, Any]]:
    """``trace_reps`` pairs of fresh clusters, recording off and on."""
    runs: list[dict[str, Any]] = []
    for rep in range(cfg["trace_reps"]):
        directory = tempfile.mkdtemp(prefix="refrpc-bench-trace-")
        try:
            pair: dict[str, Any] = {}
            for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                t0 = time.perf_counter()
                pair[mode] = _cluster_run(rows, cfg, workers, directory if mode == "on" else "", reset)
                pair[f"{mode}_wall_s"] = time.perf_counter() - t0
            files = {p.name: p.stat().st_size for p in Path(directory).glob("*.rrtrace")}
            pair["trace_files"] = len(files)
            pair["trace_bytes"] = sum(files.values())
            runs.append(pair)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    results = {}
    for row in rows:
        off = statistics.median(r["off"][row.name] for r in runs)
        on = statistics.median(r["on"][row.name] for r in runs)
        results[row.name] = {
            "value": overhead(row, off, on), "off": off, "on": on, "overhead_pct": overhead(row, off, on),
            "bench": row.bench, "unit": row.unit, "reps": len(runs),
            "trace_bytes": statistics.median(r["trace_bytes"] for r in runs),
            "trace_files": runs[-1]["trace_files"],
            "samples": [{"off": r["off"][row.name], "on": r["on"][row.name]} for r in runs],
        }
    return results


def run_tracing(cfg: dict[str, int], workers: int, only: set[str], benches: list[Any],
                guarded: Callable[[Callable[[], dict[str, Any]], float], dict[str, Any]],
                progress: Callable[[str, dict[str, Any]], None],
                reset: Callable[[], None]) -> tuple[list[Traced], dict[str, dict[str, Any]]]:
    """The section's rows (those whose name or benchmark is in ``only``, if given),
    measured together on the same clusters under one ``guarded``."""
    rows = [r for r in traced_benchmarks(benches) if not only or r.name in only or r.bench in only]
    if not rows:
        return rows, {}
    budget = cfg["timeout_s"] * len(rows)
    measured = guarded(lambda: {"value": 0.0, "rows": measure(rows, cfg, workers, reset)}, budget)
    if refrpc.is_initialized():  # a run that raised left its cluster up
        refrpc.shutdown()
    results: dict[str, dict[str, Any]] = {}
    for row in rows:
        if measured.get("error"):
            results[row.name] = {"label": row.label, "value": None, "error": measured["error"],
                                 "traceback": measured.get("traceback")}
        else:
            results[row.name] = {"label": row.label, **measured["rows"][row.name], "wall_s": measured["wall_s"]}
        progress(row.name, results[row.name])
    return rows, results
