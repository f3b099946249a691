"""Members of a cluster started with `refrpc start`, on real processes: holding the
key file lets a process join as a new member, not speak as an existing one, and
the join credential can be replaced in a running cluster.

    refrpc start --head --num-workers 1          # the head, and one worker it supervises
    refrpc.init(address=HEAD)                    # a driver, in this process

Mallory holds the key file. She connects with a key pair of her own and a valid
join proof, or with the key SEC-016 derives for the PeerId she claims, and claims
to be the worker, the driver or the head, each with a new incarnation (a Hello
that, if believed, fences the member it names, HS-006), then sends a task whose
pickled argument writes a file: nobody answers, nothing runs, nobody is fenced, and
the cluster keeps running the driver's tasks (SEC-022..SEC-024).
Under a PeerId of her own, the same credential makes her welcome at the head.
Then `refrpc rotate-key` replaces the join credential: the old key file joins
during the grace period and not after it, and the running members, and a worker
restarted after it, go on working (SEC-025, CLU-052).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
from pathlib import Path

import pytest

import refrpc
from refrpc import codec
from refrpc.core import messages as m
from refrpc.runtime._membership import HEAD
from refrpc.testing import wait_until

import remote_fixtures as rf
from test_cli import _cli
from test_security import Outsider, _Hostile, cluster  # noqa: F401 - cluster: `refrpc start --head`, a driver here

pytestmark = pytest.mark.timeout(300)

#: How long Mallory listens for an answer that must not come.
SILENCE_S = 2.0


def _worker() -> tuple[str, str, int]:
    """The worker's (PeerId, address, pid), as the head lists it."""
    rows = refrpc.api._call_on(HEAD, "refrpc.runtime._membership:cluster")
    (peer, _role, address, _slots, _host, pid, _res), = [r for r in rows if r[1] == "worker"]
    return peer, address, pid


def _still_works() -> None:
    assert refrpc.get(rf.add.remote(2, 3), timeout=60) == 5


class Mallory:
    """A raw peer holding the cluster key file, claiming PeerId ``claim``.

    ``how``: "own-key" (a key pair of her own, with a valid join proof for the
    claim: what a joiner presents) or "derived-key" (the member key SEC-016
    derives from the secret for the claimed PeerId).
    """

    def __init__(self, key, claim: str, how: str, servers: dict[str, bytes | str] | None = None) -> None:
        from refrpc.transport import ZmqTransport

        if how == "own-key":
            from refrpc.transport import OwnKey

        self.name = claim
        self.incarnation = 0x3E3
        keys = {"own_key": OwnKey(key, claim)} if how == "own-key" else {}
        self.transport = ZmqTransport("tcp://127.0.0.1:0", cluster_key=key, peer_id=claim, **keys)
        # Every member's server key is public (the key file names the head's, views the
        # others'): she knows them, so her handshakes complete (SEC-040).
        for address, public in (servers or {}).items():
            self.transport.expect(address, public)

    def hello(self, peer: str, address: str) -> None:
        env = m.Envelope(self.name, self.incarnation, peer, 0, 0, 0,
                         m.Hello(0, 1, self.transport.address, ("core", "python-pickle"), 64 << 20, 250))
        self.transport.send(address, codec.encode(env))

    def hostile_task(self, peer: str, incarnation: int, address: str, marker: Path) -> None:
        """The first message of the session her Hello opened, if it was believed: a task
        whose pickled argument writes ``marker`` as it is unpickled."""
        import pickle

        arg = m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PICKLE, pickle.dumps(_Hostile(str(marker)))))
        task = m.SubmitTask("m.1.1", "refrpc.runtime._executor:call_by_value", (arg,), ("m.1.1.r0",))
        self.transport.send(address, codec.encode(m.Envelope(self.name, self.incarnation, peer, incarnation, 1, 0, task)))

    def answers(self, within: float = SILENCE_S) -> list[m.Envelope]:
        """Every message that reaches her within ``within`` seconds (the bound of a non-event)."""
        import time

        got: list[m.Envelope] = []
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            self.transport.poll(1)
            frames = self.transport.recv(max(1, int(left * 1000)))
            if frames is not None:
                got.append(codec.decode(frames))
        return got

    def close(self) -> None:
        self.transport.close()


@pytest.mark.parametrize("how", ["own-key", "derived-key"])
def test_a_member_with_the_key_file_cannot_speak_as_another_member(cluster, how, tmp_path):
    #                                                         SEC-011, SEC-016, SEC-022, SEC-023, SEC-024
    from refrpc.transport import ClusterKey

    key = ClusterKey.load(cluster["key_file"])
    node = refrpc.api._ctx.node
    worker, worker_address, worker_pid = _worker()
    discarded = node.stats["unauthenticated_discarded"]
    # Each claim with a new incarnation: believed, the Hello would fence the member it names (HS-006).
    attempts = [(worker, HEAD, cluster["address"]), (worker, node.peer_id, node.address),
                (node.peer_id, HEAD, cluster["address"]), (node.peer_id, worker, worker_address),
                (HEAD, node.peer_id, node.address), (HEAD, worker, worker_address)]
    _still_works()  # the driver is in session with the worker
    remotes = node.call(lambda: dict(node.core.remotes)).result()
    incarnations = {HEAD: remotes[HEAD].incarnation, worker: remotes[worker].incarnation, node.peer_id: node.incarnation}
    marker = tmp_path / "pwned"
    servers = {cluster["address"]: key.head_public, worker_address: node.keys[worker], node.address: node.own_key.public}
    liars = []
    try:
        for claim, to, address in attempts:
            liar = Mallory(key, claim, how, servers)
            liars.append(liar)
            liar.hello(to, address)
            liar.hostile_task(to, incarnations[to], address, marker)
        import time

        end = time.monotonic() + SILENCE_S  # one window for all of them (the bound of a non-event)
        for liar in liars:
            got = liar.answers(max(0.05, end - time.monotonic()))
            assert got == [], [(liar.name, type(e.body).__name__) for e in got]
        assert node.stats["unauthenticated_discarded"] > discarded  # her frames reached the driver, and were dropped
        assert not marker.exists()  # nothing ran
        remotes = node.call(lambda: dict(node.core.remotes)).result()
        assert remotes[HEAD].state != "dead" and remotes[HEAD].incarnation != 0x3E3
        _still_works()
        assert _worker() == (worker, worker_address, worker_pid)  # the same worker incarnation, still listed
        assert node.peer_id in [p for p, *_ in refrpc.api._call_on(HEAD, "refrpc.runtime._membership:peers")]
    finally:
        for liar in liars:
            liar.close()


def test_the_key_file_still_lets_a_new_member_join(cluster):
    # Holding the credential is joining as a new member: the head welcomes a PeerId nobody
    # holds, and once that member is dead (it never heartbeats), another key may hold it    SEC-023
    from refrpc.transport import ClusterKey

    key = ClusterKey.load(cluster["key_file"])
    servers = {cluster["address"]: key.head_public}
    newcomers = [Mallory(key, "newcomer-1", "own-key", servers), Mallory(key, "newcomer-1", "own-key", servers)]
    newcomers[1].incarnation += 1
    try:
        for newcomer in newcomers:
            got: list[m.Envelope] = []

            def welcomed() -> bool:
                newcomer.hello(HEAD, cluster["address"])  # resent, as an initiator does (HS-008)
                got.extend(newcomer.answers(0.2))
                return any(isinstance(e.body, m.Welcome) for e in got)

            assert wait_until(welcomed, 60, step=0.01), [type(e.body).__name__ for e in got]
    finally:
        for newcomer in newcomers:
            newcomer.close()


def _status_ok(address: str, key_file: str | Path) -> bool:
    out = _cli("status", "--address", address, "--key-file", str(key_file), timeout=120)
    assert out.returncode == 0 and "worker" in out.stdout, out.stdout + out.stderr
    return True


def test_rotating_the_join_credential_keeps_the_cluster_running(cluster, tmp_path):
    #                                                                     SEC-025, CLU-052
    address, current = cluster["address"], Path(cluster["key_file"])
    old = tmp_path / "old.key"
    shutil.copy(current, old)
    os.chmod(old, 0o600)
    new = tmp_path / "new.key"
    out = _cli("rotate-key", "--address", address, "--key-file", str(current), "--new-key-file", str(new),
               "--grace", "600", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert new.read_text() != old.read_text()
    # During the grace period both files join.
    assert _status_ok(address, new)
    assert _status_ok(address, old)
    out = _cli("rotate-key", "--address", address, "--key-file", str(new), "--end-grace", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    # After it, the old file joins nothing: the head never answers it.
    refused = _cli("status", "--address", address, "--key-file", str(old), timeout=120)
    assert refused.returncode != 0 and "no RefRPC head answered" in refused.stderr, refused.stdout + refused.stderr
    assert _status_ok(address, new)
    # The members that joined with the old file go on working.
    _still_works()
    # A worker restarted afterwards reads the key file where it was, now holding the new one.
    shutil.copy(new, current)
    worker, _, pid = _worker()
    os.kill(pid, signal.SIGKILL)

    def back() -> bool:
        rows = refrpc.api._call_on(HEAD, "refrpc.runtime._membership:cluster")
        return any(r[1] == "worker" and r[5] != pid for r in rows)

    assert wait_until(back, 120, step=0.5), "the worker did not come back"
    _still_works()


# ------------------------------------------------------------------ --insecure
@pytest.fixture
def insecure_member():
    """A worker node of an insecure cluster, in this process, that joined through a head
    at ``node.head_address`` (set by each test)."""
    from refrpc.runtime import LocalCluster
    from refrpc.runtime._executor import working_node

    node, executor = working_node("w1", "tcp://127.0.0.1:0", LocalCluster.new_namespace(), insecure=True)
    try:
        yield node
    finally:
        executor.stop()
        node.stop()


@pytest.mark.parametrize("joined_through_it", [False, True])
def test_without_authentication_a_view_comes_only_from_the_head_joined_through(insecure_member, joined_through_it):
    # Anyone may claim PeerId "head" when authentication is off; its views are refused      SEC-026
    import pickle

    node = insecure_member
    claimer = Outsider(HEAD)
    try:
        node.head_address = claimer.address if joined_through_it else "tcp://127.0.0.1:9"
        claimer.hello(node.address, node.peer_id)  # an insecure node welcomes anyone
        view = {"version": 7, "members": [], "incarnations": {}, "dead": [("w9", 5, "the claimer says so")], "keys": {}}
        arg = m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PICKLE, pickle.dumps(view)))
        claimer.send(node.address, node.peer_id, m.SubmitTask("head.1.1", "refrpc.runtime._membership:learn",
                                                              (arg,), ("head.1.1.r0",)),
                     receiver_incarnation=node.incarnation)
        got: list[m.Envelope] = []
        assert wait_until(lambda: got.extend(claimer.answers(0.05)) or any(isinstance(e.body, m.TaskReply) for e in got),
                          30, step=0.01), [e.body for e in got]
        replies = [e for e in got if isinstance(e.body, m.TaskReply)]
        if joined_through_it:
            assert replies[0].body.returns[0].error is None and node.view_version == 7
        else:
            assert replies[0].body.returns[0].error is not None and node.view_version == 0
    finally:
        claimer.close()


# ------------------------------------------------------------------ the key file's join credential
def test_a_join_proof_names_one_peer_and_one_key_and_a_rotation_ends_with_its_grace(tmp_path):
    #                                                                          SEC-015, SEC-022, SEC-025
    from refrpc.transport import ClusterKey, KeyFileError, OwnKey

    key = ClusterKey.generate()
    new = key.with_new_join()
    assert new.server_public == key.server_public  # running members keep their connections
    path = tmp_path / "new.key"
    new.save(path)
    assert ClusterKey.load(path).join_hex() == new.join_hex() != key.join_hex()
    path.write_text('{"format": "refrpc-cluster-key", "version": 1, "secret": "%s", "join": "xyz"}' % ("ab" * 32))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="'join'"):
        ClusterKey.load(path)
    old_member, new_member = OwnKey(key, "w1"), OwnKey(new, "w1")
    pub = old_member.public.decode()
    assert key.accepts_join("w1", pub, old_member.proof, now=0.0)
    assert not key.accepts_join("w2", pub, old_member.proof, now=0.0)  # another PeerId
    assert not key.accepts_join("w1", OwnKey(key, "w1").public.decode(), old_member.proof, now=0.0)  # another key
    key.save(tmp_path / "old.key")
    head = ClusterKey.load(tmp_path / "old.key")  # the head of the cluster whose file is ``key``
    head.rotate(bytes.fromhex(new.join_hex()), grace_s=10.0, now=100.0)
    assert head.accepts_join("w1", pub, old_member.proof, now=105.0)  # within the grace period
    assert head.accepts_join("w1", new_member.public.decode(), new_member.proof, now=105.0)
    assert not head.accepts_join("w1", pub, old_member.proof, now=110.0)  # after it
    assert len(head.join_proofs("head", pub, now=111.0).split(",")) == 1  # only the new credential's
    head.rotate(bytes.fromhex(key.join_hex()), grace_s=10.0, now=200.0)
    assert len(head.join_proofs("head", pub, now=201.0).split(",")) == 2
    head.rotate(None, grace_s=0.0, now=202.0)  # --end-grace
    assert not head.accepts_join("w1", new_member.public.decode(), new_member.proof, now=202.0)
