"""The inspector on traces that pyimpl recorded from real runs (``refrpc.init(trace_dir=...)``):
a clean run and a run with a worker killed mid-task give no findings; runs with one
of pyimpl's fault switches on (``refrpc.iut``) give the finding of the rule it breaks."""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

import refrpc
from refrpc import api
from refrpc.codec import TraceFormatError, TraceKind, read_trace
from refrpc.store import list_segments
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


# ---------------------------------------------------------------- chaos, recorded
#: Seeds of the recorded chaos trials; each draws the retry budget, the victim and the moment.
CHAOS_SEEDS = [int(s) for s in os.environ.get("REFRPC_TRACE_CHAOS_SEEDS", "11,12,13").split(",")]


def _chaos_program(rng: random.Random) -> tuple[list[tuple[Any, Any]], Any]:
    """Blocks and their digests, a worker's nested tasks whose refs the driver borrows
    and forwards: (ref, expected value) pairs, and the nested list's ref."""
    retries = rng.choice([0, 1, 2])
    blocks = [tf.block.options(max_retries=retries).remote(i) for i in range(8)]
    reads = [(tf.digest.options(max_retries=retries).remote(b), (i % 256, tf.BLOCK)) for i, b in enumerate(blocks)]
    nested = tf.fan_out.options(max_retries=retries).remote([100, 101, 102], retries)
    return reads, nested


def _read_all(seed: int, reads: list[tuple[Any, Any]], nested: Any) -> list[str]:
    """Each value the program reads: the right one, or a typed error (never anything
    else, and never a timeout: the failure is always detected and reported)."""
    outcomes = []
    try:
        inner = refrpc.get(nested, timeout=60)  # refs a worker owns: the driver borrows them
        # ... and passes them on to tasks elsewhere (register-before-send, BOR-002),
        # which read them as arguments, and to one that gets them itself.
        tags = (100, 101, 102)
        reads = [*reads, *((tf.digest.remote(r), (t, tf.BLOCK)) for r, t in zip(inner, tags)),
                 (tf.digest_all.remote(inner), [(t, tf.BLOCK) for t in tags])]
    except refrpc.GetTimeoutError:
        raise AssertionError(f"seed {seed}: the nested task's result never came") from None
    except refrpc.RefRPCError as exc:
        outcomes.append(type(exc).__name__)
    for ref, expected in reads:
        try:
            got = refrpc.get(ref, timeout=60)
        except refrpc.GetTimeoutError:
            raise AssertionError(f"seed {seed}: {ref.id} never came") from None
        except refrpc.RefRPCError as exc:
            outcomes.append(type(exc).__name__)
            continue
        assert _plain(got) == _plain(expected), (seed, got, expected)
        outcomes.append("right")
    return outcomes


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _settled() -> bool:
    """Quiescence before the run ends: every stored value of the cluster is freed (no
    shared-memory segment left), so no free is still in flight when processes leave."""
    return not list_segments(api._ctx.cluster.namespace)


def _flush_survivors(victim: str) -> None:
    """Each surviving worker writes what it recorded up to now: the settled state is on
    disk even if a loaded machine's shutdown has to kill a worker (it would lose up to
    its last 100 ms of records, TRC-012)."""
    for worker in api._ctx.cluster.workers:
        if worker != victim:
            assert api._call_on(worker, "refrpc.runtime._tracing:flush_recording")


def _declared_dead(victim: str, incarnation: int) -> bool:
    """Whether the driver fenced that incarnation of ``victim`` (the local cluster's
    supervisor may already run a new one under the same name)."""
    node = api._ctx.node
    return node.call(lambda: (victim, incarnation) in node.core.fenced).result(10)


def _assert_discards_name_their_receive(run_dir: Path) -> None:
    # Registry: every discarded event names (recordNo) the recv record it discards.
    for path in sorted(run_dir.glob("*.rrtrace")):
        recvs, discards = set(), []
        with open(path, "rb") as f:
            try:
                for rec in read_trace(f):
                    if rec.kind is TraceKind.RECV:
                        recvs.add(rec.record_no)
                    elif rec.event_name == "discarded":
                        discards.append(json.loads(rec.detail).get("recordNo"))
            except TraceFormatError:
                pass  # a killed process's last record may be cut short (TRC-012)
        assert all(n in recvs for n in discards), (path.name, [n for n in discards if n not in recvs][:5])


@pytest.mark.parametrize("seed", CHAOS_SEEDS)
def test_a_run_with_a_worker_killed_at_a_random_moment_checks_clean(tmp_path: Path, seed: int, cli) -> None:
    # kill -9 of a random worker at a random moment while tasks, nested tasks and
    # borrowed refs are in flight: the program reads right values or typed errors, and
    # the inspector finds nothing wrong in what the survivors (and the victim, until
    # it died) recorded; the death is on the record.
    rng = random.Random(seed)

    def body() -> dict[str, Any]:
        cluster = api._ctx.cluster
        victim = rng.choice(sorted(cluster.workers))
        incarnation = cluster.incarnations[victim]
        kill = threading.Timer(rng.uniform(0.02, 0.3), os.kill, (cluster.processes[victim].pid, signal.SIGKILL))
        reads, nested = _chaos_program(rng)
        kill.start()
        try:
            outcomes = _read_all(seed, reads, nested)
        finally:
            kill.join()
        assert wait_until(lambda: _declared_dead(victim, incarnation), timeout=30), (seed, victim)
        del reads, nested
        assert wait_until(_settled, timeout=30), (seed, list_segments(api._ctx.cluster.namespace))
        _flush_survivors(victim)
        return {"victim": victim, "outcomes": outcomes}

    run = record(tmp_path / "run", 4, body)
    found, _ = check([tmp_path / "run"])
    assert found == [], (seed, run, [f.render() for f in found])
    _assert_discards_name_their_receive(tmp_path / "run")
    code, out, _ = cli("show", "--type", "peer-declared-dead", "--peer", "driver", tmp_path / "run")
    assert f"peer={run['victim']} " in out, (seed, out)


def test_a_stopped_worker_that_resumes_is_fenced_and_the_run_checks_clean(tmp_path: Path) -> None:
    # SIGSTOP past the detection timeout: declared dead (LIV-003), its tasks retried;
    # on SIGCONT what it still sends is discarded as fenced (SES-005) and it exits
    # (LIV-005). The trace shows each discard against the receive it discards.
    rng = random.Random(31)

    def body() -> dict[str, Any]:
        cluster = api._ctx.cluster
        victim = rng.choice(sorted(cluster.workers))
        proc, incarnation = cluster.processes[victim], cluster.incarnations[victim]
        reads, nested = _chaos_program(rng)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            assert wait_until(lambda: _declared_dead(victim, incarnation), timeout=30), victim
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        outcomes = _read_all(31, reads, nested)
        assert wait_until(lambda: proc.poll() is not None, timeout=30), f"{victim} still runs after SIGCONT"
        del reads, nested
        assert wait_until(_settled, timeout=30), list_segments(api._ctx.cluster.namespace)
        _flush_survivors(victim)
        return {"victim": victim, "outcomes": outcomes}

    run = record(tmp_path / "run", 3, body)
    found, _ = check([tmp_path / "run"])
    assert found == [], (run, [f.render() for f in found])
    _assert_discards_name_their_receive(tmp_path / "run")
