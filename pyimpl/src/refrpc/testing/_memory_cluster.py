"""Real nodes without sockets: a driver and workers on one in-memory network.

:class:`MemoryCluster` runs the real runtime shell (each :class:`~refrpc.runtime.Node`
with its loop thread, its lock, an executor on each worker) over a
:class:`~refrpc.transport.MemoryNetwork` and :class:`~refrpc.store.MemoryStore`\\ s,
in this process: what the shell does with the core's decisions can be tested
without ports, ipc files or processes. Timing is real (threads and a clock), so
use it for behaviour, and the simulator (:class:`Cluster`) for interleavings.

Example:
    >>> with MemoryCluster(workers=2) as c:
    ...     c.get(c.submit("operator:add", 40, 2))
    42
"""

from __future__ import annotations

from typing import Any

from ..core import events as ev
from ..runtime import Node, working_node
from ..runtime._node import default_config
from ..runtime._refs import Ref, to_value, value_of
from ..store import MemoryStore
from ..transport import MemoryNetwork


class MemoryCluster:
    """A driver node and ``workers`` worker nodes (with executors) on one MemoryNetwork.

    Args:
        workers: How many worker nodes.
        config: Protocol settings for every node (the runtime's defaults if omitted).
        driver: The driver's PeerId (``"head"`` plays a multi-host cluster's head).
    """

    def __init__(self, workers: int = 1, config: Any = None, driver: str = "driver") -> None:
        #: The network every node is bound on.
        self.network = MemoryNetwork()
        self._config = config or default_config()
        #: Worker peer id -> its node.
        self.workers: dict[str, Node] = {}
        self._executors: list[Any] = []
        #: The node that submits tasks and owns their results.
        self.driver: Node | None = None
        try:
            for i in range(1, workers + 1):
                name = f"w{i}"
                node, executor = working_node(name, "", "", self._config, transport=self.network.transport(f"mem://{name}"),
                                              store=MemoryStore())
                self.workers[name] = node
                self._executors.append(executor)
            self.driver = Node(driver, "", "", self._config, transport=self.network.transport(f"mem://{driver}"),
                               store=MemoryStore())
            adds = [lambda sid, n=n: ev.AddPeer(sid, n, f"mem://{n}", 1) for n in self.workers]
            self.driver.handle_soon(*adds).result()
        except BaseException:
            self.close()
            raise

    def submit(self, function: str, *args: Any, executor: str = "", num_cpus: float = 1.0,
               portable: bool = False) -> Ref[Any]:
        """Call ``function`` (``module:qualname``) with ``args`` by value (in the ``portable``
        encoding where they fit, if ``portable``); the Ref of its result."""
        node = self.driver
        assert node is not None
        specs = tuple(ev.ArgSpec(value=to_value(node, a, portable=portable)) for a in args)

        def do() -> str:
            task_id, rids = node.new_task_ids(1)
            node.handle(ev.Submit(node.sid(), task_id, function, specs, rids, executor=executor, num_cpus=num_cpus))
            return rids[0]

        return Ref(node, node.call(do).result(), counted=True)

    def get(self, ref: Ref[Any], timeout: float | None = 30.0) -> Any:
        """The value of ``ref`` (raises the typed error of a failed task)."""
        import time

        assert self.driver is not None
        return value_of(self.driver, ref, None if timeout is None else time.monotonic() + timeout)

    def close(self) -> None:
        """Stop every node and executor (idempotent)."""
        for executor in self._executors:
            executor.stop()
        self._executors.clear()
        for node in [self.driver, *self.workers.values()]:
            if node is not None:
                node.stop()

    def __enter__(self) -> MemoryCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
