"""The benchmark suite runs end to end (tools/bench/run.py --quick).

Only that it runs and reports a number for every benchmark: timings are
reported, never checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numpy")

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "tools" / "bench" / "run.py"

#: Every floor/baseline measurement and every RefRPC benchmark the suite reports.
FLOOR = [
    "zmq_rtt_p50", "zmq_rtt_p99", "zmq_pair_p50", "zmq_pipelined", "zmq_stream_1mib", "zmq_stream_big",
    "zmq_sum_big", "zmq_make_big", "zmq_chain_big", "memcpy_big", "memcpy_warm_big", "sum_big_local", "pickle_1kb",
    "mp_roundtrip_p50", "mp_tasks", "mp_sum_big", "mp_mapreduce", "mp_start",
]
BENCHMARKS = [
    "cluster_start", "task_roundtrip_p50", "task_roundtrip_p99", "tasks_batch", "actor_sync_p50", "actor_async",
    "put_get_1kb_p50", "put_big", "get_big_task", "get_big_driver", "get_big_from_worker", "chain_big", "mapreduce",
    "wait_loop", "short_behind_long", "task_cost_split", "long_driver_rss",
]
#: The recovery section: the same workloads with one worker killed mid-run.
RECOVERY = ["recovery_chain", "recovery_mapreduce"]
#: The tracing section: the same benchmarks with trace recording off and on.
TRACING = ["tracing_task_roundtrip_p50", "tracing_tasks_batch", "tracing_put_get_1kb_p50"]
if sys.platform.startswith("linux"):  # the CPU row reads /proc
    TRACING.append("tracing_cpu_per_task")


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.timeout(300)
def test_quick_benchmark_run_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "pyimpl" / "src"), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["machine"]["cpus"] and report["machine"]["pyzmq"] and report["date"]
    for section, names in (("floor", FLOOR), ("benchmarks", BENCHMARKS)):
        for name in names:
            row = report[section].get(name)
            assert row is not None, f"{section}.{name} missing"
            assert row.get("error") is None and _number(row.get("value")), (name, row.get("error"), row.get("traceback"))
    assert report["benchmarks"]["get_big_driver"]["zero_copy"] in (True, False)
    split = report["benchmarks"]["task_cost_split"]
    assert all(_number(split[k]) and split[k] > 0 for k in ("core_driver", "core_worker", "encode_submit",
                                                             "decode_submit", "encode_reply", "decode_reply",
                                                             "handoffs", "pickling")), split
    long_run = report["benchmarks"]["long_driver_rss"]
    assert long_run["rss_first_batch_mb"] > 0 and long_run["rss_last_batch_mb"] > 0 and long_run["tasks"] > 0, long_run
    assert "Where a no-op task's time goes" in proc.stdout
    for name in RECOVERY:
        row = report["recovery"].get(name)
        assert row is not None, f"recovery.{name} missing"
        assert row.get("error") is None, (name, row.get("error"), row.get("traceback"))
        assert all(_number(row.get(k)) for k in ("value", "no_failure_ms", "one_killed_ms", "recovery_ms")), row
        # Each killed run had the right answers (checked by the bench) and its victim was declared dead.
        assert row["runs"] and all(r["declared_dead"] for r in row["runs"]), row["runs"]
    for name in TRACING:
        row = report["tracing"].get(name)
        assert row is not None, f"tracing.{name} missing"
        assert row.get("error") is None, (name, row.get("error"), row.get("traceback"))
        assert all(_number(row.get(k)) for k in ("off", "on", "overhead_pct")), row
        # The traced clusters did record: a file per process (driver and workers).
        assert row["trace_files"] >= 3 and row["trace_bytes"] > 0, row


@pytest.mark.timeout(200)
def test_memory_benchmarks_run_and_leave_nothing_behind(tmp_path):
    # tools/bench/pressure.py --quick: every row has its figure and its floor; the
    # working set 3x the store limits spilled, got the right answer (checked by the
    # bench) and left nothing in /dev/shm or the spill directory.
    out = tmp_path / "pressure.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "pyimpl" / "src"), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench" / "pressure.py"), "--quick", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads(out.read_text())["results"]
    for name in ("put_big", "chain_big", "rl_broadcast", "param_server", "working_set_3x"):
        row = results[name]
        assert row.get("error") is None and _number(row.get("value_ms")) and _number(row.get("floor_ms")), (name, row)
    ws = results["working_set_3x"]
    assert all(r["bytes_spilled"] > 0 for r in ws["spilling"]) and all(r["bytes_spilled"] == 0 for r in ws["in_memory"])
    assert ws["left_behind"] == [] and all(r["spill_dir_removed"] for r in ws["spilling"] + ws["in_memory"])
