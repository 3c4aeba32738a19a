"""The function's settings (triggers/function/settings.py): the standard-library parser of the
`TRIGGERS_*` variables that replaced pydantic-settings (issue 15), rule by rule."""

from __future__ import annotations

import dataclasses

import pytest

from triggers.errors import SettingsError, TriggersError
from triggers.function.settings import FIELDS, Settings

TOPIC = "projects/p/topics/dead-letters"


@pytest.fixture(autouse=True)
def no_triggers_env(monkeypatch):
    """None of the developer's or CI's own TRIGGERS_* variables (any case) leak in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("TRIGGERS_"):
            monkeypatch.delenv(name)


def problems(**overrides) -> list[str]:
    with pytest.raises(SettingsError) as info:
        Settings(**overrides)
    return info.value.problems


def env_problems(monkeypatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        Settings()
    return info.value.problems


# -- types --------------------------------------------------------------------------------------


def test_text_from_the_environment_becomes_each_fields_type(monkeypatch):
    for name, value in {
        "TRIGGERS_RULES": "rules/",  # str
        "TRIGGERS_FIRESTORE_PROJECT": "ledger-proj",  # optional str
        "TRIGGERS_LEASE_SECONDS": " 600 ",  # int, surrounding space allowed
        "TRIGGERS_FIND_PAGE_SIZE": "250.0",  # an int written as a whole float, as pydantic read it
        "TRIGGERS_FIND_BUDGET_SECONDS": "7.5",  # float
        "TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS": "12",  # float from an integer
        "TRIGGERS_LEDGER": "firestore",  # Literal
        "TRIGGERS_CLOUD_RUN_V1_REGIONS": '["europe-west1", "us-central1"]',  # JSON list
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.rules == "rules/"
    assert settings.firestore_project == "ledger-proj"
    assert settings.lease_seconds == 600 and type(settings.lease_seconds) is int
    assert settings.find_page_size == 250 and type(settings.find_page_size) is int
    assert settings.find_budget_seconds == 7.5
    assert settings.cloud_run_timeout_seconds == 12.0
    assert type(settings.cloud_run_timeout_seconds) is float
    assert settings.ledger == "firestore"
    assert settings.cloud_run_v1_regions == ("europe-west1", "us-central1")


def test_unset_variables_take_the_defaults():
    settings = Settings()
    assert settings.as_dict() == {spec.name: spec.default for spec in FIELDS}
    assert (settings.ledger, settings.lease_seconds, settings.oidc_allowed_emails) == (
        "sqlite",
        540,
        (),
    )


def test_empty_text_stays_text_for_an_optional_string(monkeypatch):
    monkeypatch.setenv("TRIGGERS_PROJECT", "")  # as pydantic-settings: "" is not None
    assert Settings().project == ""


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TRIGGERS_LEASE_SECONDS", "ten", "must be an integer"),
        ("TRIGGERS_LEASE_SECONDS", "600.5", "must be an integer"),
        ("TRIGGERS_LEASE_SECONDS", "", "must be an integer"),
        ("TRIGGERS_FIND_BUDGET_SECONDS", "soon", "must be a number"),
        ("TRIGGERS_FIND_BUDGET_SECONDS", "inf", "must be a finite number"),
        ("TRIGGERS_TRACING_SAMPLE_RATIO", "nan", "must be a finite number"),
    ],
)
def test_text_that_is_not_a_number_is_refused(monkeypatch, env, value, expected):
    assert env_problems(monkeypatch, **{env: value}) == [f"{env}={value!r}: {expected}"]


def test_keyword_arguments_of_the_wrong_type_are_refused():
    assert problems(lease_seconds=True, rules=3, project=b"p") == [
        "rules=3: must be a string",
        "lease_seconds=True: must be an integer",
        "project=b'p': must be a string",
    ]  # in the table's order


def test_keyword_arguments_are_converted_like_text():
    settings = Settings(lease_seconds="600", cloud_run_timeout_seconds=12, find_page_size=50.0)
    assert (settings.lease_seconds, settings.find_page_size) == (600, 50)
    assert settings.cloud_run_timeout_seconds == 12.0
    assert type(settings.cloud_run_timeout_seconds) is float


def test_an_unknown_keyword_is_a_programming_error():
    with pytest.raises(TypeError, match="unknown settings: leger"):
        Settings(leger="memory")


# -- choices, bounds, pattern -------------------------------------------------------------------


def test_a_choice_must_be_one_of_the_listed_values_exactly(monkeypatch):
    assert env_problems(monkeypatch, TRIGGERS_LEDGER="FIRESTORE") == [
        "TRIGGERS_LEDGER='FIRESTORE': must be one of 'firestore', 'sqlite', 'memory'"
    ]
    monkeypatch.delenv("TRIGGERS_LEDGER")
    assert problems(tracing="stdout") == [
        "tracing='stdout': must be one of 'off', 'cloud-trace', 'console'"
    ]
    assert Settings(runner="dry-run").runner == "dry-run"


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TRIGGERS_LEASE_SECONDS", "5", "must be at least 10"),  # ge
        ("TRIGGERS_FIND_PAGE_SIZE", "0", "must be at least 1"),  # ge
        ("TRIGGERS_FIND_PAGE_SIZE", "1001", "must be at most 1000"),  # le
        ("TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS", "0", "must be greater than 0"),  # gt
        ("TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS", "300.5", "must be at most 300"),  # le
        ("TRIGGERS_LEDGER_RETRY_SECONDS", "-1", "must be at least 0"),  # ge 0
        ("TRIGGERS_TRACING_SAMPLE_RATIO", "1.01", "must be at most 1"),
        ("TRIGGERS_MAX_BODY_BYTES", "1023", "must be at least 1024"),
    ],
)
def test_a_value_outside_its_bounds_is_refused(monkeypatch, env, value, expected):
    assert env_problems(monkeypatch, **{env: value}) == [f"{env}={value!r}: {expected}"]


def test_the_bounds_themselves_are_allowed():
    settings = Settings(
        find_page_size=1000,
        cloud_run_timeout_seconds=300,
        ledger_retry_seconds=0,
        tracing_sample_ratio=0,
        max_body_bytes=1024,
        lease_seconds=330,
    )
    assert (settings.find_page_size, settings.cloud_run_timeout_seconds) == (1000, 300.0)


def test_the_dead_letter_topic_must_be_a_topic_name():
    assert Settings(dead_letter_topic=TOPIC).dead_letter_topic == TOPIC
    for bad in ("dead-letters", "projects/p/topics/t/extra", "projects//topics/t"):
        assert problems(dead_letter_topic=bad) == [
            f"dead_letter_topic={bad!r}: must match ^projects/[^/]+/topics/[^/]+$"
        ]


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_dead_letter_topic_is_off(monkeypatch, value):
    assert Settings(dead_letter_topic=value).dead_letter_topic is None
    monkeypatch.setenv("TRIGGERS_DEAD_LETTER_TOPIC", value)
    assert Settings().dead_letter_topic is None


# -- JSON lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "a@b.c", '"a@b.c"', "[1]", '{"a": 1}', "[nope"])
def test_a_list_setting_must_be_a_json_list_of_strings(monkeypatch, value):
    assert env_problems(monkeypatch, TRIGGERS_OIDC_ALLOWED_EMAILS=value) == [
        f"""TRIGGERS_OIDC_ALLOWED_EMAILS={value!r}: must be a JSON list of strings, e.g. ["a", "b"]"""
    ]


def test_a_list_setting_is_a_tuple_from_text_or_a_python_list(monkeypatch):
    assert Settings(oidc_allowed_emails=["a@b.c"]).oidc_allowed_emails == ("a@b.c",)
    monkeypatch.setenv("TRIGGERS_OIDC_ALLOWED_EMAILS", "[]")
    assert Settings().oidc_allowed_emails == ()


# -- the lease and the hold ---------------------------------------------------------------------


def test_the_lease_must_outlast_the_timeout_plus_the_ambiguous_margin(monkeypatch):
    assert env_problems(
        monkeypatch,
        TRIGGERS_LEASE_SECONDS="50",
        TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS="30",
        TRIGGERS_AMBIGUOUS_MARGIN_SECONDS="30",
    ) == [
        "TRIGGERS_LEASE_SECONDS='50': must be at least TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS"
        " + TRIGGERS_AMBIGUOUS_MARGIN_SECONDS (60)"
    ]
    # the default lease too, when the other two grow past it
    monkeypatch.delenv("TRIGGERS_LEASE_SECONDS")
    assert problems(cloud_run_timeout_seconds=300, ambiguous_margin_seconds=300) == [
        "TRIGGERS_LEASE_SECONDS (default): must be at least TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS"
        " + TRIGGERS_AMBIGUOUS_MARGIN_SECONDS (600)"
    ]
    assert Settings(lease_seconds=60, ambiguous_margin_seconds=30).lease_seconds == 60


def test_the_hold_is_not_checked_when_one_of_its_values_is_itself_invalid():
    # only the bad value is reported, not a comparison made with it
    assert problems(lease_seconds=5) == ["lease_seconds=5: must be at least 10"]
    assert problems(ambiguous_margin_seconds=-1) == [
        "ambiguous_margin_seconds=-1: must be at least 0"
    ]


# -- one error, every problem ------------------------------------------------------------------


def test_every_problem_is_reported_at_once_in_one_error(monkeypatch):
    for name, value in {
        "TRIGGERS_LEASE_SECONDS": "5",
        "TRIGGERS_LEDGER": "postgres",
        "TRIGGERS_OIDC_ALLOWED_EMAILS": "a@b.c",
        "TRIGGERS_DEAD_LETTER_TOPIC": "dl",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        Settings(find_page_size=0)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TriggersError)
    assert str(info.value) == (
        "5 problems in the settings:\n"
        "  TRIGGERS_LEDGER='postgres': must be one of 'firestore', 'sqlite', 'memory'\n"
        "  TRIGGERS_LEASE_SECONDS='5': must be at least 10\n"
        "  find_page_size=0: must be at least 1\n"
        """  TRIGGERS_OIDC_ALLOWED_EMAILS='a@b.c': must be a JSON list of strings, e.g. ["a", "b"]\n"""
        "  TRIGGERS_DEAD_LETTER_TOPIC='dl': must match ^projects/[^/]+/topics/[^/]+$"
    )


# -- names, precedence ----------------------------------------------------------------------------


def test_variable_names_are_case_insensitive(monkeypatch):
    monkeypatch.setenv("triggers_ledger", "memory")
    monkeypatch.setenv("Triggers_Lease_Seconds", "700")
    settings = Settings()
    assert (settings.ledger, settings.lease_seconds) == ("memory", 700)


def test_keyword_arguments_override_the_environment(monkeypatch):
    monkeypatch.setenv("TRIGGERS_LEDGER", "firestore")
    monkeypatch.setenv("TRIGGERS_LEASE_SECONDS", "not a number")  # never read: overridden
    settings = Settings(ledger="memory", lease_seconds=600)
    assert (settings.ledger, settings.lease_seconds) == ("memory", 600)
    monkeypatch.setenv("TRIGGERS_PROJECT", "from-env")
    assert Settings(project=None, lease_seconds=600).project is None  # None is a value too


def test_other_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("TRIGGERS_REGION", "europe-west1")  # for ${TRIGGERS_REGION} in rules
    monkeypatch.setenv("LEDGER", "nonsense")
    assert Settings().ledger == "sqlite"


# -- the object ---------------------------------------------------------------------------------


def test_settings_are_frozen_comparable_and_hashable():
    settings = Settings(ledger="memory")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ledger = "sqlite"  # type: ignore[misc]
    assert settings.ledger == "memory"
    assert settings == Settings(ledger="memory") != Settings()
    assert len({settings, Settings(ledger="memory")}) == 1


def test_the_repr_shows_what_differs_from_the_defaults():
    assert repr(Settings()) == "Settings()"
    assert repr(Settings(ledger="memory", oidc_allowed_emails=["a@b.c"], lease_seconds=600)) == (
        "Settings(ledger='memory', lease_seconds=600, oidc_allowed_emails=('a@b.c',))"
    )


def test_the_field_table_lists_every_setting_with_its_variable_and_limits():
    by_name = {spec.name: spec for spec in FIELDS}
    assert len(by_name) == len(FIELDS) == 40
    assert list(by_name) == [f.name for f in dataclasses.fields(Settings)]
    assert all(spec.env == "TRIGGERS_" + spec.name.upper() for spec in FIELDS)
    lease, page, ratio = (
        by_name["lease_seconds"],
        by_name["find_page_size"],
        by_name["tracing_sample_ratio"],
    )
    assert (lease.kind, lease.default, lease.ge, lease.description) == (
        "int",
        540,
        10,
        "Claim lease: the function's timeout.",
    )
    assert (page.ge, page.le, ratio.ge, ratio.le) == (1, 1000, 0, 1)
    assert by_name["cloud_run_timeout_seconds"].gt == 0
    assert by_name["ledger"].choices == ("firestore", "sqlite", "memory")
    assert by_name["oidc_allowed_emails"].kind == "list"
    assert by_name["project"].kind == "str?"
    kinds = {spec.kind for spec in FIELDS}
    assert kinds == {"str", "str?", "int", "float", "choice", "list"}


def test_every_default_satisfies_its_own_rules(monkeypatch):
    # each default, written out as text in the environment, reads back as itself
    import json

    for spec in FIELDS:
        if spec.default is not None:
            text = json.dumps(list(spec.default)) if spec.kind == "list" else str(spec.default)
            monkeypatch.setenv(spec.env, text)
    assert Settings() == Settings(**{spec.name: spec.default for spec in FIELDS})
    assert Settings().as_dict() == {spec.name: spec.default for spec in FIELDS}
