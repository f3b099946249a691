"""``refrpc-conformance``: run the conformance suite against an implementation."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ._case import REGISTRY, select
from ._config import ConfigError, load_config
from ._coverage import coverage
from ._report import progress_line, write_html, write_json, write_junit, write_summary
from ._requirements import load_requirements
from ._runner import run


def _split(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def read_known_failing(path: str) -> list[str]:
    """Case ids or globs, one a line; ``#`` starts a comment."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="refrpc-conformance",
        description="Test a RefRPC implementation against the protocol specification.",
    )
    p.add_argument("--iut", metavar="CONFIG", help="the TOML file describing the implementation under test")
    p.add_argument("--cases", action="append", metavar="GLOB", help="run only cases whose id matches (repeatable, or comma-separated)")
    p.add_argument("--features", action="append", metavar="F", help="treat only these features as claimed (default: the config's)")
    p.add_argument("--known-failing", metavar="FILE", help="more case ids/globs expected to fail, one a line")
    p.add_argument("--iut-env", action="append", metavar="KEY=VALUE", help="add to the environment of every IUT process (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="cases run at once (default 1)")
    p.add_argument("--spec", metavar="FILE", help="the requirement index (default: spec/requirements.json of this checkout)")
    p.add_argument("--run-dir", metavar="DIR", help="where IUT logs go (default: a temporary directory)")
    p.add_argument("--trace-dir", metavar="DIR", help="save each case's wire trace in the canonical trace format "
                   "(one directory per case, readable with refrpc-trace), and ask each IUT to record its side there")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--coverage", action="store_true", help="list every requirement with the cases that check it, "
                   "or why it is not testable on the wire, and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("-v", "--verbose", action="store_true", help="also show notes of passing cases")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    patterns = _split(args.cases)
    chosen = select(REGISTRY.values(), patterns)
    if args.list:
        for spec in chosen:
            print(f"{spec.id:<64} features={','.join(spec.features):<20} {' '.join(spec.requirements)}")
        return 0
    if args.coverage:
        rows = coverage(REGISTRY.values(), load_requirements(args.spec))
        for req, status, detail in rows:
            print(f"{req:<9} {status:<16} {detail}")
        counts = {s: sum(1 for _, st, _ in rows if st == s) for s in ("cases", "not on the wire", "no case yet")}
        print(f"{len(rows)} requirements: {counts['cases']} checked by cases, {counts['not on the wire']} not testable "
              f"on the wire, {counts['no case yet']} with no case yet")
        return 0
    if not args.iut:
        print("refrpc-conformance: --iut CONFIG is required (or --list)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.iut)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"refrpc-conformance: {exc}", file=sys.stderr)
        return 2
    if not chosen:
        print(f"refrpc-conformance: no case matches {patterns}", file=sys.stderr)
        return 2
    requirements = load_requirements(args.spec)
    if not len(requirements):
        print("refrpc-conformance: warning: spec/requirements.json not found; requirement text will not be quoted", file=sys.stderr)
    known = read_known_failing(args.known_failing) if args.known_failing else []
    features = _split(args.features) or None
    extra_env: dict[str, str] = {}
    for item in args.iut_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"refrpc-conformance: --iut-env wants KEY=VALUE, not {item!r}", file=sys.stderr)
            return 2
        extra_env[key] = value
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="refrpc-conformance-"))

    def progress(result, done, total):  # type: ignore[no-untyped-def]
        if not args.quiet:
            print(progress_line(result, done, total), flush=True)

    if not args.quiet:
        print(f"running {len(chosen)} case(s) against {config.name}; IUT logs in {run_dir}", flush=True)
    result = run(
        chosen, config, requirements, features=features, known_failing=known,
        jobs=max(1, args.jobs), run_dir=run_dir, extra_env=extra_env, progress=progress,
        trace_dir=Path(args.trace_dir) if args.trace_dir else None,
    )
    write_summary(result, sys.stdout, verbose=args.verbose)
    if args.json:
        write_json(result, args.json)
    if args.junit:
        write_junit(result, args.junit)
    if args.html:
        write_html(result, args.html, requirements)
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
