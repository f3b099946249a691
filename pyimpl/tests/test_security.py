"""An outsider against a cluster started as the README says, on real processes.

    refrpc start --head --num-workers 1          # prints the key file, 0600
    refrpc.init(address=HEAD)                    # REFRPC_KEY_FILE names the key

An outsider knows every address but has no key: speaking the NULL mechanism,
or CURVE with a key of its own (another cluster's), it gets no Welcome, runs no
task (``builtins:exec``, ``call_by_value`` with a hostile pickle), reads no
object (introspection, status, fetch) and fences no peer (``PeerDeadNotice``, a
new incarnation of ``head``); the cluster goes on running the driver's tasks.
A member that claims another member's PeerId is not listened to either
(SEC-011), and a member on a session without ``python-pickle`` makes no peer
import or unpickle anything (SEC-005, SEC-006), not even through a stored form
the peer fetches from it (OBJ-067).
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq

import refrpc
from refrpc import codec
from refrpc.core import messages as m

import remote_fixtures as rf
from test_cli import _env, _wait_members, start_head

pytestmark = pytest.mark.timeout(240)

#: How long an outsider listens for an answer that must not come.
SILENCE_S = 2.0


class Outsider:
    """A peer with raw ZeroMQ sockets and no cluster key, speaking raw protocol.

    ``curve``: False for the NULL mechanism; True for CURVE with a key pair of
    its own against a server key it made up (it cannot know the cluster's).
    """

    def __init__(self, name: str, curve: bool = False) -> None:
        self.name = name
        self.incarnation = 0x5EC
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:0")
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.curve = zmq.curve_keypair() if curve else None
        self.server_key = zmq.curve_keypair()[0]
        self.dealers: dict[str, zmq.Socket] = {}
        self.seq: dict[str, int] = {}

    def _dealer(self, address: str) -> zmq.Socket:
        dealer = self.dealers.get(address)
        if dealer is None:
            dealer = self.dealers[address] = self.context.socket(zmq.DEALER)
            dealer.linger = 0
            # A DEALER whose only connection was refused (a handshake with the wrong
            # mechanism or key) has no pipe left and would block a send for ever.
            dealer.sndtimeo = 1000
            if self.curve is not None:
                dealer.curve_serverkey = self.server_key
                dealer.curve_publickey, dealer.curve_secretkey = self.curve
            dealer.connect(address)
        return dealer

    def send(self, address: str, receiver: str, body: m.Message, *, seq: int | None = None, receiver_incarnation: int = 0) -> None:
        if seq is None:
            seq = self.seq[receiver] = self.seq.get(receiver, 0) + 1
        env = m.Envelope(self.name, self.incarnation, receiver, receiver_incarnation, seq, 0, body)
        try:
            self._dealer(address).send_multipart(codec.encode(env))  # queued until connected
        except zmq.Again:
            pass  # refused before it could even be queued: the peer gets nothing from us, as intended

    def hello(self, address: str, receiver: str, features: tuple[str, ...] = ("core", "python-pickle")) -> None:
        self.send(address, receiver, m.Hello(0, 1, self.address, features, 64 << 20, 250), seq=0)

    def answers(self, within: float = SILENCE_S) -> list[m.Envelope]:
        """Everything that arrives within ``within`` seconds (the bound of a non-event)."""
        got: list[m.Envelope] = []
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            if self.router.poll(max(1, int(left * 1000))):
                got.append(codec.decode(self.router.recv_multipart()[1:]))
        return got

    def close(self) -> None:
        for d in self.dealers.values():
            d.close(0)
        self.router.close(0)
        self.context.term()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`refrpc start --head` (its key in a fresh HOME), a driver in this process."""
    home = tmp_path_factory.mktemp("home")
    head, address, key_file = start_head("--num-workers", "1", env=_env(HOME=str(home)))
    old = os.environ.get("REFRPC_KEY_FILE")
    try:
        os.environ["REFRPC_KEY_FILE"] = key_file
        _wait_members(address, 1)
        refrpc.init(address=address)
        from refrpc.runtime._membership import HEAD

        members = refrpc.api._call_on(HEAD, "refrpc.runtime._membership:members")
        worker, worker_address = members[0][0], members[0][1]
        node = refrpc.api._ctx.node
        yield {"head": head, "address": address, "key_file": key_file, "home": home,
               "targets": [(HEAD, address), (worker, worker_address), (node.peer_id, node.address)]}
    finally:
        refrpc.shutdown()
        if old is None:
            os.environ.pop("REFRPC_KEY_FILE", None)
        else:
            os.environ["REFRPC_KEY_FILE"] = old
        head.terminate()
        try:
            head.wait(20)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(5)


def _still_works() -> None:
    assert refrpc.get(rf.add.remote(2, 3), timeout=30) == 5


def test_the_head_writes_its_key_0600_and_prints_what_a_joiner_needs(cluster):
    # SEC-015: the key file is the cluster's secret
    key_file = Path(cluster["key_file"])
    assert key_file.is_relative_to(cluster["home"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    from refrpc.transport import ClusterKey

    ClusterKey.load(key_file)


@pytest.mark.parametrize("mechanism", ["null", "curve-other-key"])
def test_an_outsider_gets_no_welcome_runs_nothing_reads_nothing_fences_nobody(cluster, tmp_path, mechanism):
    # An outsider knows every address, not the key                SEC-002, SEC-003, SEC-011, SEC-012, SEC-014
    marker = tmp_path / "pwned"
    driver_ref = refrpc.put(b"secret" * 10)
    outsider = Outsider("w-outsider", curve=mechanism != "null")
    try:
        exploit = f"open({str(marker)!r}, 'w').write('exec')"
        hostile = pickle.dumps(_Hostile(str(marker)))
        for peer, address in cluster["targets"]:
            outsider.hello(address, peer)  # finding 1: anyone joined
            code = m.Value(m.Encoding.RAW, exploit.encode())
            outsider.send(address, peer, m.SubmitTask("x.1.1", "builtins:exec", (m.Arg(m.ArgKind.VALUE, code),), ("x.1.1.r0",)))
            outsider.send(address, peer, m.SubmitTask("x.1.2", "refrpc.runtime._executor:call_by_value",
                                                      (m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.RAW, hostile)),), ("x.1.2.r0",)))
            outsider.send(address, peer, m.IntrospectRequest(7))
            outsider.send(address, peer, m.GetObjectStatus(driver_ref.id, False))
            outsider.send(address, peer, m.FetchRequest(driver_ref.id, 1), seq=0)
            for victim, _ in cluster["targets"]:  # finding 5: anyone could fence anyone
                outsider.send(address, peer, m.PeerDeadNotice(victim, 0, "the outsider says so"))
        got = outsider.answers()
        assert got == [], [type(e.body).__name__ for e in got]
        assert not marker.exists()
        _still_works()
        from refrpc.runtime._membership import HEAD

        assert len(refrpc.api._call_on(HEAD, "refrpc.runtime._membership:members")) == 1
    finally:
        outsider.close()


def test_a_hello_claiming_to_be_a_new_head_fences_nobody(cluster):
    # Finding 5: a Hello from "head" with a new incarnation made the driver declare the real head dead   HS-006, SEC-014
    outsider = Outsider("head", curve=True)
    try:
        node = refrpc.api._ctx.node
        outsider.hello(node.address, node.peer_id)
        assert outsider.answers() == []
        _still_works()
        head = node.call(lambda: node.core.remotes["head"]).result()
        assert head.state != "dead"
    finally:
        outsider.close()


class _Hostile:
    """Unpickling it writes a file: what a pickled argument could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pickle"))


# ---------------------------------------------------------------- members that overstep
class Member:
    """A raw peer holding the cluster key, as PeerId ``key_name``, claiming ``claim``."""

    def __init__(self, key, key_name: str, claim: str | None = None, features=("core",)) -> None:
        from refrpc.transport import ZmqTransport

        self.name = claim or key_name
        self.incarnation = 0x3E3
        self.features = tuple(features)
        self.transport = ZmqTransport("tcp://127.0.0.1:0", cluster_key=key, peer_id=key_name)
        self.seq = 0

    def send(self, to, body: m.Message, seq: int | None = None) -> None:
        if seq is None:
            self.seq += 1
            seq = self.seq
        env = m.Envelope(self.name, self.incarnation, to.peer_id, to.incarnation if seq else 0, seq, 0, body)
        self.transport.send(to.address, codec.encode(env))

    def hello(self, to) -> None:
        self.send(to, m.Hello(0, 1, self.transport.address, self.features, 64 << 20, 250), seq=0)

    def first(self, kind: type | tuple[type, ...], within: float) -> m.Envelope | None:
        """The first message of type ``kind`` (or one of them) within ``within`` seconds, or None."""
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            self.transport.poll(1)
            frames = self.transport.recv(max(1, int(left * 1000)))
            if frames is not None:
                env = codec.decode(frames)
                if isinstance(env.body, kind):
                    return env
        return None

    def close(self) -> None:
        self.transport.close()


@pytest.fixture
def keyed_worker():
    """A worker node in this process, authenticating with a fresh cluster key."""
    from refrpc.runtime import LocalCluster
    from refrpc.runtime._executor import working_node
    from refrpc.transport import ClusterKey

    key = ClusterKey.generate()
    node, executor = working_node("w1", "tcp://127.0.0.1:0", LocalCluster.new_namespace(), cluster_key=key)
    try:
        yield key, node
    finally:
        executor.stop()
        node.stop()


def test_a_member_claiming_another_peers_id_is_not_listened_to(keyed_worker):
    # A holder of the key file connects as "mallory" and claims to be "head"   SEC-011
    key, node = keyed_worker
    liar = Member(key, "mallory", claim="head")
    honest = Member(key, "head")
    try:
        liar.hello(node)
        assert liar.first(m.Welcome, SILENCE_S) is None
        assert "head" not in node.call(lambda: dict(node.core.remotes)).result()
        assert node.stats["unauthenticated_discarded"] >= 1
        honest.hello(node)  # the same claim with the right key is welcome
        assert honest.first(m.Welcome, 30) is not None
    finally:
        liar.close()
        honest.close()


def test_a_member_without_pickle_reaches_only_exposed_functions(keyed_worker, tmp_path):
    # A member whose session has no python-pickle (a peer in another language)  SEC-005, SEC-006
    from refrpc.codec._value import encode_portable

    key, node = keyed_worker
    caller = Member(key, "portable-peer")
    marker = tmp_path / "pwned"
    try:
        caller.hello(node)
        welcome = caller.first(m.Welcome, 30)
        assert welcome is not None and "python-pickle" not in welcome.body.features
        portable = lambda v: m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PORTABLE, encode_portable(v)))  # noqa: E731
        exploit = f"open({str(marker)!r}, 'w').write('exec')"
        hostile = pickle.dumps(_Hostile(str(marker)))
        calls = {
            "builtins:exec": (portable(exploit),),
            "refrpc.runtime._executor:call_by_value": (m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.RAW, hostile)),),
            "os:getcwd": (),
            "remote_fixtures:add": (portable(2), portable(3)),  # registered with @refrpc.remote here: exposed
            # shipped code whose other argument cannot be loaded: the error names no
            # function from the code (it is never unpickled for a peer without pickle)
            "refrpc.runtime._executor:call_by_value ": (m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.RAW, hostile)),
                                                         m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PORTABLE, b"\xff" * 8))),
        }
        replies = {}
        for i, (function, args) in enumerate(calls.items(), 1):
            caller.send(node, m.SubmitTask(f"p.1.{i}", function.strip(), args, (f"p.1.{i}.r0",)))
            reply = caller.first(m.TaskReply, 30)
            assert reply is not None, function
            replies[function] = reply.body.returns[0]
        for function in ("builtins:exec", "refrpc.runtime._executor:call_by_value", "os:getcwd"):
            assert replies[function].error is not None and replies[function].error.code is m.ErrorCode.UNKNOWN_FUNCTION, replies[function]
        assert replies["remote_fixtures:add"].error is None
        assert replies["refrpc.runtime._executor:call_by_value "].error is not None
        assert not marker.exists()
    finally:
        caller.close()


def test_a_return_only_pickle_can_encode_is_feature_not_negotiated_without_pickle(keyed_worker):
    # A caller whose session has no python-pickle gets, for a return that has no
    # portable form (a set), ERROR(FEATURE_NOT_NEGOTIATED) naming HS-020: final, not
    # the retryable TASK_FAILED; the task's other return stands.   VAL-017, HS-017, HS-020
    from refrpc.codec._value import decode_portable, encode_portable

    key, node = keyed_worker
    caller = Member(key, "portable-caller")
    try:
        caller.hello(node)
        welcome = caller.first(m.Welcome, 30)
        assert welcome is not None and "python-pickle" not in welcome.body.features
        arg = m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PORTABLE, encode_portable(7)))
        caller.send(node, m.SubmitTask("pc.1.1", "remote_fixtures:with_a_set", (arg,), ("pc.1.1.r0", "pc.1.1.r1"),
                                       max_retries=3, retry_exceptions=True))
        reply = caller.first(m.TaskReply, 30)
        assert reply is not None
        first, second = reply.body.returns
        assert first.kind is m.ReturnKind.INLINE and first.value.encoding is m.Encoding.PORTABLE
        assert decode_portable(first.value.data) == 7
        assert second.kind is m.ReturnKind.ERROR, second
        assert second.error.code is m.ErrorCode.FEATURE_NOT_NEGOTIATED and second.error.requirement == "HS-020", second.error
        assert second.value is None
    finally:
        caller.close()


@pytest.mark.timeout(120)
def test_a_return_with_a_payload_of_512_mib_is_task_failed_naming_val_029(keyed_worker):
    # A Cap'n Proto Data holds at most 2**29 - 1 bytes: a return whose data is 2**29
    # bytes has no stored form. That return alone is ERROR(TASK_FAILED) naming VAL-029;
    # the other return stands, and the worker keeps no copy.            VAL-029, OBJ-010
    from refrpc.codec._value import encode_portable

    key, node = keyed_worker
    caller = Member(key, "big-caller")
    try:
        caller.hello(node)
        assert caller.first(m.Welcome, 30) is not None
        arg = m.Arg(m.ArgKind.VALUE, m.Value(m.Encoding.PORTABLE, encode_portable(1 << 29)))
        caller.send(node, m.SubmitTask("bc.1.1", "remote_fixtures:small_and_zeros", (arg,), ("bc.1.1.r0", "bc.1.1.r1")))
        reply = caller.first(m.TaskReply, 60)
        assert reply is not None
        small, big = reply.body.returns
        assert small.kind is m.ReturnKind.INLINE and bytes(small.value.data) == b"small", small
        assert big.kind is m.ReturnKind.ERROR, big
        assert big.error.code is m.ErrorCode.TASK_FAILED and big.error.requirement == "VAL-029", big.error
        assert not node.call(lambda: node.store.contains("bc.1.1.r1")).result()
    finally:
        caller.close()


@pytest.mark.timeout(120)
def test_a_bad_copy_met_three_times_in_a_row_fails_the_argument_malformed(keyed_worker):
    # An owner whose only location (itself) serves a stored form with a word of zeros
    # after it, every time: the worker asks the owner again after each bad copy, and
    # after the third one in a row it stops and answers every return
    # ERROR(MALFORMED) naming OBJ-076, without running the function.  OBJ-077, OBJ-076
    from refrpc.codec import encode_portable, encode_value

    key, node = keyed_worker
    owner = Member(key, "bad-owner")
    oid = "bad-owner.1.7"
    form = encode_value(m.Value(m.Encoding.PORTABLE, encode_portable(b"x" * 100_000))) + bytes(8)
    try:
        owner.hello(node)
        assert owner.first(m.Welcome, 30) is not None
        ref = m.RefDescriptor(oid, owner.name, owner.incarnation, owner.transport.address, len(form))
        owner.send(node, m.SubmitTask("bad-owner.1.1", "remote_fixtures:length", (m.Arg(m.ArgKind.REF, ref=ref),),
                                      ("bad-owner.1.1.r0",)))
        served, asked, reply = 0, 0, None
        deadline = time.monotonic() + 60
        while reply is None and time.monotonic() < deadline:
            env = owner.first((m.GetObjectStatus, m.FetchRequest, m.TaskReply), deadline - time.monotonic())
            if env is None:
                break
            body = env.body
            if isinstance(body, m.GetObjectStatus):
                asked += 1
                owner.send(node, m.ObjectStatus(oid, m.ObjectState.READY, len(form), (owner.name,), (owner.transport.address,)))
            elif isinstance(body, m.FetchRequest):
                end = len(form) if body.length < 0 else min(len(form), body.offset + body.length)
                chunk = m.FetchChunk(oid, body.request_id, body.offset, len(form), end >= len(form),
                                     data=form[body.offset:end])
                env = m.Envelope(owner.name, owner.incarnation, node.peer_id, node.incarnation, 0, 0, chunk)
                owner.transport.send(node.address, codec.encode(env))
                served += 1 if end >= len(form) else 0
            else:
                reply = body
        assert reply is not None, f"no reply after {asked} GetObjectStatus and {served} bad copies served"
        [ret] = reply.returns
        assert ret.error is not None and ret.error.code is m.ErrorCode.MALFORMED and ret.error.requirement == "OBJ-076", ret
        assert served == 3 and asked >= 3
        assert not node.call(lambda: node.store.contains(oid)).result()
    finally:
        owner.close()


@pytest.mark.timeout(120)
def test_a_fetch_waiting_behind_a_slow_handshake_is_sent_once(keyed_worker, monkeypatch):
    # The only location of an argument answers the worker's Hello after five progress
    # timeouts: the FetchRequest queued behind that handshake is sent once, when the
    # session opens, and its progress clock starts then; the worker neither queues
    # copies of it nor gives up and asks the owner again meanwhile.   FET-006, FET-005
    from refrpc.codec import encode_portable, encode_value
    from refrpc.runtime import _fetch

    monkeypatch.setattr(_fetch, "PROGRESS_TIMEOUT_S", 0.3)
    key, node = keyed_worker
    owner, holder = Member(key, "slow-owner"), Member(key, "slow-holder")
    oid = "slow-owner.1.7"
    form = encode_value(m.Value(m.Encoding.PORTABLE, encode_portable(b"y" * 100_000)))
    try:
        owner.hello(node)
        assert owner.first(m.Welcome, 30) is not None
        ref = m.RefDescriptor(oid, owner.name, owner.incarnation, owner.transport.address, len(form))
        owner.send(node, m.SubmitTask("slow-owner.1.1", "remote_fixtures:length", (m.Arg(m.ArgKind.REF, ref=ref),),
                                      ("slow-owner.1.1.r0",)))
        first = owner.first(m.GetObjectStatus, 30)
        assert first is not None
        owner.send(node, m.ObjectStatus(oid, m.ObjectState.READY, len(form), (holder.name,), (holder.transport.address,)))
        hello = holder.first(m.Hello, 30)
        assert hello is not None

        def beat(member: Member) -> None:  # alive (LIV-002), as a real peer is
            member.transport.send(node.address, codec.encode(
                m.Envelope(member.name, member.incarnation, node.peer_id, node.incarnation, 0, 0, m.Heartbeat())))

        early = []
        end = time.monotonic() + 5 * _fetch.PROGRESS_TIMEOUT_S
        while time.monotonic() < end:  # the handshake takes five progress timeouts
            beat(owner)
            env = holder.first(m.FetchRequest, 0.05)
            if env is not None:
                early.append(env)
        assert early == []  # no session: nothing sent
        welcome = m.Welcome(0, 1, holder.transport.address, ("core",), 64 << 20, 250)
        holder.transport.send(node.address, codec.encode(
            m.Envelope(holder.name, holder.incarnation, node.peer_id, hello.sender_incarnation, 0, 0, welcome)))
        requests, asks, reply = 0, {first.seq}, None  # asks: by sequence number (we never ack: SES-003 resends)
        deadline = time.monotonic() + 30
        while reply is None and time.monotonic() < deadline:
            beat(owner)
            beat(holder)
            env = holder.first(m.FetchRequest, 0.05)
            if env is not None:
                body = env.body
                requests += 1
                end = len(form) if body.length < 0 else min(len(form), body.offset + body.length)
                chunk = m.FetchChunk(oid, body.request_id, body.offset, len(form), True, data=form[body.offset:end])
                holder.transport.send(node.address, codec.encode(
                    m.Envelope(holder.name, holder.incarnation, node.peer_id, hello.sender_incarnation, 0, 0, chunk)))
            env = owner.first((m.GetObjectStatus, m.TaskReply), 0.05)
            if env is not None and isinstance(env.body, m.GetObjectStatus):
                if env.seq in asks:
                    continue  # a retransmission
                asks.add(env.seq)
                owner.send(node, m.ObjectStatus(oid, m.ObjectState.READY, len(form), (holder.name,),
                                                (holder.transport.address,)))
            elif env is not None:
                reply = env.body
        assert reply is not None
        assert reply.returns[0].error is None, reply.returns[0]
        assert (requests, len(asks)) == (1, 1)
    finally:
        owner.close()
        holder.close()


@pytest.mark.parametrize("insecure", [False, True])
def test_a_node_on_tcp_without_a_key_offers_pickle_only_when_told_to(insecure):
    # Node("p", "tcp://127.0.0.1:0", ns) with the default features and no cluster key:
    # a stranger's Hello asking for python-pickle gets a Welcome without it, unless
    # authentication was turned off on purpose (--insecure)          SEC-004, SEC-005
    from refrpc.runtime._node import Node

    node = Node("bare", "tcp://127.0.0.1:0", f"bare{os.getpid()}", trace_dir="", insecure=insecure)
    outsider = Outsider("stranger")
    try:
        outsider.hello(node.address, "bare")
        deadline = time.monotonic() + 30
        welcome = None
        while welcome is None and time.monotonic() < deadline:
            welcome = next((e for e in outsider.answers(0.2) if isinstance(e.body, m.Welcome)), None)
        assert welcome is not None
        assert ("python-pickle" in welcome.body.features) is insecure
        assert "core" in welcome.body.features
    finally:
        outsider.close()
        node.stop()


@pytest.mark.parametrize("needs", ["python-pickle", "borrowing"])
def test_a_stored_form_needing_a_feature_the_owner_lacks_is_not_acted_on(keyed_worker, tmp_path, needs):
    # A member whose session has no python-pickle (nor borrowing) owns an object,
    # says it is stored with itself, and serves its stored form: a pickle that would
    # write a file when unpickled, or a portable value nesting a ref. The worker
    # (which speaks both with its trusted peers) cannot know the encoding before it
    # has fetched the bytes; then it must act on nothing in it (unpickle nothing,
    # register for no nested ref), fail the task FEATURE_NOT_NEGOTIATED and keep no
    # copy.                                                               OBJ-067, SEC-005
    from refrpc.codec import PortableRef, encode_portable, encode_value

    key, node = keyed_worker
    owner = Member(key, "portable-owner")
    marker = tmp_path / "pwned"
    oid = "portable-owner.1.7"
    if needs == "python-pickle":
        value = m.Value(m.Encoding.PICKLE, pickle.dumps(_Hostile(str(marker)), protocol=5))
    else:
        inner = m.RefDescriptor("portable-owner.1.8", owner.name, owner.incarnation, owner.transport.address, 8)
        value = m.Value(m.Encoding.PORTABLE, encode_portable([PortableRef(0)]), (), (inner,))
    form = encode_value(value)
    try:
        owner.hello(node)
        welcome = owner.first(m.Welcome, 30)
        assert welcome is not None and "python-pickle" not in welcome.body.features
        ref = m.RefDescriptor(oid, owner.name, owner.incarnation, owner.transport.address, len(form))
        owner.send(node, m.SubmitTask("portable-owner.1.1", "remote_fixtures:length", (m.Arg(m.ArgKind.REF, ref=ref),),
                                      ("portable-owner.1.1.r0",)))
        served = 0
        reply = None
        deadline = time.monotonic() + 60
        while reply is None and time.monotonic() < deadline:
            env = owner.first((m.GetObjectStatus, m.FetchRequest, m.TaskReply), deadline - time.monotonic())
            if env is None:
                break
            body = env.body
            if isinstance(body, m.GetObjectStatus):
                owner.send(node, m.ObjectStatus(oid, m.ObjectState.READY, len(form), (owner.name,), (owner.transport.address,)))
            elif isinstance(body, m.FetchRequest):
                end = len(form) if body.length < 0 else min(len(form), body.offset + body.length)
                chunk = m.FetchChunk(oid, body.request_id, body.offset, len(form), True, data=form[body.offset:end])
                env = m.Envelope(owner.name, owner.incarnation, node.peer_id, node.incarnation, 0, 0, chunk)
                owner.transport.send(node.address, codec.encode(env))  # data plane: sequence number 0
                served += 1
            else:
                reply = body
        assert served >= 1, "the worker never fetched the stored form"
        assert reply is not None
        error = reply.returns[0].error
        assert error is not None and error.code is m.ErrorCode.FEATURE_NOT_NEGOTIATED and error.requirement == "OBJ-067", error
        assert not marker.exists()
        assert not node.call(lambda: node.store.contains(oid)).result()
        assert "portable-owner.1.8" not in node.call(lambda: set(node.core.borrowed)).result()
    finally:
        owner.close()
