"""Record access at scale (PostgreSQL): a rep's list of 50 out of 1,000,000 rows vs an admin's.

The object ``opp`` has ``sharing: private``. Roles form a hierarchy: a director, three managers
(``manager_east``, ``manager_west``, ``manager_central``) reporting to it and three rep roles
reporting to them; 50 users hold them (1 director, 3 managers, 46 reps). Two criteria-based
sharing rules apply to the east reps:

* ``won_east``: ``stage == 'won' and region == 'east'`` shared with ``rep_east``;
* ``east_pipeline``: ``stage == 'propose' and region == 'east' and amount >= 50000`` shared with
  ``manager_east`` and its subordinates;

and ``mc_share`` holds manual shares (90% with a user, 10% with a role). The rows are loaded
in SQL (``INSERT ... SELECT generate_series``), owners spread evenly over the 50 users.

Then ``GET /api/v1/data/opp?limit=50&order_by=...`` (``id`` and ``-amount``) is timed over HTTP
(``httpx.ASGITransport``, as in bench_api.py) for the admin (no record filter), the director
and the east manager (role hierarchy) and an east rep (ownership + two sharing rules + manual
shares). The SQL each one sends is captured with SQLAlchemy's ``before_cursor_execute`` event
and run under ``EXPLAIN (ANALYZE, BUFFERS)``. Finally indexes that are not there by default are
created by hand, one experiment at a time, and the same statements are re-timed in the
database (plus one hand-rewritten form of the filter): this is where suggestions for the core
come from. metacrm itself is not changed.

    METACRM_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/bench_dev \\
        python bench/bench_security.py [--rows 1000000] [--shares 100000] [--json out.json]

Measurements only, never assertions on time. Skipped (exit 0) without a PostgreSQL URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# Logins are not what is measured: a cheap hash keeps creating 50 users quick.
os.environ.setdefault("METACRM_ARGON2_PROFILE", "CHEAPEST")

import asyncpg
import httpx
import jwt
import sqlalchemy as sa
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_api import PASSWORD, PLATFORM_TOKEN, SECRET, forget_tenant, pg_url  # noqa: E402
from metacrm.platform.app import create_app  # noqa: E402
from metacrm.platform.settings import Settings  # noqa: E402

TEAMS = ("east", "west", "central")
STAGES = ("new", "qualify", "propose", "won", "lost")
OPP = {
    "api_name": "opp",
    "label": "Opportunity",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "max_length": 120},
        {"api_name": "amount", "type": "currency", "precision": 18, "scale": 2},
        {"api_name": "stage", "type": "picklist", "values": [{"value": s} for s in STAGES]},
        {"api_name": "region", "type": "picklist", "values": [{"value": t} for t in TEAMS]},
        {"api_name": "close_date", "type": "date"},
    ],
}
RW = {"create": True, "read": True, "edit": True, "delete": True}
ROLES = [
    {"api_name": "director", "objects": {"opp": RW}},
    *[
        {"api_name": f"manager_{t}", "reports_to": "director", "objects": {"opp": RW}}
        for t in TEAMS
    ],
    *[
        {"api_name": f"rep_{t}", "reports_to": f"manager_{t}", "objects": {"opp": RW}}
        for t in TEAMS
    ],
]
SHARING = [
    {
        "api_name": "won_east",
        "object": "opp",
        "criteria": "stage == 'won' and region == 'east'",
        "share_with": {"role": "rep_east"},
        "access": "read",
    },
    {
        "api_name": "east_pipeline",
        "object": "opp",
        "criteria": "stage == 'propose' and region == 'east' and amount >= 50000",
        "share_with": {"role": "manager_east", "include_subordinates": True},
        "access": "read",
    },
]
#: In-database runs longer than this are cancelled and reported as such.
TIMEOUT_MS = 5000
PERSONAS = ("admin", "director", "manager_east", "rep_east")
ORDERS = {"id": "id", "-amount": "-amount"}

#: Indexes metacrm does not create, tried one at a time (created by hand, then dropped).
EXPERIMENTS: list[tuple[str, str, list[str]]] = [
    (
        "mc_share (object, user_id) + (object, role), both INCLUDE (record_id)",
        "manual-share lookups by grantee instead of a scan of mc_share",
        [
            'CREATE INDEX bx_share_user ON {s}."mc_share" (object, user_id) INCLUDE (record_id)',
            'CREATE INDEX bx_share_role ON {s}."mc_share" (object, role) INCLUDE (record_id)',
        ],
    ),
    (
        "mc_user (role)",
        "the hierarchy subquery (50 users: expected to make no difference)",
        ['CREATE INDEX bx_user_role ON {s}."mc_user" (role)'],
    ),
    (
        "opp (amount)",
        "an index on the sort key (what `indexed: true` on the field would create)",
        ['CREATE INDEX bx_opp_amount ON {s}."opp" (amount)'],
    ),
    (
        "opp (region, stage)",
        "an index on the sharing-rule criteria columns",
        ['CREATE INDEX bx_opp_region_stage ON {s}."opp" (region, stage)'],
    ),
]


def any_array(sql: str) -> str:
    """Rewrite every ``x IN (SELECT ...)`` of a statement as ``x = ANY(ARRAY(SELECT ...))``.

    PostgreSQL runs ``ARRAY(SELECT ...)`` once as an InitPlan and can use ``= ANY(array)`` as an
    index condition, so an OR of such arms can become a BitmapOr; a hashed ``IN (SELECT ...)``
    subplan can only filter rows one by one.
    """
    out, i = [], 0
    while True:
        j = sql.find(" IN (SELECT ", i)
        if j < 0:
            out.append(sql[i:])
            return "".join(out)
        depth, k = 0, j + len(" IN ")
        while True:
            if sql[k] == "(":
                depth += 1
            elif sql[k] == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        inner = sql[j + len(" IN (") : k]
        out.append(sql[i:j] + " = ANY(ARRAY(" + inner + "))")
        i = k + 1


def key_lines(plan: list[str]) -> list[str]:
    """The lines of a plan that say how rows are found, filtered and sorted, and the totals."""
    wanted = re.compile(
        r"(Scan|Sort|Limit|SubPlan|InitPlan|BitmapOr|Filter:|Index Cond|Rows Removed|"
        r"Buffers:|Execution Time|Planning Time|Hash)"
    )
    return [line for line in plan if wanted.search(line)]


async def run(
    rows: int, share_count: int, rounds: int, n: int, db_runs: int, experiments: bool = True
) -> dict[str, Any]:
    url = pg_url()
    tmp = tempfile.TemporaryDirectory(prefix="metacrm-bench-security-")
    settings = Settings(
        data_dir=Path(tmp.name) / "data",
        database_url=url,
        platform_admin_token=PLATFORM_TOKEN,
        secret_key=SECRET,
    )
    app = create_app(settings)
    out: dict[str, Any] = {
        "rows": rows,
        "shares": share_count,
        "rounds": rounds,
        "requests": n,
        "db_runs": db_runs,
        "sharing_rules": SHARING,
    }
    async with app.router.lifespan_context(app):
        db = app.state.metacrm.db
        tenant = f"benchsec{uuid.uuid4().hex[:10]}"
        storage = f"tenant_{tenant}"
        schema = f'"{storage}"'
        qualified = f'{schema}."opp"'
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=600
        )
        captured: list[tuple[str, Any]] = []
        from_opp = re.compile(rf'FROM "?{storage}"?\."?opp"?\s')

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if from_opp.search(statement) and "ORDER BY" in statement:
                captured.append((statement, parameters))

        event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
        try:
            # ------------------------------------------------ tenant, metadata, users
            admin = f"admin@{tenant}.test"
            r = await http.post(
                "/api/v1/platform/tenants",
                headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
                json={"name": tenant, "admin_email": admin, "admin_password": PASSWORD},
            )
            r.raise_for_status()

            async def login(email: str) -> dict[str, str]:
                resp = await http.post(
                    "/api/v1/auth/token",
                    data={"tenant": tenant, "username": email, "password": PASSWORD},
                )
                resp.raise_for_status()
                return {"Authorization": f"Bearer {resp.json()['access_token']}"}

            headers = {"admin": await login(admin)}
            admin_id = jwt.decode(
                headers["admin"]["Authorization"][7:], SECRET, algorithms=["HS256"]
            )["sub"]
            r = await http.post(
                "/api/v1/metadata/apply",
                headers=headers["admin"],
                json={"objects": [OPP], "roles": ROLES, "sharing_rules": SHARING},
            )
            if r.status_code != 200:
                raise RuntimeError(r.text)

            async def add_user(email: str, role: str, manager: str | None) -> str:
                body = {"email": email, "password": PASSWORD, "role": role}
                if manager:
                    body["manager_id"] = manager
                resp = await http.post("/api/v1/users", headers=headers["admin"], json=body)
                if resp.status_code != 201:
                    raise RuntimeError(resp.text)
                return resp.json()["id"]

            director = await add_user(f"director@{tenant}.test", "director", None)
            managers = {
                t: await add_user(f"manager.{t}@{tenant}.test", f"manager_{t}", director)
                for t in TEAMS
            }
            reps: list[tuple[str, str]] = []  # (team, id)
            for i in range(46):
                team = TEAMS[i % 3]
                reps.append(
                    (team, await add_user(f"rep{i}@{tenant}.test", f"rep_{team}", managers[team]))
                )
            owners = [director, *managers.values(), *(rid for _, rid in reps)]
            rep_id = reps[0][1]  # an east rep
            headers["director"] = await login(f"director@{tenant}.test")
            headers["manager_east"] = await login(f"manager.east@{tenant}.test")
            headers["rep_east"] = await login(f"rep0@{tenant}.test")
            out["users"] = {"director": 1, "managers": 3, "reps": len(reps)}

            # ------------------------------------------------ 1M rows and the manual shares
            owner_array = "ARRAY[" + ",".join(f"'{o}'" for o in owners) + "]::uuid[]"
            t0 = time.perf_counter()
            async with db.engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        f"INSERT INTO {qualified} (id, owner_id, created_at, created_by, "
                        "updated_at, updated_by, version, name, amount, stage, region, "
                        f"close_date) SELECT gen_random_uuid(), ({owner_array})[1 + g % "
                        f"{len(owners)}], now(), CAST(:u AS uuid), now(), CAST(:u AS uuid), 1, "
                        "'Opp ' || g, round((random() * 100000)::numeric, 2), "
                        "(ARRAY['new','qualify','propose','won','lost'])[1 + (g / 7) % 5], "
                        "(ARRAY['east','west','central'])[1 + (g / 3) % 3], "
                        "DATE '2026-01-01' + g % 365 FROM generate_series(1, :n) AS g"
                    ),
                    {"u": admin_id, "n": rows},
                )
                # Manual shares on random records: 90% with one of the 50 users, 10% with a role.
                await conn.execute(
                    sa.text(
                        f'INSERT INTO {schema}."mc_share" (id, object, record_id, user_id, role, '
                        "access, created_by, created_at) SELECT gen_random_uuid(), 'opp', s.id, "
                        f"CASE WHEN s.rn % 10 <> 0 THEN ({owner_array})[1 + s.rn % "
                        f"{len(owners)}] END, CASE WHEN s.rn % 10 = 0 THEN "
                        "(ARRAY['director','manager_east','manager_west','manager_central',"
                        "'rep_east','rep_west','rep_central'])[1 + (s.rn / 10) % 7] END, "
                        "CASE WHEN s.rn % 4 = 0 THEN 'edit' ELSE 'read' END, CAST(:u AS uuid), "
                        f"now() FROM (SELECT id, row_number() OVER () AS rn FROM {qualified} "
                        "WHERE random() < :p) AS s"
                    ),
                    {"u": admin_id, "p": share_count / rows},
                )
            out["load_seconds"] = time.perf_counter() - t0
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("opp", "mc_share", "mc_user"):
                    await conn.exec_driver_sql(f'VACUUM ANALYZE {schema}."{table}"')
                out["server_version"] = await conn.scalar(sa.text("SHOW server_version"))
                out["row_count"] = await conn.scalar(sa.text(f"SELECT count(*) FROM {qualified}"))
                out["share_count"] = await conn.scalar(
                    sa.text(f'SELECT count(*) FROM {schema}."mc_share"')
                )
                out["table_bytes"] = await conn.scalar(
                    sa.text("SELECT pg_total_relation_size(to_regclass(:t))"), {"t": qualified}
                )
                out["indexes"] = list(
                    await conn.scalars(
                        sa.text(
                            "SELECT tablename || ': ' || indexdef FROM pg_indexes "
                            "WHERE schemaname = :s AND tablename IN ('opp','mc_share','mc_user') "
                            "ORDER BY tablename, indexname"
                        ),
                        {"s": storage},
                    )
                )
                # What each persona may see: the rows its filter lets through.
                visible = {}
                for persona in PERSONAS:
                    headers_ = headers[persona]
                    captured.clear()
                    resp = await http.get(
                        "/api/v1/data/opp", params={"limit": 1, "order_by": "id"}, headers=headers_
                    )
                    resp.raise_for_status()
                    sql, params = captured[-1]
                    # The same statement without a useful LIMIT, counted.
                    limit = int(re.search(r"LIMIT \$(\d+)", sql).group(1))
                    params = [10**9 if i == limit - 1 else p for i, p in enumerate(params)]
                    raw = await conn.get_raw_connection()
                    visible[persona] = await raw.driver_connection.fetchval(
                        f"SELECT count(*) FROM ({sql}) AS q", *params
                    )
                out["visible_rows"] = visible
            print(
                f"loaded {out['row_count']:,} rows and {out['share_count']:,} shares in "
                f"{out['load_seconds']:.1f} s; visible: {visible}",
                flush=True,
            )

            # ------------------------------------------------ HTTP timings, interleaved
            def params_for(order: str) -> dict[str, Any]:
                return {"limit": 50, "order_by": ORDERS[order]}

            statements: dict[str, dict[str, tuple[str, Any]]] = {}
            for order in ORDERS:
                for persona in PERSONAS:
                    captured.clear()
                    resp = await http.get(
                        "/api/v1/data/opp", params=params_for(order), headers=headers[persona]
                    )
                    resp.raise_for_status()
                    assert len(resp.json()["records"]) == 50, resp.text[:300]
                    statements.setdefault(order, {})[persona] = captured[-1]
            rep_records = (
                await http.get(
                    "/api/v1/data/opp", params=params_for("id"), headers=headers["rep_east"]
                )
            ).json()["records"]
            out["rep_first_page_own"] = sum(r["owner_id"] == rep_id for r in rep_records)

            http_ms: dict[str, dict[str, list[float]]] = {
                o: {p: [] for p in PERSONAS} for o in ORDERS
            }
            for rnd in range(rounds):
                for order in ORDERS:
                    sequence = PERSONAS if rnd % 2 == 0 else tuple(reversed(PERSONAS))
                    for persona in sequence:
                        times: list[float] = []
                        # A cell that takes over 200 ms per request gets fewer requests.
                        while len(times) < (n if not times or times[0] < 0.2 else min(n, 2)):
                            t = time.perf_counter()
                            resp = await http.get(
                                "/api/v1/data/opp",
                                params=params_for(order),
                                headers=headers[persona],
                            )
                            times.append(time.perf_counter() - t)
                            resp.raise_for_status()
                        http_ms[order][persona].append(statistics.median(times) * 1000)
            out["http_ms"] = {
                o: {p: statistics.median(v) for p, v in per.items()} for o, per in http_ms.items()
            }
            print("HTTP medians (ms):", json.dumps(out["http_ms"]), flush=True)

            # ------------------------------------------------ plans and in-database timings
            async with db.engine.connect() as conn:
                raw = (await conn.get_raw_connection()).driver_connection

                async def explain(sql: str, params: Any) -> list[str]:
                    try:
                        rows_ = await raw.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *params)
                    except asyncpg.QueryCanceledError:  # over the statement timeout
                        rows_ = await raw.fetch("EXPLAIN " + sql, *params)
                        return ["(EXPLAIN only: cancelled by the statement timeout)"] + [
                            r[0] for r in rows_
                        ]
                    return [r[0] for r in rows_]

                async def db_ms(sql: str, params: Any) -> float | None:
                    """Median ms of the statement run in the database (None: timed out)."""
                    times: list[float] = []
                    try:
                        await raw.fetch(sql, *params)  # warm the caches
                        while len(times) < (db_runs if not times or times[0] < 0.2 else 3):
                            t = time.perf_counter()
                            await raw.fetch(sql, *params)
                            times.append(time.perf_counter() - t)
                    except asyncpg.QueryCanceledError:
                        return None
                    return statistics.median(times) * 1000

                await raw.execute(f"SET statement_timeout = {TIMEOUT_MS}")
                out["sql"] = {
                    o: {p: s for p, (s, _) in per.items()} for o, per in statements.items()
                }
                out["plans"] = {
                    o: {p: await explain(*statements[o][p]) for p in PERSONAS} for o in ORDERS
                }

                async def measure_all(label: str, note: str, rewrite: bool = False) -> None:
                    timings = {}
                    plans = {}
                    for order in ORDERS:
                        for persona in ("admin", "manager_east", "rep_east"):
                            sql, params = statements[order][persona]
                            if rewrite:
                                sql = any_array(sql)
                            timings[f"{persona} {order}"] = await db_ms(sql, params)
                            if persona != "admin":
                                plans[f"{persona} {order}"] = await explain(sql, params)
                    out["experiments"].append(
                        {"label": label, "note": note, "db_ms": timings, "plans": plans}
                    )
                    print(f"{label}: {json.dumps(timings)}", flush=True)

                out["experiments"] = []
                await measure_all("none (as metacrm creates the tables)", "baseline")
                if experiments:
                    for label, note, ddl in EXPERIMENTS:
                        for statement in ddl:
                            await raw.execute(statement.format(s=schema))
                        await raw.execute(f"ANALYZE {qualified}")
                        await raw.execute(f'ANALYZE {schema}."mc_share"')
                        await measure_all(label, note)
                        for statement in ddl:
                            name = statement.split()[2]
                            await raw.execute(f"DROP INDEX {schema}.{name}")
                    # The filter written with = ANY(ARRAY(SELECT ...)) instead of IN (SELECT ...).
                    await measure_all(
                        "rewrite: `= ANY(ARRAY(SELECT ...))`, no extra index",
                        "same filter, subqueries as InitPlan arrays",
                        rewrite=True,
                    )
                    all_ddl = [s for _, _, ddl in EXPERIMENTS for s in ddl]
                    for statement in all_ddl:
                        await raw.execute(statement.format(s=schema))
                    await raw.execute(f"ANALYZE {qualified}")
                    await raw.execute(f'ANALYZE {schema}."mc_share"')
                    await measure_all(
                        "all four index experiments together", "IN (SELECT ...) as sent"
                    )
                    await measure_all(
                        "all four index experiments + the `= ANY(ARRAY(...))` rewrite",
                        "all indexes, rewritten filter",
                        rewrite=True,
                    )
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
            await http.aclose()
            await db.drop_tenant_storage(storage)
            async with db.system() as conn:
                await forget_tenant(conn, tenant)
    tmp.cleanup()
    return out


def execution_ms(plan: list[str]) -> float:
    for line in plan:
        if line.startswith("Execution Time:"):
            return float(line.split(":")[1].split()[0])
    return float("nan")


def _ms(value: float | None) -> str:
    return f"> {TIMEOUT_MS} (cancelled)" if value is None else f"{value:.1f}"


def table(result: dict[str, Any]) -> str:
    """Markdown: HTTP medians per persona and order, with the ratio to the admin."""
    lines = [
        "| `GET /api/v1/data/opp?limit=50&order_by=` | persona | rows it may see "
        "| HTTP median ms | x admin | in-database ms (EXPLAIN ANALYZE) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for order, per in result["http_ms"].items():
        for persona, ms in per.items():
            ratio = ms / per["admin"]
            lines.append(
                f"| `{order}` | {persona} | {result['visible_rows'][persona]:,} "
                f"| {ms:.1f} | {ratio:.2f}x | {execution_ms(result['plans'][order][persona]):.1f} |"
            )
    return "\n".join(lines)


def experiments_table(result: dict[str, Any]) -> str:
    keys = list(result["experiments"][0]["db_ms"])
    lines = [
        "| index created by hand (or rewrite) | " + " | ".join(f"{k} ms" for k in keys) + " |",
        "| --- | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for e in result["experiments"]:
        lines.append(f"| {e['label']} | " + " | ".join(_ms(e["db_ms"][k]) for k in keys) + " |")
    return "\n".join(lines)


def _plan(title: str, plan: list[str]) -> list[str]:
    return [f"{title}:", "", "```", *plan, "```", ""]


def section(result: dict[str, Any]) -> str:
    """The RESULTS.md section (without its `##` heading)."""
    if "skipped" in result:
        return f"Skipped: {result['skipped']}.\n"
    rules = "; ".join(
        f"`{r['api_name']}`: `{r['criteria']}` -> role `{r['share_with']['role']}`"
        + (" and subordinates" if r["share_with"].get("include_subordinates") else "")
        for r in result["sharing_rules"]
    )
    experiments = {e["label"]: e for e in result["experiments"]}
    admin_amount = execution_ms(result["plans"]["-amount"]["admin"])
    rep_amount = execution_ms(result["plans"]["-amount"]["rep_east"])
    base = result["experiments"][0]
    together = experiments.get("all four index experiments together")
    lines = [
        f"PostgreSQL {result['server_version']}. Object `opp` (`sharing: private`), "
        f"{result['row_count']:,} rows ({result['table_bytes'] / 2**20:.0f} MiB with indexes) "
        f"loaded with `INSERT ... SELECT generate_series`, owners spread evenly over 50 users "
        "(1 director, 3 managers, 46 reps); roles `director` <- `manager_{east,west,central}` <- "
        f"`rep_{{east,west,central}}`; two sharing rules ({rules}); "
        f"{result['share_count']:,} manual shares in `mc_share` (90% with a user, 10% with a "
        f"role). Loading took {result['load_seconds']:.1f} s. Indexes as metacrm creates them: "
        + ", ".join(f"`{i.split(' ON ')[0].split()[-1]}`" for i in result["indexes"])
        + ".",
        "",
        "The rep is `rep_east`: own records + both sharing rules + manual shares to the user or "
        "its role; the manager and the director add the role hierarchy (`owner_id IN (SELECT id "
        "FROM mc_user WHERE role IN (...))`); the admin has no record filter. HTTP = median of "
        f"{result['rounds']} interleaved rounds (each the median of up to {result['requests']} "
        "requests, 2 when a request takes over 200 ms) over `httpx.ASGITransport`, whole request "
        "(auth, metadata check, SQL, JSON). In-database = `Execution Time` of one EXPLAIN "
        "(ANALYZE, BUFFERS) of the very statement metacrm sent (captured with SQLAlchemy's "
        "`before_cursor_execute`).",
        "",
        table(result),
        "",
        f"Key plan lines (full plans below): `order_by=id` walks `pk_opp` and filters row by "
        "row; the rep's filter is an OR of `owner_id = $1`, a hashed SubPlan over a **Seq Scan "
        f"of mc_share** (all {result['share_count']:,} manual shares read on every request), and "
        "the two rule criteria; `order_by=-amount` has no index to walk, so the admin and the "
        f"rep alike read all {result['row_count']:,} rows (Seq Scan) into a top-N heapsort "
        f"(rep/admin in the database: {rep_amount / admin_amount:.2f}x: fewer rows reach the "
        "rep's sort).",
        "",
        "Index experiments: each index created by hand in the bench schema, ANALYZEd, the same "
        f"statements re-run in the database (median of up to {result['db_runs']} runs after one "
        "warm-up, 3 when a run takes over 200 ms; no HTTP), then the index dropped. The last "
        "rows rewrite the statement's `x IN (SELECT ...)` as `x = ANY(ARRAY(SELECT ...))`. "
        "Single-digit differences between rows are noise on this shared machine.",
        "",
        experiments_table(result),
        "",
    ]
    lines += _plan("Admin, `order_by=id`", result["plans"]["id"]["admin"])
    lines += _plan("Rep, `order_by=id`", result["plans"]["id"]["rep_east"])
    lines += _plan("Admin, `order_by=-amount`", result["plans"]["-amount"]["admin"])
    lines += _plan("Rep, `order_by=-amount`", result["plans"]["-amount"]["rep_east"])
    if together:
        lines += _plan(
            "Rep, `order_by=-amount`, with all four experimental indexes",
            together["plans"]["rep_east -amount"],
        )
    lines += _plan(
        "Manager, `order_by=id`, baseline (role hierarchy subquery)",
        base["plans"]["manager_east id"],
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares", type=int, default=100_000, help="manual shares (mc_share)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5, help="per round, persona and order")
    parser.add_argument("--db-runs", type=int, default=7, help="timed runs per in-DB statement")
    parser.add_argument(
        "--no-experiments", action="store_true", help="skip the hand-made index experiments"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not pg_url():
        result: dict[str, Any] = {
            "skipped": "set METACRM_BENCH_POSTGRES_URL or METACRM_TEST_POSTGRES_URL"
        }
        print("bench_security: skipped (" + result["skipped"] + ")")
    else:
        result = asyncio.run(
            run(
                args.rows,
                args.shares,
                args.rounds,
                args.requests,
                args.db_runs,
                experiments=not args.no_experiments,
            )
        )
        print()
        print(section(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
