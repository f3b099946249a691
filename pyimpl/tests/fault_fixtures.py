"""Remote functions and actors for test_fault_injection.py (workers import this module)."""

from __future__ import annotations

import os

import refrpc


def here() -> str:
    """The PeerId of the process running this."""
    return str(refrpc.api._ctx.node.peer_id)


@refrpc.remote
def record(path, token, size=0):
    # One line per execution, written with O_APPEND (atomic for a short line, so
    # several processes can share the file): the count of executions a test checks.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{token} {here()}\n".encode())
    finally:
        os.close(fd)
    # A large return is stored in the executor's shared memory (TASK-004).
    return token if not size else token.encode() * (size // len(token))


@refrpc.remote
class Keeper:
    """An actor that keeps the refs it is given (a borrower, BOR-007)."""

    def __init__(self):
        self.kept = []

    def keep(self, ref):
        self.kept.append(ref)
        return len(self.kept)

    def sizes(self):
        return [len(refrpc.get(r, timeout=60)) for r in self.kept]

    def forget(self):
        self.kept = []
        return 0

    def host(self):
        return here()


@refrpc.remote
def record_then_wait(path, token, gate):
    # Like `record`, then blocks until the file `gate` exists (at most a minute):
    # the task is running, and its executor sends its owner nothing meanwhile.
    import time

    record._refrpc_target(path, token)
    end = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < end:
        time.sleep(0.01)
    return token
