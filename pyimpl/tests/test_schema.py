"""The schema is the field-level spec: it must compile, load, match the message
dataclasses one-to-one, match spec/messages.md, and comment every declaration."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import capnp
import pytest

from refrpc import codec
from refrpc.codec._schema import camel, lower_camel, snake
from refrpc.core import messages

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "refrpc.capnp"
MESSAGES_MD = ROOT / "spec" / "messages.md"

#: Dataclasses that are not messages but have a struct of their own.
AUX_STRUCTS = (
    messages.Value,
    messages.RefDescriptor,
    messages.Arg,
    messages.ErrorInfo,
    messages.ReturnValue,
    messages.BorrowRelease,
    messages.TableEntry,
)
ENUMS = (
    messages.Encoding,
    messages.ArgKind,
    messages.ReturnKind,
    messages.ErrorCode,
    messages.ObjectState,
    messages.ActorState,
)


def body_members() -> list[str]:
    return list(codec.schema().Envelope.schema.fields["body"].schema.union_fields)


def test_schema_compiles_with_the_reference_compiler() -> None:
    capnp_bin = shutil.which("capnp")
    if capnp_bin is None:
        pytest.skip("the capnp compiler is not on PATH (`make capnp` installs it)")
    result = subprocess.run(
        [capnp_bin, "compile", "-o-", str(SCHEMA)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout, "the compiler produced no CodeGeneratorRequest"


def test_package_schema_is_the_repository_schema() -> None:
    # The codec loads pyimpl/src/refrpc/codec/refrpc.capnp, a link to schema/.
    assert codec.SCHEMA_PATH.resolve().read_bytes() == SCHEMA.read_bytes()


def test_schema_loads_in_pycapnp() -> None:
    # Straight from schema/ with a parser of its own, as another tool would load it.
    module = capnp.SchemaParser().load(str(SCHEMA))
    assert module.Envelope.schema.node.id == codec.schema().Envelope.schema.node.id
    for name in ("Envelope", "Payload", "Portable", "PortableEntry", "TraceRecord"):
        assert hasattr(module, name), name
    trace = module.TraceRecord.new_message(peer="a", kind="header", protocolMajor=0)
    assert trace.kind == "header"


def test_body_union_is_message_types_in_order() -> None:
    # GEN-001: the discriminant is the message type, so the order is protocol.
    assert body_members() == [lower_camel(t.__name__) for t in messages.MESSAGE_TYPES]
    group = codec.schema().Envelope.schema.fields["body"].schema
    for ordinal, member in enumerate(body_members()):
        assert group.fields[member].proto.discriminantValue == ordinal


def test_each_union_member_carries_the_struct_of_its_name() -> None:
    group = codec.schema().Envelope.schema.fields["body"].schema
    module = codec.schema()
    for cls in messages.MESSAGE_TYPES:
        slot_type = group.fields[lower_camel(cls.__name__)].proto.slot.type
        assert slot_type.which() == "struct"
        assert slot_type.struct.typeId == getattr(module, cls.__name__).schema.node.id


@pytest.mark.parametrize("cls", messages.MESSAGE_TYPES + AUX_STRUCTS, ids=lambda c: c.__name__)
def test_struct_fields_match_dataclass_fields(cls: type) -> None:
    struct = getattr(codec.schema(), cls.__name__).schema
    wire = sorted(snake(name) for name in struct.fields)
    python = sorted(f.name for f in dataclasses.fields(cls))
    assert wire == python, f"schema {cls.__name__} vs messages.{cls.__name__}"
    assert sorted(struct.fields) == sorted(camel(name) for name in python)


@pytest.mark.parametrize("cls", messages.MESSAGE_TYPES + AUX_STRUCTS, ids=lambda c: c.__name__)
def test_schema_defaults_are_dataclass_defaults(cls: type) -> None:
    # A field an older peer never set must read as the dataclass default.
    struct = getattr(codec.schema(), cls.__name__).schema
    for f in dataclasses.fields(cls):
        proto = struct.fields[camel(f.name)].proto
        if proto.which() != "slot" or f.default is dataclasses.MISSING:
            continue
        value = proto.slot.defaultValue
        kind = value.which()
        if kind in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"):
            assert getattr(value, kind) == f.default, f"{cls.__name__}.{f.name}"
        elif kind == "text":
            assert f.default == "", f"{cls.__name__}.{f.name}: text defaults must be empty"
        elif kind == "enum":
            assert tuple(type(f.default))[getattr(value, kind)] == f.default


@pytest.mark.parametrize("cls", ENUMS, ids=lambda c: c.__name__)
def test_enums_match(cls: type) -> None:
    enumerants = getattr(codec.schema(), cls.__name__).schema.enumerants
    by_ordinal = sorted(enumerants, key=enumerants.__getitem__)
    assert by_ordinal == [camel(member.value) for member in cls]


def type_headings(markdown: str) -> set[str]:
    """``### SubmitTask`` (optionally backticked, optionally followed by a
    parenthetical) -> ``SubmitTask``; prose headings are not type headings."""
    pattern = r"^###\s+`?([A-Z][A-Za-z0-9]*)`?\s*(?:\(.*\))?\s*$"
    return set(re.findall(pattern, markdown, flags=re.MULTILINE))


def test_every_message_has_a_section_in_spec_messages_md_and_vice_versa() -> None:
    assert MESSAGES_MD.exists(), "spec/messages.md is missing"
    headings = type_headings(MESSAGES_MD.read_text())
    in_union = {m[:1].upper() + m[1:] for m in body_members()}
    assert sorted(in_union - headings) == [], "messages without a ### section"
    # A type heading that is not a message may only name another schema type
    # (e.g. a shared struct such as Value); never a message the schema lacks.
    schema_types = {name for name in dir(codec.schema()) if name[:1].isupper()}
    assert sorted(headings - in_union - schema_types) == [], "### sections naming no schema type"


def test_type_headings() -> None:
    text = "### SubmitTask\n### `Hello`\n### FetchChunk (19)\n### Common rules\n## Value\n"
    assert type_headings(text) == {"SubmitTask", "Hello", "FetchChunk"}


# ---------------------------------------------------------------- comments
_DECLARATION = re.compile(
    r"""^\s*(?:
        (?:struct|enum)\s+(?P<type>\w+)\s*\{          # struct Foo {  /  enum Bar {
      | (?P<group>\w+)\s*:(?:union|group)\s*\{        # name :union {
      | (?P<field>\w+)\s*@\d+\s*(?::[^;]*)?;          # name @3 :Type;  /  enumerant @3;
    )""",
    re.VERBOSE,
)


def declarations_without_comment(text: str) -> list[str]:
    lines = text.splitlines()
    missing = []
    for number, line in enumerate(lines):
        code = line.split("#", 1)[0]
        match = _DECLARATION.match(code)
        if match is None:
            continue
        name = match.group("type") or match.group("group") or match.group("field")
        if "#" in line:
            continue
        following = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if not following.startswith("#"):
            missing.append(f"line {number + 1}: {name}")
    return missing


def test_every_struct_field_and_enumerant_has_a_comment() -> None:
    assert declarations_without_comment(SCHEMA.read_text()) == []


def test_comment_check_notices_a_missing_comment() -> None:
    sample = "struct A {\n  # ok\n  x @0 :Text;\n  # ok\n  y @1 :UInt8;\n}\n"
    assert declarations_without_comment(sample) == ["line 5: y"]
