"""Every rule receives its events in the Terraform module's delivery shape (issue 12).

From a rules file with Cloud Storage, Pub/Sub (scoped by topic, by subscription, and `on:` as
a full CloudEvent type) and Scheduler rules, tests/tfmodel.py computes what the module would
create: the push subscriptions (names, topics, push endpoints with `?topic=`), the Eventarc
storage triggers (bucket, event type) and the Scheduler jobs. Exactly those push
subscriptions are created on the official Pub/Sub emulator, pointed at the function running as
a real functions-framework process; messages are published to the topics; the storage triggers'
CloudEvents and the Scheduler jobs' requests are sent as Eventarc and Scheduler send them (no
emulator exists for either). Each rule must launch its job on the Cloud Run emulator, once.

Before the fix, `paid-orders` (topic: orders, the shape of terraform/examples/basic) matched
nothing: the push body does not name its topic, and the function acknowledged it unmatched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests import tfmodel
from tests.integration.conftest import (
    PROJECT,
    FunctionServer,
    PubSub,
    eventually,
    write_probe_jobs_file,
)
from triggers.emulators.probe import REGION, executions_client
from triggers.ledger import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend

pytestmark = pytest.mark.integration

DELIVERY_TIMEOUT = 30.0
JOBS = ["md-orders", "md-audit", "md-refunds", "md-ingest", "md-report"]

RULES = """\
project: ${TRIGGERS_PROJECT}
region: ${TRIGGERS_REGION}
rules:
  - name: paid-orders
    on: pubsub
    topic: orders-@ID@
    match:
      data:
        message:
          json:
            status: [paid]
    job: md-orders
  - name: audit-orders
    on: pubsub
    topic: orders-@ID@
    subscription: orders-audit-@ID@
    job: md-audit
  - name: refunds
    on: google.cloud.pubsub.topic.v1.messagePublished
    topic: projects/${TRIGGERS_PROJECT}/topics/refunds-@ID@
    job: md-refunds
  - name: uploads
    on: storage.finalized
    bucket: uploads-@ID@
    match:
      data:
        name: [{prefix: incoming/}]
    job: md-ingest
  - name: nightly
    on: scheduler
    schedule: "0 2 * * *"
    scheduler_job: nightly-@ID@
    job: md-report
"""


class Stack:
    def __init__(
        self,
        function: FunctionServer,
        emulator: Any,
        ledger: Ledger,
        made: tfmodel.Deliveries,
        doc: dict[str, Any],
    ) -> None:
        self.function = function
        self.emulator = emulator
        self.ledger = ledger
        self.made = made
        self.doc = doc

    def context(self) -> str:
        return f"function output:\n{self.function.output()}"

    def launched(self, rule: str) -> list[Any]:
        return [
            r
            for r in self.ledger.list(rule=rule)
            if r.status is Status.LAUNCHED and r.execution is not None
        ]

    def executions(self, job: str) -> list[str]:
        parent = f"projects/{PROJECT}/locations/{REGION}/jobs/{job}"
        client = executions_client(self.emulator.url)
        return [e.name for e in client.list_executions(parent=parent)]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    pubsub: PubSub,
    start_cloud_run_emulator: Callable[..., Any],
    start_function: Callable[..., FunctionServer],
):
    directory = Path(tmp_path_factory.mktemp("module-delivery"))
    jobs_dir = directory / "jobs"
    jobs_dir.mkdir()
    emulator = start_cloud_run_emulator(
        write_probe_jobs_file(jobs_dir, JOBS), directory / "task-logs"
    )
    ident = uuid.uuid4().hex[:8]
    text = RULES.replace("@ID@", ident)
    rules = directory / "rules.yaml"
    rules.write_text(text, encoding="utf-8")
    ledger_path = directory / "ledger.sqlite3"
    # The environment the module gives the function (terraform/function.tf, shared_env),
    # with a local ledger and the Cloud Run emulator.
    function = start_function(
        {
            "TRIGGERS_RULES": str(rules),
            "TRIGGERS_PROJECT": PROJECT,
            "TRIGGERS_REGION": REGION,
            "TRIGGERS_LEDGER": "sqlite",
            "TRIGGERS_SQLITE_PATH": str(ledger_path),
            "TRIGGERS_CLOUD_RUN_ENDPOINT": emulator.url,
            "TRIGGERS_RETRY_AFTER_SECONDS": "1",
        }
    )
    # What the module creates for this rules file, as it reads it (rules_text, YAML 1.1).
    from ruamel.yaml import YAML

    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 1)
    doc = reader.load(tfmodel.rules_text(text, project_id=PROJECT, region=REGION))
    made = tfmodel.deliveries(doc, project_id=PROJECT, region=REGION, function_url=function.url)
    created = []
    for subscription, delivery in made.push_subscriptions.items():
        pubsub.create_topic(delivery["topic"].rsplit("/", 1)[1])
        short = subscription.rsplit("/", 1)[1]
        pubsub.create_push_subscription(
            short, delivery["topic"].rsplit("/", 1)[1], delivery["endpoint"]
        )
        created.append(short)
    try:
        yield Stack(function, emulator, Ledger(SQLiteBackend(ledger_path)), made, doc)
    finally:
        for short in created:  # stop pushing before the function goes away
            pubsub.delete_subscription(short)
        function.stop()
        emulator.stop()


def test_the_module_creates_a_delivery_for_every_rule(stack: Stack) -> None:
    ident = stack.doc["rules"][0]["topic"].removeprefix("orders-")
    topics = sorted({d["topic"] for d in stack.made.push_subscriptions.values()})
    assert topics == [
        f"projects/{PROJECT}/topics/orders-{ident}",
        f"projects/{PROJECT}/topics/refunds-{ident}",
    ]
    # orders: one per-topic subscription and the one audit-orders names.
    assert f"projects/{PROJECT}/subscriptions/orders-audit-{ident}" in stack.made.push_subscriptions
    assert len(stack.made.push_subscriptions) == 3
    assert list(stack.made.storage_sources) == [
        f"uploads-{ident}/google.cloud.storage.object.v1.finalized"
    ]
    assert stack.made.unwired_rules == []


def test_topic_and_subscription_scoped_rules_launch_through_push(
    stack: Stack, pubsub: PubSub
) -> None:
    ident = stack.doc["rules"][0]["topic"].removeprefix("orders-")
    pubsub.publish(f"orders-{ident}", json.dumps({"status": "paid", "order_id": "o-1"}).encode())
    (paid,) = eventually(
        lambda: stack.launched("paid-orders"),
        timeout=DELIVERY_TIMEOUT,
        what="paid-orders (topic: orders) to launch from a pushed message",
        context=stack.context,
    )
    (audit,) = eventually(
        lambda: stack.launched("audit-orders"),
        timeout=DELIVERY_TIMEOUT,
        what="audit-orders (subscription: orders-audit) to launch",
        context=stack.context,
    )
    # Two subscriptions deliver the message; paid-orders matches both deliveries and launches
    # once: the second is counted as a duplicate (the event is the topic's message).
    eventually(
        lambda: stack.ledger.get(paid.key).duplicates >= 1 or None,
        timeout=DELIVERY_TIMEOUT,
        what="the second delivery of the message to paid-orders, counted as a duplicate",
        context=stack.context,
    )
    assert stack.executions("md-orders") == [paid.execution]
    assert stack.executions("md-audit") == [audit.execution]
    assert (
        paid.event["source"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders-{ident}"
    )


def test_a_full_type_rule_launches_through_push(stack: Stack, pubsub: PubSub) -> None:
    ident = stack.doc["rules"][0]["topic"].removeprefix("orders-")
    pubsub.publish(f"refunds-{ident}", b"refund r-1")
    (refund,) = eventually(
        lambda: stack.launched("refunds"),
        timeout=DELIVERY_TIMEOUT,
        what="refunds (on: google.cloud.pubsub.topic.v1.messagePublished) to launch",
        context=stack.context,
    )
    assert stack.executions("md-refunds") == [refund.execution]


def test_storage_and_scheduler_rules_launch_from_their_deliveries(stack: Stack) -> None:
    """What the module's Eventarc storage trigger (matching type and bucket, destination the
    function's service root) and Scheduler job (http_target POST to the function's URL) send."""
    ((key, source),) = stack.made.storage_sources.items()
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    obj = {
        "bucket": source["bucket"],
        "name": "incoming/a.csv",
        "generation": "1733360000000001",
        "metageneration": "1",
        "size": "12",
        "contentType": "text/csv",
        "timeCreated": now,
        "updated": now,
    }
    answer = stack.function.post(
        {
            "ce-specversion": "1.0",
            "ce-id": f"gcs-{uuid.uuid4().hex[:8]}",
            "ce-type": source["type"],
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{source['bucket']}",
            "ce-subject": "objects/incoming/a.csv",
            "ce-time": now,
            "Content-Type": "application/json",
        },
        json.dumps(obj).encode(),
    )
    assert answer.status_code == 200, answer.text
    (upload,) = stack.launched("uploads")
    assert stack.executions("md-ingest") == [upload.execution]

    rule = next(r for r in stack.doc["rules"] if r["name"] == "nightly")
    answer = stack.function.post(
        {
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": rule["scheduler_job"],
            "X-CloudScheduler-ScheduleTime": now,
            "User-Agent": "Google-Cloud-Scheduler",
        },
        b"",
    )
    assert answer.status_code == 200, answer.text
    (tick,) = stack.launched("nightly")
    assert stack.executions("md-report") == [tick.execution]
