"""The documentation builds without a single warning and renders the whole spec.

``make docs`` treats every Sphinx warning as an error; this test does the same
build into a temporary directory, so a broken link in ``spec/*.md``, a bad
docstring in ``refrpc`` or a module autodoc cannot import fails the suite,
not only the docs job.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SPEC = REPO / "spec"


def spec_page(md: Path) -> str:
    """The built page for a spec document (README is the spec section's index)."""
    return "spec/index.html" if md.stem == "README" else f"spec/{md.stem}.html"


def page_text(page: Path) -> str:
    text = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))
    return " ".join(html.unescape(text).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    cmd = [
        sys.executable, "-m", "sphinx",
        "-W", "--keep-going",           # every warning is an error, but list them all
        "-b", "html",
        "-d", str(tmp / "doctrees"),
        str(DOCS), str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"docs build failed (exit {proc.returncode}); needs pyimpl[docs] installed.\n"
            f"$ {' '.join(cmd)}\n--- stderr ---\n{proc.stderr}\n--- stdout ---\n{proc.stdout}",
            pytrace=False,
        )
    return out


@pytest.mark.timeout(300)
def test_docs_build_without_warnings(site: Path) -> None:
    # The fixture fails the test on any warning; here, the pages every build must have.
    pages = ("index.html", "quickstart.html", "examples.html", "architecture.html", "contributing.html", "notebook.html")
    for page in (*pages, "api/refrpc.html", "api/core.html", "api/codec.html", "api/testing.html"):
        assert (site / page).is_file(), f"missing page {page}"
    # The notebook page offers the example notebook itself.
    assert list(site.glob("_downloads/*/notebook.ipynb")), "the notebook page does not offer docs/examples/notebook.ipynb"


@pytest.mark.timeout(300)
def test_every_spec_document_is_a_page(site: Path) -> None:
    documents = sorted(SPEC.glob("*.md"))
    assert (site / "spec" / "index.html").is_file(), "missing the spec section's index page"
    for md in documents:
        page = site / spec_page(md)
        assert page.is_file(), f"{md.relative_to(REPO)} has no page {spec_page(md)}"
        # The stub must really include the document: its title shows on the page.
        heading = re.search(r"^# (.+)$", md.read_text(encoding="utf-8"), re.MULTILINE)
        if heading:
            words = re.findall(r"\w+", heading.group(1))
            text = page_text(page)
            missing = [w for w in words if w not in text]
            assert not missing, f"{spec_page(md)} lacks the title of {md.name}: {missing}"
    # And every one is in the spec section's table of contents.
    index = (site / "spec" / "index.html").read_text(encoding="utf-8")
    for md in documents:
        if md.stem != "README":
            assert f'href="{md.stem}.html"' in index, f"spec/index.html does not link {md.stem}.html"
