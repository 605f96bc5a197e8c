"""The automation run history for administrators: every rule run with its outcome."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query

from metacrm.errors import FieldError, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.api.jobs import require_automation_manager
from metacrm.platform.state import IdentityDep, StateDep
from metacrm.runtime.automation.history import Outcome, run_rows
from metacrm.runtime.serialize import row_to_record

router = APIRouter(prefix="/automation", tags=["automation"])

_OUTCOMES = get_args(Outcome)


@router.get("/runs")
async def list_runs(
    state: StateDep,
    identity: IdentityDep,
    rule: Annotated[str | None, Query(max_length=63)] = None,
    record_id: Annotated[str | None, Query(max_length=36)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Runs newest first (rules, assignments, SLA steps): by `rule` (its api_name),
    `record_id` and `outcome` (done, skipped, failed, stopped); page with `before` = the
    last run's `at`."""
    if outcome is not None and outcome not in _OUTCOMES:
        raise RecordInvalid(
            "unknown outcome",
            [FieldError("outcome", "enum", f"outcome is one of {', '.join(_OUTCOMES)}")],
        )
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
        rows = await run_rows(
            session.conn,
            name=rule,
            record_id=path_id(record_id) if record_id else None,
            outcome=outcome,
            before=before,
            limit=limit,
        )
    return {"runs": [row_to_record(row) for row in rows]}
