"""Run history: `--since` and `--status` parsing, the table, the JSON, and `triggers runs`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from triggers.cli import main
from triggers.ledger.base import Record, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.history import (
    as_json,
    detail,
    parse_since,
    parse_statuses,
    parse_window,
    record_json,
    table,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
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
    assert parse_since("2026-11-21T10:00:00Z", NOW) == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert parse_since("2026-11-21", NOW) == datetime(2026, 11, 21, tzinfo=UTC)
    assert parse_since("2026-11-21T11:00:00+01:00", NOW) == NOW - timedelta(hours=2)


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h"])
def test_since_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="30m, 1h, 2d, 1w"):
        parse_since(text, NOW)


def test_statuses_comma_separated_and_repeated():
    assert parse_statuses(["launched,rejected", " Failed "]) == [
        Status.LAUNCHED,
        Status.REJECTED,
        Status.FAILED,
    ]
    assert parse_statuses([]) == []
    with pytest.raises(ValueError, match="--status 'done': use one of claimed, launched"):
        parse_statuses(["launched,done"])


# -- the table ----------------------------------------------------------------------------------


def test_table_columns_and_values():
    lines = table(
        [
            record(
                "paid-orders",
                job="orders-processor",
                event_id="1234567890123",
                attempts=2,
                duplicates=3,
                updated=NOW + timedelta(minutes=5),
            ),
            record(created=NOW - timedelta(minutes=1)),
        ]
    )
    assert lines[0].split() == [
        "CREATED",
        "(UTC)",
        "RULE",
        "STATUS",
        "EXECUTION",
        "ATT",
        "DUP",
        "UPDATED",
        "EVENT",
    ]
    assert lines[1].split() == [
        "11-21",
        "12:00:00",
        "paid-orders",
        "launched",
        "orders-processor-ab1cd",
        "2",
        "3",
        "+5m",
        "1234567890123",
    ]
    assert lines[2].split()[2:] == [
        "csv-ingest",
        "launched",
        "csv-loader-ab1cd",
        "1",
        "0",
        "+0.3s",
        "9876543210123456",
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
            record(
                long_rule,
                job="nightly-report-of-everything",
                event_id=tick,
                reason="x" * 300,
                duplicates=12345,
            ),
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
    now = datetime.now(UTC)
    backend.create(record("csv-ingest", created=now - timedelta(days=3), event_id="old"))
    backend.create(
        record(
            "paid-orders",
            job="orders-processor",
            created=now - timedelta(minutes=30),
            event_id="1234567890123",
        )
    )
    backend.create(
        record(
            "csv-deleted",
            status=Status.REJECTED,
            execution=None,
            created=now - timedelta(minutes=5),
            event_id="11223344556688",
            reason="job csv-loader does not exist",
        )
    )
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
        "csv-deleted",
        "paid-orders",
        "csv-ingest",
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


# -- --until, --event, --execution, --keys ------------------------------------------------------


def test_until_takes_the_forms_of_since_and_must_come_after_it():
    assert parse_window(None, None, NOW) == (None, None)
    assert parse_window("2h", "1h", NOW) == (NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert parse_window(None, "2026-11-21T10:00:00", NOW) == (
        None,
        datetime(2026, 11, 21, 10, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="--until 'later': use a duration before now"):
        parse_window("1h", "later", NOW)
    with pytest.raises(
        ValueError,
        match=r"--since '1h' \(2026-11-21T11:00:00Z\) is not before"
        r" --until '2h' \(2026-11-21T10:00:00Z\)",
    ):
        parse_window("1h", "2h", NOW)
    with pytest.raises(ValueError, match="is not before"):
        parse_window("1h", "1h", NOW)


def test_table_with_keys_begins_each_record_with_its_key():
    records = [
        record(key="0123456789abcdef" * 4, reason="quota exceeded"),
        record(key="fedcba9876543210" * 4, created=NOW - timedelta(minutes=1)),
    ]
    # The key and its gap take 10 of the 100 columns.
    plain, keyed = table(records, width=90), table(records, width=100, keys=True)
    assert keyed[0].split()[:3] == ["KEY", "CREATED", "(UTC)"]
    assert keyed[1].startswith("01234567  11-21 12:00:00  csv-ingest")
    assert keyed[2] == " " * 10 + plain[2]  # the reason stays under the rule
    assert keyed[3].startswith("fedcba98  11-21 11:59:00")
    assert [line[10:] for line in keyed] == plain
    assert all(len(line) <= 100 for line in table(records * 3, width=100, keys=True))


@pytest.fixture
def lookup_file(tmp_path, monkeypatch):
    """Records of one event over two rules, another event, and two keys sharing 8 characters."""
    for name in ("TRIGGERS_LEDGER", "TRIGGERS_SQLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "ledger.sqlite3"
    now = datetime.now(UTC)
    with SQLiteBackend(path) as backend:
        backend.create(
            record(
                "csv-ingest",
                key="aaaaaaaa11" + "0" * 54,
                event_id="ev-1",
                created=now - timedelta(hours=3),
                execution="aaaaa",
            )
        )
        backend.create(
            record(
                "csv-audit",
                key="aaaaaaaa22" + "0" * 54,
                event_id="ev-1",
                job="auditor",
                created=now - timedelta(hours=2),
                execution="bbbbb",
            )
        )
        backend.create(
            record(
                "csv-ingest",
                key="bbbbbbbb33" + "0" * 54,
                event_id="ev-2",
                status=Status.SUCCEEDED,
                created=now - timedelta(minutes=30),
                execution="ccccc",
            )
        )
    return path


def keys_of(capsys, path, *argv: str) -> list[str]:
    code, out, err = run(capsys, "runs", "--sqlite-path", str(path), "--json", *argv)
    assert code == 0, err
    return [r["key"][:10] for r in json.loads(out)]


def test_runs_by_event_execution_and_until(lookup_file, capsys):
    assert keys_of(capsys, lookup_file) == ["bbbbbbbb33", "aaaaaaaa22", "aaaaaaaa11"]
    assert keys_of(capsys, lookup_file, "--event", "ev-1") == ["aaaaaaaa22", "aaaaaaaa11"]
    assert keys_of(capsys, lookup_file, "--event", "ev-2") == ["bbbbbbbb33"]
    assert keys_of(capsys, lookup_file, "--event", "ev-") == []
    assert keys_of(capsys, lookup_file, "--event", "ev-1", "--rule", "csv-audit") == ["aaaaaaaa22"]
    assert keys_of(capsys, lookup_file, "--event", "ev-1", "--limit", "1") == ["aaaaaaaa22"]
    # An execution by its short name (what the table shows) or its full name.
    assert keys_of(capsys, lookup_file, "--execution", "csv-loader-aaaaa") == ["aaaaaaaa11"]
    full = EXECUTIONS.format(job="auditor", suffix="bbbbb")
    assert keys_of(capsys, lookup_file, "--execution", full) == ["aaaaaaaa22"]
    assert keys_of(capsys, lookup_file, "--execution", "csv-loader-bbbbb") == []
    assert (
        keys_of(capsys, lookup_file, "--execution", "csv-loader-ccccc", "--status", "launched")
        == []
    )
    # --until is exclusive, and takes durations before now like --since.
    assert keys_of(capsys, lookup_file, "--until", "1h") == ["aaaaaaaa22", "aaaaaaaa11"]
    assert keys_of(capsys, lookup_file, "--since", "150m", "--until", "1h") == ["aaaaaaaa22"]
    assert keys_of(capsys, lookup_file, "--event", "ev-1", "--until", "150m") == ["aaaaaaaa11"]


def test_runs_refuses_empty_lookups_and_a_window_that_ends_before_it_starts(lookup_file, capsys):
    for argv, message in [
        (("--event", " "), "--event needs a value"),
        (("--execution", ""), "--execution needs a value"),
        (("--since", "1h", "--until", "2h"), "is not before --until"),
        (("--until", "soon"), "--until 'soon'"),
    ]:
        code, out, err = run(capsys, "runs", "--sqlite-path", str(lookup_file), *argv)
        assert code == 2 and message in err and out == "", argv


def test_runs_keys_prints_what_show_takes(lookup_file, capsys):
    code, out, _ = run(capsys, "runs", "--sqlite-path", str(lookup_file), "--keys")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("KEY       CREATED (UTC)")
    assert [line.split()[0] for line in lines[1:]] == ["bbbbbbbb", "aaaaaaaa", "aaaaaaaa"]


# -- `detail` (triggers show) -------------------------------------------------------------------

KEY = "3f2a9c1e" + "0" * 56


def full_record(**changes) -> Record:
    record_ = record(
        key=KEY,
        status=Status.FAILED,
        updated=NOW + timedelta(seconds=42),
        attempts=2,
        duplicates=3,
        reason="Task csv-loader-ab1cd-task0 failed with exit code 1",
        created=NOW + timedelta(microseconds=123456),
    )
    values = dict(
        dedup_key="raw-data/incoming/a.csv#1795274264336753",
        operation="projects/demo-project/locations/europe-west1/operations/op-1",
        event={
            "id": "9876543210123456",
            "source": "//storage.googleapis.com/buckets/raw-data",
            "type": "google.cloud.storage.object.v1.finalized",
            "kind": "storage",
        },
        event_document={"bucket": "raw-data", "name": "incoming/a.csv", "size": "1024"},
        request={
            "overrides": {
                "containerOverrides": [
                    {"args": ["--in=a.csv"], "env": [{"name": "TRIGGERS_RUN_KEY", "value": KEY}]}
                ]
            }
        },
        outcome={
            "outcome": "failed",
            "succeeded_count": 0,
            "failed_count": 1,
            "cancelled_count": 0,
            "task_count": 1,
            "retried_count": 2,
            "started_at": "2026-11-21T12:00:01.5Z",
            "completed_at": "2026-11-21T12:00:09.25Z",
            "log_uri": "https://logs.example/x",
            "message": "Task csv-loader-ab1cd-task0 failed with exit code 1",
        },
    )
    return replace(record_, **{**values, **changes})


def test_detail_shows_every_part_of_a_record():
    lines = detail(full_record())
    text = "\n".join(lines)
    head = lines[: lines.index("")]
    assert head == [
        f"key          {KEY}",
        "rule         csv-ingest",
        "status       failed",
        "job          projects/demo-project/locations/europe-west1/jobs/csv-loader",
        "dedup key    raw-data/incoming/a.csv#1795274264336753",
        "created      2026-11-21T12:00:00.123456Z",
        "updated      2026-11-21T12:00:42Z (+41s)",
        "expires      2026-11-28T12:00:00.123456Z (end of the dedup window)",
        "attempts     2 (taken over 1 time)",
        "duplicates   3",
        "execution    projects/demo-project/locations/europe-west1/jobs/csv-loader/executions/"
        "csv-loader-ab1cd",
        "operation    projects/demo-project/locations/europe-west1/operations/op-1",
        "reason       Task csv-loader-ab1cd-task0 failed with exit code 1",
        "outcome      failed",
        "  tasks      1: 0 succeeded, 1 failed, 0 cancelled; 2 retried",
        "  started    2026-11-21T12:00:01.5Z",
        "  completed  2026-11-21T12:00:09.25Z (after 7.8s)",
        "  logs       https://logs.example/x",
        "  message    Task csv-loader-ab1cd-task0 failed with exit code 1",
    ]
    assert "token" not in text and "secret-token" not in text
    # The event reference, then the recorded document and the request body as pretty JSON.
    event = lines.index("event")
    assert lines[event + 1 : event + 5] == [
        "  id         9876543210123456",
        "  source     //storage.googleapis.com/buckets/raw-data",
        "  type       google.cloud.storage.object.v1.finalized",
        "  kind       storage",
    ]
    document = lines.index("event document") + 1
    pretty = json.dumps(full_record().event_document, indent=2).splitlines()
    assert lines[document : document + len(pretty)] == ["  " + line for line in pretty]
    job = "projects/demo-project/locations/europe-west1/jobs/csv-loader"
    request = lines.index(f"jobs.run request (POST /v2/{job}:run)") + 1
    assert json.loads("\n".join(lines[request:])) == full_record().request
    assert lines[-1] == "  }"


def test_detail_of_records_that_lack_parts():
    claimed = detail(
        full_record(
            status=Status.CLAIMED,
            outcome=None,
            execution=None,
            operation=None,
            reason=None,
            attempts=1,
            ambiguous=True,
            event_document=None,
        )
    )
    assert "lease until  2026-11-21T12:00:00.123456Z" in claimed
    for label in ("execution", "operation", "reason"):
        assert f"{label.ljust(12)} -" in claimed
    assert "outcome      -" in claimed
    assert any(
        line.startswith("attempts     1; ambiguous: the last attempt may have started")
        for line in claimed
    )
    assert claimed[claimed.index("event document") + 1].startswith("  (not recorded")
    launched = detail(full_record(status=Status.LAUNCHED, outcome=None))
    assert "outcome      - (not known yet: `triggers reconcile` records it)" in launched
    assert not any(line.startswith("lease until") for line in launched)
    bad_input = detail(
        full_record(
            rule="(input)",
            job="",
            request={},
            status=Status.REJECTED,
            event={"content_type": "text/plain", "bytes": 3},
            execution=None,
            outcome=None,
            event_document=None,
        )
    )
    assert "job          -" in bad_input
    assert bad_input[bad_input.index("event document") + 1] == (
        "  (not recorded: the request was not an event; `event` above sums it up)"
    )
    assert bad_input[-2:] == ["jobs.run request", "  (none: no job was planned)"]
    assert "  content_type text/plain" in bad_input and "  bytes      3" in bad_input


def test_detail_keeps_a_multi_line_reason_aligned():
    lines = detail(full_record(reason="first line\nsecond line"))
    at = lines.index("reason       first line")
    assert lines[at + 1] == " " * 13 + "second line"


def test_record_json_is_the_whole_record_but_the_token():
    out = record_json(full_record())
    assert set(out) == set(Record.__dataclass_fields__) - {"token"}
    assert out["created_at"] == "2026-11-21T12:00:00.123456+00:00"
    assert out["lease_until"] == "2026-11-21T12:00:00.123456+00:00"
    assert out["event_document"] == full_record().event_document
    assert out["request"] == full_record().request and out["outcome"]["retried_count"] == 2
    assert json.loads(json.dumps(out)) == out


# -- `triggers show` ----------------------------------------------------------------------------


def test_show_prints_one_record_by_key_or_prefix(lookup_file, capsys):
    key = "bbbbbbbb33" + "0" * 54
    code, out, _ = run(capsys, "show", "--sqlite-path", str(lookup_file), key)
    assert code == 0
    assert out.splitlines()[0] == f"key          {key}"
    assert "status       succeeded" in out and '"big": "xxxx' in out
    assert out.rstrip().endswith("}") and '"overrides": {}' in out
    for prefix in ("bbbbbbbb", "BBBBBBBB3", key.upper()):
        assert run(capsys, "show", "--sqlite-path", str(lookup_file), prefix) == (0, out, "")


def test_show_json_is_the_whole_record(lookup_file, capsys):
    code, out, _ = run(capsys, "show", "--sqlite-path", str(lookup_file), "aaaaaaaa22", "--json")
    shown = json.loads(out)
    assert code == 0
    with SQLiteBackend(lookup_file) as backend:
        assert shown == record_json(backend.get("aaaaaaaa22" + "0" * 54))
    assert shown["event"]["id"] == "ev-1" and shown["event_document"] == {"big": "x" * 100}
    assert "token" not in shown


def test_show_says_what_is_wrong_with_a_key(lookup_file, capsys):
    path = str(lookup_file)
    code, out, err = run(capsys, "show", "--sqlite-path", path, "cccccccc")
    assert (code, out) == (1, "")
    assert f"no record with key cccccccc in the ledger (sqlite {path})" in err
    code, _, err = run(capsys, "show", "--sqlite-path", path, "c" * 64)
    assert code == 1 and "no record with key" in err
    code, _, err = run(capsys, "show", "--sqlite-path", path, "aaaaaaaa")
    assert code == 2 and "aaaaaaaa is the start of more than one ledger key" in err
    assert "aaaaaaaa11" + "0" * 54 in err and "aaaaaaaa22" + "0" * 54 in err
    code, _, err = run(capsys, "show", "--sqlite-path", path, "aaaa")
    assert code == 2 and "at least its first 8" in err
    code, _, err = run(capsys, "show", "--sqlite-path", path + ".missing", "aaaaaaaa11")
    assert code == 2 and "no ledger at" in err


def test_show_refuses_a_memory_ledger(monkeypatch, capsys):
    monkeypatch.setenv("TRIGGERS_LEDGER", "memory")
    code, _, err = run(capsys, "show", "aaaaaaaa11")
    assert code == 2 and "memory ledger" in err
