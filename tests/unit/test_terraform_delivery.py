"""What the Terraform module delivers, and to which rules (issue 12).

Every rule that names its source must receive its events in the shape the module delivers
them: the deliveries are computed by tests/tfmodel.py (the module's `rules_text` expression
interpreted, its delivery locals transcribed, and pinned below), and the events those
deliveries would carry are decoded and routed through the rules the function loads. The same
deliveries are created on the Pub/Sub emulator in tests/integration/test_module_delivery.py.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests import tfmodel
from triggers.events import decode
from triggers.rules import load
from triggers.rules.loader import load_text

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is in the test extra")

MODULE = tfmodel.MODULE
PROJECT = "example-project"
REGION = "europe-west1"
FUNCTION_URL = "https://europe-west1-example-project.cloudfunctions.net/triggers"


def _text() -> str:
    return "\n".join(p.read_text() for p in sorted(MODULE.glob("*.tf")))


def _squashed(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _yaml11(text: str) -> Any:
    """YAML 1.1, as Terraform's yamldecode reads it (an unquoted `on` is the boolean true)."""
    from ruamel.yaml import YAML

    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 1)
    return reader.load(text)


def _doc(rules_yaml: str) -> dict[str, Any]:
    """The rules file as the module reads it: its `rules_text`, then YAML 1.1."""
    return _yaml11(tfmodel.rules_text(rules_yaml, project_id=PROJECT, region=REGION))


def _push(endpoint: str, subscription: str, data: dict[str, Any]) -> Any:
    """The request a push subscription with `endpoint` makes, decoded as the function does."""
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": "1",
            "publishTime": "2026-12-05T01:00:00Z",
        },
        "subscription": subscription,
    }
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(endpoint).query))
    return decode({"Content-Type": "application/json"}, json.dumps(body).encode(), query=query)


def _routed(ruleset: Any, event: Any) -> set[str]:
    return {rule.name for rule in ruleset.route(event)}


# -- the transcription in tests/tfmodel.py is the module's -----------------------------------


@pytest.mark.parametrize(
    "hcl",
    [
        # rules.tf
        'types = distinct(flatten([ for o in flatten([lookup(rule, "on", lookup(rule,'
        " local.yaml11_on_key, []))]) : lookup(local.on_types, o, [o]) ]))",
        'for t in r.types : "${r.bucket}/${t}" => { bucket = r.bucket, type = t }'
        " if contains(values(local.storage_types), t)",
        "} if contains(r.types, local.pubsub_type)",
        "for name, p in local.pubsub_rules : p.topic if p.topic != null && p.subscription == null",
        "for name, p in local.pubsub_rules : p.subscription => p.topic..."
        " if p.subscription != null && p.topic != null",
        '"projects/${r.project}/topics/${r.topic}"',
        '"projects/${r.project}/subscriptions/${r.subscription}"',
        "(contains(keys(local.pubsub_rules), name) && r.topic != null) ||",
        # triggers.tf
        '"${var.name}-${substr(replace(element(split("/", topic), 3), "/[^a-z0-9-]/", "-"), 0,'
        ' 30)}-${substr(sha1(topic), 0, 8)}"',
        'topic => "${google_cloudfunctions2_function.this.url}?topic=${urlencode(topic)}"',
        "for topic in setunion(local.push_topics, flatten(values(local.named_subscriptions)))",
        "push_endpoint = local.push_endpoints[each.key]",
        "push_endpoint = local.push_endpoints[each.value[0]]",
        "for_each = local.named_subscriptions",
        "condition = length(distinct(each.value)) == 1",
        "condition = regex(local.full_subscription_re, each.key)[0] == var.project_id",
        # iam.tf
        "count = length(local.storage_sources) > 0 ? 1 : 0 project = var.project_id"
        ' role = "roles/eventarc.eventReceiver"',
    ],
)
def test_the_model_transcribes_the_module(hcl: str) -> None:
    assert _squashed(hcl) in _squashed(_text())


# -- item 1: Pub/Sub rules scoped by topic and by subscription receive pushed messages -------


def test_basic_example_topic_rule_receives_its_push_deliveries() -> None:
    """terraform/examples/basic with the default pubsub_delivery = "push": the `paid-orders`
    rule (topic: orders) matched nothing before, its messages were acknowledged unmatched."""
    source = (MODULE / "examples" / "basic" / "rules.yaml").read_text()
    made = tfmodel.deliveries(
        _doc(source), project_id=PROJECT, region=REGION, function_url=FUNCTION_URL
    )
    topic = f"projects/{PROJECT}/topics/orders"
    (subscription,) = made.push_subscriptions
    assert made.push_subscriptions[subscription]["topic"] == topic
    assert re.fullmatch(
        rf"projects/{PROJECT}/subscriptions/triggers-orders-[0-9a-f]{{8}}", subscription
    )
    endpoint = made.push_subscriptions[subscription]["endpoint"]
    assert endpoint == f"{FUNCTION_URL}?topic=projects%2F{PROJECT}%2Ftopics%2Forders"
    ruleset = load(
        MODULE / "examples" / "basic" / "rules.yaml", environ={"TRIGGERS_PROJECT": PROJECT}
    )
    event = _push(endpoint, subscription, {"status": "paid", "order_id": "o-1"})
    assert event.data["topic"] == topic
    assert _routed(ruleset, event) == {"paid-orders"}
    assert made.unwired_rules == []


RULES = """\
project: ${TRIGGERS_PROJECT}
region: ${TRIGGERS_REGION}
rules:
  - name: by-topic
    on: pubsub
    topic: orders
    job: orders
  - name: by-subscription
    on: pubsub
    topic: orders
    subscription: orders-audit
    job: audit
  - name: by-full-type
    on: google.cloud.pubsub.topic.v1.messagePublished
    topic: projects/other-project/topics/refunds
    job: refunds
  - name: uploads
    on: [google.cloud.storage.object.v1.finalized, storage.deleted]
    bucket: uploads-bucket
    job: ingest
  - name: nightly
    on: scheduler
    schedule: "0 2 * * *"
    job: report
  - name: subscription-only
    on: pubsub
    subscription: made-elsewhere
    job: audit
"""


@pytest.fixture
def made() -> tfmodel.Deliveries:
    return tfmodel.deliveries(
        _doc(RULES), project_id=PROJECT, region=REGION, function_url=FUNCTION_URL
    )


@pytest.fixture
def ruleset() -> Any:
    return load_text(RULES, environ={"TRIGGERS_PROJECT": PROJECT, "TRIGGERS_REGION": REGION})


def test_a_subscription_rule_gets_that_subscription_and_only_its_messages(made, ruleset) -> None:
    orders = f"projects/{PROJECT}/topics/orders"
    audit = f"projects/{PROJECT}/subscriptions/orders-audit"
    assert made.push_subscriptions[audit]["topic"] == orders
    per_topic = [
        s for s, d in made.push_subscriptions.items() if d["topic"] == orders and s != audit
    ]
    assert len(per_topic) == 1
    through_audit = _push(made.push_subscriptions[audit]["endpoint"], audit, {"n": 1})
    through_topic = _push(made.push_subscriptions[per_topic[0]]["endpoint"], per_topic[0], {"n": 1})
    assert _routed(ruleset, through_audit) == {"by-topic", "by-subscription"}
    assert _routed(ruleset, through_topic) == {"by-topic"}
    # One message through both subscriptions is one event: by-topic launches once (its dedup
    # identity is the topic's message, as with Eventarc), not once per subscription.
    assert (through_audit.source, through_audit.id) == (through_topic.source, through_topic.id)
    # A subscription without a topic cannot be created here: it stays unwired (output).
    assert made.unwired_rules == ["subscription-only"]


def test_on_as_a_full_cloudevent_type_gets_its_delivery(made, ruleset) -> None:
    """Item 5: `on:` given as a full CloudEvent type (the README allows it) got no delivery."""
    refunds = "projects/other-project/topics/refunds"
    assert refunds in {d["topic"] for d in made.push_subscriptions.values()}
    assert set(made.storage_sources) == {
        "uploads-bucket/google.cloud.storage.object.v1.finalized",
        "uploads-bucket/google.cloud.storage.object.v1.deleted",
    }
    subscription, delivery = next(
        (s, d) for s, d in made.push_subscriptions.items() if d["topic"] == refunds
    )
    assert _routed(ruleset, _push(delivery["endpoint"], subscription, {})) == {"by-full-type"}


def test_eventarc_delivery_keeps_named_subscriptions_as_push(ruleset) -> None:
    made = tfmodel.deliveries(
        _doc(RULES),
        project_id=PROJECT,
        region=REGION,
        function_url=FUNCTION_URL,
        pubsub_delivery="eventarc",
    )
    assert made.eventarc_topics == {
        f"projects/{PROJECT}/topics/orders",
        "projects/other-project/topics/refunds",
    }
    assert list(made.push_subscriptions) == [f"projects/{PROJECT}/subscriptions/orders-audit"]


# -- item 5: `$${` is a literal for the module as it is for the function ---------------------


def test_module_expands_the_rules_file_like_the_function() -> None:
    text = (
        "a: ${TRIGGERS_PROJECT}\n"
        "b: ${TRIGGERS_REGION:-us-east1}\n"
        "c: ${OTHER:-fallback}\n"
        "d: $${TRIGGERS_PROJECT}\n"
        "e: x-$${OTHER:-kept}-${TRIGGERS_PROJECT}\n"
    )
    module = _yaml11(tfmodel.rules_text(text, project_id=PROJECT, region=REGION))
    assert module == {
        "a": PROJECT,
        "b": REGION,
        "c": "fallback",
        "d": "${TRIGGERS_PROJECT}",
        "e": f"x-${{OTHER:-kept}}-{PROJECT}",
    }
    # The function's own expansion (triggers/rules/yamlsource.py) of the same text.
    from triggers.rules.yamlsource import parse, plain, substitute_env

    tree = parse(text)
    substitute_env(tree, {"TRIGGERS_PROJECT": PROJECT, "TRIGGERS_REGION": REGION}, _no_problem)
    assert plain(tree) == module


def _no_problem(line: Any, message: str) -> None:
    raise AssertionError(message)


# -- grants, ordering, the archive, the destination ------------------------------------------


def test_event_receiver_only_with_storage_triggers(made) -> None:
    """Item 5: roles/eventarc.eventReceiver only for Cloud Storage triggers (Eventarc: routing
    direct events from Pub/Sub does not need it), not for Pub/Sub rules in either delivery."""
    pubsub_only = {
        "project": PROJECT,
        "rules": [{"name": "r", "on": "pubsub", "topic": "t", "job": "j"}],
    }
    push = tfmodel.deliveries(pubsub_only, project_id=PROJECT, region=REGION)
    assert not push.event_receiver_granted and not push.storage_agent_granted
    eventarc = tfmodel.deliveries(
        pubsub_only, project_id=PROJECT, region=REGION, pubsub_delivery="eventarc"
    )
    assert eventarc.eventarc_topics and not eventarc.event_receiver_granted
    assert not eventarc.storage_agent_granted
    assert made.event_receiver_granted and made.storage_agent_granted


def _resources(kind: str = "resource") -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get(kind, []):
                for rtype, named in block.items():
                    for rname, body in named.items():
                        found[(rtype.strip('"'), rname.strip('"'))] = body
    return found


def test_storage_triggers_wait_for_the_storage_agent_grant_to_propagate() -> None:
    """Item 5: a first apply raced Eventarc's check of the storage agent's publisher grant."""
    resources = _resources()
    trigger = resources[("google_eventarc_trigger", "storage")]
    assert "${time_sleep.storage_agent_grants}" in trigger["depends_on"]
    sleep = resources[("time_sleep", "storage_agent_grants")]
    assert "${google_project_iam_member.gcs_pubsub_publisher}" in sleep["depends_on"]
    assert int(sleep["create_duration"].strip('"s')) >= 60
    assert (
        sleep["count"] == resources[("google_project_iam_member", "gcs_pubsub_publisher")]["count"]
    )
    agent = _resources("data")[("google_storage_project_service_account", "gcs")]
    assert "local.storage_sources" in agent["count"]
    assert "${google_project_service.apis}" in agent["depends_on"]


@pytest.mark.parametrize(
    "key",
    [
        ("google_firestore_field", "expire_at"),
        ("google_firestore_field", "exempt"),
        ("google_firestore_index", "ledger"),
        ("google_firestore_field", "batch_expire_at"),
        ("google_firestore_index", "batches"),
    ],
)
def test_firestore_configuration_waits_for_the_api(key) -> None:
    """Item 5: with firestore.create = false nothing ordered these after the Firestore API."""
    assert "${google_project_service.apis}" in _resources()[key]["depends_on"]


def test_source_archive_is_written_at_apply_time() -> None:
    """Item 5: a data source writes the zip at plan time; a saved plan applied elsewhere then
    uploads a file that does not exist. The managed resource writes it when applied."""
    assert ("archive_file", "source") in _resources()
    assert ("archive_file", "source") not in _resources("data")
    assert "data.archive_file" not in _text()


def test_eventarc_destinations_name_the_service_by_its_short_name() -> None:
    """Item 3: service_config[0].service is projects/P/locations/L/services/NAME; Eventarc's
    destination.cloud_run_service.service takes NAME."""
    resources = _resources()
    for name in ("storage", "pubsub"):
        destination = resources[("google_eventarc_trigger", name)]["destination"][0]
        assert destination["cloud_run_service"][0]["service"] == "${local.function_service_name}"
    expression = _squashed(str(tfmodel._hcl_locals()["function_service_name"]))
    pattern = re.search(r'regex\("([^"]+)", google_cloudfunctions2_function\.this', expression)
    assert pattern, expression
    full = "projects/p/locations/europe-west1/services/triggers"
    assert re.search(pattern.group(1), full).group(0) == "triggers"


def test_function_accepts_the_audiences_eventarc_uses() -> None:
    """Item 4: with verify_oidc the function accepted only the cloudfunctions.net URL."""
    env = str(tfmodel._hcl_locals()["function_env"])
    assert "TRIGGERS_OIDC_AUDIENCE = jsonencode(local.oidc_audiences)" in env
    audiences = [
        a.strip('"')
        for a in re.findall(
            r'"[^"]*"|local\.function_url', str(tfmodel._hcl_locals()["oidc_audiences"])
        )
    ]
    assert audiences == [
        "local.function_url",
        "https://${var.name}-${data.google_project.this.number}.${var.region}.run.app",
        "https://${var.name}-*-*.a.run.app",
    ]
    # tests/unit/test_auth.py checks these very strings (for name = "triggers") are accepted.
    from tests.unit.test_auth import MODULE_AUDIENCES

    module = json.loads(MODULE_AUDIENCES)
    assert module[1:] == [
        "https://triggers-123456789012.europe-west1.run.app",
        "https://triggers-*-*.a.run.app",
    ]


def test_no_eventarc_retry_policy_and_the_provider_floor() -> None:
    """Item 2: retry_policy exists from google 7.14 (validate failed on 6.x) and in 7.x only
    disables retries; the module does without it and requires the schema it is checked on."""
    assert "retry_policy" not in str(_resources()[("google_eventarc_trigger", "storage")])
    assert "eventarc_max_attempts" not in _text()
    versions = (MODULE / "versions.tf").read_text()
    assert re.search(r'version\s*=\s*">= 6\.50, < 8"', versions)


def test_examples_are_in_the_model(tmp_path: Path) -> None:
    for example in ("basic", "existing-firestore"):
        source = (MODULE / "examples" / example / "rules.yaml").read_text()
        made = tfmodel.deliveries(_doc(source), project_id=PROJECT, region=REGION)
        assert made.unwired_rules == [], example
