"""The service's settings in one place: CLI options, an environment variable for workers."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

SETTINGS_ENV = "BOTIFY_SERVICE_SETTINGS"
REDIS_ENV = "BOTIFY_REDIS_URL"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog: Path = Field(description="tracks.json of the world (public metadata only)")
    host: str = "127.0.0.1"
    port: int = Field(5001, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    log_dir: Path = Path("log")
    experiments: Path | None = Field(None, description="experiments file; botify's embedded default if absent")
    artifacts: Path | None = Field(None, description="directory holding the artifact files experiments name")
    redis: str | None = Field(None, description=f"Redis URL (or {REDIS_ENV}); embedded store if absent")
    history_length: int = Field(50, ge=1, le=10_000, description="listens kept per user across sessions")
    session_length: int = Field(500, ge=1, le=100_000, description="listens kept of a user's open session")
    session_ttl: float = Field(3600.0, gt=0, description="seconds before an abandoned session expires")
    max_body_bytes: int = Field(4096, ge=64)
    log_max_bytes: int = Field(64 << 20, ge=1024, description="event log file size before rotating")
    redis_timeout: float = Field(0.5, gt=0, description="seconds before a Redis command counts as failed")
    seed: int = 42

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServiceSettings:
        return cls.model_validate_json(os.environ[SETTINGS_ENV])
