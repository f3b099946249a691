"""tasks-and-rpc.md §4: at-most-once execution of a task that arrives twice."""

from __future__ import annotations

from refrpc.core.messages import BorrowerRegistered, RegisterBorrower, TaskReply

from .._build import shared
from .._case import case
from .._context import CaseContext
from ._common import open_session, released_forward_ids, task


@case(
    "rpc/RPC-001-duplicate-task-new-seq-executed-once",
    requirements=["RPC-001", "RPC-002", "BOR-007", "BOR-005", "CNF-008"],
    features=("core", "borrowing"),
    summary=(
        "The suite sends the same SubmitTask(hold(shared X)) twice under two sequence numbers, so the session "
        "cannot discard the copy; the copy arrives while the task is registering. With its acks withheld (so "
        "the IUT may not forget the task), it sends the task a third time after the reply: the IUT must "
        "answer with the recorded TaskReply, unchanged. hold counts its executions: drop_held must drop "
        "exactly one ref."
    ),
)
def duplicate_task(ctx: CaseContext) -> None:
    iut, peer, link = open_session(ctx)
    x = ctx.new_id(peer)
    first_registration = [True]

    def grant(r: RegisterBorrower) -> bool:  # the case answers the first registration for X; later ones are granted
        if r.object_id == x and first_registration[0]:
            first_registration[0] = False
            return False
        return True

    peer.auto_grant = grant
    t = task(peer, "hold", [shared(ctx.descriptor(peer, x, size_hint=8))])
    link.send(t)
    second = link.send(t)
    reg: RegisterBorrower = ctx.expect(peer, RegisterBorrower, lambda m: m.object_id == x, requirement="BOR-007",
                                       what=f"RegisterBorrower for {x}").body
    ctx.wait_until(peer, lambda: link.acked >= second, requirement="SES-003", what=f"the IUT's ack of the copy (seq {second})")
    link.hold_acks()
    link.send(BorrowerRegistered(x, reg.forward_id))
    first = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="TASK-005", what="the TaskReply")
    third = link.send(t)
    again = ctx.expect(peer, TaskReply, lambda m: m.task_id == t.task_id, requirement="RPC-001",
                       what=f"the recorded TaskReply re-sent for the copy sent after the reply (seq {third})")
    ctx.check("RPC-001", again.body == first.body, f"the same TaskReply ({first.body})", str(again.body))
    link.release_acks()
    iut.quiesce()
    regs = peer.received(RegisterBorrower, lambda m: m.object_id == x)
    dropped = iut.drop_held()
    ctx.check("RPC-001", dropped == 1, "hold ran once: drop_held drops 1 ref", f"{dropped} refs (and {len(regs)} RegisterBorrower)")
    ctx.wait_until(peer, lambda: reg.forward_id in released_forward_ids(peer, x), requirement="BOR-005",
                   what=f"ReleaseBorrows for {x}", timeout=10.0)
