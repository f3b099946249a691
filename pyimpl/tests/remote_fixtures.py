"""Remote functions and actors the runtime tests call (workers import this module)."""

from __future__ import annotations

import refrpc


@refrpc.remote
def add(a, b):
    return a + b


@refrpc.remote
def make_bytes(n):
    return b"x" * n


@refrpc.remote
def length(x):
    return len(x)


@refrpc.remote
def fail(message):
    raise ValueError(message)


@refrpc.remote
def nest(ref):
    # Receives a shared ref and returns it inside a list: the caller gets the ref back.
    return [ref]


@refrpc.remote
def forward(ref):
    # A nested task: this worker submits `nest` with the same shared ref and
    # returns the resulting ref (which it owns) inside its value.
    return [nest.remote(refrpc.shared(ref))]


@refrpc.remote
def twice(n):
    # One value that names the same ref twice.
    x = refrpc.put(b"t" * n)
    return [x, x]


@refrpc.remote
def drop_first_read_second(pair):
    # Receives a list holding the same ref twice: drops one handle, reads the other.
    import gc

    first, second = pair
    del first, pair
    gc.collect()
    return len(refrpc.get(second, timeout=30))


@refrpc.remote
def deref(ref):
    # The callee holds a shared ref and reads it itself.
    return len(refrpc.get(ref))


@refrpc.remote(num_returns=2)
def split(x):
    return x[: len(x) // 2], x[len(x) // 2 :]


@refrpc.remote
def make_array(n):
    import numpy as np

    return np.arange(n, dtype=np.uint8)


@refrpc.remote
class Counter:
    def __init__(self, start):
        self.value = start
        self.kept = []

    def add(self, n):
        self.value += n
        return self.value

    def keep(self, ref):
        self.kept.append(ref)
        return len(self.kept)

    def kept_refs(self):
        return list(self.kept)

    def forget(self):
        self.kept = []
        return 0


@refrpc.remote
def where(x):
    # Which worker ran this task (to check placement).
    return refrpc.api._ctx.node.peer_id


@refrpc.remote
def sleep_ms(ms):
    import time

    time.sleep(ms / 1000)
    return ms


# ---------------------------------------------------------------- chaos workloads (test_chaos.py)
# Values over the inline threshold (100 KiB) so that they are stored where they are
# made, and checkable from a few bytes: a block is one byte value repeated. `ms` is
# the task's work (a sleep), so that a kill can land while tasks run.


def _work(ms):
    import time

    time.sleep(ms / 1000)


def _byte_of(block) -> int:
    view = memoryview(block)
    first = view[0]
    if view.nbytes and bytes(view).count(first) != view.nbytes:  # every byte the same
        raise ValueError(f"a block of {view.nbytes} bytes is not uniform")
    return first


def _digest(block) -> tuple[int, int]:
    return _byte_of(block), memoryview(block).nbytes


@refrpc.remote
def chaos_block(tag, size, ms=0):
    # One block of `size` bytes, all equal to tag % 256.
    _work(ms)
    return bytes([tag % 256]) * size


@refrpc.remote
def chaos_map(m, parts, size, ms=0):
    # One map: `parts` blocks; block j holds (m * parts + j) % 256.
    _work(ms)
    blocks = tuple(bytes([(m * parts + j) % 256]) * size for j in range(parts))
    return blocks if parts > 1 else blocks[0]


@refrpc.remote
def chaos_reduce(ms, *blocks):
    # One reduce: the sum of the blocks' byte values, and their total length.
    _work(ms)
    return sum(_byte_of(b) for b in blocks), sum(memoryview(b).nbytes for b in blocks)


@refrpc.remote
def chaos_step(block, k, ms=0):
    # One link of a chain: every byte + k (mod 256), same size.
    _work(ms)
    table = bytes((i + k) % 256 for i in range(256))
    return bytes(block).translate(table)


@refrpc.remote
def chaos_digest(block, ms=0):
    # What a block holds, small enough to travel inline: (byte value, length).
    _work(ms)
    return _digest(block)


@refrpc.remote
def chaos_nested_get(tags, size, retries, ms=0):
    # A task that submits tasks (this worker owns their results) and gets them.
    blocks = [chaos_block.options(max_retries=retries).remote(t, size, ms) for t in tags]
    digests = [chaos_digest.options(max_retries=retries).remote(b, ms) for b in blocks]
    return refrpc.get(digests, timeout=60)


@refrpc.remote
def chaos_nested_refs(tags, size, retries, ms=0):
    # A task that submits tasks and returns their refs: the caller borrows objects
    # this worker owns, so this worker's death is their owner's death (FATE-001).
    _work(ms)
    return [chaos_block.options(max_retries=retries).remote(t, size, ms) for t in tags]


@refrpc.remote
def chaos_relay(ref, retries, ms=0):
    # Receives a shared ref and shares it on with a task on another worker,
    # waiting for that task's answer.
    _work(ms)
    return refrpc.get(chaos_digest_shared.options(max_retries=retries).remote(refrpc.shared(ref), ms), timeout=60)


@refrpc.remote
def chaos_digest_shared(ref, ms=0):
    # Holds a shared ref (a borrower) and reads the value itself.
    _work(ms)
    return _digest(refrpc.get(ref, timeout=60))


@refrpc.remote
def chaos_forward(ref, retries, ms=0):
    # Shares a shared ref on with a nested task and returns that task's ref (owned
    # here), without waiting: the caller then borrows it.
    _work(ms)
    return [nest.options(max_retries=retries).remote(refrpc.shared(ref))]


@refrpc.remote
def fib(n):
    # Tasks that wait for the tasks they submit (refrpc.get inside a task): on one
    # worker, every one of them is queued behind the task waiting for it.
    if n < 2:
        return n
    return sum(refrpc.get([fib.remote(n - 1), fib.remote(n - 2)], timeout=60))


@refrpc.remote
def first_ready(n):
    # refrpc.wait inside a task, for tasks queued behind it.
    refs = [add.remote(i, i) for i in range(n)]
    ready, _ = refrpc.wait(refs, num_returns=n, timeout=60)
    return sorted(refrpc.get(ready, timeout=60))


@refrpc.remote
class Ledger:
    # An actor whose call waits for a task: its next call must neither overlap it
    # nor overtake it (ACT-003), while other work may run as it waits.
    def __init__(self):
        self.log = []

    def record_after_task(self, x):
        self.log.append(refrpc.get(add.remote(x, 0), timeout=60))
        return list(self.log)

    def record(self, x):
        self.log.append(x)
        return list(self.log)


def executor_threads() -> int:
    """How many task threads this process's executor has (run with refrpc.api._call_on)."""
    return len(refrpc.api._ctx.executor._threads)


# ---------------------------------------------------------------- values that fail on the worker (test_runtime.py)
def _explode_on_load():
    raise RuntimeError("this value cannot be loaded here")


class Unloadable:
    """Pickles fine; unpickling it raises (as a class the worker cannot import would)."""

    def __reduce__(self):
        return (_explode_on_load, ())


@refrpc.remote
def identity(x):
    return x


@refrpc.remote
def exits(code):
    """Raises SystemExit (``sys.exit`` in a task): a BaseException, not an Exception."""
    raise SystemExit(code)


@refrpc.remote
def unpicklable_result():
    import threading

    return threading.Lock()


@refrpc.remote
def spin_ms(ms):
    """Busy for ``ms`` in short steps (a stop lands between two of them)."""
    import time

    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        time.sleep(0.005)
    return ms


@refrpc.remote
def touch_and_return(path):
    """Leaves a mark that it ran."""
    open(path, "w").close()
    return path


@refrpc.remote
def hold_until(path, limit_s=60.0):
    """Runs until ``path`` exists (a long task the test ends when it wants), at most
    ``limit_s``; returns whether it was released."""
    import os
    import time

    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.01)
    return False


@refrpc.remote
def block_until(path, limit_s=60.0):
    """As hold_until, under another name: a function never seen to finish quickly,
    so no submitter pipelines tasks behind it (TASK-020)."""
    return hold_until._refrpc_target(path, limit_s)


@refrpc.remote
def occupy_until(path, limit_s=60.0):
    """As hold_until, under a name of its own (for a test that ends it quickly: the
    submitter then takes it for a quick function, TASK-020, which must not change
    what other tests see of block_until)."""
    return hold_until._refrpc_target(path, limit_s)


@refrpc.remote
def touch_then_sleep(path, seconds):
    # Says it started (the file), then blocks in one long call into C, which a stop
    # (FATE-003, TASK-008) cannot interrupt.
    import time

    open(path, "w").close()
    time.sleep(seconds)
    return seconds


@refrpc.remote
def digest(x):
    # What a consumer of a broadcast value checks: the SHA-256 of the bytes it got.
    import hashlib

    return hashlib.sha256(x).hexdigest()


@refrpc.remote
def meet(directory, me, other, limit_s=20.0):
    """Says it runs (the file ``me`` in ``directory``) and waits, at most ``limit_s``,
    for ``other`` to say so too; returns whether it did (two of these meet only if
    they run at once)."""
    import os
    import time

    open(os.path.join(directory, me), "w").close()
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if os.path.exists(os.path.join(directory, other)):
            return True
        time.sleep(0.01)
    return False


@refrpc.remote
def hold_running(started, release, limit_s=60.0):
    """Says it runs (the file ``started``), then runs until ``release`` exists, at most
    ``limit_s``; returns whether it was released."""
    open(started, "w").close()
    return hold_until._refrpc_target(release, limit_s)


@refrpc.remote
def exists(path):
    """Whether ``path`` exists when this task starts."""
    import os

    return os.path.exists(path)


class Pair(Exception):
    """Takes two arguments and passes both on: pickle rebuilds it by calling it."""

    def __init__(self, a, b):
        super().__init__(a, b)


class OverQuota(Exception):
    """Passes on a message made of its arguments: pickle alone cannot rebuild it."""

    def __init__(self, user, limit):
        super().__init__(f"{user} is over its quota of {limit}")
        self.user, self.limit = user, limit


class Locked(Exception):
    """Holds what cannot be pickled at all."""

    def __init__(self, message):
        import threading

        super().__init__(message)
        self.lock = threading.Lock()


@refrpc.remote
def raise_custom(kind):
    if kind == "pair":
        raise Pair(1, 2)
    if kind == "quota":
        raise OverQuota("ann", 5)
    raise Locked("held")


@refrpc.remote(num_returns=2)
def with_a_set(x):
    """Two returns: ``x`` as given, and a ``set`` (which has no portable form)."""
    return x, {x}


@refrpc.remote(num_returns=2)
def small_and_zeros(n):
    """Two returns: a small value, and ``n`` zero bytes (allocated lazily: cheap even
    for 512 MiB until written)."""
    return b"small", bytes(n)


@refrpc.remote
def raise_through(kind):
    # A task whose child task raises: its get raises the child's error here.
    return refrpc.get(raise_custom.remote(kind))


@refrpc.remote
def spin_marked(directory, limit_s):
    """Spins ``limit_s`` seconds in short steps; writes ``started`` at once, then
    ``finished`` if it ran to its end or ``stopped`` if it was stopped."""
    import os
    import time

    open(os.path.join(directory, "started"), "w").close()
    outcome = "stopped"
    try:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            time.sleep(0.005)
        outcome = "finished"
    finally:
        with open(os.path.join(directory, outcome), "w"):
            pass
    return limit_s


@refrpc.remote
def wait_for_child(directory, limit_s):
    # A task that submits a long child (owned by its worker) and waits for it.
    return refrpc.get(spin_marked.remote(directory, limit_s))


@refrpc.remote
def submit_and_spin(directory, limit_s):
    # A task that submits a long child and spins itself, without waiting for the child:
    # on a one-worker cluster the child waits behind it.
    import os
    import time

    child = spin_marked.remote(directory, limit_s)
    open(os.path.join(directory, "parent"), "w").close()
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        time.sleep(0.005)
    return refrpc.get(child)
