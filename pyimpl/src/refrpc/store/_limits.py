"""A store's limit and spill directory: parsing what a user gives, and the defaults."""

from __future__ import annotations

import os
import re
import tempfile

from ._shm import DEFAULT_DIRECTORY

#: The share of the machine's memory that the object stores of one host take by default.
DEFAULT_MEMORY_FRACTION = 0.3
#: ... and of what the shared-memory file system can hold.
DEFAULT_SHM_FRACTION = 0.9
#: The smallest limit a store accepts (a few stored values).
MIN_CAPACITY = 1 << 20
#: The share of the limit past which a host's stores spill in the background (OBJ-066).
DEFAULT_HIGH_WATER = 0.8

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")


def parse_bytes(value: object, what: str = "object_store_memory") -> int:
    """A byte count from an int or a string such as ``"64MB"``, ``"2GiB"``, ``"500000000"``.

    Raises:
        ValueError: Negative, zero, below :data:`MIN_CAPACITY`, or not a size; the
            message names ``what`` and the value.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes (e.g. 2000000000 or '2GB'), not {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(f"{what} must be a number of bytes (e.g. 2000000000, '2GB' or '512MiB'), not {value!r}")
        number = float(match.group(1)) * _UNITS[unit]
    else:
        raise ValueError(f"{what} must be a number of bytes (e.g. 2000000000 or '2GB'), not {value!r}")
    if number != number or number < MIN_CAPACITY:  # NaN, negative, zero, tiny
        raise ValueError(f"{what} must be at least {MIN_CAPACITY:,} bytes, not {value!r}")
    return int(number)


def parse_high_water(value: object, what: str = "object_store_high_water") -> float:
    """A high-water mark: a fraction of the limit, more than 0 and at most 1 (1: spill
    only when a value does not fit).

    Raises:
        ValueError: Not a number in (0, 1]; the message names ``what`` and the value.
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 < number <= 1:
        raise ValueError(f"{what} must be a fraction of the limit, more than 0 and at most 1 (e.g. 0.8), not {value!r}")
    return number


def machine_memory() -> int:
    """Bytes of physical memory (0 if unknown)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def shm_capacity(directory: str | None = None) -> int:
    """Bytes the shared-memory file system can still take (0 if unknown)."""
    try:
        st = os.statvfs(directory or DEFAULT_DIRECTORY)
    except OSError:  # pragma: no cover
        return 0
    return st.f_bavail * st.f_frsize


def default_capacity(stores_on_host: int = 1) -> int:
    """The default limit of a host's stores: :data:`DEFAULT_MEMORY_FRACTION` of its
    memory, never more than :data:`DEFAULT_SHM_FRACTION` of what ``/dev/shm`` can
    hold; divided by ``stores_on_host`` for stores that do not share one limit."""
    limits = [int(n) for n in (machine_memory() * DEFAULT_MEMORY_FRACTION, shm_capacity() * DEFAULT_SHM_FRACTION) if n]
    total = min(limits) if limits else 2 << 30
    return max(MIN_CAPACITY, total // max(1, stores_on_host))


def default_spill_directory(namespace: str) -> str:
    """Where a cluster's stores spill unless told otherwise: a directory of its own
    under the system's temporary directory (removed when the cluster stops)."""
    return os.path.join(tempfile.gettempdir(), f"refrpc-spill-{namespace}")


def prepare_spill_directory(path: str | os.PathLike[str]) -> str:
    """Make ``path`` (mode 0700 if it is new) and check that files can be written in it.

    Raises:
        ValueError: It cannot be made, or is not a writable directory; the message
            says which and why (at start, not at the first spill).
    """
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".refrpc-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"the spill directory {path} is not writable: {exc.strerror or exc}") from None
    return path
