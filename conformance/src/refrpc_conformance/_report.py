"""Reports of a run: terminal summary, JSON, JUnit XML, self-contained HTML.

Every failed check is shown with its requirement id, what was expected, what
happened, and the wire trace of its case (CNF-014).
"""

from __future__ import annotations

import html
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import IO, Any

from ._case import CaseResult, Grade
from ._requirements import Requirements
from ._runner import RunResult

_GRADE_ORDER = (Grade.PASS, Grade.NON_STRICT, Grade.FAIL, Grade.UNSUPPORTED, Grade.INFORMATIONAL)


# ---------------------------------------------------------------- terminal
def progress_line(result: CaseResult, done: int, total: int) -> str:
    """One line per finished case."""
    mark = result.grade.value
    if result.known_failing:
        mark += " (known failing)" if result.grade is Grade.FAIL else " (on the known-failing list!)"
    width = len(str(total))
    return f"[{done:>{width}}/{total}] {mark:<14} {result.case_id}  ({result.duration_s:.1f} s)"


def _trace_tail(result: CaseResult, lines: int = 25) -> list[str]:
    records = [r for r in result.trace if r.type != "Heartbeat"]
    beats = len(result.trace) - len(records)
    out = [r.line() for r in records[-lines:]]
    if len(records) > lines:
        out.insert(0, f"... {len(records) - lines} earlier messages")
    if beats:
        out.append(f"({beats} heartbeats not shown)")
    return out


def write_summary(run: RunResult, out: IO[str], *, verbose: bool = False) -> None:
    """The terminal summary: counts, then every FAIL and NON-STRICT case with its checks."""
    counts = "  ".join(f"{g.value} {run.count(g)}" for g in _GRADE_ORDER)
    out.write(f"\nrefrpc-conformance: {run.iut} (features: {', '.join(run.features)})\n")
    out.write(f"  {counts}   in {run.duration_s:.1f} s\n")
    for result in run.results:
        if result.grade not in (Grade.FAIL, Grade.NON_STRICT) and not (verbose and result.notes):
            continue
        label = result.grade.value + (" (known failing)" if result.known_failing and result.grade is Grade.FAIL else "")
        out.write(f"\n{label} {result.case_id}\n")
        for check in result.failed_checks:
            out.write(f"  {check.requirement or '(setup)'} ({check.level}) {check.note}\n")
            out.write(f"    expected: {check.expected}\n")
            out.write(f"    actual:   {check.actual}\n")
        if result.error:
            out.write("  error: " + result.error.strip().replace("\n", "\n    ") + "\n")
        for note in result.notes:
            out.write(f"  note: {note}\n")
        if result.grade is Grade.FAIL and not result.known_failing:
            out.write("  wire trace:\n")
            for line in _trace_tail(result):
                out.write(f"    {line}\n")
    stale = run.stale_known_failing
    if stale:
        out.write("\nKnown-failing cases that did not fail (remove them from the list, CNF-015):\n")
        for result in stale:
            out.write(f"  {result.case_id}: {result.grade.value}\n")
    out.write(f"\nexit status {run.exit_status}\n")


# ---------------------------------------------------------------- JSON
def write_json(run: RunResult, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(run.to_json(), indent=1, default=str), encoding="utf-8")


# ---------------------------------------------------------------- JUnit
def write_junit(run: RunResult, path: str | os.PathLike[str]) -> None:
    """JUnit XML: FAIL is a failure, UNSUPPORTED and known FAIL are skipped, a
    known-failing case that passed is a failure (CNF-015)."""
    failures = sum(1 for r in run.results if (r.grade is Grade.FAIL and not r.known_failing) or r.stale_known_failing)
    skipped = sum(1 for r in run.results if r.grade is Grade.UNSUPPORTED or (r.grade is Grade.FAIL and r.known_failing))
    suite = ET.Element(
        "testsuite",
        name=f"refrpc-conformance.{run.iut}",
        tests=str(len(run.results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{run.duration_s:.3f}",
        timestamp=run.started,
    )
    for result in run.results:
        tc = ET.SubElement(
            suite, "testcase", classname=f"{run.iut}.{result.case_id.split('/', 1)[0]}",
            name=result.case_id, time=f"{result.duration_s:.3f}",
        )
        body = _failure_text(result)
        if result.grade is Grade.FAIL and not result.known_failing:
            first = result.failed_checks[0] if result.failed_checks else None
            message = f"{first.requirement}: expected {first.expected}" if first else (result.error.splitlines() or ["FAIL"])[0]
            ET.SubElement(tc, "failure", message=message[:500], type="FAIL").text = body
        elif result.stale_known_failing:
            ET.SubElement(tc, "failure", message=f"on the known-failing list but {result.grade.value}", type="STALE").text = body
        elif result.grade is Grade.UNSUPPORTED:
            ET.SubElement(tc, "skipped", message="; ".join(result.notes) or "UNSUPPORTED")
        elif result.grade is Grade.FAIL:
            ET.SubElement(tc, "skipped", message="known failing").text = body
        if result.grade in (Grade.NON_STRICT, Grade.INFORMATIONAL):
            ET.SubElement(tc, "system-out").text = f"{result.grade.value}\n{body}"
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _failure_text(result: CaseResult) -> str:
    lines = [result.description, ""]
    for check in result.failed_checks:
        lines.append(f"{check.requirement or '(setup)'} ({check.level}) {check.note}")
        lines.append(f"  expected: {check.expected}")
        lines.append(f"  actual:   {check.actual}")
    if result.error:
        lines.append("error: " + result.error)
    lines.extend(f"note: {n}" for n in result.notes)
    lines.append("wire trace:")
    lines.extend("  " + r.line() for r in result.trace)
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
.g{display:inline-block;min-width:8.5em;font-weight:bold;padding:1px 6px;border-radius:3px;color:#fff;text-align:center}
.PASS{background:#2e7d32}.NON-STRICT{background:#b28704}.FAIL{background:#c62828}.UNSUPPORTED{background:#757575}.INFORMATIONAL{background:#1565c0}
details{border:1px solid #ddd;border-radius:4px;margin:.4em 0;padding:.3em .6em}
summary{cursor:pointer}blockquote{border-left:3px solid #bbb;margin:.4em 0;padding:.1em .8em;color:#444;background:#f7f7f7}
pre,code,.trace td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f4f4f4;padding:.5em;overflow-x:auto;white-space:pre-wrap}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}
.trace tr.in td:nth-child(2){color:#6a1b9a}.trace tr.out td:nth-child(2){color:#00695c}
.hidebeats tr.hb{display:none}.muted{color:#777}
"""

_JS = """
function beats(box){document.querySelectorAll('table.trace').forEach(t=>t.classList.toggle('hidebeats',!box.checked));}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def write_html(run: RunResult, path: str | os.PathLike[str], requirements: Requirements) -> None:
    """A single HTML file with no external resources: each case with its grade,
    requirement ids, quoted requirement text, checks (expected/actual), notes,
    wire trace, and the IUT's control transcript and log."""
    parts: list[str] = []
    w = parts.append
    w("<!DOCTYPE html><html><head><meta charset='utf-8'>")
    w(f"<title>RefRPC conformance: {_e(run.iut)}</title><style>{_CSS}</style><script>{_JS}</script></head><body>")
    w(f"<h1>RefRPC conformance report: {_e(run.iut)}</h1>")
    w(f"<p>Started {_e(run.started)}, {run.duration_s:.1f} s; features claimed: <code>{_e(', '.join(run.features))}</code>; "
      f"exit status <b>{run.exit_status}</b>.</p>")
    w("<table><tr>" + "".join(f"<th><span class='g {g.value}'>{g.value}</span></th>" for g in _GRADE_ORDER) + "</tr><tr>")
    w("".join(f"<td style='text-align:center'>{run.count(g)}</td>" for g in _GRADE_ORDER) + "</tr></table>")
    stale = run.stale_known_failing
    if stale:
        w("<p class='bad'>Known-failing cases that did not fail (the list is stale, CNF-015): "
          + ", ".join(_e(r.case_id) for r in stale) + "</p>")
    w("<p><label><input type='checkbox' checked onchange='beats(this)'> show Heartbeats in traces</label></p>")
    w("<h2>Cases</h2><table><tr><th>Grade</th><th>Case</th><th>Requirements</th><th>Time</th></tr>")
    for r in run.results:
        kf = " <span class='muted'>(known failing)</span>" if r.known_failing else ""
        w(f"<tr><td><span class='g {r.grade.value}'>{r.grade.value}</span></td>"
          f"<td><a href='#{_anchor(r.case_id)}'>{_e(r.case_id)}</a>{kf}</td>"
          f"<td>{_e(', '.join(r.requirements))}</td><td>{r.duration_s:.1f} s</td></tr>")
    w("</table><h2>Details</h2>")
    for r in run.results:
        _case_html(r, requirements, w)
    w("</body></html>")
    Path(path).write_text("".join(parts), encoding="utf-8")


def _anchor(case_id: str) -> str:
    return "case-" + "".join(ch if ch.isalnum() else "-" for ch in case_id)


def _case_html(r: CaseResult, requirements: Requirements, w: Any) -> None:
    opened = " open" if r.grade in (Grade.FAIL, Grade.NON_STRICT) and not r.known_failing else ""
    w(f"<details id='{_anchor(r.case_id)}'{opened}><summary><span class='g {r.grade.value}'>{r.grade.value}</span> "
      f"<b>{_e(r.case_id)}</b> <span class='muted'>{r.duration_s:.1f} s</span></summary>")
    w(f"<p>{_e(r.summary)}</p>")
    if r.features:
        w(f"<p class='muted'>Needs features: {_e(', '.join(r.features))}</p>")
    # The requirements the case is about, then any other one a failed check names.
    extra = [c.requirement for c in r.failed_checks if c.requirement and c.requirement not in r.requirements]
    for req_id in [*r.requirements, *dict.fromkeys(extra)]:
        req = requirements.get(req_id)
        level = f" ({req.level}, {req.file} &sect; {_e(req.section)})" if req else ""
        w(f"<blockquote><b>{_e(req_id)}</b>{level}<br>{_e(requirements.text(req_id))}</blockquote>")
    if r.checks:
        w("<table><tr><th></th><th>Requirement</th><th>Level</th><th>Expected</th><th>Actual</th><th>Where</th></tr>")
        for c in r.checks:
            mark = "<span class='ok'>ok</span>" if c.passed else "<span class='bad'>FAILED</span>"
            w(f"<tr><td>{mark}</td><td>{_e(c.requirement or '(setup)')}</td><td>{_e(c.level)}</td>"
              f"<td>{_e(c.expected)}</td><td>{_e(c.actual)}</td><td>{_e(c.note)}</td></tr>")
        w("</table>")
    for note in r.notes:
        w(f"<p class='muted'>note: {_e(note)}</p>")
    if r.error:
        w(f"<p class='bad'>Error</p><pre>{_e(r.error)}</pre>")
    if r.trace:
        w(f"<p><b>Wire trace</b> ({len(r.trace)} messages)</p><table class='trace'>"
          "<tr><th>t (s)</th><th>dir</th><th>suite peer</th><th>remote</th><th>seq</th><th>ack</th>"
          "<th>type</th><th>summary</th><th>disposition</th><th>frames</th></tr>")
        for rec in r.trace:
            cls = rec.direction + (" hb" if rec.type == "Heartbeat" else "")
            arrow = "&larr; in" if rec.direction == "in" else "&rarr; out"
            w(f"<tr class='{cls}'><td>{rec.t:.3f}</td><td>{arrow}</td><td>{_e(rec.local)}</td><td>{_e(rec.remote)}</td>"
              f"<td>{rec.seq}</td><td>{rec.ack}</td><td>{_e(rec.type)}</td><td>{_e(rec.summary)}</td>"
              f"<td>{_e(rec.disposition)}</td><td>{_e(rec.frame_sizes)}</td></tr>")
        w("</table>")
    for iut in r.iuts:
        w(f"<details><summary>IUT {_e(iut.get('peer_id'))} (exit status {_e(iut.get('returncode'))}): "
          "control channel and log</summary>")
        control = "\n".join(
            f"-> {json.dumps(c['request'], default=str)}\n<- {json.dumps(c['response'], default=str)}" for c in iut.get("control", [])
        )
        w(f"<pre>{_e(control) or '(no control requests)'}</pre>")
        if iut.get("events"):
            w(f"<pre>{_e(chr(10).join(json.dumps(e, default=str) for e in iut['events']))}</pre>")
        w(f"<pre>{_e(iut.get('stderr_tail') or '(empty log)')}</pre></details>")
    w("</details>")
