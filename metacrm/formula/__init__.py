"""The expression language: parse, type-check, evaluate in Python, compile to SQL."""

from __future__ import annotations

from metacrm.formula.checker import CheckedExpr, check, check_field
from metacrm.formula.evaluator import evaluate
from metacrm.formula.functions import REGISTRY
from metacrm.formula.to_sql import TargetFilter, compile_filter, field_sql, path_sql, to_sql
from metacrm.formula.types import CONTEXTS

__all__ = [
    "CONTEXTS",
    "REGISTRY",
    "CheckedExpr",
    "TargetFilter",
    "check",
    "check_field",
    "compile_filter",
    "evaluate",
    "field_sql",
    "path_sql",
    "to_sql",
]
