"""A small kit for testing the sans-IO core (``refrpc.core``) without any I/O.

Two tools, after h11's paired connections and dask's "feed exact stimuli, assert
exact instructions":

* :class:`Net` -- real :class:`~refrpc.core.Peer` cores on an in-memory link. Frames
  go into ``net.flights`` when a core emits ``SendFrame`` and reach their
  destination only when a test delivers them (``deliver``, ``deliver_all``), so the
  test decides every ordering, loss and delay. Time moves only by ``net.tick``.
* :class:`Stub` -- a scripted remote peer. It builds exact envelopes (any sequence
  number, ack, incarnation, body) for one real core, to reach states and inputs a
  well-behaved peer would not produce, and to assert the exact frames a core answers.

Everything is deterministic: no sockets, threads, clocks, randomness or sleeps.
Every core runs with ``check_invariants = True``, so ``Peer.validate`` runs after
every ``handle`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from refrpc.core import Config, IdAllocator, Peer
from refrpc.core import events as ev
from refrpc.core.messages import (
    PROTOCOL_MAJOR,
    PROTOCOL_MINOR,
    Encoding,
    Envelope,
    FetchRequest,
    Hello,
    Message,
    RefDescriptor,
    Value,
    Welcome,
)

#: Base of the deterministic incarnations the kit hands out (nonzero, ID-002).
BASE_INCARNATION = 0x100


def address(name: str) -> str:
    """The in-memory address of the peer called ``name``."""
    return f"mem://{name}"


def checked_peer(name: str, incarnation: int, config: Config | None = None) -> Peer:
    """A lone core at its in-memory address that validates its invariants after every call."""
    p = Peer(name, incarnation, address(name), config)
    p.check_invariants = True
    return p


def raw(data: bytes, nested: tuple[RefDescriptor, ...] = ()) -> Value:
    """A RAW value, optionally embedding refs."""
    return Value(Encoding.RAW, data, (), nested)


def val(data: bytes, nested: tuple[RefDescriptor, ...] = ()) -> ev.ArgSpec:
    """A by-value argument."""
    return ev.ArgSpec(value=raw(data, nested))


def ref(oid: str) -> ev.ArgSpec:
    """A by-ref argument (the executor gets the value)."""
    return ev.ArgSpec(object_id=oid)


def shared(oid: str) -> ev.ArgSpec:
    """A shared argument (the executor gets the ref itself)."""
    return ev.ArgSpec(object_id=oid, shared=True)


def of_type(instructions: Iterable[ev.Instruction], cls: type) -> list:
    """The instructions of one type, in order."""
    return [i for i in instructions if isinstance(i, cls)]


def frames(instructions: Iterable[ev.Instruction], body: type | None = None, to: str | None = None) -> list[Envelope]:
    """Envelopes of the SendFrame instructions, optionally filtered by body type and receiver."""
    out = []
    for i in instructions:
        if isinstance(i, ev.SendFrame):
            if body is not None and not isinstance(i.envelope.body, body):
                continue
            if to is not None and i.envelope.receiver != to:
                continue
            out.append(i.envelope)
    return out


def bodies(instructions: Iterable[ev.Instruction], body: type | None = None, to: str | None = None) -> list[Message]:
    """Bodies of the messages sent, optionally filtered by type and receiver."""
    return [e.body for e in frames(instructions, body, to)]


def snapshot(p: Peer) -> str:
    """Everything a LocalUsageError must leave unchanged, as comparable text."""
    parts = {
        "owned": p.owned,
        "borrowed": p.borrowed,
        "tasks": p.tasks,
        "exec": p.exec_tasks,
        "outgoing": p.outgoing,
        "remotes": p.remotes,
        "fenced": sorted(p.fenced),
        "copies": p.copies,
        "owned_actors": p.owned_actors,
        "hosted": p.hosted,
        "actor_call_seq": p.actor_call_seq,
        "get_waiters": p.get_waiters,
        "forward_counter": p.forward_counter,
        "pending": (p.pending_releases, p.pending_frees),
    }
    return repr(parts)


@dataclass
class Flight:
    """A frame on the in-memory link."""

    src: str
    dst: str
    envelope: Envelope

    @property
    def body(self) -> Message:
        return self.envelope.body


Pred = Callable[[Flight], bool]


def is_(body_type: type, src: str | None = None, dst: str | None = None) -> Pred:
    """A flight filter: body of this type (and optionally this sender/receiver)."""
    return lambda f: isinstance(f.body, body_type) and (src is None or f.src == src) and (dst is None or f.dst == dst)


@dataclass
class Net:
    """Real cores joined by an in-memory link that the test drives step by step.

    Args:
        names: the peers to create; each gets ``AddPeer`` for every other (all are workers).
        config: shared Config, or per-peer ones in ``configs``.
    """

    names: tuple[str, ...] = ()
    config: Config | None = None
    configs: dict[str, Config] = field(default_factory=dict)
    workers: bool = True
    now: int = 0
    peers: dict[str, Peer] = field(default_factory=dict)
    ids: dict[str, IdAllocator] = field(default_factory=dict)
    flights: list[Flight] = field(default_factory=list)
    #: Every instruction each peer emitted, in order (the test's record of what happened).
    log: dict[str, list[ev.Instruction]] = field(default_factory=dict)
    #: Every frame ever sent (delivered or not).
    sent: list[Flight] = field(default_factory=list)
    #: The instructions of each peer's most recent ``handle`` call.
    last: dict[str, list[ev.Instruction]] = field(default_factory=dict)
    _counter: int = 0
    _incarnations: int = BASE_INCARNATION

    def __post_init__(self) -> None:
        for n in self.names:
            self.add(n)
        if self.workers:
            for a in self.names:
                for b in self.names:
                    if a != b:
                        self.handle(a, ev.AddPeer(self.sid(a, "add"), b, address(b), 2))

    # ------------------------------------------------------------ peers
    def add(self, name: str, incarnation: int | None = None) -> Peer:
        """Create (or replace, as a new incarnation) the peer ``name``."""
        if incarnation is None:
            self._incarnations += 1
            incarnation = self._incarnations
        p = checked_peer(name, incarnation, self.configs.get(name) or self.config or Config())
        p.now_ms = 0
        self.peers[name] = p
        self.ids[name] = IdAllocator(name, incarnation)
        self.log.setdefault(name, [])
        return p

    def restart(self, name: str) -> Peer:
        """``name`` crashed and started again: a new incarnation at the same address."""
        self.flights = [f for f in self.flights if f.dst != name]
        p = self.add(name)
        self.handle(name, ev.Tick(self.sid(name, "boot"), self.now))
        return p

    def __getitem__(self, name: str) -> Peer:
        return self.peers[name]

    def inc(self, name: str) -> int:
        return self.peers[name].incarnation

    def sid(self, name: str, what: str) -> str:
        self._counter += 1
        return f"{name}:{what}:{self._counter}"

    # ------------------------------------------------------------ driving
    def handle(self, name: str, *stimuli: ev.Stimulus) -> list[ev.Instruction]:
        """Apply stimuli to one core; frames it sends go onto the link. Returns its instructions."""
        out = self.peers[name].handle(*stimuli)
        self.log[name].extend(out)
        self.last[name] = out
        for ins in out:
            if isinstance(ins, ev.SendFrame):
                dst = ins.address.removeprefix("mem://")
                assert ins.address.startswith("mem://") and dst, f"{name} sent to an unusable address {ins.address!r}"
                f = Flight(name, dst, ins.envelope)
                self.flights.append(f)
                self.sent.append(f)
        return out

    def deliver(self, pred: Pred = lambda f: True) -> list[ev.Instruction]:
        """Deliver, in order, every flight now on the link that matches ``pred`` (one pass)."""
        out: list[ev.Instruction] = []
        chosen = [f for f in self.flights if pred(f)]
        for f in chosen:
            self.flights.remove(f)
            if f.dst in self.peers:
                out += self.handle(f.dst, ev.Receive(self.sid(f.dst, f"recv-{type(f.body).__name__}"), f.envelope))
        return out

    def deliver_all(self, hold: Pred | None = None, limit: int = 10_000) -> list[ev.Instruction]:
        """Deliver until the link holds nothing but flights matching ``hold``."""
        out: list[ev.Instruction] = []
        for _ in range(limit):
            nxt = next((f for f in self.flights if hold is None or not hold(f)), None)
            if nxt is None:
                return out
            self.flights.remove(nxt)
            if nxt.dst in self.peers:
                out += self.handle(nxt.dst, ev.Receive(self.sid(nxt.dst, f"recv-{type(nxt.body).__name__}"), nxt.envelope))
        raise AssertionError("the link did not go quiet")

    def drop(self, pred: Pred) -> list[Flight]:
        """Lose every flight matching ``pred``."""
        lost = [f for f in self.flights if pred(f)]
        self.flights = [f for f in self.flights if not pred(f)]
        return lost

    def tick(self, ms: int, *names: str) -> dict[str, list[ev.Instruction]]:
        """Advance time by ``ms`` and tell ``names`` (default: every peer)."""
        self.now += ms
        return {n: self.handle(n, ev.Tick(self.sid(n, "tick"), self.now)) for n in (names or tuple(self.peers))}

    def connect(self, a: str, b: str) -> None:
        """Open sessions both ways between a and b (a greets b).

        The shell of ``a`` sends one data-plane message to ``b``; it is queued until
        the handshake is done (HS-001) and changes no protocol state.
        """
        self.handle(a, ev.SendData(self.sid(a, "connect"), b, 0, address(b), FetchRequest("connect", 0)))
        self.deliver_all()

    # ------------------------------------------------------------ reading
    def in_flight(self, body: type | None = None, src: str | None = None, dst: str | None = None) -> list[Flight]:
        return [f for f in self.flights if (body is None or isinstance(f.body, body)) and (src is None or f.src == src) and (dst is None or f.dst == dst)]

    def sent_bodies(self, body: type, src: str | None = None, dst: str | None = None) -> list[Message]:
        """Bodies of every frame ever sent of that type."""
        return [f.body for f in self.sent if isinstance(f.body, body) and (src is None or f.src == src) and (dst is None or f.dst == dst)]

    # ------------------------------------------------------------ the user program, by peer
    def put(self, name: str, data: bytes = b"v", nested: tuple[str, ...] = (), stored: bool = False) -> str:
        p = self.peers[name]
        oid = self.ids[name].next()
        value = raw(data, tuple(p._descriptor(o) for o in nested))
        self.handle(name, ev.Put(self.sid(name, "put"), oid, value, stored, len(data)))
        return oid

    def submit(self, name: str, function: str, *args: ev.ArgSpec, executor: str = "", returns: int = 1,
               retries: int = 0, retry_exceptions: bool = False, actor: str = "", speed_key: str = "") -> tuple[str, tuple[str, ...]]:
        task_id, rids = self.ids[name].task(returns)
        self.handle(name, ev.Submit(self.sid(name, "submit"), task_id, function, args, rids, retries, retry_exceptions, actor, executor,
                                    speed_key=speed_key))
        return task_id, rids

    def drop_ref(self, name: str, oid: str) -> list[ev.Instruction]:
        return self.handle(name, ev.DropRef(self.sid(name, "drop"), oid))

    def add_ref(self, name: str, oid: str) -> list[ev.Instruction]:
        return self.handle(name, ev.AddRef(self.sid(name, "addref"), oid))

    def get(self, name: str, oid: str, request_id: int = 1) -> list[ev.Instruction]:
        return self.handle(name, ev.Get(self.sid(name, "get"), request_id, oid))

    def finish(self, name: str, task_id: str, *results: ev.TaskResult, attempt: int = 1, retained: tuple[str, ...] = ()) -> list[ev.Instruction]:
        return self.handle(name, ev.TaskFinished(self.sid(name, "finished"), task_id, attempt, results, retained))

    def fail(self, survivor: str, dead: str, incarnation: int | None = None) -> list[ev.Instruction]:
        """The shell of ``survivor`` learnt that ``dead`` exited (LIV-014)."""
        inc = self.inc(dead) if incarnation is None else incarnation
        return self.handle(survivor, ev.PeerFailed(self.sid(survivor, "failed"), dead, inc))

    def kill(self, name: str, *told: str) -> int:
        """``name`` crashes: frames to it vanish; ``told`` peers' supervisors report it."""
        inc = self.inc(name)
        del self.peers[name]
        self.flights = [f for f in self.flights if f.dst != name]
        for t in told:
            self.fail(t, name, inc)
        return inc

    def results(self, name: str) -> dict[int, ev.GetResult]:
        return {g.request_id: g for g in of_type(self.log[name], ev.GetResult)}

    def runs(self, name: str) -> list[ev.RunTask]:
        return of_type(self.log[name], ev.RunTask)


def result(data: bytes = b"r", nested: tuple[RefDescriptor, ...] = ()) -> ev.TaskResult:
    """An inline task result."""
    return ev.TaskResult(value=raw(data, nested))


def stored_result(size: int, nested: tuple[RefDescriptor, ...] = ()) -> ev.TaskResult:
    """A large result the shell already wrote to the local store."""
    return ev.TaskResult(value=raw(b"", nested), stored=True, size=size)


# ================================================================ scripted peer
@dataclass
class Stub:
    """A scripted remote peer talking to one real core.

    It keeps its own sequence counter so that ``send`` produces the envelopes a
    correct peer would; every field can be overridden to produce wrong ones.
    """

    name: str
    incarnation: int = 0x5157
    features: tuple[str, ...] = ("core", "borrowing", "recovery", "actors")
    heartbeat_interval_ms: int = 250
    max_frame_bytes: int = 64 * 1024 * 1024
    major: int = PROTOCOL_MAJOR
    minor: int = PROTOCOL_MINOR
    out_seq: int = 0
    ack: int = 0
    counter: int = 0

    @property
    def address(self) -> str:
        return address(self.name)

    def sid(self, what: str) -> str:
        self.counter += 1
        return f"{self.name}:{what}:{self.counter}"

    def envelope(self, to: Peer, body: Message, seq: int, ack: int | None = None, receiver_incarnation: int | None = None,
                 sender_incarnation: int | None = None, receiver: str | None = None) -> ev.Receive:
        env = Envelope(
            self.name,
            self.incarnation if sender_incarnation is None else sender_incarnation,
            to.peer_id if receiver is None else receiver,
            to.incarnation if receiver_incarnation is None else receiver_incarnation,
            seq,
            self.ack if ack is None else ack,
            body,
        )
        return ev.Receive(self.sid(type(body).__name__), env)

    def hello(self, to: Peer, receiver_incarnation: int = 0, **fields: object) -> ev.Receive:
        h = dict(protocol_major=self.major, protocol_minor=self.minor, address=self.address, features=self.features,
                 max_frame_bytes=self.max_frame_bytes, heartbeat_interval_ms=self.heartbeat_interval_ms)
        h.update(fields)
        return self.envelope(to, Hello(**h), 0, 0, receiver_incarnation)  # type: ignore[arg-type]

    def welcome(self, to: Peer, **fields: object) -> ev.Receive:
        h = dict(protocol_major=self.major, protocol_minor=self.minor, address=self.address, features=self.features,
                 max_frame_bytes=self.max_frame_bytes, heartbeat_interval_ms=self.heartbeat_interval_ms)
        h.update(fields)
        return self.envelope(to, Welcome(**h), 0, 0)  # type: ignore[arg-type]

    def send(self, to: Peer, body: Message, **over: int) -> ev.Receive:
        """The next sequenced message of this stub's session to ``to``."""
        self.out_seq += 1
        return self.envelope(to, body, self.out_seq, **over)  # type: ignore[arg-type]

    def unsequenced(self, to: Peer, body: Message, **over: int) -> ev.Receive:
        return self.envelope(to, body, 0, **over)  # type: ignore[arg-type]

    def greet(self, p: Peer) -> list[ev.Instruction]:
        """Open a session with ``p`` (the stub is the initiator); returns p's answer."""
        return p.handle(self.hello(p))

    def descriptor(self, oid: str, forward_id: str = "", size: int = -1) -> RefDescriptor:
        """A ref owned by this stub."""
        return RefDescriptor(oid, self.name, self.incarnation, self.address, size, forward_id)

    def oid(self, n: int | str) -> str:
        """An id this stub allocated (ID-003 form)."""
        return f"{self.name}.{self.incarnation:x}.{n}"

    def take(self, instructions: Iterable[ev.Instruction]) -> list[Envelope]:
        """Read the frames sent to this stub and update its ack to what it received in order."""
        envs = frames(instructions, to=self.name)
        for e in envs:
            if e.seq == self.ack + 1:
                self.ack = e.seq
        return envs
