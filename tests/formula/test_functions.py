"""Every function's documented example, in Python, SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from metacrm.formula import REGISTRY
from tests.formula.support import DB, RECORD, py_value

PRIOR = {**RECORD, "stage": "open"}


def context_of(name: str) -> str:
    return "validation" if REGISTRY[name].category == "validation" else "formula"


def same(got: Any, want: Any) -> bool:
    if isinstance(want, Decimal) and isinstance(got, Decimal):
        return abs(got - want) <= Decimal("1e-9") * max(1, abs(want))
    return got == want


def expected(name: str) -> Any:
    fn = REGISTRY[name]
    return True if fn.result is None else fn.result  # TODAY/NOW examples are comparisons


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_example_in_python(name: str) -> None:
    fn = REGISTRY[name]
    got = py_value(fn.example, RECORD, context=context_of(name), prior=PRIOR)
    assert same(got, expected(name)), (fn.example, got)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_example_in_sql(db: DB, name: str) -> None:
    fn = REGISTRY[name]
    got = db.value(fn.example, RECORD, context=context_of(name), prior=PRIOR)
    assert same(got, expected(name)), (fn.example, got)


def test_at_least_60_functions() -> None:
    assert len(REGISTRY) >= 60
