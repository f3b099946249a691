"""Stopping work (TASK-008) on real processes: refrpc.cancel, Ctrl-C in get and
wait, and cancelling an awaited ref. Each test then shows the worker free again
by running a task on it at once (a one-worker cluster: a task still running
would hold it)."""

from __future__ import annotations

import asyncio
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

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def one_worker():
    refrpc.init(1)
    try:
        yield refrpc.api._ctx
    finally:
        refrpc.shutdown()


def _worker_is_free() -> bool:
    """A quick task answers within a few seconds (the 60 s task did not keep the worker)."""
    return refrpc.get(rf.add.remote(1, 1), timeout=10) == 2


def test_cancel_stops_a_running_task_and_its_get_raises(one_worker):
    long = rf.spin_ms.remote(60_000)
    assert refrpc.wait([rf.add.remote(0, 0)], timeout=1)[1]  # queued behind long: long runs now (FIFO)
    started = time.monotonic()
    assert refrpc.cancel(long) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(long, timeout=30)
    assert time.monotonic() - started < 5  # at once, not after the task
    assert _worker_is_free()
    assert refrpc.cancel(long) is False  # nothing left to cancel
    done = rf.add.remote(2, 2)
    assert refrpc.get(done, timeout=30) == 4
    assert refrpc.cancel(done) is False  # finished already
    with pytest.raises(TypeError):
        refrpc.cancel("not a ref")


def test_a_queued_task_that_is_cancelled_never_runs(one_worker, tmp_path):
    blocker = rf.spin_ms.remote(1_500)
    marker = tmp_path / "ran"
    queued = rf.touch_and_return.remote(str(marker))
    assert refrpc.cancel(queued)
    assert refrpc.get(blocker, timeout=30) == 1_500
    assert _worker_is_free()
    assert not marker.exists()


def test_cancelling_an_awaited_ref_cancels_its_task(one_worker):
    long = rf.spin_ms.remote(60_000)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(long, timeout=0.5)

    asyncio.run(main())
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(long, timeout=10)
    assert _worker_is_free()


PROGRAM = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {tests!r})
    import refrpc
    import remote_fixtures as rf

    refrpc.init(1)
    long = [rf.spin_ms.remote(60_000) for _ in range({n})]  # one runs, the others queue
    print("waiting", flush=True)
    try:
        {call}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    cancelled = 0
    for ref in long:
        try:
            refrpc.get(ref, timeout=10)
        except refrpc.TaskCancelledError:
            cancelled += 1
    print("cancelled", cancelled, flush=True)
    t0 = time.monotonic()
    print("free", refrpc.get(rf.add.remote(1, 1), timeout=10), round(time.monotonic() - t0) < 5, flush=True)
    refrpc.shutdown()
''')


@pytest.mark.parametrize("n, call", [
    (1, "refrpc.get(long[0])"),
    (2, "refrpc.wait(long, num_returns=2)"),
], ids=["get", "wait"])
def test_ctrl_c_in_get_or_wait_raises_keyboard_interrupt_and_cancels_what_it_waited_for(tmp_path: Path, n: int,
                                                                                         call: str) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM.format(tests=str(Path(__file__).parent), n=n, call=call))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        # SIGINT must land while get() blocks (earlier, it would interrupt the program
        # elsewhere): wait, bounded, until the main thread sleeps and stays asleep.
        assert wait_until(lambda: main_thread_asleep(proc.pid), 30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert out.split("\n")[:3] == ["interrupted", f"cancelled {n}", "free 2 True"], out + err[-2000:]


# ---------------------------------------------------------------- cancel(force=True)
@refrpc.remote
def stuck_in_c(path: str, how: str) -> int:
    """Leaves a mark, then runs one long call into C that no TaskCancelledError interrupts."""
    open(path, "a").close()
    if how == "sleep":
        time.sleep(120)
    else:
        sum(range(10**12))  # a C loop: no bytecode boundary until it ends
    return 0


@refrpc.remote
class Sleeper:
    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@pytest.mark.parametrize("how", ["sleep", "busy"])
def test_force_kills_the_worker_of_a_task_that_does_not_stop(one_worker, tmp_path, how):
    # ref = stuck.remote(); refrpc.cancel(ref, force=True): CancelTask cannot stop a
    # long call into C, so the worker process is killed; the supervisor starts it
    # again and the next task runs at once.
    cluster = one_worker.cluster
    before = cluster.processes["w1"]
    mark = tmp_path / "started"
    ref = stuck_in_c.remote(str(mark), how)
    assert wait_until(mark.exists, 30)
    started = time.monotonic()
    assert refrpc.cancel(ref, force=True) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(ref, timeout=30)
    assert before.wait(10) == -signal.SIGKILL  # killed, not left to finish
    assert _worker_is_free()
    assert cluster.processes["w1"].pid != before.pid
    assert time.monotonic() - started < 15
    assert refrpc.cancel(ref, force=True) is False  # nothing left to cancel


def test_force_after_a_plain_cancel_kills_the_worker_of_a_task_that_did_not_stop(one_worker, tmp_path):
    # refrpc.cancel(ref) -> the task is stuck in C and runs on; refrpc.cancel(ref,
    # force=True) then kills its worker (it used to return False and leave it running).
    cluster = one_worker.cluster
    before = cluster.processes["w1"]
    mark = tmp_path / "started"
    ref = stuck_in_c.remote(str(mark), "sleep")
    assert wait_until(mark.exists, 30)
    assert refrpc.cancel(ref) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(ref, timeout=30)
    assert before.poll() is None  # a plain cancel kills nothing
    assert refrpc.cancel(ref, force=True) is True
    assert before.wait(10) == -signal.SIGKILL
    assert _worker_is_free()
    assert cluster.processes["w1"].pid != before.pid
    assert refrpc.cancel(ref, force=True) is False  # nothing left to stop


def test_force_leaves_the_worker_alone_when_the_task_stops(one_worker):
    # A task that sees TaskCancelledError stops: force kills nothing.
    before = one_worker.cluster.processes["w1"]
    long = rf.spin_ms.remote(60_000)
    assert refrpc.wait([long], timeout=1)[1]
    assert refrpc.cancel(long, force=True) is True
    with pytest.raises(refrpc.TaskCancelledError):
        refrpc.get(long, timeout=30)
    assert _worker_is_free()
    assert one_worker.cluster.processes["w1"] is before and before.poll() is None


def test_force_refuses_an_actor_call(one_worker):
    # Killing the worker would kill the actor with it: refrpc.kill(actor) says so.
    sleeper = Sleeper.remote()
    call = sleeper.nap.remote(3)
    with pytest.raises(ValueError, match="refrpc.kill"):
        refrpc.cancel(call, force=True)
    assert refrpc.get(call, timeout=30) == 3
    refrpc.kill(sleeper)
