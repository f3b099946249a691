"""The fixture catalog (spec/conformance-hooks.md, section 1) and the executor that runs it.

Every function and the ``Counter`` actor class are registered under exactly the
names of the spec's tables (CNF-001) and looked up by exact name: nothing else can
be executed (VAL-010). They take and return ``portable`` values; refs reach them
as :class:`refrpc.api.Ref` handles. Each is deterministic (CNF-002) and raises on
an argument of the wrong type (CNF-003). The refs ``hold`` and ``Counter.keep``
keep stay held until the control channel's ``drop_held`` or the actor's death
(CNF-004).
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from ..api import Ref
from ..core import events as ev
from ..core.messages import Encoding, ErrorCode, ErrorInfo, Value
from ..runtime import Executor
from ..runtime._node import error_info
from . import _membership, _values

if TYPE_CHECKING:
    from ..runtime import Node

#: The largest value ``make_bytes`` makes (a bigger request raises instead of
#: exhausting the IUT's memory).
MAX_MAKE_BYTES = 1 << 30
#: ``sleep`` wakes this often, so that a stop (TASK-008, FATE-003) lands at once.
SLEEP_SLICE_S = 0.01


def _int64(x: Any, name: str, least: int = 0) -> int:
    if type(x) is not int:
        raise TypeError(f"{name} must be an int64, not {type(x).__name__}")
    if x < least:
        raise ValueError(f"{name} must be at least {least}, not {x}")
    return x


def _ref(x: Any, name: str) -> Ref[Any]:
    if not isinstance(x, Ref):
        raise TypeError(f"{name} must be a ref (passed shared), not {type(x).__name__}")
    return x


# ---------------------------------------------------------------- stateless fixtures
def echo(x: Any) -> Any:
    """Returns its argument unchanged; nested refs come back nested (BOR-002, BOR-004)."""
    return x


_PATTERN = bytes(range(256))


def make_bytes(n: Any) -> bytes:
    """``n`` bytes, byte i = i mod 256; above the inline threshold the result is stored (TASK-004)."""
    n = _int64(n, "n")
    if n > MAX_MAKE_BYTES:
        raise ValueError(f"make_bytes is limited to {MAX_MAKE_BYTES} bytes here, not {n}")
    return (_PATTERN * (n // 256 + 1))[:n]


def sum_bytes(x: Any) -> int:
    """The sum of the byte values of ``x`` (0 for empty data)."""
    if not isinstance(x, (bytes, bytearray, memoryview)):
        raise TypeError(f"x must be data, not {type(x).__name__}")
    view = memoryview(x)
    return sum(view if view.format == "B" else view.cast("B"))


def forward(r: Any) -> Ref[Any]:
    """Returns the shared ref itself: a ``Portable.ref`` with index 0 (BOR-002)."""
    return _ref(r, "r")


def fail(msg: Any) -> None:
    """Raises an error whose text contains ``msg`` (TASK-007)."""
    if not isinstance(msg, str):
        raise TypeError(f"msg must be text, not {type(msg).__name__}")
    raise FixtureError(msg)


def sleep(ms: Any) -> None:
    """Waits ``ms`` milliseconds in short slices, so that a stop interrupts it (TASK-008)."""
    end = time.monotonic() + _int64(ms, "ms") / 1000
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SLEEP_SLICE_S))


class FixtureError(Exception):
    """What ``fail`` raises."""


# ---------------------------------------------------------------- the catalog
class Counter:
    """The fixture actor: an int64 state and a list of kept refs (BOR-007)."""

    #: The methods callable remotely, by exact name.
    METHODS = frozenset({"add", "get", "keep"})

    def __init__(self, catalog: Catalog, start: Any) -> None:
        self._catalog = catalog
        self.state = _int64(start, "start", least=-(1 << 63))
        #: Refs kept in the actor's state (CNF-004).
        self.kept: list[Ref[Any]] = []

    def add(self, n: Any) -> int:
        self.state += _int64(n, "n", least=-(1 << 63))
        return self.state

    def get(self) -> int:
        return self.state

    def keep(self, r: Any) -> None:
        with self._catalog.lock:
            self.kept.append(_ref(r, "r"))


class Catalog:
    """The fixture functions and classes of one IUT process, with the refs they keep."""

    def __init__(self, node: Node, *, membership: str = "") -> None:
        self.node = node
        #: The membership functions by their exact names, when the IUT runs them for the
        #: suite: the head's (``membership`` "head", CNF-051) or a member's ``learn``
        #: ("member", CNF-052); their values are pickled (CLU-030). Empty otherwise.
        self.membership: dict[str, Callable[..., Any]] = {}
        if membership:
            from ._membership import functions

            self.membership = functions(membership)
        #: Guards ``held`` and every Counter's ``kept``: the task thread appends,
        #: the control channel's drop_held takes them away.
        self.lock = threading.Lock()
        #: The process-wide list of refs ``hold`` keeps (CNF-004).
        self.held: list[Ref[Any]] = []
        self._counters: weakref.WeakSet[Counter] = weakref.WeakSet()
        #: Function name -> function, exactly the spec's names (CNF-001, VAL-010).
        self.functions: dict[str, Callable[..., Any]] = {
            "echo": echo,
            "make_bytes": make_bytes,
            "sum_bytes": sum_bytes,
            "hold": self.hold,
            "forward": forward,
            "nest": self.nest,
            "fail": fail,
            "sleep": sleep,
        }
        #: Class name -> constructor.
        self.classes: dict[str, Callable[..., Any]] = {"Counter": self.new_counter}

    def hold(self, r: Any) -> None:
        """Keeps ``r`` after the task, in the process-wide list (BOR-007)."""
        with self.lock:
            self.held.append(_ref(r, "r"))

    def nest(self, r: Any) -> Ref[Any]:
        """Puts ``[r]`` as a new object owned here and returns a ref to it (GC-002, BOR-004)."""
        return _values.put(self.node, [_ref(r, "r")])

    def new_counter(self, start: Any) -> Counter:
        counter = Counter(self, start)
        self._counters.add(counter)
        return counter

    def method(self, instance: Any, name: str) -> Callable[..., Any] | None:
        if isinstance(instance, Counter) and name in Counter.METHODS:
            return getattr(instance, name)  # type: ignore[no-any-return]
        return None

    def drop_held(self) -> int:
        """Drops every ref the fixtures keep (CNF-004); returns how many."""
        with self.lock:
            dropped = self.held
            self.held = []
            for counter in list(self._counters):
                dropped += counter.kept
                counter.kept = []
        n = len(dropped)
        dropped.clear()  # the handles die here, outside the lock: each sends its DropRef
        return n


# ---------------------------------------------------------------- the executor
class FixtureExecutor(Executor):
    """The runtime's task thread, running the catalog instead of importing names.

    Results are always ``portable`` (VAL-017: readable by a peer without
    ``python-pickle``); one without a portable form fails with ``TASK_FAILED``.
    """

    def __init__(self, node: Node, catalog: Catalog, *, held: bool = False) -> None:
        self.catalog = catalog
        #: The code a raised exception is reported with: TASK_FAILED (TASK-007), or
        #: another one under the ``wrong-error-code`` fault switch.
        self.failure_code = ErrorCode.TASK_FAILED
        #: Whether results above the inline threshold are stored here (TASK-004); the
        #: ``inline-large-results`` fault switch turns it off.
        self.store_large_results = True
        super().__init__(node, held=held)

    def _error(self, exc: BaseException) -> ErrorInfo:
        info = error_info(exc)
        if self.failure_code is not ErrorCode.TASK_FAILED:
            info = ErrorInfo(self.failure_code, info.message, "", info.detail)
        return info

    def _load(self, object_id: str, value: Value) -> Any:
        """A pickled argument (on a session where ``python-pickle`` is in use: the
        membership calls, CNF-051) is read as CLU-030's built-in types only, never by
        the general unpickler; every other encoding as the runtime reads it."""
        if value.encoding is Encoding.PICKLE:
            return _membership.load_pickled(value)
        return super()._load(object_id, value)

    def _speaks_pickle(self, peer: str) -> bool:
        """Whether ``peer``'s session uses ``python-pickle``: only there are the membership
        functions callable, as on the reference head, which resolves them by name for
        such a submitter alone (SEC-006); elsewhere they are UNKNOWN_FUNCTION."""
        remote = self.node.core.remotes.get(peer)
        return remote is not None and "python-pickle" in remote.features

    def _run_membership(self, ins: ev.RunTask, fn: Callable[..., Any], args: list[Any]) -> None:
        """One of the head's membership calls (CNF-051): its result pickled (CLU-030);
        what it raises (a refusal, CLU-013 and CLU-052) fails it with TASK_FAILED."""
        try:
            out = fn(*args)
            args.clear()
            if len(ins.return_ids) != 1:
                raise ValueError(f"{ins.function} returns one value, not {len(ins.return_ids)}")
            results = [ev.TaskResult(value=_membership.pickled(out))]
        except Exception as exc:
            results = [ev.TaskResult(error=self._error(exc))] * len(ins.return_ids)
        self._finish(ins, results)

    def _run_task(self, ins: ev.RunTask, args: list[Any]) -> None:
        member = None if ins.actor_id else self.catalog.membership.get(ins.function)
        if member is not None and self._speaks_pickle(ins.owner):
            self._run_membership(ins, member, args)
            return
        if ins.actor_id:
            fn = self.catalog.method(self.actors.get(ins.actor_id), ins.function)
            what = f"actor {ins.actor_id} has no method {ins.function!r} here"
        else:
            fn = self.catalog.functions.get(ins.function)
            what = f"no function {ins.function!r} here"
        if fn is None:
            info = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, what, "TASK-006")
            self._finish(ins, [ev.TaskResult(error=info)] * len(ins.return_ids))
            return
        try:
            out = fn(*args)
            args.clear()  # the caller's list too: handles must die with the call
            values = list(out) if len(ins.return_ids) > 1 else [out]
            if len(values) != len(ins.return_ids):
                raise ValueError(f"{ins.function} returned {len(values)} values, {len(ins.return_ids)} expected")
            results = [self._portable_result(rid, v) for rid, v in zip(ins.return_ids, values)]
        except Exception as exc:
            results = [ev.TaskResult(error=self._error(exc))] * len(ins.return_ids)
        # ``out`` and ``values`` still hold what the task made (nest's new object) until
        # TaskFinished is queued: its grants are made before the handles drop.
        self._finish(ins, results)

    def _portable_result(self, rid: str, obj: Any) -> ev.TaskResult:
        value = _values.encode(self.node, obj)
        if value.size <= self.node.config.inline_threshold or not self.store_large_results:
            return ev.TaskResult(value=value)
        store = self.node.store
        # TASK-004: stored here, the primary copy. A copy already here (the same
        # attempt run again) has the same bytes: the functions are deterministic.
        size = store.size(rid) if store.contains(rid) else store.put(rid, value)
        return ev.TaskResult(value=Value(value.encoding, b"", (), value.nested), stored=True, size=size)

    def _start_actor(self, ins: ev.StartActor, args: list[Any]) -> None:
        make = self.catalog.classes.get(ins.class_name)
        error = None
        if make is None:
            error = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, f"no class {ins.class_name!r} here", "ACT-001")
        else:
            try:
                self.actors[ins.actor_id] = make(*args)
            except Exception as exc:
                error = self._error(exc)
        args.clear()
        self.actor_ready(ins, error)
