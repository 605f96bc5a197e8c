"""Runs every benchmark and writes bench/RESULTS.md (`make bench` runs this).

    python bench/run_all.py                       # full run (~5-10 minutes on 2 cores)
    python bench/run_all.py --quick               # smoke run: fewer rows, rounds and requests
    python bench/run_all.py --no-write            # print only, keep RESULTS.md as it is
    python bench/run_all.py --skip formula,security   # leave out slow parts
    python bench/run_all.py --compare 938d8ee     # the api part also on an earlier commit

Each benchmark runs in its own process: bench_api.py, bench_ddl.py and bench_security.py hand
back JSON; bench_formula.py and bench_packs.py print a markdown section, which is taken as it
is. A skipped part keeps its section of the existing RESULTS.md (or says it was not run).
PostgreSQL parts need METACRM_BENCH_POSTGRES_URL (or METACRM_TEST_POSTGRES_URL); without one
they are reported as skipped. The URL is handed to each script under the variable it reads.
`--compare REV` runs REV's own bench_api.py on REV's code (a temporary git worktree) right
after the current one, so that a change is judged against figures of the same session.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
PARTS = ("api", "ddl", "formula", "packs", "security", "peer", "web", "jobs", "data")
HEADINGS = {
    "api": "## Generated REST API vs hand-written FastAPI + SQLAlchemy",
    "ddl": "## Adding a field to a 1,000,000-row table (PostgreSQL)",
    "formula": "## Formula engine",
    "packs": "## Packs: crm-core install and no-op re-plan",
    "security": "## Record access at scale: a rep's list vs an admin's (PostgreSQL)",
    #: Written by hand from ../shared/peer/peerbench.py runs (Directus is not ours to start):
    #: run_all.py keeps this section as it is.
    "peer": "## Peer benchmark: metacrm and Directus 12.4.0 (`../shared/peer`)",
    "web": "## Web pages (issue 12)",
    "jobs": "## Job queue and automation (issue 14)",
    "data": "## Data import, batch and raw inserts, duplicate scan (issue 15)",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dirty_core() -> str:
    """A note when metacrm/ has uncommitted changes (the figures are of the working tree)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "metacrm"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return (
        " (plus uncommitted changes in metacrm/: figures are of the working tree)" if status else ""
    )


def script_section(
    results: dict[str, Any],
    command: str,
    intro: str,
    backend: Callable[[dict[str, Any]], list[str]],
) -> str:
    """A bench script's RESULTS.md section, without its heading: the command, date, commit
    and machine, `intro`, then per database run its title and the lines `backend` makes of
    its result (or why it was skipped)."""
    lines = [
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit {git_commit()}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}",
        "",
        intro,
        "",
    ]
    for name, title in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        result = results.get(name)
        if result is None:
            continue
        lines += [f"### {title}", ""]
        lines += [f"Skipped: {result['skipped']}.", ""] if "skipped" in result else backend(result)
    return "\n".join(lines)


def write_section(heading: str, text: str) -> None:
    """Put `text` (a section starting with `heading`) into RESULTS.md in place of the
    section under that heading, or at the end; the other sections stay as they are."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if heading in current:
        before, _, after = current.partition(heading)
        rest = after.split("\n## ", 1)
        tail = "\n## " + rest[1] if len(rest) > 1 else ""
        current = before.rstrip() + "\n\n" + text.rstrip() + "\n" + tail
    else:
        current = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    RESULTS.write_text(current)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def pg_url() -> str | None:
    return os.environ.get("METACRM_BENCH_POSTGRES_URL") or os.environ.get(
        "METACRM_TEST_POSTGRES_URL"
    )


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a bench script: the PostgreSQL URL under both names it may read."""
    env = dict(os.environ)
    url = pg_url()
    for name in ("METACRM_BENCH_POSTGRES_URL", "METACRM_TEST_POSTGRES_URL"):
        if url:
            env[name] = url
        else:
            env.pop(name, None)
    env.update(extra or {})
    return env


def run_json(script: str, args: list[str], *, root: Path = ROOT) -> dict[str, Any]:
    """Run a bench script of the tree at `root` (its code on the path) in its own process,
    its output streaming through; return its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(root / "bench" / script), *args, "--json", str(out)]
        print(f"\n$ {' '.join(command[1:])}", flush=True)
        env = script_env() | {"PYTHONPATH": str(root)}
        subprocess.run(command, cwd=root, check=True, env=env)
        return json.loads(out.read_text())


def run_json_at(revision: str, script: str, args: list[str]) -> dict[str, Any]:
    """`run_json` on the code of an earlier commit, checked out in a temporary worktree."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(tree), revision], check=True)
        try:
            return run_json(script, args, root=tree)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=True)


def compare_section(revision: str, now: dict[str, Any], before: dict[str, Any]) -> str:
    """The generated/hand-written ratios of `revision` and of this commit, side by side."""
    lines = [
        f"### This commit against {revision}, measured in the same session",
        "",
        f"`--compare {revision}` ran {revision}'s own `bench_api.py` on its own code right "
        "after this commit's run, with the same settings. Ratios are generated / hand-written "
        "(lower is better); the hand-written baseline is the same in both.",
        "",
        "| database | operation | wall ratio before | wall ratio now | CPU ratio before "
        "| CPU ratio now |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for backend in ("sqlite", "postgresql"):
        old, new = before.get(backend, {}), now.get(backend, {})
        for op, entry in new.get("ops", {}).items():
            prior = old.get("ops", {}).get(op)
            if prior is None:
                continue
            lines.append(
                f"| {backend} | {op} | {prior['ratio_wall']:.2f}x | {entry['ratio_wall']:.2f}x "
                f"| {prior['ratio_cpu']:.2f}x | {entry['ratio_cpu']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def run_markdown(script: str, args: list[str], env: dict[str, str] | None = None) -> str:
    """Run a bench script that prints a markdown section; return that section's body."""
    command = [sys.executable, str(HERE / script), *args]
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(f"\n$ {shown + ' ' if shown else ''}{' '.join(command[1:])}", flush=True)
    done = subprocess.run(
        command, cwd=ROOT, check=True, env=script_env(env), capture_output=True, text=True
    )
    sys.stderr.write(done.stderr)
    print(done.stdout, flush=True)
    text = done.stdout.strip()
    if text.startswith("## "):  # the script's own heading: run_all.py writes its own
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text.strip() + "\n"


def kept_section(part: str) -> str:
    """The section of a skipped part from the current RESULTS.md, else a note."""
    heading = HEADINGS[part]
    if RESULTS.exists():
        match = re.search(
            rf"^{re.escape(heading)}\n(.*?)(?=^## |\Z)", RESULTS.read_text(), re.M | re.S
        )
        if match:
            return match.group(1).strip() + "\n"
    return f"Not run (`--skip {part}`).\n"


def api_section(name: str, result: dict[str, Any]) -> str:
    from bench.bench_api import table

    title = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[name]
    if "skipped" in result:
        return f"### {title}\n\nSkipped: {result['skipped']}.\n"
    b = result["breakdown"]
    version_check = b.get("version_check_us")
    if version_check is None:
        version_check = (
            b["tenant_tx_with_version_check_us"] - b["tenant_tx_without_version_check_us"]
        )
    lines = [
        f"### {title} {result['server_version']}",
        "",
        f"{result['rows']:,} seeded rows; {result['rounds']} rounds x {result['requests']} "
        "requests per operation and app; medians of the per-round medians.",
        "",
        table(result),
        "",
        "Pieces of the generated path, timed in-process without HTTP (µs per call, median of 7 "
        "interleaved rounds):",
        "",
        "| piece | µs |",
        "| --- | ---: |",
        f"| JWT decode (`read_token`), same work as the baseline | {b['jwt_decode_us']:.0f} |",
        "| tenant transaction, empty (`db.tenant`: checkout, BEGIN, COMMIT) "
        f"| {b['tenant_tx_without_version_check_us']:.0f} |",
        "| tenant transaction + caller/metadata-version query (`state.tenant`) "
        f"| {b['tenant_tx_with_version_check_us']:.0f} |",
        f"| = cost of that per-request query (paired difference per round) | {version_check:.0f} |",
        "| serialising 50 rows with `row_to_record` "
        f"| {b.get('serialize_50_rows_us', float('nan')):.0f} |",
        "| `formula.compile_filter` of the `where=` (parse + check + to SQL; now once per role "
        f"and filter text, then cached) | {b['compile_where_filter_us']:.0f} |",
        "| the per-request `where=` step now: cached lookup (`listing._filter`) "
        f"| {b.get('where_filter_cached_us', float('nan')):.0f} |",
        "| `list_records` service call incl. transaction (no HTTP) "
        f"| {b['list_records_service_no_http_us']:.0f} |",
        "",
    ]
    if "statements" in result:
        lines += [
            "SQL statements per request as SQLAlchemy sends them (count: kinds; driver-level "
            "BEGIN/COMMIT of the hand-written app are not seen, metacrm's explicit SQLite "
            "`BEGIN` is):",
            "",
            "| operation | generated | hand-written |",
            "| --- | --- | --- |",
            *[
                f"| {op} | {s['generated']} | {s['handwritten']} |"
                for op, s in result["statements"].items()
            ],
            "",
        ]
    return "\n".join(lines)


def ddl_section(result: dict[str, Any]) -> str:
    from bench.bench_ddl import table

    if "skipped" in result:
        return f"Skipped: {result['skipped']}.\n"
    before = result["table_before"]
    return "\n".join(
        [
            f"PostgreSQL {result['server_version']}; {result['row_count']:,} rows loaded with "
            f"`INSERT ... SELECT generate_series` in {result['load_seconds']:.1f} s "
            f"(VACUUM ANALYZE {result['vacuum_analyze_seconds']:.1f} s); heap "
            f"{before['heap_bytes'] / 2**20:.0f} MiB, with indexes "
            f"{before['total_bytes'] / 2**20:.0f} MiB.",
            "",
            "`seconds` is the whole change (HTTP where stated, metadata load, check, diff, DDL, "
            "new version, commit). `relfilenode` is read from `pg_class` before and after: a "
            "rewrite gives the table a new one. *First request after* is the next "
            "`GET /api/v1/data/big?limit=1`, which recompiles the tenant for the new version.",
            "",
            table(result),
            "",
        ]
    )


API_INTRO = (
    "`bench/bench_api.py`. Both apps run in one process and event loop, driven one request at "
    "a time by `httpx.AsyncClient` over `httpx.ASGITransport` (no sockets), against the same "
    "table (the one metacrm created for `deal`: 8 system columns + name, amount, stage, "
    "close_date). The hand-written app authenticates the same bearer JWT with pyjwt, "
    "validates input with pydantic, uses SQLAlchemy Core on an engine with the same "
    "options/pragmas, returns the same JSON, and uses `INSERT/UPDATE ... RETURNING`. "
    "Operations: `create` (POST), `get` (by id), `list` (`where=amount > 500 and stage == "
    "'won'`, limit 50, ~1/6 of rows match; the baseline takes `amount_gt=500&stage=won`), "
    "`patch` (amount). Wall = median time of one request; CPU = `time.process_time()` of "
    "the whole process (client, both apps, aiosqlite's thread; not the PostgreSQL server) "
    "per 1,000 requests. The no-op floor row is the client + ASGI + FastAPI cost that both "
    "apps pay.\n"
)
INTROS = {
    "formula": "`bench/bench_formula.py` (a compiled closure vs parse + check + evaluate per "
    "record; a formula-field filter in SQL, with and without an index on its input, vs "
    "loading the rows and filtering in Python).\n",
    "packs": "`bench/bench_packs.py`.\n",
    "security": "`bench/bench_security.py` (issue 4).\n",
}


def render(command: str, sections: dict[str, str], pg_version: str | None) -> str:
    parts = [
        "# Benchmark results",
        "",
        "Written by `bench/run_all.py`; measurements only (no timing is asserted anywhere). "
        "A 2-core shared machine is noisy: compare ratios, not absolute numbers, and rerun "
        "before drawing conclusions from a difference under ~10%.",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- commit: {git_commit()}{dirty_core()}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {pg_version or 'not used (no URL)'}",
        "",
    ]
    for part in PARTS:
        parts += [HEADINGS[part], "", sections[part].rstrip(), ""]
    return "\n".join(parts).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, not for RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated parts to leave out ({', '.join(PARTS)}); they keep their "
        "section of RESULTS.md",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also run the api part on this earlier commit and show both side by side",
    )
    args = parser.parse_args()
    skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    if skip - set(PARTS):
        parser.error(f"unknown parts {sorted(skip - set(PARTS))}; choose from {', '.join(PARTS)}")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.bench_security import section as security_section

    quick = args.quick
    sections: dict[str, str] = {}
    versions: list[str | None] = []
    started = time.perf_counter()
    timings: dict[str, float] = {}
    for part in PARTS:
        t0 = time.perf_counter()
        if part in skip or part == "peer":
            sections[part] = kept_section(part)
            continue
        if part == "api":
            api_args = ["--rows", "2000", "--rounds", "2", "--requests", "50"] * quick
            api = run_json("bench_api.py", api_args)
            versions.append(api.get("postgresql", {}).get("server_version"))
            blocks = [
                API_INTRO,
                api_section("sqlite", api.get("sqlite", {"skipped": "not run"})),
                api_section("postgresql", api.get("postgresql", {"skipped": "not run"})),
            ]
            if args.compare:
                before = run_json_at(args.compare, "bench_api.py", api_args)
                blocks.append(compare_section(args.compare, api, before))
            sections[part] = "\n".join(blocks)
        elif part == "ddl":
            ddl = run_json("bench_ddl.py", ["--rows", "100000"] * quick)
            versions.append(ddl.get("server_version"))
            sections[part] = "`bench/bench_ddl.py`.\n\n" + ddl_section(ddl)
        elif part == "formula":
            env = {"BENCH_RECORDS": "5000", "BENCH_ROWS": "50000"} if quick else None
            sections[part] = INTROS[part] + "\n" + run_markdown("bench_formula.py", [], env)
        elif part == "packs":
            sections[part] = (
                INTROS[part]
                + "\n"
                + run_markdown("bench_packs.py", ["--runs", "2" if quick else "5"])
            )
        elif part == "security":
            security = run_json(
                "bench_security.py",
                ["--rows", "100000", "--shares", "10000", "--rounds", "1", "--requests", "3"]
                * quick,
            )
            versions.append(security.get("server_version"))
            sections[part] = INTROS[part] + "\n" + security_section(security)
        elif part == "web":
            from bench.bench_web import body as web_section

            web_args = ["--rows", "20000", "--accounts", "200", "--repeats", "10"] * quick
            web = run_json("bench_web.py", web_args)
            command = " ".join(["python bench/bench_web.py", *web_args])
            sections[part] = web_section(web, command)
        elif part == "jobs":
            from bench.bench_jobs import body as jobs_section

            jobs_args = ["--jobs", "300", "--rounds", "1", "--requests", "30"] * quick
            jobs_args += ["--timers", "1000", "--probes", "5"] * quick
            result = run_json("bench_jobs.py", jobs_args)
            sections[part] = jobs_section(
                result, " ".join(["python bench/bench_jobs.py", *jobs_args])
            )
        elif part == "data":
            from bench.bench_data import body as data_section

            # bench_data.py's own defaults (100,000 rows) take hours at today's import rate.
            data_args = ["--rows", "20000", "--memory-rows", "2000,20000"]
            if quick:
                data_args = ["--rows", "1000", "--memory-rows", "500,1000", "--scan-rows", "5000"]
            result = run_json("bench_data.py", data_args)
            command = " ".join(["python bench/bench_data.py", *data_args])
            sections[part] = data_section(result, command)
        timings[part] = time.perf_counter() - t0
    command = "python bench/run_all.py" + (" --quick" if quick else "")
    if args.compare:
        command += f" --compare {args.compare}"
    if skip:
        command += f" --skip {','.join(p for p in PARTS if p in skip)}"
    text = render(command, sections, next((v for v in versions if v), None))
    print("\n" + text)
    print(
        "seconds per part: "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + f"; total {time.perf_counter() - started:.0f}"
    )
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
