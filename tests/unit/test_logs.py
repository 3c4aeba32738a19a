"""Structured logs for Cloud Logging: one JSON object per line, with severity, labels and trace."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from triggers.function.logs import CloudLoggingFormatter, configure, current_trace, trace_id

TRACE = "105445aa7843bc8bf206b12000100000"


def record(
    level: int = logging.INFO,
    msg: str = "hello %s",
    args: tuple = ("world",),
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.LogRecord("triggers.test", level, __file__, 1, msg, args, exc_info)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def formatted(made: logging.LogRecord, project: str | None = "demo-project") -> dict[str, Any]:
    line = CloudLoggingFormatter(project).format(made)
    assert "\n" not in line  # one entry per line, whatever the message holds
    return json.loads(line)


@pytest.fixture
def trace() -> Iterator[str]:
    token = current_trace.set(TRACE)
    try:
        yield TRACE
    finally:
        current_trace.reset(token)


@pytest.mark.parametrize(
    "level, severity",
    [
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "CRITICAL"),
        (25, "DEFAULT"),  # a custom level has no Cloud Logging severity of its own
    ],
)
def test_severity_follows_the_python_level(level, severity):
    assert formatted(record(level))["severity"] == severity


def test_message_is_formatted_with_its_arguments_and_names_the_logger():
    entry = formatted(record(msg="rule %s: %d runs", args=("load", 2)))
    assert entry["message"] == "rule load: 2 runs"
    assert entry["logger"] == "triggers.test"


def test_a_multiline_message_stays_one_line_of_json():
    assert formatted(record(msg="a\nb", args=()))["message"] == "a\nb"


def test_labels_become_string_values_and_none_is_dropped():
    labels = {"rule": "load", "attempt": 2, "execution": None, "adopted": True}
    entry = formatted(record(labels=labels))
    assert entry["logging.googleapis.com/labels"] == {
        "rule": "load",
        "attempt": "2",
        "adopted": "True",
    }


@pytest.mark.parametrize("extra", [{}, {"labels": {}}, {"labels": None}])
def test_no_labels_no_labels_key(extra):
    assert "logging.googleapis.com/labels" not in formatted(record(**extra))


def test_fields_land_at_the_top_level_and_unknown_types_are_stringified():
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    entry = formatted(record(fields={"event_id": "e-1", "latency_ms": 12, "thing": Odd()}))
    assert (entry["event_id"], entry["latency_ms"], entry["thing"]) == ("e-1", 12, "odd!")


def test_trace_is_the_full_resource_name_when_the_project_is_known(trace):
    entry = formatted(record(), project="demo-project")
    assert entry["logging.googleapis.com/trace"] == f"projects/demo-project/traces/{TRACE}"


def test_no_trace_without_a_project(trace):
    assert "logging.googleapis.com/trace" not in formatted(record(), project=None)


def test_no_trace_outside_a_request():
    assert current_trace.get() is None
    assert "logging.googleapis.com/trace" not in formatted(record())


def test_an_exception_becomes_stack_trace_and_the_message_stays_short():
    try:
        raise KeyError("missing")
    except KeyError:
        made = record(logging.ERROR, "failed", (), exc_info=sys.exc_info())
    entry = formatted(made)
    assert entry["message"] == "failed"
    assert entry["stack_trace"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in entry["stack_trace"]
    assert "test_an_exception_becomes_stack_trace" in entry["stack_trace"]


def test_no_exception_no_stack_trace():
    assert "stack_trace" not in formatted(record(logging.ERROR))


@pytest.mark.parametrize(
    "header, expected",
    [
        (f"{TRACE}/1;o=1", TRACE),
        (f"{TRACE}/8271931843;o=0", TRACE),
        (f"{TRACE}/1", TRACE),
        (f"{TRACE};o=1", TRACE),
        (TRACE, TRACE),
        (f"  {TRACE}/1;o=1 ", TRACE),
        ("/1;o=1", None),
        ("", None),
        (None, None),
    ],
)
def test_trace_id_is_the_part_before_the_span(header, expected):
    assert trace_id(header) == expected


# -- configure() -------------------------------------------------------------------------------


@pytest.fixture
def triggers_logger() -> Iterator[logging.Logger]:
    """The `triggers` logger, restored afterwards (configure() stops propagation)."""
    logger = logging.getLogger("triggers")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    for handler in saved[0]:
        logger.removeHandler(handler)
    try:
        yield logger
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[0]:
            logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def cloud_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h.formatter, CloudLoggingFormatter)]


def test_configure_writes_json_lines_to_stdout(triggers_logger, capsys, trace):
    configure("INFO", "demo-project")
    logging.getLogger("triggers.function.app").info(
        "ack %s", "e-1", extra={"labels": {"rule": "load"}}
    )
    logging.getLogger("triggers.function.app").debug("not shown at INFO")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "ack e-1" and entry["severity"] == "INFO"
    assert entry["logging.googleapis.com/labels"] == {"rule": "load"}
    assert entry["logging.googleapis.com/trace"] == f"projects/demo-project/traces/{TRACE}"
    assert triggers_logger.propagate is False  # the root logger does not print it again


def test_configure_is_idempotent_and_the_latest_call_sets_level_and_project(
    triggers_logger, capsys, trace
):
    configure("INFO")
    configure("info")
    configure("debug", "later-project")
    assert len(cloud_handlers(triggers_logger)) == 1
    assert triggers_logger.level == logging.DEBUG
    logging.getLogger("triggers.x").debug("once")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert (
        json.loads(lines[0])["logging.googleapis.com/trace"]
        == f"projects/later-project/traces/{TRACE}"
    )


def test_configure_keeps_handlers_it_did_not_add(triggers_logger):
    other = logging.NullHandler()
    triggers_logger.addHandler(other)
    configure()
    configure()
    assert other in triggers_logger.handlers
    assert len(cloud_handlers(triggers_logger)) == 1


def test_log_project_prefers_the_explicit_setting_then_the_platform(monkeypatch):
    from triggers.function.settings import Settings, log_project

    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert log_project(Settings()) is None
    assert log_project(Settings(firestore_project="ledger-proj")) == "ledger-proj"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "platform-proj")
    assert log_project(Settings(firestore_project="ledger-proj")) == "platform-proj"
    assert log_project(Settings(project="explicit-proj")) == "explicit-proj"


def test_configure_moves_off_a_closed_stream_without_raising():
    import io
    import logging

    from triggers.function import logs

    logger = logging.getLogger("triggers")
    saved = list(logger.handlers)
    streams = {h: h.stream for h in saved if isinstance(h, logging.StreamHandler)}
    closed, fresh = io.StringIO(), io.StringIO()
    try:
        logs.configure("INFO", stream=closed)
        closed.close()  # e.g. a test's captured stdout, gone with its test
        logs.configure("INFO", stream=fresh)
        logger.info("still logging")
        assert '"message": "still logging"' in fresh.getvalue()
    finally:
        for handler in list(logger.handlers):
            if handler not in saved:
                logger.removeHandler(handler)
        for handler, stream in streams.items():
            handler.stream = stream
