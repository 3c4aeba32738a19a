"""Settings of a deployed or local function, from `TRIGGERS_*` environment variables.

Defaults are the embedded, local ones (SQLite ledger, rules from config/): a deployment sets
`TRIGGERS_LEDGER=firestore` and the Terraform module does so.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIGGERS_", extra="ignore", frozen=True)

    rules: str = Field("config/rules.yaml", description="Rules file or directory.")
    ledger: Literal["firestore", "sqlite", "memory"] = "sqlite"
    sqlite_path: str = ".triggers/ledger.sqlite3"
    firestore_project: str | None = Field(None, description="Default: the client's project.")
    firestore_database: str = "(default)"
    firestore_collection: str = "triggers-runs"
    runner: Literal["cloudrun", "dry-run"] = "cloudrun"
    cloud_run_endpoint: str | None = Field(
        None, description="e.g. http://127.0.0.1:8123 for the emulator; default: Cloud Run."
    )
    cloud_run_v1_endpoint: str | None = Field(
        None,
        description="Cloud Run Admin API v1 (system cloudrun-v1) base URL, e.g. the emulator's;"
        " default: each job's regional endpoint.",
    )
    cloud_run_v1_regions: tuple[str, ...] = Field(
        (),
        description="Regions (JSON list) to ask about v1 executions this instance did not launch:"
        " their names carry no region.",
    )
    lease_seconds: int = Field(540, ge=10, description="Claim lease: the function's timeout.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    retry_after_seconds: int = Field(10, ge=1, description="Retry-After on a retry answer.")
    project: str | None = Field(
        None, description="Project for log trace ids; falls back to GOOGLE_CLOUD_PROJECT."
    )
    log_level: str = "INFO"
    oidc_audience: str | None = Field(
        None, description="Verify Google OIDC tokens of direct HTTP callers for this audience."
    )
    oidc_allowed_emails: tuple[str, ...] = Field(
        (), description="Service accounts allowed to call (JSON list); empty: any verified one."
    )
    dead_letter_topic: str | None = Field(
        None,
        pattern=r"^projects/[^/]+/topics/[^/]+$",
        description="Publish rejected requests to this topic (projects/P/topics/T); unset: off.",
    )
    dead_letter_timeout_seconds: float = Field(
        10.0, gt=0, description="How long to wait for Pub/Sub to accept a dead letter."
    )

    @field_validator("dead_letter_topic", mode="before")
    @classmethod
    def _empty_topic_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def log_project(settings: Settings) -> str | None:
    """The project that trace ids in logs belong to."""
    return settings.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or settings.firestore_project
