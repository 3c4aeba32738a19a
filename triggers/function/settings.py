"""Settings of a deployed or local function, from `TRIGGERS_*` environment variables.

Defaults are the embedded, local ones (SQLite ledger, rules from config/): a deployment sets
`TRIGGERS_LEDGER=firestore` and the Terraform module does so.

The standard library only, on purpose: pydantic-settings cost a cold start ~376 M instructions
(importing pydantic and building the model), the largest part of triggers' start that compiled
rules cannot skip (docs/performance.md, "Cold start"). The class below is the field table (each
field's type, default, bounds and description); `_read` is the parser. It keeps what users
relied on: `TRIGGERS_<NAME>` read case-insensitively, keyword arguments over the environment,
numbers from text, `tuple[str, ...]` from a JSON list, frozen instances; and an invalid
configuration raises one SettingsError that lists every problem at once.
"""

# No `from __future__ import annotations`: the parser reads each field's type from the table, so
# the annotations must be the types themselves, not their text.
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args, get_origin

from ..errors import SettingsError

PREFIX = "TRIGGERS_"


def _setting(
    default: Any,
    description: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
) -> Any:
    """One row of the table: the default and what a value must satisfy."""
    bounds = {"ge": ge, "gt": gt, "le": le, "pattern": pattern}
    return field(default=default, metadata={"description": description, **bounds})


@dataclass(frozen=True, init=False, repr=False)
class Settings:
    """`Settings()` reads the environment; `Settings(ledger="memory")` overrides it."""

    rules: str = _setting("config/rules.yaml", "Rules file or directory.")
    ledger: Literal["firestore", "sqlite", "memory"] = _setting("sqlite")
    sqlite_path: str = _setting(".triggers/ledger.sqlite3")
    firestore_project: str | None = _setting(None, "Default: the client's project.")
    firestore_database: str = _setting("(default)")
    firestore_collection: str = _setting("triggers-runs")
    runner: Literal["cloudrun", "dry-run"] = _setting("cloudrun")
    cloud_run_endpoint: str | None = _setting(
        None, "e.g. http://127.0.0.1:8123 for the emulator; default: Cloud Run."
    )
    peloton_endpoint: str | None = _setting(
        None, "Peloton job manager (YARPC-HTTP), e.g. http://peloton-jobmgr:5292."
    )
    peloton_templates: str = _setting(
        "config/peloton", "Directory of Peloton job templates (<job>.yaml)."
    )
    sae_endpoint: str | None = _setting(
        None,
        "SAE (system: sae): http://127.0.0.1:PORT for the emulator, or host[:port]"
        " over HTTPS; default: sae.REGION.aliyuncs.com of each rule's region.",
    )
    cloud_run_v1_endpoint: str | None = _setting(
        None,
        "Cloud Run Admin API v1 (system cloudrun-v1) base URL, e.g. the emulator's;"
        " default: each job's regional endpoint.",
    )
    cloud_run_v1_regions: tuple[str, ...] = _setting(
        (),
        "Regions (JSON list) to ask about v1 executions this instance did not launch:"
        " their names carry no region.",
    )
    lease_seconds: int = _setting(540, "Claim lease: the function's timeout.", ge=10)
    cloud_run_timeout_seconds: float = _setting(
        30.0, "Timeout of each Cloud Run API call (jobs.run, a page).", gt=0, le=300
    )
    find_page_size: int = _setting(
        100, "Executions per ListExecutions page when adopting.", ge=1, le=1000
    )
    find_budget_seconds: float = _setting(
        20.0, "How long adopting may page back to the claim; then retry.", gt=0
    )
    find_margin_seconds: float = _setting(
        120.0, "Clock margin: executions are looked for from claim - this.", ge=0
    )
    ambiguous_margin_seconds: float = _setting(
        30.0, "An ambiguous jobs.run keeps its claim for the Cloud Run timeout + this.", ge=0
    )
    ledger_deadline_seconds: float = _setting(
        3.0, "Deadline of each Firestore ledger call, retries included.", gt=0, le=60
    )
    ledger_retry_seconds: float = _setting(
        2.0, "How long a ledger call retries transient errors (0: never).", ge=0
    )
    max_body_bytes: int = _setting(10 * 1024 * 1024, ge=1024)
    retry_after_seconds: int = _setting(10, "Retry-After on a retry answer.", ge=1)
    project: str | None = _setting(
        None, "Project for log trace ids; falls back to GOOGLE_CLOUD_PROJECT."
    )
    log_level: str = _setting("INFO")
    tracing: Literal["off", "cloud-trace", "console"] = _setting(
        "off",
        "Spans of each request (decode, route, per rule: claim, run, record) to"
        " Cloud Trace or stdout; needs the `tracing` extra (OpenTelemetry).",
    )
    tracing_endpoint: str = _setting(
        "https://telemetry.googleapis.com/v1/traces",
        "OTLP/HTTP traces endpoint of `cloud-trace`: Google's Telemetry API.",
    )
    tracing_sample_ratio: float = _setting(
        1.0, "Share of new traces kept; a sampled caller is followed.", ge=0, le=1
    )
    oidc_audience: str | None = _setting(
        None,
        "Verify Google OIDC tokens of callers for this audience, or a JSON list of"
        " audiences (`*` in one: a run of [a-z0-9], for run.app host names).",
    )
    oidc_allowed_emails: tuple[str, ...] = _setting(
        (), "Service accounts allowed to call (JSON list); empty: any verified one."
    )
    dead_letter_topic: str | None = _setting(
        None,
        "Publish rejected requests to this topic (projects/P/topics/T); unset: off.",
        pattern=r"^projects/[^/]+/topics/[^/]+$",
    )
    dead_letter_timeout_seconds: float = _setting(
        10.0, "How long to wait for Pub/Sub to accept a dead letter.", gt=0
    )

    # Flow control (`limits:`): the Cloud Tasks queues launches go through (docs/flow-control.md).
    task_target_url: str | None = _setting(
        None,
        "Where queue tasks call back: the function's URL + /_triggers/task. Needed"
        " when a rule has `limits:` or `batch:`; unset, their events are answered 503 (kept).",
    )
    tasks_endpoint: str | None = _setting(
        None, "Cloud Tasks API, e.g. the emulator's http://127.0.0.1:8123."
    )
    tasks_project: str | None = _setting(
        None, "Project of the queues; default: GOOGLE_CLOUD_PROJECT / `project`."
    )
    tasks_location: str | None = _setting(
        None, "Location (region) of the queues; default: the first rule's region."
    )
    tasks_service_account: str | None = _setting(
        None, "Service account whose OIDC token signs the tasks (none: unsigned)."
    )
    tasks_audience: str | None = _setting(
        None, "Audience of the tasks' OIDC token; default: the target URL."
    )
    manifest_bucket: str | None = _setting(
        None,
        "Cloud Storage bucket for batch manifests too large for an env var"
        " (gs://BUCKET/triggers/batches/ID.json); unset: a local directory (.triggers/manifests).",
    )
    running_cache_seconds: float = _setting(
        5.0, "How long a job's count of running executions (max_running) is reused.", ge=0
    )

    def __init__(self, **overrides: Any) -> None:
        for name, value in _read(overrides, os.environ).items():
            object.__setattr__(self, name, value)  # frozen: the dataclass refuses setattr

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name (what the runner systems read their options from)."""
        return {spec.name: getattr(self, spec.name) for spec in FIELDS}

    def __repr__(self) -> str:
        # Only what differs from the defaults: 40 fields, most of them unset, would hide it.
        changed = (
            f"{spec.name}={getattr(self, spec.name)!r}"
            for spec in FIELDS
            if getattr(self, spec.name) != spec.default
        )
        return f"Settings({', '.join(changed)})"


@dataclass(frozen=True)
class SettingField:
    """A setting as tools and docs list it: its variable, kind, default, limits, description."""

    name: str
    env: str
    kind: str  # "str", "str?", "int", "float", "choice", "list"
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    pattern: str | None = None


def _kind(annotation: object) -> tuple[str, tuple[str, ...]]:
    simple: dict[object, str] = {
        str: "str",
        str | None: "str?",
        int: "int",
        float: "float",
        tuple[str, ...]: "list",
    }
    if annotation in simple:
        return simple[annotation], ()
    if get_origin(annotation) is Literal:
        return "choice", get_args(annotation)
    raise TypeError(f"a setting of type {annotation!r} has no parser")


def _fields() -> tuple[SettingField, ...]:
    table = []
    for spec in fields(Settings):
        kind, choices = _kind(spec.type)
        meta = spec.metadata
        table.append(
            SettingField(
                name=spec.name,
                env=PREFIX + spec.name.upper(),
                kind=kind,
                default=spec.default,
                description=meta["description"],
                choices=choices,
                ge=meta["ge"],
                gt=meta["gt"],
                le=meta["le"],
                pattern=meta["pattern"],
            )
        )
    return tuple(table)


FIELDS: tuple[SettingField, ...] = _fields()
_BY_NAME = {spec.name: spec for spec in FIELDS}


# -- the parser ---------------------------------------------------------------------------------


class _Invalid(Exception):
    """What a value should have been (becomes one line of the SettingsError)."""


def _read(overrides: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(_BY_NAME))
    if unknown:  # a caller's mistake, not a configuration's
        raise TypeError(f"Settings() got unknown settings: {', '.join(unknown)}")
    # Names are case-insensitive, as pydantic-settings read them (of two spellings, the later wins).
    env = {
        name.upper(): value for name, value in environ.items() if name.upper().startswith(PREFIX)
    }
    values: dict[str, Any] = {}
    labels: dict[str, str] = {}
    problems: list[str] = []
    for spec in FIELDS:
        if spec.name in overrides:
            raw, label = overrides[spec.name], f"{spec.name}={overrides[spec.name]!r}"
        elif spec.env in env:
            raw, label = env[spec.env], f"{spec.env}={env[spec.env]!r}"
        else:
            values[spec.name], labels[spec.name] = spec.default, f"{spec.env} (default)"
            continue
        labels[spec.name] = label
        try:
            values[spec.name] = _parse(spec, raw)
        except _Invalid as exc:
            problems.append(f"{label}: {exc}")
    timing = ("lease_seconds", "cloud_run_timeout_seconds", "ambiguous_margin_seconds")
    if all(name in values for name in timing):
        # A claim must not be taken over while its holder may still be in jobs.run, nor an
        # ambiguous hold end before the API can no longer act on the request (docs/ledger.md).
        hold = values["cloud_run_timeout_seconds"] + values["ambiguous_margin_seconds"]
        if values["lease_seconds"] < hold:
            problems.append(
                f"{labels['lease_seconds']}: must be at least TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS"
                f" + TRIGGERS_AMBIGUOUS_MARGIN_SECONDS ({hold:g})"
            )
    if problems:
        raise SettingsError(problems)
    return values


def _parse(spec: SettingField, raw: Any) -> Any:
    """`raw` (text from the environment, or a keyword argument's value) as the setting's type."""
    if spec.pattern is not None and isinstance(raw, str) and not raw.strip():
        return None  # an empty topic is off, as unset
    value: Any = _CONVERT[spec.kind](spec, raw)
    if isinstance(value, int | float):
        if spec.ge is not None and not value >= spec.ge:
            raise _Invalid(f"must be at least {spec.ge:g}")
        if spec.gt is not None and not value > spec.gt:
            raise _Invalid(f"must be greater than {spec.gt:g}")
        if spec.le is not None and not value <= spec.le:
            raise _Invalid(f"must be at most {spec.le:g}")
    if spec.pattern is not None and value is not None and not re.fullmatch(spec.pattern, value):
        raise _Invalid(f"must match {spec.pattern}")
    return value


def _text(spec: SettingField, raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Invalid("must be a string")
    return raw


def _optional_text(spec: SettingField, raw: Any) -> str | None:
    # Empty text stays empty text (pydantic-settings did not read "" as None either).
    return None if raw is None else _text(spec, raw)


def _integer(spec: SettingField, raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass  # perhaps "600.0"
    number = _number(spec, raw)
    if not number.is_integer():  # "600.0" is 600, as pydantic read it; "600.5" is not
        raise _Invalid("must be an integer")
    return int(number)


def _number(spec: SettingField, raw: Any) -> float:
    expected = "must be an integer" if spec.kind == "int" else "must be a number"
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Invalid(expected)
    try:
        number = float(raw.strip() if isinstance(raw, str) else raw)
    except ValueError:
        raise _Invalid(expected) from None
    if not math.isfinite(number):  # inf or nan: no timeout, bound or ratio means that
        raise _Invalid("must be a finite number")
    return number


def _choice(spec: SettingField, raw: Any) -> str:
    if raw not in spec.choices:
        raise _Invalid("must be one of " + ", ".join(repr(c) for c in spec.choices))
    return str(raw)


def _string_list(spec: SettingField, raw: Any) -> tuple[str, ...]:
    items = raw
    if isinstance(raw, str):
        try:
            items = json.loads(raw)
        except ValueError:
            items = None
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise _Invalid('must be a JSON list of strings, e.g. ["a", "b"]')
    return tuple(items)


_CONVERT = {
    "str": _text,
    "str?": _optional_text,
    "int": _integer,
    "float": _number,
    "choice": _choice,
    "list": _string_list,
}


def log_project(settings: Settings) -> str | None:
    """The project that trace ids in logs belong to."""
    return settings.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or settings.firestore_project
