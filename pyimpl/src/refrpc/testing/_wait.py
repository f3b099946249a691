"""Waiting for a condition with a bound: the way tests of real processes wait."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(predicate: Callable[[], object], timeout: float, step: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; the last answer."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
