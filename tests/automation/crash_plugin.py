"""A test-only automation step for the crash test: every save of a `ticket` enqueues a job
that creates one `follow_up` record linked to it.

The server and worker processes the crash test starts run `python -m
tests.automation.crash_plugin serve|worker ...`: the `metacrm` command with it installed.
It goes through the same pieces a rule does: a step of the write path's AUTOMATION hook
that only enqueues (the outbox), and a registered job kind whose handler writes through
`writes.create` in `ctx.transaction()` (exactly once, however often the job is claimed).
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from metacrm.runtime import writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.handlers import REGISTRY
from metacrm.runtime.automation.hook import AUTOMATION
from metacrm.runtime.hooks import Intent, Origin, Write
from metacrm.runtime.jobs import Job, JobContext, JobKind, enqueue

KIND = "crashtest.follow_up"


async def on_ticket_saved(write: Write) -> None:
    """Enqueue one follow-up job per created or updated ticket, in the save's transaction."""
    if write.co.name != "ticket" or write.kind not in ("create", "update"):
        return
    await enqueue(
        write.conn,
        KIND,
        {"actor": str(write.actor.user_id), "depth": write.intent.depth + 1},
        object="ticket",
        record_id=write.record_id,
    )


async def create_follow_up(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Create the follow-up of the job's ticket; the job is done in the same transaction."""
    actor = Actor(user_id=uuid.UUID(job.payload["actor"]))
    intent = Intent(actor, origin=Origin.AUTOMATION, system=True, depth=job.payload["depth"])
    async with ctx.transaction() as (conn, ct):
        record = await writes.create(
            conn,
            ct,
            ct.object("follow_up"),
            {"name": f"follow up {job.id}", "ticket": str(job.record_id)},
            intent,
        )
        ctx.result = {"follow_up": str(record["id"])}
    return ctx.result


def install() -> None:
    """Add the step and the job kind to this process's write path and worker registry
    (only in the processes the crash test starts: importing this module changes nothing)."""
    AUTOMATION.steps = (*AUTOMATION.steps, on_ticket_saved)
    REGISTRY.add(KIND, JobKind(create_follow_up))


if __name__ == "__main__":
    from metacrm.platform.cli import main

    install()
    sys.exit(main(sys.argv[1:]))
