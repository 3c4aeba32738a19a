"""How a ledger record lies in Firestore (the emulator): `event`, `request` and `event_document`
as JSON text, and records written by earlier releases (`event` and `request` as maps) still
read back the same.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import storage_event
from triggers.ledger.base import Ledger, RecordExists, Status
from triggers.ledger.firestore import FirestoreBackend
from triggers.plan import Overrides, RunRequest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def backend(firestore_client):
    return FirestoreBackend(firestore_client, collection=f"format-{uuid.uuid4().hex[:12]}")


def request() -> RunRequest:
    event = storage_event()
    return RunRequest(
        rule="load",
        job="projects/demo-project/locations/europe-west1/jobs/loader",
        overrides=Overrides(args=("--object=a.csv",), env=(("EMPTY", ""),), task_count=2),
        dedup_key=event.default_dedup_key,
        dedup_window_seconds=3600,
        event=event.ref,
    )


def test_the_event_the_request_and_the_document_are_stored_as_json_text(backend):
    ledger = Ledger(backend, clock=lambda: T0)
    document = {"data": {"nested": [[1, 2], {"": "empty key", "__x__": None}]}}
    claim = ledger.claim(request(), document)
    assert ledger.launched(claim, "projects/p/locations/r/jobs/loader/executions/e-1")
    raw = backend.client.collection(backend.collection).document(claim.record.key).get().to_dict()
    for name in ("event", "request", "event_document"):
        assert isinstance(raw[name], str), name
    assert json.loads(raw["request"]) == request().request_body()
    assert raw["event_id"] == "e-1"  # the queried copy stays a top-level string
    stored = backend.get(claim.record.key)
    assert stored.event == claim.record.event and stored.request == request().request_body()
    assert stored.event_document == document and stored.status is Status.LAUNCHED


def test_a_record_written_with_maps_by_an_earlier_release_reads_back(backend):
    # GIVEN a document as releases before 2026-12 wrote it: `event` and `request` as maps
    ledger = Ledger(backend, clock=lambda: T0)
    claim = ledger.claim(request(), {"data": {"name": "a.csv"}})
    ref = backend.client.collection(backend.collection).document(claim.record.key)
    ref.update({"event": claim.record.event, "request": request().request_body()})
    assert isinstance(ref.get().to_dict()["request"], dict)
    # WHEN it is read THEN it is the same record
    stored = backend.get(claim.record.key)
    assert stored.event == claim.record.event
    assert stored.request == request().request_body()
    # and the ledger goes on with it: a redelivery after launch is a duplicate
    assert ledger.launched(claim, "projects/p/locations/r/jobs/loader/executions/e-1")
    again = ledger.claim(request(), None)
    assert again.kind.value == "duplicate"
    assert again.record.execution.endswith("/e-1")


def test_a_new_claim_writes_only_the_fields_that_hold_something(backend):
    # Fields without a value or with their default are left out of a whole-record write (each
    # is a value the client encodes and an index entry Firestore writes) and read back the same.
    ledger = Ledger(backend, clock=lambda: T0)
    event = storage_event()
    claim = ledger.claim(request(), {"data": {"name": "a.csv"}})
    raw = backend.client.collection(backend.collection).document(claim.record.key).get().to_dict()
    assert sorted(raw) == sorted(
        ["rule", "dedup_key", "job", "status", "token", "event", "created_at", "updated_at"]
        + ["lease_until", "expire_at", "event_document", "event_id", "request"]
    )
    assert event.id == raw["event_id"]
    stored = backend.get(claim.record.key)
    assert (stored.attempts, stored.duplicates, stored.ambiguous) == (1, 0, False)
    assert stored == claim.record


def test_a_duplicates_conflict_read_brings_every_summary_field_and_none_of_the_big_ones(backend):
    # GIVEN a record with every field set, written through the ledger's own writes
    ledger = Ledger(backend, clock=lambda: T0)
    claim = ledger.claim(request(), {"data": {"name": "a.csv"}})
    assert ledger.hold(claim, "jobs.run timed out", hold=timedelta(seconds=90))
    full = replace(
        backend.get(claim.record.key),
        status=Status.LAUNCHED,
        execution="projects/p/locations/r/jobs/loader/executions/e-7",
        operation="projects/p/locations/r/operations/op-7",
        attempts=3,
        duplicates=4,
        task="projects/p/locations/r/queues/q/tasks/t-7",
        batch="batch-7",
        outcome={"outcome": "succeeded", "tasks": {"succeeded": 2}},
        updated_at=datetime(2026, 12, 1, 12, 0, 1, 654321, tzinfo=UTC),
    )
    assert backend.replace(full, full.token)
    # WHEN another claim of the same key conflicts
    backend.rpcs.clear()
    with pytest.raises(RecordExists) as raised:
        backend.create(replace(full, token="other"))
    # THEN one masked unary read brought the summary: every field a decision or an answer
    # needs, microseconds and all, and not the event, request, document or outcome
    assert raised.value.record == replace(
        full, event={}, request={}, event_document=None, outcome=None
    )
    assert backend.rpcs == {"commit": 1, "read": 1}


def test_a_conflict_with_a_record_deleted_since_reads_nothing(backend):
    # The record can vanish between the failed create and the read (a TTL): the read says so.
    assert backend._raw().get("0" * 64, ["status"]) is None
