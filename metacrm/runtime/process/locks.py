"""The approval lock, a write hook: a record a locking approval holds refuses changes.

While a run of a flow with `lock_record` is pending, the record refuses updates, owner
transfers and deletion, except by administrators, writes with system rights (the flow's
own actions), and the current step's approvers for the step's `editable_fields`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.metadata.process import ApprovalFlow
from metacrm.runtime.hooks import Write
from metacrm.runtime.process.work import actor_tasks, pending_run
from metacrm.runtime.records import utcnow


class ApprovalLocks:
    """The write hook of approval locks."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        if write.kind not in ("update", "delete", "transfer") or write.before is None:
            return []
        if write.intent.privileged or write.pending_approval is False:
            return []
        conn: AsyncConnection = write.conn
        run = await pending_run(conn, write.co.name, write.before["id"])
        if run is None:
            return []
        flow = ApprovalFlow.model_validate(run["definition"])
        if not flow.lock_record:
            return []
        message = f"the record is locked while the {flow.api_name!r} approval is pending"
        if write.kind == "delete":
            return [FieldError("record", "record-locked", message)]
        mine = await actor_tasks(conn, dict(run), write.actor, None, utcnow())
        editable = {
            name
            for task in mine
            for step in flow.steps
            if step.api_name == task["step"]
            for name in step.editable_fields
        }
        return [
            FieldError(write.prefix + name, "record-locked", message)
            for name in write.changes
            if write.changed(name) and name not in editable
        ]

    async def after(self, write: Write) -> None:
        return None


APPROVAL_LOCKS = ApprovalLocks()
