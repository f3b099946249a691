"""The ``refrpc-trace`` command line.

Exit codes (the same for every command):

- 0: done; for ``check``, no findings.
- 1: ``check`` found findings; ``object``/``holders``/``lineage``: no record
  mentions the object.
- 2: usage error, or no trace could be read at all.
- 3: done, but the results are partial: some input could not be used (a
  corrupt or unreadable file, a newer protocol version, a peer whose trace is
  missing, records missing from a trace). Code 1 wins over 3.
- 4: the inspector itself failed (a bug): one line on stderr; set
  ``REFRPC_TRACE_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Sequence

from . import __version__
from ._analysis import check_run, replay
from ._check import holders
from ._findings import Diagnostics
from ._html import page_data, render_html
from ._lineage import lineage
from ._merge import Merger
from ._perfetto import PerfettoWriter
from ._show import ShowFilter, TimeError, TimePoint, show
from ._source import Progress, Run, open_run

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERNAL = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="refrpc-trace",
        description="Read, follow and check RefRPC traces (the canonical trace format, spec/trace-format.md). "
                    "PATHS are trace files or directories of *.rrtrace files, one file per peer incarnation.",
        epilog="Times (--since, --until, --at) are #N, a record number as `show` prints it, or seconds since the "
               "start of the run on the inspector's aligned clock (1.5, 1.5s, 1500ms). Exit codes: 0 ok, 1 findings "
               "(check) or object not found, 2 usage or no readable trace, 3 partial input, 4 inspector bug.")
    p.add_argument("--version", action="version", version=f"refrpc-trace {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--progress", action="store_true", help="report reading progress on stderr "
                        "(on by default for inputs of 32 MB or more)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress and no problem report on stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("show", parents=[common], help="the merged, decoded message list")
    s.add_argument("paths", nargs="+", metavar="PATHS")
    s.add_argument("--peer", action="append", default=[], help="only records of/with this peer (repeatable)")
    s.add_argument("--object", action="append", default=[], help="only records naming this object (repeatable)")
    s.add_argument("--task", action="append", default=[], help="only records naming this task (repeatable)")
    s.add_argument("--type", action="append", default=[],
                   help="only this message type or event name, e.g. SubmitTask, transition (repeatable)")
    s.add_argument("--since", help="start at this time")
    s.add_argument("--until", help="stop at this time")
    s.add_argument("--events", action="store_true", help="include local events (transitions, ...)")
    s.add_argument("--all", action="store_true",
                   help="include heartbeats, retransmissions, duplicate receives and hold events")
    s.add_argument("--limit", type=int, help="at most this many lines")
    s.add_argument("--json", action="store_true", help="one JSON object per line")

    o = sub.add_parser("object", parents=[common], help="one object's life line")
    o.add_argument("object_id", metavar="ID")
    o.add_argument("paths", nargs="+", metavar="PATHS")
    o.add_argument("--holds", action="store_true", help="include every hold counter change")
    o.add_argument("--json", action="store_true")

    h = sub.add_parser("holders", parents=[common], help="who held a ref to an object at a time, and why")
    h.add_argument("object_id", metavar="ID")
    h.add_argument("paths", nargs="+", metavar="PATHS")
    h.add_argument("--at", required=True, help="the time (#N or seconds)")
    h.add_argument("--json", action="store_true")

    li = sub.add_parser("lineage", parents=[common], help="the tasks and objects an object was built from")
    li.add_argument("object_id", metavar="ID")
    li.add_argument("paths", nargs="+", metavar="PATHS")
    li.add_argument("--depth", type=int, default=1000, help="follow at most this many levels")
    li.add_argument("--json", action="store_true")

    c = sub.add_parser("check", parents=[common],
                       help="replay the run against the protocol's rules: leaks, use after release, double free, "
                            "messages to dead peers, owner-death handling, illegal transitions")
    c.add_argument("paths", nargs="+", metavar="PATHS")
    c.add_argument("--json", action="store_true")

    e = sub.add_parser("export", parents=[common], help="export for a trace viewer")
    e.add_argument("paths", nargs="+", metavar="PATHS")
    e.add_argument("--perfetto", required=True, metavar="OUT",
                   help="write Chrome/Perfetto trace-event JSON to OUT ('-' for stdout); open it at ui.perfetto.dev")
    e.add_argument("--counters", type=int, default=64, help="objects that get a reference-count track")
    e.add_argument("--all", action="store_true", help="include heartbeats and hold events")

    w = sub.add_parser("html", parents=[common], help="a self-contained HTML page: sequence diagram, life lines")
    w.add_argument("paths", nargs="+", metavar="PATHS")
    w.add_argument("-o", "--output", required=True, help="the HTML file to write ('-' for stdout)")
    w.add_argument("--limit", type=int, default=2000, help="messages drawn")
    w.add_argument("--objects", type=int, default=200, help="objects drawn")
    w.add_argument("--title", default="", help="page title")
    return p


def _open_out(path: str) -> IO[str]:
    return sys.stdout if path == "-" else open(path, "w", encoding="utf-8")


def _report(diag: Diagnostics, quiet: bool) -> None:
    if quiet:
        return
    for problem in diag.problems:
        print(f"refrpc-trace: {problem}", file=sys.stderr)


def _status(diag: Diagnostics, found: bool) -> int:
    if found:
        return EXIT_FOUND
    return EXIT_PARTIAL if diag.partial else EXIT_OK


def _time(text: str) -> TimePoint:
    try:
        return TimePoint.parse(text)
    except TimeError as exc:
        raise _Usage(str(exc)) from None


class _Usage(Exception):
    pass


def run_command(args: argparse.Namespace, out: IO[str]) -> int:
    diag = Diagnostics()
    run = open_run(args.paths, diag)
    if not run.files:
        _report(diag, False)
        print("refrpc-trace: no readable trace among the given paths", file=sys.stderr)
        return EXIT_USAGE
    progress = Progress(run.total_bytes, enabled=not args.quiet) if args.progress else (
        Progress.auto(run.total_bytes) if not args.quiet else None)
    cmd = args.command
    found = False
    if cmd == "show":
        flt = ShowFilter(set(args.peer), set(args.object), set(args.task), set(args.type),
                         _time(args.since) if args.since else None, _time(args.until) if args.until else None,
                         events=args.events, everything=args.all)
        merger = Merger(run, progress)
        show(run, merger, flt, out, as_json=args.json, limit=args.limit)
        from ._analysis import note_missing_peers
        note_missing_peers(run, merger)
    elif cmd == "object":
        oid = args.object_id
        r = replay(run, progress, track=lambda x: x == oid)
        steps = [s for s in r.lifelines.get(oid, []) if args.holds or s.what != "hold"]
        o = r.find(oid)
        found = not steps and o is None
        if args.json:
            out.write(json.dumps({"object_id": oid, "owner": r.label(o.owner) if o and o.owner else None,
                                  "state": o.state if o else None,
                                  "steps": [{"what": s.what, "text": s.text, "index": s.evidence.index,
                                             "time_s": s.evidence.time_s, "peer": s.evidence.peer,
                                             "record": s.evidence.text} for s in steps]})
                      + "\n")
        elif found:
            print(f"refrpc-trace: no record mentions object {oid}", file=sys.stderr)
        else:
            owner = r.label(o.owner) if o is not None and o.owner is not None else "unknown"
            out.write(f"object {oid} (owner {owner}; at the end: {(o.state if o else '') or 'state unknown'})\n")
            for s in steps:
                e = s.evidence
                out.write(f"  #{e.index:<7} {e.time_s:11.6f}s  {e.peer:<12} {s.what:<12} {s.text}\n")
    elif cmd == "holders":
        oid = args.object_id
        at = _time(args.at)
        r = replay(run, progress, stop=at.passed)
        o, hs = holders(r, oid)
        when = r.last
        found = o is None
        if args.json:
            out.write(json.dumps({"object_id": oid, "at": str(at), "record": when.index if when else None,
                                  "holders": [{"peer": h.peer, "reasons": h.reasons, "evidence": h.evidence}
                                              for h in hs]}) + "\n")
        elif o is None:
            print(f"refrpc-trace: no record up to {at} mentions object {oid}", file=sys.stderr)
        else:
            where = f"#{when.index}, {when.time_s:.6f}s" if when else "the start"
            out.write(f"holders of {oid} at {at} (after record {where}):\n")
            if not hs:
                out.write("  nobody\n")
            for h in hs:
                out.write(f"  {h.peer}:\n")
                for reason in h.reasons:
                    out.write(f"    - {reason}\n")
                if h.evidence:
                    out.write(f"    (records {', '.join('#' + str(i) for i in sorted(set(h.evidence)))})\n")
    elif cmd == "lineage":
        lin = lineage(run, args.object_id, max_depth=args.depth, progress=progress)
        found = not lin.producers
        if args.json:
            out.write(json.dumps({"object_id": args.object_id, "truncated": lin.truncated,
                                  "producers": [{"depth": d, **p.__dict__, "attempts": list(p.attempts),
                                                 "args": list(p.args)} for d, p in lin.walk()]}) + "\n")
        elif found:
            print(f"refrpc-trace: no SubmitTask or put creates {args.object_id}", file=sys.stderr)
        else:
            out.write("\n".join(lin.render()) + "\n")
    elif cmd == "check":
        findings = check_run(run, progress)
        found = bool(findings)
        if args.json:
            out.write(json.dumps({"findings": [f.to_json() for f in findings],
                                  "problems": [p.to_json() for p in diag.problems],
                                  "partial": diag.partial}) + "\n")
        else:
            for f in findings:
                out.write(f.render() + "\n")
            for line in diag.suppressed_lines():
                out.write(line + "\n")
            n = len(findings) + sum(diag.suppressed.values())
            partial = " (partial input: see the problems above)" if diag.partial else ""
            out.write(f"{n} finding{'s' if n != 1 else ''} in {len(run.files)} traces{partial}\n")
    elif cmd == "export":
        target = _open_out(args.perfetto)
        try:
            writer = PerfettoWriter(run, target, counter_limit=args.counters, everything=args.all)
            replay(run, progress, on_step=writer.step, each=writer.item)
            writer.close()
        finally:
            if target is not sys.stdout:
                target.close()
    elif cmd == "html":
        data = page_data(run, message_limit=args.limit, object_limit=args.objects, progress=progress)
        title = args.title or f"RefRPC trace: {', '.join(f.label for f in run.files)}"
        target = _open_out(args.output)
        try:
            target.write(render_html(data, title))
        finally:
            if target is not sys.stdout:
                target.close()
    _report(diag, args.quiet)
    return _status(diag, found)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; returns the exit code (see the module doc)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return run_command(args, sys.stdout)
    except _Usage as exc:
        parser.error(str(exc))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("refrpc-trace: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"refrpc-trace: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never a traceback for the user (issue 6): say what failed
        if os.environ.get("REFRPC_TRACE_DEBUG"):
            raise
        print(f"refrpc-trace: internal error ({type(exc).__name__}: {exc}); this is a bug in the inspector, "
              "please report it with REFRPC_TRACE_DEBUG=1 output", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_USAGE  # pragma: no cover - parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
