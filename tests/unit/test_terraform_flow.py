"""Flow control in the Terraform module (issue 13): one Cloud Tasks queue per queue id the rules
use, with the rate and concurrency the rules ask for, the IAM the function needs to enqueue
OIDC tasks that call it back, and its environment; none of it for rules without flow control.

The queues are derived in HCL (rules.tf) from the same yamldecode as every other per-rule
resource. tests/tfmodel.py transcribes that derivation (pinned below, so the two cannot drift),
and the transcription is compared with what the function's own loader compiles (Rule.flow), so
the module creates exactly the queues the function enqueues into.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from tests import tfmodel
from triggers.function.settings import FIELDS as SETTINGS_FIELDS
from triggers.rules import load
from triggers.rules.loader import load_text

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is in the test extra")

MODULE = tfmodel.MODULE
ROOT = MODULE.parent
PROJECT = "example-project"
REGION = "europe-west1"


def _squashed(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _text() -> str:
    return "\n".join(p.read_text() for p in sorted(MODULE.glob("*.tf")))


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("resource", []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        found[(_unquote(rtype), _unquote(rname))] = body
    return found


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("locals", []):
                merged.update(block)
    return merged


def _yaml11(text: str) -> Any:
    from ruamel.yaml import YAML

    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 1)
    return reader.load(text)


def _module_queues(rules_yaml: str) -> dict[str, dict[str, Any]]:
    """The queues the module makes for a rules file: its `rules_text`, YAML 1.1, the
    transcribed derivation."""
    text = tfmodel.rules_text(rules_yaml, project_id=PROJECT, region=REGION)
    return tfmodel.task_queues(_yaml11(text))


def _function_queues(ruleset) -> dict[str, dict[str, Any]]:
    """The queues the function enqueues into, from the rules it loads."""
    queues: dict[str, dict[str, Any]] = {}
    for rule in ruleset:
        if rule.flow is None:
            continue
        limits = rule.flow.limits
        queue = queues.setdefault(
            limits.queue,
            {
                "rules": [],
                "max_dispatches_per_second": limits.rate_per_second,
                "max_concurrent_dispatches": None,
            },
        )
        queue["rules"].append(rule.name)
        if limits.max_running is not None:
            queue["max_concurrent_dispatches"] = 1
    for queue in queues.values():
        queue["rules"].sort()
    return queues


# -- the transcription in tests/tfmodel.py is the module's ---------------------------------------


@pytest.mark.parametrize(
    "hcl",
    [
        # rules.tf
        'file_limits = lookup(local.rules_doc, "limits", null)',
        'flow = ( local.file_limits != null || lookup(rule, "limits", null) != null ||'
        ' lookup(rule, "batch", null) != null )',
        'limits = merge({}, local.file_limits, lookup(rule, "limits", null))',
        'queue = coalesce(lookup(r.limits, "queue", null), "triggers-${replace(name, "_", "-")}")',
        'rate = lookup(r.limits, "rate", null)',
        'max_running = lookup(r.limits, "max_running", null)',
        "} if r.flow",
        "rate_units = { s = 1, sec = 1, second = 1, min = 60, minute = 60, h = 3600, hour = 3600 }",
        'rate_re = "^\\\\s*([0-9]+)\\\\s*/\\\\s*([a-z]+)\\\\s*$"',
        "for queue, flows in { for name, f in local.flow_rules : f.queue => f... } : queue => {",
        "rules = [for f in flows : f.name]",
        "flows[0].rate == null ? null : tonumber(regex(local.rate_re, flows[0].rate)[0]) /"
        " local.rate_units[regex(local.rate_re, flows[0].rate)[1]]",
        "max_concurrent_dispatches = anytrue([for f in flows : f.max_running != null]) ? 1 : null",
        # tasks.tf
        "flow_control = length(local.task_queues) > 0",
    ],
)
def test_the_model_transcribes_the_module(hcl: str) -> None:
    assert _squashed(hcl) in _squashed(_text())


def test_the_rate_units_are_the_schemas() -> None:
    from triggers.rules.schema_flow import RATE_UNITS

    assert tfmodel.RATE_UNITS == RATE_UNITS
    assert _locals()["rate_units"] == RATE_UNITS


# -- the module's queues are the function's ------------------------------------------------------

FLOW_RULES = """\
project: ${TRIGGERS_PROJECT}
region: ${TRIGGERS_REGION}
limits:
  rate: 150/min
rules:
  - name: inherits_all
    on: pubsub
    job: a
  - name: own-rate
    on: pubsub
    job: a
    limits: {rate: 5/s}
  - name: nightly
    on: scheduler
    schedule: "0 2 * * *"
    job: report
    limits: {max_running: 1, when_busy: skip}
  - name: shared-one
    on: pubsub
    job: a
    limits: {queue: shared, rate: 1/s, max_running: 2}
  - name: shared-two
    on: pubsub
    job: b
    enabled: false
    limits: {queue: shared, rate: 60/min}
  - name: batched
    on: storage.finalized
    bucket: landing
    job: loader
    batch: {window: 2m, key: "{{ data.bucket }}", per_task: 100}
  - name: hourly
    on: pubsub
    job: a
    limits: {rate: 1/hour}
"""

NO_FILE_LIMITS = """\
project: p-123456
region: europe-west1
rules:
  - name: inline
    on: pubsub
    job: a
  - name: batch_only
    on: pubsub
    job: a
    batch: {window: 10s}
  - name: capped
    on: pubsub
    job: a
    limits: {max_running: 3}
"""


def _samples() -> list[tuple[str, str]]:
    found = [
        ("flow rules", FLOW_RULES),
        ("no file limits", NO_FILE_LIMITS),
        ("config/rules.yaml", (ROOT / "config" / "rules.yaml").read_text()),
    ]
    for example in sorted((MODULE / "examples").glob("*/rules.yaml")):
        found.append((str(example.relative_to(MODULE)), example.read_text()))
    return found


@pytest.mark.parametrize(("name", "text"), _samples(), ids=[n for n, _ in _samples()])
def test_the_module_makes_the_queues_the_function_enqueues_into(name: str, text: str) -> None:
    ruleset = load_text(text, environ={"TRIGGERS_PROJECT": PROJECT, "TRIGGERS_REGION": REGION})
    module = _module_queues(text)
    function = _function_queues(ruleset)
    assert module.keys() == function.keys()
    for queue, made in module.items():
        wanted = function[queue]
        assert sorted(made["rules"]) == wanted["rules"], queue
        assert made["max_concurrent_dispatches"] == wanted["max_concurrent_dispatches"], queue
        if wanted["max_dispatches_per_second"] is None:
            assert made["max_dispatches_per_second"] is None, queue
        else:
            assert made["max_dispatches_per_second"] == pytest.approx(
                wanted["max_dispatches_per_second"]
            )


def test_the_derivation_on_a_file_with_every_kind_of_flow_rule() -> None:
    assert _module_queues(FLOW_RULES) == {
        "triggers-inherits-all": {
            "rules": ["inherits_all"],
            "max_dispatches_per_second": 2.5,
            "max_concurrent_dispatches": None,
        },
        "triggers-own-rate": {
            "rules": ["own-rate"],
            "max_dispatches_per_second": 5.0,
            "max_concurrent_dispatches": None,
        },
        "triggers-nightly": {
            "rules": ["nightly"],
            "max_dispatches_per_second": 2.5,
            "max_concurrent_dispatches": 1,  # counted then launched: one at a time
        },
        "shared": {
            "rules": ["shared-one", "shared-two"],  # a disabled rule keeps its queue
            "max_dispatches_per_second": 1.0,
            "max_concurrent_dispatches": 1,
        },
        "triggers-batched": {
            "rules": ["batched"],
            "max_dispatches_per_second": 2.5,
            "max_concurrent_dispatches": None,
        },
        "triggers-hourly": {
            "rules": ["hourly"],
            "max_dispatches_per_second": pytest.approx(1 / 3600),
            "max_concurrent_dispatches": None,
        },
    }


def test_no_queue_without_flow_control() -> None:
    basic = (MODULE / "examples" / "basic" / "rules.yaml").read_text()
    assert _module_queues(basic) == {}
    ruleset = load(
        MODULE / "examples" / "basic" / "rules.yaml", environ={"TRIGGERS_PROJECT": PROJECT}
    )
    assert _function_queues(ruleset) == {}


# -- the resources ------------------------------------------------------------------------------


def test_queues_retry_forever_with_backoff_in_the_functions_region() -> None:
    queue = _resources()[("google_cloud_tasks_queue", "rule")]
    assert queue["for_each"] == "${local.task_queues}"
    assert queue["location"] == "${var.region}" and queue["project"] == "${var.project_id}"
    assert queue["name"] == "${each.key}"
    (limits,) = queue["rate_limits"]
    assert {k: v for k, v in limits.items() if not k.startswith("__")} == {
        "max_dispatches_per_second": "${each.value.max_dispatches_per_second}",
        "max_concurrent_dispatches": "${each.value.max_concurrent_dispatches}",
    }
    (retry,) = queue["retry_config"]
    assert {k: _unquote(v) for k, v in retry.items() if not k.startswith("__")} == {
        "max_attempts": -1,
        "min_backoff": "1s",
        "max_backoff": "300s",
    }
    assert "${google_project_service.apis}" in queue["depends_on"]


def test_the_function_may_enqueue_on_the_rules_queues_only() -> None:
    enqueuer = _resources()[("google_cloud_tasks_queue_iam_member", "function_enqueuer")]
    assert enqueuer["for_each"] == "${local.task_queues}"
    assert enqueuer["name"] == "${google_cloud_tasks_queue.rule[each.key].name}"
    assert enqueuer["location"] == "${var.region}"
    assert _unquote(enqueuer["role"]) == "roles/cloudtasks.enqueuer"
    assert enqueuer["member"] == "${google_service_account.function.member}"
    roles = {_unquote(body.get("role")) for body in _resources().values()}
    assert not {r for r in roles if r and r.startswith("roles/cloudtasks.")} - {
        "roles/cloudtasks.enqueuer"
    }, "the function only creates tasks"


def test_the_function_acts_as_itself_to_sign_task_tokens_only_with_flow_control() -> None:
    grant = _resources()[("google_service_account_iam_member", "function_signs_tasks")]
    assert grant["count"] == "${length(local.task_queues) > 0 ? 1 : 0}"
    assert grant["service_account_id"] == "${google_service_account.function.name}"
    assert _unquote(grant["role"]) == "roles/iam.serviceAccountUser"
    assert grant["member"] == "${google_service_account.function.member}"


def test_the_signing_account_may_invoke_the_function_and_passes_its_oidc_check() -> None:
    invoker = _resources()[("google_cloud_run_v2_service_iam_member", "invoker")]
    assert _squashed(invoker["for_each"]) == (
        "${merge({events = google_service_account.trigger.member, scheduler ="
        " google_service_account.scheduler.member}, {for name, member in {tasks ="
        " google_service_account.function.member} : name => member if local.flow_control})}"
    )
    allowed = _squashed(str(_locals()["oidc_allowed_emails"]))
    assert "google_service_account.function.email" in allowed and "local.flow_control" in allowed
    assert "jsonencode(local.oidc_allowed_emails)" in (MODULE / "function.tf").read_text()
    # the tasks' audience is one the function accepts
    assert "local.function_url" in str(_locals()["oidc_audiences"])


def test_the_function_env_tells_it_where_to_enqueue_only_with_flow_control() -> None:
    env = _squashed(str(_locals()["tasks_env"]))
    assert env.startswith("${local.flow_control ? {")
    assert env.endswith(": {}}")
    expected = {
        "TRIGGERS_TASKS_PROJECT": "var.project_id",
        "TRIGGERS_TASKS_LOCATION": "var.region",
        "TRIGGERS_TASK_TARGET_URL": '"${local.function_url}/_triggers/task"',
        "TRIGGERS_TASKS_SERVICE_ACCOUNT": "google_service_account.function.email",
        "TRIGGERS_TASKS_AUDIENCE": "local.function_url",
    }
    tasks_tf = _squashed((MODULE / "tasks.tf").read_text())
    for name, value in expected.items():
        assert f"{name} = {value}" in tasks_tf
    function_env = _squashed(str(_locals()["function_env"]))
    assert "local.tasks_env" in function_env
    assert "tasks_env" not in _squashed(str(_locals()["shared_env"]))  # not the reconciler's
    from triggers.flow.queue import TASK_PATH

    assert f"/{TASK_PATH.lstrip('/')}" == "/_triggers/task"


def test_the_tasks_env_names_are_settings() -> None:
    names = set(re.findall(r"\b(TRIGGERS_[A-Z_]+)\s*=", (MODULE / "tasks.tf").read_text()))
    settings = {spec.env for spec in SETTINGS_FIELDS}
    assert names and names <= settings, names - settings


def test_cloud_tasks_api_is_enabled_only_with_flow_control() -> None:
    apis = _squashed(str(_locals()["apis"]))
    assert apis.startswith('${setunion(local.flow_control ? ["cloudtasks.googleapis.com"] : [],')


def test_the_queues_are_an_output() -> None:
    text = _squashed((MODULE / "outputs.tf").read_text())
    assert 'output "task_queues"' in text
    assert "for k, q in google_cloud_tasks_queue.rule" in text


def test_readme_documents_the_queues() -> None:
    readme = (MODULE / "README.md").read_text()
    for needle in (
        "google_cloud_tasks_queue",
        "roles/cloudtasks.enqueuer",
        "roles/iam.serviceAccountUser",
        "TRIGGERS_TASK_TARGET_URL",
        "max_concurrent_dispatches",
    ):
        assert needle in readme, needle
