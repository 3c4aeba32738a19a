"""The RunJobRequest is built by constructors, and is what protobuf's JSON parser would make.

`build_run_job_request` maps the shape `Overrides.to_rest` writes onto raw protobuf
constructors and leaves any other body to `RunJobRequest.from_json`
(triggers/runners/_run_job_request.py). These tests hold the two paths to the same message on
generated requests, secret-sourced env included, and check that what only the parser can judge
still gets its verdict.
"""

from __future__ import annotations

import pytest
from google.cloud import run_v2
from hypothesis import given
from hypothesis import strategies as st

from triggers.errors import PermanentRunError
from triggers.events.model import EventRef
from triggers.plan import Overrides, RunRequest, SecretRef
from triggers.runners import _run_job_request
from triggers.runners._run_job_request import build_run_job_request, parse_run_job_request

JOB = "projects/demo-project/locations/europe-west1/jobs/csv-loader"

_text = st.text(max_size=12)  # any code point, lone surrogates included
_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True)
_overrides = st.builds(
    Overrides,
    container=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    args=st.none() | st.lists(_text, max_size=4).map(tuple),
    clear_args=st.booleans(),
    env=st.lists(st.tuples(_names, _text), max_size=4).map(tuple),
    task_count=st.none() | st.integers(0, 2**31 + 5),
    timeout_seconds=st.none() | st.integers(0, 400_000_000_000),
    secret_env=st.lists(
        st.tuples(
            _names,
            st.builds(SecretRef, secret=_text, version=st.sampled_from(["latest", "3", ""])),
        ),
        max_size=2,
    ).map(tuple),
)


def make_request(overrides: Overrides) -> RunRequest:
    return RunRequest(
        rule="rule",
        job=JOB,
        overrides=overrides,
        dedup_key="a/b#1",
        dedup_window_seconds=3600,
        event=EventRef(id="1", source="//test", type="t"),
    )


def parsed(request: RunRequest, validate_only: bool) -> run_v2.RunJobRequest:
    body = {"name": request.job, **request.run_job_body()}
    if validate_only:
        body["validateOnly"] = True
    return parse_run_job_request(body)


@given(_overrides, st.booleans())
def test_the_built_request_is_the_parsed_one(overrides, validate_only):
    # GIVEN any request triggers can plan, odd text and out-of-range numbers included
    request = make_request(overrides)
    # WHEN it is built, and when its REST body goes through protobuf's JSON parser
    try:
        expected = parsed(request, validate_only)
    except PermanentRunError as refused:
        # THEN a body the parser refuses is refused by the builder too, with the same words
        with pytest.raises(PermanentRunError) as built:
            build_run_job_request(request, validate_only=validate_only)
        assert str(built.value) == str(refused)
        return
    built = build_run_job_request(request, validate_only=validate_only)
    # THEN the two are one message
    assert run_v2.RunJobRequest.pb(built) == run_v2.RunJobRequest.pb(expected)


def test_the_planned_shape_is_constructed_not_parsed(monkeypatch):
    # GIVEN the parser made unusable
    def no_parser(body):
        raise AssertionError("parsed")

    monkeypatch.setattr(_run_job_request, "parse_run_job_request", no_parser)
    request = make_request(
        Overrides(
            container="worker",
            args=("--in=gs://b/o",),
            env=(("A", "1"),),
            secret_env=(("TOKEN", SecretRef("api-token")),),
            task_count=3,
            timeout_seconds=600,
        )
    )
    # WHEN a planned request is built THEN it never reaches the parser
    built = build_run_job_request(request)
    assert built.overrides.timeout.total_seconds() == 600
    assert built.overrides.container_overrides[0].env[1].value_source.secret_key_ref.secret == (
        "api-token"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"containerOverrides": [{"args": ["x"], "workingDir": "/tmp"}]},  # a field not mapped
        {"taskCount": "3"},  # the parser accepts numbers as strings
        {"timeout": "1.5s"},
        {"containerOverrides": [{"env": [{"name": "A", "value": 3}]}]},
    ],
)
def test_any_other_body_is_left_to_the_parser(overrides):
    body = {"name": JOB, "overrides": overrides}
    assert _run_job_request._constructed(body, run_v2) is None


def test_a_field_the_api_does_not_have_is_permanent():
    with pytest.raises(PermanentRunError, match="cannot build the jobs.run request"):
        parse_run_job_request({"name": JOB, "overrides": {"parallelism": 2}})


def test_a_value_a_constructor_refuses_is_left_to_the_parser(monkeypatch):
    # GIVEN constructors that refuse the request (as protobuf does some text)
    def refuse(body, run_v2):
        raise ValueError("refused by a constructor")

    monkeypatch.setattr(_run_job_request, "_constructed", refuse)
    request = make_request(Overrides(args=("--x",)))
    # WHEN it is built THEN the parser builds it, the same message as ever
    built = build_run_job_request(request)
    assert run_v2.RunJobRequest.pb(built) == run_v2.RunJobRequest.pb(parsed(request, False))
