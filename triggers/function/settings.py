"""Settings of a deployed or local function, from `TRIGGERS_*` environment variables.

Defaults are the embedded, local ones (SQLite ledger, rules from config/): a deployment sets
`TRIGGERS_LEDGER=firestore` and the Terraform module does so.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, field_validator, model_validator
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
    peloton_endpoint: str | None = Field(
        None, description="Peloton job manager (YARPC-HTTP), e.g. http://peloton-jobmgr:5292."
    )
    peloton_templates: str = Field(
        "config/peloton", description="Directory of Peloton job templates (<job>.yaml)."
    )
    sae_endpoint: str | None = Field(
        None,
        description="SAE (system: sae): http://127.0.0.1:PORT for the emulator, or host[:port]"
        " over HTTPS; default: sae.REGION.aliyuncs.com of each rule's region.",
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
    cloud_run_timeout_seconds: float = Field(
        30.0, gt=0, le=300, description="Timeout of each Cloud Run API call (jobs.run, a page)."
    )
    find_page_size: int = Field(
        100, ge=1, le=1000, description="Executions per ListExecutions page when adopting."
    )
    find_budget_seconds: float = Field(
        20.0, gt=0, description="How long adopting may page back to the claim; then retry."
    )
    find_margin_seconds: float = Field(
        120.0, ge=0, description="Clock margin: executions are looked for from claim - this."
    )
    ambiguous_margin_seconds: float = Field(
        30.0,
        ge=0,
        description="An ambiguous jobs.run keeps its claim for the Cloud Run timeout + this.",
    )
    ledger_deadline_seconds: float = Field(
        3.0, gt=0, le=60, description="Deadline of each Firestore ledger call, retries included."
    )
    ledger_retry_seconds: float = Field(
        2.0, ge=0, description="How long a ledger call retries transient errors (0: never)."
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    retry_after_seconds: int = Field(10, ge=1, description="Retry-After on a retry answer.")
    project: str | None = Field(
        None, description="Project for log trace ids; falls back to GOOGLE_CLOUD_PROJECT."
    )
    log_level: str = "INFO"
    tracing: Literal["off", "cloud-trace", "console"] = Field(
        "off",
        description="Spans of each request (decode, route, per rule: claim, run, record) to"
        " Cloud Trace or stdout; needs the `tracing` extra (OpenTelemetry).",
    )
    tracing_endpoint: str = Field(
        "https://telemetry.googleapis.com/v1/traces",
        description="OTLP/HTTP traces endpoint of `cloud-trace`: Google's Telemetry API.",
    )
    tracing_sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of new traces kept; a sampled caller is followed."
    )
    oidc_audience: str | None = Field(
        None,
        description="Verify Google OIDC tokens of callers for this audience, or a JSON list of"
        " audiences (`*` in one: a run of [a-z0-9], for run.app host names).",
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

    # Flow control (`limits:`): the Cloud Tasks queues launches go through (docs/flow-control.md).
    task_target_url: str | None = Field(
        None,
        description="Where queue tasks call back: the function's URL + /_triggers/task. Needed"
        " when a rule has `limits:` or `batch:`; unset, their events are answered 503 (kept).",
    )
    tasks_endpoint: str | None = Field(
        None, description="Cloud Tasks API, e.g. the emulator's http://127.0.0.1:8123."
    )
    tasks_project: str | None = Field(
        None, description="Project of the queues; default: GOOGLE_CLOUD_PROJECT / `project`."
    )
    tasks_location: str | None = Field(
        None, description="Location (region) of the queues; default: the first rule's region."
    )
    tasks_service_account: str | None = Field(
        None, description="Service account whose OIDC token signs the tasks (none: unsigned)."
    )
    tasks_audience: str | None = Field(
        None, description="Audience of the tasks' OIDC token; default: the target URL."
    )
    manifest_bucket: str | None = Field(
        None,
        description="Cloud Storage bucket for batch manifests too large for an env var"
        " (gs://BUCKET/triggers/batches/ID.json); unset: a local directory (.triggers/manifests).",
    )
    running_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a job's count of running executions (max_running) is reused.",
    )

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> Settings:
        # A claim must not be taken over while its holder may still be in jobs.run, nor an
        # ambiguous hold end before the API can no longer act on the request (docs/ledger.md).
        hold = self.cloud_run_timeout_seconds + self.ambiguous_margin_seconds
        if self.lease_seconds < hold:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds}) must be at least cloud_run_timeout_seconds"
                f" + ambiguous_margin_seconds ({hold:g})"
            )
        return self

    @field_validator("dead_letter_topic", mode="before")
    @classmethod
    def _empty_topic_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def log_project(settings: Settings) -> str | None:
    """The project that trace ids in logs belong to."""
    return settings.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or settings.firestore_project
