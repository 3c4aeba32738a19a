"""The `triggers serve` console's pure parts: the event ring, what each request records, the
plan of a pasted event, and the WSGI app's answers to bad requests.

In process with the real App on a memory ledger and the dry-run runner (no I/O); the page itself,
over a real stack, is tested in a real browser in tests/integration/test_console_browser.py.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response as WerkzeugResponse

from triggers.function.app import Response
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.local import send
from triggers.local.console import PREFIX, Console, EventLog, RecordingApp
from triggers.local.console.recorder import MAX_KEPT_BODY, describe
from triggers.local.console.views import plan_json, rules_json
from triggers.rules import load_text
from triggers.runners.dryrun import DryRunRunner

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "config" / "events"
STATIC = ROOT / "triggers" / "local" / "console" / "static"
RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    bucket: raw-data
    match:
      data:
        name: [{prefix: "incoming/"}]
    job: loader
    overrides:
      args: ["{{ data.name }}"]
  - name: orders
    on: pubsub
    job: processor
""",
    environ={},
)


def recording_app(events: Any) -> RecordingApp:
    settings = Settings(ledger="memory", runner="dry-run", max_body_bytes=4096)
    return RecordingApp(
        settings,
        rules=RULES,
        ledger=Ledger(MemoryBackend()),
        runner=DryRunRunner(),
        authenticator=None,
        dead_letters=None,
        events=events,
    )


def storage_request(name: str) -> send.Request:
    return send.storage_object("raw-data", name, generation=7, size=10)


# -- the ring ---------------------------------------------------------------------------------


def test_the_ring_keeps_the_newest_and_numbers_them() -> None:
    ring = EventLog(capacity=3)
    for n in range(5):
        ring.append({"n": n})
    assert [e["n"] for e in ring.after(0)] == [2, 3, 4]
    assert [e["seq"] for e in ring.after(0)] == [3, 4, 5]
    assert [e["n"] for e in ring.after(4)] == [4]
    assert ring.after(5) == [] and len(ring) == 3


# -- what a request records -------------------------------------------------------------------


def test_a_request_is_recorded_with_every_rules_verdict() -> None:
    ring = EventLog()
    app = recording_app(ring)
    request = storage_request("other/a.csv")
    answer = app.handle(request.headers, request.body)
    assert answer.status == 200
    (entry,) = ring.after(0)
    assert entry["status"] == 200 and entry["decision"] == "ack"
    assert entry["event"]["kind"] == "storage"
    verdicts = {v["rule"]: v for v in entry["verdicts"]}
    # The first failing field and why, as `triggers plan` says it.
    assert verdicts["load"]["matched"] is False
    assert verdicts["load"]["reason"].startswith("data.name:")
    assert verdicts["orders"]["reason"].startswith("type:")
    # The request again as an event file, which plans the same event.
    replanned = plan_json(json.dumps(entry["request"]), RULES)
    assert replanned["event"]["id"] == entry["event"]["id"]


def test_a_matched_rule_records_its_outcome() -> None:
    ring = EventLog()
    app = recording_app(ring)
    request = storage_request("incoming/a.csv")
    app.handle(request.headers, request.body)
    (entry,) = ring.after(0)
    assert [o["rule"] for o in entry["outcomes"]] == ["load"]
    assert entry["outcomes"][0]["outcome"] == "launched"
    assert [v["rule"] for v in entry["verdicts"] if v["matched"]] == ["load"]


def test_an_undecodable_request_is_recorded_as_rejected() -> None:
    ring = EventLog()
    app = recording_app(ring)
    answer = app.handle({"Content-Type": "application/json"}, b"[1, 2")
    assert answer.status == 200  # the function's own answer, unchanged
    (entry,) = ring.after(0)
    assert entry["decision"] == "rejected"
    assert entry["rejected"]["reason"] == "bad_json"
    assert "verdicts" not in entry


def test_credentials_are_not_kept_and_big_bodies_are_cut() -> None:
    body = b"x" * (MAX_KEPT_BODY + 10)
    headers = {"Authorization": "Bearer secret", "Content-Type": "text/plain", "Host": "h"}
    entry = describe(
        headers,
        body,
        Response(200, {"decision": "rejected"}),
        RULES,
        received=datetime(2026, 12, 5, tzinfo=UTC),
        max_body_bytes=1 << 20,
    )
    assert entry["request"]["headers"] == {"Content-Type": "text/plain"}
    assert len(entry["request"]["body"]) == MAX_KEPT_BODY
    assert entry["request"]["truncated"] == len(body)
    assert entry["received"] == "2026-12-05T00:00:00Z"


def test_a_failing_recording_never_changes_the_answer() -> None:
    class Broken:
        def append(self, entry: dict[str, Any]) -> None:
            raise RuntimeError("console bug")

    app = recording_app(Broken())
    request = storage_request("incoming/b.csv")
    answer = app.handle(request.headers, request.body)
    assert answer.status == 200
    assert answer.body["rules"][0]["outcome"] == "launched"


# -- try an event ------------------------------------------------------------------------------


def test_plan_of_an_event_file_is_what_triggers_plan_shows() -> None:
    text = (EVENTS / "storage-finalized.cloudevent-binary.json").read_text()
    plan = plan_json(text, RULES)
    assert plan["matched"] == 1
    load = next(v for v in plan["verdicts"] if v["rule"] == "load")
    assert load["http"] == (
        "POST https://run.googleapis.com/v2/projects/demo-project/locations/europe-west1"
        "/jobs/loader:run"
    )
    args = load["body"]["overrides"]["containerOverrides"][0]["args"]
    assert args == ["incoming/2026/11/21/orders.csv"]
    assert plan["document"]["data"]["bucket"] == "raw-data"


def test_plan_of_a_bare_body() -> None:
    body = json.loads((EVENTS / "pubsub-order.push.json").read_text())["body"]
    plan = plan_json(json.dumps(body), RULES)
    assert plan["event"]["form"] == "pubsub-push"
    assert [v["rule"] for v in plan["verdicts"] if v["matched"]] == ["orders"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1, 2", "bad_json"),
        ('{"headers": 3, "body": ""}', "bad_json"),
        ("x" * ((1 << 20) + 1), "too_large"),
    ],
)
def test_a_paste_that_is_not_an_event_is_rejected_not_raised(text: str, reason: str) -> None:
    assert plan_json(text, RULES)["rejected"]["reason"] == reason


def test_rules_list_their_pattern_scope_and_job() -> None:
    load, orders = rules_json(RULES)
    assert load["scope"] == {"bucket": "raw-data"}
    assert load["match"] == {"data": {"name": [{"prefix": "incoming/"}]}}
    assert load["job"] == "projects/demo-project/locations/europe-west1/jobs/loader"
    assert load["overrides"] == {"args": ["{{ data.name }}"]}
    assert orders["match"] is None and orders["on"] == ["pubsub"]


# -- the WSGI app ------------------------------------------------------------------------------


@pytest.fixture
def client() -> Client:
    ring = EventLog()
    server = SimpleNamespace(
        rules=RULES,
        app=recording_app(ring),
        emulator=None,
        options=SimpleNamespace(rules="rules.yaml", dry_run=True),
        url="http://127.0.0.1:1/",
        sqlite_path=None,
        reconcile=lambda: {"checked": 0},
    )
    fallback = WerkzeugResponse("the function", 200)
    return Client(DispatcherMiddleware(fallback, {PREFIX: Console(server, ring)}))


def test_the_page_and_its_files(client: Client) -> None:
    page = client.get("/_console/")
    assert page.status_code == 200 and b"triggers console" in page.data
    assert client.get("/_console").headers["Location"].endswith("/_console/")
    assert client.get("/_console/static/console.js").content_type.startswith("text/javascript")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/_console/static/..%2F__init__.py", 404),
        ("GET", "/_console/static/nothing.js", 404),
        ("GET", "/_console/api/nothing", 404),
        ("GET", "/_console/api/events?after=x", 400),
        ("GET", "/_console/api/logs/none-abcde/0/0", 404),
        ("POST", "/_console/api/plan", 400),
        ("GET", "/_console/api/plan", 405),
    ],
)
def test_bad_requests_get_a_json_error(client: Client, method: str, path: str, status: int) -> None:
    answer = client.open(path, method=method)
    assert answer.status_code == status
    assert "error" in answer.json


def test_endpoints_answer_json(client: Client) -> None:
    assert [r["name"] for r in client.get("/_console/api/rules").json["rules"]] == [
        "load",
        "orders",
    ]
    events = client.get("/_console/api/events").json
    assert events["events"] == [] and len(events["instance"]) == 8
    assert client.get("/_console/api/runs").json == {"runs": []}
    text = (EVENTS / "storage-finalized.cloudevent-binary.json").read_text()
    assert client.post("/_console/api/plan", data=text).json["matched"] == 1
    assert client.post("/_console/api/reconcile").json == {"checked": 0}


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["triggers.local.console"]
    files = [p for p in STATIC.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "console.css", "console.js"}
    for path in files:
        assert any(path.match(pattern) for pattern in globs), path.name
