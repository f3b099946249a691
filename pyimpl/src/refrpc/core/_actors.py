"""Actors: creation, ordered method calls, death (ACT-*, FATE-004)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .errors import LocalUsageError, ProtocolViolation
from .events import ActorReady, ActorStateChanged, CreateActorRequest, StartActor, StopActor, StopTask
from .messages import (
    ActorId,
    ActorState,
    ActorStatus,
    CreateActor,
    ErrorCode,
    ErrorInfo,
    KillActor,
    PeerId,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)
from ._tasks import _demand, _use, wire_demand
from .state import Demand, ExecTask, HostedActor, OwnedActor, Remote

if TYPE_CHECKING:
    from ._execution import ExecKey
    from .peer import Peer

#: Ids of actors stopped with their owner that a host remembers (ACT-023).
ENDED_ACTORS_KEPT = 4096


class Actors:
    """Mixin of :class:`Peer`."""

    # ------------------------------------------------------------ owner side
    def _create_actor(self: Peer, s: CreateActorRequest) -> None:
        if s.actor_id in self.owned_actors or not self._owns(s.actor_id):
            raise LocalUsageError(ErrorCode.MALFORMED, f"actor id {s.actor_id} is reused or not allocated here")
        args, mentioned = self._build_args(s.args)
        demand = _demand(s.num_cpus, s.resources)
        self._note_allocated(s.actor_id)  # ID-006
        host = s.executor or self._actor_host(mentioned, demand)
        if not host:
            what = "" if demand == (0.0, ()) else " with the resources it asks for"
            raise LocalUsageError(ErrorCode.RESOURCE_EXHAUSTED, f"no live peer to host the actor{what}")
        a = OwnedActor(s.actor_id, s.class_name, args, host, max_restarts=s.max_restarts, arg_refs=mentioned,
                       holding_args=True, max_concurrency=s.max_concurrency, demand=demand)
        self.owned_actors[s.actor_id] = a
        for oid in mentioned:
            self._hold(oid, "submitted_task_refs", +1)  # covered like task arguments (BOR-006)
        self._start_actor(a)

    def _release_actor_args(self: Peer, a: OwnedActor) -> None:
        if a.holding_args:
            a.holding_args = False
            for oid in a.arg_refs:
                self._hold(oid, "submitted_task_refs", -1)

    def _actor_host(self: Peer, arg_refs: tuple, demand: Demand) -> PeerId:
        """Where a new (or restarted) actor goes: an executor with room for what it
        takes for its life, else the least loaded one that could hold it (TASK-012)."""
        live = self._capable(demand)
        free = [p for p in live if self._has_slot(p, demand)] if demand != (0.0, ()) else []
        return self._pick(self._local_bytes(arg_refs), free) if free else self._place(arg_refs, live, demand)

    def _reserve(self: Peer, a: OwnedActor, sign: int) -> None:
        """Count the actor's demand in (+1) or out (-1) of its host's used resources."""
        if (sign > 0) == a.reserved or a.demand == (0.0, ()):
            return
        r = self.remotes.get(a.host)
        if r is None:
            return
        a.reserved = sign > 0
        _use(r, a.demand, sign)
        if sign < 0:
            self.pump_due = True

    def _owned_actor_dead(self: Peer, actor_id: ActorId, info: ErrorInfo) -> None:
        a = self.owned_actors.get(actor_id)
        if a is None or a.state == ActorState.DEAD.value:
            return
        self._reserve(a, -1)
        a.state = ActorState.DEAD.value
        a.error = info
        self._release_actor_args(a)
        self._out(ActorStateChanged(self._sid, a.actor_id, a.state, info))
        if a.handles_gone:
            self._forget_actor(a)

    def _holds_handle(self: Peer, actor_id: ActorId) -> bool:
        """Whether this peer holds the actor's handle object (ACT-019) as a live ref."""
        e = self.owned.get(actor_id)
        return (e is not None and e.state != "released") or actor_id in self.borrowed

    def _actor_handles_gone(self: Peer, actor_id: ActorId) -> None:
        """The actor's handle object was reclaimed: no process holds a handle (ACT-009)."""
        a = self.owned_actors[actor_id]
        a.handles_gone = True
        self._story(actor_id, "handles-gone", a.state)
        if a.state == ActorState.DEAD.value:
            self._forget_actor(a)
        else:
            self._kill_actor(actor_id)

    def _forget_actor(self: Peer, a: OwnedActor) -> None:
        """A dead actor nobody can call any more: its records go (bounded memory)."""
        self.owned_actors.pop(a.actor_id, None)
        self.actor_call_seq.pop(a.actor_id, None)

    def _start_actor(self: Peer, a: OwnedActor) -> None:
        if not self._is_live(a.host):
            self._owned_actor_dead(a.actor_id, ErrorInfo(ErrorCode.ACTOR_DIED, f"host {a.host} is dead", "ACT-004"))
            return
        w = self.workers.get(a.host)
        if a.host != self.peer_id:
            self._remote(a.host, w[0] if w else self._address_of(a.host))
            self._reserve(a, +1)
        self._story(a.actor_id, "create", f"on {a.host}")
        cpu, named = wire_demand(a.demand)  # ACT-026: the host holds it for the actor's life
        self._send(a.host, CreateActor(a.actor_id, a.class_name, a.args, a.max_restarts, a.max_concurrency, cpu, named),
                   w[0] if w else self._address_of(a.host))

    def _actor_route(self: Peer, actor_id: ActorId, executor: PeerId) -> tuple[PeerId, int]:
        a = self.owned_actors.get(actor_id)
        host = a.host if a is not None else executor
        if not host:
            raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"unknown actor {actor_id}; name its host")
        seq = self.actor_call_seq.get(actor_id, 0) + 1
        self.actor_call_seq[actor_id] = seq  # ACT-003
        return host, seq

    def _on_ActorStatus(self: Peer, r: Remote, msg: ActorStatus) -> None:
        a = self.owned_actors.get(msg.actor_id)
        if a is None or a.host != r.peer:
            return
        if msg.state == ActorState.DEAD:
            self._owned_actor_dead(a.actor_id, msg.error or ErrorInfo(ErrorCode.ACTOR_DIED, "actor died", "ACT-002"))
            return
        a.state = msg.state.value
        a.error = msg.error
        if a.state == ActorState.ALIVE.value and a.max_restarts == 0:
            self._release_actor_args(a)  # creation is over; a restart would need them again
        self._out(ActorStateChanged(self._sid, a.actor_id, a.state, msg.error))

    def _actor_host_died(self: Peer, dead: PeerId) -> None:
        for a in self.owned_actors.values():
            if a.host != dead or a.state == ActorState.DEAD.value:
                continue
            self._reserve(a, -1)
            if a.restarts < a.max_restarts:  # ACT-002: state is lost, calls go to the new one
                a.restarts += 1
                a.host = self._actor_host((), a.demand)
                if a.host:
                    a.state = ActorState.RESTARTING.value
                    self._out(ActorStateChanged(self._sid, a.actor_id, a.state, None))
                    self._start_actor(a)
                    continue
            why = f"actor {a.actor_id} died with its host {dead}"
            if not a.host:  # a restart was left, but no live executor could hold the actor
                why += "; no live executor could hold it again"
            elif a.max_restarts:
                why += f"; its restarts are used up (max_restarts={a.max_restarts})"
            self._owned_actor_dead(a.actor_id, ErrorInfo(ErrorCode.ACTOR_DIED, why, "ACT-004"))

    def _kill_actor(self: Peer, actor_id: ActorId) -> None:
        a = self.owned_actors.get(actor_id)
        if a is not None and a.state != ActorState.DEAD.value:
            self._send(a.host, KillActor(actor_id))

    # ------------------------------------------------------------ host side
    def _on_CreateActor(self: Peer, r: Remote, msg: CreateActor) -> None:
        self._check_args(msg.args)  # VAL-015
        self._check_demand(msg)  # TASK-054, ACT-030
        h = self.hosted.get(msg.actor_id)
        if h is not None:
            if (h.owner, h.owner_incarnation) != (r.peer, r.incarnation):
                # ACT-035: another owner's actor of that id lives here (ids are unique,
                # ID-005); this one must not take its place or its calls.
                raise ProtocolViolation(ErrorCode.MALFORMED, f"actor {msg.actor_id!r} is already hosted here "
                                        "for another owner", "ACT-035")
            return  # duplicate (RPC-001)
        self.hosted[msg.actor_id] = HostedActor(msg.actor_id, r.peer, r.incarnation,
                                                max_concurrency=max(1, msg.max_concurrency))  # ACT-013
        for key, _ in self.held_actor_calls.pop(msg.actor_id, []):  # ACT-023: first come, first queued
            ex = self.exec_tasks.get(key)
            if ex is not None and ex.state == "resolving":
                self._actor_enqueue(key)
        # Creation runs like a task with no returns: same argument resolution (TASK-002).
        # Its demand is the actor's lifetime demand, which the executor holds from the
        # constructor's start until the actor is dead (ACT-027).
        spec = SubmitTask(f"{msg.actor_id}#create", msg.class_name, msg.args, (), cpu_demand=msg.cpu_demand,
                          resources=msg.resources)
        self.actor_creations[(r.peer, r.incarnation, spec.task_id, 1)] = msg.actor_id
        self._on_SubmitTask(r, spec)

    def _creation_started(self: Peer, key: ExecKey, ex: ExecTask, resolved: tuple) -> None:
        actor_id = self.actor_creations[key]
        h = self.hosted.get(actor_id)
        self._out(StartActor(self._sid, actor_id, ex.spec.function, resolved, owner=ex.owner,
                             max_concurrency=h.max_concurrency if h else 1, cpu_demand=ex.spec.cpu_demand,
                             resources=tuple((a.name, a.amount) for a in ex.spec.resources)))

    def _creation_failed(self: Peer, key: ExecKey, error: ErrorInfo) -> None:
        """The constructor could not run (an argument failed, TASK-009, or it raised)."""
        actor_id = self.actor_creations.pop(key)
        ex = self.exec_tasks.pop(key)
        self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
        self._release_exec_holds(ex)
        h = self.hosted.get(actor_id)
        if h is not None:
            # It never came to life here, so its queued calls are calls to a dead actor,
            # answered ACTOR_DIED (ACT-004, ACT-028) with why it died; the owner learns
            # the error itself from the ActorStatus (ACT-001).
            if error.code is ErrorCode.RESOURCE_EXHAUSTED:
                calls = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {actor_id} was never created: {error.message}",
                                  "ACT-028")
            else:
                why = {ErrorCode.TASK_FAILED: "its constructor failed",
                       ErrorCode.UNKNOWN_FUNCTION: "its class is unknown on its host"}.get(
                    error.code, f"its creation failed ({error.code.value})")
                calls = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {actor_id} died: {why}: {error.message}", "ACT-004",
                                  error.detail)
            self._hosted_actor_dead(h, error, calls=calls)

    def _actor_ready(self: Peer, s: ActorReady) -> None:
        h = self.hosted.get(s.actor_id)
        key = next((k for k, a in self.actor_creations.items() if a == s.actor_id), None)
        ex = self.exec_tasks.get(key) if key is not None else None
        if h is None or key is None or ex is None or ex.state != "running":
            return
        if h.state == "dead":
            # Killed (ACT-006) while its creation waited for room or its constructor ran
            # (ACT-029): the owner was told DEAD already; the creation's records go, and
            # an instance built after the stop goes too.
            del self.actor_creations[key]
            del self.exec_tasks[key]
            self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
            self._release_exec_holds(ex)
            if s.error is None:
                self._out(StopActor(self._sid, h.actor_id))
            return
        if s.error is not None:
            self._creation_failed(key, s.error)
            return
        # Refs the constructor kept need grants before we report alive (BOR-007).
        self._register_retained(ex, key, ())
        if ex.registrations:
            self._transition_exec(ex, "finished_retained")
        else:
            self._transition_exec(ex, "finished")
            self._creation_done(key)

    def _creation_done(self: Peer, key: ExecKey) -> None:
        actor_id = self.actor_creations.pop(key)
        ex = self.exec_tasks.pop(key)
        self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
        self._release_exec_holds(ex)
        h = self.hosted.get(actor_id)
        if h is None:
            return
        h.state = "alive"
        self._send(h.owner, ActorStatus(h.actor_id, ActorState.ALIVE))  # ACT-001
        self._actor_pump(h)

    def _on_KillActor(self: Peer, r: Remote, msg: KillActor) -> None:
        h = self.hosted.get(msg.actor_id)
        if h is None or h.owner != r.peer:
            return
        self._out(StopActor(self._sid, h.actor_id))
        self._hosted_actor_dead(h, ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {h.actor_id} was killed", "ACT-006"))

    def _hosted_actor_dead(self: Peer, h: HostedActor, info: ErrorInfo, notify: bool = True,
                           calls: ErrorInfo | None = None) -> None:
        """``h`` is dead with ``info``; its queued calls are answered ``calls`` (default ``info``)."""
        h.state = "dead"
        h.death = calls or info
        for key, actor_id in list(self.actor_creations.items()):
            ex = self.exec_tasks.get(key)
            if actor_id == h.actor_id and ex is not None and ex.state == "resolving":
                # ACT-029: a creation whose arguments still resolve never starts its
                # constructor; its records and argument holds go now.
                del self.actor_creations[key]
                del self.exec_tasks[key]
                self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
                self._release_exec_holds(ex)
        queue, h.queue = list(h.queue), deque()
        for key, ex in list(self.exec_tasks.items()):
            if ex.spec.actor_id == h.actor_id and ex.state == "running":
                # ACT-006, ACT-038: the running call ends now, whatever stopped the actor
                # (a kill, the loss of the instance, its owner's death: the owner's own
                # calls were dropped before, FATE-003); its late result is dropped.
                self._out(StopTask(self._sid, ex.run_id, ex.spec.attempt))
                self._transition_exec(ex, "actor_died")
                ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(ReturnValue(rid, ReturnKind.ERROR, error=info) for rid in ex.spec.return_ids))
                self._send_reply(key, ex)
        for key in queue:
            ex = self.exec_tasks.get(key)
            if ex is not None and ex.state == "resolving":
                self._reply_unrun(key, ex, calls or info)
        if notify:
            self._send(h.owner, ActorStatus(h.actor_id, ActorState.DEAD, info))  # ACT-002

    def _reply_unrun(self: Peer, key: ExecKey, ex: ExecTask, info: ErrorInfo, event: str = "actor_dead") -> None:
        """Answer a call that will not run: the actor is dead (ACT-004) or the call is late (ACT-014)."""
        self._transition_exec(ex, event)
        ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(ReturnValue(rid, ReturnKind.ERROR, error=info) for rid in ex.spec.return_ids))
        self._send_reply(key, ex)

    def _actor_enqueue(self: Peer, key: ExecKey) -> None:
        ex = self.exec_tasks[key]
        h = self.hosted.get(ex.spec.actor_id)
        if h is None and ex.spec.actor_id not in self.ended_actors:
            # ACT-023: a caller handed the handle by the owner may beat the owner's
            # CreateActor here (they come over different sessions): hold the call,
            # unstarted, until the actor is created or the wait is over.
            held = sum(len(v) for v in self.held_actor_calls.values())
            if held < self.config.max_held_actor_calls:
                self.held_actor_calls.setdefault(ex.spec.actor_id, []).append((key, self.now_ms))
                self._story(ex.spec.task_id, "held", f"no actor {ex.spec.actor_id} here yet (ACT-023)")
                return
        if h is None or h.state == "dead":
            why = h.death if h is not None else None
            info = ErrorInfo(ErrorCode.ACTOR_DIED, f"no live actor {ex.spec.actor_id} here"
                             + (f" ({why.message})" if why is not None else ""), "ACT-004", why.detail if why else "")
            ex.waiting.clear()
            self._reply_unrun(key, ex, info)
            return
        if ex.spec.actor_seq <= h.last_run.get((key[0], key[1]), 0):
            # ACT-003: a later call of this caller already ran; this one cannot run in order.
            info = ErrorInfo(ErrorCode.WRONG_STATE, f"actor call {ex.spec.actor_seq} arrived after a later one ran", "ACT-003")
            ex.waiting.clear()
            self._reply_unrun(key, ex, info, "late_call")
            return
        h.queue.append(key)

    def _actor_next(self: Peer, h: HostedActor) -> ExecKey | None:
        """The call to start next (ACT-034): the earliest arrival among each caller's
        lowest waiting call (ACT-003, ACT-014) whose arguments are ready; a caller whose
        lowest call still waits for an argument holds back only its own calls."""
        if not h.queue:
            return None
        head = h.queue[0]
        ex = self.exec_tasks[head]
        if ex.spec.actor_seq == h.last_run.get((head[0], head[1]), 0) + 1 and not ex.waiting:
            return head  # the usual case: sessions are FIFO, so calls arrive in order
        lowest: dict[tuple[PeerId, int], int] = {}
        for k in h.queue:
            seq = self.exec_tasks[k].spec.actor_seq
            caller = (k[0], k[1])
            lowest[caller] = min(seq, lowest.get(caller, seq))
        for k in h.queue:
            ex = self.exec_tasks[k]
            if ex.spec.actor_seq == lowest[(k[0], k[1])] and not ex.waiting:
                return k
        return None

    def _actor_may_start(self: Peer, key: ExecKey) -> bool:
        ex = self.exec_tasks[key]
        h = self.hosted.get(ex.spec.actor_id)
        if h is not None and key in h.running:
            # ACT-034: a started call whose fetch failed asked the owner again (OBJ-013);
            # it kept its place and goes on once its argument is known again.
            return h.state == "alive"
        return (h is not None and h.state == "alive" and len(h.running) < h.max_concurrency
                and self._actor_next(h) == key)  # ACT-003: calls start in order; ACT-013

    def _actor_started(self: Peer, key: ExecKey) -> None:
        ex = self.exec_tasks[key]
        h = self.hosted[ex.spec.actor_id]
        if key in h.running:
            return  # started before, and resumed after asking for its argument again
        h.running[key] = None
        if h.queue and h.queue[0] == key:
            h.queue.popleft()
        else:
            h.queue.remove(key)
        h.last_run[(key[0], key[1])] = ex.spec.actor_seq
        self._refuse_overtaken(h, key, ex.spec.actor_seq)

    def _refuse_overtaken(self: Peer, h: HostedActor, key: ExecKey, seq: int) -> None:
        """ACT-014: a call of ``key``'s caller still waiting with an actorSeq no greater
        than ``seq``, which just started, can never start now (ACT-003); it is answered
        at once, as a late call is."""
        for k in [k for k in h.queue if (k[0], k[1]) == (key[0], key[1])
                  and self.exec_tasks[k].spec.actor_seq <= seq]:
            other = self.exec_tasks[k]
            h.queue.remove(k)
            other.waiting.clear()
            info = ErrorInfo(ErrorCode.WRONG_STATE,
                             f"actor call {other.spec.actor_seq} waited while another call with that number started", "ACT-003")
            self._reply_unrun(k, other, info, "late_call")

    def _actor_call_done(self: Peer, key: ExecKey) -> None:
        ex = self.exec_tasks.get(key)
        if ex is None:
            return
        h = self.hosted.get(ex.spec.actor_id)
        if h is None:
            return
        h.running.pop(key, None)
        if key in h.queue:
            # Answered without running (an argument failed, TASK-009; cancelled,
            # TASK-008): it must not hold up the calls behind it.
            h.queue.remove(key)
        self._actor_pump(h)

    def _actor_pump(self: Peer, h: HostedActor) -> None:
        # The next calls in order whose arguments are ready start, as many as the
        # actor may run at once (ACT-003, ACT-013, ACT-034); a call still resolving
        # its arguments holds back its own caller's later calls, no one else's.
        while h.queue and len(h.running) < h.max_concurrency:
            nxt = self._actor_next(h)
            if nxt is None:
                return
            started = len(h.running)
            self._maybe_start(nxt)
            if len(h.running) == started and nxt in h.queue:
                return  # it waits for an argument; those behind it wait for it

    def _actor_owner_died(self: Peer, dead: PeerId) -> None:
        for h in list(self.hosted.values()):
            if h.owner == dead:
                self._out(StopActor(self._sid, h.actor_id))  # FATE-004
                # ACT-038: every call of another caller, queued or running, ends now
                # with ACTOR_DIED; nothing goes to the fenced owner (no ActorStatus).
                info = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {h.actor_id} stopped: its owner {dead} died", "ACT-038")
                self._hosted_actor_dead(h, info, notify=False)
                del self.hosted[h.actor_id]
                self.ended_actors[h.actor_id] = None  # ACT-023: later calls are not held
                while len(self.ended_actors) > ENDED_ACTORS_KEPT:
                    self.ended_actors.popitem(last=False)

    def _unhold_actor_call(self: Peer, key: ExecKey) -> bool:
        """Take ``key`` out of the calls held for their actor's creation (ACT-023); whether it was one."""
        actor_id = self.exec_tasks[key].spec.actor_id
        held = self.held_actor_calls.get(actor_id, [])
        keep = [(k, since) for k, since in held if k != key]
        if len(keep) == len(held):
            return False
        if keep:
            self.held_actor_calls[actor_id] = keep
        else:
            del self.held_actor_calls[actor_id]
        return True

    def _expire_held_actor_calls(self: Peer) -> None:
        """ACT-023: a call whose actor was not created within the wait is answered ACTOR_DIED (ACT-004)."""
        wait = self.config.actor_create_wait_ms
        for actor_id in list(self.held_actor_calls):
            keep = []
            for key, since in self.held_actor_calls[actor_id]:
                ex = self.exec_tasks.get(key)
                if ex is None or ex.state != "resolving":
                    continue  # cancelled, or its caller died (FATE-003)
                if self.now_ms - since < wait:
                    keep.append((key, since))
                    continue
                info = ErrorInfo(ErrorCode.ACTOR_DIED, f"no actor {actor_id} was created here within {wait} ms", "ACT-023")
                ex.waiting.clear()
                self._reply_unrun(key, ex, info)
            if keep:
                self.held_actor_calls[actor_id] = keep
            else:
                del self.held_actor_calls[actor_id]
