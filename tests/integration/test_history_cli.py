"""`triggers runs` filters and `triggers show` from the command line, against the SQLite ledger
and the Firestore emulator, configured as the function would be (TRIGGERS_LEDGER, ...)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import cli_ledger
from triggers.cli import main
from triggers.ledger.base import Record, Status
from triggers.ops.history import record_json

pytestmark = pytest.mark.integration

PROJECT = "demo-triggers-ledger"  # the project of the session's `firestore_client`
JOB = "projects/demo-project/locations/europe-west1/jobs/{job}"


def make(
    key: str,
    rule: str,
    event_id: str,
    minutes_ago: int,
    execution: str | None,
    status: Status = Status.LAUNCHED,
) -> Record:
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    job = JOB.format(job=rule)
    return Record(
        key=key,
        rule=rule,
        dedup_key=f"{rule}/{event_id}",
        job=job,
        status=status,
        token=uuid.uuid4().hex,
        event={
            "id": event_id,
            "source": "//pubsub.googleapis.com/projects/p/topics/t",
            "type": "t",
        },
        request={
            "overrides": {
                "containerOverrides": [{"env": [{"name": "TRIGGERS_RUN_KEY", "value": key}]}]
            }
        },
        created_at=created,
        updated_at=created,
        lease_until=created,
        expire_at=created + timedelta(days=7),
        execution=None if execution is None else f"{job}/executions/{execution}",
        event_document={"message": {"data": "e30=", "attributes": {"k": "v"}}},
    )


RECORDS = [
    make("aaaaaaaa11" + "0" * 54, "load", "ev-1", 180, "load-aaaaa"),
    make("aaaaaaaa22" + "0" * 54, "audit", "ev-1", 120, "audit-bbbbb"),
    make("bbbbbbbb33" + "0" * 54, "load", "ev-2", 30, None, Status.REJECTED),
]


@pytest.fixture(params=["sqlite", "firestore"])
def ledger_env(request, tmp_path, monkeypatch):
    """The ledger the CLI finds through TRIGGERS_*; RECORDS are in it."""
    backend = cli_ledger(request, tmp_path, monkeypatch, PROJECT)
    for record in RECORDS:
        backend.create(replace(record, execution=None))
        if record.execution:  # as the function records it: claimed, then launched
            assert backend.update(record.key, record.token, {"execution": record.execution})
    yield backend
    getattr(backend, "close", lambda: None)()


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, *argv: str) -> list[str]:
    code, out, err = cli(capsys, "runs", "--json", *argv)
    assert code == 0, err
    return [r["key"][:10] for r in json.loads(out)]


def test_runs_filters(ledger_env, capsys):
    assert listed(capsys) == ["bbbbbbbb33", "aaaaaaaa22", "aaaaaaaa11"]
    assert listed(capsys, "--event", "ev-1") == ["aaaaaaaa22", "aaaaaaaa11"]
    assert listed(capsys, "--event", "ev-1", "--rule", "load") == ["aaaaaaaa11"]
    assert listed(capsys, "--event", "ev-1", "--since", "150m") == ["aaaaaaaa22"]
    assert listed(capsys, "--event", "ev-1", "--limit", "1") == ["aaaaaaaa22"]
    assert listed(capsys, "--event", "ev-2", "--status", "launched") == []
    assert listed(capsys, "--execution", "audit-bbbbb") == ["aaaaaaaa22"]
    assert listed(capsys, "--execution", JOB.format(job="load") + "/executions/load-aaaaa") == [
        "aaaaaaaa11"
    ]
    assert listed(capsys, "--execution", JOB.format(job="audit") + "/executions/load-aaaaa") == []
    assert listed(capsys, "--until", "1h") == ["aaaaaaaa22", "aaaaaaaa11"]
    assert listed(capsys, "--since", "150m", "--until", "1h") == ["aaaaaaaa22"]


def test_show_by_key_and_by_prefix(ledger_env, capsys):
    record = RECORDS[1]
    code, out, err = cli(capsys, "show", record.key)
    assert code == 0, err
    assert out.splitlines()[:3] == [
        f"key          {record.key}",
        "rule         audit",
        "status       launched",
    ]
    assert f"execution    {record.execution}" in out and '"attributes": {' in out
    assert cli(capsys, "show", "aaaaaaaa2") == (0, out, "")
    code, out, _ = cli(capsys, "show", "--json", "aaaaaaaa22")
    assert json.loads(out) == record_json(ledger_env.get(record.key))
    code, _, err = cli(capsys, "show", "aaaaaaaa")
    assert code == 2 and RECORDS[0].key in err and RECORDS[1].key in err
    code, _, err = cli(capsys, "show", "cccccccc")
    assert code == 1 and "no record with key cccccccc" in err
