"""The public API of docs/api.md: every name resolves, importing it is cheap, the examples run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import triggers

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "events"


def test_every_public_name_resolves_and_is_listed_in_the_docs() -> None:
    documented = (ROOT / "docs" / "api.md").read_text()
    for name in triggers.__all__:
        assert getattr(triggers, name) is not None, name
        assert f"`{name}" in documented, f"{name} is public but not in docs/api.md"
    assert triggers.compile_pattern is triggers.rules.patterns.compile
    assert set(triggers.__all__) <= set(dir(triggers))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'dispatch_everything'"):
        _ = triggers.dispatch_everything  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_client_and_no_validation_library() -> None:
    # (`google` and `google.cloud` themselves are namespace packages that site-packages' .pth
    # files import at interpreter start: only modules below them count.)
    code = (
        "import sys, triggers; heavy = ('google', 'pydantic', 'jinja2', 'flask', 'ruamel');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy"
        " and m not in ('google', 'google.cloud')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def _sample(name: str) -> tuple[dict[str, str], bytes]:
    return triggers.parse_event_file((SAMPLES / name).read_text(), name)


def test_the_data_path_example_plans_and_dispatches_once() -> None:
    # GIVEN the sample rules, a sample storage event, a memory ledger and a dry-run runner
    rules = triggers.load(ROOT / "config" / "rules.yaml", environ={})
    headers, body = _sample("storage-finalized.cloudevent-binary.json")
    event = triggers.decode(headers, body)
    planned = [rule.plan(event) for rule in rules.route(event)]
    assert [r.rule for r in planned] == ["csv-ingest"]
    assert isinstance(planned[0], triggers.RunRequest)
    dispatcher = triggers.Dispatcher(
        rules, triggers.Ledger(triggers.MemoryBackend()), triggers.DryRunRunner()
    )
    # WHEN it is dispatched twice
    first, second = dispatcher.dispatch(event), dispatcher.dispatch(event)
    # THEN it launched once and the redelivery is a duplicate; both are acknowledged
    assert [o.outcome for o in first.outcomes] == [triggers.Outcome.LAUNCHED]
    assert [o.outcome for o in second.outcomes] == [triggers.Outcome.DUPLICATE]
    assert not first.retry and not second.retry
    assert first.as_dict()["decision"] == "ack"


def test_the_app_example_answers_over_an_sqlite_ledger(tmp_path: Path) -> None:
    settings = triggers.Settings(
        rules=str(ROOT / "config" / "rules.yaml"),
        ledger="sqlite",
        sqlite_path=str(tmp_path / "runs.sqlite3"),
        runner="dry-run",
    )
    app = triggers.App(settings, dead_letters=None)
    response = app.handle(*_sample("pubsub-order.cloudevent-binary.json"))
    assert isinstance(response, triggers.Response)
    assert response.status == 200, response.body
    assert json.loads(json.dumps(response.body))["rules"][0]["outcome"] == "launched"


def test_decode_errors_and_rule_errors_are_the_documented_classes() -> None:
    with pytest.raises(triggers.DecodeError) as bad_event:
        triggers.decode({"content-type": "application/json"}, b"{not json")
    assert bad_event.value.reason in triggers.DecodeError.REASONS
    with pytest.raises(triggers.RulesError) as bad_rules:
        triggers.load_text("rules:\n  - name: x\n    on: pubsub\n")
    assert all(isinstance(p, triggers.Problem) for p in bad_rules.value.problems)
    with pytest.raises(triggers.PatternError):
        triggers.compile_pattern({"data": "not-a-list"})
    assert issubclass(triggers.AmbiguousRunError, triggers.RunError)
    assert issubclass(triggers.RunError, triggers.TriggersError)


def test_all_lists_exactly_the_lazily_exported_names() -> None:
    assert sorted(triggers.__all__) == sorted(triggers._PUBLIC)
