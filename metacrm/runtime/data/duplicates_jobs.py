"""The jobs of duplicate rules: rebuild one rule's match keys, scan an object for groups."""

from __future__ import annotations

from typing import Any

from metacrm.runtime.data.duplicates import active_rules, forget_rule, rebuild_keys, scan
from metacrm.runtime.jobs import Job, JobContext, PermanentFailure


async def scan_job(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Rebuild the keys of an object's active rules and store its duplicate groups."""
    name = str(job.payload["object"])
    async with ctx.transaction() as (conn, ct):
        if not ct.model.has_object(name):
            raise PermanentFailure(f"object {name!r} no longer exists")
        ctx.result = await scan(conn, ct, ct.object(name))
        return ctx.result


async def rebuild_job(job: Job, ctx: JobContext) -> dict[str, Any]:
    """File every record of the object anew under one rule, as the rule is now (a rule
    removed or deactivated meanwhile: its keys are dropped)."""
    name, rule_name = str(job.payload["object"]), str(job.payload["rule"])
    async with ctx.transaction() as (conn, ct):
        rule = next((r for r in active_rules(ct, name) if r.api_name == rule_name), None)
        if rule is None or not ct.model.has_object(name):
            await forget_rule(conn, name, rule_name)
            ctx.result = {"rule": rule_name, "records": 0}
        else:
            ctx.result = {
                "rule": rule_name,
                "records": await rebuild_keys(conn, ct, ct.object(name), rule),
            }
        return ctx.result
