"""Public test helpers: a deterministic simulated RefRPC cluster.

Many :class:`refrpc.core.Peer` instances talk over an in-memory network whose
every choice (delivery order, drops, duplicates, time, crashes) comes from a
seeded or scripted chooser, so any failure replays exactly from its seed.

:class:`MemoryCluster` runs real runtime nodes (loop threads, locks, executors)
on an in-memory network in this process, without sockets.

For real processes: :func:`wait_until` waits on a condition with a bound, and
:func:`set_faults` / :func:`faults_report` drop, duplicate or delay chosen
messages of a running cluster's peers on their real sockets
(:class:`refrpc.transport.FaultRule`); :mod:`refrpc.testing.hosts` runs them on
several hosts made of Linux namespaces (own network, /dev/shm and hostname),
with shaped, cut and healed links.
"""

from ._checks import liveness_violations, safety_violations
from ._faults import faults_report, set_faults
from ._memory_cluster import MemoryCluster
from ._runner import Exploration, RunResult, explore, replay, run, run_random, shrink
from ._sim import Cluster, Driver, Faults, RandomChooser, SimFailure
from ._wait import main_thread_asleep, wait_until
from ._workloads import WORKLOADS

__all__ = [
    "WORKLOADS",
    "Cluster",
    "Driver",
    "Exploration",
    "Faults",
    "MemoryCluster",
    "RandomChooser",
    "RunResult",
    "SimFailure",
    "explore",
    "faults_report",
    "liveness_violations",
    "run",
    "replay",
    "run_random",
    "set_faults",
    "shrink",
    "main_thread_asleep",
    "wait_until",
    "safety_violations",
]
