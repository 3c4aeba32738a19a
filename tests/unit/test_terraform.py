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

from triggers.rules.schema import RuleSpec, RulesFile
from triggers.settings import Settings

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
}

# Resources made per rule, per rules-derived source or per target job, and the map they iterate.
PER_RULE = {
    ("google_cloud_scheduler_job", "rule"): "local.scheduled_rules",
    ("google_eventarc_trigger", "storage"): "local.storage_sources",
    ("google_eventarc_trigger", "pubsub"): "local.eventarc_topics",
    ("google_pubsub_subscription", "push"): "local.push_topics",
    ("google_pubsub_subscription_iam_member", "dead_letter_subscriber"): "local.push_topics",
    ("google_cloud_run_v2_job_iam_member", "executor"): "local.target_jobs",
    ("google_cloud_run_v2_job_iam_member", "viewer"): "local.target_jobs",
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
)


def test_expected_resources_are_declared() -> None:
    missing = EXPECTED - set(_resources())
    assert not missing, missing
    data = set(_resources("data"))
    assert ("archive_file", "source") in data


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
    assert re.search(r"for rule in lookup\(local\.rules_doc, \"rules\", \[\]\) : rule\.name =>", rules)
    scheduled = str(_locals()["scheduled_rules"])
    assert re.search(r"for name, r in local\.rules : name =>", scheduled)
    # Scheduler jobs are named after the rule's scheduler_job, else the rule name.
    job = _resources()[("google_cloud_scheduler_job", "rule")]
    assert "each.value.scheduler_job" in job["name"] and "each.value.name" in job["name"]


def test_function_is_gen2_http_with_packaged_rules() -> None:
    fn = _resources()[("google_cloudfunctions2_function", "this")]
    assert _unquote(fn["build_config"][0]["entry_point"]) == "handle_http"
    env = str(_locals()["function_env"])
    for name, value in {"TRIGGERS_LEDGER": "firestore", "TRIGGERS_RULES": "rules.yaml"}.items():
        assert re.search(rf'\b{name}\s*=\s*"{re.escape(value)}"', env), name
    for name in ("TRIGGERS_FIRESTORE_DATABASE", "TRIGGERS_FIRESTORE_COLLECTION", "TRIGGERS_LEASE_SECONDS"):
        assert re.search(rf"\b{name}\s*=", env), name
    archive = (MODULE / "function.tf").read_text()
    assert 'filename = "rules.yaml"' in archive and "file(var.rules_file)" in archive
    assert 'filename = "main.py"' in archive and "from triggers.main import" in archive
    assert 'filename = "requirements.txt"' in archive
    assert 'fileset(var.source_dir, "triggers/**/*.py")' in archive


def test_function_env_names_are_settings() -> None:
    settings = {f"TRIGGERS_{name.upper()}" for name in Settings.model_fields}
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
    for key, body in resources.items():
        if _unquote(body.get("role")) == "roles/run.invoker":
            assert key == ("google_cloud_run_v2_service_iam_member", "invoker"), key
        if key[0] in {"google_project_iam_member", "google_project_iam_binding"}:
            assert _unquote(body["role"]) != "roles/run.invoker", key


def test_firestore_user_on_the_ledger_database() -> None:
    binding = _resources()[("google_project_iam_member", "firestore_user")]
    assert _unquote(binding["role"]) == "roles/datastore.user"
    assert "google_service_account.function" in binding["member"]
    assert "databases/" in str(binding["condition"])


def test_project_level_roles_are_the_expected_few() -> None:
    project_roles = {
        key[1]: _unquote(body["role"])
        for key, body in _resources().items()
        if key[0] in {"google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"}
    }
    assert project_roles == {
        "firestore_user": "roles/datastore.user",
        "trigger_event_receiver": "roles/eventarc.eventReceiver",
        "gcs_pubsub_publisher": "roles/pubsub.publisher",
    }


def test_no_primitive_roles_anywhere() -> None:
    for path in _all_tf():
        text = path.read_text()
        for role in ("roles/owner", "roles/editor", "roles/viewer", "roles/run.admin", "roles/iam."):
            assert role not in text, f"{path}: {role}"


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
    assert {"name", "on", "job", "enabled", "bucket", "topic", "schedule", "time_zone"} <= rule_fields
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
    from triggers.rules.loader import load

    ruleset = load(
        MODULE / "examples" / example / "rules.yaml", environ={"TRIGGERS_PROJECT": "example-project"}
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
    assert "var.firestore.collection" in resources[("google_firestore_field", "exempt")]["collection"]


def test_push_subscriptions_dead_letter_and_oidc() -> None:
    push = _resources()[("google_pubsub_subscription", "push")]
    config = push["push_config"][0]
    assert "google_cloudfunctions2_function.this.url" in config["push_endpoint"]
    assert "google_service_account.trigger.email" in config["oidc_token"][0]["service_account_email"]
    assert "google_pubsub_topic.dead_letter" in str(push["dynamic"])
    scheduler = _resources()[("google_cloud_scheduler_job", "rule")]
    target = scheduler["http_target"][0]
    assert "google_service_account.scheduler.email" in target["oidc_token"][0]["service_account_email"]
    assert "retry_config" in scheduler and "time_zone" in scheduler


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
        message = "checkov is not installed (the README's test command installs it in .venv-checkov)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [checkov, "-d", "terraform", "--framework", "terraform", "--skip-download", "--compact",
         "--quiet"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
    # every skip carries its reason next to the resource it skips
    for tf in (root / "terraform").rglob("*.tf"):
        for line in tf.read_text().splitlines():
            if "checkov:skip=" in line:
                check, _, reason = line.split("checkov:skip=", 1)[1].partition(":")
                assert len(reason.strip()) > 20, f"{tf}: skip of {check} needs a reason"
