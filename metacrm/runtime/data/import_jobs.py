"""Imports on the job queue: the dry run, the real run in resumable slices, and the revert.

`import.run` runs a dry run whole, or the real run for up to `JOB_SECONDS` (well inside a
worker's lease) and then enqueues its own follow-up in the transaction that marks it
done: a long import goes on in slices, each claim continuing from the checkpoint the
last committed chunk left. A worker that dies mid-slice leaves its job to be claimed
again once the lease runs out; the chunk it was writing rolled back with it.

`import.revert` takes back what a real run wrote, newest row first, a chunk per
transaction: records the run created are deleted and records it updated get the
before-images of the fields it wrote, through the write path (origin IMPORT, with
system rights: the revert only undoes writes the importer was allowed to make, and a
field permission or approval lock set since must not leave the import half undone).
A record whose imported fields were changed since the import is left alone and reported
("changed"); `force` reverts it anyway, losing the later change of those fields. So is
an earlier row of the same record once a later one could not be reverted.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import MetacrmError, NotFound
from metacrm.runtime import files, writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.data.import_pipeline import (
    CHUNK_ROWS,
    Superseded,
    Transact,
    run_dry,
    run_real,
)
from metacrm.runtime.data.imports import acting_user, import_rows, imports
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.jobs import Job, JobContext, JobKind, enqueue
from metacrm.runtime.records import fetch, utcnow
from metacrm.runtime.serialize import json_value

RUN_JOB = "import.run"
REVERT_JOB = "import.revert"
#: How long one job of a real run or a revert works before a follow-up job goes on.
JOB_SECONDS = 30.0
#: Tries of a job before the import is given up as failed.
MAX_ATTEMPTS = 5


async def enqueue_run(conn: AsyncConnection, import_id: uuid.UUID, *, dry: bool) -> uuid.UUID:
    """The job that runs an import (in the transaction that started it)."""
    payload = {"import": str(import_id), "dry": dry}
    return await enqueue(conn, RUN_JOB, payload, max_attempts=MAX_ATTEMPTS)


async def enqueue_revert(
    conn: AsyncConnection, import_id: uuid.UUID, actor: Actor, *, force: bool = False
) -> uuid.UUID:
    """The job that reverts an import on behalf of `actor`."""
    payload = {"import": str(import_id), "user": str(actor.user_id), "force": force}
    return await enqueue(conn, REVERT_JOB, payload, max_attempts=MAX_ATTEMPTS)


def _transact(ctx: JobContext) -> Transact:
    return lambda: ctx.transaction(finish=False)


async def _local_copy(transact: Transact, import_id: uuid.UUID, target: Any) -> Path | None:
    """Copy the import's file into `target` (a temporary file); None when it is gone."""
    async with transact() as (conn, _ct):
        file_id = await conn.scalar(sa.select(imports.c.file_id).where(imports.c.id == import_id))
        if file_id is None:
            return None
        await files.copy_to(conn, file_id, target)
    return Path(target.name)


async def run_import_job(job: Job, ctx: JobContext) -> dict[str, Any] | None:
    """Handler of `import.run`."""
    import_id, dry = uuid.UUID(job.payload["import"]), bool(job.payload.get("dry"))
    transact = _transact(ctx)
    with tempfile.NamedTemporaryFile(suffix=".import") as copy:
        path = await _local_copy(transact, import_id, copy)
        if path is None:
            return {"import": str(import_id), "finished": True}
        try:
            if dry:
                await run_dry(transact, import_id, path)
                return {"import": str(import_id), "finished": True}
            deadline = time.monotonic() + JOB_SECONDS
            finished = await run_real(transact, import_id, path, deadline=deadline)
        except Superseded:
            return {"import": str(import_id), "finished": True}
        except Exception as error:
            if job.attempts >= job.max_attempts:  # the job dies: so does the import
                await _give_up(transact, import_id, error)
            raise
    if not finished:
        async with ctx.transaction() as (conn, _ct):
            await enqueue_run(conn, import_id, dry=False)
            ctx.result = {"import": str(import_id), "finished": False}
    return {"import": str(import_id), "finished": finished}


async def _give_up(transact: Transact, import_id: uuid.UUID, error: Exception) -> None:
    """Mark a run or dry run whose job has no try left as failed (the rows a real run
    committed stay, and can be reverted)."""
    async with transact() as (conn, _ct):
        await conn.execute(
            imports.update()
            .where(imports.c.id == import_id, imports.c.status.in_(("running", "dry-running")))
            .values(
                status="failed",
                last_error=f"{type(error).__name__}: {error}"[:4000],
                finished_at=utcnow(),
                updated_at=utcnow(),
            )
        )


async def revert_import_job(job: Job, ctx: JobContext) -> dict[str, Any] | None:
    """Handler of `import.revert`."""
    payload = job.payload
    import_id = uuid.UUID(payload["import"])
    finished = await run_revert(
        _transact(ctx),
        import_id,
        uuid.UUID(payload["user"]),
        force=bool(payload.get("force")),
        deadline=time.monotonic() + JOB_SECONDS,
    )
    if not finished:
        async with ctx.transaction() as (conn, _ct):
            await enqueue(conn, REVERT_JOB, payload, max_attempts=MAX_ATTEMPTS)
            ctx.result = {"import": str(import_id), "finished": False}
    return {"import": str(import_id), "finished": finished}


RUN_KIND = JobKind(run_import_job, max_attempts=MAX_ATTEMPTS)
REVERT_KIND = JobKind(revert_import_job, max_attempts=MAX_ATTEMPTS)

_WRITTEN = ("create", "update")


async def run_revert(
    transact: Transact,
    import_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    force: bool = False,
    deadline: float | None = None,
) -> bool:
    """Revert a `reverting` import's rows, newest first, a chunk per transaction, until
    none is left (True: the import is then `reverted`) or `deadline` passes (False)."""
    while True:
        async with transact() as (conn, ct):
            query = sa.select(imports).where(imports.c.id == import_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # one reverting worker at a time
            row = (await conn.execute(query)).first()
            if row is None or row.status != "reverting":
                return True
            pending = list(
                await conn.execute(
                    sa.select(import_rows)
                    .where(
                        import_rows.c.import_id == import_id,
                        import_rows.c.run == "real",
                        import_rows.c.action.in_(_WRITTEN),
                        import_rows.c.revert.is_(None),
                    )
                    .order_by(import_rows.c.row_no.desc())
                    .limit(CHUNK_ROWS)
                )
            )
            if not pending:
                now = utcnow()
                await conn.execute(
                    imports.update()
                    .where(imports.c.id == import_id)
                    .values(status="reverted", finished_at=now, updated_at=now)
                )
                return True
            try:
                actor = await acting_user(conn, user_id)
            except NotFound as gone:
                await conn.execute(
                    imports.update()
                    .where(imports.c.id == import_id)
                    .values(status="failed", last_error=gone.detail, updated_at=utcnow())
                )
                return True
            intent = Intent(
                actor,
                origin=Origin.IMPORT,
                reason=f"revert of import {import_id}",
                system=True,
            )
            reverted = skipped = 0
            for item in pending:
                outcome, errors = await _revert_row(conn, ct, row.object, item, intent, force)
                await conn.execute(
                    import_rows.update()
                    .where(
                        import_rows.c.import_id == import_id,
                        import_rows.c.run == "real",
                        import_rows.c.row_no == item.row_no,
                    )
                    .values(revert=outcome, revert_errors=errors or None)
                )
                if outcome in ("reverted", "gone"):
                    reverted += 1
                else:
                    skipped += 1
            await conn.execute(
                imports.update()
                .where(imports.c.id == import_id)
                .values(
                    reverted=imports.c.reverted + reverted,
                    revert_skipped=imports.c.revert_skipped + skipped,
                    updated_at=utcnow(),
                )
            )
        if deadline is not None and time.monotonic() > deadline:
            return False


async def _revert_row(
    conn: AsyncConnection,
    ct: CompiledTenant,
    object_name: str,
    item: Any,
    intent: Intent,
    force: bool,
) -> tuple[str, list[dict[str, Any]]]:
    """Take back one row's write: reverted, changed (left alone), gone or error."""
    co = ct.objects.get(object_name)
    if co is None:
        return "error", [_issue("", "object-gone", f"the object {object_name} no longer exists")]
    # A later row of the same record that could not be reverted holds this one too.
    blocked = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(import_rows)
        .where(
            import_rows.c.import_id == item.import_id,
            import_rows.c.run == "real",
            import_rows.c.record_id == item.record_id,
            import_rows.c.row_no > item.row_no,
            import_rows.c.action.in_(_WRITTEN),
            import_rows.c.revert.not_in(("reverted", "gone")),
        )
    )
    if blocked and not force:
        return "changed", [
            _issue("", "changed-since-import", "a later row of this record was not reverted")
        ]
    try:
        async with conn.begin_nested():
            current = await fetch(conn, co, item.record_id)
            changed = [
                name
                for name, value in (item.after or {}).items()
                if name in co.fields and json_value(current.get(name)) != value
            ]
            if changed and not force:
                return "changed", [
                    _issue(name, "changed-since-import", f"{name} was changed since the import")
                    for name in changed
                ]
            if item.action == "create":
                await writes.delete(conn, ct, co, item.record_id, intent)
            else:
                before = {k: v for k, v in (item.before or {}).items() if k in co.writable}
                await writes.update(conn, ct, co, item.record_id, before, intent)
    except NotFound:
        return "gone", []
    except MetacrmError as error:
        problems = [_issue(e.field, e.code, e.message) for e in error.errors]
        return "error", problems or [_issue("", error.code, error.detail)]
    return "reverted", []


def _issue(field: str, code: str, message: str) -> dict[str, Any]:
    return {"field": field, "code": code, "message": message}
