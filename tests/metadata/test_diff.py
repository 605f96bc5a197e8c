"""diff(old, new) -> Plan: two models in, op types and risks out; no database."""

from __future__ import annotations

from typing import Any

import pytest

from metacrm.errors import MetadataInvalid
from metacrm.metadata.diff import diff
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import (
    AddField,
    AlterField,
    CreateObject,
    DropField,
    DropObject,
    Plan,
    UpdateObject,
)


def model(*objects: dict[str, Any]) -> MetadataModel:
    return MetadataModel.model_validate({"objects": list(objects)})


def obj(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"api_name": name, "fields": list(fields), **extra}


def text(name: str, **extra: Any) -> dict[str, Any]:
    return {"api_name": name, "type": "text", **extra}


def op_types(plan: Plan) -> list[type]:
    return [type(op) for op in plan.ops]


def one_alter(old: dict[str, Any], new: dict[str, Any]) -> AlterField:
    plan = diff(model(obj("a", old)), model(obj("a", new)))
    assert op_types(plan) == [AlterField]
    step = plan.ops[0]
    assert isinstance(step, AlterField)
    return step


def test_no_change_is_an_empty_plan() -> None:
    m = model(obj("a", text("name")), obj("b"))
    plan = diff(m, m)
    assert plan.empty and not plan.destructive
    assert plan.describe() == "(no changes)"


def test_create_object_then_changes_then_drops() -> None:
    old = model(obj("a", text("x"), text("gone")), obj("b"), obj("c"))
    new = model(
        obj("a", text("x", max_length=300), text("added"), label="A"),
        obj("c"),
        obj("d", text("name")),
    )
    plan = diff(old, new)
    assert op_types(plan) == [
        CreateObject,
        UpdateObject,
        AlterField,
        AddField,
        DropField,
        DropObject,
    ]
    assert [op.symbol for op in plan.ops] == ["+", "~", "~", "+", "-", "-"]
    assert plan.destructive
    flags = {type(op).__name__: op.destructive for op in plan.ops}
    assert flags == {
        "CreateObject": False,
        "UpdateObject": False,
        "AlterField": False,  # widening 255 -> 300
        "AddField": False,
        "DropField": True,
        "DropObject": True,
    }
    summary = plan.describe().splitlines()
    assert summary[0] == "+ object d (1 fields)"
    assert "- a.gone" in summary and "- object b" in summary
    document = plan.to_dict()
    assert document["destructive"] is True
    assert [o["op"] for o in document["ops"]] == [
        "create_object",
        "update_object",
        "alter_field",
        "add_field",
        "drop_field",
        "drop_object",
    ]
    assert document["ops"][-1]["risks"] == ["drops table b and all its records"]


def test_update_object_names_what_changed() -> None:
    plan = diff(
        model(obj("a", text("name"))),
        model(obj("a", text("name"), sharing="private", label={"en": "A", "zh-CN": "甲"})),
    )
    assert op_types(plan) == [UpdateObject]
    assert plan.ops[0].changed() == ["label", "sharing"]
    assert not plan.destructive


def test_dropping_a_computed_field_is_not_destructive_but_auto_number_is() -> None:
    formula = {"api_name": "f", "type": "formula", "returns": "number", "expression": "1"}
    number = {"api_name": "n", "type": "auto_number"}
    plan = diff(model(obj("a", formula, number)), model(obj("a")))
    assert op_types(plan) == [DropField, DropField]
    assert [op.destructive for op in plan.ops] == [False, True]


@pytest.mark.parametrize(
    ("old", "new", "risk"),
    [
        (text("x", max_length=100), text("x", max_length=50), "shrinks from 100 to 50"),
        ({"api_name": "x", "type": "long_text"}, text("x"), "becomes a short text"),
        (
            {"api_name": "x", "type": "number", "precision": 10, "scale": 4},
            {"api_name": "x", "type": "number", "precision": 10, "scale": 2},
            "loses decimals (4 -> 2)",
        ),
        (
            {"api_name": "x", "type": "number", "precision": 10, "scale": 2},
            {"api_name": "x", "type": "number", "precision": 6, "scale": 2},
            "fewer integer digits",
        ),
        (
            {"api_name": "x", "type": "currency"},
            {"api_name": "x", "type": "percent"},
            "fewer integer digits",
        ),
        (text("x"), {"api_name": "x", "type": "email"}, "may not be valid email values"),
        (
            {"api_name": "x", "type": "picklist", "values": [{"value": "a"}, {"value": "b"}]},
            {"api_name": "x", "type": "picklist", "values": [{"value": "a"}]},
            "removes values ['b']",
        ),
        (
            {"api_name": "x", "type": "multi_picklist", "values": [{"value": "a"}, {"value": "b"}]},
            {"api_name": "x", "type": "multi_picklist", "values": [{"value": "b"}]},
            "removes values ['a']",
        ),
    ],
)
def test_narrowing_is_destructive(old: dict[str, Any], new: dict[str, Any], risk: str) -> None:
    step = one_alter(old, new)
    assert step.destructive
    assert any(risk in r for r in step.risks), step.risks
    assert step.to_dict()["risks"] == list(step.risks)


def test_removed_picklist_values_are_listed() -> None:
    step = one_alter(
        {
            "api_name": "x",
            "type": "picklist",
            "values": [{"value": "a"}, {"value": "b"}, {"value": "c"}],
        },
        {"api_name": "x", "type": "picklist", "values": [{"value": "c"}, {"value": "a"}]},
    )
    assert step.removed_values == ["b"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (text("x", max_length=50), text("x", max_length=100)),
        (text("x"), {"api_name": "x", "type": "long_text"}),
        (text("x"), text("x", required=True, label="X", indexed=True)),
        (
            {"api_name": "x", "type": "number", "precision": 10, "scale": 2},
            {"api_name": "x", "type": "number", "precision": 12, "scale": 4},
        ),
        (
            {"api_name": "x", "type": "picklist", "values": [{"value": "a"}]},
            {
                "api_name": "x",
                "type": "picklist",
                "values": [{"value": "a", "active": False}, {"value": "b"}],
            },
        ),
        (
            {"api_name": "x", "type": "lookup", "target": "a"},
            {"api_name": "x", "type": "master_detail", "target": "a"},
        ),
    ],
)
def test_widening_and_cosmetic_changes_are_safe(old: dict[str, Any], new: dict[str, Any]) -> None:
    step = one_alter(old, new)
    assert not step.destructive and step.risks == ()
    assert step.changed()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (text("x"), {"api_name": "x", "type": "number"}),
        ({"api_name": "x", "type": "boolean"}, text("x")),
        ({"api_name": "x", "type": "date"}, {"api_name": "x", "type": "datetime"}),
        ({"api_name": "x", "type": "json"}, {"api_name": "x", "type": "long_text"}),
        (
            {"api_name": "x", "type": "picklist", "values": [{"value": "a"}]},
            {"api_name": "x", "type": "multi_picklist", "values": [{"value": "a"}]},
        ),
        (
            {"api_name": "x", "type": "lookup", "target": "a"},
            {"api_name": "x", "type": "lookup", "target": "b"},
        ),
        ({"api_name": "x", "type": "lookup", "target": "a"}, text("x")),
        (
            {"api_name": "x", "type": "formula", "returns": "number", "expression": "1"},
            {"api_name": "x", "type": "number"},
        ),
    ],
)
def test_refused_type_changes_say_where(old: dict[str, Any], new: dict[str, Any]) -> None:
    with pytest.raises(MetadataInvalid) as caught:
        diff(model(obj("a", old), obj("b")), model(obj("a", new), obj("b")))
    errors = caught.value.errors
    assert [(e.field, e.code) for e in errors] == [("objects/a/fields/x/type", "type-change")]


def test_every_refused_change_is_reported_at_once() -> None:
    old = model(obj("a", text("x"), text("y")), obj("b", {"api_name": "z", "type": "boolean"}))
    new = model(
        obj("a", {"api_name": "x", "type": "number"}, {"api_name": "y", "type": "date"}),
        obj("b", text("z")),
    )
    with pytest.raises(MetadataInvalid) as caught:
        diff(old, new)
    assert [e.field for e in caught.value.errors] == [
        "objects/a/fields/x/type",
        "objects/a/fields/y/type",
        "objects/b/fields/z/type",
    ]


def test_diff_is_pure_and_reversible_in_kind() -> None:
    a = model(obj("a", text("x")))
    b = model(obj("a", text("x"), text("y")), obj("c"))
    forward, backward = diff(a, b), diff(b, a)
    assert op_types(forward) == [CreateObject, AddField]
    assert op_types(backward) == [DropField, DropObject]
    assert diff(a, b) == forward  # same inputs, same plan
    assert a == model(obj("a", text("x")))  # inputs untouched
