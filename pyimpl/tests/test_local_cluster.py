"""The local cluster's processes (real ones): what a Ctrl-C, a killed driver and a
killed worker do to the workers ``refrpc.init()`` started.

Each program under test runs as its own process in a process group of its own, so
that a signal to "the driver's process group" (what a terminal's Ctrl-C and a
notebook's interrupt send) reaches exactly what it would at a terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import refrpc
from refrpc.testing import main_thread_asleep, wait_until

pytestmark = pytest.mark.timeout(120)
TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Program:
    """A driver program in its own process group; killed, with what it started, at the end."""

    def __init__(self, source: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(source)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
        self.worker_pids: list[int] = []

    def line(self) -> str:
        return self.proc.stdout.readline().strip()

    def pids(self) -> list[int]:
        """Read a "pids ..." line: the worker processes the program reports."""
        words = self.line().split()
        assert words and words[0] == "pids", words
        pids = [int(w) for w in words[1:]]
        self.worker_pids += pids
        return pids

    def close(self) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pid in self.worker_pids:  # a test that failed must not leave workers behind
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        return out, err


SIGINT_PROGRAM = '''
    import refrpc
    import remote_fixtures as rf

    refrpc.init(2)
    procs = refrpc.api._ctx.cluster.processes
    print("pids", *sorted(p.pid for p in procs.values()), flush=True)
    long = rf.spin_ms.remote(60_000)
    print("waiting", flush=True)
    try:
        refrpc.get(long)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    print("next", refrpc.get([rf.add.remote(i, 1) for i in range(4)], timeout=30), flush=True)
    print("pids", *sorted(p.pid for p in procs.values()), flush=True)
    refrpc.shutdown()
'''


def test_ctrl_c_at_the_terminal_interrupts_the_program_and_spares_its_workers() -> None:
    # A terminal's Ctrl-C (and a notebook's interrupt) signals the whole foreground
    # process group: the program gets KeyboardInterrupt in its get; the workers
    # init() started must not (they used to die of it, and the next task failed
    # with "no live executor").
    p = Program(SIGINT_PROGRAM)
    try:
        before = p.pids()
        assert p.line() == "waiting"
        assert wait_until(lambda: main_thread_asleep(p.proc.pid), 30)  # blocked in get()
        os.killpg(p.proc.pid, signal.SIGINT)
        assert p.line() == "interrupted"
        assert p.line() == "next [1, 2, 3, 4]"
        assert p.pids() == before  # the same processes: none died (and none was replaced)
    finally:
        out, err = p.close()
    assert p.proc.returncode == 0, err[-3000:]
    assert not [pid for pid in before if _alive(pid)]  # and shutdown() still ends them


KILLED_DRIVER_PROGRAM = '''
    import threading
    import refrpc

    # Heartbeats alone would notice the driver's death only after 60 s.
    refrpc.init(2, heartbeat_interval_ms=250, miss_limit=240)
    print("pids", *sorted(p.pid for p in refrpc.api._ctx.cluster.processes.values()), flush=True)
    threading.Event().wait()
'''


def test_workers_leave_at_once_when_their_driver_is_killed() -> None:
    # kill -9 of the program: no Goodbye, no atexit; its workers still go, at once.
    p = Program(KILLED_DRIVER_PROGRAM)
    try:
        workers = p.pids()
        p.proc.kill()
        p.proc.wait(10)
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), 15), [w for w in workers if _alive(w)]
    finally:
        p.close()


# ---------------------------------------------------------------- a cluster that heals
@refrpc.remote
def pid_after_ms(ms: int) -> int:
    """The worker process that ran it (after ``ms``, so that tasks spread)."""
    time.sleep(ms / 1000)
    return os.getpid()


@pytest.fixture
def two_workers():
    refrpc.init(2)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def test_a_killed_worker_is_replaced_by_a_new_incarnation_and_work_goes_on(two_workers, caplog) -> None:
    # kill -9 of a worker while tasks run: they finish (retried), the supervisor
    # starts the worker again as a new incarnation and says so, and later tasks
    # run on the new process too: the cluster does not shrink.
    import remote_fixtures as rf

    ctx = two_workers
    node, cluster = ctx.node, ctx.cluster
    victim = cluster.processes["w1"]
    old_incarnation = cluster.incarnations["w1"]
    caplog.set_level("WARNING", logger="refrpc.cluster")
    running = [rf.sleep_ms.remote(300) for _ in range(8)]  # on both workers; each retried if lost
    os.kill(victim.pid, signal.SIGKILL)
    assert refrpc.get(running, timeout=60) == [300] * 8
    assert wait_until(lambda: cluster.processes["w1"] is not victim, 30)
    (restart,) = cluster.restarts
    assert (restart.name, restart.pid, restart.incarnation, restart.returncode) == ("w1", victim.pid, old_incarnation, -signal.SIGKILL)
    assert restart.new_incarnation == cluster.incarnations["w1"] != old_incarnation
    assert any(f"worker w1 (pid {victim.pid}" in r.getMessage() and f"restarted it as pid {restart.new_pid}" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    # The driver fenced the dead incarnation and is in session with the new one.
    assert ("w1", old_incarnation) in node.call(lambda: set(node.core.fenced)).result(10)

    def new_w1_alive() -> bool:
        r = node.call(lambda: node.core.remotes.get("w1")).result(10)
        return r is not None and r.state == "alive" and r.incarnation == restart.new_incarnation

    assert wait_until(new_w1_alive, 30)
    # Work is placed on both workers again: the new process runs some of it.
    pids = set(refrpc.get([pid_after_ms.remote(50) for _ in range(8)], timeout=60))
    assert restart.new_pid in pids and cluster.processes["w2"].pid in pids, pids


def test_work_submitted_while_the_only_worker_restarts_waits_for_it() -> None:
    # refrpc.init(1); kill -9 the one worker; submit at once, while its successor
    # is still starting: the tasks wait for it instead of failing "no live executor".
    import remote_fixtures as rf

    refrpc.init(1)
    try:
        cluster = refrpc.api._ctx.cluster
        first = cluster.processes["w1"]
        assert refrpc.get(rf.add.remote(1, 1), timeout=60) == 2
        os.kill(first.pid, signal.SIGKILL)
        assert wait_until(lambda: cluster.processes["w1"] is not first, 30)
        refs = [pid_after_ms.remote(0) for _ in range(3)]  # the successor has not said Hello yet
        assert refrpc.get(refs, timeout=60) == [cluster.processes["w1"].pid] * 3
    finally:
        refrpc.shutdown()


# ---------------------------------------------------------------- what the cluster is doing
def test_nodes_and_cluster_resources_show_what_a_busy_cluster_does(two_workers) -> None:
    # refrpc.init(2); six 3 s tasks and an actor; refrpc.nodes() while they run:
    # the driver has 2 tasks out and 4 queued, each worker runs one, and it answers
    # at once although every slot is busy (the protocol layer answers, INT-006).
    import remote_fixtures as rf

    ctx = two_workers
    counter = rf.Counter.remote(0)
    assert refrpc.get(counter.add.remote(1), timeout=30) == 1
    refs = [rf.sleep_ms.remote(3000) for _ in range(6)]

    def busy() -> bool:
        return all(n["executing"] == {"running": 1} for n in refrpc.nodes() if n["role"] == "worker")

    assert wait_until(busy, 10, step=0.05)
    started = time.monotonic()
    rows = {n["id"]: n for n in refrpc.nodes()}
    assert time.monotonic() - started < 2
    assert set(rows) == {"driver", "w1", "w2"}
    driver, w1, w2 = rows["driver"], rows["w1"], rows["w2"]
    assert (driver["role"], driver["pid"], driver["alive"], driver["resources"]) == ("driver", os.getpid(), True, {})
    assert driver["tasks"]["queued"] == 4 and driver["tasks"]["submitted"] == 2
    for w in (w1, w2):
        assert (w["role"], w["alive"], w["resources"], w["restarts"]) == ("worker", True, {"CPU": 1.0}, 0)
        assert w["pid"] == ctx.cluster.processes[w["id"]].pid and w["incarnation"] == ctx.cluster.incarnations[w["id"]]
    hosted = w1["actors"] + w2["actors"]
    assert [(a["owner"], a["state"]) for a in hosted] == [("driver", "alive")]
    assert refrpc.cluster_resources() == {"CPU": 2.0}
    assert refrpc.available_resources() == {"CPU": 0.0}
    assert refrpc.get(refs, timeout=60) == [3000] * 6
    assert refrpc.available_resources() == {"CPU": 2.0}


@refrpc.remote
def mark_then_pid(path: str, ms: int) -> int:
    """Leaves a mark that it started, then sleeps; the worker process that ran it."""
    open(path, "a").close()
    time.sleep(ms / 1000)
    return os.getpid()


def test_a_one_worker_cluster_keeps_the_work_of_its_killed_worker(tmp_path: Path) -> None:
    # refrpc.init(1); a retryable task runs and three wait queued behind it; kill -9
    # the one worker: the retry and the queued tasks go to its successor (they used
    # to fail at once with "no live executor", the successor not started yet).
    refrpc.init(1)
    try:
        cluster = refrpc.api._ctx.cluster
        first = cluster.processes["w1"]
        mark = tmp_path / "started"
        running = mark_then_pid.options(max_retries=1).remote(str(mark), 1000)
        queued = [pid_after_ms.remote(0) for _ in range(3)]
        assert wait_until(mark.exists, 30)
        os.kill(first.pid, signal.SIGKILL)
        assert refrpc.get([running, *queued], timeout=60) == [cluster.processes["w1"].pid] * 4
        assert cluster.processes["w1"] is not first
    finally:
        refrpc.shutdown()
