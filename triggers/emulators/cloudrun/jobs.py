"""Local job definitions for the Cloud Run Jobs emulator: the YAML jobs file, its model, loading.

A jobs file declares, for each job the emulator serves, the local command that stands in for the
container image, plus what a Cloud Run job template carries (args, env, task count, parallelism,
task timeout, max retries)::

    project: demo-project              # default for every job; ${VAR} / ${VAR:-default} allowed
    region: europe-west1
    jobs:
      - name: csv-loader
        command: ["{python}", "{here}/jobs/echo_job.py"]
        args: ["--mode=csv"]
        env: {LOG_LEVEL: info}
        task_count: 1
        parallelism: 0                 # 0 = all tasks at once
        timeout: 10m                   # per task attempt
        max_retries: 3

``{python}`` is replaced by the emulator's own interpreter and ``{here}`` by the directory of the
jobs file, in ``command``, ``args``, ``env`` values and ``working_dir``. A file that is wrong
fails at load with ``file:line: job 'x': what is wrong`` for every problem found.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from triggers.errors import TriggersError

from .limits import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_RETRIES,
    MAX_TASK_COUNT,
    MAX_TIMEOUT_SECONDS,
    env_name_problem,
    env_value_problem,
    parse_duration,
)

#: Variables of the emulator's own environment that task processes inherit by default. Anything
#: else (credentials, the test runner's variables, ...) stays out, as it would in a container.
DEFAULT_INHERIT_ENV: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "COMSPEC",
    "PATHEXT",
    "WINDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)

_JOB_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,20}$")
_REGION = re.compile(r"^[a-z][a-z0-9-]*[0-9a-z]$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class JobsFileError(TriggersError, ValueError):
    """A jobs file is invalid; ``problems`` lists every ``file:line: job 'x': message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the jobs file:\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job the emulator serves: a Cloud Run job whose container is a local command."""

    project: str
    region: str
    name: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    task_count: int = 1
    parallelism: int = 0
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES
    working_dir: str = "."
    image: str = ""
    container_name: str = ""
    source: str = ""  # file:line where the job is defined

    @property
    def full_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/jobs/{self.name}"

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True, slots=True)
class JobCatalog:
    """Every job of one jobs file, by full resource name."""

    jobs: Mapping[str, JobSpec]
    inherit_env: tuple[str, ...] = DEFAULT_INHERIT_ENV
    path: str = ""

    def get(self, full_name: str) -> JobSpec | None:
        return self.jobs.get(full_name)

    def in_location(self, project: str, region: str) -> list[JobSpec]:
        return sorted(
            (j for j in self.jobs.values() if j.project == project and j.region == region),
            key=lambda j: j.name,
        )

    def __iter__(self):
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)


# ----------------------------------------------------------------------------- loading

_JOB_KEYS = {
    "name",
    "project",
    "region",
    "command",
    "args",
    "env",
    "task_count",
    "parallelism",
    "timeout",
    "max_retries",
    "working_dir",
    "image",
    "container_name",
    "description",
}
_TOP_KEYS = {"project", "region", "jobs", "inherit_env"}


class _Collector:
    def __init__(self, file: str) -> None:
        self.file = file
        self._found: list[tuple[int, str]] = []

    def add(self, line: int | None, job: str | None, message: str) -> None:
        where = f"{self.file}:{line}" if line is not None else self.file
        who = f" job '{job}':" if job else ""
        self._found.append((line or 0, f"{where}:{who} {message}"))

    @property
    def problems(self) -> list[str]:
        """In file order (a stable sort keeps the order of problems on one line)."""
        return [text for _, text in sorted(self._found, key=lambda item: item[0])]


def _line(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node[key]`` (or of ``node``) in a ruamel round-trip document."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None and key in lc.data:
            return lc.data[key][0] + 1
        return lc.line + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def _expand_env_refs(text: str, environ: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable ${{{name}}} is not set (use ${{{name}:-default}})")

    return _ENV_REF.sub(sub, text)


def _placeholders(text: str, here: Path) -> str:
    return text.replace("{python}", sys.executable).replace("{here}", str(here))


def _scalar_str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None


def load_jobs(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> JobCatalog:
    """Load and validate a jobs file; raise ``JobsFileError`` listing every problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    file = os.fspath(path)
    environ = os.environ if environ is None else environ
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise JobsFileError([f"{file}: cannot read the jobs file: {exc.strerror or exc}"]) from exc
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobsFileError([f"{file}{line}: invalid YAML: {problem}"]) from exc
    return parse_jobs(doc, file=file, here=Path(file).resolve().parent, environ=environ)


def parse_jobs(
    doc: Any,
    *,
    file: str = "<jobs>",
    here: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobCatalog:
    """Validate an already-parsed jobs document (a mapping) into a ``JobCatalog``."""
    here = here if here is not None else Path.cwd()
    environ = os.environ if environ is None else environ
    out = _Collector(file)
    if not isinstance(doc, Mapping):
        out.add(_line(doc), None, "the jobs file must be a mapping with a 'jobs' list")
        raise JobsFileError(out.problems)
    for key in doc:
        if key not in _TOP_KEYS:
            out.add(
                _line(doc, key),
                None,
                f"unknown top-level key {key!r} (allowed: {', '.join(sorted(_TOP_KEYS))})",
            )

    defaults: dict[str, str | None] = {}
    for key in ("project", "region"):
        raw = doc.get(key)
        if raw is None:
            defaults[key] = None
            continue
        if not isinstance(raw, str):
            out.add(_line(doc, key), None, f"{key}: must be a string")
            defaults[key] = None
            continue
        try:
            defaults[key] = _expand_env_refs(raw, environ)
        except ValueError as exc:
            out.add(_line(doc, key), None, f"{key}: {exc}")
            defaults[key] = None

    inherit = DEFAULT_INHERIT_ENV
    if "inherit_env" in doc:
        raw = doc["inherit_env"]
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            out.add(
                _line(doc, "inherit_env"),
                None,
                "inherit_env: must be a list of variable names (globs allowed)",
            )
        else:
            inherit = tuple(raw)

    jobs_raw = doc.get("jobs")
    jobs: dict[str, JobSpec] = {}
    if jobs_raw is None:
        out.add(_line(doc), None, "missing 'jobs': a list of job definitions")
    elif not isinstance(jobs_raw, list):
        out.add(_line(doc, "jobs"), None, "jobs: must be a list of job definitions")
    else:
        for index, item in enumerate(jobs_raw):
            spec = _parse_job(item, index, jobs_raw, defaults, here, environ, out)
            if spec is None:
                continue
            if spec.full_name in jobs:
                out.add(
                    _line(jobs_raw, index),
                    spec.name,
                    f"duplicate job {spec.full_name} (first at {jobs[spec.full_name].source})",
                )
                continue
            jobs[spec.full_name] = spec
    if out.problems:
        raise JobsFileError(out.problems)
    return JobCatalog(jobs=jobs, inherit_env=inherit, path=file)


def _parse_job(
    item: Any,
    index: int,
    parent: Any,
    defaults: Mapping[str, str | None],
    here: Path,
    environ: Mapping[str, str],
    out: _Collector,
) -> JobSpec | None:
    line0 = _line(parent, index)
    if not isinstance(item, Mapping):
        out.add(line0, None, f"jobs[{index}]: must be a mapping with at least 'name' and 'command'")
        return None
    name = item.get("name")
    who = name if isinstance(name, str) and name else f"#{index + 1}"
    before = len(out.problems)

    def bad(key: str, message: str) -> None:
        out.add(_line(item, key) or line0, who, f"{key}: {message}" if key else message)

    for key in item:
        if key not in _JOB_KEYS:
            bad(key, f"unknown key (allowed: {', '.join(sorted(_JOB_KEYS))})")

    if not isinstance(name, str) or not name:
        out.add(line0, who, "name: required, a string")
    elif not _JOB_NAME.match(name):
        bad(
            "name",
            f"{name!r} is not a valid Cloud Run job name (lowercase letters, digits and '-',"
            " starting with a letter, at most 63 characters)",
        )

    where: dict[str, str] = {}
    for key in ("project", "region"):
        raw = item.get(key, defaults.get(key))
        if raw is None:
            bad(key, "required here or at the top of the file")
            continue
        if not isinstance(raw, str):
            bad(key, "must be a string")
            continue
        try:
            value = _expand_env_refs(raw, environ)
        except ValueError as exc:
            bad(key, str(exc))
            continue
        pattern = _PROJECT if key == "project" else _REGION
        if not pattern.match(value):
            bad(key, f"{value!r} is not a valid {'project id' if key == 'project' else 'region'}")
            continue
        where[key] = value

    def str_list(key: str, required: bool) -> tuple[str, ...]:
        raw = item.get(key)
        if raw is None:
            if required:
                bad(key, 'required: a non-empty list of strings, e.g. ["{python}", "job.py"]')
            return ()
        if not isinstance(raw, list):
            bad(key, "must be a list of strings")
            return ()
        values = []
        for i, v in enumerate(raw):
            s = _scalar_str(v)
            if s is None:
                bad(key, f"item {i} must be a string, not {type(v).__name__}")
                continue
            values.append(_placeholders(s, here))
        if required and not values and not raw:
            bad(key, "must not be empty")
        return tuple(values)

    command = str_list("command", True)
    args = str_list("args", False)

    env: list[tuple[str, str]] = []
    raw_env = item.get("env")
    if raw_env is not None:
        if not isinstance(raw_env, Mapping):
            bad("env", "must be a mapping of NAME: value")
        else:
            for k, v in raw_env.items():
                problem = env_name_problem(k)
                env_value = _scalar_str(v)
                if problem:
                    out.add(_line(raw_env, k) or line0, who, f"env: {problem}")
                elif env_value is None:
                    out.add(
                        _line(raw_env, k) or line0,
                        who,
                        f"env: {k}: value must be a string or a number (quote booleans)",
                    )
                else:
                    value = _placeholders(env_value, here)
                    vp = env_value_problem(k, value)
                    if vp:
                        out.add(_line(raw_env, k) or line0, who, f"env: {vp}")
                    else:
                        env.append((k, value))

    def int_field(key: str, default: int, low: int, high: int | None) -> int:
        raw = item.get(key, default)
        if isinstance(raw, bool) or not isinstance(raw, int):
            bad(key, f"must be an integer, not {raw!r}")
            return default
        if raw < low or (high is not None and raw > high):
            bad(
                key,
                f"must be between {low} and {high}"
                if high is not None
                else f"must be at least {low}",
            )
            return default
        return raw

    task_count = int_field("task_count", 1, 1, MAX_TASK_COUNT)
    parallelism = int_field("parallelism", 0, 0, None)
    max_retries = int_field("max_retries", DEFAULT_MAX_RETRIES, 0, MAX_RETRIES)

    timeout = DEFAULT_TIMEOUT_SECONDS
    if "timeout" in item:
        try:
            timeout = parse_duration(item["timeout"])
            if timeout <= 0 or timeout > MAX_TIMEOUT_SECONDS:
                bad("timeout", "must be more than 0s and at most 168h")
                timeout = DEFAULT_TIMEOUT_SECONDS
        except ValueError as exc:
            bad("timeout", str(exc))

    working_dir = str(here)
    if item.get("working_dir") is not None:
        raw = item["working_dir"]
        if not isinstance(raw, str) or not raw:
            bad("working_dir", "must be a non-empty string")
        else:
            wd = Path(_placeholders(raw, here))
            working_dir = str(wd if wd.is_absolute() else (here / wd))

    image = item.get("image")
    if image is not None and not isinstance(image, str):
        bad("image", "must be a string")
    container_name = item.get("container_name")
    if container_name is not None and (
        not isinstance(container_name, str) or not _JOB_NAME.match(container_name or "-")
    ):
        bad("container_name", "must be a lowercase DNS label")
    if len(out.problems) != before or "project" not in where or "region" not in where:
        return None
    name = cast(str, name)  # else a problem was added above
    return JobSpec(
        project=where["project"],
        region=where["region"],
        name=name,
        command=command,
        args=args,
        env=tuple(env),
        task_count=task_count,
        parallelism=parallelism,
        timeout=timeout,
        max_retries=max_retries,
        working_dir=working_dir,
        image=image or f"local/{name}",
        container_name=container_name or "",
        source=f"{out.file}:{line0}" if line0 else out.file,
    )


def inherited_environ(
    patterns: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The part of ``environ`` whose names match one of ``patterns`` (fnmatch globs)."""
    from fnmatch import fnmatchcase

    environ = os.environ if environ is None else environ
    pats = list(patterns)
    return {k: v for k, v in environ.items() if any(fnmatchcase(k, p) for p in pats)}
