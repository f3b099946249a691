"""A wire fuzzer for live RefRPC peers (SEC-010, GEN-004).

It starts a real multi-host cluster on this host the way the README says (a head
with ``refrpc start --head``, one worker, and a driver that joins with
``refrpc.init(address=...)``), opens a session with one of them as a hand-driven
raw peer, and sends it batches of frames: valid frames of every message type (the
spec's test vectors, readdressed to the target, plus frames captured from the
target's own answers) mutated by bit flips, interesting bytes, truncation, wrong
segment counts and sizes, overwritten pointer words, spliced and extra frames,
envelope fields changed to odd values, and raw garbage. After each batch it checks
that the target still serves legitimate peers: a fresh peer's ``Hello`` is
answered with a ``Welcome``, and the driver still runs a task on the worker (one
that takes no CPU slot, at once, and one that takes the slot, within a longer bound,
since fuzzed frames may legitimately keep the slot busy for a while) and reads the
member list from the head. It reads every target's resident memory
before and after.

Everything is seeded: a batch's frames are a function of ``(seed, batch)``, so a
failure is reproduced by ``--seed S --first-batch B --frames 1000`` (one batch; a
failure that needs the state earlier batches left needs them too).

Frames whose effect the specification makes fatal for the receiver on purpose
are not sent: a ``ProtocolError(DECLARED_DEAD)`` or a ``PeerDeadNotice`` naming
the receiver (LIV-005), and anything naming a real member of the cluster (a notice
about a member fences it, LIV-004). Those are about who may say such things
(authentication, SEC-014), not about surviving bad input.

Command line (``make fuzz FRAMES=N``)::

    python -m refrpc.testing.fuzz --frames 100000 --seed 1 [--targets worker,head,driver]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import zmq

from .. import codec
from ..api import remote
from ..core.messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    ConfirmBorrow,
    Envelope,
    ErrorCode,
    Heartbeat,
    Hello,
    PeerDeadNotice,
    ProtocolError,
    SubmitTask,
    Value,
    Encoding,
    Welcome,
)

#: Where the spec's test vectors live in a source checkout (spec/vectors/messages).
VECTORS = Path(__file__).resolve().parents[4] / "spec" / "vectors" / "messages"
#: Features the fuzzing peer announces (no pickle: it is not a trusted member, SEC-005).
FEATURES = ("core", "borrowing", "recovery", "actors", "lz4")
#: Seconds a legitimate request may take before the target counts as hung.
CHECK_TIMEOUT = 20.0
#: Seconds the worker's CPU slot may stay taken before it counts as jammed. Fuzzed
#: frames may legitimately keep it busy (replayed `_sleep` tasks, each at most
#: SLEEP_MAX_S), so this is longer than CHECK_TIMEOUT.
SLOT_TIMEOUT = 60.0
#: The longest a `_sleep` task sleeps, whatever (fuzzed) duration it is given.
SLEEP_MAX_S = 2.0
#: Interesting values for bytes and words (boundaries, signs, all ones).
_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_WORDS = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 1 << 32, 1 << 29)


# ---------------------------------------------------------------- the raw peer
class RawPeer:
    """A hand-driven peer: a ROUTER it is answered on, a DEALER per target.

    It keeps nothing of the protocol but what it needs to be answered: its
    identity, the target's incarnation (from the ``Welcome``), its next sequence
    number and the highest sequence number it received in order.
    """

    def __init__(self, context: zmq.Context[Any], peer_id: str) -> None:
        self.context = context
        self.peer_id = peer_id
        self.incarnation = secrets.randbits(63) | 1
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.RCVHWM, 100_000)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.dealers: dict[str, zmq.Socket[Any]] = {}
        #: Target peer id -> its incarnation (0 until a Welcome named it).
        self.incarnations: dict[str, int] = {}
        self.out_seq: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        #: Frames received, as they came (for capture), newest last; bounded.
        self.captured: list[list[bytes]] = []

    def renew(self) -> None:
        """Become a new incarnation (after being fenced): sessions start again."""
        self.incarnation = secrets.randbits(63) | 1
        self.incarnations.clear()
        self.out_seq.clear()
        self.delivered.clear()

    def dealer(self, address: str) -> zmq.Socket[Any]:
        d = self.dealers.get(address)
        if d is None:
            d = self.context.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.setsockopt(zmq.SNDHWM, 1000)
            d.setsockopt(zmq.SNDTIMEO, int(CHECK_TIMEOUT * 1000))
            d.connect(address)
            self.dealers[address] = d
        return d

    def send_frames(self, address: str, frames: list[bytes]) -> None:
        """Send raw frames; blocks while the target does not read (backpressure), at most CHECK_TIMEOUT."""
        self.dealer(address).send_multipart(frames)

    def envelope(self, target: str, body: Any, sequenced: bool) -> Envelope:
        seq = 0
        if sequenced:
            seq = self.out_seq.get(target, 0) + 1
            self.out_seq[target] = seq
        return Envelope(self.peer_id, self.incarnation, target, self.incarnations.get(target, 0), seq,
                        self.delivered.get(target, 0), body)

    def hello(self, target: str, address: str) -> None:
        body = Hello(PROTOCOL_MAJOR, PROTOCOL_MINOR, self.address, FEATURES, 64 << 20, 250)
        self.send_frames(address, codec.encode(self.envelope(target, body, False)))

    def heartbeat(self, target: str, address: str) -> None:
        if self.incarnations.get(target):
            self.send_frames(address, codec.encode(self.envelope(target, Heartbeat(), False)))

    def drain(self, timeout_ms: int = 0) -> list[Envelope]:
        """Read what arrived (acking sequenced messages in order); the decoded envelopes."""
        out: list[Envelope] = []
        while self.router.poll(timeout_ms):
            timeout_ms = 0
            frames = self.router.recv_multipart()[1:]
            if len(self.captured) < 256:
                self.captured.append(frames)
            try:
                env = codec.decode(frames)
            except codec.DecodeError:
                continue
            if env.receiver != self.peer_id or env.receiver_incarnation not in (0, self.incarnation):
                continue
            if isinstance(env.body, Welcome):
                self.incarnations[env.sender] = env.sender_incarnation
            if env.seq and env.seq == self.delivered.get(env.sender, 0) + 1:
                self.delivered[env.sender] = env.seq
            out.append(env)
        return out

    def handshake(self, target: str, address: str, timeout: float = CHECK_TIMEOUT) -> float | None:
        """Hello until a Welcome comes; seconds it took, or None if none came in time."""
        start = time.monotonic()
        deadline = start + timeout
        next_hello = start
        while time.monotonic() < deadline:
            if time.monotonic() >= next_hello:
                self.hello(target, address)
                next_hello = time.monotonic() + 0.2  # HS-008's resend interval
            for env in self.drain(20):
                if isinstance(env.body, Welcome) and env.sender == target:
                    return time.monotonic() - start
        return None

    def close(self) -> None:
        for d in self.dealers.values():
            d.close(0)
        self.router.close(0)


# ---------------------------------------------------------------- templates and mutations
def load_templates(directory: Path = VECTORS, captured: list[bytes] = ()) -> list[Envelope]:
    """One envelope per test vector of every message type (spec/vectors/messages),
    then every distinct message of ``captured`` frames (a real run's traffic)."""
    out: list[Envelope] = []
    for path in sorted(directory.glob("*.json")):
        for v in json.loads(path.read_text())["vectors"]:
            out.append(codec.decode([bytes.fromhex(f) for f in v["frames"]]))
    if not out:
        raise FileNotFoundError(f"no test vectors in {directory}")
    seen: set[Any] = set()
    shaped: list[tuple[tuple[str, ...], Envelope]] = []
    for frame in captured:
        try:
            env = codec.decode([frame])
        except codec.DecodeError:
            continue  # one that named a payload frame the trace does not keep
        key = _shape(env.body)
        if isinstance(env.body, Heartbeat) or key in seen:
            continue
        seen.add(key)
        shaped.append((key, env))
    # One message per shape, in a stable order: the same seed picks the same kinds of message in every run.
    return out + [env for _, env in sorted(shaped, key=lambda item: item[0])]


def _shape(body: Any) -> tuple[str, ...]:
    """What kind of message ``body`` is, without its ids (which differ from run to run)."""
    shape = [type(body).__name__]
    for name in ("function", "class_name", "state", "reason"):
        v = getattr(body, name, None)
        if v is not None:
            shape.append(f"{name}={getattr(v, 'value', v)}")
    for name in ("args", "returns", "return_ids", "releases", "locations", "object_ids"):
        v = getattr(body, name, None)
        if v is not None:
            shape.append(f"{name}:{len(v)}")
    error = getattr(body, "error", None)
    if error is not None:
        shape.append(f"error={error.code.value}")
    return tuple(shape)


_UNSEQUENCED = ("Hello", "Welcome", "Heartbeat", "FetchRequest", "FetchChunk")


def _flip_bits(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 1 << (i % 8)


def _interesting_byte(rng: random.Random, b: bytearray) -> None:
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] = rng.choice(_BYTES)


def _word(rng: random.Random, b: bytearray) -> None:
    """Overwrite an aligned word (a pointer, a list count, a struct field) with an odd value."""
    if len(b) < 8:
        return
    i = rng.randrange(len(b) // 8) * 8
    w = rng.choice(_WORDS) if rng.random() < 0.6 else rng.getrandbits(64)
    if rng.random() < 0.5:  # only the upper half: a pointer's size or count
        b[i + 4 : i + 8] = (w & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        b[i : i + 8] = w.to_bytes(8, "little")


def _segments(rng: random.Random, b: bytearray) -> None:
    """Wrong segment count or segment size in the stream header."""
    if len(b) < 8:
        return
    if rng.random() < 0.5:
        b[0:4] = rng.choice((0, 1, 2, 511, 512, 0xFFFFFFFF, rng.getrandbits(32))).to_bytes(4, "little")
    else:
        b[4:8] = rng.choice((0, 1, max(0, len(b) // 8 - 2), len(b) // 8, len(b), 0x7FFFFFFF, rng.getrandbits(32))).to_bytes(4, "little")


def _truncate(rng: random.Random, b: bytearray) -> None:
    del b[rng.randrange(len(b) + 1):]


def _extend(rng: random.Random, b: bytearray) -> None:
    b.extend(rng.randbytes(rng.choice((1, 7, 8, 16, 64, rng.randint(1, 512)))))


def _splice(rng: random.Random, b: bytearray) -> None:
    if len(b) < 16:
        return
    i, j = sorted(rng.sample(range(len(b)), 2))
    k = rng.randrange(len(b))
    b[k:k] = b[i:j]


BYTE_MUTATIONS = (_flip_bits, _interesting_byte, _word, _segments, _truncate, _extend, _splice)


def _odd_int(rng: random.Random, now: int) -> int:
    return rng.choice((0, 1, now, now + 1, now + 2, now + 4096, now + 4097, (1 << 63) - 1, (1 << 64) - 1, rng.getrandbits(64)))


def _odd_text(rng: random.Random) -> str:
    return rng.choice(("", "x", "a" * 300, "a.b", "\u00e9t\u00e9", "fuzz." + "9" * 40, rng.randbytes(8).hex()))


def _task_of(frames: list[bytes]) -> str:
    """``function(args)`` of a SubmitTask that decodes, else ``""``."""
    try:
        env = codec.decode(frames)
    except Exception:
        return ""
    if not isinstance(env.body, SubmitTask):
        return ""
    args = []
    for a in env.body.args:
        try:
            args.append(repr(codec.decode_portable(a.value.data))[:40] if a.value and a.value.encoding == Encoding.PORTABLE else a.kind.value)
        except Exception:
            args.append("<undecodable>")
    return f"{env.body.function}({', '.join(args)}) seq {env.seq}"


def _counts(frames: list[bytes], peer: RawPeer, target: str, seq: int) -> bool:
    """Whether the target will count ``frames`` as message ``seq`` of this peer's session."""
    try:
        env: Any = codec.decode(frames)
    except codec.DecodeError as exc:
        env = exc
    except Exception:
        return False
    return (env.sender == peer.peer_id and env.sender_incarnation == peer.incarnation and env.receiver == target
            and env.receiver_incarnation == peer.incarnations.get(target, 0) and env.seq == seq)


class Mutator:
    """Makes the frames of one batch from templates, deterministically from its seed."""

    def __init__(self, templates: list[Envelope], forbidden: tuple[str, ...]) -> None:
        self.templates = templates
        #: Peer ids that no frame may name (the real members: a notice about one fences it).
        self.forbidden = forbidden

    def frames(self, rng: random.Random, peer: RawPeer, target: str, captured: list[list[bytes]]) -> list[bytes]:
        """One message's frames: a mutated template, a mutated captured frame, or garbage.

        A sequence number is used up only by a message the target will count
        (GEN-010): one whose envelope still names this peer, the target and that
        number; otherwise the next message takes it again, so that the session
        goes on delivering and the protocol layer keeps being reached.
        """
        before = peer.out_seq.get(target, 0)
        frames = self._frames(rng, peer, target, captured)
        after = peer.out_seq.get(target, 0)
        if after != before and not _counts(frames, peer, target, after):
            peer.out_seq[target] = before
        return frames

    def _frames(self, rng: random.Random, peer: RawPeer, target: str, captured: list[list[bytes]]) -> list[bytes]:
        roll = rng.random()
        if roll < 0.04:
            return [rng.randbytes(rng.randint(0, 256))]
        if roll < 0.05:
            return rng.choice(([b""], [b"", b""], [rng.randbytes(8)] * rng.randint(2, 5)))
        if roll < 0.12 and captured:
            frames = [bytes(f) for f in rng.choice(captured)]
        else:
            base = self._readdress(rng, peer, target, rng.choice(self.templates))
            if isinstance(base.body, SubmitTask) and base.body.args and rng.random() < 0.3:
                env = replace(base, body=self._odd_argument(rng, base.body))
            else:
                env = self._odd_fields(rng, base, peer, target) if rng.random() < 0.25 else base
            try:
                frames = codec.encode(env)
            except Exception:  # an odd field the encoder refuses: send the unmutated one
                frames = codec.encode(base)
            frames = [bytes(f) for f in frames]
            if roll > 0.6:
                return frames  # unmutated bytes: reaches the protocol layer with odd content
        for _ in range(rng.randint(1, 3)):
            i = 0 if rng.random() < 0.85 or len(frames) == 1 else rng.randrange(len(frames))
            b = bytearray(frames[i]) if frames else bytearray()
            if b:
                rng.choice(BYTE_MUTATIONS)(rng, b)
            frames[i:i + 1] = [bytes(b)]
        if rng.random() < 0.05:
            frames.append(rng.randbytes(rng.randint(0, 64)))  # a payload frame nobody names
        elif rng.random() < 0.05 and len(frames) > 1:
            frames.pop()  # a named payload frame missing
        return frames

    def _readdress(self, rng: random.Random, peer: RawPeer, target: str, env: Envelope) -> Envelope:
        sequenced = type(env.body).__name__ not in _UNSEQUENCED and not (
            isinstance(env.body, ProtocolError) and rng.random() < 0.5)
        mine = peer.envelope(target, env.body, sequenced)
        return mine

    def _odd_fields(self, rng: random.Random, env: Envelope, peer: RawPeer, target: str) -> Envelope:
        """Envelope or body fields changed to odd values, encoded validly."""
        which = rng.randrange(7)
        if which == 6 and isinstance(env.body, SubmitTask) and env.body.args:
            return replace(env, body=self._odd_argument(rng, env.body))
        if which == 0:
            return replace(env, seq=_odd_int(rng, peer.out_seq.get(target, 0)))
        if which == 1:
            return replace(env, ack=_odd_int(rng, 0))
        if which == 2:
            return replace(env, receiver_incarnation=rng.choice((0, env.receiver_incarnation ^ 1)))
        body = env.body
        fields = [f for f in dataclasses.fields(body)] if dataclasses.is_dataclass(body) else []
        if not fields:
            return env
        f = rng.choice(fields)
        old = getattr(body, f.name)
        if isinstance(old, bool):
            new: Any = not old
        elif isinstance(old, int) and not hasattr(old, "value"):
            new = _odd_int(rng, old) - (1 << 63 if rng.random() < 0.3 else 0)
        elif isinstance(old, str):
            new = _odd_text(rng)
        elif isinstance(old, tuple):
            new = old[: rng.randrange(len(old) + 1)] if old and rng.random() < 0.5 else old + old
        else:
            return env
        try:
            return replace(env, body=replace(body, **{f.name: new}))
        except Exception:
            return env

    @staticmethod
    def _odd_argument(rng: random.Random, task: SubmitTask) -> SubmitTask:
        """One value argument replaced by an odd number, or its bytes flipped (a wrong length or count)."""
        i = rng.randrange(len(task.args))
        a = task.args[i]
        if a.value is None:
            return task
        if rng.random() < 0.5:
            odd = rng.choice((-1, 0, 3600, 1e6, 1e300, -1e300, float("nan"), float("inf"), (1 << 63) - 1, -(1 << 63),
                              "", "x" * 1000, [0] * 64, {"": None}))
            value = Value(Encoding.PORTABLE, codec.encode_portable(odd))
        else:
            data = bytearray(a.value.data)
            if not data:
                return task
            rng.choice(BYTE_MUTATIONS)(rng, data)
            value = replace(a.value, data=bytes(data))
        args = task.args[:i] + (replace(a, value=value),) + task.args[i + 1:]
        return replace(task, args=args)

    def allowed(self, frames: list[bytes], target: str, target_incarnation: int) -> bool:
        """Whether sending ``frames`` tests robustness rather than a rule that ends the target on purpose."""
        try:
            env = codec.decode(frames)
        except codec.DecodeError:
            return True
        except Exception:  # the decoder itself failed: that is exactly what we look for
            return True
        body = env.body
        if isinstance(body, ProtocolError) and body.error.code == ErrorCode.DECLARED_DEAD:
            return False  # LIV-005 / LIV-009: ends the receiver (or fences a member)
        if isinstance(body, PeerDeadNotice) and (body.peer == target or body.peer in self.forbidden):
            return False  # LIV-004: the receiver fences a member on anyone's word (SEC-014)
        if isinstance(body, ConfirmBorrow) and (body.forwarder == target or body.forwarder in self.forbidden):
            return False  # BOR-011: likewise
        return env.sender not in self.forbidden and env.sender != target  # no impersonation (SEC-011)


# ---------------------------------------------------------------- the cluster under test
def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


@dataclass
class Target:
    peer_id: str
    address: str
    pid: int


@dataclass
class Cluster:
    """A head (``refrpc start --head``), its worker, and a driver process, on 127.0.0.1."""

    head_proc: subprocess.Popen[str]
    driver_proc: subprocess.Popen[str]
    targets: dict[str, Target]
    #: Frame 0 of every message the driver sent or received while running a workload.
    captured: list[bytes] = field(default_factory=list)

    @classmethod
    def start(cls, timeout: float = 60.0) -> Cluster:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # --insecure: the fuzzer speaks to the peers as a member would (it sends frames
        # through plain DEALERs). With authentication on, an outsider's frames never
        # reach the decoder (SEC-011); a member's can, and those are what is fuzzed.
        env.pop("REFRPC_KEY_FILE", None)
        head = subprocess.Popen([sys.executable, "-m", "refrpc.cli", "start", "--head", "--num-workers", "1", "--insecure"],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                                start_new_session=True)
        driver = None
        try:
            line = _read_line(head, timeout, "head listening at ")
            address = line.split("head listening at ", 1)[1].strip()
            with tempfile.TemporaryDirectory(prefix="refrpc-fuzz-") as capture:
                driver = subprocess.Popen([sys.executable, "-m", "refrpc.testing.fuzz", "--driver-child", address,
                                           "--capture-dir", capture],
                                          stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=env,
                                          start_new_session=True)
                info = json.loads(_read_line(driver, timeout, "{"))
                captured = captured_frames(capture)
            workers = [p for p in _children(head.pid)]
            (worker_id, worker_address), = [(m[0], m[1]) for m in info["members"]]
            worker_pid = workers[0] if len(workers) == 1 else 0
            targets = {
                "head": Target("head", address, head.pid),
                "worker": Target(worker_id, worker_address, worker_pid),
                "driver": Target(info["peer"], info["address"], driver.pid),
            }
        except BaseException:
            for p in (head, driver):
                if p is not None:
                    _stop(p)
            raise
        return cls(head, driver, targets, captured)

    def driver_check(self, what: str) -> tuple[bool, float, str]:
        """Ask the driver to run a legitimate request; (ok, seconds, detail)."""
        start = time.monotonic()
        try:
            assert self.driver_proc.stdin is not None
            self.driver_proc.stdin.write(what + "\n")
            self.driver_proc.stdin.flush()
            line = _read_line(self.driver_proc, CHECK_TIMEOUT + SLOT_TIMEOUT + 10, "{")
        except (OSError, TimeoutError, EOFError) as exc:
            return False, time.monotonic() - start, f"{type(exc).__name__}: {exc}"
        reply = json.loads(line)
        return bool(reply.get("ok")), reply.get("seconds", time.monotonic() - start), reply.get("detail", "")

    def alive(self) -> dict[str, bool]:
        return {name: (t.pid > 0 and _pid_alive(t.pid)) for name, t in self.targets.items()}

    def stop(self) -> None:
        try:
            if self.driver_proc.poll() is None and self.driver_proc.stdin is not None:
                self.driver_proc.stdin.write("quit\n")
                self.driver_proc.stdin.flush()
        except OSError:
            pass
        _stop(self.driver_proc)
        _stop(self.head_proc)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    """``sig`` to the process group ``proc`` leads, or to ``proc`` alone if it leads none
    (a program started without a session of its own: its workers leave with it)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            proc.send_signal(sig)


def _stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM the process group (the head takes its workers along), then SIGKILL."""
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    _signal(proc, signal.SIGKILL)  # whatever of the group is left (a worker)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _read_line(proc: subprocess.Popen[str], timeout: float, prefix: str) -> str:
    """The next line of ``proc``'s stdout that starts with ``prefix`` (bounded wait)."""
    import selectors

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line starting with {prefix!r} within {timeout:g} s")
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:
                raise EOFError(f"process {proc.pid} ended (exit {proc.poll()}) before a line starting with {prefix!r}")
            if line.startswith(prefix) or prefix in line:
                return line
    finally:
        sel.close()


# ---------------------------------------------------------------- the run
@dataclass
class BatchResult:
    target: str
    batch: int
    frames: int
    sent: int
    hello_answered: bool
    task_ok: bool
    head_ok: bool
    task_seconds: float
    rss_before: dict[str, int]
    rss_after: dict[str, int]
    alive: dict[str, bool]
    detail: str = ""
    #: Seconds spent sending the batch and checking after it.
    send_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.hello_answered and self.task_ok and self.head_ok and all(self.alive.values())


@dataclass
class Report:
    seed: int
    batches: list[BatchResult] = field(default_factory=list)
    rss_start: dict[str, int] = field(default_factory=dict)
    rss_end: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(b.sent for b in self.batches)

    @property
    def failures(self) -> list[BatchResult]:
        return [b for b in self.batches if not b.ok]

    def summary(self) -> str:
        checks = sum(1 for b in self.batches if b.ok)
        crashes = sum(1 for b in self.batches if not all(b.alive.values()))
        hangs = sum(1 for b in self.batches if all(b.alive.values()) and not b.ok)
        mb = lambda d: ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in d.items())  # noqa: E731
        worst = max((b.task_seconds for b in self.batches), default=0.0)
        return (f"seed {self.seed}: {self.frames} frames in {len(self.batches)} batches; "
                f"legitimate checks answered after {checks}/{len(self.batches)} batches "
                f"(slowest task {worst:.3f} s); crashes {crashes}; hangs {hangs}; "
                f"RSS before: {mb(self.rss_start)}; after: {mb(self.rss_end)}")


def fuzz(cluster: Cluster, *, frames: int, seed: int, targets: tuple[str, ...] = ("worker", "head", "driver"),
         batch_frames: int = 1000, first_batch: int = 0, rss_limit: int = 512 << 20,
         log: Any = None) -> Report:
    """Send ``frames`` fuzzed frames, in batches spread over ``targets``; check after each batch."""
    report = Report(seed)
    report.rss_start = {n: rss_bytes(t.pid) for n, t in cluster.targets.items()}
    templates = load_templates(captured=cluster.captured)
    forbidden = tuple(t.peer_id for t in cluster.targets.values())
    mutator = Mutator(templates, forbidden)
    if log is not None:
        log(f"{len(templates)} templates ({len(cluster.captured)} captured frames)")
    context: zmq.Context[Any] = zmq.Context()
    fuzzer = RawPeer(context, f"fuzz-{os.getpid()}")
    try:
        sent_total = 0
        batch = first_batch
        while sent_total < frames:
            name = targets[batch % len(targets)]
            t = cluster.targets[name]
            n = min(batch_frames, frames - sent_total)
            result = _batch(cluster, fuzzer, mutator, name, t, batch, n, seed, rss_limit, context)
            report.batches.append(result)
            sent_total += n
            if log is not None:
                log(result)
            if not result.ok:
                break
            batch += 1
    finally:
        report.rss_end = {n: rss_bytes(t.pid) for n, t in cluster.targets.items()}
        fuzzer.close()
        context.term()
    return report


def _batch(cluster: Cluster, fuzzer: RawPeer, mutator: Mutator, name: str, t: Target, batch: int, n: int,
           seed: int, rss_limit: int, context: zmq.Context[Any]) -> BatchResult:
    rng = random.Random(f"{seed}/{batch}")
    rss_before = {k: rss_bytes(v.pid) for k, v in cluster.targets.items()}
    fuzzer.renew()
    detail = ""
    sent = 0
    #: The tasks this batch asked the target to run (decodable SubmitTasks), for the report of a failure.
    tasks: list[str] = []
    t0 = time.monotonic()
    if fuzzer.handshake(t.peer_id, t.address) is None:
        detail = f"{name} did not welcome the fuzzing peer"
    else:
        target_inc = fuzzer.incarnations[t.peer_id]
        last_beat = time.monotonic()
        try:
            for _ in range(n):
                frames = mutator.frames(rng, fuzzer, t.peer_id, fuzzer.captured)
                if not mutator.allowed(frames, t.peer_id, target_inc):
                    continue
                fuzzer.send_frames(t.address, frames)
                sent += 1
                task = _task_of(frames)
                if task:
                    tasks.append(task)
                if sent % 64 == 0:
                    for env in fuzzer.drain():
                        if isinstance(env.body, ProtocolError) and env.body.error.code == ErrorCode.DECLARED_DEAD:
                            fuzzer.renew()  # fenced by a mutated Goodbye or the like: a new incarnation
                            fuzzer.handshake(t.peer_id, t.address, 5.0)
                    if time.monotonic() - last_beat > 0.1:
                        fuzzer.heartbeat(t.peer_id, t.address)
                        last_beat = time.monotonic()
        except zmq.Again:
            detail = f"{name} stopped reading its socket (sends blocked for {CHECK_TIMEOUT:g} s)"
    fuzzer.drain()
    t1 = time.monotonic()
    # The legitimate checks: a fresh peer is welcomed; the driver runs a task on the worker and reads the head.
    checker = RawPeer(context, f"check-{os.getpid()}-{batch}")
    try:
        hello_answered = checker.handshake(t.peer_id, t.address) is not None
    finally:
        checker.close()
    task_ok, task_s, task_detail = cluster.driver_check("task")
    head_ok, _, head_detail = cluster.driver_check("head")
    alive = cluster.alive()
    rss_after = {k: rss_bytes(v.pid) for k, v in cluster.targets.items()}
    grown = {k: rss_after[k] - rss_before.get(k, 0) for k in rss_after}
    if not hello_answered:
        detail += f"; {name} did not answer a fresh peer's Hello"
    if not task_ok:
        detail += f"; task: {task_detail}; the batch's last tasks: {tasks[-5:]}"
    if not head_ok:
        detail += f"; head: {head_detail}"
    over = [k for k, v in rss_after.items() if v > rss_limit]
    if over:
        detail += f"; RSS over {rss_limit >> 20} MB: {over} (grew {grown})"
        task_ok = False
    return BatchResult(name, batch, n, sent, hello_answered, task_ok, head_ok, task_s, rss_before, rss_after, alive,
                       detail.lstrip("; "), t1 - t0, time.monotonic() - t1)


# ---------------------------------------------------------------- a flood of handshakes
@dataclass
class FloodReport:
    """What a flood of ``Hello``s from made-up peers did to a target and its legitimate users."""

    hellos: int
    seconds: float
    rss_before: int
    rss_peak: int
    rss_after: int
    #: Seconds each legitimate request took during and just after the flood (None: not answered).
    latencies: list[float | None]
    #: Whether a fresh legitimate peer was welcomed right after the flood.
    welcomed_after: bool

    def summary(self) -> str:
        answered = [x for x in self.latencies if x is not None]
        worst = f"{max(answered):.3f} s" if answered else "-"
        return (f"{self.hellos} Hellos in {self.seconds:.1f} s: RSS {self.rss_before / 2**20:.0f} MB -> peak "
                f"{self.rss_peak / 2**20:.0f} MB -> {self.rss_after / 2**20:.0f} MB; legitimate requests answered "
                f"{len(answered)}/{len(self.latencies)} (slowest {worst}); fresh peer welcomed after: {self.welcomed_after}")


def flood(cluster: Cluster, target: str = "head", hellos: int = 3000, seconds: float = 2.0,
          settle: float = 3.0) -> FloodReport:
    """Send ``hellos`` Hellos from distinct made-up peer ids within ``seconds`` to ``target``,
    while the driver keeps asking it a legitimate question (the head: its member list)."""
    import threading

    t = cluster.targets[target]
    context: zmq.Context[Any] = zmq.Context()
    sink = RawPeer(context, "flood-sink")  # where the Welcomes go (a real, reachable address)
    rss_before = rss_bytes(t.pid)
    peak = [rss_before]
    latencies: list[float | None] = []
    done = threading.Event()

    def ask() -> None:
        what = "head" if target == "head" else "task"
        while not done.is_set():
            ok, took, _ = cluster.driver_check(what)
            latencies.append(took if ok else None)
            peak[0] = max(peak[0], rss_bytes(t.pid))

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    start = time.monotonic()
    try:
        dealer = sink.dealer(t.address)
        body = Hello(PROTOCOL_MAJOR, PROTOCOL_MINOR, sink.address, FEATURES, 64 << 20, 250)
        for i in range(hellos):
            env = Envelope(f"flood-{i}", secrets.randbits(63) | 1, t.peer_id, 0, 0, 0, body)
            dealer.send_multipart(codec.encode(env))
            ahead = start + seconds * (i + 1) / hellos - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the sender, not waiting for an event
            if i % 256 == 0:
                sink.drain()
                peak[0] = max(peak[0], rss_bytes(t.pid))
        sent_in = time.monotonic() - start
        end = time.monotonic() + settle
        while time.monotonic() < end:
            sink.drain(50)
            peak[0] = max(peak[0], rss_bytes(t.pid))
    finally:
        done.set()
        asker.join(CHECK_TIMEOUT * 3)
        sink.close()
    checker = RawPeer(context, f"check-after-flood-{os.getpid()}")
    try:
        welcomed = checker.handshake(t.peer_id, t.address, 10.0) is not None
    finally:
        checker.close()
        context.term()
    return FloodReport(hellos, sent_in, rss_before, peak[0], rss_bytes(t.pid), latencies, welcomed)


# ---------------------------------------------------------------- the driver process
def _driver_child(address: str, capture_dir: str = "") -> int:
    """The driver of the cluster under test: joins, then runs legitimate requests on command."""
    import refrpc

    from ..runtime._membership import HEAD

    refrpc.init(address=address, connect_timeout=30.0, trace_dir=capture_dir or "", insecure=True)
    from .. import api

    from ..core import events as ev

    node = api._node()
    deadline = time.monotonic() + 60
    members = api._call_on(HEAD, "refrpc.runtime._membership:members")
    while not members and time.monotonic() < deadline:  # the head's worker registers on its own time
        time.sleep(0.1)  # polling a remote condition: no event to wait on
        members = api._call_on(HEAD, "refrpc.runtime._membership:members")
    from ..runtime._membership import _adds

    node.handle_soon(*_adds(members)).result()
    if capture_dir:
        _capture_workload()

        def stop_tracing() -> None:
            if node.tracer is not None:
                node.tracer.close()
            node.tracer = None
            node.core.trace_events = False

        node.call(stop_tracing).result()
    print(json.dumps({"peer": node.peer_id, "address": node.address, "members": [list(m) for m in members]}), flush=True)
    n = 0
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        start = time.monotonic()
        try:
            if cmd == "task":
                n += 1
                # First a task that takes no slot (TASK-051): the worker still runs work
                # and answers, whatever fuzzed work keeps its one slot busy. Then one
                # that takes the slot, with the longer SLOT_TIMEOUT: legitimate fuzzed
                # work (replayed `_sleep`s) ends within it, a jammed slot does not.
                got = refrpc.get(echo.options(num_cpus=0).remote(n), timeout=CHECK_TIMEOUT)
                ok, detail = got == n, f"echo({n}) returned {got!r}"
                if ok:
                    try:
                        got = refrpc.get(echo.remote(-n), timeout=SLOT_TIMEOUT)
                        ok, detail = got == -n, f"echo({-n}) on the worker's slot returned {got!r}"
                    except refrpc.GetTimeoutError:
                        ok, detail = False, f"the worker's CPU slot stayed taken for {SLOT_TIMEOUT:g} s (jammed)"
            elif cmd == "head":
                ok, detail = bool(api._call_on(HEAD, "refrpc.runtime._membership:members", timeout=CHECK_TIMEOUT)), ""
            else:
                ok, detail = False, f"unknown command {cmd!r}"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        print(json.dumps({"ok": ok, "seconds": time.monotonic() - start, "detail": detail}), flush=True)
    refrpc.shutdown()
    return 0


@remote
def echo(x: Any) -> Any:
    """The legitimate task the driver runs after each batch."""
    return x


# The capture workload: a little of everything a program does, so that the frames
# captured from it cover tasks, stored values, borrowing, actors, errors and cancels.
@remote
def _block(n: int) -> bytes:
    # Bounded: a fuzzed size must not make one task hold the GIL for seconds (that is
    # executor capacity, SEC-009's business, not robustness to bad input).
    return bytes(max(0, min(int(n), 8 << 20)))


@remote
def _length(x: Any) -> int:
    return len(x)


@remote
def _read_shared(ref: Any) -> int:
    import refrpc

    return len(refrpc.get(ref, timeout=CHECK_TIMEOUT))


@remote
def _fail(message: str) -> None:
    raise ValueError(message)


@remote
def _sleep(seconds: float) -> None:
    time.sleep(min(seconds, SLEEP_MAX_S))  # a fuzzed duration must not hold the slot for ever


@remote
class _Counter:
    def __init__(self, start: int) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def _capture_workload() -> None:
    """Run on the driver, traced: its trace's frames are the fuzzer's captured templates."""
    import refrpc

    small = refrpc.put(b"small value")
    big = _block.remote(200_000)  # stored on the worker (TASK-004)
    refrpc.get([echo.remote(small), _length.remote(big), _read_shared.remote(refrpc.shared(big))], timeout=CHECK_TIMEOUT)
    refrpc.get(echo.remote([big]), timeout=CHECK_TIMEOUT)  # a ref nested in a value
    assert len(refrpc.get(big, timeout=CHECK_TIMEOUT)) == 200_000
    try:
        refrpc.get(_fail.remote("on purpose"), timeout=CHECK_TIMEOUT)
    except refrpc.TaskError:
        pass
    counter = _Counter.remote(1)
    refrpc.get(counter.add.remote(2), timeout=CHECK_TIMEOUT)
    refrpc.kill(counter)
    slow = _sleep.remote(5.0)
    refrpc.wait([slow], timeout=0.2)
    refrpc.cancel(slow)
    by_value = refrpc.remote(lambda x: x + 1)  # a function shipped by value
    refrpc.get(by_value.remote(1), timeout=CHECK_TIMEOUT)
    del small, big, slow


def captured_frames(trace_dir: str) -> list[bytes]:
    """Frame 0 of every message a traced peer sent or received (its trace, TRC-005)."""
    out: list[bytes] = []
    for path in sorted(Path(trace_dir).glob("*.rrtrace")):
        with open(path, "rb") as f:
            for rec in codec.read_trace(f):
                if rec.envelope:
                    out.append(bytes(rec.envelope))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refrpc.testing.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targets", default="worker,head,driver")
    ap.add_argument("--batch-frames", type=int, default=1000)
    ap.add_argument("--first-batch", type=int, default=0)
    ap.add_argument("--rss-limit-mb", type=int, default=512)
    ap.add_argument("--json", default="", help="write every batch's figures here (JSON lines)")
    ap.add_argument("--flood", type=int, default=0, help="instead: send this many Hellos from made-up peers to the head")
    ap.add_argument("--flood-seconds", type=float, default=2.0)
    ap.add_argument("--driver-child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--capture-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.driver_child:
        from refrpc.testing import fuzz as importable  # its functions by their importable names, not __main__'s

        return importable._driver_child(args.driver_child, args.capture_dir)
    cluster = Cluster.start()
    if args.flood:
        try:
            print(flood(cluster, "head", args.flood, args.flood_seconds).summary(), flush=True)
        finally:
            cluster.stop()
        return 0
    out = open(args.json, "w") if args.json else None

    def log(b: BatchResult | str) -> None:
        if isinstance(b, str):
            print(b, flush=True)
            return
        print(f"batch {b.batch:5d} {b.target:6s} sent {b.sent:5d} hello {'ok' if b.hello_answered else 'NO'} "
              f"task {'ok' if b.task_ok else 'NO'} ({b.task_seconds * 1000:.0f} ms) head {'ok' if b.head_ok else 'NO'} "
              f"rss {' '.join(f'{k}={v >> 20}MB' for k, v in b.rss_after.items())} "
              f"[{b.send_seconds:.1f}+{b.check_seconds:.1f} s] {b.detail}", flush=True)
        if out is not None:
            out.write(json.dumps(dataclasses.asdict(b)) + "\n")
            out.flush()

    try:
        report = fuzz(cluster, frames=args.frames, seed=args.seed, targets=tuple(args.targets.split(",")),
                      batch_frames=args.batch_frames, first_batch=args.first_batch,
                      rss_limit=args.rss_limit_mb << 20, log=log)
    finally:
        cluster.stop()
        if out is not None:
            out.close()
    print(report.summary(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
