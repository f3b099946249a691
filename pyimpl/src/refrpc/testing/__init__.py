"""Public test helpers: a deterministic simulated RefRPC cluster.

Many :class:`refrpc.core.Peer` instances talk over an in-memory network whose
every choice (delivery order, drops, duplicates, time, crashes) comes from a
seeded or scripted chooser, so any failure replays exactly from its seed.
"""

from ._checks import liveness_violations, safety_violations
from ._runner import Exploration, RunResult, explore, replay, run, run_random, shrink
from ._sim import Cluster, Driver, Faults, RandomChooser, SimFailure
from ._wait import wait_until
from ._workloads import WORKLOADS

__all__ = [
    "WORKLOADS",
    "Cluster",
    "Driver",
    "Exploration",
    "Faults",
    "RandomChooser",
    "RunResult",
    "SimFailure",
    "explore",
    "liveness_violations",
    "run",
    "replay",
    "run_random",
    "shrink",
    "wait_until",
    "safety_violations",
]
