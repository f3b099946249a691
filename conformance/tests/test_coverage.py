"""The coverage listing: every requirement is checked by a case, marked not testable
on the wire with a reason, or reported as having no case yet."""

from __future__ import annotations

from refrpc_conformance import REGISTRY, load_requirements
from refrpc_conformance._cli import main
from refrpc_conformance._coverage import NOT_ON_THE_WIRE, coverage


def test_requirements_marked_not_on_the_wire_exist_and_no_case_cites_them():
    reqs = load_requirements()
    cited = {r for spec in REGISTRY.values() for r in spec.requirements}
    assert all(req in reqs for req in NOT_ON_THE_WIRE)
    assert not cited & set(NOT_ON_THE_WIRE), "a case checks it after all: remove it from NOT_ON_THE_WIRE"
    assert all(len(reason) > 40 for reason in NOT_ON_THE_WIRE.values())


def test_every_requirement_gets_one_row_and_cited_ids_exist(capsys):
    reqs = load_requirements()
    rows = coverage(REGISTRY.values(), reqs)
    assert [r for r, _, _ in rows] == reqs.ids()
    unknown = sorted({r for spec in REGISTRY.values() for r in spec.requirements} - set(reqs.ids()))
    assert not unknown, f"cases cite requirements the spec does not define: {unknown}"
    assert main(["--coverage"]) == 0
    out = capsys.readouterr().out
    assert "SEC-020   not on the wire" in out and f"{len(rows)} requirements:" in out
