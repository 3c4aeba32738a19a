"""The Terraform module against the providers' real schemas (tools/terraform_schema_check.py).

The schemas come from the jsii assemblies of the prebuilt CDKTF provider wheels, installed with
python-hcl2 in their own virtual environment, `.venv-tfschema`, by the README's test command
(like checkov's `.venv-checkov`). The module itself is checked by running the script from that
environment; the script's own checks are tested here on small modules that break one rule each,
so that a check that silently stopped finding anything fails too.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-tfschema"
SCRIPT = ROOT / "tools" / "terraform_schema_check.py"


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _site_packages() -> list[str]:
    configured = os.environ.get("TRIGGERS_TFSCHEMA_SITE")
    if configured:
        return [configured]
    return sorted(glob.glob(str(VENV / "lib" / "python*" / "site-packages")))


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("terraform_schema_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schemas(check: ModuleType) -> Any:
    assemblies = check.find_assemblies(_site_packages())
    if len(assemblies) != len(check.PROVIDER_PACKAGES):
        _missing(
            "provider schemas not installed (the README's test command installs them in "
            ".venv-tfschema)"
        )
    return check.load_schemas(assemblies)


def _findings(check: ModuleType, schemas: Any, tmp_path: Path, hcl: str) -> list[str]:
    path = tmp_path / "main.tf"
    path.write_text(textwrap.dedent(hcl))
    return [str(f) for f in check.Checker(schemas).check_module([path])]


def test_module_and_examples_have_zero_findings_from_their_own_venv(schemas: Any) -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        _missing("no .venv-tfschema (the README's test command creates it)")
    result = subprocess.run(
        [str(python), str(SCRIPT), "terraform"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s) against archive 2.7.1, google 6.50.0, time 0.13.1" in result.stderr


def test_schema_versions_are_the_pinned_providers(schemas: Any) -> None:
    assert schemas.versions == {"google": "6.50.0", "archive": "2.7.1", "time": "0.13.1"}
    block, exported = schemas.resources[("resource", "google_eventarc_trigger")]
    # What the module relies on, read from the schema (a parse that lost them fails here).
    assert block.args["location"] and block.args["name"] and not block.args["project"]
    assert block.blocks["destination"].single and block.blocks["destination"].required
    assert not block.blocks["matching_criteria"].single
    assert "service_account" in block.args
    assert "retry_policy" not in block.blocks  # added in google 7.14 (the item 2)
    _, function = schemas.resources[("resource", "google_cloudfunctions2_function")]
    # A single block (max_items 1), read as service_config[0] like a list of one.
    assert not function.attrs["service_config"].is_list
    assert {"service", "uri"} <= set(function.attrs["service_config"].attrs)
    assert ("resource", "archive_file") in schemas.resources
    assert ("data", "archive_file") in schemas.resources
    assert ("resource", "time_sleep") in schemas.resources


def test_unknown_type_argument_and_block(check: ModuleType, schemas: Any, tmp_path: Path) -> None:
    findings = _findings(
        check,
        schemas,
        tmp_path,
        """
        resource "google_pubsub_topik" "a" {
          name = "a"
        }
        resource "google_pubsub_topic" "b" {
          name   = "b"
          labelz = {}
          schema_settings {
            schema   = "s"
            encodingg = "JSON"
          }
        }
        """,
    )
    assert any(
        "unknown resource type google_pubsub_topik" in f and "google_pubsub_topic" in f
        for f in findings
    ), findings
    assert any(
        "google_pubsub_topic.b.labelz: unsupported" in f and "'labels'" in f for f in findings
    ), findings
    assert any("schema_settings.encodingg: unsupported" in f for f in findings), findings
    assert len(findings) == 3, findings


def test_dynamic_blocks_are_checked_by_name_and_content(
    check: ModuleType, schemas: Any, tmp_path: Path
) -> None:
    findings = _findings(
        check,
        schemas,
        tmp_path,
        """
        resource "google_eventarc_trigger" "t" {
          location = "europe-west1"
          name     = "t"
          matching_criteria {
            attribute = "type"
            value     = "x"
          }
          destination {
            workflow = "w"
          }
          dynamic "retry_policy" {
            for_each = [1]
            content {
              max_attempts = 1
            }
          }
          dynamic "transport" {
            for_each = [1]
            content {
              pubsub {
                topik = "t"
              }
            }
          }
        }
        """,
    )
    assert findings == [
        f"{tmp_path / 'main.tf'}: google_eventarc_trigger.t.dynamic.retry_policy: "
        "no block type 'retry_policy' here",
        f"{tmp_path / 'main.tf'}: google_eventarc_trigger.t.transport.pubsub.topik: "
        "unsupported argument or block (did you mean 'topic'?)",
    ]


def test_required_arguments_blocks_and_repeated_single_blocks(
    check: ModuleType, schemas: Any, tmp_path: Path
) -> None:
    findings = _findings(
        check,
        schemas,
        tmp_path,
        """
        resource "google_eventarc_trigger" "t" {
          name = "t"
          matching_criteria {
            attribute = "type"
          }
        }
        resource "google_pubsub_subscription" "s" {
          name  = "s"
          topic = "t"
          push_config {
            push_endpoint = "https://a"
          }
          push_config {
            push_endpoint = "https://b"
          }
          labels {
            a = "b"
          }
        }
        """,
    )
    text = "\n".join(findings)
    assert "google_eventarc_trigger.t: required argument 'location' is missing" in text
    assert "google_eventarc_trigger.t: required block 'destination' is missing" in text
    assert "matching_criteria: required argument 'value' is missing" in text
    assert "push_config: at most one push_config block is allowed, found 2" in text
    assert "google_pubsub_subscription.s.labels: is an argument" in text
    assert len(findings) == 5, findings


def test_references_to_resources_and_attributes(
    check: ModuleType, schemas: Any, tmp_path: Path
) -> None:
    findings = _findings(
        check,
        schemas,
        tmp_path,
        """
        resource "google_cloudfunctions2_function" "f" {
          name     = "f"
          location = "europe-west1"
        }
        resource "google_pubsub_topic" "t" {
          count = 1
          name  = "t"
          labels = {
            ok      = google_cloudfunctions2_function.f.service_config[0].service
            run_url = google_cloudfunctions2_function.f.service_config[0].uri
            url     = google_cloudfunctions2_function.f.url
            id      = google_pubsub_topic.t[0].id
            literal = "google_pubsub_topic.nowhere.id is text, not a reference"
            bad     = google_cloudfunctions2_function.f.service_config[0].servise
            badtop  = google_cloudfunctions2_function.f.uri
            missing = google_pubsub_topic.nowhere.id
            data    = data.google_project.p.number
          }
        }
        """,
    )
    text = "\n".join(findings)
    assert "f.service_config[0].servise: google_cloudfunctions2_function has no attribute" in text
    assert "'service'" in text
    assert "google_cloudfunctions2_function.f.uri: google_cloudfunctions2_function has no" in text
    assert "google_pubsub_topic.nowhere.id: refers to resource google_pubsub_topic.nowhere" in text
    assert "data.google_project.p.number: refers to data google_project.p" in text
    assert len(findings) == 4, findings


def test_provider_constraint_must_not_admit_older_schemas(
    check: ModuleType, schemas: Any, tmp_path: Path
) -> None:
    findings = _findings(
        check,
        schemas,
        tmp_path,
        """
        terraform {
          required_providers {
            google  = { source = "hashicorp/google", version = ">= 6.0, < 8" }
            archive = { source = "hashicorp/archive", version = ">= 2.7, < 3" }
          }
        }
        """,
    )
    assert len(findings) == 1 and "required_providers.google" in findings[0], findings


def test_allow_list_admits_a_newer_block_and_raises_the_floor(
    check: ModuleType, schemas: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allow-listed attribute passes the block check and makes the constraint need its
    version: the mechanism for anything newer than the schema checked."""
    monkeypatch.setitem(
        check.ALLOW_NEWER,
        ("google_eventarc_trigger", ()),
        {"retry_policy": ("7.14.0", {"single": True, "args": {"max_attempts": False}})},
    )
    newer = check.load_schemas(check.find_assemblies(_site_packages()))
    hcl = """
        terraform {
          required_providers {
            google = { source = "hashicorp/google", version = ">= %s, < 8" }
          }
        }
        resource "google_eventarc_trigger" "t" {
          location = "l"
          name     = "t"
          matching_criteria {
            attribute = "type"
            value     = "x"
          }
          destination {
            workflow = "w"
          }
          retry_policy {
            max_attempts = 1
          }
        }
        """
    assert _findings(check, newer, tmp_path, hcl % "7.14") == []
    (finding,) = _findings(check, newer, tmp_path, hcl % "6.50")
    assert "required_providers.google" in finding
