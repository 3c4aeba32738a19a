"""Env vars from Secret Manager: validated at load with file:line, rendered as the v2 API's
`valueSource.secretKeyRef`, refused at load by systems that cannot express them, kept through a
compiled artifact, and resolved by the emulator's secrets file (pure parts)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from triggers.emulators.cloudrun.jobs import JobsFileError, JobSpec
from triggers.emulators.cloudrun.overrides import apply_overrides, parse_run_body
from triggers.emulators.cloudrun.secrets import load_secrets
from triggers.emulators.rpc import ApiError
from triggers.errors import RulesError
from triggers.events import decode
from triggers.plan import RUN_KEY_ENV
from triggers.rules import load, load_text
from triggers.rules.compiled import compile_rules
from triggers.rules.schema import json_schema
from triggers.runners.systems import SYSTEMS

HEAD = """\
project: demo-project
region: europe-west1
rules:
  - name: a
    on: pubsub
    job: worker
    overrides:
      env:
"""


def _rules(env_lines: str, head: str = HEAD):
    return load_text(head + textwrap.indent(env_lines, " " * 8), name="rules.yaml", environ={})


def _problems(env_lines: str, head: str = HEAD) -> list[str]:
    with pytest.raises(RulesError) as info:
        _rules(env_lines, head)
    return [str(p) for p in info.value.problems]


def _event():
    body = {
        "message": {
            "data": "eyJuIjogN30=",
            "messageId": "1",
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": "projects/demo-project/subscriptions/s",
    }
    return decode({"Content-Type": "application/json"}, json.dumps(body).encode())


def _env_of(ruleset) -> list[dict]:
    (rule,) = ruleset.rules
    body = rule.plan(_event()).run_job_body()
    return body["overrides"]["containerOverrides"][0]["env"]


# -- rendering --------------------------------------------------------------------------------


def test_a_secret_becomes_the_env_var_s_value_source_in_the_jobs_run_body():
    env = _env_of(
        _rules(
            "PLAIN: '{{ data.message.json.n }}'\n"
            "API_TOKEN: {secret: api-token}\n"
            "DB_PASS: {secret: projects/shared-proj/secrets/db-pass, version: 3}\n"
        )
    )
    assert env == [
        {"name": "PLAIN", "value": "7"},
        {
            "name": "API_TOKEN",
            "valueSource": {"secretKeyRef": {"secret": "api-token", "version": "latest"}},
        },
        {
            "name": "DB_PASS",
            # `version: 3` in YAML is a number; the API's version id is a string
            "valueSource": {
                "secretKeyRef": {"secret": "projects/shared-proj/secrets/db-pass", "version": "3"}
            },
        },
        {"name": RUN_KEY_ENV, "value": env[-1]["value"]},
    ]


def test_the_rendered_body_is_a_request_the_real_client_accepts():
    from google.cloud import run_v2

    (rule,) = _rules("API_TOKEN: {secret: api-token, version: '2'}\n").rules
    request = rule.plan(_event())
    body = {"name": request.job, **request.run_job_body()}
    parsed = run_v2.RunJobRequest.from_json(json.dumps(body))
    [var] = [e for e in parsed.overrides.container_overrides[0].env if e.name == "API_TOKEN"]
    assert var.value_source.secret_key_ref.secret == "api-token"
    assert var.value_source.secret_key_ref.version == "2"


def test_a_secret_only_rule_has_no_template_to_render():
    (rule,) = _rules("API_TOKEN: {secret: api-token}\n").rules
    assert rule.env == ()  # nothing of the secret goes through the template engine


# -- load errors, with lines ----------------------------------------------------------------


def test_each_wrong_secret_reference_is_reported_at_its_own_line():
    problems = _problems(
        "OK: {secret: api-token}\n"
        "BAD_NAME: {secret: 'a/b'}\n"
        "BAD_VERSION: {secret: x, version: newest}\n"
        "TYPO: {secrt: x}\n"
        "ZERO: {secret: x, version: 0}\n"
    )
    assert problems == [
        "rules.yaml:10: rule 'a': overrides.env.BAD_NAME.secret: secret 'a/b' is not a secret id"
        " (letters, digits, '-' and '_', at most 255 characters) nor projects/P/secrets/S",
        "rules.yaml:11: rule 'a': overrides.env.BAD_VERSION.version: version 'newest' must be"
        " 'latest' or a version number (1, 2, ...)",
        "rules.yaml:12: rule 'a': overrides.env.TYPO.secret: required field is missing",
        "rules.yaml:12: rule 'a': overrides.env.TYPO: unknown field 'secrt' (did you mean 'secret'?)",
        "rules.yaml:13: rule 'a': overrides.env.ZERO.version: version '0' must be 'latest' or a"
        " version number (1, 2, ...)",
    ]


def test_a_secret_env_name_follows_the_same_reserved_name_rules():
    [problem] = _problems("K_SECRET: {secret: api-token}\n")
    assert problem.startswith(
        "rules.yaml:8: rule 'a': overrides.env: env name 'K_SECRET' is reserved"
    )


@pytest.mark.parametrize(
    ("system", "job"),
    [
        ("cloudrun-v1", "worker"),
        ("sae", "cn-hangzhou/ee1a7a07-abcb-4652-a1d3-2d57f4150000"),
        ("peloton", "worker"),
    ],
)
def test_a_system_without_secrets_refuses_them_at_the_env_line(system, job):
    head = HEAD.replace("    job: worker\n", f"    system: {system}\n    job: {job}\n")
    [problem] = _problems("PLAIN: x\nTOKEN: {secret: api-token}\n", head)
    title = SYSTEMS[system].title
    assert problem == (
        f"rules.yaml:11: rule 'a': overrides.env.TOKEN: {title} (system: {system}) cannot read"
        " an env var from Secret Manager; pass a value"
    )


def test_only_cloud_run_v2_says_it_can_read_secrets():
    assert {name for name, system in SYSTEMS.items() if system.secrets} == {"cloudrun"}


def test_the_json_schema_offers_a_string_or_a_secret_reference():
    schema = json_schema()
    env = schema["$defs"]["OverridesSpec"]["properties"]["env"]["additionalProperties"]
    assert env["oneOf"] == [{"type": "string"}, {"$ref": "#/$defs/SecretRefSpec"}]
    assert schema["$defs"]["SecretRefSpec"]["required"] == ["secret"]
    shipped = json.loads(Path("docs/rules.schema.json").read_text(encoding="utf-8"))
    assert shipped == schema  # docs/rules.schema.json is regenerated (`triggers schema`)


def test_a_compiled_artifact_keeps_the_secret_reference(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        HEAD + "        A: '{{ data.message.json.n }}'\n        B: {secret: s, version: 4}\n"
    )
    _, validated = compile_rules(path, environ={})
    compiled = load(path, environ={}, compiled=True)
    assert (
        _env_of(compiled)[:2]
        == _env_of(validated)[:2]
        == [
            {"name": "A", "value": "7"},
            {"name": "B", "valueSource": {"secretKeyRef": {"secret": "s", "version": "4"}}},
        ]
    )


# -- the emulator's side ----------------------------------------------------------------------

JOB = JobSpec(
    project="demo-project",
    region="europe-west1",
    name="job",
    command=("python", "job.py"),
    env=(("KEEP", "1"),),
)


def _secret_body(secret: str, version: str | None = None, name: str = "TOKEN") -> dict:
    ref = {"secret": secret} if version is None else {"secret": secret, "version": version}
    return {
        "overrides": {
            "containerOverrides": [{"env": [{"name": name, "valueSource": {"secretKeyRef": ref}}]}]
        }
    }


@pytest.mark.parametrize(
    ("secret", "known"),
    [
        ("api-token", {"api-token": "v"}),
        ("api-token", {"projects/demo-project/secrets/api-token": "v"}),
        ("projects/demo-project/secrets/api-token", {"api-token": "v"}),
        ("projects/other/secrets/api-token", {"projects/other/secrets/api-token": "v"}),
    ],
)
def test_the_emulator_gives_the_task_the_value_and_keeps_the_reference(secret, known):
    run = apply_overrides(JOB, parse_run_body(_secret_body(secret, "2")).overrides, known)
    assert dict(run.env) == {"KEEP": "1", "TOKEN": "v"}
    [(name, ref)] = run.secret_refs
    assert (name, ref.secret, ref.version) == ("TOKEN", secret, "2")


def test_an_unknown_secret_is_the_api_s_invalid_argument():
    overrides = parse_run_body(_secret_body("projects/other/secrets/api-token")).overrides
    with pytest.raises(ApiError) as info:
        apply_overrides(JOB, overrides, {"api-token": "only in the job's own project"})
    assert (info.value.http_status, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "Secret projects/other/secrets/api-token/versions/latest was not found" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("body", "wrong"),
    [
        (_secret_body("a/b"), "is not a secret name"),
        (
            {
                "overrides": {
                    "containerOverrides": [
                        {
                            "env": [
                                {
                                    "name": "X",
                                    "value": "v",
                                    "valueSource": {"secretKeyRef": {"secret": "s"}},
                                }
                            ]
                        }
                    ]
                }
            },
            "either value or value_source",
        ),
        (
            {
                "overrides": {
                    "containerOverrides": [
                        {"env": [{"name": "X", "valueSource": {"configMapKeyRef": {}}}]}
                    ]
                }
            },
            'Unknown name "configMapKeyRef"',
        ),
    ],
)
def test_a_malformed_value_source_is_refused(body, wrong):
    with pytest.raises(ApiError, match=wrong):
        parse_run_body(body)


def test_a_secrets_file_is_yaml_or_json_and_its_problems_are_reported_at_start(tmp_path):
    good = tmp_path / "secrets.json"
    good.write_text(json.dumps({"api-token": "v", "projects/p/secrets/n": 42}))
    assert load_secrets(good) == {"api-token": "v", "projects/p/secrets/n": "42"}

    bad = tmp_path / "secrets.yaml"
    bad.write_text("'a/b': v\nok: [1]\n")
    with pytest.raises(JobsFileError) as info:
        load_secrets(bad)
    assert info.value.problems == [
        f"{bad}: 'a/b' is not a secret id nor projects/P/secrets/S",
        f"{bad}: secret 'ok': the value must be a string",
    ]
