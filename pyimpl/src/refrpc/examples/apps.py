"""The paper's three applications (Figure 3) written against the RefRPC API.

Each application is a plain function of an ``api`` object, so the same program
runs on RefRPC (pass by reference) and on a pass-by-value executor for
comparison (:mod:`refrpc.examples.demo`).
"""

from __future__ import annotations

import numpy as np

import refrpc

# ---------------------------------------------------------------- MapReduce (Fig. 3a)
MAPS, REDUCES, SHARD = 4, 4, 2_000_000  # 4 shards of 2M uint8, 4 partitions each


def _map(i: int, reduces: int):
    data = np.random.default_rng(i).integers(0, 256, size=SHARD, dtype=np.uint8)
    return tuple(data[data % reduces == j] for j in range(reduces))


def _reduce(*parts) -> int:
    return int(sum(int(p.sum(dtype=np.uint64)) for p in parts))


map_shard = refrpc.remote(num_returns=REDUCES)(_map)
reduce_parts = refrpc.remote(_reduce)


def mapreduce_by_ref() -> list[int]:
    # map_out = [map.remote(i) for i in range(m)]
    # out = [reduce.remote(*(map_out[i][j] for i in range(m))) for j in range(r)]
    map_out = [map_shard.remote(i, REDUCES) for i in range(MAPS)]
    out = [reduce_parts.remote(*[map_out[i][j] for i in range(MAPS)]) for j in range(REDUCES)]
    return refrpc.get(out, timeout=120)


# ---------------------------------------------------------------- RL loop (Fig. 3b)
TRAINERS, WEIGHTS = 4, 4_000_000  # 4 MB of float32 weights... as 1M floats


def _train(i: int, weights) -> float:
    # A "rollout" that reads the whole weight vector and returns a small score.
    return float(np.asarray(weights)[i::TRAINERS].mean() + i)


train = refrpc.remote(_train)


def rl_by_ref() -> list[float]:
    # weights_ref = put(weights); refs = [train.remote(i, weights_ref) ...]
    # while refs: ready, refs = wait(refs); result = get(ready)
    weights = np.linspace(0, 1, WEIGHTS // 4, dtype=np.float32)
    w = refrpc.put(weights)
    refs = [train.remote(i, w) for i in range(TRAINERS)]
    results = []
    while refs:
        ready, refs = refrpc.wait(refs, num_returns=1, timeout=120)
        results.append(refrpc.get(ready[0]))
    return sorted(results)


# ---------------------------------------------------------------- parameter server (Fig. 3c)
class _ParamServer:
    def __init__(self, size: int) -> None:
        self.weights = np.zeros(size, dtype=np.float32)

    def get_weights(self):
        return self.weights

    def apply(self, *grads) -> float:
        self.weights = self.weights + sum(np.asarray(g) for g in grads) / len(grads)
        return float(self.weights.sum())


ParamServer = refrpc.remote(_ParamServer)


def _gradient(i: int, weights):
    return np.full(np.asarray(weights).shape, 0.001 * (i + 1), dtype=np.float32)


gradient = refrpc.remote(_gradient)
ROUNDS, PS_SIZE = 3, 1_000_000


def parameter_server_by_ref() -> float:
    # weights_ref = ps.get.remote(); refs = [train.remote(i, weights_ref) ...]; ps.apply.remote(refs)
    ps = ParamServer.remote(PS_SIZE)
    total = 0.0
    for _ in range(ROUNDS):
        w = ps.get_weights.remote()
        grads = [gradient.remote(i, w) for i in range(TRAINERS)]
        total = refrpc.get(ps.apply.remote(*grads), timeout=120)
    ps.kill()
    return round(total, 3)
