"""Structured logs Cloud Logging understands: one JSON object per line on stdout.

Cloud Run functions turn each line into a log entry, reading `severity`, `message`,
`logging.googleapis.com/trace` and `logging.googleapis.com/labels` from it.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from typing import IO, Any

# The trace of the request being handled, set by the HTTP layer from X-Cloud-Trace-Context.
current_trace: ContextVar[str | None] = ContextVar("triggers_trace", default=None)

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class CloudLoggingFormatter(logging.Formatter):
    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        labels = getattr(record, "labels", None)
        if labels:
            entry["logging.googleapis.com/labels"] = {
                k: str(v) for k, v in labels.items() if v is not None
            }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        trace = current_trace.get()
        if trace and self.project:
            entry["logging.googleapis.com/trace"] = f"projects/{self.project}/traces/{trace}"
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def trace_id(header: str | None) -> str | None:
    """`TRACE_ID/SPAN_ID;o=1` -> TRACE_ID (also `TRACE_ID;o=1` and a bare `TRACE_ID`)."""
    if not header:
        return None
    trace = header.split("/", 1)[0].split(";", 1)[0].strip()
    return trace or None


def configure(
    level: str = "INFO", project: str | None = None, stream: IO[str] | None = None
) -> None:
    """Route the `triggers` loggers to stdout (or `stream`) as JSON lines (idempotent: one
    handler, whose level, project and stream are those of the latest call)."""
    logger = logging.getLogger("triggers")
    logger.setLevel(level.upper())
    logger.propagate = False
    handlers = [h for h in logger.handlers if isinstance(h.formatter, CloudLoggingFormatter)]
    for existing in handlers:
        existing.formatter.project = project  # type: ignore[union-attr]
        if stream is not None and isinstance(existing, logging.StreamHandler):
            try:
                existing.setStream(stream)
            except ValueError:  # the old stream is closed (a swapped stdout): nothing to flush
                existing.stream = stream
    if not handlers:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(CloudLoggingFormatter(project))
        logger.addHandler(handler)
