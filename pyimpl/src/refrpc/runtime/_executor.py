"""Runs a node's tasks on threads of its own, as many at once as their demands fit
what the node offers, and hands each hosted actor its own threads (:mod:`._actor_runner`).

Whichever thread feeds the core (usually the node's loop thread, on a
``SubmitTask``) hands over ``RunTask``/``StartActor``/``StopActor`` instructions
through a queue; a task thread resolves the arguments (values, shared-memory
copies, refs), calls the function and feeds the core the ``TaskFinished``/
``ActorReady`` stimulus itself, under the node's lock, so the reply leaves from
the task thread with no further hand-off. The loop thread is never blocked by
user code, so heartbeats keep flowing.

A task that waits in ``refrpc.get``/``refrpc.wait`` gives its CPU to the
queued work while it waits (see :class:`Executor`).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import importlib
import itertools
import sys
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..codec import ValueTooLarge
from ..core import events as ev
from ..core.messages import DEMAND_UNIT, FRAME_HEADROOM, Encoding, ErrorCode, ErrorInfo, Value
from ..errors import ExceptionState, TaskError
from ..serialization import NotPortable
from ..store import ObjectNotFound, StoreFull
from ._admission import ADMISSION_WAIT_S, Admission, arguments_to_fetch
from ._fetch import BadCopies
from ._actor_runner import ActorRunner
from ._node import StoredFormRefused, error_info
from ._slots import SlotBook
from ._refs import KWARGS_SUFFIX, ByRef, Ref, _exception_of, load, to_value, use_node, value_of

if TYPE_CHECKING:
    from ._node import Node

#: How many tasks of one executor may wait in a get having given their CPU back
#: (each keeps a thread, started when needed); past it, a waiting task keeps its CPU.
MAX_WAITING_TASKS = 1024
#: Of those, the tasks of one submitter that wait for memory (OBJ-037) or for their
#: arguments to come from another host (FET-001): a submitter whose arguments never
#: come (a silent or hostile holder) cannot make this executor start a thread for each
#: of its tasks; past it, its next task keeps its CPU while it waits.
MAX_WAITS_PER_SUBMITTER = 64
#: Tasks an executor runs at once at most, whatever their demands (TASK-051: tasks that
#: take nothing would otherwise each start a thread); past it, tasks wait their turn.
MAX_RUNNING_TASKS = 1024
#: Idle task threads an executor keeps: a thread ends when it finishes a task and
#: this many wait for work already, or when it has waited IDLE_THREAD_S seconds and
#: more than this many wait.
IDLE_THREADS_KEPT = 2
IDLE_THREAD_S = 2.0
#: Runtime functions run on a thread of their own as soon as they arrive, never queued
#: behind the program's tasks: a look at the store (no side effects), a membership
#: view from the head, which must not wait for a member's long task, and the calls the
#: head serves, which must not wait for a task a member named to the head (CLU-033).
INSTANT = frozenset({"refrpc.runtime._status:store_report", "refrpc.runtime._status:book_report",
                     "refrpc.runtime._membership:learn", "refrpc.runtime._cancel:keep_children"} |
                    {f"refrpc.runtime._membership:{f}"
                     for f in ("register", "register_driver", "members", "peers", "drivers", "cluster", "rotate")})
#: INSTANT functions running at once at most; more wait their turn like any task.
MAX_INSTANT = 64
#: How long a stopped task may go on running before it stops holding its slots
#: (TASK-031): Python delivers a stop between bytecodes, so one blocked in a long
#: call into C (``time.sleep``, a socket read) runs on, and must not keep every other
#: caller's work waiting behind it.
STOP_GRACE_S = 1.0
#: Stopped tasks that may run on after their grace, each on a thread of its own
#: (TASK-031); past it, the next one keeps its slots until it ends.
MAX_ABANDONED_TASKS = 64
#: Functions and classes this process exposes by name (SEC-006): those registered
#: with ``@refrpc.remote`` in the modules it imported, and those given to
#: :func:`expose`. Any peer that may submit tasks here may call them.
_EXPOSED: dict[str, Any] = {}
#: Names resolved by importing their module, once per process (name -> object).
_RESOLVED: dict[str, Any] = {}


def expose(name: str, obj: Any) -> None:
    """Let any peer that may submit tasks here call ``obj`` as ``name`` (SEC-006)."""
    _EXPOSED[name] = getattr(obj, "_refrpc_target", obj)


def exposed(name: str) -> bool:
    """Whether ``name`` is exposed here (callable from any session)."""
    return name in _EXPOSED


#: The membership functions' module (CLU-030: their values are always pickled).
_MEMBERSHIP = "refrpc.runtime._membership:"


def resolve(name: str, *, trusted: bool = True) -> Any:
    """The function or class a task names as ``module:qualname`` (SEC-006).

    A name this process exposes resolves from any session. Any other name
    resolves only for a ``trusted`` caller: this process itself, or a peer on a
    session where ``python-pickle`` is in use, which could make this process
    import the module with a pickled reference anyway (SEC-005); only then is
    the module imported, as unpickling such a reference would. No other message
    makes this process import anything.

    Raises:
        LookupError: The name is not exposed and the caller is not trusted, or
            it names nothing importable.
    """
    found = _EXPOSED.get(name)
    if found is not None:
        return found
    if not trusted:
        raise LookupError(f"{name!r} is not exposed by this peer (SEC-006)")
    found = _RESOLVED.get(name)
    if found is not None:
        return found
    found = _resolve(name)
    _RESOLVED[name] = found
    return found


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    if not qualname:
        raise LookupError(f"{name!r} is not of the form module:qualname")
    if module_name == "__main__":
        # A worker never runs its callers' scripts: their functions travel by value.
        raise LookupError(f"{name!r} names a caller's main script, which a worker does not import")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "_refrpc_target", obj)  # unwrap @remote


#: Functions shipped by value, unpickled once per process (object id -> function).
_BY_VALUE: dict[bytes, Any] = {}


def _by_value(fn_bytes: Any) -> Any:
    """A function or class shipped by value, unpickled once per process (by its bytes)."""
    import cloudpickle

    key = bytes(fn_bytes)
    fn = _BY_VALUE.get(key)
    if fn is None:
        fn = _BY_VALUE[key] = cloudpickle.loads(key)
        if len(_BY_VALUE) > 256:
            _BY_VALUE.pop(next(iter(_BY_VALUE)))
    return fn


def construct_by_value(cls_bytes: Any, *args: Any, **kwargs: Any) -> Any:
    """Make an actor whose class was shipped by value (defined in a script or notebook)."""
    return _by_value(cls_bytes)(*args, **kwargs)


#: The runners of code shipped by value, as tasks and actor creations name them.
_BY_VALUE_RUNNERS = frozenset({"refrpc.runtime._executor:call_by_value", "refrpc.runtime._executor:construct_by_value"})


def call_by_value(fn_bytes: Any, *args: Any) -> Any:
    """Run a function shipped by value (cloudpickle), e.g. a lambda or a local function.

    The function travels as an ordinary stored object (its first argument, by
    ref), so it is sent once per host and reclaimed like any value.
    """
    return _by_value(fn_bytes)(*args)


class Executor:
    """The task threads of a node.

    Tasks start by their demand (``RunTask.cpu_demand`` and ``resources``, as the
    submitter sent them, TASK-050) against what the node offers (:meth:`offer`: one
    CPU slot unless told otherwise): as many run at once as fit, a task that takes
    nothing starts at once (TASK-051), one that takes all the CPU offered or more runs
    alone (TASK-052), one asking for a named resource the node does not offer in that
    amount is answered ``RESOURCE_EXHAUSTED`` without running (TASK-053), and waiting
    tasks start in the order of :meth:`SlotBook.first_startable` (TASK-055). A task
    that waits in ``refrpc.get``/``refrpc.wait`` gives its CPU back while it waits
    (keeping its named resources), and another thread of the executor (started when
    none is idle, up to :data:`MAX_WAITING_TASKS`) runs the queued work meanwhile;
    the waiting task takes its CPU back once its value is there, before any queued
    work (TASK-056). Without that, a task waiting for a task queued behind it on the
    same worker (a nested task placed here, or one retried here after another worker
    died) would wait forever. An actor holds its lifetime demand
    (``StartActor.cpu_demand`` and ``resources``, from its ``CreateActor``) in the
    same book as the tasks, from its constructor's start until it is stopped or its
    constructor fails (ACT-027): a creation that does not fit waits in the tasks'
    order (TASK-055) and its constructor starts when it fits; one asking for a named
    resource the node does not offer in that amount is answered at once (ACT-028).
    Its calls take nothing (ACT-025): each hosted actor runs on threads of its own
    (:class:`ActorRunner`), and the core hands over an actor's calls in order, as
    many at a time as the actor's concurrency allows (ACT-003, ACT-013).

    A ``held`` executor takes no work until :meth:`open`: a worker's peer is
    reachable as soon as its socket is bound, and a task that arrives at once may
    submit tasks of its own, which needs the process's node set (``refrpc.remote``
    inside the task) and the other workers known (placement, TASK-012).
    """

    def __init__(self, node: Node, *, held: bool = False) -> None:
        self.node = node
        #: Set once the process is ready to run tasks; until then work waits in the queue.
        self._opened = threading.Event()
        if not held:
            self._opened.set()
        #: Stored argument id -> how many calls waiting to start read it (see _unmap).
        self._waiting_args: dict[str, int] = {}
        #: Actor instances hosted here (actor id -> instance).
        self.actors: dict[str, Any] = {}
        #: The threads of each hosted actor (actor id -> runner).
        self.runners: dict[str, ActorRunner] = {}
        #: Guards the fields below, which the loop thread's submit and stop_task use too.
        self._lock = threading.Lock()
        #: Wakes threads waiting for work, and tasks waiting to take their CPU back.
        self._cv = threading.Condition(self._lock)
        #: What this node offers and what its running tasks take (TASK-050).
        self._book = SlotBook()
        #: Tasks and actor creations waiting for room, in arrival order (TASK-055, ACT-027).
        self._pending: deque[ev.RunTask | ev.StartActor] = deque()
        #: Live actors -> the (CPU, named resources) they hold for their life (ACT-027).
        self._actor_holds: dict[str, tuple[int, tuple[tuple[str, int], ...]]] = {}
        #: Work that starts whatever runs: tasks that take nothing (TASK-051), stopped
        #: ones and ones that can never run here (answered at once, TASK-008, TASK-053).
        self._immediate: deque[ev.RunTask] = deque()
        #: Tasks whose get is over, waiting to take their CPU back (they go first), in order.
        self._resuming: list[tuple[tuple[str, int], int]] = []
        #: Started tasks -> the (CPU, named resources) they hold now.
        self._charged: dict[tuple[str, int], tuple[int, tuple[tuple[str, int], ...]]] = {}
        #: Set by :meth:`stop`: threads leave once no work can start.
        self._stopping = False
        #: INSTANT functions running now, each on a thread of its own.
        self._instants = 0
        #: (task id, attempt) of the RunTasks queued here and not started yet.
        self._queued: set[tuple[str, int]] = set()
        #: Those of ``_queued`` stopped before their turn (FATE-003, TASK-008).
        self._stopped: set[tuple[str, int]] = set()
        #: Started tasks -> the thread running them, which a stop interrupts.
        self._running: dict[tuple[str, int], int] = {}
        #: Started calls of async actors -> what cancels them (on their actor's loop).
        self._cancels: dict[tuple[str, int], Any] = {}
        #: Started tasks a stop was sent into, not landed yet (at most one per task).
        self._interrupting: set[tuple[str, int]] = set()
        #: Started tasks waiting in a get -> what wakes them (their value, or a stop).
        self._waiting: dict[tuple[str, int], threading.Event] = {}
        #: Waiting tasks a stop reached: they stop once they hold the turn again.
        self._stop_on_wake: set[tuple[str, int]] = set()
        #: Threads whose stopped task outlived STOP_GRACE_S: they no longer hold its slots.
        self._abandoned: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._spawned = 0
        #: Threads waiting for work: a task that starts waiting needs one.
        self._idle = 0
        #: The task each thread runs now, if any.
        self._local = threading.local()
        #: The tasks each running task submitted (their task ids): a stop cancels those
        #: not finished, unless the canceller asked to keep them (``cancel(recursive=False)``).
        self._children: dict[tuple[str, int], list[str]] = {}
        self._keep_children: set[str] = set()
        #: Submitter -> its tasks waiting for memory or for their arguments' fetches
        #: with their CPU given back (bounded by MAX_WAITS_PER_SUBMITTER).
        self._submitter_waits: dict[str, int] = {}
        #: Holds back loading a call's arguments while they would not fit the store (OBJ-037).
        self.admission = Admission(getattr(node.store, "capacity", None), getattr(node.store, "ledger", None))
        self._spawn()

    def offer(self, slots: float = 1, resources: dict[str, float] | None = None) -> None:
        """Say what this node offers its tasks: CPU slots and named resources (TASK-050),
        as it tells its submitters (a worker registers them, CLU-005). Before any work."""
        from ..core._tasks import MAX_CPU_UNITS, MAX_RESOURCE_UNITS, to_units

        with self._lock:
            self._book = SlotBook(to_units(slots, MAX_CPU_UNITS),
                                  {n: to_units(a, MAX_RESOURCE_UNITS) for n, a in (resources or {}).items() if a > 0})

    def book(self) -> tuple[dict[str, float], dict[str, float]]:
        """What this executor offers and what is taken from it now, in slots and units
        (``{"CPU": ..., name: ...}``): its running tasks' demands (a task waiting in a
        get has given its CPU back) and its live actors' lifetime demands (ACT-027)."""
        with self._lock:
            b = self._book
            offer = {"CPU": b.cpu_offer / DEMAND_UNIT, **{n: a / DEMAND_UNIT for n, a in b.offer.items()}}
            taken = {"CPU": b.cpu_used / DEMAND_UNIT, **{n: a / DEMAND_UNIT for n, a in b.used.items()}}
        return offer, taken

    def _spawn(self) -> None:
        """Start one more task thread (the caller holds ``_lock``, or none runs yet)."""
        self._spawned += 1
        t = threading.Thread(target=self._run, name=f"refrpc-exec-{self.node.peer_id}-{self._spawned}", daemon=True)
        self._threads.append(t)
        self._idle += 1
        t.start()

    def submit(self, ins: ev.Instruction) -> None:
        """Queue ``ins``: tasks take turns on the task threads; an actor's constructor
        and calls go to that actor's own threads (:class:`ActorRunner`), so actors and
        tasks never wait behind each other. Called holding the node's lock."""
        if isinstance(ins, ev.StartActor):
            self._create_actor(ins)
            return
        if isinstance(ins, ev.StopActor):
            runner = self.runners.pop(ins.actor_id, None)
            self.actors.pop(ins.actor_id, None)  # its running calls keep what they use
            if runner is not None:
                runner.stop()
            self._actor_gone(ins.actor_id)
            return
        if isinstance(ins, ev.RunTask) and not ins.actor_id and ins.function in INSTANT and self._instants < MAX_INSTANT:
            # A status look (what the store holds) or a membership call: run at once on a
            # thread of its own, not queued behind the tasks that keep this worker busy.
            with self._lock:
                self._queued.add((ins.task_id, ins.attempt))
                self._instants += 1
            threading.Thread(target=self._instant, args=(ins,), name=f"refrpc-instant-{self.node.peer_id}", daemon=True).start()
            return
        if isinstance(ins, ev.RunTask):
            with self._lock:
                self._queued.add((ins.task_id, ins.attempt))
            runner = self.runners.get(ins.actor_id) if ins.actor_id else None
            if runner is not None:
                runner.submit(ins)
                return
        if not isinstance(ins, ev.RunTask):
            return
        self._count_waiting(ins, 1)
        with self._lock:
            cpu, named = self._demand_of(ins)
            if (not cpu and not named) or self._lacking(ins):
                self._immediate.append(ins)  # TASK-051, TASK-053
            else:
                self._pending.append(ins)
            self._kick()

    def lifetime_demand(self, ins: ev.StartActor) -> tuple[int, tuple[tuple[str, int], ...]]:
        """What an actor holds here for its life (ACT-026, ACT-027)."""
        return ins.cpu_demand, tuple((n, a) for n, a in ins.resources if a)

    def _create_actor(self, ins: ev.StartActor) -> None:
        """Start an actor's constructor on its own threads once its lifetime demand fits
        (ACT-027): at once if it takes nothing; never, answered at once, if it asks for
        a named resource this node does not offer in that amount (ACT-028)."""
        cpu, named = self.lifetime_demand(ins)
        with self._lock:
            lacking = self._book.lacking(named)
            if not lacking:
                self.runners[ins.actor_id] = ActorRunner(self, ins.actor_id, ins.max_concurrency)
                if cpu or named:
                    self._pending.append(ins)  # its turn comes in _next_work
                    self._kick()
                    return
        if lacking:
            wanted = dict(named).get(lacking, 0) / DEMAND_UNIT
            offered = self._book.offer.get(lacking, 0) / DEMAND_UNIT
            info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, f"actor {ins.actor_id} ({ins.class_name}) asks for "
                             f"{wanted:g} {lacking!r} for its life; {self.node.peer_id} offers {offered:g}", "ACT-028")
            self.node.handle_soon(lambda sid: ev.ActorReady(sid, ins.actor_id, info))
            return
        self.runners[ins.actor_id].submit(ins)

    def _hold_for_actor(self, ins: ev.StartActor) -> None:
        """An actor creation's turn came: it holds its demand until the actor is gone, and
        its constructor starts on the actor's threads. Holding ``_lock``."""
        cpu, named = self.lifetime_demand(ins)
        self._book.take(cpu, named)
        self._actor_holds[ins.actor_id] = (cpu, named)
        runner = self.runners.get(ins.actor_id)
        if runner is not None:
            runner.submit(ins)

    def _actor_gone(self, actor_id: str) -> None:
        """The actor was stopped or never came to life: what it holds goes back, and a
        creation still waiting for room leaves the order, answered as never run
        (ACT-029), so the core forgets it."""
        dropped = None
        with self._lock:
            held = self._actor_holds.pop(actor_id, None)
            if held is not None:
                self._book.give(*held)
            for i, w in enumerate(self._pending):
                if isinstance(w, ev.StartActor) and w.actor_id == actor_id:
                    dropped = w
                    del self._pending[i]
                    break
            if held is not None or dropped is not None:
                self._kick()
        if dropped is not None:
            info = ErrorInfo(ErrorCode.ACTOR_DIED, f"actor {actor_id} was stopped before it was created", "ACT-029")
            self.node.handle_soon(lambda sid: ev.ActorReady(sid, actor_id, info))

    def actor_ready(self, ins: ev.StartActor, error: ErrorInfo | None) -> None:
        """Tell the core the actor's constructor ran (or why it did not); an actor that
        did not come to life holds nothing any more (ACT-027)."""
        if error is not None:
            runner = self.runners.pop(ins.actor_id, None)
            if runner is not None:
                runner.stop()  # its thread ends: the actor never came to life
            self._actor_gone(ins.actor_id)
        self.node.handle_soon(lambda sid: ev.ActorReady(sid, ins.actor_id, error))

    def _kick(self) -> None:
        """Something may start now: wake a thread to take it (start one if none is
        idle), and the tasks waiting to take their CPU back. Nothing is woken for
        nothing: a task that cannot start yet costs no thread a wake-up. Holding ``_lock``."""
        startable = self._next_work(take=False) is not None
        if startable and self._idle == 0:
            self._spawn()
        if self._resuming:
            self._cv.notify_all()
        elif startable:
            self._cv.notify()

    def _next_work(self, *, take: bool) -> ev.RunTask | None:
        """The work that starts next (TASK-055), if any may start now; with ``take``,
        taken off its queue and its demand charged. Holding ``_lock``."""
        if len(self._charged) >= MAX_RUNNING_TASKS:
            return None
        if self._immediate:
            ins = self._immediate[0]
            if take:
                self._immediate.popleft()
                self._charge(ins, 0, ())
            return ins
        first = len(self._resuming)
        while True:
            if not self._pending:
                return None
            # Lazily: the order usually stops at its first entry (TASK-055).
            waiting = itertools.chain(((cpu, ()) for _, cpu in self._resuming), map(self._demand_of, self._pending))
            i = self._book.first_startable(waiting)
            if i < first:  # nothing, or a task resuming from a get (it takes its CPU itself)
                return None
            ins = self._pending[i - first]
            if not isinstance(ins, ev.StartActor):
                break
            # An actor creation needs no task thread: it takes its demand for the
            # actor's life now and its constructor starts on its own threads (ACT-027).
            del self._pending[i - first]
            self._hold_for_actor(ins)
        if take:
            del self._pending[i - first]
            self._charge(ins, *self._demand_of(ins))
        return ins

    def _demand_of(self, ins: ev.RunTask | ev.StartActor) -> tuple[int, tuple[tuple[str, int], ...]]:
        """What ``ins`` takes from this executor while it runs: its demand (TASK-050),
        nothing for an actor's call (ACT-025), an actor's lifetime demand for its
        creation (ACT-027)."""
        if isinstance(ins, ev.StartActor):
            return self.lifetime_demand(ins)
        if ins.actor_id:
            return 0, ()
        return ins.cpu_demand, ins.resources

    def _lacking(self, ins: ev.RunTask) -> str:
        """TASK-053: the named resource ``ins`` asks more of than this node offers, or ""."""
        return "" if ins.actor_id else self._book.lacking(ins.resources)

    def _charge(self, ins: ev.RunTask, cpu: int, named: tuple[tuple[str, int], ...]) -> None:
        """Count ``ins`` as started, holding ``cpu`` and ``named``. Holding ``_lock``."""
        self._book.take(cpu, named)
        self._charged[(ins.task_id, ins.attempt)] = (cpu, named)

    def _discharge(self, key: tuple[str, int], *, kick: bool = True) -> None:
        """Give back what the task ``key`` holds, once (it ended, or was abandoned,
        TASK-031). Without ``kick`` the caller takes the next work itself; only the
        tasks waiting to take their CPU back are woken. Holding ``_lock``."""
        held = self._charged.pop(key, None)
        if held is not None:
            self._book.give(*held)
            if kick:
                self._kick()
            elif self._resuming:
                self._cv.notify_all()

    def _instant(self, ins: ev.RunTask) -> None:
        """Run an INSTANT function on this new thread, as a task thread would run it."""
        use_node(self.node, self)  # refrpc.* calls inside it use this node
        try:
            self._execute(ins)
        finally:
            with self._lock:
                self._instants -= 1

    def mark_actor_thread(self) -> None:
        """The calling thread runs an actor's calls: it holds no turn (see help_until)."""
        self._local.actor = True

    def wait_open(self) -> None:
        """Block until the executor takes work (see ``held``)."""
        self._opened.wait()

    def execute(self, ins: ev.Instruction) -> None:
        """Carry out one instruction on the calling thread (an actor's thread)."""
        self._execute(ins)

    def report_stopped(self, ins: ev.RunTask) -> None:
        """Answer a call that was stopped (TASK_CANCELLED; dropped if nobody waits, FATE-008)."""
        self._finish(ins, _stopped_results(ins))

    def unmap(self, ins: ev.Instruction) -> None:
        """Let go of the mappings a finished call read (see ``_unmap``)."""
        self._unmap(ins)

    def stop_task(self, task_id: str, attempt: int) -> None:
        """Stop a task (its owner died, FATE-003; it was cancelled, TASK-008; its actor
        was killed, ACT-006): one still queued never starts; a running one gets
        :class:`TaskStopped` raised in it, which Python delivers between two bytecodes
        (a long call into C, such as one ``time.sleep``, ends first; a wait in
        ``refrpc.get`` ends at once). Either way the executor reports it finished with
        TASK_CANCELLED, which the core drops if nobody waits for it any more
        (FATE-008). Called on the loop thread."""
        key = (task_id, attempt)
        with self._lock:
            thread = self._running.get(key)
            waker = self._waiting.get(key)
            cancel = self._cancels.get(key)
            if cancel is not None:  # a call of an async actor: its asyncio task is cancelled
                cancel()
            elif waker is not None:
                # Waiting in a get, without the turn: it is woken and stops itself once
                # it holds the turn again (an exception sent into it could land
                # between giving the turn back and taking it again).
                self._stop_on_wake.add(key)
                waker.set()
                self.admission.wake()  # one waiting for memory looks at its event now
            elif thread is not None and key not in self._interrupting:
                self._interrupting.add(key)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(TaskStopped))
                timer = threading.Timer(STOP_GRACE_S, self._abandon, (key, thread))
                timer.daemon = True
                timer.start()
            elif key in self._queued:
                self._stopped.add(key)
                # Answered at once, not when its slot comes (TASK-008).
                for ins in self._pending:
                    if isinstance(ins, ev.RunTask) and (ins.task_id, ins.attempt) == key:
                        self._pending.remove(ins)
                        self._immediate.append(ins)
                        self._kick()
                        break
        self._cancel_children(key)

    def note_child(self, task_id: str) -> None:
        """The task on this thread submitted task ``task_id`` (any thread may call it:
        it does nothing outside a task of this executor)."""
        key = getattr(self._local, "key", None)
        if key is None:
            return
        with self._lock:
            children = self._children.setdefault(key, [])
            children.append(task_id)
            if len(children) >= 1024 and len(children) & (len(children) - 1) == 0:
                tasks = self.node.core.tasks  # at each power of two: forget the finished ones
                children[:] = [t for t in children if t in tasks]

    def keep_children(self, task_id: str) -> None:
        """A stop of task ``task_id`` that comes next leaves the tasks it submitted running."""
        with self._lock:
            if len(self._keep_children) >= 1024:  # marks for tasks that never came or stopped
                self._keep_children.clear()
            self._keep_children.add(task_id)

    def _cancel_children(self, key: tuple[str, int]) -> None:
        """A stopped task's results are wanted by nobody, nor those of the tasks it
        submitted that are not finished: cancel them (their owner is this process).
        Called on the loop thread, holding the node's lock."""
        with self._lock:
            children = self._children.pop(key, [])
            if key[0] in self._keep_children:
                self._keep_children.discard(key[0])
                children = []
        if children:
            node = self.node
            done = node.call(lambda: node.handle(*[ev.Cancel(node.sid(), t) for t in children if t in node.core.tasks]))
            if done.exception() is not None:  # a stopping node, say: the children run on, and we say so
                _log(f"executor of {node.peer_id}: the tasks task {key[0]} submitted were not cancelled: "
                     f"{done.exception()!r}")

    def _abandon(self, key: tuple[str, int], thread: int) -> None:
        """TASK-031: a stopped task still runs after its grace: let it run on without the turn.

        Its thread goes on until the call returns; what it reports then is what
        TASK-008 and FATE-003 say (dropped by the core if nobody waits for it). The
        turn passes on now, so the work queued behind it starts.
        """
        with self._lock:
            if self._running.get(key) != thread or thread in self._abandoned:
                return  # it ended meanwhile
            if len(self._abandoned) >= MAX_ABANDONED_TASKS:
                _log(f"task {key[0]} (attempt {key[1]}) was stopped but still runs; {len(self._abandoned)} others "
                     "already run on: it keeps its slots until it ends")
                return
            self._abandoned.add(thread)
            self._running.pop(key, None)
            self._interrupting.discard(key)
            self._discharge(key)  # on the stuck thread's behalf: the work behind it starts
        _log(f"task {key[0]} (attempt {key[1]}) was stopped but still runs after {STOP_GRACE_S:g} s: "
             "it runs on without holding up other work")

    def busy(self) -> bool:
        """Whether a task runs (or waits in a get) on this executor now."""
        return bool(self._running or self._cancels)

    def on_thread(self) -> bool:
        """Whether the caller is a task of this executor."""
        return getattr(self._local, "key", None) is not None

    def help_until(self, fut: concurrent.futures.Future[Any], timeout: float | None) -> Any:
        """``fut.result(timeout)`` for the task on this thread, which gives its CPU
        back while it waits (class doc, TASK-056).

        Raises:
            TimeoutError: ``fut`` was not done in time.
            TaskStopped: The task was stopped meanwhile.
        """
        if fut.done():
            return fut.result()
        woken = threading.Event()
        fut.add_done_callback(lambda _: woken.set())
        self._without_cpu(woken, lambda: woken.wait(timeout))
        return fut.result(0)

    def _without_cpu(self, woken: threading.Event, wait: Callable[[], Any], submitter: str | None = None) -> Any:
        """``wait()`` for the task on this thread with its CPU given back meanwhile
        (TASK-056); it takes the CPU back, before queued work, when ``wait`` returns.

        ``woken`` is set by whatever ends the wait, and by a stop (``stop_task``), so
        ``wait`` must return once it is set. Past MAX_WAITING_TASKS waiting tasks, or
        past MAX_WAITS_PER_SUBMITTER of ``submitter``'s (when given), the task keeps
        its CPU while it waits (each waiting task keeps a thread).

        Raises:
            TaskStopped: The task was stopped meanwhile.
        """
        key = self._local.key
        gave = 0  # the CPU given back (none for an actor's call or an INSTANT function)
        with self._lock:
            if key in self._interrupting:
                # A stop was sent into this task and has not landed yet: take it now,
                # while the task still holds its slots.
                self._interrupting.discard(key)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
                raise TaskStopped()
            waits = self._submitter_waits.get(submitter, 0) if submitter is not None else 0
            if len(self._waiting) >= MAX_WAITING_TASKS or waits >= MAX_WAITS_PER_SUBMITTER:
                waker = None  # too many wait already: this one keeps its CPU
            else:
                waker = self._waiting[key] = woken
                if submitter is not None:
                    self._submitter_waits[submitter] = waits + 1
                held = self._charged.get(key)
                if held is not None and held[0]:
                    gave = held[0]
                    self._charged[key] = (0, held[1])
                    self._book.give(gave)
                    self._kick()  # the queued work may start meanwhile
        if waker is None:
            return wait()
        try:
            return wait()
        finally:
            # While the task is in _waiting, stop_task sends nothing into it (it sets
            # _stop_on_wake): nothing can land before it holds its CPU again.
            with self._lock:
                if gave:
                    self._take_back(key, gave)
                self._waiting.pop(key, None)
                if submitter is not None:
                    left = self._submitter_waits.pop(submitter) - 1
                    if left:
                        self._submitter_waits[submitter] = left
                stopped = key in self._stop_on_wake
                self._stop_on_wake.discard(key)
            if stopped:
                raise TaskStopped()

    def _take_back(self, key: tuple[str, int], cpu: int) -> None:
        """Wait until the task ``key`` may take its ``cpu`` back, ahead of queued work
        (TASK-056), and take it. Holding ``_lock``."""
        entry = (key, cpu)
        self._resuming.append(entry)
        while True:
            i = self._book.first_startable([(c, ()) for _, c in self._resuming])
            if i >= 0 and self._resuming[i] is entry:
                break
            self._cv.wait()
        self._resuming.remove(entry)
        self._book.take(cpu)
        held = self._charged.get(key)
        if held is not None:
            self._charged[key] = (cpu, held[1])
        else:  # abandoned meanwhile (TASK-031): it holds nothing any more
            self._book.give(cpu)
        self._kick()  # the next resuming task may fit too

    def open(self) -> None:
        """Start taking work (see ``held``)."""
        self._opened.set()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True  # every thread of this executor leaves once no work can start
            self._cv.notify_all()
        for runner in list(self.runners.values()):
            runner.stop()
        self._opened.set()  # a held executor still sees the stop

    def _run(self) -> None:
        use_node(self.node, self)  # refrpc.* calls inside a task use this node
        self._opened.wait()
        me = threading.current_thread()
        while True:
            with self._lock:
                ins = self._next_work(take=True)
                while ins is None:
                    if self._stopping:
                        self._idle -= 1
                        self._threads.remove(me)
                        return
                    if not self._cv.wait(IDLE_THREAD_S) and self._idle > IDLE_THREADS_KEPT:
                        self._idle -= 1  # started for tasks that waited, done now
                        self._threads.remove(me)
                        return
                    ins = self._next_work(take=True)
                self._idle -= 1
                self._kick()  # more may start beside this one
            self._count_waiting(ins, -1)
            leave = True
            try:
                self._execute(ins)
            except Exception:  # one bad piece of work must not end the thread that takes the rest
                _log(f"executor of {self.node.peer_id}: {_what(ins)} failed:\n{traceback.format_exc()}")
                self._answer_anyway(ins)
            finally:
                with self._lock:
                    if threading.get_ident() in self._abandoned:
                        # Its slots were passed on (TASK-031); others take the work.
                        self._abandoned.discard(threading.get_ident())
                    else:
                        leave = self._idle >= IDLE_THREADS_KEPT  # enough wait for work already
                        if not leave:
                            self._idle += 1
                        # A thread that stays takes the next work itself (no other is woken for it).
                        self._discharge((ins.task_id, ins.attempt), kick=leave)
                    if leave:
                        self._threads.remove(me)
            if leave:
                return

    def _answer_anyway(self, ins: ev.Instruction) -> None:
        """After an unexpected failure carrying out ``ins``: its caller still gets an answer."""
        try:
            info = ErrorInfo(ErrorCode.TASK_FAILED, f"{_what(ins)}: the executor failed to run it", "TASK-007")
            if isinstance(ins, ev.RunTask):
                self._end((ins.task_id, ins.attempt))
                self._finish(ins, [ev.TaskResult(error=info)] * len(ins.return_ids))
            elif isinstance(ins, ev.StartActor):
                self.actor_ready(ins, info)
        except Exception:
            _log(f"executor of {self.node.peer_id}: could not answer {_what(ins)}:\n{traceback.format_exc()}")

    def _execute(self, ins: ev.Instruction) -> None:
        """Carry out one instruction, holding its slots."""
        if isinstance(ins, ev.StopActor):
            self.actors.pop(ins.actor_id, None)
            return
        key = None
        if isinstance(ins, ev.RunTask):
            if not self._begin(ins):
                self._unmap(ins)  # a call before it may have kept a mapping for it
                self._finish(ins, _stopped_results(ins))  # stopped before its turn
                return
            key = (ins.task_id, ins.attempt)
            lacking = self._lacking(ins)
            if lacking:  # TASK-053: it could never run here
                self._end(key)
                self._unmap(ins)
                self._finish(ins, [ev.TaskResult(error=self._exhausted(ins, lacking))] * len(ins.return_ids))
                return
        self._local.key = key
        self._local.owner = getattr(ins, "owner", "")
        try:
            try:
                self._work(ins)
            finally:
                self._end(key)
        except TaskStopped:
            self._end(key)  # in case the stop landed in the first _end
            self._finish(ins, _stopped_results(ins))  # type: ignore[arg-type]
        finally:
            self._local.key = None
            self._local.owner = ""
            if key is not None and (key in self._children or key[0] in self._keep_children):
                with self._lock:
                    self._children.pop(key, None)
                    self._keep_children.discard(key[0])
        self._unmap(ins)

    def _exhausted(self, ins: ev.RunTask, lacking: str) -> ErrorInfo:
        """TASK-053: the error of a task asking for more of ``lacking`` than is offered here."""
        wanted = dict(ins.resources).get(lacking, 0) / DEMAND_UNIT
        offered = self._book.offer.get(lacking, 0) / DEMAND_UNIT
        return ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, f"{ins.function}: asks for {wanted:g} {lacking!r}; "
                         f"{self.node.peer_id} offers {offered:g}", "TASK-053")

    def _work(self, ins: ev.Instruction) -> None:
        args = self.load_args(ins)  # type: ignore[arg-type]
        if args is None:
            return
        if isinstance(ins, ev.StartActor):
            self._start_actor(ins, args)
        else:
            self._run_task(ins, args)  # type: ignore[arg-type]
        # The argument handles die on return, not when the next task arrives: a Ref
        # kept alive here would keep its value alive (and leak it when idle).

    def _begin(self, ins: ev.RunTask) -> bool:
        """Mark ``ins`` running on this thread, unless it was stopped while queued."""
        key = (ins.task_id, ins.attempt)
        with self._lock:
            self._queued.discard(key)
            if key in self._stopped:
                self._stopped.discard(key)
                return False
            self._running[key] = threading.get_ident()
        return True

    def begin_async(self, ins: ev.RunTask, cancel: Any) -> bool:
        """Mark a call of an async actor started (``cancel()`` stops it), unless it
        was stopped while queued."""
        key = (ins.task_id, ins.attempt)
        with self._lock:
            self._queued.discard(key)
            if key in self._stopped:
                self._stopped.discard(key)
                return False
            self._cancels[key] = cancel
        return True

    def end_async(self, ins: ev.RunTask) -> None:
        """A call of an async actor is over: no stop reaches it any more."""
        with self._lock:
            self._cancels.pop((ins.task_id, ins.attempt), None)

    def _end(self, key: tuple[str, int] | None) -> None:
        """The task ``key`` is over: no stop may reach it, or this thread's next one, any more."""
        if key is None:
            return
        with self._lock:
            thread = self._running.pop(key, None)
            if key in self._interrupting:
                self._interrupting.discard(key)
                if thread is not None:  # cancel the stop if it has not landed yet
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)

    def _gives_cpu(self, ins: ev.Instruction) -> bool:
        """Whether ``ins`` is a task started on this thread, which may give its CPU
        back while it waits for memory or for its arguments (TASK-056)."""
        return isinstance(ins, ev.RunTask) and getattr(self._local, "key", None) is not None

    def _fetch_wait(self, ins: ev.Instruction) -> Callable[[concurrent.futures.Future[Any], float | None], Any] | None:
        """How a task waits for an argument's fetch from another host: with its CPU
        given back (TASK-056), so that a slow or silent holder holds up this task only."""
        if not self._gives_cpu(ins):
            return None

        def wait(fut: concurrent.futures.Future[Any], timeout: float | None) -> Any:
            if fut.done():
                return fut.result()
            woken = threading.Event()
            fut.add_done_callback(lambda _: woken.set())
            self._without_cpu(woken, lambda: woken.wait(timeout), ins.owner)  # type: ignore[attr-defined]
            return fut.result(0)

        return wait

    def _wait_for_memory(self, ins: ev.Instruction, wait: Callable[[threading.Event | None], bool]) -> bool:
        """``wait(abort)`` in admission (OBJ-037), and what it returns. A task waits
        without its CPU (TASK-056): the task whose bytes it waits for may be fetching
        without its own CPU, and must be able to take it back. Raises TaskStopped if
        the task was stopped meanwhile (which sets ``abort``)."""
        if not self._gives_cpu(ins):
            return wait(None)
        woken = threading.Event()
        return bool(self._without_cpu(woken, lambda: wait(woken), ins.owner))  # type: ignore[attr-defined]

    def _reserve_uncounted(self, ins: ev.Instruction, size: int) -> None:
        """An argument admission counted as mapped must be fetched after all (its
        holder spilled it, or its copy went, meanwhile): reserve its bytes first, so
        that fetches side by side never take more than the store's limit (OBJ-037)."""
        if not self.admission.try_acquire_more(id(ins), size):
            self._wait_for_memory(ins, lambda abort: self.admission.acquire_more(id(ins), size, abort=abort))

    def _resolve_args(self, resolved: tuple[ev.ResolvedArg, ...], ins: ev.Instruction,
                      counted: dict[str, int] | None = None) -> list[Any]:
        wait = self._fetch_wait(ins)
        args: list[Any] = []
        for a in resolved:
            if a.ref is not None:
                args.append(Ref(self.node, a.ref.object_id, counted=False))
                continue
            value = a.value
            if value is None:
                try:
                    # Same host: mapped, not copied; another host: fetched first (FET-001).
                    reserve = (None if counted is None or a.object_id in counted or a.size <= 0
                               else lambda size=a.size: self._reserve_uncounted(ins, size))
                    value = self.node.local_value(a.object_id, a.locations, 120.0, wait, reserve)
                except (ObjectNotFound, TimeoutError):
                    # OBJ-013: ask the owner again; the core re-issues the RunTask.
                    if isinstance(ins, ev.RunTask):
                        self.node.handle_soon(lambda sid: ev.FetchFailed(sid, a.object_id, ins.task_id, ins.attempt))
                    raise _Refetch() from None
            args.append(self._load(a.object_id, value))
        return args

    def _shipped_name(self, ins: ev.Instruction) -> str:
        """What a call runs, for an error message: for code shipped by value, the user's
        function or class (``__main__:work``), not the runner that calls it."""
        what = _what(ins)
        args = getattr(ins, "args", ())
        if what not in _BY_VALUE_RUNNERS or not args:
            return what
        first = args[0]
        # The code is unpickled only for a peer that may ship code here (SEC-005,
        # SEC-006), as the runner itself would be refused for any other; and only
        # when it came inline: an error message is no reason to fetch anything.
        if first.value is None or not self._trusted(getattr(ins, "owner", "")):
            return "a function shipped by value"
        try:
            fn = _by_value(self._load(first.object_id, first.value))
            return f"{fn.__module__}:{fn.__qualname__}"
        except Exception:  # noqa: BLE001 - the code itself did not load: say no more than that
            return "a function shipped by value"

    def _load(self, object_id: str, value: Value) -> Any:
        """One argument's value as the called function gets it (nested refs counted)."""
        return load(self.node, object_id, value)

    def _unmap(self, ins: ev.Instruction) -> None:
        """Release the mappings of other processes' values this call read.

        The mapping stays valid while anything the task kept still uses it (its
        views hold it); otherwise its memory goes back now, not at shutdown.
        """
        queued = self._queued_arguments()
        for a in getattr(ins, "args", ()):
            if a.value is None and a.ref is None and a.object_id and a.object_id not in queued:
                self.node.store.detach(a.object_id)
        self.admission.release(id(ins))  # its fetched arguments no longer count (OBJ-037)

    def _queued_arguments(self) -> set[str]:
        """Stored arguments of the calls waiting in this executor's queue: a call keeps
        its mapping of those for the next one (mapping a large value again costs a page
        fault per page); the last call that reads it lets go of it."""
        with self._lock:
            return {oid for oid, n in self._waiting_args.items() if n > 0}

    def _count_waiting(self, ins: ev.Instruction, step: int) -> None:
        """Count ``ins``'s stored arguments as waiting in the queue (+1) or taken (-1)."""
        if not isinstance(ins, ev.RunTask):
            return
        with self._lock:
            for a in ins.args:
                if a.value is None and a.ref is None and a.object_id:
                    n = self._waiting_args.get(a.object_id, 0) + step
                    if n > 0:
                        self._waiting_args[a.object_id] = n
                    else:
                        self._waiting_args.pop(a.object_id, None)

    def _run_task(self, ins: ev.RunTask, args: list[Any]) -> None:
        target = self.target(ins, args)
        if target is None:
            return
        fn, kwargs = target
        try:
            out = fn(*args, **kwargs)
        except TaskStopped:
            raise
        except BaseException as exc:  # SystemExit too: the task fails, the thread serves on
            args.clear()
            self.report(ins, error=exc)
            return
        args.clear()  # the caller's list too: handles must die with the call
        self.report(ins, out)

    def load_args(self, ins: ev.RunTask | ev.StartActor) -> list[Any] | None:
        """The arguments of a call (or constructor) loaded here; None if it was answered
        instead (an argument that cannot be loaded fails it) or will come again.
        Waits first, in order, while the bytes it must fetch would not fit (OBJ-037)."""
        counted = arguments_to_fetch(self.node.store, ins.args)
        need = sum(counted.values())
        if not self.admission.try_acquire(id(ins), need):
            self._wait_for_memory(ins, lambda abort: self.admission.acquire(id(ins), need, abort=abort))
        prepare = getattr(self.node.store, "make_room_for", None)
        if need and prepare is not None:
            # The fetch assembles on the event loop, which waits for the host's other
            # stores only briefly: make the room here first (OBJ-065); if it cannot be
            # made, the fetch still tries (and spills what it can, or fails, OBJ-036).
            prepare(need)
        try:
            until = None
            while True:
                try:
                    return self._resolve_args(ins.args, ins, counted)
                except StoreFull:
                    # No room while other admitted calls' fetches take it: those end
                    # (their bytes are counted, OBJ-037), so wait for one to and try
                    # again, within admission's bound; only a call that finds no room
                    # alone, or still none at the bound, fails (OBJ-036).
                    until = until or time.monotonic() + ADMISSION_WAIT_S
                    left = until - time.monotonic()
                    if left <= 0 or not self._wait_for_memory(
                            ins, lambda abort: self.admission.wait_for_others(id(ins), left, abort)):
                        raise
        except _Refetch:
            return None
        except Exception as exc:  # an argument that cannot be loaded here: the caller's error, not ours
            full = isinstance(exc, StoreFull)  # OBJ-036: no room here to fetch or restore it
            what = self._shipped_name(ins)
            if isinstance(exc, StoredFormRefused):  # OBJ-067: nothing in it was acted on
                info = ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, f"{what}: {exc}", StoredFormRefused.requirement)
            elif isinstance(exc, BadCopies):  # OBJ-077: an argument whose copies are all bad, time after time
                info = ErrorInfo(ErrorCode.MALFORMED, f"{what}: {exc}", BadCopies.requirement)
            else:
                info = ErrorInfo(ErrorCode.OBJECT_STORE_FULL if full else ErrorCode.TASK_FAILED,
                                 f"{what}: an argument could not be loaded on "
                                 f"{self.node.peer_id}: {type(exc).__name__}: {exc}", "OBJ-036" if full else "TASK-007",
                                 "".join(traceback.format_exception(exc)))
            if isinstance(ins, ev.StartActor):
                self.actor_ready(ins, info)
            else:
                self._finish(ins, [ev.TaskResult(error=info)] * len(ins.return_ids))
            return None

    def target(self, ins: ev.RunTask, args: list[Any]) -> tuple[Any, dict[str, Any]] | None:
        """The callable and keyword arguments of a call (its keywords are taken off
        ``args``); None if the call was answered instead (TASK-006)."""
        try:
            function, kwargs = self._keywords(ins.function, args)
        except Exception as exc:
            self._finish(ins, [ev.TaskResult(error=error_info(exc))] * len(ins.return_ids))
            return None
        try:
            if ins.actor_id:
                instance = self.actors.get(ins.actor_id)
                if instance is None:
                    raise LookupError(f"actor {ins.actor_id} is not running here")
                fn = getattr(instance, function)
            else:
                fn = resolve(function, trusted=self._trusted(ins.owner))
        except Exception as exc:
            info = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, f"{ins.function}: {exc}", "TASK-006")
            self._finish(ins, [ev.TaskResult(error=info)] * len(ins.return_ids))
            return None
        return fn, kwargs

    def report(self, ins: ev.RunTask, out: Any = None, *, error: Exception | None = None) -> None:
        """Answer a call with what it returned (serialized here), or the exception it raised."""
        results: list[ev.TaskResult] = []
        if error is None:
            try:
                values = list(out) if len(ins.return_ids) > 1 else [out]
                if len(values) != len(ins.return_ids):
                    raise ValueError(f"{ins.function} returned {len(values)} values, {len(ins.return_ids)} expected")
                # A caller that speaks no pickle (another language) gets portable values
                # (VAL-001, HS-020); one that sent portable arguments gets them if possible.
                remote = self.node.core.remotes.get(ins.owner)
                allow_pickle = remote is None or "python-pickle" in remote.features
                portable = not allow_pickle or not any(a.value is not None and a.value.encoding is Encoding.PICKLE for a in ins.args)
                # The membership calls answer pickled whatever their arguments were (CLU-030).
                portable = portable and bool(ins.args) and not ins.function.startswith(_MEMBERSHIP)
                results = [self._result(rid, v, portable, allow_pickle) for rid, v in zip(ins.return_ids, values)]
                if remote is not None and remote.max_frame_bytes:
                    self._fit(ins.return_ids, results, remote.max_frame_bytes - FRAME_HEADROOM)
            except Exception as exc:
                error = exc
        if error is not None:
            remote = self.node.core.remotes.get(ins.owner)
            info = error_info(error)
            cause = self._cause(error) if remote is None or "python-pickle" in remote.features else None
            results = [ev.TaskResult(value=cause, error=info)] * len(ins.return_ids)
        # Let go of the arguments' mappings before the reply leaves: its submitter may
        # free them at once, and their holders reuse a segment's memory only if nobody
        # maps it any more (else they unlink it, and their next value is written into
        # pages the kernel must find and zero).
        self._unmap(ins)
        self._finish(ins, results)

    def _trusted(self, peer: str) -> bool:
        """Whether ``peer`` may have this process import what it names: this process
        itself, or a peer on a session where ``python-pickle`` is in use (SEC-006)."""
        if not peer or peer == self.node.peer_id:
            return True
        remote = self.node.core.remotes.get(peer)
        return remote is not None and "python-pickle" in remote.features

    def _cause(self, exc: BaseException) -> Value | None:
        """The exception a task raised, pickled to travel with its error (TASK-018), so
        the caller can catch it as what it is; None if it cannot (or it is too big).

        Pickle's own form of an exception calls its class with its ``args`` when
        loaded, which fails for a class whose ``__init__`` takes other arguments: such
        an exception travels as its class, ``args`` and attributes instead, rebuilt
        without calling ``__init__`` (:func:`~refrpc.errors.rebuild_exception`). A
        task that failed because a task it waited for failed sends the exception at
        the bottom of that chain (its TaskError's class is made in this process and
        does not pickle; the caller judges the error by the bottom one anyway)."""
        while isinstance(exc, TaskError) and isinstance(exc.__dict__.get("cause"), Exception):
            exc = exc.__dict__["cause"]
        for form in (exc, ExceptionState(exc)):
            try:
                value = to_value(self.node, form)  # pickling an exception leaves its frames behind
            except Exception:
                continue
            if value.nested or value.buffers or value.size > self.node.config.inline_threshold:
                return None
            if _exception_of(value) is not None or not isinstance(exc, Exception):
                return value  # it loads back (what the caller will do), or it is not ours to rebuild
        return None

    def _result(self, rid: str, obj: Any, portable: bool = False, allow_pickle: bool = True) -> ev.TaskResult:
        try:
            value = to_value(self.node, obj, portable=portable, allow_pickle=allow_pickle)
        except NotPortable as exc:
            if allow_pickle:
                raise
            # VAL-017, HS-020: only pickle could carry it, and the submitter's session has
            # none: this return fails for good (never the retryable TASK_FAILED); the
            # task's other returns stand.
            return ev.TaskResult(error=ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED,
                                                 f"{rid}: {exc}; the submitter's session has no python-pickle", "HS-020"))
        if value.size <= self.node.config.inline_threshold:
            return ev.TaskResult(value=value)
        try:
            size = self.node.store.put(rid, value)  # TASK-004: stays here, the primary copy
        except StoreFull as exc:  # OBJ-036: this return fails, the others stand
            return ev.TaskResult(error=ErrorInfo(ErrorCode.OBJECT_STORE_FULL, f"{self.node.peer_id}: {exc}", "OBJ-036"))
        except ValueTooLarge as exc:  # VAL-029: no stored form; this return fails, the others stand
            return ev.TaskResult(error=ErrorInfo(ErrorCode.TASK_FAILED, f"{rid}: {exc}", "VAL-029"))
        return ev.TaskResult(value=Value(value.encoding, b"", (), value.nested), stored=True, size=size)

    def _fit(self, return_ids: Sequence[str], results: list[ev.TaskResult], limit: int) -> None:
        """ZMQ-022: store inline results, the largest first, until the reply fits the
        submitter's frames (``limit`` bytes of values); the core fails the returns with
        RESOURCE_EXHAUSTED if even that was not enough."""
        def inline(r: ev.TaskResult) -> int:
            if r.stored or r.error is not None or r.value is None:
                return 0
            return len(r.value.data) + sum(len(b) for b in r.value.buffers)

        total = sum(map(inline, results))
        for i in sorted(range(len(results)), key=lambda i: -inline(results[i])):
            if total <= limit or not inline(results[i]):
                return
            value = results[i].value
            assert value is not None
            try:
                size = self.node.store.put(return_ids[i], value)
            except StoreFull:
                return  # no room (OBJ-036): the core answers RESOURCE_EXHAUSTED
            total -= inline(results[i])
            results[i] = ev.TaskResult(value=Value(value.encoding, b"", (), value.nested), stored=True, size=size)

    def _finish(self, ins: ev.RunTask, results: list[ev.TaskResult]) -> None:
        """Report the task to the core from this thread: the reply leaves from here.

        If the core refuses the results (a returned value holds a ref this worker
        does not hold, for one), the task fails with that reason instead: its
        owner always gets a reply, and the worker goes on serving.
        """
        free = self.node.store_free_bytes()  # OBJ-060: told to the submitter in the reply
        exc = self.node.feed(lambda sid: ev.TaskFinished(sid, ins.task_id, ins.attempt, tuple(results),
                                                         return_ids=tuple(ins.return_ids),
                                                         store_free_bytes=-1 if free is None else free))
        if exc is None or all(r.error is not None for r in results):
            return
        self._free_stored(ins, results)
        info = ErrorInfo(ErrorCode.TASK_FAILED, f"{ins.function}: its results were refused: {exc}", "TASK-007")
        self.node.handle_soon(lambda sid: ev.TaskFinished(sid, ins.task_id, ins.attempt,
                                                          tuple(ev.TaskResult(error=info) for _ in ins.return_ids),
                                                          return_ids=tuple(ins.return_ids)))

    def _free_stored(self, ins: ev.RunTask, results: list[ev.TaskResult]) -> None:
        """Free the stored copies of results that will never be reported."""
        for rid, r in zip(ins.return_ids, results):
            if r.stored:
                self.node.store.free(rid)

    def _keywords(self, name: str, args: list[Any]) -> tuple[str, dict[str, Any]]:
        """Split Python keyword arguments off a call (a trailing dict, flagged in the
        name; a Ref given as a keyword is dereferenced like a positional one)."""
        if not (name.endswith(KWARGS_SUFFIX) and args and isinstance(args[-1], dict)):
            return name, {}
        kwargs = args.pop()
        return name[: -len(KWARGS_SUFFIX)], {k: value_of(self.node, v.ref, None) if isinstance(v, ByRef) else v
                                             for k, v in kwargs.items()}

    def _start_actor(self, ins: ev.StartActor, args: list[Any]) -> None:
        error = None
        try:
            class_name, kwargs = self._keywords(ins.class_name, args)
        except Exception as exc:
            error = error_info(exc)
        else:
            try:
                cls = resolve(class_name, trusted=self._trusted(ins.owner))
            except Exception as exc:  # ACT-001, ACT-039: a class it cannot find is UNKNOWN_FUNCTION
                error = ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, f"{ins.class_name}: {exc}", "ACT-001")
            else:
                try:
                    self.actors[ins.actor_id] = cls(*args, **kwargs)
                except Exception as exc:  # the constructor raised: TASK_FAILED (ACT-001)
                    error = error_info(exc)
        args.clear()
        self.actor_ready(ins, error)


def current_owner() -> str:
    """The peer that submitted the task this thread runs ("" outside a task)."""
    from ._refs import current_executor

    executor = current_executor()
    local = getattr(executor, "_local", None)
    return getattr(local, "owner", "") if local is not None else ""


def _log(message: str) -> None:
    print(f"refrpc: {message}", file=sys.stderr, flush=True)


def _what(ins: ev.Instruction) -> str:
    """The function or class an instruction runs, for error messages."""
    return getattr(ins, "function", "") or getattr(ins, "class_name", "") or type(ins).__name__


class TaskStopped(BaseException):
    """Raised in a running task to stop it (FATE-003); a BaseException, so that the
    task's own ``except Exception`` does not swallow it."""


def _stopped_results(ins: ev.RunTask) -> list[ev.TaskResult]:
    info = ErrorInfo(ErrorCode.TASK_CANCELLED, f"task {ins.task_id} was stopped", "TASK-008")
    return [ev.TaskResult(error=info)] * len(ins.return_ids)


class _Refetch(Exception):
    """An argument's bytes were not where the owner said; the task will come again."""


#: Instructions an Executor carries out; every other one stays with the node's shell.
EXECUTOR_WORK = (ev.RunTask, ev.StartActor, ev.StopActor)


def working_node(
    peer_id: str,
    bind: str,
    namespace: str,
    config: Any = None,
    on_other: Any = None,
    *,
    held: bool = False,
    incarnation: int | None = None,
    trace_dir: str | None = None,
    make_executor: Any = None,
    **node_options: Any,
) -> tuple[Node, Executor]:
    """A node that runs tasks and actors on an :class:`Executor`.

    ``on_other`` gets every instruction that is not executor work. Work that
    arrives before the executor exists waits for it, so none is lost. With
    ``held``, work also waits until the caller opens the executor
    (:meth:`Executor.open`), once the process is ready to run tasks (see
    :class:`Executor`). ``trace_dir`` is the node's (see :class:`Node`).
    ``make_executor(node)``, called on the loop thread, builds another executor
    (the conformance IUT's fixture executor) instead of an :class:`Executor`.
    ``node_options`` go to :class:`Node` (``transport``, ``store``, ``clock``:
    a real node without sockets, on a :class:`~refrpc.transport.MemoryNetwork`).
    """
    from ._node import Node

    holder: list[Executor] = []
    early: list[ev.Instruction] = []

    def on_instruction(ins: ev.Instruction) -> None:
        if isinstance(ins, ev.StopTask):  # at once, not behind the task it stops
            holder[0].stop_task(ins.task_id, ins.attempt) if holder else early.append(ins)
        elif isinstance(ins, EXECUTOR_WORK):
            (holder[0].submit if holder else early.append)(ins)
        elif on_other is not None:
            on_other(ins)

    node = Node(peer_id, bind, namespace, config, on_instruction=on_instruction, incarnation=incarnation,
                trace_dir=trace_dir, **node_options)

    def start() -> None:  # on the loop thread, so no instruction slips in between
        holder.append(make_executor(node) if make_executor is not None else Executor(node, held=held))
        for ins in early:
            if isinstance(ins, ev.StopTask):
                holder[0].stop_task(ins.task_id, ins.attempt)
            else:
                holder[0].submit(ins)
        early.clear()

    node.call(start).result()
    return node, holder[0]
