"""The errors RefRPC raises to programs: one class per error code of the spec's
registry that a program can meet (``spec/errors.md``), all under :class:`RefRPCError`.

This module sits beneath both the public API and the runtime, which raise the
same classes; :func:`raise_for` turns a protocol :class:`~refrpc.core.messages.ErrorInfo`
into the matching exception.
"""

from __future__ import annotations

from typing import NoReturn

from .core.messages import ErrorCode, ErrorInfo

__all__ = [
    "ActorDiedError",
    "GetTimeoutError",
    "LineageEvictedError",
    "ObjectLostError",
    "OwnerDiedError",
    "RefRPCError",
    "TaskCancelledError",
    "TaskError",
    "WorkerDiedError",
    "raise_for",
]


class RefRPCError(Exception):
    """Base of every error RefRPC raises; ``code`` is the spec's error code."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.UNRECOGNIZED, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class TaskError(RefRPCError):
    """The remote function raised; ``detail`` holds the remote traceback (TASK-007)."""

    def __str__(self) -> str:
        return f"{self.args[0]}\n\nRemote traceback:\n{self.detail}" if self.detail else self.args[0]


class WorkerDiedError(RefRPCError):
    """The worker running the task died and no retry was left (RPC-004)."""


class OwnerDiedError(RefRPCError):
    """The object's owner died; its objects die with it (FATE-001)."""


class ObjectLostError(RefRPCError):
    """Every copy is gone and the value cannot be rebuilt (LIN-003)."""


class LineageEvictedError(ObjectLostError):
    """The value is lost and could have been rebuilt, but its lineage was evicted to
    bound the owner's memory (LIN-005; see ``init(max_lineage_bytes=)``)."""


class ActorDiedError(RefRPCError):
    """The actor is dead (ACT-004)."""


class TaskCancelledError(RefRPCError):
    """The task was cancelled (TASK-008)."""


class GetTimeoutError(RefRPCError, TimeoutError):
    """``get`` gave up after its timeout; the value may still come."""


_ERRORS: dict[ErrorCode, type[RefRPCError]] = {
    ErrorCode.TASK_FAILED: TaskError,
    ErrorCode.WORKER_DIED: WorkerDiedError,
    ErrorCode.OWNER_DIED: OwnerDiedError,
    ErrorCode.PEER_DIED: OwnerDiedError,
    ErrorCode.OBJECT_LOST: ObjectLostError,
    ErrorCode.OBJECT_FREED: ObjectLostError,
    ErrorCode.LINEAGE_EVICTED: LineageEvictedError,
    ErrorCode.ACTOR_DIED: ActorDiedError,
    ErrorCode.TASK_CANCELLED: TaskCancelledError,
}


def raise_for(info: ErrorInfo) -> NoReturn:
    """Raise the exception a program sees for the protocol error ``info``."""
    cls = _ERRORS.get(info.code, RefRPCError)
    raise cls(info.message or info.code.value, info.code, info.detail)
