"""Cases, checks and grades (conformance-hooks.md §4).

A case is a function registered with :func:`case` under an id named after the
spec section and the requirement ids it checks, for example
``handshake/HS-002-unknown-major-refused``. Its body gets a
:class:`~refrpc_conformance.CaseContext`, drives the implementation under test,
and records :class:`Check`\\ s; the checks decide the grade.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ._requirements import ABSOLUTE_LEVELS, RECOMMENDED_LEVELS, Requirements
from ._trace import TraceRecord

#: A case id: a section, a slash, then requirement ids and a slug joined by dashes.
CASE_ID = re.compile(r"^[a-z][a-z0-9-]*/([A-Z]+-\d{3}-)+[a-z0-9][a-z0-9-]*$")
_REQ_IN_ID = re.compile(r"[A-Z]+-\d{3}")


class Grade(str, enum.Enum):
    """The grade of one case (CNF-014, §4 of conformance-hooks.md)."""

    PASS = "PASS"
    NON_STRICT = "NON-STRICT"
    FAIL = "FAIL"
    UNSUPPORTED = "UNSUPPORTED"
    INFORMATIONAL = "INFORMATIONAL"


@dataclass
class Check:
    """One requirement checked once: what was expected and what happened."""

    #: The requirement id ("" for a check of the suite's own setup).
    requirement: str
    #: "MUST", "SHOULD", ... : decides what a failure does to the grade.
    level: str
    passed: bool
    expected: str
    actual: str
    #: Where in the case, for people.
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "level": self.level,
            "passed": self.passed,
            "expected": self.expected,
            "actual": self.actual,
            "note": self.note,
        }


CaseBody = Callable[[Any], None]


@dataclass(frozen=True)
class CaseSpec:
    """A registered case."""

    id: str
    body: CaseBody
    #: Requirement ids it checks, in the order the description quotes them.
    requirements: tuple[str, ...]
    #: Features the IUT must claim; otherwise the case is UNSUPPORTED.
    features: tuple[str, ...]
    #: What the case does, in one or two sentences.
    summary: str
    #: Bound on the whole case in seconds; only a hung case reaches it.
    timeout: float
    #: The case records an option the spec leaves open; it has no verdict.
    informational: bool = False
    #: Environment for the IUTs it starts (CNF-012 timing overrides).
    iut_env: tuple[tuple[str, str], ...] = ()

    @property
    def section(self) -> str:
        return self.id.split("/", 1)[0]

    def description(self, requirements: Requirements) -> str:
        """The summary followed by the quoted text of every requirement checked."""
        lines = [self.summary, ""]
        for req_id in self.requirements:
            lines.append(f"> {requirements.text(req_id)}")
            lines.append("")
        return "\n".join(lines).rstrip()


#: Every registered case, by id, in registration order.
REGISTRY: dict[str, CaseSpec] = {}


def case(
    case_id: str,
    *,
    requirements: Iterable[str],
    summary: str,
    features: Iterable[str] = ("core",),
    timeout: float = 60.0,
    informational: bool = False,
    iut_env: dict[str, str] | None = None,
) -> Callable[[CaseBody], CaseBody]:
    """Register a case.

    Args:
        case_id: ``section/REQ-ID[-REQ-ID...]-slug``; every id in it must be in
            ``requirements``.
        requirements: The requirement ids the case checks.
        summary: What it does.
        features: Features the IUT must claim.
        timeout: Bound on the case in seconds.
        informational: The case has no verdict, only observations.
        iut_env: Environment for the IUTs the case starts.

    Raises:
        ValueError: A malformed or duplicate id, or an id naming a requirement
            the case does not list.
    """
    reqs = tuple(requirements)

    def register(body: CaseBody) -> CaseBody:
        if not CASE_ID.match(case_id):
            raise ValueError(f"case id {case_id!r} is not section/REQ-ID-...-slug")
        if case_id in REGISTRY:
            raise ValueError(f"case {case_id!r} registered twice")
        named = _REQ_IN_ID.findall(case_id.split("/", 1)[1])
        missing = [r for r in named if r not in reqs]
        if missing:
            raise ValueError(f"case {case_id!r} names {missing} but does not list them in requirements")
        REGISTRY[case_id] = CaseSpec(
            id=case_id,
            body=body,
            requirements=reqs,
            features=tuple(features),
            summary=summary,
            timeout=timeout,
            informational=informational,
            iut_env=tuple(sorted((iut_env or {}).items())),
        )
        return body

    return register


def select(cases: Iterable[CaseSpec], patterns: Iterable[str] | None) -> list[CaseSpec]:
    """The cases whose id matches any of the globs (all of them without globs)."""
    pats = [p for p in (patterns or []) if p]
    if not pats:
        return list(cases)
    return [c for c in cases if any(fnmatch.fnmatchcase(c.id, p) or p == c.id for p in pats)]


def is_known_failing(case_id: str, patterns: Iterable[str]) -> bool:
    """Whether the known-failing list names this case (an id or a glob)."""
    return any(case_id == p or fnmatch.fnmatchcase(case_id, p) for p in patterns)


@dataclass
class CaseResult:
    """The outcome of one case."""

    case_id: str
    grade: Grade
    requirements: tuple[str, ...]
    summary: str
    description: str
    features: tuple[str, ...]
    checks: list[Check] = field(default_factory=list)
    #: Observations with no verdict (INFORMATIONAL facts, options taken).
    notes: list[str] = field(default_factory=list)
    #: Why the case stopped early, or the suite's own error.
    error: str = ""
    duration_s: float = 0.0
    trace: list[TraceRecord] = field(default_factory=list)
    #: Per IUT: its PeerId, control transcript, events and log tail.
    iuts: list[dict[str, Any]] = field(default_factory=list)
    #: On the known-failing list.
    known_failing: bool = False

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def ok_for_exit(self) -> bool:
        """Whether this case lets the run exit 0 (CNF-015)."""
        if self.known_failing:
            return self.grade in (Grade.FAIL, Grade.UNSUPPORTED)
        return self.grade is not Grade.FAIL

    @property
    def stale_known_failing(self) -> bool:
        """A known-failing case that did not fail: the list is stale (CNF-015)."""
        return self.known_failing and self.grade in (Grade.PASS, Grade.NON_STRICT, Grade.INFORMATIONAL)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "grade": self.grade.value,
            "known_failing": self.known_failing,
            "stale_known_failing": self.stale_known_failing,
            "requirements": list(self.requirements),
            "summary": self.summary,
            "description": self.description,
            "features": list(self.features),
            "duration_s": round(self.duration_s, 3),
            "checks": [c.to_json() for c in self.checks],
            "notes": list(self.notes),
            "error": self.error,
            "iuts": self.iuts,
            "trace": [r.to_json() for r in self.trace],
        }


def grade_of(checks: Iterable[Check], *, error: str = "", informational: bool = False) -> Grade:
    """The grade that a case's checks earn (CNF-014).

    A failed absolute requirement, or an error (a hung case, an IUT that died, a
    case that could not go on), is FAIL; otherwise a missed recommendation is
    NON-STRICT; otherwise an informational case is INFORMATIONAL, and any other
    case PASS. A failed check of an option (MAY) changes nothing.
    """
    checks = list(checks)
    if error or any(not c.passed and c.level in ABSOLUTE_LEVELS for c in checks):
        return Grade.FAIL
    if any(not c.passed and c.level in RECOMMENDED_LEVELS for c in checks):
        return Grade.NON_STRICT
    if informational:
        return Grade.INFORMATIONAL
    return Grade.PASS
