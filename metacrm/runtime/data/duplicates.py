"""Duplicate rules at run time: match keys, finding a record's duplicates, the write hook, scans.

Each active rule files every live record of its object under a few blocking keys (the
first criterion's normalised value, and for similarity methods its ends or initials:
`normalize.block_keys`) in `mc_match_key`, with the normalised values of all its
criteria. The `DUPLICATES` write hook keeps those keys current (its `after` step, on
create, update of a compared field, delete and restore), and on create and on update of
a compared field looks the written values up: the candidates are the records sharing a
key, scored criterion by criterion with rapidfuzz; a record matches a rule when every
criterion reaches its threshold (its score is the lowest of them).

What a match does is the rule's action: `block` refuses the write (code "duplicate"),
`warn` refuses it (code "duplicate-warning") unless `Intent.allow_duplicates` says to
save anyway, `report` lets it through; saved matches of report rules and of warnings
saved anyway are recorded in `mc_duplicate_pair`. A merge's writes (origin MERGE) are
not checked: a merge resolves duplicates. The message names the matching record only
when the writer may read it.

`scan` (the "duplicates.scan" job) rebuilds an object's keys and groups its existing
duplicates: one block (records sharing a key) at a time, read in key order, so memory
follows the largest block and the matches, never the table; matched pairs are joined
into groups (union-find) stored in `mc_duplicate_group` / `mc_duplicate_member`,
replacing the object's previous groups. Adding or changing a rule enqueues a key
rebuild ("duplicates.rebuild", `arm_rules`); until it ran, records saved before the
rule existed are not found as duplicates.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, PermissionDenied
from metacrm.metadata.duplicates import SIMILARITY_METHODS, DuplicateRule
from metacrm.metadata.model import MetadataModel, label_text
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.normalize import block_keys, normalize, similarity
from metacrm.runtime.hooks import Origin, Write
from metacrm.runtime.jobs import enqueue
from metacrm.runtime.permissions import record_filter
from metacrm.runtime.records import new_id, utcnow
from metacrm.types import UTCDateTime

#: Blocking keys: a record of `object` filed under `key` for `rule`, with the normalised
#: values of the rule's criteria (`norms`, packed by `pack`), so that a block is scored
#: without reading the records.
match_keys = sa.Table(
    "mc_match_key",
    tenant_metadata,
    sa.Column("object", sa.String(63), primary_key=True),
    sa.Column("rule", sa.String(63), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("record_id", sa.Uuid(), primary_key=True),
    sa.Column("norms", sa.Text(), nullable=False),
    sa.Index("ix_mc_match_key_record", "object", "record_id"),
)

#: Duplicate groups a scan found: the records of a group match each other under `rule`.
duplicate_groups = sa.Table(
    "mc_duplicate_group",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False, index=True),
    sa.Column("rule", sa.String(63), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

#: The records of a group; `score` is the best similarity with another member.
duplicate_members = sa.Table(
    "mc_duplicate_member",
    tenant_metadata,
    sa.Column("group_id", sa.Uuid(), primary_key=True),
    sa.Column("record_id", sa.Uuid(), primary_key=True),
    sa.Column("score", sa.Float(), nullable=False),
)

#: Duplicates saved on purpose (a report rule, a warning saved anyway): the new or
#: changed record, the record it matched, the rule and the score.
duplicate_pairs = sa.Table(
    "mc_duplicate_pair",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("rule", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("other_id", sa.Uuid(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

SCAN_JOB = "duplicates.scan"
REBUILD_JOB = "duplicates.rebuild"
#: Candidates scored per rule for one record (the best keys' first ones).
MAX_CANDIDATES = 500
#: Records read per query while rebuilding keys; key rows per query while scanning.
CHUNK = 2000
#: A block larger than this is compared by sorted neighbourhood: each record with the
#: `WINDOW` records after it in normalised order, not with every other.
MAX_BLOCK = 1000
WINDOW = 50

Norms = list[str | None]


@dataclass(frozen=True)
class DuplicateMatch:
    """A live record that matches the values under `rule`, how closely, and the action."""

    record_id: uuid.UUID
    rule: str
    score: float
    action: str


def active_rules(ct: CompiledTenant, object_name: str) -> tuple[DuplicateRule, ...]:
    """The active duplicate rules of an object (kept per compiled metadata version)."""
    return ct.views.get_or_build(
        ("duplicate-rules", object_name),
        lambda: tuple(r for r in ct.model.duplicate_rules if r.active and r.object == object_name),
    )


def rule_norms(rule: DuplicateRule, values: Mapping[str, Any]) -> Norms:
    """The normalised value of each criterion of `rule` (None: blank)."""
    return [normalize(c.method, values.get(c.field)) for c in rule.criteria]


#: Separators of packed norms: between criteria, and standing for a blank value. No
#: normalised value holds them (`normalize` keeps no whitespace but single spaces).
_BETWEEN, _BLANK = "\x1f", "\x1e"


def pack(norms: Norms) -> str:
    """Norms as one text (cheaper to store and read back than JSON)."""
    return _BETWEEN.join(_BLANK if n is None else n for n in norms)


def unpack(text: str) -> Norms:
    return [None if n == _BLANK else n for n in text.split(_BETWEEN)]


def rule_keys(rule: DuplicateRule, norms: Norms) -> list[str]:
    """The blocking keys of a record: its first criterion's (none when that is blank)."""
    first = norms[0]
    return [] if first is None else block_keys(rule.criteria[0].method, first)


def score(rule: DuplicateRule, a: Sequence[str | None], b: Sequence[str | None]) -> float | None:
    """How closely two records match under `rule` (the lowest criterion score), or None
    when some criterion does not reach its threshold."""
    least = 1.0
    for criterion, x, y in zip(rule.criteria, a, b, strict=True):
        if x is None or y is None:
            if x is None and y is None and criterion.blank_matches:
                continue
            return None
        found = similarity(criterion.method, x, y)
        if found < criterion.least:
            return None
        least = min(least, found)
    return least


async def find_duplicates(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    values: Mapping[str, Any],
    *,
    exclude_id: uuid.UUID | None = None,
    rules: Iterable[DuplicateRule] | None = None,
) -> list[DuplicateMatch]:
    """The live records of `co` that `values` duplicate under its active rules (or the
    `rules` given), best first; one match per record and rule. No access filter: the
    caller decides what the reader may learn of them."""
    found: list[DuplicateMatch] = []
    k, t = match_keys, co.table
    for rule in active_rules(ct, co.name) if rules is None else rules:
        norms = rule_norms(rule, values)
        keys = rule_keys(rule, norms)
        if not keys:
            continue
        query = (
            sa.select(k.c.record_id, k.c.norms)
            .join(t, t.c.id == k.c.record_id)
            .where(
                k.c.object == co.name,
                k.c.rule == rule.api_name,
                k.c.key.in_(keys),
                t.c.deleted_at.is_(None),
            )
            .limit(MAX_CANDIDATES)
        )
        if exclude_id is not None:
            query = query.where(k.c.record_id != exclude_id)
        seen: set[uuid.UUID] = set()
        for row in await conn.execute(query):
            if row.record_id in seen:
                continue
            seen.add(row.record_id)
            matched = score(rule, norms, unpack(row.norms))
            if matched is not None:
                found.append(DuplicateMatch(row.record_id, rule.api_name, matched, rule.action))
    return sorted(found, key=lambda m: (-m.score, str(m.record_id)))


async def readable_names(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor | None,
    ids: Iterable[uuid.UUID],
) -> dict[uuid.UUID, str | None]:
    """The name of each record of `ids` the actor may read (None: any), by id; records
    they cannot read are left out."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    t = co.table
    name_field = co.obj.record_name_field
    name = co.sql(name_field) if name_field else sa.null()
    query = sa.select(t.c.id, name.label("name")).where(
        t.c.id.in_(wanted), t.c.deleted_at.is_(None)
    )
    if actor is not None:
        try:
            access = record_filter(ct, actor, co, "read")
        except PermissionDenied:
            return {}
        if access is not None:
            query = query.where(access)
    rows = await conn.execute(query)
    return {row.id: None if row.name is None else str(row.name) for row in rows}


@dataclass(frozen=True)
class NamedMatch:
    """A match the actor may read, with the matching record's name."""

    record_id: uuid.UUID
    name: str | None
    rule: str
    score: float
    action: str

    def as_json(self, id_key: str = "id") -> dict[str, Any]:
        return {
            id_key: str(self.record_id),
            "name": self.name,
            "rule": self.rule,
            "score": self.score,
            "action": self.action,
        }


async def readable_matches(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor,
    values: Mapping[str, Any],
    *,
    exclude_id: uuid.UUID | None = None,
    rules: Sequence[DuplicateRule] | None = None,
) -> tuple[list[NamedMatch], bool]:
    """The matches of `values` the actor may read, best first, with their names; and
    whether some match is a record the actor may not read (never named)."""
    matches = await find_duplicates(conn, ct, co, values, exclude_id=exclude_id, rules=rules)
    names = await readable_names(conn, ct, co, actor, (m.record_id for m in matches))
    named = [
        NamedMatch(m.record_id, names[m.record_id], m.rule, m.score, m.action)
        for m in matches
        if m.record_id in names
    ]
    return named, len(named) < len(matches)


_TEXTS = {
    "en": {
        "named": "this looks like a duplicate of {name} ({id})",
        "hidden": "this looks like a duplicate of an existing record",
        "warn": "; save with allow_duplicates to keep it anyway",
    },
    "zh-CN": {
        "named": "疑似与已有记录 {name}（{id}）重复",
        "hidden": "疑似与一条已有记录重复",
        "warn": "；如仍要保存，请加上 allow_duplicates",
    },
}


def _message(
    rule: DuplicateRule, language: str, record_id: uuid.UUID, name: str | None, shown: bool
) -> str:
    texts = _TEXTS["zh-CN" if language == "zh-CN" else "en"]
    if rule.message is not None:
        text = label_text(rule.message, language)
    elif shown:
        text = texts["named"].format(name=name or record_id, id=record_id)
    else:
        text = texts["hidden"]
    return text + (texts["warn"] if rule.action == "warn" else "")


def _compared(write: Write, rules: Iterable[DuplicateRule]) -> list[DuplicateRule]:
    """The rules a write is checked against: all on create; on update, those comparing
    a field the update changes."""
    if write.kind == "create":
        return list(rules)
    return [r for r in rules if any(write.changed(c.field) for c in r.criteria)]


class DuplicateCheck:
    """The write hook of duplicate rules: refuses or warns about a duplicate, keeps keys."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        if write.kind not in ("create", "update") or write.intent.origin == Origin.MERGE:
            return []
        rules = [
            r
            for r in _compared(write, active_rules(write.ct, write.co.name))
            if r.action == "block" or (r.action == "warn" and not write.intent.allow_duplicates)
        ]
        if not rules:
            return []
        matches = await find_duplicates(
            write.conn, write.ct, write.co, write.after, exclude_id=write.record_id, rules=rules
        )
        if not matches:
            return []
        actor = None if write.intent.privileged else write.actor
        names = await readable_names(
            write.conn, write.ct, write.co, actor, (m.record_id for m in matches)
        )
        by_name = {r.api_name: r for r in rules}
        errors: list[FieldError] = []
        for rule_name in dict.fromkeys(m.rule for m in matches):
            rule = by_name[rule_name]
            best = next(m for m in matches if m.rule == rule_name)
            code = "duplicate" if rule.action == "block" else "duplicate-warning"
            message = _message(
                rule,
                write.actor.language,
                best.record_id,
                names.get(best.record_id),
                best.record_id in names,
            )
            errors.append(FieldError(write.prefix + rule.criteria[0].field, code, message))
        return errors

    async def after(self, write: Write) -> None:
        rules = active_rules(write.ct, write.co.name)
        if not rules or write.kind == "transfer":
            return
        conn, co, record_id = write.conn, write.co, write.record_id
        if write.kind == "delete":
            k = match_keys
            await conn.execute(k.delete().where(k.c.object == co.name, k.c.record_id == record_id))
            return
        changed = list(rules) if write.kind == "restore" else _compared(write, rules)
        if not changed:
            return
        await _file(conn, co.name, changed, [(record_id, write.after)], replace=True)
        if write.kind == "restore" or write.intent.origin == Origin.MERGE:
            return
        saved = [
            r
            for r in changed
            if r.action == "report" or (r.action == "warn" and write.intent.allow_duplicates)
        ]
        if saved:
            matches = await find_duplicates(
                conn, write.ct, co, write.after, exclude_id=record_id, rules=saved
            )
            await _record_pairs(conn, write, matches)


DUPLICATES = DuplicateCheck()


async def _record_pairs(conn: AsyncConnection, write: Write, matches: list[DuplicateMatch]) -> None:
    if not matches:
        return
    now = utcnow()
    await conn.execute(
        duplicate_pairs.insert(),
        [
            {
                "id": new_id(),
                "object": write.co.name,
                "rule": m.rule,
                "record_id": write.record_id,
                "other_id": m.record_id,
                "score": m.score,
                "created_by": write.actor.user_id,
                "created_at": now,
            }
            for m in matches
        ],
    )


async def _file(
    conn: AsyncConnection,
    object_name: str,
    rules: Sequence[DuplicateRule],
    records: Sequence[tuple[uuid.UUID, Mapping[str, Any]]],
    *,
    replace: bool,
) -> int:
    """File `records` under their keys of each rule (replacing their old keys); how
    many key rows were written."""
    k = match_keys
    ids = [record_id for record_id, _ in records]
    rows: list[dict[str, Any]] = []
    for rule in rules:
        if replace:
            await conn.execute(
                k.delete().where(
                    k.c.object == object_name, k.c.rule == rule.api_name, k.c.record_id.in_(ids)
                )
            )
        for record_id, values in records:
            norms = rule_norms(rule, values)
            packed = pack(norms)
            for key in dict.fromkeys(rule_keys(rule, norms)):
                rows.append(
                    {
                        "object": object_name,
                        "rule": rule.api_name,
                        "key": key,
                        "record_id": record_id,
                        "norms": packed,
                    }
                )
    if rows:
        await conn.execute(k.insert(), rows)
    return len(rows)


async def forget_rule(conn: AsyncConnection, object_name: str, rule: str) -> None:
    """Drop a rule's keys and groups (the rule is gone, inactive, or about to be rebuilt)."""
    k, g, m = match_keys, duplicate_groups, duplicate_members
    await conn.execute(k.delete().where(k.c.object == object_name, k.c.rule == rule))
    groups = sa.select(g.c.id).where(g.c.object == object_name, g.c.rule == rule)
    await conn.execute(m.delete().where(m.c.group_id.in_(groups)))
    await conn.execute(g.delete().where(g.c.object == object_name, g.c.rule == rule))


async def rebuild_keys(
    conn: AsyncConnection, ct: CompiledTenant, co: CompiledObject, rule: DuplicateRule
) -> int:
    """File every live record of `co` anew under `rule`, `CHUNK` records per query;
    how many records were read."""
    k, t = match_keys, co.table
    await conn.execute(k.delete().where(k.c.object == co.name, k.c.rule == rule.api_name))
    fields = list(dict.fromkeys(c.field for c in rule.criteria))
    query = (
        sa.select(t.c.id, *(co.sql(f).label(f) for f in fields))
        .where(t.c.deleted_at.is_(None))
        .order_by(t.c.id)
        .limit(CHUNK)
    )
    last: uuid.UUID | None = None
    count = 0
    while True:
        page = query if last is None else query.where(t.c.id > last)
        rows = [dict(r) for r in (await conn.execute(page)).mappings()]
        if not rows:
            return count
        await _file(conn, co.name, [rule], [(r["id"], r) for r in rows], replace=False)
        count += len(rows)
        last = rows[-1]["id"]


class _Groups:
    """Union-find over the matched records of one rule, with each one's best score."""

    def __init__(self) -> None:
        self.parent: dict[uuid.UUID, uuid.UUID] = {}
        self.best: dict[uuid.UUID, float] = {}

    def root(self, x: uuid.UUID) -> uuid.UUID:
        parent = self.parent.setdefault(x, x)
        while parent != x:
            grand = self.parent[parent]
            self.parent[x] = grand
            x, parent = parent, self.parent[grand]
        return x

    def join(self, a: uuid.UUID, b: uuid.UUID, found: float) -> None:
        for x in (a, b):
            self.best[x] = max(self.best.get(x, 0.0), found)
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[uuid.UUID]]:
        members: dict[uuid.UUID, list[uuid.UUID]] = {}
        for x in self.parent:
            members.setdefault(self.root(x), []).append(x)
        return [sorted(group) for group in members.values() if len(group) > 1]


def _compare_block(rule: DuplicateRule, packed: list[tuple[uuid.UUID, str]], out: _Groups) -> None:
    """Join the matching records of one block (records sharing a key)."""
    block = sorted(
        ((r, unpack(n)) for r, n in dict(packed).items()),
        key=lambda item: (item[1][0] or "", item[0]),
    )
    if len(block) < 2:
        return
    equal = len(rule.criteria) == 1 and rule.criteria[0].method not in SIMILARITY_METHODS
    if equal and block[0][1][0] == block[-1][1][0]:
        # One equality criterion and one value: every record matches the first.
        for record_id, _ in block[1:]:
            out.join(block[0][0], record_id, 1.0)
        return
    reach = len(block) if len(block) <= MAX_BLOCK else WINDOW + 1
    for i, (a, norms_a) in enumerate(block):
        for b, norms_b in block[i + 1 : i + reach]:
            found = score(rule, norms_a, norms_b)
            if found is not None:
                out.join(a, b, found)


async def _group_rule(conn: AsyncConnection, object_name: str, rule: DuplicateRule) -> _Groups:
    """Every duplicate pair of a rule's filed records, streamed block by block in key
    order (`CHUNK` rows fetched at a time)."""
    k = match_keys
    query = (
        sa.select(k.c.key, k.c.record_id, k.c.norms)
        .where(k.c.object == object_name, k.c.rule == rule.api_name)
        .order_by(k.c.key, k.c.record_id)
        .execution_options(yield_per=CHUNK)
    )
    out = _Groups()
    block: list[tuple[uuid.UUID, str]] = []
    current: str | None = None
    result = await conn.stream(query)
    async for partition in result.partitions(CHUNK):
        for row in partition:
            if row.key != current:
                if len(block) > 1:
                    _compare_block(rule, block, out)
                block, current = [], row.key
            block.append((row.record_id, row.norms))
    if len(block) > 1:
        _compare_block(rule, block, out)
    return out


async def scan(conn: AsyncConnection, ct: CompiledTenant, co: CompiledObject) -> dict[str, Any]:
    """Rebuild the keys of every active rule of `co` and store its duplicate groups,
    replacing the previous scan's; what was found, per rule."""
    g, m = duplicate_groups, duplicate_members
    old = sa.select(g.c.id).where(g.c.object == co.name)
    await conn.execute(m.delete().where(m.c.group_id.in_(old)))
    await conn.execute(g.delete().where(g.c.object == co.name))
    now = utcnow()
    found: dict[str, Any] = {}
    for rule in active_rules(ct, co.name):
        records = await rebuild_keys(conn, ct, co, rule)
        matched = await _group_rule(conn, co.name, rule)
        groups = matched.groups()
        group_rows, member_rows = [], []
        for members in groups:
            group_id = new_id()
            group_rows.append(
                {
                    "id": group_id,
                    "object": co.name,
                    "rule": rule.api_name,
                    "size": len(members),
                    "created_at": now,
                }
            )
            member_rows += [
                {"group_id": group_id, "record_id": r, "score": matched.best[r]} for r in members
            ]
        for table, rows in ((g, group_rows), (m, member_rows)):
            for start in range(0, len(rows), CHUNK):
                await conn.execute(table.insert(), rows[start : start + CHUNK])
        found[rule.api_name] = {
            "records": records,
            "groups": len(groups),
            "duplicates": len(member_rows),
        }
    return {"object": co.name, "rules": found}


async def arm_rules(conn: AsyncConnection, old: MetadataModel, new: MetadataModel) -> None:
    """In the transaction applying a metadata change: forget the keys and groups of
    rules removed, deactivated or changed, and enqueue a key rebuild for each active
    rule that is new or changed."""
    before = {r.api_name: r for r in old.duplicate_rules}
    after = {r.api_name: r for r in new.duplicate_rules}
    for name, prior in before.items():
        rule = after.get(name)
        if prior.active and (rule is None or rule != prior):
            await forget_rule(conn, prior.object, name)
    for name, rule in after.items():
        if rule.active and before.get(name) != rule:
            await enqueue(
                conn,
                REBUILD_JOB,
                {"object": rule.object, "rule": name},
                key=f"{REBUILD_JOB}:{name}",
                object=rule.object,
            )
