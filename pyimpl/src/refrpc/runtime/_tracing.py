"""Recording a peer's trace in the canonical format (spec ``trace-format.md``).

A :class:`TraceRecorder` belongs to one :class:`~refrpc.runtime.Node` and is
called only from its loop thread, in the order things happen there: a ``recv``
record before the stimulus it becomes, then the events and ``send`` records
that stimulus caused (each naming it under ``cause``, ``TRC-009``).

Recording is on the path of every message, so a record costs the loop only
what it takes to remember it: the time, its record number and the objects it
is made of (frame 0 as received, the core's ``TraceEvent``) go on a list.
Encoding and writing happen together, off that path, every
:data:`FLUSH_INTERVAL_S` (the loop's clock tick checks), when
:data:`FLUSH_RECORDS` records or :data:`FLUSH_BYTES` bytes of frames are
waiting, and when the node stops. A process killed with SIGKILL loses at most
the records of the last interval; the record it was writing, if any, is cut
short, which readers accept (``TRC-012``).

Tracing is off unless a directory is given (``refrpc.init(trace_dir=...)``,
``refrpc start --trace-dir``, or :data:`TRACE_DIR_ENV`); a node that does not
trace has no recorder and pays one ``is None`` check per message.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Sequence

from ..codec import TraceEncoder, TraceKind, trace_file_name
from ..core import events as ev
from ..core.messages import PROTOCOL_MAJOR, PROTOCOL_MINOR

#: The environment variable naming the directory every RefRPC process of this
#: environment records its trace in (when ``trace_dir`` is not given).
TRACE_DIR_ENV = "REFRPC_TRACE_DIR"
#: Buffered records reach the file at least this often (TRC-012 asks for once a second).
FLUSH_INTERVAL_S = 0.1
#: ... and as soon as this many records wait (bounds the pause one flush makes) ...
FLUSH_RECORDS = 4096
#: ... or this many bytes of frames (bounds the memory frames held for the trace take).
FLUSH_BYTES = 1 << 20

_SEND, _RECV, _EVENT, _HEADER = TraceKind.SEND, TraceKind.RECV, TraceKind.EVENT, TraceKind.HEADER
#: The first item of a waiting record the core reported (a TraceEvent); the others use their TraceKind.
_CORE = "core"
#: The keys of a transition's detail its cached prefix holds (the others, key first, follow it).
_TRANSITION_FIXED = frozenset(("table", "from", "event", "to", "requirement"))
#: Values other than text and integers in a ``detail`` (json.dumps with options builds a new encoder each call).
_JSON = json.JSONEncoder(separators=(",", ":"))
#: A JSON string literal (the C function json.dumps uses for text).
_STR = json.encoder.encode_basestring_ascii


def _detail(detail: dict[str, Any], stimulus_id: str) -> str:
    """``detail`` plus ``cause`` as a JSON object (TRC-009), without json.dumps's
    per-call cost: keys are this module's and the core's names, values mostly text
    and integers."""
    out = "{"
    for key, value in detail.items():
        kind = type(value)
        if kind is str:
            out += f'"{key}":{_STR(value)},'
        elif kind is int:
            out += f'"{key}":{value},'
        else:
            out += f'"{key}":{_json(value)},'
    return f'{out}"cause":{_STR(stimulus_id)}}}'


def _json(value: Any) -> str:
    """One JSON value, the common kinds (text, integers, lists of text) without the encoder."""
    kind = type(value)
    if kind is str:
        return _STR(value)
    if kind is int:
        return str(value)
    if kind is list and all(type(v) is str for v in value):
        return f'[{",".join(map(_STR, value))}]'
    return _JSON.encode(value)


def trace_dir_from(given: str | os.PathLike[str] | None) -> str:
    """The directory to record in: ``given``, else :data:`TRACE_DIR_ENV`; ``""`` means off."""
    if given is None:
        return os.environ.get(TRACE_DIR_ENV, "")
    return os.fspath(given)


def implementation() -> str:
    """This implementation's name and version for the trace header (``TRC-002``)."""
    import refrpc

    return f"refrpc-py/{getattr(refrpc, '__version__', 'unknown')}"


class TraceRecorder:
    """Writes the trace of one peer incarnation to ``{directory}/{peer}.{incarnation:016x}.rrtrace``.

    Args:
        directory: Where the file goes; created if missing.
        peer: The PeerId of the recording peer.
        incarnation: Its incarnation.

    Raises:
        OSError: The file cannot be created.
    """

    def __init__(self, directory: str, peer: str, incarnation: int) -> None:
        os.makedirs(directory, exist_ok=True)
        #: The trace file (TRC-011 names it).
        self.path = os.path.join(directory, trace_file_name(peer, incarnation))
        # Owner-only: a trace holds every inline value and address (trace-format.md section 5).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        self._encoder = TraceEncoder(peer, incarnation)
        #: The recordNo the next record gets (TRC-004).
        self.records = 0
        #: The recordNo of the last ``recv`` record: what a ``discarded`` event refers to.
        self.last_recv = 0
        #: Records taken but not yet encoded (see _add).
        self._pending: list[tuple[Any, ...]] = []
        self._pending_bytes = 0
        #: The recordNo of the first record in _pending.
        self._encoded = 0
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()  # flush() from the loop vs close() from the stopping thread
        #: Why recording stopped early (a write failed), or "".
        self.error = ""
        self.closed = False
        #: The fixed part of a transition's detail, per (table, from, event).
        self._transitions: dict[tuple[str, str, str], str] = {}
        header = self._encoder.encode(0, time.monotonic_ns(), _HEADER, protocol_major=PROTOCOL_MAJOR,
                                      protocol_minor=PROTOCOL_MINOR, implementation=implementation())
        self.records = self._encoded = 1
        self._write(header)  # the header is on disk before anything can go wrong

    # ------------------------------------------------------------ records
    # Each waiting record is a tuple whose first item is its kind: (_SEND or _RECV,
    # time, remote peer, its incarnation, seq, frame 0, cause), (_EVENT, time, name,
    # object, task, detail dict, cause) or (_CORE, time, TraceEvent).
    def _add(self, record: tuple[Any, ...], nbytes: int = 0) -> None:
        if self.closed:
            return
        self._pending.append(record)
        self.records += 1
        self._pending_bytes += nbytes
        if len(self._pending) >= FLUSH_RECORDS or self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def sent(self, frame0: bytes, receiver: str, receiver_incarnation: int, seq: int, stimulus_id: str) -> None:
        """A ``send`` record: frame 0 went out (each retransmission is one, TRC-003)."""
        self._add((_SEND, time.monotonic_ns(), receiver, receiver_incarnation, seq, frame0, stimulus_id), len(frame0))

    def received(self, frame0: Any, sender: str, sender_incarnation: int, seq: int, stimulus_id: str) -> None:
        """A ``recv`` record for frame 0 of a message (``bytes`` or the ``zmq.Frame``
        it arrived in), before the stimulus it becomes (``stimulus_id``, the
        ``cause`` of what follows) is handled (TRC-003, TRC-005)."""
        self.last_recv = self.records
        self._add((_RECV, time.monotonic_ns(), sender, sender_incarnation, seq, frame0, stimulus_id), len(frame0))

    def event(self, name: str, object_id: str, task_id: str, detail: dict[str, Any], stimulus_id: str) -> None:
        """An ``event`` record from the registry (section 4) or an ``x-`` name (TRC-007)."""
        if name == "discarded":
            detail = {**detail, "recordNo": self.last_recv}
        self._add((_EVENT, time.monotonic_ns(), name, object_id, task_id, detail, stimulus_id))

    def core_event(self, ins: ev.TraceEvent) -> None:
        """The record of an event the core reported (transitions, holds, deaths...)."""
        if ins.name == "discarded":  # names the recv record it discards, known only now
            self.event(ins.name, ins.object_id, ins.task_id, ins.detail, ins.stimulus_id)
            return
        self._add((_CORE, time.monotonic_ns(), ins))

    def _transition(self, d: dict[str, Any], stimulus_id: str) -> str:
        """A transition's detail: the most frequent event, all but the key, the
        attempt and the cause repeat."""
        row = (d["table"], d["from"], d["event"])
        fixed = self._transitions.get(row)
        if fixed is None:
            fixed = self._transitions[row] = ",".join(
                f'"{k}":{_STR(d[k])}' for k in ("table", "from", "event", "to", "requirement"))
        size = len(d)
        if size == 6:  # the key alone (an object's transition)
            return f'{{{fixed},"key":{_STR(d["key"])},"cause":{_STR(stimulus_id)}}}'
        if size == 7 and type(d.get("attempt")) is int:  # and the attempt (a task's), in that order
            return f'{{{fixed},"key":{_STR(d["key"])},"attempt":{d["attempt"]},"cause":{_STR(stimulus_id)}}}'
        rest = "".join([f',"{k}":{_json(v)}' for k, v in d.items() if k not in _TRANSITION_FIXED])
        return f'{{{fixed}{rest},"cause":{_STR(stimulus_id)}}}'

    def _encode(self, pending: list[tuple[Any, ...]], record_no: int) -> bytes:
        """The records of ``pending``, numbered from ``record_no``, as bytes of the file."""
        event = self._encoder.event
        message = self._encoder.message
        transition = self._transition
        out = []
        append = out.append
        for record in pending:
            kind = record[0]
            if kind is _CORE:
                ins = record[2]
                name = ins.name
                if name == "transition":
                    detail = transition(ins.detail, ins.stimulus_id)
                else:
                    detail = _detail(ins.detail, ins.stimulus_id)
                append(event(record_no, record[1], name, ins.object_id, ins.task_id, detail))
            elif kind is _EVENT:
                _, ns, name, object_id, task_id, detail, sid = record
                append(event(record_no, ns, name, object_id, task_id, _detail(detail, sid)))
            else:
                _, ns, remote, incarnation, seq, frame0, sid = record
                if type(frame0) is not bytes:
                    frame0 = bytes(memoryview(frame0))
                append(message(record_no, ns, kind, remote, incarnation, seq, frame0, f'{{"cause":{_STR(sid)}}}'))
            record_no += 1
        return b"".join(out)

    def stimuli(self, stimuli: Sequence[ev.Stimulus], exec_index: dict, exec_tasks: dict) -> None:
        """Events the shell sees in what it hands the core: the program's calls
        (``program``) and the local store's new copies (``copy-stored``, ``copy-dropped``).

        ``exec_index``/``exec_tasks`` are the core's, read to name the returns a
        finished task stored here when the stimulus does not name them itself.
        """
        for s in stimuli:
            kind = type(s)
            if kind is ev.Tick or kind is ev.Receive:
                continue
            sid = s.stimulus_id
            if kind is ev.Submit:
                detail: dict[str, Any] = {"op": "remote", "function": s.function, "returns": list(s.return_ids)}
                if s.actor_id:
                    detail["actor"] = s.actor_id
                if s.executor:
                    detail["executor"] = s.executor
                self.event("program", "", s.task_id, detail, sid)
            elif kind is ev.Put:
                size = s.size if s.stored else s.value.size
                self.event("program", s.object_id, "", {"op": "put", "size": size}, sid)
                if s.stored:
                    self.event("copy-stored", s.object_id, "", {"size": size, "primary": True, "reason": "put"}, sid)
            elif kind is ev.Get:
                self.event("program", s.object_id, "", {"op": "get"}, sid)
            elif kind is ev.DropRef:
                self.event("program", s.object_id, "", {"op": "delete"}, sid)
            elif kind is ev.Cancel:
                self.event("program", "", s.task_id, {"op": "cancel"}, sid)
            elif kind is ev.CopyStored:
                self.event("copy-stored", s.object_id, "", {"size": s.size, "primary": False, "reason": "fetched"}, sid)
            elif kind is ev.CopyLost:
                self.event("copy-dropped", s.object_id, "", {"reason": "lost"}, sid)
            elif kind is ev.TaskFinished:
                rids = s.return_ids
                if not rids:
                    key = exec_index.get((s.task_id, s.attempt))
                    task = exec_tasks.get(key) if key is not None else None
                    rids = task.spec.return_ids if task is not None else ()
                for rid, result in zip(rids, s.results):
                    if result.stored:
                        self.event("copy-stored", rid, s.task_id,
                                   {"size": result.size, "primary": True, "reason": "task-result"}, sid)

    # ------------------------------------------------------------ the file
    def tick(self, now: float) -> None:
        """Flush if the last flush is :data:`FLUSH_INTERVAL_S` old (the loop calls this each tick)."""
        if now - self._flushed_at >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Encode the waiting records and write them to the file, in one write."""
        with self._lock:
            self._flushed_at = time.monotonic()
            if not self._pending or self.closed:
                return
            pending, self._pending = self._pending, []
            self._pending_bytes = 0
            first, self._encoded = self._encoded, self._encoded + len(pending)
            self._write(self._encode(pending, first))

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:  # a full disk must not take the peer down: stop recording
            self.error = f"{self.path}: {exc}"
            self.closed = True
            self._pending.clear()
            print(f"refrpc: trace recording stopped: {self.error}", file=sys.stderr)

    def close(self) -> None:
        """Flush and close the file; later records are dropped."""
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.closed = True


def _recorder() -> tuple[Any, TraceRecorder | None]:
    """This process's node and its recorder (None when it records nothing)."""
    from ._refs import context

    node = context.node
    return node, getattr(node, "tracer", None)


def recording_path() -> str:
    """The trace file this process's node records into, or ``""`` if it records none.

    For tools and tests: ``refrpc.api._call_on(peer, "refrpc.runtime._tracing:recording_path")``
    asks any peer where its trace is.
    """
    _, tracer = _recorder()
    return tracer.path if tracer is not None else ""


def flush_recording() -> str:
    """Write this process's waiting trace records to its file now; returns the file
    (``""`` if it records none). For tools and tests, through
    ``refrpc.api._call_on(peer, "refrpc.runtime._tracing:flush_recording")``: what a
    peer recorded up to that call is on disk, however the process ends later."""
    node, tracer = _recorder()
    if tracer is None:
        return ""
    node.call(tracer.flush).result(10)
    return tracer.path
