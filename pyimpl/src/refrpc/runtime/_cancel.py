"""``refrpc.cancel(ref, force=True)``: cancel a task, and if it does not stop, kill
the worker process that runs it (the local cluster's supervisor starts it again).

The protocol's cancellation (TASK-008) asks the executor to stop the task, and
the executor raises ``TaskCancelledError`` inside it; a task stuck in one long
call into C (a ``time.sleep``, a C loop) does not see it until the call returns.
Killing the executor ends it: for the owner that is an executor death, and a
cancelled task stays cancelled (TASK-014). Only a process this program started
can be killed, so ``force`` works in the program that ran ``refrpc.init()``.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import RefRPCError
from ._node import Node
from ._refs import cancel_task_of

#: How long a running task has to stop after CancelTask before its worker is killed.
FORCE_GRACE_S = 1.0


def cancel_forcibly(node: Node, cluster: Any, object_id: str, grace: float = FORCE_GRACE_S) -> bool:
    """Cancel the task that makes ``object_id``; kill its worker if it keeps running
    ``grace`` seconds. Returns whether a task was cancelled."""
    core = node.core

    def look() -> tuple[str, str, str, str, int] | None:
        entry = core.owned.get(object_id)
        t = core.tasks.get(entry.task_id) if entry is not None and entry.task_id else None
        if t is None:
            return None
        # Cancelled earlier without force, and its executor has not answered: it runs on.
        runs_on = t.state == "cancelled" and t.holding_args and bool(t.executor)
        if not runs_on and (t.state not in ("submitted", "queued") or entry.state != "pending"):
            return None
        r = core.remotes.get(t.executor) if t.executor else None
        return t.spec.task_id, t.state, t.executor, t.spec.actor_id, r.incarnation if r is not None else 0

    found = node.call(look).result()
    if found is None:
        return False
    task_id, state, executor, actor_id, incarnation = found
    if actor_id:
        raise ValueError(f"cancel(force=True) would kill the process hosting actor {actor_id}: "
                         "cancel the call without force, or stop the actor with refrpc.kill()")
    if cluster is None:
        raise RefRPCError("cancel(force=True) kills the worker process that runs the task, and this program did not "
                          "start the cluster's workers (it joined a cluster, or runs inside a task): "
                          "cancel without force, or stop the workers with `refrpc stop`")
    if state != "queued" and executor not in cluster.processes:
        raise RefRPCError(f"cancel(force=True): task {task_id} runs on {executor}, a process this program did not start")
    if state != "cancelled" and not cancel_task_of(node, object_id):
        return False
    if state == "queued":
        return True  # it was never sent: it will never run

    def stopped() -> bool:  # the executor answered the cancelled task (TASK-016), or died (TASK-014)
        t = core.tasks.get(task_id)
        return t is None or not t.holding_args

    end = time.monotonic() + grace
    while not node.call(stopped).result():
        if time.monotonic() >= end:
            cluster.kill_worker(executor, incarnation, f"cancel(force=True) of task {task_id}, which did not stop")
            break
        time.sleep(0.01)
    return True


def keep_children(task_id: str) -> None:
    """Run on the executor of task ``task_id`` (a runtime task that takes nothing) before
    ``cancel(ref, recursive=False)`` cancels it: its stop leaves the tasks it submitted
    running."""
    from ._refs import context

    if context.executor is not None:
        context.executor.keep_children(task_id)


def keep_children_of(node: Node, object_id: str) -> None:
    """Tell the executor of the running task that makes ``object_id`` to leave the tasks
    it submitted alone when it stops it (``cancel(recursive=False)``); waits for its word."""
    from ._refs import call_on

    def look() -> tuple[str, str] | None:
        entry = node.core.owned.get(object_id)
        t = node.core.tasks.get(entry.task_id) if entry is not None and entry.task_id else None
        if t is None or t.state != "submitted" or t.spec.actor_id or entry.state != "pending":
            return None
        return t.spec.task_id, t.executor

    found = node.call(look).result()
    if found is None:
        return
    task_id, executor = found
    if executor == node.peer_id:  # a task of its own (TASK-065)
        keep_children(task_id)
        return
    try:
        call_on(node, executor, "refrpc.runtime._cancel:keep_children", task_id, timeout=10.0)
    except RefRPCError:  # the executor died or is gone: nothing of it runs on to keep
        pass
