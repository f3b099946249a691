"""The threads of one hosted actor.

Each actor a node hosts runs its constructor and its method calls on threads of
its own, never behind the executor's tasks (which take turns on the executor's
task threads) and never holding them up: an actor method that runs for minutes
delays no task, and a long task delays no actor call. The core decides which
call may start and when (ACT-003, ACT-013, ACT-018); the runner only runs what it
is handed:

- a synchronous actor runs each call on one of up to ``max_concurrency`` threads
  (started when needed); with the default of one, one call at a time;
- an actor whose class has ``async def`` methods runs on an asyncio event loop
  of its own, on one thread: each call is a task on that loop (a coroutine
  method is awaited, a plain method runs on the loop thread), so calls that
  await run concurrently, as many as the core hands over.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from typing import TYPE_CHECKING, Any

from ..core import events as ev
from ._refs import use_node

if TYPE_CHECKING:
    from ._executor import Executor


def is_async_class(cls: type) -> bool:
    """Whether an actor class has ``async def`` methods (its calls then run on a loop)."""
    return any(inspect.iscoroutinefunction(getattr(cls, name, None)) for name in dir(cls) if not name.startswith("__"))


class ActorRunner:
    """Runs one actor's constructor and calls for an :class:`Executor` (module doc)."""

    def __init__(self, executor: Executor, actor_id: str, max_concurrency: int = 1) -> None:
        self.executor = executor
        self.actor_id = actor_id
        #: The most calls that run at once (the core hands over no more, ACT-013).
        self.max_concurrency = max(1, max_concurrency)
        self.queue: queue.SimpleQueue[ev.Instruction | None] = queue.SimpleQueue()
        #: Guards the fields below.
        self._lock = threading.Lock()
        #: Threads started, threads waiting for work, instructions not taken yet.
        self._threads = 0
        self._idle = 0
        self._backlog = 0
        #: Whether the constructor has run (until then one thread, which runs it).
        self._constructed = False
        #: The actor's event loop, once it is known to be an async actor.
        self.loop: asyncio.AbstractEventLoop | None = None

    def submit(self, ins: ev.Instruction) -> None:
        """Run ``ins`` (the constructor or a call) for this actor."""
        with self._lock:
            if self.loop is not None:
                try:
                    self.loop.call_soon_threadsafe(self._start_call, ins)
                except RuntimeError:  # the actor stopped meanwhile: the core answers for it
                    pass
                return
            self._backlog += 1
            if self._threads == 0 or (self._constructed and self._backlog > self._idle
                                      and self._threads < self.max_concurrency):
                self._spawn()
            self.queue.put(ins)

    def stop(self) -> None:
        """Let the threads end once their calls are over (the core stopped those, ACT-006)."""
        with self._lock:
            if self.loop is None:
                self.queue.put(None)
                return
            try:
                self.loop.call_soon_threadsafe(self._start_call, None)
            except RuntimeError:
                pass  # the loop is closed: stopped already

    def _spawn(self) -> None:
        self._threads += 1
        self._idle += 1
        name = f"refrpc-actor-{self.executor.node.peer_id}-{self.actor_id[-8:]}-{self._threads}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        ex = self.executor
        use_node(ex.node, ex)  # refrpc.* calls inside a method use this node
        ex.mark_actor_thread()
        ex.wait_open()
        while True:
            ins = self.queue.get()
            if ins is None:
                self.queue.put(None)  # every thread of this actor stops
                return
            with self._lock:
                self._backlog -= 1
                self._idle -= 1
            try:
                ex.execute(ins)
            finally:
                with self._lock:
                    self._idle += 1
            if isinstance(ins, ev.StartActor):
                instance = ex.actors.get(self.actor_id)
                if instance is not None and is_async_class(type(instance)):
                    self._run_loop()
                    return
                with self._lock:
                    self._constructed = True
                    while self._backlog > self._idle and self._threads < self.max_concurrency:
                        self._spawn()

    # ------------------------------------------------------------ async actors
    def _run_loop(self) -> None:
        """Become the actor's event loop thread (calls queued meanwhile go first)."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with self._lock:
            self.loop = loop
            self._constructed = True
            while True:
                try:
                    early = self.queue.get_nowait()
                except queue.Empty:
                    break
                loop.call_soon(self._start_call, early)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _start_call(self, ins: ev.Instruction | None) -> None:
        """On the loop: start one call as a task, or stop the loop (``None``)."""
        assert self.loop is not None
        if ins is None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()  # calls still running were stopped by the core (ACT-006)
            self.loop.call_soon(self.loop.stop)
            return
        if isinstance(ins, ev.RunTask):
            self.loop.create_task(self._call(ins))

    async def _call(self, ins: ev.RunTask) -> None:
        ex = self.executor
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        if not ex.begin_async(ins, lambda: loop.call_soon_threadsafe(task.cancel)):
            ex.report_stopped(ins)  # stopped before it started
            return
        try:
            # Loading may fetch from another host: not on the loop, which other calls use.
            args = await asyncio.to_thread(ex.load_args, ins)
            if args is None:
                return
            target = ex.target(ins, args)
            if target is None:
                return
            fn, kwargs = target
            try:
                out: Any = fn(*args, **kwargs)
                if inspect.isawaitable(out):
                    out = await out
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # SystemExit too: the call fails, the loop serves on
                args.clear()
                ex.report(ins, error=exc)
                return
            args.clear()  # handles die with the call
            ex.report(ins, out)
        except asyncio.CancelledError:
            ex.report_stopped(ins)  # TASK-008, ACT-006: nobody waits for it any more
        finally:
            ex.end_async(ins)
            ex.unmap(ins)
