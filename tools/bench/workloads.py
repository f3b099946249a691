"""What the benchmarks run remotely: RefRPC remote functions and actors, and the
plain functions the pass-by-value baselines (multiprocessing) run.

Workers import this module by name (``workloads:noop``): tools/bench/run.py puts
this directory on ``sys.path`` and the worker processes inherit it. Each plain
function is also wrapped as a remote function (``*_task``); a worker resolves the
wrapper's name to the plain function, so multiprocessing can pickle the plain
one by reference and RefRPC can call the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import refrpc

MB = 1_000_000


# ---------------------------------------------------------------- plain functions
def noop() -> None:
    return None


def make_array(nbytes: int) -> np.ndarray:
    """``nbytes`` of float64 ones."""
    return np.ones(nbytes // 8)


def array_sum(array: np.ndarray) -> float:
    return float(array.sum())


def map_partitions(seed: int, partitions: int, nbytes: int) -> tuple[np.ndarray, ...]:
    """One map of the MapReduce: ``partitions`` arrays of ``nbytes`` each."""
    n = nbytes // 8
    return tuple(np.full(n, float(seed * partitions + p)) for p in range(partitions))


def reduce_partitions(*parts: np.ndarray) -> float:
    """One reduce: the sum of every partition it was given."""
    return float(sum(float(p.sum()) for p in parts))


def expected_reduce(maps: int, partitions: int, nbytes: int, p: int) -> float:
    """What reduce ``p`` must return (the benchmark checks its answers)."""
    return float(sum((m * partitions + p) * (nbytes // 8) for m in range(maps)))


# ---------------------------------------------------------------- remote versions
noop_task = refrpc.remote(noop)


@refrpc.remote
def sleep_s(seconds: float) -> float:
    """A task that only takes time (the long task of the dispatch benchmark)."""
    import time

    time.sleep(seconds)
    return seconds
make_array_task = refrpc.remote(make_array)
array_sum_task = refrpc.remote(array_sum)
reduce_task = refrpc.remote(reduce_partitions)


def map_task(partitions: int) -> Any:
    """The map as a remote function with ``partitions`` returns."""
    return refrpc.remote(map_partitions).options(num_returns=partitions)


@refrpc.remote
class Counter:
    """An actor with a cheap method: what one actor call costs."""

    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def ping(self) -> None:
        return None
