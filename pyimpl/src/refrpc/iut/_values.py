"""Values of the implementation under test: JSON portable values and portable puts.

The control channel carries values as *JSON portable values*
(spec/conformance-hooks.md, section 2); the protocol carries them as ``portable``
``Value``\\ s (spec/values.md, section 2). This module converts between JSON and
the Python objects the fixtures see (``None``, ``bool``, ``int``, ``float``,
``str``, ``bytes``, ``list``, ``dict``, and :class:`refrpc.api.Ref` for refs),
and encodes those objects in the portable encoding only: the IUT plays an
implementation that speaks no pickle.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import TYPE_CHECKING, Any, Callable

from ..api import Ref
from ..core import events as ev
from ..core.messages import RefDescriptor, Value
from ..serialization import NotPortable, to_portable

if TYPE_CHECKING:
    from ..runtime import Node

_INT64 = (-(1 << 63), (1 << 63) - 1)
#: The three float64 values JSON has no number for.
_SPECIAL = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class BadValue(ValueError):
    """A JSON value that is not a JSON portable value (answered ``bad_request``)."""


def from_json(obj: Any, ref: Callable[[str], Ref[Any]], depth: int = 0) -> Any:
    """A JSON portable value as the Python object a fixture or ``put`` takes.

    ``ref`` turns an object id into a ref the IUT holds; it raises
    :class:`BadValue` for an id the IUT does not hold.
    """
    if depth > 64:
        raise BadValue("value nested deeper than 64 levels (VAL-007)")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        if not _INT64[0] <= obj <= _INT64[1]:
            raise BadValue(f"integer {obj} is outside int64")
        return obj
    if isinstance(obj, float):
        raise BadValue(f"bare number {obj!r}: a float64 is written {{\"float64\": ...}}")
    if isinstance(obj, list):
        return [from_json(item, ref, depth + 1) for item in obj]
    if isinstance(obj, dict) and len(obj) == 1:
        (tag, inner), = obj.items()
        if tag == "float64":
            if isinstance(inner, str) and inner in _SPECIAL:
                return _SPECIAL[inner]
            if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                return float(inner)
            raise BadValue(f"float64 must be a number, \"nan\", \"inf\" or \"-inf\", not {inner!r}")
        if tag == "data":
            if not isinstance(inner, str):
                raise BadValue("data must be a base64 string")
            try:
                return base64.b64decode(inner, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadValue(f"data is not base64: {exc}") from None
        if tag == "map":
            if not isinstance(inner, list):
                raise BadValue("map must be a list of [key, value] pairs")
            out: dict[str, Any] = {}
            for pair in inner:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise BadValue(f"map entry {pair!r:.80} is not a [text key, value] pair")
                if pair[0] in out:
                    raise BadValue(f"map repeats key {pair[0]!r:.80} (VAL-005)")
                out[pair[0]] = from_json(pair[1], ref, depth + 1)
            return out
        if tag == "ref":
            if not isinstance(inner, str):
                raise BadValue("ref must be an object id string")
            return ref(inner)
    raise BadValue(f"not a JSON portable value: {obj!r:.80}")


def to_json(obj: Any, keep: Callable[[Ref[Any]], None]) -> Any:
    """A Python object read from a portable or raw value, as a JSON portable value.

    ``keep`` is given every ref met: the IUT now holds it, as a program would.
    """
    kind = type(obj)
    if obj is None or kind in (bool, int, str):
        return obj
    if kind is float:
        if math.isnan(obj):
            return {"float64": "nan"}
        if math.isinf(obj):
            return {"float64": "inf" if obj > 0 else "-inf"}
        return {"float64": obj}
    if kind in (bytes, bytearray, memoryview):
        return {"data": base64.b64encode(bytes(obj)).decode("ascii")}
    if kind in (list, tuple):
        return [to_json(item, keep) for item in obj]
    if kind is dict:
        return {"map": [[key, to_json(item, keep)] for key, item in obj.items()]}
    if isinstance(obj, Ref):
        keep(obj)
        return {"ref": obj.id}
    raise BadValue(f"{kind.__name__} has no JSON portable form")


def ref_hook(node: Node) -> Callable[[object], RefDescriptor | None]:
    """The serializer's hook: a :class:`Ref` becomes its descriptor (VAL-002)."""

    def hook(obj: object) -> RefDescriptor | None:
        if isinstance(obj, Ref):
            return node.call(lambda: node.core.descriptor(obj.id)).result()  # type: ignore[no-any-return]
        return None

    return hook


def encode(node: Node, obj: Any) -> Value:
    """``obj`` in the portable encoding (VAL-004); raises NotPortable."""
    return to_portable(obj, ref_hook=ref_hook(node))


def put(node: Node, obj: Any) -> Ref[Any]:
    """``put`` (OWN-001) of a portable value; the new object is held once, by the
    returned handle. Values above the inline threshold go to the store (TASK-004's
    rule applied to puts, as the runtime's ``refrpc.put`` does). Call it from any
    thread but the node's loop thread."""
    value = encode(node, obj)
    oid = node.new_id()
    stored = value.size > node.config.inline_threshold
    size = node.store.put(oid, value) if stored else value.size
    entry = Value(value.encoding, b"", (), value.nested) if stored else value
    try:
        node.call(lambda: node.handle(ev.Put(node.sid(), oid, entry, stored, size))).result()
    except BaseException:
        if stored:
            node.store.free(oid)
        raise
    return Ref(node, oid, counted=True)


__all__ = ["BadValue", "NotPortable", "encode", "from_json", "put", "ref_hook", "to_json"]
