"""The control channel (spec/conformance-hooks.md, section 2): JSON lines in, JSON lines out.

Requests are read from standard input and carried out one at a time, in order,
on the reading thread; each is answered before the next is read (CNF-005), except
``get``, which waits on a thread of its own and may be answered later. Every
operation that changes state returns only once the node's loop has handled what
it caused (the messages it sends are on the socket), so that a ``table`` or a
wire observation that follows sees its effect (CNF-009).

Standard output carries answers and events only, written by one writer thread:
the node's loop thread, which emits events, never blocks on the pipe.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import queue
import signal
import threading
import time
import traceback
from concurrent.futures import TimeoutError as FutureTimeout
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Callable

from ..runtime._fetch import BadCopies
from ..runtime._node import StoredFormRefused
from ..runtime._refs import Ref, load
from ..core import events as ev
from ..core.errors import LocalUsageError
from ..core.messages import ErrorCode
from ..serialization import DeserializationError
from ..store import ObjectNotFound
from . import _values
from ._faults import FAULTS

if TYPE_CHECKING:
    from ._main import Iut

log = logging.getLogger("refrpc.iut")

_MISSING = object()
#: How often ``quiesce`` looks again.
QUIESCE_POLL_S = 0.005


class BadRequest(Exception):
    """Missing or ill-typed arguments (answered ``bad_request``, CNF-007)."""


class _Terminate(BaseException):
    """SIGTERM or SIGINT: leave cleanly, as ``shutdown`` does."""


def _arg(req: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """Argument ``name`` of a request, of type ``kind`` (a bool is no int); an
    optional argument given as ``null`` takes its default (CNF-027)."""
    if name not in req or (req[name] is None and default is not _MISSING):
        if default is _MISSING:
            raise BadRequest(f"missing argument {name!r}")
        return default
    value = req[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        want = " or ".join(k.__name__ for k in kinds)
        raise BadRequest(f"argument {name!r} must be {want}, not {type(value).__name__}")
    return value


def _count(req: dict[str, Any], name: str, default: Any = _MISSING, least: int = 0) -> int:
    value = _arg(req, name, int, default)
    if value < least:
        raise BadRequest(f"argument {name!r} must be at least {least}, not {value}")
    return value  # type: ignore[no-any-return]


def _amount(value: Any, what: str) -> float:
    """A demand amount (CNF-053): a JSON number, finite and at least 0 (TASK-061)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BadRequest(f"{what} must be a number, not {type(value).__name__}")
    amount = float(value)
    if not math.isfinite(amount) or amount < 0:
        raise BadRequest(f"{what} must be a finite number of at least 0, not {value!r} (TASK-061)")
    return amount


def _demand(req: dict[str, Any]) -> tuple[float, tuple[tuple[str, float], ...]]:
    """``submit``'s ``num_cpus`` (1) and ``resources`` ({}): the task's demand (CNF-053)."""
    cpus = _amount(_arg(req, "num_cpus", (int, float), 1), "argument 'num_cpus'")
    named = _arg(req, "resources", dict, {})
    resources = []
    for name, value in named.items():
        if not name:
            raise BadRequest("a resource name must not be empty")
        resources.append((name, _amount(value, f"resource {name!r}")))
    return cpus, tuple(resources)


def _text(req: dict[str, Any], name: str) -> str:
    value = _arg(req, name, str)
    if not value:
        raise BadRequest(f"argument {name!r} must not be empty")
    return value  # type: ignore[no-any-return]


def _name(req: dict[str, Any], name: str) -> str:
    """A function, class or method name: 1 to 256 bytes of UTF-8 (VAL-010)."""
    value = _text(req, name)
    if len(value.encode("utf-8", "surrogatepass")) > 256:
        raise BadRequest(f"argument {name!r} is longer than 256 bytes (VAL-010)")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Writer:
    """Writes lines to the control channel's output from one thread, in order."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lines: queue.SimpleQueue[str | threading.Event] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="iut-writer", daemon=True).start()

    def write(self, obj: dict[str, Any]) -> None:
        self._lines.put(json.dumps(obj, allow_nan=False, separators=(",", ":")))

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything written so far is out."""
        done = threading.Event()
        self._lines.put(done)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._lines.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._out.write(item + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the suite is gone; stdin's end will stop us


class Control:
    """The control channel of one IUT process."""

    def __init__(self, out: IO[str]) -> None:
        self.writer = _Writer(out)
        self.iut: Iut | None = None
        self.faults: list[str] = []
        #: The refs the IUT holds as a program (OWN-003): object id -> one handle per hold.
        self.held: dict[str, list[Ref[Any]]] = {}
        self._held_lock = threading.Lock()
        #: Actors the IUT created (actor_create), which it may call.
        self.actors: set[str] = set()
        #: Peers added with 0 slots: known by address, never placed on.
        self.unplaced: dict[str, str] = {}
        #: Set once the process leaves on purpose (shutdown, fail-stop): the node's
        #: loop stopping is then expected.
        self._leaving = threading.Event()
        self.ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "info": lambda req: self.node_iut.info(),
            "add_peer": self.add_peer,
            "put": self.put,
            "submit": self.submit,
            "actor_create": self.actor_create,
            "actor_call": self.actor_call,
            "drop": self.drop,
            "drop_held": self.drop_held,
            "gc": self.collect,
            "quiesce": self.quiesce,
            "table": self.table,
            "counts": self.counts,
            "cancel": self.cancel,
            "x-faults": self.list_faults,
            "x-peers": self.peers,
        }

    @property
    def node_iut(self) -> Iut:
        assert self.iut is not None
        return self.iut

    # ------------------------------------------------------------ running
    def run(self, iut: Iut, faults: list[str], lines: BinaryIO) -> int:
        """Announce ``ready`` (CNF-006), then serve requests until told to stop."""
        self.iut, self.faults = iut, faults

        def terminate(signum: int, frame: Any) -> None:
            raise _Terminate()

        signal.signal(signal.SIGTERM, terminate)
        signal.signal(signal.SIGINT, terminate)
        threading.Thread(target=self._watch, name="iut-watch", daemon=True).start()
        self.writer.write({"event": "ready", **iut.info()})
        try:
            for raw in lines:
                if raw.strip():
                    self.serve(raw)
        except _Terminate:
            log.info("terminated by a signal")
        self.leave()
        return 0  # not reached: leave() exits

    def serve(self, raw: bytes) -> None:
        """Carry out one request line and answer it (CNF-005, CNF-007)."""
        try:
            req = json.loads(raw, parse_constant=_reject_constant)
        except ValueError as exc:
            self._error(None, "bad_request", f"not a JSON line: {exc}")
            return
        rid = req.get("id") if isinstance(req, dict) else None
        if not isinstance(req, dict) or type(rid) is not int or not isinstance(req.get("op"), str):
            self._error(rid if type(rid) is int else None, "bad_request", "a request is a JSON object with an integer id and a string op")
            return
        op = req["op"]
        if op == "crash":
            log.warning("crash requested: exiting as kill -9 would")
            os.kill(os.getpid(), signal.SIGKILL)
        if op == "shutdown":
            self.writer.write({"id": rid, "ok": True, "result": None})
            self.leave()
        if op == "get":
            self.get(rid, req)
            return
        handler = self.ops.get(op)
        if handler is None:
            self._error(rid, "unknown_op", f"unknown op {op!r}")
            return
        try:
            result = handler(req)
        except (BadRequest, _values.BadValue, _values.NotPortable) as exc:
            self._error(rid, "bad_request", str(exc))
        except LocalUsageError as exc:  # the core refused: e.g. a ref the IUT no longer holds
            self._error(rid, exc.code.name, str(exc))
        except Exception as exc:
            log.error("op %s failed:\n%s", op, traceback.format_exc())
            self._error(rid, "internal", f"{type(exc).__name__}: {exc}")
        else:
            self.writer.write({"id": rid, "ok": True, "result": result})

    def _error(self, rid: int | None, code: str, message: str) -> None:
        self.writer.write({"id": rid, "ok": False, "error": {"code": code, "message": message}})

    def _watch(self) -> None:
        """A node loop that dies of an exception leaves a peer that answers nothing:
        say why (stderr and an ``internal_error`` event) and exit with status 70."""
        node = self.node_iut.node
        node.stopped.wait()
        if self._leaving.is_set():
            return
        log.error("the protocol loop stopped:\n%s", node.failure)
        self.writer.write({"event": "internal_error", "message": node.failure[-4000:]})
        self.writer.drain()
        logging.shutdown()
        os._exit(70)

    def leave(self) -> None:
        """Leave cleanly: Goodbye to every live session (LIV-006), then exit 0."""
        self._leaving.set()
        self.writer.drain()
        iut = self.iut
        if iut is not None:
            iut.executor.stop()
            # Goodbye to every session (unless the no-goodbye switch is on); the node
            # keeps polling until it has left a connecting DEALER's backlog (LIV-010).
            iut.node.stop(timeout=2.0)
        logging.shutdown()
        os._exit(0)

    def on_instruction(self, ins: ev.Instruction) -> None:
        """Instructions for the program (on the loop thread): deaths become events."""
        if isinstance(ins, ev.PeerDeclaredDead):
            self.writer.write({"event": "peer_dead", "peer_id": ins.peer, "incarnation": str(ins.incarnation), "reason": ins.reason})
        elif isinstance(ins, ev.FailStop):
            # LIV-005: declared dead by the cluster; the node has stopped sending.
            self._leaving.set()
            log.warning("fail-stop: %s", ins.reason)
            self.writer.write({"event": "fail_stop", "reason": ins.reason})

            def exit_now() -> None:
                self.writer.drain()
                logging.shutdown()
                os._exit(0)

            threading.Thread(target=exit_now, name="iut-fail-stop", daemon=True).start()

    # ------------------------------------------------------------ held refs
    def _keep(self, ref: Ref[Any]) -> None:
        with self._held_lock:
            self.held.setdefault(ref.id, []).append(ref)

    def _held_ref(self, oid: str) -> Ref[Any]:
        with self._held_lock:
            handles = self.held.get(oid)
            if not handles:
                if self.node_iut.unheld_ref_code != "bad_request":  # a fault switch (CNF-024)
                    raise LocalUsageError(ErrorCode[self.node_iut.unheld_ref_code], f"no ref to {oid!r}")
                raise BadRequest(f"the IUT holds no ref to {oid!r}")
            return handles[0]

    def _barrier(self) -> None:
        """Return once the loop has handled everything queued so far (DropRefs included)."""
        self.node_iut.node.call(lambda: None).result()

    def _arg_specs(self, items: Any) -> list[ev.ArgSpec]:
        if not isinstance(items, list):
            raise BadRequest("args must be a list")
        node = self.node_iut.node
        specs = []
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                raise BadRequest(f"an argument is {{\"value\": v}}, {{\"ref\": id}} or {{\"shared\": id}}, not {item!r:.80}")
            (kind, inner), = item.items()
            if kind == "value":
                obj = _values.from_json(inner, self._held_ref)
                specs.append(ev.ArgSpec(value=_values.encode(node, obj)))
            elif kind in ("ref", "shared"):
                if not isinstance(inner, str):
                    raise BadRequest(f"a {kind} argument is an object id string")
                self._held_ref(inner)
                specs.append(ev.ArgSpec(object_id=inner, shared=kind == "shared"))
            else:
                raise BadRequest(f"unknown argument kind {kind!r}")
        return specs

    def _reach(self, peer: str) -> None:
        """Make sure the core can address ``peer``: it was added, or it talked to us."""
        node = self.node_iut.node
        if peer == node.peer_id:
            raise BadRequest("the IUT cannot run tasks on itself")
        core = node.core
        known = node.call(lambda: peer in core.workers or bool(peer in core.remotes and core.remotes[peer].address)).result()
        if known:
            return
        address = self.unplaced.get(peer)
        if address is None:
            raise BadRequest(f"unknown peer {peer!r}: add_peer it first")
        node.handle_soon(lambda sid: ev.Connect(sid, peer, address)).result()

    # ------------------------------------------------------------ operations
    def add_peer(self, req: dict[str, Any]) -> None:
        peer, address, slots = _text(req, "peer_id"), _text(req, "address"), _count(req, "slots")
        node = self.node_iut.node
        if peer == node.peer_id:
            raise BadRequest("add_peer names the IUT itself")
        if slots > 0:
            node.handle_soon(lambda sid: ev.AddPeer(sid, peer, address, slots)).result()
        else:
            self.unplaced[peer] = address
        return None

    def put(self, req: dict[str, Any]) -> dict[str, Any]:
        if "value" not in req:
            raise BadRequest("missing argument 'value'")
        node = self.node_iut.node
        ref = _values.put(node, _values.from_json(req["value"], self._held_ref))
        self._keep(ref)
        return {"object_id": ref.id}

    def submit(self, req: dict[str, Any]) -> dict[str, Any]:
        function, executor = _name(req, "function"), _text(req, "executor")
        specs = self._arg_specs(_arg(req, "args", list))
        num_returns = _count(req, "num_returns", 1, least=1)
        max_retries = _count(req, "max_retries", 0)
        retry_exceptions = _arg(req, "retry_exceptions", bool, False)
        num_cpus, resources = _demand(req)
        self._reach(executor)
        node = self.node_iut.node
        task_id, rids = node.new_task_ids(num_returns)
        stimulus = lambda: ev.Submit(node.sid(), task_id, function, tuple(specs), rids, max_retries, retry_exceptions, "", executor,
                                     num_cpus, resources)
        node.call(lambda: node.handle(stimulus())).result()  # TASK-001: to exactly that executor
        for rid in rids:
            self._keep(Ref(node, rid, counted=True))  # each return is held once (OWN-001)
        return {"task_id": task_id, "returns": list(rids)}

    def actor_create(self, req: dict[str, Any]) -> dict[str, Any]:
        class_name, host = _name(req, "class"), _text(req, "host")
        specs = self._arg_specs(_arg(req, "args", list))
        max_restarts = _count(req, "max_restarts", 0)
        max_concurrency = _count(req, "max_concurrency", 0)
        with_handle = _arg(req, "handle", bool, False)
        self._reach(host)
        node = self.node_iut.node

        def create() -> str:
            aid = node.new_id()
            node.handle(ev.CreateActorRequest(node.sid(), aid, class_name, tuple(specs), host, max_restarts,
                                              max_concurrency))
            if with_handle:  # ACT-019: the handle object, held once like a put object
                from ..runtime._handles import descriptor_value

                value = descriptor_value(aid, node.peer_id, host, node.core._address_of(host), class_name)
                node.handle(ev.Put(node.sid(), aid, value))
            return aid

        actor_id: str = node.call(create).result()  # ACT-001
        self.actors.add(actor_id)
        if with_handle:
            self._keep(Ref(node, actor_id, counted=True))
        return {"actor_id": actor_id}

    def actor_call(self, req: dict[str, Any]) -> dict[str, Any]:
        actor_id, method = _text(req, "actor_id"), _name(req, "method")
        if actor_id not in self.actors:
            raise BadRequest(f"the IUT created no actor {actor_id!r}")
        specs = self._arg_specs(_arg(req, "args", list))
        num_returns = _count(req, "num_returns", 1, least=1)
        node = self.node_iut.node
        task_id, rids = node.new_task_ids(num_returns)
        stimulus = lambda: ev.Submit(node.sid(), task_id, method, tuple(specs), rids, 0, False, actor_id)
        node.call(lambda: node.handle(stimulus())).result()  # ACT-003: in call order
        for rid in rids:
            self._keep(Ref(node, rid, counted=True))
        return {"task_id": task_id, "returns": list(rids)}

    def cancel(self, req: dict[str, Any]) -> None:
        """``cancel``: as the program's cancel (TASK-008); the task must be one the IUT submitted."""
        task_id = _text(req, "task_id")
        node = self.node_iut.node
        if not node.call(lambda: task_id in node.core.tasks).result():
            raise BadRequest(f"the IUT keeps no task {task_id!r}")
        node.call(lambda: node.handle(ev.Cancel(node.sid(), task_id))).result()
        return None

    def drop(self, req: dict[str, Any]) -> None:
        oid = _text(req, "object_id")
        with self._held_lock:
            handles = self.held.get(oid)
            if not handles:
                raise BadRequest(f"the IUT holds no ref to {oid!r}")
            handle = handles.pop()
            if not handles:
                del self.held[oid]
        del handle  # its DropRef is queued now (a local ref count -1)
        self._barrier()
        return None

    def drop_held(self, req: dict[str, Any]) -> dict[str, int]:
        n = self.node_iut.catalog.drop_held()
        self._barrier()
        return {"dropped": n}

    def collect(self, req: dict[str, Any]) -> None:
        gc.collect()
        self._barrier()  # releases are sent at the end of each stimulus: nothing stays batched
        return None

    def quiesce(self, req: dict[str, Any]) -> dict[str, bool]:
        timeout_ms = _count(req, "timeout_ms")
        node = self.node_iut.node
        end = time.monotonic() + timeout_ms / 1000
        while True:
            busy = node.call(self._busy).result()
            if not busy:
                return {"quiescent": True}
            if time.monotonic() >= end:
                log.info("not quiescent after %d ms: %s", timeout_ms, busy)
                return {"quiescent": False}
            time.sleep(QUIESCE_POLL_S)

    def _busy(self) -> str:
        """What keeps the IUT from being quiescent (loop thread); "" if nothing."""
        iut = self.node_iut
        core, executor = iut.node.core, iut.executor
        for r in core.remotes.values():
            if r.state == "connecting":
                return f"handshake with {r.peer}"
            if r.state == "alive" and (r.unacked or r.queued):
                return f"unacknowledged messages to {r.peer}"
        for ex in core.exec_tasks.values():
            if ex.state in ("resolving", "running", "registering"):
                return f"task {ex.spec.task_id} is {ex.state}"
        with executor._lock:
            if executor._queued or executor.busy():
                return "the executor is running a task"
        for t in core.tasks.values():
            if t.state == "submitted" or (t.state == "cancelled" and t.holding_args):
                return f"task {t.spec.task_id} awaits its reply"
        if core.outgoing:
            return "RegisterBorrower awaiting an answer"
        if any(b.status_requested for b in core.borrowed.values()):
            return "GetObjectStatus awaiting an answer"
        if core.introspections or core.get_waiters:
            return "a request awaits an answer"
        if any(a.state in ("pending", "restarting") for a in core.owned_actors.values()):
            return "CreateActor awaiting an answer"
        if iut.node.fetcher._by_object:
            return "a fetch is in progress"
        if core.pending_releases or core.pending_frees:
            return "releases waiting to be sent"
        return ""

    def table(self, req: dict[str, Any]) -> dict[str, Any]:
        node = self.node_iut.node
        rows = node.call(node.core.table).result()  # a snapshot: INT-004
        return {"entries": [
            {
                "objectId": e.object_id, "owner": e.owner, "role": e.role, "state": e.state,
                "localRefs": e.local_refs, "submittedTaskRefs": e.submitted_task_refs,
                "containedIn": list(e.contained_in), "borrowers": list(e.borrowers),
                "locations": list(e.locations), "lineageRefs": e.lineage_refs, "size": e.size,
                "spilled": e.spilled,
            }
            for e in rows
        ]}

    def counts(self, req: dict[str, Any]) -> dict[str, int]:
        """``counts``: the sizes of the task tables (CNF-022), as one snapshot."""
        core = self.node_iut.node.core
        sizes = self.node_iut.node.call(lambda: (len(core.exec_tasks), len(core.tasks))).result()
        return {"executor_tasks": sizes[0], "submitted_tasks": sizes[1]}

    def list_faults(self, req: dict[str, Any]) -> dict[str, Any]:
        """``x-faults``: the fault switches this process runs with (CNF-010)."""
        return {"faults": [{"name": n, "requirement": FAULTS[n][0], "description": FAULTS[n][1]} for n in self.faults]}

    def peers(self, req: dict[str, Any]) -> dict[str, Any]:
        """``x-peers``: the sessions this IUT knows, with their state (CNF-010)."""
        core = self.node_iut.node.core

        def snapshot() -> list[dict[str, Any]]:
            return [
                {"peer_id": r.peer, "incarnation": str(r.incarnation), "state": r.state, "address": r.address,
                 "features": list(r.features), "heartbeat_interval_ms": r.heartbeat_interval_ms}
                for r in core.remotes.values()
            ]

        return {"peers": self.node_iut.node.call(snapshot).result()}

    # ------------------------------------------------------------ get
    def get(self, rid: int, req: dict[str, Any]) -> None:
        """Resolve a held ref on a thread of its own; answered when done (CNF-005)."""
        try:
            oid, timeout_ms = _text(req, "object_id"), _count(req, "timeout_ms")
            self._held_ref(oid)
        except BadRequest as exc:
            self._error(rid, "bad_request", str(exc))
            return
        except LocalUsageError as exc:
            self._error(rid, exc.code.name, str(exc))
            return

        def run() -> None:
            try:
                result = self._resolve(oid, time.monotonic() + timeout_ms / 1000)
            except Exception as exc:
                log.error("get %s failed:\n%s", oid, traceback.format_exc())
                self._error(rid, "internal", f"{type(exc).__name__}: {exc}")
            else:
                self.writer.write({"id": rid, "ok": True, "result": result})

        threading.Thread(target=run, name=f"iut-get-{rid}", daemon=True).start()

    def _resolve(self, oid: str, deadline: float) -> dict[str, Any]:
        """As a program's get: the value, fetched if needed, or the error it failed with."""
        node = self.node_iut.node
        timeout = {"error": {"code": "timeout", "message": f"{oid} did not resolve in time"}}
        delay = 0.05
        while True:
            try:
                res = node.get_result(oid).result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                return timeout
            if res.error is not None:
                return {"error": {"code": self.node_iut.error_code_name(res.error.code), "message": res.error.message}}  # CNF-018
            value = res.value
            if value is None:
                try:
                    value = node.local_value(oid, res.locations, max(0.0, deadline - time.monotonic()))  # FET-001
                except FutureTimeout:
                    return timeout
                except (StoredFormRefused, BadCopies) as exc:  # OBJ-067, OBJ-077
                    return {"error": {"code": self.node_iut.error_code_name(exc.code), "message": str(exc)}}
                except ObjectNotFound:
                    # OBJ-013: not where the owner said; ask again, after a pause.
                    node.handle_soon(lambda sid: ev.FetchFailed(sid, oid))
                    if time.monotonic() + delay >= deadline:
                        return timeout
                    time.sleep(delay)
                    delay = min(1.0, delay * 2)
                    continue
            try:
                obj = load(node, oid, value)  # nested refs: held by the IUT now (BOR-008)
            except DeserializationError as exc:  # a rule of the value's encoding: VAL-021
                return {"error": {"code": self.node_iut.error_code_name(ErrorCode.MALFORMED), "message": str(exc)}}
            return {"value": _values.to_json(obj, self._keep)}
