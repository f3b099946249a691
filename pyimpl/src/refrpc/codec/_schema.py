"""Loads ``refrpc.capnp`` and derives, once at import, how each message
dataclass maps onto its Cap'n Proto struct.

The mapping is data (:class:`StructPlan`/:class:`FieldPlan`), derived from the
dataclass fields of :mod:`refrpc.core.messages` and the schema, so a new message
or field needs no codec change as long as its type is one of the shapes below.
Import fails loudly if the schema and the dataclasses disagree; the schema tests
(``tests/test_schema.py``) say where.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import capnp  # type: ignore[import-untyped]

from ..core import messages as m

#: The schema file; a symlink to ``schema/refrpc.capnp`` in a source checkout.
SCHEMA_PATH = Path(__file__).with_name("refrpc.capnp")

# A parser of our own: pycapnp's global parser aborts the whole process when one
# file id is loaded twice under different paths, which other code (a test, a
# tool) could do with the global ``capnp.load``. Our own parser is immune.
_module: ModuleType = capnp.SchemaParser().load(str(SCHEMA_PATH.resolve()))


def schema() -> ModuleType:
    """The codec's loaded pycapnp module of ``refrpc.capnp`` (e.g. ``schema().TraceRecord``).

    Use this rather than loading the file again: builders and readers of this
    module are the ones :func:`encode` and :func:`decode` work with.
    """
    return _module


# ---------------------------------------------------------------- names
def camel(snake: str) -> str:
    """``return_ids`` -> ``returnIds`` (Python name to schema name)."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(camel_name: str) -> str:
    """``returnIds`` -> ``return_ids`` (schema name to Python name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel_name).lower()


def lower_camel(class_name: str) -> str:
    """``SubmitTask`` -> ``submitTask`` (message class to union member name)."""
    return class_name[:1].lower() + class_name[1:]


# ---------------------------------------------------------------- identifiers
#: Byte limits of the identifier types (ID-001 for PeerId, ID-003 for the rest).
ID_LIMITS: dict[str, tuple[int, str]] = {
    "PeerId": (128, "ID-001"),
    "ObjectId": (256, "ID-003"),
    "TaskId": (256, "ID-003"),
    "ForwardId": (256, "ID-003"),
    "ActorId": (256, "ID-003"),
}


# ---------------------------------------------------------------- enums
#: Python enum -> its members in schema ordinal order.
ENUM_MEMBERS: dict[type[enum.Enum], tuple[enum.Enum, ...]] = {}
#: Python enum member -> schema ordinal.
ENUM_ORDINALS: dict[enum.Enum, int] = {}


def _register_enum(cls: type[enum.Enum]) -> None:
    enumerants: dict[str, int] = getattr(_module, cls.__name__).schema.enumerants
    by_ordinal = {ordinal: name for name, ordinal in enumerants.items()}
    members = tuple(cls)
    expected = [camel(str(member.value)) for member in members]
    actual = [by_ordinal.get(i) for i in range(len(by_ordinal))]
    if expected != actual:
        raise ImportError(
            f"schema enum {cls.__name__} {actual} does not match messages.{cls.__name__} {expected}"
        )
    ENUM_MEMBERS[cls] = members
    for ordinal, member in enumerate(members):
        ENUM_ORDINALS[member] = ordinal


for _enum_cls in (m.Encoding, m.ArgKind, m.ReturnKind, m.ErrorCode, m.ObjectState, m.ActorState):
    _register_enum(_enum_cls)


# ---------------------------------------------------------------- plans
class Kind(enum.Enum):
    """The shapes a dataclass field can take on the wire."""

    SCALAR = "scalar"  #: int, bool or free text: stored as is
    ID = "id"  #: an identifier: text with ID-001/ID-003 length limits
    ID_LIST = "id_list"  #: tuple of identifiers
    TEXT_LIST = "text_list"  #: tuple of free text
    ENUM = "enum"  #: a str enum, stored as its schema ordinal
    STRUCT = "struct"  #: a required nested dataclass
    OPTIONAL = "optional"  #: ``T | None``: a union { none; some :T }
    STRUCT_LIST = "struct_list"  #: tuple of dataclasses
    PAYLOAD = "payload"  #: bytes: a Payload (inline or out-of-band frame)
    PAYLOAD_LIST = "payload_list"  #: tuple of bytes: List(Payload)


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How one dataclass field travels."""

    #: Python attribute name.
    name: str
    #: Schema field name (lowerCamelCase).
    wire_name: str
    kind: Kind
    #: The pycapnp field object (for ``_get_by_field``/``_set_by_field``).
    field: Any
    #: Schema default: a value equal to it need not be written.
    default: Any = None
    #: For ids: the byte limit and the requirement that sets it.
    max_bytes: int = 0
    requirement: str = ""
    #: For ids: whether the empty string is allowed (dataclass default is "").
    may_be_empty: bool = False
    #: For ENUM: the Python enum class.
    enum_cls: type[enum.Enum] | None = None
    #: For STRUCT/OPTIONAL/STRUCT_LIST: the nested dataclass.
    struct_cls: type | None = None
    #: For OPTIONAL: the union's ``some`` field.
    some_field: Any = None


@dataclass(frozen=True, slots=True)
class StructPlan:
    """How one dataclass maps onto one schema struct."""

    cls: type
    #: The pycapnp struct type of the same name.
    wire: Any
    fields: tuple[FieldPlan, ...]


_SCALAR_TYPES = {
    "int": {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"},
    "bool": {"bool"},
    "str": {"text"},
}

PLANS: dict[type, StructPlan] = {}


def _slot_type(field: Any) -> str:
    proto = field.proto
    return "group" if proto.which() == "group" else str(proto.slot.type.which())


def _default(field: Any) -> Any:
    proto = field.proto
    if proto.which() != "slot":
        return None
    value = proto.slot.defaultValue
    kind = value.which()
    if kind in ("text", "data", "list", "struct", "anyPointer", "void"):
        return None
    raw = getattr(value, kind)
    return raw


def _field_plan(cls: type, dc_field: dataclasses.Field[Any], wire_fields: dict[str, Any]) -> FieldPlan:
    ann = str(dc_field.type).replace(" ", "")
    wire_name = camel(dc_field.name)
    where = f"{cls.__name__}.{dc_field.name}"
    if wire_name not in wire_fields:
        raise ImportError(f"{where}: schema struct {cls.__name__} has no field {wire_name!r}")
    field = wire_fields[wire_name]
    wire_type = _slot_type(field)
    base: dict[str, Any] = {"name": dc_field.name, "wire_name": wire_name, "field": field}

    def expect(*types: str) -> None:
        if wire_type not in types:
            raise ImportError(f"{where}: schema type {wire_type} does not fit {ann}")

    def ident(type_name: str) -> dict[str, Any]:
        limit, requirement = ID_LIMITS[type_name]
        return {"max_bytes": limit, "requirement": requirement}

    if ann.endswith("|None"):
        inner = getattr(m, ann[: -len("|None")])
        expect("group")
        group_fields = field.schema.fields
        if list(field.schema.union_fields) != ["none", "some"]:
            raise ImportError(f"{where}: optional must be union {{ none :Void; some :T }}")
        return FieldPlan(
            **base, kind=Kind.OPTIONAL, struct_cls=inner, some_field=group_fields["some"]
        )
    if ann.startswith("tuple[") and ann.endswith(",...]"):
        elem = ann[len("tuple[") : -len(",...]")]
        expect("list")
        if elem in ID_LIMITS:
            return FieldPlan(**base, kind=Kind.ID_LIST, **ident(elem))
        if elem == "str":
            return FieldPlan(**base, kind=Kind.TEXT_LIST)
        if elem == "bytes":
            return FieldPlan(**base, kind=Kind.PAYLOAD_LIST)
        return FieldPlan(**base, kind=Kind.STRUCT_LIST, struct_cls=getattr(m, elem))
    if ann in ID_LIMITS:
        expect("text")
        return FieldPlan(
            **base, kind=Kind.ID, default="", may_be_empty=dc_field.default == "", **ident(ann)
        )
    if ann in _SCALAR_TYPES:
        expect(*_SCALAR_TYPES[ann])
        default = _default(field)
        return FieldPlan(**base, kind=Kind.SCALAR, default="" if ann == "str" else default)
    if ann == "bytes":
        expect("struct")
        return FieldPlan(**base, kind=Kind.PAYLOAD)
    target = getattr(m, ann, None)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        expect("enum")
        return FieldPlan(**base, kind=Kind.ENUM, enum_cls=target, default=_default(field))
    if isinstance(target, type) and dataclasses.is_dataclass(target):
        expect("struct")
        return FieldPlan(**base, kind=Kind.STRUCT, struct_cls=target)
    raise ImportError(f"{where}: the codec cannot map type {ann!r}")


def plan_for(cls: type) -> StructPlan:
    """The (memoized) plan for a dataclass of :mod:`refrpc.core.messages`."""
    plan = PLANS.get(cls)
    if plan is None:
        wire = getattr(_module, cls.__name__)
        wire_fields = wire.schema.fields
        fields = tuple(_field_plan(cls, f, wire_fields) for f in dataclasses.fields(cls))
        plan = PLANS[cls] = StructPlan(cls=cls, wire=wire, fields=fields)
        for fp in fields:
            if fp.struct_cls is not None:
                plan_for(fp.struct_cls)
    return plan


# ---------------------------------------------------------------- envelope
ENVELOPE = _module.Envelope
ENVELOPE_FIELDS = ENVELOPE.schema.fields
BODY_FIELD = ENVELOPE_FIELDS["body"]
#: The envelope's header fields, in the order both encoder and decoder use them.
ENVELOPE_HEADER = tuple(ENVELOPE_FIELDS[n] for n in ("sender", "senderIncarnation", "receiver", "receiverIncarnation", "seq", "ack"))
#: The body union's members, in discriminant order.
BODY_MEMBERS: tuple[str, ...] = tuple(BODY_FIELD.schema.union_fields)
#: Byte offset of the body discriminant inside the Envelope's data section.
BODY_DISCRIMINANT_BYTE = 2 * BODY_FIELD.schema.node.struct.discriminantOffset

if BODY_MEMBERS != tuple(lower_camel(t.__name__) for t in m.MESSAGE_TYPES):
    raise ImportError("Envelope.body members do not match messages.MESSAGE_TYPES, in order")

for _cls in m.MESSAGE_TYPES:
    plan_for(_cls)

PAYLOAD_FIELDS = _module.Payload.schema.fields
