"""Every kind of job a worker runs, registered by name in one place."""

from __future__ import annotations

from metacrm.runtime.automation import notify, rule_jobs, rules, webhooks
from metacrm.runtime.automation.sla_jobs import sla_breach, sla_warn
from metacrm.runtime.data import duplicates, duplicates_jobs
from metacrm.runtime.data.import_jobs import REVERT_JOB, REVERT_KIND, RUN_JOB, RUN_KIND
from metacrm.runtime.jobs import JobKind, Registry
from metacrm.runtime.process.escalation import approvals_due

REGISTRY = Registry()
REGISTRY.add("approvals.due", JobKind(approvals_due, max_attempts=3))
REGISTRY.add(webhooks.KIND, webhooks.DELIVER)
REGISTRY.add(notify.EMAIL_JOB, JobKind(notify.send_email_job))
REGISTRY.add("sla.warn", JobKind(sla_warn))
REGISTRY.add("sla.breach", JobKind(sla_breach))
REGISTRY.add(rules.RULE_JOB, JobKind(rule_jobs.run_rule))
REGISTRY.add(rules.TIMER_JOB, JobKind(rule_jobs.run_timer))
REGISTRY.add(rules.SCHEDULE_JOB, JobKind(rule_jobs.run_schedule))
REGISTRY.add(duplicates.SCAN_JOB, JobKind(duplicates_jobs.scan_job, max_attempts=3))
REGISTRY.add(duplicates.REBUILD_JOB, JobKind(duplicates_jobs.rebuild_job, max_attempts=3))
REGISTRY.add(RUN_JOB, RUN_KIND)
REGISTRY.add(REVERT_JOB, REVERT_KIND)
