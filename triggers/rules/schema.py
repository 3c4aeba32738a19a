"""The rules file schema: what users write, validated field by field with pydantic.

This module is the contract for everything that reads a rules file — the loader, `triggers
schema` (JSON Schema for editors) and the Terraform module. It checks shape and Cloud Run
limits; patterns, CEL and templates are compiled (and so checked) by the loader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from ..events.model import (
    PUBSUB_PUBLISHED,
    SCHEDULER_EXECUTED,
    STORAGE_ARCHIVED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    STORAGE_METADATA_UPDATED,
)
from ..plan import MAX_ENV_VALUE_BYTES
from ._schema_base import Duration, SchemaModel
from .schema_flow import BatchSpec, LimitsSpec

# `on:` shorthands and the CloudEvent types each stands for.
ON_SHORTHANDS: dict[str, tuple[str, ...]] = {
    "pubsub": (PUBSUB_PUBLISHED,),
    "storage": (STORAGE_FINALIZED, STORAGE_DELETED, STORAGE_ARCHIVED, STORAGE_METADATA_UPDATED),
    "storage.finalized": (STORAGE_FINALIZED,),
    "storage.deleted": (STORAGE_DELETED,),
    "storage.archived": (STORAGE_ARCHIVED,),
    "storage.metadataUpdated": (STORAGE_METADATA_UPDATED,),
    "scheduler": (SCHEDULER_EXECUTED,),
}
# The source a CloudEvent type belongs to: `on:` with a full type of a known source is that
# source (`google.cloud.pubsub.topic.v1.messagePublished` is `pubsub`, and takes `topic:`).
_KIND_OF_TYPE: dict[str, str] = {
    t: shorthand.split(".")[0] for shorthand, types in ON_SHORTHANDS.items() for t in types
}


def event_kinds(on: Iterable[str]) -> frozenset[str]:
    """The kinds of event that `on:` values receive: `storage.finalized` is `storage`, a full
    type of a known source is that source, any other full type is `generic`."""
    return frozenset(
        value.split(".")[0] if value in ON_SHORTHANDS else _KIND_OF_TYPE.get(value, "generic")
        for value in on
    )


# A full CloudEvent type: reverse-DNS-ish, at least two dots (`com.example.thing.v1`).
_FULL_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+){2,}$")


# Cloud Run limits and formats (see shared/notes/delivery-and-limits.md).
MAX_TASK_COUNT = 10_000
MAX_TIMEOUT_SECONDS = 168 * 3600  # 24 h GA, 168 h in preview
JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
PROJECT_ID = re.compile(r"^([a-z][-a-z0-9]{4,28}[a-z0-9]|[0-9]{1,19})$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
FULL_JOB = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/jobs/(?P<job>[^/]+)$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Names Cloud Run's container contract sets (and refuses in a job or an override), and the run
# key triggers adds to every run. The contract names are covered by the prefixes below too; they
# stay listed so that the set says what Cloud Run documents.
RESERVED_ENV = frozenset(
    {
        "CLOUD_RUN_JOB",
        "CLOUD_RUN_EXECUTION",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_ATTEMPT",
        "CLOUD_RUN_TASK_COUNT",
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
        "PORT",
        "TRIGGERS_RUN_KEY",
    }
)
# Cloud Run refuses any name starting with X_GOOGLE_; CLOUD_RUN_ and K_ are the namespaces its
# contract variables live in (jobs and services), so a rule setting one would shadow or be
# shadowed by what Cloud Run sets, today or in a later release.
RESERVED_ENV_PREFIXES = ("CLOUD_RUN_", "K_", "X_GOOGLE_")
RULE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

# `on: pubsub` and `on: [pubsub, storage]` both work; code always sees a list.
OnList = Annotated[
    list[str],
    BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]


# A Secret Manager secret: its id in the job's project, or projects/P/secrets/S; and a version:
# `latest` or a version number (Secret Manager's own formats).
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
FULL_SECRET = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}$")
SECRET_VERSION = re.compile(r"^(latest|[1-9][0-9]*)$")


class SecretRefSpec(SchemaModel):
    """`env: {NAME: {secret: S, version: latest}}`: Cloud Run reads the value from Secret
    Manager when the task starts; the rules, the function and its logs only see the name."""

    secret: str = Field(
        description="The secret: its id in the job's project, or projects/P/secrets/S."
    )
    version: Annotated[
        str,
        # `version: 3` in YAML is an int; Secret Manager's version ids are decimal strings.
        BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 1}]}),
    ] = Field("latest", description="'latest' (the default) or a version number.")

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not (SECRET_ID.match(value) or FULL_SECRET.match(value)):
            raise ValueError(
                f"secret {value!r} is not a secret id (letters, digits, '-' and '_', at most"
                " 255 characters) nor projects/P/secrets/S"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not SECRET_VERSION.match(value):
            raise ValueError(f"version {value!r} must be 'latest' or a version number (1, 2, ...)")
        return value


def _env_value_kind(value: Any) -> str:
    return "secret_ref" if isinstance(value, dict | SecretRefSpec) else "template"


# An env value: a template string, or a secret reference. Chosen by its shape, so that a wrong
# secret reference gets the reference's errors, not also "should be a string". The tags appear
# in pydantic's error locations; the loader leaves them out of its messages.
ENV_VALUE_TAGS = ("template", "secret_ref")
EnvValue = Annotated[
    Annotated[str, Tag("template")] | Annotated[SecretRefSpec, Tag("secret_ref")],
    Discriminator(_env_value_kind),
]


class OverridesSpec(SchemaModel):
    """Cloud Run `jobs.run` overrides. Strings (args, env values) are Jinja2 templates."""

    container: str | None = Field(
        None, description="Container to override; needed only for multi-container jobs."
    )
    args: list[str] | None = Field(None, description="Replace the container's args.")
    clear_args: bool = Field(False, description="Clear the container's args (no args).")
    env: dict[str, EnvValue] = Field(
        default_factory=dict,
        description="Env vars merged over the job's own: a template string, or"
        " {secret: S, version: latest} to read the value from Secret Manager at run time.",
    )
    task_count: int | None = Field(None, ge=1, le=MAX_TASK_COUNT)
    timeout: Duration | None = Field(
        None, description="Per-task timeout: seconds or '30m', '2h'. At most 168h (24h GA)."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout must be between 1s and 168h, not {value}s")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str | SecretRefSpec]) -> dict[str, str | SecretRefSpec]:
        problems = []
        for name, value in env.items():
            if not ENV_NAME.match(name):
                problems.append(f"env name {name!r} is not a valid variable name")
            elif name in RESERVED_ENV:
                problems.append(f"env name {name!r} is reserved by Cloud Run or triggers")
            elif name.startswith(RESERVED_ENV_PREFIXES):
                prefix = next(p for p in RESERVED_ENV_PREFIXES if name.startswith(p))
                problems.append(
                    f"env name {name!r} is reserved: the prefix {prefix} is Cloud Run's"
                )
            if not isinstance(value, str):
                continue  # a secret reference: its value never passes through here
            try:
                size = len(value.encode())
            except UnicodeEncodeError:  # `${NAME}` from an environment holding non-UTF-8 bytes
                problems.append(f"env {name!r} holds a lone surrogate UTF-8 cannot encode")
                continue
            if size > MAX_ENV_VALUE_BYTES:
                problems.append(f"env {name!r} is longer than Cloud Run's 32 KiB limit")
        if problems:
            raise ValueError("; ".join(problems))
        return env

    @model_validator(mode="after")
    def _args_xor_clear(self) -> OverridesSpec:
        if self.clear_args and self.args is not None:
            raise ValueError("set either args or clear_args, not both")
        return self

    @property
    def secret_env(self) -> dict[str, SecretRefSpec]:
        """The env vars read from Secret Manager."""
        return {k: v for k, v in self.env.items() if isinstance(v, SecretRefSpec)}

    @property
    def plain_env(self) -> dict[str, str]:
        """The env vars whose value is a template."""
        return {k: v for k, v in self.env.items() if isinstance(v, str)}


class DedupSpec(SchemaModel):
    """Which events count as the same occurrence, and for how long that is remembered."""

    key: str | None = Field(
        None,
        description="Template for the dedup key. Default: '{{ source }}#{{ id }}' "
        "(Scheduler: 'job#schedule_time').",
    )
    window: Duration = Field(7 * 86400, description="How long a key is remembered. Default 7d.")

    @field_validator("window")
    @classmethod
    def _window_bounds(cls, value: int) -> int:
        if not 60 <= value <= 3650 * 86400:
            raise ValueError(f"window must be between 1m and 3650d, not {value}s")
        return value


class RuleSpec(SchemaModel):
    """One rule: which events, which job, with which overrides."""

    name: str = Field(description="Unique rule name: lowercase letters, digits, '-', '_'.")
    description: str | None = None
    enabled: bool = True
    on: OnList = Field(
        description="pubsub | scheduler | storage | storage.<finalized|deleted|archived|"
        "metadataUpdated> | a full CloudEvent type; one or a list."
    )
    match: dict[str, Any] | None = Field(
        None, description="Amazon EventBridge content pattern over the event document."
    )
    when: str | None = Field(None, description="CEL condition over `event` and `data`.")
    system: str = Field(
        "cloudrun",
        description="The job system that runs `job`: cloudrun (Cloud Run Admin API v2, the "
        "default) or another of triggers.runners.systems (docs/runners.md).",
    )
    job: str = Field(description="Job id (uses project/region) or projects/P/locations/R/jobs/J.")
    project: str | None = None
    region: str | None = None
    topic: str | None = Field(None, description="pubsub: only messages of this topic.")
    subscription: str | None = Field(
        None, description="pubsub: only messages of this subscription."
    )
    bucket: str | None = Field(None, description="storage: only objects of this bucket.")
    schedule: str | None = Field(
        None, description="scheduler: cron schedule of the Scheduler job this rule owns."
    )
    time_zone: str | None = Field(None, description="scheduler: time zone of the schedule.")
    scheduler_job: str | None = Field(
        None, description="scheduler: the Scheduler job's name. Default: the rule name."
    )
    overrides: OverridesSpec = Field(default_factory=OverridesSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    limits: LimitsSpec | None = Field(
        None,
        description="Flow control: launch rate, executions running at once and what to do at"
        " that limit, through a Cloud Tasks queue. Unset fields take the file's `limits:`.",
    )
    batch: BatchSpec | None = Field(
        None,
        description="Collect matching events for a window and start one execution for them,"
        " task_count from their number.",
    )
    example: dict[str, Any] | None = Field(
        None,
        description="A request this rule must run for, as in an event file: {headers, body}, or"
        " the JSON body alone. Checked at load (it must decode, match and plan); `triggers"
        " check --live` sends its jobs.run with validateOnly.",
    )

    @field_validator("name")
    @classmethod
    def _name_format(cls, name: str) -> str:
        if not RULE_NAME.match(name):
            raise ValueError(
                f"rule name {name!r} must start with a lowercase letter and use only "
                "lowercase letters, digits, '-' and '_' (at most 63 characters)"
            )
        return name

    @field_validator("system")
    @classmethod
    def _system_known(cls, value: str) -> str:
        from ..runners.systems import get

        try:
            get(value)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return value

    @field_validator("on")
    @classmethod
    def _on_known(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("on: needs at least one event source or type")
        for value in values:
            if value not in ON_SHORTHANDS and not _FULL_TYPE.match(value):
                raise ValueError(
                    f"unknown event source {value!r}: use one of "
                    f"{', '.join(ON_SHORTHANDS)} or a full CloudEvent type"
                )
        return values

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            # The same evaluator the local clock uses, so whatever validates also fires.
            from datetime import datetime

            from .schedule import Schedule

            Schedule(value).next_after(datetime(2000, 1, 1, tzinfo=UTC))
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def kinds(self) -> frozenset[str]:
        """The event kinds this rule's `on:` can receive (a full type of an unknown source is
        `generic`)."""
        return event_kinds(self.on)

    @model_validator(mode="after")
    def _source_fields(self) -> RuleSpec:
        kinds = self.kinds
        owned = {
            "topic": "pubsub",
            "subscription": "pubsub",
            "bucket": "storage",
            "schedule": "scheduler",
            "time_zone": "scheduler",
            "scheduler_job": "scheduler",
        }
        wrong = [
            f"{name} applies only to '{kind}' rules"
            for name, kind in owned.items()
            if getattr(self, name) is not None and kinds != {kind}
        ]
        if self.time_zone and not self.schedule:
            wrong.append("time_zone needs a schedule")
        if wrong:
            raise ValueError("; ".join(wrong))
        return self


class RulesFile(SchemaModel):
    """A rules file: defaults for project/region, then the rules."""

    project: str | None = Field(None, description="Default project for short job names.")
    region: str | None = Field(None, description="Default region for short job names.")
    limits: LimitsSpec | None = Field(
        None,
        description="Defaults for every rule of this file: each `limits:` field a rule does not"
        " set is taken from here, and a rule without `limits:` gets these.",
    )
    rules: list[RuleSpec] = Field(default_factory=list)


def json_schema() -> dict[str, Any]:
    """JSON Schema of a rules file, for editors (yaml-language-server) and `triggers schema`."""
    schema = RulesFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "triggers rules file"
    return schema
