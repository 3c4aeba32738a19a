"""``jobs.run`` request bodies: parsing, validation and the override semantics (pure).

The body is the proto3 JSON of ``RunJobRequest`` minus ``name``::

    {"validateOnly": false, "etag": "...",
     "overrides": {"containerOverrides": [{"name": "", "args": [...], "env": [{"name", "value"}],
                                           "clearArgs": false}],
                   "taskCount": 4, "timeout": "1800s"}}

Both the JSON names (``taskCount``) and the proto field names (``task_count``) are accepted, as
a proto3 JSON parser does. Semantics follow the service: ``args`` replace the job's args,
``clearArgs`` empties them, ``env`` is merged over the job's env, ``taskCount`` and ``timeout``
replace the job's values. An empty ``args`` list is indistinguishable from "not set" in proto3,
which is why ``clearArgs`` exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..rpc import ApiError
from .jobs import JobSpec
from .limits import MAX_TASK_COUNT, MAX_TIMEOUT_SECONDS, env_name_problem, env_value_problem

_PROTO_DURATION = re.compile(r"^(-?)(\d{1,12})(?:\.(\d{1,9}))?s$")


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """``EnvVar.valueSource.secretKeyRef``: a Secret Manager version, resolved at run time."""

    secret: str  # a secret id in the job's project, or projects/P/secrets/S
    version: str = "latest"


@dataclass(frozen=True, slots=True)
class ContainerOverride:
    name: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str | SecretKeyRef], ...] = ()
    clear_args: bool = False


@dataclass(frozen=True, slots=True)
class RunOverrides:
    container: ContainerOverride | None = None
    task_count: int | None = None
    timeout: float | None = None

    @property
    def empty(self) -> bool:
        return self.container is None and self.task_count is None and self.timeout is None


@dataclass(frozen=True, slots=True)
class RunRequest:
    validate_only: bool = False
    etag: str = ""
    overrides: RunOverrides = RunOverrides()


@dataclass(frozen=True, slots=True)
class EffectiveRun:
    """What an execution actually runs with, after the overrides."""

    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # job env with overrides merged, in order
    task_count: int
    parallelism: int
    timeout: float
    max_retries: int
    working_dir: str
    # The env vars whose value came from a secret: the execution resource shows these
    # references, as Cloud Run does, never the values the task was given.
    secret_refs: tuple[tuple[str, SecretKeyRef], ...] = ()


def parse_proto_duration(value: Any, field: str) -> float:
    """Seconds from the proto3 JSON form of a Duration (``"600s"``, ``"1.5s"``)."""
    if not isinstance(value, str):
        raise ApiError.invalid(
            f"Invalid value at '{field}' "
            f"(type.googleapis.com/google.protobuf.Duration), {_js(value)}",
            field,
        )
    m = _PROTO_DURATION.match(value)
    if not m:
        raise ApiError.invalid(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), "
            f"Field '{field}', Illegal duration format; duration must end with 's'",
            field,
        )
    seconds = int(m.group(2)) + (int((m.group(3) or "0").ljust(9, "0")) / 1e9)
    return -seconds if m.group(1) else seconds


def _js(value: Any) -> str:
    import json

    return json.dumps(value)


def _get(obj: Mapping[str, Any], json_name: str, proto_name: str, default: Any = None) -> Any:
    if json_name in obj:
        return obj[json_name]
    return obj.get(proto_name, default)


def _check_keys(obj: Mapping[str, Any], allowed: dict[str, str], where: str) -> None:
    for key in obj:
        if key not in allowed and key not in allowed.values():
            at = f" at '{where}'" if where else ""
            raise ApiError.invalid(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ApiError.invalid(f"Invalid value at '{field}' (TYPE_BOOL), {_js(value)}", field)


def _int32(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise ApiError.invalid(f"Invalid value at '{field}' (TYPE_INT32), {_js(value)}", field)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ApiError.invalid(f"Invalid value at '{field}' (TYPE_INT32), {_js(value)}", field)


def _str(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    raise ApiError.invalid(f"Invalid value at '{field}' (TYPE_STRING), {_js(value)}", field)


def parse_run_body(body: Any) -> RunRequest:
    """Parse and validate a ``jobs.run`` body; raise ``ApiError`` (400) when it is invalid."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ApiError.invalid("Invalid JSON payload received. Expected an object.")
    _check_keys(
        body,
        {"name": "name", "validateOnly": "validate_only", "etag": "etag", "overrides": "overrides"},
        "",
    )
    validate_only = _bool(_get(body, "validateOnly", "validate_only", False), "validate_only")
    etag = _str(body.get("etag", "") or "", "etag")
    raw = body.get("overrides")
    if raw is None:
        return RunRequest(validate_only, etag, RunOverrides())
    if not isinstance(raw, Mapping):
        raise ApiError.invalid(f"Invalid value at 'overrides', {_js(raw)}", "overrides")
    _check_keys(
        raw,
        {
            "containerOverrides": "container_overrides",
            "taskCount": "task_count",
            "timeout": "timeout",
        },
        "overrides",
    )

    containers = _get(raw, "containerOverrides", "container_overrides", None) or []
    if not isinstance(containers, list):
        raise ApiError.invalid(
            f"Invalid value at 'overrides.container_overrides', {_js(containers)}",
            "overrides.container_overrides",
        )
    if len(containers) > 1:
        raise ApiError.invalid(
            "overrides.container_overrides: at most one container override is supported"
            " (the job has a single container)",
            "overrides.container_overrides",
        )
    container = _parse_container(containers[0]) if containers else None

    task_count = None
    raw_tc = _get(raw, "taskCount", "task_count", None)
    if raw_tc is not None:
        task_count = _int32(raw_tc, "overrides.task_count")
        if task_count == 0:
            task_count = None  # proto3: 0 is "not set"
        elif task_count < 1 or task_count > MAX_TASK_COUNT:
            raise ApiError.invalid(
                f"overrides.task_count must be between 1 and {MAX_TASK_COUNT}, got {task_count}",
                "overrides.task_count",
            )

    timeout = None
    if raw.get("timeout") is not None:
        timeout = parse_proto_duration(raw["timeout"], "overrides.timeout")
        if timeout <= 0 or timeout > MAX_TIMEOUT_SECONDS:
            raise ApiError.invalid(
                f"overrides.timeout must be more than 0s and at most {MAX_TIMEOUT_SECONDS}s,"
                f" got {raw['timeout']}",
                "overrides.timeout",
            )
    return RunRequest(validate_only, etag, RunOverrides(container, task_count, timeout))


def _parse_container(raw: Any) -> ContainerOverride:
    where = "overrides.container_overrides[0]"
    if not isinstance(raw, Mapping):
        raise ApiError.invalid(f"Invalid value at '{where}', {_js(raw)}", where)
    _check_keys(
        raw, {"name": "name", "args": "args", "env": "env", "clearArgs": "clear_args"}, where
    )
    name = _str(raw.get("name", "") or "", f"{where}.name")
    args_raw = raw.get("args") or []
    if not isinstance(args_raw, list):
        raise ApiError.invalid(f"Invalid value at '{where}.args', {_js(args_raw)}", f"{where}.args")
    args = tuple(_str(a, f"{where}.args[{i}]") for i, a in enumerate(args_raw))
    clear_args = _bool(_get(raw, "clearArgs", "clear_args", False), f"{where}.clear_args")
    env_raw = raw.get("env") or []
    if not isinstance(env_raw, list):
        raise ApiError.invalid(f"Invalid value at '{where}.env', {_js(env_raw)}", f"{where}.env")
    env: dict[str, str | SecretKeyRef] = {}
    for i, item in enumerate(env_raw):
        at = f"{where}.env[{i}]"
        if not isinstance(item, Mapping):
            raise ApiError.invalid(f"Invalid value at '{at}', {_js(item)}", at)
        _check_keys(item, {"name": "name", "value": "value", "valueSource": "value_source"}, at)
        env_name = item.get("name", "")
        problem = env_name_problem(env_name)
        if problem:
            raise ApiError.invalid(f"{at}.name: {problem}", f"{at}.name")
        source = _get(item, "valueSource", "value_source")
        value: str | SecretKeyRef
        if source is not None:
            if item.get("value"):
                raise ApiError.invalid(
                    f"{at}: set either value or value_source, not both", f"{at}.value_source"
                )
            value = _parse_value_source(source, f"{at}.value_source")
        else:
            value = _str(item.get("value", "") or "", f"{at}.value")
            problem = env_value_problem(env_name, value)
            if problem:
                raise ApiError.invalid(f"{at}.value: {problem}", f"{at}.value")
        env.pop(env_name, None)
        env[env_name] = value
    return ContainerOverride(name=name, args=args, env=tuple(env.items()), clear_args=clear_args)


def _parse_value_source(raw: Any, where: str) -> SecretKeyRef:
    if not isinstance(raw, Mapping):
        raise ApiError.invalid(f"Invalid value at '{where}', {_js(raw)}", where)
    _check_keys(raw, {"secretKeyRef": "secret_key_ref"}, where)
    ref = _get(raw, "secretKeyRef", "secret_key_ref")
    at = f"{where}.secret_key_ref"
    if not isinstance(ref, Mapping):
        raise ApiError.invalid(f"Invalid value at '{at}', {_js(ref)}", at)
    _check_keys(ref, {"secret": "secret", "version": "version"}, at)
    secret = _str(ref.get("secret", "") or "", f"{at}.secret")
    if not SECRET_NAME.match(secret):
        raise ApiError.invalid(
            f"{at}.secret: '{secret}' is not a secret name: use the secret id, or"
            " projects/{project}/secrets/{secret} for another project's",
            f"{at}.secret",
        )
    # An empty version is "latest", as the API documents.
    version = _str(ref.get("version", "") or "", f"{at}.version") or "latest"
    return SecretKeyRef(secret, version)


SECRET_NAME = re.compile(r"^(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}$")


def resolve_secret(ref: SecretKeyRef, project: str, secrets: Mapping[str, str], where: str) -> str:
    """The value of ``ref`` for a job in ``project``, from the emulator's secrets file: keyed by
    the secret id (the job's project) or by projects/P/secrets/S. An unknown secret is the error
    Cloud Run gives for it; every version of a known secret has its one value."""
    full = ref.secret if "/" in ref.secret else f"projects/{project}/secrets/{ref.secret}"
    _, owner, _, short = full.split("/")
    for key in (full, short) if owner == project else (full,):
        if key in secrets:
            return secrets[key]
    raise ApiError.invalid(
        f"{where}: Secret {full}/versions/{ref.version} was not found",
        where,
    )


def apply_overrides(
    job: JobSpec, overrides: RunOverrides, secrets: Mapping[str, str] | None = None
) -> EffectiveRun:
    """The effective run of ``job`` with ``overrides``; ``ApiError`` if they do not fit the job.

    ``secrets`` (name -> value, the emulator's ``--secrets`` file) resolves the env vars that
    reference Secret Manager; the task gets the value, the execution resource the reference."""
    args = job.args
    env = dict(job.env)
    secret_refs: dict[str, SecretKeyRef] = {}
    container = overrides.container
    if container is not None:
        if container.name and container.name != job.container_name:
            known = f"'{job.container_name}'" if job.container_name else "an unnamed container"
            raise ApiError.invalid(
                f"overrides.container_overrides[0].name: container '{container.name}' does not"
                f" exist in job '{job.name}' (it has {known}; leave the name empty to override it)",
                "overrides.container_overrides[0].name",
            )
        if container.args:
            args = container.args
        elif container.clear_args:
            args = ()
        for i, (k, v) in enumerate(container.env):
            if isinstance(v, SecretKeyRef):
                where = f"overrides.container_overrides[0].env[{i}].value_source.secret_key_ref"
                secret_refs[k] = v
                v = resolve_secret(v, job.project, secrets or {}, where)
            env[k] = v  # keeps the job's order for names it already had
    return EffectiveRun(
        command=job.command,
        args=tuple(args),
        env=tuple(env.items()),
        task_count=overrides.task_count or job.task_count,
        parallelism=job.parallelism,
        timeout=overrides.timeout if overrides.timeout is not None else job.timeout,
        max_retries=job.max_retries,
        working_dir=job.working_dir,
        secret_refs=tuple(secret_refs.items()),
    )
