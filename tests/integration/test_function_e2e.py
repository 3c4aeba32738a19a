"""The whole chain through real servers on loopback, the way it runs in production.

    Pub/Sub emulator --push--> the function (functions-framework, a real process)
    fake-gcs-server --notification--> Pub/Sub emulator --push--> the function
    Cloud Scheduler-shaped HTTP requests ------------------------> the function
    the function --Firestore ledger--> the Firestore emulator
                 --jobs.run (google-cloud-run, REST)--> the Cloud Run emulator --> a probe process

Nothing is called in process: events go in over HTTP, and what happened is read back from the
places an operator would look — the Firestore ledger, the executions the Cloud Run emulator
lists (each carrying its TRIGGERS_RUN_KEY), and what the job's task process recorded it saw.
Asynchronous deliveries are awaited by polling those, with a deadline, never by sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_firestore_client
from tests.integration.conftest import (
    PROJECT,
    FakeGCS,
    FunctionServer,
    PubSub,
    eventually,
    write_probe_jobs_file,
)
from tests.logquery import counts, load_metrics, log_entry, series
from triggers.emulators.probe import REGION, executions_client, probe_records
from triggers.ledger import Ledger, Status
from triggers.ledger.base import INPUT_RULE, Record
from triggers.ledger.firestore import FirestoreBackend
from triggers.plan import RUN_KEY_ENV

pytestmark = pytest.mark.integration

FIRESTORE_PROJECT = "demo-triggers-e2e"
JOBS = ["orders", "orders-eventarc", "ingest", "forget", "report", "dedup", "redeliver"]
MAX_BODY_BYTES = 64 * 1024  # TRIGGERS_MAX_BODY_BYTES of the function under test
DELIVERY_TIMEOUT = 30.0  # Pub/Sub push, and redelivery of a NACK, take about a second here
JSON = {"Content-Type": "application/json"}
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"

# Raw push bodies name their subscription, not their topic, so push rules are scoped by
# subscription; `orders-topic` sees the same topic through Eventarc CloudEvents, which name it.
RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: orders-push
    on: pubsub
    subscription: orders-push
    match:
      data:
        message:
          attributes:
            kind: [order]
    job: orders
    overrides:
      args: ["--order={{ data.message.json.order_id }}", "--amount={{ data.message.json.amount }}"]
      env:
        ORDER_KIND: "{{ data.message.attributes.kind }}"
        MESSAGE_ID: "{{ data.message.message_id }}"

  - name: orders-topic
    on: pubsub
    topic: orders
    job: orders-eventarc
    overrides:
      args: ["--order={{ data.message.json.order_id }}"]

  - name: gcs-ingest
    on: storage.finalized
    bucket: @BUCKET@
    job: ingest
    overrides:
      args: ["--bucket={{ data.bucket }}", "--name={{ data.name }}", "--generation={{ data.generation }}"]
      env:
        SIZE: "{{ data.size }}"
        CONTENT_TYPE: "{{ data.contentType }}"
    dedup:
      key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"

  - name: gcs-forget
    on: storage.deleted
    bucket: @BUCKET@
    job: forget
    overrides:
      args: ["--forget=gs://{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"]
    dedup:
      key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"

  - name: nightly-report
    on: scheduler
    scheduler_job: nightly-report
    job: report
    overrides:
      args: ["--date={{ data.schedule_time[:10] }}", "--tick={{ data.schedule_time }}"]
      env:
        REPORT: "{{ data.json.report }}"

  - name: orders-dedup
    on: pubsub
    subscription: dedup-push
    job: dedup
    overrides:
      args: ["--order={{ data.message.json.order_id }}"]
    dedup:
      key: "order#{{ data.message.json.order_id }}"

  - name: orders-retry
    on: pubsub
    subscription: retry-push
    job: redeliver
    overrides:
      args: ["--order={{ data.message.json.order_id }}"]
"""

# push subscription -> topic; all push to the function
SUBSCRIPTIONS = {
    "orders-push": "orders",
    "dedup-push": "orders-dedup",
    "retry-push": "orders-retry",
    "gcs-push": "gcs-notifications",
    "ticks-push": "scheduler-ticks",  # a Scheduler job's Pub/Sub target
}


@dataclass
class E2E:
    function: FunctionServer
    emulator: Any  # triggers.emulators.server.EmulatorServer
    jobs_dir: Path
    ledger: Ledger
    pubsub: PubSub
    bucket: Any  # google.cloud.storage.Bucket on fake-gcs-server

    def context(self) -> str:
        """What a failing wait shows: the function's output and the emulator's faults."""
        return f"{self.function.output()}\n--- Cloud Run emulator faults: {self.emulator.faults.list()}"

    # -- the ledger --------------------------------------------------------------------------

    def record(self, rule: str, dedup_key: str) -> Record | None:
        found = [r for r in self.ledger.list(rule=rule, limit=1000) if r.dedup_key == dedup_key]
        assert len(found) <= 1, f"two ledger records for one (rule, dedup key): {found}"
        return found[0] if found else None

    def wait_record(
        self, rule: str, dedup_key: str, until: Callable[[Record], bool], what: str
    ) -> Record:
        def probe() -> Record | None:
            record = self.record(rule, dedup_key)
            return record if record is not None and until(record) else None

        return eventually(
            probe,
            timeout=DELIVERY_TIMEOUT,
            what=f"{what} (rule {rule}, dedup key {dedup_key!r})",
            context=lambda: f"ledger record now: {self.record(rule, dedup_key)}\n{self.context()}",
        )

    def wait_launched(self, rule: str, dedup_key: str, what: str) -> Record:
        record = self.wait_record(rule, dedup_key, lambda r: r.status is Status.LAUNCHED, what)
        assert record.execution, record
        return record

    # -- the function's log -------------------------------------------------------------------

    def wait_logs(self, count: int, **labels: str) -> list[dict[str, Any]]:
        """At least `count` structured log lines of the function with these labels."""

        def probe() -> list[dict[str, Any]] | None:
            found = self.function.log_entries(**labels)
            return found if len(found) >= count else None

        return eventually(
            probe,
            timeout=DELIVERY_TIMEOUT,
            what=f"{count} log line(s) of the function labelled {labels}",
            context=self.context,
        )

    # -- the Cloud Run emulator --------------------------------------------------------------

    def executions(self, job: str, **env: str) -> list[str]:
        """Names of the executions of `job` whose env has all of `env` (as an operator would
        find them: by listing the job's executions through the real client)."""
        parent = f"projects/{PROJECT}/locations/{REGION}/jobs/{job}"
        names = []
        for execution in executions_client(self.emulator.url).list_executions(parent=parent):
            seen = {e.name: e.value for c in execution.template.containers for e in c.env}
            if all(seen.get(k) == v for k, v in env.items()):
                names.append(execution.name)
        return names

    def runs_of(self, job: str, record: Record) -> list[str]:
        return self.executions(job, **{RUN_KEY_ENV: record.key})

    def task_saw(self, execution: str) -> dict[str, Any]:
        """What the one task process of `execution` recorded (argv, env), once it finished."""
        records = eventually(
            lambda: probe_records(self.jobs_dir, execution),
            timeout=DELIVERY_TIMEOUT,
            what=f"the task process of {execution} to record what it saw",
            context=self.context,
        )
        assert len(records) == 1, records
        return records[0]


@pytest.fixture(scope="module")
def e2e(
    tmp_path_factory: pytest.TempPathFactory,
    firestore_emulator: str,
    pubsub: PubSub,
    fake_gcs: FakeGCS,
    storage_client: Any,
    start_cloud_run_emulator: Callable[..., Any],
    start_function: Callable[..., FunctionServer],
):
    directory = Path(tmp_path_factory.mktemp("function-e2e"))
    jobs_dir = directory / "jobs"
    jobs_dir.mkdir()
    emulator = start_cloud_run_emulator(
        write_probe_jobs_file(jobs_dir, JOBS), directory / "task-logs"
    )

    bucket = storage_client.create_bucket(f"e2e-{uuid.uuid4().hex[:12]}")
    rules = directory / "rules.yaml"
    rules.write_text(RULES.replace("@BUCKET@", bucket.name), encoding="utf-8")
    collection = f"e2e-runs-{uuid.uuid4().hex[:12]}"  # this module's own ledger
    function = start_function(
        {
            "TRIGGERS_RULES": str(rules),
            "TRIGGERS_LEDGER": "firestore",
            "FIRESTORE_EMULATOR_HOST": firestore_emulator,
            "TRIGGERS_FIRESTORE_PROJECT": FIRESTORE_PROJECT,
            "TRIGGERS_FIRESTORE_COLLECTION": collection,
            "TRIGGERS_CLOUD_RUN_ENDPOINT": emulator.url,
            "TRIGGERS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "TRIGGERS_RETRY_AFTER_SECONDS": "1",
            # An ambiguous jobs.run holds its claim 5 + 2 s, not the production 60 s.
            "TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS": "5",
            "TRIGGERS_AMBIGUOUS_MARGIN_SECONDS": "2",
        }
    )
    client = make_firestore_client(firestore_emulator, FIRESTORE_PROJECT)
    for topic in set(SUBSCRIPTIONS.values()):
        pubsub.create_topic(topic)
    for subscription, topic in SUBSCRIPTIONS.items():
        pubsub.create_push_subscription(subscription, topic, function.url)
    try:
        yield E2E(
            function=function,
            emulator=emulator,
            jobs_dir=jobs_dir,
            ledger=Ledger(FirestoreBackend(client, collection=collection)),
            pubsub=pubsub,
            bucket=bucket,
        )
    finally:
        for subscription in SUBSCRIPTIONS:  # stop pushing before the function goes away
            pubsub.delete_subscription(subscription)
        function.stop()
        emulator.stop()
        client.close()


def push_dedup_key(subscription: str, message_id: str) -> str:
    """The default identity of a raw push (docs/events.md): per subscription and message id."""
    return f"//pubsub.googleapis.com/projects/{PROJECT}/subscriptions/{subscription}#{message_id}"


def order(**extra: Any) -> tuple[str, bytes]:
    order_id = f"A-{uuid.uuid4().hex[:10]}"
    return order_id, json.dumps({"order_id": order_id, **extra}).encode()


def push_body(subscription: str, data: bytes, message_id: str, **attributes: str) -> bytes:
    """A raw Pub/Sub push body, as the Pub/Sub emulator sends it (both spellings)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = {
        "data": base64.b64encode(data).decode(),
        "attributes": attributes,
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": now,
        "publish_time": now,
    }
    return json.dumps({"message": message, "subscription": subscription}).encode()


def eventarc_order() -> tuple[str, dict[str, str], bytes]:
    """An Eventarc Pub/Sub trigger's binary-mode CloudEvent for a message on topic `orders`."""
    order_id, data = order()
    message_id = str(uuid.uuid4().int % 10**16)
    headers = {
        **JSON,
        "ce-specversion": "1.0",
        "ce-id": message_id,
        "ce-source": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders",
        "ce-type": PUBSUB_TYPE,
        "ce-time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    body = push_body(
        f"projects/{PROJECT}/subscriptions/eventarc-orders", data, message_id, kind="order"
    )
    return order_id, headers, body


def scheduler_headers(job: str | None, schedule_time: str) -> dict[str, str]:
    """What a Cloud Scheduler HTTP target sends (the body's content type is the job's choice)."""
    headers = {
        "Content-Type": "application/octet-stream",
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-ScheduleTime": schedule_time,
    }
    if job is not None:
        headers["X-CloudScheduler-JobName"] = job
    return headers


def only_outcome(response) -> dict[str, Any]:
    answer = response.json()
    assert len(answer["rules"]) == 1, answer
    return answer["rules"][0]


# -- Pub/Sub ---------------------------------------------------------------------------------------


def test_a_published_message_is_pushed_and_runs_one_task_with_the_rendered_overrides(e2e):
    order_id, data = order(amount=42.5)
    message_id = e2e.pubsub.publish("orders", data, kind="order")

    dedup_key = push_dedup_key("orders-push", message_id)
    record = e2e.wait_launched("orders-push", dedup_key, "the pushed message to be launched")
    # exactly one execution for this message, and it is the one the ledger names
    assert e2e.executions("orders", MESSAGE_ID=message_id) == [record.execution]
    assert e2e.runs_of("orders", record) == [record.execution]
    assert (record.attempts, record.duplicates) == (1, 0)
    assert record.event == {
        "id": message_id,
        "source": dedup_key.split("#")[0],
        "type": PUBSUB_TYPE,
        "kind": "pubsub",
        "form": "pubsub-push",
    }
    assert record.job == f"projects/{PROJECT}/locations/{REGION}/jobs/orders"
    # the task process really ran, with the args and env rendered from the message
    seen = e2e.task_saw(record.execution)
    assert seen["argv"] == [f"--order={order_id}", "--amount=42.5"]
    env = seen["env"]
    assert env["ORDER_KIND"] == "order" and env["MESSAGE_ID"] == message_id
    assert env[RUN_KEY_ENV] == record.key and env["JOB_ONLY"] == "from-job"
    assert env["CLOUD_RUN_EXECUTION"] == record.execution.rsplit("/", 1)[-1]
    # A topic-scoped rule does not see a raw push (README: its body names only the
    # subscription); the Eventarc path of test_malformed_requests exercises it instead.
    assert e2e.record("orders-topic", dedup_key) is None


def test_a_message_that_matches_no_pattern_is_acknowledged_and_runs_nothing(e2e):
    _, data = order(amount=1)
    message_id = e2e.pubsub.publish("orders", data, kind="refund")  # the rule wants kind=order
    # Nothing is recorded for an event no rule wants; the function's log says it was handled.
    (entry,) = e2e.wait_logs(1, event_id=message_id)
    assert entry["message"] == f"event {message_id} matched no rule"
    assert e2e.record("orders-push", push_dedup_key("orders-push", message_id)) is None
    assert e2e.executions("orders", MESSAGE_ID=message_id) == []


# -- Cloud Storage ----------------------------------------------------------------------------------


def test_an_upload_to_fake_gcs_is_notified_pushed_and_runs_once_per_object_version(e2e):
    name = f"incoming/{uuid.uuid4().hex}.csv"
    blob = e2e.bucket.blob(name)
    blob.upload_from_string(b"a,b\n1,2\n", content_type="text/csv")
    bucket, generation = e2e.bucket.name, blob.generation
    assert isinstance(generation, int) and generation > 0

    version = f"{bucket}/{name}#{generation}"
    record = e2e.wait_launched("gcs-ingest", version, "the upload's notification to be launched")
    assert e2e.runs_of("ingest", record) == [record.execution]
    assert record.event["type"] == "google.cloud.storage.object.v1.finalized"
    assert record.event["source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    # fake-gcs-server's JSON_API_V1 payload, decoded: int64 strings became numbers
    document = record.event_document
    assert document["subject"] == f"objects/{name}"
    assert document["data"]["generation"] == generation and document["data"]["size"] == 8
    assert document["data"]["contentType"] == "text/csv"
    seen = e2e.task_saw(record.execution)
    assert seen["argv"] == [f"--bucket={bucket}", f"--name={name}", f"--generation={generation}"]
    assert seen["env"]["SIZE"] == "8" and seen["env"]["CONTENT_TYPE"] == "text/csv"

    # Deleting that version is another event type, for another rule.
    blob.delete()
    forgotten = e2e.wait_launched("gcs-forget", version, "the delete notification to be launched")
    assert forgotten.event["type"] == "google.cloud.storage.object.v1.deleted"
    assert e2e.task_saw(forgotten.execution)["argv"] == [
        f"--forget=gs://{bucket}/{name}#{generation}"
    ]
    # ... and the finalize record was not touched by it
    assert e2e.record("gcs-ingest", version).duplicates == 0


# -- Cloud Scheduler --------------------------------------------------------------------------------


def test_scheduler_ticks_run_once_each_and_a_retried_tick_is_a_duplicate(e2e):
    # unique ticks per run: whole seconds, the way Scheduler writes them
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=uuid.uuid4().int % 1000)
    tick, next_tick = (
        (base + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (0, 1)
    )
    body = b'{"report":"daily-sales"}'

    first = e2e.function.post(scheduler_headers("nightly-report", tick), body)
    assert first.status_code == 200, first.text
    launched = only_outcome(first)
    assert launched["outcome"] == "launched" and first.json()["decision"] == "ack"
    assert first.json()["event"] == f"nightly-report#{tick}"

    # Scheduler retries the same tick with the same headers: acknowledged, not run again.
    retry = e2e.function.post(scheduler_headers("nightly-report", tick), body)
    assert retry.status_code == 200, retry.text
    duplicate = only_outcome(retry)
    assert duplicate["outcome"] == "duplicate"
    assert duplicate["execution"] == launched["execution"]

    second = e2e.function.post(scheduler_headers("nightly-report", next_tick), body)
    assert second.status_code == 200, second.text
    other = only_outcome(second)
    assert other["outcome"] == "launched" and other["execution"] != launched["execution"]

    # The duplicate's count is written off the request path: wait for it.
    record = e2e.wait_record(
        "nightly-report",
        f"nightly-report#{tick}",
        lambda r: r.duplicates >= 1,
        "the retried tick counted as a duplicate",
    )
    assert record.status is Status.LAUNCHED and record.execution == launched["execution"]
    assert (record.attempts, record.duplicates) == (1, 1)
    assert e2e.runs_of("report", record) == [launched["execution"]]
    later = e2e.record("nightly-report", f"nightly-report#{next_tick}")
    assert later.duplicates == 0 and e2e.runs_of("report", later) == [other["execution"]]
    seen = e2e.task_saw(launched["execution"])
    assert seen["argv"] == [f"--date={tick[:10]}", f"--tick={tick}"]
    assert seen["env"]["REPORT"] == "daily-sales"


def test_a_scheduler_job_named_in_full_runs_its_rule_over_http_and_through_pubsub(e2e):
    # Scheduler may name the job projects/P/locations/L/jobs/J; the rule owns it as J.
    full_name = f"projects/{PROJECT}/locations/{REGION}/jobs/nightly-report"
    base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1000 + uuid.uuid4().int % 1000)
    tick, pubsub_tick = (
        (base + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (0, 1)
    )
    body = b'{"report":"full-name"}'

    first = e2e.function.post(scheduler_headers(full_name, tick), body)
    assert first.status_code == 200, first.text
    launched = only_outcome(first)
    assert (launched["rule"], launched["outcome"]) == ("nightly-report", "launched")
    # keyed by the job id: the same tick named by its id is the same occurrence
    assert first.json()["event"] == f"nightly-report#{tick}"
    again = e2e.function.post(scheduler_headers("nightly-report", tick), body)
    assert only_outcome(again)["outcome"] == "duplicate"
    assert only_outcome(again)["execution"] == launched["execution"]
    record = e2e.record("nightly-report", f"nightly-report#{tick}")
    assert e2e.runs_of("report", record) == [launched["execution"]]

    # The Pub/Sub target form, through the Pub/Sub emulator and a push subscription.
    e2e.pubsub.publish("scheduler-ticks", body, scheduler_job=full_name, schedule_time=pubsub_tick)
    pushed = e2e.wait_launched(
        "nightly-report", f"nightly-report#{pubsub_tick}", "the Pub/Sub tick to be launched"
    )
    assert pushed.event["form"] == "scheduler-pubsub"
    assert e2e.task_saw(pushed.execution)["argv"] == [
        f"--date={pubsub_tick[:10]}",
        f"--tick={pubsub_tick}",
    ]


# -- redelivery -------------------------------------------------------------------------------------


def test_the_same_order_published_twice_runs_once_and_counts_the_duplicate(e2e):
    order_id, data = order()
    first = e2e.pubsub.publish("orders-dedup", data, kind="order")
    second = e2e.pubsub.publish("orders-dedup", data, kind="order")
    assert first != second  # two messages: only the rule's content key makes them one event

    record = e2e.wait_record(
        "orders-dedup",
        f"order#{order_id}",
        lambda r: r.status is Status.LAUNCHED and r.duplicates >= 1,
        "one launch and one duplicate",
    )
    assert (record.attempts, record.duplicates) == (1, 1)
    assert record.event["id"] in (first, second)
    assert e2e.runs_of("dedup", record) == [record.execution]
    assert e2e.task_saw(record.execution)["argv"] == [f"--order={order_id}"]


def test_the_modules_log_based_metrics_count_the_functions_launch_and_duplicate(e2e):
    # terraform/monitoring.tf's filters and extractors over what this functions-framework
    # process wrote to stdout, as Cloud Logging would store it (tests/logquery.py).
    order_id, data = order()
    dedup_key = f"order#{order_id}"
    e2e.pubsub.publish("orders-dedup", data, kind="order")
    e2e.wait_logs(1, rule="orders-dedup", dedup_key=dedup_key, outcome="launched")
    e2e.pubsub.publish("orders-dedup", data, kind="order")
    e2e.wait_logs(1, rule="orders-dedup", dedup_key=dedup_key, outcome="duplicate")

    lines = e2e.function.log_entries(dedup_key=dedup_key)
    metrics = load_metrics("triggers", "triggers-reconcile")
    found = counts(metrics, [log_entry(line, "triggers") for line in lines])
    rule = "orders-dedup"
    assert found == {
        "matched": Counter(
            {
                series(rule=rule, outcome="launched"): 1,
                series(rule=rule, outcome="duplicate"): 1,
            }
        ),
        "launched": Counter({series(rule=rule): 1}),
        "duplicate": Counter({series(rule=rule): 1}),
    }, e2e.context()


def test_a_nacked_delivery_is_redelivered_by_pubsub_and_runs_once(e2e):
    # The first jobs.run is refused (503, before anything runs, but a 503 may have run): the
    # function holds its claim for the Cloud Run timeout + the ambiguous margin and answers
    # 503, which the Pub/Sub emulator takes as a NACK and redelivers (each redelivery inside
    # the hold is another 503) until a takeover looks, finds nothing and launches.
    fault = e2e.emulator.faults.fail("RunJob", 503, match="/jobs/redeliver:run")
    order_id, data = order()
    message_id = e2e.pubsub.publish("orders-retry", data, kind="order")

    dedup_key = push_dedup_key("retry-push", message_id)
    record = e2e.wait_launched("orders-retry", dedup_key, "the redelivered message to be launched")
    assert fault.hits == 1
    # the function answered the deliveries inside the hold "retry" (503s), then launched one
    # (it logs after recording, so wait for the "launched" line)
    e2e.wait_logs(1, event_id=message_id, rule="orders-retry", outcome="launched")
    entries = e2e.function.log_entries(event_id=message_id, rule="orders-retry")
    outcomes = [e["logging.googleapis.com/labels"]["outcome"] for e in entries]
    assert outcomes[-1] == "launched" and len(outcomes) >= 2, e2e.context()
    assert set(outcomes[:-1]) == {"retry"}, e2e.context()
    # the delivery after the hold took the claim over (a 503 may have run: it looked first)
    assert (record.attempts, record.duplicates) == (2, 0)
    assert record.status is Status.LAUNCHED and not record.ambiguous and record.reason is None
    assert e2e.runs_of("redeliver", record) == [record.execution]
    assert e2e.task_saw(record.execution)["argv"] == [f"--order={order_id}"]


def test_a_busy_api_is_answered_503_with_retry_after_and_the_repost_runs_once(e2e):
    fault = e2e.emulator.faults.fail("RunJob", 429, match="/jobs/redeliver:run")
    order_id, data = order()
    message_id = uuid.uuid4().hex
    body = push_body(f"projects/{PROJECT}/subscriptions/retry-push", data, message_id, kind="order")

    busy = e2e.function.post(JSON, body)
    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"] == "1"  # TRIGGERS_RETRY_AFTER_SECONDS
    assert busy.json()["decision"] == "retry" and only_outcome(busy)["outcome"] == "retry"
    assert fault.hits == 1
    dedup_key = push_dedup_key("retry-push", message_id)
    released = e2e.record("orders-retry", dedup_key)
    assert released.status is Status.RELEASED and released.reason
    assert e2e.executions("redeliver", **{RUN_KEY_ENV: released.key}) == []

    again = e2e.function.post(JSON, body)
    assert again.status_code == 200 and only_outcome(again)["outcome"] == "launched", again.text
    once_more = e2e.function.post(JSON, body)
    assert once_more.status_code == 200 and only_outcome(once_more)["outcome"] == "duplicate"
    record = e2e.wait_record(
        "orders-retry", dedup_key, lambda r: r.duplicates >= 1, "the repost counted (off the path)"
    )
    assert (record.status, record.attempts, record.duplicates) == (Status.LAUNCHED, 2, 1)
    assert e2e.runs_of("redeliver", record) == [only_outcome(again)["execution"]]


# -- malformed requests -----------------------------------------------------------------------------

_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/orders-push"


def _push(message: dict[str, Any]) -> bytes:
    return json.dumps({"message": message, "subscription": _SUBSCRIPTION}).encode()


# (id, headers, body, reason, a fragment of the message)
MALFORMED = [
    ("bad-json", JSON, b'{"message": {"data": ', "bad_json", "not valid JSON"),
    ("bad-utf8", JSON, b'{"message": "\xff\xfe"}', "bad_encoding", "not valid UTF-8"),
    (
        "push-bad-base64",
        JSON,
        _push({"data": "not base64!", "messageId": "101", "attributes": {}}),
        "bad_base64",
        "message.data is not valid base64",
    ),
    (
        "push-without-message-id",
        JSON,
        _push({"data": "e30=", "attributes": {"kind": "order"}}),
        "missing_field",
        "message.messageId is missing",
    ),
    (
        "cloudevent-binary-without-source",
        {**JSON, "ce-specversion": "1.0", "ce-id": "e-1", "ce-type": PUBSUB_TYPE},
        b'{"message": {"data": "e30=", "messageId": "102"}}',
        "bad_cloudevent",
        "ce-source",
    ),
    (
        "cloudevents-batch",
        {"Content-Type": "application/cloudevents-batch+json"},
        b"[]",
        "unsupported_content_type",
        "batch mode is not supported",
    ),
    (
        "not-an-event",
        {"Content-Type": "text/csv"},
        b"order_id,amount\nA-1,42.5\n",
        "unrecognised",
        "text/csv",
    ),
    (
        "body-too-large",
        JSON,
        _push({"data": base64.b64encode(b"x" * MAX_BODY_BYTES).decode(), "messageId": "103"}),
        "body_too_large",
        f"the limit is {MAX_BODY_BYTES} bytes",
    ),
    (
        "gcs-unknown-event-type",
        JSON,
        _push(
            {
                "data": base64.b64encode(
                    b'{"bucket": "b", "name": "o", "generation": "1"}'
                ).decode(),
                "messageId": "104",
                "attributes": {
                    "eventType": "OBJECT_EXPLODE",
                    "bucketId": "b",
                    "objectId": "o",
                    "objectGeneration": "1",
                    "payloadFormat": "JSON_API_V1",
                },
            }
        ),
        "bad_field",
        "eventType is 'OBJECT_EXPLODE'",
    ),
    (
        "scheduler-without-job-name",
        scheduler_headers(None, "2026-11-21T02:00:00Z"),
        b'{"report":"daily-sales"}',
        "missing_field",
        "X-CloudScheduler-JobName is missing",
    ),
]


def input_record(ledger: Ledger, body: bytes) -> Record | None:
    """The ledger's record of an undecodable request: rule `(input)`, keyed by the body."""
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    found = [r for r in ledger.list(rule=INPUT_RULE, limit=1000) if r.dedup_key == digest]
    return found[0] if found else None


@pytest.mark.parametrize(
    "headers, body, reason, fragment",
    [case[1:] for case in MALFORMED],
    ids=[c[0] for c in MALFORMED],
)
def test_malformed_requests_are_acknowledged_recorded_and_do_not_stop_the_server(
    e2e, headers, body, reason, fragment
):
    response = e2e.function.post(headers, body)
    # 200: no retry can fix the request (a 4xx would make Pub/Sub and Scheduler retry forever)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["decision"] == "rejected" and answer["reason"] == reason, answer
    assert fragment in answer["message"]

    record = input_record(e2e.ledger, body)
    assert record is not None, f"no (input) record for {reason}\n{e2e.context()}"
    assert record.rule == INPUT_RULE and record.status is Status.REJECTED
    assert record.reason == f"{reason}: {answer['message']}"
    assert record.event["bytes"] == len(body)
    assert record.event["content_type"] == headers.get("Content-Type")
    assert record.duplicates == 0 and record.execution is None

    # The sender retrying the same request is counted on the same record, not recorded anew.
    again = e2e.function.post(headers, body)
    assert again.status_code == 200 and again.json()["reason"] == reason
    counted = eventually(
        lambda: (r := input_record(e2e.ledger, body)) is not None and r.duplicates >= 1 and r,
        timeout=DELIVERY_TIMEOUT,
        what="the retried request counted (written off the request path)",
    )
    assert counted.duplicates == 1

    # And the server keeps serving: a valid event afterwards still launches.
    order_id, valid_headers, valid_body = eventarc_order()
    ok = e2e.function.post(valid_headers, valid_body)
    assert ok.status_code == 200, ok.text
    launched = only_outcome(ok)
    assert launched["rule"] == "orders-topic" and launched["outcome"] == "launched", ok.text
    assert e2e.task_saw(launched["execution"])["argv"] == [f"--order={order_id}"]
