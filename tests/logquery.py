"""The Terraform module's log-based metrics (terraform/monitoring.tf), runnable in tests.

`load_metrics` reads each metric's filter and label extractors from monitoring.tf (python-hcl2);
`parse_filter` / `parse_extractor` interpret the subset of the Logging query language the module
uses (comparisons `=`, `!=`, `=~`, `:` of a field path with a quoted string; AND, OR, NOT,
parentheses; EXTRACT and REGEXP_EXTRACT); `log_entry` makes of one line the function writes the
log entry Cloud Logging makes of it. Pure: no I/O besides reading monitoring.tf.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MONITORING = Path(__file__).resolve().parents[1] / "terraform" / "monitoring.tf"


def log_entry(line: dict[str, Any], service: str) -> dict[str, Any]:
    """A JSON log line of `service` (a Cloud Run service) as Cloud Logging stores it: the
    `logging.googleapis.com/labels` become the entry's labels, the rest its jsonPayload."""
    payload = dict(line)
    labels = payload.pop("logging.googleapis.com/labels", {})
    return {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service}},
        "severity": payload.get("severity"),
        "labels": labels,
        "jsonPayload": payload,
    }


def series(**labels: str) -> tuple[tuple[str, str], ...]:
    """One time series of a metric: its label values."""
    return tuple(sorted(labels.items()))


def counts(metrics: dict[str, Metric], entries: list[Entry]) -> dict[str, Counter]:
    """Every metric's counts over `entries`; metrics that counted nothing are left out."""
    found = {name: metric.count(entries) for name, metric in metrics.items()}
    return {name: counted for name, counted in found.items() if counted}


# -- the Logging query language subset ---------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>=~|!=|=|:)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-/]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise SyntaxError(f"cannot read the filter at {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


Entry = dict[str, Any]
Predicate = Callable[[Entry], bool]


def _field(entry: Entry, path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compare(path: str, op: str, literal: str) -> Predicate:
    expected = json.loads(literal)

    def test(entry: Entry) -> bool:
        value = _field(entry, path)
        if op == "!=":
            return value is None or str(value) != expected
        if value is None:
            return False
        text = str(value)
        if op == "=":
            return text == expected
        if op == ":":
            return expected.lower() in text.lower()
        return re.search(expected, text) is not None  # =~

    return test


class _Parser:
    """expr := term (OR term)*; term := factor ([AND] factor)*; factor := NOT factor |
    ( expr ) | FIELD OP STRING.  (AND binds tighter than OR only in this subset's uses.)"""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def parse(self) -> Predicate:
        predicate = self._expr()
        if self.at != len(self.tokens):
            raise SyntaxError(f"unexpected {self.tokens[self.at]!r}")
        return predicate

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _expr(self) -> Predicate:
        parts = [self._term()]
        while self._peek() == ("word", "OR"):
            self._take()
            parts.append(self._term())
        return lambda entry: any(part(entry) for part in parts)

    def _term(self) -> Predicate:
        parts = [self._factor()]
        while (token := self._peek()) is not None and token not in (("word", "OR"), ("paren", ")")):
            if token == ("word", "AND"):
                self._take()
            parts.append(self._factor())
        return lambda entry: all(part(entry) for part in parts)

    def _factor(self) -> Predicate:
        kind, value = self._take()
        if (kind, value) == ("word", "NOT"):
            inner = self._factor()
            return lambda entry: not inner(entry)
        if (kind, value) == ("paren", "("):
            inner = self._expr()
            if self._take() != ("paren", ")"):
                raise SyntaxError("missing )")
            return inner
        if kind != "word":
            raise SyntaxError(f"expected a field, not {value!r}")
        op_kind, op = self._take()
        literal_kind, literal = self._take()
        if op_kind != "op" or literal_kind != "string":
            raise SyntaxError(f'expected FIELD OP "VALUE" after {value}')
        return _compare(value, op, literal)


def parse_filter(text: str) -> Predicate:
    return _Parser(text).parse()


_EXTRACT = re.compile(r"^EXTRACT\(([\w.]+)\)$")
_REGEXP_EXTRACT = re.compile(r'^REGEXP_EXTRACT\(([\w.]+),\s*("(?:[^"\\]|\\.)*")\)$')


def parse_extractor(text: str) -> Callable[[Entry], str]:
    """A label extractor; an absent field gives the empty label value."""
    if match := _EXTRACT.match(text):
        path = match.group(1)
        return lambda entry: str(_field(entry, path) or "")
    if match := _REGEXP_EXTRACT.match(text):
        path, pattern = match.group(1), re.compile(json.loads(match.group(2)))

        def extract(entry: Entry) -> str:
            found = pattern.search(str(_field(entry, path) or ""))
            return found.group(1) if found else ""

        return extract
    raise SyntaxError(f"unknown extractor {text!r}")


# -- the metrics as monitoring.tf declares them -------------------------------------------------


def _hcl_string(value: str) -> str:
    """python-hcl2 8 keeps a literal's quotes and escapes; 7 does not."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value.replace('\\"', '"').replace("\\\\", "\\")


def _resolve(value: str, names: dict[str, str]) -> str:
    resolved = _hcl_string(value)
    while "${" in resolved:
        resolved = re.sub(r"\$\{([^{}]+)\}", lambda m: names[m.group(1)], resolved)
    return resolved


@dataclass
class Metric:
    name: str
    matches: Predicate
    labels: dict[str, Callable[[Entry], str]]

    def count(self, entries: list[Entry]) -> Counter[tuple[tuple[str, str], ...]]:
        """Time series (label values) -> how many entries the metric counts."""
        return Counter(
            tuple(sorted((key, extract(entry)) for key, extract in self.labels.items()))
            for entry in entries
            if self.matches(entry)
        )


def load_metrics(name: str, reconcile_name: str) -> dict[str, Metric]:
    """The module's log-based metrics for `var.name` = name (and its reconciler's name)."""
    import hcl2

    with MONITORING.open() as handle:
        module = hcl2.load(handle)
    local_values: dict[str, Any] = {}
    for block in module["locals"]:
        local_values.update(block)
    (resource,) = [
        body
        for block in module["resource"]
        for kind, named in block.items()
        for resource_name, body in named.items()
        if (_hcl_string(kind), _hcl_string(resource_name)) == ("google_logging_metric", "rule")
    ]
    names = {
        "var.name": name,
        "local.reconcile_name": reconcile_name,
        "local.monitoring_scope": _hcl_string(local_values["monitoring_scope"]),
        "local.reason_extractor": _hcl_string(local_values["reason_extractor"]),
    }
    names = {key: _resolve(value, names) for key, value in names.items()}
    declared: dict[str, Metric] = {}
    for metric_id, spec in local_values["log_metrics"].items():
        filter_text = _resolve(
            resource["filter"], {**names, "each.value.filter": _hcl_string(spec["filter"])}
        )
        declared[metric_id] = Metric(
            metric_id,
            parse_filter(filter_text),
            {key: parse_extractor(_resolve(text, names)) for key, text in spec["labels"].items()},
        )
    return declared
