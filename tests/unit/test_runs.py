"""Run history: `--since` and `--status` parsing, the table, the JSON, and `triggers runs`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from triggers.cli import main
from triggers.ledger.base import Record, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.runs import as_json, parse_since, parse_statuses, table

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
EXECUTIONS = "projects/demo-project/locations/europe-west1/jobs/{job}/executions/{job}-{suffix}"


def record(
    rule: str = "csv-ingest",
    *,
    key: str | None = None,
    status: Status = Status.LAUNCHED,
    created: datetime = NOW,
    updated: datetime | None = None,
    event_id: str = "9876543210123456",
    job: str = "csv-loader",
    execution: str | None = "ab1cd",
    reason: str | None = None,
    attempts: int = 1,
    duplicates: int = 0,
) -> Record:
    return Record(
        key=key or f"{rule}-{event_id}-{created.isoformat()}",
        rule=rule,
        dedup_key=f"dedup-{event_id}",
        job=f"projects/demo-project/locations/europe-west1/jobs/{job}",
        status=status,
        token="secret-token",
        event={"id": event_id, "source": "//somewhere", "type": "some.type"},
        request={"overrides": {}},
        created_at=created,
        updated_at=updated or created + timedelta(milliseconds=300),
        lease_until=created,
        expire_at=created + timedelta(days=7),
        attempts=attempts,
        duplicates=duplicates,
        execution=EXECUTIONS.format(job=job, suffix=execution) if execution else None,
        reason=reason,
        event_document={"big": "x" * 100},
    )


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, delta",
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        (" 2D ", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_since_a_duration_before_now(text, delta):
    assert parse_since(text, NOW) == NOW - delta


def test_since_an_iso_time():
    assert parse_since("2026-11-21T10:00:00Z", NOW) == datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
    assert parse_since("2026-11-21", NOW) == datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert parse_since("2026-11-21T11:00:00+01:00", NOW) == NOW - timedelta(hours=2)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h"])
def test_since_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="30m, 1h, 2d, 1w"):
        parse_since(text, NOW)


def test_statuses_comma_separated_and_repeated():
    assert parse_statuses(["launched,rejected", " Failed "]) == [
        Status.LAUNCHED, Status.REJECTED, Status.FAILED,
    ]
    assert parse_statuses([]) == []
    with pytest.raises(ValueError, match="--status 'done': use one of claimed, launched"):
        parse_statuses(["launched,done"])


# -- the table ----------------------------------------------------------------------------------


def test_table_columns_and_values():
    lines = table(
        [
            record("paid-orders", job="orders-processor", event_id="1234567890123", attempts=2,
                   duplicates=3, updated=NOW + timedelta(minutes=5)),
            record(created=NOW - timedelta(minutes=1)),
        ]
    )
    assert lines[0].split() == [
        "CREATED", "(UTC)", "RULE", "STATUS", "EXECUTION", "ATT", "DUP", "UPDATED", "EVENT",
    ]
    assert lines[1].split() == [
        "11-21", "12:00:00", "paid-orders", "launched", "orders-processor-ab1cd", "2", "3", "+5m",
        "1234567890123",
    ]
    assert lines[2].split()[2:] == [
        "csv-ingest", "launched", "csv-loader-ab1cd", "1", "0", "+0.3s", "9876543210123456",
    ]
    # Columns line up: every value starts under its title.
    for title in ("RULE", "STATUS", "EXECUTION", "EVENT"):
        column = lines[0].index(title)
        assert lines[1][column - 1] == " " and lines[1][column] != " "


def test_a_reason_goes_on_its_own_line_under_the_record():
    lines = table(
        [record(status=Status.REJECTED, execution=None, reason="template error at rules.yaml:12")]
    )
    assert lines[1].split()[3:5] == ["rejected", "-"]
    assert lines[2].strip() == "template error at rules.yaml:12"
    assert lines[2].startswith(" " * 16)


def test_records_of_undecodable_input_have_no_event_id():
    # Ledger.reject_input keeps a summary of the request where an event reference would be.
    bad = replace(
        record("(input)", execution=None, status=Status.REJECTED, reason="unrecognised: ..."),
        event={"content_type": "text/plain", "bytes": 3},
    )
    line = table([bad])[1]
    assert line.split()[2] == "(input)" and line.split()[-1] == "-"


@pytest.mark.parametrize("width", [100, 90, 80])
def test_long_values_are_cut_to_fit_keeping_the_tail_of_ids(width):
    long_rule = "a-very-long-rule-name-for-the-nightly-report-of-everything"
    tick = "nightly-report-of-everything#2026-11-21T01:00:00Z"
    lines = table(
        [
            record(long_rule, job="nightly-report-of-everything", event_id=tick,
                   reason="x" * 300, duplicates=12345),
        ],
        width=width,
    )
    assert all(len(line) <= width for line in lines), [len(line) for line in lines]
    row = lines[1]
    assert "…" in row
    assert "01:00:00Z" in row  # an id keeps its tail, where ticks differ
    assert "a-very-l" in row  # a name keeps its head
    assert "12345" in row  # numbers are never cut
    assert lines[2].endswith("…")


def test_a_table_with_nothing_says_so():
    assert table([]) == ["no runs recorded"]


def test_json_drops_the_token_and_the_event_copy():
    out = as_json(record(reason="r"))
    assert "token" not in out and "event_document" not in out and "lease_until" not in out
    assert out["created_at"] == "2026-11-21T12:00:00+00:00"
    assert out["status"] == "launched"
    assert out["execution"].endswith("/executions/csv-loader-ab1cd")
    json.dumps(out)


# -- `triggers runs` ------------------------------------------------------------------------


@pytest.fixture
def ledger_file(tmp_path, monkeypatch):
    for name in ("TRIGGERS_LEDGER", "TRIGGERS_SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ledger.sqlite3"
    backend = SQLiteBackend(path)
    now = datetime.now(timezone.utc)
    backend.create(record("csv-ingest", created=now - timedelta(days=3), event_id="old"))
    backend.create(record("paid-orders", job="orders-processor", created=now - timedelta(minutes=30),
                          event_id="1234567890123"))
    backend.create(record("csv-deleted", status=Status.REJECTED, execution=None,
                          created=now - timedelta(minutes=5), event_id="11223344556688",
                          reason="job csv-loader does not exist"))
    backend.close()
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_lists_newest_first(ledger_file, capsys):
    code, out, _ = run(capsys, "runs", "--sqlite-path", str(ledger_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("CREATED (UTC)")
    assert [line.split()[2] for line in lines[1:] if line[:1].isdigit()] == [
        "csv-deleted", "paid-orders", "csv-ingest",
    ]
    assert "job csv-loader does not exist" in lines[2]


def test_runs_filters(ledger_file, capsys):
    def rules(*argv):
        code, out, _ = run(capsys, "runs", "--sqlite-path", str(ledger_file), "--json", *argv)
        assert code == 0
        return [r["rule"] for r in json.loads(out)]

    assert rules() == ["csv-deleted", "paid-orders", "csv-ingest"]
    assert rules("--rule", "paid-orders") == ["paid-orders"]
    assert rules("--status", "rejected") == ["csv-deleted"]
    assert rules("--status", "launched", "--status", "failed") == ["paid-orders", "csv-ingest"]
    assert rules("--since", "1h") == ["csv-deleted", "paid-orders"]
    assert rules("--since", "10m") == ["csv-deleted"]
    assert rules("--limit", "1") == ["csv-deleted"]


def test_runs_json_is_one_array_of_records(ledger_file, capsys):
    code, out, _ = run(capsys, "runs", "--sqlite-path", str(ledger_file), "--json")
    records = json.loads(out)
    assert code == 0 and isinstance(records, list) and len(records) == 3
    assert records[0]["event"]["id"] == "11223344556688"
    assert records[0]["reason"] == "job csv-loader does not exist"
    assert "token" not in records[0]


def test_runs_reads_the_functions_settings(ledger_file, capsys, monkeypatch):
    monkeypatch.setenv("TRIGGERS_SQLITE_PATH", str(ledger_file))
    code, out, _ = run(capsys, "runs", "--rule", "paid-orders")
    assert code == 0 and "orders-processor-ab1cd" in out


def test_runs_without_a_ledger_file_says_where_it_looked(tmp_path, capsys):
    missing = tmp_path / "nothing.sqlite3"
    code, _, err = run(capsys, "runs", "--sqlite-path", str(missing))
    assert code == 2
    assert f"no ledger at {missing}" in err and "triggers serve" in err
    assert not missing.exists()  # looking must not create an empty ledger


def test_runs_refuses_a_memory_ledger_and_bad_filters(ledger_file, capsys, monkeypatch):
    monkeypatch.setenv("TRIGGERS_LEDGER", "memory")
    code, _, err = run(capsys, "runs")
    assert code == 2 and "memory ledger" in err
    monkeypatch.delenv("TRIGGERS_LEDGER")
    code, _, err = run(capsys, "runs", "--sqlite-path", str(ledger_file), "--since", "soon")
    assert code == 2 and "--since 'soon'" in err
    code, _, err = run(capsys, "runs", "--sqlite-path", str(ledger_file), "--status", "nope")
    assert code == 2 and "--status 'nope'" in err
