"""Runs the README tour and every doc's examples, in order, against a real `make run` server.

The server is `make run`'s own command (read from the Makefile), started in a fresh
directory on a free loopback port, so the docs meet exactly what a reader meets: the
default data directory, the demo tenant and its crm-core pack. The blocks a doc may hold:

- ```` ```http ````: `user: METHOD path -> status [=> name]` then an optional JSON body;
  `=> name` keeps the answer's `id` as `{name}` for later blocks, and for `POST
  /api/v1/users` also logs the new user in as the client `name` (`admin` is admin@demo);
- ```` ```json object ````: `POST /api/v1/metadata/objects -> 201` as admin;
- ```` ```json record ````: `POST /api/v1/data/{the object above} -> 201` as admin;
- ```` ```json apply ````: `POST /api/v1/metadata/apply -> 200` as admin;
- ```` ```sh ````: shell commands, as a reader types them in one terminal: every `sh`
  block of a doc runs in one bash session (`set -euo pipefail`) in the server's
  directory, with its settings and the virtualenv's `metacrm` on PATH; `{name}`
  placeholders are filled in, and ```` ```sh => name ```` keeps the `id` of the JSON
  its output ends with;
- the README's five-minute tour, a bash script run in the server's directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from metacrm.metadata.model import DOCUMENT_KINDS
from metacrm.platform.settings import Settings
from tests.conftest import TenantClient, login

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The order a reader follows; each runs after the ones before it, in the same tenant.
DOCS = [
    "metadata.md",
    "layouts.md",
    "process.md",
    "security.md",
    "web.md",
    "automation.md",
    "data.md",
]
START_TIMEOUT = 240.0  # seconds: migrations and the crm-core install on a busy machine
STOP_TIMEOUT = 15.0
REQUEST_TIMEOUT = 120.0
TOUR_TIMEOUT = 180.0
SHELL_TIMEOUT = 120.0  # seconds one sh block may take

_BLOCK = re.compile(r"```(http|json object|json record|json apply|sh(?: => \w+)?)\n(.*?)```", re.S)
_HTTP = re.compile(r"(\w+): (\w+) (\S+) -> (\d+)(?: => (\w+))?\n(.*)", re.S)


@dataclass
class Step:
    """One request of a doc: who sends it, what, and the status the doc promises."""

    user: str
    method: str
    path: str
    status: int
    keep: str
    body: str


@dataclass
class DocResult:
    """The kept names and the last answer of each `user METHOD path` of one doc."""

    names: dict[str, str] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)


def doc_steps(doc: Path) -> list[Step]:
    """The requests of a doc's runnable blocks, in order."""
    steps: list[Step] = []
    current = ""
    for kind, text in _BLOCK.findall(doc.read_text(encoding="utf-8")):
        if kind == "http":
            match = _HTTP.fullmatch(text)
            assert match, f"{doc.name}: malformed http block {text[:80]!r}"
            user, method, path, status, keep, body = match.groups()
            steps.append(Step(user, method, path, int(status), keep or "", body))
        elif kind.startswith("sh"):
            keep = kind.partition(" => ")[2]
            steps.append(Step("shell", "SH", "", 0, keep, text))
        elif kind == "json object":
            current = json.loads(text)["api_name"]
            steps.append(Step("admin", "POST", "/api/v1/metadata/objects", 201, "", text))
        elif kind == "json record":
            assert current, f"{doc.name}: a json record block before any json object block"
            steps.append(Step("admin", "POST", f"/api/v1/data/{current}", 201, "", text))
        else:
            steps.append(Step("admin", "POST", "/api/v1/metadata/apply", 200, "", text))
    return steps


class Shell:
    """One bash session for a doc's `sh` blocks, in the server's directory and settings."""

    _END = "__doc_block_done__"

    def __init__(self, server: DemoServer) -> None:
        self.server = server
        self.process: asyncio.subprocess.Process | None = None

    async def run(self, script: str) -> str:
        """Run one block; its output. A failing command ends the session: an AssertionError."""
        if self.process is None:
            env = dict(self.server.env)
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            self.process = await asyncio.create_subprocess_exec(
                "bash",
                "--noprofile",
                "--norc",
                cwd=self.server.directory,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            script = "set -euo pipefail\n" + script
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        script = script.replace("http://127.0.0.1:8000", self.server.url)
        process.stdin.write(f"{script}\necho; echo {self._END}\n".encode())
        await process.stdin.drain()
        lines: list[str] = []
        while True:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), SHELL_TIMEOUT)
            except TimeoutError:
                process.kill()
                raise AssertionError(f"an sh block ran over {SHELL_TIMEOUT}s") from None
            if not line:
                raise AssertionError(f"the shell stopped:\n{''.join(lines)[-4000:]}")
            if line.decode().rstrip("\n") == self._END:
                return "".join(lines)
            lines.append(line.decode(errors="replace"))

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)


async def run_doc(doc: Path, admin: TenantClient, server: DemoServer | None = None) -> DocResult:
    """Send every step of `doc`, checking each status; returns names and answers."""
    clients = {"admin": admin}
    result = DocResult()
    shell = Shell(server) if server is not None else None
    try:
        for step in doc_steps(doc):
            await _run_step(step, result, clients, admin, shell, doc.name)
    finally:
        if shell is not None:
            await shell.close()
    return result


async def _run_step(
    step: Step,
    result: DocResult,
    clients: dict[str, TenantClient],
    admin: TenantClient,
    shell: Shell | None,
    doc: str,
) -> None:
    """One step of a doc: a request checked against its status, or a shell block."""
    path, body = step.path, step.body
    for key, value in result.names.items():
        path = path.replace("{" + key + "}", value)
        body = body.replace("{" + key + "}", value)
    if step.method == "SH":
        assert shell is not None, f"{doc}: sh blocks need the server"
        output = await shell.run(body)
        result.answers[f"sh {len(result.answers)}"] = output
        if step.keep:
            result.names[step.keep] = json.loads(output.strip().splitlines()[-1])["id"]
        return
    kwargs = {"json": json.loads(body)} if body.strip() else {}
    response = await clients[step.user].request(step.method, path, **kwargs)
    where = f"{doc}: {step.user}: {step.method} {path}"
    assert response.status_code == step.status, (where, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    answer = response.json() if response.content else None
    result.answers[f"{step.user} {step.method} {path}"] = answer
    if step.keep:
        result.names[step.keep] = answer["id"]
        if path == "/api/v1/users":
            user = kwargs["json"]
            token = await login(admin.http, admin.tenant, user["email"], user["password"])
            clients[step.keep] = TenantClient(admin.http, admin.tenant, token)


def tour_script() -> str:
    """The README's five-minute tour, word for word."""
    section = README.read_text(encoding="utf-8").split("## Five-minute tour", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the README's tour has no bash block"
    return match.group(1)


def make_run_command() -> list[str]:
    """The command of `make run`, with the virtualenv's `metacrm` run by this Python."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^run:.*\n\t(.+)$", makefile, re.M)
    assert match, "the Makefile has no run target"
    words = shlex.split(match.group(1))
    assert words[0] == "$(BIN)/metacrm", words
    return [sys.executable, "-m", "metacrm.platform.cli", *words[1:]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DemoServer:
    """`make run`'s server in its own directory and process group, started and stopped
    within bounded times."""

    def __init__(self, directory: Path, *, database_url: str | None) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "server.log"
        env = {k: v for k, v in os.environ.items() if not _is_setting(k)}
        env["METACRM_PORT"] = str(self.port)
        if database_url:
            env["METACRM_DATABASE_URL"] = database_url
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """The default data directory, as every command resolves it from here."""
        return self.directory / Settings.model_fields["data_dir"].default

    def password(self) -> str:
        return (self.data_dir / "demo-password.txt").read_text(encoding="utf-8").strip()

    def log_tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return text[-4000:]

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                make_run_command(),
                cwd=self.directory,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"`make run`'s server exited:\n{self.log_tail()}")
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.25)
        self.stop()
        raise TimeoutError(f"`make run`'s server not ready in {START_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group if it has not stopped in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def _is_setting(name: str) -> bool:
    """A METACRM_* variable the server would read (the suite's own are left out)."""
    prefix = "METACRM_"
    return name.startswith(prefix) and name[len(prefix) :].lower() in Settings.model_fields


@dataclass
class DocsRun:
    """The outcome of running the tour and the docs against one server."""

    server: DemoServer
    admin: TenantClient
    before: dict[str, Any]
    after: dict[str, Any] = field(default_factory=dict)
    tour: str | None = None
    tour_skipped: str = ""
    results: dict[str, DocResult | BaseException] = field(default_factory=dict)

    def result(self, doc: str) -> DocResult:
        """The doc's result; its failure re-raised if it failed."""
        outcome = self.results[doc]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def metadata_documents(admin: TenantClient) -> dict[str, Any]:
    """Every metadata document of the tenant, by kind and api_name."""
    found: dict[str, Any] = {}
    listing = await admin.get("/api/v1/metadata/objects")
    assert listing.status_code == 200, listing.text
    for obj in listing.json()["objects"]:
        name = obj["api_name"]
        found[f"objects/{name}"] = (await admin.get(f"/api/v1/metadata/objects/{name}")).json()
    for kind in DOCUMENT_KINDS:
        response = await admin.get(f"/api/v1/metadata/{kind}")
        assert response.status_code == 200, response.text
        for doc in next(iter(v for v in response.json().values() if isinstance(v, list))):
            found[f"{kind}/{doc['api_name']}"] = doc
    return found


async def _run_tour(run: DocsRun) -> None:
    if shutil.which("curl") is None:
        run.tour_skipped = "the tour uses curl"
        return
    script = tour_script().replace("http://127.0.0.1:8000", run.server.url)
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=run.server.directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TOUR_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    run.tour = out.decode()


#: Tenants the docs make, besides the demo (docs/data.md restores a backup as data_copy).
DOC_TENANTS = ("demo", "data_copy")


async def _forget_demo(database_url: str, scratch: Path) -> None:
    """Drop the tenants an earlier run left in this PostgreSQL database."""
    import sqlalchemy as sa

    from metacrm.platform.db import Database
    from metacrm.platform.migrate import upgrade_system
    from metacrm.platform.system_tables import tenants

    db = Database(database_url=database_url, data_dir=scratch)
    try:
        await upgrade_system(db)
        async with db.system() as conn:
            await conn.execute(sa.delete(tenants).where(tenants.c.name.in_(DOC_TENANTS)))
        for name in DOC_TENANTS:
            await db.drop_tenant_storage(db.storage_name(name))
    finally:
        await db.dispose()


@asynccontextmanager
async def docs_run(directory: Path, *, database_url: str | None) -> AsyncIterator[DocsRun]:
    """Start `make run`'s server in `directory`, run the tour then every doc, in order."""
    if database_url:
        await _forget_demo(database_url, directory / "scratch")
    server = DemoServer(directory, database_url=database_url)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT) as http:
            token = await login(http, "demo", "admin@demo", server.password())
            admin = TenantClient(http, "demo", token)
            run = DocsRun(server, admin, before=await metadata_documents(admin))
            try:
                await _run_tour(run)
                run.results["README.md"] = DocResult()
            except (AssertionError, TimeoutError) as error:
                run.results["README.md"] = error
            for name in DOCS:
                try:
                    run.results[name] = await run_doc(ROOT / "docs" / name, admin, server)
                except (AssertionError, KeyError, ValueError) as error:
                    run.results[name] = error
            run.after = await metadata_documents(admin)
            yield run
    finally:
        server.stop()
