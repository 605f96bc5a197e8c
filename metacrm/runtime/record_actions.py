"""What a user may do to one record (edit, delete, move stage, transfer, share, submit for
approval), worked out from the same permissions, access and locks the writes apply."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.process import ApprovalFlow
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import object_permission, record_filter
from metacrm.runtime.process.work import pending_run
from metacrm.runtime.records import fetch, reaches

ACTIONS = ("edit", "delete", "move_stage", "transfer", "share", "submit", "comment")


async def allowed_actions(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """{action: bool} for the record, `locked` (a locking approval is pending) and
    `pending_approval`; 404 when the actor may not read the record."""
    record = await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    permission = object_permission(ct.model, actor, co.name)
    may_edit = await reaches(conn, ct, co, record_id, actor, "edit")
    run = await pending_run(conn, co.name, record_id)
    locking = run is not None and ApprovalFlow.model_validate(run["definition"]).lock_record
    locked = locking and not actor.is_admin
    owner = actor.is_admin or permission.modify_all or record["owner_id"] == actor.user_id
    detail = any(link.type == "master_detail" for link in co.references.values())
    may_delete = actor.is_admin or permission.delete or permission.modify_all
    return {
        "edit": may_edit and not locked,
        "delete": may_edit and may_delete and not locked,
        "move_stage": may_edit and not locked and bool(co.stage_rules),
        "transfer": may_edit and owner and not locked,
        "share": owner and not detail,
        "submit": may_edit and run is None and bool(co.approval_flows),
        "comment": True,
        "locked": locked,
        "pending_approval": run is not None,
    }
