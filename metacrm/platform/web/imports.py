"""The import wizard: upload a file, map its columns, dry-run, run with a progress bar, revert.

The pages call the runtime's import services (`runtime.data.imports`, the jobs of
`runtime.data.import_jobs`) as the REST API does; the dry run and the run are jobs the
worker takes, and the page follows them by polling a fragment (htmx).
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from metacrm.errors import FieldError, MetacrmError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.model import FieldDef, link_target
from metacrm.metadata.names import API_NAME_PATTERN
from metacrm.platform.api import imports as imports_api
from metacrm.platform.api.common import path_id
from metacrm.platform.state import StateDep
from metacrm.platform.web.records import object_of
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import colleague_name, object_label
from metacrm.platform.web.texts import word
from metacrm.platform.web.values import instant
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import files
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data import imports as store
from metacrm.runtime.data.convert import matchable
from metacrm.runtime.data.import_jobs import enqueue_revert, enqueue_run
from metacrm.runtime.data.import_pipeline import DUPLICATE_CODES
from metacrm.runtime.data.mapping import ColumnMapping
from metacrm.runtime.data.sources import SourceProblem, open_table
from metacrm.runtime.permissions import field_access, has_platform_permission, object_permission
from metacrm.runtime.tenant_tables import users
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: Rows of the report a page shows; the next ones follow with "Next".
PAGE = 50
#: Sample values shown per column on the mapping step.
SAMPLES = 3
#: Encodings the upload form offers besides detection.
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "utf-16")
#: Statuses during which the page polls the progress fragment.
WORKING = ("dry-running", "running", "reverting")
#: Confirmations a redirect may ask the page to show (only these words, nothing echoed).
NOTICES = frozenset({"saved", "mapping-saved", "mapping-used", "cancelled"})
#: The upload form's fields besides the file.
_UPLOAD_OPTIONS = (
    "mode",
    "key_field",
    "date_order",
    "time_zone",
    "encoding",
    "sheet",
    "duplicates",
    "blank_cells",
)
#: The upload form's fields that are options of the import (`ImportOptions`).
_READ_OPTIONS = _UPLOAD_OPTIONS[2:]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def may_import(ct: CompiledTenant, actor: Actor, object_name: str) -> bool:
    """Whether the Import link shows: import_data, and creating or editing the object."""
    if not has_platform_permission(ct.model, actor, "import_data"):
        return False
    permission = object_permission(ct.model, actor, object_name)
    return actor.is_admin or permission.create or permission.edit


def _importer(ws: Workspace, object_name: str) -> CompiledObject:
    """The object to import into, for a user who may (403 otherwise)."""
    co = object_of(ws, object_name)
    store.require_importer(ws.ct, ws.actor)
    if not may_import(ws.ct, ws.actor, co.name):
        raise PermissionDenied(f"your role may neither create nor edit {co.name} records")
    return co


def _editable(ct: CompiledTenant, co: CompiledObject, actor: Actor) -> dict[str, FieldDef]:
    return {
        name: fd
        for name, fd in co.writable.items()
        if field_access(ct.model, actor, co.name, name) == "edit"
    }


def _label(fd: FieldDef, language: str) -> str:
    return text(fd.label, [language, "en"]) or fd.api_name


def _key_fields(co: CompiledObject, language: str) -> list[dict[str, str]]:
    """The fields an update may find its records by: the id, external ids, unique fields."""
    found = [{"name": "id", "label": "id"}]
    for name, fd in co.fields.items():
        if name in co.external_ids or getattr(fd, "unique", False):
            found.append({"name": name, "label": f"{_label(fd, language)} ({name})"})
    return found


def _lookup_keys(ws: Workspace, fd: FieldDef) -> list[dict[str, str]]:
    """What a lookup column may be matched on: its target's name field, external ids and
    unique fields the user may read (the empty key: the id or the name)."""
    target = link_target(fd)
    if target is None or target not in ws.ct.objects:
        return []
    co = ws.ct.object(target)
    names = [co.obj.record_name_field] if co.obj.record_name_field else []
    names += [
        n
        for n, f in co.fields.items()
        if n not in names and (n in co.external_ids or getattr(f, "unique", False))
    ]
    language = ws.actor.language
    return [
        {"name": n, "label": f"{_label(co.fields[n], language)} ({n})"}
        for n in names
        if n in co.fields
        and matchable(co.fields[n])
        and field_access(ws.ct.model, ws.actor, target, n) != "hidden"
    ]


def _messages(error: MetacrmError) -> list[str]:
    return [f"{e.field}: {e.message}" for e in error.errors] or [error.detail]


# ----------------------------------------------------------------------------- upload


async def _upload_page(
    ws: Workspace,
    co: CompiledObject,
    *,
    problems: list[str] | None = None,
    given: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    language = ws.actor.language
    context = {
        "object": co.name,
        "label": object_label(ws.ct, co.name, language),
        "plural": object_label(ws.ct, co.name, language, plural=True),
        "modes": store.MODES,
        "date_orders": store.DATE_ORDERS,
        "duplicate_choices": store.DUPLICATE_HANDLING,
        "blank_choices": store.BLANK_CELLS,
        "encodings": ENCODINGS,
        "key_fields": _key_fields(co, language),
        "given": {k: "" for k in _UPLOAD_OPTIONS} | (given or {}),
        "problems": problems or [],
        "max_mb": max(1, ws.state.settings.import_max_bytes // 1_048_576),
    }
    return await ws.page("import_upload.html", context, status=status)


@router.get("/o/{object_name}/import")
async def upload_page(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """The first step: a file (CSV or .xlsx) and how to read and apply it."""
    async with workspace(request, state, identity) as ws:
        return await _upload_page(ws, _importer(ws, object_name))


def _form_text(form: FormData, name: str, limit: int = 100) -> str | None:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) and value.strip() else None


@router.post("/o/{object_name}/import")
async def upload(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Store the file and register the import; on to its mapping (or back with the reasons)."""
    if not re.fullmatch(API_NAME_PATTERN, object_name):
        raise NotFound(f"no object named {object_name[:64]!r}")
    form = await request.form()
    given = {k: v for k in _UPLOAD_OPTIONS if (v := _form_text(form, k))}
    options: dict[str, Any] = {k: given[k] for k in _READ_OPTIONS if k in given}
    file = form.get("file")
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = _importer(ws, object_name)
            if not isinstance(file, UploadFile) or not file.filename:
                raise RecordInvalid(
                    "no file",
                    [FieldError("file", "required", word("import_no_file", ws.actor.language))],
                )
            mode = given.get("mode", "create")
            import_id = await imports_api.store_upload(
                ws.conn,
                ws.ct,
                ws.actor,
                file,
                object=co.name,
                mode=mode,
                key_field=given.get("key_field") if mode != "create" else None,
                options=store.options_from_json(options),
            )
    except MetacrmError as error:
        if error.status not in (400, 409, 413, 422):
            raise
        async with workspace(request, state, identity) as ws:
            co = _importer(ws, object_name)
            return await _upload_page(
                ws, co, problems=_messages(error), given=given, status=error.status
            )
    return RedirectResponse(f"/app/imports/{import_id}", status_code=303)


# ------------------------------------------------------------------------ the import page


async def _samples(ws: Workspace, row: Any) -> list[list[str]]:
    """The first SAMPLES values of each column (CSV: read from the file's first chunk
    only, so a big file costs no more than a small one)."""
    found: list[list[str]] = [[] for _ in row.columns]
    with tempfile.NamedTemporaryFile(suffix=".sample") as local:
        async for piece in files.read_file(ws.conn, row.file_id):
            local.write(piece)
            if row.format == "csv":
                break
        local.flush()
        options = row.options or {}
        try:
            with open_table(
                Path(local.name),
                name=row.file_name,
                encoding=row.encoding if row.format == "csv" else None,
                sheet=options.get("sheet"),
            ) as table:
                for count, (_number, cells) in enumerate(table.rows()):
                    if count == SAMPLES:
                        break
                    for index, cell in enumerate(cells[: len(found)]):
                        if cell is not None and str(cell).strip():
                            found[index].append(str(cell)[:80])
        except (SourceProblem, UnicodeDecodeError):
            pass  # no samples: the dry run reports what cannot be read, row by row
    return found


def _problem_at(problems: list[FieldError]) -> tuple[dict[int, list[str]], list[str]]:
    """Problems of the settings: those of one mapping entry by its index, and the rest."""
    by_entry: dict[int, list[str]] = {}
    rest: list[str] = []
    for problem in problems:
        found = re.fullmatch(r"mapping/(\d+)/\w+", problem.field)
        if found:
            by_entry.setdefault(int(found.group(1)), []).append(problem.message)
        else:
            rest.append(f"{problem.field}: {problem.message}")
    return by_entry, rest


async def _mapping_step(
    ws: Workspace,
    co: CompiledObject,
    row: Any,
    settings: store.ImportSettings,
) -> dict[str, Any]:
    """The mapping form: each column with samples, its field and lookup key, problems."""
    language = ws.actor.language
    editable = _editable(ws.ct, co, ws.actor)
    fields = [{"name": n, "label": f"{_label(fd, language)} ({n})"} for n, fd in editable.items()]
    by_entry, rest = _problem_at(store.settings_problems(ws.ct, co, ws.actor, settings))
    samples = await _samples(ws, row)
    entries = []
    mapped: set[str] = set()
    for index, entry in enumerate(settings.mapping):
        fd = editable.get(entry.field or "")
        mapped.add(entry.field or "")
        entries.append(
            {
                "index": index,
                "column": entry.column,
                "field": entry.field or "",
                "lookup_key": entry.lookup_key or "",
                "choices": _lookup_keys(ws, fd) if fd is not None else [],
                "samples": samples[index] if index < len(samples) else [],
                "problems": by_entry.get(index, []),
            }
        )
    required = [
        _label(fd, language)
        for name, fd in editable.items()
        if getattr(fd, "required", False)
        and getattr(fd, "default", None) is None
        and name not in mapped
    ]
    saved = await store.list_mappings(ws.conn, ws.ct, ws.actor, co.name)
    return {
        "entries": entries,
        "fields": fields,
        "required_unmapped": required,
        "settings_problems": rest,
        "saved_mappings": [m["name"] for m in saved],
        "key_fields": _key_fields(co, language),
        "modes": store.MODES,
        "date_orders": store.DATE_ORDERS,
        "date_order": settings.options.date_order,
    }


def _split(item: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A report row's problems, and the duplicate candidates of a row written (or tried)."""
    problems = list(item.errors or [])
    candidates: list[dict[str, Any]] = []
    for entry in item.duplicates or []:
        # A skipped row keeps the duplicate problems that refused it; a written row, the
        # records it duplicates ({"record_id", "name", "rule", ...}).
        (candidates if "record_id" in entry else problems).append(entry)
    return problems, candidates


def _links(object_name: str, row: Any) -> list[dict[str, str]]:
    """The records a row duplicates, as links: the candidates kept for it, and those its
    duplicate problems name (their messages carry the ids the importer may read)."""
    problems, candidates = _split(row)
    found = {str(c["record_id"]): str(c.get("name") or "") for c in candidates}
    for error in problems:
        if error.get("code") in DUPLICATE_CODES:
            for record_id in _UUID.findall(str(error.get("message", ""))):
                found.setdefault(record_id, "")
    return [
        {"id": i, "name": name or i[:8], "url": f"/app/o/{object_name}/{i}"}
        for i, name in found.items()
    ]


async def _report(
    ws: Workspace, row: Any, run: str, *, errors_only: bool, after: int | None
) -> dict[str, Any]:
    """A page of what each row did (or would do) in `run`, with duplicates counted."""
    r = store.import_rows
    query = (
        sa.select(r.c.row_no, r.c.action, r.c.record_id, r.c.errors, r.c.duplicates)
        .where(r.c.import_id == row.id, r.c.run == run)
        .order_by(r.c.row_no)
        .limit(PAGE + 1)
    )
    if errors_only:
        query = query.where(r.c.action == "error")
    if after is not None:
        query = query.where(r.c.row_no > after)
    page = list(await ws.conn.execute(query))
    more = len(page) > PAGE
    shown = []
    for item in page[:PAGE]:
        problems = _split(item)[0]
        # A record a dry run "created" was rolled back: only a real run's records exist.
        linked = item.record_id is not None and (run == "real" or item.action != "create")
        shown.append(
            {
                "row": item.row_no,
                "action": item.action,
                "record_url": f"/app/o/{row.object}/{item.record_id}" if linked else None,
                "problems": [
                    {
                        "column": e.get("column") or "",
                        "field": e.get("field") or "",
                        "message": e.get("message") or "",
                    }
                    for e in problems
                ],
                "duplicates": _links(row.object, item),
            }
        )
    # Rows that duplicate a record: refused or skipped for it, or written with candidates.
    duplicates = 0
    counted = sa.select(r.c.errors, r.c.duplicates).where(
        r.c.import_id == row.id,
        r.c.run == run,
        sa.or_(r.c.action.in_(("error", "skip")), r.c.duplicates.is_not(None)),
    )
    for item in await ws.conn.execute(counted):
        problems, candidates = _split(item)
        duplicates += bool(candidates) or any(e.get("code") in DUPLICATE_CODES for e in problems)
    base = f"/app/imports/{row.id}"
    filters = {"errors": "1"} if errors_only else {}
    return {
        "run": run,
        "rows": shown,
        "duplicates": duplicates,
        "errors_only": errors_only,
        "next_url": f"{base}?{urlencode(filters | {'after': page[PAGE - 1].row_no})}"
        if more
        else None,
        "first_url": f"{base}?{urlencode(filters)}" if after is not None else None,
        "all_url": base,
        "errors_url": f"{base}?errors=1",
    }


def _progress(row: Any) -> dict[str, Any]:
    """Rows done of the rows the run takes (a dry run: its sample), as a share too."""
    total = row.total
    if row.status == "dry-running" or (row.dry_run and row.status == "checked"):
        total = min(row.total, (row.options or {}).get("limit", store.DRY_RUN_LIMIT))
    if row.status in ("reverting", "reverted"):
        done, total = row.reverted + row.revert_skipped, row.created + row.updated
    else:
        done = row.done
    percent = 100 if total == 0 else min(100, done * 100 // total)
    return {"done": done, "total": total, "percent": percent, "status": row.status}


def _created_url(row: Any) -> str | None:
    """The object's list filtered to the records the run created: made by the importer
    while it ran (the list filters by an expression; the ids may be too many for one)."""
    if row.dry_run or not row.created or row.started_at is None or row.finished_at is None:
        return None
    start = row.started_at.replace(microsecond=0)
    end = row.finished_at.replace(microsecond=0) + dt.timedelta(seconds=1)
    where = (
        f"created_by == '{row.created_by}'"
        f' and created_at >= DATETIMEVALUE("{start:%Y-%m-%d %H:%M:%S}")'
        f' and created_at <= DATETIMEVALUE("{end:%Y-%m-%d %H:%M:%S}")'
    )
    return f"/app/o/{row.object}?{urlencode({'where': where})}"


async def _import_page(
    ws: Workspace,
    import_id: uuid.UUID,
    *,
    errors_only: bool = False,
    after: int | None = None,
    notice: str | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    row = await store.import_row(ws.conn, ws.ct, ws.actor, import_id)
    language = ws.actor.language
    co = ws.ct.objects.get(row.object)
    context: dict[str, Any] = {
        "imp": row,
        "object": row.object,
        "label": object_label(ws.ct, row.object, language) if co else row.object,
        "plural": object_label(ws.ct, row.object, language, plural=True) if co else row.object,
        "status_text": word(f"import_status_{row.status}", language),
        "progress": _progress(row),
        "working": row.status in WORKING,
        "notice": notice if notice in NOTICES else None,
        "problems": problems or [],
        "mapping": None,
        "report": None,
        "created_url": None,
        "can_revert": row.status in store.REVERTIBLE and not row.dry_run,
        "created_at": instant(row.created_at),
    }
    if row.status in store.PREPARING and co is not None:
        context["mapping"] = await _mapping_step(ws, co, row, store.settings_of(row))
    if row.status == "checked" or (row.status not in WORKING and row.status not in store.PREPARING):
        run = "dry" if row.dry_run else "real"
        context["report"] = await _report(ws, row, run, errors_only=errors_only, after=after)
        context["created_url"] = _created_url(row)
    return await ws.page("import.html", context, status=status)


@router.get("/imports/{import_id}")
async def import_page(
    import_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    errors: str = "",
    after: int | None = None,
    notice: str = "",
) -> Response:
    """An import at its step: mapping and dry run, progress, or the result."""
    async with workspace(request, state, identity) as ws:
        return await _import_page(
            ws,
            path_id(import_id, "import"),
            errors_only=errors == "1",
            after=after,
            notice=notice[:20] or None,
        )


@router.get("/imports/{import_id}/progress")
async def progress(
    import_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """The progress bar while a run works (htmx polls it); once the run ended, the
    whole page again (htmx reloads it)."""
    async with workspace(request, state, identity) as ws:
        row = await store.import_row(ws.conn, ws.ct, ws.actor, path_id(import_id, "import"))
        headers = {} if row.status in WORKING else {"HX-Refresh": "true"}
        context = {"imp": row, "progress": _progress(row), "working": row.status in WORKING}
        return ws.fragment("import_progress.html", context, headers=headers)


def _form_mapping(form: FormData, columns: list[str]) -> list[ColumnMapping]:
    """The mapping the form describes: `field.{i}` and `key.{i}` per column of the file."""
    found = []
    for index, column in enumerate(columns):
        field = form.get(f"field.{index}")
        key = form.get(f"key.{index}")
        found.append(
            ColumnMapping(
                column,
                field[:63] if isinstance(field, str) and field else None,
                key[:63] if isinstance(key, str) and key and field else None,
            )
        )
    return found


def _changes(form: FormData, row: Any) -> dict[str, Any]:
    """The settings the mapping form sets, as `change_import` takes them."""
    mode = _form_text(form, "mode", 16) or row.mode
    changes: dict[str, Any] = {
        "mapping": store.mapping_to_json(_form_mapping(form, list(row.columns))),
        "mode": mode,
        "key_field": _form_text(form, "key_field", 63) if mode != "create" else None,
    }
    if (order := _form_text(form, "date_order", 8)) is not None:
        changes["options"] = {"date_order": order}
    return changes


@router.post("/imports/{import_id}/mapping")
async def save_settings(
    import_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Keep the mapping form's settings; then, per the button: only that, also save the
    mapping under a name, take a saved mapping instead, or start the dry run."""
    form = await request.form()
    action = form.get("action")
    found = path_id(import_id, "import")
    notice = "saved"
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            row = await store.import_row(ws.conn, ws.ct, ws.actor, found)
            changes = _changes(form, row)
            if action == "use_saved":
                name = _form_text(form, "saved") or ""
                saved = {m.column: m for m in await store.saved_mapping(ws.conn, row.object, name)}
                changes["mapping"] = store.mapping_to_json(
                    [saved.get(c, ColumnMapping(c, None)) for c in row.columns]
                )
                notice = "mapping-used"
            await store.change_import(ws.conn, ws.ct, ws.actor, found, changes)
            if action == "save_as":
                await store.save_mapping(
                    ws.conn,
                    ws.ct,
                    ws.actor,
                    object=row.object,
                    name=_form_text(form, "mapping_name") or "",
                    mapping=store.mapping_from_json(changes["mapping"]),
                )
                notice = "mapping-saved"
    except NotFound:
        raise
    except MetacrmError as error:
        if error.status not in (400, 409, 422):
            raise
        async with workspace(request, state, identity) as ws:
            return await _import_page(ws, found, problems=_messages(error), status=error.status)
    if action == "dry_run":
        return await _start(request, state, identity, found, dry=True)
    return RedirectResponse(f"/app/imports/{found}?notice={notice}", status_code=303)


async def _start(
    request: Request, state: StateDep, identity: WebIdentityDep, found: uuid.UUID, *, dry: bool
) -> Response:
    """Start the dry run or the real run (a job); a refusal redraws the page with it."""

    async def work(ws: Workspace) -> None:
        await store.begin_run(ws.conn, ws.ct, ws.actor, found, dry=dry)
        await store.set_job(ws.conn, found, await enqueue_run(ws.conn, found, dry=dry))

    return await _act(request, state, identity, found, work, then=f"/app/imports/{found}")


async def _act(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    found: uuid.UUID,
    work: Callable[[Workspace], Awaitable[None]],
    *,
    then: str,
) -> Response:
    """Do `work` on the import in a write transaction, then on to `then`; a refusal
    (400, 409, 422) redraws the import's page with its reasons."""
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            await work(ws)
    except NotFound:
        raise
    except MetacrmError as error:
        if error.status not in (400, 409, 422):
            raise
        async with workspace(request, state, identity) as ws:
            return await _import_page(ws, found, problems=_messages(error), status=error.status)
    return RedirectResponse(then, status_code=303)


@router.post("/imports/{import_id}/run")
async def run(
    import_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Run the import for real, as its dry run tried it."""
    return await _start(request, state, identity, path_id(import_id, "import"), dry=False)


@router.post("/imports/{import_id}/revert")
async def revert(
    import_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Take back what the import wrote (after the page's confirmation)."""
    found = path_id(import_id, "import")

    async def work(ws: Workspace) -> None:
        await store.begin_revert(ws.conn, ws.ct, ws.actor, found)
        await store.set_job(ws.conn, found, await enqueue_revert(ws.conn, found, ws.actor))

    return await _act(request, state, identity, found, work, then=f"/app/imports/{found}")


@router.post("/imports/{import_id}/cancel")
async def cancel(
    import_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Give up an import not yet run (or stop a running one after its current chunk)."""
    found = path_id(import_id, "import")

    async def work(ws: Workspace) -> None:
        await store.cancel_import(ws.conn, ws.ct, ws.actor, found)

    then = f"/app/imports/{found}?notice=cancelled"
    return await _act(request, state, identity, found, work, then=then)


@router.get("/imports/{import_id}/errors")
async def error_report(import_id: str, state: StateDep, identity: WebIdentityDep) -> Response:
    """The error report: the refused rows with their reasons (CSV), as the API gives it."""
    return await imports_api.error_file(import_id, state, identity)


@router.get("/imports/{import_id}/keys/{index}")
async def lookup_keys(
    import_id: str, index: int, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """The lookup-key choice of a column for the field just chosen (htmx swaps it in)."""
    async with workspace(request, state, identity) as ws:
        row = await store.import_row(ws.conn, ws.ct, ws.actor, path_id(import_id, "import"))
        co = ws.ct.objects.get(row.object)
        chosen = request.query_params.get(f"field.{index}", "")[:63]
        fd = _editable(ws.ct, co, ws.actor).get(chosen) if co is not None else None
        keys = _lookup_keys(ws, fd) if fd is not None else []
        entry = {"index": index, "choices": keys, "lookup_key": "", "column": ""}
        return ws.fragment("import_key.html", {"entry": entry})


# ---------------------------------------------------------------------- the imports list


@router.get("/imports")
async def imports_page(
    request: Request, state: StateDep, identity: WebIdentityDep, before: str = ""
) -> Response:
    """The user's imports, newest first (an administrator's: everyone's)."""
    async with workspace(request, state, identity) as ws:
        language = ws.actor.language
        since = path_id(before[:36], "import") if before else None
        rows = await store.list_imports(ws.conn, ws.ct, ws.actor, limit=PAGE, before=since)
        people = {r.created_by for r in rows}
        names = (
            {
                u.id: colleague_name(u.full_name, u.email)
                for u in await ws.conn.execute(
                    sa.select(users.c.id, users.c.full_name, users.c.email).where(
                        users.c.id.in_(people)
                    )
                )
            }
            if people
            else {}
        )
        shown = [
            {
                "id": str(r.id),
                "file": r.file_name,
                "object": object_label(ws.ct, r.object, language, plural=True)
                if r.object in ws.ct.objects
                else r.object,
                "status": word(f"import_status_{r.status}", language),
                "dry_run": r.dry_run,
                "total": r.total,
                "created": r.created,
                "updated": r.updated,
                "skipped": r.skipped,
                "failed": r.failed,
                "who": names.get(r.created_by, ""),
                "when": instant(r.created_at),
            }
            for r in rows
        ]
        next_url = f"/app/imports?before={rows[-1].id}" if len(rows) == PAGE else None
        context = {
            "imports": shown,
            "next_url": next_url,
            "first_url": "/app/imports" if before else None,
        }
        return await ws.page("imports.html", context)
