"""The settings of the exactly-once protocol reach what they bound (issue 11).

TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS, _FIND_PAGE_SIZE, _FIND_BUDGET_SECONDS, _FIND_MARGIN_SECONDS,
_AMBIGUOUS_MARGIN_SECONDS, _LEDGER_DEADLINE_SECONDS and _LEDGER_RETRY_SECONDS, read from the
environment, become the runner's, the dispatcher's and the Firestore backend's parameters.
Building them creates no Google client (those are lazy), so this is pure.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes import STORAGE_RULES_YAML
from triggers.errors import SettingsError
from triggers.function.app import App, build_ledger, build_runner
from triggers.function.settings import Settings
from triggers.ledger.firestore import FirestoreBackend
from triggers.rules import load_text
from triggers.runners.cloudrun import CloudRunRunner

RULES = load_text(STORAGE_RULES_YAML, environ={})

ENV = {
    "TRIGGERS_LEDGER": "firestore",
    "TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS": "12",
    "TRIGGERS_FIND_PAGE_SIZE": "250",
    "TRIGGERS_FIND_BUDGET_SECONDS": "7.5",
    "TRIGGERS_FIND_MARGIN_SECONDS": "45",
    "TRIGGERS_AMBIGUOUS_MARGIN_SECONDS": "20",
    "TRIGGERS_LEDGER_DEADLINE_SECONDS": "2.5",
    "TRIGGERS_LEDGER_RETRY_SECONDS": "1.5",
}


@pytest.fixture
def settings(monkeypatch) -> Settings:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_runner_gets_its_timeout_page_size_and_budget(settings):
    runner = build_runner(settings).runner("cloudrun")  # the Cloud Run v2 runner of the router
    assert isinstance(runner, CloudRunRunner)
    assert runner.timeout == 12.0
    assert runner.find_page_size == 250
    assert runner.find_budget == 7.5


def test_the_firestore_ledger_gets_its_deadline_and_retry(settings):
    ledger = build_ledger(settings)
    backend = ledger.backend
    assert isinstance(backend, FirestoreBackend)
    assert backend.deadline == 2.5 and backend.retry_seconds == 1.5
    assert ledger.lease == timedelta(seconds=540)


def test_the_dispatcher_holds_for_the_timeout_plus_the_margin(settings):
    app = App(settings, rules=RULES, runner=build_runner(settings), dead_letters=None)
    assert app.dispatcher.ambiguous_hold == timedelta(seconds=32)
    assert app.dispatcher.find_margin == timedelta(seconds=45)


def test_defaults_keep_a_ledger_outage_well_inside_a_push_deadline():
    settings = Settings(ledger="memory")
    # a push subscription's default ack deadline (also its request timeout) is 10 s
    assert settings.ledger_deadline_seconds + settings.ledger_retry_seconds < 10
    assert settings.cloud_run_timeout_seconds + settings.ambiguous_margin_seconds == 60


def test_a_lease_shorter_than_the_hold_is_refused():
    with pytest.raises(SettingsError, match="lease_seconds=50: must be at least"):
        Settings(lease_seconds=50, cloud_run_timeout_seconds=30, ambiguous_margin_seconds=30)
    assert Settings(lease_seconds=10, cloud_run_timeout_seconds=2, ambiguous_margin_seconds=8)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("find_page_size", 0),
        ("find_page_size", 1001),
        ("find_budget_seconds", 0),
        ("cloud_run_timeout_seconds", 0),
        ("ledger_deadline_seconds", 0),
        ("ledger_retry_seconds", -1),
    ],
)
def test_out_of_range_values_are_refused(name, value):
    with pytest.raises(SettingsError, match=f"{name}={value}: must be"):
        Settings(**{name: value})
