"""The service's settings in one place: CLI options, an environment variable for workers.

The CLI's defaults and help come from these fields (`botify serve --help`), so a default is
written once. Secrets (the admin token, a Redis password) never leave through `redact`ed text.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

SETTINGS_ENV = "BOTIFY_SERVICE_SETTINGS"
REDIS_ENV = "BOTIFY_REDIS_URL"
ADMIN_TOKEN_ENV = "BOTIFY_ADMIN_TOKEN"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog: Path = Field(description="tracks.json of the world (public metadata only)")
    host: str = "127.0.0.1"
    port: int = Field(5001, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    log_dir: Path = Path("log")
    experiments: Path | None = Field(None, description="experiments file; botify's embedded default if absent")
    artifacts: Path | None = Field(None, description="directory holding the artifact files experiments name")
    strict: bool = Field(False, description="refuse artifacts naming tracks outside the catalog (else they are "
                                            "skipped, with a warning, as the course served them)")
    redis: str | None = Field(None, description=f"Redis URL (or {REDIS_ENV}); embedded store if absent")
    history_length: int = Field(50, ge=1, le=10_000, description="listens kept per user across sessions")
    session_length: int = Field(500, ge=1, le=100_000, description="listens kept of a user's open session")
    session_ttl: float = Field(3600.0, gt=0, description="seconds before an abandoned session expires")
    max_users: int = Field(100_000, ge=1, description="users the embedded store keeps (least recently seen go first)")
    idempotency_window: float = Field(
        300.0, ge=0, description="seconds a request's Idempotency-Key is remembered (0: keys are ignored)")
    max_body_bytes: int = Field(4096, ge=64)
    log_max_bytes: int = Field(64 << 20, ge=1024, description="event log file size before rotating")
    log_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                                 description="name log files as the course did (e.g. data.json): LOG_DIR/<worker>/NAME")
    log_retry: float = Field(1.0, gt=0, description="seconds between attempts to write an event log that failed")
    redis_timeout: float = Field(0.5, gt=0, description="seconds before a Redis command counts as failed")
    keepalive_timeout: float = Field(5.0, gt=0, description="seconds an idle keep-alive connection stays open")
    header_timeout: float = Field(10.0, gt=0, description="seconds a client has to send a request's headers")
    body_timeout: float = Field(10.0, gt=0, description="seconds a client has to send a request's body")
    max_connections: int = Field(1024, ge=1, description="open connections per worker; more are refused with 503")
    shutdown_timeout: float = Field(10.0, ge=0, description="seconds a graceful shutdown waits for open requests")
    admin_token: str | None = Field(None, repr=False, description=f"token for /admin (or {ADMIN_TOKEN_ENV})")
    admin_token_file: Path = Field(Path.home() / ".botify" / "admin-token",
                                   description="where a generated admin token is kept (owner-only)")
    reload_interval: float = Field(1.0, ge=0, description="least seconds between two /admin/reload")
    seed: int = 42
    studio: bool = Field(False, description="also serve botify studio (web pages to listen, recommend, watch) "
                                            "under /studio; one worker only")

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServiceSettings:
        return cls.model_validate_json(os.environ[SETTINGS_ENV])

    @property
    def redis_display(self) -> str | None:
        """The Redis URL as it may be shown (password masked)."""
        return None if self.redis is None else redact(self.redis)


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`: what logs, banners and answers show."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit(parts._replace(netloc=netloc))
