"""Webhooks on both databases, through the API, to a real loopback receiver: Standard
Webhooks signatures checked by the official package, retries, the log, replay, SSRF."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from metacrm.metadata.store import current_version
from metacrm.platform.db import Database
from metacrm.runtime.automation.webhooks import TargetRefused, call_endpoint, parse_url
from metacrm.runtime.jobs import PermanentFailure
from tests.conftest import TenantClient

ORDER = {
    "api_name": "sales_order",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "amount", "type": "currency"},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [{"value": "draft"}, {"value": "negotiate"}, {"value": "won"}],
            "default": "draft",
        },
    ],
}
WON = "status == 'won' and ISCHANGED(status)"
#: A status the receiver never answers (it holds the connection open).
HANG = 0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> Any:
        """The payload, once the official package has checked its signature."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    """A loopback HTTP/1.1 endpoint: records each request, answers the queued statuses
    (then 200)."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    #: Set when the test ends: a HANG answer waits for it.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/erp"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _method, path, _version = (await reader.readline()).decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Received(path, headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status == HANG:
            await self.released.wait()
        answer = b"x" * 3000 if status >= 500 else b'{"ok":true}'
        writer.write(
            f"HTTP/1.1 {status} Status\r\ncontent-length: {len(answer)}\r\n"
            "connection: close\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found
        found.released.set()


def _allow_private(app: Any, allowed: bool) -> None:
    """The operator's switch, read by the API (settings) and the worker (outbound)."""
    state = app.state.metacrm
    state.settings.webhooks_allow_private = allowed
    state.worker.outbound = dataclasses.replace(
        state.worker.outbound, webhooks_allow_private=allowed
    )


@pytest.fixture
def private_allowed(app: Any) -> Iterator[None]:
    """Loopback targets allowed for the test (the receiver lives on 127.0.0.1)."""
    _allow_private(app, True)
    yield
    _allow_private(app, False)


async def _webhook(tenant: TenantClient, **body: Any) -> dict[str, Any]:
    response = await tenant.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _log(tenant: TenantClient, webhook_id: str) -> list[dict[str, Any]]:
    response = await tenant.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["deliveries"]
    return rows


@pytest.mark.usefixtures("private_allowed")
async def test_a_won_order_reaches_the_erp_signed_retried_after_a_500_and_replayed(
    tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    await tenant.define(ORDER)
    hook = await _webhook(
        tenant, name="erp", url=receiver.url, object="sales_order", events=["updated"], filter=WON
    )
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["active"] is True
    shown = (await tenant.get(f"/api/v1/webhooks/{hook['id']}")).json()
    assert "secret" not in shown and shown["filter"] == WON
    assert "secret" not in (await tenant.get("/api/v1/webhooks")).json()["webhooks"][0]

    order = await tenant.create("sales_order", {"name": "O-1", "amount": "1200.00"})
    url = f"/api/v1/data/sales_order/{order['id']}"
    assert (await tenant.patch(url, json={"status": "negotiate"})).status_code == 200
    assert await jobs.run(tenant) == 0  # created: not subscribed; negotiate: filtered out
    assert (await tenant.patch(url, json={"status": "won"})).status_code == 200

    receiver.statuses = [500]
    assert await jobs.run(tenant) == 1
    [first] = receiver.requests
    payload = first.verified(secret)
    assert payload["type"] == "sales_order.updated"
    data = payload["data"]
    assert data["object"] == "sales_order" and data["id"] == order["id"]
    assert data["event"] == "updated" and data["changed"] == ["status"]
    record = data["record"]
    assert record["status"] == "won" and record["amount"] == "1200.00"
    assert record["version"] == 3 and record["owner_id"] == order["owner_id"]
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(first.body, first.headers)
    [failed] = await _log(tenant, hook["id"])
    assert failed["status"] == "failed" and failed["http_status"] == 500
    assert failed["attempt"] == 1 and failed["record_id"] == order["id"]
    assert failed["response"] == "x" * 2048  # an excerpt of the answer

    # Not before its backoff (5 s); then the same bytes under the same webhook-id.
    assert await jobs.run(tenant) == 0
    assert await jobs.run(tenant, later=dt.timedelta(seconds=30)) == 1
    second = receiver.requests[1]
    assert second.verified(secret) == payload
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body and second.path == "/hooks/erp"
    log = await _log(tenant, hook["id"])
    assert [(d["status"], d["attempt"]) for d in log] == [("succeeded", 2), ("failed", 1)]
    assert log[0]["http_status"] == 200 and log[0]["response"] == '{"ok":true}'
    assert log[0]["job_id"] == failed["job_id"] == first.headers["webhook-id"]

    # A replay from the log sends the same body again, as a new message (a new id).
    replayed = await tenant.post(f"/api/v1/webhooks/deliveries/{failed['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    assert await jobs.run(tenant) == 1
    third = receiver.requests[2]
    assert third.verified(secret) == payload and third.body == first.body
    assert third.headers["webhook-id"] == replayed.json()["job_id"]
    assert third.headers["webhook-id"] != first.headers["webhook-id"]
    assert [d["status"] for d in await _log(tenant, hook["id"])] == ["succeeded"] * 2 + ["failed"]
    missing = await tenant.post(f"/api/v1/webhooks/deliveries/{order['id']}/replay")
    assert missing.status_code == 404


@pytest.mark.usefixtures("private_allowed")
async def test_events_filters_ping_rotation_and_deletion(
    tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    await tenant.define(ORDER)
    everything = await _webhook(
        tenant, name="audit-trail", url=receiver.url, events=["created", "deleted"]
    )
    big = await _webhook(
        tenant,
        name="big-orders",
        url=receiver.url + "?big=1",
        object="sales_order",
        events=["created", "updated"],
        filter="amount >= 1000",
    )
    small = await tenant.create("sales_order", {"name": "small", "amount": "10"})
    large = await tenant.create("sales_order", {"name": "large", "amount": "5000"})
    patched = await tenant.patch(f"/api/v1/data/sales_order/{small['id']}", json={"amount": "2000"})
    assert patched.status_code == 200
    deleted = await tenant.delete(f"/api/v1/data/sales_order/{large['id']}")
    assert deleted.status_code == 204
    assert await jobs.run(tenant) == 5
    seen = sorted(
        (r.path, (p := json.loads(r.body))["type"], p["data"]["record"]["name"])
        for r in receiver.requests
    )
    assert seen == [
        ("/hooks/erp", "sales_order.created", "large"),
        ("/hooks/erp", "sales_order.created", "small"),
        ("/hooks/erp", "sales_order.deleted", "large"),
        ("/hooks/erp?big=1", "sales_order.created", "large"),
        ("/hooks/erp?big=1", "sales_order.updated", "small"),
    ]

    # An inactive subscription is skipped; a changed filter applies to the next write.
    off = await tenant.patch(f"/api/v1/webhooks/{everything['id']}", json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    changed = await tenant.patch(
        f"/api/v1/webhooks/{big['id']}", json={"filter": "amount < 100", "events": ["created"]}
    )
    assert changed.status_code == 200, changed.text
    receiver.requests.clear()
    await tenant.create("sales_order", {"name": "tiny", "amount": "1"})
    await tenant.create("sales_order", {"name": "huge", "amount": "9000"})
    assert await jobs.run(tenant) == 1
    [only] = receiver.requests
    assert json.loads(only.body)["data"]["record"]["name"] == "tiny"

    # A ping tries a subscription out; a rotated secret signs from then on.
    rotated = await tenant.post(f"/api/v1/webhooks/{big['id']}/rotate-secret")
    assert rotated.status_code == 200
    secret = rotated.json()["secret"]
    assert secret != big["secret"]
    ping = await tenant.post(f"/api/v1/webhooks/{big['id']}/test")
    assert ping.status_code == 202
    assert await jobs.run(tenant) == 1
    pinged = receiver.requests[-1]
    assert pinged.verified(secret)["type"] == "webhook.ping"
    # For a day the old secret signs too, so the receiver may switch when it likes.
    assert pinged.verified(big["secret"]) == pinged.verified(secret)
    assert rotated.json()["previous_until"] > pinged.verified(secret)["timestamp"]
    await tenant.post(f"/api/v1/webhooks/{big['id']}/test")
    assert await jobs.run(tenant, later=dt.timedelta(hours=25)) == 1
    later = receiver.requests[-1]
    assert later.verified(secret)["type"] == "webhook.ping"
    with pytest.raises(WebhookVerificationError):
        later.verified(big["secret"])

    # Deleted: its log goes, and a delivery queued before ends without being sent.
    await tenant.post(f"/api/v1/webhooks/{big['id']}/test")
    assert (await tenant.delete(f"/api/v1/webhooks/{big['id']}")).status_code == 204
    assert (await tenant.get(f"/api/v1/webhooks/{big['id']}")).status_code == 404
    sent = len(receiver.requests)
    assert await jobs.run(tenant) == 1
    assert len(receiver.requests) == sent


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9/hook", "private-address"),
        ("http://10.0.0.1/hook", "private-address"),
        ("http://169.254.169.254/latest/meta-data", "private-address"),
        ("http://[::1]:8080/hook", "private-address"),
        ("http://[::ffff:192.168.1.1]/hook", "private-address"),
        ("http://0.0.0.0/hook", "private-address"),
        ("http://localhost:9/hook", "private-address"),
        ("http://2130706433/hook", "private-address"),  # 127.0.0.1 as one number
        ("http://xn--/hook", "invalid-url"),
        ("ftp://example.com/hook", "scheme"),
        ("not a url", "scheme"),
    ],
)
async def test_private_and_odd_targets_are_refused_at_creation(
    tenant: TenantClient, url: str, code: str
) -> None:
    response = await tenant.post("/api/v1/webhooks", json={"name": "x", "url": url})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("url", code)]


async def test_bad_definitions_name_the_field_and_rule(tenant: TenantClient) -> None:
    await tenant.define(ORDER)

    async def problems(body: dict[str, Any]) -> list[tuple[str, str]]:
        response = await tenant.post("/api/v1/webhooks", json={"name": "x"} | body)
        assert response.status_code == 422, response.text
        return [(e["field"], e["code"]) for e in response.json()["errors"]]

    target = "https://93.184.215.14/hook"  # public, never called: the creation fails first
    assert await problems({"url": target, "object": "nope"}) == [("object", "unknown-object")]
    assert await problems({"url": target, "filter": "amount > 1"}) == [("filter", "needs-object")]
    assert await problems({"url": target, "object": "sales_order", "filter": "amount +"}) == [
        ("filter", "formula")
    ]
    assert await problems({"url": target, "object": "sales_order", "filter": "amount + 1"}) == [
        ("filter", "formula")
    ]
    assert await problems({"url": target, "events": ["exploded"]}) == [("events", "invalid")]
    assert await problems({"url": target, "secret": "mine"}) == [("secret", "unknown-field")]


async def test_only_automation_managers_manage_webhooks(tenant: TenantClient) -> None:
    rep = await tenant.add_user("rep@example.com")
    assert (await rep.get("/api/v1/webhooks")).status_code == 403
    response = await rep.post("/api/v1/webhooks", json={"name": "x", "url": "http://10.0.0.1/"})
    assert response.status_code == 403


async def test_a_target_that_turned_private_is_refused_before_connecting(
    app: Any, tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    # A name the operator let resolve to loopback once; at send time the rule is back on.
    url = f"http://localhost:{receiver.port}/hooks/erp"
    _allow_private(app, True)
    try:
        hook = await _webhook(tenant, name="erp", url=url)
        taken = await tenant.post("/api/v1/webhooks", json={"name": "erp", "url": url})
        assert taken.status_code == 409
        assert [e["code"] for e in taken.json()["errors"]] == ["unique"]
    finally:
        _allow_private(app, False)
    assert (await tenant.post(f"/api/v1/webhooks/{hook['id']}/test")).status_code == 202
    assert await jobs.run(tenant) == 1
    assert receiver.requests == []
    [refused] = await _log(tenant, hook["id"])
    assert refused["status"] == "failed" and refused["http_status"] is None
    assert "loopback" in refused["error"]
    dead = await tenant.get(
        "/api/v1/automation/jobs", params={"kind": "webhook.deliver", "status": "dead"}
    )
    assert [j["id"] for j in dead.json()["jobs"]] == [refused["job_id"]]


@pytest.mark.usefixtures("private_allowed")
async def test_the_checked_address_is_the_one_connected_to(
    tenant: TenantClient, receiver: Receiver, jobs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is resolved once per try, by the SSRF check; the request goes to the address
    checked (no second lookup a rebinding DNS server could answer differently), with the
    name kept in Host. The name exists only in this test's resolver."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def resolver(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == "erp.internal.test":
            asked.append(host)
            host = "127.0.0.1"
        return await real(host, port, *args, **kw)

    monkeypatch.setattr(loop, "getaddrinfo", resolver)
    url = f"http://erp.internal.test:{receiver.port}/hooks/erp"
    hook = await _webhook(tenant, name="erp", url=url)
    assert (await tenant.post(f"/api/v1/webhooks/{hook['id']}/test")).status_code == 202
    assert await jobs.run(tenant) == 1
    [request] = receiver.requests
    assert request.headers["host"] == f"erp.internal.test:{receiver.port}"
    assert request.verified(hook["secret"])["type"] == "webhook.ping"
    assert asked == ["erp.internal.test"] * 2  # at creation and before sending, not after


@pytest.mark.usefixtures("private_allowed")
async def test_a_rule_action_calls_a_named_endpoint(
    app: Any, tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    """`call_endpoint` (a rule's webhook action) sends whatever the subscription's events
    and filter; an unknown name can never succeed."""
    await tenant.define(ORDER)
    hook = await _webhook(
        tenant, name="erp", url=receiver.url, object="sales_order", events=["deleted"]
    )
    order = await tenant.create("sales_order", {"name": "O-7"})
    assert await jobs.run(tenant) == 0
    state, storage = app.state.metacrm, Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage) as conn:
        ct = await state.cache.compiled(conn, storage, await current_version(conn))
        co = ct.object("sales_order")
        stored = (await conn.execute(sa.select(co.table))).mappings().one()
        job_id = await call_endpoint(conn, ct, co, dict(stored), "erp", "automation")
        with pytest.raises(PermanentFailure):
            await call_endpoint(conn, ct, co, dict(stored), "nobody", "automation")
    assert await jobs.run(tenant) == 1
    [request] = receiver.requests
    assert request.headers["webhook-id"] == str(job_id)
    payload = request.verified(hook["secret"])
    assert payload["type"] == "sales_order.automation"
    assert payload["data"]["record"]["name"] == "O-7"
    assert payload["data"]["id"] == order["id"]


@pytest.mark.usefixtures("private_allowed")
async def test_an_endpoint_that_never_answers_times_out_and_is_retried(
    app: Any, tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    worker = app.state.metacrm.worker
    patient = worker.outbound
    worker.outbound = dataclasses.replace(patient, webhook_timeout_seconds=0.2)
    try:
        hook = await _webhook(tenant, name="erp", url=receiver.url)
        receiver.statuses = [HANG]
        assert (await tenant.post(f"/api/v1/webhooks/{hook['id']}/test")).status_code == 202
        assert await jobs.run(tenant) == 1
        [timed_out] = await _log(tenant, hook["id"])
        assert timed_out["status"] == "failed" and timed_out["http_status"] is None
        assert "no complete answer within 0.2 s" in timed_out["error"]
    finally:
        worker.outbound = patient
    assert await jobs.run(tenant, later=dt.timedelta(seconds=30)) == 1
    log = await _log(tenant, hook["id"])
    assert [d["status"] for d in log] == ["succeeded", "failed"]
    assert len(receiver.requests) == 2


@given(
    st.text(max_size=80)
    | st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
        st.text(max_size=40),
        st.text(max_size=20),
    )
)
def test_any_text_is_a_url_or_refused_with_a_rule(url: str) -> None:
    """Whatever an administrator types, the answer is a URL or a named rule, never a crash."""
    try:
        parsed = parse_url(url)
    except TargetRefused as refused:
        assert refused.code in ("too-long", "invalid-url", "scheme")
    else:
        assert parsed.scheme in ("http", "https") and parsed.host


@pytest.mark.usefixtures("private_allowed")
async def test_transfers_and_restores_are_events_too(
    tenant: TenantClient, receiver: Receiver, jobs: Any
) -> None:
    await tenant.define(ORDER)
    await _webhook(
        tenant,
        name="owners",
        url=receiver.url,
        object="sales_order",
        events=["transferred", "restored"],
    )
    rep = await tenant.add_user("rep@example.com", is_admin=True)
    order = await tenant.create("sales_order", {"name": "O-9"})
    url = f"/api/v1/data/sales_order/{order['id']}"
    assert (await tenant.post(f"{url}/owner", json={"owner_id": rep.user_id})).status_code == 200
    assert (await tenant.delete(url)).status_code == 204
    assert (await tenant.post(f"{url}/restore")).status_code == 200
    assert await jobs.run(tenant) == 2
    sent = [json.loads(r.body) for r in receiver.requests]
    assert [p["type"] for p in sent] == ["sales_order.transferred", "sales_order.restored"]
    assert sent[0]["data"]["changed"] == ["owner_id"]
    assert sent[0]["data"]["record"]["owner_id"] == rep.user_id
