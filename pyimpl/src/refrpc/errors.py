"""The errors RefRPC raises to programs: one class per error code of the spec's
registry that a program can meet (``spec/errors.md``), all under :class:`RefRPCError`.

This module sits beneath both the public API and the runtime, which raise the
same classes; :func:`raise_for` turns a protocol :class:`~refrpc.core.messages.ErrorInfo`
into the matching exception.
"""

from __future__ import annotations

from typing import Any, NoReturn

from .core.messages import ErrorCode, ErrorInfo

__all__ = [
    "ActorDiedError",
    "GetTimeoutError",
    "LineageEvictedError",
    "ObjectLostError",
    "ObjectStoreFullError",
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
    """The remote function raised; ``detail`` holds the remote traceback (TASK-007).

    When the exception itself came back with the error (TASK-018, between Python
    peers), it is ``cause``, and the error raised is also an instance of the
    exception's class where Python allows it: ``except KeyError`` catches a
    remote ``KeyError``.
    """

    #: The exception the remote function raised, if it travelled back (else None).
    cause: BaseException | None = None

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


class ObjectStoreFullError(RefRPCError):
    """A value needed room in a node's object store and there was none: the store is
    at its limit and nothing more could be spilled to disk (OBJ-036), or the value
    alone is larger than the whole limit. ``usage`` says what held the memory (a
    dict of byte and object counts; empty when the error came from another peer,
    whose message says it instead). The node goes on working; free objects (drop
    refs) or raise the limit (``init(object_store_memory=)``) and try again.
    """

    #: What held the memory (byte and object counts by kind), when known here.
    usage: dict

    def __init__(self, message: str, code: ErrorCode = ErrorCode.OBJECT_STORE_FULL, detail: str = "",
                 usage: dict | None = None) -> None:
        super().__init__(message, code, detail)
        self.usage = dict(usage or {})


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
    ErrorCode.OBJECT_STORE_FULL: ObjectStoreFullError,
}


#: Exception class -> its TaskError subclass (made once per class).
_AS_TASK_ERROR: dict[type, type] = {}


def _cause_attribute(self: TaskError, name: str) -> Any:
    """An attribute the error lacks, read on its cause (the cause's own attributes)."""
    cause = self.__dict__.get("cause")
    if cause is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(cause, name)


def _task_error(cause: Exception, message: str, code: ErrorCode, detail: str) -> TaskError:
    """A TaskError that is also an instance of ``cause``'s class, when Python allows it.

    A task that failed because a task it waited for failed raised a TaskError of its
    own: the error is then judged by the exception at the bottom of the chain, as in
    Ray (``except KeyError`` catches a KeyError two tasks down). The cause's attributes
    read through the error (``except HTTPError as e: e.status``), except those a
    RefRPCError has itself (``code``, ``detail``, ``cause``: read them on ``.cause``).
    """
    while isinstance(cause, TaskError) and isinstance(cause.__dict__.get("cause"), Exception):
        cause = cause.__dict__["cause"]
    cls = type(cause)
    sub = _AS_TASK_ERROR.get(cls)
    if sub is None:
        try:
            sub = type(f"TaskError({cls.__name__})", (TaskError, cls),
                       {"__module__": __name__, "__getattr__": _cause_attribute})
        except TypeError:  # a class that cannot be combined (layout, final): a plain TaskError
            sub = TaskError
        _AS_TASK_ERROR[cls] = sub
    try:
        err = Exception.__new__(sub)  # the cause's own __init__ is not ours to call
    except TypeError:  # a class with a __new__ of its own (OSError and its kind: TimeoutError)
        err = sub.__new__(sub)
    # Not RefRPCError.__init__: its super() would reach the cause's own __init__,
    # which may take other arguments (or do anything).
    err.args = (message,)
    err.code, err.detail = code, detail
    err.cause = cause
    return err


def raise_for(info: ErrorInfo, cause: BaseException | None = None, task_name: str = "") -> NoReturn:
    """Raise the exception a program sees for the protocol error ``info``; ``cause``
    is the exception a failed task raised, when it travelled back (TASK-018);
    ``task_name`` the name the program gave the task, if any (its message begins with it)."""
    message = info.message or info.code.value
    if task_name:
        message = f"task {task_name!r}: {message}"
    if info.code == ErrorCode.TASK_FAILED and isinstance(cause, Exception):
        raise _task_error(cause, message, info.code, info.detail) from cause
    cls = _ERRORS.get(info.code, RefRPCError)
    raise cls(message, info.code, info.detail)


def rebuild_exception(cls: type, args: tuple, state: dict) -> BaseException:
    """An exception of class ``cls`` with these ``args`` and attributes, made without
    calling its ``__init__``: how a task's exception travels back when pickle's own
    form would call ``cls(*args)`` and fail (an ``__init__`` that takes other
    arguments than it passes to ``Exception.__init__``)."""
    try:
        exc = cls.__new__(cls, *args)
    except TypeError:  # a __new__ of its own that wants other arguments
        exc = BaseException.__new__(cls)
    exc.args = args
    if state and hasattr(exc, "__dict__"):
        exc.__dict__.update(state)
    return exc


class ExceptionState:
    """Pickles as :func:`rebuild_exception` of an exception (see there)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple:
        exc = self.exc
        return rebuild_exception, (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))

