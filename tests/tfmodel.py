"""What the Terraform module creates for a rules file, computed in Python.

There is no terraform binary here to evaluate the module's locals, so tests compute them:

* `rules_text` is *evaluated from the module's own expression* (parsed out of rules.tf with
  python-hcl2): the nested `replace()` / `format()` / `file()` calls and their regexes are
  interpreted here, so a change to that expression is what gets tested;
* the deliveries (`storage_sources`, `pubsub_topics`, `named_subscriptions`, subscription
  names, push endpoints, which grants exist) are a line-by-line transcription of rules.tf and
  triggers.tf; `tests/unit/test_terraform_delivery.py` pins the HCL expressions transcribed, so
  that the two cannot drift apart silently.

Tests then create exactly these deliveries on the emulators and check that every rule receives
its events (tests/integration/test_module_delivery.py).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "terraform"

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_TYPES = {
    "storage.finalized": "google.cloud.storage.object.v1.finalized",
    "storage.deleted": "google.cloud.storage.object.v1.deleted",
    "storage.archived": "google.cloud.storage.object.v1.archived",
    "storage.metadataUpdated": "google.cloud.storage.object.v1.metadataUpdated",
}
ON_TYPES = {
    **{k: [v] for k, v in STORAGE_TYPES.items()},
    "pubsub": [PUBSUB_TYPE],
    "storage": list(STORAGE_TYPES.values()),
    "scheduler": ["google.cloud.scheduler.job.v1.executed"],
}
FULL_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
FULL_SUBSCRIPTION = re.compile(r"^projects/([^/]+)/subscriptions/([^/]+)$")


# -- rules_text: the module's expression, interpreted ------------------------------------------


def _hcl_locals() -> dict[str, Any]:
    import hcl2

    merged: dict[str, Any] = {}
    for path in sorted(MODULE.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("locals", []):
                merged.update(block)
    return merged


def _hcl_string(raw: str) -> str:
    """An HCL quoted string's value (its escapes, and `$${` / `%%{` for a literal `${` / `%{`)."""
    body = raw[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(escapes[body[i + 1]])
            i += 2
        elif body.startswith(("$${", "%%{"), i):
            out.append(body[i + 1 : i + 3])
            i += 3
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


class _Evaluator:
    """Just enough HCL for rules_text: calls, quoted strings, var.* and local.* references."""

    def __init__(self, variables: dict[str, str], files: dict[str, str]) -> None:
        self.locals = _hcl_locals()
        self.variables = variables
        self.files = files

    def local(self, name: str) -> str:
        expression = self.locals[name]
        if expression.startswith("${") and expression.endswith("}"):
            return self.evaluate(expression[2:-1])
        return _hcl_string(expression) if expression.startswith('"') else expression

    def evaluate(self, text: str) -> str:
        value, rest = self._expression(text.strip())
        assert not rest.strip(), f"unparsed: {rest!r}"
        return value

    def _expression(self, text: str) -> tuple[str, str]:
        text = text.lstrip()
        if text.startswith('"'):
            end = 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            return _hcl_string(text[: end + 1]), text[end + 1 :]
        match = re.match(r"[A-Za-z_][\w.]*", text)
        assert match, f"cannot read {text[:40]!r}"
        name, rest = match.group(0), text[match.end() :].lstrip()
        if not rest.startswith("("):
            scope, _, attr = name.partition(".")
            return (self.local(attr) if scope == "local" else self.variables[attr]), rest
        args: list[str] = []
        rest = rest[1:]
        while True:
            value, rest = self._expression(rest)
            args.append(value)
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:]
                continue
            assert rest.startswith(")"), rest[:40]
            return self._call(name, args), rest[1:]

    def _call(self, name: str, args: list[str]) -> str:
        if name == "file":
            return self.files[args[0]]
        if name == "format":
            return args[0] % tuple(args[1:])
        if name == "replace":
            string, search, replacement = args
            if len(search) > 1 and search.startswith("/") and search.endswith("/"):
                # RE2 as Terraform uses it; `$1` in the replacement is a group reference.
                python_replacement = re.sub(r"\$(\d+)", r"\\g<\1>", replacement)
                return re.sub(search[1:-1], python_replacement, string)
            return string.replace(search, replacement)
        raise AssertionError(f"{name}() is not interpreted here: extend tests/tfmodel.py")


def rules_text(text: str, *, project_id: str, region: str) -> str:
    """What the module's `local.rules_text` is for a rules file holding `text`."""
    evaluator = _Evaluator(
        {"project_id": project_id, "region": region, "rules_file": "<rules>"},
        {"<rules>": text},
    )
    return evaluator.local("rules_text")


# -- deliveries: rules.tf and triggers.tf, transcribed ------------------------------------------


@dataclass
class Deliveries:
    storage_sources: dict[str, dict[str, str]] = field(default_factory=dict)
    push_subscriptions: dict[str, dict[str, str]] = field(default_factory=dict)  # by full name
    eventarc_topics: set[str] = field(default_factory=set)
    unwired_rules: list[str] = field(default_factory=list)
    event_receiver_granted: bool = False
    storage_agent_granted: bool = False


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for item in value for x in _flatten(item)]
    return [value]


def topic_subscription_id(name: str, topic: str) -> str:
    """`local.topic_ids[topic]`: the per-topic push subscription's id."""
    short = re.sub(r"[^a-z0-9-]", "-", topic.split("/")[3])[:30]
    return f"{name}-{short}-{hashlib.sha1(topic.encode()).hexdigest()[:8]}"


def push_endpoint(function_url: str, topic: str) -> str:
    """`local.push_endpoints[topic]` (Terraform's urlencode is Go's url.QueryEscape)."""
    return f"{function_url}?topic={urllib.parse.quote_plus(topic)}"


def deliveries(
    rules_doc: dict[str, Any],
    *,
    project_id: str,
    region: str,
    name: str = "triggers",
    function_url: str = "https://function.example",
    pubsub_delivery: str = "push",
) -> Deliveries:
    """What the module creates for `rules_doc` (the rules file as yamldecode reads it)."""
    file_project = rules_doc.get("project")
    rules = {}
    for rule in rules_doc.get("rules", []):
        # yamldecode reads YAML 1.1: an unquoted `on:` key is the boolean true.
        on = _flatten([rule.get("on", rule.get("true", rule.get(True, [])))])
        rules[rule["name"]] = {
            "enabled": rule.get("enabled", True),
            "types": list(dict.fromkeys(t for o in on for t in ON_TYPES.get(o, [o]))),
            "project": rule.get("project") or file_project or project_id,
            "topic": rule.get("topic"),
            "subscription": rule.get("subscription"),
            "bucket": rule.get("bucket"),
            "schedule": rule.get("schedule"),
        }
    enabled = {n: r for n, r in rules.items() if r["enabled"]}
    out = Deliveries()
    for r in enabled.values():
        if r["bucket"] is not None:
            for t in r["types"]:
                if t in STORAGE_TYPES.values():
                    out.storage_sources[f"{r['bucket']}/{t}"] = {"bucket": r["bucket"], "type": t}
    pubsub_rules = {}
    for rule_name, r in enabled.items():
        if PUBSUB_TYPE not in r["types"]:
            continue
        topic, sub = r["topic"], r["subscription"]
        pubsub_rules[rule_name] = {
            "topic": None
            if topic is None
            else (topic if FULL_TOPIC.match(topic) else f"projects/{r['project']}/topics/{topic}"),
            "subscription": None
            if sub is None
            else (
                sub
                if FULL_SUBSCRIPTION.match(sub)
                else f"projects/{r['project']}/subscriptions/{sub}"
            ),
        }
    pubsub_topics = {
        p["topic"]
        for p in pubsub_rules.values()
        if p["topic"] is not None and p["subscription"] is None
    }
    named: dict[str, list[str]] = {}
    for p in pubsub_rules.values():
        if p["subscription"] is not None and p["topic"] is not None:
            named.setdefault(p["subscription"], []).append(p["topic"])
    push_topics = pubsub_topics if pubsub_delivery == "push" else set()
    out.eventarc_topics = pubsub_topics if pubsub_delivery == "eventarc" else set()
    for topic in sorted(push_topics):
        full = f"projects/{project_id}/subscriptions/{topic_subscription_id(name, topic)}"
        out.push_subscriptions[full] = {
            "topic": topic,
            "endpoint": push_endpoint(function_url, topic),
        }
    for subscription, topics in named.items():
        assert len(set(topics)) == 1, f"precondition: {subscription} on {topics}"
        assert FULL_SUBSCRIPTION.match(subscription).group(1) == project_id, "precondition"
        out.push_subscriptions[subscription] = {
            "topic": topics[0],
            "endpoint": push_endpoint(function_url, topics[0]),
        }
    out.unwired_rules = sorted(
        n
        for n, r in enabled.items()
        if not (
            (r["bucket"] is not None and set(r["types"]) & set(STORAGE_TYPES.values()))
            or (n in pubsub_rules and r["topic"] is not None)
            or r["schedule"] is not None
        )
    )
    out.event_receiver_granted = len(out.storage_sources) > 0
    out.storage_agent_granted = len(out.storage_sources) > 0
    return out


# -- flow control: rules.tf flow_rules / task_queues and tasks.tf, transcribed ------------------

RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
RATE_RE = re.compile(r"^\s*([0-9]+)\s*/\s*([a-z]+)\s*$")


def task_queues(rules_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`local.task_queues`: queue id => {rules, max_dispatches_per_second,
    max_concurrent_dispatches} for the rules file as yamldecode reads it."""
    file_limits = rules_doc.get("limits")
    rules = {}
    for rule in rules_doc.get("rules", []):
        own = rule.get("limits")
        rules[rule["name"]] = {
            "flow": file_limits is not None or own is not None or rule.get("batch") is not None,
            # merge({}, file, own): null arguments skipped, later keys win
            "limits": {**(file_limits or {}), **(own or {})},
        }
    flow_rules = {}
    for name in sorted(rules):  # Terraform iterates a map's keys in lexical order
        r = rules[name]
        if not r["flow"]:
            continue
        limits = r["limits"]
        flow_rules[name] = {
            "name": name,
            # coalesce(): the first argument that is neither null nor ""
            "queue": limits.get("queue") or f"triggers-{name.replace('_', '-')}",
            "rate": limits.get("rate"),
            "max_running": limits.get("max_running"),
        }
    grouped: dict[str, list[dict[str, Any]]] = {}
    for f in flow_rules.values():
        grouped.setdefault(f["queue"], []).append(f)
    queues = {}
    for queue, flows in grouped.items():
        rate = flows[0]["rate"]
        per_second = None
        if rate is not None:
            count, unit = RATE_RE.match(rate).groups()
            per_second = int(count) / RATE_UNITS[unit]
        queues[queue] = {
            "rules": [f["name"] for f in flows],
            "max_dispatches_per_second": per_second,
            "max_concurrent_dispatches": 1
            if any(f["max_running"] is not None for f in flows)
            else None,
        }
    return queues
