"""Pack endpoints (/packs) and metadata history (/metadata: version diffs, rollback,
export, impact).

A pack travels as a JSON bundle `{"format": "metacrm-pack/1", "files": {path: content}}`
or as a zip (`Content-Type: application/zip`); `?example=crm-core` names a bundled one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from metacrm.errors import FieldError, MetadataInvalid, NotFound
from metacrm.metadata.diff import diff
from metacrm.metadata.merge import merge_document
from metacrm.metadata.pack_upgrade import export_files
from metacrm.metadata.packs import (
    Pack,
    examples_dir,
    load_pack,
    load_path,
    pack_schema,
    read_bundle,
    read_zip,
    to_bundle,
)
from metacrm.metadata.store import current_version, load_model
from metacrm.platform.body import read_body, read_json, read_object
from metacrm.platform.state import AdminDep, AppState, StateDep
from metacrm.runtime import packs as installer
from metacrm.runtime.changes import propose_change
from metacrm.runtime.tenant_tables import create_tenant_tables

router = APIRouter(prefix="/packs", tags=["packs"])
history = APIRouter(prefix="/metadata", tags=["metadata"])
Confirm = Annotated[bool, Query(description="Confirm a plan that destroys or narrows data.")]
Example = Annotated[str | None, Query(description="The name of a bundled example pack.")]


def _limit(state: AppState) -> int:
    return state.settings.max_body_bytes * 32


async def _read_pack(request: Request, state: AppState, example: str | None) -> Pack:
    if example is not None:
        folder = examples_dir() / example
        if not example.replace("-", "").isalnum() or not (folder / "pack.json").is_file():
            raise NotFound(f"no bundled example pack named {example[:64]!r}")
        return load_path(folder, partial=True)
    if request.headers.get("content-type", "").startswith("application/zip"):
        return load_pack(read_zip(await read_body(request, _limit(state))), partial=True)
    return load_pack(read_bundle(await read_json(request, _limit(state))), partial=True)


async def _run(
    state: AppState, identity: Any, action: str, pack: Pack | None = None, **options: Any
) -> dict[str, Any]:
    outcome = await installer.run_action(
        lambda: state.db.tenant(identity.storage),
        action,
        pack,
        author_id=identity.user_id,
        **options,
    )
    return outcome.as_dict()


async def _plan(state: AppState, identity: Any, action: str, pack: Pack | None = None, **kw: Any):
    async with state.db.tenant(identity.storage) as conn:
        await create_tenant_tables(conn)
    async with state.db.tenant(identity.storage, writes=False) as conn:
        return (await installer.plan_pack(conn, action, pack, **kw)).as_dict()


# ---------------------------------------------------------------- packs


@router.get("")
async def list_packs(state: StateDep, identity: AdminDep) -> dict[str, Any]:
    """The packs installed in the tenant."""
    async with state.db.tenant(identity.storage) as conn:
        await create_tenant_tables(conn)
        installed = await installer.installed_packs(conn)
    return {"packs": [p.as_dict() for p in installed.values()]}


@router.get("/schema")
async def get_schema() -> dict[str, Any]:
    """The JSON Schema of every kind of file a pack holds."""
    return pack_schema()


@router.get("/examples")
async def list_examples(identity: AdminDep) -> dict[str, Any]:
    """The example packs shipped with metacrm."""
    out = []
    for folder in sorted(examples_dir().iterdir()):
        if (folder / "pack.json").is_file():
            manifest = load_path(folder).manifest
            out.append(manifest.model_dump(mode="json", exclude_defaults=True))
    return {"examples": out}


@router.post("/plan")
async def plan_pack(
    request: Request,
    state: StateDep,
    identity: AdminDep,
    example: Example = None,
    action: Annotated[str, Query(pattern="^(install|upgrade)$")] = "install",
) -> dict[str, Any]:
    """The plan (and impact) of installing or upgrading a pack; nothing changes."""
    pack = await _read_pack(request, state, example)
    return await _plan(state, identity, action, pack)


@router.post("/install")
async def install_pack(
    request: Request,
    state: StateDep,
    identity: AdminDep,
    example: Example = None,
    confirm: Confirm = False,
    seed: bool = True,
) -> dict[str, Any]:
    """Install a pack and its seed records as one plan, atomically."""
    pack = await _read_pack(request, state, example)
    return await _run(state, identity, "install", pack, confirm=confirm, seed=seed)


@router.post("/upgrade")
async def upgrade_pack(
    request: Request,
    state: StateDep,
    identity: AdminDep,
    example: Example = None,
    confirm: Confirm = False,
) -> dict[str, Any]:
    """Upgrade an installed pack, keeping the tenant's own additions."""
    pack = await _read_pack(request, state, example)
    return await _run(state, identity, "upgrade", pack, confirm=confirm)


@router.get("/{name}/uninstall-plan")
async def uninstall_plan(name: str, state: StateDep, identity: AdminDep) -> dict[str, Any]:
    return await _plan(state, identity, "uninstall", name=name)


@router.delete("/{name}")
async def uninstall_pack(
    name: str, state: StateDep, identity: AdminDep, confirm: Confirm = False
) -> dict[str, Any]:
    """Uninstall a pack; refused while another pack depends on it, or without confirm
    when it would drop data."""
    return await _run(state, identity, "uninstall", name=name, confirm=confirm)


# ---------------------------------------------------------------- history


async def _version_model(conn: Any, version: int) -> Any:
    if version < 0 or version > await current_version(conn):
        raise NotFound(f"no metadata version {version}")
    return await load_model(conn, version)


@history.get("/versions/{a}/diff/{b}")
async def diff_versions(a: int, b: int, state: StateDep, identity: AdminDep) -> dict[str, Any]:
    """The plan that turns version `a` into version `b` (either may be older)."""
    async with state.db.tenant(identity.storage, writes=False) as conn:
        old, new = await _version_model(conn, a), await _version_model(conn, b)
    plan = diff(old, new)
    return {"from": a, "to": b, **plan.to_dict()}


@history.post("/rollback/plan")
async def rollback_plan(request: Request, state: StateDep, identity: AdminDep) -> dict[str, Any]:
    """The plan of rolling back to `{"version": n}`; nothing changes."""
    target = _target(await read_object(request, state.settings.max_body_bytes))
    return await _plan(state, identity, "rollback", target=target)


@history.post("/rollback")
async def rollback(
    request: Request, state: StateDep, identity: AdminDep, confirm: Confirm = False
) -> dict[str, Any]:
    """Make the metadata what it was at `{"version": n}`: a new plan and a new version."""
    target = _target(await read_object(request, state.settings.max_body_bytes))
    return await _run(state, identity, "rollback", target=target, confirm=confirm)


def _target(body: dict[str, Any]) -> int:
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise MetadataInvalid(
            "name the version to roll back to",
            [FieldError("version", "type", "expected a version number")],
        )
    return version


@history.get("/export")
async def export(
    state: StateDep,
    identity: AdminDep,
    name: Annotated[str, Query(pattern=r"^[a-z][a-z0-9-]{0,62}$")] = "tenant-export",
    version: Annotated[str, Query(max_length=64)] = "1.0.0",
) -> dict[str, Any]:
    """The tenant's whole metadata as a pack bundle (installable into an empty tenant)."""
    async with state.db.tenant(identity.storage, writes=False) as conn:
        model = await load_model(conn, await current_version(conn))
    files = export_files(model, name=name, version=version)
    load_pack(files)  # what we hand out must load again
    return to_bundle(files)


@history.post("/impact")
async def impact_of(request: Request, state: StateDep, identity: AdminDep) -> dict[str, Any]:
    """Like POST /metadata/plan, with everything that depends on what the plan removes."""
    change = merge_document(await read_object(request, state.settings.max_body_bytes * 16))
    async with state.db.tenant(identity.storage, writes=False) as conn:
        proposal = await propose_change(conn, change)
    proposal.refuse(breaking=False)  # what the change breaks is the answer here
    return {**proposal.plan.to_dict(), "impact": [i.as_dict() for i in proposal.impacts]}
