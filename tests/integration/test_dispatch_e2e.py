"""Exactly-once launch, end to end: decoded events through the dispatcher, a real ledger (the
official Firestore emulator, and SQLite) and the Cloud Run emulator via the real client.

Each scenario counts executions the way an operator would: by listing the job's executions and
reading the run key each one carries.
"""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import Clock
from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.probe import PROBE_JOB, executions_client, probe_records, write_probe_jobs
from triggers.emulators.server import EmulatorServer
from triggers.events import decode
from triggers.ledger import Ledger, Status
from triggers.ledger.firestore import FirestoreBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.plan import RUN_KEY_ENV
from triggers.rules import load_text
from triggers.runners.cloudrun import CloudRunRunner

pytestmark = pytest.mark.integration

LEASE = timedelta(minutes=9)

RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: ingest
    on: storage.finalized
    bucket: raw-data
    job: probe
    overrides:
      args: ["--object={{ data.name }}"]
      env: {GENERATION: "{{ data.generation }}"}
    dedup:
      key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
  - name: missing-job
    on: storage.finalized
    bucket: broken
    job: no-such-job
  - name: wrong-container
    on: storage.finalized
    bucket: broken
    job: probe
    overrides:
      container: not-the-jobs-container
""",
    environ={},
)


def storage_event(bucket: str = "raw-data", name: str | None = None, generation: int = 1):
    """A GCS notification delivered by a Pub/Sub push, decoded like the function would."""
    name = name or f"incoming/{uuid.uuid4().hex}.csv"
    resource = {"bucket": bucket, "name": name, "generation": str(generation), "size": "10"}
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "attributes": {
                "eventType": "OBJECT_FINALIZE",
                "bucketId": bucket,
                "objectId": name,
                "objectGeneration": str(generation),
                "payloadFormat": "JSON_API_V1",
            },
            "messageId": uuid.uuid4().hex,
            "publishTime": "2026-11-21T12:00:00Z",
        },
        "subscription": "projects/demo-project/subscriptions/gcs-push",
    }
    return decode({"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cloudrun")
    server = EmulatorServer(write_probe_jobs(directory), log_dir=directory / "logs").start()
    server.directory = directory
    yield server
    server.stop()


@pytest.fixture(params=["firestore", "sqlite"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path / "ledger.sqlite3")
    client = request.getfixturevalue("firestore_client")
    return FirestoreBackend(client, collection=f"runs-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def clock():
    # real time: `find` compares it with the emulator's real execution times
    return Clock(datetime.now(UTC))


@pytest.fixture
def ledger(backend, clock):
    return Ledger(backend, lease=LEASE, clock=clock)


@pytest.fixture
def runner(emulator):
    return CloudRunRunner(endpoint=emulator.url)


@pytest.fixture
def dispatcher(ledger, runner):
    return Dispatcher(RULES, ledger, runner)


def executions_with_key(emulator, key: str) -> list[str]:
    found = []
    for execution in executions_client(emulator.url).list_executions(parent=PROBE_JOB):
        env = {e.name: e.value for c in execution.template.containers for e in c.env}
        if env.get(RUN_KEY_ENV) == key:
            found.append(execution.name)
    return found


def ingest(decision):
    return next(o for o in decision.outcomes if o.rule == "ingest")


def test_fifty_concurrent_deliveries_launch_exactly_one_execution(dispatcher, ledger, emulator):
    event = storage_event()
    # WHEN 50 copies of one event arrive at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        first_wave = [ingest(d) for d in pool.map(lambda _: dispatcher.dispatch(event), range(50))]
    launched = [o for o in first_wave if o.outcome is Outcome.LAUNCHED]
    assert len(launched) == 1
    assert {o.outcome for o in first_wave} <= {Outcome.LAUNCHED, Outcome.DUPLICATE, Outcome.RETRY}
    # AND the ones told to retry come back, as Pub/Sub would redeliver them
    retried = [ingest(dispatcher.dispatch(event)) for o in first_wave if o.outcome is Outcome.RETRY]
    assert all(o.outcome is Outcome.DUPLICATE for o in retried)
    # THEN one execution ran, and the other 49 deliveries are counted duplicates
    key = launched[0].ledger_key
    assert executions_with_key(emulator, key) == [launched[0].execution]
    if hasattr(ledger.backend, "flush"):  # Firestore counts duplicates off the request path
        assert ledger.backend.flush() == 0
    record = ledger.get(key)
    assert record.status is Status.LAUNCHED and record.duplicates == 49
    # and the job's process really ran with the rendered overrides
    assert emulator.wait_idle(timeout=20)
    (seen,) = probe_records(emulator.directory, launched[0].execution)
    assert seen["argv"] == [f"--object={event.data['name']}"]
    assert seen["env"]["GENERATION"] == "1" and seen["env"][RUN_KEY_ENV] == key


def test_crash_between_claim_and_run_then_redelivery_after_the_lease(
    dispatcher, ledger, clock, emulator
):
    event = storage_event()
    request = RULES.get("ingest").plan(event)
    # GIVEN a delivery that claimed and died before calling jobs.run
    ledger.claim(request, dict(event.document))
    # WHEN redelivered during the lease THEN it is asked to retry, and nothing runs
    assert ingest(dispatcher.dispatch(event)).outcome is Outcome.RETRY
    assert executions_with_key(emulator, request.ledger_key) == []
    # WHEN redelivered after the lease THEN it is taken over and runs once
    clock.advance(LEASE + timedelta(seconds=1))
    outcome = ingest(dispatcher.dispatch(event))
    assert outcome.outcome is Outcome.LAUNCHED and not outcome.adopted
    assert executions_with_key(emulator, request.ledger_key) == [outcome.execution]
    assert ledger.get(request.ledger_key).attempts == 2


def test_crash_after_run_before_record_adopts_the_execution(
    dispatcher, ledger, runner, clock, emulator
):
    event = storage_event()
    request = RULES.get("ingest").plan(event)
    # GIVEN a delivery that claimed, launched, and died before recording it
    ledger.claim(request, dict(event.document))
    started = runner.run(request)
    clock.advance(LEASE + timedelta(seconds=1))
    # WHEN redelivered after the lease THEN the execution is adopted, not started again
    outcome = ingest(dispatcher.dispatch(event))
    assert outcome.outcome is Outcome.LAUNCHED and outcome.adopted
    assert outcome.execution == started.execution
    assert executions_with_key(emulator, request.ledger_key) == [started.execution]


def test_executed_but_dropped_response_is_adopted_not_repeated(dispatcher, ledger, emulator):
    event = storage_event()
    # GIVEN the API runs the job and then the response is lost
    emulator.faults.drop_response("RunJob", mode="close")
    outcome = ingest(dispatcher.dispatch(event))
    # THEN the dispatcher finds the execution by its run key and records it
    assert outcome.outcome is Outcome.LAUNCHED and outcome.adopted
    assert executions_with_key(emulator, outcome.ledger_key) == [outcome.execution]
    assert ledger.get(outcome.ledger_key).execution == outcome.execution
    # AND a redelivery is a duplicate: still exactly one execution
    assert ingest(dispatcher.dispatch(event)).outcome is Outcome.DUPLICATE
    assert len(executions_with_key(emulator, outcome.ledger_key)) == 1


def test_busy_api_asks_for_a_retry_releases_and_later_runs_once(dispatcher, ledger, emulator):
    event = storage_event()
    emulator.faults.fail("RunJob", 429)
    decision = dispatcher.dispatch(event)
    outcome = ingest(decision)
    # THEN: retry, with the claim given back (a 429 surely did not run: no lease to wait out)
    assert decision.retry and outcome.outcome is Outcome.RETRY
    record = ledger.get(outcome.ledger_key)
    assert record.status is Status.RELEASED and record.ambiguous is False
    assert executions_with_key(emulator, outcome.ledger_key) == []
    # WHEN redelivered THEN it runs, once
    again = ingest(dispatcher.dispatch(event))
    assert again.outcome is Outcome.LAUNCHED
    assert executions_with_key(emulator, outcome.ledger_key) == [again.execution]
    assert ledger.get(outcome.ledger_key).attempts == 2


def test_a_503_holds_the_claim_then_the_takeover_looks_and_runs_once(
    dispatcher, ledger, emulator, clock
):
    event = storage_event()
    emulator.faults.fail("RunJob", 503)
    decision = dispatcher.dispatch(event)
    outcome = ingest(decision)
    # THEN: retry, and the claim is held: a 503 may have run, and may still be running
    assert decision.retry and outcome.outcome is Outcome.RETRY
    record = ledger.get(outcome.ledger_key)
    assert record.status is Status.CLAIMED and record.ambiguous is True
    assert record.lease_until == clock() + dispatcher.ambiguous_hold
    assert executions_with_key(emulator, outcome.ledger_key) == []
    # WHEN redelivered inside the hold THEN it is told to retry, and nothing runs
    assert ingest(dispatcher.dispatch(event)).outcome is Outcome.RETRY
    # WHEN redelivered after it THEN the takeover looks (nothing: the 503 came before acting)
    # and runs, once
    clock.advance(dispatcher.ambiguous_hold + timedelta(seconds=1))
    again = ingest(dispatcher.dispatch(event))
    assert again.outcome is Outcome.LAUNCHED and not again.adopted
    assert executions_with_key(emulator, outcome.ledger_key) == [again.execution]
    record = ledger.get(outcome.ledger_key)
    assert record.status is Status.LAUNCHED and record.attempts == 2 and not record.ambiguous


def test_missing_job_and_invalid_override_are_rejected_and_acknowledged(
    dispatcher, ledger, emulator
):
    event = storage_event(bucket="broken")
    decision = dispatcher.dispatch(event)
    outcomes = {o.rule: o for o in decision.outcomes}
    assert not decision.retry
    assert outcomes["missing-job"].outcome is Outcome.REJECTED
    assert outcomes["wrong-container"].outcome is Outcome.REJECTED
    missing = ledger.get(outcomes["missing-job"].ledger_key)
    assert missing.status is Status.REJECTED and "no-such-job" in missing.reason
    wrong = ledger.get(outcomes["wrong-container"].ledger_key)
    assert wrong.status is Status.REJECTED and "not-the-jobs-container" in wrong.reason
    assert executions_with_key(emulator, outcomes["wrong-container"].ledger_key) == []
    # and redelivery does not try again
    again = {o.rule: o.outcome for o in dispatcher.dispatch(event).outcomes}
    assert again == {"missing-job": Outcome.DUPLICATE, "wrong-container": Outcome.DUPLICATE}
