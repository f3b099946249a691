"""The inspector on traces that pyimpl recorded from real runs (``refrpc.init(trace_dir=...)``):
a clean run and a run with a worker killed mid-task give no findings; runs with one
of pyimpl's fault switches on (``refrpc.iut``) give the finding of the rule it breaks."""

from __future__ import annotations

import inspect
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import refrpc
from refrpc import api
from refrpc.testing import wait_until

from refrpc_trace import check, open_run, page_data

import trace_fixtures as tf

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif("trace_dir" not in inspect.signature(refrpc.init).parameters,
                       reason="this refrpc cannot record traces (refrpc.init has no trace_dir)"),
]


def record(directory: Path, workers: int, body: Any) -> Any:
    refrpc.init(workers, trace_dir=directory)
    try:
        return body()
    finally:
        refrpc.shutdown()  # every process leaves: its trace is complete


def test_a_clean_run_has_no_findings_and_every_step_is_followed(tmp_path: Path, cli) -> None:
    # x = refrpc.put(300 kB); keep.remote(shared(x)) on a worker; size_of.remote(x);
    # the worker drops x; the driver drops x -> everything is reclaimed
    def body() -> dict[str, Any]:
        x = refrpc.put(b"v" * 300_000)
        assert refrpc.get(tf.keep.remote(refrpc.shared(x)), timeout=60) == 1
        assert refrpc.get(tf.size_of.remote(x), timeout=60) == 300_000
        assert refrpc.get(tf.drop_all.remote(), timeout=60)
        (worker,) = api._ctx.cluster.workers
        wait_until(lambda: x.id not in api._call_on(worker, "trace_fixtures:borrowed_entries"), timeout=30)
        oid = x.id
        del x
        node = api._ctx.node
        wait_until(lambda: node.call(lambda: oid not in node.core.owned).result(), timeout=30)
        return {"x": oid}

    ids = record(tmp_path / "run", 1, body)
    found, diag = check([tmp_path / "run"])
    assert found == [], [f.render() for f in found]
    assert not diag.partial, [str(p) for p in diag.problems]
    code, out, _ = cli("object", "--json", ids["x"], tmp_path / "run")
    steps = [s["what"] for s in json.loads(out)["steps"]]
    for step in ("created", "shared", "borrowed", "dropped-ref", "released", "freed"):
        assert step in steps, (step, steps)
    assert steps.index("created") < steps.index("borrowed") < steps.index("released") < steps.index("freed")
    code, out, _ = cli("show", "--type", "SubmitTask", "--type", "TaskReply", tmp_path / "run")
    replies = [line for line in out.splitlines() if "TaskReply" in line]
    assert len(replies) >= 3 and all(" re #" in line for line in replies)
    data = page_data(open_run([tmp_path / "run"]))
    assert data["findings"] == [] and ids["x"] in [o["id"] for o in data["objects"]]


def test_a_worker_killed_mid_task_is_followed_and_the_recovered_run_is_clean(tmp_path: Path, cli) -> None:
    # y = slow_square.remote(7) (max_retries=2); the worker running it is killed (SIGKILL);
    # the task is retried elsewhere and y = 49
    marker = tmp_path / "started"

    def body() -> dict[str, Any]:
        y = tf.slow_square.remote(7, str(marker))
        wait_until(marker.exists, timeout=60)
        wait_until(lambda: marker.read_text().strip().isdigit(), timeout=10)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        assert refrpc.get(y, timeout=60) == 49
        return {"y": y.id}

    ids = record(tmp_path / "run", 2, body)
    found, diag = check([tmp_path / "run"])
    assert found == [], [f.render() for f in found]
    code, out, _ = cli("show", "--type", "peer-declared-dead", tmp_path / "run")
    assert "event peer-declared-dead" in out and "source=" in out
    code, out, _ = cli("object", ids["y"], tmp_path / "run")
    assert "retried" in out and "attempt 2" in out, out
    code, out, _ = cli("lineage", ids["y"], tmp_path / "run")
    assert "attempts 1,2" in out.splitlines()[0]


def test_a_worker_that_never_releases_is_found_leaking_BOR_005(tmp_path: Path, cli) -> None:
    # pyimpl's fault switch skip-release on the worker: it drops x but sends no ReleaseBorrows
    def body() -> dict[str, Any]:
        (worker,) = api._ctx.cluster.workers
        api._call_on(worker, "trace_fixtures:install_fault", "skip-release")
        x = refrpc.put(b"w" * 1000)
        assert refrpc.get(tf.keep.remote(refrpc.shared(x)), timeout=60) == 1
        assert refrpc.get(tf.drop_all.remote(), timeout=60)
        wait_until(lambda: x.id not in api._call_on(worker, "trace_fixtures:borrowed_entries"), timeout=30)
        refrpc.get(tf.size_of.remote(refrpc.put(b"later")), timeout=60)  # the worker carries on
        return {"x": x.id}

    ids = record(tmp_path / "run", 1, body)
    found, _ = check([tmp_path / "run"])
    leaks = [f for f in found if f.requirement == "BOR-005"]
    assert len(leaks) == 1 and leaks[0].object_id == ids["x"], [f.render() for f in found]
    assert "never released grant" in leaks[0].summary
    assert [f for f in found if f.kind != "leak"] == []
    code, out, _ = cli("check", tmp_path / "run")
    assert code == 1 and "[BOR-005] leak:" in out


def test_an_owner_that_frees_a_borrowed_object_is_found_OWN_004(tmp_path: Path) -> None:
    # pyimpl's fault switch free-while-borrowed on the driver: dropping its last handle
    # reclaims x although the worker holds a grant; the worker's next use gets FREED
    def body() -> dict[str, Any]:
        tf.install_fault("free-while-borrowed")  # on the driver itself
        x = refrpc.put(b"z" * 1000)
        assert refrpc.get(tf.keep.remote(refrpc.shared(x)), timeout=60) == 1
        oid = x.id
        del x
        node = api._ctx.node
        wait_until(lambda: node.call(lambda: oid not in node.core.owned).result(), timeout=30)
        return {"x": oid}

    ids = record(tmp_path / "run", 1, body)
    found, _ = check([tmp_path / "run"])
    frees = [f for f in found if f.requirement == "OWN-004"]
    assert len(frees) == 1 and frees[0].object_id == ids["x"], [f.render() for f in found]
    assert "holds grant" in frees[0].summary
