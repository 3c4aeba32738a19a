"""Every sample event in config/events decodes, to the values the sample rules rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from triggers.events import (
    PUBSUB_PUBLISHED,
    SCHEDULER_EXECUTED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    decode,
    parse_event_file,
)

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
FILES = sorted(EVENTS.glob("*.json"))

# file -> (kind, form)
EXPECTED = {
    "storage-finalized.cloudevent-binary.json": ("storage", "cloudevent-binary"),
    "storage-finalized.cloudevent-structured.json": ("storage", "cloudevent-structured"),
    "storage-finalized.notification.json": ("storage", "storage-notification"),
    "storage-deleted.notification-none.json": ("storage", "storage-notification"),
    "pubsub-order.cloudevent-binary.json": ("pubsub", "cloudevent-binary"),
    "pubsub-order.push.json": ("pubsub", "pubsub-push"),
    "pubsub-order.push-snake.json": ("pubsub", "pubsub-push"),
    "scheduler-nightly.http.json": ("scheduler", "scheduler-http"),
    "scheduler-nightly.pubsub.json": ("scheduler", "scheduler-pubsub"),
    "generic-custom.cloudevent-structured.json": ("generic", "cloudevent-structured"),
    "storage-landing-1.cloudevent-binary.json": ("storage", "cloudevent-binary"),
    "storage-landing-2.cloudevent-structured.json": ("storage", "cloudevent-structured"),
    "storage-landing-3.notification.json": ("storage", "storage-notification"),
}
ORDER = {"order_id": "A-1001", "status": "paid", "amount": 42.5}
OBJECT_NAME = "incoming/2026/11/21/orders.csv"


def load(name):
    path = EVENTS / name
    return decode(*parse_event_file(path.read_text(encoding="utf-8"), str(path)))


def test_the_expected_files_exist():
    assert {path.name for path in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_sample_decodes(path):
    event = decode(*parse_event_file(path.read_text(encoding="utf-8"), str(path)))
    assert (event.kind, event.form) == EXPECTED[path.name]


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("storage-finalized")])
def test_storage_finalized_samples(name):
    event = load(name)
    assert event.type == STORAGE_FINALIZED
    assert event.source == "//storage.googleapis.com/projects/_/buckets/raw-data"
    assert event.subject == f"objects/{OBJECT_NAME}"
    assert event.data["bucket"] == "raw-data"
    assert event.data["name"] == OBJECT_NAME
    assert event.data["generation"] == 1763683200000000
    assert event.data["size"] == 52311
    assert event.data["contentType"] == "text/csv"


def test_storage_finalized_samples_agree():
    events = [load(n) for n in EXPECTED if n.startswith("storage-finalized")]
    assert len({repr(e.data) for e in events}) == 1


def test_storage_deleted_sample():
    event = load("storage-deleted.notification-none.json")
    assert event.type == STORAGE_DELETED
    assert event.data == {"bucket": "raw-data", "name": OBJECT_NAME, "generation": 1763683200000000}


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("pubsub-order")])
def test_pubsub_samples(name):
    event = load(name)
    assert event.type == PUBSUB_PUBLISHED
    assert event.data["message"]["json"] == ORDER
    assert event.data["message"]["attributes"] == {"kind": "order"}
    assert event.data["subscription"] == "projects/demo-project/subscriptions/orders-push"


def test_pubsub_eventarc_sample_names_the_topic():
    event = load("pubsub-order.cloudevent-binary.json")
    assert event.data["topic"] == "projects/demo-project/topics/orders"
    assert event.source == "//pubsub.googleapis.com/projects/demo-project/topics/orders"


@pytest.mark.parametrize("name", [n for n in EXPECTED if n.startswith("scheduler-")])
def test_scheduler_samples(name):
    event = load(name)
    assert event.type == SCHEDULER_EXECUTED
    assert event.data["job_name"] == "nightly-report"
    assert event.data["schedule_time"] == "2026-11-21T02:00:00Z"
    assert event.data["schedule_time_inferred"] is False
    assert event.dedup_hint == "nightly-report#2026-11-21T02:00:00Z"


def test_generic_sample():
    event = load("generic-custom.cloudevent-structured.json")
    assert event.type == "com.example.order.v1.created"
    assert event.data == ORDER
    assert event.document["tenant"] == "acme"


def test_landing_samples_are_three_distinct_objects_of_the_landing_bucket():
    # the demo sends them to the batched rule `landing-batch`: one batch of three members
    events = [load(n) for n in EXPECTED if n.startswith("storage-landing")]
    assert all(e.type == STORAGE_FINALIZED and e.data["bucket"] == "landing" for e in events)
    assert [e.data["name"] for e in events] == [
        f"drop/2026/11/21/part-000{i}.parquet" for i in (1, 2, 3)
    ]
    assert len({e.id for e in events}) == 3
