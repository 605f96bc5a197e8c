"""The metadata model refuses bad names, reserved words and dangling references."""

from __future__ import annotations

from typing import Any

import pytest

from metacrm.checks import check_metadata
from metacrm.errors import MetadataInvalid
from metacrm.metadata.model import MetadataModel, ObjectDef, label_text
from metacrm.metadata.names import RESERVED_WORDS, SYSTEM_FIELDS, api_name_problem, check_identifier
from metacrm.metadata.schema import parse, parse_field


def _obj(name: str = "thing", *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "api_name": name,
        "fields": list(fields) or [{"api_name": "name", "type": "text"}],
    } | extra


def _problems(kind: type, document: Any) -> list[tuple[str, str]]:
    with pytest.raises(MetadataInvalid) as caught:
        parse(kind, document)
    return [(e.field, e.message) for e in caught.value.errors]


@pytest.mark.parametrize("word", ["select", "table", "order", "user", "class", "from", "null"])
def test_reserved_words_cannot_name_objects_or_fields(word: str) -> None:
    assert word in RESERVED_WORDS
    assert any("reserved word" in m for _, m in _problems(ObjectDef, _obj(word)))
    field = {"api_name": word, "type": "text"}
    assert any("reserved word" in m for _, m in _problems(ObjectDef, _obj("thing", field)))


@pytest.mark.parametrize("name", SYSTEM_FIELDS)
def test_system_field_names_cannot_be_defined(name: str) -> None:
    problems = _problems(ObjectDef, _obj("thing", {"api_name": name, "type": "text"}))
    assert problems and problems[0][0].startswith("fields/0/")
    # An object may have the name of a system field only when it is not reserved otherwise.
    assert api_name_problem(name, kind="object") in (
        None,
        f"{name!r} is a reserved word and cannot be an api_name",
    )


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Name",
        "1st",
        "_x",
        "a-b",
        "a b",
        "a" * 64,
        "naïve",
        "名字",
        "x;drop",
        "x\x00",
        "a__b",
        'x"',
        "x'--",
        "ｓelect",
        "abc\n",
        "abc\r\n",
    ],
)
def test_bad_api_names_are_refused(name: str) -> None:
    assert api_name_problem(name) is not None
    assert _problems(ObjectDef, _obj(name))
    assert _problems(ObjectDef, _obj("thing", {"api_name": name, "type": "text"}))
    if name != "a__b":  # check_identifier only checks the pattern
        with pytest.raises(ValueError):
            check_identifier(name)


def test_good_api_names_pass() -> None:
    for name in ("a", "a1", "account_name", "x" * 63):
        assert api_name_problem(name) is None
        assert check_identifier(name) == name


def test_non_string_api_names_are_refused() -> None:
    for value in (1, None, ["a"], {"a": 1}, True):
        assert api_name_problem(value) is not None
        assert _problems(ObjectDef, _obj("thing") | {"api_name": value})


def test_mc_prefix_is_reserved_for_objects_only() -> None:
    problems = _problems(ObjectDef, _obj("mc_sequences"))
    assert problems[0][0] == "api_name" and "reserved for metacrm" in problems[0][1]
    parse(ObjectDef, _obj("thing", {"api_name": "mc_code", "type": "text"}))


@pytest.mark.parametrize("name", ["sqlite_master", "sqlite_stat1", "pg_class", "pg_x"])
def test_database_table_prefixes_are_refused_for_objects(name: str) -> None:
    assert "reserves for itself" in _problems(ObjectDef, _obj(name))[0][1]
    parse(ObjectDef, _obj("thing", {"api_name": name, "type": "text"}))


def test_nul_and_lone_surrogates_anywhere_in_metadata() -> None:
    document = {
        "api_name": "thing",
        "label": {"en": "a\x00"},
        "description": "\ud800",
        "fields": [{"api_name": "j", "type": "json", "default": {"k\x00": ["\udfff"]}}],
    }
    problems = _problems(ObjectDef, document)
    assert problems == [
        ("description", "text is not valid Unicode"),
        ("fields/0/default", "text cannot contain NUL bytes"),
        ("fields/0/default/k?/0", "text is not valid Unicode"),
        ("label/en", "text cannot contain NUL bytes"),
    ]


def test_duplicate_fields_objects_and_rules_are_reported_with_paths() -> None:
    model = parse(
        MetadataModel,
        {
            "objects": [
                _obj("a", {"api_name": "x", "type": "text"}, {"api_name": "x", "type": "number"}),
                _obj("a"),
                _obj(
                    "b",
                    validation_rules=[
                        {"api_name": "r", "condition": "True", "message": "m"},
                        {"api_name": "r", "condition": "True", "message": "m"},
                    ],
                ),
            ]
        },
    )
    found = {(e.field, e.code) for e in check_metadata(model).errors}
    assert ("objects/a", "duplicate") in found
    assert ("objects/a/fields/x", "duplicate") in found
    assert ("objects/b/validation_rules/r", "duplicate") in found


def test_unknown_lookup_and_rollup_targets_are_reported() -> None:
    model = parse(
        MetadataModel,
        {
            "objects": [
                _obj(
                    "a",
                    {"api_name": "link", "type": "lookup", "target": "nowhere"},
                    {"api_name": "master", "type": "master_detail", "target": "a"},
                    {
                        "api_name": "n",
                        "type": "rollup",
                        "child_object": "ghost",
                        "child_field": "a",
                        "aggregate": "count",
                    },
                    name_field="missing",
                )
            ]
        },
    )
    found = {(e.field, e.code) for e in check_metadata(model).errors}
    assert found == {
        ("objects/a/fields/link/target", "unknown-object"),
        ("objects/a/fields/master/target", "self-master"),
        ("objects/a/fields/n/child_object", "unknown-object"),
        ("objects/a/name_field", "unknown-field"),
    }


@pytest.mark.parametrize("tag", ["EN", "english", "e", "en_US", "", "en-", "zh-CN-!", "12"])
def test_labels_with_bad_language_tags_are_refused(tag: str) -> None:
    problems = _problems(ObjectDef, _obj("thing", label={tag: "Thing"}))
    assert problems and all(path.startswith("label") for path, _ in problems)


def test_labels_translate_and_fall_back() -> None:
    obj = parse(ObjectDef, _obj("thing", label={"en": "Thing", "zh-CN": "东西"}))
    assert label_text(obj.label, "zh-CN") == "东西"
    assert label_text(obj.label, "zh") == "东西"
    assert label_text(obj.label, "fr") == "Thing"
    assert label_text(None, "en", "fallback") == "fallback"
    for bad in ("", "x" * 256, {"en": ""}, {"en": 1}, []):
        assert _problems(ObjectDef, _obj("thing", label=bad))


def test_unknown_properties_and_bad_field_options_are_refused() -> None:
    assert _problems(ObjectDef, _obj("thing", colour="red"))
    for field in (
        {"api_name": "x", "type": "text", "max_length": 0},
        {"api_name": "x", "type": "text", "bogus": 1},
        {"api_name": "x", "type": "nope"},
        {"api_name": "x"},
        {"api_name": "x", "type": "number", "precision": 4, "scale": 5},
        {"api_name": "x", "type": "number", "min": 5, "max": 1},
        {"api_name": "x", "type": "number", "default": "NaN"},
        {"api_name": "x", "type": "number", "max": "Infinity"},
        {"api_name": "x", "type": "picklist", "values": []},
        {"api_name": "x", "type": "picklist", "values": [{"value": "a"}, {"value": "a"}]},
        {"api_name": "x", "type": "picklist", "values": [{"value": "a;b"}]},
        {"api_name": "x", "type": "picklist", "values": [{"value": "a"}], "default": "b"},
        {"api_name": "x", "type": "multi_picklist", "values": [{"value": "a"}], "default": ["b"]},
        {"api_name": "x", "type": "master_detail", "target": "a", "required": False},
        {"api_name": "x", "type": "json", "unique": True},
        {
            "api_name": "x",
            "type": "rollup",
            "child_object": "c",
            "child_field": "p",
            "aggregate": "sum",
        },
        {"api_name": "x", "type": "auto_number", "format": "no-braces"},
        {"api_name": "x", "type": "lookup", "target": "Bad Name"},
    ):
        with pytest.raises(MetadataInvalid):
            parse_field(field)


def test_limits_on_fields_and_objects() -> None:
    fields = [{"api_name": f"f{i}", "type": "text"} for i in range(801)]
    assert _problems(ObjectDef, {"api_name": "big", "fields": fields})
    objects = [{"api_name": f"o{i}"} for i in range(2001)]
    assert _problems(MetadataModel, {"objects": objects})


def test_constant_defaults_must_be_valid_values() -> None:
    model = parse(
        MetadataModel,
        {
            "objects": [
                _obj(
                    "a",
                    {"api_name": "n", "type": "number", "precision": 4, "default": "12345"},
                    {"api_name": "t", "type": "text", "max_length": 2, "default": "abc"},
                    {"api_name": "e", "type": "email", "default": "nope"},
                    {"api_name": "ok", "type": "currency", "default": "1.5"},
                )
            ]
        },
    )
    found = [(e.field, e.code) for e in check_metadata(model).errors]
    assert found == [
        ("objects/a/fields/n/default", "bad-default"),
        ("objects/a/fields/t/default", "bad-default"),
        ("objects/a/fields/e/default", "bad-default"),
    ]
