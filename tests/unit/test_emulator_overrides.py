"""jobs.run bodies: parsing, validation, override semantics (pure)."""

from __future__ import annotations

import json

import pytest
from google.cloud import run_v2
from google.protobuf import json_format

from triggers.emulators.cloudrun.jobs import JobSpec
from triggers.emulators.cloudrun.overrides import (
    ContainerOverride,
    RunOverrides,
    apply_overrides,
    parse_proto_duration,
    parse_run_body,
)
from triggers.emulators.rpc import ApiError

JOB = JobSpec(
    project="demo-project",
    region="europe-west1",
    name="job",
    command=("python", "job.py"),
    args=("--a", "--b"),
    env=(("KEEP", "1"), ("SHARED", "job")),
    task_count=2,
    parallelism=1,
    timeout=600.0,
    max_retries=3,
)


def body_from_client(**overrides) -> dict:
    """The JSON body exactly as the google-cloud-run REST transport serialises it."""
    request = run_v2.RunJobRequest(name="x", **overrides)
    data = json.loads(
        json_format.MessageToJson(run_v2.RunJobRequest.pb(request), use_integers_for_enums=True)
    )
    data.pop("name")
    return data


def test_client_serialised_body_round_trips():
    body = body_from_client(
        validate_only=True,
        etag="e1",
        overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    args=["x"], env=[run_v2.EnvVar(name="K", value="v")], clear_args=True
                )
            ],
            task_count=7,
            timeout="90s",
        ),
    )
    assert body["overrides"]["containerOverrides"][0]["clearArgs"] is True  # camelCase on the wire
    request = parse_run_body(body)
    assert request.validate_only and request.etag == "e1"
    assert request.overrides == RunOverrides(
        ContainerOverride(name="", args=("x",), env=(("K", "v"),), clear_args=True),
        task_count=7,
        timeout=90.0,
    )


def test_proto_field_names_are_accepted_too():
    request = parse_run_body(
        {
            "validate_only": True,
            "overrides": {"task_count": "3", "container_overrides": [{"clear_args": True}]},
        }
    )
    assert request.validate_only and request.overrides.task_count == 3
    assert request.overrides.container.clear_args


def test_empty_and_zero_values_mean_not_set():
    assert parse_run_body(None).overrides.empty
    assert parse_run_body({}).overrides.empty
    assert parse_run_body({"overrides": {"taskCount": 0}}).overrides.task_count is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"overrides": {"taskCount": 10001}}, "between 1 and 10000"),
        ({"overrides": {"taskCount": -1}}, "between 1 and 10000"),
        ({"overrides": {"taskCount": "many"}}, "TYPE_INT32"),
        ({"overrides": {"timeout": "10m"}}, "Illegal duration"),
        ({"overrides": {"timeout": 600}}, "Duration"),
        ({"overrides": {"timeout": "0s"}}, "more than 0s"),
        ({"overrides": {"timeout": "604801s"}}, "at most"),
        ({"overrides": {"containerOverrides": [{}, {}]}}, "at most one container override"),
        (
            {"overrides": {"containerOverrides": [{"env": [{"name": "", "value": "x"}]}]}},
            "non-empty",
        ),
        ({"overrides": {"containerOverrides": [{"env": [{"name": "A=B"}]}]}}, "'='"),
        (
            {"overrides": {"containerOverrides": [{"env": [{"name": "9A"}]}]}},
            "do not start with a digit",
        ),
        (
            {"overrides": {"containerOverrides": [{"env": [{"name": "CLOUD_RUN_TASK_COUNT"}]}]}},
            "reserved",
        ),
        ({"overrides": {"containerOverrides": [{"env": [{"name": "X_GOOGLE_A"}]}]}}, "reserved"),
        (
            {"overrides": {"containerOverrides": [{"env": [{"name": "A", "value": "x" * 40000}]}]}},
            "32 KiB",
        ),
        (
            {"overrides": {"containerOverrides": [{"env": [{"name": "A", "valueSource": {}}]}]}},
            "secret",
        ),
        ({"overrides": {"containerOverrides": [{"args": "not-a-list"}]}}, "args"),
        ({"overrides": {"containerOverrides": [{"clearArgs": "yes"}]}}, "TYPE_BOOL"),
        ({"overrides": {"labels": {}}}, 'Unknown name "labels"'),
        ({"overrides": {"containerOverrides": [{"image": "x"}]}}, 'Unknown name "image"'),
        ({"parallelism": 3}, 'Unknown name "parallelism"'),
        ([1, 2], "Expected an object"),
    ],
)
def test_invalid_bodies_are_invalid_argument(body, fragment):
    with pytest.raises(ApiError) as info:
        parse_run_body(body)
    assert info.value.http_status == 400 and info.value.status == "INVALID_ARGUMENT"
    assert fragment in info.value.message


def test_args_replace_and_env_merges_over_the_job():
    run = apply_overrides(
        JOB,
        RunOverrides(ContainerOverride(args=("--x",), env=(("SHARED", "ov"), ("NEW", "n")))),
    )
    assert run.args == ("--x",)
    assert run.env == (("KEEP", "1"), ("SHARED", "ov"), ("NEW", "n"))
    assert (run.task_count, run.timeout, run.parallelism, run.max_retries) == (2, 600.0, 1, 3)


def test_clear_args_and_no_args():
    assert apply_overrides(JOB, RunOverrides(ContainerOverride(clear_args=True))).args == ()
    assert apply_overrides(JOB, RunOverrides(ContainerOverride(env=(("A", "b"),)))).args == (
        "--a",
        "--b",
    )
    # given args win over clearArgs
    assert apply_overrides(
        JOB, RunOverrides(ContainerOverride(args=("--c",), clear_args=True))
    ).args == ("--c",)


def test_task_count_and_timeout_replace():
    run = apply_overrides(JOB, RunOverrides(task_count=9, timeout=1.5))
    assert (run.task_count, run.timeout) == (9, 1.5)
    assert apply_overrides(JOB, RunOverrides()).env == JOB.env


def test_container_name_must_match_the_job_container():
    with pytest.raises(ApiError, match="does not exist"):
        apply_overrides(JOB, RunOverrides(ContainerOverride(name="other")))
    named = JobSpec(**{**{f: getattr(JOB, f) for f in JobSpec.__slots__}, "container_name": "main"})
    assert apply_overrides(
        named, RunOverrides(ContainerOverride(name="main", args=("y",)))
    ).args == ("y",)
    assert apply_overrides(named, RunOverrides(ContainerOverride(args=("y",)))).args == ("y",)


@pytest.mark.parametrize(
    ("text", "seconds"), [("600s", 600), ("1.5s", 1.5), ("0.000000001s", 1e-9), ("-2s", -2)]
)
def test_proto_duration(text, seconds):
    assert parse_proto_duration(text, "f") == pytest.approx(seconds)
