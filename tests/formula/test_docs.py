"""docs/formulas.md is exactly what the registry generates."""

from __future__ import annotations

from pathlib import Path

from metacrm.formula import REGISTRY
from metacrm.formula.docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "formulas.md"


def test_committed_docs_match_the_registry() -> None:
    assert DOCS.read_text(encoding="utf-8") == render(), (
        "regenerate with: python -m metacrm.formula.docs > docs/formulas.md"
    )


def test_every_function_is_documented() -> None:
    text = render()
    for name, fn in REGISTRY.items():
        assert f"`{fn.signature}`" in text, name
        assert fn.doc and fn.example
