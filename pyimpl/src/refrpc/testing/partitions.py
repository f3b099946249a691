"""Partitions and host loss on a multi-host bed, Jepsen-style: seeded runs that
each check right values or typed errors, no hang, and nothing leaked after healing.

    python -m refrpc.testing.partitions --runs 50 [--seed S] [--kinds short,long,...]

A run is chosen by its seed: a *nemesis* (one fault, with its hosts and timing)
and a workload a driver submits while the fault happens. The cluster: h1 runs the
head and a worker, h2 and h3 a worker each, h4 the driver. The kinds of fault:

``short``   both directions between two hosts cut for less than the detection
            timeout (1.5 s: 6 heartbeats of 250 ms, LIV-003), then healed;
``long``    the same for longer than the detection timeout;
``oneway``  one direction only, for longer than the detection timeout;
``lose``    a worker host lost for good (every process killed, off the network);
            it comes back as a new machine after the run;
``head``    the head's host cut off from every other host, for longer than the
            detection timeout;
``flap``    a link cut and healed again and again, each cut shorter than the
            detection timeout;
``lossy``   a host's link loses 2% to 10% of its packets each way (chosen at
            random) for a few seconds, then is clean again (needs ``nft``);
``slow``    a host's link holds every packet back 50 to 500 ms each way for a
            few seconds, then is fast again (needs ``iptables``).

Each run checks (the run's *problems* otherwise):

1. every task of the workload ends, within a bound, with its right value or a
   typed error (a :class:`refrpc.RefRPCError` other than a get timeout; a task
   error whose cause is one) -- never a hang, never a wrong value;
2. after healing, the cluster works again: the head knows a worker on every
   worker host (workers cut off from the head came back as new incarnations,
   CLU-014, CLU-016; a lost host came back as a new machine) and a driver's
   tasks succeed (a driver that lost the head is replaced by a new one, as a
   program would join again, CLU-017);
3. nothing leaked: once the driver dropped its refs, every live driver and
   worker reports no owned or borrowed object (INT-006), and no host's
   /dev/shm holds a segment but the reuse pools of live stores.

A failed run prints a witness: the seed, the fault, what each step did and
when, and the last lines each process logged; its traces (TRC-011) are kept.
The cluster is reused from run to run while it is whole (so faults meet the
state earlier runs left) and rebuilt where a run broke it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from .hostjobs import BedCluster
from .hosts import HostBed

#: ``lossy`` needs nftables (HostBed.degrade) and ``slow`` iptables (HostBed.delay);
#: a kind whose tool is missing is left out.
KINDS = (("short", "long", "oneway", "lose", "head", "flap") + (("lossy",) if shutil.which("nft") else ())
         + (("slow",) if shutil.which("iptables") else ()))
#: The detection timeout of the default settings (LIV-003): 6 x 250 ms.
DETECTION_S = 1.5
WORKER_HOSTS = ("h1", "h2", "h3")
DRIVER_HOST = "h4"
#: No step may take longer than this (a hang otherwise).
BOUND_S = 90.0


@dataclass
class Nemesis:
    """The fault of one run."""

    kind: str
    a: str = ""
    b: str = ""
    start_s: float = 0.0
    duration_s: float = 0.0
    #: ``flap``: how many cuts, each ``duration_s`` long, with as long a pause between.
    times: int = 1
    #: ``lossy``: the share of packets lost each way.
    loss: float = 0.0
    #: ``slow``: how long each packet is held back each way, in seconds.
    delay_s: float = 0.0

    def __str__(self) -> str:
        what = {"short": f"cut {self.a}<->{self.b}", "long": f"cut {self.a}<->{self.b}",
                "oneway": f"cut {self.a}->{self.b}", "lose": f"lose {self.a}",
                "head": "cut h1 off from every host", "flap": f"cut {self.a}<->{self.b} {self.times} times",
                "lossy": f"{self.a}'s link loses {self.loss:.0%}",
                "slow": f"{self.a}'s link holds packets {self.delay_s * 1000:.0f} ms"}[self.kind]
        return f"{self.kind}: {what} at +{self.start_s:.2f} s" + (f" for {self.duration_s:.2f} s" if self.duration_s else "")


def nemesis_for(seed: int, kinds: tuple[str, ...] = KINDS) -> Nemesis:
    """The fault a seed chooses (the same seed, the same fault)."""
    rng = random.Random(seed)
    kind = kinds[seed % len(kinds)]
    hosts = list(WORKER_HOSTS) + [DRIVER_HOST]
    start = round(rng.uniform(0.0, 0.6), 2)
    if kind == "lose":
        return Nemesis(kind, rng.choice(["h2", "h3"]), "", start)
    if kind == "head":
        return Nemesis(kind, "h1", "", start, round(rng.uniform(DETECTION_S + 1.0, DETECTION_S + 2.5), 2))
    if kind == "lossy":
        return Nemesis(kind, rng.choice(hosts), "", start, round(rng.uniform(2.0, 4.0), 2),
                       loss=round(rng.uniform(0.02, 0.10), 3))
    if kind == "slow":
        return Nemesis(kind, rng.choice(hosts), "", start, round(rng.uniform(2.0, 4.0), 2),
                       delay_s=round(rng.uniform(0.05, 0.5), 3))
    if kind == "flap":
        a, b = rng.sample(hosts, 2)
        return Nemesis(kind, a, b, start, round(rng.uniform(0.2, DETECTION_S * 0.4), 2), rng.randint(3, 6))
    a, b = rng.sample(hosts, 2)
    if kind == "short":
        return Nemesis(kind, a, b, start, round(rng.uniform(0.2, DETECTION_S * 0.5), 2))
    return Nemesis(kind, a, b, start, round(rng.uniform(DETECTION_S + 1.0, DETECTION_S + 2.5), 2))


@dataclass
class Run:
    """One run's outcome: ``problems`` is empty when it passed."""

    seed: int
    nemesis: Nemesis
    problems: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)
    took_s: float = 0.0
    witness: str = ""


class Jepsen:
    """A bed and a cluster on it, and the runs made on them (a context manager)."""

    def __init__(self, keep_traces: str | None = None) -> None:
        self.bed = HostBed(4)
        self.cluster: BedCluster | None = None
        self.driver: Any = None
        self.keep = keep_traces or os.path.join(tempfile.gettempdir(), f"refrpc-partitions-{os.getpid()}")
        self._t0 = time.monotonic()
        self._steps: list[str] = []

    def __enter__(self) -> Jepsen:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
        self.bed.close()

    # ------------------------------------------------------------------ the cluster
    def _step(self, text: str) -> None:
        self._steps.append(f"+{time.monotonic() - self._t0:7.2f} s  {text}")

    def _traces(self) -> str:
        return os.path.join(self.bed.directory, "traces")

    def _build(self) -> None:
        """A new cluster (the old one, if any, stopped first)."""
        if self.cluster is not None:
            self.cluster.close()
        for h in self.bed.hosts:
            self.bed.revive(h.name)
        os.makedirs(self._traces(), exist_ok=True)
        c = BedCluster(self.bed, {"REFRPC_TRACE_DIR": self._traces()})
        self.cluster = c
        c.start_head("h1", 1, {"h1": 1})
        c.join("h2", 1, {"h2": 1})
        c.join("h3", 1, {"h3": 1})
        c.wait_workers({"h1": 1, "h2": 1, "h3": 1})
        self.driver = c.driver(DRIVER_HOST)
        self._step("cluster started")

    def _ensure(self) -> None:
        """The whole cluster, as at the start: rebuilt where a run broke it."""
        c = self.cluster
        if c is None or c.head is None or c.head.poll() is not None:
            self._build()
            return
        for name in ("h2", "h3"):
            if self.bed.host(name).lost:
                self.bed.revive(name)
                c.join(name, 1, {name: 1})
                self._step(f"{name} came back as a new machine and joined")
            elif c.joined[name].poll() is not None:
                c.join(name, 1, {name: 1})
                self._step(f"workers on {name} started again")
        try:
            c.wait_workers({"h1": 1, "h2": 1, "h3": 1}, timeout=60)
        except (AssertionError, RuntimeError):
            self._step("the cluster did not come back whole: rebuilt")
            self._build()
            return
        if self.driver is not None and self.driver.proc.poll() is None:
            try:
                view = self.driver("view", bound=BOUND_S)
            except RuntimeError as exc:  # declared dead by the cluster (LIV-005): it stopped
                self._step(f"the driver cannot go on: {exc}")
                view = {"fenced": ["head"]}
            if "head" in view["fenced"]:
                # A driver that lost its head has lost the cluster (CLU-017): the
                # program starts again with a new refrpc.init.
                self._step("the driver lost the head: a new driver joins instead")
                self.driver.close(5)
                self.driver = None
        if self.driver is None or self.driver.proc.poll() is not None:
            self.driver = c.driver(DRIVER_HOST)
            self._step("a new driver joined")

    # ------------------------------------------------------------------ one run
    def run(self, seed: int, kinds: tuple[str, ...] = KINDS) -> Run:
        nemesis = nemesis_for(seed, kinds)
        result = Run(seed, nemesis)
        self._steps = []
        self._t0 = time.monotonic()
        started = time.monotonic()
        try:
            self._ensure()
            self._run(seed, nemesis, result)
        except Exception as exc:  # a failure of the harness or a hang: the run fails
            result.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.bed.heal()
            for h in self.bed.hosts:
                if not h.lost:
                    self.bed.rejoin(h.name)
        result.took_s = round(time.monotonic() - started, 2)
        result.steps = list(self._steps)
        if result.problems:
            result.witness = self._witness(result)
        return result

    def _run(self, seed: int, nemesis: Nemesis, result: Run) -> None:
        c, d, bed = self.cluster, self.driver, self.bed
        assert c is not None and d is not None
        rng = random.Random(seed * 7919 + 1)
        workload = {"where": rng.randint(4, 10), "delay": round(rng.uniform(0.05, 0.3), 2),
                    "data": [rng.choice([50_000, 300_000, 1_000_000]) for _ in range(rng.randint(1, 3))],
                    "nested": rng.randint(1, 2), "actor_calls": rng.choice([0, 3, 6]), "timeout": 60}
        self._step(f"workload {json.dumps(workload)}")
        d.send("mix", **workload)
        time.sleep(nemesis.start_s)
        self._step(f"nemesis: {nemesis}")
        if nemesis.kind in ("short", "long"):
            bed.cut(nemesis.a, nemesis.b)
        elif nemesis.kind == "oneway":
            bed.cut(nemesis.a, nemesis.b, both=False)
        elif nemesis.kind == "head":
            bed.partition(["h1"], ["h2", "h3", "h4"])
        elif nemesis.kind == "lose":
            bed.lose(nemesis.a)
        elif nemesis.kind == "lossy":
            bed.degrade(nemesis.a, nemesis.loss)
        elif nemesis.kind == "slow":
            bed.delay(nemesis.a, nemesis.delay_s)
        elif nemesis.kind == "flap":
            for _ in range(nemesis.times - 1):
                bed.cut(nemesis.a, nemesis.b)
                time.sleep(nemesis.duration_s)
                bed.heal()
                time.sleep(nemesis.duration_s)
            bed.cut(nemesis.a, nemesis.b)
        if nemesis.duration_s:
            time.sleep(nemesis.duration_s)
            bed.heal()
            if nemesis.kind == "lossy":
                bed.degrade(nemesis.a, 0)
            if nemesis.kind == "slow":
                bed.delay(nemesis.a, 0)
            self._step("healed")
        answer = d.receive(BOUND_S)
        self._step(f"workload answered: {json.dumps(answer)[:600]}")
        if answer.get("ok"):
            result.outcomes = answer["result"]["items"]
            result.problems += answer["result"]["problems"]
        elif "stopped" in answer.get("error", "") or "not initialized" in answer.get("error", ""):
            self._step("the driver was declared dead by the cluster (LIV-005)")  # a typed end for all its work
        else:
            result.problems.append(f"the workload failed in the driver: {answer.get('error')}")
        # After healing: whole again, and working (a cut-off driver or worker is replaced).
        self._ensure()
        check = self.driver("where", n=6, timeout=60, bound=BOUND_S)
        self._step(f"after healing: {check}")
        if check["errors"] or not set(check["values"]) <= set(WORKER_HOSTS):
            # A worker fenced by the last fault may still be on its way out: once more.
            self._ensure()
            check = self.driver("where", n=6, timeout=60, bound=BOUND_S)
            self._step(f"after healing, again: {check}")
            if check["errors"] or not set(check["values"]) <= set(WORKER_HOSTS):
                result.problems.append(f"after healing, tasks fail: {check}")
        self._check_leaks(result)

    def _check_leaks(self, result: Run) -> None:
        d = self.driver
        end = time.monotonic() + 30
        tables: dict[str, Any] = {}
        while time.monotonic() < end:
            tables = d("tables", timeout=10, bound=BOUND_S)
            if not any(tables.values()):
                break
            time.sleep(0.2)
        self._step(f"tables: {tables}")
        if any(tables.values()):
            result.problems.append(f"objects left in tables after the workload's refs were dropped: {tables}")
        # With no object left anywhere, no host may hold a segment (copies go with
        # their object, OBJ-*; a dead process's with it, LOC-004), but the pool a
        # live store keeps to reuse freed segments (``.pool``, docs/memory.md) and the
        # ledger the live processes of a host share their limit through (``.ledger``,
        # OBJ-065: it holds no object, and the host's last process removes it).
        left: dict[str, list[str]] = {}
        end = time.monotonic() + 10
        while time.monotonic() < end:
            left = {h.name: names for h in self.bed.hosts if not h.lost
                    for names in [[n for n in self.bed.shm(h.name)
                                   if not (n.endswith((".pool", ".ledger")) and _writer_alive(n))]]
                    if names}
            if not left:
                break
            time.sleep(0.2)
        if left and not any(tables.values()):
            for host, names in left.items():
                gone = [n for n in names if not _writer_alive(n)]
                result.problems.append(f"/dev/shm on {host} holds {len(names)} segment(s) with no object left "
                                       f"({len(gone)} of processes that are gone): {names[:4]}")


    def _witness(self, result: Run) -> str:
        # Every trace of the bed so far: the processes of this run started in earlier ones.
        kept = os.path.join(self.keep, f"seed-{result.seed}")
        shutil.rmtree(kept, ignore_errors=True)
        try:
            shutil.copytree(self._traces(), kept)
        except OSError:
            kept = "(no traces)"
        lines = [f"partition run FAILED: seed {result.seed}, {result.nemesis}",
                 f"rerun: python -m refrpc.testing.partitions --seed {result.seed} --runs 1",
                 "problems:"] + [f"  - {p}" for p in result.problems] + ["steps:"] + [f"  {s}" for s in result.steps]
        c = self.cluster
        if c is not None:
            for name, log in c.logs.items():
                lines.append(f"last lines of {name}:")
                lines += [f"  | {line.rstrip()}" for line in log[-12:]]
            for a in c.agents:
                lines.append(f"last lines of the driver on {a.host} ({a.peer}):")
                lines += [f"  | {line.rstrip()}" for line in a.stderr[-12:]]
        lines.append(f"traces of every process (TRC-011): {kept}  (inspect with `refrpc-trace {kept}`)")
        return "\n".join(lines)


def _writer_alive(segment: str) -> bool:
    """Whether the process that made ``segment``'s namespace (``refrpc-rrPIDx..``,
    ``refrpc-headPID``, ``refrpc-drvPID``) still runs."""
    import re

    found = re.match(r"refrpc-(?:rr|head|drv)(\d+)", segment)
    if not found:
        return True
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def run_many(seeds: list[int], kinds: tuple[str, ...] = KINDS, out: Any = sys.stdout,
             verbose: bool = False) -> list[Run]:
    """Run each seed on one bed; print a line per run and the witness of each failure."""
    runs = []
    with Jepsen() as j:
        for seed in seeds:
            r = j.run(seed, kinds)
            runs.append(r)
            print(f"seed {seed:5d}  {'ok  ' if not r.problems else 'FAIL'}  {r.took_s:6.2f} s  {r.nemesis}",
                  file=out, flush=True)
            if r.problems:
                print(r.witness, file=out, flush=True)
            elif verbose:
                print("\n".join(f"    {step}" for step in r.steps), file=out, flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refrpc.testing.partitions", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1, help="the first seed (each run the next)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"which faults (of {', '.join(KINDS)})")
    ap.add_argument("--verbose", action="store_true", help="print the steps of every run, not only of failed ones")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    from .hosts import unavailable

    why = unavailable()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    runs = run_many(list(range(args.seed, args.seed + args.runs)), kinds, verbose=args.verbose)
    failed = [r.seed for r in runs if r.problems]
    print(f"{len(runs) - len(failed)} of {len(runs)} runs passed" + (f"; failed seeds: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
