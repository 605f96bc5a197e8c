"""Benchmark formulas: compiled closures vs re-parsing, and SQL filters vs Python filtering.

Run on demand: `python bench/bench_formula.py` (PostgreSQL too when METACRM_TEST_POSTGRES_URL
is set). BENCH_RECORDS (default 100000) and BENCH_ROWS (default 1000000) scale it down.
Prints a markdown section.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from metacrm.formula import check, compile_filter, evaluate
from metacrm.metadata.model import MetadataModel
from metacrm.runtime.columns import build_table
from metacrm.types import NAMING_CONVENTION

RECORDS = int(os.environ.get("BENCH_RECORDS", "100000"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
MODEL = MetadataModel.model_validate(
    {
        "objects": [
            {
                "api_name": "bench_deal",
                "fields": [
                    {"api_name": "name", "type": "text"},
                    {"api_name": "amount", "type": "currency"},
                    {"api_name": "probability", "type": "percent"},
                    {
                        "api_name": "expected",
                        "type": "formula",
                        "returns": "currency",
                        "expression": "amount * probability / 100",
                    },
                ],
            }
        ]
    }
)
DEAL = MODEL.object("bench_deal")
#: Ten functions: IF, AND, NOT, ISBLANK, ROUND, ABS, MIN, LEN, UPPER, TRIM.
TEN = (
    "IF(AND(amount > 100, NOT(ISBLANK(name))), ROUND(amount * 1.1, 2), ABS(MIN(amount, 5)))"
    " + LEN(UPPER(TRIM(name)))"
)
FILTER = "expected > 4990 and amount > 9990"


def median_of(fn: Callable[[], Any], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_closures() -> list[str]:
    records = [
        {"name": f" deal {i} ", "amount": Decimal(i % 1000) + Decimal("0.25")}
        for i in range(RECORDS)
    ]
    checked = check(TEN, DEAL, MODEL, context="formula")

    def compiled() -> None:
        for record in records:
            evaluate(checked, record)

    def reparsed() -> None:
        for record in records:
            evaluate(check(TEN, DEAL, MODEL, context="formula"), record)

    fast, slow = median_of(compiled), median_of(reparsed, runs=1 if RECORDS > 20_000 else 3)
    return [
        f"### Evaluating a 10-function formula over {RECORDS:,} records (Python)",
        "",
        "| Approach | Median | Per record |",
        "|---|---|---|",
        f"| compiled closure (checked once) | {fast:.3f} s | {fast / RECORDS * 1e6:.1f} µs |",
        f"| parse + check + evaluate each time | {slow:.3f} s | {slow / RECORDS * 1e6:.1f} µs |",
        f"| ratio | {slow / fast:.1f}x faster compiled | |",
        "",
    ]


def fill(engine: sa.Engine, table: sa.Table) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS}) "
                "INSERT INTO bench_deal (id, owner_id, created_at, created_by, updated_at, "
                "updated_by, version, name, amount, probability) SELECT lower(hex(randomblob(16))), "
                "'00000000000000000000000000000001', '2024-01-01 00:00:00.000000', "
                "'00000000000000000000000000000001', '2024-01-01 00:00:00.000000', "
                "'00000000000000000000000000000001', 1, 'deal ' || i, (i * 7919) % 10000, "
                "(i * 31) % 101 FROM s"
            )
        else:
            conn.exec_driver_sql(
                "INSERT INTO bench_deal (id, owner_id, created_at, created_by, updated_at, "
                "updated_by, version, name, amount, probability) SELECT gen_random_uuid(), "
                "'00000000-0000-0000-0000-000000000001', now(), "
                "'00000000-0000-0000-0000-000000000001', now(), "
                "'00000000-0000-0000-0000-000000000001', 1, 'deal ' || i, (i * 7919) %% 10000, "
                f"(i * 31) %% 101 FROM generate_series(1::bigint, {ROWS}) AS i"
            )
            conn.exec_driver_sql("ANALYZE bench_deal")


def bench_filter(engine: sa.Engine) -> list[str]:
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    table = build_table(DEAL, metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    try:
        fill(engine, table)
        where = compile_filter(FILTER, DEAL, MODEL, lambda name: table)
        checked = check(FILTER, DEAL, MODEL, context="filter")
        query = sa.select(sa.func.count()).select_from(table).where(where)

        def in_sql() -> int:
            with engine.connect() as conn:
                return conn.execute(query).scalar_one()

        def in_python() -> int:
            with engine.connect() as conn:
                rows = conn.execute(sa.select(table.c.amount, table.c.probability))
                return sum(
                    1
                    for amount, probability in rows
                    if evaluate(checked, {"amount": amount, "probability": probability}) is True
                )

        count = in_sql()
        assert count == in_python(), "SQL and Python filters disagree"
        no_index = median_of(in_sql)
        python = median_of(in_python, runs=1 if ROWS > 200_000 else 3)
        index = sa.Index("ix_bench_deal_amount", table.c.amount)
        index.create(engine)
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE bench_deal")
        indexed = median_of(in_sql)
    finally:
        metadata.drop_all(engine)
    name = "PostgreSQL" if engine.dialect.name == "postgresql" else "SQLite"
    return [
        f"### Filtering {ROWS:,} rows on a formula field ({name}), `{FILTER}` ({count:,} match)",
        "",
        "| Approach | Median | vs SQL with index |",
        "|---|---|---|",
        f"| SQL, index on `amount` | {indexed * 1000:.1f} ms | 1x |",
        f"| SQL, no index | {no_index * 1000:.1f} ms | {no_index / indexed:.0f}x |",
        f"| load rows, filter in Python | {python * 1000:.0f} ms | {python / indexed:.0f}x |",
        "",
    ]


def main() -> None:
    lines = ["## Formulas (bench/bench_formula.py)", ""]
    lines += bench_closures()
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        lines += bench_filter(engine)
        engine.dispose()
    url = os.environ.get("METACRM_TEST_POSTGRES_URL")
    if url:
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = sa.create_engine(url)
        lines += bench_filter(engine)
        engine.dispose()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
