"""Building and reading the protocol values cases send and check.

Small helpers over :mod:`refrpc.codec` (portable encoding, stored form) and the
message dataclasses: a case writes ``submit("echo", [by_value([1, "a"])])``
rather than spelling out every field.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Sequence

from refrpc.codec import PortableRef, decode_portable, decode_value, encode_portable, encode_value
from refrpc.core.messages import (
    Arg,
    ArgKind,
    Encoding,
    RefDescriptor,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    Value,
)

__all__ = [
    "IdAllocator",
    "PortableRef",
    "by_ref",
    "by_value",
    "make_bytes_value",
    "pickled",
    "portable",
    "read_pickled",
    "read_portable",
    "read_stored_form",
    "shared",
    "stored_form",
    "submit_task",
]


class IdAllocator:
    """Ids in the RECOMMENDED form ``{peer}.{incarnation:x}.{counter}`` (ID-003)."""

    def __init__(self, peer_id: str, incarnation: int) -> None:
        self.prefix = f"{peer_id}.{incarnation:x}."
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}{next(self._counter)}"


def portable(tree: Any, nested: Sequence[RefDescriptor] = ()) -> Value:
    """A ``portable`` Value (VAL-004); refs in ``tree`` are :class:`PortableRef` indexes into ``nested``."""
    return Value(encoding=Encoding.PORTABLE, data=encode_portable(tree), nested=tuple(nested))


def read_portable(value: Value) -> Any:
    """The tree of a ``portable`` Value (refs as :class:`PortableRef`).

    Raises:
        ValueError: The value is not portable.
    """
    if value.encoding is not Encoding.PORTABLE:
        raise ValueError(f"value is {value.encoding.value}, not portable")
    return decode_portable(value.data)


#: The pickle protocol of membership values (CLU-030).
PICKLE_PROTOCOL = 5
#: What a membership value may hold (CLU-030).
_MEMBERSHIP_TYPES = (str, int, float, bool, type(None), tuple, list, dict)


def pickled(tree: Any) -> Value:
    """A ``pickle`` Value of CLU-030's built-in types, protocol 5 (the membership calls)."""
    import pickle

    return Value(encoding=Encoding.PICKLE, data=pickle.dumps(tree, protocol=PICKLE_PROTOCOL))


def read_pickled(value: Value) -> Any:
    """The tree of a ``pickle`` Value that holds CLU-030's built-in types only. The
    suite never runs what an IUT sends: a pickle naming any class or function, or
    holding another type, is refused.

    Raises:
        ValueError: The value is not such a pickle.
    """
    import io
    import pickle

    class BuiltinsOnly(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise ValueError(f"the pickle names {module}.{name} (CLU-030 allows built-in types only)")

        def persistent_load(self, pid: Any) -> Any:
            raise ValueError("the pickle refers to a ref (CLU-030 allows none)")

    if value.encoding is not Encoding.PICKLE:
        raise ValueError(f"value is {value.encoding.value}, not pickle")
    if value.nested or value.buffers:
        raise ValueError("a membership value has no nested refs and no out-of-band buffers")
    try:
        tree = BuiltinsOnly(io.BytesIO(bytes(value.data)), buffers=()).load()
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"not a readable pickle: {type(exc).__name__}: {exc}") from None
    todo, seen = [tree], set()
    while todo:
        item = todo.pop()
        if type(item) not in _MEMBERSHIP_TYPES:
            raise ValueError(f"the pickle holds a {type(item).__name__} (CLU-030 allows built-in types only)")
        if isinstance(item, (tuple, list, dict)) and id(item) not in seen:
            seen.add(id(item))
            todo.extend(x for kv in item.items() for x in kv) if isinstance(item, dict) else todo.extend(item)
    return tree


def stored_form(value: Value) -> bytes:
    """The stored form of a value (OBJ-010): what FetchChunks carry."""
    return encode_value(value)


def read_stored_form(data: bytes) -> Value:
    """Decode a stored form (OBJ-010)."""
    return decode_value(data)


def make_bytes_value(n: int) -> bytes:
    """What the ``make_bytes`` fixture returns: byte i is i mod 256 (CNF-001)."""
    pattern = bytes(range(256))
    return (pattern * (n // 256 + 1))[:n]


def by_value(tree: Any, nested: Sequence[RefDescriptor] = ()) -> Arg:
    return Arg(kind=ArgKind.VALUE, value=portable(tree, nested))


def by_ref(ref: RefDescriptor) -> Arg:
    return Arg(kind=ArgKind.REF, ref=ref)


def shared(ref: RefDescriptor) -> Arg:
    return Arg(kind=ArgKind.SHARED, ref=ref)


def submit_task(
    task_id: str,
    function: str,
    args: Iterable[Arg] = (),
    *,
    num_returns: int = 1,
    **fields: Any,
) -> SubmitTask:
    """A ``SubmitTask`` with return ids ``{task_id}.r{i}`` (ID-003)."""
    return SubmitTask(
        task_id=task_id,
        function=function,
        args=tuple(args),
        return_ids=tuple(f"{task_id}.r{i}" for i in range(num_returns)),
        **fields,
    )


def describe_return(ret: ReturnValue) -> str:
    """A return value for a check's "actual" column."""
    if ret.kind is ReturnKind.INLINE and ret.value is not None:
        try:
            return f"inline {read_portable(ret.value)!r:.200}"
        except Exception:
            return f"inline {ret.value.encoding.value} <{ret.value.size} bytes>"
    if ret.kind is ReturnKind.STORED:
        return f"stored at {ret.location!r}, size {ret.size}"
    if ret.error is not None:
        return f"error {ret.error.code.value} ({ret.error.message!r:.120}, requirement {ret.error.requirement!r})"
    return f"{ret.kind.value}"
