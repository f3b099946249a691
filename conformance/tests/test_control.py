"""The control-channel client (CNF-005..CNF-008) against fake implementations."""

from __future__ import annotations

import math
import textwrap

import pytest

from refrpc_conformance import ControlError, IUTProcess, Ref, from_json_value, to_json_value
from refrpc_conformance._config import config_from_dict
from refrpc_conformance._control import ControlTimeout, IUTExited

from conformance_testkit import HERE

pytestmark = pytest.mark.timeout(60)


def started(config, tmp_path, peer_id: str = "iut-1") -> IUTProcess:
    proc = IUTProcess(config, peer_id, stderr_path=tmp_path / f"{peer_id}.log")
    proc.start()
    return proc


def test_ready_event_requests_and_errors(fake_config, tmp_path):
    proc = started(fake_config(), tmp_path)
    try:
        ready = proc.wait_ready(20)
        assert ready.peer_id == "iut-1" and ready.address == proc.endpoint  # CNF-011
        assert ready.incarnation > 0 and "core" in ready.features and ready.inline_threshold == 102400
        assert proc.request("info", timeout=10)["peer_id"] == "iut-1"
        with pytest.raises(ControlError) as info:
            proc.request("no-such-op", timeout=10)
        assert info.value.code == "unknown_op"  # CNF-007
        assert proc.violations == []
    finally:
        proc.stop()
    assert not proc.alive


def test_crash_ends_the_process_and_later_requests_say_so(fake_config, tmp_path):
    proc = started(fake_config(), tmp_path)
    try:
        proc.wait_ready(20)
        proc.expect_exit()
        proc.request_async("crash")
        assert proc.wait_exit(10) is not None
        with pytest.raises(IUTExited):
            proc.request("info", timeout=10)
    finally:
        proc.stop()


def test_anything_but_json_on_stdout_is_a_cnf_005_violation(fake_config, tmp_path):
    proc = IUTProcess(fake_config("stdout-noise"), "iut-1", stderr_path=tmp_path / "iut-1.log")
    try:
        proc.launch(20)
        proc.request("info", timeout=10)
        assert any(v.startswith("CNF-005") and "chatty" in v for v in proc.violations), proc.violations
    finally:
        proc.stop()


def test_missing_ready_event_times_out(fake_config, tmp_path):
    proc = started(fake_config("no-ready"), tmp_path)
    try:
        with pytest.raises(ControlTimeout):
            proc.wait_ready(1.5)
    finally:
        proc.stop()


# An IUT that answers two requests in reverse order, except that `get` may be late (CNF-005).
REVERSER = textwrap.dedent('''
    import json, sys
    print(json.dumps({"event": "ready", "peer_id": sys.argv[1], "incarnation": "5", "address": sys.argv[2],
                      "features": ["core"], "inline_threshold": 1}), flush=True)
    while True:
        a = json.loads(sys.stdin.readline()); b = json.loads(sys.stdin.readline())
        for r in (b, a):
            print(json.dumps({"id": r["id"], "ok": True, "result": r["op"]}), flush=True)
''')


def reverser(tmp_path):
    cfg = config_from_dict({"command": ["python", "-c", REVERSER, "{peer_id}", "{endpoint}"], "features": ["core"]},
                           base_dir=HERE)
    return started(cfg, tmp_path)


def test_answers_out_of_order_are_violations_except_for_get(tmp_path):
    proc = reverser(tmp_path)
    try:
        proc.wait_ready(20)
        first, second = proc.request_async("info"), proc.request_async("table")
        assert (second.result(10), first.result(10)) == ("table", "info")
        assert len(proc.violations) == 1 and "answered before earlier request" in proc.violations[0]
        late_get, other = proc.request_async("get", object_id="x", timeout_ms=1), proc.request_async("info")
        assert (other.result(10), late_get.result(10)) == ("info", "get")
        assert len(proc.violations) == 1  # a late `get` is allowed
    finally:
        proc.stop()


def test_json_portable_values_round_trip():
    value = [None, True, 7, -2.5, "t", b"\x00\xff", {"k": [1, {"n": None}]}, Ref("obj.1")]
    wire = to_json_value(value)
    assert wire[5] == {"data": "AP8="} and wire[6] == {"map": [["k", [1, {"map": [["n", None]]}]]]}
    assert wire[3] == {"float64": -2.5} and wire[7] == {"ref": "obj.1"}
    assert from_json_value(wire) == value
    assert to_json_value(math.inf) == {"float64": "inf"}
    assert math.isnan(from_json_value(to_json_value(math.nan)))
    with pytest.raises(TypeError):
        to_json_value(object())


def test_launch_retries_a_start_that_exits_before_ready(tmp_path):
    # Exits at once the first time (as an IUT whose port was taken would), then works.
    marker = tmp_path / "started-once"
    script = textwrap.dedent(f'''
        import json, pathlib, sys
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.write_text("x"); sys.exit("cannot bind " + sys.argv[2])
        print(json.dumps({{"event": "ready", "peer_id": sys.argv[1], "incarnation": "9", "address": sys.argv[2],
                          "features": ["core"], "inline_threshold": 1}}), flush=True)
        sys.stdin.readline()
    ''')
    cfg = config_from_dict({"command": ["python", "-c", script, "{peer_id}", "{endpoint}"], "features": ["core"]}, base_dir=HERE)
    proc = IUTProcess(cfg, "iut-1", stderr_path=tmp_path / "iut-1.log")
    try:
        ready = proc.launch(20)
        assert ready.address == proc.endpoint and len(proc.failed_starts) == 1
        assert "cannot bind" in proc.failed_starts[0] and not proc.failed_starts[0].startswith(proc.endpoint)
    finally:
        proc.stop()
