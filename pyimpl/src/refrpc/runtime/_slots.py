"""What an executor offers, what its running tasks take, and which waiting task starts
next (TASK-050..TASK-053, TASK-055).

Pure bookkeeping, no threads: the :class:`~._executor.Executor` asks it under its own
lock. Amounts are integers in ten-thousandths, as ``SubmitTask`` carries them
(``cpu_demand``, ``resources``), so sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..core.messages import DEMAND_UNIT

#: A demand: CPU and named resources, in ten-thousandths (as a RunTask carries them).
Resources = tuple[tuple[str, int], ...]


@dataclass(slots=True)
class SlotBook:
    """An executor's offer and what its running tasks take from it."""

    #: CPU slots offered, in ten-thousandths (a reference worker offers one slot).
    cpu_offer: int = DEMAND_UNIT
    #: Named resources offered (name -> ten-thousandths).
    offer: dict[str, int] = field(default_factory=dict)
    #: CPU taken by running tasks (a task waiting in a get gives its CPU back).
    cpu_used: int = 0
    #: Running tasks that take CPU now (a task taking CPU may run alone, TASK-052).
    cpu_holders: int = 0
    #: Named resources taken by running tasks (name -> ten-thousandths).
    used: dict[str, int] = field(default_factory=dict)

    def lacking(self, resources: Resources) -> str:
        """TASK-053: the first named resource this executor does not offer in that
        amount (so the task can never run here), or "" if it could run some day.
        CPU never lacks: a task taking more than the offer runs alone (TASK-052)."""
        for name, amount in resources:
            if amount > self.offer.get(name, 0):
                return name
        return ""

    def fits(self, cpu: int, resources: Resources = ()) -> bool:
        """TASK-050, TASK-052: whether a task taking ``cpu`` and ``resources`` may start
        beside what runs now."""
        if cpu and self.cpu_holders and self.cpu_used + cpu > self.cpu_offer:
            return False
        for name, amount in resources:
            if amount and self.used.get(name, 0) + amount > self.offer.get(name, 0):
                return False
        return True

    def take(self, cpu: int, resources: Resources = ()) -> None:
        """Count a task that starts (or takes its CPU back after a get)."""
        if cpu:
            self.cpu_used += cpu
            self.cpu_holders += 1
        for name, amount in resources:
            if amount:
                self.used[name] = self.used.get(name, 0) + amount

    def give(self, cpu: int, resources: Resources = ()) -> None:
        """Count a task that ended (or gave its CPU back while it waits in a get)."""
        if cpu:
            self.cpu_used -= cpu
            self.cpu_holders -= 1
        for name, amount in resources:
            if amount:
                left = self.used.get(name, 0) - amount
                if left > 0:
                    self.used[name] = left
                else:
                    self.used.pop(name, None)

    def first_startable(self, waiting: Iterable[tuple[int, Resources]]) -> int:
        """TASK-055: the index of the waiting entry that starts next, or -1 if none may.

        ``waiting`` holds (CPU, named resources) of each entry, in order: tasks
        resuming from a get first (CPU alone: they kept their resources), then the
        queued tasks in arrival order. Each entry takes something (the executor starts
        a task that takes nothing at once, TASK-051, and never queues it). An entry
        that does not fit *reserves* what it takes (CPU if it takes any, and each of
        its named resources): no later entry that takes any of those starts before it,
        so a stream of small tasks cannot starve a big one. A later entry that takes
        nothing reserved starts as soon as it fits, so a task waiting for a resource
        does not hold back tasks that do not need it.
        """
        cpu_reserved = False
        reserved: set[str] = set()
        for i, (cpu, resources) in enumerate(waiting):
            blocked = (cpu and cpu_reserved) or any(n in reserved for n, a in resources if a)
            if not blocked and self.fits(cpu, resources):
                return i
            if cpu:
                cpu_reserved = True
            if resources:
                reserved.update(n for n, a in resources if a)
            if cpu_reserved and (not self.offer or reserved.issuperset(self.offer)):
                return -1  # all is reserved: nothing later can start before the entries above
        return -1
