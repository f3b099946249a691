"""The simulated runtime's function catalog and actor classes.

Names follow the spec's fixture catalog (spec/conformance-hooks.md) where they
overlap. Every function is deterministic, so a run's expected results are known.
Values are raw bytes; refs travel as nested descriptors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from refrpc.core import events as ev
from refrpc.core.messages import ErrorCode, ErrorInfo, RefDescriptor, Value

from ._sim import raw

if TYPE_CHECKING:
    from ._sim import Cluster, SimPeer

Arg = Value | RefDescriptor
#: A function returns its values and any stimuli to apply right after TaskFinished.
Result = tuple[list[Value | ErrorInfo], list[ev.Stimulus]]


def _make(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    n = int(args[0].data)  # type: ignore[union-attr]
    return [raw(b"x" * n)], []


def _append(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    return [raw(b"".join(a.data for a in args))], []  # type: ignore[union-attr]


def _split(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    """Two returns: the first and the second half of its argument."""
    data = args[0].data  # type: ignore[union-attr]
    return [raw(data[: len(data) // 2]), raw(data[len(data) // 2 :])], []


def _nest(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    """Return the shared ref it was given, nested in its result."""
    return [raw(b"nest", (args[0],))], []  # type: ignore[arg-type]


def _forward(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    """Pass the shared ref on to a nested task on another peer; return that task's ref."""
    d = args[0]
    assert isinstance(d, RefDescriptor)
    task_id, rids = p.ids.task(1)
    p.handle(ev.Submit(p.sid("nested-submit"), task_id, "nest", (ev.ArgSpec(object_id=d.object_id, shared=True),), rids, 1))
    if not p.alive or rids[0] not in p.core.owned:
        return [ErrorInfo(ErrorCode.TASK_FAILED, "could not submit the nested task")], []
    inner = p.core._descriptor(rids[0])
    # The program drops its own handle once the result (which embeds the ref) is returned.
    return [raw(b"fwd", (inner,))], [ev.DropRef(p.sid("drop-inner"), rids[0])]


def _fail(p: SimPeer, args: list[Arg], ins: ev.RunTask) -> Result:
    return [ErrorInfo(ErrorCode.TASK_FAILED, "fail() raised ValueError", "TASK-007", "Traceback: ValueError")], []


FUNCTIONS: dict[str, Callable[[SimPeer, list[Arg], ev.RunTask], Result]] = {
    "make": _make,
    "append": _append,
    "split": _split,
    "nest": _nest,
    "forward": _forward,
    "fail": _fail,
}


# ---------------------------------------------------------------- the Keeper actor
def _keep(p: SimPeer, state: dict, args: list[Arg], ins: ev.RunTask) -> Result:
    """Keep the shared ref in the actor's state (the program holds a handle)."""
    d = args[0]
    assert isinstance(d, RefDescriptor)
    p.handle(ev.AddRef(p.sid("keep"), d.object_id))
    state.setdefault("held", []).append(d)
    return [raw(b"kept")], []


def _held(p: SimPeer, state: dict, args: list[Arg], ins: ev.RunTask) -> Result:
    return [raw(b"held", tuple(state.get("held", [])))], []


def _release(p: SimPeer, state: dict, args: list[Arg], ins: ev.RunTask) -> Result:
    held, state["held"] = state.get("held", []), []
    return [raw(b"released")], [ev.DropRef(p.sid("release"), d.object_id) for d in held]


KEEPER_METHODS = {"keep": _keep, "held": _held, "release": _release}


def start_actor(cluster: Cluster, p: SimPeer, ins: ev.StartActor) -> None:
    if ins.class_name != "Keeper":
        p.handle(ev.ActorReady(p.sid("actor-ready"), ins.actor_id, ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, ins.class_name)))
        return
    p.actors[ins.actor_id] = {}
    p.handle(ev.ActorReady(p.sid("actor-ready"), ins.actor_id))


def run_task(cluster: Cluster, p: SimPeer, ins: ev.RunTask) -> None:
    args: list[Arg] = []
    for a in ins.args:
        if a.ref is not None:
            args.append(a.ref)
        elif a.value is not None:
            args.append(a.value)
        else:
            v = cluster.fetch(a.locations, a.object_id)
            if v is None:
                # OBJ-013: ask the owner again; the core re-issues RunTask when it knows more.
                p.handle(ev.FetchFailed(p.sid("fetch-failed"), a.object_id, ins.task_id, ins.attempt))
                return
            args.append(v)
    if ins.actor_id:
        state = p.actors.get(ins.actor_id)
        method = KEEPER_METHODS.get(ins.function)
        if state is None or method is None:
            info = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, f"no method {ins.function}")
            _finish(cluster, p, ins, [info] * len(ins.return_ids), [])
            return
        values, after = method(p, state, args, ins)
    else:
        fn = FUNCTIONS.get(ins.function)
        if fn is None:
            info = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, f"no function {ins.function}", "TASK-006")
            _finish(cluster, p, ins, [info] * len(ins.return_ids), [])
            return
        values, after = fn(p, args, ins)
    _finish(cluster, p, ins, values, after)


#: The store limits simulated executors report their free bytes against (OBJ-060), by
#: peer name: a value or two, or a few, so that placement by free memory (TASK-041)
#: meets executors with room and without, and reports that go stale.
SIM_STORE_LIMITS = (40, 120)


def _finish(cluster: Cluster, p: SimPeer, ins: ev.RunTask, values: list, after: list) -> None:
    if not p.alive:
        return
    results = []
    for rid, v in zip(ins.return_ids, values):
        if isinstance(v, ErrorInfo):
            results.append(ev.TaskResult(error=v))
        elif len(v.data) > cluster.config.inline_threshold:
            p.store[rid] = v
            results.append(ev.TaskResult(value=Value(v.encoding, b"", (), v.nested), stored=True, size=len(v.data)))
        else:
            results.append(ev.TaskResult(value=v))
    limit = SIM_STORE_LIMITS[sum(p.name.encode()) % len(SIM_STORE_LIMITS)]
    free = max(0, limit - sum(len(v.data) for v in p.store.values()))
    p.handle(ev.TaskFinished(p.sid("finished"), ins.task_id, ins.attempt, tuple(results), store_free_bytes=free), *after)
