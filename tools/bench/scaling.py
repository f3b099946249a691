#!/usr/bin/env python3
"""How RefRPC scales with hosts: no-op task throughput and a MapReduce on 1, 2, 4 and 8
hosts of a multi-host test bed (:mod:`refrpc.testing.hosts`: network namespaces, each
with its own network stack, /dev/shm and hostname).

One command (as root, on Linux; ``make bench-hosts``)::

    python tools/bench/scaling.py [--hosts 1,2,4,8] [--workers-per-host 1] [--tasks 2000]
                                  [--reps 3] [--json out.json] [--plot scaling.png]

For each size it starts a bed, ``refrpc start --head`` on h1 and ``refrpc start
--address`` on the other hosts (``--workers-per-host`` workers each), and a driver
program on h1 that joins the cluster and measures, best of ``--reps``:

- **no-op tasks**: ``--tasks`` no-op tasks submitted, then gathered (tasks/s);
- **MapReduce**: 16 maps, each making 8 partitions of 1 MiB (numpy), and 8 reduces,
  each summing one partition of every map: 128 MiB moved between the maps' and the
  reduces' hosts (ms), with its result checked against the same work done in the
  driver's process (the floor, printed beside it).

Every host's processes share this machine's cores, so on a machine with fewer cores
than workers the table shows what more hosts *cost* (membership, placement, fetches
across network stacks), not a speed-up. The figures say which machine gave them
(cores, CPU model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("REFRPC_SRC") or str(HERE.parents[1] / "pyimpl" / "src"))

from refrpc.testing.hostjobs import BedCluster  # noqa: E402
from refrpc.testing.hosts import HostBed, unavailable  # noqa: E402

#: The program each size runs on h1 (functions defined here travel by value).
DRIVER = r'''
import json, sys, time
import numpy as np
import refrpc

TASKS, REPS = int(sys.argv[2]), int(sys.argv[3])
MAPS, PARTS, PART = 16, 8, 1 << 20

@refrpc.remote
def noop():
    return None

N = PART // 8  # int64 values in a partition

def make(seed):
    data = np.random.default_rng(seed).integers(0, 1000, PARTS * N, dtype=np.int64)
    return tuple(data[i * N:(i + 1) * N].copy() for i in range(PARTS))

@refrpc.remote
def mapper(seed):
    return make(seed)

@refrpc.remote
def reducer(*parts):
    return int(sum(int(p.sum()) for p in parts))

def local_mapreduce():
    t0 = time.perf_counter()
    maps = [make(s) for s in range(MAPS)]
    total = sum(int(sum(int(m[i].sum()) for m in maps)) for i in range(PARTS))
    return time.perf_counter() - t0, total

refrpc.init(address=sys.argv[1], connect_timeout=30)
workers = [n for n in refrpc.nodes() if n["role"] == "worker"]
refrpc.get([noop.remote() for _ in range(200)], timeout=120)  # warm: sessions, functions shipped
rates = []
for _ in range(REPS):
    t0 = time.perf_counter()
    refrpc.get([noop.remote() for _ in range(TASKS)], timeout=600)
    rates.append(TASKS / (time.perf_counter() - t0))
floor_s, want = min((local_mapreduce() for _ in range(REPS)), key=lambda r: r[0])
times = []
for _ in range(REPS):
    t0 = time.perf_counter()
    maps = [mapper.options(num_returns=PARTS).remote(s) for s in range(MAPS)]
    got = sum(refrpc.get([reducer.remote(*[m[i] for m in maps]) for i in range(PARTS)], timeout=600))
    times.append(time.perf_counter() - t0)
    assert got == want, (got, want)
    del maps
print(json.dumps({"workers": len(workers), "hosts": sorted({n["host"] for n in workers}),
                  "tasks_per_s": max(rates), "mapreduce_s": min(times), "mapreduce_floor_s": floor_s}))
refrpc.shutdown()
'''


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()} cores{', ' + model if model else ''}, {platform.system()} {platform.release()}"


def measure(hosts: int, per_host: int, tasks: int, reps: int) -> dict:
    with HostBed(hosts, shm_size="1g") as bed:
        cluster = BedCluster(bed)
        try:
            address = cluster.start_head("h1", workers=per_host)
            for k in range(2, hosts + 1):
                cluster.join(f"h{k}", workers=per_host)
            cluster.wait_workers({f"h{k}": per_host for k in range(1, hosts + 1)}, timeout=120)
            done = bed.run("h1", [sys.executable, "-c", DRIVER, address, str(tasks), str(reps)],
                           timeout=900, env=cluster._env())
            if done.returncode != 0:
                raise RuntimeError(f"the driver on {hosts} hosts failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            cluster.close()
    row["leftovers"] = bed.leftovers()  # after the bed closed: namespaces, processes, files
    return row


def plot(rows: list[dict], path: str, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hosts = [r["hosts_n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(hosts, [r["tasks_per_s"] for r in rows], marker="o")
    left.set(xlabel="hosts", ylabel="no-op tasks/s", title="task throughput", xticks=hosts)
    left.set_ylim(bottom=0)
    right.plot(hosts, [r["mapreduce_s"] * 1000 for r in rows], marker="o", label="RefRPC")
    right.plot(hosts, [r["mapreduce_floor_s"] * 1000 for r in rows], linestyle="--", label="one process")
    right.set(xlabel="hosts", ylabel="ms", title="MapReduce, 128 MiB shuffled", xticks=hosts)
    right.set_ylim(bottom=0)
    right.legend()
    fig.suptitle(where, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,2,4,8", help="bed sizes to measure (comma-separated)")
    ap.add_argument("--workers-per-host", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--plot", help="write a plot (PNG) here")
    args = ap.parse_args(argv)
    why = unavailable()
    if why:
        print(f"scaling: cannot build a host bed here: {why}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.hosts.split(",") if s]
    where = machine()
    print(f"machine: {where}; {args.workers_per_host} worker(s) per host; best of {args.reps}")
    print(f"{'hosts':>5} {'workers':>7} {'no-op tasks/s':>14} {'MapReduce ms':>13} {'one process ms':>15} {'ratio':>6}")
    rows = []
    for n in sizes:
        row = measure(n, args.workers_per_host, args.tasks, args.reps)
        row["hosts_n"] = n
        rows.append(row)
        ratio = row["mapreduce_s"] / row["mapreduce_floor_s"]
        print(f"{n:>5} {row['workers']:>7} {row['tasks_per_s']:>14,.0f} {row['mapreduce_s'] * 1000:>13.1f} "
              f"{row['mapreduce_floor_s'] * 1000:>15.1f} {ratio:>5.2f}x"
              + (f"  LEFTOVERS: {row['leftovers']}" if row["leftovers"] else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": where, "date": time.strftime("%Y-%m-%d"), "rows": rows},
                                              indent=2))
    if args.plot:
        plot(rows, args.plot, where)
        print(f"plot: {args.plot}")
    return 1 if any(r["leftovers"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
