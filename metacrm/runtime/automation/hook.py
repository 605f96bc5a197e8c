"""The write path's automation step: what a record write decides and schedules in its transaction.

Checks run before the row is written (assignment gives a new record its owner there);
steps run after it, in the same transaction, and only enqueue jobs (rules' actions,
timers, SLA clocks, webhook deliveries), so a rolled-back save schedules nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from metacrm.errors import FieldError
from metacrm.runtime.automation.assignment import assign_on_create
from metacrm.runtime.automation.rules import on_write as rules_on_write
from metacrm.runtime.automation.sla import schedule_clocks, start_clocks
from metacrm.runtime.automation.webhooks import on_write as webhooks_on_write
from metacrm.runtime.hooks import Write

Check = Callable[[Write], Awaitable[list[FieldError]]]
Step = Callable[[Write], Awaitable[None]]


class AutomationHook:
    """Runs the automation checks and steps of every record write, in order."""

    blocking = False

    def __init__(self, checks: tuple[Check, ...], steps: tuple[Step, ...]) -> None:
        self.checks, self.steps = checks, steps

    async def check(self, write: Write) -> list[FieldError]:
        errors: list[FieldError] = []
        for check in self.checks:
            errors += await check(write)
        return errors

    async def after(self, write: Write) -> None:
        for step in self.steps:
            await step(write)


AUTOMATION = AutomationHook(
    checks=(assign_on_create, start_clocks),
    steps=(webhooks_on_write, schedule_clocks, rules_on_write),
)
