"""Exceptions of the core, named after who is to blame (after h11).

* :class:`ProtocolViolation` -- the *remote* peer sent something that is valid
  on the wire but not allowed in our state (GEN-005). The core answers it with a
  ProtocolError and carries on; it never escapes :meth:`Peer.handle`.
* :class:`LocalUsageError` -- *our* program asked for something impossible
  (an unknown ref, a released object). Raised out of ``handle`` to the caller,
  with no state changed.
* :class:`InvalidTransition` -- a bug in the core: a transition not in
  :mod:`refrpc.core.tables`. Carries the object's story.
"""

from __future__ import annotations

from .messages import ErrorCode


class CoreError(Exception):
    """Base class of the core's exceptions."""


class ProtocolViolation(CoreError):
    def __init__(self, code: ErrorCode, message: str, requirement: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.requirement = requirement


class LocalUsageError(CoreError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        #: Instructions produced by earlier stimuli of the same ``handle`` call,
        #: which the shell must still carry out.
        self.instructions: list = []


class InvalidTransition(CoreError):
    def __init__(self, table: str, key: str, state: str, event: str, story: list) -> None:
        lines = "\n".join(f"  {s}" for s in story[-20:])
        super().__init__(f"{table}: no transition from {state!r} on {event!r} for {key}\nstory:\n{lines}")
        self.table = table
        self.key = key
        self.state = state
        self.event = event
        self.story = story


class InvariantViolation(CoreError):
    """An executable invariant failed (Peer.validate)."""
