"""Assignment on demand: run an object's active assignment rule on one record or a batch.

Who may: administrators and manage_automation holders, with system rights on any record;
anyone else on the records they may transfer by hand (their own, or any with modify-all),
since the rule then does no more than they could.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from metacrm.errors import Conflict, FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, TenantSession, object_or_404
from metacrm.runtime.automation.actions import reassign
from metacrm.runtime.automation.assignment import active_rule
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.permissions import has_platform_permission

router = APIRouter(prefix="/automation", tags=["automation"])

#: The most records one batch request reassigns (one transaction).
MAX_IDS = 200


def _intent(session: TenantSession) -> Intent:
    manager = has_platform_permission(session.ct.model, session.actor, "manage_automation")
    return Intent(session.actor, origin=Origin.AUTOMATION, system=manager)


@router.post("/assign/{object_name}/{record_id}")
async def assign_record(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Run the object's active assignment rule on the record now: `owner_id`, whether it
    `changed`, and the `entry` that chose (null when none did)."""
    async with state.tenant(identity) as session:
        co = object_or_404(session.ct, object_name)
        return await reassign(session.conn, session.ct, co, path_id(record_id), _intent(session))


@router.post("/assign/{object_name}")
async def assign_records(
    object_name: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Run the rule on `{"ids": [...]}` (at most 200) in one transaction: every record is
    reassigned, or none is and each problem is named by `ids/<index>`."""
    body = await read_object(request, state.settings.max_body_bytes)
    ids = body.get("ids")
    errors = [
        FieldError(k[:64], "unknown-field", "not a parameter") for k in sorted(body) if k != "ids"
    ]
    if not isinstance(ids, list) or not ids:
        errors.append(FieldError("ids", "type", "ids must be a non-empty list of record ids"))
    elif len(ids) > MAX_IDS:
        errors.append(FieldError("ids", "max-items", f"at most {MAX_IDS} ids per request"))
    elif len({str(i) for i in ids}) != len(ids):
        errors.append(FieldError("ids", "duplicate-id", "each id may appear once"))
    if errors:
        raise RecordInvalid("the assignment request is invalid", errors)
    assert isinstance(ids, list)
    async with state.tenant(identity) as session:
        co = object_or_404(session.ct, object_name)
        if active_rule(session.ct, co.name) is None:
            raise Conflict(f"{co.name} has no active assignment rule")
        intent = _intent(session)
        results: list[dict[str, Any]] = []
        for index, value in enumerate(ids):
            path = f"ids/{index}"
            try:
                results.append(
                    await reassign(session.conn, session.ct, co, path_id(str(value)), intent)
                )
            except NotFound:
                errors.append(FieldError(path, "not-found", "no record you can see has this id"))
            except PermissionDenied as denied:
                errors.append(FieldError(path, "permission-denied", denied.detail))
            except Conflict as conflict:  # a pending approval locks it, or a concurrent write
                errors.append(FieldError(path, "conflict", conflict.detail))
        if errors:
            raise RecordInvalid("no record was reassigned", errors)
    return {"results": results}
