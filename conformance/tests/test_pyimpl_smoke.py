"""A few cases, one per area, against pyimpl itself (`python -m refrpc.iut`).

The whole suite against pyimpl is `make conformance` (about a minute on two cores);
this smoke run only shows that the suite and the reference implementation still
understand each other, and is skipped where pyimpl's IUT adapter is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conformance_testkit import REFRPC_PATH
from refrpc_conformance import REGISTRY, Grade, load_config, load_requirements, run

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(importlib.util.find_spec("refrpc.iut") is None, reason="refrpc.iut (pyimpl's IUT adapter) not installed"),
]

CONFIG = Path(__file__).resolve().parents[1] / "iut" / "pyimpl.toml"
SMOKE = [
    "handshake/HS-002-unknown-major-refused",
    "session/SES-002-duplicate-seq-discarded",
    "tasks/TASK-004-OBJ-010-stored-result-fetched-in-chunks",
    "errors/TASK-007-fail-fixture-task-failed",
    "malformed/ZMQ-005-GEN-010-payload-frame-missing",
    "liveness/FATE-001-TASK-009-owner-dies-during-resolution",
    "borrowing/BOR-007-BOR-005-hold-registers-then-releases",
    "rpc/RPC-001-duplicate-task-new-seq-executed-once",
]


def test_representative_cases_pass_against_pyimpl(tmp_path):
    config = load_config(CONFIG)
    result = run([REGISTRY[c] for c in SMOKE], config, load_requirements(), run_dir=tmp_path, jobs=2,
                 extra_env={"PYTHONPATH": REFRPC_PATH})
    failed = [(r.case_id, [(c.requirement, c.expected, c.actual) for c in r.failed_checks], r.error)
              for r in result.results if r.grade is not Grade.PASS]
    assert not failed
