"""The sans-IO RefRPC core: protocol logic as a deterministic state machine.

It imports no sockets, threads, clocks, randomness or Cap'n Proto: time arrives
as :class:`Tick` stimuli, ids are allocated by the shell. Drive it with
:meth:`Peer.handle` and carry out the instructions it returns.
"""

from . import events, messages, tables
from .errors import CoreError, InvalidTransition, InvariantViolation, LocalUsageError, ProtocolViolation
from .events import IdAllocator, Instruction, Stimulus
from .peer import Peer
from .state import Config

__all__ = [
    "Config",
    "CoreError",
    "IdAllocator",
    "Instruction",
    "InvalidTransition",
    "InvariantViolation",
    "LocalUsageError",
    "Peer",
    "ProtocolViolation",
    "Stimulus",
    "events",
    "messages",
    "tables",
]
