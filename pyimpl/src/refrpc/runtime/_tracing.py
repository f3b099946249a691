"""Recording a peer's trace in the canonical format (spec ``trace-format.md``).

A :class:`TraceRecorder` belongs to one :class:`~refrpc.runtime.Node` and is
called only from its loop thread, in the order things happen there: a ``recv``
record before the stimulus it becomes, then the events and ``send`` records
that stimulus caused (each naming it under ``cause``, ``TRC-009``). Records are
encoded at once and buffered; the buffer goes to the file in one ``write``
every :data:`FLUSH_INTERVAL_S` (the loop's clock tick checks), when it holds
:data:`FLUSH_BYTES`, and when the node stops. A process killed with SIGKILL
loses at most the records of the last interval; the record it was writing, if
any, is cut short, which readers accept (``TRC-012``).

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
#: ... and as soon as this many bytes are buffered.
FLUSH_BYTES = 1 << 20

_SEND, _RECV, _EVENT, _HEADER = TraceKind.SEND, TraceKind.RECV, TraceKind.EVENT, TraceKind.HEADER
#: Values other than text and integers in a ``detail`` (json.dumps with options builds a new encoder each call).
_JSON = json.JSONEncoder(separators=(",", ":"))
#: A JSON string literal (the C function json.dumps uses for text).
_STR = json.encoder.encode_basestring_ascii


def _detail(detail: dict[str, Any], stimulus_id: str) -> str:
    """``detail`` plus ``cause`` as a JSON object (TRC-009), without json.dumps's
    per-call cost: keys are this module's and the core's names, values mostly text
    and integers."""
    parts = []
    for key, value in detail.items():
        kind = type(value)
        if kind is str:
            parts.append(f'"{key}":{_STR(value)}')
        elif kind is int:
            parts.append(f'"{key}":{value}')
        elif kind is list and all(type(v) is str for v in value):
            parts.append(f'"{key}":[{",".join(map(_STR, value))}]')
        else:
            parts.append(f'"{key}":{_JSON.encode(value)}')
    parts.append(f'"cause":{_STR(stimulus_id)}')
    return "{" + ",".join(parts) + "}"


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
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._flushed_at = time.monotonic()
        self._lock = threading.Lock()  # flush() from the loop vs close() from the stopping thread
        #: Why recording stopped early (a write failed), or "".
        self.error = ""
        self.closed = False
        # A stimulus id is "{peer}:{n}": a peer id that needs no JSON escaping lets
        # ``cause`` be formatted without json.dumps.
        self._plain_ids = json.dumps(peer) == f'"{peer}"'
        #: The fixed part of a transition's detail, per (table, from, event).
        self._transitions: dict[tuple[str, str, str], str] = {}
        self._add(self._encoder.encode(0, time.monotonic_ns(), _HEADER, protocol_major=PROTOCOL_MAJOR,
                                       protocol_minor=PROTOCOL_MINOR, implementation=implementation()))
        self.flush()  # the header is on disk before anything can go wrong

    # ------------------------------------------------------------ records
    def _add(self, record: bytes) -> None:
        if self.closed:
            return
        self._buffer.append(record)
        self.records += 1
        self._buffered += len(record)
        if self._buffered >= FLUSH_BYTES:
            self.flush()

    def _cause(self, stimulus_id: str) -> str:
        if self._plain_ids:
            return f'{{"cause":"{stimulus_id}"}}'
        return json.dumps({"cause": stimulus_id})

    def sent(self, frame0: bytes, receiver: str, receiver_incarnation: int, seq: int, stimulus_id: str) -> None:
        """A ``send`` record: frame 0 went out (each retransmission is one, TRC-003)."""
        self._add(self._encoder.encode(self.records, time.monotonic_ns(), _SEND, receiver, receiver_incarnation, seq,
                                       frame0, detail=self._cause(stimulus_id)))

    def received(self, frame0: bytes, sender: str, sender_incarnation: int, seq: int, stimulus_id: str) -> None:
        """A ``recv`` record for frame 0 of a message, before the stimulus it becomes
        (``stimulus_id``, the ``cause`` of what follows) is handled (TRC-003, TRC-005)."""
        self.last_recv = self.records
        self._add(self._encoder.encode(self.records, time.monotonic_ns(), _RECV, sender, sender_incarnation, seq,
                                       frame0, detail=self._cause(stimulus_id)))

    def event(self, name: str, object_id: str, task_id: str, detail: dict[str, Any], stimulus_id: str) -> None:
        """An ``event`` record from the registry (section 4) or an ``x-`` name (TRC-007)."""
        if name == "discarded":
            detail = {**detail, "recordNo": self.last_recv}
        self._add(self._encoder.encode(self.records, time.monotonic_ns(), _EVENT, event_name=name,
                                       object_id=object_id, task_id=task_id, detail=_detail(detail, stimulus_id)))

    def core_event(self, ins: ev.TraceEvent) -> None:
        """The record of an event the core reported (transitions, holds, deaths...)."""
        if ins.name != "transition":
            self.event(ins.name, ins.object_id, ins.task_id, ins.detail, ins.stimulus_id)
            return
        # The most frequent event: all but the key, the attempt and the cause repeats.
        d = ins.detail
        row = (d["table"], d["from"], d["event"])
        fixed = self._transitions.get(row)
        if fixed is None:
            fixed = self._transitions[row] = ",".join(
                f'"{k}":{_STR(d[k])}' for k in ("table", "from", "event", "to", "requirement"))
        attempt = f',"attempt":{d["attempt"]}' if "attempt" in d else ""
        detail = f'{{{fixed},"key":{_STR(d["key"])}{attempt},"cause":{_STR(ins.stimulus_id)}}}'
        self._add(self._encoder.encode(self.records, time.monotonic_ns(), _EVENT, event_name="transition",
                                       object_id=ins.object_id, task_id=ins.task_id, detail=detail))

    def stimuli(self, stimuli: Sequence[ev.Stimulus], exec_index: dict, exec_tasks: dict) -> None:
        """Events the shell sees in what it hands the core: the program's calls
        (``program``) and the local store's new copies (``copy-stored``, ``copy-dropped``).

        ``exec_index``/``exec_tasks`` are the core's, read to name the returns a
        finished task stored here.
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
                key = exec_index.get((s.task_id, s.attempt))
                task = exec_tasks.get(key) if key is not None else None
                if task is None:
                    continue
                for rid, result in zip(task.spec.return_ids, s.results):
                    if result.stored:
                        self.event("copy-stored", rid, s.task_id,
                                   {"size": result.size, "primary": True, "reason": "task-result"}, sid)

    # ------------------------------------------------------------ the file
    def tick(self, now: float) -> None:
        """Flush if the last flush is :data:`FLUSH_INTERVAL_S` old (the loop calls this each tick)."""
        if now - self._flushed_at >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records to the file, in one write."""
        with self._lock:
            self._flushed_at = time.monotonic()
            if not self._buffer or self.closed:
                return
            data = b"".join(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:  # a full disk must not take the peer down: stop recording
                self.error = f"{self.path}: {exc}"
                self.closed = True
                print(f"refrpc: trace recording stopped: {self.error}", file=sys.stderr)

    def close(self) -> None:
        """Flush and close the file; later records are dropped."""
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self.closed = True


def recording_path() -> str:
    """The trace file this process's node records into, or ``""`` if it records none.

    For tools and tests: ``refrpc.api._call_on(peer, "refrpc.runtime._tracing:recording_path")``
    asks any peer where its trace is.
    """
    from .. import api

    node = api._ctx.node
    tracer = getattr(node, "tracer", None)
    return tracer.path if tracer is not None else ""
