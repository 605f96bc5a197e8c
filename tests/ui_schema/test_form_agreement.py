"""Property: the form's JSON Schema and the API accept exactly the same new records.

For generated objects (fields of every stored, self-contained type, with required,
defaults, limits and field rules whose `when` the schema can carry) and generated
payloads, `GET /api/v1/ui/{object}/form` validated with jsonschema (draft 2020-12, with
format assertion) and `POST /api/v1/data/{object}` must agree on every payload. The
payload is validated as JSON Forms submits it: absent properties filled from their
`default` (`useDefaults`), which is what the schema describes.

Kept out of the generated domain, because the two legitimately differ there:

- unique fields and lookups: whether a value is free, or a target record exists and is
  visible, depends on the database, not on the payload;
- formula, roll-up and auto-number fields: `readOnly` is an annotation JSON Schema
  validators do not assert, while the API refuses writes of computed fields;
- `default_expression`: a formula the API evaluates; the schema has no value for it;
- e-mail addresses and URLs other than clearly valid or clearly malformed ones: the API
  checks them with email-validator and urlsplit, which no JSON Schema pattern mirrors;
- numbers with more decimals than the field's scale, and numbers written as text in
  fields with `min`/`max` or that a field rule reads or governs: the API rounds to the
  scale and reads numeric text before checking; JSON Schema compares numbers only, and
  only as sent;
- date-times in the years 1 and 9999: both read the same RFC 3339 shape
  (`YYYY-MM-DD`, `T`/`t`/space, `hh:mm[:ss[.ffffff]]`, `Z` or `±hh:mm`), but the API
  stores UTC, and converting an offset there may leave the range of dates;
- rules whose `when` the schema cannot carry (lookup paths, functions, arithmetic,
  dates): the form lists them with `"condition": null` and leaves them to the server;
- layouts and roles: the form is fetched and the record written by one administrator
  under the generated layout.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from metacrm.metadata.model import FIELD_TYPES, REFERENCE_TYPES
from tests.conftest import TenantClient

pytestmark = pytest.mark.slow

EXAMPLES = 30
_names = itertools.count()
FieldDoc = dict[str, Any]

#: Stored, self-contained field types (the docstring says why the others are left out).
KINDS = [t for t in FIELD_TYPES if t not in (*REFERENCE_TYPES, "auto_number", "formula", "rollup")]
# Fields a rule's `when` may read, by the shapes the schema carries.
CONDITION_KINDS = ("text", "picklist", "boolean", "number", "currency", "percent")
NUMERIC = ("number", "currency", "percent")
WORDS = ["", " ", "a", "b", "ab", "é x", "partner", "long text here"]
WRONG = [7, 2.5, True, ["a"], {"a": 1}]


@st.composite
def field_docs(draw: st.DrawFn, index: int) -> FieldDoc:
    kind = draw(st.sampled_from(KINDS))
    field: FieldDoc = {"api_name": f"f{index}", "type": kind}
    if kind != "json" and draw(st.booleans()):
        field["required"] = draw(st.booleans())
    if kind in ("text", "long_text", "email", "phone", "url"):
        lengths = [2, 8, 40] if kind in ("text", "long_text") else [10, 40]
        field["max_length"] = draw(st.sampled_from(lengths))
        if kind == "text" and draw(st.booleans()):
            field["default"] = draw(st.sampled_from(["a", "ab"]))
    elif kind in NUMERIC:
        precision, scale = draw(st.sampled_from([(4, 0), (6, 2), (5, 1)]))
        field |= {"precision": precision, "scale": scale}
        if draw(st.booleans()):
            field["min"] = draw(st.sampled_from([-5, 0, 1]))
        if draw(st.booleans()):
            field["max"] = draw(st.sampled_from([5, 50]))
        if draw(st.booleans()):
            low, high = field.get("min", -5), field.get("max", 50)
            field["default"] = draw(st.integers(max(low, -5), min(high, 5)))
    elif kind == "boolean" and draw(st.booleans()):
        field["default"] = draw(st.booleans())
    elif kind == "date" and draw(st.booleans()):
        field["default"] = "2027-01-31"
    elif kind in ("picklist", "multi_picklist"):
        field["values"] = [{"value": "a"}, {"value": "b"}, {"value": "c", "active": False}]
        if kind == "picklist" and draw(st.booleans()):
            field["default"] = draw(st.sampled_from(["a", "b"]))
    return field


def _literal(field: FieldDoc, draw: st.DrawFn) -> str:
    kind = field["type"]
    if kind in NUMERIC:
        return repr(draw(st.sampled_from([0, 1, 3, -2, 2.5, 10])))
    if kind == "boolean":
        return draw(st.sampled_from(["True", "False"]))
    if kind == "picklist":
        return repr(draw(st.sampled_from(["a", "b", "c"])))
    return repr(draw(st.sampled_from(["a", "ab", "partner", ""])))


@st.composite
def atoms(draw: st.DrawFn, fields: list[FieldDoc]) -> str:
    field = draw(st.sampled_from(fields))
    name, kind = field["api_name"], field["type"]
    shapes = ["{f} is None", "{f} is not None", "ISBLANK({f})", "ISNULL({f})", "not ISNULL({f})"]
    if kind == "boolean":
        shapes += ["{f}", "not {f}", "{f} == {v}"]
    elif kind in NUMERIC:
        shapes += ["{f} > {v}", "{f} >= {v}", "{f} < {v}", "{f} <= {v}", "{v} < {f}"]
    else:
        shapes += ["{f} == {v}", "{f} != {v}", "{f} in ({v}, {w})", "{f} not in ({v}, {w})"]
    shape = draw(st.sampled_from(shapes))
    return shape.format(f=name, v=_literal(field, draw), w=_literal(field, draw))


@st.composite
def conditions(draw: st.DrawFn, fields: list[FieldDoc]) -> str:
    first = draw(atoms(fields))
    form = draw(
        st.sampled_from(["{a}", "{a} and {b}", "{a} or {b}", "not ({a})", "not ({a} or {b})"])
    )
    return form.format(a=first, b=draw(atoms(fields)))


@st.composite
def objects(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 5))
    fields = [draw(field_docs(i)) for i in range(count)]
    readable = [f for f in fields if f["type"] in CONDITION_KINDS]
    rules = []
    for index in range(draw(st.integers(0, 3)) if readable else 0):
        target = draw(st.sampled_from(fields))
        effects = ["required", "hidden", "read_only"]
        if target["type"] in ("picklist", "multi_picklist"):
            effects.append("allowed_values")
        rule: dict[str, Any] = {
            "api_name": f"r{index}",
            "when": draw(conditions(readable)),
            "fields": [target["api_name"]],
            "effect": draw(st.sampled_from(effects)),
        }
        if rule["effect"] == "allowed_values":
            rule["values"] = draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, unique=True))
        rules.append(rule)
    name = f"agree_{next(_names)}"
    return {"api_name": name, "fields": fields, "field_rules": rules}


def _ruled(obj: dict[str, Any]) -> set[str]:
    """Fields a rule reads or governs."""
    names = {f["api_name"] for f in obj["fields"]}
    found: set[str] = set()
    for rule in obj["field_rules"]:
        found |= set(rule["fields"])
        found |= {n for n in names if n in rule["when"]}
    return found


OFFSETS = st.sampled_from(["", "Z", "+08:00", "-23:59", "+00:00"])


def _datetime_text(moment: dt.datetime, separator: str, offset: str) -> str:
    """An RFC 3339 style date-time, to the second or with a fraction."""
    text = moment.isoformat(sep=separator, timespec="seconds")
    if moment.microsecond % 3 == 0:
        text = moment.isoformat(sep=separator, timespec="microseconds")[:-3]
    return text + offset


def values(field: FieldDoc, *, ruled: bool) -> st.SearchStrategy[Any]:
    """Values of every kind a client may send for `field`: good, bad and wrong-typed."""
    kind = field["type"]
    wrong = st.sampled_from(WRONG)
    if kind in ("text", "long_text"):
        return st.one_of(st.sampled_from(WORDS), st.text("ab é", max_size=10), wrong)
    if kind in NUMERIC:
        digits, scale = field["precision"] - field["scale"], field["scale"]
        bound = 10**digits
        numbers = st.one_of(
            st.integers(-bound - 1, bound + 1),
            st.decimals(-bound, bound, places=scale, allow_nan=False).map(float),
            st.sampled_from([-5, 0, 5, 50, 51, bound - 1, -bound + 1]),
        )
        texts = st.sampled_from(["12", " 7 ", "1.5", "-3", "1e3", "abc", "", "+2", ".5"])
        bounded = "min" in field or "max" in field
        return st.one_of(numbers, wrong) if ruled or bounded else st.one_of(numbers, texts, wrong)
    if kind == "boolean":
        return st.sampled_from([True, False, "true", 0, 1])
    if kind == "date":
        return st.one_of(
            st.dates(dt.date(1, 1, 1)).map(lambda d: d.isoformat()),
            st.sampled_from(["2027-02-30", "2027-1-1", "2027-01-01T00:00:00", 20270101]),
        )
    if kind == "datetime":
        moments = st.datetimes(dt.datetime(2, 1, 1), dt.datetime(9998, 12, 31))
        return st.one_of(
            st.builds(_datetime_text, moments, st.sampled_from(["T", "t", " "]), OFFSETS),
            st.sampled_from(
                [
                    "2027-03-01t09:30:00z",
                    "2027-03-01T25:00:00Z",
                    "2027-13-01T00:00:00Z",
                    "2027-02-30T10:00:00Z",
                    "2027-03-01T09:60:00Z",
                    "2027-03-01T09:30:00+24:00",
                    "yesterday",
                    5,
                ]
            ),
        )
    if kind == "email":
        return st.sampled_from(["ada@example.com", "Ada@Example.COM", "no-at-sign", "", 42])
    if kind == "phone":
        return st.sampled_from(["+1 415 555", "(55) 12-3", "12", "abc", "", "1234567890123"])
    if kind == "url":
        return st.sampled_from(["https://ex.io/a", "http://x.y", "ftp://x.y", "ex.io", "", 3])
    if kind == "picklist":
        return st.sampled_from(["a", "b", "c", "z", "", 1, ["a"]])
    if kind == "multi_picklist":
        return st.one_of(
            st.lists(st.sampled_from(["a", "b", "c", "z"]), max_size=3),
            st.sampled_from(["a", [1], [[]]]),
        )
    return st.one_of(st.none(), st.sampled_from([{"a": [1, "x"]}, [1, 2], "s", 3, False]))


@st.composite
def payloads(draw: st.DrawFn, obj: dict[str, Any]) -> dict[str, Any]:
    ruled = _ruled(obj)
    payload: dict[str, Any] = {}
    for field in obj["fields"]:
        choice = draw(st.sampled_from(["absent", "null", "value", "value"]))
        if choice == "null":
            payload[field["api_name"]] = None
        elif choice == "value":
            payload[field["api_name"]] = draw(values(field, ruled=field["api_name"] in ruled))
    if draw(st.integers(0, 9)) == 0:
        payload[draw(st.sampled_from(["ghost", "id", "owner_id"]))] = "x"
    return payload


def _with_defaults(schema: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """What JSON Forms submits: absent properties filled from their `default`."""
    filled = {
        name: prop["default"]
        for name, prop in schema["properties"].items()
        if "default" in prop and name not in payload
    }
    return filled | payload


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_form_schema_and_api_accept_the_same_records(
    tenant: TenantClient, data: st.DataObject
) -> None:
    obj = data.draw(objects(), label="object")
    created = await tenant.post("/api/v1/metadata/objects", json=obj)
    assert created.status_code == 201, created.text
    form = await tenant.get(f"/api/v1/ui/{obj['api_name']}/form")
    assert form.status_code == 200, form.text
    schema = form.json()["schema"]
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    for payload in data.draw(st.lists(payloads(obj), min_size=1, max_size=6), label="payloads"):
        problems = [e.message for e in validator.iter_errors(_with_defaults(schema, payload))]
        response = await tenant.post(f"/api/v1/data/{obj['api_name']}", json=payload)
        assert response.status_code in (201, 422), response.text
        accepted = response.status_code == 201
        assert accepted == (not problems), json.dumps(
            {"payload": payload, "schema_problems": problems, "api": response.json()},
            ensure_ascii=False,
            default=str,
        )
