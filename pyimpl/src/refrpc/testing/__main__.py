"""``python -m refrpc.testing --seeds N``: run N seeded fault simulations per workload."""

from __future__ import annotations

import argparse
import sys
import time

from ._runner import run_random
from ._sim import Faults, SimFailure
from ._workloads import WORKLOADS

PROFILES = {
    "drop-dup-reorder": Faults(drop=0.1, duplicate=0.1),
    "kill-one-worker": Faults(drop=0.05, duplicate=0.05, kills=1),
    "kill-two-silent": Faults(kills=2, supervisor=False),
    "kill-owner": Faults(kills=1, kill_driver=True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="refrpc-sim", description=__doc__)
    ap.add_argument("--seeds", type=int, default=1000, help="seeds per workload and fault profile")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--workload", action="append", choices=sorted(WORKLOADS), help="only these workloads")
    ap.add_argument("--profile", action="append", choices=sorted(PROFILES), help="only these fault profiles")
    ap.add_argument("--peers", type=int, default=4)
    args = ap.parse_args(argv)
    workloads = args.workload or sorted(WORKLOADS)
    profiles = args.profile or sorted(PROFILES)
    total = len(workloads) * len(profiles) * args.seeds
    done = failed = 0
    start = time.monotonic()
    for profile in profiles:
        for workload in workloads:
            for seed in range(args.start, args.start + args.seeds):
                try:
                    run_random(workload, seed, peers=args.peers, faults=PROFILES[profile])
                except SimFailure as exc:
                    failed += 1
                    print(f"\nFAILED {workload} [{profile}] seed {seed}\n{exc}\n", file=sys.stderr)
                done += 1
                if done % 200 == 0 or done == total:
                    print(f"\r{done}/{total} runs, {failed} failed, {time.monotonic() - start:.0f}s", end="", flush=True)
    print()
    print(f"{done - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
