"""refrpc-trace: read, follow and check RefRPC traces.

Traces are in the canonical trace format of the specification
(``spec/trace-format.md``): one file per peer incarnation, any implementation.
This package merges them into one happened-before order (pairing sends with
receives by the format's rules, never by time), decodes every message with
:mod:`refrpc.codec`, and replays the run with the protocol's own rules (the
transition tables of :mod:`refrpc.core.tables`). Everything streams: a run of
any length is read in memory bounded by what is alive at one time.

The command line is ``refrpc-trace`` (:mod:`refrpc_trace._cli`); the same
functions are available here:

Example:
    >>> import refrpc_trace
    >>> findings, diagnostics = refrpc_trace.check(["traces/"])   # doctest: +SKIP
    >>> for f in findings:                                         # doctest: +SKIP
    ...     print(f.render())
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from ._analysis import check, check_run, replay
from ._check import Holder, end_checks, holders
from ._findings import Diagnostics, Evidence, Finding, Kind, Problem, Severity
from ._html import page_data, render_html
from ._lineage import Lineage, Producer, lineage
from ._merge import Item, Merger, Status
from ._perfetto import PerfettoWriter
from ._replay import Replay
from ._show import ShowFilter, TimePoint, show
from ._source import Progress, Run, TraceFile, open_run

__all__ = [
    "Diagnostics",
    "Evidence",
    "Finding",
    "Holder",
    "Item",
    "Kind",
    "Lineage",
    "Merger",
    "PerfettoWriter",
    "Problem",
    "Producer",
    "Progress",
    "Replay",
    "Run",
    "Severity",
    "ShowFilter",
    "Status",
    "TimePoint",
    "TraceFile",
    "__version__",
    "check",
    "check_run",
    "end_checks",
    "holders",
    "lineage",
    "open_run",
    "page_data",
    "render_html",
    "replay",
    "show",
]
