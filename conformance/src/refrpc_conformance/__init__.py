"""The RefRPC conformance suite: tests an implementation of the protocol, in any language.

The suite starts the implementation under test (IUT) from a TOML file, talks to
it over ZeroMQ with raw protocol messages as one or more scripted peers of its
own, drives it through a JSON-lines control channel, and grades each case
PASS, NON-STRICT, FAIL, UNSUPPORTED or INFORMATIONAL (spec/conformance-hooks.md).

Run it with ``refrpc-conformance --iut my-impl.toml``. The names below are for
people writing cases of their own.
"""

from ._build import (
    IdAllocator,
    PortableRef,
    by_ref,
    by_value,
    make_bytes_value,
    portable,
    read_portable,
    read_stored_form,
    shared,
    stored_form,
    submit_task,
)
from ._case import REGISTRY, CaseResult, CaseSpec, Check, Grade, case, grade_of
from ._config import IUTConfig, load_config
from ._context import IUT, CaseAbort, CaseContext
from ._control import ControlError, IUTProcess, ReadyInfo, Ref, from_json_value, to_json_value
from ._requirements import Requirement, Requirements, load_requirements
from ._runner import RunResult, run, run_case
from ._trace import TraceRecord
from ._wire import Arrival, ExpectTimeout, Link, WireError, WirePeer
from . import cases  # noqa: E402 - registers the built-in cases in REGISTRY

__all__ = [
    "IUT",
    "REGISTRY",
    "Arrival",
    "CaseAbort",
    "CaseContext",
    "CaseResult",
    "CaseSpec",
    "Check",
    "ControlError",
    "ExpectTimeout",
    "Grade",
    "IUTConfig",
    "IUTProcess",
    "IdAllocator",
    "Link",
    "PortableRef",
    "ReadyInfo",
    "Ref",
    "Requirement",
    "Requirements",
    "RunResult",
    "TraceRecord",
    "WireError",
    "WirePeer",
    "by_ref",
    "cases",
    "by_value",
    "case",
    "from_json_value",
    "grade_of",
    "load_config",
    "load_requirements",
    "make_bytes_value",
    "portable",
    "read_portable",
    "read_stored_form",
    "run",
    "run_case",
    "shared",
    "stored_form",
    "submit_task",
    "to_json_value",
]
