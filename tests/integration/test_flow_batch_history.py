"""`triggers runs --batches` and `triggers show` of batches, their members and their runs, from
the command line against the SQLite ledger and the Firestore emulator (configured as the
function would be: TRIGGERS_LEDGER, ...), after a batch was joined and launched for real."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from tests.batching import RecordingRunner, batch_rules
from tests.fakes import storage_event
from tests.integration.conftest import cli_ledger
from triggers.cli import main
from triggers.dispatch import Dispatcher
from triggers.flow.batches import Batches, handle_batch_task
from triggers.flow.queue import MemoryTaskQueue
from triggers.ledger import Ledger
from triggers.ledger.batchstore import batch_store_for

pytestmark = pytest.mark.integration

PROJECT = "demo-triggers-ledger"


@pytest.fixture(params=["sqlite", "firestore"])
def launched(request, tmp_path, monkeypatch):
    """Three events batched (max 3) and the batch launched; yields (store, batch, outcomes)."""
    backend = cli_ledger(request, tmp_path, monkeypatch, PROJECT)
    store = batch_store_for(backend)
    ledger = Ledger(backend, lease=timedelta(minutes=5))
    batches = Batches(store, MemoryTaskQueue(), ledger)
    dispatcher = Dispatcher(batch_rules(max_events=3), ledger, RecordingRunner(), batcher=batches)
    outcomes = [
        dispatcher.dispatch(storage_event(f"in/{i}.csv", f"e-{i}")).outcomes[0] for i in range(3)
    ]
    (batch,) = store.list_batches()
    body = {"kind": "batch", "rule": "ingest", "batch": batch.id}
    status, _ = handle_batch_task(SimpleNamespace(dispatcher=dispatcher), body)
    assert status == 200
    yield store, store.get_batch(batch.id), outcomes
    getattr(backend, "close", lambda: None)()


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_batches_lists_each_batch_with_its_members_and_execution(launched, capsys):
    _, batch, _ = launched
    code, out, err = cli(capsys, "runs", "--batches")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "OPENED", "(UTC)", "RULE", "KEY", "STATUS", "MEMBERS", "TASKS", "EXECUTION", "BATCH",
    ]  # fmt: skip
    assert row.split()[2:] == [
        "ingest", "-", "launched", "3", "2", batch.execution.rsplit("/", 1)[1], batch.id,
    ]  # fmt: skip
    code, out, _ = cli(capsys, "runs", "--batches", "--json")
    (listed,) = json.loads(out)
    assert listed["members"] == list(batch.members) and "token" not in listed


def test_show_of_a_member_adds_its_batch(launched, capsys):
    _, batch, outcomes = launched
    code, out, err = cli(capsys, "show", outcomes[1].ledger_key)
    assert code == 0, err
    assert "status       batched" in out
    assert f"execution    {batch.execution}" in out  # the member points at the execution
    assert f"batch        {batch.id}" in out and "members      3 (at most 3)" in out
    code, out, _ = cli(capsys, "show", "--json", outcomes[1].ledger_key[:12])
    shown = json.loads(out)
    assert shown["batch"] == batch.id and shown["batch_detail"]["status"] == "launched"


def test_show_of_a_batch_id_or_its_run_record(launched, capsys):
    _, batch, outcomes = launched
    code, out, err = cli(capsys, "show", batch.id)
    assert code == 0, err
    assert out.splitlines()[0] == f"batch        {batch.id}"
    assert [line.strip() for line in out.splitlines()[-3:]] == list(batch.members)
    code, out, _ = cli(capsys, "show", batch.run)
    assert f"dedup key    batch/{batch.id}" in out and "status       launched" in out
    assert f"batch        {batch.id}" in out
