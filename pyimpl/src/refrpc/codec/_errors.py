"""Typed codec errors.

Blame follows h11's rule: :class:`DecodeError` and its subclasses mean the
*remote* peer sent something unacceptable (the core answers with a
``ProtocolError`` carrying :attr:`DecodeError.error`); :class:`EncodeError`
means *we* tried to put something on the wire that the schema cannot carry.
"""

from __future__ import annotations

from ..core.messages import ErrorCode, ErrorInfo
from ..errors import RefRPCError


class DecodeError(Exception):
    """Frames that could not be turned into an :class:`~refrpc.core.messages.Envelope`.

    The header attributes are filled in when the envelope's header could be read
    (so the core can answer the sender, ``GEN-004``); otherwise they keep their
    "unknown" values, which are the protocol's own: ``""`` for a peer id and
    ``0`` for incarnations and sequence numbers (``ProtocolError.related_seq`` is
    0 when unknown, and incarnations are never 0, ``ID-002``).

    Attributes:
        sender: The sending peer's id, or ``""`` if unreadable.
        sender_incarnation: The sender's incarnation, or 0 if unreadable.
        receiver: The addressed peer's id, or ``""`` if unreadable.
        receiver_incarnation: The addressed incarnation, or 0 if unreadable.
        seq: The message's session sequence number, or 0 if unreadable.
        ack: The sender's cumulative ack, or 0 if unreadable.
    """

    #: For a malformed answer whose correlating key could be read (``GEN-030``), its
    #: message type name and key, for example ``("TaskReply", ("D.1a.7", 2))``; else None.
    answer: tuple[str, tuple[object, ...]] | None = None

    #: Registry code this kind of failure is reported with.
    code: ErrorCode = ErrorCode.MALFORMED
    #: The requirement the frames violate (e.g. ``ID-003``); reported in :attr:`error`.
    requirement: str = "GEN-004"

    def __init__(
        self,
        message: str,
        *,
        sender: str = "",
        sender_incarnation: int = 0,
        receiver: str = "",
        receiver_incarnation: int = 0,
        seq: int = 0,
        ack: int = 0,
        requirement: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        if requirement:
            self.requirement = requirement
        self.sender = sender
        self.sender_incarnation = sender_incarnation
        self.receiver = receiver
        self.receiver_incarnation = receiver_incarnation
        self.seq = seq
        self.ack = ack

    @property
    def error(self) -> ErrorInfo:
        """The :class:`ErrorInfo` to report in ``ProtocolError``."""
        return ErrorInfo(code=self.code, message=self.message, requirement=self.requirement)

    @property
    def sender_known(self) -> bool:
        """Whether the sender could be identified (``GEN-004``: reply only then)."""
        return bool(self.sender) and self.sender_incarnation != 0

    def _with_header(self, header: tuple[str, int, str, int, int, int]) -> DecodeError:
        (
            self.sender,
            self.sender_incarnation,
            self.receiver,
            self.receiver_incarnation,
            self.seq,
            self.ack,
        ) = header
        return self


class MalformedFrame(DecodeError):
    """Garbage, truncated data, a bad frame index (``ZMQ-005``), a missing
    required field, an unknown enum value (``GEN-003``; not in an ``ErrorCode``
    field, ``ERR-002``), an id outside its limits (``ID-007``) or input over the
    decoding limits (``SEC-007``)."""

    code = ErrorCode.MALFORMED
    requirement = "GEN-004"


class OversizedFrame(DecodeError):
    """A frame or the whole message is larger than the receiver's
    ``max_frame_bytes``. The spec makes this a malformed message, reported as
    ``MALFORMED`` (``GEN-004``, ``ZMQ-007``); the class only lets callers tell
    it apart (for example to count it)."""

    code = ErrorCode.MALFORMED
    requirement = "GEN-004"


class UnknownMessage(DecodeError):
    """The envelope is well formed but its body is a message type this schema
    does not know (``GEN-001``): answer ``ProtocolError(UNKNOWN_MESSAGE)``,
    consume :attr:`seq`, keep the session. Discriminants of 64 and above are
    reserved for experiments; below 64 they are later versions of the protocol.
    """

    code = ErrorCode.UNKNOWN_MESSAGE
    requirement = "GEN-001"

    #: The body's union discriminant (message type number), if it could be read.
    discriminant: int | None = None


class EncodeError(RefRPCError, ValueError):
    """The envelope cannot be represented on the wire (a local bug: an integer
    out of its field's range, a wrong type, a message type not in the schema)."""


class ValueTooLarge(EncodeError):
    """The value has no stored form: a payload (its ``data`` or one buffer) over
    2**29 - 1 bytes, the most one Cap'n Proto ``Data`` holds, or a form over what
    this encoder writes (VAL-029). Not a bug: the program made a value too large."""

    requirement = "VAL-029"
