"""Settings: command-line flags, then METACRM_* environment variables, then defaults."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from croniter import croniter
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metacrm.runtime.jobs import Outbound

if TYPE_CHECKING:
    from metacrm.platform.backup_schedule import BackupSchedule


class Settings(BaseSettings):
    """Every setting of a metacrm process (the README lists them in a table)."""

    model_config = SettingsConfigDict(env_prefix="METACRM_", extra="ignore")

    data_dir: Path = Field(
        Path(".data"),
        description="Where SQLite files, the signing key and the demo password live.",
    )
    database_url: str | None = Field(
        None, description="PostgreSQL URL; empty means SQLite files under data_dir."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Server processes.")
    secret_key: str | None = Field(
        None, description="JWT signing key; generated into data_dir when empty."
    )
    token_ttl_minutes: int = Field(
        60, ge=1, le=60 * 24 * 30, description="Lifetime of an access token."
    )
    session_ttl_hours: int = Field(
        12, ge=1, le=24 * 30, description="Lifetime of a web workspace session."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    list_limit_default: int = Field(
        50, ge=1, description="Records per page when `limit` is absent."
    )
    list_limit_max: int = Field(200, ge=1, description="Largest `limit` a list accepts.")
    batch_max: int = Field(200, ge=1, description="Most records in one batch request.")
    import_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="Largest file an import upload accepts."
    )
    lock_timeout_ms: int = Field(
        2000, ge=10, description="PostgreSQL lock_timeout for schema changes."
    )
    ddl_retries: int = Field(
        5, ge=0, description="Retries of a schema change that met a busy table."
    )
    auto_upgrade: bool = Field(
        True, description="Apply system-table migrations when the server starts."
    )
    platform_admin_token: str | None = Field(
        None, description="Bearer token of the platform-admin API; off when empty."
    )
    jobs_in_process: bool = Field(
        True, description="Run a job worker inside each server process (else `metacrm worker`)."
    )
    job_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often an idle job worker looks for due jobs."
    )
    job_lease_seconds: int = Field(
        300, ge=1, description="How long a worker holds a job before another may take it over."
    )
    smtp_host: str | None = Field(None, description="SMTP server for e-mail; none: e-mail off.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(None, description="SMTP user name (with smtp_password).")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_ssl: bool = Field(False, description="Connect to the SMTP server over TLS.")
    mail_from: str = Field("metacrm@localhost", description="Sender address of e-mails.")
    webhooks_allow_private: bool = Field(
        False,
        description="Let webhooks target loopback, link-local and private addresses (SSRF guard off).",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="How long a webhook delivery waits for its answer."
    )
    public_url: str | None = Field(
        None, description="The workspace's public address for links in e-mails (default host:port)."
    )
    backup_dir: Path | None = Field(
        None, description="Where nightly backups are written (default data_dir/backups)."
    )
    backup_cron: str | None = Field(
        None,
        description="When nightly tenant backups run, a cron in UTC (`0 2 * * *`); off when empty.",
    )
    backup_keep: int = Field(7, ge=1, description="Nightly backups kept per tenant.")
    demo: bool = Field(False, description="Create the demo tenant with the CRM pack on start.")
    demo_password: str | None = Field(
        None, description="Password of admin@demo; generated and printed when empty."
    )

    def outbound(self) -> Outbound:
        """How jobs reach the outside, from these settings."""
        return Outbound(
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_username=self.smtp_username,
            smtp_password=self.smtp_password,
            smtp_starttls=self.smtp_starttls,
            smtp_ssl=self.smtp_ssl,
            mail_from=self.mail_from,
            webhooks_allow_private=self.webhooks_allow_private,
            webhook_timeout_seconds=self.webhook_timeout_seconds,
            base_url=(self.public_url or f"http://{self.host}:{self.port}").rstrip("/"),
        )

    @field_validator("backup_cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and value.strip() == "":
            return None
        if value is not None and not (len(value.split()) == 5 and croniter.is_valid(value)):
            raise ValueError("backup_cron must be a five-field cron such as '0 2 * * *'")
        return value

    def backup_schedule(self) -> BackupSchedule:
        """Nightly backups as these settings define them."""
        from metacrm.platform.backup_schedule import BackupSchedule

        return BackupSchedule(
            self.backup_dir or self.data_dir / "backups", self.backup_cron, self.backup_keep
        )

    @property
    def is_sqlite(self) -> bool:
        return not self.database_url or self.database_url.startswith("sqlite")

    def signing_key(self) -> str:
        """The JWT key: the setting, else a key kept in data_dir so every worker shares it."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()
