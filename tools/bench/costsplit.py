"""Where one no-op task's time goes: each piece of its path measured alone, in this process.

A no-op task ``refrpc.get(noop.remote())`` does, in order: the driver's core
decides (Submit), the SubmitTask is encoded and crosses ZeroMQ, the worker
decodes it and its core decides (RunTask), the executor's thread takes it (one
hand-off), the result is pickled and the worker's core decides (TaskFinished),
the TaskReply is encoded and crosses back, the driver decodes it, its core
decides (GetResult), the waiting program thread wakes (the second hand-off) and
unpickles the result. :func:`measure` times each piece on its own, best of
several rounds (this machine is noisy); run.py prints them beside the measured
round trip, and what the pieces do not add up to is scheduling, system calls
and waiting for the interpreter lock between the processes' threads.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from refrpc import codec
from refrpc.core import IdAllocator, Peer
from refrpc.core import events as ev
from refrpc.core.messages import Envelope, ReturnKind, ReturnValue, SubmitTask, TaskReply
from refrpc.runtime._node import default_config
from refrpc.serialization import deserialize, serialize

#: The pieces, in path order: (key, label).
PIECES = (
    ("core_driver", "driver's core: Submit, TaskReply, Get, DropRef"),
    ("encode_submit", "encode SubmitTask"),
    ("decode_submit", "decode SubmitTask"),
    ("core_worker", "worker's core: SubmitTask, TaskFinished"),
    ("handoffs", "two thread hand-offs (executor queue, waiting caller)"),
    ("pickling", "pickle the result, unpickle it"),
    ("encode_reply", "encode TaskReply"),
    ("decode_reply", "decode TaskReply"),
)


def _best_us(fn: Callable[[], Any], n: int, rounds: int = 5) -> float:
    """Microseconds per call of ``fn``: the best of ``rounds`` runs of ``n`` calls."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


class _Pair:
    """A driver core and a worker core joined directly (no codec, no sockets)."""

    def __init__(self) -> None:
        cfg = default_config()
        self.driver = Peer("driver", 11, "ipc://d", cfg)
        self.worker = Peer("w1", 22, "ipc://w", cfg)
        self.by_address = {"ipc://d": self.driver, "ipc://w": self.worker}
        self.ids = IdAllocator("driver", 11)
        self.sids = iter(range(1, 1 << 62))
        self.inbox: list[tuple[Peer, Envelope]] = []
        self.spent = {id(self.driver): 0.0, id(self.worker): 0.0}
        self.result = serialize(None, ref_hook=lambda o: None)
        self.feed(self.driver, ev.Tick(self.sid(), 1000))
        self.feed(self.worker, ev.Tick(self.sid(), 1000))
        self.feed(self.driver, ev.AddPeer(self.sid(), "w1", "ipc://w", 1))
        self.pump()

    def sid(self) -> str:
        return f"x:{next(self.sids)}"

    def feed(self, peer: Peer, *stimuli: ev.Stimulus) -> list[ev.Instruction]:
        t0 = time.perf_counter()
        out = peer.handle(*stimuli)
        self.spent[id(peer)] += time.perf_counter() - t0
        rest = []
        for ins in out:
            if isinstance(ins, ev.SendFrame):
                self.inbox.append((self.by_address[ins.address], ins.envelope))
            else:
                rest.append(ins)
        return rest

    def pump(self) -> list[tuple[Peer, ev.Instruction]]:
        out = []
        while self.inbox:
            peer, env = self.inbox.pop(0)
            out += [(peer, i) for i in self.feed(peer, ev.Receive(self.sid(), env))]
        return out

    def task(self) -> None:
        task_id, rids = self.ids.task(1)
        self.feed(self.driver, ev.Submit(self.sid(), task_id, "workloads:noop", (), rids, 3, False))
        for peer, ins in self.pump():
            if isinstance(ins, ev.RunTask):
                self.feed(peer, ev.TaskFinished(self.sid(), ins.task_id, ins.attempt, (ev.TaskResult(value=self.result),),
                                                return_ids=ins.return_ids))
        self.pump()
        self.feed(self.driver, ev.Get(self.sid(), 1, rids[0]), ev.DropRef(self.sid(), rids[0]))


def _cores(n: int) -> tuple[float, float]:
    """(driver, worker) core microseconds per task, best of five rounds."""
    best = (float("inf"), float("inf"))
    pair = _Pair()
    for _ in range(200):
        pair.task()
    for _ in range(5):
        pair.spent = {id(pair.driver): 0.0, id(pair.worker): 0.0}
        for i in range(n):
            pair.task()
            if i % 50 == 0:  # time passes: acks and heartbeats go out as in a real run
                now = pair.driver.now_ms + 20
                pair.feed(pair.driver, ev.Tick(pair.sid(), now))
                pair.feed(pair.worker, ev.Tick(pair.sid(), now))
                pair.pump()
        d, w = pair.spent[id(pair.driver)] / n * 1e6, pair.spent[id(pair.worker)] / n * 1e6
        best = (min(best[0], d), min(best[1], w))
    return best


def _handoffs(n: int) -> float:
    """One executor-queue hand-off and one future wake-up, as a task sees them."""
    q: queue.SimpleQueue[Future[None] | None] = queue.SimpleQueue()

    def executor() -> None:
        while (fut := q.get()) is not None:
            fut.set_result(None)

    t = threading.Thread(target=executor, daemon=True)
    t.start()

    def once() -> None:
        fut: Future[None] = Future()
        q.put(fut)
        fut.result()

    try:
        return _best_us(once, n)
    finally:
        q.put(None)
        t.join(5)


def measure(n: int = 2000) -> dict[str, float]:
    """Microseconds per no-op task spent in each piece of its path (see PIECES)."""
    sub = SubmitTask("driver.b.17", "workloads:noop", (), ("driver.b.17.r0",), max_retries=3)
    sub_env = Envelope("driver", 11, "w1", 22, seq=17, ack=16, body=sub)
    sub_frames = codec.encode(sub_env)
    result = serialize(None, ref_hook=lambda o: None)
    rep = TaskReply("driver.b.17", 1, (ReturnValue("driver.b.17.r0", ReturnKind.INLINE, result),))
    rep_env = Envelope("w1", 22, "driver", 11, seq=17, ack=17, body=rep)
    rep_frames = codec.encode(rep_env)
    core_driver, core_worker = _cores(n)
    return {
        "core_driver": core_driver,
        "encode_submit": _best_us(lambda: codec.encode(sub_env), n),
        "decode_submit": _best_us(lambda: codec.decode(sub_frames), n),
        "core_worker": core_worker,
        "handoffs": _handoffs(n),
        "pickling": _best_us(lambda: deserialize(serialize(None, ref_hook=lambda o: None), ref_factory=lambda d: d), n),
        "encode_reply": _best_us(lambda: codec.encode(rep_env), n),
        "decode_reply": _best_us(lambda: codec.decode(rep_frames), n),
    }


def print_split(split: dict[str, Any], roundtrip_us: float | None, floor_us: float | None) -> None:
    """The section of run.py's report: each piece, their sum, and the rest of the round trip."""
    print("\nWhere a no-op task's time goes (each piece alone in one process, best of 5; the round trip and")
    print("the ZeroMQ floor are this run's medians)")
    if split.get("error"):
        print(f"  error: {split['error']}")
        return
    total = 0.0
    for key, label in PIECES:
        total += split[key]
        print(f"  {label:<58} {split[key]:>9.1f} us")
    print(f"  {'sum of the pieces':<58} {total:>9.1f} us")
    if floor_us is not None:
        print(f"  {'ZeroMQ round trip between two processes (floor)':<58} {floor_us:>9.1f} us")
    if roundtrip_us is not None:
        rest = roundtrip_us - total - (floor_us or 0.0)
        print(f"  {'measured no-op task round trip, p50':<58} {roundtrip_us:>9.1f} us")
        print(f"  {'the rest: scheduling, system calls, interpreter lock':<58} {rest:>9.1f} us")
