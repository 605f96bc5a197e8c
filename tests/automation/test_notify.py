"""Notifications and e-mail on both databases: recipients, the API, templates, a real SMTP server."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.messages import Recipient
from metacrm.metadata.store import current_version
from metacrm.platform.db import Database
from metacrm.platform.worker import Worker
from metacrm.runtime.automation.notify import notify, send_email
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.jobs import Outbound
from metacrm.runtime.records import fetch, utcnow
from tests.conftest import TenantClient, new_tenant

ROLES = [
    {
        "api_name": "sales_manager",
        "objects": {"lead": {"create": True, "read": True}, "account": {"read": True}},
    },
    {
        "api_name": "sales_rep",
        "reports_to": "sales_manager",
        "objects": {
            "lead": {"create": True, "read": True, "edit": True},
            "account": {"read": True},
        },
    },
]
ACCOUNT = {"api_name": "account", "fields": [{"api_name": "name", "type": "text"}]}
LEAD = {
    "api_name": "lead",
    "label": {"en": "Lead", "zh-CN": "线索"},
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "email", "type": "email"},
        {"api_name": "reviewer", "type": "text"},
        {"api_name": "account", "type": "lookup", "target": "account"},
    ],
}
WELCOME = {
    "api_name": "welcome",
    "object": "lead",
    "subject": {"en": "Welcome, {{ name }}", "zh-CN": "欢迎，{{ name }}"},
    "body": {
        "en": "Hello {{ name }} of {{ account.name }}.\n",
        "zh-CN": "{{ account.name }} 的 {{ name }}，您好。\n",
    },
}

Call = Callable[[AsyncConnection, CompiledTenant, CompiledObject, dict[str, Any]], Awaitable[int]]


async def _team(admin: TenantClient) -> dict[str, TenantClient]:
    document = {"objects": [ACCOUNT, LEAD], "roles": ROLES, "email_templates": [WELCOME]}
    response = await admin.post("/api/v1/metadata/apply", json=document)
    assert response.status_code == 200, response.text
    boss = await admin.add_user("boss@x.test", role="sales_manager")
    rep = await admin.add_user("rep@x.test", role="sales_rep", manager_id=boss.user_id)
    other = await admin.add_user("other@x.test", role="sales_rep")
    return {"boss": boss, "rep": rep, "other": other}


async def _with_record(app: Any, tenant: TenantClient, record_id: str, call: Call) -> int:
    """Run `call` on a record in one tenant transaction, as an automation action does."""
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage) as conn:
        ct = await state.cache.compiled(conn, storage, await current_version(conn))
        co = ct.object("lead")
        return await call(conn, ct, co, await fetch(conn, co, uuid.UUID(record_id)))


def _to(*recipients: dict[str, Any]) -> list[Recipient]:
    return [Recipient.model_validate(r) for r in recipients]


async def _unread(user: TenantClient) -> int:
    response = await user.get("/api/v1/notifications/unread-count")
    assert response.status_code == 200, response.text
    return int(response.json()["unread"])


async def test_notify_by_role_owner_manager_and_field(app: Any, tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss, other = team["rep"], team["boss"], team["other"]
    account = await tenant.create("account", {"name": "Acme"})
    lead = await rep.create(
        "lead", {"name": "Ann", "reviewer": "other@x.test", "account": account["id"]}
    )
    title = {"en": "New lead {{ name }} at {{ account.name }}", "zh-CN": "新线索 {{ name }}"}

    async def owner_and_manager(conn: Any, ct: Any, co: Any, record: dict[str, Any]) -> int:
        return await notify(
            conn, ct, co, record, _to({"kind": "owner"}, {"kind": "manager"}), title, "Call"
        )

    assert await _with_record(app, tenant, lead["id"], owner_and_manager) == 2

    async def role_and_field(conn: Any, ct: Any, co: Any, record: dict[str, Any]) -> int:
        to = _to({"kind": "role", "role": "sales_rep"}, {"kind": "field", "field": "reviewer"})
        return await notify(conn, ct, co, record, to, "Review {{ name }}", None)

    # rep and other hold the role; other is the reviewer too, and is notified once.
    assert await _with_record(app, tenant, lead["id"], role_and_field) == 2
    assert [await _unread(u) for u in (rep, boss, other, tenant)] == [2, 1, 1, 0]

    mine = (await rep.get("/api/v1/notifications")).json()["notifications"]
    assert [n["title"] for n in mine] == ["Review Ann", "New lead Ann at Acme"]
    assert mine[1]["message"] == "Call" and mine[1]["object"] == "lead"
    assert mine[1]["record_id"] == lead["id"] and mine[1]["read"] is False
    chinese = await rep.get("/api/v1/notifications", headers={"Accept-Language": "zh-CN"})
    assert chinese.json()["notifications"][1]["title"] == "新线索 Ann"

    # Marking read: one, then all; the unread filter and the count follow.
    first = mine[1]["id"]
    assert (await rep.post(f"/api/v1/notifications/{first}/read")).status_code == 200
    assert await _unread(rep) == 1
    unread = (await rep.get("/api/v1/notifications", params={"unread": "true"})).json()
    assert [n["title"] for n in unread["notifications"]] == ["Review Ann"]
    page = (await rep.get("/api/v1/notifications", params={"limit": 1})).json()
    assert page["next_before"] == mine[0]["id"]
    rest = await rep.get("/api/v1/notifications", params={"before": page["next_before"]})
    assert [n["id"] for n in rest.json()["notifications"]] == [first]

    # Another user's notification is neither listed nor markable.
    theirs = (await boss.get("/api/v1/notifications")).json()["notifications"][0]["id"]
    assert theirs not in {n["id"] for n in mine}
    response = await rep.post(f"/api/v1/notifications/{theirs}/read")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await rep.post("/api/v1/notifications/not-an-id/read")).status_code == 404
    assert await _unread(boss) == 1
    assert (await rep.post("/api/v1/notifications/read-all")).json() == {"marked": 1}
    assert await _unread(rep) == 0 and await _unread(boss) == 1
    assert (await rep.get("/api/v1/notifications", params={"bogus": 1})).status_code == 400


async def test_templates_are_checked(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/metadata/apply", json={"objects": [ACCOUNT, LEAD]})
    bad = {
        "api_name": "bad",
        "object": "lead",
        "subject": {"en": "Hi {{ name", "zh-CN": "{{ nickname }}"},
        "body": "{{ account.owner_id }} {{ account.nope }} {{ name.__class__ }}",
    }
    response = await tenant.post("/api/v1/metadata/email-templates", json=bad)
    assert response.status_code == 422, response.text
    found = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert found == {
        ("email_templates/bad/subject/en", "template-syntax"),
        ("email_templates/bad/subject/zh-CN", "unknown-placeholder"),
        ("email_templates/bad/body", "unknown-placeholder"),
    }
    messages = " ".join(e["message"] for e in response.json()["errors"])
    assert "account.nope" in messages and "nickname" in messages
    loose = {"api_name": "loose", "subject": "Hi {{ name }}", "body": "text"}
    response = await tenant.post("/api/v1/metadata/email-templates", json=loose)
    assert response.status_code == 422
    good = WELCOME | {"format": "html"}
    response = await tenant.post("/api/v1/metadata/email-templates", json=good)
    assert response.status_code == 201, response.text


class _Inbox:
    """An aiosmtpd handler keeping what it accepts; `refuse` answers DATA with a code."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _smtp(inbox: _Inbox, port: int) -> Iterator[None]:
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


@pytest.fixture
async def mailer(app: Any) -> AsyncIterator[tuple[Worker, int]]:
    """A worker whose e-mail goes to 127.0.0.1 on a free port (no server there yet)."""
    state = app.state.metacrm
    port = _free_port()
    outbound = Outbound(smtp_host="127.0.0.1", smtp_port=port, mail_from="crm@x.test")
    yield Worker(state.db, state.cache, outbound, name=f"mail-{port}"), port


async def _jobs(tenant: TenantClient, status: str) -> list[dict[str, Any]]:
    response = await tenant.get("/api/v1/automation/jobs", params={"status": status})
    return list(response.json()["jobs"])


async def test_email_arrives_in_the_tenants_language_after_smtp_was_down(
    app: Any, client: Any, mailer: tuple[Worker, int]
) -> None:
    worker, port = mailer
    tenant = await new_tenant(client, default_language="zh-CN")
    storage = Database.storage_name(tenant.tenant)
    await _team(tenant)
    account = await tenant.create("account", {"name": "Acme <&>"})
    lead = await tenant.create(
        "lead", {"name": "王芳", "email": "wang@example.com", "account": account["id"]}
    )
    language = await app.state.metacrm.tenant_language(storage)

    async def welcome(conn: Any, ct: Any, co: Any, record: dict[str, Any]) -> int:
        to = _to(
            {"kind": "field", "field": "email"},
            {"kind": "manager"},  # the admin owns it and has no manager: nobody
            {"kind": "address", "address": "sales@x.test"},
            {"kind": "user", "user": "boss@x.test"},
        )
        return await send_email(conn, ct, co, record, to, "welcome", language=language)

    assert await _with_record(app, tenant, lead["id"], welcome) == 3
    inbox = _Inbox()
    now = utcnow()
    # No server listens yet: every try fails and is put back for later.
    assert await worker.drain(storage, now=now) == 3
    pending = await _jobs(tenant, "pending")
    assert len(pending) == 3 and all("Connect" in (j["last_error"] or "") for j in pending)
    with _smtp(inbox, port):
        # A 451 (try later) keeps them pending; the next try delivers.
        inbox.refuse = "451 4.3.0 busy"
        assert await worker.drain(storage, now=now + dt.timedelta(minutes=1)) == 3
        assert len(await _jobs(tenant, "pending")) == 3 and inbox.messages == []
        inbox.refuse = None
        assert await worker.drain(storage, now=now + dt.timedelta(minutes=10)) == 3
    done = await _jobs(tenant, "done")
    assert sorted(m["To"] for m in inbox.messages) == [
        "boss@x.test",
        "sales@x.test",
        "wang@example.com",
    ]
    mail = inbox.messages[0]
    assert mail["Subject"] == "欢迎，王芳"
    # A text body: nothing escaped (SMTP carries lines ending in CRLF).
    assert mail.get_content().replace("\r\n", "\n") == "Acme <&> 的 王芳，您好。\n"
    assert mail["From"] == "crm@x.test" and mail["Content-Language"] == "zh-CN"
    # The Message-ID is the job's: every try of a job sends the same message.
    ids = {f"<{j['id']}@x.test>" for j in done}
    assert {m["Message-ID"] for m in inbox.messages} == ids
    assert all(j["attempts"] == 3 for j in done)


async def test_html_escapes_values_and_5xx_is_permanent(
    app: Any, tenant: TenantClient, mailer: tuple[Worker, int]
) -> None:
    worker, port = mailer
    storage = Database.storage_name(tenant.tenant)
    await _team(tenant)
    html = WELCOME | {"api_name": "html", "format": "html", "body": "<p>{{ name }}</p>"}
    assert (await tenant.post("/api/v1/metadata/email-templates", json=html)).status_code == 201
    lead = await tenant.create("lead", {"name": "<script>x</script>", "email": "a@example.com"})

    async def send(conn: Any, ct: Any, co: Any, record: dict[str, Any]) -> int:
        return await send_email(conn, ct, co, record, _to({"kind": "owner"}), "html")

    assert await _with_record(app, tenant, lead["id"], send) == 1
    inbox = _Inbox()
    with _smtp(inbox, port):
        assert await worker.drain(storage) == 1
        assert await _with_record(app, tenant, lead["id"], send) == 1
        inbox.refuse = "554 5.7.1 rejected"
        assert await worker.drain(storage) == 1
    (mail,) = inbox.messages
    assert mail.get_content_type() == "text/html"
    assert mail.get_content().strip() == "<p>&lt;script&gt;x&lt;/script&gt;</p>"
    assert mail["Subject"] == "Welcome, <script>x</script>"  # the tenant's language: en
    (dead,) = await _jobs(tenant, "dead")
    assert dead["attempts"] == 1 and "554" in dead["last_error"]


async def test_email_is_off_without_an_smtp_host(app: Any, tenant: TenantClient) -> None:
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    await _team(tenant)
    lead = await tenant.create("lead", {"name": "Ann"})

    async def send(conn: Any, ct: Any, co: Any, record: dict[str, Any]) -> int:
        return await send_email(conn, ct, co, record, _to({"kind": "owner"}), "welcome")

    assert await _with_record(app, tenant, lead["id"], send) == 1
    worker = Worker(state.db, state.cache, Outbound(smtp_host=None), name="no-mail")
    assert await worker.drain(storage) == 1
    (dead,) = await _jobs(tenant, "dead")
    assert dead["last_error"] == "e-mail is off: set METACRM_SMTP_HOST"


async def test_a_rules_email_action_reaches_the_smtp_server(
    app: Any, tenant: TenantClient, mailer: tuple[Worker, int]
) -> None:
    """A saved lead triggers a rule whose e-mail action renders the template; the job it
    enqueues delivers the message to the loopback server."""
    worker, port = mailer
    storage = Database.storage_name(tenant.tenant)
    await _team(tenant)
    rule = {
        "api_name": "welcome_leads",
        "object": "lead",
        "trigger": {"on": "created"},
        "condition": "NOT(ISBLANK(email))",
        "actions": [
            {"kind": "email", "to": [{"kind": "field", "field": "email"}], "template": "welcome"}
        ],
    }
    response = await tenant.post("/api/v1/metadata/automation-rules", json=rule)
    assert response.status_code == 201, response.text
    account = await tenant.create("account", {"name": "Acme"})
    await tenant.create("lead", {"name": "Ann", "account": account["id"]})
    await tenant.create("lead", {"name": "Bob", "email": "bob@example.com"})
    inbox = _Inbox()
    with _smtp(inbox, port):
        assert await worker.drain(storage) >= 2  # the rule's job, then the e-mail's
    (mail,) = inbox.messages
    assert mail["To"] == "bob@example.com" and mail["Subject"] == "Welcome, Bob"
    assert mail.get_content().replace("\r\n", "\n") == "Hello Bob of .\n"


async def test_a_rules_email_goes_out_in_the_tenants_language(
    app: Any, client: Any, mailer: tuple[Worker, int]
) -> None:
    """The worker tells the job its tenant's default language (zh-CN here)."""
    worker, port = mailer
    tenant = await new_tenant(client, default_language="zh-CN")
    storage = Database.storage_name(tenant.tenant)
    await _team(tenant)
    rule = {
        "api_name": "welcome_leads",
        "object": "lead",
        "trigger": {"on": "created"},
        "actions": [
            {"kind": "email", "to": [{"kind": "field", "field": "email"}], "template": "welcome"}
        ],
    }
    response = await tenant.post("/api/v1/metadata/automation-rules", json=rule)
    assert response.status_code == 201, response.text
    await tenant.create("lead", {"name": "王芳", "email": "wang@example.com"})
    inbox = _Inbox()
    with _smtp(inbox, port):
        assert await worker.drain(storage) >= 2
    (mail,) = inbox.messages
    assert mail["Subject"] == "欢迎，王芳" and mail["Content-Language"] == "zh-CN"
