"""Running programs on a simulated cluster: seeded random runs and exhaustive exploration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from refrpc.core import Config
from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode

from ._checks import liveness_violations
from ._sim import Chooser, Cluster, Driver, Faults, RandomChooser, SimFailure
from ._workloads import SURVIVE_ONE_KILL, WORKLOAD_CONFIG, WORKLOAD_ERRORS, WORKLOADS, Outcome

#: Typed errors a program may see when peers are killed (G-recovery: typed, never a hang).
FAILURE_ERRORS = {
    ErrorCode.WORKER_DIED,
    ErrorCode.OBJECT_LOST,
    ErrorCode.OWNER_DIED,
    ErrorCode.ACTOR_DIED,
    ErrorCode.RESOURCE_EXHAUSTED,
    ErrorCode.PEER_DIED,
}


@dataclass
class RunResult:
    workload: str
    seed: int | None
    steps: int
    messages: int
    killed: list[str]
    completed: bool
    #: Typed errors the program met (and the workload accepted).
    errors: tuple[ErrorCode, ...] = ()
    #: Stale releases the ``stale_release`` perturbation sent (BOR-018).
    stale_releases: int = 0


def _outcome(cl: Cluster, res) -> Outcome | None:
    """The program's view of a GetResult; None if the bytes could not be fetched."""
    if res.error is not None:
        return Outcome(None, (), res.error)
    value = res.value
    if value is None:
        value = cl.fetch(res.locations, res.object_id)
        if value is None:
            return None
    return Outcome(value.data, value.nested, None)


def run(workload: str, cl: Cluster, *, max_steps: int = 20000, seed: int | None = None, quiesce_ms: int = 4000) -> RunResult:
    """Run ``workload`` to completion on ``cl``, checking every guarantee; raise SimFailure."""
    driver = Driver(cl, cl.peers["driver"])
    one_kill_covered = workload in SURVIVE_ONE_KILL and cl.faults.kills <= 1 and not cl.faults.kill_driver
    if (cl.faults.kills or cl.faults.kill_driver) and not one_kill_covered:
        driver.expected_errors = set(FAILURE_ERRORS) | WORKLOAD_ERRORS.get(workload, set())
    gen = WORKLOADS[workload](driver)
    messages = 0
    steps = 0
    done = False
    token = None
    refetch: tuple[str, int] | None = None  # (object id, step to ask again at)

    def fail(msg: str) -> SimFailure:
        tail = "\n".join(f"  {who}: {what}" for who, what in cl.trace[-40:])
        return SimFailure(f"[{workload} seed={seed}] {msg}\nlast events:\n{tail}")

    try:
        token = next(gen)
        while steps < max_steps:
            if not cl.peers["driver"].alive:
                done = True  # the owner died: its program is gone (fate-sharing)
            if refetch is not None and steps >= refetch[1] and not done:
                token, refetch = driver.get(refetch[0]), None
                continue
            if not done and token is not None and token.request_id in driver.peer.get_results:
                res = driver.peer.get_results.pop(token.request_id)
                outcome = _outcome(cl, res)
                if outcome is None:
                    # OBJ-013: no location could serve it; tell the core and ask again later.
                    driver.peer.handle(ev.FetchFailed(driver.peer.sid("fetch-failed"), token.object_id))
                    refetch, token = (token.object_id, steps + 5), None
                    continue
                try:
                    token = gen.send(outcome)
                except StopIteration:
                    done = True
                    token = None
                continue
            if done:
                break
            before = len(cl.flights)
            if not cl.step(allow_faults=True):
                if refetch is not None:
                    refetch = (refetch[0], steps)  # nothing else can happen: ask again now
                    continue
                raise fail("deadlock: the program waits and nothing can happen (G-recovery)")
            messages += max(0, len(cl.flights) - before)
            steps += 1
            if cl.use_time and cl.now > 60_000:
                raise fail("the program did not finish within 60 s of simulated time (G-recovery)")
        if not done:
            raise fail(f"no progress after {max_steps} steps (G-recovery)")
        # Failures stop; let the cluster settle, then nothing may be left (G-liveness).
        # Time now passes (heartbeats carry the last acks) even in exhaustive runs.
        if not cl.use_time:
            cl.use_time = cl.fixed_ticks = True
            cl.chooser = FirstChooser()  # settling is not part of the explored space
        end = cl.now + quiesce_ms
        settle_steps = 0
        while settle_steps < max_steps:
            if cl.use_time and cl.now >= end and not cl.reports:
                break
            if not cl.step(allow_faults=False):
                break
            settle_steps += 1
        problems = liveness_violations(cl)
        if problems:
            raise fail("\n".join(problems))
    except SimFailure as exc:
        if str(exc).startswith(f"[{workload}"):
            raise
        raise fail(str(exc)) from None
    return RunResult(workload, seed, steps, messages, list(cl.killed), done, tuple(driver.errors_seen), cl.stale_releases)


def cluster_for(workload: str, peers: int, chooser: Chooser, faults: Faults, use_time: bool = True) -> Cluster:
    """A simulated cluster configured as ``workload`` needs (WORKLOAD_CONFIG)."""
    return Cluster(peers, chooser, faults, Config(inline_threshold=16, welcome_heartbeat=False, **WORKLOAD_CONFIG.get(workload, {})), use_time=use_time)


def run_random(workload: str, seed: int, *, peers: int = 4, faults: Faults | None = None, shrink_failures: bool = True) -> RunResult:
    """One seeded run; a failure is re-raised with the shrunk, replayable choice list."""
    faults = faults or Faults()
    chooser = RecordingChooser(seed)
    cl = cluster_for(workload, peers, chooser, faults)
    try:
        return run(workload, cl, seed=seed)
    except SimFailure as exc:
        if not shrink_failures:
            raise
        small = shrink(workload, chooser.record, peers=peers, faults=faults)
        try:
            replay(workload, small, peers=peers, faults=faults)
            shrunk = "(shrinking lost the failure)"
        except SimFailure as again:
            shrunk = str(again)
        raise SimFailure(
            f"{exc}\n\nshrunk to {len(small)} of {len(chooser.record)} choices; replay with "
            f"refrpc.testing.replay({workload!r}, {small!r}, peers={peers}, faults={faults!r}):\n{shrunk}"
        ) from None


class FirstChooser(Chooser):
    """Always the first option: deliver in send order, never a fault."""

    def pick(self, n: int, what: str) -> int:
        return 0

    def chance(self, p: float, what: str) -> bool:
        return False


class ScriptChooser(Chooser):
    """Follows a fixed prefix of choices, then always picks 0; records the options seen.

    With ``faults`` the prefix also scripts fault decisions (1 = the fault happens),
    so a recorded random run replays exactly.
    """

    def __init__(self, prefix: list[int], faults: bool = False) -> None:
        self.prefix = prefix
        self.faults = faults
        self.taken: list[tuple[int, int]] = []  # (choice, number of options)

    def _next(self, n: int) -> int:
        i = len(self.taken)
        c = self.prefix[i] if i < len(self.prefix) else 0
        c = min(c, n - 1)
        self.taken.append((c, n))
        return c

    def pick(self, n: int, what: str) -> int:
        return self._next(n)

    def chance(self, p: float, what: str) -> bool:
        return self.faults and p > 0 and self._next(2) == 1


class RecordingChooser(RandomChooser):
    """A seeded random chooser that records every decision, for replay and shrinking."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.record: list[int] = []

    def pick(self, n: int, what: str) -> int:
        c = super().pick(n, what)
        self.record.append(c)
        return c

    def chance(self, p: float, what: str) -> bool:
        if p <= 0:
            return False
        c = super().chance(p, what)
        self.record.append(int(c))
        return c


def replay(workload: str, choices: list[int], *, peers: int, faults: Faults) -> RunResult:
    cl = cluster_for(workload, peers, ScriptChooser(choices, faults=True), faults)
    return run(workload, cl, seed=None)


def shrink(workload: str, choices: list[int], *, peers: int, faults: Faults, budget: int = 300) -> list[int]:
    """Smallest choice list (greedy) that still fails: fewer faults, earlier options."""

    def fails(cs: list[int]) -> bool:
        try:
            replay(workload, cs, peers=peers, faults=faults)
        except SimFailure:
            return True
        return False

    best = list(choices)
    tries = 0
    # Cut the tail first (everything after is "option 0"), then lower single choices.
    size = len(best) // 2
    while size >= 1 and tries < budget:
        cut = best[: len(best) - size]
        tries += 1
        if fails(cut):
            best = cut
        else:
            size //= 2
    for i in range(len(best)):
        if tries >= budget:
            break
        if best[i] != 0:
            trial = best[:i] + [0] + best[i + 1:]
            tries += 1
            if fails(trial):
                best = trial
    return best


@dataclass
class Exploration:
    workload: str
    runs: int
    complete: bool
    failures: list[str] = field(default_factory=list)
    #: How many runs ended with each typed error reaching the program.
    errors_seen: dict[ErrorCode, int] = field(default_factory=dict)


def explore(workload: str, *, peers: int = 3, kills: int = 0, max_runs: int = 5000,
            on_run: Callable[[int], None] | None = None, crash_points_only: bool = False,
            report_within: int | None = None) -> Exploration:
    """Enumerate every order of deliveries, task completions, death reports and kills.

    No time passes (no heartbeats or retransmissions), so each run is finite;
    kills are reported through the supervisor in every possible order. With
    ``crash_points_only``, messages are delivered in one fixed order and only the
    kills (which peer, after which step) and the reports' timing are enumerated:
    every crash point of a protocol too large to interleave exhaustively.
    ``report_within`` bounds how many steps a death report may lag the death.
    """
    prefix: list[int] = []
    runs = 0
    failures: list[str] = []
    errors_seen: dict[ErrorCode, int] = {}
    while runs < max_runs:
        chooser = ScriptChooser(prefix)
        cl = cluster_for(workload, peers, chooser, Faults(kills=kills), use_time=False)
        cl.crash_points_only = crash_points_only
        if report_within is not None:
            cl.report_deadline = report_within
        try:
            result = run(workload, cl, max_steps=2000, seed=None)
            for code in set(result.errors):
                errors_seen[code] = errors_seen.get(code, 0) + 1
        except SimFailure as exc:
            failures.append(f"choices={[c for c, _ in chooser.taken]}\n{exc}")
            if len(failures) >= 3:
                return Exploration(workload, runs + 1, False, failures, errors_seen)
        runs += 1
        if on_run:
            on_run(runs)
        # Next prefix: the last choice point with an untried option, incremented.
        taken = chooser.taken
        while taken and taken[-1][0] + 1 >= taken[-1][1]:
            taken.pop()
        if not taken:
            return Exploration(workload, runs, True, failures, errors_seen)
        prefix = [c for c, _ in taken[:-1]] + [taken[-1][0] + 1]
    return Exploration(workload, runs, False, failures, errors_seen)
