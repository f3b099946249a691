"""The public API is a façade: nothing beneath it imports it (DESIGN 4, STYLE habits).

``refrpc.api`` may import the runtime, the store, the transport, the codec and the
core; none of those may import ``refrpc.api`` back, at module level or inside a
function (a function-level import is the same cycle, only hidden).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import refrpc

PACKAGE = Path(refrpc.__file__).parent
#: The layers beneath the API.
LOWER = ("runtime", "store", "transport", "codec", "core")


def _imports_api(path: Path) -> list[str]:
    """Every statement in ``path`` that imports refrpc.api, as 'line: text'."""
    package = path.relative_to(PACKAGE.parent).parent.as_posix().replace("/", ".")  # e.g. refrpc.runtime
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__"):
            targets = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if any(t == "refrpc.api" or t.startswith("refrpc.api.") for t in targets):
            hits.append(f"{node.lineno}: {ast.unparse(node)}")
    return hits


@pytest.mark.parametrize("layer", LOWER)
def test_no_lower_layer_imports_the_api(layer: str) -> None:
    offenders = {str(p.relative_to(PACKAGE)): hits for p in sorted((PACKAGE / layer).rglob("*.py")) if (hits := _imports_api(p))}
    assert not offenders, f"modules beneath the API import it: {offenders}"


def test_the_scan_finds_every_form_of_the_import(tmp_path: Path) -> None:
    # The checker itself must catch each way of writing the import.
    layer = PACKAGE / "runtime"
    samples = ["from .. import api", "from ..api import Ref", "import refrpc.api", "from refrpc import api",
               "def f():\n    from ..api import get", "importlib.import_module('refrpc.api')"]
    for text in samples:
        probe = layer / "_layering_probe.py"
        probe.write_text(text + "\n")
        try:
            assert _imports_api(probe), text
        finally:
            probe.unlink()
    probe = layer / "_layering_probe.py"
    probe.write_text("from ._refs import Ref\nfrom ..core import events\n")
    try:
        assert not _imports_api(probe)
    finally:
        probe.unlink()
