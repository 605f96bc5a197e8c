"""Notifications and e-mail: in-app notifications per user, and e-mails rendered from templates.

A notification is a row of `mc_notification`, inserted in the caller's transaction; its
title and message keep every language (placeholders already filled with the record's
values), so each reader sees them in their own language. An e-mail is rendered from its
template when the change that causes it is saved, and sent by an `email.send` job (one
per recipient) with a Message-ID derived from the job's id: a retried job sends the same
message, which receivers can tell apart from a new one.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound
from metacrm.i18n import LANGUAGES
from metacrm.metadata.base import Label, label_text
from metacrm.metadata.messages import (
    Recipient,
    template_environment,
    template_paths,
)
from metacrm.metadata.process import Approver
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.jobs import Job, JobContext, PermanentFailure, enqueue
from metacrm.runtime.process.approvers import find_user, resolve
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import users
from metacrm.runtime.validation import load_paths
from metacrm.types import JsonValue, UTCDateTime

notifications = sa.Table(
    "mc_notification",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    #: Labels ({"en": ..., "zh-CN": ...} or one text) with placeholders filled.
    sa.Column("title", JsonValue(), nullable=False),
    sa.Column("message", JsonValue(), nullable=True),
    sa.Column("object", sa.String(63), nullable=True),
    sa.Column("record_id", sa.Uuid(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("read_at", UTCDateTime(), nullable=True),
    # A user's unread count and list read this index alone.
    sa.Index("ix_mc_notification_user_read", "user_id", "read_at"),
)

#: The job kind that sends one e-mail.
EMAIL_JOB = "email.send"


class _Linked:
    """A lookup in a template: prints as the related record's id, and `.field` reads the
    related record's field (`{{ account }}` and `{{ account.name }}` both work)."""

    def __init__(self, value: Any) -> None:
        self._value = value
        self._fields: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return self._fields.get(name)

    def __str__(self) -> str:
        return "" if self._value is None else str(self._value)


async def template_values(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    texts: Sequence[str],
) -> dict[str, Any]:
    """What the placeholders of `texts` read from `record`, lookups followed."""
    paths = {p for text in texts for p in template_paths(text)}
    loaded = await load_paths(conn, ct, co, record, frozenset(paths))
    values: dict[str, Any] = dict(record)
    for path in sorted(paths, key=len):
        parts = path.split(".")
        if len(parts) == 1:
            continue
        fields = values
        for part in parts[:-1]:
            linked = fields.get(part)
            if not isinstance(linked, _Linked):
                linked = fields[part] = _Linked(linked)
            fields = linked._fields
        fields[parts[-1]] = loaded.get(path)
    return values


def render(text: str, values: dict[str, Any], *, format: str = "text") -> str:
    """A template filled with `values` in the sandbox (HTML: every value escaped)."""
    return template_environment(format).from_string(text).render(values)


def render_label(label: Label, values: dict[str, Any], *, format: str = "text") -> Label:
    """A label with its placeholders filled, in each of its languages."""
    if isinstance(label, str):
        return render(label, values, format=format)
    return {language: render(text, values, format=format) for language, text in label.items()}


def _texts(*labels: Label | None) -> list[str]:
    found: list[str] = []
    for label in labels:
        if isinstance(label, str):
            found.append(label)
        elif label:
            found += label.values()
    return found


async def recipients(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    to: Sequence[Recipient],
) -> list[uuid.UUID]:
    """The active users `to` names for `record`, each once, in order (`address`
    recipients name no user and are left out)."""
    found: list[uuid.UUID] = []
    # resolve's "submitter": recipients are relative to the owner, never to a submitter.
    owner: uuid.UUID = record.get("owner_id") or uuid.UUID(int=0)
    for recipient in to:
        if recipient.kind == "address":
            continue
        approver = (
            Approver(kind="field", field="owner_id")
            if recipient.kind == "owner"
            else Approver(
                kind=recipient.kind, user=recipient.user, role=recipient.role, field=recipient.field
            )
        )
        for user_id in await resolve(conn, ct, co, approver, record, owner):
            if user_id not in found:
                found.append(user_id)
    return found


async def addresses(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    to: Sequence[Recipient],
) -> list[str]:
    """The e-mail addresses `to` names for `record`, each once: users' addresses, fixed
    `address`es, and the values of e-mail fields."""
    found: list[str] = []

    def add(address: Any) -> None:
        text = str(address or "").strip()
        if "@" in text and text.lower() not in {a.lower() for a in found}:
            found.append(text)

    for recipient in to:
        if recipient.kind == "address":
            add(recipient.address)
            continue
        if recipient.kind == "field" and co.has(recipient.field or ""):
            fdef = co.fields.get(recipient.field or "")
            value = record.get(recipient.field or "")
            if fdef is not None and fdef.type == "email":
                add(value)
                continue
            if value is not None and await find_user(conn, str(value)) is None:
                add(value)  # an address held in a text field, of no user
                continue
        for user_id in await recipients(conn, ct, co, record, [recipient]):
            add(await conn.scalar(sa.select(users.c.email).where(users.c.id == user_id)))
    return found


async def notify_users(
    conn: AsyncConnection,
    user_ids: Sequence[uuid.UUID],
    title: Label,
    message: Label | None = None,
    *,
    object: str | None = None,
    record_id: uuid.UUID | None = None,
) -> int:
    """Give each user a notification (in the caller's transaction); how many were made."""
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "user_id": user_id,
            "title": title,
            "message": message,
            "object": object,
            "record_id": record_id,
            "created_at": now,
            "read_at": None,
        }
        for user_id in dict.fromkeys(user_ids)
    ]
    if rows:
        await conn.execute(notifications.insert(), rows)
    return len(rows)


async def notify(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    to: Sequence[Recipient],
    title: Label,
    message: Label | None = None,
) -> int:
    """Notify the users `to` names about `record`, `{{ field }}` placeholders of the
    title and message filled from it; how many notifications were made."""
    values = await template_values(conn, ct, co, record, _texts(title, message))
    return await notify_users(
        conn,
        await recipients(conn, ct, co, record, to),
        render_label(title, values),
        render_label(message, values) if message else None,
        object=co.name,
        record_id=record.get("id"),
    )


async def send_email(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    to: Sequence[Recipient],
    template: str,
    *,
    language: str | None = None,
) -> int:
    """Render the e-mail `template` with `record`'s values and enqueue one `email.send`
    job per address `to` names (in the caller's transaction); how many.

    The message is rendered in every language metacrm speaks; it goes out in `language`,
    or else the tenant's default language the worker knows."""
    found = next((t for t in ct.model.email_templates if t.api_name == template), None)
    if found is None:
        raise NotFound(f"e-mail template {template!r} does not exist")
    values = await template_values(conn, ct, co, record, _texts(found.subject, found.body))
    subject = {lang: render(label_text(found.subject, lang), values) for lang in LANGUAGES}
    body = {
        lang: render(label_text(found.body, lang), values, format=found.format)
        for lang in LANGUAGES
    }
    sent = 0
    for address in await addresses(conn, ct, co, record, to):
        payload = {
            "to": address,
            "template": template,
            "subject": subject,
            "body": body,
            "format": found.format,
            "language": language,
        }
        await enqueue(conn, EMAIL_JOB, payload, object=co.name, record_id=record.get("id"))
        sent += 1
    return sent


def message_id(job: Job, mail_from: str) -> str:
    """The Message-ID of a job's e-mail: the same on every try of the job."""
    domain = mail_from.rpartition("@")[2].strip("<> ") or "metacrm.localhost"
    return f"<{job.id}@{domain}>"


def _message(job: Job, ctx: JobContext) -> EmailMessage:
    payload = job.payload
    language = payload.get("language") or getattr(ctx, "language", None) or "en"
    message = EmailMessage()
    message["From"] = ctx.outbound.mail_from
    message["To"] = payload["to"]
    message["Subject"] = label_text(payload["subject"], language)
    message["Date"] = email.utils.format_datetime(ctx.now.astimezone(dt.UTC))
    message["Message-ID"] = message_id(job, ctx.outbound.mail_from)
    subtype = "html" if payload.get("format") == "html" else "plain"
    message.set_content(label_text(payload["body"], language), subtype=subtype)
    message["Content-Language"] = language  # after set_content, which drops Content-*
    return message


async def send_email_job(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Send one e-mail of `send_email`: SMTP 4xx and connection failures are retried,
    5xx refusals and switched-off e-mail are permanent."""
    out = ctx.outbound
    if not out.smtp_host:
        raise PermanentFailure("e-mail is off: set METACRM_SMTP_HOST")
    message = _message(job, ctx)
    try:
        await aiosmtplib.send(
            message,
            hostname=out.smtp_host,
            port=out.smtp_port,
            username=out.smtp_username,
            password=out.smtp_password,
            start_tls=out.smtp_starttls,
            use_tls=out.smtp_ssl,
            timeout=30,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        codes = [refused.code for refused in error.recipients]
        if all(500 <= code < 600 for code in codes):
            raise PermanentFailure(
                f"the SMTP server refused {job.payload['to']}: {codes}"
            ) from error
        raise
    except aiosmtplib.SMTPResponseException as error:
        if 500 <= error.code < 600:
            raise PermanentFailure(
                f"the SMTP server refused the message: {error.code} {error.message}"
            ) from error
        raise
    return {"to": job.payload["to"], "message_id": message["Message-ID"]}


async def notification_rows(
    conn: AsyncConnection,
    user_id: uuid.UUID,
    *,
    unread: bool = False,
    limit: int = 50,
    before: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """A user's notifications, newest first; `before`: those older than that one."""
    n = notifications
    query = (
        sa.select(n)
        .where(n.c.user_id == user_id)
        .order_by(n.c.created_at.desc(), n.c.id.desc())
        .limit(limit)
    )
    if unread:
        query = query.where(n.c.read_at.is_(None))
    if before is not None:
        at = await conn.scalar(
            sa.select(n.c.created_at).where(n.c.id == before, n.c.user_id == user_id)
        )
        if at is None:
            raise NotFound("no such notification")
        query = query.where(
            sa.or_(n.c.created_at < at, sa.and_(n.c.created_at == at, n.c.id < before))
        )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def unread_count(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    """How many notifications the user has not read (one indexed count)."""
    n = notifications
    found = await conn.scalar(
        sa.select(sa.func.count()).where(n.c.user_id == user_id, n.c.read_at.is_(None))
    )
    return int(found or 0)


async def mark_read(
    conn: AsyncConnection, user_id: uuid.UUID, notification_id: uuid.UUID | None = None
) -> int:
    """Mark one of the user's notifications read (or all of them, with no id); how many
    changed. NotFound when the one named is not the user's."""
    n = notifications
    where = [n.c.user_id == user_id]
    if notification_id is not None:
        mine = await conn.scalar(sa.select(n.c.id).where(n.c.id == notification_id, *where))
        if mine is None:
            raise NotFound("no such notification")
        where.append(n.c.id == notification_id)
    result = await conn.execute(
        n.update().where(*where, n.c.read_at.is_(None)).values(read_at=utcnow())
    )
    return int(result.rowcount)
