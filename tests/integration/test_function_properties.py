"""The HTTP-layer property against the served function: hostile requests of every form,
sent over HTTP to a real functions-framework process whose ledger is the Firestore emulator and
whose runner reaches the Cloud Run emulator through the real client.

The unit version (tests/unit/test_app_properties.py) runs hundreds of examples in process; this
one is bounded (30 hostile requests, each followed by one valid event) and checks what only the
real parts can show: that Firestore accepts every record the function writes about poison, that
the answers cross the wire, and that each valid event after them launches exactly one execution
on the emulator.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.conftest import make_firestore_client
from tests.hostile import for_the_wire, hostile_requests
from tests.integration.conftest import PROJECT, FunctionServer, write_probe_jobs_file
from triggers.emulators.probe import REGION, executions_client
from triggers.ledger import Ledger, Status
from triggers.ledger.base import INPUT_RULE
from triggers.ledger.firestore import FirestoreBackend
from triggers.plan import RUN_KEY_ENV

pytestmark = pytest.mark.integration

FIRESTORE_PROJECT = "demo-triggers-properties"
JOBS = ["valid", "worker", "loader", "ticker"]
HOSTILE_REQUESTS = 30

RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: valid
    on: pubsub
    subscription: valid
    job: valid
    overrides:
      args: ["{{ data.message.text }}"]
  - name: messages
    on: pubsub
    job: worker
    overrides:
      args: ["{{ data.message.message_id }}"]
      env: {FIRST: "{{ (data.message.attributes.values()|list + ['none'])|first }}"}
  - name: objects
    on: storage
    job: loader
    overrides: {args: ["gs://{{ data.bucket }}/{{ data.name }}"]}
    dedup: {key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"}
  - name: ticks
    on: scheduler
    match: {data: {job_name: [{anything-but: e2e-warm-up}]}}  # start_function's warm-up tick
    job: ticker
    overrides: {args: ["{{ data.job_name }}"]}
  - name: things
    on: com.example.thing.v1.created
    job: worker
    overrides: {args: ["{{ data|tojson }}"]}
"""


class Served:
    def __init__(self, function: FunctionServer, emulator: Any, ledger: Ledger) -> None:
        self.function = function
        self.emulator = emulator
        self.ledger = ledger
        self.sent = 0
        self.valid: list[str] = []  # ledger keys of the valid events, launched

    def send_valid(self) -> None:
        message_id = f"valid-{uuid.uuid4().hex[:12]}"
        body = {
            "message": {
                "messageId": message_id,
                "data": base64.b64encode(b"ok").decode(),
                "publishTime": "2026-11-21T10:00:00Z",
            },
            "subscription": "projects/demo-project/subscriptions/valid",
        }
        response = self.function.post(
            {"Content-Type": "application/json"}, json.dumps(body).encode()
        )
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        [outcome] = [r for r in response.json()["rules"] if r["rule"] == "valid"]
        assert outcome["outcome"] == "launched", response.text
        self.valid.append(outcome["ledger_key"])

    def executions_by_run_key(self, job: str) -> dict[str, int]:
        parent = f"projects/{PROJECT}/locations/{REGION}/jobs/{job}"
        counts: dict[str, int] = {}
        for execution in executions_client(self.emulator.url).list_executions(parent=parent):
            for container in execution.template.containers:
                for env in container.env:
                    if env.name == RUN_KEY_ENV:
                        counts[env.value] = counts.get(env.value, 0) + 1
        return counts


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    firestore_emulator: str,
    start_cloud_run_emulator: Callable[..., Any],
    start_function: Callable[..., FunctionServer],
):
    directory = Path(tmp_path_factory.mktemp("function-properties"))
    jobs_dir = directory / "jobs"
    jobs_dir.mkdir()
    emulator = start_cloud_run_emulator(write_probe_jobs_file(jobs_dir, JOBS), directory / "logs")
    rules = directory / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    collection = f"properties-{uuid.uuid4().hex[:12]}"
    function = start_function(
        {
            "TRIGGERS_RULES": str(rules),
            "TRIGGERS_LEDGER": "firestore",
            "FIRESTORE_EMULATOR_HOST": firestore_emulator,
            "TRIGGERS_FIRESTORE_PROJECT": FIRESTORE_PROJECT,
            "TRIGGERS_FIRESTORE_COLLECTION": collection,
            "TRIGGERS_CLOUD_RUN_ENDPOINT": emulator.url,
            "TRIGGERS_MAX_BODY_BYTES": str(256 * 1024),
            "TRIGGERS_RETRY_AFTER_SECONDS": "1",
        }
    )
    client = make_firestore_client(firestore_emulator, FIRESTORE_PROJECT)
    try:
        yield Served(function, emulator, Ledger(FirestoreBackend(client, collection=collection)))
    finally:
        function.stop()
        emulator.stop()
        client.close()


@settings(
    max_examples=HOSTILE_REQUESTS,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its request as is
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile=hostile_requests())
def test_hostile_requests_are_never_5xx_and_each_next_event_launches(served, hostile):
    headers, body = hostile
    response = served.function.post(for_the_wire(headers), body)
    served.sent += 1
    assert response.status_code == 200, (
        f"{response.status_code} {response.text[:2000]}\n{served.function.output()[-4000:]}"
    )
    answer = response.json()
    assert answer.get("decision") in ("ack", "rejected"), answer
    for outcome in answer.get("rules", []):
        assert outcome["outcome"] in ("launched", "duplicate", "rejected"), answer
    served.send_valid()


def test_every_valid_event_ran_once_and_poison_was_recorded(served):
    """After the property (same module, runs after it): one execution per valid event, and
    rejected requests recorded in the Firestore ledger as `(input)` records."""
    if served.sent == 0:
        pytest.skip("the property test did not run")
    counts = served.executions_by_run_key("valid")
    assert {key: counts.get(key) for key in served.valid} == {key: 1 for key in served.valid}
    assert len(served.valid) == served.sent
    for key in served.valid:
        assert served.ledger.get(key).status is Status.LAUNCHED
    rejected = served.ledger.list(rule=INPUT_RULE, limit=1000)
    assert rejected, "hostile requests of every form, and none was rejected?"
    assert all(record.status is Status.REJECTED and record.reason for record in rejected)
