"""`make demo` works: the three applications agree with their pass-by-value runs."""

from __future__ import annotations

import io

import pytest


@pytest.mark.timeout(300)
def test_demo_applications_agree_with_pass_by_value() -> None:
    from refrpc.examples import demo

    out = io.StringIO()
    assert demo.main(out) == 0, out.getvalue()
    text = out.getvalue()
    assert text.count("(same)") == 3, text
    assert "DIFFERENT" not in text


def test_simulated_demo_runs_and_ends_with_empty_tables() -> None:
    from refrpc.testing import demo

    out = io.StringIO()
    assert demo.main(out) == 0
    text = out.getvalue()
    assert "RegisterBorrower" in text and "0 owned, 0 borrowed, 0 stored" in text
