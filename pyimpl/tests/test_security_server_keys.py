"""Server keys of a cluster started with `refrpc start`, on real processes: holding
the key file is not enough to pose as a member's server, and rotating the join
credential is for the operator only.

    refrpc start --head --num-workers 1 --miss-limit 400    # writes KEY and KEY.head
    refrpc start --address HEAD --num-workers 1             # a second "host"

Mallory holds the key file (so the secret, the server key SEC-016 derives from it
and the join credential), but not the head key file nor any member's own key pair.
She listens where a member is expected (at a dead worker's address the head still
heartbeats, or at an address a joiner is given as the head's): no handshake with
her completes, and nothing reaches her, because every ROUTER serves with its own
key and every client expects the key bound to the peer it connects to (SEC-040,
SEC-041). A joiner whose key file names another head key fails at once, naming
the address. A registered member that asks the head to rotate the join credential
is refused: only the holder of the head's own key may (CLU-052).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import refrpc
from refrpc.runtime._membership import HEAD
from refrpc.testing import wait_until

from test_cli import _cli, _env, start_head

pytestmark = pytest.mark.timeout(300)

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class Impostor:
    """Mallory's CURVE server at ``address``: the server key SEC-016 derives from the
    key file's secret (the only server key the file gives her), admitting every
    client key, and watching how each handshake ends."""

    def __init__(self, key, address: str = "tcp://127.0.0.1:0") -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.context = zmq.Context()
        self.auth = ThreadAuthenticator(self.context)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.curve_server = 1
        self.router.curve_secretkey = key.server_secret
        self.router.zap_domain = b"refrpc"
        self.monitor = self.router.get_monitor_socket(_HANDSHAKE_EVENTS)
        self.succeeded = self.failed = 0
        self.received: list[list[bytes]] = []
        try:
            self.router.bind(address)
        except zmq.ZMQError:
            self.close()
            raise
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()

    def watch(self) -> int:
        """Count the handshakes that ended and take what arrived; the number ended."""
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.succeeded += 1
            else:
                self.failed += 1
        while self.router.poll(0):
            self.received.append(self.router.recv_multipart())
        return self.succeeded + self.failed

    def close(self) -> None:
        self.router.disable_monitor()
        self.monitor.close(0)
        self.router.close(0)
        self.auth.stop()
        self.context.term()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """`refrpc start --head` with one worker; a dead member stays listed for 100 s."""
    home = tmp_path_factory.mktemp("home")
    env = _env(HOME=str(home), REFRPC_RUN_DIR=str(home / "run"))
    proc, address, key_file = start_head("--num-workers", "1", "--miss-limit", "400", env=env)
    try:
        yield {"address": address, "key_file": key_file, "env": env, "home": home}
    finally:
        _stop(proc)


def test_the_key_file_names_the_head_key_whose_secret_stays_with_the_head(head):
    #                                                                         SEC-015, SEC-041
    from refrpc.transport import ClusterKey, HeadKey

    key = ClusterKey.load(head["key_file"])
    head_key = HeadKey.load(HeadKey.path_for(head["key_file"]))
    assert key.head_public == head_key.public
    assert (os.stat(HeadKey.path_for(head["key_file"])).st_mode & 0o777) == 0o600
    assert "secret" not in json.loads(Path(head["key_file"]).read_text()).get("head", "")
    assert head_key.secret.decode() not in Path(head["key_file"]).read_text()


@pytest.mark.timeout(180)
def test_an_impostor_with_the_key_file_at_a_members_address_completes_no_handshake(head, tmp_path):
    #                                                                         SEC-040, SEC-024
    from refrpc.transport import ClusterKey

    key = ClusterKey.load(head["key_file"])
    env = {**head["env"], "REFRPC_KEY_FILE": head["key_file"]}
    host = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--address", head["address"],
                             "--num-workers", "1", "--miss-limit", "400"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    impostor = None
    try:
        refrpc.init(address=head["address"], key_file=head["key_file"], connect_timeout=30)
        try:
            def worker() -> tuple | None:  # the second host's (its names carry its supervisor's pid)
                rows = refrpc.api._call_on(HEAD, "refrpc.runtime._membership:cluster")
                return next((r for r in rows if r[1] == "worker" and f"-{host.pid}-w" in r[0]), None)

            assert wait_until(lambda: worker() is not None, 60, step=0.2), "the worker did not register"
            _peer, _role, worker_address, _slots, _host, worker_pid, _res = worker()
        finally:
            refrpc.shutdown()  # a Goodbye: this driver announces no death of its own
        # The worker dies with its supervisor, unannounced: the head goes on heartbeating its
        # address for the 100 s of --miss-limit 400, reconnecting to whoever listens there.
        os.kill(host.pid, signal.SIGSTOP)
        os.kill(worker_pid, signal.SIGKILL)
        os.kill(host.pid, signal.SIGKILL)
        host.wait(10)

        def listening() -> bool:
            nonlocal impostor
            try:
                impostor = Impostor(key, worker_address)
            except zmq.ZMQError:  # the dead worker's port is not free yet
                return False
            return True

        assert wait_until(listening, 30, step=0.05), f"could not listen at {worker_address}"
        # One handshake that completes stays up; failed ones are retried (ZMQ reconnects).
        assert wait_until(lambda: impostor.watch() and (impostor.succeeded or impostor.failed >= 2), 60, step=0.05), \
            "the head never connected"
        impostor.watch()
        assert (impostor.succeeded, impostor.received) == (0, []), "a handshake with the impostor completed"
    finally:
        if impostor is not None:
            impostor.close()
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait(10)


def test_a_holder_of_the_key_file_posing_as_the_head_gets_nothing_and_the_joiner_says_where(head):
    #                                                                         SEC-040, SEC-041
    from refrpc.transport import ClusterKey

    impostor = Impostor(ClusterKey.load(head["key_file"]))
    try:
        with pytest.raises(refrpc.RefRPCError, match=f"server at {impostor.address} is not the head"):
            refrpc.init(address=impostor.address, key_file=head["key_file"], connect_timeout=30)
        assert not refrpc.is_initialized()
        impostor.watch()
        assert impostor.succeeded == 0 and impostor.failed >= 1
        assert impostor.received == []
    finally:
        impostor.close()


def test_a_joiner_given_another_head_key_fails_at_once_naming_the_address(head, tmp_path):
    #                                                                         SEC-041
    data = json.loads(Path(head["key_file"]).read_text())
    data["head"] = zmq.curve_keypair()[0].decode()
    wrong = tmp_path / "wrong.key"
    wrong.write_text(json.dumps(data))
    wrong.chmod(0o600)
    expected = f"server at {head['address']} is not the head that {wrong}"
    with pytest.raises(refrpc.RefRPCError, match="is not the head") as caught:
        refrpc.init(address=head["address"], key_file=wrong, connect_timeout=60)
    assert expected in str(caught.value)
    assert not refrpc.is_initialized()
    # `refrpc start --address` and the inspection commands fail the same way, before starting anything.
    for argv in (["start", "--address", head["address"], "--num-workers", "1", "--key-file", str(wrong)],
                 ["status", "--address", head["address"], "--key-file", str(wrong)]):
        out = _cli(*argv, timeout=60, env=head["env"])
        assert out.returncode == 1 and expected in out.stderr, out.stdout + out.stderr


def test_a_key_file_without_a_head_key_does_not_join(head, tmp_path):
    #                                                                         SEC-041
    data = json.loads(Path(head["key_file"]).read_text())
    del data["head"]
    bare = tmp_path / "bare.key"
    bare.write_text(json.dumps(data))
    bare.chmod(0o600)
    with pytest.raises(refrpc.RefRPCError, match="names no head key"):
        refrpc.init(address=head["address"], key_file=bare, connect_timeout=60)
    assert not refrpc.is_initialized()


def test_only_the_operator_may_rotate_the_join_credential(head, tmp_path):
    #                                                                         CLU-052, SEC-025
    refrpc.init(address=head["address"], key_file=head["key_file"], connect_timeout=30)
    try:
        # A registered member (this driver) holds the key file, not the head's own key.
        with pytest.raises(Exception, match="only the operator"):
            refrpc.api._call_on(HEAD, "refrpc.runtime._membership:rotate", "00" * 32, 0.0)
        with pytest.raises(Exception, match="only the operator"):
            refrpc.api._call_on(HEAD, "refrpc.runtime._membership:rotate", None, 0.0)
    finally:
        refrpc.shutdown()
    # `refrpc rotate-key` away from the head's host (no head key file beside the key file,
    # no head started here) refuses before it writes or sends anything.
    copy = tmp_path / "copy.key"
    copy.write_text(Path(head["key_file"]).read_text())
    copy.chmod(0o600)
    elsewhere = {**head["env"], "REFRPC_RUN_DIR": str(tmp_path / "run")}
    out = _cli("rotate-key", "--address", head["address"], "--key-file", str(copy),
               "--new-key-file", str(tmp_path / "new.key"), env=elsewhere, timeout=60)
    assert out.returncode == 1 and "for the operator" in out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "new.key").exists()
    # The credential did not change: the key file still joins.
    out = _cli("status", "--address", head["address"], "--key-file", str(copy), env=elsewhere, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_head_given_a_key_file_that_names_no_head_key_makes_one(tmp_path):
    #                                                                         SEC-041
    from refrpc.transport import ClusterKey, HeadKey

    path = tmp_path / "old.key"
    ClusterKey.generate().save(path)  # a key file as an earlier version wrote it
    env = _env(HOME=str(tmp_path), REFRPC_RUN_DIR=str(tmp_path / "run"))
    proc, address, key_file = start_head("--num-workers", "1", "--key-file", str(path), env=env)
    try:
        assert key_file == str(path)
        key = ClusterKey.load(path)
        assert key.head_public == HeadKey.load(HeadKey.path_for(path)).public
        assert (os.stat(path).st_mode & 0o777) == 0o600
    finally:
        _stop(proc)
    # The head key file gone, that key file starts no head: its key is named, its secret lost.
    os.unlink(HeadKey.path_for(path))
    out = _cli("start", "--head", "--num-workers", "1", "--key-file", str(path), env=env, timeout=60)
    assert out.returncode == 1 and "whose secret key is not on this host" in out.stderr, out.stdout + out.stderr
