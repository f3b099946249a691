"""``export --perfetto``: trace-event JSON whose structure a viewer loads cleanly:
a process per peer, arrows from each send to the receive that delivered it,
objects as async slices, reference counts as counters."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from refrpc.codec import TraceKind

from refrpc_trace import Merger, Status, open_run

from tracekit import borrowing_run, churn_run

pytestmark = pytest.mark.timeout(60)
PHASES = {"M", "X", "i", "s", "f", "b", "e", "n", "C"}


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    """Check the rules the Chrome/Perfetto JSON importers rely on; return what was found."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list)
    assert doc.get("displayTimeUnit") in ("ms", "ns")
    names: dict[int, str] = {}
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    flows: dict[int, dict[str, dict]] = defaultdict(dict)
    spans: dict[str, dict[str, dict]] = defaultdict(dict)
    instants: list[dict] = []
    counters: list[dict] = []
    for ev in doc["traceEvents"]:
        ph = ev["ph"]
        assert ph in PHASES, ev
        assert isinstance(ev["pid"], int), ev
        if ph == "M":
            if ev["name"] == "process_name":
                names[ev["pid"]] = ev["args"]["name"]
            continue
        assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0, ev
        if ph == "X":
            assert isinstance(ev["tid"], int) and ev["dur"] > 0, ev
            slices[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
        elif ph in ("s", "f"):
            assert ev["id"] not in flows or ph not in flows[ev["id"]], f"two {ph} for flow {ev['id']}"
            flows[ev["id"]][ph] = ev
        elif ph in ("b", "e"):
            key = f'{ev["cat"]}:{ev["id"]}'
            assert ph not in spans[key], f"two {ph} for {key}"
            spans[key][ph] = ev
        elif ph == "n":
            instants.append(ev)
        elif ph == "C":
            assert ev["args"] and all(isinstance(v, (int, float)) for v in ev["args"].values()), ev
            counters.append(ev)
    used = {ev["pid"] for ev in doc["traceEvents"]}
    assert used <= set(names), "every process has a name"
    for track, ss in slices.items():  # slices of one thread never overlap partially
        ss.sort()
        for (a0, a1), (b0, _) in zip(ss, ss[1:]):
            assert b0 >= a1 - 1e-6, (track, a0, a1, b0)

    def inside(ev: dict) -> bool:
        return any(t0 <= ev["ts"] <= t1 for t0, t1 in slices[(ev["pid"], ev["tid"])])

    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, f"flow {fid} is not a start and a finish"
        assert pair["f"]["ts"] >= pair["s"]["ts"] and pair["f"].get("bp") == "e"
        assert inside(pair["s"]) and inside(pair["f"]), f"flow {fid} is not bound to slices"
    for key, pair in spans.items():
        assert set(pair) == {"b", "e"}, key
        assert pair["e"]["ts"] >= pair["b"]["ts"] and pair["e"]["pid"] == pair["b"]["pid"], key
    for ev in instants:
        span = spans[f'{ev["cat"]}:{ev["id"]}']
        assert span["b"]["ts"] <= ev["ts"] <= span["e"]["ts"], ev
    return {"names": names, "flows": flows, "spans": spans, "counters": counters, "slices": slices}


def test_the_export_of_a_borrowing_run_has_tracks_arrows_lifetimes_and_counts(tmp_path: Path, cli) -> None:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    code, _, _ = cli("export", "--perfetto", tmp_path / "out.json", tmp_path / "run")
    assert code == 0
    found = validate(json.loads((tmp_path / "out.json").read_text()))
    assert sorted(found["names"].values()) == ["driver (tracekit/1)", "worker-1 (tracekit/1)"]
    delivered = [it for it in Merger(open_run([tmp_path / "run"]))
                 if it.rec.kind is TraceKind.RECV and it.status == Status.DELIVERED and it.type != "Heartbeat"]
    assert len(found["flows"]) == len(delivered) == 10
    assert set(found["spans"]) == {"object:driver.d1.1.r0", "object:driver.d1.2", "object:driver.d1.3.r0"}
    x = found["spans"]["object:driver.d1.2"]
    assert x["e"]["args"]["text"].startswith("value reclaimed by its owner")
    refs = [c["args"] for c in found["counters"] if c["name"] == "refs driver.d1.2"]
    assert {"grants": 1, "pending tasks": 0, "task holds": 0, "contained in": 0, "local refs": 0} in refs
    assert refs[-1]["grants"] == 0


def test_a_long_run_exports_with_valid_structure(tmp_path: Path, cli) -> None:
    churn_run(300).write(tmp_path / "run")
    code, _, _ = cli("export", "--perfetto", tmp_path / "out.json", "--all", tmp_path / "run")
    assert code == 0
    found = validate(json.loads((tmp_path / "out.json").read_text()))
    assert len(found["spans"]) == 300 and len(found["flows"]) == 2 * 300 + 2 + 2 * 6


def test_export_to_stdout(tmp_path: Path, cli) -> None:
    net, _, _ = borrowing_run(release=False)
    net.write(tmp_path / "run")
    code, out, _ = cli("export", "--perfetto", "-", tmp_path / "run")
    assert code == 0 and validate(json.loads(out))["names"]
