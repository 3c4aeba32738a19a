"""Typed event fields at load: a template or `when:` that reads a `data` field the rule's event
kinds cannot have fails the rules file, with its line and a "did you mean"; free-form parts
stay open; CEL type errors on declared fields fail at load too."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from triggers.errors import RulesError
from triggers.events import decode, parse_event_file
from triggers.events.fields import DATA_FIELDS, OPEN, STRING_MAP, data_problem
from triggers.rules import load, load_text

ROOT = Path(__file__).resolve().parents[2]


def rules(on: str, *, arg: str | None = None, when: str | None = None) -> str:
    """A rules file of one rule `r` (line 4); its first arg is on line 8, its `when:` on 7."""
    lines = ["project: demo-project", "region: europe-west1", "rules:", "  - name: r"]
    lines.append(f"    on: {on}")
    lines.append("    job: worker")
    if when is not None:
        lines.append("    when: '" + when.replace("'", "''") + "'")
    if arg is not None:
        lines.append("    overrides:")
        lines.append("      args: ['" + arg.replace("'", "''") + "']")
    return "\n".join(lines) + "\n"


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_text(text, name="rules.yaml", environ={})
    return [str(p) for p in info.value.problems]


# A misspelt field per kind, where it is read, and the field it should have been.
MISSPELT = [
    ("scheduler", "data.schedul_time", "schedule_time"),
    ("storage", "data.nmae", "name"),
    ("storage.finalized", "data.owner.entty", "entity"),
    ("pubsub", "data.mesage.json", "message"),
    ("pubsub", "data.message.atributes.kind", "attributes"),
    ("google.cloud.storage.object.v1.deleted", "data.generaton", "generation"),
]


@pytest.mark.parametrize(("on", "path", "meant"), MISSPELT)
def test_a_template_reading_a_misspelt_field_fails_with_its_line_and_the_right_name(
    on, path, meant
):
    [problem] = problems(rules(on, arg="{{ " + path + " }}"))
    assert problem.startswith("rules.yaml:8: rule 'r': args[0]: data.")
    assert f"did you mean {meant!r}?" in problem


@pytest.mark.parametrize(("on", "path", "meant"), MISSPELT)
def test_a_condition_reading_a_misspelt_field_fails_with_its_line_and_the_right_name(
    on, path, meant
):
    [problem] = problems(rules(on, when=f'{path} == "x"'))
    assert problem.startswith("rules.yaml:7: rule 'r': when: CEL error at 1:")
    assert f"did you mean {meant!r}?" in problem


def test_the_message_names_the_path_and_the_kinds():
    [problem] = problems(rules("scheduler", arg="{{ data.schedul_time }}"))
    assert problem == (
        "rules.yaml:8: rule 'r': args[0]: data.schedul_time: no 'scheduler' event has this "
        "field; did you mean 'schedule_time'?"
    )
    [problem] = problems(rules("storage", when='data.nmae.startsWith("a")'))
    assert "data.nmae: no 'storage' event has this field; did you mean 'name'?" in problem


@pytest.mark.parametrize(
    "read",
    [
        "event.data.nmae",  # the whole document, then data
        "data['nmae']",  # item syntax
        "data.nmae | upper",  # under a filter
    ],
)
def test_every_way_a_template_reads_data_is_checked(read):
    [problem] = problems(rules("storage", arg="{{ " + read + " }}"))
    assert "did you mean 'name'?" in problem


def test_a_multi_line_template_says_which_template_line():
    text = textwrap.dedent(
        """\
        rules:
          - name: r
            on: scheduler
            job: projects/demo-project/locations/europe-west1/jobs/w
            dedup:
              key: |
                {{ data.job_name }}
                {{ data.schedul_time }}
        """
    )
    [problem] = problems(text)
    assert problem.startswith("rules.yaml:6: rule 'r': dedup.key: data.schedul_time:")
    assert problem.endswith("(template line 2)")


@pytest.mark.parametrize(
    ("on", "template"),
    [
        ("pubsub", "{{ data.message.json.anything.below[0].here }}"),
        ("pubsub", "{{ data.message.attributes.any_key }}"),
        ("pubsub", "{{ data.message.attributes['with-dash'] }}"),
        ("scheduler", "{{ data.json.report }} {{ data.attributes.scheduler_job }}"),
        ("storage", "{{ data.metadata.owner }} {{ data.acl[0].entity }}"),
        ("storage", "{{ data.name.split('/')[0] }}"),  # a method of a string field
        ("storage", "{{ data.get('contentType', 'none') }}"),  # a method of the object
        ("com.example.order.v1.created", "{{ data.whatever.it.is }}"),
        ("storage", "{{ event.bucket }}"),  # an extension at the document's top level
        ("storage", "{% for data in [{'x': 1}] %}{{ data.x }}{% endfor %}"),  # rebound name
        ("storage", "{% set key = 'nmae' %}{{ data[key] }}"),  # computed at render
    ],
)
def test_free_form_parts_and_non_field_reads_stay_open(on, template):
    load_text(rules(on, arg=template), environ={})


@pytest.mark.parametrize(
    ("on", "condition"),
    [
        ("pubsub", "data.message.json.order.amount > 3.0"),
        ("pubsub", 'data.message.attributes.kind == "order"'),
        ("pubsub", "data.message.text == null"),
        ("scheduler", 'data.json.report == "x" && !data.schedule_time_inferred'),
        ("storage", 'has(data.metadata.owner) && data.metadata.owner == "me"'),
        ("storage", 'data.size > 1000 && data.contentType.startsWith("text/")'),
        ("com.example.order.v1.created", "data.whatever > 1"),
        ("storage", 'event.bucket == "raw"'),
    ],
)
def test_conditions_on_declared_and_free_form_fields_load(on, condition):
    load_text(rules(on, when=condition), environ={})


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        ('data.size >= "100"', "found no matching overload for '_>=_' applied to '(int, string)'"),
        ("data.temporaryHold + 1 > 0", "found no matching overload for '_+_'"),
        ("data.size", "must be a bool expression, this one gives INT"),
        ("data.name", "must be a bool expression, this one gives"),
    ],
)
def test_condition_type_errors_on_declared_fields_fail_at_load(condition, said):
    [problem] = problems(rules("storage", when=condition))
    assert problem.startswith("rules.yaml:7: rule 'r': when: ")
    assert said in problem


@pytest.mark.parametrize(
    ("condition", "expected"),
    [("data.size > 1.5", True), ("data.size == 2000.0", True), ("data.size < 0.5", False)],
)
def test_an_int_field_compared_with_a_double_loads_and_evaluates_as_at_run_time(
    condition, expected
):
    # The CEL runtime compares numbers across types; the checker alone would refuse this.
    [rule] = load_text(rules("storage", when=condition), environ={}).rules
    document = {"data": {"bucket": "b", "name": "n", "size": 2000}}
    assert rule.condition.evaluate(document)[0] is expected


def test_the_same_condition_without_declared_fields_is_not_refused():
    # A custom CloudEvent's data is the producer's: the checker cannot know `size` is a string.
    load_text(rules("com.example.order.v1.created", when='data.size >= "100"'), environ={})


def test_a_rule_on_several_kinds_may_read_a_field_any_of_them_has():
    on = "[pubsub, scheduler]"
    load_text(rules(on, arg="{{ data.job_name }}/{{ data.message.message_id }}"), environ={})
    load_text(rules(on, when='has(data.job_name) || data.topic == "t"'), environ={})
    [problem] = problems(rules(on, arg="{{ data.jobname }}"))
    assert "data.jobname: no 'pubsub' or 'scheduler' event has this field" in problem
    assert "did you mean 'job_name'?" in problem
    [problem] = problems(rules(on, when='data.jobname == "x"'))
    assert "did you mean 'job_name'?" in problem


def test_a_rule_that_also_takes_custom_events_reads_anything():
    load_text(rules("[storage, com.example.thing.v1]", arg="{{ data.nmae }}"), environ={})


def test_every_problem_is_reported_at_once():
    text = rules("scheduler", arg="{{ data.schedul_time }}", when="data.jobname == 'x'")
    found = problems(text)
    assert len(found) == 2
    assert any("args[0]: data.schedul_time" in p for p in found)
    assert any("when: " in p and "data.jobname" in p for p in found)


def test_without_a_close_name_the_fields_are_listed_or_pointed_to():
    assert data_problem({"scheduler"}, ["zzz"]) == (
        "data.zzz: no 'scheduler' event has this field; its fields are attributes, job_name, "
        "json, schedule_time, schedule_time_inferred, text"
    )
    assert data_problem({"storage"}, ["zzz"]).endswith("its fields are listed in docs/events.md")
    assert data_problem({"storage"}, ["name"]) is None
    assert data_problem({"generic"}, ["zzz", 0, "x"]) is None


# The declarations must describe what the decoders build: every key of every sample event's
# `data` is declared, down to the free-form parts.
SAMPLES = sorted((ROOT / "config" / "events").glob("*.json"))


def undeclared(shape, value, where: str) -> list[str]:
    if not isinstance(shape, Mapping) or not isinstance(value, Mapping):
        assert shape in (OPEN, STRING_MAP) or not isinstance(value, Mapping), where
        return []
    out = []
    for key, item in value.items():
        if key not in shape:
            out.append(f"{where}.{key}")
        else:
            out.extend(undeclared(shape[key], item, f"{where}.{key}"))
    return out


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_field_a_sample_event_has_is_declared(path):
    event = decode(*parse_event_file(path.read_text(encoding="utf-8"), str(path)))
    assert undeclared(DATA_FIELDS[event.kind], event.data, "data") == []


@pytest.mark.parametrize(
    "path",
    [ROOT / "config" / "rules.yaml", *sorted((ROOT / "config" / "systems").glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_the_shipped_rules_still_load(path):
    assert load(path).rules
