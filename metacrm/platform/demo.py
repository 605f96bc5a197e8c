"""The demo tenant: `demo` with admin@demo, the crm-core example model and sample records."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from metacrm.errors import NotFound
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.schema import parse
from metacrm.platform.state import AppState
from metacrm.platform.tenancy import create_tenant, create_user, get_tenant
from metacrm.runtime import records
from metacrm.runtime.changes import apply_change

EXAMPLES = Path(__file__).resolve().parent.parent / "_bundled" / "examples"
DEMO_TENANT = "demo"
DEMO_ADMIN = "admin@demo"


def read_example(name: str) -> tuple[list[ObjectDef], dict[str, list[dict[str, Any]]]]:
    """The objects and seed records of an example pack folder."""
    folder = EXAMPLES / name
    pack = json.loads((folder / "pack.json").read_text())
    objects = [
        parse(ObjectDef, json.loads((folder / "objects" / f"{o}.json").read_text()))
        for o in pack["objects"]
    ]
    seed = {
        o: [
            json.loads(line)
            for line in (folder / "seed" / f"{o}.jsonl").read_text().splitlines()
            if line.strip()
        ]
        for o in pack.get("seed", [])
    }
    return objects, seed


def _demo_password(state: AppState) -> tuple[str, bool]:
    """The demo password: the setting, else one generated once and kept in data_dir."""
    if state.settings.demo_password:
        return state.settings.demo_password, False
    path = state.settings.data_dir / "demo-password.txt"
    if path.exists():
        return path.read_text().strip(), True
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password, True


async def _resolve_refs(conn: Any, ct: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Replace `{"$ref": object, external_field: value}` with that record's id."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict) and "$ref" in value:
            target = ct.object(value["$ref"])
            ((field, wanted),) = [(k, v) for k, v in value.items() if k != "$ref"]
            t = target.table
            out[key] = str(
                await conn.scalar(
                    sa.select(t.c.id).where(t.c[field] == wanted, t.c.deleted_at.is_(None))
                )
            )
        else:
            out[key] = value
    return out


async def ensure_demo(state: AppState) -> None:
    """Create the demo tenant once; print how to log in every time."""
    password, generated = _demo_password(state)
    try:
        await get_tenant(state.db, DEMO_TENANT)
    except NotFound:
        tenant = await create_tenant(state.db, DEMO_TENANT, label="Demo Company")
        admin_id = await create_user(
            state.db, tenant, DEMO_ADMIN, password, full_name="Demo Admin", is_admin=True
        )
        objects, seed = read_example("crm-core")

        def install(model: MetadataModel) -> MetadataModel:
            for obj in objects:
                model = model.with_object(obj)
            return model

        await apply_change(
            lambda: state.db.tenant(tenant.storage), install, author_id=admin_id, source="pack"
        )
        actor = records.Actor(user_id=admin_id, is_admin=True)
        async with state.db.tenant(tenant.storage) as conn:
            ct = await state.cache.get(conn, tenant.storage)
            for object_name, rows in seed.items():
                co = ct.object(object_name)
                for row in rows:
                    await records.create(conn, ct, co, await _resolve_refs(conn, ct, row), actor)
    where = (
        f"in {state.settings.data_dir / 'demo-password.txt'}"
        if generated
        else "from METACRM_DEMO_PASSWORD"
    )
    print(
        "\n  metacrm demo is ready.\n"
        f"  Log in as {DEMO_ADMIN} (tenant {DEMO_TENANT}) with password {password}  (kept {where})\n"
        f"  curl -s -X POST http://{state.settings.host}:{state.settings.port}/api/v1/auth/token "
        f"-d tenant={DEMO_TENANT} -d username={DEMO_ADMIN} -d password='{password}'\n",
        flush=True,
    )
