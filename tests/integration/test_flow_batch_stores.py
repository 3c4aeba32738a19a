"""Batch stores on every backend (memory, SQLite, the Firestore emulator), and manifests as
objects on fake-gcs-server: the primitives batching's algorithm relies on, then the algorithm
itself under threads on the real stores."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.batching import a_batch as make_batch
from tests.batching import batch_rules
from tests.fakes import storage_event
from triggers.dispatch import Dispatcher, Outcome
from triggers.flow.batches import Batches
from triggers.flow.batching import Batch, Cursor
from triggers.flow.manifest import (
    MANIFEST_URI_ENV,
    ManifestError,
    ManifestWriter,
    build_manifest,
    read_slice,
)
from triggers.flow.queue import MemoryTaskQueue
from triggers.ledger import Ledger, Status
from triggers.ledger.batchstore import batch_store_for
from triggers.ledger.firestore import FirestoreBackend
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.runners.dryrun import DryRunRunner

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "firestore"])
def backend(request, tmp_path):
    if request.param == "memory":
        yield MemoryBackend()
    elif request.param == "sqlite":
        with SQLiteBackend(tmp_path / "ledger.sqlite3") as sqlite:
            yield sqlite
    else:
        client = request.getfixturevalue("firestore_client")
        yield FirestoreBackend(client, collection=f"runs-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(backend):
    return batch_store_for(backend)


def a_batch(batch_id: str = "abc-g1-0", **changes) -> Batch:
    return make_batch(batch_id, T0, **changes)


def test_a_batch_round_trips_and_a_second_create_of_its_id_loses(store):
    batch = a_batch(sealed_at=T0, reason="é ✓")
    assert store.create_batch(batch)
    assert store.get_batch(batch.id) == batch
    assert not store.create_batch(a_batch(members=("other",)))
    assert store.get_batch(batch.id).members == ("k1",)
    assert store.get_batch("missing") is None


def test_replace_is_compare_and_set_on_the_token(store):
    batch = a_batch()
    store.create_batch(batch)
    grown = replace(batch, members=("k1", "k2"), token="t2")
    assert store.replace_batch(grown, batch.token)
    stale = replace(batch, members=("k1", "k3"), token="t3")
    assert not store.replace_batch(stale, batch.token)
    assert store.get_batch(batch.id).members == ("k1", "k2")
    assert not store.replace_batch(a_batch("missing"), "t")


def test_cursors_are_created_once_and_replaced_by_token(store):
    cursor = Cursor("ingest", "raw", "g1", 0, "t1", T0)
    assert store.create_cursor(cursor)
    assert not store.create_cursor(replace(cursor, generation="g2"))
    assert store.get_cursor("ingest", "raw").generation == "g1"
    assert store.replace_cursor(replace(cursor, seq=4, token="t2"), "t1")
    assert not store.replace_cursor(replace(cursor, seq=9, token="t3"), "t1")
    assert store.get_cursor("ingest", "raw").seq == 4
    assert store.get_cursor("ingest", "other") is None


def test_batches_are_listed_newest_first_by_rule(store):
    for i in range(3):
        store.create_batch(a_batch(f"b-{i}", opened_at=T0 + timedelta(seconds=i)))
    store.create_batch(a_batch("x-0", rule="other", opened_at=T0 + timedelta(hours=1)))
    store.create_cursor(Cursor("ingest", "raw", "g1", 0, "t1", T0))  # never listed
    assert [b.id for b in store.list_batches(rule="ingest")] == ["b-2", "b-1", "b-0"]
    assert [b.id for b in store.list_batches(limit=2)] == ["x-0", "b-2"]


def test_members_threads_join_exactly_once_on_the_real_store(backend, store):
    """Six function instances' worth of threads, one batch key, batches of 7."""
    ledger = Ledger(backend, lease=timedelta(minutes=5))
    rules = batch_rules(max_events=7)
    queue = MemoryTaskQueue()
    instances = [
        Dispatcher(rules, ledger, DryRunRunner(), batcher=Batches(store, queue, ledger))
        for _ in range(6)
    ]

    def send(i: int):
        event = storage_event(f"in/{i}.csv", f"e-{i}")
        return instances[i % 6].dispatch(event).outcomes[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(send, range(60)))
        # Contention may make a member answer retry (Firestore aborts contended transactions):
        # the sender redelivers, as Pub/Sub would, until every event is decided.
        for _ in range(10):
            again = [i for i, o in enumerate(outcomes) if o.outcome is Outcome.RETRY]
            if not again:
                break
            reasons = {o.reason for o in outcomes if o.outcome is Outcome.RETRY}
            assert all("contended" in r or "kept changing" in r for r in reasons), reasons
            for i, outcome in zip(again, pool.map(send, again), strict=True):
                outcomes[i] = outcome
    assert {o.outcome for o in outcomes} == {Outcome.BATCHED}
    batches = store.list_batches(limit=100)
    members = [m for b in batches for m in b.members]
    assert sorted(members) == sorted(o.ledger_key for o in outcomes)  # once each
    assert sorted(len(b.members) for b in batches) == [4] + [7] * 8
    records = store.get_records(members)
    assert len(records) == 60
    owner = {m: b.id for b in batches for m in b.members}
    assert all(r.status is Status.BATCHED and r.batch == owner[k] for k, r in records.items())
    timers = {t.name for t in queue.tasks if t.name.startswith("b-")}
    assert timers == {f"b-{b.id}" for b in batches}


# -- manifests on fake-gcs-server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(storage_client):
    name = f"manifests-{uuid.uuid4().hex[:8]}"
    storage_client.create_bucket(name)
    return name


def test_a_large_manifest_is_an_object_whose_uri_the_tasks_read(storage_client, bucket):
    members = [
        {"ledger_key": f"k{i}", "event": {"data": {"i": i, "pad": "x" * 100}}} for i in range(400)
    ]
    manifest = build_manifest("b-big-0", "ingest", "raw", members, 4)
    writer = ManifestWriter(bucket=bucket, storage_client=storage_client)
    env = dict(writer.write(manifest))
    assert env == {MANIFEST_URI_ENV: f"gs://{bucket}/triggers/batches/b-big-0.json"}
    seen = []
    for index in range(4):
        task_env = {**env, "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_COUNT": "4"}
        seen += [
            m["event"]["data"]["i"] for m in read_slice(task_env, storage_client=storage_client)
        ]
    assert seen == list(range(400))
    # a retried batch task writes the same object again: same name, same content
    assert dict(writer.write(manifest)) == env


def test_an_unwritable_bucket_is_a_manifest_error_to_retry(storage_client):
    members = [{"ledger_key": f"k{i}", "event": {"pad": "x" * 100}} for i in range(400)]
    writer = ManifestWriter(bucket=f"no-such-{uuid.uuid4().hex[:8]}", storage_client=storage_client)
    with pytest.raises(ManifestError, match="cannot write gs://"):
        writer.write(build_manifest("b-x-0", "ingest", "", members, 1))
