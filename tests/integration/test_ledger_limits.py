"""The largest record the limits let through fits a Firestore document (the emulator).

Poison must be refused before it reaches the ledger (triggers/events/_storable.py, the planner
in triggers/rules/rule.py), because a record Firestore refuses is a failed claim: a 503, and a
redelivery until the message expires. This checks the sum of the limits against the store: an
event attribute of 2 KiB each, a dedup key of 4 KiB, args and env of 512 KiB, an event document
just under the ledger's 256 KiB, a reason of 2,000 characters; and that the emulator does refuse
a document over Firestore's 1 MiB, so that passing means something.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from triggers.events._storable import MAX_ATTRIBUTE_BYTES
from triggers.events.model import STORAGE_FINALIZED, EventRef
from triggers.ledger.base import Ledger, Status
from triggers.ledger.firestore import FirestoreBackend
from triggers.ledger.records import MAX_REASON_CHARS
from triggers.plan import Overrides, RunRequest
from triggers.rules.rule import MAX_DEDUP_KEY_BYTES, MAX_RUN_OVERRIDES_BYTES

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def backend(firestore_client):
    return FirestoreBackend(firestore_client, collection=f"limits-{uuid.uuid4().hex[:12]}")


def largest_request() -> RunRequest:
    # Multi-byte text, so that the byte limits (not character counts) are what is filled.
    arg = "é" * ((MAX_RUN_OVERRIDES_BYTES - 1024) // 2 // 2)
    return RunRequest(
        rule="r" * 63,
        job="projects/demo-project/locations/europe-west1/jobs/" + "j" * 63,
        overrides=Overrides(args=(arg, arg), env=(("A", "x" * 1000),)),
        dedup_key="k" * MAX_DEDUP_KEY_BYTES,
        dedup_window_seconds=3600,
        event=EventRef(
            id="i" * MAX_ATTRIBUTE_BYTES,
            source="s" * MAX_ATTRIBUTE_BYTES,
            type=STORAGE_FINALIZED,
            kind="storage",
            form="cloudevent-binary",
        ),
    )


def test_the_largest_record_the_limits_allow_is_written_and_read_back(backend):
    ledger = Ledger(backend, clock=lambda: T0)
    document = {"data": {"text": "d" * (ledger.max_event_bytes - 1024)}}
    claim = ledger.claim(largest_request(), document)
    assert claim.record.event_document is not None  # kept: it is within the ledger's limit
    assert ledger.rejected(claim, "why " * MAX_REASON_CHARS)
    stored = backend.get(claim.record.key)
    assert stored.status is Status.REJECTED and len(stored.reason) == MAX_REASON_CHARS
    assert stored.request == claim.record.request
    assert stored.event_document == document


def test_the_emulator_refuses_a_document_over_firestores_limit(backend):
    ledger = Ledger(backend, clock=lambda: T0)
    request = largest_request()
    record = ledger.claim(request).record
    too_large = replace(
        record,
        key="f" * 64,
        token=uuid.uuid4().hex,
        # Two fields under Firestore's limit for one string (1,048,487 bytes), over 1 MiB together.
        request={"overrides": {"containerOverrides": [{"args": ["x" * (600 * 1024)]}]}},
        event_document={"data": "y" * (600 * 1024)},
        lease_until=T0 + timedelta(minutes=9),
    )
    with pytest.raises(Exception) as info:
        backend.create(too_large)
    # InvalidArgument "maximum entity size is 1048576 bytes"
    assert getattr(info.value, "code", None) == 400, repr(info.value)
    assert "1048576" in str(info.value)
