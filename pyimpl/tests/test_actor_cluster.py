"""Named and detached actors across drivers of one cluster (ACT-022), on real
processes: a head started with `refrpc start --head`, a first driver (a script) that
names two actors and leaves, and this process as a second driver."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import refrpc

from head_fixtures import cli_head

pytestmark = pytest.mark.timeout(180)
SRC = Path(refrpc.__file__).resolve().parents[1]


#: The cluster key the head makes and every joiner reads (SEC-015).
KEY_FILE = str(Path(tempfile.mkdtemp(prefix="refrpc-test-key-")) / "cluster.key")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env["REFRPC_KEY_FILE"] = KEY_FILE
    return env


@pytest.fixture
def head():
    with cli_head("--num-workers", "1", env=_env()) as address:
        yield address


def _wait_for_a_worker(address: str) -> None:
    from refrpc.testing import wait_until

    def registered() -> bool:
        out = subprocess.run([sys.executable, "-m", "refrpc.cli", "status", "--address", address],
                             capture_output=True, text=True, timeout=30, env=_env()).stdout
        return "1 workers" in out

    assert wait_until(registered, 60, step=0.5), "the head's worker did not register"


def test_a_detached_actor_outlives_the_driver_that_made_it_and_a_named_one_does_not(head, tmp_path):
    # driver 1: Tracked.options(name="keeper", lifetime="detached").remote(); Tracked.options(name="mortal").remote(); exit
    # driver 2: get_actor("keeper") works (its owner is the head); "mortal" died with driver 1   ACT-022, FATE-004
    _wait_for_a_worker(head)
    script = tmp_path / "first.py"
    script.write_text(
        "import refrpc, actor_fixtures as af\n"
        "if __name__ == '__main__':\n"
        f"    refrpc.init(address={head!r})\n"
        f"    k = af.Tracked.options(name='keeper', lifetime='detached').remote({str(tmp_path / 'k')!r})\n"
        f"    m = af.Tracked.options(name='mortal').remote({str(tmp_path / 'm')!r})\n"
        "    print(refrpc.get([k.add.remote(5), m.add.remote(1)], timeout=60))\n"
        "    refrpc.shutdown()\n"
    )
    first = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=_env())
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "[5, 1]"
    refrpc.init(address=head, key_file=KEY_FILE)
    try:
        keeper = refrpc.get_actor("keeper")
        assert refrpc.get(keeper.add.remote(1), timeout=60) == 6
        with pytest.raises(ValueError, match="mortal"):
            refrpc.get_actor("mortal")
        refrpc.kill(keeper)  # its owner (the head) is asked to
        with pytest.raises(refrpc.ActorDiedError):
            refrpc.get(keeper.add.remote(1), timeout=60)
        with pytest.raises(ValueError):
            refrpc.get_actor("keeper")
    finally:
        refrpc.shutdown()
