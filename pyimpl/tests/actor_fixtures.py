"""Remote functions and actor classes the actor tests call (workers import this module)."""

from __future__ import annotations

import os
import time

import refrpc


def _until_file(path: str, limit_s: float = 60.0) -> bool:
    # Blocks this thread (not in refrpc.get) until the test creates `path`: the
    # kind of long call that held a worker's only turn before actors had threads.
    end = time.monotonic() + limit_s
    while not os.path.exists(path):
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@refrpc.remote(max_retries=0)
def block_until(path):
    return _until_file(path)


@refrpc.remote
def add(a, b):
    return a + b


@refrpc.remote
class Gate:
    def __init__(self):
        self.calls = 0

    def block_until(self, path):
        self.calls += 1
        return _until_file(path)

    def ping(self):
        self.calls += 1
        return self.calls

    def exit(self, code):
        raise SystemExit(code)


@refrpc.remote
class Rendezvous:
    # Async methods: calls run on the actor's event loop, concurrently while they await.
    def __init__(self):
        self.events = {}
        self.order = []

    def _event(self, name):
        import asyncio

        return self.events.setdefault(name, asyncio.Event())

    async def meet(self, me, other, limit_s=10.0):
        # Returns only if the call `meet(other, me)` runs at the same time.
        import asyncio

        self._event(me).set()
        await asyncio.wait_for(self._event(other).wait(), limit_s)
        return me

    async def record(self, i):
        import asyncio

        await asyncio.sleep(0)  # lets another call in, if one may run
        self.order.append(i)
        return i

    def recorded(self):
        return list(self.order)

    async def awaited(self, ref):
        return await ref  # a shared Ref is awaitable on the actor's loop

    async def forever(self):
        import asyncio

        await asyncio.Event().wait()

    async def exit(self, code):
        raise SystemExit(code)


@refrpc.remote(max_concurrency=2)
class ThreadedRendezvous:
    # A synchronous actor with two threads: two calls can wait for each other.
    def __init__(self):
        import threading

        self.events = {"a": threading.Event(), "b": threading.Event()}

    def meet(self, me, other, limit_s=10.0):
        self.events[me].set()
        if not self.events[other].wait(limit_s):
            raise TimeoutError(f"{other} never came")
        return me


# ---------------------------------------------------------------- handles that travel (ACT-019..ACT-021)
@refrpc.remote
class Log:
    # Records who called in which order.
    def __init__(self):
        self.entries = []

    def append(self, caller, i):
        self.entries.append((caller, i))
        return len(self.entries)

    def read(self):
        return list(self.entries)


@refrpc.remote
class Tracked:
    # Leaves a file behind when its instance is freed on its host.
    def __init__(self, marker):
        self.marker = marker
        self.value = 0

    def add(self, n):
        self.value += n
        return self.value

    def __del__(self):
        with open(self.marker, "w") as f:
            f.write("freed")


def _me():
    return refrpc.api._ctx.node.peer_id


@refrpc.remote
def log_through(handle, caller, n):
    # A task that calls an actor through a handle it was passed: its own calls, in order.
    return refrpc.get([handle.append.remote(caller, i) for i in range(n)], timeout=60)


@refrpc.remote
def add_through(holder):
    # The handle arrives inside a value (a dict), not as the argument itself.
    return refrpc.get(holder["actor"].add.remote(1), timeout=60)


_KEPT = []


def keep_handle(handle):
    # Keeps the handle after the task ends (the worker becomes a borrower, BOR-007).
    _KEPT.append(handle)
    return _me()


def drop_handles():
    import gc

    _KEPT.clear()
    gc.collect()
    return _me()


def hosted_actors():
    # The actor instances this process holds (its executor's state).
    return sorted(refrpc.api._ctx.executor.actors)


@refrpc.remote
class Relay:
    # An actor that is passed another actor's handle and calls it.
    def __init__(self, target):
        self.target = target

    def bump(self):
        return refrpc.get(self.target.add.remote(10), timeout=60)


@refrpc.remote
def add_to_named(name, n):
    # Finds a named actor from a task (ACT-022) and calls it.
    return refrpc.get(refrpc.get_actor(name).add.remote(n), timeout=60)


@refrpc.remote
def kill_named(name):
    # Kills a named actor from a process that does not own it (its owner is asked).
    refrpc.kill(refrpc.get_actor(name))
    return True


def add_kept(n):
    # Calls the last kept handle from this process (a caller that is not the owner).
    return refrpc.get(_KEPT[-1].add.remote(n), timeout=60)


def call_peer(peer):
    # Runs a task on ``peer`` from this process (which opens a session with whatever
    # incarnation of it is alive now) and returns that peer's id.
    return refrpc.api._call_on(peer, "actor_fixtures:_me", timeout=30)


def peer_state(peer):
    node = refrpc.api._ctx.node
    return node.call(lambda: node.core.remotes[peer].state if peer in node.core.remotes else "unknown").result()


@refrpc.remote
class Marker:
    """Creates ``path`` when its constructor runs: a test sees whether, and when, the
    host started the actor."""

    def __init__(self, path):
        open(path, "w").close()

    def ping(self):
        return True


@refrpc.remote(max_retries=0)
def touch(path):
    open(path, "w").close()
    return True


@refrpc.remote
class NoStart:
    """An actor whose constructor raises."""

    def __init__(self, key: str) -> None:
        raise KeyError(key)

    def ping(self) -> int:
        return 1
