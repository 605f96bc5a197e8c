"""File imports over HTTP: upload, mapping, dry run, run, progress, per-row report, revert.

Every route needs the `import_data` platform permission; an import is seen by its creator
and by administrators. Runs and reverts are jobs (202): their progress is the import's
`done`/`total` and counts. `/import-mappings` keeps mappings by name for reuse.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePath
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse, Response, StreamingResponse

from metacrm.errors import (
    Conflict,
    FieldError,
    NotFound,
    RecordInvalid,
    UnsupportedMediaType,
)
from metacrm.metadata.values import ValueProblem, check_text
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, TenantSession
from metacrm.runtime import files
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.data import imports as store
from metacrm.runtime.data.import_jobs import enqueue_revert, enqueue_run
from metacrm.runtime.data.imports import import_rows

router = APIRouter(tags=["imports"])

#: Form fields of an upload besides the file.
_UPLOAD_FIELDS = frozenset(
    {
        "file",
        "object",
        "mode",
        "key_field",
        "encoding",
        "sheet",
        "date_order",
        "time_zone",
        "mapping",
        "duplicates",
        "blank_cells",
        "limit",
    }
)
_ACTIONS = ("create", "update", "skip", "error")


def _text(form: Any, name: str, *, limit: int = 255) -> str | None:
    """A text field of the upload form; a 422 naming it when it is not a clean text."""
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise RecordInvalid(
            f"{name} is invalid", [FieldError(name, "type", f"{name} is a text of <= {limit}")]
        )
    try:
        return check_text(value)
    except ValueProblem as problem:
        errors = [FieldError(name, problem.code, problem.message)]
        raise RecordInvalid(f"{name} is invalid", errors) from None


def _file_name(upload: UploadFile) -> str:
    name = PurePath((upload.filename or "").replace("\\", "/")).name or "upload.csv"
    try:
        return check_text(name)[:255]
    except ValueProblem:
        return "upload.csv"


async def _pieces(upload: UploadFile, local: Any) -> AsyncIterator[bytes]:
    """The upload's bytes, a piece at a time, also written to `local` (the copy read here)."""
    while piece := await upload.read(files.CHUNK_SIZE):
        local.write(piece)
        yield piece


async def store_upload(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    upload: UploadFile,
    *,
    object: str,
    mode: str,
    key_field: str | None,
    options: store.ImportOptions,
    mapping_name: str | None = None,
) -> uuid.UUID:
    """Store an uploaded file in the tenant's database and register its import (the
    API's upload and the web wizard's); a local copy is read for the header and rows."""
    with tempfile.NamedTemporaryFile(suffix=".upload") as local:
        stored = await files.save_file(
            conn,
            _file_name(upload),
            upload.content_type or "application/octet-stream",
            _pieces(upload, local),
            purpose="import",
            created_by=actor.user_id,
        )
        local.flush()
        return await store.create_import(
            conn,
            ct,
            actor,
            object=object,
            stored=stored,
            path=Path(local.name),
            mode=mode,
            key_field=key_field,
            options=options,
            mapping_name=mapping_name,
        )


@router.post("/imports", status_code=201)
async def upload(request: Request, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """Upload a file (multipart: `file`, `object`; optional `mode`, `key_field`,
    `encoding`, `sheet`, `date_order`, `time_zone`, `duplicates`, `blank_cells`, `limit`, `mapping` = a saved
    mapping's name): the import with its columns, row count and proposed mapping."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType("send the file as multipart/form-data")
    async with request.form(max_files=1, max_fields=len(_UPLOAD_FIELDS)) as form:
        unknown = set(form.keys()) - _UPLOAD_FIELDS
        if unknown:
            raise RecordInvalid(
                "unknown form fields",
                [FieldError(n[:63], "unknown-field", "not a field of an upload") for n in unknown],
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RecordInvalid("no file", [FieldError("file", "required", "send a file")])
        object_name = _text(form, "object", limit=63)
        if object_name is None:
            raise RecordInvalid("no object", [FieldError("object", "required", "name an object")])
        options: dict[str, Any] = {}
        for name in ("encoding", "sheet", "date_order", "time_zone", "duplicates", "blank_cells"):
            if (value := _text(form, name, limit=100)) is not None:
                options[name] = value
        if (limit := _text(form, "limit", limit=12)) is not None:
            options["limit"] = int(limit) if limit.isdigit() else limit
        async with state.tenant(identity) as session:
            store.require_importer(session.ct, session.actor)
            import_id = await store_upload(
                *session,
                upload,
                object=object_name,
                mode=_text(form, "mode", limit=16) or "create",
                key_field=_text(form, "key_field", limit=63),
                options=store.options_from_json(options),
                mapping_name=_text(form, "mapping", limit=100),
            )
            shown = await _shown(session, import_id)
    return JSONResponse(
        shown, status_code=201, headers={"Location": f"/api/v1/imports/{import_id}"}
    )


async def _shown(session: TenantSession, import_id: uuid.UUID) -> dict[str, Any]:
    """An import as shown, with the problems of its settings while it can still change."""
    conn, ct, actor = session
    row = await store.import_row(conn, ct, actor, import_id)
    problems = None
    if row.status in store.PREPARING and row.object in ct.objects:
        settings = store.settings_of(row)
        problems = store.settings_problems(ct, ct.object(row.object), actor, settings)
    return store.describe(row, problems)


@router.get("/imports")
async def list_imports(
    state: StateDep,
    identity: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=36)] = None,
) -> dict[str, Any]:
    """Imports newest first: yours, or everyone's for an administrator."""
    before = path_id(cursor, "import") if cursor else None
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        rows = await store.list_imports(conn, ct, actor, limit=limit, before=before)
    more = len(rows) == limit
    return {
        "imports": [store.describe(row) for row in rows],
        "next_cursor": str(rows[-1].id) if more else None,
    }


@router.get("/imports/{import_id}")
async def get_import(import_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """An import: settings, the problems of its mapping, progress (done/total), counts."""
    async with state.tenant(identity, writes=False) as session:
        return await _shown(session, path_id(import_id, "import"))


@router.patch("/imports/{import_id}")
async def change_import(
    import_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Change `mapping`, `mode`, `key_field` or `options` before the real run."""
    body = await read_object(request, state.settings.max_body_bytes)
    found = path_id(import_id, "import")
    async with state.tenant(identity) as session:
        await store.change_import(session.conn, session.ct, session.actor, found, body)
        return await _shown(session, found)


async def _start(
    state: StateDep, identity: IdentityDep, import_id: str, *, dry: bool
) -> JSONResponse:
    found = path_id(import_id, "import")
    async with state.tenant(identity) as session:
        await store.begin_run(session.conn, session.ct, session.actor, found, dry=dry)
        job_id = await enqueue_run(session.conn, found, dry=dry)
        await store.set_job(session.conn, found, job_id)
        shown = await _shown(session, found)
    return JSONResponse(shown, status_code=202)


@router.post("/imports/{import_id}/dry-run", status_code=202)
async def dry_run(import_id: str, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """Try the import (its first `options.limit` rows) and keep what each row would do."""
    return await _start(state, identity, import_id, dry=True)


@router.post("/imports/{import_id}/run", status_code=202)
async def run(import_id: str, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """Run the import for real, in a job; follow it with GET."""
    return await _start(state, identity, import_id, dry=False)


@router.get("/imports/{import_id}/rows")
async def rows(
    import_id: str,
    state: StateDep,
    identity: IdentityDep,
    run: Annotated[str | None, Query(max_length=4)] = None,
    action: Annotated[str | None, Query(max_length=8)] = None,
    cursor: Annotated[str | None, Query(max_length=12)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """What each row did (`run` dry or real, default the last run's), by `action`
    (create, update, skip, error), in file order; page with `cursor`."""
    if run is not None and run not in ("dry", "real"):
        raise RecordInvalid("run is invalid", [FieldError("run", "choice", "dry or real")])
    if action is not None and action not in _ACTIONS:
        raise RecordInvalid(
            "action is invalid", [FieldError("action", "choice", "/".join(_ACTIONS))]
        )
    if cursor is not None and not cursor.isdigit():
        raise RecordInvalid("cursor is invalid", [FieldError("cursor", "type", "a row number")])
    found = path_id(import_id, "import")
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        row = await store.import_row(conn, ct, actor, found)
        which = run or ("dry" if row.dry_run else "real")
        r = import_rows
        query = (
            sa.select(r)
            .where(r.c.import_id == found, r.c.run == which)
            .order_by(r.c.row_no)
            .limit(limit)
        )
        if action is not None:
            query = query.where(r.c.action == action)
        if cursor is not None:
            query = query.where(r.c.row_no > int(cursor))
        page = list(await conn.execute(query))
    return {
        "run": which,
        "rows": [
            {
                "row": item.row_no,
                "action": item.action,
                "record_id": str(item.record_id) if item.record_id else None,
                "errors": item.errors or [],
                "duplicates": item.duplicates,
                "revert": item.revert,
                "revert_errors": item.revert_errors,
            }
            for item in page
        ],
        "next_cursor": str(page[-1].row_no) if len(page) == limit else None,
    }


@router.get("/imports/{import_id}/errors")
async def error_file(import_id: str, state: StateDep, identity: IdentityDep) -> Response:
    """The real run's refused rows as CSV: their cells, then `row` and `errors`."""
    found = path_id(import_id, "import")
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        row = await store.import_row(conn, ct, actor, found)
        if row.error_file_id is None:
            if row.status in ("done", "failed", "cancelled", "reverting", "reverted"):
                raise NotFound("no row of this import was refused")
            raise Conflict(f"the import is {row.status}; its error report comes when it ends")
        info = await files.file_info(conn, row.error_file_id)

    async def content() -> AsyncIterator[bytes]:
        async with state.db.tenant(identity.storage, writes=False) as conn:
            async for piece in files.read_file(conn, info.id):
                yield piece

    return StreamingResponse(
        content(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_ascii(info.name)}"'},
    )


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and c.isprintable() and c != '"' else "_" for c in name)


@router.post("/imports/{import_id}/revert", status_code=202)
async def revert(
    import_id: str, state: StateDep, identity: IdentityDep, force: bool = False
) -> JSONResponse:
    """Take back what the import wrote (records it created deleted, updated ones restored);
    records changed since are left alone and reported unless `force`."""
    found = path_id(import_id, "import")
    async with state.tenant(identity) as session:
        await store.begin_revert(session.conn, session.ct, session.actor, found)
        job_id = await enqueue_revert(session.conn, found, session.actor, force=force)
        await store.set_job(session.conn, found, job_id)
        shown = await _shown(session, found)
    return JSONResponse(shown, status_code=202)


@router.post("/imports/{import_id}/cancel")
async def cancel(import_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Stop the import (a running one after its current chunk; what it wrote stays)."""
    found = path_id(import_id, "import")
    async with state.tenant(identity) as session:
        await store.cancel_import(session.conn, session.ct, session.actor, found)
        return await _shown(session, found)


@router.get("/import-mappings")
async def list_mappings(
    state: StateDep,
    identity: IdentityDep,
    object: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """Saved mappings, of one `object` or all."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        return {"mappings": await store.list_mappings(conn, ct, actor, object)}


@router.post("/import-mappings", status_code=201)
async def save_mapping(request: Request, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Keep a mapping: {"object", "name", "mapping": [{"column", "field", "lookup_key"}]}."""
    body = await read_object(request, state.settings.max_body_bytes)
    unknown = set(body) - {"object", "name", "mapping"}
    if unknown:
        raise RecordInvalid(
            "unknown keys",
            [FieldError(str(n)[:63], "unknown-field", "not a key of a mapping") for n in unknown],
        )
    name, object_name = body.get("name"), body.get("object")
    for key, value in (("name", name), ("object", object_name)):
        if not isinstance(value, str):
            raise RecordInvalid(f"{key} is required", [FieldError(key, "required", "a text")])
    mapping = store.mapping_from_json(body.get("mapping"))
    async with state.tenant(identity) as (conn, ct, actor):
        mapping_id = await store.save_mapping(
            conn, ct, actor, object=str(object_name), name=str(name), mapping=mapping
        )
    return {"id": str(mapping_id), "object": object_name, "name": name}


@router.delete("/import-mappings/{mapping_id}", status_code=204)
async def delete_mapping(mapping_id: str, state: StateDep, identity: IdentityDep) -> Response:
    """Remove a saved mapping (its author or an administrator)."""
    async with state.tenant(identity) as (conn, ct, actor):
        await store.delete_mapping(conn, ct, actor, path_id(mapping_id, "mapping"))
    return Response(status_code=204)
