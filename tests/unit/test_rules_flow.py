"""`limits:` and `batch:` in rules files: what they compile to (Rule.flow, Rule.batch_key), how
the file-level `limits:` merges into each rule's, and every problem, at its `file:line`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from triggers.errors import RulesError
from triggers.flow.spec import Batching, Flow, Limits, WhenBusy
from triggers.rules import load_text
from triggers.rules.flow import describe_rate, flow_lines, flow_summary
from triggers.rules.schema_flow import parse_rate

ROOT = Path(__file__).resolve().parents[2]


def _load(text: str):
    return load_text(textwrap.dedent(text), name="rules.yaml", environ={})


def _problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        _load(text)
    return [str(p) for p in info.value.problems]


_SAE_JOB = "cn-hangzhou/ee1a7a07-abcb-4652-a1d3-2d57f4150000"
HEAD = """\
project: demo-project
region: europe-west1
"""


def _rule(name: str, extra: str, on: str = "pubsub", job: str = "worker") -> str:
    """A rule at two-space indent under `rules:`, with `extra` (already indented 4)."""
    return f"  - name: {name}\n    on: {on}\n    job: {job}\n" + textwrap.indent(
        textwrap.dedent(extra), "    "
    )


# -- what a rule compiles to --------------------------------------------------------------------


def test_a_rule_without_limits_or_batch_launches_inline():
    (rule,) = _load(HEAD + "rules:\n" + _rule("a", ""))
    assert rule.flow is None and rule.batch_key is None


def test_limits_compile_to_flow_values():
    text = (
        HEAD
        + "rules:\n"
        + _rule(
            "nightly_run",
            """\
        limits:
          rate: 60/min
          max_running: 2
          when_busy: queue
          max_wait: 30m
        """,
        )
    )
    (rule,) = _load(text)
    assert rule.flow == Flow(
        Limits(
            queue="triggers-nightly-run",  # `_` cannot be in a queue id
            rate_per_second=1.0,
            max_running=2,
            when_busy=WhenBusy.QUEUE,
            max_wait_seconds=1800,
        )
    )


def test_a_batch_without_limits_gets_its_own_queue_with_no_rate():
    text = (
        HEAD
        + "rules:\n"
        + _rule(
            "ingest",
            """\
        bucket: landing
        batch:
          window: 2m
          key: "{{ data.bucket }}"
          per_task: 100
        """,
            on="storage.finalized",
        )
    )
    (rule,) = _load(text)
    assert rule.flow == Flow(
        Limits(queue="triggers-ingest"),
        Batching(window_seconds=120, max_events=1000, per_task=100),
    )
    assert rule.batch_key is not None
    assert rule.batch_key.render({"data": {"bucket": "landing"}}) == "landing"


def test_a_batch_key_is_optional_and_defaults_to_one_batch_per_rule():
    (rule,) = _load(HEAD + "rules:\n" + _rule("a", "batch: {window: 10s, max_events: 5}\n"))
    assert rule.flow is not None and rule.flow.batch == Batching(10, 5, 1)
    assert rule.batch_key is None


def test_the_file_limits_are_the_default_of_every_field_a_rule_does_not_set():
    text = (
        HEAD
        + "limits:\n  rate: 150/min\n  queue: shared\nrules:\n"
        + _rule("plain", "")
        + _rule("own", "limits: {max_running: 1, when_busy: skip}\n")
        + _rule("faster", "limits: {queue: fast, rate: 5/s}\n")
    )
    plain, own, faster = _load(text)
    assert plain.flow == Flow(Limits(queue="shared", rate_per_second=2.5))
    assert own.flow == Flow(
        Limits(queue="shared", rate_per_second=2.5, max_running=1, when_busy=WhenBusy.SKIP)
    )
    assert faster.flow == Flow(Limits(queue="fast", rate_per_second=5.0))


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("5/s", 5.0),
        ("5/sec", 5.0),
        ("5/second", 5.0),
        ("60/min", 1.0),
        ("90/minute", 1.5),
        ("3600/h", 1.0),
        ("1/hour", 1 / 3600),
        (" 500 / s ", 500.0),
    ],
)
def test_rate_units(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["60", "60/m", "60/minutes", "1.5/s", "-1/s", "/s", "s"])
def test_rate_formats_refused(text):
    with pytest.raises(ValueError, match="is not a rate: write N/s, N/min or N/h"):
        parse_rate(text)


def test_rate_bounds():
    with pytest.raises(ValueError, match="must be more than 0"):
        parse_rate("0/h")
    assert parse_rate("30000/min") == 500.0
    with pytest.raises(ValueError, match="over Cloud Tasks' 500/s limit"):
        parse_rate("30001/min")


@pytest.mark.parametrize(
    ("per_second", "text"),
    [(1.0, "1/s"), (0.5, "30/min"), (1 / 3600, "1/h"), (2.5, "150/min"), (None, "unlimited")],
)
def test_rates_are_described_in_the_unit_that_makes_them_whole(per_second, text):
    assert describe_rate(per_second) == text


# -- problems ------------------------------------------------------------------------------------


def test_every_field_problem_of_limits_and_batch_at_its_line():
    text = (
        HEAD
        + "rules:\n"
        + _rule(
            "a",
            """\
            limits:
              rate: 0/s
              max_running: 0
              when_busy: wait
              max_wait: 40d
              queue: bad_queue!
              rat: 1
            batch:
              window: 25h
              max_events: 5001
              per_task: 0
              key: "{{ data.bucket "
            """,
        )
    )
    assert _problems(text) == [
        "rules.yaml:8: rule 'a': limits.rate: rate '0/s' must be more than 0",
        "rules.yaml:9: rule 'a': limits.max_running: Input should be greater than or equal to 1",
        "rules.yaml:10: rule 'a': limits.when_busy: Input should be 'queue', 'skip' or 'replace'",
        "rules.yaml:11: rule 'a': limits.max_wait: max_wait must be between 1s and 30d,"
        " not 3456000s",
        "rules.yaml:12: rule 'a': limits.queue: queue 'bad_queue!' is not a Cloud Tasks queue"
        " id: letters, digits and '-', 1 to 100 characters",
        "rules.yaml:13: rule 'a': limits: unknown field 'rat' (did you mean 'rate'?)",
        "rules.yaml:15: rule 'a': batch.window: window must be between 1s and 24h, not 90000s",
        "rules.yaml:16: rule 'a': batch.max_events: Input should be less than or equal to 5000",
        "rules.yaml:17: rule 'a': batch.per_task: Input should be greater than or equal to 1",
        "rules.yaml:18: rule 'a': batch.key: template syntax error: unexpected end of template,"
        " expected 'end of print statement'.",
    ]


def test_shapes_and_required_fields():
    text = (
        HEAD
        + "rules:\n"
        + _rule("a", "limits: 5\nbatch: {max_events: 3}\n")
        + _rule("b", "batch: 2m\n")
    )
    assert _problems(text) == [
        "rules.yaml:7: rule 'a': limits: must be a mapping of rate, max_running, when_busy,"
        " max_wait, queue",
        "rules.yaml:8: rule 'a': batch.window: required field is missing",
        "rules.yaml:12: rule 'b': batch: must be a mapping of window, max_events, key, per_task, fields",
    ]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            "{max_running: 1, when_busy: skip, max_wait: 5m}",
            "limits.max_wait: applies only with when_busy: queue (when_busy is skip)",
        ),
        (
            "{max_running: 1, when_busy: replace, max_wait: 5m}",
            "limits.max_wait: applies only with when_busy: queue (when_busy is replace)",
        ),
        (
            "{when_busy: skip}",
            "limits.when_busy: applies only with max_running (the limit that makes it busy)",
        ),
        (
            "{max_wait: 5m}",
            "limits.max_wait: applies only with max_running (the limit that makes it busy)",
        ),
    ],
)
def test_fields_that_need_another(limits, message):
    text = HEAD + "rules:\n" + _rule("a", f"limits: {limits}\n")
    assert _problems(text) == [f"rules.yaml:7: rule 'a': {message}"]


@pytest.mark.parametrize("system", ["sae", "peloton", "cloudrun-v1"])
def test_max_running_needs_a_system_that_counts_its_running_executions(system):
    jobs = {
        "sae": "cn-hangzhou/ee1a7a07-abcb-4652-a1d3-2d57f4150000",
        "peloton": "nightly",
        "cloudrun-v1": "worker",
    }
    text = (
        HEAD
        + "rules:\n"
        + _rule("a", f"system: {system}\nlimits:\n  max_running: 1\n", job=jobs[system])
    )
    (problem,) = _problems(text)
    assert problem.startswith("rules.yaml:9: rule 'a': limits.max_running: ")
    assert problem.endswith(
        f"(system: {system}) cannot list and cancel its running executions:"
        " max_running needs system: cloudrun"
    )
    # a rate is fine on any system: it is only the queue's pace
    text = (
        HEAD
        + "rules:\n"
        + _rule("a", f"system: {system}\nlimits: {{rate: 1/s}}\n", job=jobs[system])
    )
    (rule,) = _load(text)
    assert rule.flow.limits.rate_per_second == 1.0


def test_only_cloud_run_v2_counts_and_cancels_running_executions():
    from triggers.runners.systems import SYSTEMS

    assert {name for name, system in SYSTEMS.items() if system.counts_running} == {"cloudrun"}


def test_a_batch_decides_task_count():
    text = (
        HEAD
        + "rules:\n"
        + _rule("a", "batch: {window: 1m, per_task: 10}\noverrides:\n  task_count: 3\n")
    )
    assert _problems(text) == [
        "rules.yaml:9: rule 'a': overrides.task_count: a batched rule's task_count is decided"
        " by its batch (ceil(events / batch.per_task)); set batch.per_task instead"
    ]


def test_rules_sharing_a_queue_must_agree_on_its_rate():
    text = (
        HEAD
        + "rules:\n"
        + _rule("e", "limits: {queue: shared, rate: 1/s}\n")
        + _rule("f", "limits: {queue: shared, rate: 60/min}\n")  # the same rate: fine
        + _rule("g", "limits: {queue: shared, rate: 30/min}\n")
        + _rule("h", "limits: {queue: shared}\n")
    )
    assert _problems(text) == [
        "rules.yaml:12: rule 'g': limits.rate: rules 'e' (rules.yaml:4) and 'g' share the queue"
        " 'shared' but not its rate (1/s and 30/min): give them the same rate, or each its own"
        " queue",
        "rules.yaml:16: rule 'h': limits.rate: rules 'e' (rules.yaml:4) and 'h' share the queue"
        " 'shared' but not its rate (1/s and unlimited): give them the same rate, or each its"
        " own queue",
    ]


def test_rules_sharing_a_queue_across_files(tmp_path):
    from triggers.rules import load

    (tmp_path / "a.yaml").write_text(
        HEAD + "rules:\n" + _rule("e", "limits: {queue: q, rate: 1/s}\n")
    )
    (tmp_path / "b.yaml").write_text(
        HEAD + "rules:\n" + _rule("f", "limits: {queue: q, rate: 2/s}\n")
    )
    with pytest.raises(RulesError) as info:
        load(tmp_path)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.rule) == (str(tmp_path / "b.yaml"), 4, "f")
    assert f"rules 'e' ({tmp_path / 'a.yaml'}:4) and 'f' share the queue 'q'" in problem.message


def test_file_limits_problems_are_reported_once_at_the_file_level():
    text = (
        HEAD
        + "limits:\n  rate: 60/minutes\n  bogus: 1\nrules:\n"
        + _rule("a", "")
        + _rule("b", "limits: {rate: 1/s}\n")
    )
    assert _problems(text) == [
        "rules.yaml:4: limits.rate: rate '60/minutes' is not a rate: write N/s, N/min or N/h"
        " with N a whole number, e.g. 60/min",
        "rules.yaml:5: limits: unknown field 'bogus' (known: rate, max_running, when_busy,"
        " max_wait, queue)",
    ]
    text = HEAD + "limits:\n  when_busy: skip\n  max_wait: 1h\nrules:\n" + _rule("a", "")
    assert _problems(text) == [
        "rules.yaml:5: limits.max_wait: applies only with when_busy: queue (when_busy is skip)"
    ]
    text = HEAD + "limits: [1]\nrules:\n" + _rule("a", "")
    assert _problems(text) == [
        "rules.yaml:3: limits: must be a mapping of rate, max_running, when_busy, max_wait, queue"
    ]


def test_a_file_default_that_does_not_fit_a_rule_is_that_rules_problem():
    text = (
        HEAD
        + "limits:\n  max_running: 1\n  when_busy: skip\nrules:\n"
        + _rule("ok", "")
        + _rule("v1", "system: cloudrun-v1\n")
    )
    assert _problems(text) == [
        "rules.yaml:10: rule 'v1': limits.max_running (from the file's limits: at line 3):"
        " Cloud Run Admin API v1 (system: cloudrun-v1) cannot list and cancel its running"
        " executions: max_running needs system: cloudrun"
    ]


def test_file_level_when_busy_is_a_default_for_rules_that_set_max_running():
    text = (
        HEAD
        + "limits:\n  when_busy: skip\nrules:\n"
        + _rule("a", "limits: {max_running: 1}\n")
        + _rule("b", "")
    )
    a, b = _load(text)
    assert a.flow.limits.when_busy is WhenBusy.SKIP and a.flow.limits.max_running == 1
    assert b.flow == Flow(Limits(queue="triggers-b"))


def test_a_rules_when_busy_against_the_files_max_wait_is_the_rules_problem():
    text = (
        HEAD
        + "limits:\n  max_running: 1\n  max_wait: 2h\nrules:\n"
        + _rule("a", "limits: {when_busy: skip}\n")
    )
    assert _problems(text) == [
        "rules.yaml:10: rule 'a': limits.max_wait (from the file's limits: at line 3): applies"
        " only with when_busy: queue (when_busy is skip)"
    ]


# -- the compiled artifact ----------------------------------------------------------------------


def test_compiled_rules_have_the_flow_of_the_loaded_rules(tmp_path, monkeypatch):
    """The file's `limits:` is merged into each rule's flow at load: the artifact keeps the
    merged values, which the rules' specs alone do not hold."""
    from triggers.rules import load, loader
    from triggers.rules.compiled import compile_rules

    path = tmp_path / "rules.yaml"
    path.write_text(
        HEAD
        + "limits:\n  rate: 150/min\n  queue: shared\nrules:\n"
        + _rule("plain", "")
        + _rule("nightly", "limits: {max_running: 1, when_busy: replace}\n")
        + _rule("waits", "limits: {max_running: 3, max_wait: 2h}\n")
        + _rule(
            "ingest",
            'bucket: landing\nbatch: {window: 2m, key: "{{ data.bucket }}", per_task: 100}\n',
            on="storage.finalized",
        )
        + _rule("whole", "batch: {window: 1s, max_events: 1}\n")
    )
    _, validated = compile_rules(path, environ={})
    monkeypatch.setattr(loader, "load_source", lambda *a, **k: pytest.fail("validated again"))
    compiled = load(path, environ={}, compiled=True)

    def flows(ruleset):
        return [
            (
                r.name,
                r.flow,
                r.batch_key and r.batch_key.source,
                r.spec.limits,
                r.spec.limits and r.spec.limits.model_fields_set,
                r.spec.batch,
                r.spec.batch and r.spec.batch.model_fields_set,
            )
            for r in ruleset
        ]

    assert flows(compiled) == flows(validated)
    assert all(r.flow is not None for r in compiled)  # the file's limits reached every rule
    ingest = next(r for r in compiled if r.name == "ingest")
    assert ingest.batch_key.render({"data": {"bucket": "landing"}}) == "landing"


# -- what the commands show ---------------------------------------------------------------------

EVENT = str(ROOT / "config" / "events" / "pubsub-order.push.json")


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from triggers.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture
def flow_rules(tmp_path) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(
        HEAD
        + "limits:\n  rate: 150/min\nrules:\n"
        + _rule("paced", "limits: {max_running: 2, max_wait: 90m}\n")
        + _rule("batched", "batch: {window: 30s, per_task: 10, key: '{{ data.subscription }}'}\n")
    )
    return str(path)


def test_validate_shows_each_rules_limits_and_batch(capsys, flow_rules):
    code, out = _cli(capsys, "validate", flow_rules)
    assert code == 0
    assert out.splitlines() == [
        f"{flow_rules}: 2 rules OK (pubsub 2)",
        "flow control (2 of the rules launch through Cloud Tasks):",
        "  paced:",
        "    limits: queue triggers-paced, rate 150/min, max_running 2 (when busy: queue up to 90m)",
        "  batched:",
        "    limits: queue triggers-batched, rate 150/min",
        "    batch: window 30s, up to 1000 events, 10 per task, key '{{ data.subscription }}'",
    ]
    code, out = _cli(capsys, "validate", "--json", flow_rules)
    flows = json.loads(out)["flow"]
    assert flows["paced"] == {
        "queue": "triggers-paced",
        "rate": "150/min",
        "rate_per_second": 2.5,
        "max_running": 2,
        "when_busy": "queue",
        "max_wait_seconds": 5400,
        "batch": None,
    }
    assert flows["batched"]["batch"] == {
        "window_seconds": 30,
        "max_events": 1000,
        "per_task": 10,
        "fields": None,
        "key": "{{ data.subscription }}",
    }


def test_validate_says_nothing_of_flow_control_when_no_rule_uses_it(capsys, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + "rules:\n" + _rule("a", ""))
    assert _cli(capsys, "validate", str(path)) == (0, f"{path}: 1 rule OK (pubsub 1)\n")
    code, out = _cli(capsys, "validate", "--json", str(path))
    assert json.loads(out)["flow"] == {}


def test_plan_shows_the_flow_of_each_matched_rule(capsys, flow_rules):
    code, out = _cli(capsys, "plan", "--config", flow_rules, EVENT)
    assert code == 0
    paced = out[out.index("+ paced:") : out.index("+ batched:")]
    assert "      limits: queue triggers-paced, rate 150/min, max_running 2" in paced
    batched = out[out.index("+ batched:") :]
    assert "      batch: window 30s, up to 1000 events, 10 per task" in batched

    code, out = _cli(capsys, "plan", "--json", "--config", flow_rules, EVENT)
    verdicts = {v["rule"]: v for v in json.loads(out)["verdicts"]}
    assert verdicts["paced"]["flow"]["max_running"] == 2
    assert verdicts["paced"]["flow"]["batch"] is None
    assert verdicts["batched"]["flow"]["batch"]["per_task"] == 10
    assert verdicts["batched"]["flow"]["queue"] == "triggers-batched"


# -- docs/rules.md lists every error, as the loader writes it -----------------------------------

_EVERY_ERROR = [
    HEAD
    + "rules:\n"
    + _rule(
        "a",
        "limits: {rate: 60/minutes, max_running: 0, when_busy: wait, max_wait: 40d,"
        " queue: bad_queue!, rat: 1}\n"
        "batch: {window: 25h, max_events: 5001, per_task: 0, key: '{{ data.bucket '}\n",
    )
    + _rule("b", "limits: {rate: 0/s}\nbatch: {max_events: 3, windw: 1}\n")
    + _rule("c", "limits: {rate: 600/s, max_running: 1.5, max_wait: 1 hour}\n")
    + _rule("d", "limits: 5\nbatch: 2m\n")
    + _rule("e", "limits: {max_running: 1, when_busy: skip, max_wait: 5m}\n")
    + _rule("f", "limits: {when_busy: skip, max_wait: 5m}\n")
    + _rule("i", "batch: {window: 1m}\noverrides: {task_count: 2}\n")
    + _rule("j", "limits: {when_busy: replace}\n")
    + _rule("l", "limits: {max_wait: 5m}\n")
    + _rule("k", "system: sae\nlimits: {max_running: 1}\n", job=_SAE_JOB),
    HEAD + "limits: {bogus: 1}\nrules:\n" + _rule("a", ""),
    HEAD
    + "rules:\n"
    + _rule("e", "limits: {queue: shared, rate: 1/s}\n")
    + _rule("f", "limits: {queue: shared}\n")
    + _rule("g", "limits: {queue: shared, rate: 30/min}\n"),
    HEAD + "limits: {max_running: 1}\nrules:\n" + _rule("a", "system: sae\n", job=_SAE_JOB),
]


def test_docs_list_every_error_as_the_loader_writes_it():
    written = []
    for text in _EVERY_ERROR:
        written += _problems(text)
    docs = (ROOT / "docs" / "rules.md").read_text()
    table = docs[docs.index("## Every error") :]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 20
    for row in rows:
        message = row.split("`")[1]
        prefix = message.split("...")[0].rstrip()
        assert any(prefix in problem for problem in written), message


@pytest.mark.parametrize("module", ["spec.py", "naming.py"])
def test_an_artifact_of_another_flow_naming_or_spec_is_not_used(monkeypatch, module):
    """The artifact stores compiled flows (queue ids among them): a change to the code that
    makes them retires it, as a change to the rules code does."""
    from triggers.rules import compiled

    monkeypatch.setattr(compiled, "_compiler", None)
    before = compiled.compiler_fingerprint()
    read_bytes = Path.read_bytes

    def edited(path: Path) -> bytes:
        data = read_bytes(path)
        return data + b"# edited\n" if path.parent.name == "flow" and path.name == module else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    monkeypatch.setattr(compiled, "_compiler", None)
    assert compiled.compiler_fingerprint() != before


# -- batch.fields -----------------------------------------------------------------------------


def test_batch_fields_compile_to_the_batching_and_show_in_its_summary():
    rules = _load(
        HEAD
        + "rules:\n"
        + _rule(
            "a",
            """\
            batch:
              window: 1m
              fields: [id, data.message.attributes, data.subscription]
            """,
        )
    )
    batching = rules.get("a").flow.batch
    assert batching.fields == ("id", "data.message.attributes", "data.subscription")
    assert flow_summary(rules.get("a").flow)["batch"]["fields"] == list(batching.fields)
    assert flow_lines(rules.get("a").flow, None)[1].endswith(
        ", fields id, data.message.attributes, data.subscription"
    )


def test_bad_batch_fields_are_refused_at_their_line_all_at_once():
    text = (
        HEAD
        + "rules:\n"
        + _rule(
            "a",
            """\
            batch:
              window: 1m
              fields: [data.name, "data..x", data.name, data, ""]
            """,
        )
        + _rule("b", "batch:\n  window: 1m\n  fields: []\n")
    )
    assert _problems(text) == [
        "rules.yaml:9: rule 'a': batch.fields: 'data..x' is not a dotted field path like"
        " 'data.name'; 'data.name' is named twice; '' is not a dotted field path like"
        " 'data.name'; 'data.name' is inside 'data', which keeps it already",
        "rules.yaml:15: rule 'b': batch.fields: fields must name at least one field (leave it"
        " out for the whole event)",
    ]
