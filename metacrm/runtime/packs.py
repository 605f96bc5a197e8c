"""Install, upgrade and uninstall packs in a tenant; roll its metadata back; run pack tests.

Each action is one Plan applied by `apply_change` (source "pack"), in one transaction
with the pack's seed records and the pack bookkeeping: if anything fails, the tenant
is left exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.checks import impact
from metacrm.checks.packs import check_pack
from metacrm.errors import Conflict, FieldError, MetacrmError, NotFound, RecordInvalid
from metacrm.metadata.diff import diff
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.pack_upgrade import uninstall_model, upgrade_model
from metacrm.metadata.packs import (
    Expectation,
    Pack,
    PackInvalid,
    PackProblem,
    contents_model,
    merge_pack,
)
from metacrm.metadata.plan import Plan
from metacrm.metadata.store import current_version, load_model
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime import writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.changes import apply_change
from metacrm.runtime.compiler import CompiledTenant, compile_tenant
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.tenant_tables import create_tenant_tables, pack_events

Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
SYSTEM_USER = uuid.UUID(int=0)


@dataclass(frozen=True)
class InstalledPack:
    name: str
    version: str
    depends: dict[str, str]
    contents: dict[str, Any]
    label: Any
    metadata_version: int
    changed_at: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "label": self.label,
            "depends": self.depends,
            "metadata_version": self.metadata_version,
            "changed_at": self.changed_at.isoformat(),
        }


@dataclass
class Outcome:
    """What a pack action (or rollback) does: the plan, its impact, and once applied, the
    new metadata version and the seed records loaded."""

    action: str
    name: str
    version: str | None
    from_version: str | None
    plan: Plan
    impacts: list[impact.Impact]
    applied: bool = False
    metadata_version: int | None = None
    seeded: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "pack": self.name,
            "version": self.version,
            "from_version": self.from_version,
            "applied": self.applied,
            "metadata_version": self.metadata_version,
            "plan": self.plan.to_dict(),
            "impact": [i.as_dict() for i in self.impacts],
            "seeded": self.seeded,
        }

    def describe(self) -> str:
        lines = [self.plan.describe()]
        lines += [
            f"  ! {i.kind} {i.dependent} uses {i.subject}" + (" (BROKEN)" if i.broken else "")
            for i in self.impacts
        ]
        return "\n".join(lines)


@dataclass
class _Prepared:
    old: MetadataModel
    new: MetadataModel
    outcome: Outcome
    event: dict[str, Any] | None


# ---------------------------------------------------------------- bookkeeping


async def installed_packs(
    conn: AsyncConnection, *, at_version: int | None = None
) -> dict[str, InstalledPack]:
    """The packs installed now (or as of metadata version `at_version`)."""
    t = pack_events
    query = sa.select(t).order_by(t.c.metadata_version)
    if at_version is not None:
        query = query.where(t.c.metadata_version <= at_version)
    latest: dict[str, Any] = {}
    for row in (await conn.execute(query)).mappings():
        latest[row["name"]] = row
    return {
        name: InstalledPack(
            name,
            row["version"],
            row["depends"] or {},
            row["contents"] or {},
            row["label"],
            row["metadata_version"],
            row["created_at"],
        )
        for name, row in latest.items()
        if row["version"] is not None
    }


def _owned(installed: dict[str, InstalledPack]) -> dict[str, set[tuple[str, str | None]]]:
    """For impact analysis: the objects and fields each installed pack contributes."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for name, pack in installed.items():
        model, exts = contents_model(pack.contents)
        owned: set[tuple[str, str | None]] = {(o.api_name, None) for o in model.objects}
        owned |= {(e.object, f.api_name) for e in exts for f in e.fields}
        out[name] = owned
    return out


async def _record_event(conn: AsyncConnection, version: int, event: dict[str, Any]) -> None:
    t = pack_events
    await conn.execute(t.delete().where(t.c.metadata_version == version, t.c.name == event["name"]))
    await conn.execute(
        t.insert().values(metadata_version=version, created_at=dt.datetime.now(dt.UTC), **event)
    )


# ---------------------------------------------------------------- preparing


async def _prepare(
    conn: AsyncConnection, action: str, pack: Pack | None, name: str | None, *, target: int = 0
) -> _Prepared:
    old = await load_model(conn, await current_version(conn))
    installed = await installed_packs(conn)
    versions = {n: p.version for n, p in installed.items()}
    dependents = {n: p.depends for n, p in installed.items()}
    event: dict[str, Any] | None = None
    from_version = None
    if action == "install":
        assert pack is not None
        if pack.name in installed:
            raise PackInvalid(
                f"{pack.name} {installed[pack.name].version} is installed already; upgrade it",
                [
                    PackProblem(
                        "pack.json",
                        "/name",
                        "installed",
                        f"{pack.name} {installed[pack.name].version} is installed; use upgrade",
                    )
                ],
            )
        problems = _clashes(pack, old, installed)
        merged = merge_pack(old, pack)
        try:
            new = check_pack(pack, old, installed=versions, dependents=dependents, merged=merged)
        except PackInvalid as error:
            problems += error.problems
            new = merged
        if problems:
            raise PackInvalid(f"the pack has {len(problems)} problem(s)", problems)
    elif action == "upgrade":
        assert pack is not None
        if pack.name not in installed:
            raise NotFound(f"pack {pack.name!r} is not installed; install it")
        previous = installed[pack.name]
        from_version = previous.version
        if previous.version == pack.version:
            raise PackInvalid(
                "nothing to upgrade",
                [
                    PackProblem(
                        "pack.json", "/version", "same-version", f"{pack.version} is installed"
                    )
                ],
            )
        old_model, old_exts = contents_model(previous.contents)
        merged = upgrade_model(old, old_model, old_exts, pack)
        new = check_pack(
            pack,
            old,
            installed=versions,
            dependents=dependents,
            upgrade_from=previous.version,
            merged=merged,
        )
    elif action == "uninstall":
        assert name is not None
        if name not in installed:
            raise NotFound(f"pack {name!r} is not installed")
        users = sorted(n for n, deps in dependents.items() if name in deps and n != name)
        if users:
            raise Conflict(
                f"{name} is needed by {', '.join(users)}; uninstall those first",
                [FieldError(f"packs/{u}", "depends", f"{u} depends on {name}") for u in users],
            )
        from_version = installed[name].version
        old_model, old_exts = contents_model(installed[name].contents)
        new = uninstall_model(old, old_model, old_exts)
        event = {"name": name, "version": None, "action": "uninstall", "depends": {}}
        event |= {"contents": {}, "label": installed[name].label}
    else:  # rollback
        if target < 0 or target > await current_version(conn):
            raise NotFound(f"no metadata version {target}")
        new = await load_model(conn, target)
        name = f"version {target}"
    if pack is not None:
        event = {
            "name": pack.name,
            "version": pack.version,
            "action": action,
            "depends": pack.manifest.depends,
            "contents": pack.contents(),
            "label": pack.manifest.label,
        }
    plan = diff(old, new)
    impacts = impact.analyse(old, new, plan, packs=_owned(installed))
    outcome = Outcome(
        action,
        pack.name if pack is not None else name or "",
        pack.version if pack is not None else None,
        from_version,
        plan,
        impacts,
    )
    return _Prepared(old, new, outcome, event)


def _clashes(
    pack: Pack, model: MetadataModel, installed: dict[str, InstalledPack]
) -> list[PackProblem]:
    """Objects and documents of `pack` that the tenant (or another pack) has already."""
    problems = []
    for obj in pack.objects:
        if model.has_object(obj.api_name):
            file, _ = pack.origins[("object", obj.api_name)]
            owner = next(
                (
                    n
                    for n, p in installed.items()
                    if any(o.get("api_name") == obj.api_name for o in p.contents.get("objects", []))
                ),
                "the tenant",
            )
            problems.append(
                PackProblem(
                    file,
                    "/api_name",
                    "exists",
                    f"object {obj.api_name!r} exists already (defined by {owner})",
                )
            )
    return problems


# ---------------------------------------------------------------- actions


async def plan_pack(
    conn: AsyncConnection,
    action: str,
    pack: Pack | None = None,
    *,
    name: str | None = None,
    target: int = 0,
) -> Outcome:
    """The plan and impact of an action, applying nothing."""
    return (await _prepare(conn, action, pack, name, target=target)).outcome


@asynccontextmanager
async def _same(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """The caller's transaction, handed to apply_change so seed and bookkeeping join it."""
    yield conn


async def run_action(
    transaction: Transaction,
    action: str,
    pack: Pack | None = None,
    *,
    name: str | None = None,
    target: int = 0,
    confirm: bool = False,
    author_id: uuid.UUID | None = None,
    seed: bool = True,
    comment: str | None = None,
) -> Outcome:
    """Install, upgrade, uninstall (a pack) or roll back (to `target`): one plan, atomic."""
    async with transaction() as conn:
        await create_tenant_tables(conn)
        prepared = await _prepare(conn, action, pack, name, target=target)
        impact.refuse_breaking(prepared.outcome.impacts)
        outcome = prepared.outcome
        label = f"{outcome.name} {outcome.version or ''}".strip()
        expected = prepared.old

        def change(current: MetadataModel) -> MetadataModel:
            if current != expected:
                raise Conflict("the metadata changed meanwhile; plan again")
            return prepared.new

        applied = await apply_change(
            lambda: _same(conn),
            change,
            confirm=confirm,
            author_id=author_id,
            source="rollback" if action == "rollback" else "pack",
            comment=comment or f"{action} {label}",
            retries=0,
        )
        outcome.plan, outcome.applied, outcome.metadata_version = (
            applied.plan,
            True,
            applied.version,
        )
        if action == "rollback":
            await _restore_pack_state(conn, target, applied.version)
            return outcome
        if pack is not None and seed and pack.seed and action == "install":
            ct = compile_tenant(prepared.new, applied.version)
            actor = Actor(user_id=author_id or SYSTEM_USER, is_admin=True)
            outcome.seeded = await load_seed(conn, ct, pack, actor)
        if prepared.event is not None:
            await _record_event(conn, applied.version, prepared.event)
        return outcome


async def install(transaction: Transaction, pack: Pack, **options: Any) -> Outcome:
    return await run_action(transaction, "install", pack, **options)


async def upgrade(transaction: Transaction, pack: Pack, **options: Any) -> Outcome:
    return await run_action(transaction, "upgrade", pack, **options)


async def uninstall(transaction: Transaction, name: str, **options: Any) -> Outcome:
    return await run_action(transaction, "uninstall", name=name, **options)


async def rollback(transaction: Transaction, version: int, **options: Any) -> Outcome:
    return await run_action(transaction, "rollback", target=version, **options)


async def _restore_pack_state(conn: AsyncConnection, target: int, version: int) -> None:
    """After a rollback, the packs installed are those of the target version again."""
    before = await installed_packs(conn, at_version=target)
    now = await installed_packs(conn)
    for name in set(before) | set(now):
        was, current = before.get(name), now.get(name)
        if was == current:
            continue
        if was is None:
            event: dict[str, Any] = {"name": name, "version": None, "depends": {}, "contents": {}}
            event |= {"label": current.label if current else None}
        else:
            event = {"name": name, "version": was.version, "depends": was.depends}
            event |= {"contents": was.contents, "label": was.label}
        await _record_event(conn, version, event | {"action": "rollback"})


# ---------------------------------------------------------------- seed records


class _Links:
    """Resolves `{"$ref": object, field: value}` to record ids, with a cache."""

    def __init__(self, conn: AsyncConnection, ct: CompiledTenant) -> None:
        self.conn, self.ct = conn, ct
        self.cache: dict[tuple[str, str, str], str | None] = {}

    async def resolve(self, value: dict[str, Any]) -> str | None:
        target = self.ct.objects[value["$ref"]]
        ((name, wanted),) = [(k, v) for k, v in value.items() if k != "$ref"]
        key = (target.name, name, str(wanted))
        if key not in self.cache:
            t = target.table
            try:  # the value in the column's own type (a date, a number, ...)
                wanted = coerce(target.fields[name], wanted)
            except ValueProblem:
                self.cache[key] = None
                return None
            found = await self.conn.scalar(
                sa.select(t.c.id).where(t.c[name] == wanted, t.c.deleted_at.is_(None)).limit(1)
            )
            self.cache[key] = str(found) if found else None
        return self.cache[key]

    async def record(self, data: dict[str, Any], file: str, pointer: str) -> dict[str, Any]:
        out = {}
        for key, value in data.items():
            if isinstance(value, dict) and "$ref" in value:
                found = await self.resolve(value)
                if found is None:
                    raise PackInvalid(
                        "a seed link names no record",
                        [
                            PackProblem(
                                file, f"{pointer}/{key}", "dangling-link", f"no record {value}"
                            )
                        ],
                    )
                out[key] = found
            else:
                out[key] = value
        return out


async def load_seed(
    conn: AsyncConnection, ct: CompiledTenant, pack: Pack, actor: Actor
) -> dict[str, int]:
    """Create the pack's seed records through the record service (normal validation).

    A line may carry `"$then": [changes, ...]`: updates applied one by one after the
    create, so that records reach later stages through the stage rules' own gates.
    Every refused record is reported (file and line); any refusal fails the install.
    """
    links = _Links(conn, ct)
    intent = Intent(actor, origin=Origin.PACK)
    problems: list[PackProblem] = []
    counts: dict[str, int] = {}
    for object_name, rows in pack.seed.items():
        file = f"seed/{object_name}.jsonl"
        co = ct.objects[object_name]
        for i, row in enumerate(rows):
            pointer = f"/{i}"
            try:
                body = {k: v for k, v in row.items() if k != "$then"}
                data = await links.record(body, file, pointer)
                record = await writes.create(conn, ct, co, data, intent)
                # Later steps of a record's life (stage moves), each a normal update.
                for j, step in enumerate(row.get("$then", [])):
                    pointer = f"/{i}/$then/{j}"
                    data = await links.record(step, file, pointer)
                    record_id = uuid.UUID(str(record["id"]))
                    record = await writes.update(conn, ct, co, record_id, data, intent)
                counts[object_name] = counts.get(object_name, 0) + 1
            except PackInvalid as error:
                problems += error.problems
            except RecordInvalid as error:
                problems += [
                    PackProblem(file, f"{pointer}/{e.field}".rstrip("/"), e.code, e.message)
                    for e in error.errors
                ]
    if problems:
        raise PackInvalid(f"{len(problems)} seed record problem(s); nothing changed", problems)
    return counts


# ---------------------------------------------------------------- pack tests


@dataclass
class CaseResult:
    name: str
    passed: bool
    messages: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "messages": self.messages}


def _same_value(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return False
    try:
        return Decimal(str(actual)) == Decimal(str(expected))
    except (InvalidOperation, ValueError):
        return str(actual) == str(expected)


def _judge(
    expect: Expectation, record: dict[str, Any] | None, error: RecordInvalid | None
) -> list[str]:
    failures = []
    if expect.valid and error is not None:
        failures += [f"refused: {e.field}: {e.message} [{e.code}]" for e in error.errors]
        return failures or [f"refused: {error.detail}"]
    if not expect.valid:
        if error is None:
            return ["accepted, but should have been refused"]
        got = [(e.field.rsplit("/", 1)[-1], e.code) for e in error.errors]
        for wanted in expect.errors:
            if not any(f == wanted.get("field", f) and c == wanted.get("code", c) for f, c in got):
                failures.append(f"expected error {wanted}, got {got}")
        return failures
    for name, value in expect.values.items():
        actual = (record or {}).get(name)
        if not _same_value(actual, value):
            failures.append(f"{name}: expected {value!r}, got {actual!r}")
    return failures


async def run_tests(conn: AsyncConnection, ct: CompiledTenant, pack: Pack) -> list[CaseResult]:
    """Run each pack test in a savepoint that is rolled back: tests cannot see each other."""
    intent = Intent(Actor(user_id=SYSTEM_USER, is_admin=True), origin=Origin.PACK)
    links = _Links(conn, ct)
    results = []
    for test in pack.tests:
        savepoint = await conn.begin_nested()
        messages: list[str] = []
        try:
            co = ct.objects[test.object]
            record, error = None, None
            try:
                data = await links.record(test.record, "tests", f"/{test.api_name}/record")
                record = await writes.create(conn, ct, co, data, intent)
            except RecordInvalid as invalid:
                error = invalid
            messages += _judge(test.expect, record, error)
            for n, step in enumerate(test.then, start=1):
                if record is None:
                    messages.append(f"step {n}: no record to update")
                    break
                step_error, updated = None, None
                try:
                    data = await links.record(step.update, "tests", f"/{test.api_name}/then/{n}")
                    updated = await writes.update(
                        conn, ct, co, uuid.UUID(str(record["id"])), data, intent
                    )
                except RecordInvalid as invalid:
                    step_error = invalid
                messages += [f"step {n}: {m}" for m in _judge(step.expect, updated, step_error)]
                record = updated or record
        except MetacrmError as error:
            messages.append(f"error: {error.detail}")
        finally:
            await savepoint.rollback()
        results.append(CaseResult(test.api_name, not messages, messages))
    return results


async def run_pack_tests(db: Any, packs: list[Pack]) -> list[CaseResult]:
    """Install `packs` (dependencies first) into a throwaway tenant and run the last one's
    tests; the tenant is dropped afterwards."""
    storage = f"tenant_packtest_{uuid.uuid4().hex[:12]}"
    await db.create_tenant_storage(storage)
    try:
        for pack in packs:
            await install(lambda: db.tenant(storage), pack)
        async with db.tenant(storage) as conn:
            ct = compile_tenant(await load_model(conn, await current_version(conn)), 0)
            return await run_tests(conn, ct, packs[-1])
    finally:
        await db.drop_tenant_storage(storage)
