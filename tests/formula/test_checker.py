"""Checking at save time: types, paths, contexts, cycles, positions and hostile input."""

from __future__ import annotations

import pytest

from metacrm.checks import check_metadata
from metacrm.errors import FormulaError
from metacrm.formula import CONTEXTS, check
from metacrm.metadata.model import MetadataModel
from tests.formula.support import MODEL, obj


def fails(expression: str, context: str = "formula", name: str = "opportunity") -> FormulaError:
    # Refused while checking, before anything is evaluated: no timing is asserted (the
    # machine is shared), the refusal itself is what keeps hostile formulas cheap.
    with pytest.raises(FormulaError) as info:
        check(expression, obj(name), MODEL, context=context)
    return info.value


def test_types_paths_and_fields() -> None:
    checked = check("amount * 2 + account.employees", obj(), MODEL, context="formula")
    assert checked.type == "number"
    assert checked.paths == {"amount", "account.employees"}
    assert checked.fields == {"amount", "account"}
    assert check("amount + amount", obj(), MODEL, context="formula").type == "currency"
    assert check("name + 'x'", obj(), MODEL, context="formula").type == "text"
    assert check("close_date + 1", obj(), MODEL, context="formula").type == "date"
    assert check("TODAY() - close_date", obj(), MODEL, context="formula").type == "number"
    assert check("stage", obj(), MODEL, context="formula").type == "picklist"
    assert check("account", obj(), MODEL, context="formula").type == "id"
    assert check("None", obj(), MODEL, context="formula").type == "null"


def test_formula_fields_are_inlined_with_their_paths() -> None:
    checked = check("doubled", obj(), MODEL, context="formula")
    assert checked.paths == {"amount", "probability"}
    assert checked.fields == {"doubled", "expected_revenue", "amount", "probability"}
    across = check("account.parent.label", obj(), MODEL, context="formula")
    assert across.paths == {"account.parent.name", "account.parent.region"}


def test_rollups_are_paths_to_load() -> None:
    checked = check("account.total_amount > 10", obj(), MODEL, context="filter")
    assert checked.paths == {"account.total_amount"}


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("amount +", "syntax error", None),
        ("amont > 1", "unknown field 'amont' on object 'opportunity'", 1),
        ("1 + account.nope", "unknown field 'nope' on object 'account'", 5),
        ("amount.x", "'amount' is not a lookup field", 1),
        ("LEFT(amount, 2)", "LEFT argument 1 (text) must be a text, not currency", 6),
        ("LEFT('a')", "LEFT takes 2 arguments, not 1", 1),
        ("LEFT('a', 1, 2)", "LEFT takes 2 arguments, not 3", 1),
        ("FOO(1)", "unknown function 'FOO'", 1),
        ("name * 2", "cannot apply '*' to text and number", 1),
        ("'a' * 10 ** 9", "cannot apply '*' to text and number", 1),
        ("amount > 'x'", "cannot compare currency with text", 1),
        ("is_private < True", "boolean values can only be compared with == and !=", 1),
        ("tags == 'vip'", "multi-picklists can only be compared with None", 1),
        ("ROUND(amount, probability)", "ROUND digits must be an integer literal", 15),
        ("ISPICKVAL(stage, 'nope')", "'nope' is not a value of picklist 'stage'", 18),
        ("INCLUDES(tags, name)", "INCLUDES value must be a text literal", 16),
        ("IF(amount, 1, 2)", "IF argument 1 (condition) must be a boolean", 4),
        ("IF(amount > 1, 1, 'x')", "IF branches mix types", 1),
        ("data", "json fields like 'data' cannot be used", 1),
        ("DATE(2023, 2, 30)", "is not a valid date", 1),
        ("DATEVALUE(name)", "DATEVALUE of text needs a literal", 1),
        ("amount in ()", "'in' needs at least one value", 11),
        ("amount in (1, name)", "'in' lists may hold only literal values", 15),
        ("stage in ('won', 2)", "cannot compare picklist with number", 18),
        ("amount // 2", "'//' is not supported: use FLOOR(a / b)", 1),
        ("amount % 2", "'%' is not supported: use MOD(a, b)", 1),
        ("TODAY", "TODAY is a function: call it as TODAY()", 1),
        ("REGEX(name, '(a+)+')", "cannot repeat a group that contains a repetition", 13),
        ("REGEX(name, '(a|a)*')", "cannot repeat a group that contains a repetition", 13),
        ("REGEX(name, 'a?a?a?a?aaaa')", "at most 3 variable repetitions", 13),
        ("REGEX(name, '\\\\1')", "REGEX patterns allow only", 13),
        ("account == 'not-a-uuid'", "'not-a-uuid' is not a record id", 1),
    ],
)
def test_errors_name_the_problem_and_position(expression: str, message: str, column: int) -> None:
    error = fails(expression)
    assert message in error.detail
    if column is not None:
        assert error.column == column, error.detail
    assert error.line == 1
    assert error.errors[0].field == "expression"


def test_positions_on_later_lines_count_characters() -> None:
    error = fails("name +\n  'é' + nope")
    assert (error.line, error.column) == (2, 9)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "exponent of '**' must be an integer literal from 0 to 64"),
        ("2**3999999//3**1000000", "'//' is not supported"),
        ("amount ** 65", "from 0 to 64"),
        ("POWER(amount, 1000)", "POWER exponent must be an integer literal from 0 to 64"),
        ("REPT('a', 1000)", "REPT times must be an integer literal from 0 to 100"),
        ("'a' * 10**9", "cannot apply '*'"),
        ("(" * 60 + "1" + ")" * 60, "nested more than 50 levels"),
        ("-" * 200 + "1", "nested more than 50 levels"),
        ("not " * 100 + "True", "nested more than 50 levels"),
        ("1" + "+1" * 2100, "longer than 4000 characters"),
        ("1" + "+1" * 1500, "nested more than 50 levels"),
        ("().__class__", "only field paths"),
        ("name.__class__", "names starting with '_' are not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("__builtins__", "names starting with '_' are not allowed"),
        ("(lambda: 1)()", "only functions of the language can be called"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in 'ab']", "comprehensions are not allowed"),
        ("(x := 1)", "assignment (:=) is not allowed"),
        ("f'{name}'", "f-strings are not allowed"),
        ("name[0]", "indexing and slicing are not allowed"),
        ("open('x')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("LEFT(*name)", "'*' is not allowed"),
        ("LEFT(name, n=1)", "takes no keyword arguments"),
        ("1" * 40, "limited to 30 digits"),
        ("1e999", "limited to 30 digits"),
        ("0x" + "f" * 40, "limited to 30 digits"),
        ("'" + "a" * 1001 + "'", "text literals are limited to 1000 characters"),
        ("b'x'", "bytes literals are not allowed"),
        ("1j", "complex literals are not allowed"),
        ("{1: 2}", "dictionaries are not allowed"),
        ("1 if True else 2", "use IF(c, a, b)"),
        ("~amount", "'~' is not supported"),
        ("amount & 1", "bitwise operators are not supported"),
        ("a) + (b", "unmatched ')'"),
        ("", "the expression is empty"),
        ("1\x00", "NUL character"),
    ],
)
def test_hostile_input_is_refused_quickly(expression: str, message: str) -> None:
    assert message in fails(expression).detail


def test_contexts() -> None:
    assert CONTEXTS == ("formula", "default", "validation", "filter", "rollup_filter")
    for context in ("formula", "default", "filter", "rollup_filter"):
        assert "only allowed in validation" in fails("ISCHANGED(stage)", context).detail
        assert "only allowed in validation" in fails("ISNEW()", context).detail
    assert check("ISNEW() or ISCHANGED(amount)", obj(), MODEL, context="validation")
    assert (
        "PRIORVALUE needs a field of the record"
        in fails("PRIORVALUE(account.name)", "validation").detail
    )
    assert "must be a condition" in fails("amount", "filter").detail
    assert "must be a condition" in fails("amount", "validation").detail
    assert "cannot be used in a default" in fails("total_amount", "default", "account").detail
    with pytest.raises(ValueError, match="unknown context"):
        check("1", obj(), MODEL, context="x")


def test_cycles_between_formula_fields() -> None:
    model = MetadataModel.model_validate(
        {
            "objects": [
                {
                    "api_name": "thing",
                    "fields": [
                        {"api_name": "n", "type": "number"},
                        {
                            "api_name": "a",
                            "type": "formula",
                            "returns": "number",
                            "expression": "b + 1",
                        },
                        {
                            "api_name": "b",
                            "type": "formula",
                            "returns": "number",
                            "expression": "n + a",
                        },
                        {
                            "api_name": "c",
                            "type": "formula",
                            "returns": "number",
                            "expression": "a",
                        },
                        {"api_name": "d", "type": "formula", "returns": "text", "expression": "n"},
                    ],
                    "validation_rules": [
                        {"api_name": "r", "condition": "n +", "message": "m"},
                    ],
                }
            ]
        }
    )
    errors = {e.field: e.message for e in check_metadata(model).errors}
    assert "thing.a -> thing.b -> thing.a" in errors["objects/thing/fields/a/expression"]
    assert "cycle" in errors["objects/thing/fields/b/expression"]
    assert "cycle" in errors["objects/thing/fields/c/expression"]
    assert "gives number, but the field holds text" in errors["objects/thing/fields/d/expression"]
    assert "syntax error" in errors["objects/thing/validation_rules/r/condition"]
    with pytest.raises(FormulaError, match="cycle"):
        check("c", model.object("thing"), model, context="formula")


def test_the_sample_model_checks_clean() -> None:
    assert check_metadata(MODEL).errors == ()


def test_rollups_and_defaults_are_checked() -> None:
    model = MetadataModel.model_validate(
        {
            "objects": [
                {
                    "api_name": "parent_obj",
                    "fields": [
                        {"api_name": "n", "type": "number", "default_expression": "'x'"},
                        {"api_name": "d", "type": "date", "default_expression": "TODAY() + 7"},
                        {
                            "api_name": "r1",
                            "type": "rollup",
                            "child_object": "child_obj",
                            "child_field": "up",
                            "aggregate": "sum",
                            "field": "label",
                        },
                        {
                            "api_name": "r2",
                            "type": "rollup",
                            "child_object": "child_obj",
                            "child_field": "up",
                            "aggregate": "count",
                            "filter": "nope == 1",
                        },
                        {
                            "api_name": "r3",
                            "type": "rollup",
                            "child_object": "missing",
                            "child_field": "up",
                            "aggregate": "count",
                        },
                    ],
                },
                {
                    "api_name": "child_obj",
                    "fields": [
                        {"api_name": "up", "type": "master_detail", "target": "parent_obj"},
                        {"api_name": "label", "type": "text"},
                    ],
                },
            ]
        }
    )
    errors = {e.field: e.message for e in check_metadata(model).errors}
    assert "gives text" in errors["objects/parent_obj/fields/n/default_expression"]
    assert "objects/parent_obj/fields/d/default_expression" not in errors
    assert "cannot sum a text field" in errors["objects/parent_obj/fields/r1/field"]
    assert "unknown field 'nope'" in errors["objects/parent_obj/fields/r2/filter"]
    assert "'missing' does not exist" in errors["objects/parent_obj/fields/r3/child_object"]
