"""Every kind of job a worker runs, registered by name in one place."""

from __future__ import annotations

from metacrm.runtime.jobs import JobKind, Registry
from metacrm.runtime.process.escalation import approvals_due

REGISTRY = Registry()
REGISTRY.add("approvals.due", JobKind(approvals_due, max_attempts=3))
