"""The pipeline every command shares: open, merge, replay, report what is missing."""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

from ._check import end_checks
from ._findings import Diagnostics, Finding, Severity
from ._merge import Item, Merger
from ._replay import Replay
from ._source import Progress, Run, open_run
from ._state import Obj, Step


def merged(run: Run, progress: Progress | None = None) -> Merger:
    """The merged records of ``run`` (iterate once)."""
    return Merger(run, progress)


def note_missing_peers(run: Run, merger: Merger) -> None:
    """Problems for the peers whose messages could not be paired because their trace is missing."""
    missing: dict[tuple[str, int], list[int]] = {}
    for key, n in merger.to_untraced.items():
        missing.setdefault(key, [0, 0])[0] += n
    for key, n in merger.from_untraced.items():
        missing.setdefault(key, [0, 0])[1] += n
    for (peer, inc), (to, frm) in sorted(missing.items()):
        other = " (traces of other incarnations of it exist)" if peer in run.peers else ""
        who = f"{peer}/{inc:x}" if inc else peer
        run.diag.problem(Severity.WARNING, f"no trace of {who}{other}: {to} messages to it and {frm} from it "
                         "are shown unpaired, and what it did is unknown")


def replay(run: Run, progress: Progress | None = None, *, track: Callable[[str], bool] | None = None,
           stop: Callable[[Item], bool] | None = None, each: Callable[[Item], None] | None = None,
           on_step: Callable[[Obj, Step], None] | None = None) -> Replay:
    """Replay the whole run (or up to the first record for which ``stop`` is true).

    ``each`` is called with every record after the replay has taken it.
    """
    r = Replay(run, track=track, on_step=on_step)
    m = Merger(run, progress)
    complete = True
    for item in m:
        if stop is not None and stop(item):
            complete = False
            break
        r.feed(item)
        if each is not None:
            each(item)
    r.finish()
    if complete:
        note_missing_peers(run, m)
    return r


def check_run(run: Run, progress: Progress | None = None) -> list[Finding]:
    """Every finding of the run: trace format, transitions, protocol rules, leaks at the end.

    Findings are ordered by the first record of their evidence.
    """
    r = replay(run, progress)
    end_checks(r)
    return sorted(run.diag.findings, key=lambda f: (f.evidence[0].index if f.evidence else 0, f.requirement))


def check(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Finding], Diagnostics]:
    """Check the traces at ``paths`` (files or directories): findings, and the input's problems.

    Example:
        >>> findings, diag = check(["traces/"])             # doctest: +SKIP
        >>> [f.requirement for f in findings]               # doctest: +SKIP
        ['BOR-005']
    """
    run = open_run(paths)
    return check_run(run), run.diag


def iter_items(run: Run, progress: Progress | None = None) -> Iterator[Item]:
    yield from Merger(run, progress)
