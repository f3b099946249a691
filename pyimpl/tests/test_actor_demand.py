"""A host holds an actor's lifetime demand (ACT-026..ACT-029), on real processes: a
head started with `refrpc start --head` and one worker offering one "gpu", a first
driver (a script this test drives through its stdin) and this process as a second
driver. Neither driver knows what the other placed there: only the worker's own
admission keeps their actors and tasks within its one gpu."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import refrpc
from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode
from refrpc.testing import wait_until

import actor_fixtures as af
from head_fixtures import cli_head

pytestmark = pytest.mark.timeout(240)
SRC = Path(refrpc.__file__).resolve().parents[1]
KEY_FILE = str(Path(tempfile.mkdtemp(prefix="refrpc-test-key-")) / "cluster.key")
GPU = {"gpu": 1}

#: The first driver: makes an actor holding the gpu, then does what the test says on stdin.
FIRST = """\
import os, sys, refrpc, actor_fixtures as af
refrpc.init(address=sys.argv[1])
a = af.Marker.options(resources={"gpu": 1}).remote(sys.argv[2])
print("alive", refrpc.get(a.ping.remote(), timeout=60), flush=True)
assert sys.stdin.readline().strip() == "kill"
refrpc.kill(a)
print("killed", flush=True)
assert sys.stdin.readline().strip() == "task"
t = af.touch.options(num_cpus=0, resources={"gpu": 1}).remote(sys.argv[3])
# A task taking nothing, sent after t on the same session: once it is answered, the
# worker has t, so whether t ran by then says whether it waited.
assert refrpc.get(af.add.options(num_cpus=0).remote(1, 2), timeout=60) == 3
print("task", "ran" if os.path.exists(sys.argv[3]) else "waits", flush=True)
print("done", refrpc.get(t, timeout=120), flush=True)
refrpc.shutdown()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["REFRPC_KEY_FILE"] = KEY_FILE
    return env


@pytest.fixture(scope="module")
def head():
    with cli_head("--num-workers", "1", "--resources", '{"gpu": 1}', env=_env()) as address:
        refrpc.init(address=address, key_file=KEY_FILE)
        try:
            assert wait_until(lambda: _worker() is not None, 60, step=0.2), "the head's worker did not register"
            yield address
        finally:
            refrpc.shutdown()


def _worker() -> str | None:
    rows = [n for n in refrpc.nodes() if n["role"] == "worker" and n["alive"]]
    return rows[0]["id"] if rows else None


def _probe() -> None:
    """A task taking nothing, answered by the one worker: what this driver sent before
    it has reached the worker (one session delivers in order)."""
    assert refrpc.get(af.add.options(num_cpus=0).remote(2, 3), timeout=60) == 5


def _line(proc: subprocess.Popen, expected: str) -> str:
    line = proc.stdout.readline()
    assert line.startswith(expected), (line, proc.stderr.read() if proc.poll() is not None else "")
    return line.strip()


def test_an_actor_waits_for_the_gpu_another_drivers_actor_holds_and_then_holds_it_against_tasks(head, tmp_path):
    # driver 1: a = Marker.options(resources={"gpu": 1}).remote(); a alive
    # driver 2: b = Marker.options(resources={"gpu": 1}).remote(); b.ping.remote()
    #   b's constructor does not run (its call waits, it does not fail) until driver 1 kills a;
    #   then driver 1's gpu task waits while b holds the gpu, and runs once b is killed.
    #                                                           ACT-027, TASK-050, TASK-055
    a_path, b_path, t_path = (str(tmp_path / n) for n in ("a", "b", "t"))
    script = tmp_path / "first.py"
    script.write_text(FIRST)
    first = subprocess.Popen([sys.executable, str(script), head, a_path, t_path], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        _line(first, "alive True")
        b = af.Marker.options(resources=GPU).remote(b_path)
        ping = b.ping.remote()
        _probe()
        assert not os.path.exists(b_path), "b's constructor ran while a held the worker's only gpu"
        assert refrpc.wait([ping], timeout=0)[0] == []
        first.stdin.write("kill\n")
        first.stdin.flush()
        _line(first, "killed")
        assert refrpc.get(ping, timeout=60) is True  # b was created once a was gone
        assert os.path.exists(b_path)
        first.stdin.write("task\n")
        first.stdin.flush()
        assert _line(first, "task") == "task waits"  # b holds the gpu now
        refrpc.kill(b)
        assert _line(first, "done") == "done True"
        assert first.wait(60) == 0
    finally:
        if first.poll() is None:
            first.kill()
        first.wait(10)


def test_an_actor_asking_for_more_than_its_host_offers_dies_and_its_calls_fail(head, tmp_path, monkeypatch):
    # An actor named to the worker (so this driver's placement does not refuse it) asking
    # for two gpus, of which the worker offers one: the host refuses it at once without
    # running its constructor; its calls fail with ActorDiedError, not hang.      ACT-028
    worker = _worker()
    assert worker is not None
    node = refrpc.api._ctx.node
    handle = node.handle

    def to_worker(s):  # the actor goes to the worker whatever this driver's view says
        if isinstance(s, ev.CreateActorRequest):
            s = dataclasses.replace(s, executor=worker)
        return handle(s)

    monkeypatch.setattr(node, "handle", to_worker)
    path = str(tmp_path / "never")
    c = af.Marker.options(resources={"gpu": 2}).remote(path)
    monkeypatch.undo()
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(c.ping.remote(), timeout=60)
    # The owner was told why: ActorStatus(DEAD) with RESOURCE_EXHAUSTED naming the gpu.
    state = node.call(lambda: (lambda a: (a.state, a.error))(node.core.owned_actors[c._actor_id])).result()
    assert state[0] == "dead" and state[1].code is ErrorCode.RESOURCE_EXHAUSTED and "gpu" in state[1].message, state
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(c.ping.remote(), timeout=60)  # a later call too
    assert not os.path.exists(path)
    _probe()  # the worker serves on, its gpu free: a gpu task runs
    assert refrpc.get(af.touch.options(num_cpus=0, resources=GPU).remote(str(tmp_path / "t")), timeout=60) is True


def test_an_actor_killed_while_its_creation_waits_for_the_gpu_never_runs(head, tmp_path):
    # b holds the gpu; c (gpu) waits at the worker; killing c fails its call and c's
    # constructor never runs, even once b is killed and the gpu is free.       ACT-029
    b = af.Marker.options(resources=GPU).remote(str(tmp_path / "b"))
    assert refrpc.get(b.ping.remote(), timeout=60) is True
    c_path = str(tmp_path / "c")
    c = af.Marker.options(resources=GPU).remote(c_path)
    c_ping = c.ping.remote()
    _probe()
    assert not os.path.exists(c_path)
    refrpc.kill(c)
    with pytest.raises(refrpc.ActorDiedError):
        refrpc.get(c_ping, timeout=60)
    refrpc.kill(b)
    # The gpu is free again (c took nothing): a gpu task runs, and c was never built.
    assert refrpc.get(af.touch.options(num_cpus=0, resources=GPU).remote(str(tmp_path / "t")), timeout=60) is True
    assert not os.path.exists(c_path)
