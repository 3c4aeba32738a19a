"""Tracing: off, nothing is imported and nothing is allocated per event; on, one trace per
request that continues the caller's, with a span per step and the rule's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import ScriptedRunner
from triggers.errors import AmbiguousRunError
from triggers.events import parse_event_file
from triggers.function.app import App
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load
from triggers.spans import NO_SPANS

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "events" / "storage-finalized.cloudevent-binary.json"

otel = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from triggers.function.tracing import build_tracing  # noqa: E402

TRACE = "105445aa7843bc8bf206b12000100000"


def make_app(exporter: InMemorySpanExporter, runner: ScriptedRunner) -> App:
    settings = Settings(ledger="memory", tracing="console")
    return App(
        settings,
        rules=load(ROOT / "config" / "rules.yaml", environ={}),
        ledger=Ledger(MemoryBackend()),
        runner=runner,
        dead_letters=None,
        spans=build_tracing(settings, exporter=exporter),
    )


def request(**extra: str) -> tuple[dict[str, str], bytes]:
    headers, body = parse_event_file(SAMPLE.read_text(), SAMPLE.name)
    return {**headers, **extra}, body


def test_a_request_continues_the_caller_s_cloud_trace_with_a_span_per_step() -> None:
    exporter = InMemorySpanExporter()
    app = make_app(exporter, ScriptedRunner())
    response = app.handle(*request(**{"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}))
    assert response.status == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {
        "triggers.request",
        "triggers.decode",
        "triggers.route",
        "triggers.rule",
        "triggers.claim",
        "triggers.run",
        "triggers.record",
    }
    root = spans["triggers.request"]
    assert f"{root.context.trace_id:032x}" == TRACE  # the caller's trace
    assert root.parent is not None and root.parent.span_id == 1
    assert all(f"{s.context.trace_id:032x}" == TRACE for s in spans.values())
    assert root.attributes["decision"] == "ack" and root.attributes["http.status_code"] == 200
    rule = spans["triggers.rule"]
    assert rule.attributes["rule"] == "csv-ingest" and rule.attributes["outcome"] == "launched"
    assert rule.attributes["execution"].endswith("/executions/csv-loader-1")
    assert spans["triggers.claim"].attributes["claim"] == "new"
    assert spans["triggers.run"].parent.span_id == rule.context.span_id
    assert spans["triggers.run"].attributes["system"] == "cloudrun"
    assert spans["triggers.route"].attributes["rules"] == 1
    assert spans["triggers.record"].attributes["write"] == "launched"
    assert spans["triggers.decode"].attributes["event.type"].endswith("finalized")


def test_w3c_traceparent_is_followed_and_a_duplicate_is_a_claim_without_a_run() -> None:
    exporter = InMemorySpanExporter()
    app = make_app(exporter, ScriptedRunner())
    app.handle(*request())
    exporter.clear()
    parent = f"00-{TRACE}-00f067aa0ba902b7-01"
    app.handle(*request(traceparent=parent))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert f"{spans['triggers.request'].context.trace_id:032x}" == TRACE
    assert spans["triggers.claim"].attributes["claim"] == "duplicate"
    assert spans["triggers.rule"].attributes["outcome"] == "duplicate"
    assert "triggers.run" not in spans


def test_an_ambiguous_run_shows_the_lookup_and_the_hold() -> None:
    exporter = InMemorySpanExporter()
    runner = ScriptedRunner()
    runner.fail("csv-loader", AmbiguousRunError("lost", status=503))
    response = make_app(exporter, runner).handle(*request())
    assert response.status == 200  # the scripted ambiguous run started; the lookup adopts it
    names = [span.name for span in exporter.get_finished_spans()]
    assert "triggers.find" in names


def test_tracing_off_imports_no_opentelemetry_and_uses_the_shared_no_op() -> None:
    app = App(Settings(ledger="memory", runner="dry-run"), dead_letters=None)
    assert app.spans is NO_SPANS and app.dispatcher.spans is NO_SPANS
    code = (
        "import sys, json; from triggers.function.app import App;"
        " from triggers.function.settings import Settings;"
        " from triggers.events import parse_event_file;"
        f" h, b = parse_event_file(open({str(SAMPLE)!r}).read());"
        " App(Settings(ledger='memory', runner='dry-run'), dead_letters=None).handle(h, b);"
        " print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []


def test_cloud_trace_spans_reach_an_otlp_endpoint_with_the_project_header(monkeypatch) -> None:
    """The `cloud-trace` export end to end against an OTLP/HTTP receiver on loopback (standing in
    for telemetry.googleapis.com): the request's spans arrive as protobuf, authenticated, with
    the project to bill."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from google.auth.credentials import AnonymousCredentials
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr("google.auth.default", lambda *a, **k: (AnonymousCredentials(), "p-1"))
    try:
        settings = Settings(
            ledger="memory",
            tracing="cloud-trace",
            project="p-123456",
            tracing_endpoint=f"http://127.0.0.1:{server.server_port}/v1/traces",
        )
        spans = build_tracing(settings)
        app = App(
            settings,
            rules=load(ROOT / "config" / "rules.yaml", environ={}),
            ledger=Ledger(MemoryBackend()),
            runner=ScriptedRunner(),
            dead_letters=None,
            spans=spans,
        )
        app.handle(*request(**{"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"}))
        assert spans.provider.force_flush(10_000)
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no spans were exported"
    headers, body = received[0]
    assert headers["x-goog-user-project"] == "p-123456"
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/x-protobuf"
    export = ExportTraceServiceRequest.FromString(body)
    names = {
        span.name
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert {"triggers.request", "triggers.rule", "triggers.run"} <= names
