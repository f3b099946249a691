"""Proof that the suite can fail: pyimpl with each of its fault switches on
(`refrpc.iut.FAULTS`, each breaking one requirement) fails a named case, and the
case's failed checks name the requirement the switch breaks.

Whole-suite runs per switch (`refrpc-conformance --iut-env REFRPC_IUT_FAULTS=NAME`)
catch more (docs/conformance.md lists them); this test runs the one named case per
switch, two at a time. Skipped where pyimpl's IUT adapter is missing.

Every switch takes an IUT start and a case, which made this the longest test of
``make test``. So ``make test`` runs a seeded slice of the switches
(``REFRPC_FAULT_SWITCHES``, 24 by default; the seed is ``REFRPC_FAULT_SEED``, by
default the day's number, printed so that a failure can be rerun), and ``make
conformance-faults`` runs every switch (``REFRPC_FAULT_SWITCHES=all``);
``REFRPC_FAULT_SWITCHES=name1,name2`` runs just the switches named.
"""

from __future__ import annotations

import importlib.util
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conformance_testkit import REFRPC_PATH
from refrpc_conformance import REGISTRY, Grade, load_config, load_requirements, run

HAVE_IUT = importlib.util.find_spec("refrpc.iut") is not None
pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(not HAVE_IUT, reason="refrpc.iut (pyimpl's IUT adapter) not installed"),
]

CONFIG = Path(__file__).resolve().parents[1] / "iut" / "pyimpl.toml"

#: Fault switch -> the case that catches it.
CATCHES = {
    "free-while-borrowed": "borrowing/OWN-004-OWN-005-borrowed-object-outlives-owner-ref",
    "ignore-duplicate-task": "rpc/RPC-001-duplicate-task-new-seq-executed-once",
    "skip-release": "borrowing/BOR-007-BOR-005-hold-registers-then-releases",
    "wrong-error-code": "errors/TASK-007-fail-fixture-task-failed",
    "never-answer-fetch": "tasks/TASK-004-OBJ-010-stored-result-fetched-in-chunks",
    "no-heartbeat": "liveness/LIV-001-CNF-012-heartbeats-when-idle",
    "accept-unknown-version": "handshake/HS-002-unknown-major-refused",
    "no-goodbye": "liveness/LIV-006-LIV-010-shutdown-says-goodbye",
    "inline-large-results": "tasks/TASK-004-OBJ-010-stored-result-fetched-in-chunks",
    "no-register-before-send": "borrowing/BOR-002-REF-003-forward-to-third-party",
    "release-any-grant": "borrowing/BOR-018-stale-and-unknown-releases-ignored",
    "keep-dead-borrower-grants": "liveness/BOR-009-dead-borrowers-grants-dropped",
    "own-heartbeat-interval": "liveness/LIV-007-remote-heartbeat-interval",
    "heartbeats-only-liveness": "liveness/LIV-002-any-message-is-evidence",
    "store-full-as-task-failed": "fetch/TASK-042-argument-without-room",
    "store-full-retried": "rpc/OBJ-062-store-full-is-final",
    "error-chunk-at-request-offset": "fetch/FET-043-relay-refuses-what-it-will-not-get",
    "keep-task-records": "gc/RPC-014-OWN-005-metadata-shrinks-after-many-tasks",
    "keep-submitted-tasks": "gc/RPC-014-OWN-005-metadata-shrinks-after-many-tasks",
    "no-contained-in": "borrowing/GC-002-LOC-002-LOC-003-refs-in-returned-values",
    "keep-unadopted-replies": "tasks/TASK-015-TASK-016-reply-to-a-cancelled-task-disposed",
    "silent-secondary-copy": "borrowing/GC-002-LOC-002-LOC-003-refs-in-returned-values",
    "silent-copy-drop": "borrowing/GC-002-LOC-002-LOC-003-refs-in-returned-values",
    "schema-error-names": "tasks/TASK-015-TASK-016-reply-to-a-cancelled-task-disposed",
    "reply-before-forward-registered": "borrowing/BOR-002-TASK-011-ref-nested-in-a-value-argument",
    "unbounded-actor-restarts": "actors/ACT-011-ACT-002-restarts-bounded",
    "actor-calls-worker-died": "actors/ACT-003-ACT-007-iut-owns-an-actor",
    "unknown-method-task-failed": "actors/ACT-014-ACT-015-unknown-method-and-seq-gap",
    "wait-for-actor-seq-gap": "actors/ACT-014-ACT-015-unknown-method-and-seq-gap",
    "actor-handles-not-counted": "actors/ACT-009-ACT-019-ACT-020-handle-borrowed-then-released",
    "max-concurrency-not-sent": "actors/ACT-013-ACT-018-concurrent-actor-replies-in-any-order",
    "no-id-limits": "malformed/ID-007-identifier-length-limits",
    "status-per-wait": "objects/OBJ-014-one-status-request-per-object",
    "no-error-rate-limit": "errors/ERR-008-protocol-errors-rate-limited",
    "no-released-state": "lineage/LIN-002-LIN-004-released-argument-rebuilt",
    "trace-without-transitions": "trace/TRC-003-TRC-008-iut-trace-checks-clean",
    "simultaneous-hello-waits": "handshake/HS-023-simultaneous-hellos",
    "cancel-reply-task-failed": "tasks/TASK-008-TASK-013-cancel-running-and-ignored-cancels",
    "fetch-end-is-error": "fetch/FET-002-FET-014-byte-ranges",
    "no-goodbye-ack": "liveness/LIV-006-FATE-003-goodbye-ends-submitter",
    "fetch-whole-object": "fetch/FET-015-ranges-bounded",
    "fetch-retry-at-once": "fetch/FET-009-ERR-009-busy-holder-asked-again",
    "fetch-from-last-location": "fetch/FET-011-primary-location-first",
    "chunks-ignore-fetcher-limit": "fetch/FET-007-chunks-fit-fetcher-limit",
    "adopt-mismatched-reply": "tasks/TASK-019-mismatched-reply-fails-the-task",
    "queue-named-tasks": "tasks/TASK-024-named-executor-never-queued",
    "no-executor-worker-died": "rpc/TASK-022-RPC-004-retry-without-a-live-executor",
    "unheld-ref-unknown-object": "tasks/CNF-029-CNF-024-control-refusals-and-failures-through-get",
    "fetch-range-checked-first": "fetch/FET-004-FET-014-order-of-holder-checks",
    "adopt-returns-without-member": "tasks/VAL-019-TASK-019-return-without-its-member",
    "stored-location-unchecked": "tasks/VAL-019-TASK-019-stored-return-held-elsewhere",
    "announce-handshake-deaths": "liveness/LIV-040-silent-handshake-not-announced",
    "refuse-repeated-features": "handshake/HS-025-LIV-021-odd-hello-fields-accepted",
    "zero-heartbeat-taken-literally": "handshake/HS-025-LIV-021-odd-hello-fields-accepted",
    "unbounded-status-waits": "objects/SEC-009-OBJ-002-status-waits-bounded-per-peer",
    "refuse-calls-before-creation": "actors/ACT-023-call-before-creation-waits",
    "serve-every-fetch": "fetch/FET-009-FET-020-holder-limits-requests-and-chunk-sizes",
    "tiny-chunks": "fetch/FET-009-FET-020-holder-limits-requests-and-chunk-sizes",
    "unbounded-handshakes": "handshake/SEC-021-oldest-handshake-forgotten",
    "ignore-key-file": "security/SEC-003-unauthenticated-peers-get-nothing",
    "trust-claimed-sender": "security/SEC-011-sender-must-match-its-key",
    "head-by-join-proof": "security/SEC-041-the-head-is-the-key-file-s",
    "derived-server-key": "security/SEC-040-HS-027-a-member-serves-with-its-own-key",
    "stop-on-notice-about-itself": "security/LIV-019-notice-about-the-receiver-itself",
    "import-any-function": "security/SEC-006-unexposed-functions",
    "send-oversized": "tasks/ZMQ-007-TASK-011-argument-beyond-the-executors-frame-limit",
    "trace-put-without-creation": "trace/TRC-003-TRC-008-iut-trace-checks-clean",
    "freed-is-unknown": "borrowing/OBJ-017-CNF-018-owner-answers-become-get-outcomes",
    "handshake-never-times-out": "liveness/LIV-018-unanswered-handshake-fails-what-waited",
    "splice-fetches": "fetch/FET-018-OBJ-013-no-splice-across-answers",
    "place-ignoring-memory": "rpc/TASK-041-retry-goes-where-its-arguments-fit",
    "record-rerun-copies": "lineage/LOC-008-LIN-007-rerun-copy-of-a-ready-return-not-recorded",
    "sequenced-heartbeat-unsequenced": "session/GEN-016-heartbeat-with-a-sequence-number",
    "no-answer-to-stale-hello": "handshake/SES-020-SES-006-hello-to-an-earlier-incarnation",
    "eager-value-check": "malformed/VAL-021-bad-portable-argument-fails-the-task",
    "no-router-handover": "session/ZMQ-015-second-dealer-with-the-same-routing-id",
    "answer-refused-duplicates": "session/GEN-019-refused-message-answered-once-in-turn",
    "refuse-early-at-once": "session/GEN-019-refused-message-answered-once-in-turn",
    "empty-function-malformed": "malformed/ID-011-empty-function-and-invalid-utf8",
    "merge-conflicting-refs": "malformed/REF-007-descriptor-names-another-owner",
    "whole-slot-per-task": "tasks/TASK-050-two-half-slot-tasks-run-at-once",
    "zero-cpu-waits": "tasks/TASK-051-task-taking-nothing-runs-beside-a-full-slot",
    "run-without-resource": "tasks/TASK-053-named-resource-not-offered",
    "resources-named-twice-accepted": "tasks/TASK-054-resource-named-twice-is-malformed",
    "actors-hold-nothing": "actors/ACT-027-actor-holds-the-slot-a-task-waits-for",
    "actor-resources-unchecked": "actors/ACT-028-ACT-030-actor-asking-for-a-resource-not-offered",
    "fenced-caller-keeps-actor": "actors/TASK-064-fenced-caller-releases-the-actor",
    "invalid-utf8-accepted": "malformed/ID-011-empty-function-and-invalid-utf8",
    "unsequenced-errors-name-nothing": "session/SES-038-ERR-003-unsequenced-error-ends-the-request",
    "wrong-state-means-dead": "session/SES-039-wrong-state-answer-is-no-death",
    "restarting-ends-actor": "actors/GEN-024-restarting-status-is-no-death",
    "member-checked-before-features": "malformed/ERR-010-first-broken-rule-answers",
    "id-limits-on-error-messages": "malformed/ID-010-id-fields-and-no-others",
    "text-ends-at-nul": "malformed/VAL-028-text-read-as-capnp-reads-it",
    "one-segment-frames": "malformed/ZMQ-020-segmented-frame-0",
    "queued-sent-unchecked": "tasks/ZMQ-021-ZMQ-007-queued-task-checked-with-the-announced-limit",
    "malformed-answer-waits": "tasks/GEN-030-undecodable-reply-fails-the-task",
    "incarnation-0-accepted": "malformed/ID-013-REF-004-incarnation-0",
    "sender-incarnation-0-accepted": "handshake/SES-042-sender-incarnation-0-unanswered",
    "borrower-incarnation-0-before-features": "handshake/ID-013-ERR-010-feature-before-incarnation-0",
    "repeat-hello-renegotiates": "handshake/HS-036-repeated-hello-not-renegotiated",
    "unpickle-fetched-forms": "fetch/OBJ-067-SEC-005-pickled-stored-form-not-read",
    "empty-address-malformed": "malformed/ID-013-REF-006-empty-owner-address",
    "list-oversized-table": "introspection/ZMQ-023-INT-007-table-beyond-the-frame-limit-summarized",
    "unfitted-replies": "tasks/ZMQ-022-ZMQ-007-error-reply-fits-the-limit",
    "error-text-exhausts-reply": "tasks/ZMQ-022-ZMQ-007-error-reply-fits-the-limit",
    "return-ids-twice-run": "tasks/VAL-030-return-id-named-twice-is-malformed",
    "malformed-refusal-answered": "tasks/GEN-030-GEN-008-refusal-without-error-fails-the-task",
    "refusals-rate-limited": "errors/ERR-008-refused-request-answered-past-the-limit",
    "refusal-code-for-queued": "liveness/LIV-031-HS-015-refused-handshake-ends-queued-task-as-a-death",
    "send-uncarried-tasks": "handshake/HS-035-task-the-session-cannot-carry-fails-at-home",
    "unknown-message-stops-type": "handshake/GEN-040-unknown-message-answer-ends-one-request",
    "repeat-hello-unchecked": "handshake/HS-036-HS-025-repeated-hello-checked-session-kept",
    "urlsafe-base64": "tasks/CNF-043-base64-data-written-exactly",
    "keep-bad-copies": "fetch/OBJ-076-bad-stored-form-is-no-copy",
    "unaddressed-peer-dead-at-once": "liveness/ID-016-owner-without-an-address-waits-for-one",
    "member-admits-joiners": "security/SEC-024-member-hears-only-bound-peers",
    "rebind-joined-peer": "security/SEC-023-head-binds-the-first-joiner",
    "rotate-by-any-member": "security/SEC-042-only-the-operator-rotates",
    "replaced-credential-kept": "security/SEC-025-CLU-052-join-credential-replaced-with-a-grace",
    "register-another-peer": "membership/CLU-067-CLU-013-register-records-the-caller-s-incarnation",
    "incarnation-not-recorded": "membership/CLU-067-CLU-013-register-records-the-caller-s-incarnation",
    "views-from-any-head": "membership/SEC-026-CLU-013-views-only-from-the-head-joined-through",
    "learn-from-anyone": "membership/SEC-026-CLU-013-views-only-from-the-head-joined-through",
    "fence-listed-incarnations": "membership/CLU-063-listed-incarnation-is-no-death",
    "demand-in-binary": "tasks/TASK-061-CNF-053-demand-converted-exactly",
    "actor-calls-in-arrival-order": "actors/ACT-014-ACT-003-calls-arriving-out-of-order",
    "late-actor-call-queued": "actors/ACT-014-ACT-003-calls-arriving-out-of-order",
    "overtaken-actor-call-waits": "actors/ACT-014-ACT-003-waiting-call-whose-number-started-answered-at-once",
    "send-oversized-creation": "actors/ZMQ-007-ACT-016-creation-beyond-the-hosts-frame-limit",
    "unready-actor-call-holds-everyone": "actors/ACT-034-unready-call-holds-back-only-its-caller",
    "incarnation-0-before-features": "handshake/REF-004-ERR-010-feature-before-incarnation-0",
    "refused-answer-leaves-request-open": "tasks/GEN-041-reply-using-a-feature-not-in-use-fails-the-task",
    "stopped-actor-call-answered-late": "actors/TASK-063-ACT-006-call-stopped-with-its-actor-answered-at-once",
    "owner-death-answers-callers-late": "actors/ACT-038-owner-death-ends-other-callers-calls",
    "undecodable-hello-ignored": "handshake/HS-036-HS-025-repeated-hello-checked-session-kept",
    "undecodable-hello-answered-unsequenced": "handshake/HS-036-HS-025-repeated-hello-checked-session-kept",
    "bad-copies-asked-for-ever": "fetch/OBJ-077-bad-copies-in-a-row-fail-the-argument",
    "unbounded-joiner-bindings": "security/SEC-023-CNF-054-bindings-of-unregistered-joiners-bounded",
    "members-for-registered-only": "membership/CLU-067-CLU-013-register-records-the-caller-s-incarnation",
    "portable-trailing-bytes-read": "malformed/VAL-004-VAL-021-bytes-after-a-portable-argument",
    "stored-form-trailing-bytes-kept": "fetch/OBJ-076-OBJ-010-stored-form-with-bytes-after-it",
    "undecodable-get-internal": "tasks/VAL-021-CNF-018-undecodable-value-got-as-malformed",
    "bare-numbers-as-float64": "tasks/CNF-057-json-value-grammar",
    "membership-answers-portable": "membership/CLU-030-head-answers-pickled-whatever-the-arguments",
    "fence-head-on-confirm-borrow": "membership/BOR-011-CLU-034-member-never-fences-its-head-on-confirm-borrow",
    "keep-unused-member-grants": "tasks/VAL-019-BOR-013-grants-in-unused-members-released",
    "retry-dead-named-executor": "rpc/TASK-024-RPC-004-dead-named-executor-never-retried",
    "fence-leaves-handshake-waiting": "liveness/LIV-012-LIV-018-fence-ends-an-unanswered-handshake",
    "overtake-reserved": "tasks/TASK-055-TASK-008-waiting-task-reserves-and-leaves-when-cancelled",
    "cancelled-waiting-task-waits": "tasks/TASK-055-TASK-008-waiting-task-reserves-and-leaves-when-cancelled",
    "unknown-code-as-task-failed": "rpc/ERR-002-unknown-error-code-is-final-and-passed-on",
    "unknown-argument-code-as-task-failed": "rpc/ERR-002-unknown-error-code-is-final-and-passed-on",
    "repeated-map-keys-accepted": "malformed/VAL-005-VAL-007-VAL-014-portable-rules-checked-where-read",
    "shallow-portable-nesting": "malformed/VAL-005-VAL-007-VAL-014-portable-rules-checked-where-read",
    "unknown-portable-member-as-null": "malformed/VAL-005-VAL-007-VAL-014-portable-rules-checked-where-read",
    "adopt-stray-chunks": "fetch/FET-013-chunks-of-other-requests-ignored",
    "grant-to-fenced-borrower": "borrowing/BOR-015-BOR-016-registrations-by-borrower-and-state",
    "refuse-unready-registrations": "borrowing/BOR-015-BOR-016-registrations-by-borrower-and-state",
    "status-ignores-features": "objects/OBJ-012-value-with-refs-not-answered-without-borrowing",
    "ready-is-final": "fetch/OBJ-015-failed-after-ready-fails-the-task",
    "adopt-any-attempt": "rpc/RPC-006-reply-for-another-attempt-ignored",
    "keep-freed-copies": "objects/GC-004-LOC-003-free-objects-drops-the-primary-copy",
    "reused-task-id-takes-the-task": "tasks/TASK-068-TASK-013-task-id-of-another-submitter-kept-apart",
    "reused-task-id-refused": "tasks/TASK-068-TASK-013-task-id-of-another-submitter-kept-apart",
    "reused-actor-id-ignored": "actors/ACT-035-actor-id-of-another-owner-refused",
    "skip-sequence-number": "session/SES-001-numbered-from-1-without-gaps",
    "stranger-acks": "session/SES-019-answer-without-a-session-acknowledges-nothing",
    "resend-to-fenced": "session/SES-013-nothing-resent-to-a-fenced-incarnation",
    "forget-replaced-fences": "liveness/SES-015-LIV-017-fence-outlives-the-next-incarnation",
    "accept-lz4-unnegotiated": "fetch/FET-017-no-accept-lz4-without-lz4",
    "ignore-lz4-refusal": "fetch/FET-067-refused-accept-lz4-resumed-at-once",
    "answer-fenced-every-time": "session/SES-017-declared-dead-at-most-once-a-second",
    "parallel-self-registrations": "borrowing/BOR-021-one-self-registration-in-flight",
    "retain-refused-grant": "borrowing/BOR-026-refused-registration-not-retained",
    "no-stall-limit": "session/SES-012-stalled-session-is-a-death",
    "confirm-revives-grant": "borrowing/BOR-022-confirmation-of-a-released-grant-ignored",
    "release-to-fenced-owner": "borrowing/BOR-024-no-release-to-a-fenced-owner",
    "keep-settled-out-of-scope": "objects/OWN-009-OWN-010-OWN-013-returns-dropped-while-pending",
    "reclaim-before-answering": "objects/OWN-009-OWN-010-OWN-013-returns-dropped-while-pending",
    "keep-failed-objects": "objects/OWN-009-OWN-010-OWN-013-returns-dropped-while-pending",
    "primary-loss-is-loss": "objects/LOC-007-secondary-copy-keeps-the-object-ready",
    "release-resent-grants": "borrowing/RPC-016-resent-reply-keeps-the-adopted-grant",
    "no-retry-for-failed-arguments": "rpc/RPC-015-propagated-failure-retried-like-any",
    "restart-on-dead-status": "actors/ACT-016-dead-from-a-live-host-is-final",
    "dead-status-ends-calls": "actors/ACT-016-dead-from-a-live-host-is-final",
    "handle-without-host-address": "actors/ACT-024-ACT-033-handle-names-the-host-address",
    "declared-dead-always-names-restart": "errors/ERR-005-declared-dead-requirement-names-the-restart-only",
    "list-length-limit": "malformed/GEN-011-long-list-is-no-malformed-message",
    "orphaned-actors-live-on": "actors/ACT-005-actor-stopped-when-its-owner-leaves",
    "rerun-without-argument": "lineage/LIN-014-unrebuildable-argument-ends-the-rebuild",
    "answer-after-goodbye": "liveness/LIV-032-nothing-sequenced-after-goodbye",
    "kill-waits-for-constructor": "actors/ACT-029-killed-before-its-constructor-starts",
    "unequal-status-lists-refused": "fetch/LOC-024-unequal-status-lists-paired-up",
    "calls-before-alive-refused": "actors/ACT-012-calls-before-alive-are-queued",
    "rebuild-death-as-lost": "lineage/LIN-008-rebuild-whose-executor-dies-without-budget",
    "resend-tasks-as-new": "rpc/RPC-003-unacknowledged-task-sent-in-one-message",
}


def faults() -> dict[str, tuple[str, str]]:
    from refrpc.iut import FAULTS  # pyimpl's own switch list; only this test reads it

    return dict(FAULTS)


def test_every_fault_switch_has_a_catching_case():
    assert set(CATCHES) == set(faults())
    assert all(case_id in REGISTRY for case_id in CATCHES.values())


def _switches() -> list[str]:
    """The switches this run checks: all of them, or a seeded slice (module docs)."""
    every = sorted(CATCHES)
    wanted = os.environ.get("REFRPC_FAULT_SWITCHES", "24")
    if wanted != "all" and not wanted.isdigit():  # switches named, comma-separated
        named = sorted({n.strip() for n in wanted.split(",") if n.strip()})
        unknown = [n for n in named if n not in CATCHES]
        assert not unknown, f"unknown fault switches in REFRPC_FAULT_SWITCHES: {unknown}"
        return named
    if wanted == "all" or int(wanted) >= len(every):
        return every
    seed = int(os.environ.get("REFRPC_FAULT_SEED", str(int(time.time() // 86400))))
    chosen = sorted(random.Random(seed).sample(every, int(wanted)))
    print(f"fault switches: {len(chosen)} of {len(every)}, REFRPC_FAULT_SEED={seed}: {', '.join(chosen)}")
    return chosen


def test_a_slice_of_switches_is_seeded_and_whole_on_request(monkeypatch):
    monkeypatch.setenv("REFRPC_FAULT_SEED", "7")
    monkeypatch.setenv("REFRPC_FAULT_SWITCHES", "5")
    first = _switches()
    assert len(first) == 5 and first == _switches() and set(first) <= set(CATCHES)
    monkeypatch.setenv("REFRPC_FAULT_SWITCHES", "all")
    assert _switches() == sorted(CATCHES)
    monkeypatch.setenv("REFRPC_FAULT_SWITCHES", "skip-release, no-goodbye")
    assert _switches() == ["no-goodbye", "skip-release"]


def test_each_switch_is_caught_by_its_case_naming_the_broken_requirement(tmp_path):
    config, reqs, known = load_config(CONFIG), load_requirements(), faults()

    def verdict(switch: str) -> str | None:
        result = run([REGISTRY[CATCHES[switch]]], config, reqs, run_dir=tmp_path / switch,
                     extra_env={"REFRPC_IUT_FAULTS": switch, "PYTHONPATH": REFRPC_PATH})
        (res,) = result.results
        failed = sorted({c.requirement for c in res.failed_checks})
        if res.grade not in (Grade.FAIL, Grade.NON_STRICT):
            return f"{switch}: {res.case_id} graded {res.grade.value}"
        if known[switch][0] not in failed:
            return f"{switch}: {res.case_id} failed on {failed}, not on {known[switch][0]}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(verdict, _switches()) if p]
    assert not problems
