"""The request builders of `triggers send` (decoded by the real decoder, routed by the sample
rules) and posting them (a stub HTTP server stands in for the function)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from triggers.cli import main
from triggers.events import (
    PUBSUB_PUBLISHED,
    SCHEDULER_EXECUTED,
    STORAGE_ARCHIVED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    STORAGE_METADATA_UPDATED,
    decode,
    parse_event_file,
)
from triggers.local import send
from triggers.rules import load

ROOT = Path(__file__).resolve().parents[2]
RULES = load(str(ROOT / "config" / "rules.yaml"))
WHEN = datetime(2026, 11, 21, 10, 15, 30, 123000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _sample_project(monkeypatch):
    monkeypatch.delenv("TRIGGERS_PROJECT", raising=False)


def decoded(request: send.Request):
    return decode(request.headers, request.body)


def routed(request: send.Request) -> list[str]:
    return [rule.name for rule in RULES.route(decoded(request))]


# -- Pub/Sub ----------------------------------------------------------------------------------


def test_pubsub_cloudevent_names_its_topic_and_runs_the_sample_rule():
    request = send.pubsub_message(
        "orders", send.SAMPLE_ORDER, {"kind": "order"}, message_id="42", publish_time=WHEN
    )
    assert (
        request.headers["ce-source"]
        == "//pubsub.googleapis.com/projects/demo-project/topics/orders"
    )
    assert request.headers["ce-type"] == PUBSUB_PUBLISHED
    assert request.headers["ce-id"] == "42"
    event = decoded(request)
    data = event.document["data"]
    assert data["topic"] == "projects/demo-project/topics/orders"
    assert data["message"]["json"] == {"order_id": "A-1001", "status": "paid", "amount": 42.5}
    assert data["message"]["attributes"] == {"kind": "order"}
    assert data["message"]["publish_time"] == "2026-11-21T10:15:30.123Z"
    assert event.id == "42"
    assert routed(request) == ["paid-orders"]


def test_pubsub_push_names_only_its_subscription():
    request = send.pubsub_message("orders", "hello", form="push", message_id="7", publish_time=WHEN)
    body = json.loads(request.body)
    assert body["subscription"] == "projects/demo-project/subscriptions/orders-push"
    assert base64.b64decode(body["message"]["data"]) == b"hello"
    assert "ce-specversion" not in request.headers
    event = decoded(request)
    assert event.form == "pubsub-push"
    assert event.document["data"]["topic"] is None
    assert event.document["data"]["message"]["text"] == "hello"
    assert routed(request) == []  # paid-orders is scoped with topic: a push cannot match it


def test_pubsub_full_topic_path_and_explicit_subscription():
    request = send.pubsub_message(
        "projects/other/topics/t",
        b"",
        subscription="projects/other/subscriptions/s",
        message_id="1",
    )
    data = decoded(request).document["data"]
    assert data["topic"] == "projects/other/topics/t"
    assert data["subscription"] == "projects/other/subscriptions/s"
    assert data["message"]["data"] is None  # an empty payload is sent without data


def test_every_message_gets_a_new_id_unless_one_is_given():
    ids = {
        json.loads(send.pubsub_message("t", "x").body)["message"]["messageId"] for _ in range(20)
    }
    assert len(ids) == 20 and all(i.isdigit() and len(i) == 16 for i in ids)


def test_builders_are_pure_given_ids_and_times():
    a = send.pubsub_message("orders", "x", {"a": "1"}, message_id="9", publish_time=WHEN)
    b = send.pubsub_message("orders", "x", {"a": "1"}, message_id="9", publish_time=WHEN)
    assert a == b
    s1 = send.storage_object("b", "n", generation=1, size=2, event_id="3", time=WHEN)
    s2 = send.storage_object("b", "n", generation=1, size=2, event_id="3", time=WHEN)
    assert s1 == s2


def test_pubsub_rejects_an_unknown_form():
    with pytest.raises(ValueError, match="form 'pull'"):
        send.pubsub_message("t", "x", form="pull")


# -- Cloud Storage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, type_",
    [
        ("finalized", STORAGE_FINALIZED),
        ("deleted", STORAGE_DELETED),
        ("archived", STORAGE_ARCHIVED),
        ("metadataUpdated", STORAGE_METADATA_UPDATED),
    ],
)
@pytest.mark.parametrize("form", ["cloudevent", "notification"])
def test_storage_events_decode_to_the_same_object_in_both_forms(event, type_, form):
    request = send.storage_object(
        "raw-data",
        "incoming/a b.csv",
        generation=1763683200000000,
        size=52311,
        event=event,
        form=form,
        metadata={"by": "me"},
        event_id="5",
        time=WHEN,
    )
    decoded_event = decoded(request)
    assert decoded_event.type == type_
    assert decoded_event.source == "//storage.googleapis.com/projects/_/buckets/raw-data"
    assert decoded_event.subject == "objects/incoming/a b.csv"
    data = decoded_event.document["data"]
    assert (data["bucket"], data["name"]) == ("raw-data", "incoming/a b.csv")
    assert (data["generation"], data["size"], data["metageneration"]) == (
        1763683200000000,
        52311,
        1,
    )
    assert data["contentType"] == "text/csv"
    assert data["metadata"] == {"by": "me"}
    assert "incoming%2Fa%20b.csv" in data["selfLink"]


@pytest.mark.parametrize("form", ["cloudevent", "notification"])
def test_a_new_csv_under_incoming_runs_csv_ingest_keyed_on_its_version(form):
    request = send.storage_object("raw-data", "incoming/a.csv", generation=17, size=10, form=form)
    assert routed(request) == ["csv-ingest"]
    rule = RULES.get("csv-ingest")
    assert rule.plan(decoded(request)).dedup_key == "raw-data/incoming/a.csv#17"


def test_storage_notification_carries_the_gcs_attributes():
    request = send.storage_object(
        "raw-data", "x.csv", generation=3, size=1, event="deleted", form="notification", time=WHEN
    )
    message = json.loads(request.body)["message"]
    assert message["attributes"] == {
        "notificationConfig": "projects/_/buckets/raw-data/notificationConfigs/1",
        "eventType": "OBJECT_DELETE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": "raw-data",
        "objectId": "x.csv",
        "objectGeneration": "3",
        "eventTime": "2026-11-21T10:15:30.123Z",
    }
    assert routed(request) == ["csv-deleted"]


def test_storage_content_type_is_guessed_or_given():
    assert (
        json.loads(send.storage_object("b", "a.json", generation=1, size=1).body)["contentType"]
        == "application/json"
    )
    assert (
        json.loads(send.storage_object("b", "blob", generation=1, size=1).body)["contentType"]
        == "application/octet-stream"
    )
    given = send.storage_object("b", "a.csv", generation=1, size=1, content_type="text/plain")
    assert json.loads(given.body)["contentType"] == "text/plain"


def test_storage_rejects_unknown_events_and_forms():
    with pytest.raises(ValueError, match="event 'created'"):
        send.storage_object("b", "n", generation=1, size=1, event="created")
    with pytest.raises(ValueError, match="form 'push'"):
        send.storage_object("b", "n", generation=1, size=1, form="push")


# -- Cloud Scheduler ----------------------------------------------------------------------------


def test_scheduler_tick_has_exactly_the_http_target_headers():
    request = send.scheduler_tick("nightly-report", WHEN)
    assert request.headers == {
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": "nightly-report",
        "X-CloudScheduler-ScheduleTime": "2026-11-21T10:15:30Z",
    }
    assert request.body == b""
    event = decoded(request)
    assert event.type == SCHEDULER_EXECUTED
    assert event.id == "nightly-report#2026-11-21T10:15:30Z"
    assert event.document["data"]["schedule_time_inferred"] is False
    assert routed(request) == ["nightly-report"]


def test_scheduler_tick_body_and_its_content_type():
    json_tick = send.scheduler_tick("j", WHEN, '{"report": "daily"}')
    assert json_tick.headers["Content-Type"] == "application/json"
    assert decoded(json_tick).document["data"]["json"] == {"report": "daily"}
    text_tick = send.scheduler_tick("j", WHEN, "run it")
    assert text_tick.headers["Content-Type"] == "application/octet-stream"
    assert decoded(text_tick).document["data"]["text"] == "run it"


def test_scheduler_times_are_written_in_utc():
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 11, 21, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    tick = send.scheduler_tick("j", berlin)
    assert tick.headers["X-CloudScheduler-ScheduleTime"] == "2026-11-21T01:00:00Z"


# -- event files and times ----------------------------------------------------------------------


def test_event_file_is_what_parse_event_file_reads():
    path = ROOT / "config" / "events" / "storage-finalized.notification.json"
    request = send.event_file(path)
    assert (request.headers, request.body) == parse_event_file(path.read_text(), str(path))


def test_a_malformed_event_file_is_a_value_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        send.event_file(bad)


def test_parse_time():
    assert send.parse_time("2026-11-21T02:00:00Z") == datetime(2026, 11, 21, 2, tzinfo=UTC)
    assert send.parse_time("2026-11-21T02:00:00").tzinfo == UTC
    assert send.parse_time("2026-11-21T03:00:00+01:00") == datetime(2026, 11, 21, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO time"):
        send.parse_time("yesterday")


# -- posting and the answer ---------------------------------------------------------------------


class Stub:
    """A one-endpoint HTTP server answering each POST with the next canned answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict, bytes]] = []
        self.received: list[tuple[dict, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, payload = stub.answers.pop(0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def answer(self, status: int, body, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.answers.append(
            (status, {"Content-Type": "application/json", **(headers or {})}, payload)
        )

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


ACK = {
    "event": "42",
    "decision": "ack",
    "rules": [
        {
            "rule": "paid-orders",
            "outcome": "launched",
            "execution": "projects/p/locations/r/jobs/orders-processor/executions/orders-processor-ab12c",
        }
    ],
}
RETRY = {
    "event": "42",
    "decision": "retry",
    "rules": [{"rule": "paid-orders", "outcome": "retry", "reason": "Cloud Run is unavailable"}],
}


def test_post_sends_the_request_and_reads_the_json_answer(stub):
    stub.answer(200, ACK)
    request = send.pubsub_message("orders", "x", message_id="42")
    answer = send.post(stub.url, request)
    assert answer.ok and answer.status == 200 and answer.body == ACK and answer.decision == "ack"
    headers, body = stub.received[0]
    assert body == request.body
    assert headers["ce-id"] == "42"


def test_post_returns_an_error_answer_instead_of_raising(stub):
    stub.answer(503, RETRY, {"Retry-After": "10"})
    answer = send.post(stub.url, send.scheduler_tick("j", WHEN))
    assert not answer.ok and answer.status == 503 and answer.decision == "retry"
    assert answer.headers["Retry-After"] == "10"


def test_post_to_nothing_says_how_to_start_a_server(stub):
    url = stub.url
    stub.close()
    with pytest.raises(
        send.Unreachable, match=r"no server at http://127\.0\.0\.1:\d+/ .*triggers serve"
    ):
        send.post(url, send.scheduler_tick("j", WHEN), timeout=5)


def test_describe_answers():
    ok = send.Answer(200, "OK", ACK)
    assert send.describe(ok) == [
        "200 OK  ack  event 42",
        "  paid-orders  launched   orders-processor-ab12c",
    ]
    retry = send.Answer(503, "Service Unavailable", RETRY, {"Retry-After": "10"})
    assert send.describe(retry) == [
        "503 Service Unavailable  retry  event 42  (Retry-After: 10s)",
        "  paid-orders  retry      Cloud Run is unavailable",
    ]
    nothing = send.Answer(200, "OK", {"event": "e", "decision": "ack", "rules": []})
    assert send.describe(nothing)[1] == "  no rule matched"
    rejected = send.Answer(
        200, "OK", {"decision": "rejected", "reason": "unrecognised", "message": "not an event"}
    )
    assert send.describe(rejected) == ["200 OK  rejected (unrecognised): not an event"]
    crash = send.Answer(500, "Internal Server Error", "boom")
    assert send.describe(crash) == ["500 Internal Server Error", "  boom"]
    assert send.one_line(ok) == "200 ack: paid-orders launched orders-processor-ab12c"
    assert send.one_line(send.Answer(200, "OK", nothing.body)) == "200 ack: no rule matched"


# -- the `triggers send` command -------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_send_prints_the_outcomes_and_exits_0_on_2xx(stub, capsys):
    stub.answer(200, ACK)
    code, out, _ = run(capsys, "send", "pubsub", "--url", stub.url)
    assert code == 0
    assert "200 OK  ack  event 42" in out
    assert "paid-orders  launched   orders-processor-ab12c" in out
    headers, body = stub.received[0]
    message = json.loads(body)["message"]  # no --data, no --attribute: the sample order
    assert json.loads(base64.b64decode(message["data"])) == json.loads(send.SAMPLE_ORDER)
    assert message["attributes"] == {"kind": "order"}


def test_send_exits_1_on_a_retry_answer(stub, capsys):
    stub.answer(503, RETRY, {"Retry-After": "10"})
    code, out, _ = run(capsys, "send", "--url", stub.url, "scheduler", "--job", "x")
    assert code == 1
    assert "503 Service Unavailable  retry" in out


def test_send_exits_2_when_no_server_answers(stub, capsys):
    url = stub.url
    stub.close()
    code, _, err = run(capsys, "send", "storage", "--url", url)
    assert code == 2
    assert f"no server at {url}" in err and "start one with `triggers serve`" in err


def test_send_options_reach_the_request(stub, capsys):
    stub.answer(200, ACK)
    stub.answer(200, ACK)
    stub.answer(200, ACK)
    assert (
        run(
            capsys,
            "send",
            "--url",
            stub.url,
            "pubsub",
            "--topic",
            "projects/x/topics/y",
            "--data",
            "plain text",
            "--attribute",
            "a=1",
            "--attribute",
            "b==2",
            "--form",
            "push",
            "--id",
            "77",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "send",
            "storage",
            "--url",
            stub.url,
            "--bucket",
            "bk",
            "--name",
            "d/f.txt",
            "--generation",
            "5",
            "--size",
            "9",
            "--event",
            "archived",
            "--form",
            "notification",
            "--metadata",
            "k=v",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "send",
            "scheduler",
            "--url",
            stub.url,
            "--job",
            "j",
            "--schedule-time",
            "2026-11-21T03:00:00+01:00",
            "--body",
            "{}",
        )[0]
        == 0
    )
    (h1, b1), (h2, b2), (h3, b3) = stub.received
    event = decode(h1, b1).document
    assert event["data"]["message"]["text"] == "plain text"
    assert event["data"]["message"]["attributes"] == {"a": "1", "b": "=2"}
    assert event["data"]["subscription"] == "projects/x/subscriptions/y-push"
    assert event["id"] == "77"
    storage = decode(h2, b2)
    assert storage.type == STORAGE_ARCHIVED
    assert storage.document["data"]["generation"] == 5 and storage.document["data"]["size"] == 9
    assert storage.document["data"]["metadata"] == {"k": "v"}
    assert decode(h3, b3).id == "j#2026-11-21T02:00:00Z"


def test_send_storage_default_generation_is_new_each_time(stub, capsys):
    stub.answer(200, ACK)
    stub.answer(200, ACK)
    run(capsys, "send", "storage", "--url", stub.url)
    run(capsys, "send", "storage", "--url", stub.url)
    generations = [decode(h, b).document["data"]["generation"] for h, b in stub.received]
    assert generations[0] != generations[1] and generations[0] > 1_700_000_000_000_000


def test_send_files_and_json_output(stub, capsys):
    stub.answer(200, ACK)
    stub.answer(200, {"decision": "ack", "event": "e", "rules": []})
    events = ROOT / "config" / "events"
    code, out, _ = run(
        capsys,
        "send",
        "--url",
        stub.url,
        "--json",
        "--file",
        str(events / "pubsub-order.push.json"),
        "--file",
        str(events / "generic-custom.cloudevent-structured.json"),
    )
    assert code == 0
    printed = json.loads(out)
    assert [p["status"] for p in printed] == [200, 200]
    assert printed[0]["answer"] == ACK
    assert len(stub.received) == 2


def test_send_usage_errors_exit_2(stub, capsys, tmp_path):
    code, _, err = run(capsys, "send", "--url", stub.url)
    assert code == 2 and "say what to send" in err
    code, _, err = run(capsys, "send", "pubsub", "--url", stub.url, "--attribute", "novalue")
    assert code == 2 and "--attribute 'novalue': use KEY=VALUE" in err
    code, _, err = run(capsys, "send", "--url", stub.url, "--file", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    code, _, err = run(capsys, "send", "scheduler", "--url", stub.url, "--schedule-time", "soon")
    assert code == 2 and "not an ISO time" in err
    assert stub.received == []
