"""Cases run against the fake IUT: passing, failing on a deliberate bug, known-failing
bookkeeping, and the CLI with its JSON, JUnit and HTML reports."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from refrpc_conformance import REGISTRY, Grade, load_requirements, run
from refrpc_conformance._cli import main

from conformance_testkit import HERE, REFRPC_PATH

pytestmark = pytest.mark.timeout(120)

WELCOME = "handshake/HS-002-HS-010-welcome-answers-hello"
DUPLICATE = "session/SES-002-duplicate-seq-discarded"
GARBAGE = "malformed/GEN-004-garbage-frame"
HOLD = "borrowing/BOR-007-BOR-005-hold-registers-then-releases"


def run_cases(config, ids, tmp_path, **kw):
    return run([REGISTRY[i] for i in ids], config, load_requirements(), run_dir=tmp_path, **kw)


def test_a_correct_fake_passes_and_an_unclaimed_feature_is_unsupported(fake_config, tmp_path):
    result = run_cases(fake_config(), [WELCOME, DUPLICATE, HOLD], tmp_path)
    grades = {r.case_id: r.grade for r in result.results}
    assert grades == {WELCOME: Grade.PASS, DUPLICATE: Grade.PASS, HOLD: Grade.UNSUPPORTED}, [
        (r.case_id, r.failed_checks, r.error) for r in result.results
    ]
    assert result.exit_status == 0
    welcome = result.results[0]
    assert {"HS-003", "HS-010", "SES-007"} <= {c.requirement for c in welcome.checks}
    assert any(r.type == "Welcome" and r.direction == "in" for r in welcome.trace)
    assert welcome.iuts and welcome.iuts[0]["peer_id"] == "iut-1"
    assert result.results[2].iuts == [], "an UNSUPPORTED case starts nothing"


@pytest.mark.parametrize(
    ("bug", "case_id", "requirement", "actual"),
    [
        ("minor-2", WELCOME, "HS-003", "2"),
        ("no-dedupe", DUPLICATE, "SES-002", "2 TaskReplies"),
        ("crash-on-garbage", GARBAGE, "", "exited with status 3"),
    ],
)
def test_a_deliberate_bug_fails_its_case_naming_requirement_expected_actual_and_trace(
    fake_config, tmp_path, bug, case_id, requirement, actual
):
    result = run_cases(fake_config(bug), [case_id], tmp_path)
    (res,) = result.results
    assert res.grade is Grade.FAIL and result.exit_status == 1
    failed = [c for c in res.failed_checks if c.requirement == requirement]
    assert failed and actual in failed[0].actual, [(c.requirement, c.actual) for c in res.failed_checks]
    assert failed[0].expected
    assert res.trace, "the failure comes with the case's wire trace (CNF-014)"


def test_known_failing_list_tolerates_the_failure_and_catches_a_stale_entry(fake_config, tmp_path):
    known = ["handshake/HS-002-HS-010-*"]
    broken = run_cases(fake_config("minor-2"), [WELCOME], tmp_path, known_failing=known)
    assert broken.results[0].grade is Grade.FAIL and broken.results[0].known_failing
    assert broken.exit_status == 0
    fixed = run_cases(fake_config(), [WELCOME], tmp_path, known_failing=known)
    assert fixed.results[0].grade is Grade.PASS and fixed.results[0].stale_known_failing
    assert fixed.exit_status == 1  # CNF-015: the list cannot go stale


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(f"{tag} {name}={value}")


def test_cli_writes_json_junit_and_a_self_contained_html_report(tmp_path, capsys):
    toml = tmp_path / "fake.toml"
    fake = HERE / "fake_iut.py"
    toml.write_text(
        'name = "fake"\n'
        f'command = ["python", {json.dumps(str(fake))}, "--endpoint", "{{endpoint}}", "--peer-id", "{{peer_id}}"]\n'
        'features = ["core"]\n'
        f'env = {{ FAKE_IUT_BUGS = "minor-2", PYTHONPATH = {json.dumps(REFRPC_PATH)} }}\n'
    )
    known = tmp_path / "known.txt"
    known.write_text("# expected to fail for now\nsession/SES-002-duplicate-*\n")
    out = {k: tmp_path / f"report.{k}" for k in ("json", "xml", "html")}
    status = main([
        "--iut", str(toml), "--cases", f"{WELCOME},{DUPLICATE}", "--cases", HOLD, "--known-failing", str(known),
        "--json", str(out["json"]), "--junit", str(out["xml"]), "--html", str(out["html"]), "--run-dir", str(tmp_path / "run"),
    ])
    printed = capsys.readouterr().out
    assert status == 1  # the welcome case fails (HS-003), and the duplicate case, on the list, passes (stale)
    assert "FAIL handshake/HS-002-HS-010-welcome-answers-hello" in printed and "HS-003" in printed
    assert "Known-failing cases that did not fail" in printed and DUPLICATE in printed

    data = json.loads(out["json"].read_text())
    by_id = {c["id"]: c for c in data["cases"]}
    assert data["exit_status"] == 1 and data["counts"]["FAIL"] == 1 and data["counts"]["UNSUPPORTED"] == 1
    assert by_id[DUPLICATE]["stale_known_failing"] is True
    bad = [c for c in by_id[WELCOME]["checks"] if not c["passed"]]
    assert bad[0]["requirement"] == "HS-003" and bad[0]["actual"] == "2"
    assert any(t["type"] == "Welcome" for t in by_id[WELCOME]["trace"])

    suite = ET.parse(out["xml"]).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "2", "1")
    failures = {tc.get("name"): tc.find("failure") for tc in suite.iter("testcase")}
    assert failures[WELCOME] is not None and "HS-003" in failures[WELCOME].text and "Welcome" in failures[WELCOME].text
    assert failures[DUPLICATE].get("type") == "STALE"

    page = out["html"].read_text()
    tags = _Tags()
    tags.feed(page)
    assert tags.external == [], "no external resources"
    reqs = load_requirements()
    assert WELCOME in page and "NON-STRICT" in page
    assert reqs.text("HS-003") in html.unescape(page), "the requirement is quoted"
    assert "protocolMinor 1 (the smaller of 7 and 1)" in page


def test_cli_lists_cases_without_an_iut(capsys):
    assert main(["--list", "--cases", "session/*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("session/") for line in lines)
    assert main(["--cases", "session/*"]) == 2  # no --iut
