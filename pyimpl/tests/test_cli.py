"""`refrpc start/status/memory` on real processes: a head, a second "host", a driver.

The head's workers and the joining host's workers have separate object stores
(as on two machines), so values cross between them by fetch over tcp.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import refrpc

import remote_fixtures as rf

pytestmark = pytest.mark.timeout(180)
SRC = Path(refrpc.__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "refrpc.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or _env())


def start_head(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """``refrpc start --head ARGS``: the process, its address and the key file it printed."""
    head = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--head", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or _env())
    address = key_file = ""
    lines = []
    while True:
        line = head.stdout.readline()
        lines.append(line)
        assert line, "".join(lines)
        found = re.search(r"head listening at (tcp://[0-9.]+:\d+)", line)
        address = found.group(1) if found else address
        found = re.search(r"cluster key file: +(\S+)", line)
        key_file = found.group(1) if found else key_file
        if "use it from Python" in line:  # the last line it prints
            return head, address, key_file


@pytest.fixture
def head_and_host(tmp_path, monkeypatch):
    procs: list[subprocess.Popen[str]] = []
    try:
        head, address, key_file = start_head("--num-workers", "1", "--key-file", str(tmp_path / "cluster.key"))
        procs.append(head)
        assert key_file == str(tmp_path / "cluster.key")
        monkeypatch.setenv("REFRPC_KEY_FILE", key_file)  # refrpc.init and the commands below find it here
        host = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--address", address, "--num-workers", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        procs.append(host)
        assert "joining" in host.stdout.readline()
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _wait_members(address: str, n: int) -> None:
    from refrpc.testing import wait_until

    def enough() -> bool:
        out = _cli("status", "--address", address, timeout=30).stdout
        return f"{n} workers" in out

    assert wait_until(enough, 60, step=0.5), "workers did not register with the head"


def test_a_driver_joins_a_multi_host_cluster_and_values_cross_hosts(head_and_host):
    address = head_and_host
    _wait_members(address, 2)
    refrpc.init(address=address)
    try:
        # Large results made on one "host" are read on the other one by fetch.
        sizes = refrpc.get([rf.length.remote(rf.make_bytes.remote(400_000)) for _ in range(6)], timeout=60)
        assert sizes == [400_000] * 6
        x = refrpc.put(b"q" * 250_000)
        assert refrpc.get(rf.length.remote(x), timeout=60) == 250_000
        assert bytes(refrpc.get(x)) == b"q" * 250_000
        # `refrpc memory` shows x with its owner, size, location and why it is alive.
        out = _cli("memory", "--address", address).stdout
        assert x.id in out and "1 local ref(s)" in out, out
    finally:
        refrpc.shutdown()


def test_a_script_joining_a_cluster_ships_its_own_functions_by_value(head_and_host, tmp_path):
    # Workers started by `refrpc start` never saw this script: its functions travel
    # by value (cloudpickle) instead of by name.
    address = head_and_host
    _wait_members(address, 2)
    script = tmp_path / "job.py"
    script.write_text(
        "import refrpc\n"
        "@refrpc.remote\n"
        "def square(x):\n"
        "    return x * x\n"
        "if __name__ == '__main__':\n"
        f"    refrpc.init(address={address!r})\n"
        "    print(sum(refrpc.get([square.remote(i) for i in range(10)], timeout=60)))\n"
        "    refrpc.shutdown()\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "285"


def test_status_lists_every_worker_with_its_host(head_and_host):
    address = head_and_host
    _wait_members(address, 2)
    out = _cli("status", "--address", address).stdout
    processes, stores = out.split("\n\n", 1)  # the process table, then each one's object store
    assert processes.count("-w1") == 2, out  # one worker on the head's host, one on the other
    assert stores.count("-w1") == 2 and "spilled" in stores, out


def test_commands_fail_cleanly_without_a_cluster():
    result = _cli("status", "--address", "tcp://127.0.0.1:9", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr


def test_start_refuses_a_detection_setting_the_spec_forbids():
    # $ refrpc start --head --miss-limit 1   (LIV-013: missLimit >= 2): an error, nothing started
    result = _cli("start", "--head", "--insecure", "--miss-limit", "1", timeout=30)
    assert result.returncode == 1 and "miss_limit must be an int >= 2" in result.stderr, result.stderr
