"""OpenTelemetry spans for the function, exported to Cloud Trace (or stdout), continuing the
trace a request carries in `traceparent` (W3C) or `X-Cloud-Trace-Context` (Google's own header,
which Pub/Sub push, Eventarc and Cloud Scheduler send).

Cloud Trace is reached the way Google now recommends: OTLP over HTTP to the Telemetry API
(`https://telemetry.googleapis.com/v1/traces`), authenticated with Application Default
Credentials, rather than the deprecated Cloud Trace exporter.

Imported only when `TRIGGERS_TRACING` is `cloud-trace` or `console` (install the `tracing`
extra): with tracing off, a cold start does not load OpenTelemetry at all. The tracer provider is
the function's own, not the global one, so an application embedding triggers keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..spans import Attribute, Span
from .settings import Settings

TRACER = "triggers"


class _Handle:
    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)


class OpenTelemetrySpans:
    """`triggers.spans.Spans` on an OpenTelemetry tracer."""

    def __init__(self, tracer: Any, propagator: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self.propagator = propagator
        self.provider = provider  # kept so that its span processors live as long as we do

    @contextmanager
    def request(self, headers: Mapping[str, str]) -> Iterator[Span]:
        from opentelemetry.trace import SpanKind

        carrier = {name.lower(): value for name, value in headers.items()}
        parent = self.propagator.extract(carrier=carrier)
        with self.tracer.start_as_current_span(
            "triggers.request", context=parent, kind=SpanKind.SERVER
        ) as span:
            yield _Handle(span)

    @contextmanager
    def span(self, name: str, **attributes: Attribute) -> Iterator[Span]:
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield _Handle(span)


def propagator() -> Any:
    """W3C trace context first, then Google's X-Cloud-Trace-Context."""
    from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return CompositePropagator([TraceContextTextMapPropagator(), CloudTraceFormatPropagator()])


def telemetry_exporter(settings: Settings) -> Any:
    """OTLP/HTTP to the Telemetry API (or `TRIGGERS_TRACING_ENDPOINT`), with the function's
    credentials; the project the spans are billed to is the credentials' unless set."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    credentials, found = google.auth.default(
        scopes=["https://www.googleapis.com/auth/trace.append"]
    )
    project = settings.project or found
    headers = {"x-goog-user-project": project} if project else {}
    return OTLPSpanExporter(
        endpoint=settings.tracing_endpoint, session=AuthorizedSession(credentials), headers=headers
    )


def build_tracing(settings: Settings, exporter: Any = None) -> OpenTelemetrySpans:
    """The spans of `settings.tracing`; `exporter` replaces its exporter (tests)."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise RuntimeError(
            f"TRIGGERS_TRACING={settings.tracing} needs OpenTelemetry: install the `tracing`"
            f" extra (pip install 'triggers[tracing]'); {exc}"
        ) from None
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(settings.tracing_sample_ratio)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.tracing == "cloud-trace":
        provider.add_span_processor(BatchSpanProcessor(telemetry_exporter(settings)))
    else:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return OpenTelemetrySpans(provider.get_tracer(TRACER), propagator(), provider)
