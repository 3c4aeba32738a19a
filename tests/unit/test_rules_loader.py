"""Loading rules: valid files load; every kind of wrong file fails with all problems at once."""

from __future__ import annotations

import textwrap

import pytest

from triggers.errors import RulesError
from triggers.rules import load, load_text


def _problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_text(textwrap.dedent(text), name="rules.yaml", environ=kwargs.get("environ", {}))
    return [str(p) for p in info.value.problems]


MINIMAL = """\
project: demo-project
region: europe-west1
rules:
  - name: a
    on: pubsub
    job: worker
"""


def test_minimal_file_resolves_short_job_names_with_file_defaults():
    rules = load_text(MINIMAL, environ={})
    (rule,) = rules.rules
    assert rule.job == "projects/demo-project/locations/europe-west1/jobs/worker"
    assert rule.types == {"google.cloud.pubsub.topic.v1.messagePublished"}
    assert rule.location.line == 4


def test_rule_level_project_and_region_override_file_defaults():
    text = MINIMAL + "    project: other-project\n    region: us-central1\n"
    (rule,) = load_text(text, environ={}).rules
    assert rule.job == "projects/other-project/locations/us-central1/jobs/worker"


def test_full_job_name_needs_no_defaults():
    text = """\
    rules:
      - name: a
        on: scheduler
        job: projects/p-123456/locations/asia-east1/jobs/nightly
    """
    (rule,) = load_text(textwrap.dedent(text), environ={}).rules
    assert rule.job == "projects/p-123456/locations/asia-east1/jobs/nightly"


def test_on_shorthands_expand_to_cloudevent_types():
    text = """\
    project: demo-project
    region: europe-west1
    rules:
      - name: a
        on: [storage, com.example.thing.v1]
        job: worker
    """
    (rule,) = load_text(textwrap.dedent(text), environ={}).rules
    assert rule.types == {
        "google.cloud.storage.object.v1.finalized",
        "google.cloud.storage.object.v1.deleted",
        "google.cloud.storage.object.v1.archived",
        "google.cloud.storage.object.v1.metadataUpdated",
        "com.example.thing.v1",
    }


def test_env_references_are_substituted_with_defaults_and_escapes():
    text = """\
    project: ${P}
    region: ${R:-europe-west1}
    rules:
      - name: a
        on: pubsub
        job: worker
        overrides:
          env: {PRICE: "$${NOT_A_REF}"}
    """
    (rule,) = load_text(textwrap.dedent(text), environ={"P": "from-env-1"}).rules
    assert rule.job == "projects/from-env-1/locations/europe-west1/jobs/worker"
    assert rule.spec.overrides.env == {"PRICE": "${NOT_A_REF}"}


def test_yaml_12_keeps_on_yes_no_and_dates_as_strings():
    text = """\
    project: demo-project
    region: europe-west1
    rules:
      - name: a
        on: pubsub
        match: {data: {message: {attributes: {flag: [yes], day: [2026-11-21]}}}}
        job: worker
    """
    (rule,) = load_text(textwrap.dedent(text), environ={}).rules
    assert rule.spec.match == {
        "data": {"message": {"attributes": {"flag": ["yes"], "day": ["2026-11-21"]}}}
    }


def test_every_problem_is_reported_at_once_with_file_line_and_rule():
    problems = _problems(
        """\
        project: demo-project
        region: europe-west1
        rules:
          - name: first
            on: storage.created
            job: worker
            overrides:
              task_count: 0
              timeout: 200h
          - name: second
            on: pubsub
            job: Bad_Job
            overrides:
              env: {CLOUD_RUN_JOB: x, "1BAD": y}
          - name: third
            on: pubsub
            jobb: worker
        """
    )
    assert problems == [
        "rules.yaml:5: rule 'first': on: unknown event source 'storage.created': use one of "
        "pubsub, storage, storage.finalized, storage.deleted, storage.archived, "
        "storage.metadataUpdated, scheduler or a full CloudEvent type",
        "rules.yaml:8: rule 'first': overrides.task_count: Input should be greater than or equal to 1",
        "rules.yaml:9: rule 'first': overrides.timeout: timeout must be between 1s and 168h, not 720000s",
        "rules.yaml:12: rule 'second': job id 'Bad_Job' is not a valid Cloud Run job name "
        "(lowercase letters, digits and '-', starting with a letter, at most 63 characters)",
        "rules.yaml:14: rule 'second': overrides.env: env name 'CLOUD_RUN_JOB' is reserved by "
        "Cloud Run or triggers; env name '1BAD' is not a valid variable name",
        "rules.yaml:15: rule 'third': job: required field is missing",
        "rules.yaml:17: rule 'third': unknown field 'jobb' (did you mean 'job'?)",
    ]


def test_invalid_pattern_cel_and_templates_point_at_their_lines():
    problems = _problems(
        """\
        project: demo-project
        region: europe-west1
        rules:
          - name: a
            on: storage
            match:
              data:
                name: "not-a-list"
            when: size(data.name) > "x"
            job: worker
            overrides:
              args: ["--in={{ dat.name }}", "--ok={{ data.name }}", "{{ broken"]
            dedup:
              key: "{{ data.name }"
        """
    )
    assert len(problems) == 5
    assert problems[0].startswith("rules.yaml:8: rule 'a': match.data.name:")
    assert problems[1].startswith("rules.yaml:9: rule 'a': when: CEL error at 1:")
    assert "no matching overload" in problems[1]
    assert problems[2] == (
        "rules.yaml:12: rule 'a': args[0]: template uses unknown variable 'dat'; "
        "available: data, event, id, source, subject, time, type"
    )
    assert problems[3].startswith("rules.yaml:12: rule 'a': args[2]: template syntax error")
    assert problems[4].startswith("rules.yaml:14: rule 'a': dedup.key: template syntax error")


def test_when_must_be_boolean():
    problems = _problems(MINIMAL + "    when: size(data.message.attributes)\n")
    assert problems == [
        "rules.yaml:7: rule 'a': when: must be a bool expression, this one gives INT"
    ]


def test_yaml_syntax_error_and_duplicate_keys_name_their_line():
    (problem,) = _problems("rules:\n  - name: a\n    on: [pubsub\n")
    assert problem.startswith("rules.yaml:4: YAML: while parsing a flow sequence:")
    assert _problems("rules:\n  - name: a\n    name: b\n") == [
        "rules.yaml:3: YAML: duplicate key 'name' (first on line 2)"
    ]
    assert _problems("base: &b {on: pubsub}\nrules:\n  - <<: *b\n") == [
        "rules.yaml:3: YAML: merge keys (<<) are not supported in rules files"
    ]


def test_short_job_without_project_or_region_is_explained():
    assert _problems("rules:\n  - name: a\n    on: pubsub\n    job: worker\n") == [
        "rules.yaml:4: rule 'a': job 'worker' is a short name but no project or region is set "
        "(set it on the rule, at the top of the file, or use the full job name)"
    ]


def test_missing_env_variable_is_a_problem_on_its_line():
    assert _problems("project: ${NOPE}\nregion: r\nrules: []\n") == [
        "rules.yaml:1: environment variable NOPE is not set (write ${NOPE:-default})"
    ]


@pytest.mark.parametrize(
    "cron, message",
    [
        ("61 * * * *", "schedule '61 * * * *': bad minute"),
        ("0 0 30 2 *", "schedule '0 0 30 2 *': bad day-of-month"),
        ("0 2 L * *", "day-of-month 'L': Cloud Scheduler does not support L"),
    ],
)
def test_schedules_that_cannot_fire_fail_at_load(cron, message):
    (problem,) = _problems(
        MINIMAL.replace("on: pubsub", "on: scheduler") + f"    schedule: '{cron}'\n"
    )
    assert problem.startswith("rules.yaml:7: rule 'a': schedule: ") and message in problem


def test_source_fields_only_on_their_source():
    problems = _problems(MINIMAL + "    bucket: raw\n    time_zone: Europe/Berlin\n")
    assert problems == [
        "rules.yaml:4: rule 'a': bucket applies only to 'storage' rules; time_zone applies only to "
        "'scheduler' rules; time_zone needs a schedule",
    ]


@pytest.mark.parametrize(
    ("on", "field"),
    [
        ("google.cloud.pubsub.topic.v1.messagePublished", "    topic: orders\n"),
        ("google.cloud.storage.object.v1.finalized", "    bucket: raw\n"),
        ("[google.cloud.storage.object.v1.deleted, storage.finalized]", "    bucket: raw\n"),
    ],
)
def test_a_full_type_of_a_known_source_takes_that_sources_fields(on, field):
    """The README allows `on:` as a full CloudEvent type; one of Pub/Sub's or Cloud Storage's
    is that source (its topic / bucket scope apply, and the Terraform module wires it)."""
    rules = load_text(MINIMAL.replace("on: pubsub", f"on: {on}") + field, environ={})
    assert len(rules) == 1
    assert _problems(MINIMAL.replace("on: pubsub", "on: com.example.thing.v1") + field) != []


def test_unknown_time_zone_bad_cron_and_args_with_clear_args():
    problems = _problems(
        MINIMAL.replace("on: pubsub", "on: scheduler")
        + "    schedule: '0 2 * *'\n    time_zone: Europe/Nowhere\n"
        + "    overrides: {args: [a], clear_args: true}\n"
    )
    assert problems == [
        "rules.yaml:7: rule 'a': schedule: schedule '0 2 * *' has 4 fields; unix-cron has 5 "
        "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *'",
        "rules.yaml:8: rule 'a': time_zone: unknown time zone 'Europe/Nowhere' (use an IANA name)",
        "rules.yaml:9: rule 'a': overrides: set either args or clear_args, not both",
    ]


def test_top_level_shape_problems():
    assert _problems("rule: []\n") == [
        "rules.yaml:1: unknown field 'rule' (did you mean 'rules'?)",
        "rules.yaml:1: missing 'rules:' (a list of rules)",
    ]
    assert _problems("- a\n") == ["rules.yaml:1: expected a mapping with 'rules:', found a LineSeq"]
    assert _problems("") == ["rules.yaml:1: the file is empty: expected a mapping with 'rules:'"]


def test_directory_of_files_loads_all_and_finds_duplicates_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(MINIMAL.replace("name: a", "name: b"))
    rules = load(tmp_path)
    assert [r.name for r in rules] == ["a", "b"]
    (tmp_path / "sub" / "c.yaml").write_text(MINIMAL)
    with pytest.raises(RulesError) as info:
        load(tmp_path)
    (problem,) = info.value.problems
    assert problem.file.endswith("c.yaml") and problem.line == 4
    assert problem.message == f"duplicate rule name (first defined at {tmp_path / 'a.yaml'}:4)"


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(RulesError, match="no such file or directory"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(RulesError, match=r"no \*.yaml or \*.yml rules files"):
        load(tmp_path)


def test_sample_config_loads():
    rules = load("config/rules.yaml", environ={})
    assert [r.name for r in rules] == [
        "csv-ingest",
        "paid-orders",
        "nightly-report",
        "csv-deleted",
        "landing-batch",
        "hourly-compaction",
    ]


@pytest.mark.parametrize(
    "name, why",
    [
        ("CLOUD_RUN_FOO", "reserved: the prefix CLOUD_RUN_ is Cloud Run's"),
        ("K_FOO", "reserved: the prefix K_ is Cloud Run's"),
        ("X_GOOGLE_FOO", "reserved: the prefix X_GOOGLE_ is Cloud Run's"),
        ("CLOUD_RUN_TASK_INDEX", "reserved by Cloud Run or triggers"),
        ("K_REVISION", "reserved by Cloud Run or triggers"),
        ("PORT", "reserved by Cloud Run or triggers"),
        ("TRIGGERS_RUN_KEY", "reserved by Cloud Run or triggers"),
    ],
)
def test_reserved_env_names_and_prefixes_are_refused_at_load(name, why):
    problems = _problems(
        f"""\
        project: demo-project
        region: europe-west1
        rules:
          - name: env
            on: pubsub
            job: worker
            overrides:
              env: {{{name}: x}}
        """
    )
    assert problems == [f"rules.yaml:8: rule 'env': overrides.env: env name '{name}' is {why}"]


@pytest.mark.parametrize("name", ["KFOO", "K", "CLOUD_RUNNER", "x_google_foo", "MY_K_FOO", "PORTS"])
def test_names_near_the_reserved_ones_are_allowed(name):
    rules = load_text(
        "project: demo-project\nregion: europe-west1\nrules:\n"
        f"  - {{name: env, on: pubsub, job: worker, overrides: {{env: {{{name}: x}}}}}}\n",
        environ={},
    )
    assert rules.get("env").spec.overrides.env == {name: "x"}
