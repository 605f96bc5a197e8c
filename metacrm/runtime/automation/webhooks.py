"""Webhooks: subscriptions, signed deliveries on the job queue, the delivery log and the SSRF guard.

A subscription (`mc_webhook`) names a URL, an object (or every object), the events it
wants and a filter expression. The write path's `on_write` step enqueues one
`webhook.deliver` job per matching subscription in the write's transaction, with the
request body fixed there: every retry sends the same bytes under the same `webhook-id`
(the job's id), and a replay is a new job, so a new id (Standard Webhooks). The handler
checks the target against server-side request forgery before it connects, signs the
body (`webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`), posts it to
the checked address and logs every attempt in `mc_webhook_delivery`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import Conflict, FieldError, FormulaError, MetacrmError
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime import jobs
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Write, WriteKind
from metacrm.runtime.jobs import Job, JobContext, JobKind, Outbound, PermanentFailure
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.serialize import json_value
from metacrm.types import JsonValue, UTCDateTime

_log = logging.getLogger(__name__)

Event = Literal["created", "updated", "deleted", "restored", "transferred"]
EVENTS: tuple[Event, ...] = ("created", "updated", "deleted", "restored", "transferred")
_EVENT_OF: dict[WriteKind, Event] = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "restore": "restored",
    "transfer": "transferred",
}
KIND = "webhook.deliver"
#: Waits between tries: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (eight tries over ~28 h).
SCHEDULE = (
    dt.timedelta(seconds=5),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=5),
    dt.timedelta(hours=10),
    dt.timedelta(hours=10),
)
MAX_ATTEMPTS = len(SCHEDULE) + 1
EXCERPT_BYTES = 2048
MAX_URL = 2000

webhooks = sa.Table(
    "mc_webhook",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("url", sa.String(MAX_URL), nullable=False),
    #: "whsec_" + base64 of 24 random bytes; kept in clear because signing needs it.
    sa.Column("secret", sa.String(64), nullable=False),
    #: The secret before the last rotation: deliveries carry its signature too until
    #: `previous_until`, so receivers can switch secrets without losing a message.
    sa.Column("previous_secret", sa.String(64), nullable=True),
    sa.Column("previous_until", UTCDateTime(), nullable=True),
    #: The object whose records it follows; NULL: every object.
    sa.Column("object", sa.String(63), nullable=True),
    sa.Column("events", JsonValue(), nullable=False),
    #: An expression (context "validation") the record must satisfy; NULL: every record.
    sa.Column("filter", sa.Text(), nullable=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The write path's one query: the active subscriptions of an object.
    sa.Index("ix_mc_webhook_object", "active", "object"),
)

DeliveryStatus = Literal["pending", "succeeded", "failed"]

deliveries = sa.Table(
    "mc_webhook_delivery",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("webhook_id", sa.Uuid(), nullable=False),
    #: The job that sent it; its id is the `webhook-id` header.
    sa.Column("job_id", sa.Uuid(), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    #: pending while the request is under way (it stays so if the worker died meanwhile).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("response", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_mc_webhook_delivery_webhook_at", "webhook_id", "at"),
)

#: The columns an administrator sees (never a secret).
SHOWN = tuple(c for c in webhooks.c if c.name not in ("secret", "previous_secret"))
#: How long the secret before a rotation still signs deliveries, beside the new one.
ROTATION_OVERLAP = dt.timedelta(hours=24)


# -- the SSRF guard ---------------------------------------------------------------------


class TargetRefused(Exception):
    """A webhook URL that may not be called: `code` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Target:
    """A checked URL and the address to connect to (the one that was checked)."""

    url: httpx.URL
    address: str


_ADDRESS_RULES = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_unspecified", "unspecified"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The rule an address breaks (loopback, private...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and 2002:0a00:0001:: (6to4) reach the IPv4 address inside.
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return address_problem(inner)
    for attribute, rule in _ADDRESS_RULES:
        if getattr(address, attribute):
            return rule
    # Shared (100.64/10), benchmarking and the other special ranges Python marks non-global.
    return None if address.is_global else "private"


def parse_url(url: str) -> httpx.URL:
    """An absolute http(s) URL; TargetRefused otherwise."""
    if len(url) > MAX_URL:
        raise TargetRefused("too-long", f"a webhook URL has at most {MAX_URL} characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes the IDNA name: a malformed one fails here
    except (httpx.InvalidURL, TypeError, ValueError) as error:  # IDNA errors are ValueErrors
        raise TargetRefused("invalid-url", f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("scheme", "a webhook URL is http:// or https://")
    if not host:
        raise TargetRefused("invalid-url", "the URL names no host")
    return parsed


async def check_target(url: str, *, allow_private: bool, timeout: float = 10.0) -> Target:
    """Resolve the URL's host with the event loop's resolver and check every address it
    has (all must be public unless `allow_private`); the address to connect to."""
    parsed = parse_url(url)
    host = parsed.raw_host.decode("ascii")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _resolve(parsed, timeout)
    if not allow_private:
        for address in addresses:
            rule = address_problem(address)
            if rule is not None:
                raise TargetRefused(
                    "private-address",
                    f"{host} is a {rule} address ({address}); webhooks may only call public "
                    "addresses (the operator may allow private ones: webhooks_allow_private)",
                )
    return Target(parsed, str(addresses[0]))


async def _resolve(
    url: httpx.URL, timeout: float
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address of the URL's host name, from the event loop's resolver."""
    host, port = url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except (OSError, TimeoutError, UnicodeError) as error:
        raise TargetRefused("unresolvable", f"the host {host} does not resolve: {error}") from None
    if not found:
        raise TargetRefused("unresolvable", f"the host {host} has no address")
    # An IPv6 scope ("fe80::1%eth0") is cut off: the address decides, not the link.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


# -- signatures -------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: whsec_ + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256 of "id.timestamp.body">."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def body_text(event_type: str, timestamp: dt.datetime, data: dict[str, Any]) -> str:
    """The request body, fixed when the delivery is enqueued (retries send these bytes)."""
    envelope = {"type": event_type, "timestamp": json_value(timestamp), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


# -- subscriptions ----------------------------------------------------------------------


def definition_errors(ct: CompiledTenant, values: dict[str, Any]) -> list[FieldError]:
    """Every problem with a subscription's fields except its URL's target (see
    `check_target`); `values` is the whole subscription as it would be."""
    errors = []
    name = values.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        errors.append(
            FieldError("name", "required", "give the webhook a name of 1 to 100 characters")
        )
    if not isinstance(values.get("url"), str):
        errors.append(FieldError("url", "required", "give the URL the webhook posts to"))
    if not isinstance(values.get("active"), bool):
        errors.append(FieldError("active", "type", "active is true or false"))
    events = values.get("events")
    if (
        not isinstance(events, list)
        or not events
        or any(e not in EVENTS for e in events)
        or len(set(events)) != len(events)
    ):
        errors.append(
            FieldError("events", "invalid", f"events is a list of some of {', '.join(EVENTS)}")
        )
    obj, expression = values.get("object"), values.get("filter")
    if obj is not None and (not isinstance(obj, str) or obj not in ct.objects):
        errors.append(
            FieldError("object", "unknown-object", f"there is no object {str(obj)[:63]!r}")
        )
        return errors
    if expression is None:
        return errors
    if not isinstance(expression, str) or not 1 <= len(expression) <= 4000:
        errors.append(
            FieldError("filter", "type", "filter is an expression of 1 to 4000 characters")
        )
    elif obj is None:
        errors.append(FieldError("filter", "needs-object", "a filter needs the webhook's object"))
    else:
        try:  # "validation" expressions are type-checked to be true or false
            formula.check(
                expression, ct.object(obj).obj, ct.model, context="validation", field="filter"
            )
        except FormulaError as error:
            errors += error.errors
    return errors


async def add_webhook(
    conn: AsyncConnection, values: dict[str, Any], user_id: uuid.UUID | None
) -> dict[str, Any]:
    """Store a checked subscription with a new secret; the row, secret included."""
    now = utcnow()
    row = values | {
        "id": new_id(),
        "secret": new_secret(),
        "created_at": now,
        "created_by": user_id,
        "updated_at": now,
    }
    await _name_free(conn, row["name"], None)
    await conn.execute(webhooks.insert().values(row))
    return row


async def change_webhook(
    conn: AsyncConnection, webhook_id: uuid.UUID, values: dict[str, Any]
) -> None:
    """Store a checked subscription's new fields."""
    if "name" in values:
        await _name_free(conn, values["name"], webhook_id)
    await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == webhook_id)
        .values(values | {"updated_at": utcnow()})
    )


async def _name_free(conn: AsyncConnection, name: str, webhook_id: uuid.UUID | None) -> None:
    found = await conn.scalar(sa.select(webhooks.c.id).where(webhooks.c.name == name))
    if found is not None and found != webhook_id:
        raise Conflict(
            "a webhook has this name", [FieldError("name", "unique", f"{name!r} is taken")]
        )


async def webhook_row(
    conn: AsyncConnection, webhook_id: uuid.UUID, *, secret: bool = False
) -> dict[str, Any] | None:
    """One subscription (with its secret only when asked), or None."""
    columns = (*SHOWN, webhooks.c.secret, webhooks.c.previous_secret) if secret else SHOWN
    found = await conn.execute(sa.select(*columns).where(webhooks.c.id == webhook_id))
    row = found.mappings().first()
    return dict(row) if row is not None else None


async def webhook_rows(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every subscription by name, without secrets."""
    found = await conn.execute(sa.select(*SHOWN).order_by(webhooks.c.name))
    return [dict(row) for row in found.mappings()]


async def remove_webhook(conn: AsyncConnection, webhook_id: uuid.UUID) -> bool:
    """Delete a subscription and its log; its queued deliveries end without sending."""
    await conn.execute(deliveries.delete().where(deliveries.c.webhook_id == webhook_id))
    return bool((await conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))).rowcount)


async def rotate_secret(
    conn: AsyncConnection, webhook_id: uuid.UUID, now: dt.datetime
) -> dict[str, Any] | None:
    """Give a subscription a new secret; the old one signs beside it for
    ROTATION_OVERLAP. The new secret and that end, or None when there is no such webhook."""
    current = await conn.scalar(sa.select(webhooks.c.secret).where(webhooks.c.id == webhook_id))
    if current is None:
        return None
    secret, until = new_secret(), now + ROTATION_OVERLAP
    await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == webhook_id)
        .values(secret=secret, previous_secret=current, previous_until=until, updated_at=now)
    )
    return {"secret": secret, "previous_until": until}


async def delivery_rows(
    conn: AsyncConnection,
    webhook_id: uuid.UUID,
    *,
    before: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """A subscription's delivery attempts, newest first."""
    d = deliveries
    query = sa.select(d).where(d.c.webhook_id == webhook_id).order_by(d.c.at.desc(), d.c.id.desc())
    if before is not None:
        query = query.where(d.c.at < before)
    return [dict(row) for row in (await conn.execute(query.limit(limit))).mappings()]


# -- enqueueing -------------------------------------------------------------------------


async def _enqueue(
    conn: AsyncConnection,
    webhook_id: uuid.UUID,
    event: str,
    body: str,
    *,
    object: str | None = None,
    record_id: uuid.UUID | None = None,
) -> uuid.UUID:
    payload = {"webhook_id": str(webhook_id), "event": event, "body": body}
    return await jobs.enqueue(
        conn,
        KIND,
        payload,
        max_attempts=MAX_ATTEMPTS,
        object=object,
        record_id=record_id,
    )


def _record_data(
    co: CompiledObject, record: dict[str, Any], event: str, changed: list[str]
) -> dict[str, Any]:
    """What a delivery says about a record: the event, the record as stored (system
    fields included) and the names of the fields the write changed."""
    stored = {c.name: record[c.name] for c in co.table.columns if c.name in record}
    return {
        "object": co.name,
        "id": json_value(record.get("id")),
        "event": event,
        "changed": changed,
        "record": json_value(stored),
    }


async def on_write(write: Write) -> None:
    """The write path's step: a delivery job for every active subscription of the
    record's object whose events and filter match the write."""
    event = _EVENT_OF[write.kind]
    found = await write.conn.execute(
        sa.select(webhooks.c.id, webhooks.c.events, webhooks.c.filter).where(
            webhooks.c.active.is_(True),
            sa.or_(webhooks.c.object == write.co.name, webhooks.c.object.is_(None)),
        )
    )
    matching = [row for row in found if event in row.events]
    if not matching:
        return
    changed = sorted(
        write.changes if write.kind == "create" else (n for n in write.changes if write.changed(n))
    )
    record = write.after
    body: str | None = None
    for row in matching:
        if row.filter is not None and not await _passes(write, row.filter):
            continue
        if body is None:  # one body for every subscription of this write
            data = _record_data(write.co, record, event, changed)
            body = body_text(f"{write.co.name}.{event}", utcnow(), data)
        await _enqueue(
            write.conn, row.id, event, body, object=write.co.name, record_id=write.record_id
        )


async def _passes(write: Write, expression: str) -> bool:
    """Whether the write's record satisfies a filter; a filter that no longer checks
    (its field was dropped) or fails to evaluate lets nothing through, and never
    refuses the save."""
    try:
        return await condition_holds(
            write.conn, write.ct, write.co, expression, write.after, prior=write.before
        )
    except MetacrmError as error:
        _log.warning("webhook filter %r failed on %s: %s", expression, write.co.name, error)
        return False


async def call_endpoint(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    endpoint: str,
    event: str,
) -> uuid.UUID:
    """A rule's webhook action: enqueue a delivery of `record` to the subscription named
    `endpoint`, whatever its events and filter; the job's id."""
    webhook_id = await conn.scalar(sa.select(webhooks.c.id).where(webhooks.c.name == endpoint))
    if webhook_id is None:
        raise PermanentFailure(f"no webhook is named {endpoint!r}")
    body = body_text(f"{co.name}.{event}", utcnow(), _record_data(co, record, event, []))
    return await _enqueue(conn, webhook_id, event, body, object=co.name, record_id=record.get("id"))


async def ping(conn: AsyncConnection, webhook: dict[str, Any]) -> uuid.UUID:
    """Enqueue a `webhook.ping` delivery to try a subscription out; the job's id."""
    data = {"webhook": webhook["name"], "id": str(webhook["id"])}
    return await _enqueue(conn, webhook["id"], "ping", body_text("webhook.ping", utcnow(), data))


async def replay(conn: AsyncConnection, delivery_id: uuid.UUID) -> uuid.UUID | None:
    """Send a logged delivery's body again as a new job (so a new webhook-id); None when
    the delivery or its job is gone."""
    found = await conn.execute(
        sa.select(jobs.jobs.c.payload, jobs.jobs.c.object, jobs.jobs.c.record_id)
        .join(deliveries, deliveries.c.job_id == jobs.jobs.c.id)
        .where(deliveries.c.id == delivery_id)
    )
    row = found.first()
    if row is None:
        return None
    payload = row.payload
    return await _enqueue(
        conn,
        uuid.UUID(payload["webhook_id"]),
        payload["event"],
        payload["body"],
        object=row.object,
        record_id=row.record_id,
    )


# -- delivering -------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """A failed try that a later one may mend (the endpoint was down): retried after
    the backoff."""


@dataclass
class _Attempt:
    """How one try ended, as the delivery log records it."""

    status: DeliveryStatus
    http_status: int | None = None
    response: str | None = None
    error: str | None = None
    #: Whether a later try may succeed (False: the target is refused for good).
    retry: bool = True


async def deliver(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The `webhook.deliver` handler: check the target, post the signed body, log the try.
    2xx succeeds; any other answer, a timeout or a refused connection is retried on the
    schedule (as Standard Webhooks advises); a refused target dies at once."""
    payload = job.payload
    webhook_id, body = uuid.UUID(payload["webhook_id"]), payload["body"]
    async with ctx.transaction(finish=False) as (conn, _ct):
        hook = await webhook_row(conn, webhook_id, secret=True)
        if hook is None:
            return {"skipped": "the webhook was deleted"}
        delivery_id = new_id()
        await conn.execute(
            deliveries.insert().values(
                id=delivery_id,
                webhook_id=webhook_id,
                job_id=job.id,
                event=payload["event"],
                record_id=job.record_id,
                attempt=job.attempts,
                status="pending",
                at=ctx.now,
            )
        )
    started = time.perf_counter()
    if hook["active"]:
        attempt = await _post(hook, str(job.id), body, ctx.outbound, ctx.now)
    else:
        attempt = _Attempt("failed", error="the webhook is inactive", retry=False)
    async with ctx.transaction(finish=False) as (conn, _ct):
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id)
            .values(
                status=attempt.status,
                http_status=attempt.http_status,
                response=attempt.response,
                error=attempt.error,
                duration_ms=int((time.perf_counter() - started) * 1000),
            )
        )
    if attempt.status == "succeeded":
        return {"delivery_id": str(delivery_id), "http_status": attempt.http_status}
    message = attempt.error or f"the endpoint answered {attempt.http_status}"
    if not attempt.retry:
        raise PermanentFailure(message)
    raise DeliveryFailed(message)


async def _post(
    hook: dict[str, Any], message_id: str, body: str, outbound: Outbound, now: dt.datetime
) -> _Attempt:
    """One try: the SSRF check on the resolved addresses, then a POST to the checked
    address (no redirects followed, no proxy from the environment)."""
    timeout = outbound.webhook_timeout_seconds
    try:
        target = await check_target(
            hook["url"], allow_private=outbound.webhooks_allow_private, timeout=timeout
        )
    except TargetRefused as refused:
        # An unresolvable host may come back; a private or malformed target will not.
        return _Attempt("failed", error=refused.message, retry=refused.code == "unresolvable")
    # The wall clock, not the job's: receivers compare it with their own time.
    timestamp = int(time.time())
    url = target.url
    headers = {
        "content-type": "application/json",
        "user-agent": "metacrm-webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id, timestamp, body) for secret in _signing(hook, now)
        ),
        # Connect to the checked address (no second lookup a rebinding DNS could answer
        # differently) while the server still sees its own name, in Host and in TLS.
        "host": url.netloc.decode("ascii"),
    }
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    request = _request(url.copy_with(host=target.address), body, headers, extensions, timeout)
    try:
        # httpx's timeout bounds each read; this bounds the whole try (a slow drip too).
        # wait_for runs it as a task of its own: its cancellation stays there.
        status, excerpt = await asyncio.wait_for(request, timeout)
    except TimeoutError:
        return _Attempt("failed", error=f"no complete answer within {timeout:g} s")
    except httpx.HTTPError as error:
        return _Attempt("failed", error=f"{type(error).__name__}: {error}"[:2000])
    ok = 200 <= status < 300
    return _Attempt("succeeded" if ok else "failed", http_status=status, response=excerpt)


def _signing(hook: dict[str, Any], now: dt.datetime) -> list[str]:
    """The secrets that sign now: the current one, and the one before a recent rotation."""
    previous, until = hook["previous_secret"], hook["previous_until"]
    if previous is not None and until is not None and now < until:
        return [hook["secret"], previous]
    return [hook["secret"]]


async def _request(
    url: httpx.URL, body: str, headers: dict[str, str], extensions: dict[str, Any], timeout: float
) -> tuple[int, str]:
    """POST the body; the status and the first EXCERPT_BYTES of the answer (the rest
    is never read)."""
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream(
            "POST", url, content=body.encode(), headers=headers, extensions=extensions
        ) as response,
    ):
        data = b""
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= EXCERPT_BYTES:
                break
        return response.status_code, data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def backoff(attempts: int) -> dt.timedelta:
    """The wait after `attempts` failed tries, from SCHEDULE."""
    return SCHEDULE[min(attempts, len(SCHEDULE)) - 1]


DELIVER = JobKind(deliver, max_attempts=MAX_ATTEMPTS, backoff=backoff)
