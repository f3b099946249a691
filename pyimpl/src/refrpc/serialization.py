"""Python objects <-> :class:`~refrpc.core.messages.Value` (spec ``VAL-*``).

Three encodings (VAL-001):

* ``raw``: ``bytes``, ``bytearray`` and ``memoryview`` on their own travel as
  their bytes (VAL-008).
* ``portable``: plain data (``None``, ``bool``, 64-bit ``int``, ``float``,
  ``str``, bytes, ``list``/``tuple``, ``dict`` with ``str`` keys, refs) as a
  ``Portable`` tree every implementation can read (VAL-004), on request or
  when pickle is not allowed.
* ``pickle``: anything else, with pickle protocol 5 (VAL-009). Buffers that
  support out-of-band pickling (numpy arrays, ``pickle.PickleBuffer``) are not
  copied into the pickle stream: they become ``Value.buffers``, referring to the
  object's own memory. The pickler is cloudpickle's: functions and classes a
  worker can import travel by reference (their qualified name); those it
  cannot (defined in ``__main__``, in a notebook cell, inside a function, a
  lambda) travel by value, so a value made of them loads anywhere the
  ``python-pickle`` feature is spoken (reading such a value needs cloudpickle).

Refs inside a value (objects for which ``ref_hook`` returns a
:class:`~refrpc.core.messages.RefDescriptor`) are listed once each in
``Value.nested``, in the order the encoder meets them, and the encoding refers
to them by index (VAL-002, VAL-011): as the persistent id
``("refrpc.ref", i)`` in pickle, as a ``Portable.ref`` node in portable.

Zero copy: :func:`deserialize` hands ``Value.buffers`` to the unpickler as is,
so when they are ``memoryview``\\ s over shared memory (a store's read-only
mapping) the numpy arrays that come out are read-only views of that memory.
A value serialized from a mutable object refers to that object's memory until
it is stored or sent: don't mutate it in between.

Example:
    >>> v = serialize({"a": [1, 2]}, ref_hook=lambda o: None, portable=True)
    >>> v.encoding.value, deserialize(v, ref_factory=lambda d: d)
    ('portable', {'a': [1, 2]})
"""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any, Callable

import cloudpickle

from . import codec
from .core.messages import Encoding, RefDescriptor, Value
from .errors import RefRPCError

__all__ = [
    "PICKLE_PROTOCOL",
    "REF_TAG",
    "DeserializationError",
    "NotPortable",
    "RefFactory",
    "RefHook",
    "SerializationError",
    "deserialize",
    "from_portable",
    "serialize",
    "to_portable",
]

#: Pickle protocol of the ``pickle`` encoding (VAL-009).
PICKLE_PROTOCOL = 5
#: First element of the persistent id of a nested ref: ``("refrpc.ref", i)`` (VAL-009).
REF_TAG = "refrpc.ref"

RefHook = Callable[[object], "RefDescriptor | None"]
RefFactory = Callable[[RefDescriptor], object]

_RAW_TYPES = (bytes, bytearray, memoryview)
#: Types that are never refs: the pickler skips ``ref_hook`` for them.
_PLAIN = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray, tuple, list, dict, set,
     frozenset, pickle.PickleBuffer}
)  # fmt: skip


class SerializationError(RefRPCError):
    """The object cannot be encoded as asked (not picklable, pickle not allowed, ...)."""


class NotPortable(SerializationError):
    """The object has no portable form (a type outside the portable set, an
    integer outside 64 bits, a non-``str`` map key, nesting over 64 levels)."""


class DeserializationError(RefRPCError):
    """The value cannot be decoded: corrupt or malformed bytes, a nested index
    that does not exist (VAL-006), a pickle that fails to load, an encoding
    that is not allowed here."""


class _Refs:
    """Numbers refs in first-met order, each distinct descriptor once (VAL-011)."""

    __slots__ = ("hook", "index", "nested")

    def __init__(self, hook: RefHook) -> None:
        self.hook = hook
        self.index: dict[RefDescriptor, int] = {}
        self.nested: list[RefDescriptor] = []

    def lookup(self, obj: object) -> int | None:
        desc = self.hook(obj)
        if desc is None:
            return None
        if not isinstance(desc, RefDescriptor):
            raise SerializationError(f"ref_hook returned {type(desc).__name__}, not RefDescriptor")
        i = self.index.get(desc)
        if i is None:
            i = self.index[desc] = len(self.nested)
            self.nested.append(desc)
        return i


# ---------------------------------------------------------------- pickle
def _take_buffer(buffers: list[Any], buf: pickle.PickleBuffer) -> bool:
    try:
        view = buf.raw()  # a flat byte view of the object's own memory
    except BufferError:
        return True  # not contiguous: let pickle copy it in-band
    buffers.append(view)
    return False


#: A numpy array larger than this travels as several out-of-band parts: one
#: Cap'n Proto ``Data`` holds less than 512 MiB. The parts are written back to back
#: in a stored form, so a reader still maps the whole array without a copy.
PART_BYTES = 1 << 28


def _join_array(dtype: Any, shape: tuple[int, ...], *parts: Any) -> Any:
    """Rebuild an array sent in parts; zero-copy when the parts are adjacent in one mapping."""
    import numpy as np

    views = [memoryview(p).cast("B") if memoryview(p).format != "B" else memoryview(p) for p in parts]
    count = 1
    for n in shape:
        count *= n
    base = views[0].obj
    if all(v.obj is base for v in views) and base is not None:
        starts = [np.frombuffer(v, np.uint8).__array_interface__["data"][0] for v in views]
        if all(starts[i] + len(views[i]) == starts[i + 1] for i in range(len(views) - 1)):
            origin = np.frombuffer(base, np.uint8).__array_interface__["data"][0]
            return np.frombuffer(base, dtype=dtype, count=count, offset=starts[0] - origin).reshape(shape)
    return np.frombuffer(b"".join(views), dtype=dtype, count=count).reshape(shape)


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file: io.BytesIO, refs: _Refs, buffers: list[Any]) -> None:
        # The callback must not be a bound method of the pickler: that cycle would
        # keep the pickler and its memo (every object pickled, refs included)
        # alive until the cyclic GC runs, and a ref kept alive keeps its value alive.
        super().__init__(file, protocol=PICKLE_PROTOCOL, buffer_callback=functools.partial(_take_buffer, buffers))
        self._refs = refs

    def reducer_override(self, obj: Any) -> Any:  # noqa: D102 - pickle's hook
        t = type(obj)
        if t.__name__ == "ndarray" and t.__module__ == "numpy" and obj.nbytes > PART_BYTES:
            if obj.flags.c_contiguous and not obj.dtype.hasobject:
                flat = memoryview(obj).cast("B")
                parts = [pickle.PickleBuffer(flat[i : i + PART_BYTES]) for i in range(0, len(flat), PART_BYTES)]
                return _join_array, (obj.dtype, obj.shape, *parts)
        return super().reducer_override(obj)  # cloudpickle: code that cannot be imported goes by value

    def persistent_id(self, obj: Any) -> Any:  # noqa: D102 - pickle's hook
        if type(obj) in _PLAIN:
            return None
        i = self._refs.lookup(obj)
        return None if i is None else (REF_TAG, i)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, buffers: Any, nested: tuple[RefDescriptor, ...],
                 ref_factory: RefFactory) -> None:  # fmt: skip
        super().__init__(file, buffers=buffers)
        self._nested = nested
        self._factory = ref_factory

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle's hook
        if type(pid) is not tuple or len(pid) != 2 or pid[0] != REF_TAG or type(pid[1]) is not int:
            raise DeserializationError(f"unknown persistent id {pid!r:.80}")
        return _nested_ref(self._nested, pid[1], self._factory)


def _nested_ref(nested: tuple[RefDescriptor, ...], index: int, factory: RefFactory) -> object:
    if not 0 <= index < len(nested):
        raise DeserializationError(
            f"the value refers to nested ref {index}, it lists {len(nested)} (VAL-006)"
        )
    return factory(nested[index])


def _pickle(obj: object, ref_hook: RefHook) -> Value:
    refs, buffers = _Refs(ref_hook), []  # type: ignore[var-annotated]
    file = io.BytesIO()
    try:
        pickler = _Pickler(file, refs, buffers)
        try:
            pickler.dump(obj)
        finally:
            pickler.clear_memo()  # drop our hold on everything pickled
    except SerializationError:
        raise
    except Exception as exc:  # PicklingError, TypeError, AttributeError, RecursionError...
        raise SerializationError(f"cannot pickle {type(obj).__name__}: {exc}") from exc
    return Value(Encoding.PICKLE, file.getvalue(), tuple(buffers), tuple(refs.nested))


#: None, True and False pickled as :func:`_pickle` pickles them (the same bytes, no refs).
_SINGLETONS: dict[object, Value] = {v: _pickle(v, lambda o: None) for v in (None, True, False)}


# ---------------------------------------------------------------- portable
def _tree(obj: Any, refs: _Refs, depth: int) -> Any:
    kind = type(obj)
    if obj is None or kind in (bool, float, str, bytes):
        return obj
    if kind is int:
        if not -(1 << 63) <= obj < 1 << 63:
            raise NotPortable(f"integer {obj} is outside the signed 64-bit range (VAL-012)")
        return obj
    if kind is bytearray or kind is memoryview:
        return bytes(obj)
    if kind in (list, tuple, dict):
        if depth >= codec.MAX_PORTABLE_DEPTH:
            raise NotPortable(f"nested deeper than {codec.MAX_PORTABLE_DEPTH} levels (VAL-007)")
        if kind is dict:
            tree = {}
            for key, item in obj.items():
                if type(key) is not str:
                    raise NotPortable(f"map key of type {type(key).__name__} (portable keys are str)")
                tree[key] = _tree(item, refs, depth + 1)
            return tree
        return [_tree(item, refs, depth + 1) for item in obj]
    i = refs.lookup(obj)
    if i is None:
        raise NotPortable(f"{kind.__name__} has no portable form")
    return codec.PortableRef(i)


def to_portable(obj: object, *, ref_hook: RefHook) -> Value:
    """Encode ``obj`` in the portable encoding (VAL-004).

    Raises:
        NotPortable: ``obj`` holds something without a portable form.
    """
    refs = _Refs(ref_hook)
    try:
        tree = _tree(obj, refs, 0)
        data = codec.encode_portable(tree)
    except RecursionError:
        raise NotPortable("nested too deep") from None
    except codec.EncodeError as exc:  # e.g. a str with lone surrogates: not UTF-8
        raise NotPortable(str(exc)) from exc
    return Value(Encoding.PORTABLE, data, (), tuple(refs.nested))


def _from_tree(node: Any, nested: tuple[RefDescriptor, ...], factory: RefFactory) -> Any:
    kind = type(node)
    if kind is list:
        return [_from_tree(item, nested, factory) for item in node]
    if kind is dict:
        return {key: _from_tree(item, nested, factory) for key, item in node.items()}
    if kind is codec.PortableRef:
        return _nested_ref(nested, node.index, factory)
    return node


def from_portable(value: Value, *, ref_factory: RefFactory) -> object:
    """Decode a ``portable`` value; refs become ``ref_factory(descriptor)``.

    Raises:
        DeserializationError: Malformed bytes, buffers present (VAL-004), a
            ref index with no entry in ``nested`` (VAL-006).
    """
    if value.buffers:
        raise DeserializationError("a portable value has no buffers (VAL-004)")
    try:
        tree = codec.decode_portable(value.data)
    except codec.DecodeError as exc:
        raise DeserializationError(f"malformed portable value: {exc}") from exc
    try:
        return _from_tree(tree, value.nested, ref_factory)
    except DeserializationError:
        raise
    except Exception as exc:  # raised by ref_factory
        raise DeserializationError(f"cannot restore a nested ref: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- entry points
def serialize(
    obj: object,
    *,
    ref_hook: RefHook,
    allow_pickle: bool = True,
    portable: bool = False,
) -> Value:
    """Encode a Python object as a :class:`Value`.

    Args:
        obj: The object. ``bytes``, ``bytearray`` and ``memoryview`` become a
            ``raw`` value (a ``bytes`` object is used as is, the others are
            copied, so later changes to them do not change the value).
        ref_hook: Called on the objects met inside ``obj``; returns the
            :class:`RefDescriptor` of a ref (which then travels in
            ``Value.nested``) or ``None`` for anything else.
        allow_pickle: Whether the ``pickle`` encoding may be used (the session
            negotiated ``python-pickle``, HS-020). Without it, ``obj`` must be
            portable.
        portable: Prefer the ``portable`` encoding, falling back to pickle (if
            allowed) for objects that have no portable form.

    Raises:
        SerializationError: The object cannot be encoded as asked
            (:class:`NotPortable` when pickle is not allowed and the object is
            not portable).
    """
    kind = type(obj)
    if kind in _RAW_TYPES:
        data = obj if kind is bytes else memoryview(obj).tobytes()  # type: ignore[arg-type]
        return Value(Encoding.RAW, data)  # type: ignore[arg-type]
    if portable or not allow_pickle:
        try:
            return to_portable(obj, ref_hook=ref_hook)
        except NotPortable as exc:
            if not allow_pickle:
                raise NotPortable(f"{exc} (and pickle is not allowed)") from exc
    if obj is None or kind is bool:  # most tasks return None: its pickle is made once
        return _SINGLETONS[obj]
    return _pickle(obj, ref_hook)


def deserialize(value: Value, *, ref_factory: RefFactory, allow_pickle: bool = True) -> object:
    """Decode a :class:`Value` back into a Python object.

    Args:
        value: The value. Its payloads may be ``bytes`` or ``memoryview``\\ s;
            pickle buffers are handed to the unpickler as they are, so arrays
            alias them (zero copy).
        ref_factory: Turns each nested :class:`RefDescriptor` into the object
            the program sees (a ``Ref``); called once per occurrence.
        allow_pickle: Whether a ``pickle`` value may be loaded (it runs code
            chosen by the sender: only between trusting peers, SEC-005).

    Returns:
        The object. A ``raw`` value comes back as ``bytes`` when its data is
        ``bytes``, and as a read-only ``memoryview`` (no copy) when it is a
        view, such as one into a shared-memory store.

    Raises:
        DeserializationError: For any malformed or unreadable value; nothing else
            (errors raised while unpickling, ``ref_factory``'s included, are
            wrapped, with the original as ``__cause__``).
    """
    if not isinstance(value, Value):
        raise DeserializationError(f"expected Value, got {type(value).__name__}")
    encoding = value.encoding
    if encoding is Encoding.RAW:
        if value.buffers or value.nested:
            raise DeserializationError("a raw value has no buffers or nested refs (VAL-008)")
        data = value.data
        return data if type(data) is bytes else memoryview(data).toreadonly()
    if encoding is Encoding.PORTABLE:
        return from_portable(value, ref_factory=ref_factory)
    if encoding is not Encoding.PICKLE:
        raise DeserializationError(f"unknown encoding {encoding!r}")
    if not allow_pickle:
        raise DeserializationError("pickle values are not allowed here (HS-020, OBJ-012)")
    try:
        file = io.BytesIO(value.data)
        return _Unpickler(file, value.buffers, value.nested, ref_factory).load()
    except DeserializationError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, ImportError, ValueError, ...
        raise DeserializationError(f"cannot unpickle value: {type(exc).__name__}: {exc}"[:500]) from exc
