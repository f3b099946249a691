"""The threads of one hosted actor.

Each actor a node hosts runs its constructor and its method calls on threads of
its own, never behind the executor's tasks (which take turns on the executor's
task threads) and never holding them up: an actor method that runs for minutes
delays no task, and a long task delays no actor call. The core decides which
call may start and when (ACT-003, ACT-013); the runner only runs what it is
handed, on as many threads as the actor's concurrency allows (started when
needed).
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

from ..core import events as ev
from ._refs import use_node

if TYPE_CHECKING:
    from ._executor import Executor


class ActorRunner:
    """Runs one actor's constructor and calls for an :class:`Executor`.

    A synchronous actor runs each call on one of up to ``max_concurrency``
    threads; with the default of one, calls run one at a time in the order the
    core hands them over.
    """

    def __init__(self, executor: Executor, actor_id: str, max_concurrency: int = 1) -> None:
        self.executor = executor
        self.actor_id = actor_id
        #: The most calls that run at once (the core hands over no more, ACT-013).
        self.max_concurrency = max(1, max_concurrency)
        self.queue: queue.SimpleQueue[ev.Instruction | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: Threads started, threads waiting for work, instructions not taken yet.
        self._threads = 0
        self._idle = 0
        self._backlog = 0

    def submit(self, ins: ev.Instruction) -> None:
        """Run ``ins`` (the constructor or a call) on one of this actor's threads."""
        with self._lock:
            self._backlog += 1
            if self._backlog > self._idle and self._threads < self.max_concurrency:
                self._spawn()
        self.queue.put(ins)

    def stop(self) -> None:
        """Let the threads end once their calls are over (the core stopped those, ACT-006)."""
        self.queue.put(None)

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

