"""Each case's traces in the canonical format (issue 6; spec/trace-format.md).

With a trace directory the suite writes its own peers' side of the case as
canonical trace files and asks the IUT (here pyimpl, through ``REFRPC_TRACE_DIR``)
to record its side next to them, so one directory holds the whole case, readable
by ``refrpc-trace`` or any reader of the format.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conformance_testkit import REFRPC_PATH
from refrpc.codec import TraceKind, decode, read_trace
from refrpc_conformance import REGISTRY, Grade, load_config, load_requirements, run

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(importlib.util.find_spec("refrpc.iut") is None, reason="refrpc.iut (pyimpl's IUT adapter) not installed"),
]

CONFIG = Path(__file__).resolve().parents[1] / "iut" / "pyimpl.toml"
CASE = "borrowing/BOR-007-BOR-005-hold-registers-then-releases"


def test_a_case_saves_both_sides_of_its_wire_in_the_canonical_format(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    result = run([REGISTRY[CASE]], load_config(CONFIG), load_requirements(), run_dir=tmp_path / "run",
                 extra_env={"PYTHONPATH": REFRPC_PATH}, trace_dir=traces)
    assert [r.grade for r in result.results] == [Grade.PASS]
    case_dir = traces / CASE.replace("/", "__")
    files = sorted(p.name for p in case_dir.iterdir())
    assert len(files) == 2 and any(f.startswith("suite.") for f in files) and any(f.startswith("iut-1.") for f in files), files
    records = {}
    for path in case_dir.iterdir():
        with open(path, "rb") as f:
            recs = list(read_trace(f))
        assert recs[0].kind is TraceKind.HEADER and [r.record_no for r in recs] == list(range(len(recs)))  # TRC-002, TRC-004
        records[path.name.split(".")[0]] = recs
    # TRC-005/TRC-006: every sequenced message the suite sent is received by the IUT
    # with the same envelope key, byte for byte the same frame 0.
    def keyed(recs, kind):
        out = {}
        for r in recs:
            if r.kind is kind and r.seq:
                env = decode([r.envelope])
                out[(env.sender, env.sender_incarnation, env.receiver, env.receiver_incarnation, env.seq)] = r.envelope
        return out

    sent, received = keyed(records["suite"], TraceKind.SEND), keyed(records["iut-1"], TraceKind.RECV)
    assert sent and set(sent) <= set(received)
    assert all(received[k] == v for k, v in sent.items())
    types = {type(decode([r.envelope]).body).__name__ for r in records["suite"] if r.kind is TraceKind.RECV and r.seq}
    assert {"RegisterBorrower", "TaskReply", "ReleaseBorrows"} <= types
