"""The emulator's jobs file: model, defaults, placeholders and error messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from triggers.emulators.cloudrun.jobs import (
    DEFAULT_INHERIT_ENV,
    JobsFileError,
    inherited_environ,
    load_jobs,
)
from triggers.emulators.cloudrun.limits import format_duration, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(JobsFileError) as info:
        load_jobs(path, environ={})
    return [p.removeprefix(str(path)) for p in info.value.problems]


def test_defaults_and_placeholders(tmp_path):
    path = write(
        tmp_path,
        "project: p-project\nregion: europe-west1\njobs:\n"
        "  - name: a\n    command: ['{python}', '{here}/a.py']\n",
    )
    [job] = load_jobs(path, environ={})
    assert job.full_name == "projects/p-project/locations/europe-west1/jobs/a"
    assert job.command == (sys.executable, f"{tmp_path.resolve()}/a.py")
    assert (job.args, job.env, job.task_count, job.parallelism) == ((), (), 1, 0)
    assert (job.timeout, job.max_retries) == (600.0, 3)
    assert job.working_dir == str(tmp_path.resolve())
    assert job.source == f"{path}:4"


def test_every_field(tmp_path):
    path = write(
        tmp_path,
        """\
project: top-project
region: europe-west1
inherit_env: [PATH, "LC_*"]
jobs:
  - name: b
    project: other-project
    region: us-central1
    command: [run]
    args: [--n, 5]
    env: {A: "1", B: 2, C: "{here}"}
    task_count: 8
    parallelism: 3
    timeout: 1h30m
    max_retries: 0
    working_dir: sub
    image: eu.gcr.io/x/y
    container_name: worker
""",
    )
    catalog = load_jobs(path, environ={})
    job = catalog.get("projects/other-project/locations/us-central1/jobs/b")
    assert job is not None
    assert job.args == ("--n", "5")
    assert job.env == (("A", "1"), ("B", "2"), ("C", str(tmp_path.resolve())))
    assert (job.task_count, job.parallelism, job.timeout, job.max_retries) == (8, 3, 5400.0, 0)
    assert job.working_dir == str(tmp_path.resolve() / "sub")
    assert (job.image, job.container_name) == ("eu.gcr.io/x/y", "worker")
    assert catalog.inherit_env == ("PATH", "LC_*")
    assert catalog.in_location("other-project", "us-central1") == [job]
    assert catalog.in_location("top-project", "europe-west1") == []


def test_env_references_in_project(tmp_path):
    path = write(
        tmp_path,
        "project: ${P:-fallback-project}\nregion: europe-west1\njobs:\n  - {name: a, command: [x]}\n",
    )
    assert next(iter(load_jobs(path, environ={}))).project == "fallback-project"
    assert next(iter(load_jobs(path, environ={"P": "env-project"}))).project == "env-project"
    path = write(
        tmp_path, "project: ${P}\nregion: europe-west1\njobs:\n  - {name: a, command: [x]}\n"
    )
    with pytest.raises(JobsFileError, match=r"\$\{P\} is not set"):
        load_jobs(path, environ={})


def test_every_problem_is_reported_with_file_line_and_job(tmp_path):
    found = problems(
        tmp_path,
        """\
project: demo-project
region: europe-west1
colour: blue
jobs:
  - name: ok
    command: [x]
  - name: Bad_Name
    command: [x]
  - name: c
    command: []
    task_count: 0
    parallelism: -1
    timeout: 10 minutes
    max_retries: 11
    env: {"1X": a, CLOUD_RUN_JOB: b, OK: [1]}
    surprise: true
  - name: ok
    command: [y]
  - just a string
""",
    )
    assert found == [
        ":3: unknown top-level key 'colour' (allowed: inherit_env, jobs, project, region)",
        ":7: job 'Bad_Name': name: 'Bad_Name' is not a valid Cloud Run job name (lowercase letters, digits and '-', starting with a letter, at most 63 characters)",
        ":10: job 'c': command: must not be empty",
        ":11: job 'c': task_count: must be between 1 and 10000",
        ":12: job 'c': parallelism: must be at least 0",
        ":13: job 'c': timeout: invalid duration '10 minutes' (use e.g. 600s, 10m, 1h30m)",
        ":14: job 'c': max_retries: must be between 0 and 10",
        ":15: job 'c': env: environment variable name '1X' is invalid: use letters, digits, '_', '-', '.' and do not start with a digit",
        ":15: job 'c': env: environment variable name 'CLOUD_RUN_JOB' is reserved by Cloud Run",
        ":15: job 'c': env: OK: value must be a string or a number (quote booleans)",
        ":16: job 'c': surprise: unknown key (allowed: args, command, container_name, description, env, image, max_retries, name, parallelism, project, region, task_count, timeout, working_dir)",
        ":17: job 'ok': duplicate job projects/demo-project/locations/europe-west1/jobs/ok (first at "
        + str(tmp_path / "jobs.yaml")
        + ":5)",
        ":19: jobs[4]: must be a mapping with at least 'name' and 'command'",
    ]


def test_missing_project_and_command(tmp_path):
    found = problems(tmp_path, "jobs:\n  - name: a\n")
    assert (
        ':2: job \'a\': command: required: a non-empty list of strings, e.g. ["{python}", "job.py"]'
        in found
    )
    assert ":2: job 'a': project: required here or at the top of the file" in found
    assert ":2: job 'a': region: required here or at the top of the file" in found


def test_invalid_yaml_and_missing_file(tmp_path):
    found = problems(tmp_path, "jobs:\n  - name: [unclosed\n")
    assert len(found) == 1 and found[0].startswith(":") and "invalid YAML" in found[0]
    with pytest.raises(JobsFileError, match="cannot read the jobs file"):
        load_jobs(tmp_path / "missing.yaml")
    assert problems(tmp_path, "- a\n- b\n") == [
        ":1: the jobs file must be a mapping with a 'jobs' list"
    ]


def test_the_shipped_jobs_file_is_valid():
    catalog = load_jobs(ROOT / "config" / "jobs.yaml")
    assert sorted(j.name for j in catalog) == [
        "compaction",  # config/rules.yaml hourly-compaction (limits.max_running)
        "csv-loader",
        "landing-loader",  # config/rules.yaml landing-batch (batch:)
        "nightly-report",
        "order-export",  # config/systems/cloudrun-v1.yaml
        "orders-processor",
    ]
    for job in catalog:
        assert (job.project, job.region) == ("demo-project", "europe-west1")
        assert job.command[0] == sys.executable and Path(job.command[1]).is_file()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("600s", 600),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("2d", 172800),
        (90, 90),
        ("45", 45),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "1h 30m", "-5s", "5s10", True, None, [1], -1])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "600s"), (0.5, "0.5s"), (1.25, "1.25s"), (0, "0s"), (1e-9, "0.000000001s")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_inherited_environ_globs():
    env = {"PATH": "/bin", "LC_ALL": "C", "SECRET": "x", "HOME": "/root"}
    assert inherited_environ(["PATH", "LC_*"], env) == {"PATH": "/bin", "LC_ALL": "C"}
    assert "SECRET" not in inherited_environ(DEFAULT_INHERIT_ENV, env)
