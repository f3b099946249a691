"""Tasks at their owner and at their executor; RPC semantics and lineage
(TASK-*, RPC-*, LIN-*, BOR-002, BOR-006, BOR-007)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import LocalUsageError, ProtocolViolation
from .events import ArgSpec, FreeCopy, ResolvedArg, RunTask, StopTask, Submit, TaskFinished
from .messages import (
    Arg,
    ArgKind,
    BorrowRelease,
    CancelTask,
    ErrorCode,
    ErrorInfo,
    ObjectId,
    PeerId,
    RefDescriptor,
    RegisterBorrower,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)
from .state import ExecTask, OutgoingRegistration, OwnedObject, OwnerTask, Remote

if TYPE_CHECKING:
    from .peer import Peer

ExecKey = tuple[PeerId, int, str, int]


class Tasks:
    """Mixin of :class:`Peer`: submitting, executing, replying, retrying, rebuilding."""

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
                args.append(Arg(ArgKind.VALUE, value=replace(a.value, nested=tuple(nested))))
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
        executor = s.executor
        actor_seq = 0
        if s.actor_id:
            executor, actor_seq = self._actor_route(s.actor_id, executor)
        spec = SubmitTask(
            s.task_id, s.function, args, s.return_ids, s.max_retries, s.retry_exceptions,
            1, s.actor_id, actor_seq,
        )
        for oid in mentioned:
            self._hold(oid, "submitted_task_refs", +1)  # BOR-006
        for rid in s.return_ids:
            e = OwnedObject(rid, "pending", task_id=s.task_id, local_refs=1)  # OWN-001
            self.owned[rid] = e
            self._story(rid, "submitted", s.task_id)
        t = OwnerTask(spec, "submitted", executor or "", mentioned)
        self.tasks[s.task_id] = t
        if spec.max_retries > 0 and not spec.actor_id:  # reconstructable (LIN-006)
            t.lineage_counted = True
            for oid in mentioned:
                if oid in self.owned:
                    self.owned[oid].lineage_refs += len(s.return_ids)  # LIN-002: per return entry
        self._dispatch(t, explicit=bool(executor))

    def _dispatch(self: Peer, t: OwnerTask, explicit: bool = False) -> None:
        if not explicit or not t.executor:
            t.executor = self._place(t.arg_refs)
        if not t.executor:
            info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, "no live executor to run the task")
            self._fail_task(t, info, "executor_died_final")
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
        r = self._remote(t.executor, address)
        if t.spec.attempt > 1 and r.state == "alive" and "recovery" not in r.features:
            # HS-018: no retry can be sent there; settle as if none were left.
            info = ErrorInfo(ErrorCode.WORKER_DIED, f"cannot retry on {t.executor}: recovery not negotiated", "HS-018")
            self._fail_task(t, info, "executor_died_final")
            return
        r.load += 1
        self._story(t.spec.task_id, "dispatch", f"attempt {t.spec.attempt} to {t.executor}")
        self._send(t.executor, t.spec, address)

    def _place(self: Peer, arg_refs: tuple[ObjectId, ...]) -> PeerId:
        """Locality first, then least loaded (spec: placement SHOULD)."""
        live = [p for p in self.workers if p != self.peer_id and self._is_live(p)]
        if not live:
            return ""
        local_bytes: dict[PeerId, int] = {}
        for oid in arg_refs:
            e = self.owned.get(oid)
            b = self.borrowed.get(oid)
            locs = list(e.locations) if e else [p for p, _ in b.locations] if b else []
            size = e.size if e else b.size if b else 0
            for p in locs:
                local_bytes[p] = local_bytes.get(p, 0) + max(size, 0)

        def load(p: PeerId) -> int:
            r = self.remotes.get(p)
            return r.load if r else 0

        best = max(live, key=lambda p: local_bytes.get(p, 0))
        if local_bytes.get(best, 0) > 0 and load(best) < self.workers[best][1]:
            return best
        return min(live, key=load)

    def _is_live(self: Peer, peer: PeerId) -> bool:
        r = self.remotes.get(peer)
        if r is None:
            # Never talked to it: live, unless we know one of its incarnations died and
            # have heard of no newer one (do not place work on a crashed worker).
            return not any(p == peer for p, _ in self.fenced)
        return r.state != "dead"

    def _on_TaskReply(self: Peer, r: Remote, reply: TaskReply) -> None:
        t = self.tasks.get(reply.task_id)
        if t is None:
            if not self._owns(reply.task_id):
                raise ProtocolViolation(ErrorCode.WRONG_STATE, f"no task {reply.task_id}", "GEN-005")
            self._drop_reply(reply)
            return
        if t.state == "cancelled" and reply.attempt == t.spec.attempt and r.peer == t.executor and t.holding_args:
            self._drop_reply(reply)  # TASK-016
            self._cancelled_task_over(t, "reply")
            return
        if t.state != "submitted" or reply.attempt != t.spec.attempt or r.peer != t.executor:
            self._story(reply.task_id, "stale-reply", f"attempt {reply.attempt} from {r.peer}")  # RPC-006
            self._drop_reply(reply)
            return
        r.load = max(0, r.load - 1)
        raised = any(rv.kind == ReturnKind.ERROR and rv.error and rv.error.code == ErrorCode.TASK_FAILED for rv in reply.returns)
        if raised and t.spec.retry_exceptions and t.spec.attempt <= t.spec.max_retries:
            self._drop_reply(reply)
            self._transition_task(t, "reply_retry")  # RPC-005
            self._retry(t)
            return
        self._transition_task(t, "reply")
        for rv in reply.returns:
            self._take_return(rv)
        self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    def _take_return(self: Peer, rv: ReturnValue) -> None:
        e = self.owned.get(rv.object_id)
        nested = rv.value.nested if rv.kind == ReturnKind.INLINE and rv.value else rv.nested
        if e is None or e.state != "pending":
            # Re-executed for another return (LIN-003), or nobody wants it any more.
            if rv.kind == ReturnKind.STORED:
                if e is not None and e.state == "ready":
                    e.locations[rv.location] = None
                    return
                self.pending_frees.setdefault(rv.location, []).append(rv.object_id)
            self._drop_nested_grants(nested)
            return
        if rv.kind == ReturnKind.INLINE and rv.value is not None:
            # Grants are ours, not for whoever reads the value later (BOR-017).
            e.value = replace(rv.value, nested=tuple(replace(d, forward_id="") for d in nested))
            e.size = rv.value.size
            self._transition_owned(e, "task_succeeded")
        elif rv.kind == ReturnKind.STORED:
            e.locations = {rv.location: None}
            e.size = rv.size
            self._transition_owned(e, "task_succeeded")
        else:
            e.error = rv.error or ErrorInfo(ErrorCode.TASK_FAILED, "no error detail")
            self._transition_owned(e, "task_failed")
            nested = ()
        self._hold_nested(rv.object_id, nested)
        e.nested = tuple(replace(d, forward_id="") for d in nested)
        self._object_settled(rv.object_id)
        self._check_owned(rv.object_id)

    def _drop_nested_grants(self: Peer, nested: tuple[RefDescriptor, ...]) -> None:
        """Grants made out to us for a value we won't keep are released at once."""
        for d in nested:
            if d.forward_id and d.owner != self.peer_id:
                b = self._borrowed_entry(d)
                b.grants[d.forward_id] = None
                self._check_borrowed(d.object_id)

    def _drop_reply(self: Peer, reply: TaskReply) -> None:
        """TASK-015: release what a reply we don't adopt made out to us."""
        for rv in reply.returns:
            nested = rv.value.nested if rv.value else rv.nested
            self._drop_nested_grants(nested)
            if rv.kind == ReturnKind.STORED:
                e = self.owned.get(rv.object_id)
                if e is None or rv.location not in e.locations:
                    self.pending_frees.setdefault(rv.location, []).append(rv.object_id)

    def _release_task_args(self: Peer, t: OwnerTask) -> None:
        if t.holding_args:
            t.holding_args = False
            for oid in t.arg_refs:
                self._hold(oid, "submitted_task_refs", -1)

    def _forget_task(self: Peer, t: OwnerTask) -> None:
        """Drop a task record once no return of it has an entry and it holds nothing."""
        if not t.holding_args:
            self.tasks.pop(t.spec.task_id, None)

    def _return_deleted(self: Peer, t: OwnerTask) -> None:
        """One return entry of ``t`` is gone: it no longer needs its arguments' lineage (LIN-002)."""
        if t.lineage_counted:
            for oid in t.arg_refs:
                e = self.owned.get(oid)
                if e is not None:
                    e.lineage_refs -= 1
                    self._check_owned(oid)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    _OBJECT_EVENT = {"executor_died_final": "executor_died_final", "cancel": "cancelled", "rejected": "task_failed"}

    def _fail_task(self: Peer, t: OwnerTask, info: ErrorInfo, event: str) -> None:
        """Settle every return of ``t`` with ``info``; arguments are released unless cancelled."""
        self._transition_task(t, event)
        for rid in t.spec.return_ids:
            e = self.owned.get(rid)
            if e is not None and e.state == "pending":
                e.error = info
                self._transition_owned(e, self._OBJECT_EVENT[event])
                self._object_settled(rid)
                self._check_owned(rid)
        if event != "cancel":  # TASK-014: a cancelled task keeps its holds until its reply
            self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    def _retry(self: Peer, t: OwnerTask) -> None:
        """Send the task again as a new attempt (RPC-004, RPC-005, LIN-003)."""
        t.spec = replace(t.spec, attempt=t.spec.attempt + 1)
        if not t.holding_args:
            t.holding_args = True
            for oid in t.arg_refs:
                if oid in self.owned or oid in self.borrowed:
                    self._hold(oid, "submitted_task_refs", +1)
        for oid in t.arg_refs:
            e = self.owned.get(oid)
            if e is not None and e.state == "released":
                self._reconstruct(e)  # LIN-004
        self._dispatch(t, explicit=bool(t.spec.actor_id))

    def _can_rerun(self: Peer, t: OwnerTask | None) -> bool:
        return t is not None and not t.spec.actor_id and t.spec.attempt <= t.spec.max_retries

    def _reconstruct(self: Peer, e: OwnedObject) -> None:
        t = self.tasks.get(e.task_id)
        if not self._can_rerun(t):
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
        t = self.tasks.get(e.task_id) if e.task_id else None
        if self._can_rerun(t):
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
        e.error = ErrorInfo(ErrorCode.OBJECT_LOST, f"every copy of {oid} is lost and it cannot be rebuilt", "LIN-003")
        self._transition_owned(e, "copy_lost_final")
        self._object_settled(oid)

    def _cancel(self: Peer, task_id: str) -> None:
        t = self.tasks.get(task_id)
        if t is None or t.state != "submitted":
            return
        if t.executor:
            self._send(t.executor, CancelTask(task_id))
        self._fail_task(t, ErrorInfo(ErrorCode.TASK_CANCELLED, f"task {task_id} was cancelled", "TASK-008"), "cancel")

    def _cancelled_task_over(self: Peer, t: OwnerTask, event: str) -> None:
        """TASK-014, TASK-016: the reply came or the executor died; release the holds now."""
        self._transition_task(t, event)
        r = self.remotes.get(t.executor)
        if r is not None:
            r.load = max(0, r.load - 1)
        self._release_task_args(t)
        if not any(rid in self.owned for rid in t.spec.return_ids):
            self._forget_task(t)

    def _transition_task(self: Peer, t: OwnerTask, event: str) -> None:
        self._transition("owner-task", t, t.spec.task_id, event)

    # ============================================================ executor side
    def _on_SubmitTask(self: Peer, r: Remote, spec: SubmitTask) -> None:
        key: ExecKey = (r.peer, r.incarnation, spec.task_id, spec.attempt)
        ex = self.exec_tasks.get(key)
        if ex is not None:  # RPC-001: a duplicate request
            if ex.reply is not None and ex.state == "replied":
                self._send(r.peer, ex.reply)
            self._story(spec.task_id, "duplicate-request", ex.state)
            return
        held: list[ObjectId] = []
        waiting: dict[int, ObjectId] = {}
        for i, a in enumerate(spec.args):
            refs = [a.ref] if a.ref is not None else list(a.value.nested) if a.value else []
            for d in refs:
                if not (d.owner == self.peer_id and d.owner_incarnation == self.incarnation):
                    self._borrowed_entry(d).task_holds += 1  # BOR-001 (b)
                    held.append(d.object_id)
            if a.kind == ArgKind.REF and a.ref is not None:
                waiting[i] = a.ref.object_id
        ex = ExecTask(spec, r.peer, r.incarnation, "resolving", tuple(held), waiting)
        self.exec_tasks[key] = ex
        self.exec_index[(spec.task_id, spec.attempt)] = key
        self._story(spec.task_id, "received", f"from {r.peer} attempt {spec.attempt}")
        if spec.actor_id:
            self._actor_enqueue(key)
        for i, oid in list(waiting.items()):
            if self._resolution(oid) is not None:
                del waiting[i]
            else:
                self.arg_waiters.setdefault(oid, []).append(key)
                b = self.borrowed.get(oid)
                if b is not None:
                    self._request_status(b)  # TASK-002
        self._maybe_start(key)

    def _arg_resolved(self: Peer, key: ExecKey, oid: ObjectId) -> None:
        ex = self.exec_tasks.get(key)
        if ex is None:
            return
        for i in [i for i, o in ex.waiting.items() if o == oid]:
            del ex.waiting[i]
        self._maybe_start(key)

    def _maybe_start(self: Peer, key: ExecKey) -> None:
        ex = self.exec_tasks[key]
        if ex.state != "resolving" or ex.waiting:
            return
        if ex.spec.actor_id and not self._actor_may_start(key):
            return
        resolved: list[ResolvedArg] = []
        for a in ex.spec.args:
            if a.kind == ArgKind.VALUE:
                resolved.append(ResolvedArg(value=a.value))
            elif a.kind == ArgKind.SHARED:
                resolved.append(ResolvedArg(ref=a.ref))
            else:
                assert a.ref is not None
                value, locations, size, error = self._resolution(a.ref.object_id) or (None, (), -1, None)
                if error is not None:  # TASK-009
                    if key in self.actor_creations:
                        self._creation_failed(key, error)
                        return
                    self._transition_exec(ex, "arg_failed")
                    rets = tuple(ReturnValue(rid, ReturnKind.ERROR, error=error) for rid in ex.spec.return_ids)
                    ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, rets)
                    self._send_reply(key, ex)
                    return
                resolved.append(ResolvedArg(value=value, object_id=a.ref.object_id, locations=locations, size=size))
        if ex.cancelled:
            self._transition_exec(ex, "cancel")
            info = ErrorInfo(ErrorCode.TASK_CANCELLED, "cancelled before it ran", "TASK-008")
            ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(ReturnValue(rid, ReturnKind.ERROR, error=info) for rid in ex.spec.return_ids))
            self._send_reply(key, ex)
            return
        self._transition_exec(ex, "args_ready")
        if key in self.actor_creations:
            self._creation_started(key, ex, tuple(resolved))
            return
        if ex.spec.actor_id:
            self._actor_started(key)
        self._out(RunTask(self._sid, ex.spec.task_id, ex.spec.attempt, ex.spec.function, tuple(resolved), ex.spec.return_ids, ex.owner, ex.spec.actor_id))

    def _task_finished(self: Peer, s: TaskFinished) -> None:
        key = self.exec_index.get((s.task_id, s.attempt))
        ex = self.exec_tasks.get(key) if key else None
        if ex is None or ex.state != "running":
            # Owner gone, task cancelled or actor killed (FATE-003, FATE-008, TASK-008,
            # ACT-006): nobody will claim these values, so stored copies go at once.
            rids = ex.spec.return_ids if ex else self.dropped_returns.pop((s.task_id, s.attempt), ())
            for rid, res in zip(rids, s.results):
                if res.stored:
                    self.copies.pop(rid, None)
                    self.primaries.discard(rid)
                    self._out(FreeCopy(self._sid, rid))
            self._story(s.task_id, "finished-unclaimed", ex.state if ex else "unknown")
            return
        assert key is not None
        if len(s.results) != len(ex.spec.return_ids):
            raise LocalUsageError(ErrorCode.MALFORMED, f"task {s.task_id} has {len(ex.spec.return_ids)} returns, got {len(s.results)}")
        for res in s.results:  # check everything first: a refused stimulus changes nothing
            if res.error is None and res.value is None:
                raise LocalUsageError(ErrorCode.MALFORMED, f"a return of {s.task_id} has neither value nor error")
            for d in res.value.nested if res.value is not None and res.error is None else ():
                if not (d.owner == ex.owner) and d.object_id not in self.owned and d.object_id not in self.borrowed:
                    raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
        returns: list[ReturnValue] = []
        for index, (rid, res) in enumerate(zip(ex.spec.return_ids, s.results)):
            if res.error is not None:
                returns.append(ReturnValue(rid, ReturnKind.ERROR, error=res.error))
                continue
            nested = res.value.nested if res.value else ()
            out_nested = tuple(self._forward_nested(d, ex, key, index) for d in nested)
            if res.stored:
                self.copies[rid] = ex.owner  # the primary copy, pinned until FreeObjects (GC-005)
                self.primaries.add(rid)
                returns.append(ReturnValue(rid, ReturnKind.STORED, location=self.peer_id, size=res.size, nested=out_nested))
            else:
                if res.value is None:
                    raise LocalUsageError(ErrorCode.MALFORMED, f"return {rid} has neither value, store nor error")
                value = replace(res.value, nested=out_nested)
                returns.append(ReturnValue(rid, ReturnKind.INLINE, value=value))
        retained = self._register_retained(ex, key, s.retained)
        ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(returns), retained)
        if ex.registrations:
            self._transition_exec(ex, "finished_retained")
        else:
            self._transition_exec(ex, "finished")
            self._send_reply(key, ex)

    def _forward_nested(self: Peer, d: RefDescriptor, ex: ExecTask, key: ExecKey, index: int) -> RefDescriptor:
        """Prepare a nested ref of a return value for the task's owner (BOR-002, BOR-004)."""
        if d.owner == ex.owner:
            return replace(d, forward_id="")
        fid = self._new_forward_id()
        if d.owner == self.peer_id:
            e = self.owned.get(d.object_id)
            if e is None:
                raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
            e.borrowers.setdefault(ex.owner, {})[fid] = self.peer_id  # BOR-004
            self._story(d.object_id, "grant", f"{ex.owner} {fid} (owner forward)")
            return replace(d, forward_id=fid)
        b = self.borrowed.get(d.object_id)
        if b is None:
            raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
        if (b.owner, b.ref.owner_incarnation) in self.fenced:
            # The owner is dead: no grant can be had, and the receiver will see
            # OWNER_DIED when it uses the ref (FATE-001).
            return replace(d, forward_id="")
        b.outgoing_registrations += 1
        ex.registrations[fid] = d.object_id
        self.outgoing[fid] = OutgoingRegistration(d.object_id, ex.owner, ("reply", key, index))
        self._send(d.owner, RegisterBorrower(d.object_id, ex.owner, ex.owner_incarnation, self._address_of(ex.owner), fid), b.ref.owner_address, b.ref.owner_incarnation)
        return replace(d, forward_id=fid)

    def _register_retained(self: Peer, ex: ExecTask, key: ExecKey, hinted: tuple[ObjectId, ...]) -> tuple[RefDescriptor, ...]:
        """BOR-007: refs from the arguments that outlive the task need a grant of their own."""
        out = []
        for oid in dict.fromkeys(list(ex.held) + list(hinted)):
            b = self.borrowed.get(oid)
            if b is None or b.grants or (b.owner, b.ref.owner_incarnation) in self.fenced:
                continue
            keeps = b.local_refs + b.submitted_task_refs + len(b.contained_in) + b.pins
            if not keeps:
                continue
            if not b.self_registration:
                fid = self._new_forward_id()
                b.self_registration = fid
                self.outgoing[fid] = OutgoingRegistration(oid, self.peer_id, ("retain", key))
                self._send(b.owner, RegisterBorrower(oid, self.peer_id, self.incarnation, self.address, fid), b.ref.owner_address, b.ref.owner_incarnation)
            ex.registrations[b.self_registration] = oid
            out.append(replace(b.ref, forward_id=b.self_registration))
        return tuple(out)

    def _reply_registration_done(self: Peer, reg: OutgoingRegistration, error: ErrorInfo | None) -> None:
        """A registration a reply was waiting on is answered (BOR-002, BOR-007)."""
        ex = self.exec_tasks.get(reg.purpose[1])
        if error is not None and reg.purpose[0] == "reply" and ex is not None and ex.reply is not None:
            index = reg.purpose[2]
            self._abandon_grants(ex, index)  # BOR-014: the rest of this value won't be sent
            rets = list(ex.reply.returns)
            rid = rets[index].object_id
            rets[index] = ReturnValue(rid, ReturnKind.ERROR, error=error)  # BOR-003
            ex.reply = replace(ex.reply, returns=tuple(rets))
            self.primaries.discard(rid)
            if self.copies.pop(rid, None) is not None:
                self._out(FreeCopy(self._sid, rid))
        # One self-registration may serve several tasks: settle every task it unblocks.
        for key, other in list(self.exec_tasks.items()):
            if other.state != "registering":
                continue
            other.registrations = {
                f: o for f, o in other.registrations.items()
                if f in self.outgoing and self.outgoing[f].purpose[0] != "abandon"
            }
            if not other.registrations:
                self._transition_exec(other, "registered")
                if key in self.actor_creations:
                    self._creation_done(key)
                else:
                    self._send_reply(key, other)

    def _abandon_grants(self: Peer, ex: ExecTask, index: int | None = None) -> None:
        """BOR-014: release grants obtained for the task owner that it will never receive."""
        if ex.reply is None:
            return
        for i, rv in enumerate(ex.reply.returns):
            if index is not None and i != index:
                continue
            for d in rv.value.nested if rv.value else rv.nested:
                if not d.forward_id:
                    continue
                reg = self.outgoing.get(d.forward_id)
                if reg is not None:
                    reg.purpose = ("abandon",) + tuple(reg.purpose[1:])  # released once granted
                elif d.owner == self.peer_id:
                    e = self.owned.get(d.object_id)
                    grants = e.borrowers.get(ex.owner, {}) if e else {}
                    if grants.pop(d.forward_id, None) is not None:
                        if not grants:
                            e.borrowers.pop(ex.owner, None)  # type: ignore[union-attr]
                        self._check_owned(d.object_id)
                else:
                    self.pending_releases.setdefault(d.owner, []).append(BorrowRelease(d.object_id, (d.forward_id,)))

    def _send_reply(self: Peer, key: ExecKey, ex: ExecTask) -> None:
        assert ex.reply is not None
        r = self.remotes.get(ex.owner)
        self._send(ex.owner, ex.reply)
        ex.reply_seq = r.out_seq if r is not None and r.state == "alive" else 0
        if ex.reply_seq:
            self.replied.setdefault(ex.owner, deque()).append((ex.reply_seq, key))
        self._release_exec_holds(ex)
        if ex.spec.actor_id:
            self._actor_call_done(key)

    def _release_exec_holds(self: Peer, ex: ExecTask) -> None:
        held, ex.held = ex.held, ()
        for oid in held:
            self._hold(oid, "task_holds", -1)

    def _on_acked(self: Peer, r: Remote, ack: int) -> None:
        """RPC-002: a reply the owner has acknowledged needs no record any more."""
        replied = self.replied.get(r.peer)
        while replied and replied[0][0] <= ack:  # replies in seq order: O(1) each
            _, k = replied.popleft()
            ex = self.exec_tasks.get(k)
            if ex is None or ex.state != "replied":
                continue
            del self.exec_tasks[k]
            self.exec_index.pop((ex.spec.task_id, ex.spec.attempt), None)
            self._story(ex.spec.task_id, "reply_acked", "replied->forgotten")

    def _on_CancelTask(self: Peer, r: Remote, msg: CancelTask) -> None:
        for key, ex in list(self.exec_tasks.items()):
            if key[0] == r.peer and ex.spec.task_id == msg.task_id:
                ex.cancelled = True
                if ex.state == "running":
                    self._transition_exec(ex, "cancel")
                    self._out(StopTask(self._sid, ex.spec.task_id, ex.spec.attempt))
                elif ex.state == "resolving" and not ex.spec.actor_id:
                    ex.waiting.clear()
                    self._maybe_start(key)

    def _drop_exec(self: Peer, key: ExecKey) -> None:
        """FATE-003: the owner is dead; nobody wants this task's result."""
        ex = self.exec_tasks.pop(key)
        self.exec_index.pop((ex.spec.task_id, ex.spec.attempt), None)
        if ex.state == "running":
            self._out(StopTask(self._sid, ex.spec.task_id, ex.spec.attempt))
            # Its results may still arrive; their stored copies must then go (FATE-008).
            self.dropped_returns[(ex.spec.task_id, ex.spec.attempt)] = ex.spec.return_ids
            if len(self.dropped_returns) > 4096:
                del self.dropped_returns[next(iter(self.dropped_returns))]
        if ex.state != "replied":
            self._transition_exec(ex, "owner_died")
        if ex.state == "dropped":
            self._abandon_grants(ex)  # BOR-014: the owner will never receive them
        for oid in list(self.arg_waiters):
            self.arg_waiters[oid] = [k for k in self.arg_waiters[oid] if k != key]
            if not self.arg_waiters[oid]:
                del self.arg_waiters[oid]
        self._release_exec_holds(ex)

    def _transition_exec(self: Peer, ex: ExecTask, event: str) -> None:
        self._transition("executor-task", ex, ex.spec.task_id, event)
