"""Rules for api_names: the identifiers that become table and column names."""

from __future__ import annotations

import keyword
import re

API_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_API_NAME_RE = re.compile(API_NAME_PATTERN)

#: Columns every object table has; analysts can neither define nor write them.
SYSTEM_FIELDS: tuple[str, ...] = (
    "id",
    "owner_id",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "version",
    "deleted_at",
)

#: Prefix of the tables metacrm keeps inside each tenant for itself.
INTERNAL_PREFIX = "mc_"
#: Table-name prefixes a database keeps for itself (SQLite refuses to create them).
DATABASE_PREFIXES = ("sqlite_", "pg_")

# Reserved in SQL (PostgreSQL's reserved key words and SQLite's keywords) or in the
# expression language (Python keywords), so never usable as a table or column name.
_SQL_RESERVED = """
abort action add after all alter always analyse analyze and any array as asc assertion
asymmetric attach authorization autoincrement before begin between binary both by cascade
case cast check collate collation column commit concurrently conflict constraint create cross
current current_catalog current_date current_role current_schema current_time
current_timestamp current_user database default deferrable deferred delete desc detach
distinct do drop each else end escape except exclude exclusive exists explain fail fetch
filter first following for foreign freeze from full generated glob grant group groups having
if ignore ilike immediate in index indexed initially inner insert instead intersect into is
isnull join key last lateral leading left like limit localtime localtimestamp match
materialized natural no not nothing notnull null nulls of offset on only or order others
outer over overlaps partition placing plan pragma preceding primary query raise range
recursive references regexp reindex release rename replace restrict returning right rollback
row rows savepoint select session_user set similar some symmetric system_user table temp
temporary then ties to trailing transaction trigger unbounded union unique update user using
vacuum values variadic verbose view virtual when where window with without
"""
RESERVED_WORDS: frozenset[str] = frozenset(
    set(_SQL_RESERVED.split())
    | {k.lower() for k in keyword.kwlist}
    | {k.lower() for k in keyword.softkwlist}
    | {"oid", "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "rowid", "oid_", "_rowid_"}
)


def api_name_problem(name: object, *, kind: str = "field") -> str | None:
    """Return why `name` cannot be an api_name of this kind, or None when it can."""
    if not isinstance(name, str) or not _API_NAME_RE.fullmatch(name):
        return (
            f"{name!r} is not a valid api_name: use 1 to 63 lower-case letters, digits "
            "and underscores, starting with a letter"
        )
    if name in RESERVED_WORDS:
        return f"{name!r} is a reserved word and cannot be an api_name"
    if "__" in name:
        return f"{name!r} contains a double underscore, which is reserved"
    if kind == "field" and name in SYSTEM_FIELDS:
        return f"{name!r} is a system field and cannot be defined"
    if kind == "object" and name.startswith(INTERNAL_PREFIX):
        return f"{name!r} starts with {INTERNAL_PREFIX!r}, which is reserved for metacrm"
    if kind == "object" and name.startswith(DATABASE_PREFIXES):
        return f"{name!r} starts with a prefix the database reserves for itself"
    return None


def check_identifier(name: str) -> str:
    """Return `name` if it is safe to use as a SQL identifier, else raise ValueError.

    The last gate before an identifier from metadata reaches SQL.
    """
    # fullmatch: with re.match, `$` would also accept a trailing newline.
    if not isinstance(name, str) or not _API_NAME_RE.fullmatch(name):
        raise ValueError(f"unsafe SQL identifier {name!r}")
    return name
