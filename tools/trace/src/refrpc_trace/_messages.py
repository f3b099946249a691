"""Recorded envelopes: decoding them, naming what they mention, one-line summaries.

A trace keeps frame 0 of each message only (TRC-005): payloads that travelled
out of band are not in it. :func:`decode_frame0` decodes such a frame all the
same, with each out-of-band payload read as empty bytes.
"""

from __future__ import annotations

import re
from typing import Iterator

from refrpc.codec import DecodeError, MalformedFrame, decode, peek
from refrpc.core import messages as m

#: Frame 0 of a recorded message may be as large as the writer allowed.
_MAX_FRAME = 1 << 40
_MISSING_FRAME = re.compile(r"payload refers to frame (\d+), message has (\d+)")
#: At most this many out-of-band payloads are filled in before giving up.
_MAX_OOB = 4096


def decode_frame0(frame0: bytes) -> m.Envelope:
    """The envelope in a recorded frame 0; out-of-band payloads read as ``b""``.

    Raises:
        DecodeError: The frame does not decode (a malformed frame was recorded,
            TRC-010, or the message type is unknown to this schema).
    """
    frames: list[bytes] = [frame0]
    while True:
        try:
            return decode(frames, max_frame_bytes=_MAX_FRAME)
        except MalformedFrame as err:
            hit = _MISSING_FRAME.search(str(err))
            if hit is None or len(frames) > _MAX_OOB:
                raise
            want = int(hit.group(1)) + 1
            if want <= len(frames):
                raise
            frames.extend(b"" for _ in range(want - len(frames)))


def peek_type(frame0: bytes) -> str:
    """The message type name of a recorded frame 0 without decoding it ('' if unreadable)."""
    return peek([frame0])[2]


# ---------------------------------------------------------------- what a message mentions
def descriptors(body: m.Message) -> Iterator[tuple[m.RefDescriptor, str]]:
    """Every ref descriptor carried by ``body``, with where it sits.

    ``where`` is ``"arg"`` (a task or actor argument: covered by a task hold,
    BOR-006), ``"nested:<object>"`` (nested in the value of ``<object>``),
    ``"retained"`` (TaskReply.retained, BOR-007) or ``"status"`` (nested in an
    ObjectStatus value, whose forward ids are not grants, BOR-017).
    """
    if isinstance(body, (m.SubmitTask, m.CreateActor)):
        for arg in body.args:
            if arg.ref is not None:
                yield arg.ref, "arg"
            if arg.value is not None:
                for d in arg.value.nested:
                    yield d, "arg"
    elif isinstance(body, m.TaskReply):
        for rv in body.returns:
            if rv.value is not None:
                for d in rv.value.nested:
                    yield d, f"nested:{rv.object_id}"
            for d in rv.nested:
                yield d, f"nested:{rv.object_id}"
        for d in body.retained:
            yield d, "retained"
    elif isinstance(body, m.ObjectStatus) and body.value is not None:
        for d in body.value.nested:
            yield d, "status"


def program_objects(detail: dict[str, object]) -> set[str]:
    """The objects a ``program`` event's detail names in a list (``wait``'s ``objects``)."""
    listed = detail.get("objects")
    return {x for x in listed if isinstance(x, str) and x} if isinstance(listed, list) else set()


def object_ids(body: m.Message) -> set[str]:
    """Every object id ``body`` names."""
    ids: set[str] = set()
    oid = getattr(body, "object_id", None)
    if isinstance(oid, str) and oid:
        ids.add(oid)
    if isinstance(body, m.SubmitTask):
        ids.update(body.return_ids)
    elif isinstance(body, m.TaskReply):
        ids.update(rv.object_id for rv in body.returns)
    elif isinstance(body, m.ReleaseBorrows):
        ids.update(r.object_id for r in body.releases)
    elif isinstance(body, m.FreeObjects):
        ids.update(body.object_ids)
    elif isinstance(body, m.IntrospectReply):
        ids.update(e.object_id for e in body.entries)
    ids.update(d.object_id for d, _ in descriptors(body))
    return ids


def task_ids(body: m.Message) -> set[str]:
    """Every task id ``body`` names."""
    tid = getattr(body, "task_id", None)
    return {tid} if isinstance(tid, str) and tid else set()


def arg_object_ids(body: m.SubmitTask | m.CreateActor) -> tuple[str, ...]:
    """The objects a task's arguments mention, once each, in order (BOR-006)."""
    seen: dict[str, None] = {}
    for d, _ in descriptors(body):
        seen.setdefault(d.object_id, None)
    return tuple(seen)


# ---------------------------------------------------------------- requests and replies
#: Each request/reply exchange: the request type, the reply type, the kind, and the
#: id fields both carry (which tell one exchange of that kind from another).
_EXCHANGES: tuple[tuple[type, type, str, tuple[str, ...]], ...] = (
    (m.SubmitTask, m.TaskReply, "task", ("task_id", "attempt")),
    (m.RegisterBorrower, m.BorrowerRegistered, "register", ("object_id", "forward_id")),
    (m.GetObjectStatus, m.ObjectStatus, "status", ("object_id",)),
    (m.FetchRequest, m.FetchChunk, "fetch", ("object_id", "request_id")),
    (m.IntrospectRequest, m.IntrospectReply, "introspect", ("request_id",)),
    (m.ConfirmBorrow, m.BorrowConfirmed, "confirm", ("object_id", "forward_id")),
    (m.CreateActor, m.ActorStatus, "actor", ("actor_id",)),
    (m.Hello, m.Welcome, "hello", ()),
)
_BY_REQUEST = {req: (kind, ids) for req, _, kind, ids in _EXCHANGES}
_BY_REPLY = {rep: (kind, ids) for _, rep, kind, ids in _EXCHANGES}


def request_key(sender: str, receiver: str, body: m.Message) -> tuple[object, ...] | None:
    """The key under which a reply to ``body`` will be found, if it is a request.

    The key is made from the reply's point of view: (replier, asker, kind, ids).
    """
    exchange = _BY_REQUEST.get(type(body))
    if exchange is None:
        return None
    kind, ids = exchange
    return (receiver, sender, kind, *(getattr(body, f) for f in ids))


def reply_key(sender: str, receiver: str, body: m.Message) -> tuple[object, ...] | None:
    """The key of the request ``body`` answers, if it is a reply (see :func:`request_key`)."""
    exchange = _BY_REPLY.get(type(body))
    if exchange is None:
        return None
    kind, ids = exchange
    return (sender, receiver, kind, *(getattr(body, f) for f in ids))


def reply_is_final(body: m.Message) -> bool:
    """Whether this reply ends its request (a FetchChunk ends it only when last)."""
    if isinstance(body, m.FetchChunk):
        return body.last or body.error is not None
    if isinstance(body, m.ObjectStatus):
        return body.state is not m.ObjectState.PENDING
    return True


# ---------------------------------------------------------------- one-line summaries
def _ref(d: m.RefDescriptor) -> str:
    grant = f" g={d.forward_id}" if d.forward_id else ""
    return f"{d.object_id}@{d.owner}{grant}"


def _value(v: m.Value | None) -> str:
    if v is None:
        return "-"
    nested = f" nests[{', '.join(_ref(d) for d in v.nested)}]" if v.nested else ""
    return f"{v.encoding.value} {v.size}B{nested}"


def _err(e: m.ErrorInfo | None) -> str:
    if e is None:
        return ""
    text = f" {e.message[:60]!r}" if e.message else ""
    return f"{e.code.value.upper()}{text}"


def _arg(a: m.Arg) -> str:
    if a.kind is m.ArgKind.VALUE:
        return f"value {_value(a.value)}"
    return f"{a.kind.value} {_ref(a.ref) if a.ref else '?'}"


def _return(rv: m.ReturnValue) -> str:
    if rv.kind is m.ReturnKind.ERROR:
        return f"{rv.object_id} error {_err(rv.error)}"
    if rv.kind is m.ReturnKind.STORED:
        nested = f" nests[{', '.join(_ref(d) for d in rv.nested)}]" if rv.nested else ""
        return f"{rv.object_id} stored at {rv.location} {rv.size}B{nested}"
    return f"{rv.object_id} inline {_value(rv.value)}"


def summary(body: m.Message) -> str:  # noqa: C901 - one branch per message type
    """A one-line description of a message's body (type name first)."""
    name = type(body).__name__
    b = body
    if isinstance(b, (m.Hello, m.Welcome)):
        text = f"v{b.protocol_major}.{b.protocol_minor} {b.address} [{','.join(b.features)}]"
    elif isinstance(b, m.Goodbye):
        text = b.reason
    elif isinstance(b, m.Heartbeat):
        text = ""
    elif isinstance(b, m.ProtocolError):
        text = f"{_err(b.error)} {b.error.requirement} re seq {b.related_seq}"
    elif isinstance(b, m.SubmitTask):
        actor = f" actor {b.actor_id}#{b.actor_seq}" if b.actor_id else ""
        text = (f"{b.task_id} {b.function}({', '.join(_arg(a) for a in b.args)}) -> [{', '.join(b.return_ids)}]"
                f" attempt {b.attempt}{actor}")
    elif isinstance(b, m.TaskReply):
        kept = f" retained[{', '.join(_ref(d) for d in b.retained)}]" if b.retained else ""
        free = f" store free {b.store_free_bytes:,}B" if b.store_free_bytes >= 0 else ""  # OBJ-060
        text = f"{b.task_id} attempt {b.attempt}: {'; '.join(_return(r) for r in b.returns)}{kept}{free}"
    elif isinstance(b, m.CancelTask):
        text = b.task_id
    elif isinstance(b, m.RegisterBorrower):
        text = f"{b.object_id} borrower {b.borrower} g={b.forward_id}"
    elif isinstance(b, m.BorrowerRegistered):
        text = f"{b.object_id} g={b.forward_id}{' ' + _err(b.error) if b.error else ''}"
    elif isinstance(b, m.ReleaseBorrows):
        text = "; ".join(f"{r.object_id} [{', '.join(r.forward_ids)}]" for r in b.releases)
    elif isinstance(b, m.ConfirmBorrow):
        text = f"{b.object_id} g={b.forward_id} forwarder {b.forwarder}"
    elif isinstance(b, m.BorrowConfirmed):
        text = f"{b.object_id} g={b.forward_id} held={b.held}"
    elif isinstance(b, m.GetObjectStatus):
        text = f"{b.object_id}{' wait' if b.wait else ''}"
    elif isinstance(b, m.ObjectStatus):
        where = f" at [{', '.join(b.locations)}]" if b.locations else ""
        val = f" value {_value(b.value)}" if b.value is not None else ""
        text = f"{b.object_id} {b.state.value.upper()}{where}{val}{' ' + _err(b.error) if b.error else ''}"
    elif isinstance(b, (m.AddLocation,)):
        text = f"{b.object_id} {b.size}B"
    elif isinstance(b, m.RemoveLocation):
        text = b.object_id
    elif isinstance(b, m.FreeObjects):
        text = ", ".join(b.object_ids)
    elif isinstance(b, m.FetchRequest):
        text = f"{b.object_id} req {b.request_id} [{b.offset}+{b.length}]"
    elif isinstance(b, m.FetchChunk):
        last = " last" if b.last else ""
        text = f"{b.object_id} req {b.request_id} @{b.offset}/{b.total_size} {len(b.data)}B{last}" + (
            f" {_err(b.error)}" if b.error else "")
    elif isinstance(b, m.PeerDeadNotice):
        text = f"{b.peer}/{b.incarnation:x} {b.reason}"
    elif isinstance(b, m.CreateActor):
        text = f"{b.actor_id} {b.class_name}({', '.join(_arg(a) for a in b.args)})"
    elif isinstance(b, m.ActorStatus):
        text = f"{b.actor_id} {b.state.value}{' ' + _err(b.error) if b.error else ''}"
    elif isinstance(b, m.KillActor):
        text = b.actor_id
    elif isinstance(b, m.IntrospectRequest):
        text = f"req {b.request_id}"
    elif isinstance(b, m.IntrospectReply):
        text = f"req {b.request_id}: {len(b.entries)} entries"
    else:  # pragma: no cover - every message type is listed above
        text = ""
    return f"{name} {text}".rstrip()


def describe_decode_error(err: DecodeError) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"undecodable ({type(err).__name__}: {text[:120]})"
