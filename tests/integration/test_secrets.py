"""Env vars from Secret Manager, end to end through the real google-cloud-run client: a rule's
`{secret: S}` env becomes `valueSource.secretKeyRef`, the emulator resolves it from its secrets
file, the task sees the value, and the execution resource shows only the reference."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from triggers.emulators.probe import PROBE_JOB, PROJECT, probe_records, write_probe_jobs
from triggers.errors import PermanentRunError
from triggers.events import decode
from triggers.rules import load_text

pytestmark = pytest.mark.integration

SECRET_VALUE = "s3cr3t-token-value"
OTHER_PROJECT_VALUE = "from-the-shared-project"

RULES = textwrap.dedent(
    f"""\
    project: {PROJECT}
    region: europe-west1
    rules:
      - name: with-secrets
        on: pubsub
        job: probe
        overrides:
          env:
            PLAIN: "{{{{ data.message.json.n }}}}"
            API_TOKEN: {{secret: api-token}}
            DB_PASS: {{secret: projects/shared-proj/secrets/db-pass, version: 2}}
      - name: missing-secret
        on: pubsub
        job: probe
        overrides:
          env:
            NOPE: {{secret: never-created}}
    """
)


@pytest.fixture(scope="module")
def secrets_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from triggers.emulators.server import EmulatorServer

    directory = tmp_path_factory.mktemp("secrets-probe")
    secrets_file = directory / "secrets.yaml"
    secrets_file.write_text(
        f"api-token: {SECRET_VALUE}\nprojects/shared-proj/secrets/db-pass: {OTHER_PROJECT_VALUE}\n",
        encoding="utf-8",
    )
    with EmulatorServer(
        write_probe_jobs(directory),
        log_dir=directory / "logs",
        kill_grace=0.5,
        secrets=secrets_file,  # the file, as `triggers emulator --secrets FILE` loads it
    ) as server:
        server.probe_dir = directory
        yield server


def _plan(rule_name: str):
    rules = load_text(RULES, name="rules.yaml", environ={})
    body = {
        "message": {
            "data": "eyJuIjogN30=",  # {"n": 7}
            "messageId": f"m-{rule_name}",
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": f"projects/{PROJECT}/subscriptions/s",
    }
    event = decode({"Content-Type": "application/json"}, json.dumps(body).encode())
    (rule,) = [r for r in rules.rules if r.name == rule_name]
    return rule.plan(event)


def test_the_task_sees_the_secret_value_and_the_execution_shows_only_its_reference(
    secrets_emulator,
) -> None:
    from triggers.emulators.probe import executions_client
    from triggers.runners.cloudrun import CloudRunRunner

    request = _plan("with-secrets")
    sent = json.dumps(request.run_job_body())
    assert SECRET_VALUE not in sent and "api-token" in sent  # only the reference leaves triggers

    launch = CloudRunRunner(endpoint=secrets_emulator.url, timeout=5.0).run(request)
    assert secrets_emulator.store.wait_execution(launch.execution).state == "succeeded"
    [record] = probe_records(secrets_emulator.probe_dir, launch.execution)
    assert record["env"]["API_TOKEN"] == SECRET_VALUE
    assert record["env"]["DB_PASS"] == OTHER_PROJECT_VALUE  # projects/P/secrets/S, version 2
    assert record["env"]["PLAIN"] == "7"

    execution = executions_client(secrets_emulator.url).get_execution(name=launch.execution)
    env = {e.name: e for e in execution.template.containers[0].env}
    assert env["API_TOKEN"].value == ""
    assert env["API_TOKEN"].value_source.secret_key_ref.secret == "api-token"
    assert env["API_TOKEN"].value_source.secret_key_ref.version == "latest"
    assert env["DB_PASS"].value_source.secret_key_ref.version == "2"
    assert SECRET_VALUE not in type(execution).to_json(execution)


def test_an_unknown_secret_is_refused_as_the_api_refuses_it(secrets_emulator) -> None:
    from google.api_core.exceptions import BadRequest
    from google.cloud import run_v2

    from triggers.emulators.probe import jobs_client
    from triggers.runners.cloudrun import CloudRunRunner

    def executions() -> int:
        return len(secrets_emulator.store.list_executions(PROBE_JOB).get("executions", []))

    before = executions()
    with pytest.raises(PermanentRunError, match="never-created"):
        CloudRunRunner(endpoint=secrets_emulator.url, timeout=5.0).run(_plan("missing-secret"))

    # The client's own view: a 400 naming the secret version, and no execution was created.
    request = run_v2.RunJobRequest(
        name=PROBE_JOB,
        overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    env=[
                        run_v2.EnvVar(
                            name="X",
                            value_source=run_v2.EnvVarSource(
                                secret_key_ref=run_v2.SecretKeySelector(secret="other")
                            ),
                        )
                    ]
                )
            ]
        ),
    )
    with pytest.raises(BadRequest) as info:
        jobs_client(secrets_emulator.url).run_job(request=request)
    assert f"Secret projects/{PROJECT}/secrets/other/versions/latest was not found" in str(
        info.value
    )
    assert executions() == before  # refused: nothing was launched


def test_without_a_secrets_file_every_secret_is_unknown(tmp_path: Path) -> None:
    from triggers.emulators.server import EmulatorServer
    from triggers.runners.cloudrun import CloudRunRunner

    with (
        EmulatorServer(write_probe_jobs(tmp_path), log_dir=tmp_path / "logs") as server,
        pytest.raises(PermanentRunError, match="api-token/versions/latest was not found"),
    ):
        CloudRunRunner(endpoint=server.url, timeout=5.0).run(_plan("with-secrets"))


def test_serve_hands_its_secrets_file_to_the_emulator(tmp_path: Path) -> None:
    from triggers.local.serve import ServeError, ServeOptions, _start_emulator

    secrets_file = tmp_path / "secrets.yaml"
    secrets_file.write_text("api-token: from-serve\n", encoding="utf-8")
    options = ServeOptions(
        jobs=str(write_probe_jobs(tmp_path)),
        secrets=str(secrets_file),
        log_dir=str(tmp_path / "logs"),
    )
    emulator = _start_emulator(options)
    try:
        assert emulator.store.secrets == {"api-token": "from-serve"}
    finally:
        emulator.stop()

    secrets_file.write_text("'not/a/secret': x\n", encoding="utf-8")
    with pytest.raises(ServeError, match="is not a secret id"):
        _start_emulator(options)


def test_the_cli_takes_a_secrets_file() -> None:
    from triggers.cli import _parser as _cli_parser
    from triggers.emulators.server import build_parser

    assert build_parser().parse_args(["--secrets", "s.yaml"]).secrets == "s.yaml"
    assert build_parser().parse_args([]).secrets is None
    serve = _cli_parser().parse_args(["serve", "--secrets", "s.yaml"])
    assert serve.secrets == "s.yaml"
