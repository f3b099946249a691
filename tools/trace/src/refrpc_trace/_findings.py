"""What the inspector reports: problems with the input, and findings about the run.

A :class:`Problem` is about the *input*: a file that cannot be read, ends early,
is corrupt, was written by a newer protocol, or a peer whose trace is missing.
Problems make results partial; they never stop the inspector.

A :class:`Finding` is about the *recorded run*: a rule of the specification that
the trace shows broken. Each cites the requirement id and carries the shortest
sequence of records (:class:`Evidence`) that shows it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class Severity:
    """How much a :class:`Problem` limits the results."""

    #: Nothing is missing that a reader could have had (a trace whose writer
    #: stopped mid-record, TRC-012).
    NOTE = "note"
    #: Results are partial: records or whole traces could not be used.
    WARNING = "warning"
    #: An input could not be used at all.
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with the input; results are partial unless it is a note."""

    severity: str
    message: str
    #: The file concerned, or empty.
    path: str = ""
    #: The trace-format requirement concerned, or empty.
    requirement: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        req = f" ({self.requirement})" if self.requirement else ""
        return f"{self.severity}: {where}{self.message}{req}"

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "message": self.message, "path": self.path, "requirement": self.requirement}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One record of a finding's message sequence."""

    #: Position in the merged order (``#N`` in ``show``), or -1 when the record
    #: is not in it (a record of a file that was read on its own).
    index: int
    #: Seconds since the start of the run, on the inspector's aligned clock.
    time_s: float
    #: The peer that wrote the record.
    peer: str
    #: What the record says, one line.
    text: str

    def __str__(self) -> str:
        where = f"#{self.index}" if self.index >= 0 else "#?"
        return f"{where:>8} {self.time_s:10.6f}s  {self.peer:<12} {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "time_s": round(self.time_s, 9), "peer": self.peer, "text": self.text}


class Kind:
    """Categories of findings (the ``kind`` of a :class:`Finding`)."""

    LEAK = "leak"
    USE_AFTER_RELEASE = "use-after-release"
    DOUBLE_FREE = "double-free"
    DEAD_PEER = "message-to-dead-peer"
    OWNER_DEATH = "owner-death"
    FREE_WHILE_HELD = "free-while-held"
    BORROWING = "borrowing"
    TRANSITION = "illegal-transition"
    TRACE_FORMAT = "trace-format"


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule of the specification that the recorded run breaks."""

    #: The requirement id that is broken (``BOR-005``).
    requirement: str
    #: One of :class:`Kind`.
    kind: str
    #: One sentence: what happened and why it breaks the rule.
    summary: str
    #: The shortest sequence of records that shows it, in merged order.
    evidence: tuple[Evidence, ...] = ()
    #: The object concerned, or empty.
    object_id: str = ""

    def render(self) -> str:
        head = f"[{self.requirement}] {self.kind}: {self.summary}"
        return "\n".join([head, *(f"    {e}" for e in self.evidence)])

    def to_json(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "kind": self.kind,
            "summary": self.summary,
            "object_id": self.object_id,
            "evidence": [e.to_json() for e in self.evidence],
        }


#: How many problems of one kind from one file are kept; the rest are counted.
MAX_SIMILAR = 5


@dataclass
class Diagnostics:
    """Collects problems and findings while the input is read.

    Repetitive entries (the same requirement broken over and over in one file)
    are kept up to :data:`MAX_SIMILAR` times and counted after that, so that a
    damaged trace of a million records cannot fill memory with complaints.
    """

    problems: list[Problem] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: Entries dropped after MAX_SIMILAR, by (path or kind, requirement).
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)
    _seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    def problem(self, severity: str, message: str, path: str = "", requirement: str = "") -> None:
        p = Problem(severity, message, path, requirement)
        if p in self.problems:
            return  # the same file read again (lineage reads in several passes)
        key = (path, requirement or message)
        self._seen[key] += 1
        if requirement and self._seen[key] > MAX_SIMILAR:
            self.suppressed[key] += 1
            return
        self.problems.append(p)

    def finding(self, finding: Finding, *, group: str = "") -> None:
        """Record a finding; ``group`` (e.g. a file) bounds repeats of one requirement."""
        key = (group or finding.kind, finding.requirement)
        self._seen[key] += 1
        if self._seen[key] > MAX_SIMILAR * 4:
            self.suppressed[key] += 1
            return
        self.findings.append(finding)

    @property
    def partial(self) -> bool:
        """True when some input could not be used (a warning or an error)."""
        return any(p.severity != Severity.NOTE for p in self.problems)

    def suppressed_lines(self) -> list[str]:
        return [f"... and {n} more like it ({req or 'same'}{', ' + where if where else ''})"
                for (where, req), n in sorted(self.suppressed.items())]
