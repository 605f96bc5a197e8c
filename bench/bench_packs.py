"""Bench: install time of crm-core (with its seed) into a fresh tenant, and a no-op re-plan.

    .venv/bin/python bench/bench_packs.py [--runs 5]
    METACRM_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/bench_dev \\
        .venv/bin/python bench/bench_packs.py

SQLite always (a temporary directory); PostgreSQL when METACRM_BENCH_POSTGRES_URL is set.
Prints a markdown section. Measurements only, never assertions on time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metacrm.metadata.packs import examples_dir, load_path
from metacrm.platform.db import Database
from metacrm.runtime import packs


async def measure(db: Database, runs: int) -> tuple[list[float], int]:
    pack = load_path(examples_dir() / "crm-core")
    installs, ops = [], 0
    for _ in range(runs):
        storage = f"tenant_bench_{uuid.uuid4().hex[:10]}"
        await db.create_tenant_storage(storage)
        try:
            start = time.perf_counter()
            outcome = await packs.install(lambda s=storage: db.tenant(s), pack)
            installs.append(time.perf_counter() - start)
            ops = len(outcome.plan.ops)
        finally:
            await db.drop_tenant_storage(storage)
    return installs, ops


async def noop_plan(db: Database, runs: int) -> list[float]:
    """The plan of the installed pack against itself: load, validate, merge, diff, impact."""
    from metacrm.checks.packs import check_pack
    from metacrm.metadata.diff import diff
    from metacrm.metadata.packs import merge_pack
    from metacrm.metadata.store import current_version, load_model

    pack = load_path(examples_dir() / "crm-core")
    storage = f"tenant_bench_{uuid.uuid4().hex[:10]}"
    await db.create_tenant_storage(storage)
    times = []
    try:
        await packs.install(lambda: db.tenant(storage), pack, seed=False)
        for _ in range(runs):
            start = time.perf_counter()
            fresh = load_path(examples_dir() / "crm-core")
            async with db.tenant(storage, writes=False) as conn:
                model = await load_model(conn, await current_version(conn))
            new = check_pack(fresh, model, installed={}, merged=merge_pack(model, fresh))
            plan = diff(model, new)
            assert plan.empty, plan.describe()
            times.append(time.perf_counter() - start)
    finally:
        await db.drop_tenant_storage(storage)
    return times


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        targets = [("SQLite", None)]
        if os.environ.get("METACRM_BENCH_POSTGRES_URL"):
            targets.append(("PostgreSQL", os.environ["METACRM_BENCH_POSTGRES_URL"]))
        for label, url in targets:
            db = Database(database_url=url, data_dir=Path(scratch) / label)
            try:
                installs, ops = await measure(db, args.runs)
                plans = await noop_plan(db, args.runs)
            finally:
                await db.dispose()
            rows.append((label, ms(installs), ms(plans), ops))
    pack = load_path(examples_dir() / "crm-core")
    seeded = sum(len(r) for r in pack.seed.values())
    print("## Packs: crm-core install and no-op re-plan\n")
    print(
        f"crm-core {pack.version}: {len(pack.objects)} objects, "
        f"{sum(len(v) for v in pack.documents.values())} other documents, {seeded} seed records "
        f"(created through the record service). Median of {args.runs} runs, each into a fresh "
        "tenant; the re-plan loads and validates the pack, merges it into the installed model "
        "and diffs (an empty plan).\n"
    )
    print("| database | install (plan + DDL + seed, one transaction) | no-op re-plan | plan ops |")
    print("| --- | --- | --- | --- |")
    for label, install, plan, ops in rows:
        print(f"| {label} | {install} | {plan} | {ops} |")


if __name__ == "__main__":
    asyncio.run(main())
