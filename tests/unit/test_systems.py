"""Job systems: a rule names its system; what the system cannot express fails at load; the
plan renders that system's request; one runner routes to each system's runner."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from triggers.errors import PermanentRunError, RulesError
from triggers.events import decode
from triggers.rules import load_text
from triggers.runners import Launch, systems
from triggers.runners.routed import SystemRunners

HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "e-1",
    "ce-source": "//example/src",
    "ce-type": "com.example.thing.v1.created",
    "content-type": "application/json",
}


def render_toy(request) -> dict[str, Any]:
    return {"app": request.job, "replicas": request.overrides.task_count, "id": request.ledger_key}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> systems.System:
    """A system that can only set the task count, with its own job names and request shape."""
    system = systems.System(
        name="toy",
        title="Toy Jobs",
        overrides=frozenset({"task_count"}),
        job_pattern=re.compile(r"app-[0-9]+"),
        job_help="an app id such as app-42",
        runner="tests.unit.test_systems:toy_runner",
        render="tests.unit.test_systems:render_toy",
        executions=re.compile(r"^toy/"),
    )
    monkeypatch.setitem(systems.SYSTEMS, "toy", system)
    systems.renderer_of.cache_clear()
    yield system
    systems.renderer_of.cache_clear()


def rules(body: str) -> str:
    return "project: demo-project\nregion: europe-west1\nrules:\n" + body


def test_a_rule_runs_on_cloud_run_v2_unless_it_says_otherwise() -> None:
    rule = load_text(rules("  - {name: r, on: com.example.thing.v1.created, job: j}\n")).get("r")
    request = rule.plan(decode(HEADERS, b"{}"))
    assert request.system == "cloudrun" and request.renderer is None
    assert request.request_body() == request.run_job_body()
    assert (
        request.as_dict()["request"]["name"]
        == "projects/demo-project/locations/europe-west1/jobs/j"
    )


def test_an_unknown_system_is_a_load_error_at_its_line() -> None:
    with pytest.raises(RulesError) as info:
        load_text(rules("  - name: r\n    on: pubsub\n    system: nomad\n    job: j\n"))
    (problem,) = info.value.problems
    assert problem.line == 6
    assert "unknown system 'nomad': use one of cloudrun" in str(problem)


def test_overrides_a_system_cannot_express_are_each_reported_at_their_line(toy) -> None:
    text = rules(
        "  - name: r\n    on: pubsub\n    system: toy\n    job: app-1\n    overrides:\n"
        "      args: [a]\n      task_count: 2\n      timeout: 5m\n"
    )
    with pytest.raises(RulesError) as info:
        load_text(text)
    assert [(p.line, p.message) for p in info.value.problems] == [
        (9, "overrides.args: Toy Jobs (system: toy) has no args"),
        (11, "overrides.timeout: Toy Jobs (system: toy) has no timeout"),
    ]


def test_a_system_job_name_is_checked_against_its_own_pattern(toy) -> None:
    with pytest.raises(RulesError) as info:
        load_text(rules("  - {name: r, on: pubsub, system: toy, job: projects/p/jobs/x}\n"))
    assert "job 'projects/p/jobs/x': Toy Jobs takes an app id such as app-42" in str(info.value)


def test_the_plan_is_the_system_s_own_request(toy) -> None:
    text = rules(
        "  - {name: r, on: com.example.thing.v1.created, system: toy, job: app-7,"
        " overrides: {task_count: 3}}\n"
    )
    request = load_text(text).get("r").plan(decode(HEADERS, b"{}"))
    assert request.system == "toy" and request.job == "app-7"
    expected = {"app": "app-7", "replicas": 3, "id": request.ledger_key}
    assert request.request_body() == expected
    assert request.as_dict()["request"] == expected and request.as_dict()["system"] == "toy"
    # a replay scope changes the identity, and the rendered request follows it
    scoped = request.in_scope("replay-1")
    assert scoped.request_body()["id"] == scoped.ledger_key != request.ledger_key


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str]] = []

    def run(self, request, *, validate_only: bool = False) -> Launch:
        self.calls.append(("run", request.rule))
        return Launch(execution=f"{self.name}/executions/1")

    def find(self, request, *, since: datetime) -> Launch | None:
        self.calls.append(("find", request.rule))
        return None

    def execution_status(self, name: str) -> dict[str, Any] | None:
        self.calls.append(("status", name))
        return {"done": True, "outcome": "succeeded"}


def toy_runner(options) -> Recorder:
    return Recorder("toy")


def test_system_runners_route_by_system_and_build_each_runner_once(toy) -> None:
    built: list[str] = []

    def build(system: systems.System) -> Recorder:
        built.append(system.name)
        return Recorder(system.name)

    runners = SystemRunners(build)
    text = rules("  - {name: r, on: com.example.thing.v1.created, system: toy, job: app-1}\n")
    request = load_text(text).get("r").plan(decode(HEADERS, b"{}"))
    assert runners.run(request).execution == "toy/executions/1"
    assert runners.find(request, since=datetime.now(UTC)) is None
    v2 = replace(request, system="cloudrun", renderer=None)
    runners.run(v2)
    assert built == ["toy", "cloudrun"]
    assert runners.execution_status("toy/executions/1") == {"done": True, "outcome": "succeeded"}
    name = "projects/p/locations/r/jobs/j/executions/j-abcde"
    runners.execution_status(name)
    assert runners.runner("cloudrun").calls == [("run", "r"), ("status", name)]
    assert built == ["toy", "cloudrun"]
    with pytest.raises(PermanentRunError, match="no job system makes executions named like"):
        runners.execution_status("somewhere/else")


def test_the_shipped_system_builds_its_runner_from_the_function_settings() -> None:
    runner = systems.get("cloudrun").build_runner({"cloud_run_endpoint": "http://127.0.0.1:1"})
    assert type(runner).__name__ == "CloudRunRunner"
    assert runner.endpoint == "http://127.0.0.1:1"
