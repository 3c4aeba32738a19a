"""Planning: a matched rule renders the exact jobs.run request, or a permanent RenderError."""

from __future__ import annotations

import textwrap

import pytest

from triggers.errors import RenderError, RulesError
from triggers.events.model import PUBSUB_PUBLISHED, STORAGE_FINALIZED, Event
from triggers.plan import RUN_KEY_ENV
from triggers.rules import load_text

RULES = textwrap.dedent(
    """\
    project: demo-project
    region: europe-west1
    rules:
      - name: csv
        on: storage.finalized
        bucket: raw-data
        match:
          data:
            name: [{wildcard: "incoming/*.csv"}]
        job: csv-loader
        overrides:
          args: ["--input=gs://{{ data.bucket }}/{{ data.name }}", "--stem={{ data.name | stem }}"]
          env: {GENERATION: "{{ data.generation }}", STATIC: "yes"}
          task_count: 4
          timeout: 30m
        dedup:
          key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
          window: 2d
      - name: clear
        on: storage.finalized
        job: projects/other-proj/locations/us-east1/jobs/cleaner
        overrides: {clear_args: true}
      - name: broken
        on: pubsub
        job: worker
        overrides:
          args: ["{{ data.message.json.missing }}"]
      - name: disabled
        enabled: false
        on: storage.finalized
        job: worker
    """
)


def storage_event(name="incoming/a.csv", generation=7, bucket="raw-data") -> Event:
    return Event(
        id="m-1",
        source=f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        subject=f"objects/{name}",
        data={"bucket": bucket, "name": name, "generation": generation, "size": 10},
    )


@pytest.fixture(scope="module")
def rules():
    return load_text(RULES, name="rules.yaml", environ={})


def test_matching_rule_plans_the_exact_jobs_run_body(rules):
    event = storage_event()
    assert [r.name for r in rules.route(event)] == ["csv", "clear"]
    request = rules.get("csv").plan(event)
    assert request.job == "projects/demo-project/locations/europe-west1/jobs/csv-loader"
    assert request.dedup_key == "raw-data/incoming/a.csv#7"
    assert request.dedup_window_seconds == 2 * 86400
    assert request.event.as_dict() == {
        "id": "m-1",
        "source": event.source,
        "type": STORAGE_FINALIZED,
        "kind": "storage",
        "form": event.form,
    }
    assert request.run_job_body() == {
        "overrides": {
            "containerOverrides": [
                {
                    "args": ["--input=gs://raw-data/incoming/a.csv", "--stem=a"],
                    "env": [
                        {"name": "GENERATION", "value": "7"},
                        {"name": "STATIC", "value": "yes"},
                        {"name": RUN_KEY_ENV, "value": request.ledger_key},
                    ],
                }
            ],
            "taskCount": 4,
            "timeout": "1800s",
        }
    }


def test_ledger_key_depends_on_rule_and_dedup_key_only(rules):
    first = rules.get("csv").plan(storage_event())
    again = rules.get("csv").plan(storage_event())
    newer = rules.get("csv").plan(storage_event(generation=8))
    assert first.ledger_key == again.ledger_key
    assert first.ledger_key != newer.ledger_key
    assert len(first.ledger_key) == 64 and set(first.ledger_key) <= set("0123456789abcdef")


def test_clear_args_and_default_dedup_key(rules):
    event = storage_event()
    request = rules.get("clear").plan(event)
    assert request.dedup_key == f"{event.source}#{event.id}"
    assert request.run_job_body()["overrides"]["containerOverrides"][0]["clearArgs"] is True
    assert "args" not in request.run_job_body()["overrides"]["containerOverrides"][0]


def test_scheduler_default_dedup_key_is_job_and_tick():
    event = Event(
        id="x",
        source="//cloudscheduler.googleapis.com/jobs/nightly",
        type="google.cloud.scheduler.job.v1.executed",
        kind="scheduler",
        form="scheduler-http",
        data={"job_name": "nightly", "schedule_time": "2026-11-21T02:00:00Z"},
        dedup_hint="nightly#2026-11-21T02:00:00Z",
    )
    rules = load_text(
        "rules:\n  - name: n\n    on: scheduler\n    schedule: '0 2 * * *'\n    scheduler_job: nightly\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/n\n",
        environ={},
    )
    (rule,) = rules.route(event)
    assert rule.plan(event).dedup_key == "nightly#2026-11-21T02:00:00Z"
    other = Event(**{**_fields(event), "data": {"job_name": "weekly", "schedule_time": "t"}})
    assert rules.route(other) == []


def _fields(event: Event) -> dict:
    return {
        k: getattr(event, k) for k in ("id", "source", "type", "kind", "form", "data", "dedup_hint")
    }


def test_scope_fields_restrict_matching(rules):
    assert [r.name for r in rules.route(storage_event(bucket="elsewhere"))] == ["clear"]
    assert rules.get("csv").explain(storage_event(bucket="elsewhere")).startswith("data.bucket")
    assert rules.get("csv").explain(storage_event(name="incoming/a.txt")).startswith("data.name")


def test_render_failure_is_a_render_error_with_rule_and_line(rules):
    event = Event(
        id="1",
        source="//pubsub.googleapis.com/projects/demo-project/topics/t",
        type=PUBSUB_PUBLISHED,
        kind="pubsub",
        form="pubsub-push",
        data={"message": {"json": {"other": 1}, "attributes": {}}},
    )
    with pytest.raises(RenderError) as info:
        rules.get("broken").plan(event)
    assert info.value.rule == "broken"
    assert info.value.field == "args[0]"
    assert info.value.location == "rules.yaml:27"
    assert "missing" in info.value.message


def test_event_content_is_never_template_source(rules):
    # An object named like a template must come out literally, not evaluated.
    request = rules.get("csv").plan(storage_event(name="incoming/{{ 7 * 7 }}.csv"))
    assert request.overrides.args[0] == "--input=gs://raw-data/incoming/{{ 7 * 7 }}.csv"


def test_sandbox_attribute_escapes_are_refused_at_load_not_per_event():
    # They used to load and then reject every matching event; now the rules file fails.
    with pytest.raises(RulesError) as info:
        load_text(
            "rules:\n  - name: s\n    on: pubsub\n"
            "    job: projects/demo-project/locations/europe-west1/jobs/j\n"
            "    overrides:\n      args: ['{{ data.__class__.__mro__ }}']\n",
            name="rules.yaml",
            environ={},
        )
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.rule) == ("rules.yaml", 6, "s")
    assert "attribute '__mro__' is not allowed" in problem.message


def test_sandbox_still_blocks_attribute_escapes_at_render():
    # A template that reached the renderer without the load-time check (a deferred template
    # of a compiled artifact is checked again when first compiled) still cannot escape.
    from jinja2.exceptions import SecurityError

    from triggers.rules._sandbox import render_bounded
    from triggers.rules.templates import _env

    compiled = _env().from_string("{{ data.__class__.__mro__ }}")
    with pytest.raises(SecurityError, match="unsafe"):
        render_bounded(compiled, {"data": {}})


def test_oversized_rendered_env_is_rejected():
    rules = load_text(
        "rules:\n  - name: s\n    on: storage\n    job: projects/demo-project/locations/europe-west1/jobs/j\n"
        "    overrides:\n      env: {BIG: '{{ data.name * 40000 }}'}\n",
        environ={},
    )
    with pytest.raises(RenderError, match="32 KiB"):
        rules.get("s").plan(storage_event())


def test_disabled_rules_never_route_but_show_in_verdicts(rules):
    event = storage_event()
    assert "disabled" not in [r.name for r in rules.route(event)]
    verdict = {v.rule.name: v for v in rules.verdicts(event)}["disabled"]
    assert not verdict.matched and verdict.reason == "rule is disabled"


def test_when_condition_filters_and_explains():
    rules = load_text(
        "rules:\n  - name: big\n    on: storage\n    when: data.size > 100\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n",
        environ={},
    )
    rule = rules.get("big")
    assert rules.route(storage_event()) == []
    assert rule.explain(storage_event()) == "when: 'data.size > 100' is false"
    big = Event(**{**_fields(storage_event()), "data": {"size": 1000}})
    assert rules.route(big) == [rule]


def test_topic_scoped_rule_explains_why_a_raw_push_cannot_match():
    rules = load_text(
        "project: demo-project\nrules:\n  - name: t\n    on: pubsub\n    topic: orders\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n",
        environ={},
    )
    raw_push = Event(
        id="1",
        source="//pubsub.googleapis.com/projects/demo-project/subscriptions/s",
        type=PUBSUB_PUBLISHED,
        kind="pubsub",
        form="pubsub-push",
        data={
            "message": {"attributes": {}},
            "topic": None,
            "subscription": "projects/demo-project/subscriptions/s",
        },
    )
    reason = rules.get("t").explain(raw_push)
    assert reason.startswith("data.topic: null")
    assert "scope the rule with `subscription:`" in reason


def _pubsub_tick(publish_time: str, inferred: bool = True, form: str = "scheduler-pubsub") -> Event:
    return Event(
        id=f"nightly#{publish_time}",
        source="//cloudscheduler.googleapis.com/jobs/nightly",
        type="google.cloud.scheduler.job.v1.executed",
        kind="scheduler",
        form=form,
        data={
            "job_name": "nightly",
            "schedule_time": publish_time,
            "schedule_time_inferred": inferred,
            "attributes": {"scheduler_job": "nightly"},
        },
        dedup_hint=f"nightly#{publish_time}",
    )


SCHEDULED = (
    "rules:\n  - name: nightly\n    on: scheduler\n    schedule: '0 2 * * *'\n"
    "    time_zone: Europe/Berlin\n    job: projects/demo-project/locations/europe-west1/jobs/n\n"
)


def test_scheduler_publish_retries_of_one_tick_share_a_key():
    # GIVEN a rule owning a 02:00 Berlin schedule, and the ticks Scheduler published through a
    # Pub/Sub target (no schedule time: the decoder used the publish time)
    rule = load_text(SCHEDULED, environ={}).get("nightly")
    first = rule.plan(_pubsub_tick("2026-11-21T01:00:00.412Z"))
    retried = rule.plan(_pubsub_tick("2026-11-21T01:00:41.9Z"))
    next_day = rule.plan(_pubsub_tick("2026-11-22T01:00:00.3Z"))
    # THEN a publish retry is the same tick (02:00 Berlin is 01:00 UTC), the next day is not
    assert first.dedup_key == retried.dedup_key == "nightly#2026-11-21T01:00:00Z"
    assert next_day.dedup_key == "nightly#2026-11-22T01:00:00Z"


def test_known_schedule_times_and_http_ticks_keep_their_own_key():
    rule = load_text(SCHEDULED, environ={}).get("nightly")
    told = rule.plan(_pubsub_tick("2026-11-21T01:00:07Z", inferred=False))
    assert told.dedup_key == "nightly#2026-11-21T01:00:07Z"
    forced = rule.plan(_pubsub_tick("2026-11-21T13:14:15Z", form="scheduler-http"))
    assert forced.dedup_key == "nightly#2026-11-21T13:14:15Z"  # a manual run is its own tick
