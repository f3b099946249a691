"""Starting an implementation under test and talking to its control channel.

The control channel is JSON lines on the IUT's stdin and stdout
(conformance-hooks.md §2): the suite writes requests ``{"id", "op", ...}``, the IUT
answers each with ``{"id", "ok", "result"|"error"}`` in order (``get`` may be
answered late) and writes events ``{"event", ...}``. :class:`IUTProcess` starts
one IUT (CNF-011), waits for its ``ready`` event (CNF-006), sends requests, and
records every way the IUT breaks the channel's rules (CNF-005) so that a case
can report them.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import socket
import subprocess
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._config import IUTConfig

#: Request ids are unique per run (CNF-005), across every IUT of the run.
_REQUEST_IDS = itertools.count(1)
#: Operations whose answer may come after answers to later requests (CNF-005).
_UNORDERED_OPS = frozenset({"get"})


class ControlError(Exception):
    """The IUT answered a request with ``ok: false``.

    Attributes:
        code: The error code it gave (``unknown_op``, ``bad_request``, ...).
        message: Its message.
    """

    def __init__(self, op: str, code: str, message: str) -> None:
        super().__init__(f"{op}: {code}: {message}")
        self.op = op
        self.code = code
        self.message = message


class ControlTimeout(Exception):
    """The IUT did not answer a request (or send ``ready``) in time."""


class IUTExited(Exception):
    """The IUT process ended while the suite was waiting for it."""


@dataclass(frozen=True)
class Ref:
    """A ref nested in a JSON portable value: ``{"ref": object_id}``."""

    object_id: str


@dataclass(frozen=True)
class ReadyInfo:
    """The fields of the IUT's ``ready`` event (CNF-006)."""

    peer_id: str
    incarnation: int
    address: str
    features: tuple[str, ...]
    inline_threshold: int
    raw: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- JSON portable values
def to_json_value(value: Any) -> Any:
    """A Python value as a JSON portable value (conformance-hooks.md §2)."""
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return {"float64": "nan"}
        if math.isinf(value):
            return {"float64": "inf" if value > 0 else "-inf"}
        return {"float64": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"data": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, Ref):
        return {"ref": value.object_id}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {"map": [[k, to_json_value(v)] for k, v in value.items()]}
    raise TypeError(f"{type(value).__name__} has no JSON portable form")


def from_json_value(value: Any) -> Any:
    """A JSON portable value as a Python value (``bytes``, ``dict``, :class:`Ref`, ...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"data"}:
            return base64.b64decode(value["data"])
        if set(value) == {"float64"}:
            x = value["float64"]
            return float(x) if isinstance(x, str) else float(x)
        if set(value) == {"ref"}:
            return Ref(value["ref"])
        if set(value) == {"map"}:
            return {k: from_json_value(v) for k, v in value["map"]}
    raise ValueError(f"not a JSON portable value: {value!r:.200}")


# ---------------------------------------------------------------- processes
def free_tcp_endpoint() -> str:
    """A ``tcp://127.0.0.1:PORT`` address with a port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class IUTProcess:
    """One running implementation under test.

    Args:
        config: The IUT file.
        peer_id: The PeerId it must use (CNF-011).
        endpoint: Where it must bind; a free local port by default.
        env: Extra environment (for example ``REFRPC_IUT_HEARTBEAT_MS``, CNF-012).
        stderr_path: Where its standard error goes (its log).
    """

    def __init__(
        self,
        config: IUTConfig,
        peer_id: str,
        *,
        endpoint: str | None = None,
        env: dict[str, str] | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        self.config = config
        self.peer_id = peer_id
        self.endpoint = endpoint or free_tcp_endpoint()
        self.extra_env = dict(env or {})
        self.stderr_path = stderr_path
        #: Events other than ``ready``, in order (CNF-006: recorded, otherwise ignored).
        self.events: list[dict[str, Any]] = []
        #: Every way the IUT broke the control channel's rules (CNF-005, CNF-006).
        self.violations: list[str] = []
        #: (request, response) pairs, for the report.
        self.transcript: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.ready: ReadyInfo | None = None
        #: Starts that ended before ``ready`` and were retried (see :meth:`launch`).
        self.failed_starts: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Condition()
        self._pending: dict[int, tuple[str, Future[Any], int]] = {}
        self._order: list[int] = []
        self._ready_event: dict[str, Any] | None = None
        self._reader: threading.Thread | None = None
        self._eof = False
        self._expected_exit = False

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the process (CNF-011); does not wait for ``ready``."""
        env = dict(os.environ)
        env.update(self.config.env)
        env.update(self.extra_env)
        argv = self.config.argv(self.endpoint, self.peer_id, env.get("REFRPC_KEY_FILE", ""))
        env["REFRPC_IUT_ENDPOINT"] = self.endpoint
        env["REFRPC_IUT_PEER_ID"] = self.peer_id
        if self.stderr_path is not None:
            self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
            self._stderr = self.stderr_path.open("wb")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr if self._stderr is not None else subprocess.DEVNULL,
            cwd=str(self.config.base_dir),
            env=env,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_stdout, name=f"iut-{self.peer_id}", daemon=True)
        self._reader.start()

    def launch(self, timeout: float | None = None, attempts: int = 2) -> ReadyInfo:
        """Start the process and wait for ``ready``; if it exits first, try again
        with a fresh endpoint, up to ``attempts`` times in all.

        The port the suite hands out was free a moment before, but another process
        on the machine may take it first; an IUT that cannot bind exits. A real
        startup crash repeats and is reported from the last attempt. Earlier
        attempts are kept in :attr:`failed_starts`.
        """
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                return self.wait_ready(timeout)
            except IUTExited as exc:
                if attempt == attempts:
                    raise
                self.failed_starts.append(f"{self.endpoint}: {exc}")
                self._reset_for_restart()
        raise AssertionError("unreachable")

    def _reset_for_restart(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.endpoint = free_tcp_endpoint()
        self._ready_event = None
        self._eof = False
        self.violations.clear()

    def wait_ready(self, timeout: float | None = None) -> ReadyInfo:
        """Wait for the ``ready`` event (CNF-006).

        Raises:
            IUTExited: The process ended first.
            ControlTimeout: It did not come within ``timeout`` (the config's
                ``startup_timeout_s`` by default).
        """
        limit = self.config.startup_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + limit
        with self._lock:
            while self._ready_event is None:
                if self._eof or (self._proc is not None and self._proc.poll() is not None):
                    status = self.wait_exit(2.0)
                    tail = self.stderr_tail(1500).strip()
                    raise IUTExited(f"{self.peer_id} exited (status {status}) before `ready`" + (f"; stderr: {tail}" if tail else ""))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ControlTimeout(f"{self.peer_id} sent no `ready` event within {limit:g} s")
                self._lock.wait(min(left, 0.2))
            ev = self._ready_event
        try:
            self.ready = ReadyInfo(
                peer_id=str(ev["peer_id"]),
                incarnation=int(ev["incarnation"]),
                address=str(ev["address"]),
                features=tuple(ev.get("features", ())),
                inline_threshold=int(ev.get("inline_threshold", 102_400)),
                raw=dict(ev),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlTimeout(f"{self.peer_id}: `ready` event is missing or has a bad field: {exc}; got {ev}") from None
        if not isinstance(ev.get("incarnation"), str):
            self.violations.append(f"CNF-006: `ready.incarnation` must be a decimal string, got {ev.get('incarnation')!r}")
        return self.ready

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the process to end; its status, or None if it is still running."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def expect_exit(self) -> None:
        """Tell the process bookkeeping that an exit from now on is intended (crash, shutdown)."""
        self._expected_exit = True

    @property
    def exit_expected(self) -> bool:
        return self._expected_exit

    def kill(self) -> None:
        """SIGKILL the process (and its process group)."""
        self._expected_exit = True
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                self._proc.kill()
            self._proc.wait(timeout=10)

    def stop(self, grace: float = 3.0) -> None:
        """End the process: ``shutdown`` on the control channel, then SIGKILL after ``grace``."""
        if self._proc is None:
            return
        self._expected_exit = True
        if self._proc.poll() is None:
            try:
                self.request_async("shutdown")
            except (IUTExited, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self, max_bytes: int = 8000) -> str:
        """The end of the IUT's standard error (its log)."""
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        data = self.stderr_path.read_bytes()
        return data[-max_bytes:].decode("utf-8", "replace")

    # ------------------------------------------------------------ requests
    def request_async(self, op: str, **args: Any) -> Future[Any]:
        """Send a request; the future gets its ``result`` or a :class:`ControlError`."""
        req_id = next(_REQUEST_IDS)
        msg = {"id": req_id, "op": op, **args}
        fut: Future[Any] = Future()
        with self._lock:
            if self._eof:
                raise IUTExited(f"{self.peer_id} has exited (status {self.returncode})")
            self._pending[req_id] = (op, fut, len(self.transcript))
            self._order.append(req_id)
            self.transcript.append((msg, None))
        try:
            self._write(msg)
        except (OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(req_id, None)
            raise IUTExited(f"{self.peer_id}: cannot write to its stdin ({exc}); status {self.returncode}") from None
        return fut

    def request(self, op: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """Send a request and wait for its answer.

        Raises:
            ControlError: ``ok: false``.
            ControlTimeout: No answer within ``timeout``.
            IUTExited: The process ended first.
        """
        fut = self.request_async(op, **args)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fut.result(timeout=0.2)
            except TimeoutError:
                pass
            if time.monotonic() >= deadline:
                raise ControlTimeout(f"{self.peer_id} did not answer `{op}` within {timeout:g} s")
            with self._lock:
                if self._eof and not fut.done():
                    raise IUTExited(f"{self.peer_id} exited (status {self.returncode}) before answering `{op}`")

    def _write(self, msg: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        line = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        self._proc.stdin.write(line)
        self._proc.stdin.flush()

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            for raw in self._proc.stdout:
                self._on_line(raw)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._eof = True
                for req_id, (op, fut, _) in list(self._pending.items()):
                    if not fut.done() and op != "crash":
                        fut.set_exception(IUTExited(f"{self.peer_id} exited before answering `{op}`"))
                self._pending.clear()
                self._lock.notify_all()

    def _on_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            msg = json.loads(text)
        except json.JSONDecodeError:
            with self._lock:
                self.violations.append(f"CNF-005: stdout line that is not JSON: {text[:200]!r}")
            return
        with self._lock:
            if not isinstance(msg, dict):
                self.violations.append(f"CNF-005: stdout line that is not a JSON object: {text[:200]!r}")
            elif "event" in msg and "id" not in msg:
                if msg["event"] == "ready":
                    if self._ready_event is not None:
                        self.violations.append("CNF-006: a second `ready` event")
                    else:
                        self._ready_event = msg
                else:
                    self.events.append(msg)
            elif "id" in msg:
                self._on_response(msg)
            else:
                self.violations.append(f"CNF-005: stdout line that is neither a response nor an event: {text[:200]!r}")
            self._lock.notify_all()

    def _on_response(self, msg: dict[str, Any]) -> None:
        req_id = msg.get("id")
        entry = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if entry is None:
            self.violations.append(f"CNF-005: a response to no outstanding request: {json.dumps(msg)[:200]}")
            return
        op, fut, index = entry
        self.transcript[index] = (self.transcript[index][0], msg)
        earlier = self._order[: self._order.index(req_id)]
        skipped = [i for i in earlier if i in self._pending and self._pending[i][0] not in _UNORDERED_OPS]
        if skipped and op not in _UNORDERED_OPS:
            self.violations.append(
                f"CNF-005: request {req_id} (`{op}`) answered before earlier request(s) {skipped}"
            )
        self._order.remove(req_id)
        if msg.get("ok") is True:
            fut.set_result(msg.get("result"))
        elif msg.get("ok") is False:
            err = msg.get("error") or {}
            if not isinstance(err, dict) or "code" not in err:
                self.violations.append(f"CNF-005: `ok: false` without error.code: {json.dumps(msg)[:200]}")
                err = {"code": "?", "message": str(err)}
            fut.set_exception(ControlError(op, str(err.get("code")), str(err.get("message", ""))))
        else:
            self.violations.append(f"CNF-005: response without `ok` true/false: {json.dumps(msg)[:200]}")
            fut.set_exception(ControlError(op, "?", "malformed response"))
