"""Tasks at the peer that submitted them: placement, retries, lineage and
reconstruction (TASK-*, RPC-003..006, LIN-*, BOR-006)."""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import replace
from fractions import Fraction
from typing import TYPE_CHECKING

from .errors import LocalUsageError, ProtocolViolation
from .events import ArgSpec, Submit
from .messages import (
    Arg,
    ArgKind,
    CancelTask,
    DEMAND_UNIT,
    ErrorCode,
    ErrorInfo,
    ObjectId,
    PeerId,
    RefDescriptor,
    ResourceAmount,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskId,
    TaskReply,
)
from .state import DEFAULT_DEMAND, NO_DEMAND, Demand, OwnedObject, OwnerTask, Remote

if TYPE_CHECKING:
    from .peer import Peer


class Tasks:
    """Mixin of :class:`Peer`: submitting, placing, retrying and rebuilding tasks."""

    # ============================================================ owner side
    def _build_args(self: Peer, specs: tuple[ArgSpec, ...]) -> tuple[tuple[Arg, ...], tuple[ObjectId, ...]]:
        """Wire arguments plus every object id they mention (BOR-006). Mutates nothing."""
        args: list[Arg] = []
        mentioned: list[ObjectId] = []
        for a in specs:
            if a.object_id:
                self._require_held(a.object_id)
                kind = ArgKind.SHARED if a.shared else ArgKind.REF
                args.append(Arg(kind, ref=self._descriptor(a.object_id)))
                mentioned.append(a.object_id)
            elif a.value is not None:
                nested = []
                for d in a.value.nested:
                    self._require_held(d.object_id)
                    nested.append(self._descriptor(d.object_id))  # task hold: no grant
                    mentioned.append(d.object_id)
                args.append(Arg(ArgKind.VALUE, value=replace(a.value, nested=tuple(nested)) if nested else a.value))
            else:
                raise LocalUsageError(ErrorCode.MALFORMED, "an argument needs a value or an object id")
        return tuple(args), tuple(dict.fromkeys(mentioned))  # one hold per task (BOR-006)

    def _submit(self: Peer, s: Submit) -> None:
        if not s.return_ids and not s.actor_id:
            raise LocalUsageError(ErrorCode.MALFORMED, "a task needs at least one return id")
        for rid in s.return_ids:
            if rid in self.owned or not self._owns(rid):
                raise LocalUsageError(ErrorCode.MALFORMED, f"return id {rid} is reused or not allocated here (ID-003)")
        args, mentioned = self._build_args(s.args)
        demand = _demand(s.num_cpus, s.resources)
        self._note_allocated(s.task_id)  # ID-006
        executor = s.executor
        actor_seq = 0
        if s.actor_id:
            executor, actor_seq = self._actor_route(s.actor_id, executor)
            if self._holds_handle(s.actor_id):
                # ACT-021: the caller's handle stays held while the call is out, so the
                # actor is not reclaimed under it (released with the arguments).
                mentioned = tuple(dict.fromkeys((*mentioned, s.actor_id)))
        # ACT-017: an actor call is never retried, whatever the program asked.
        max_retries, retry_exceptions = (0, False) if s.actor_id else (s.max_retries, s.retry_exceptions)
        # TASK-050: the demand travels with the task, so the executor admits it by it;
        # an actor call takes nothing (ACT-025).
        cpu, named = wire_demand(demand) if not s.actor_id else (0, ())
        spec = SubmitTask(
            s.task_id, s.function, args, s.return_ids, max_retries, retry_exceptions,
            1, s.actor_id, actor_seq, cpu, named,
        )
        for oid in mentioned:
            self._hold(oid, "submitted_task_refs", +1)  # BOR-006
        for rid in s.return_ids:
            e = OwnedObject(rid, "pending", task_id=s.task_id, local_refs=1)  # OWN-001
            self.owned[rid] = e
            self._story(rid, "submitted", s.task_id)
            if self.trace_events:
                self._trace_hold(rid, "local_refs", +1, e)  # the program's handle
        t = OwnerTask(spec, "submitted", executor or "", mentioned, demand=demand, speed_key=s.speed_key)
        self.tasks[s.task_id] = t
        if spec.max_retries > 0 and not spec.actor_id:  # reconstructable (LIN-006)
            t.lineage_counted = True
            for oid in mentioned:
                if oid in self.owned:
                    self.owned[oid].lineage_refs += len(s.return_ids)  # LIN-002: per return entry
                    if self.trace_events:
                        self._trace_hold(oid, "lineage_refs", len(s.return_ids), self.owned[oid])
        self._dispatch(t, explicit=bool(executor))

    def _dispatch(self: Peer, t: OwnerTask, explicit: bool = False) -> None:
        """Send ``t`` now, or queue it until an executor has room for it (TASK-012).

        A named executor (and an actor's host) is used as named. A first attempt goes
        to a live executor with room for its demand, or waits in this peer's queue; a
        retry or a rebuild goes at once to the least loaded executor that can ever run
        it, since something may be waiting for it that holds a slot itself.
        """
        if explicit and t.executor:
            self._send_task(t)
            return
        live = self._task_executors(t.demand)
        if not live:
            # Queued until the end of the stimulus: the pump fails it then if still no
            # executor is live (TASK-022), or sends it to one that became live meanwhile
            # (a restarted worker the shell names in the same stimulus, PeerFailed).
            self._enqueue(t)
            self.pump_due = True
            return
        if t.spec.attempt > 1:
            t.executor = self._place(t.arg_refs, live, t.demand, t)
            self._send_task(t)
            return
        target, holder = self._free_executor(t, live)
        if target:
            t.executor = target
            self._send_task(t)
            return
        self._enqueue(t, holder)

    def _enqueue(self: Peer, t: OwnerTask, holder: PeerId = "") -> None:
        """Keep ``t`` queued (TASK-020): for ``holder``'s slot, or for any executor."""
        self._transition_task(t, "no_slot")
        t.executor = ""
        queue = self.local_queues.setdefault(holder, deque()) if holder else self.ready_queues.setdefault(t.demand, deque())
        queue.append(t.spec.task_id)
        self._story(t.spec.task_id, "queued", holder or "any executor")

    def _send_task(self: Peer, t: OwnerTask) -> None:
        a = self.owned_actors.get(t.spec.actor_id) if t.spec.actor_id else None
        if a is not None and a.state == "dead" and a.error is not None:
            # ACT-016: the owner knows its actor is dead for good: the call fails at once
            # (ACTOR_DIED, ACT-004), with the reason, instead of waiting out ACT-023 at a
            # host that never had it.
            why = a.error if a.error.code is ErrorCode.ACTOR_DIED else ErrorInfo(
                ErrorCode.ACTOR_DIED, f"actor {t.spec.actor_id} is dead: {a.error.message}", "ACT-004")
            self._fail_task(t, why, "actor_dead")
            return
        if not self._is_live(t.executor):
            if t.spec.actor_id:
                info = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {t.spec.actor_id} is dead (host {t.executor})", "ACT-004")
            else:
                info = ErrorInfo(ErrorCode.WORKER_DIED, f"executor {t.executor} is dead", "RPC-004")
            self._fail_task(t, info, "executor_died_final")
            return
        w = self.workers.get(t.executor)
        address = w[0] if w else self._address_of(t.executor)
        # A call to an actor this peer hosts itself goes through the loopback (ACT-021).
        r = self._self_remote if t.executor == self.peer_id else self._remote(t.executor, address)
        if t.spec.attempt > 1 and r.state == "alive" and "recovery" not in r.features:
            # HS-018: no retry can be sent there; settle as if none were left.
            info = ErrorInfo(ErrorCode.WORKER_DIED, f"cannot retry on {t.executor}: recovery not negotiated", "HS-018")
            self._fail_task(t, info, "executor_died_final")
            return
        if t.demand != NO_DEMAND and not t.spec.actor_id:
            # Actor calls take no task slot (TASK-012), nor do tasks that take nothing
            # (TASK-051): neither is in flight for pipelining (TASK-020).
            r.load += 1
            t.counted = True
            key = _key(t)
            quick = self.quick_functions.get(key, False)
            r.in_flight[t.spec.task_id] = (self.now_ms, quick)
            r.slow_in_flight += not quick
            r.keys_in_flight[key] = r.keys_in_flight.get(key, 0) + 1
            _use(r, t.demand, +1)
        if not t.spec.actor_id and r.store_free >= 0:  # TASK-041: until its next reply says otherwise
            r.store_free = max(0, r.store_free - self._missing_bytes(t, t.executor))
        self._story(t.spec.task_id, "dispatch", f"attempt {t.spec.attempt} to {t.executor}")
        self._send(t.executor, t.spec, address)

    def _unload(self: Peer, t: OwnerTask) -> None:
        """``t`` no longer occupies a slot of its executor; queued work may go."""
        if t.counted:
            t.counted = False
            r = self._remote_at(t.executor)
            if r is not None:
                r.load = max(0, r.load - 1)
                sent = r.in_flight.pop(t.spec.task_id, None)
                if sent is not None:
                    r.slow_in_flight -= not sent[1]
                    key = _key(t)
                    left = r.keys_in_flight.get(key, 0) - 1
                    if left > 0:
                        r.keys_in_flight[key] = left
                    else:
                        r.keys_in_flight.pop(key, None)
                _use(r, t.demand, -1)
            self.pump_due = True

    def _learn_speed(self: Peer, t: OwnerTask, r: Remote) -> None:
        """Remember whether ``t``'s function finished quickly this time (TASK-020)."""
        sent = r.in_flight.get(t.spec.task_id)
        if sent is None:
            return
        quick = self.now_ms - sent[0] <= self.config.pipeline_ms
        speeds = self.quick_functions
        key = _key(t)
        speeds.pop(key, None)
        speeds[key] = quick
        if len(speeds) > self.config.speed_keys:
            del speeds[next(iter(speeds))]

    def _no_executor(self: Peer, t: OwnerTask) -> None:
        cpus, named = t.demand
        if not self._live_workers() or (cpus <= 1 and not named):
            why = "no live executor to run the task"
        else:
            wanted = ", ".join([f"{cpus:g} CPU"] + [f"{amount:g} {name}" for name, amount in named])
            why = f"no live executor offers what the task asks for ({wanted})"
        self._fail_task(t, ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, why, "TASK-022"), "no_executor")

    def _live_workers(self: Peer) -> list[PeerId]:
        return [p for p in self.workers if p != self.peer_id and self._is_live(p)]

    def _task_executors(self: Peer, demand: Demand) -> list[PeerId]:
        """The live executors that could ever hold a task's ``demand``; this peer itself
        (an executor that submits from one of its tasks) only when no other could
        (TASK-023): its running task gives its CPU back while it waits (TASK-056)."""
        live = self._capable(demand)
        if live or self.own_slots <= 0:
            return live
        return self._capable(demand, [self.peer_id])

    def _remote_at(self: Peer, p: PeerId) -> Remote | None:
        """The record of executor ``p``; this peer's own for itself (its tasks go
        through the loopback)."""
        return self._self_remote if p == self.peer_id else self.remotes.get(p)

    def _slots_of(self: Peer, p: PeerId) -> int:
        return self.own_slots if p == self.peer_id else self.workers[p][1]

    def _offer_of(self: Peer, p: PeerId) -> dict[str, float]:
        return self.own_resources if p == self.peer_id else self.worker_resources.get(p, {})

    def _capable(self: Peer, demand: Demand, live: list[PeerId] | None = None) -> list[PeerId]:
        """The live executors whose slots and resources could ever hold ``demand``."""
        cpus, named = demand
        live = self._live_workers() if live is None else live
        # A host's pool offers at least the executor's own slots (TASK-040): count the pool
        # only for a demand bigger than those.
        return [p for p in live if (cpus <= self._slots_of(p) or cpus <= self._host_cpus(p)[0])
                and all(amount <= self._offer_of(p).get(name, 0.0) for name, amount in named)]

    def _host_cpus(self: Peer, p: PeerId) -> tuple[float, float, int]:
        """(slots offered, slots taken, tasks in flight) over the live executors of
        ``p``'s host, as this submitter counts them (TASK-040)."""
        offered = taken = 0.0
        load = 0
        for q in self.host_workers.get(self.worker_hosts.get(p, ""), ()):
            if q == p or self._is_live(q):
                offered += self.workers[q][1]
                r = self.remotes.get(q)
                if r is not None:
                    taken += r.used.get("CPU", 0.0)
                    load += r.load
        return offered or self._slots_of(p), taken, load

    def _load(self: Peer, p: PeerId) -> int:
        r = self._remote_at(p)
        return r.load if r else 0

    def _has_slot(self: Peer, p: PeerId, demand: Demand = DEFAULT_DEMAND, key: str = "") -> bool:
        """Room for ``demand`` now, or (for a plain task of the function ``key``) room
        to pipeline one more behind young, quick tasks of that same function (TASK-020)."""
        r = self._remote_at(p)
        if r is None:
            return True
        cpus, named = demand
        for name, amount in named:
            if r.used.get(name, 0.0) + amount > self._offer_of(p).get(name, 0.0):
                return False
        if cpus <= 0:
            return True
        slots = self._slots_of(p)
        offered, taken, load = self._host_cpus(p)
        if r.used.get("CPU", 0.0) < slots and taken + cpus <= offered:
            return True  # a slot free here, and the host's pool holds the task (TASK-040)
        if not key or demand != DEFAULT_DEMAND or r.slow_in_flight or r.load >= slots * self.config.pipeline_depth:
            return False
        if len(r.keys_in_flight) != 1 or key not in r.keys_in_flight:
            return False  # only behind tasks of the same function: another may run long this time
        if r.used.get("CPU", 0.0) > r.load:  # something else holds CPU here (an actor's lifetime demand)
            return False
        if taken > load:  # something bigger than a plain task runs on this host
            return False
        oldest = next(iter(r.in_flight.values()))
        return self.now_ms - oldest[0] <= self.config.pipeline_ms

    def _local_bytes(self: Peer, arg_refs: tuple[ObjectId, ...]) -> dict[PeerId, int]:
        """Bytes of the ``ref`` arguments each peer's store holds, as far as known here."""
        local: dict[PeerId, int] = {}
        for oid in arg_refs:
            e = self.owned.get(oid)
            b = self.borrowed.get(oid)
            locs = list(e.locations) if e else [p for p, _ in b.locations] if b else []
            size = e.size if e else b.size if b else 0
            for p in locs:
                local[p] = local.get(p, 0) + max(size, 0)
        return local

    def _place(self: Peer, arg_refs: tuple[ObjectId, ...], live: list[PeerId] | None = None,
               demand: Demand = DEFAULT_DEMAND, t: OwnerTask | None = None) -> PeerId:
        """Locality if it has room, else the least loaded, room or not (TASK-012), among
        the executors that could ever hold ``demand``; for a task ``t``, those with
        memory for its arguments first (TASK-041); "" when there is none."""
        live = self._task_executors(demand) if live is None else self._capable(demand, live)
        if not live:
            return ""
        local = self._local_bytes(arg_refs) if arg_refs else {}
        fits = self._with_memory(t, live) if t is not None else live
        best = max(live, key=lambda p: local.get(p, 0))
        if local.get(best, 0) > 0 and self._has_slot(best, demand) and best in (fits or live):
            return best
        free_fits = [p for p in fits if self._has_slot(p, demand)]
        return min(free_fits or live, key=self._load)

    def _free_executor(self: Peer, t: OwnerTask, live: list[PeerId]) -> tuple[PeerId, PeerId]:
        """(executor with room now or "", executor the task should wait for or "")."""
        demand = t.demand
        local = self._local_bytes(t.arg_refs) if t.arg_refs else {}
        fits = self._with_memory(t, live)
        if local:
            best = max(live, key=lambda p: local.get(p, 0))
            if local.get(best, 0) >= self.config.locality_bytes and best in (fits or live):
                return (best, "") if self._has_slot(best, demand, _key(t)) else ("", best)
        free = [p for p in live if self._has_slot(p, demand, _key(t))]
        return self._pick(local, [p for p in free if p in fits] or free), ""

    # ------------------------------------------------------------ free memory (TASK-041)
    def _fetched_args(self: Peer, t: OwnerTask) -> tuple[ObjectId, ...]:
        """The objects an executor of ``t`` loads into its store: its ``ref`` arguments."""
        return tuple(dict.fromkeys(a.ref.object_id for a in t.spec.args if a.kind == ArgKind.REF and a.ref is not None))

    def _host_of(self: Peer, p: PeerId) -> str:
        if p == self.peer_id and self.own_host:
            return self.own_host
        return self.worker_hosts.get(p) or f"peer:{p}"

    def _missing_bytes(self: Peer, t: OwnerTask, p: PeerId) -> int:
        """Bytes of ``t``'s ``ref`` arguments of known size that ``p`` would copy into its
        store: those of which this peer knows no copy on ``p``'s host (TASK-041)."""
        host = self._host_of(p)
        missing = 0
        for oid in self._fetched_args(t):
            e = self.owned.get(oid)
            b = self.borrowed.get(oid)
            if e is not None:
                size, locs = e.size, list(e.locations)
            elif b is not None:
                size, locs = b.size, [q for q, _ in b.locations]
            else:
                continue
            if size > 0 and not any(self._host_of(q) == host for q in locs):
                missing += size
        return missing

    def _with_memory(self: Peer, t: OwnerTask, peers: list[PeerId]) -> list[PeerId]:
        """Those of ``peers`` that have memory for ``t``'s arguments as far as this peer
        knows: the free bytes they last reported (less what was sent since) are unknown
        or hold the arguments they would copy (TASK-041)."""
        if not t.spec.args:
            return list(peers)
        out = []
        for p in peers:
            r = self._remote_at(p)
            if r is None or r.store_free < 0 or self._missing_bytes(t, p) <= r.store_free:
                out.append(p)
        return out

    def _pick(self: Peer, local: dict[PeerId, int], free: list[PeerId]) -> PeerId:
        """The free executor holding the most of the arguments, else the least loaded."""
        if not free:
            return ""
        near = max(free, key=lambda p: local.get(p, 0))
        return near if local.get(near, 0) > 0 else min(free, key=self._load)

    def _pump(self: Peer) -> None:
        """Send queued tasks to executors with room, oldest first (TASK-020)."""
        self.pump_due = False
        if not self.ready_queues and not self.local_queues:
            return
        live = self._live_workers()
        for p in list(self.local_queues):
            q = self.local_queues[p]
            if p not in live and p != self.peer_id:  # the holder died: the data is gone with it, go anywhere
                del self.local_queues[p]
                for tid in q:
                    t = self.tasks.get(tid)
                    if t is not None and t.state == "queued":
                        self.ready_queues.setdefault(t.demand, deque()).appendleft(tid)
                continue
            while q:
                t = self.tasks.get(q[0])
                if t is None or t.state != "queued":
                    q.popleft()
                elif self._has_slot(p, t.demand, _key(t)):
                    q.popleft()
                    self._start_queued(t, p)
                else:
                    break
            if not q:
                del self.local_queues[p]
        for demand in list(self.ready_queues):
            q = self.ready_queues[demand]
            capable = self._capable(demand, live) or self._task_executors(demand)
            if not capable:  # nothing left that could ever run them
                del self.ready_queues[demand]
                for tid in q:
                    t = self.tasks.get(tid)
                    if t is not None and t.state == "queued":
                        self._no_executor(t)
                continue
            while q:
                t = self.tasks.get(q[0])
                if t is None or t.state != "queued":
                    q.popleft()
                    continue
                # Oldest first: the head of the queue goes, or nothing of this demand does.
                free = [p for p in capable if self._has_slot(p, demand, _key(t))]
                if not free:
                    break
                q.popleft()
                fits = self._with_memory(t, free)
                self._start_queued(t, self._pick(self._local_bytes(t.arg_refs) if t.arg_refs else {}, fits or free))
            if not q:
                del self.ready_queues[demand]

    def _start_queued(self: Peer, t: OwnerTask, executor: PeerId) -> None:
        self._transition_task(t, "dispatch")
        t.executor = executor
        self._send_task(t)

    def _expedite(self: Peer, oid: ObjectId) -> None:
        """Someone that may hold a slot waits for ``oid``: a queued task making it is
        sent now, whatever the slots say, so that waiting cannot deadlock (TASK-021)."""
        e = self.owned.get(oid)
        t = self.tasks.get(e.task_id) if e is not None and e.task_id else None
        if t is None or t.state != "queued":
            return
        p = self._place(t.arg_refs, None, t.demand, t)
        if p:  # else the next pump fails it
            self._start_queued(t, p)

    def _is_live(self: Peer, peer: PeerId) -> bool:
        r = self.remotes.get(peer)
        if r is None:
            # Never talked to it: live, unless we know one of its incarnations died and
            # have heard of no newer one (do not place work on a crashed worker).
            return not any(p == peer for p, _ in self.fenced)
        return r.state != "dead"

    def _on_TaskReply(self: Peer, r: Remote, reply: TaskReply) -> None:
        # REF-007: a descriptor naming another owner than the entry kept for its object
        # makes the reply malformed; it is disposed of and answered like TASK-019's.
        conflict = self._ref_conflict(reply)
        t = self.tasks.get(reply.task_id)
        if t is None:
            self._drop_reply(reply, r.peer)  # TASK-015, TASK-019: its grants count at their owners all the same
            if conflict:
                raise ProtocolViolation(ErrorCode.MALFORMED, *conflict)
            if not self._allocated(reply.task_id):  # ID-006
                raise ProtocolViolation(ErrorCode.WRONG_STATE, f"no task {reply.task_id}", "GEN-005")
            return
        if t.state == "cancelled" and reply.attempt == t.spec.attempt and r.peer == t.executor and t.holding_args:
            self._drop_reply(reply, r.peer)  # TASK-016
            self._cancelled_task_over(t, "reply")
            if conflict:
                raise ProtocolViolation(ErrorCode.MALFORMED, *conflict)
            return
        if t.state != "submitted" or reply.attempt != t.spec.attempt or r.peer != t.executor:
            self._story(reply.task_id, "stale-reply", f"attempt {reply.attempt} from {r.peer}")  # RPC-006
            self._drop_reply(reply, r.peer)
            if conflict:
                raise ProtocolViolation(ErrorCode.MALFORMED, *conflict)
            return
        self._learn_speed(t, r)
        self._unload(t)
        seq = r.submit_seqs.pop(reply.task_id, None)
        if seq is not None:
            r.requests.pop(seq, None)  # answered: no longer a request an error could end (ERR-003)
        r.store_free = max(-1, reply.store_free_bytes)  # OBJ-060, TASK-041: the latest word
        if conflict:
            # REF-007 through TASK-019: dispose, fail every return MALFORMED, no retry.
            self._drop_reply(reply, r.peer)
            info = ErrorInfo(ErrorCode.MALFORMED, f"the reply to {reply.task_id} is malformed: {conflict[0]}", conflict[1])
            self._fail_task(t, info, "rejected")
            raise ProtocolViolation(ErrorCode.MALFORMED, info.message, conflict[1])
        if tuple(rv.object_id for rv in reply.returns) != t.spec.return_ids or not all(_well_formed(rv, r.peer) for rv in reply.returns):
            # TASK-019, VAL-019: a reply that does not match the task would leave returns pending for ever.
            self._drop_reply(reply, r.peer)
            info = ErrorInfo(ErrorCode.MALFORMED, f"the reply to {reply.task_id} does not list its return ids", "TASK-019")
            self._fail_task(t, info, "rejected")
            raise ProtocolViolation(ErrorCode.MALFORMED, info.message, "TASK-019")
        raised = any(rv.kind == ReturnKind.ERROR and rv.error and rv.error.code == ErrorCode.TASK_FAILED for rv in reply.returns)
        if raised and t.spec.retry_exceptions and t.spec.attempt <= t.spec.max_retries:
            self._drop_reply(reply, r.peer)
            self._transition_task(t, "reply_retry")  # RPC-005
            self._retry(t)
            return
        self._transition_task(t, "reply")
        for rv in reply.returns:
            self._take_return(rv)
        self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)
        else:
            self._keep_lineage(t)

    @staticmethod
    def _used_nested(rv: ReturnValue) -> tuple[RefDescriptor, ...]:
        """The refs ``rv`` returns, from the member its kind reads (VAL-019, TASK-017)."""
        if rv.kind == ReturnKind.INLINE:
            return rv.value.nested if rv.value else ()
        return rv.nested if rv.kind == ReturnKind.STORED else ()

    @staticmethod
    def _unused_nested(rv: ReturnValue) -> tuple[RefDescriptor, ...]:
        """Descriptors in the members ``rv``'s kind does not read (VAL-020): never kept,
        but grants made out to us there are still given back (BOR-013)."""
        if rv.kind == ReturnKind.INLINE:
            unused = rv.nested
        elif rv.kind == ReturnKind.STORED:
            unused = rv.value.nested if rv.value else ()
        else:
            unused = (rv.value.nested if rv.value else ()) + rv.nested
        if not unused:
            return ()
        used = {(d.object_id, d.forward_id) for d in Tasks._used_nested(rv)}
        seen: set[tuple[str, str]] = set()
        out = []
        for d in unused:  # a grant named twice is given back once, and never one we keep
            k = (d.object_id, d.forward_id)
            if k not in used and k not in seen:
                seen.add(k)
                out.append(d)
        return tuple(out)

    def _take_return(self: Peer, rv: ReturnValue) -> None:
        e = self.owned.get(rv.object_id)
        nested = self._used_nested(rv)
        self._drop_nested_grants(self._unused_nested(rv))
        if e is None or e.state != "pending":
            # Re-executed for another return (LIN-003), or nobody wants it any more.
            # A re-executed stored copy of a ready object is freed, never recorded: its
            # bytes may differ from the recorded copies' (LIN-007, LOC-008).
            if rv.kind == ReturnKind.STORED and not (e is not None and rv.location in e.locations):
                self.pending_frees.setdefault(rv.location, []).append(rv.object_id)
            self._drop_nested_grants(nested)
            return
        if rv.kind == ReturnKind.INLINE and rv.value is not None:
            # Grants are ours, not for whoever reads the value later (BOR-017).
            e.value = replace(rv.value, nested=tuple(replace(d, forward_id="") for d in nested)) if nested else rv.value
            e.size = rv.value.size
            self._transition_owned(e, "task_succeeded")
        elif rv.kind == ReturnKind.STORED:
            e.locations = {rv.location: None}
            e.size = rv.size
            if self.trace_events:
                self._trace("location-added", rv.object_id, peer=rv.location, primary=True)
            self._transition_owned(e, "task_succeeded")
        else:
            e.error = rv.error or ErrorInfo(ErrorCode.TASK_FAILED, "no error detail")
            # TASK-018: the raised exception, kept for this peer's program
            e.cause = rv.value if rv.value is not None and not rv.value.nested else None
            self._transition_owned(e, "task_failed")
            nested = ()
        self._hold_nested(rv.object_id, nested)
        e.nested = tuple(replace(d, forward_id="") for d in nested) if nested else ()
        self._object_settled(rv.object_id)
        self._check_owned(rv.object_id)

    def _drop_nested_grants(self: Peer, nested: tuple[RefDescriptor, ...]) -> None:
        """Grants made out to us for a value we won't keep are released at once."""
        for d in nested:
            if d.forward_id and d.owner != self.peer_id and self._refs_agree(d):  # REF-007: never merged
                b = self._borrowed_entry(d)
                b.grants[d.forward_id] = None
                self._check_borrowed(d.object_id)

    def _drop_reply(self: Peer, reply: TaskReply, sender: PeerId) -> None:
        """TASK-015: release what a reply we don't adopt made out to us. A stored
        return is freed at the reply's sender, whatever location it names (VAL-019)."""
        for rv in reply.returns:
            self._drop_nested_grants(self._used_nested(rv) + self._unused_nested(rv))
            if rv.kind == ReturnKind.STORED:
                e = self.owned.get(rv.object_id)
                if e is None or sender not in e.locations:
                    self.pending_frees.setdefault(sender, []).append(rv.object_id)

    def _release_task_args(self: Peer, t: OwnerTask) -> None:
        if t.holding_args:
            t.holding_args = False
            for oid in t.arg_refs:
                self._hold(oid, "submitted_task_refs", -1)

    def _forget_task(self: Peer, t: OwnerTask) -> None:
        """Drop a task record once no return of it has an entry and it holds nothing."""
        if not t.holding_args:
            self.tasks.pop(t.spec.task_id, None)
            self._unkeep_lineage(t)

    # ------------------------------------------------------------ lineage bound
    def _keep_lineage(self: Peer, t: OwnerTask) -> None:
        """A settled reconstructable task stays as lineage; evict the oldest over the bound (LIN-010)."""
        tid = t.spec.task_id
        if not t.lineage_counted or tid in self.lineage or self.tasks.get(tid) is not t:
            return
        cost = lineage_cost(t.spec)
        self.lineage[tid] = cost
        self.lineage_bytes += cost
        while self.lineage_bytes > self.config.max_lineage_bytes and self.lineage:
            self._evict_lineage(self.tasks[next(iter(self.lineage))])

    def _unkeep_lineage(self: Peer, t: OwnerTask) -> None:
        cost = self.lineage.pop(t.spec.task_id, None)
        if cost is not None:
            self.lineage_bytes -= cost

    def _evict_lineage(self: Peer, t: OwnerTask) -> None:
        """Forget ``t``'s specification (LIN-005, LIN-010): its returns can no longer be
        rebuilt, it stops counting in its arguments' lineageRefs, and returns kept only
        as lineage (``released``) are deleted."""
        self._unkeep_lineage(t)
        self.tasks.pop(t.spec.task_id, None)
        self._story(t.spec.task_id, "lineage_evicted", f"{self.lineage_bytes} bytes of lineage left")
        alive = [self.owned[rid] for rid in t.spec.return_ids if rid in self.owned]
        for e in alive:
            e.lineage_evicted = True
            for oid in t.arg_refs:
                a = self.owned.get(oid)
                if a is not None:
                    a.lineage_refs -= 1
                    if self.trace_events:
                        self._trace_hold(oid, "lineage_refs", -1, a)
        t.lineage_counted = False
        for e in alive:
            if e.state == "released":
                self._transition_owned(e, "lineage_evicted")
                self._delete_owned(e.object_id)
        for oid in dict.fromkeys(t.arg_refs):
            if oid in self.owned:
                self._check_owned(oid)

    def _evicted_argument(self: Peer, t: OwnerTask) -> ObjectId:
        """An argument of ``t`` that this peer owned but deleted with evicted lineage."""
        for oid in t.arg_refs:
            if oid not in self.owned and oid not in self.borrowed and self._owns(oid):
                return oid
        return ""

    def _unrebuildable_argument(self: Peer, t: OwnerTask) -> ObjectId:
        """An owned argument of ``t`` that is ``released`` and that nothing can re-create:
        a ``put`` object, an actor call's return, or a return of a task that may not
        run again (LIN-006, RPC-009)."""
        for oid in t.arg_refs:
            e = self.owned.get(oid)
            if e is not None and e.state == "released" and not self._rebuildable(self.tasks.get(e.task_id) if e.task_id else None):
                return oid
        return ""

    def _return_deleted(self: Peer, t: OwnerTask) -> None:
        """One return entry of ``t`` is gone: it no longer needs its arguments' lineage (LIN-002)."""
        if t.lineage_counted:
            for oid in t.arg_refs:
                e = self.owned.get(oid)
                if e is not None:
                    e.lineage_refs -= 1
                    if self.trace_events:
                        self._trace_hold(oid, "lineage_refs", -1, e)
                    self._check_owned(oid)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    _OBJECT_EVENT = {
        "executor_died_final": "executor_died_final",
        "no_executor": "no_executor",
        "actor_dead": "actor_dead",
        "cancel": "cancelled",
        "rejected": "rejected",
        "lineage_evicted": "lineage_evicted",
        "argument_lost": "argument_lost",
    }

    def _fail_task(self: Peer, t: OwnerTask, info: ErrorInfo, event: str) -> None:
        """Settle every return of ``t`` with ``info``; arguments are released unless cancelled."""
        self._transition_task(t, event)
        for rid in t.spec.return_ids:
            e = self.owned.get(rid)
            if e is not None and e.state == "pending":
                e.error, e.cause = info, None
                self._transition_owned(e, self._OBJECT_EVENT[event])
                self._object_settled(rid)
                self._check_owned(rid)
        if event != "cancel":  # TASK-014: a cancelled task keeps its holds until its reply
            self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)
        elif event != "cancel":
            self._keep_lineage(t)

    def _retry(self: Peer, t: OwnerTask) -> None:
        """Send the task again as a new attempt (RPC-004, RPC-005, LIN-003)."""
        t.spec = replace(t.spec, attempt=t.spec.attempt + 1)
        self._unkeep_lineage(t)
        if not t.holding_args:
            t.holding_args = True
            for oid in t.arg_refs:
                if oid in self.owned or oid in self.borrowed:
                    self._hold(oid, "submitted_task_refs", +1)
        gone = self._evicted_argument(t)
        if gone:
            info = ErrorInfo(ErrorCode.LINEAGE_EVICTED, f"rebuilding needs {gone}, whose lineage was evicted", "LIN-005")
            self._fail_task(t, info, "lineage_evicted")
            return
        stuck = self._unrebuildable_argument(t)
        if stuck:  # LIN-014: decided now, before any argument is rebuilt or the task sent
            info = ErrorInfo(ErrorCode.OBJECT_LOST, f"rebuilding needs {stuck}, which was released and cannot be rebuilt", "LIN-014")
            self._fail_task(t, info, "argument_lost")
            return
        for oid in t.arg_refs:
            e = self.owned.get(oid)
            if e is not None and e.state == "released":
                self._reconstruct(e)  # LIN-004
        self._dispatch(t, explicit=bool(t.spec.actor_id))

    def _can_rerun(self: Peer, t: OwnerTask | None) -> bool:
        return t is not None and not t.spec.actor_id and t.spec.attempt <= t.spec.max_retries

    @staticmethod
    def _rerunning(t: OwnerTask | None) -> bool:
        """A reconstructable task already sent again: it will produce every return (LIN-007)."""
        return t is not None and t.state == "submitted" and not t.spec.actor_id and t.spec.max_retries > 0

    def _rebuildable(self: Peer, t: OwnerTask | None) -> bool:
        """A lost or released return of ``t`` can come back: ``t`` is being re-run, or may be."""
        return self._rerunning(t) or self._can_rerun(t)

    def _reconstruct(self: Peer, e: OwnedObject) -> None:
        t = self.tasks.get(e.task_id)
        if not self._rebuildable(t):
            self._story(e.object_id, "not-reconstructable", e.task_id)
            return
        self._transition_owned(e, "reconstruct")
        assert t is not None
        if t.state == "submitted":
            return  # already being re-run for another return
        for rid in t.spec.return_ids:
            other = self.owned.get(rid)
            if other is not None and other is not e and other.state == "released":
                self._transition_owned(other, "reconstruct")
        self._transition_task(t, "reconstruct")
        self._retry(t)

    def _object_lost(self: Peer, oid: ObjectId) -> None:
        """The last copy of an owned value is gone (LOC-004, LIN-003)."""
        e = self.owned[oid]
        self._drop_relays(e, "lost")  # relays of the lost stored form serve nothing that is still valid (LOC-022)
        # GC-003: the refs the lost value held go with it; a rebuilt reply's own take new holds.
        nested, e.nested = e.nested, ()
        self._release_nested(oid, nested)
        t = self.tasks.get(e.task_id) if e.task_id else None
        if self._rebuildable(t):
            # If t is already being re-run for another lost return, that run makes
            # this one too: it costs no second attempt (LIN-007, RPC-009).
            assert t is not None
            self._transition_owned(e, "copy_lost_reconstruct")
            if t.state != "submitted":
                for rid in t.spec.return_ids:
                    other = self.owned.get(rid)
                    if other is not None and other.state == "released":
                        self._transition_owned(other, "reconstruct")
                self._transition_task(t, "reconstruct")
                self._retry(t)
            return
        if e.lineage_evicted:
            e.cause = None
            e.error = ErrorInfo(ErrorCode.LINEAGE_EVICTED, f"every copy of {oid} is lost and its lineage was evicted", "LIN-005")
        else:
            e.cause = None
            e.error = ErrorInfo(ErrorCode.OBJECT_LOST, f"every copy of {oid} is lost and it cannot be rebuilt", "LIN-003")
        self._transition_owned(e, "copy_lost_final")
        self._object_settled(oid)

    def _cancel(self: Peer, task_id: str) -> None:
        t = self.tasks.get(task_id)
        if t is None or t.state not in ("submitted", "queued"):
            return
        queued = t.state == "queued"
        if t.executor and not queued:
            self._send(t.executor, CancelTask(task_id))
        self._fail_task(t, ErrorInfo(ErrorCode.TASK_CANCELLED, f"task {task_id} was cancelled", "TASK-008"), "cancel")
        if queued:  # never sent: nothing will answer, so the holds go now
            self._release_task_args(t)
            if not any(rid in self.owned for rid in t.spec.return_ids):
                self._forget_task(t)

    def _cancelled_task_over(self: Peer, t: OwnerTask, event: str) -> None:
        """TASK-014, TASK-016: the reply came or the executor died; release the holds now."""
        self._transition_task(t, event)
        self._unload(t)
        self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    def _transition_task(self: Peer, t: OwnerTask, event: str) -> None:
        self._transition("owner-task", t, t.spec.task_id, event)


def _demand(num_cpus: float, resources: tuple[tuple[str, float], ...]) -> Demand:
    """A task's or actor's demand in canonical form (one queue per distinct demand)."""
    if not resources and num_cpus >= 0:
        return float(num_cpus), ()
    if num_cpus < 0 or any(amount < 0 for _, amount in resources):
        raise LocalUsageError(ErrorCode.MALFORMED, "num_cpus and resources must not be negative")
    return float(num_cpus), tuple(sorted((str(n), float(a)) for n, a in resources if a > 0))


#: The largest CPU demand a SubmitTask can carry (UInt32 ten-thousandths); a larger
#: one is sent as this, which every executor runs alone anyway (TASK-052).
MAX_CPU_UNITS = 2**32 - 1
MAX_RESOURCE_UNITS = 2**64 - 1


@functools.lru_cache(maxsize=4096)
def to_units(amount: float, limit: int) -> int:
    """``amount`` in ten-thousandths as TASK-050 defines it, at most ``limit``: the
    decimal number its shortest round-trip form (``repr``) writes, times 10,000 computed
    exactly, rounded up, so 0.14 is 1400 (not the 1401 of binary arithmetic) and a demand
    that is not 0 never becomes 0. Submitter and worker convert alike (CLU-059).
    Cached: a program uses few distinct demands, and exact arithmetic is slow."""
    amount = float(amount)
    if not amount > 0:
        return 0
    if math.isinf(amount):
        return limit
    return min(math.ceil(Fraction(repr(amount)) * DEMAND_UNIT), limit)


def wire_demand(demand: Demand) -> tuple[int, tuple[ResourceAmount, ...]]:
    """A demand as ``SubmitTask`` carries it: CPU and named resources in ten-thousandths (TASK-050)."""
    cpus, named = demand
    return (to_units(cpus, MAX_CPU_UNITS),
            tuple(ResourceAmount(name, to_units(amount, MAX_RESOURCE_UNITS)) for name, amount in named))


def _key(t: OwnerTask) -> str:
    """The function ``t`` runs, as TASK-020 judges speed: its shipped code, else its name."""
    return t.speed_key or t.spec.function


def _use(r: Remote, demand: Demand, sign: int) -> None:
    """Count ``demand`` in (sign +1) or out (-1) of what is used on ``r``'s peer."""
    cpus, named = demand
    for name, amount in (("CPU", cpus), *named) if named else (("CPU", cpus),):
        if amount:
            left = r.used.get(name, 0.0) + sign * amount
            if left > 1e-9:
                r.used[name] = left
            else:
                r.used.pop(name, None)
def _well_formed(rv: ReturnValue, sender: PeerId) -> bool:
    """VAL-019: a return carries the member its kind needs; a stored one names its
    sender, the only holder whose address the submitter is sure to know."""
    if rv.kind == ReturnKind.INLINE:
        return rv.value is not None
    if rv.kind == ReturnKind.STORED:
        return rv.location == sender and rv.size >= 16
    return rv.error is not None


def lineage_cost(spec: SubmitTask) -> int:
    """Bytes a task specification counts against the lineage bound (LIN-010)."""
    return 256 + len(spec.function) + sum(a.value.size if a.value is not None else 64 for a in spec.args)
