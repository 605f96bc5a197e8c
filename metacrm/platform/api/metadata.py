"""Metadata endpoints: objects and fields, plans, versions and the published schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse

from metacrm.errors import Conflict, FieldError, MetadataInvalid, NotFound, PermissionDenied
from metacrm.metadata.merge import Change, merge_document
from metacrm.metadata.model import DOCUMENT_KINDS, MetadataModel, ObjectDef, label_text
from metacrm.metadata.schema import metadata_schema, parse, parse_field
from metacrm.metadata.store import list_versions
from metacrm.platform.body import read_object
from metacrm.platform.state import AdminDep, AppState, IdentityDep, StateDep
from metacrm.runtime.actor import Actor
from metacrm.runtime.changes import Applied, apply_change, plan_change
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.describe import describe_document, describe_object
from metacrm.runtime.permissions import visible_definition

router = APIRouter(prefix="/metadata", tags=["metadata"])
Confirm = Annotated[bool, Query(description="Confirm a plan that destroys or narrows data.")]


def dump(document: Any) -> dict[str, Any]:
    return document.model_dump(mode="json", exclude_defaults=True)


def _described(ct: CompiledTenant, actor: Actor, name: str) -> dict[str, Any]:
    """An object as the caller may know it: unreadable objects, hidden fields and every
    condition naming a hidden field are absent."""
    shown = describe_object(ct, actor, _object(ct.model, name))
    if shown is None:
        raise NotFound(f"no object named {name[:64]!r}")
    return shown


def _object(model: MetadataModel, name: str) -> ObjectDef:
    try:
        return model.object(name)
    except KeyError:
        raise NotFound(f"no object named {name[:64]!r}") from None


async def _apply(
    state: AppState, identity: Any, change: Change, *, confirm: bool, source: str = "api"
) -> Applied:
    settings = state.settings
    return await apply_change(
        lambda: state.db.tenant(identity.storage),
        change,
        confirm=confirm,
        author_id=identity.user_id,
        source=source,
        lock_timeout_ms=settings.lock_timeout_ms,
        retries=settings.ddl_retries,
    )


def _applied(applied: Applied, status: int = 200, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {**extra, "version": applied.version, "plan": applied.plan.to_dict()}, status_code=status
    )


@router.get("/schema")
async def get_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every metadata document must satisfy."""
    return metadata_schema()


@router.get("/objects")
async def list_objects(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (_conn, ct, actor):
        shown = [visible_definition(ct, actor, o) for o in ct.model.objects]
        return {
            "version": ct.version,
            "objects": [
                {
                    "api_name": o.api_name,
                    "label": label_text(o.label, actor.language, o.api_name),
                    "fields": len(o.fields),
                }
                for o in shown
                if o is not None
            ],
        }


@router.post("/objects", status_code=201)
async def create_object(request: Request, state: StateDep, identity: AdminDep) -> JSONResponse:
    obj = parse(ObjectDef, await read_object(request, state.settings.max_body_bytes))

    def change(model: MetadataModel) -> MetadataModel:
        if model.has_object(obj.api_name):
            raise Conflict(f"object {obj.api_name!r} exists already; PUT it to change it")
        return model.with_object(obj)

    applied = await _apply(state, identity, change, confirm=False)
    return _applied(applied, 201, object=dump(obj))


@router.get("/objects/{object_name}")
async def get_object(object_name: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (_conn, ct, actor):
        return _described(ct, actor, object_name)


@router.put("/objects/{object_name}")
async def replace_object(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: AdminDep,
    confirm: Confirm = False,
) -> JSONResponse:
    """Replace an object's whole definition (fields left out are dropped, with confirm)."""
    obj = parse(ObjectDef, await read_object(request, state.settings.max_body_bytes))
    if obj.api_name != object_name:
        raise MetadataInvalid(
            "api_name is immutable",
            [FieldError("api_name", "immutable", "api_name must match the URL")],
        )

    def change(model: MetadataModel) -> MetadataModel:
        _object(model, object_name)
        return model.with_object(obj)

    return _applied(await _apply(state, identity, change, confirm=confirm), object=dump(obj))


@router.delete("/objects/{object_name}")
async def delete_object(
    object_name: str, state: StateDep, identity: AdminDep, confirm: Confirm = False
) -> JSONResponse:
    def change(model: MetadataModel) -> MetadataModel:
        _object(model, object_name)
        return model.without_object(object_name)

    return _applied(await _apply(state, identity, change, confirm=confirm))


@router.get("/objects/{object_name}/fields")
async def list_fields(object_name: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (_conn, ct, actor):
        return {"fields": _described(ct, actor, object_name).get("fields", [])}


@router.post("/objects/{object_name}/fields", status_code=201)
async def add_field(
    object_name: str, request: Request, state: StateDep, identity: AdminDep
) -> JSONResponse:
    field = parse_field(await read_object(request, state.settings.max_body_bytes))

    def change(model: MetadataModel) -> MetadataModel:
        obj = _object(model, object_name)
        if obj.has_field(field.api_name):
            raise Conflict(f"{object_name}.{field.api_name} exists already; PATCH it to change it")
        return model.with_object(obj.model_copy(update={"fields": [*obj.fields, field]}))

    return _applied(await _apply(state, identity, change, confirm=False), 201, field=dump(field))


@router.get("/objects/{object_name}/fields/{field_name}")
async def get_field(
    object_name: str, field_name: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (_conn, ct, actor):
        fields = _described(ct, actor, object_name).get("fields", [])
        found = next((f for f in fields if f["api_name"] == field_name), None)
        if found is None:
            raise NotFound(f"{object_name} has no field {field_name[:64]!r}")
        return found


@router.patch("/objects/{object_name}/fields/{field_name}")
async def change_field(
    object_name: str,
    field_name: str,
    request: Request,
    state: StateDep,
    identity: AdminDep,
    confirm: Confirm = False,
) -> JSONResponse:
    """Change some properties of a field; the rest stay as they are."""
    patch = await read_object(request, state.settings.max_body_bytes)
    if "api_name" in patch and patch["api_name"] != field_name:
        raise MetadataInvalid(
            "api_name is immutable",
            [FieldError("api_name", "immutable", "a field cannot be renamed")],
        )
    result: dict[str, Any] = {}

    def change(model: MetadataModel) -> MetadataModel:
        obj = _object(model, object_name)
        if not obj.has_field(field_name):
            raise NotFound(f"{object_name} has no field {field_name[:64]!r}")
        new = parse_field(dump(obj.field(field_name)) | patch)
        result["field"] = dump(new)
        fields = [new if f.api_name == field_name else f for f in obj.fields]
        return model.with_object(obj.model_copy(update={"fields": fields}))

    applied = await _apply(state, identity, change, confirm=confirm)
    return _applied(applied, **result)


@router.delete("/objects/{object_name}/fields/{field_name}")
async def delete_field(
    object_name: str, field_name: str, state: StateDep, identity: AdminDep, confirm: Confirm = False
) -> JSONResponse:
    def change(model: MetadataModel) -> MetadataModel:
        obj = _object(model, object_name)
        if not obj.has_field(field_name):
            raise NotFound(f"{object_name} has no field {field_name[:64]!r}")
        fields = [f for f in obj.fields if f.api_name != field_name]
        return model.with_object(obj.model_copy(update={"fields": fields}))

    return _applied(await _apply(state, identity, change, confirm=confirm))


@router.post("/plan")
async def plan(request: Request, state: StateDep, identity: AdminDep) -> dict[str, Any]:
    """The plan that `POST /metadata/apply` would run for this document; nothing changes."""
    change = merge_document(await read_object(request, state.settings.max_body_bytes * 16))
    async with state.tenant(identity, writes=False) as (conn, _ct, _actor):
        _new, proposed = await plan_change(conn, change)
    return proposed.to_dict()


@router.post("/apply")
async def apply(
    request: Request, state: StateDep, identity: AdminDep, confirm: Confirm = False
) -> JSONResponse:
    """Upsert the objects of a `{"objects": [...]}` document as one plan."""
    change = merge_document(await read_object(request, state.settings.max_body_bytes * 16))
    return _applied(await _apply(state, identity, change, confirm=confirm))


@router.get("/versions")
async def versions(
    state: StateDep, identity: AdminDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (conn, _ct, _actor):
        return {"versions": [v.as_dict() for v in await list_versions(conn, limit=limit)]}


def _document_routes(kind_name: str, attribute: str, cls: type) -> None:
    """GET/POST /metadata/{kind} and GET/PUT/DELETE /metadata/{kind}/{api_name}."""

    def _may_read(actor: Any) -> None:
        # Roles and sharing rules describe who sees what: administrators only.
        if kind_name in ("roles", "sharing-rules") and not actor.is_admin:
            raise PermissionDenied(f"only administrators may read {kind_name}")

    def _get(model: MetadataModel, name: str) -> Any:
        try:
            return model.document(attribute, name)
        except KeyError:
            raise NotFound(f"no {kind_name} document named {name[:64]!r}") from None

    async def list_documents(
        state: StateDep, identity: IdentityDep, object: str | None = None
    ) -> dict[str, Any]:
        async with state.tenant(identity, writes=False) as (_conn, ct, actor):
            _may_read(actor)
            docs = ct.model.documents(attribute)
            if object is not None:
                docs = [d for d in docs if getattr(d, "object", None) == object]
            shown = [describe_document(ct, actor, attribute, d) for d in docs]
            return {kind_name: [d for d in shown if d is not None]}

    async def create_document(
        request: Request, state: StateDep, identity: AdminDep
    ) -> JSONResponse:
        doc: Any = parse(cls, await read_object(request, state.settings.max_body_bytes))

        def change(model: MetadataModel) -> MetadataModel:
            if any(d.api_name == doc.api_name for d in model.documents(attribute)):
                raise Conflict(f"{kind_name} {doc.api_name!r} exists already; PUT it to change it")
            return model.with_document(attribute, doc)

        return _applied(
            await _apply(state, identity, change, confirm=False), 201, document=dump(doc)
        )

    async def get_document(api_name: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
        async with state.tenant(identity, writes=False) as (_conn, ct, actor):
            _may_read(actor)
            shown = describe_document(ct, actor, attribute, _get(ct.model, api_name))
            if shown is None:
                raise NotFound(f"no {kind_name} document named {api_name[:64]!r}")
            return shown

    async def replace_document(
        api_name: str,
        request: Request,
        state: StateDep,
        identity: AdminDep,
        confirm: Confirm = False,
    ) -> JSONResponse:
        doc: Any = parse(cls, await read_object(request, state.settings.max_body_bytes))
        if doc.api_name != api_name:
            raise MetadataInvalid(
                "api_name is immutable",
                [FieldError("api_name", "immutable", "api_name must match the URL")],
            )

        def change(model: MetadataModel) -> MetadataModel:
            _get(model, api_name)
            return model.with_document(attribute, doc)

        return _applied(await _apply(state, identity, change, confirm=confirm), document=dump(doc))

    async def delete_document(
        api_name: str, state: StateDep, identity: AdminDep, confirm: Confirm = False
    ) -> JSONResponse:
        def change(model: MetadataModel) -> MetadataModel:
            _get(model, api_name)
            return model.without_document(attribute, api_name)

        return _applied(await _apply(state, identity, change, confirm=confirm))

    path = f"/{kind_name}"
    router.add_api_route(path, list_documents, methods=["GET"], name=f"list_{attribute}")
    router.add_api_route(
        path, create_document, methods=["POST"], status_code=201, name=f"create_{attribute}"
    )
    router.add_api_route(
        path + "/{api_name}", get_document, methods=["GET"], name=f"get_{attribute}"
    )
    router.add_api_route(
        path + "/{api_name}", replace_document, methods=["PUT"], name=f"replace_{attribute}"
    )
    router.add_api_route(
        path + "/{api_name}", delete_document, methods=["DELETE"], name=f"delete_{attribute}"
    )


for _kind_name, (_attribute, _cls) in DOCUMENT_KINDS.items():
    _document_routes(_kind_name, _attribute, _cls)
