"""Partitions and host loss on the multi-host bed, Jepsen-style (refrpc.testing.partitions).

A bounded, seeded slice: one run of each kind of fault (a cut shorter and one
longer than the detection timeout, a one-way cut, a host lost for good, the head
cut off, a flapping link). Each run must end with right values or typed errors, no hang, a cluster
that works again after healing, and nothing left in any table or /dev/shm.
`make partitions RUNS=N` runs many more; a failure prints its witness and seed.
"""

from __future__ import annotations

import io

import pytest

from refrpc.testing import hosts, partitions

WHY = hosts.unavailable()
pytestmark = [pytest.mark.timeout(400), pytest.mark.skipif(bool(WHY), reason=WHY or "")]


def test_seeded_partition_runs_end_with_right_values_or_typed_errors_and_leave_nothing():
    out = io.StringIO()
    runs = partitions.run_many(list(range(1, 1 + len(partitions.KINDS))), out=out)
    assert sorted(r.nemesis.kind for r in runs) == sorted(partitions.KINDS)
    failed = [r for r in runs if r.problems]
    assert not failed, out.getvalue()


def test_a_seed_always_chooses_the_same_fault():
    assert str(partitions.nemesis_for(7)) == str(partitions.nemesis_for(7))
    assert {partitions.nemesis_for(s).kind for s in range(len(partitions.KINDS))} == set(partitions.KINDS)
    short = [partitions.nemesis_for(s) for s in range(100) if partitions.nemesis_for(s).kind in ("short", "flap")]
    assert all(n.duration_s < partitions.DETECTION_S for n in short)
    longer = [partitions.nemesis_for(s) for s in range(100) if partitions.nemesis_for(s).kind in ("long", "oneway", "head")]
    assert all(n.duration_s > partitions.DETECTION_S for n in longer)
