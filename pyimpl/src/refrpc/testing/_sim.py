"""A simulated cluster: many cores on an in-memory network, driven step by step.

Every source of nondeterminism -- which message is delivered next, whether it is
dropped or duplicated, when time advances, when a task finishes, when a peer is
killed -- is a *choice* made by a :class:`Chooser`. A seeded chooser gives
random runs (``Cluster.run_random``); a scripted chooser replays or enumerates
them (``refrpc.testing.explore``). The same seed always gives the same run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Generator

from refrpc.core import Config, IdAllocator, Peer
from refrpc.core import events as ev
from refrpc.core.messages import BorrowRelease, Encoding, Envelope, ErrorCode, ProtocolError, RefDescriptor, ReleaseBorrows, Value

Program = Callable[["Driver"], Generator]


class SimFailure(AssertionError):
    """A guarantee failed in a simulated run; the message holds the seed and the history."""


@dataclass
class Flight:
    """A frame in the network: from ``src`` to ``dst``."""

    src: str
    dst: str
    envelope: Envelope
    sent_at: int


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    #: Kill this many non-driver peers at random moments.
    kills: int = 0
    #: Kill the driver (the owner of the workload's objects) at a random moment.
    kill_driver: bool = False
    #: The shell's supervisor reports deaths (PeerFailed) rather than waiting for silence.
    supervisor: bool = True
    #: Chance, at each delivery to a peer that holds a grant on some object X, that
    #: the peer sends X's owner a stale release as a new sequenced message: a grant of
    #: X it released before, or one it never had (BOR-018). The session layer
    #: discards duplicates, so without this no owner ever sees either while the
    #: sender still holds another grant on X.
    stale_release: float = 0.0


#: Steps within which the supervisor's report of a death is delivered.
REPORT_DEADLINE = 60


class Chooser:
    """Makes the run's choices. ``pick(n, what)`` returns an index in range(n)."""

    def pick(self, n: int, what: str) -> int:
        raise NotImplementedError

    def chance(self, p: float, what: str) -> bool:
        raise NotImplementedError


class RandomChooser(Chooser):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, n: int, what: str) -> int:
        return self.rng.randrange(n)

    def chance(self, p: float, what: str) -> bool:
        return p > 0 and self.rng.random() < p


def raw(data: bytes, nested: tuple[RefDescriptor, ...] = ()) -> Value:
    return Value(Encoding.RAW, data, (), nested)


class SimPeer:
    """One simulated process: a core plus a fake runtime (store, functions, program)."""

    def __init__(self, cluster: Cluster, name: str, incarnation: int) -> None:
        self.cluster = cluster
        self.name = name
        self.core = Peer(name, incarnation, f"sim://{name}", cluster.config)
        self.core.check_invariants = True
        self.ids = IdAllocator(name, incarnation)
        self.alive = True
        #: Bytes of values whose copy this process holds (the object store).
        self.store: dict[str, Value] = {}
        #: Tasks running here: (task_id, attempt) -> RunTask.
        self.running: dict[tuple[str, int], ev.RunTask] = {}
        #: Actor instances: actor id -> their state (a dict).
        self.actors: dict[str, dict] = {}
        self.get_results: dict[int, ev.GetResult] = {}
        self.request_counter = 0
        self.stimulus_counter = 0
        self.failstopped = False

    def sid(self, what: str) -> str:
        self.stimulus_counter += 1
        return f"{self.name}:{what}:{self.stimulus_counter}"

    def handle(self, *stimuli: ev.Stimulus) -> None:
        if not self.alive:
            return
        names = [type(s).__name__ if not isinstance(s, ev.Receive) else f"Receive {type(s.envelope.body).__name__} from {s.envelope.sender} seq={s.envelope.seq}" for s in stimuli]
        if names != ["Tick"] and not (len(stimuli) == 1 and isinstance(stimuli[0], ev.Receive) and type(stimuli[0].envelope.body).__name__ == "Heartbeat"):
            self.cluster.trace.append((self.name, names))
        for ins in self.core.handle(*stimuli):
            self.cluster.carry_out(self, ins)


class Cluster:
    """N simulated peers; ``peers[0]`` is the driver that runs the program."""

    def __init__(self, n: int, chooser: Chooser, faults: Faults | None = None, config: Config | None = None, use_time: bool = True) -> None:
        self.config = config or Config(inline_threshold=16)
        self.chooser = chooser
        self.faults = faults or Faults()
        self.use_time = use_time
        self.fixed_ticks = False
        self.now = 0
        self.flights: list[Flight] = []
        self.trace: list = []
        self.peers: dict[str, SimPeer] = {}
        self.killed: list[str] = []
        self.kills_left = self.faults.kills
        self.driver_kill_left = self.faults.kill_driver
        #: Deaths the supervisor still has to report: (survivor, dead peer, incarnation).
        self.reports: list[tuple[str, str, int]] = []
        #: The step each report was queued at: a report is delivered at the latest
        #: REPORT_DEADLINE steps later, as detection is bounded in time (A5, LIV-003);
        #: without it an unfair schedule could starve it while a fetcher retries forever.
        self.report_queued: list[int] = []
        #: Explore crash points in one delivery order instead of every order.
        self.crash_points_only = False
        self.report_deadline = REPORT_DEADLINE
        self.violations: list[str] = []
        self.steps = 0
        #: Stale releases sent by the stale_release perturbation, and the grants each
        #: peer has released so far, by (peer, object), for it to release again.
        self.stale_releases = 0
        self.released: dict[tuple[str, str], list[str]] = {}
        #: Random runs crash peers at chosen step numbers, spread over the whole run;
        #: exhaustive runs instead offer "kill" as a choice at every step.
        self.kill_at: list[int] = []
        if use_time:
            n_kills = self.faults.kills + (1 if self.faults.kill_driver else 0)
            self.kill_at = sorted(chooser.pick(120, "kill-step") for _ in range(n_kills))
        for i in range(n):
            name = "driver" if i == 0 else f"w{i}"
            self.peers[name] = SimPeer(self, name, 1000 + i)
        for p in self.peers.values():
            for q in self.peers.values():
                if q is not p and q.name != "driver":
                    p.handle(ev.AddPeer(p.sid("add"), q.name, q.core.address, 2))
        from ._functions import FUNCTIONS

        self.functions = FUNCTIONS
        self.driver: Driver | None = None

    # ------------------------------------------------------------ instructions
    def carry_out(self, p: SimPeer, ins: ev.Instruction) -> None:
        if isinstance(ins, ev.SendFrame):
            body = ins.envelope.body
            if isinstance(body, ProtocolError) and body.error.requirement == "REF-007":
                # Honest peers never send two descriptors of one object that disagree on
                # its owner (ID-005): REF-007's check must never fire in a simulation.
                raise SimFailure(f"{p.name} refused a message under REF-007: {body.error.message}")
            dst = ins.address.removeprefix("sim://")
            self.flights.append(Flight(p.name, dst, ins.envelope, self.now))
        elif isinstance(ins, ev.RunTask):
            p.running[(ins.task_id, ins.attempt)] = ins
        elif isinstance(ins, ev.StopTask):
            p.running.pop((ins.task_id, ins.attempt), None)
        elif isinstance(ins, ev.GetResult):
            p.get_results[ins.request_id] = ins
        elif isinstance(ins, ev.FreeCopy):
            p.store.pop(ins.object_id, None)
        elif isinstance(ins, ev.StartActor):
            p.running[(f"actor:{ins.actor_id}", 0)] = ins  # type: ignore[assignment]
        elif isinstance(ins, ev.StopActor):
            # Destroying the actor drops the handles its state held.
            state = p.actors.pop(ins.actor_id, None) or {}
            p.running.pop((f"actor:{ins.actor_id}", 0), None)
            for d in state.get("held", []):
                p.handle(ev.DropRef(p.sid("actor-gone"), d.object_id))
        elif isinstance(ins, ev.FailStop):
            p.failstopped = True
            self.kill(p.name, "fail-stop")
        # PeerDeclaredDead, ActorStateChanged, RemoteError, IntrospectResult,
        # DeliverData: nothing for the simulated shell to do.

    # ------------------------------------------------------------ the value plane
    def fetch(self, locations: tuple[tuple[str, str], ...], object_id: str) -> Value | None:
        """Read a stored value from any live location (the data plane is not simulated)."""
        for peer, _ in locations:
            q = self.peers.get(peer)
            if q is not None and q.alive and object_id in q.store:
                return q.store[object_id]
        return None

    # ------------------------------------------------------------ faults
    def kill(self, name: str, why: str = "killed") -> None:
        p = self.peers[name]
        if not p.alive:
            return
        p.alive = False
        self.killed.append(name)
        self.trace.append((name, [f"KILLED ({why})"]))
        # Messages to it are lost; messages it already sent stay in the network.
        self.flights = [f for f in self.flights if f.dst != name]
        if self.faults.supervisor:
            for q in self.peers.values():
                if q.alive:
                    self.reports.append((q.name, name, p.core.incarnation))
                    self.report_queued.append(self.steps)

    def dead_view(self) -> set[tuple[str, int]]:
        """Peer incarnations that are dead in truth or declared dead by anyone."""
        out = {(n, p.core.incarnation) for n, p in self.peers.items() if not p.alive}
        for p in self.peers.values():
            if p.alive:
                out |= p.core.fenced
        return out

    # ------------------------------------------------------------ stepping
    def actions(self, allow_faults: bool) -> list[tuple[str, object]]:
        acts: list[tuple[str, object]] = []
        for i, f in enumerate(self.flights):
            acts.append(("deliver", i))
        for p in self.peers.values():
            if p.alive:
                for key in p.running:
                    acts.append(("finish", (p.name, key)))
        for i, rep in enumerate(self.reports):
            acts.append(("report", i))
        if allow_faults and not self.use_time:
            if self.kills_left > 0:
                for p in self.peers.values():
                    if p.alive and p.name != "driver":
                        acts.append(("kill", p.name))
            if self.driver_kill_left and self.peers["driver"].alive:
                acts.append(("kill", "driver"))
        if self.use_time:
            acts.append(("tick", None))
        if self.crash_points_only:
            # One fixed order of deliveries and completions; only when a peer dies
            # and when its death is reported are choices (every crash point).
            first = [a for a in acts if a[0] in ("deliver", "finish", "tick")][:1]
            acts = first + [a for a in acts if a[0] in ("report", "kill")]
        return acts

    def step(self, allow_faults: bool = True) -> bool:
        """Take one action chosen by the chooser; False if there was nothing to do."""
        self.steps += 1
        if allow_faults and self.kill_at and self.steps >= self.kill_at[0]:
            self.kill_at.pop(0)
            self._scheduled_kill()
            self.check_safety()
            return True
        if self.report_queued and self.steps - self.report_queued[0] >= self.report_deadline:
            kind, arg = "report", 0
        else:
            acts = self.actions(allow_faults)
            if not acts:
                return False
            kind, arg = acts[self.chooser.pick(len(acts), "action")]
        if kind == "deliver":
            self._deliver(int(arg), allow_faults)  # type: ignore[arg-type]
        elif kind == "finish":
            name, key = arg  # type: ignore[misc]
            self._finish(self.peers[name], key)
        elif kind == "report":
            survivor, dead, inc = self.reports.pop(int(arg))  # type: ignore[arg-type]
            self.report_queued.pop(int(arg))  # type: ignore[arg-type]
            s = self.peers[survivor]
            s.handle(ev.PeerFailed(s.sid("failed"), dead, inc))
        elif kind == "kill":
            if arg == "driver":
                self.driver_kill_left = False
            else:
                self.kills_left -= 1
            self.kill(str(arg))
        else:
            self._tick()
        self.check_safety()
        return True

    def _scheduled_kill(self) -> None:
        victims = [p.name for p in self.peers.values() if p.alive and p.name != "driver" and self.kills_left > 0]
        if self.driver_kill_left and self.peers["driver"].alive:
            victims.append("driver")
        if not victims:
            return
        name = victims[self.chooser.pick(len(victims), "victim")]
        if name == "driver":
            self.driver_kill_left = False
        else:
            self.kills_left -= 1
        self.kill(name)

    def _deliver(self, index: int, allow_faults: bool) -> None:
        f = self.flights[index]
        if allow_faults and self.chooser.chance(self.faults.duplicate, "duplicate"):
            pass  # keep it in flight: it will be delivered again
        else:
            self.flights.pop(index)
        if allow_faults and self.chooser.chance(self.faults.drop, "drop"):
            self.trace.append((f.dst, [f"DROPPED {type(f.envelope.body).__name__} from {f.src}"]))
            return
        p = self.peers.get(f.dst)
        if p is not None and p.alive:
            p.handle(ev.Receive(p.sid(f"recv-{f.src}-{f.envelope.seq}"), f.envelope))
            if isinstance(f.envelope.body, ReleaseBorrows):
                for rel in f.envelope.body.releases:
                    self.released.setdefault((f.src, rel.object_id), []).extend(rel.forward_ids)
            if allow_faults:
                self._stale_release(p)

    def _stale_release(self, p: SimPeer) -> None:
        """BOR-018 perturbation: ``p``, holding a grant on X, releases a grant of X again that
        it released before, or one it never had, as a new sequenced message to X's owner."""
        if not self.faults.stale_release or not p.alive:
            return
        held = sorted(oid for oid, b in p.core.borrowed.items() if b.grants and b.state != "failed")
        if not held or not self.chooser.chance(self.faults.stale_release, "stale-release"):
            return
        oid = held[self.chooser.pick(len(held), "stale-release-object")]
        b = p.core.borrowed[oid]
        before = self.released.get((p.name, oid), [])
        self.stale_releases += 1
        if before and self.chooser.pick(2, "stale-release-kind"):
            fid = before[self.chooser.pick(len(before), "stale-release-grant")]  # released already
        else:
            fid = f"{p.name}.never-granted.{self.stale_releases}"
        body = ReleaseBorrows((BorrowRelease(oid, (fid,)),))
        self.trace.append((p.name, [f"STALE RELEASE to {b.owner}: {body}"]))
        p.handle(ev.SendData(p.sid("stale-release"), b.owner, b.ref.owner_incarnation, b.ref.owner_address, body))

    def _tick(self) -> None:
        # Settling after an exhaustive run advances time in fixed steps: no choices.
        self.now += 50 if self.fixed_ticks else 1 + self.chooser.pick(60, "delay")
        for p in list(self.peers.values()):
            if p.alive:
                p.handle(ev.Tick(p.sid("tick"), self.now))

    def _finish(self, p: SimPeer, key: tuple[str, int]) -> None:
        ins = p.running.pop(key)
        if isinstance(ins, ev.StartActor):
            from ._functions import start_actor

            start_actor(self, p, ins)
            return
        from ._functions import run_task

        run_task(self, p, ins)

    # ------------------------------------------------------------ guarantees
    def check_safety(self) -> None:
        """G-safety: no live holder's ref points at a value its live owner reclaimed."""
        from ._checks import primary_copy_violations, relay_violations, safety_violations

        problems = safety_violations(self) + primary_copy_violations(self) + relay_violations(self)
        if problems:
            raise SimFailure("\n".join(problems))


class Driver:
    """The program's view of the driver peer: submit, put, get, drop."""

    def __init__(self, cluster: Cluster, peer: SimPeer) -> None:
        self.cluster = cluster
        self.peer = peer
        self.expected_errors: set[ErrorCode] = set()
        #: The typed errors the program met and accepted, in order.
        self.errors_seen: list[ErrorCode] = []

    def submit(self, function: str, *args: ev.ArgSpec, num_returns: int = 1, retries: int = 0, executor: str = "", actor: str = "") -> list[str]:
        task_id, rids = self.peer.ids.task(num_returns)
        self.peer.handle(ev.Submit(self.peer.sid("submit"), task_id, function, args, rids, retries, False, actor, executor))
        return list(rids)

    def put(self, data: bytes, nested: tuple[str, ...] = ()) -> str:
        oid = self.peer.ids.next()
        descs = tuple(self.peer.core._descriptor(o) for o in nested)
        stored = len(data) > self.cluster.config.inline_threshold
        value = raw(data, descs)
        if stored:
            self.peer.store[oid] = value
        self.peer.handle(ev.Put(self.peer.sid("put"), oid, value, stored, len(data)))
        return oid

    def actor(self, class_name: str, executor: str = "", restarts: int = 0) -> str:
        aid = self.peer.ids.next()
        self.peer.handle(ev.CreateActorRequest(self.peer.sid("actor"), aid, class_name, (), executor, restarts))
        return aid

    def kill_actor(self, actor_id: str) -> None:
        self.peer.handle(ev.KillActorRequest(self.peer.sid("kill-actor"), actor_id))

    def get(self, oid: str) -> "GetToken":
        self.peer.request_counter += 1
        rid = self.peer.request_counter
        self.peer.handle(ev.Get(self.peer.sid("get"), rid, oid))
        return GetToken(rid, oid)

    def materialize(self, container: str, refs: tuple[RefDescriptor, ...]) -> list[str]:
        self.peer.handle(ev.Materialize(self.peer.sid("materialize"), container, refs))
        return [d.object_id for d in refs]

    def drop(self, *oids: str) -> None:
        for oid in oids:
            self.peer.handle(ev.DropRef(self.peer.sid("drop"), oid))


@dataclass(frozen=True)
class GetToken:
    request_id: int
    object_id: str


def ref(oid: str) -> ev.ArgSpec:
    return ev.ArgSpec(object_id=oid)


def shared(oid: str) -> ev.ArgSpec:
    return ev.ArgSpec(object_id=oid, shared=True)


def val(data: bytes) -> ev.ArgSpec:
    return ev.ArgSpec(value=raw(data))
