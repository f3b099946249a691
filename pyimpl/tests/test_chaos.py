"""Chaos on real processes: workers are killed (``kill -9``) at random moments while
programs run, and every program still ends with the right answer or the typed error
the specification prescribes, never a wrong value, an untyped error or a hang.

Each workload runs trials on local clusters. A trial draws its shape, its retry
budget, its victim and the moment of the kill from ``random.Random(seed)``; the
seed is in every failure message, so a failing trial can be run again
(``REFRPC_CHAOS_SEED=<base seed>``; ``REFRPC_CHAOS_GROUPS=<n>`` runs more clusters
per workload). Timing still differs between runs: a seed fixes what happens, not
exactly when.

What a trial may end with (the spec's rules, per value the program reads):

* retries left for every task (``max_retries`` >= 1, one kill): the right value.
  The executor's tasks are retried (RPC-004) and its lost stored values are
  rebuilt from lineage (LIN-003, LIN-004), within one budget (RPC-009).
* ``max_retries`` = 0: the right value, or ``WorkerDiedError`` (RPC-004),
  ``ObjectLostError`` (LIN-003), or, for a task that read them itself, a
  ``TaskError`` naming one of them (TASK-007); a task whose argument failed fails
  with the argument's error (TASK-009).
* a value owned by the killed worker (it submitted the task that made it):
  ``OwnerDiedError`` as well, whatever the budget (FATE-001).

After every trial nothing is left: the driver owns no object and keeps no lineage
(OWN-005, OWN-006), no live worker owns or borrows anything, and the cluster's
shared-memory namespace is empty (LOC-004, GC-004). After shutdown every worker that
was not killed has exited by itself.

The local cluster does not restart killed workers, so each cluster of WORKERS
processes takes KILLS_PER_CLUSTER kills (one per trial) and leaves two alive.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

import refrpc
from refrpc.store import list_segments
from refrpc.testing import wait_until

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(240)

#: Every trial's seed derives from this one (set it to re-run a failure).
BASE_SEED = int(os.environ.get("REFRPC_CHAOS_SEED", "4004"))
#: Clusters per workload; each runs KILLS_PER_CLUSTER trials.
GROUPS = int(os.environ.get("REFRPC_CHAOS_GROUPS", "2"))
WORKERS = 5
KILLS_PER_CLUSTER = 3
#: No hang: far above failure detection (1.5 s) plus retries, even on a loaded machine.
GET_TIMEOUT = 60.0
#: Bound on reclaiming everything after a trial.
CLEAN_TIMEOUT = 30.0
#: Stored, not inline: above the 100 KiB inline threshold (TASK-004).
MIN_BLOCK, MAX_BLOCK = 110_000, 200_000

E = refrpc.api
#: Errors a task's failure to read its inputs may surface as, inside a TaskError.
RETRY_EXHAUSTED = (E.WorkerDiedError, E.ObjectLostError)

#: Outcomes of every trial this run, per workload (printed, and in the failure text).
OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


# ---------------------------------------------------------------- the harness
#: ``Trial.read``'s expected value when any value will do (a list of refs, checked later).
ANY = object()


class TrialFailed(AssertionError):
    pass


@dataclass
class Read:
    """One value the program read: what it got, and which errors the spec allows."""

    path: str
    outcome: str  # "correct" or the error's class name
    allowed: bool
    detail: str = ""


@dataclass
class Trial:
    seed: int
    rng: random.Random
    retries: int
    reads: list[Read] = field(default_factory=list)

    def read(self, path: str, get: Callable[[], Any], expected: Any, allowed: tuple[type, ...]) -> Any:
        """``get()`` the value; record whether it was right or an allowed typed error."""
        try:
            value = get()
        except E.GetTimeoutError:
            raise TrialFailed(f"seed {self.seed}: {path} hung past {GET_TIMEOUT} s") from None
        except E.TaskError as exc:
            # A task that read a failed input itself raised its typed error (TASK-007).
            inner = str(exc.args[0]) if exc.args else ""
            ok = E.TaskError in allowed and inner.startswith(tuple(f"{t.__name__}:" for t in RETRY_EXHAUSTED))
            self.reads.append(Read(path, f"TaskError[{inner.split(':', 1)[0]}]", ok, inner[:300]))
            return None
        except E.RefRPCError as exc:
            self.reads.append(Read(path, type(exc).__name__, isinstance(exc, allowed), str(exc)[:300]))
            return None
        except Exception as exc:  # untyped: a bug, whatever it is
            raise TrialFailed(f"seed {self.seed}: {path} raised an untyped {type(exc).__name__}: {exc}") from None
        if expected is not ANY and _plain(value) != _plain(expected):
            raise TrialFailed(f"seed {self.seed}: {path} gave a wrong value: {value!r:.200}, expected {expected!r:.200}")
        self.reads.append(Read(path, "correct", True))
        return value

    def allowed(self, *, owner_death: bool = False, in_task: bool = False) -> tuple[type, ...]:
        errors: tuple[type, ...] = (E.OwnerDiedError,) if owner_death else ()
        if self.retries == 0:
            errors += RETRY_EXHAUSTED + ((E.TaskError,) if in_task else ())
        return errors

    def outcome(self) -> str:
        bad = [r for r in self.reads if not r.allowed]
        if bad:
            raise TrialFailed(f"seed {self.seed} (max_retries={self.retries}): errors the spec does not allow here: "
                              + "; ".join(f"{r.path}: {r.outcome}: {r.detail}" for r in bad))
        errors = sorted({r.outcome for r in self.reads if r.outcome != "correct"})
        return "correct" if not errors else "typed error (" + ", ".join(errors) + ")"


class ChaosCluster:
    """A local cluster, and a killer that ``kill -9``s one worker at a chosen moment."""

    def __init__(self, workers: int) -> None:
        refrpc.init(workers)
        self.node = E._ctx.node
        self.cluster = E._ctx.cluster
        self.killed: list[str] = []

    def alive(self) -> list[str]:
        return [n for n, p in sorted(self.cluster.processes.items()) if n not in self.killed and p.poll() is None]

    def kill_after(self, delay: float, victim: str, sig: int = signal.SIGKILL) -> threading.Thread:
        """Send ``sig`` to ``victim`` after ``delay`` seconds (the chaos stimulus);
        the thread's ``sent_at`` is when it was sent (monotonic)."""
        proc = self.cluster.processes[victim]
        self.killed.append(victim)

        def run() -> None:
            time.sleep(delay)
            os.kill(proc.pid, sig)
            t.sent_at = time.monotonic()  # type: ignore[attr-defined]

        t = threading.Thread(target=run, name=f"chaos-kill-{victim}", daemon=True)
        t.start()
        return t

    def state(self) -> dict[str, Any]:
        core = self.node.core
        return {
            "owned": {o: (e.state, e.local_refs, e.submitted_task_refs, e.lineage_refs) for o, e in core.owned.items()},
            "tasks": {t: s.state for t, s in core.tasks.items()},
            "borrowed": {o: b.state for o, b in core.borrowed.items()},
            "get_waiters": dict(core.get_waiters),
        }

    def assert_clean(self, seed: int) -> None:
        """Nothing is left of the trial anywhere (OWN-005, OWN-006, LOC-004)."""
        node = self.node

        def driver_empty() -> bool:
            s = node.call(self.state).result(10)
            return not any(s.values())

        assert wait_until(driver_empty, CLEAN_TIMEOUT), f"seed {seed}: the driver still holds {node.call(self.state).result(10)}"

        def workers_empty() -> list[tuple[str, Any]]:
            left = []
            for w in self.alive():
                res = node.introspect(w).result(10)
                if res.error is None and res.entries:
                    left.append((w, [(e.object_id, e.role, e.state) for e in res.entries]))
            return left

        assert wait_until(lambda: not workers_empty(), CLEAN_TIMEOUT), f"seed {seed}: workers still hold {workers_empty()}"
        ns = self.cluster.namespace
        assert wait_until(lambda: not list_segments(ns), CLEAN_TIMEOUT), f"seed {seed}: segments left {list_segments(ns)}"

    def shutdown(self) -> dict[str, int | None]:
        refrpc.shutdown()
        return {n: p.poll() for n, p in self.cluster.processes.items()}


def chaos(workload: str, run: Callable[[Trial], None], window: float, seed_offset: int) -> None:
    """GROUPS clusters, KILLS_PER_CLUSTER trials each: one kill -9 per trial at a
    seeded moment in ``[0, window]`` seconds after the workload starts."""
    counts = OUTCOMES[workload]
    trials = mid_run = 0
    for group in range(GROUPS):
        c = ChaosCluster(WORKERS)
        try:
            for k in range(KILLS_PER_CLUSTER):
                seed = BASE_SEED * 1000 + seed_offset * 100 + group * 10 + k
                rng = random.Random(seed)
                trial = Trial(seed, rng, retries=rng.choice([0, 1, 2]))
                delay, victim = rng.uniform(0, window), rng.choice(c.alive())
                started = time.monotonic()
                killer = c.kill_after(delay, victim)
                try:
                    run(trial)
                    ended = time.monotonic()
                finally:
                    killer.join()
                outcome = trial.outcome()
                counts[outcome] += 1
                mid_run += killer.sent_at < ended  # type: ignore[attr-defined]
                print(f"  seed {seed}: max_retries={trial.retries}, kill -9 {victim} at {delay:.2f} s, "
                      f"values read by {ended - started:.2f} s: {outcome}")
                t0 = time.monotonic()
                trials += 1
                c.assert_clean(seed)
                print(f"    clean after {time.monotonic() - t0:.2f} s")
        finally:
            codes = c.shutdown()
        # Every worker that was not killed followed the driver's Goodbye and exited by itself.
        assert all(codes[w] == 0 for w in codes if w not in c.killed), (workload, codes, c.killed)
        assert all(codes[w] == -signal.SIGKILL for w in c.killed), (workload, codes, c.killed)
    print(f"\nchaos {workload}: {trials} trials ({mid_run} killed a worker before the program had all its values): "
          + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    assert sum(counts.values()) == trials == GROUPS * KILLS_PER_CLUSTER


def _plain(v: Any) -> Any:
    """Tuples as lists: portable values (VAL-001) carry no tuples."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _size(rng: random.Random) -> int:
    return rng.randint(MIN_BLOCK, MAX_BLOCK)


def _get(ref: Any) -> Callable[[], Any]:
    return lambda: refrpc.get(ref, timeout=GET_TIMEOUT)


# ---------------------------------------------------------------- the workloads
def mapreduce(t: Trial) -> None:
    # mapped = [map.remote(m) for m in range(M)]           (P stored blocks each)
    # reduced = [reduce.remote(*[mapped[m][p] for m]) for p in range(P)]
    maps, parts, size = t.rng.randint(3, 5), t.rng.randint(2, 4), _size(t.rng)
    mapper = rf.chaos_map.options(num_returns=parts, max_retries=t.retries)
    reducer = rf.chaos_reduce.options(max_retries=t.retries)
    mapped = [mapper.remote(m, parts, size) for m in range(maps)]
    reduced = [reducer.remote(*[mapped[m][p] for m in range(maps)]) for p in range(parts)]
    del mapped  # only the reduces hold the map outputs now (lineage keeps their tasks)
    for p, ref in enumerate(reduced):
        expected = (sum((m * parts + p) % 256 for m in range(maps)), maps * size)
        t.read(f"reduce {p}", _get(ref), expected, t.allowed())


def chains(t: Trial) -> None:
    # x = block.remote(tag); for k in 1..L: x = step.remote(x, k)   (two chains side by side)
    size = _size(t.rng)
    block = rf.chaos_block.options(max_retries=t.retries)
    step = rf.chaos_step.options(max_retries=t.retries)
    ends = []
    for c in range(2):
        tag, length = t.rng.randrange(256), t.rng.randint(4, 8)
        x = block.remote(tag, size)
        for k in range(1, length + 1):
            x = step.remote(x, k)  # the previous link is released, kept as lineage (LIN-002)
        ends.append((x, (tag + length * (length + 1) // 2) % 256))
    for c, (x, byte) in enumerate(ends):
        t.read(f"chain {c}", lambda x=x: rf._digest(refrpc.get(x, timeout=GET_TIMEOUT)), (byte, size), t.allowed())


def nested(t: Trial) -> None:
    # A worker submits tasks and gets their results (one such task at a time: a
    # worker runs one task at a time, so two could wait on each other), while other
    # workers' tasks return refs they own, read by the driver and passed to tasks.
    size = _size(t.rng)
    tags = [t.rng.randrange(256) for _ in range(t.rng.randint(2, 4))]
    outer = rf.chaos_nested_get.options(max_retries=t.retries).remote(tags, size, t.retries)
    owners = [rf.chaos_nested_refs.options(max_retries=t.retries).remote([tag], size, t.retries) for tag in tags]
    t.read("nested get", _get(outer), [(tag, size) for tag in tags], t.allowed(in_task=True))
    for i, (tag, ref) in enumerate(zip(tags, owners)):
        inner = t.read(f"nested refs {i}", _get(ref), ANY, t.allowed())
        if inner is None:
            continue
        (block,) = inner
        # The driver borrows the block (owned by the worker that made it) ...
        t.read(f"nested refs {i} value", lambda b=block: rf._digest(refrpc.get(b, timeout=GET_TIMEOUT)), (tag, size),
               t.allowed(owner_death=True))
        # ... and passes it on to a task, which resolves it from its owner (TASK-009).
        digest = rf.chaos_digest.options(max_retries=t.retries).remote(block)
        t.read(f"nested refs {i} passed on", _get(digest), (tag, size), t.allowed(owner_death=True))


def forwarding(t: Trial) -> None:
    # x = block.remote(tag); forward.remote(shared(x)) shares x on with a nested task
    # and returns that task's ref; relay.remote(shared(x)) shares it on and waits.
    size, tag = _size(t.rng), t.rng.randrange(256)
    x = rf.chaos_block.options(max_retries=t.retries).remote(tag, size)
    forwards = [rf.forward.options(max_retries=t.retries).remote(refrpc.shared(x)) for _ in range(2)]
    relay = rf.chaos_relay.options(max_retries=t.retries).remote(refrpc.shared(x), t.retries)
    if t.rng.random() < 0.5:
        del x  # only the borrowers keep x alive now (BOR-001)
    t.read("relay", _get(relay), (tag, size), t.allowed(in_task=True))
    for i, f in enumerate(forwards):
        got = t.read(f"forward {i}", _get(f), ANY, t.allowed())
        if got is None:
            continue
        (inner,) = got
        # `inner` is owned by the worker that ran `forward`; its value holds x.
        got = t.read(f"forward {i} nested", _get(inner), ANY, t.allowed(owner_death=True))
        if got is None:
            continue
        (back,) = got
        t.read(f"forward {i} value", lambda b=back: rf._digest(refrpc.get(b, timeout=GET_TIMEOUT)), (tag, size),
               t.allowed(owner_death=True))


# ---------------------------------------------------------------- the tests
def test_a_worker_that_dies_before_its_handshake_is_noticed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIV-014, TASK-012: the supervisor's report of a worker's exit counts even when
    the driver does not know the worker's incarnation yet (it never contacted it, or
    its Welcome never came); the driver used to drop such a report and wait for the
    handshake timeout (LIV-015). The timeout is made 10 minutes long here, so that
    waiting for it would be a hang, not a delay."""
    from refrpc.runtime._node import default_config

    monkeypatch.setattr(E, "_config", lambda: default_config(inline_threshold=E._INLINE[0], handshake_timeout_ms=600_000))
    refrpc.init(3)
    try:
        node, procs = E._ctx.node, E._ctx.cluster.processes
        # w1 dies before the driver ever talks to it: no task may be placed there.
        procs["w1"].kill()
        assert wait_until(lambda: node.call(lambda: ("w1", 0) in node.core.fenced).result(10), 20)
        refs = [rf.add.options(max_retries=0).remote(i, 1) for i in range(6)]
        assert refrpc.get(refs, timeout=GET_TIMEOUT) == [i + 1 for i in range(6)]
        # w2 never answers the driver's Hello (stopped), gets tasks, then dies: they are retried.
        os.kill(procs["w2"].pid, signal.SIGSTOP)
        refs = [rf.add.options(max_retries=1).remote(i, 2) for i in range(6)]
        assert wait_until(lambda: node.call(lambda: node.core.remotes.get("w2") is not None).result(10), 20)
        procs["w2"].kill()
        assert refrpc.get(refs, timeout=GET_TIMEOUT) == [i + 2 for i in range(6)]
        del refs
    finally:
        refrpc.shutdown()


def test_a_worker_runs_tasks_that_submit_tasks_from_its_first_moment() -> None:
    """OWN-001: a task a worker runs may submit tasks (the worker owns their results),
    even the first task it gets. (A worker once took tasks before its process-wide
    node was set: about one fresh cluster in four failed such a task with "refrpc is
    not initialized in this process".)"""
    for _ in range(3):
        refrpc.init(2)
        try:
            # Sent while the workers are still starting: each is among its first tasks.
            refs = [rf.chaos_nested_refs.remote([i], MIN_BLOCK, 0) for i in range(4)]
            for i, ref in enumerate(refs):
                (block,) = refrpc.get(ref, timeout=GET_TIMEOUT)
                assert rf._digest(refrpc.get(block, timeout=GET_TIMEOUT)) == (i, MIN_BLOCK)
            del refs, block
        finally:
            refrpc.shutdown()


def test_mapreduce_survives_kill_9_with_retries_or_fails_typed() -> None:
    """RPC-004, LIN-003, TASK-009: map outputs stored on a killed worker are rebuilt."""
    chaos("mapreduce", mapreduce, window=0.6, seed_offset=1)


def test_chains_survive_kill_9_by_rebuilding_released_links() -> None:
    """LIN-003, LIN-004, RPC-009: a lost link is rebuilt, with the links it needs."""
    chaos("chains", chains, window=0.6, seed_offset=2)


def test_nested_tasks_survive_kill_9_and_owner_death_fails_typed() -> None:
    """FATE-001, FATE-003, RPC-004: a killed worker's own objects fail with OWNER_DIED."""
    chaos("nested", nested, window=0.6, seed_offset=3)


def test_shared_ref_forwarding_survives_kill_9() -> None:
    """BOR-009, BOR-010, FATE-001: a borrower or forwarder dying loses no one else's value."""
    chaos("forwarding", forwarding, window=0.6, seed_offset=4)
