"""Transition rules as data: ``(state, event) -> next state``.

Anything not in a table is illegal and raises :class:`~refrpc.core.errors.InvalidTransition`
with the object's story. The spec's state diagrams (``spec/state-machines.md``)
are generated from these tables by ``spec/tools/sync_tables.py``, and a test
checks they are in sync, so the prose can never drift from the code.

Each table maps a state to ``{event: (next_state, requirement_id)}``; the
requirement id says which rule of the spec licenses the transition.
"""

from __future__ import annotations

from typing import Mapping

Table = Mapping[str, Mapping[str, tuple[str, str]]]

#: An object at its owner (OBJ-001). "deleted" is terminal: the entry is gone.
OWNER_OBJECT: Table = {
    "pending": {
        "task_succeeded": ("ready", "TASK-005"),
        "task_failed": ("failed", "TASK-007"),
        "executor_died_retry": ("pending", "RPC-004"),
        "reply_retry": ("pending", "RPC-005"),
        "exhausted_retry": ("pending", "RPC-012"),
        "executor_died_final": ("failed", "RPC-004"),
        "no_executor": ("failed", "TASK-022"),
        "actor_dead": ("failed", "ACT-016"),
        "cancelled": ("failed", "TASK-008"),
        "rejected": ("failed", "ERR-003"),
        "out_of_scope": ("pending", "OWN-005"),
        "lineage_unneeded": ("pending", "OWN-006"),
        "lineage_evicted": ("failed", "LIN-005"),
        "argument_lost": ("failed", "LIN-014"),
    },
    "ready": {
        "put": ("ready", "OWN-001"),
        "copy_lost_reconstruct": ("pending", "LIN-003"),
        "copy_lost_final": ("failed", "LIN-003"),
        "out_of_scope": ("released", "OWN-005"),
        "out_of_scope_unneeded": ("deleted", "OWN-005"),
    },
    "failed": {
        "out_of_scope": ("released", "OWN-005"),
        "out_of_scope_unneeded": ("deleted", "OWN-005"),
    },
    "released": {
        "lineage_unneeded": ("deleted", "OWN-006"),
        "reconstruct": ("pending", "LIN-004"),
        "lineage_evicted": ("deleted", "LIN-010"),
    },
}

#: An object at a borrower (BOR-*). The borrower only learns the object's state
#: from the owner (ObjectStatus) or from the owner's death.
BORROWER_OBJECT: Table = {
    "unresolved": {
        "status_ready": ("ready", "OBJ-004"),
        "status_failed": ("failed", "OBJ-004"),
        "owner_died": ("failed", "FATE-001"),
        "registration_refused": ("failed", "BOR-026"),
        "holds_zero": ("deleted", "BOR-005"),
    },
    "ready": {
        "owner_died": ("failed", "FATE-001"),
        "status_failed": ("failed", "OBJ-004"),
        "fetch_failed": ("unresolved", "OBJ-013"),
        "registration_refused": ("failed", "BOR-026"),
        "holds_zero": ("deleted", "BOR-005"),
    },
    "failed": {
        "holds_zero": ("deleted", "BOR-005"),
    },
}

#: A task at the peer that submitted it (the owner of its returns).
OWNER_TASK: Table = {
    "queued": {
        "dispatch": ("submitted", "TASK-020"),
        "cancel": ("cancelled", "TASK-022"),
        "no_executor": ("failed", "TASK-022"),
    },
    "submitted": {
        "no_slot": ("queued", "TASK-020"),
        "reply": ("finished", "TASK-005"),
        "reply_retry": ("submitted", "RPC-005"),
        "exhausted_retry": ("submitted", "RPC-012"),
        "executor_died_retry": ("submitted", "RPC-004"),
        "executor_died_final": ("failed", "RPC-004"),
        "no_executor": ("failed", "TASK-022"),
        "actor_dead": ("failed", "ACT-016"),
        "cancel": ("cancelled", "TASK-008"),
        "rejected": ("failed", "ERR-003"),
        "lineage_evicted": ("failed", "LIN-005"),
        "argument_lost": ("failed", "LIN-014"),
    },
    "finished": {
        "reconstruct": ("submitted", "LIN-003"),
    },
    "failed": {
        "reconstruct": ("submitted", "LIN-003"),
    },
    "cancelled": {
        "reply": ("cancelled", "TASK-016"),
        "executor_died": ("cancelled", "TASK-014"),
        "rejected": ("cancelled", "ERR-003"),
    },
}

#: A task at the peer that executes it.
EXECUTOR_TASK: Table = {
    "resolving": {
        "args_ready": ("running", "TASK-002"),
        "arg_failed": ("replied", "TASK-009"),
        "cancel": ("replied", "TASK-008"),
        "actor_dead": ("replied", "ACT-004"),
        "late_call": ("replied", "ACT-014"),
        "refused": ("replied", "RPC-012"),
        "owner_died": ("dropped", "FATE-003"),
    },
    "running": {
        "finished": ("replied", "TASK-005"),
        "finished_retained": ("registering", "BOR-007"),
        "arg_unavailable": ("resolving", "OBJ-013"),
        "actor_died": ("replied", "ACT-006"),
        "cancel": ("running", "TASK-008"),
        "owner_died": ("dropped", "FATE-003"),
    },
    "registering": {
        "registered": ("replied", "BOR-007"),
        "owner_died": ("dropped", "FATE-003"),
    },
    "replied": {
        "reply_acked": ("forgotten", "RPC-002"),
        "owner_died": ("dropped", "FATE-003"),
    },
}

#: A remote peer incarnation, as seen by this peer (HS-*, LIV-*).
PEER: Table = {
    "connecting": {
        "welcome": ("alive", "HS-002"),
        "hello": ("alive", "HS-002"),
        "rejected": ("dead", "HS-002"),
        "silence": ("dead", "LIV-003"),
        "notice": ("dead", "LIV-004"),
        "failed": ("dead", "LIV-014"),
        "goodbye": ("dead", "LIV-006"),
        "new_incarnation": ("dead", "HS-006"),
        "declared_dead": ("dead", "LIV-009"),
        "confirm_borrow": ("dead", "BOR-011"),
    },
    "alive": {
        "silence": ("dead", "LIV-003"),
        "notice": ("dead", "LIV-004"),
        "failed": ("dead", "LIV-014"),
        "goodbye": ("dead", "LIV-006"),
        "new_incarnation": ("dead", "HS-006"),
        "declared_dead": ("dead", "LIV-009"),
        "confirm_borrow": ("dead", "BOR-011"),
    },
    "dead": {},
}

ALL_TABLES: dict[str, Table] = {
    "owner-object": OWNER_OBJECT,
    "borrower-object": BORROWER_OBJECT,
    "owner-task": OWNER_TASK,
    "executor-task": EXECUTOR_TASK,
    "peer": PEER,
}


def next_state(table: Table, state: str, event: str) -> str | None:
    """The state ``event`` leads to from ``state``, or None if it is illegal."""
    row = table.get(state)
    if row is None or event not in row:
        return None
    return row[event][0]
