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
