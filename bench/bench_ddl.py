"""Adding a field to a 1,000,000-row object table on PostgreSQL: how long, and no table rewrite.

The object is defined through the metadata API; its table is filled in SQL with
``INSERT ... SELECT ... generate_series`` (fast), then fields are added

* through the HTTP metadata API (``POST /api/v1/metadata/objects/big/fields``), and
* through ``metacrm.runtime.changes.apply_change`` directly (no HTTP),

and each time the table's ``pg_class.relfilenode`` is read before and after: PostgreSQL gives a
table a new relfilenode when it rewrites it, so an unchanged relfilenode proves no rewrite.
A control run shows that the check does catch a rewrite: ``ALTER TABLE ... ADD COLUMN ...
DEFAULT clock_timestamp()`` (a volatile default, which forces a rewrite), rolled back.

    METACRM_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/bench_dev \\
        python bench/bench_ddl.py [--rows 1000000] [--json out.json]

Measurements only, never assertions on time. Skipped (exit 0) without a PostgreSQL URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_api import PASSWORD, PLATFORM_TOKEN, SECRET, forget_tenant, pg_url  # noqa: E402
from metacrm.metadata.model import MetadataModel  # noqa: E402
from metacrm.metadata.schema import parse_field  # noqa: E402
from metacrm.platform.app import create_app  # noqa: E402
from metacrm.platform.settings import Settings  # noqa: E402
from metacrm.runtime.changes import apply_change  # noqa: E402

BIG = {
    "api_name": "big",
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "max_length": 120},
        {"api_name": "amount", "type": "currency", "precision": 18, "scale": 2},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}, {"value": "lost"}],
            "default": "new",
        },
        {"api_name": "close_date", "type": "date"},
    ],
}


async def run(rows: int) -> dict[str, Any]:
    url = pg_url()
    tmp = tempfile.TemporaryDirectory(prefix="metacrm-bench-ddl-")
    settings = Settings(
        data_dir=Path(tmp.name) / "data",
        database_url=url,
        platform_admin_token=PLATFORM_TOKEN,
        secret_key=SECRET,
    )
    app = create_app(settings)
    out: dict[str, Any] = {"rows": rows, "steps": []}
    async with app.router.lifespan_context(app):
        state = app.state.metacrm
        db = state.db
        tenant = f"benchddl{uuid.uuid4().hex[:10]}"
        storage = f"tenant_{tenant}"
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=600
        )
        try:
            admin = f"admin@{tenant}.test"
            r = await http.post(
                "/api/v1/platform/tenants",
                headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
                json={"name": tenant, "admin_email": admin, "admin_password": PASSWORD},
            )
            r.raise_for_status()
            r = await http.post(
                "/api/v1/auth/token",
                data={"tenant": tenant, "username": admin, "password": PASSWORD},
            )
            r.raise_for_status()
            token = r.json()["access_token"]
            user_id = jwt.decode(token, SECRET, algorithms=["HS256"])["sub"]
            auth = {"Authorization": f"Bearer {token}"}
            r = await http.post("/api/v1/metadata/apply", headers=auth, json={"objects": [BIG]})
            r.raise_for_status()
            qualified = f'"{storage}"."big"'

            async def table_state() -> dict[str, Any]:
                async with db.engine.connect() as conn:
                    row = (
                        await conn.execute(
                            sa.text(
                                "SELECT c.relfilenode, pg_relation_size(c.oid), "
                                "pg_total_relation_size(c.oid), "
                                "(SELECT count(*) FROM pg_attribute a "
                                " WHERE a.attrelid = c.oid AND a.attnum > 0 "
                                " AND NOT a.attisdropped) "
                                "FROM pg_class c WHERE c.oid = to_regclass(:t)"
                            ),
                            {"t": qualified},
                        )
                    ).one()
                return {
                    "relfilenode": row[0],
                    "heap_bytes": row[1],
                    "total_bytes": row[2],
                    "columns": row[3],
                }

            # ---------------------------------------------------------- 1M rows, in SQL
            t0 = time.perf_counter()
            async with db.engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        f"INSERT INTO {qualified} (id, owner_id, created_at, created_by, "
                        "updated_at, updated_by, version, name, amount, stage, close_date) "
                        "SELECT gen_random_uuid(), CAST(:u AS uuid), now(), CAST(:u AS uuid), "
                        "now(), CAST(:u AS uuid), 1, 'Deal ' || g, (g % 100000) / 100.0, "
                        "(ARRAY['new','won','lost'])[1 + g % 3], DATE '2026-01-01' + g % 365 "
                        "FROM generate_series(1, :n) AS g"
                    ),
                    {"u": user_id, "n": rows},
                )
            out["load_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql(f"VACUUM ANALYZE {qualified}")
            out["vacuum_analyze_seconds"] = time.perf_counter() - t0
            out["table_before"] = await table_state()
            async with db.engine.connect() as conn:
                out["server_version"] = await conn.scalar(sa.text("SHOW server_version"))
                out["row_count"] = await conn.scalar(sa.text(f"SELECT count(*) FROM {qualified}"))

            async def first_request() -> float:
                """The next record request recompiles the tenant's metadata (new version)."""
                t = time.perf_counter()
                resp = await http.get("/api/v1/data/big", params={"limit": 1}, headers=auth)
                resp.raise_for_status()
                return (time.perf_counter() - t) * 1000

            async def step(label: str, how: str, action: Any) -> None:
                before = await table_state()
                t = time.perf_counter()
                await action()
                seconds = time.perf_counter() - t
                after = await table_state()
                out["steps"].append(
                    {
                        "change": label,
                        "through": how,
                        "seconds": seconds,
                        "relfilenode_before": before["relfilenode"],
                        "relfilenode_after": after["relfilenode"],
                        "rewritten": before["relfilenode"] != after["relfilenode"],
                        "heap_bytes_before": before["heap_bytes"],
                        "heap_bytes_after": after["heap_bytes"],
                        "first_request_after_ms": await first_request(),
                    }
                )

            def via_api(field: dict[str, Any]) -> Any:
                async def action() -> None:
                    resp = await http.post(
                        "/api/v1/metadata/objects/big/fields", headers=auth, json=field
                    )
                    if resp.status_code != 201:
                        raise RuntimeError(resp.text)

                return action

            def via_apply_change(field: dict[str, Any]) -> Any:
                definition = parse_field(field)

                def change(model: MetadataModel) -> MetadataModel:
                    obj = model.object("big")
                    return model.with_object(
                        obj.model_copy(update={"fields": [*obj.fields, definition]})
                    )

                async def action() -> None:
                    await apply_change(
                        lambda: db.tenant(storage),
                        change,
                        author_id=uuid.UUID(user_id),
                        source="bench",
                        lock_timeout_ms=settings.lock_timeout_ms,
                    )

                return action

            await first_request()  # compile the current version first
            await step(
                "add nullable text field `note`",
                "HTTP metadata API",
                via_api({"api_name": "note", "type": "text", "max_length": 200}),
            )
            await step(
                "add nullable number field `score`",
                "apply_change()",
                via_apply_change(
                    {"api_name": "score", "type": "number", "precision": 10, "scale": 2}
                ),
            )
            await step(
                "add picklist field `tier` with a default",
                "HTTP metadata API",
                via_api(
                    {
                        "api_name": "tier",
                        "type": "picklist",
                        "values": [{"value": "a"}, {"value": "b"}],
                        "default": "a",
                    }
                ),
            )
            await step(
                "add indexed text field `region` (builds an index)",
                "HTTP metadata API",
                via_api({"api_name": "region", "type": "text", "max_length": 40, "indexed": True}),
            )

            # ------------------------------------------------ control: a real rewrite
            before = await table_state()
            async with db.engine.connect() as conn:
                tx = await conn.begin()
                t = time.perf_counter()
                await conn.exec_driver_sql(
                    f"ALTER TABLE {qualified} ADD COLUMN ctl timestamptz DEFAULT clock_timestamp()"
                )
                seconds = time.perf_counter() - t
                inside = await conn.scalar(
                    sa.text("SELECT relfilenode FROM pg_class WHERE oid = to_regclass(:t)"),
                    {"t": qualified},
                )
                await tx.rollback()
            out["control"] = {
                "change": "raw ALTER TABLE ADD COLUMN ... DEFAULT clock_timestamp() (rolled back)",
                "seconds": seconds,
                "relfilenode_before": before["relfilenode"],
                "relfilenode_inside": inside,
                "rewritten": inside != before["relfilenode"],
            }
            out["table_after"] = await table_state()
        finally:
            await http.aclose()
            await db.drop_tenant_storage(storage)
            async with db.system() as conn:
                await forget_tenant(conn, tenant)
    tmp.cleanup()
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        "| change | through | seconds | relfilenode before -> after | table rewritten "
        "| first request after (ms) |",
        "| --- | --- | ---: | --- | --- | ---: |",
    ]
    for s in result["steps"]:
        lines.append(
            f"| {s['change']} | {s['through']} | {s['seconds']:.3f} "
            f"| {s['relfilenode_before']} -> {s['relfilenode_after']} "
            f"| {'YES' if s['rewritten'] else 'no'} | {s['first_request_after_ms']:.1f} |"
        )
    c = result["control"]
    lines.append(
        f"| control: {c['change']} | raw SQL | {c['seconds']:.3f} "
        f"| {c['relfilenode_before']} -> {c['relfilenode_inside']} "
        f"| {'YES' if c['rewritten'] else 'no'} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not pg_url():
        result: dict[str, Any] = {
            "skipped": "set METACRM_BENCH_POSTGRES_URL or METACRM_TEST_POSTGRES_URL"
        }
        print("bench_ddl: skipped (" + result["skipped"] + ")")
    else:
        result = asyncio.run(run(args.rows))
        before = result["table_before"]
        print(
            f"PostgreSQL {result['server_version']}: {result['row_count']:,} rows loaded in "
            f"{result['load_seconds']:.1f} s (VACUUM ANALYZE {result['vacuum_analyze_seconds']:.1f}"
            f" s); heap {before['heap_bytes'] / 2**20:.0f} MiB\n"
        )
        print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
