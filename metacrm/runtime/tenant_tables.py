"""Tables metacrm keeps inside each tenant's storage, beside the object tables."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.store import tenant_metadata
from metacrm.types import JsonValue, UTCDateTime

#: Responses to POSTs that carried an Idempotency-Key, so a retry creates nothing twice.
#: Keys are scoped per caller: `caller_id` is the API key's id for key requests, else the
#: user's (the column kept its first name, user_id, in existing storages).
idempotency_keys = sa.Table(
    "mc_idempotency",
    tenant_metadata,
    sa.Column("user_id", sa.Uuid(), primary_key=True, key="caller_id"),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("body", JsonValue(), nullable=True),
    sa.Column("location", sa.String(1000), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

#: The next auto-number of each auto-number field.
sequences = sa.Table(
    "mc_sequence",
    tenant_metadata,
    sa.Column("object", sa.String(63), primary_key=True),
    sa.Column("field", sa.String(63), primary_key=True),
    sa.Column("next_value", sa.BigInteger(), nullable=False),
)


#: The tenant's users: kept beside its data, so that a request checks its caller in the
#: same transaction, and no query of one tenant can reach another's users.
users = sa.Table(
    "mc_user",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("full_name", sa.String(255), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_admin", sa.Boolean(), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    sa.Column("role", sa.String(63), nullable=True),
    sa.Column("manager_id", sa.Uuid(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    # Bumped when the password changes or sessions are revoked: older tokens stop working.
    sa.Column("token_epoch", sa.Integer(), nullable=False),
)


#: Manual shares: one record shared with a user or a role, to read or to edit.
shares = sa.Table(
    "mc_share",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("user_id", sa.Uuid(), nullable=True),
    sa.Column("role", sa.String(63), nullable=True),
    sa.Column("access", sa.String(8), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Every non-admin read asks "what is shared with me?": answer it from the index alone
    # (bench/RESULTS.md, security: 12 ms -> 3 ms per list at 100,000 shares).
    sa.Index("ix_mc_share_user", "object", "user_id", postgresql_include=["record_id"]),
    sa.Index("ix_mc_share_role", "object", "role", postgresql_include=["record_id"]),
)

#: API keys: only a hash of the secret is kept; the key is shown once.
api_keys = sa.Table(
    "mc_api_key",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

#: The append-only audit log: who did what, when, from where.
audit_log = sa.Table(
    "mc_audit",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False, index=True),
    sa.Column("user_id", sa.Uuid(), nullable=True, index=True),
    sa.Column("api_key_id", sa.Uuid(), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("object", sa.String(63), nullable=True),
    sa.Column("record_id", sa.Uuid(), nullable=True, index=True),
    sa.Column("detail", JsonValue(), nullable=True),
)

#: Field history of the fields with track_history: one row per changed field.
field_history = sa.Table(
    "mc_field_history",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("field", sa.String(63), nullable=False),
    sa.Column("old_value", JsonValue(), nullable=True),
    sa.Column("new_value", JsonValue(), nullable=True),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

#: Browser sessions of the web workspace: the cookie carries the id and a secret of which
#: only a hash is kept. A new session at every sign-in (no fixation); sign-out ends it here,
#: so a copied cookie stops working at once.
web_sessions = sa.Table(
    "mc_web_session",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    # The user's token_epoch at sign-in: a password change or revocation ends the session.
    sa.Column("token_epoch", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
)

#: Failed logins per user name (known or not) and client address, for throttling: an
#: address that keeps failing waits longer and longer; other addresses are not slowed.
login_throttle = sa.Table(
    "mc_login_throttle",
    tenant_metadata,
    sa.Column("login", sa.String(320), primary_key=True),
    sa.Column("address", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("last_failure_at", UTCDateTime(), nullable=False),
    sa.Column("blocked_until", UTCDateTime(), nullable=True),
)


#: Stage moves of records: from, to, who, when, why, and how long the record sat in `from`.
stage_history = sa.Table(
    "mc_stage_history",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("rule", sa.String(63), nullable=False),
    sa.Column("from_stage", sa.String(100), nullable=True),
    sa.Column("to_stage", sa.String(100), nullable=True),
    sa.Column("moved_at", UTCDateTime(), nullable=False),
    sa.Column("moved_by", sa.Uuid(), nullable=False),
    sa.Column("reason", sa.String(2000), nullable=True),
    sa.Column("seconds_in_from", sa.BigInteger(), nullable=True),
    sa.Index("ix_mc_stage_history_rule", "object", "rule", "to_stage"),
)

#: Work items created when a record enters a stage.
stage_tasks = sa.Table(
    "mc_stage_task",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("rule", sa.String(63), nullable=False),
    sa.Column("stage", sa.String(100), nullable=False),
    sa.Column("task", sa.String(63), nullable=False),
    sa.Column("subject", sa.String(1000), nullable=False),
    sa.Column("assignee_id", sa.Uuid(), nullable=True, index=True),
    sa.Column("assignee_role", sa.String(63), nullable=True),
    sa.Column("optional", sa.Boolean(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Column("done_by", sa.Uuid(), nullable=True),
)

#: One run of an approval flow on one record, with the flow definition it started with.
approvals = sa.Table(
    "mc_approval",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("flow", sa.String(63), nullable=False),
    sa.Column("metadata_version", sa.Integer(), nullable=False),
    sa.Column("definition", JsonValue(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("phase", sa.Integer(), nullable=False),
    sa.Column("submitted_by", sa.Uuid(), nullable=False),
    sa.Column("submitted_at", UTCDateTime(), nullable=False),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("comment", sa.String(2000), nullable=True),
)

#: One approver's work item in one step of an approval run.
approval_tasks = sa.Table(
    "mc_approval_task",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("approval_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("step", sa.String(63), nullable=False),
    sa.Column("phase", sa.Integer(), nullable=False),
    sa.Column("assignee_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("on_behalf_of", sa.Uuid(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=True),
    sa.Column("remind_at", UTCDateTime(), nullable=True),
    sa.Column("escalated_at", UTCDateTime(), nullable=True),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Column("decided_by", sa.Uuid(), nullable=True),
    sa.Column("comment", sa.String(2000), nullable=True),
)

#: Everything that happened to an approval run, in order.
approval_events = sa.Table(
    "mc_approval_event",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("approval_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("actor_id", sa.Uuid(), nullable=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("step", sa.String(63), nullable=True),
    sa.Column("comment", sa.String(2000), nullable=True),
    sa.Column("detail", JsonValue(), nullable=True),
)

#: Comments people leave on a record (its timeline shows them beside its history).
comments = sa.Table(
    "mc_comment",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

#: A user's approvals go to a delegate between two moments.
delegations = sa.Table(
    "mc_delegation",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("delegate_id", sa.Uuid(), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


#: A user's own saved list views: kept out of the metadata, so saving one recompiles nothing.
#: `definition` is a `ListView` document (validated like metadata list views).
personal_list_views = sa.Table(
    "mc_personal_list_view",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("definition", JsonValue(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_mc_personal_list_view_user_object", "user_id", "object"),
)


async def create_tenant_tables(conn: AsyncConnection) -> None:
    """Create the internal tables a tenant's storage lacks (new tenant, or newer metacrm)."""
    await conn.run_sync(tenant_metadata.create_all)


#: Packs installed, upgraded and uninstalled, one row per metadata version that changed a
#: pack. The latest row of a name says what is installed (`version` NULL: uninstalled);
#: `contents` is the metadata the pack contributed, the base of its next upgrade's merge.
pack_events = sa.Table(
    "mc_pack_event",
    tenant_metadata,
    sa.Column("metadata_version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("depends", JsonValue(), nullable=False),
    sa.Column("contents", JsonValue(), nullable=False),
    sa.Column("label", JsonValue(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
