"""The I/O shell around the sans-IO core: the node loop, the task executor, local clusters."""

from ._cluster import LocalCluster, worker_main
from ._executor import Executor, working_node
from ._node import TICK_MS, Node

__all__ = ["TICK_MS", "Executor", "LocalCluster", "Node", "worker_main", "working_node"]
