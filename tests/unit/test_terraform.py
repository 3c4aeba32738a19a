"""Offline checks of the Terraform module under terraform/: every .tf parses (python-hcl2), the
module declares the resources, for_each keys and IAM bindings it should, and every rules-file
field it reads exists in the rules schema, so a renamed field breaks this test, not a deployment.
No Terraform binary, provider or network is used.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from triggers.function.settings import FIELDS as SETTINGS_FIELDS
from triggers.rules.schema import RulesFile, RuleSpec

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is in the test extra")

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform"
CONCERN_FILES = [
    "versions.tf",
    "variables.tf",
    "outputs.tf",
    "rules.tf",
    "function.tf",
    "triggers.tf",
    "scheduler.tf",
    "firestore.tf",
    "iam.tf",
    "deadletter.tf",
    "reconcile.tf",
    "monitoring.tf",
    "tasks.tf",
]


def _unquote(value: Any) -> Any:
    """python-hcl2 8 keeps string literals quoted (`"\\"x\\""`); 7 does not."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle)


def _all_tf() -> list[Path]:
    return sorted(MODULE.rglob("*.tf"))


def _module_text() -> str:
    return "\n".join(p.read_text() for p in sorted(MODULE.glob("*.tf")))


def _resources(kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> body for every resource (or data source) of the module itself."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(MODULE.glob("*.tf")):
        for block in _load(path).get(kind, []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    key = (_unquote(rtype), _unquote(rname))
                    assert key not in found, f"{key} declared twice"
                    found[key] = body
    return found


def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in sorted(MODULE.glob("*.tf")):
        for block in _load(path).get("locals", []):
            merged.update(block)
    return merged


# --- files and parsing -------------------------------------------------------------------------


def test_required_files_exist() -> None:
    for name in CONCERN_FILES + ["README.md"]:
        assert (MODULE / name).is_file(), name
    for example in ["basic", "existing-firestore"]:
        base = MODULE / "examples" / example
        for name in ["main.tf", "README.md", "rules.yaml"]:
            assert (base / name).is_file(), f"examples/{example}/{name}"
    assert (ROOT / "docs" / "deploy.md").is_file()


@pytest.mark.parametrize("path", _all_tf(), ids=lambda p: str(p.relative_to(MODULE)))
def test_every_tf_parses(path: Path) -> None:
    assert isinstance(_load(path), dict)


def test_variables_are_typed_and_described() -> None:
    for block in _load(MODULE / "variables.tf")["variable"]:
        for name, body in block.items():
            assert "type" in body, f"variable {name} has no type"
            assert _unquote(body.get("description", "")), f"variable {name} has no description"
    for block in _load(MODULE / "outputs.tf")["output"]:
        for name, body in block.items():
            assert _unquote(body.get("description", "")), f"output {name} has no description"


# --- resources and keys --------------------------------------------------------------------------

EXPECTED = {
    ("google_cloudfunctions2_function", "this"),
    ("google_storage_bucket_object", "source"),
    ("google_eventarc_trigger", "storage"),
    ("google_eventarc_trigger", "pubsub"),
    ("google_pubsub_subscription", "push"),
    ("google_pubsub_topic", "dead_letter"),
    ("google_cloud_scheduler_job", "rule"),
    ("google_firestore_database", "ledger"),
    ("google_firestore_field", "expire_at"),
    ("google_firestore_field", "exempt"),
    ("google_service_account", "function"),
    ("google_service_account", "trigger"),
    ("google_service_account", "scheduler"),
    ("google_cloud_run_v2_job_iam_member", "executor"),
    ("google_cloud_run_v2_service_iam_member", "invoker"),
    ("google_project_iam_member", "firestore_user"),
    ("google_cloudfunctions2_function", "reconcile"),
    ("google_cloud_scheduler_job", "reconcile"),
    ("google_service_account", "reconcile"),
    ("google_service_account", "reconcile_scheduler"),
    ("google_cloud_run_v2_job_iam_member", "reconcile_viewer"),
    ("google_cloud_run_v2_service_iam_member", "reconcile_invoker"),
    ("google_project_iam_member", "reconcile_firestore_user"),
    ("google_pubsub_topic_iam_member", "function_publisher"),
    ("google_pubsub_subscription", "dead_letter"),
}

# Resources made per rule, per rules-derived source or per target job, and the map they iterate.
PER_RULE = {
    ("google_cloud_scheduler_job", "rule"): "local.scheduled_rules",
    ("google_eventarc_trigger", "storage"): "local.storage_sources",
    ("google_eventarc_trigger", "pubsub"): "local.eventarc_topics",
    ("google_pubsub_subscription", "push"): "local.push_topics",
    ("google_pubsub_subscription_iam_member", "dead_letter_subscriber"): "local.push_topics",
    ("google_pubsub_subscription", "named"): "local.named_subscriptions",
    ("google_pubsub_subscription_iam_member", "named_dead_letter_subscriber"): (
        "local.named_subscriptions"
    ),
    ("google_cloud_run_v2_job_iam_member", "executor"): "local.target_jobs",
    ("google_cloud_run_v2_job_iam_member", "viewer"): "local.target_jobs",
    ("google_cloud_run_v2_job_iam_member", "reconcile_viewer"): "local.target_jobs",
    ("google_cloud_tasks_queue", "rule"): "local.task_queues",
    ("google_cloud_tasks_queue_iam_member", "function_enqueuer"): "local.task_queues",
}

RULES_LOCALS = (
    "rules",
    "enabled_rules",
    "target_jobs",
    "storage_sources",
    "pubsub_topics",
    "scheduled_rules",
    "eventarc_topics",
    "push_topics",
    "pubsub_rules",
    "named_subscriptions",
    "flow_rules",
    "task_queues",
)


def test_expected_resources_are_declared() -> None:
    missing = EXPECTED - set(_resources())
    assert not missing, missing
    # A managed archive_file: the zip is written at apply time, so a saved plan applies anywhere.
    assert ("archive_file", "source") in _resources()


def test_per_rule_resources_use_for_each_over_rule_maps() -> None:
    resources = _resources()
    for key, source in PER_RULE.items():
        body = resources[key]
        assert "count" not in body, f"{key} uses count"
        assert source in body["for_each"], f"{key} iterates {body['for_each']}, not {source}"


def test_no_count_over_rules() -> None:
    """count is only for optional singletons; nothing derived from the rules is indexed."""
    for key, body in _resources().items():
        if "count" in body:
            expr = str(body["count"])
            for local in RULES_LOCALS:
                assert not re.search(rf"local\.{local}\b", expr) or "length(" in expr, (key, expr)
            assert "length(local.rules" not in expr, (key, expr)
    assert "count.index" not in _module_text()


def test_rules_map_is_keyed_by_rule_name() -> None:
    rules = str(_locals()["rules"])
    assert re.search(
        r"for rule in lookup\(local\.rules_doc, \"rules\", \[\]\) : rule\.name =>", rules
    )
    scheduled = str(_locals()["scheduled_rules"])
    assert re.search(r"for name, r in local\.rules : name =>", scheduled)
    # Scheduler jobs are named after the rule's scheduler_job, else the rule name.
    job = _resources()[("google_cloud_scheduler_job", "rule")]
    assert "each.value.scheduler_job" in job["name"] and "each.value.name" in job["name"]


def test_function_is_gen2_http_with_packaged_rules() -> None:
    fn = _resources()[("google_cloudfunctions2_function", "this")]
    assert _unquote(fn["build_config"][0]["entry_point"]) == "handle_http"
    assert fn["service_config"][0]["environment_variables"] == "${local.function_env}"
    # The ledger and rules settings are shared with the reconciler (local.shared_env).
    assert str(_locals()["function_env"]).startswith("${merge(local.shared_env,")
    env = str(_locals()["shared_env"])
    for name, value in {"TRIGGERS_LEDGER": "firestore", "TRIGGERS_RULES": "rules.yaml"}.items():
        assert re.search(rf'\b{name}\s*=\s*"{re.escape(value)}"', env), name
    for name in (
        "TRIGGERS_FIRESTORE_DATABASE",
        "TRIGGERS_FIRESTORE_COLLECTION",
        "TRIGGERS_LEASE_SECONDS",
    ):
        assert re.search(rf"\b{name}\s*=", env), name
    archive = (MODULE / "function.tf").read_text()
    assert 'filename = "rules.yaml"' in archive and "file(var.rules_file)" in archive
    # triggers/main.py itself is the root main.py: loaded by path, it builds the app at start.
    assert 'filename = "main.py"' in archive
    assert 'file("${var.source_dir}/triggers/main.py")' in archive
    assert 'fileexists("${var.rules_file}.compiled.json")' in archive
    assert 'filename = "rules.yaml.compiled.json"' in archive
    assert 'filename = "requirements.txt"' in archive
    assert 'fileset(var.source_dir, "triggers/**/*.py")' in archive


def test_the_reconciler_is_told_the_regions_of_cloud_run_v1_jobs() -> None:
    # v1 execution names carry no region (docs/runners.md#cloudrun-v1): the module passes the
    # regions of the jobs that cloudrun-v1 rules run, derived from the rules themselves.
    env = str(_locals()["shared_env"])
    assert "TRIGGERS_CLOUD_RUN_V1_REGIONS = jsonencode(local.cloud_run_v1_regions)" in env
    regions = str(_locals()["cloud_run_v1_regions"])
    assert 'r.system == "cloudrun-v1"' in regions and 'split("/", r.job)[3]' in regions
    assert 'lookup(rule, "system", "cloudrun")' in (MODULE / "rules.tf").read_text()


def test_function_env_names_are_settings() -> None:
    settings = {spec.env for spec in SETTINGS_FIELDS}
    set_here = set(re.findall(r"\b(TRIGGERS_[A-Z_]+)\s*=", (MODULE / "function.tf").read_text()))
    # TRIGGERS_REGION is not a setting: it is there for `${TRIGGERS_REGION}` in rules files.
    assert set_here - {"TRIGGERS_REGION"} <= settings, set_here - settings


def test_requirements_default_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    variables = {
        _unquote(name): body
        for block in _load(MODULE / "variables.tf")["variable"]
        for name, body in block.items()
    }
    default = [_unquote(x) for x in variables["requirements"]["default"]]
    assert [d.replace("\\'", "'") for d in default] == project["dependencies"]


# --- IAM -----------------------------------------------------------------------------------------


def test_function_runs_each_target_job_only() -> None:
    executor = _resources()[("google_cloud_run_v2_job_iam_member", "executor")]
    assert _unquote(executor["role"]) == "roles/run.jobsExecutorWithOverrides"
    assert "google_service_account.function" in executor["member"]
    assert "each.key" in executor["name"]
    viewer = _resources()[("google_cloud_run_v2_job_iam_member", "viewer")]
    assert "google_service_account.function" in viewer["member"]


def test_invokers_on_the_function_only() -> None:
    resources = _resources()
    invoker = resources[("google_cloud_run_v2_service_iam_member", "invoker")]
    assert _unquote(invoker["role"]) == "roles/run.invoker"
    assert "google_cloudfunctions2_function.this.service_config[0].service" in invoker["name"]
    members = str(invoker["for_each"])
    assert "google_service_account.trigger.member" in members
    assert "google_service_account.scheduler.member" in members
    assert "reconcile" not in members
    invoker_grants = {
        key for key, body in resources.items() if _unquote(body.get("role")) == "roles/run.invoker"
    }
    assert invoker_grants == {
        ("google_cloud_run_v2_service_iam_member", "invoker"),
        ("google_cloud_run_v2_service_iam_member", "reconcile_invoker"),
    }
    for key, body in resources.items():
        if key[0] in {"google_project_iam_member", "google_project_iam_binding"}:
            assert _unquote(body["role"]) != "roles/run.invoker", key


def test_firestore_user_on_the_ledger_database() -> None:
    condition = str(_locals()["ledger_database_condition"])
    assert "databases/${var.firestore.database}" in condition and condition.startswith(
        '"resource.name =='
    )
    for name, account in {
        "firestore_user": "function",
        "reconcile_firestore_user": "reconcile",
    }.items():
        binding = _resources()[("google_project_iam_member", name)]
        assert _unquote(binding["role"]) == "roles/datastore.user"
        assert re.search(
            rf"google_service_account\.{account}(\[0\])?\.member", binding["member"]
        ), name
        assert binding["condition"][0]["expression"] == "${local.ledger_database_condition}", name


def test_project_level_roles_are_the_expected_few() -> None:
    project_roles = {
        key[1]: _unquote(body["role"])
        for key, body in _resources().items()
        if key[0]
        in {"google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"}
    }
    assert project_roles == {
        "firestore_user": "roles/datastore.user",
        "reconcile_firestore_user": "roles/datastore.user",
        "trigger_event_receiver": "roles/eventarc.eventReceiver",
        "gcs_pubsub_publisher": "roles/pubsub.publisher",
    }


def test_no_primitive_roles_anywhere() -> None:
    for path in _all_tf():
        text = path.read_text()
        for role in (
            "roles/owner",
            "roles/editor",
            "roles/viewer",
            "roles/run.admin",
        ):
            assert role not in text, f"{path}: {role}"
    # IAM roles: only the one Cloud Tasks needs for OIDC tasks (their creator must act as the
    # account that signs their tokens), on the function's own account, granted to itself.
    iam_roles = {
        key: body
        for key, body in _resources().items()
        if str(_unquote(body.get("role", ""))).startswith("roles/iam.")
    }
    assert set(iam_roles) == {("google_service_account_iam_member", "function_signs_tasks")}
    grant = iam_roles[("google_service_account_iam_member", "function_signs_tasks")]
    assert _unquote(grant["role"]) == "roles/iam.serviceAccountUser"
    assert grant["service_account_id"] == "${google_service_account.function.name}"
    assert grant["member"] == "${google_service_account.function.member}"
    text = _module_text()
    assert text.count("roles/iam.") == 1, "an IAM role outside a resource the test sees"


# --- rules fields the module reads ------------------------------------------------------------


def _fields_read() -> tuple[set[str], set[str]]:
    text = _module_text()
    rule_fields = set(re.findall(r"\brule\.([a-z_]+)", text))
    rule_fields |= set(re.findall(r"lookup\(rule,\s*\"([a-z_]+)\"", text))
    rule_fields |= set(re.findall(r"\brule\[\"([a-z_]+)\"\]", text))
    top_fields = set(re.findall(r"lookup\(local\.rules_doc,\s*\"([a-z_]+)\"", text))
    top_fields |= set(re.findall(r"local\.rules_doc\.([a-z_]+)", text))
    return rule_fields, top_fields


def test_rules_fields_read_exist_in_schema() -> None:
    rule_fields, top_fields = _fields_read()
    # The module does read these: an empty set would mean the patterns no longer find anything.
    assert {
        "name",
        "on",
        "job",
        "enabled",
        "bucket",
        "topic",
        "schedule",
        "time_zone",
    } <= rule_fields
    assert {"rules", "project", "region"} <= top_fields
    assert rule_fields <= set(RuleSpec.model_fields), rule_fields - set(RuleSpec.model_fields)
    assert top_fields <= set(RulesFile.model_fields), top_fields - set(RulesFile.model_fields)


def test_on_is_read_under_its_yaml11_key_too() -> None:
    """Terraform's yamldecode resolves an unquoted `on:` key as the boolean true (YAML 1.1),
    which becomes the attribute "true"; the module must look there as well."""
    assert _unquote(_locals()["yaml11_on_key"]) == "true"
    assert 'lookup(rule, "on", lookup(rule, local.yaml11_on_key' in str(_locals()["rules"])


def test_raw_rules_are_only_read_through_the_checked_patterns() -> None:
    """Anything that iterates the raw rules must call its variable `rule` (the checked name)."""
    text = _module_text()
    for match in re.finditer(r"for (\w+) in lookup\(local\.rules_doc", text):
        assert match.group(1) == "rule"
    assert text.count("local.rules_doc") == len(re.findall(r"lookup\(local\.rules_doc,", text))


def test_on_shorthands_match_schema() -> None:
    from triggers.rules.schema import ON_SHORTHANDS

    rules_tf = (MODULE / "rules.tf").read_text()
    for shorthand, types in ON_SHORTHANDS.items():
        assert shorthand in rules_tf, shorthand
        if shorthand.startswith("storage."):
            assert f'"{shorthand}"' in rules_tf and f'"{types[0]}"' in rules_tf


@pytest.mark.parametrize("example", ["basic", "existing-firestore"])
def test_example_rules_validate(example: str) -> None:
    from triggers.rules import load

    ruleset = load(
        MODULE / "examples" / example / "rules.yaml",
        environ={"TRIGGERS_PROJECT": "example-project"},
    )
    assert ruleset


def test_firestore_ttl_and_exemptions() -> None:
    resources = _resources()
    ttl = resources[("google_firestore_field", "expire_at")]
    assert _unquote(ttl["field"]) == "expire_at" and "ttl_config" in ttl
    exempt = str(_locals()["ledger_exempt_fields"])
    for field in ("updated_at", "lease_until", "token", "request", "event", "event_document"):
        assert f'"{field}"' in exempt, field
    assert "index_config" in resources[("google_firestore_field", "exempt")]
    assert (
        "var.firestore.collection" in resources[("google_firestore_field", "exempt")]["collection"]
    )


def test_push_subscriptions_dead_letter_and_oidc() -> None:
    push = _resources()[("google_pubsub_subscription", "push")]
    config = push["push_config"][0]
    # The function's URL with the topic in its query (tests/unit/test_terraform_delivery.py).
    assert config["push_endpoint"] == "${local.push_endpoints[each.key]}"
    assert "google_cloudfunctions2_function.this.url" in str(_locals()["push_endpoints"])
    assert (
        "google_service_account.trigger.email" in config["oidc_token"][0]["service_account_email"]
    )
    assert "google_pubsub_topic.dead_letter" in str(push["dynamic"])
    scheduler = _resources()[("google_cloud_scheduler_job", "rule")]
    target = scheduler["http_target"][0]
    assert (
        "google_service_account.scheduler.email" in target["oidc_token"][0]["service_account_email"]
    )
    assert "retry_config" in scheduler and "time_zone" in scheduler


# --- outcomes: the reconciler and dead letters ------------------------------------------------


def _variable(name: str) -> dict[str, Any]:
    for block in _load(MODULE / "variables.tf")["variable"]:
        for key, body in block.items():
            if _unquote(key) == name:
                return body
    raise KeyError(name)


def _optional_defaults(type_expr: str) -> dict[str, str]:
    """`attr = optional(type, default)` of an object type expression -> {attr: default source}."""
    return {
        m.group(1): m.group(2).strip()
        for m in re.finditer(
            r"(\w+)\s*=\s*optional\(\w+(?:\([^)]*\))?,\s*(\"[^\"]*\"|[^,)]+)\)", type_expr
        )
    }


def _members_of(account: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every IAM grant whose member is google_service_account.<account> (count-indexed or not)."""
    pattern = re.compile(rf"google_service_account\.{account}(\[0\])?\.(member|email)\b")
    return {
        key: body
        for key, body in _resources().items()
        if "member" in body and pattern.search(str(body["member"]))
    }


def test_reconciler_is_a_second_function_from_the_same_source() -> None:
    resources = _resources()
    main, rec = (
        resources[("google_cloudfunctions2_function", "this")],
        resources[("google_cloudfunctions2_function", "reconcile")],
    )
    assert _unquote(rec["build_config"][0]["entry_point"]) == "handle_reconcile"
    assert rec["build_config"][0]["source"] == main["build_config"][0]["source"]
    assert rec["build_config"][0]["runtime"] == main["build_config"][0]["runtime"]
    service = rec["service_config"][0]
    # Same rules and ledger settings as the event function, by reference, not by copy.
    assert service["environment_variables"] == "${local.shared_env}"
    assert service["service_account_email"] == "${google_service_account.reconcile[0].email}"
    assert "local.reconcile_enabled" in rec["count"]
    assert _unquote(_locals()["reconcile_enabled"]) == "${var.reconcile.enabled}"
    # functions-framework looks the target up in the packaged main.py, triggers/main.py itself.
    import triggers.main

    for name in ("handle_http", "handle_cloudevent", "handle_reconcile"):
        assert callable(getattr(triggers.main, name)), name


def test_reconcile_scheduler_job_calls_the_reconciler_with_oidc() -> None:
    resources = _resources()
    job = resources[("google_cloud_scheduler_job", "reconcile")]
    target = job["http_target"][0]
    assert target["uri"] == "${google_cloudfunctions2_function.reconcile[0].url}"
    token = target["oidc_token"][0]
    assert (
        token["service_account_email"] == "${google_service_account.reconcile_scheduler[0].email}"
    )
    assert token["audience"] == "${google_cloudfunctions2_function.reconcile[0].url}"
    for field in ("schedule", "time_zone", "attempt_deadline", "paused"):
        assert job[field] == f"${{var.reconcile.{field}}}", field
    assert set(job["retry_config"][0]) >= {
        "retry_count",
        "min_backoff_duration",
        "max_backoff_duration",
    }
    assert "${google_cloud_run_v2_service_iam_member.reconcile_invoker}" in job["depends_on"]
    # Its account may invoke the reconciler and nothing else.
    grants = _members_of("reconcile_scheduler")
    assert set(grants) == {("google_cloud_run_v2_service_iam_member", "reconcile_invoker")}
    invoker = grants[("google_cloud_run_v2_service_iam_member", "reconcile_invoker")]
    assert _unquote(invoker["role"]) == "roles/run.invoker"
    assert (
        invoker["name"]
        == "${google_cloudfunctions2_function.reconcile[0].service_config[0].service}"
    )


def test_reconciler_account_reads_target_jobs_and_the_ledger_only() -> None:
    grants = _members_of("reconcile")
    assert set(grants) == {
        ("google_cloud_run_v2_job_iam_member", "reconcile_viewer"),
        ("google_project_iam_member", "reconcile_firestore_user"),
    }
    viewer = grants[("google_cloud_run_v2_job_iam_member", "reconcile_viewer")]
    assert viewer["for_each"] == "${local.reconcile_enabled ? local.target_jobs : toset([])}"
    for i, attr in enumerate(("project", "location", "name")):
        assert viewer[attr] == f"${{regex(local.full_job_re, each.key)[{i}]}}", attr
    assert viewer["role"] == "${var.reconcile.job_role}"
    defaults = _optional_defaults(_variable("reconcile")["type"])
    # roles/run.viewer holds run.executions.get and run.executions.list, grantable on a job.
    assert defaults["job_role"] == '"roles/run.viewer"'
    # The event function's rights are not the reconciler's: it runs nothing, publishes nothing.
    function_roles = {_unquote(b["role"]) for b in _members_of("function").values()}
    assert "roles/run.jobsExecutorWithOverrides" in function_roles
    assert not {_unquote(b["role"]) for b in grants.values()} & {
        "roles/run.jobsExecutorWithOverrides",
        "roles/pubsub.publisher",
    }


def test_reconcile_variable_defaults_and_validations() -> None:
    variable = _variable("reconcile")
    defaults = _optional_defaults(variable["type"])
    assert defaults["enabled"] == "true"
    assert defaults["schedule"] == '"*/10 * * * *"'
    assert defaults["time_zone"] == '"Etc/UTC"'
    for attr in (
        "paused",
        "attempt_deadline",
        "retry_count",
        "timeout_seconds",
        "max_instance_count",
    ):
        assert attr in defaults, attr
    # attempt_deadline (Scheduler) at least the function's timeout, both by default.
    assert int(defaults["attempt_deadline"].strip('"s')) >= int(defaults["timeout_seconds"])
    conditions = [str(v["condition"]) for v in variable["validation"]]
    schedule_check = next(c for c in conditions if "var.reconcile.schedule" in c)
    regex = re.search(r'regex\("((?:[^"\\]|\\.)*)"', schedule_check).group(1).replace("\\\\", "\\")
    assert re.search(regex, "*/10 * * * *") and re.search(regex, "0 2 * * 1-5")
    assert not re.search(regex, "every 10 minutes") and not re.search(regex, "*/10 * * *")
    assert any("var.reconcile.time_zone" in c for c in conditions)
    assert any(
        "var.reconcile.attempt_deadline" in c and ">= var.reconcile.timeout_seconds" in c
        for c in conditions
    )
    assert any("var.reconcile.retry_count" in c for c in conditions)
    assert any("var.reconcile.job_role" in c for c in conditions)


def test_ledger_has_the_composite_index_the_reconciler_queries() -> None:
    """reconcile() lists `status in [launched]` ordered by created_at DESC: real Firestore
    refuses that query without a (status ASC, created_at DESC) composite index."""
    indexes = {
        _unquote(k): [_unquote(f) for f in v]
        for k, v in _locals()["ledger_composite_indexes"].items()
    }
    assert indexes == {"status": ["status"], "rule": ["rule"], "rule-status": ["rule", "status"]}
    index = _resources()[("google_firestore_index", "ledger")]
    assert "local.ledger_composite_indexes" in index["for_each"]
    assert "var.firestore.collection" in index["collection"]
    (dynamic,) = index["dynamic"]
    (equality,) = [body for name, body in dynamic.items() if _unquote(name) == "fields"]
    assert equality["for_each"] == "${each.value}"
    assert _unquote(equality["content"][0]["order"]) == "ASCENDING"
    last = index["fields"][-1]
    assert (_unquote(last["field_path"]), _unquote(last["order"])) == ("created_at", "DESCENDING")
    job = _resources()[("google_cloud_scheduler_job", "reconcile")]
    assert "${google_firestore_index.ledger}" in job["depends_on"]


def test_function_publishes_dead_letters_to_the_topic_only() -> None:
    publisher = _resources()[("google_pubsub_topic_iam_member", "function_publisher")]
    assert _unquote(publisher["role"]) == "roles/pubsub.publisher"
    assert publisher["member"] == "${google_service_account.function.member}"
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter[0].name}"
    assert publisher["count"] == "${local.dead_letter ? 1 : 0}"
    publishers = {
        key for key, body in _members_of("function").items() if "pubsub" in _unquote(body["role"])
    }
    assert publishers == {("google_pubsub_topic_iam_member", "function_publisher")}


def test_function_env_names_the_dead_letter_topic() -> None:
    env = str(_locals()["function_env"])
    assert re.search(
        r"local\.dead_letter \? \{TRIGGERS_DEAD_LETTER_TOPIC = one\(google_pubsub_topic\.dead_letter\[\*\]\.id\)\}",
        env,
    )
    assert "TRIGGERS_DEAD_LETTER_TOPIC" not in str(_locals()["shared_env"])  # not the reconciler's
    assert "dead_letter_topic" in {spec.name for spec in SETTINGS_FIELDS}


def test_dead_letter_topic_exists_whenever_enabled() -> None:
    """The function dead-letters rejections of every source: the topic must not depend on there
    being push subscriptions (storage- or Eventarc-only rule sets have none)."""
    assert _locals()["dead_letter"] == "${var.dead_letter.enabled}"
    resources = _resources()
    for key in [
        ("google_pubsub_topic", "dead_letter"),
        ("google_pubsub_subscription", "dead_letter"),
    ]:
        assert resources[key]["count"] == "${local.dead_letter ? 1 : 0}", key
    # Pub/Sub's own forwarding is only needed (and granted) when there are push subscriptions.
    agent = resources[("google_pubsub_topic_iam_member", "dead_letter_publisher")]
    assert "length(local.push_topics) + length(local.named_subscriptions) > 0" in agent["count"]
    # The subscription keeps what is published (a topic without one drops messages).
    assert (
        resources[("google_pubsub_subscription", "dead_letter")]["topic"]
        == "${google_pubsub_topic.dead_letter[0].id}"
    )


def test_dead_letters_need_pubsub_in_the_requirements() -> None:
    fn = _resources()[("google_cloudfunctions2_function", "this")]
    precondition = fn["lifecycle"][0]["precondition"][0]
    condition = str(precondition["condition"])
    assert condition.startswith("${!local.dead_letter ||") and "var.requirements" in condition
    regex = re.search(r'regex\("((?:[^"\\]|\\.)*)"', condition).group(1).replace("\\\\", "\\")
    default = [_unquote(x) for x in _variable("requirements")["default"]]
    assert [r for r in default if re.search(regex, r)] == ["google-cloud-pubsub>=2.44,<3"]
    assert not re.search(regex, "google-cloud-pubsublite>=1")
    assert re.search(regex, "google_cloud_pubsub")


def test_outcome_outputs() -> None:
    outputs = {
        _unquote(name): str(body["value"])
        for block in _load(MODULE / "outputs.tf")["output"]
        for name, body in block.items()
    }
    assert (
        outputs["reconcile_function_uri"]
        == "${one(google_cloudfunctions2_function.reconcile[*].url)}"
    )
    assert (
        outputs["reconcile_scheduler_job"] == "${one(google_cloud_scheduler_job.reconcile[*].id)}"
    )
    assert (
        outputs["dead_letter_subscription"]
        == "${one(google_pubsub_subscription.dead_letter[*].id)}"
    )
    assert "google_service_account.reconcile[*].email" in outputs["service_accounts"]


# -- checkov ---------------------------------------------------------------------------------
# The README's test command installs checkov in its own virtual environment (its dependencies
# conflict with ours); TRIGGERS_CHECKOV points elsewhere if it lives somewhere else.


def _checkov() -> str | None:
    import os
    import shutil

    configured = os.environ.get("TRIGGERS_CHECKOV")
    if configured:
        return configured
    local = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


def test_checkov_passes_with_every_skip_justified_inline():
    import os
    import subprocess

    checkov = _checkov()
    if checkov is None:
        message = (
            "checkov is not installed (the README's test command installs it in .venv-checkov)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            checkov,
            "-d",
            "terraform",
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
    # every skip carries its reason next to the resource it skips
    for tf in (root / "terraform").rglob("*.tf"):
        for line in tf.read_text().splitlines():
            if "checkov:skip=" in line:
                check, _, reason = line.split("checkov:skip=", 1)[1].partition(":")
                assert len(reason.strip()) > 20, f"{tf}: skip of {check} needs a reason"
