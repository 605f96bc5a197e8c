"""Record lists: where filters, sorting, field selection with lookups, keyset cursors."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError, FormulaError, QueryInvalid
from metacrm.metadata.values import ValueProblem, check_text
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import SHOWN_SYSTEM_FIELDS, UNSORTABLE, CompiledObject, CompiledTenant
from metacrm.runtime.permissions import (
    linked,
    lookup_filter,
    object_readable,
    path_readable,
    readable,
    record_filter,
    user_binding,
)
from metacrm.runtime.serialize import json_value, row_to_record

MAX_FIELDS_PARAM = 200


@dataclass(frozen=True)
class ListQuery:
    """The parameters of one list request, as given."""

    where: str | None = None
    order_by: str | None = None
    fields: str | None = None
    limit: int = 50
    cursor: str | None = None
    deleted: bool = False
    #: Also answer `total`: every matching record the caller may see, on all pages.
    count: bool = False
    #: With `count`, also answer `sums`: these number fields added up over the same records,
    #: in the same aggregate query (a list's totals row costs no second scan).
    sums: tuple[str, ...] = ()


def _invalid(param: str, code: str, message: str) -> QueryInvalid:
    return QueryInvalid(message, [FieldError(param, code, message)])


def written_paths(expression: str) -> list[tuple[list[str], int, int]]:
    """The field paths an expression names as written, with their line and column."""
    try:
        tree = ast.parse(f"(\n{expression}\n)", mode="eval")
    except SyntaxError:
        return []
    lines = expression.split("\n")
    found: list[tuple[list[str], int, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name | ast.Attribute):
            start, parts = node, []
            current: ast.expr = node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name) and current.id not in ("None", "True", "False"):
                line = start.lineno - 1
                text = lines[line - 1] if 0 < line <= len(lines) else ""
                column = len(text.encode()[: start.col_offset].decode(errors="ignore")) + 1
                found.append(([current.id, *reversed(parts)], line, column))
            return
        if isinstance(node, ast.Call):
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                visit(argument)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _refuse_hidden(ct: CompiledTenant, co: CompiledObject, where: str, actor: Actor) -> None:
    """A field the caller may not read is reported exactly as an unknown one would be."""
    for parts, line, column in written_paths(where):
        current = co
        for i, part in enumerate(parts):
            target = linked(ct, current, part) if i < len(parts) - 1 else None
            if target is not None and path_readable(ct, actor, current, part):
                current = target
                continue
            if part in current.fields and not path_readable(ct, actor, current, part):
                message = f"unknown field {part!r} on object {current.name!r}"
                raise FormulaError(message, line=line, column=column, field="where")
            break


def _check_texts(query: ListQuery) -> None:
    """Refuse NUL bytes and lone surrogates in parameters: the two databases differ on them."""
    for param in ("where", "order_by", "fields", "cursor"):
        value = getattr(query, param)
        if value is not None:
            try:
                check_text(value)
            except ValueProblem as problem:
                raise _invalid(param, problem.code, problem.message) from None


def _filter(
    ct: CompiledTenant, co: CompiledObject, where: str, actor: Actor
) -> sa.ColumnElement[bool]:
    """The `where` filter as SQL, its literals checked like any text written to a field.

    Every field path it names must be readable by the caller, and every lookup it
    crosses reaches only live records the caller may read: no side channel. What the
    caller may read depends on the role, and on the user only through one parameter, so
    the SQL is kept per role with a placeholder user: execute it with `user_binding`.
    """
    key = ("where", co.name, where, actor.is_admin, actor.role)
    return ct.views.get_or_build(key, lambda: _checked_filter(ct, co, where, actor))


def _checked_filter(
    ct: CompiledTenant, co: CompiledObject, where: str, actor: Actor
) -> sa.ColumnElement[bool]:
    _refuse_hidden(ct, co, where, actor)
    reachable = lookup_filter(ct, actor, bound=False)
    clause = formula.compile_filter(where, co.obj, ct.model, ct.table_for, target_filter=reachable)
    for element in sa.sql.visitors.iterate(clause):
        value = getattr(element, "value", None)
        if isinstance(element, sa.BindParameter) and isinstance(value, str):
            try:
                check_text(value)  # escapes like '\ud800' or '\x00' in a string literal
            except ValueProblem as problem:
                raise _invalid("where", problem.code, problem.message) from None
    return clause


def _sort_keys(
    co: CompiledObject, order_by: str | None, visible: set[str]
) -> list[tuple[str, bool]]:
    """(field, descending) pairs, ending with id so that the order is total."""
    keys: list[tuple[str, bool]] = []
    for part in (order_by or "").split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        name = part[1:] if part[0] in "-+" else part  # one sign: "--name" is no field
        field = co.fields.get(name)
        if not (co.has(name) and name != "deleted_at") or name not in visible:
            raise _invalid(
                "order_by",
                "unknown-field",
                f"cannot sort {co.name} by {name[:64]!r}: no such field",
            )
        if field is not None and (
            field.type in UNSORTABLE or getattr(field, "returns", "") == "json"
        ):
            raise _invalid("order_by", "unsortable", f"cannot sort by {name}, a {field.type} field")
        if name in (k for k, _ in keys):
            raise _invalid("order_by", "duplicate", f"{name} appears twice in order_by")
        keys.append((name, descending))
    if len(keys) > 5:
        raise _invalid("order_by", "too-many", "sort by at most 5 fields")
    if not any(k == "id" for k, _ in keys):
        keys.append(("id", False))
    return keys


def _selection(
    ct: CompiledTenant, co: CompiledObject, fields: str | None, actor: Actor
) -> list[sa.ColumnElement[Any]]:
    """The labelled columns of the `fields` parameter (id always included)."""
    visible = readable(ct, actor, co)
    if not fields:
        return [co.sql(n).label(n) for n in (*SHOWN_SYSTEM_FIELDS, *visible)]
    names = [n.strip() for n in fields.split(",") if n.strip()]
    if len(names) > MAX_FIELDS_PARAM:
        raise _invalid("fields", "too-many", f"ask for at most {MAX_FIELDS_PARAM} fields")
    columns: dict[str, sa.ColumnElement[Any]] = {"id": co.sql("id").label("id")}
    for name in names:
        if name in columns:
            continue
        if "." in name:
            columns[name] = _expansion(ct, co, name, actor)
        elif name in SHOWN_SYSTEM_FIELDS or name in visible:
            columns[name] = co.sql(name).label(name)
        else:
            raise _invalid("fields", "unknown-field", f"{co.name} has no field {name[:64]!r}")
    return list(columns.values())


def _expansion(
    ct: CompiledTenant, co: CompiledObject, path: str, actor: Actor
) -> sa.ColumnElement[Any]:
    """`account.name`: one lookup level, as a correlated subquery on the target.

    The target's field and record permissions apply: a record the caller may not
    see, or one in the recycle bin, expands to null.
    """
    link_name, _, target_field = path.partition(".")
    target = linked(ct, co, link_name)
    if target is None or "." in target_field:
        raise _invalid(
            "fields", "bad-path", f"{path[:64]!r} is not a lookup field followed by one field"
        )
    visible = object_readable(ct, actor, target) and path_readable(ct, actor, co, path)
    if not target.has(target_field) or target_field == "deleted_at" or not visible:
        raise _invalid(
            "fields", "unknown-field", f"{target.name} has no field {target_field[:64]!r}"
        )
    value = formula.path_sql(
        co.obj, path, ct.model, ct.table_for, target_filter=lookup_filter(ct, actor)
    )
    return sa.type_coerce(value, target.sql(target_field).type).label(path)


def _order_clause(column: sa.ColumnElement[Any], descending: bool) -> sa.ColumnElement[Any]:
    # NULL sorts as the largest value on both databases: last ascending, first descending.
    return column.desc().nulls_first() if descending else column.asc().nulls_last()


def _after(column: sa.ColumnElement[Any], value: Any, descending: bool) -> sa.ColumnElement[Any]:
    """Rows strictly after `value` in this key's order (NULL being the largest value)."""
    if value is None:
        return column.is_not(None) if descending else sa.false()
    if descending:
        before: sa.ColumnElement[Any] = column < value
        return before
    return sa.or_(column > value, column.is_(None))


def _equal(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[Any]:
    return column.is_(None) if value is None else column == value


def _keyset(
    co: CompiledObject, keys: list[tuple[str, bool]], values: list[Any]
) -> sa.ColumnElement[Any]:
    clauses = []
    for i, (name, descending) in enumerate(keys):
        prefix = [_equal(co.sql(n), values[j]) for j, (n, _) in enumerate(keys[:i])]
        clauses.append(sa.and_(*prefix, _after(co.sql(name), values[i], descending)))
    return sa.or_(*clauses)


def _query_digest(co: CompiledObject, query: ListQuery) -> str:
    """What ties a cursor to its query: a digest, so the cursor never carries the query's
    text (a `where` naming values) back to whoever holds the cursor."""
    signature = [query.where, query.order_by, query.deleted, co.name]
    return hashlib.sha256(json.dumps(signature).encode()).hexdigest()[:32]


def encode_cursor(key: bytes, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"), default=json_value).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode_cursor(key: bytes, cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mac, body = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()[:16]):
            raise ValueError("bad signature")
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise ValueError("bad payload")
        return payload
    except (ValueError, TypeError):
        raise _invalid("cursor", "bad-cursor", "the cursor is not one this server issued") from None


def _typed(co: CompiledObject, name: str, value: Any) -> Any:
    """A cursor value back in the Python type of its column."""
    if value is None:
        return None
    kind = co.sql(name).type
    try:
        python_type = kind.python_type
    except NotImplementedError:
        python_type = None
    if python_type is uuid.UUID or name in ("id", "owner_id", "created_by", "updated_by"):
        return uuid.UUID(value)
    if python_type is Decimal:
        return Decimal(value)
    if python_type is dt.datetime:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if python_type is dt.date:
        return dt.date.fromisoformat(value)
    return value


async def list_records(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    query: ListQuery,
    *,
    actor: Actor,
    cursor_key: bytes,
) -> dict[str, Any]:
    """One page of the records `actor` may see, and the next page's cursor (None at the end);
    with `query.count`, the `total` of them on every page."""
    _check_texts(query)
    access = record_filter(ct, actor, co, "read")  # first: 403 without the object permission
    keys = _sort_keys(co, query.order_by, {*SHOWN_SYSTEM_FIELDS, *readable(ct, actor, co)})
    columns = _selection(ct, co, query.fields, actor)
    if query.deleted:
        columns.append(co.sql("deleted_at").label("deleted_at"))
    # The sort keys ride along under labels no field can have, for the next cursor.
    key_columns = [co.sql(n).label(f"__k{i}") for i, (n, _) in enumerate(keys)]
    conditions = _conditions(ct, co, query, actor, access)
    statement = sa.select(*columns, *key_columns).select_from(co.table).where(*conditions)
    if query.cursor:
        payload = decode_cursor(cursor_key, query.cursor)
        if payload.get("q") != _query_digest(co, query) or len(payload.get("v", [])) != len(keys):
            raise _invalid("cursor", "bad-cursor", "the cursor belongs to a different query")
        try:
            values = [_typed(co, name, v) for (name, _), v in zip(keys, payload["v"], strict=True)]
        except (ValueError, TypeError, AttributeError):
            raise _invalid(
                "cursor", "bad-cursor", "the cursor is not one this server issued"
            ) from None
        statement = statement.where(_keyset(co, keys, values))
    statement = statement.order_by(*[_order_clause(co.sql(n), d) for n, d in keys]).limit(
        query.limit + 1
    )
    rows = (await conn.execute(statement, user_binding(actor))).mappings().all()
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        key_values = [rows[-1][f"__k{i}"] for i in range(len(keys))]
        next_cursor = encode_cursor(
            cursor_key, {"q": _query_digest(co, query), "v": [json_value(v) for v in key_values]}
        )
    records = [row_to_record({k: v for k, v in r.items() if not k.startswith("__k")}) for r in rows]
    page: dict[str, Any] = {"records": records, "next_cursor": next_cursor}
    if query.count:
        sums = [sa.func.sum(co.sql(name)).label(name) for name in _summed(ct, co, query, actor)]
        aggregate = sa.select(sa.func.count().label("__total"), *sums)
        row = (
            (
                await conn.execute(
                    aggregate.select_from(co.table).where(*conditions), user_binding(actor)
                )
            )
            .mappings()
            .one()
        )
        page["total"] = row["__total"]
        if query.sums:
            page["sums"] = {name: json_value(row[name]) for name in query.sums}
    return page


#: The kinds of value a total adds up (a sum of percentages or roll-ups means nothing).
SUMMED = ("number", "currency")


def summable(co: CompiledObject, name: str) -> bool:
    """Whether a field's values add up: a number or currency field, or a formula of one."""
    field = co.fields.get(name)
    if field is None:
        return False
    kind = field.returns if field.type == "formula" else field.type
    return kind in SUMMED


def _summed(
    ct: CompiledTenant, co: CompiledObject, query: ListQuery, actor: Actor
) -> tuple[str, ...]:
    """The fields of `query.sums`, each readable by the actor and one that adds up."""
    visible = set(readable(ct, actor, co))
    wrong = [n for n in query.sums if n not in visible or not summable(co, n)]
    if wrong:
        raise _invalid(
            "sums", "unknown-field", f"{co.name} has no field {wrong[0][:64]!r} to add up"
        )
    return query.sums


def list_conditions(
    ct: CompiledTenant, co: CompiledObject, query: ListQuery, *, actor: Actor
) -> list[sa.ColumnElement[bool]]:
    """What every record of the list `query` meets, on all its pages (live or deleted, its
    `where`, the actor's record access): for aggregates over exactly the listed records.
    Execute them with `user_binding(actor)`."""
    _check_texts(query)
    access = record_filter(ct, actor, co, "read")
    return _conditions(ct, co, query, actor, access)


def _conditions(
    ct: CompiledTenant,
    co: CompiledObject,
    query: ListQuery,
    actor: Actor,
    access: sa.ColumnElement[bool] | None,
) -> list[sa.ColumnElement[bool]]:
    """What a listed record meets, whatever the page: live or deleted, `where`, access."""
    t = co.table
    conditions: list[sa.ColumnElement[bool]] = [
        t.c.deleted_at.is_not(None) if query.deleted else t.c.deleted_at.is_(None)
    ]
    if query.where:
        conditions.append(_filter(ct, co, query.where, actor))
    if access is not None:
        conditions.append(access)
    return conditions
