"""Automation: rules, assignment, SLAs, notifications, e-mail and webhooks, run on the job queue."""
