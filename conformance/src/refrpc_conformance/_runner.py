"""Running cases against an IUT and deciding the run's exit status (CNF-015)."""

from __future__ import annotations

import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ._case import CaseResult, CaseSpec, Check, Grade, grade_of, is_known_failing
from ._config import IUTConfig
from ._context import CaseAbort, CaseContext, CaseSkip, CaseTimeout
from ._control import ControlError
from ._requirements import Requirements
from ._trace import write_canonical


@dataclass
class RunResult:
    """Every case's result, and what they add up to."""

    iut: str
    features: tuple[str, ...]
    started: str
    duration_s: float
    results: list[CaseResult] = field(default_factory=list)
    requirements_source: str = ""

    def count(self, grade: Grade) -> int:
        return sum(1 for r in self.results if r.grade is grade)

    @property
    def stale_known_failing(self) -> list[CaseResult]:
        return [r for r in self.results if r.stale_known_failing]

    @property
    def unexpected_failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.grade is Grade.FAIL and not r.known_failing]

    @property
    def exit_status(self) -> int:
        """0 only if every case run is PASS, NON-STRICT, INFORMATIONAL, or a known FAIL,
        and no known-failing case passed (CNF-015); 1 otherwise."""
        return 0 if all(r.ok_for_exit for r in self.results) else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "iut": self.iut,
            "features": list(self.features),
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "exit_status": self.exit_status,
            "requirements_source": self.requirements_source,
            "counts": {g.value: self.count(g) for g in Grade},
            "cases": [r.to_json() for r in self.results],
        }


def run_case(
    spec: CaseSpec,
    config: IUTConfig,
    requirements: Requirements,
    *,
    features: Iterable[str],
    run_dir: Path,
    known_failing: Iterable[str] = (),
    extra_env: dict[str, str] | None = None,
    trace_dir: Path | None = None,
) -> CaseResult:
    """Run one case in a fresh context and grade it. With ``trace_dir``, the case's
    wire trace is saved there in the canonical format (one directory per case), and
    every IUT is asked to record its own side there too (``REFRPC_TRACE_DIR``)."""
    known = is_known_failing(spec.id, known_failing)
    result = CaseResult(
        case_id=spec.id,
        grade=Grade.UNSUPPORTED,
        requirements=spec.requirements,
        summary=spec.summary,
        description=spec.description(requirements),
        features=spec.features,
        known_failing=known,
    )
    claimed = set(features)
    missing = [f for f in spec.features if f not in claimed]
    if missing:
        result.notes.append(f"not run: needs feature(s) {', '.join(missing)}, which the IUT does not claim")
        return result
    case_traces = trace_dir / spec.id.replace("/", "__") if trace_dir is not None else None
    if case_traces is not None:
        case_traces.mkdir(parents=True, exist_ok=True)
        extra_env = {**(extra_env or {}), "REFRPC_TRACE_DIR": str(case_traces)}
    ctx = CaseContext(spec, config, requirements, run_dir, extra_env, claimed_features=tuple(sorted(claimed)))
    started = time.monotonic()
    error = ""
    skipped = ""
    try:
        spec.body(ctx)
    except CaseTimeout as exc:
        error = str(exc)
    except CaseAbort as exc:
        # A failed requirement has been recorded already; anything else is the reason.
        if not any(not c.passed for c in ctx.checks):
            error = str(exc)
    except CaseSkip as exc:
        skipped = str(exc)
    except ControlError as exc:
        # An operation of CNF-008 refused: the IUT does not support what the case needs.
        ctx.check("CNF-008", False, f"`{exc.op}` answered with ok: true", f"ok: false, {exc.code}: {exc.message}")
    except Exception:  # the suite's own bug, or an unexpected IUT behaviour it did not foresee
        error = "the case raised:\n" + traceback.format_exc(limit=8)
    try:
        result.iuts = ctx.finish()
    except Exception:
        error = error or "teardown raised:\n" + traceback.format_exc(limit=8)
    result.duration_s = time.monotonic() - started
    result.checks = ctx.checks
    result.notes.extend(ctx.notes)
    result.trace = ctx.trace
    if case_traces is not None:
        try:
            write_canonical(ctx.trace, case_traces)
        except Exception:  # the verdict stands; say why the trace is missing
            result.notes.append("the canonical trace could not be written:\n" + traceback.format_exc(limit=4))
    result.error = error
    result.grade = grade_of(ctx.checks, error=error, informational=spec.informational)
    if skipped and result.grade is not Grade.FAIL:
        result.grade = Grade.UNSUPPORTED
        result.notes.append(f"not run to the end: {skipped}")
    return result


def run(
    cases: list[CaseSpec],
    config: IUTConfig,
    requirements: Requirements,
    *,
    features: Iterable[str] | None = None,
    known_failing: Iterable[str] = (),
    jobs: int = 1,
    run_dir: Path,
    extra_env: dict[str, str] | None = None,
    progress: Callable[[CaseResult, int, int], None] | None = None,
    trace_dir: Path | None = None,
) -> RunResult:
    """Run cases (``jobs`` at a time), in registration order in the result.

    Args:
        cases: The cases to run.
        config: The IUT file.
        requirements: The requirement index.
        features: The features considered claimed; the config's by default.
        known_failing: Case ids and globs expected to fail, on top of the config's.
        jobs: Cases run at once, each with its own IUT processes.
        run_dir: Where IUT logs go.
        extra_env: Environment for every IUT.
        progress: Called after each case with (result, cases done, cases in all).
        trace_dir: Save each case's traces under it (see :func:`run_case`).
    """
    claimed = tuple(features) if features is not None else config.features
    known = list(config.known_failing) + list(known_failing)
    started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.monotonic()
    results: dict[str, CaseResult] = {}

    def one(spec: CaseSpec) -> CaseResult:
        try:
            return run_case(spec, config, requirements, features=claimed, run_dir=run_dir, known_failing=known,
                            extra_env=extra_env, trace_dir=trace_dir)
        except Exception:  # never lose a case to a suite bug
            return CaseResult(
                case_id=spec.id, grade=Grade.FAIL, requirements=spec.requirements, summary=spec.summary,
                description=spec.description(requirements), features=spec.features,
                checks=[Check("", "MUST", False, "the case to run", "the runner raised")],
                error=traceback.format_exc(limit=8), known_failing=is_known_failing(spec.id, known),
            )

    done = 0
    if jobs <= 1:
        for spec in cases:
            res = one(spec)
            results[spec.id] = res
            done += 1
            if progress:
                progress(res, done, len(cases))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, spec): spec for spec in cases}
            for fut in as_completed(futures):
                res = fut.result()
                results[res.case_id] = res
                done += 1
                if progress:
                    progress(res, done, len(cases))
    return RunResult(
        iut=config.name,
        features=claimed,
        started=started_wall,
        duration_s=time.monotonic() - started,
        results=[results[s.id] for s in cases],
        requirements_source=requirements.source,
    )
