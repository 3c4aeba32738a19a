"""The `run_v2.RunJobRequest` of a `RunRequest`, built from the REST body `triggers plan` shows.

The body (`RunRequest.run_job_body()`) is the one source of truth, so what is shown and what is
sent cannot drift apart. It used to be parsed with `RunJobRequest.from_json`, protobuf's generic
JSON parser, ~60 µs a request on the served path; the body only ever has the shape
`Overrides.to_rest` writes, so that shape is mapped onto raw protobuf constructors (~10 µs) and
anything else still goes through the parser, which refuses an unknown or mistyped field.
tests/unit/test_run_job_request.py holds the two to the same message on generated requests.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import PermanentRunError
from ..plan import RunRequest

_SECONDS = re.compile(r"[0-9]{1,12}s")  # what Overrides.to_rest writes: "600s"
_MAX_DURATION_SECONDS = 315_576_000_000  # protobuf's Duration range (10,000 years)
_CONTAINER_KEYS = frozenset({"name", "args", "env", "clearArgs"})
_OVERRIDES_KEYS = frozenset({"containerOverrides", "taskCount", "timeout"})


def build_run_job_request(request: RunRequest, *, validate_only: bool = False) -> Any:
    """The `run_v2.RunJobRequest` for ``request``: exactly `RunRequest.run_job_body()`.

    Raises PermanentRunError for a body the API's schema refuses: that request can never be
    sent, however often it is retried.
    """
    from google.cloud import run_v2

    body: dict[str, Any] = {"name": request.job, **request.run_job_body()}
    if validate_only:
        body["validateOnly"] = True
    try:
        raw = _constructed(body, run_v2)
    except (ValueError, TypeError):  # a value a constructor refuses: the parser says why
        raw = None
    if raw is not None:
        return run_v2.RunJobRequest.wrap(raw)
    return parse_run_job_request(body)


def parse_run_job_request(body: dict[str, Any]) -> Any:
    """`body` through protobuf's JSON parser (any field of the API's schema, strictly)."""
    from google.cloud import run_v2
    from google.protobuf import json_format

    try:
        return run_v2.RunJobRequest.from_json(json.dumps(body))
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise PermanentRunError(
            f"cannot build the jobs.run request for {body.get('name')}: {exc}"
        ) from exc


def _constructed(body: dict[str, Any], run_v2: Any) -> Any:
    """The raw protobuf for a body of `Overrides.to_rest`'s shape; None for any other."""
    overrides = body.get("overrides")
    if set(body) - {"name", "overrides", "validateOnly"} or not isinstance(overrides, dict):
        return None
    if set(overrides) - _OVERRIDES_KEYS or not isinstance(body["name"], str):
        return None
    fields: dict[str, Any] = {}
    if "containerOverrides" in overrides:
        containers = overrides["containerOverrides"]
        if not isinstance(containers, list):
            return None
        built = [_container(c, run_v2) for c in containers]
        if None in built:
            return None
        fields["container_overrides"] = built
    if "taskCount" in overrides:
        count = overrides["taskCount"]
        if type(count) is not int or not 0 <= count < 2**31:
            return None
        fields["task_count"] = count
    if "timeout" in overrides:
        timeout = overrides["timeout"]
        if not isinstance(timeout, str) or not _SECONDS.fullmatch(timeout):
            return None
        if int(timeout[:-1]) > _MAX_DURATION_SECONDS:
            return None
        from google.protobuf import duration_pb2

        fields["timeout"] = duration_pb2.Duration(seconds=int(timeout[:-1]))
    validate = body.get("validateOnly", False)
    if type(validate) is not bool:
        return None
    return run_v2.RunJobRequest.pb()(
        name=body["name"],
        overrides=run_v2.RunJobRequest.Overrides.pb()(**fields),
        validate_only=validate,
    )


def _container(container: Any, run_v2: Any) -> Any:
    if not isinstance(container, dict) or set(container) - _CONTAINER_KEYS:
        return None
    name = container.get("name", "")
    args = container.get("args", [])
    clear = container.get("clearArgs", False)
    if not isinstance(name, str) or type(clear) is not bool or not _strings(args):
        return None
    if not isinstance(container.get("env", []), list):
        return None
    env = []
    for var in container.get("env", []):
        built = _env_var(var, run_v2)
        if built is None:
            return None
        env.append(built)
    return run_v2.RunJobRequest.Overrides.ContainerOverride.pb()(
        name=name, args=args, env=env, clear_args=clear
    )


def _env_var(var: Any, run_v2: Any) -> Any:
    if not isinstance(var, dict) or not isinstance(var.get("name"), str):
        return None
    EnvVar = run_v2.EnvVar.pb()
    if set(var) == {"name", "value"} and isinstance(var["value"], str):
        return EnvVar(name=var["name"], value=var["value"])
    source = var.get("valueSource")
    if set(var) != {"name", "valueSource"} or not isinstance(source, dict):
        return None
    ref = source.get("secretKeyRef")
    if set(source) != {"secretKeyRef"} or not isinstance(ref, dict):
        return None
    if set(ref) - {"secret", "version"} or not _strings(list(ref.values())):
        return None
    return EnvVar(
        name=var["name"],
        value_source=run_v2.EnvVarSource.pb()(secret_key_ref=run_v2.SecretKeySelector.pb()(**ref)),
    )


def _strings(values: Any) -> bool:
    return isinstance(values, list) and all(type(v) is str for v in values)
