"""The job queue for administrators: list jobs by status, kind and record; retry dead ones."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from metacrm.errors import NotFound, PermissionDenied
from metacrm.platform.api.common import path_id
from metacrm.platform.state import IdentityDep, StateDep, TenantSession
from metacrm.runtime import jobs
from metacrm.runtime.permissions import has_platform_permission
from metacrm.runtime.records import utcnow
from metacrm.runtime.serialize import row_to_record

router = APIRouter(prefix="/automation", tags=["automation"])


def require_automation_manager(session: TenantSession) -> None:
    """Administrators, and roles holding manage_automation."""
    if not has_platform_permission(session.ct.model, session.actor, "manage_automation"):
        raise PermissionDenied("your role may not manage automation (manage_automation)")


@router.get("/jobs")
async def list_jobs(
    state: StateDep,
    identity: IdentityDep,
    status: Annotated[list[str], Query(max_length=5)] = [],  # noqa: B006 (FastAPI reads it)
    kind: Annotated[str | None, Query(max_length=64)] = None,
    record_id: Annotated[str | None, Query(max_length=36)] = None,
    before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Jobs newest first: `status` (pending, running, done, dead, cancelled; repeatable),
    `kind`, `record_id`; page with `before` = the last job's `created_at`."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
        for value in status:
            if value not in jobs.STATUSES:
                raise NotFound(f"no job status {value[:32]!r}")
        rows = await jobs.job_rows(
            session.conn,
            statuses=status,
            kind=kind,
            record_id=path_id(record_id) if record_id else None,
            limit=limit,
            before=before,
        )
    return {"jobs": [row_to_record(row) for row in rows]}


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Put a dead or cancelled job back in the queue, due now, with fresh tries."""
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        if not await jobs.retry(session.conn, path_id(job_id, "job"), utcnow()):
            raise NotFound("no dead or cancelled job has this id")
    return {"id": job_id, "status": "pending"}


@router.post("/jobs/run-due")
async def run_due_jobs(state: StateDep, identity: IdentityDep) -> dict[str, int]:
    """Run the tenant's due jobs now, in this request (operators and scripts; the
    background worker does it by itself)."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
    assert state.worker is not None
    return {"ran": await state.worker.drain(identity.storage)}
