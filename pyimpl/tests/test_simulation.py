"""Deterministic simulation: the spec's guarantees hold under faults.

Every run checks safety (OWN-004 across peers) after every step, recovery (every
get ends with a value or a typed error, never a hang) and, once failures stop,
liveness (no entry, copy, task or registration is left anywhere). A failing run
prints its seed and a shrunk, replayable list of choices.

The budget here is what CI runs; ``make simulate SEEDS=N`` runs more.
"""

from __future__ import annotations

import pytest

from refrpc.testing import WORKLOADS, Faults, SimFailure, explore, run_random

#: Fault profiles: message faults only, then crashes of workers, owners and
#: middle borrowers, detected either by the supervisor or by heartbeat silence.
PROFILES = {
    "drop-dup-reorder": Faults(drop=0.1, duplicate=0.1),
    "kill-one-worker": Faults(drop=0.05, duplicate=0.05, kills=1),
    "kill-two-silent": Faults(kills=2, supervisor=False),
    "kill-owner": Faults(kills=1, kill_driver=True),
}
SEEDS_PER_CASE = 120  # 10 workloads x 4 profiles x 120 = 4,800 runs with faults (CI budget)
#: Variants of another workload that differ only in configuration get fewer seeds.
FEWER_SEEDS = {"unannounced_worker": 30}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_random_runs_keep_every_guarantee(workload: str, profile: str) -> None:
    # Each seed is a different interleaving with different faults of the same program.
    for seed in range(FEWER_SEEDS.get(workload, SEEDS_PER_CASE)):
        run_random(workload, seed, faults=PROFILES[profile])


def test_stale_releases_keep_every_guarantee() -> None:
    # BOR-018: peers release grants again under new sequence numbers, and release grants
    # they never had; owners must ignore both, and nothing else may change.
    sent = 0
    for workload in ("forward_chain", "returned_ref", "nested_in_put", "actor_keeps_ref"):
        for seed in range(40):
            sent += run_random(workload, seed, faults=Faults(duplicate=0.05, stale_release=0.5)).stale_releases
    assert sent > 50  # the perturbation really happened


def test_runs_are_reproducible_from_their_seed() -> None:
    a = run_random("forward_chain", 7, faults=PROFILES["kill-one-worker"])
    b = run_random("forward_chain", 7, faults=PROFILES["kill-one-worker"])
    assert (a.steps, a.killed) == (b.steps, b.killed)


#: Small scenarios whose every delivery order (and every crash point, where
#: kills > 0) is enumerated to the end: (workload, peers, kills, interleavings).
#: A protocol change that alters the message flow changes these counts: update
#: them deliberately, after checking the new space is still explored completely.
EXHAUSTIVE = [
    ("chain", 2, 0, 9),
    ("actor_keeps_ref", 2, 0, 20),
    ("returned_ref", 3, 1, 125),
    ("failing_task", 3, 1, 125),
    ("nested_in_put", 3, 1, 561),
    ("forward_chain", 3, 0, 2145),
]


@pytest.mark.parametrize("workload,peers,kills,expected", EXHAUSTIVE)
def test_every_interleaving_of_small_scenarios(workload: str, peers: int, kills: int, expected: int) -> None:
    result = explore(workload, peers=peers, kills=kills, max_runs=5000)
    assert not result.failures, result.failures[0]
    assert result.complete
    # The count pins the explored space: a change that hides choices shows up here.
    assert result.runs == expected


#: Scenarios too large to interleave exhaustively, whose every *crash point* is
#: enumerated instead: one fixed delivery order; which worker dies after which step,
#: and every lag of each survivor's death report up to ``report_within`` steps.
#: Covers every message boundary of reconstruction (rebuild: LIN-002..LIN-004,
#: LIN-005/LIN-010 with no room for lineage) and of forwarding and borrowing.
CRASH_POINTS = [
    ("rebuild", 3, 1, 6, 542),
    ("rebuild_evicted", 3, 1, 6, 542),
    ("split_rebuild", 3, 1, 6, 542),
    ("forward_chain", 3, 1, 6, 582),  # 595 until LIV-040: handshakes in progress are not announced
    ("actor_keeps_ref", 3, 1, 6, 507),
]


@pytest.mark.parametrize("workload,peers,kills,report_within,expected", CRASH_POINTS)
def test_every_crash_point_of_larger_scenarios(workload: str, peers: int, kills: int, report_within: int, expected: int) -> None:
    result = explore(workload, peers=peers, kills=kills, max_runs=5000, crash_points_only=True, report_within=report_within)
    assert not result.failures, result.failures[0]
    assert result.complete
    assert result.runs == expected


def test_crash_points_reach_the_typed_errors_they_should() -> None:
    """The crash-point scenarios really reach their failure outcomes (so the checks
    above are not vacuous): with lineage, one worker death never costs the program a
    value (LIN-003); without room for lineage, some crash points lose b for good and
    the program gets LINEAGE_EVICTED (LIN-005), never OBJECT_LOST."""
    from refrpc.core.messages import ErrorCode

    kept = explore("rebuild", peers=3, kills=1, crash_points_only=True, report_within=2)
    assert kept.complete and not kept.failures and kept.errors_seen == {}
    evicted = explore("rebuild_evicted", peers=3, kills=1, crash_points_only=True, report_within=2)
    assert evicted.complete and not evicted.failures
    assert set(evicted.errors_seen) == {ErrorCode.LINEAGE_EVICTED}, evicted.errors_seen


# ------------------------------------------------------------------ the checks can fail
# Each mutant breaks one rule of the spec; the simulator must notice.


def _find_failure(workloads: list[str], faults: Faults, seeds: int = 60) -> str:
    for workload in workloads:
        for seed in range(seeds):
            try:
                run_random(workload, seed, faults=faults, shrink_failures=False)
            except SimFailure as exc:
                return str(exc)
    pytest.fail("the simulator did not catch the mutant")


def test_catches_send_before_register(monkeypatch: pytest.MonkeyPatch) -> None:
    # BOR-002 broken: an executor returns a borrowed ref without first registering
    # the receiver with the owner, then drops its own hold.
    from dataclasses import replace

    from refrpc.core import _execution

    def forward_without_registering(self, d, ex, key, index):  # type: ignore[no-untyped-def]
        return replace(d, forward_id="")

    monkeypatch.setattr(_execution.Execution, "_forward_nested", forward_without_registering)
    report = _find_failure(["forward_chain", "returned_ref"], Faults(drop=0.05))
    assert "SAFETY" in report or "LIVENESS" in report or "unexpected error" in report


def test_catches_retained_ref_without_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    # BOR-007 broken: an actor keeps a shared ref past the call without a grant.
    from refrpc.core import _execution

    monkeypatch.setattr(_execution.Execution, "_register_retained", lambda self, ex, key, hinted: ())
    report = _find_failure(["actor_keeps_ref"], Faults())
    assert "SAFETY (OWN-004)" in report


def test_catches_a_release_that_is_never_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # BOR-005 broken: a borrower forgets to send ReleaseBorrows; the value leaks.
    from refrpc.core import _objects

    original = _objects.Objects._flush_batches

    def flush_without_releases(self):  # type: ignore[no-untyped-def]
        self.pending_releases = {}
        original(self)

    monkeypatch.setattr(_objects.Objects, "_flush_batches", flush_without_releases)
    report = _find_failure(["forward_chain", "actor_keeps_ref"], Faults())
    assert "LIVENESS" in report


def test_catches_freeing_while_borrowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # OWN-004 broken: the owner ignores borrowers when deciding to reclaim.
    from refrpc.core.state import OwnedObject

    monkeypatch.setattr(OwnedObject, "in_scope", lambda self: bool(self.local_refs or self.submitted_task_refs or self.contained_in or self.pins))
    report = _find_failure(["returned_ref", "forward_chain"], Faults())
    assert "SAFETY (OWN-004)" in report


def test_catches_a_lost_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    # RPC-004 broken: a task whose executor died is neither retried nor failed.
    from refrpc.core import _tasks

    monkeypatch.setattr(_tasks.Tasks, "_retry", lambda self, t: None)
    report = _find_failure(["chain", "fan_in"], Faults(kills=1))
    assert "G-recovery" in report or "deadlock" in report


def test_catches_a_session_that_delivers_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    # SES-002 broken: duplicates are handed to the protocol layer again.
    from refrpc.core import _session

    original = _session.SessionLayer._on_receive

    def no_dedup(self, env):  # type: ignore[no-untyped-def]
        r = self.remotes.get(env.sender)
        if r is not None and env.seq and env.seq <= r.delivered and r.state == "alive":
            self._deliver(r, env)
            return
        original(self, env)

    monkeypatch.setattr(_session.SessionLayer, "_on_receive", no_dedup)
    report = _find_failure(["returned_ref", "fan_in", "nested_in_put"], Faults(duplicate=0.3))
    assert report


def test_catches_a_primary_copy_dropped_by_its_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    # GC-005 broken: a worker that borrows its own primary copy (a task ran where
    # its argument was) drops the primary when the borrow ends.
    from refrpc.core.peer import Peer

    original = Peer.handle

    def forgetful(self, *stimuli):  # type: ignore[no-untyped-def]
        self.primaries.clear()
        return original(self, *stimuli)

    monkeypatch.setattr(Peer, "handle", forgetful)
    report = _find_failure(["chain", "fan_in"], Faults())
    assert "GC-005" in report


def test_catches_an_owner_that_drops_another_grant_on_a_stale_release(monkeypatch: pytest.MonkeyPatch) -> None:
    # BOR-018 broken: a release naming a grant the sender no longer (or never) holds
    # removes another grant of that sender on the object instead of being ignored.
    from refrpc.core import _objects

    original = _objects.Objects._on_ReleaseBorrows

    def careless(self, r, msg):  # type: ignore[no-untyped-def]
        for rel in msg.releases:
            e = self.owned.get(rel.object_id)
            grants = e.borrowers.get(r.peer) if e is not None else None
            for fid in rel.forward_ids:
                if grants and fid not in grants:
                    del grants[next(iter(grants))]
            if e is not None and grants is not None and not grants:
                del e.borrowers[r.peer]
        original(self, r, msg)

    monkeypatch.setattr(_objects.Objects, "_on_ReleaseBorrows", careless)
    report = _find_failure(["forward_chain", "returned_ref", "nested_in_put", "actor_keeps_ref"],
                           Faults(stale_release=0.5), seeds=80)
    assert "SAFETY" in report or "LIVENESS" in report or "unexpected error" in report
