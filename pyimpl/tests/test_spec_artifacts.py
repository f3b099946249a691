"""The generated files a codec writer relies on: the compiled schema layout
(spec/schema-layout.json, .md) and the test vectors (spec/vectors/). Each must be
current (regenerating gives the same bytes) and must agree with the reference
codec."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from refrpc import codec
from refrpc.core.messages import MESSAGE_TYPES

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "spec" / "tools"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def layout_tool() -> ModuleType:
    if shutil.which("capnp") is None:
        pytest.skip("the capnp compiler is not on PATH (`make capnp` installs it)")
    return _load("schema_layout")


@pytest.fixture(scope="module")
def vectors_tool() -> ModuleType:
    return _load("make_vectors")


def test_schema_layout_is_current(layout_tool: ModuleType) -> None:
    js, md = layout_tool.render()
    assert (REPO / "spec" / "schema-layout.json").read_text(encoding="utf-8") == js, \
        "spec/schema-layout.json is stale: run make spec-index"
    assert (REPO / "spec" / "schema-layout.md").read_text(encoding="utf-8") == md, \
        "spec/schema-layout.md is stale: run make spec-index"


def test_schema_layout_agrees_with_pycapnp() -> None:
    # A second reading of the same schema, through pycapnp's own loader: every struct's
    # section sizes and every data field's offset must match the compiler's.
    layout = json.loads((REPO / "spec" / "schema-layout.json").read_text(encoding="utf-8"))
    module = codec.schema()
    checked = 0
    for s in layout["structs"]:
        if "groupOf" in s or "." in s["name"]:
            continue
        node = getattr(module, s["name"]).schema.node
        assert (node.struct.dataWordCount, node.struct.pointerCount) == (s["dataWords"], s["pointers"]), s["name"]
        fields = {f.name: f for f in node.struct.fields}
        for f in s["fields"]:
            if "offset" in f:
                assert fields[f["name"]].slot.offset == f["offset"], (s["name"], f["name"])
        checked += 1
    assert checked >= 35


def test_layout_names_every_xor_encoded_default() -> None:
    layout = json.loads((REPO / "spec" / "schema-layout.json").read_text(encoding="utf-8"))
    defaults = {(s["name"], f["name"]): f["default"] for s in layout["structs"] for f in s["fields"] if "default" in f}
    assert defaults == {
        ("RefDescriptor", "sizeHint"): -1,
        ("SubmitTask", "attempt"): 1,
        ("SubmitTask", "cpuDemand"): 10000,
        ("TaskReply", "storeFreeBytes"): -1,
        ("GetObjectStatus", "wait"): True,
        ("ObjectStatus", "size"): -1,
        ("FetchRequest", "length"): -1,
        ("FetchRequest", "chunkBytes"): 1048576,
    } | {k: v for k, v in defaults.items() if k[0] == "TraceRecord"}
    # The prose lists of them (what a codec writer reads first) name each one, and say
    # how many there are: a field added with a default must be added there too.
    wire = [k for k in defaults if k[0] != "TraceRecord"]
    words = {7: "seven", 8: "eight", 9: "nine", 10: "ten"}
    for doc in ("spec/README.md", "spec/vectors/README.md", "docs/implementers-guide.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        assert f"{words[len(wire)]} fields" in text.lower(), doc
        assert all(f"`{field}`" in text or f".{field}`" in text for _, field in wire), doc


def test_vectors_are_current(vectors_tool: ModuleType) -> None:
    files = vectors_tool.render()
    on_disk = set((REPO / "spec" / "vectors").rglob("*.json"))
    assert on_disk == set(files), "spec/vectors/ has files the generator does not make, or lacks some: run make spec-index"
    stale = [str(p.relative_to(REPO)) for p, text in files.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"stale vectors {stale}: run make spec-index"


def test_every_message_type_has_vectors_that_decode() -> None:
    names = [t.__name__ for t in MESSAGE_TYPES]
    for name in names:
        doc = json.loads((REPO / "spec" / "vectors" / "messages" / f"{name}.json").read_text(encoding="utf-8"))
        assert doc["message"] == name and doc["vectors"]
        for v in doc["vectors"]:
            env = codec.decode([bytes.fromhex(h) for h in v["frames"]])
            assert type(env.body).__name__ == name
            (member,) = v["envelope"]["body"]
            assert member == name[0].lower() + name[1:]
            assert str(env.sender_incarnation) == str(v["envelope"]["senderIncarnation"])


def test_value_vectors_decode() -> None:
    for encoding in ("portable", "raw", "pickle"):
        doc = json.loads((REPO / "spec" / "vectors" / "values" / f"{encoding}.json").read_text(encoding="utf-8"))
        assert doc["vectors"]
        for v in doc["vectors"]:
            value = codec.decode_value(bytes.fromhex(v["storedForm"]["hex"]))
            assert value.encoding.value == encoding
            assert bytes(value.data) == bytes.fromhex(v["data"])
            if encoding == "portable":
                codec.decode_portable(bytes.fromhex(v["data"]))  # reads without error


def test_the_implementers_guide_shows_real_frames() -> None:
    # Every "# <Message>, frame 0 (<n> bytes)" block of the guide decodes, with the
    # reference codec, to that message type and that many bytes, and is exactly what
    # the reference encoder writes for it: a block in an older layout (a struct with
    # fewer pointers than the schema's, which still decodes, HS-026) fails here.
    import re

    text = (REPO / "docs" / "implementers-guide.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n# (\w+), frame 0 \((\d+) bytes\)\n(.*?)```", text, re.S)
    assert {name for name, _, _ in blocks} >= {"Hello", "Welcome", "SubmitTask", "TaskReply", "Heartbeat"}
    for name, size, body in blocks:
        words = [line[:17] for line in body.splitlines() if line.strip()]
        frame = bytes.fromhex("".join(w.replace(" ", "") for w in words))
        assert len(frame) == int(size), name
        env = codec.decode([frame])
        assert type(env.body).__name__ == name
        assert bytes(codec.encode(env)[0]) == frame, f"{name}: not the current layout (spec/schema-layout.md)"
