"""validate, plan, test-pattern, schema: the commands that read rules and events, offline."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ._common import API_ROOT, add_rules_option


def add_commands(sub, rules_default: str) -> None:
    p = sub.add_parser("validate", help="load and check a rules file or directory")
    add_rules_option(p, rules_default, positional=True)
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.set_defaults(run=_validate)

    p = sub.add_parser("plan", help="show what each rule would do with each event")
    add_rules_option(p, rules_default)
    p.add_argument("events", nargs="+", metavar="EVENT_FILE", help="event files (config/events)")
    p.add_argument("--json", action="store_true", help="print one JSON document per event")
    p.add_argument(
        "--matched", action="store_true", help="show only the rules that match each event"
    )
    p.set_defaults(run=_plan)

    p = sub.add_parser("test-pattern", help="match an EventBridge pattern against an event")
    p.add_argument("pattern", metavar="PATTERN_FILE", help="the pattern (JSON or YAML)")
    p.add_argument("event", metavar="EVENT_FILE", help="an event document (JSON)")
    p.add_argument(
        "--decode",
        action="store_true",
        help="EVENT_FILE is a request file: decode it and match its event document",
    )
    p.set_defaults(run=_test_pattern)

    p = sub.add_parser("schema", help="print the JSON Schema of the rules file")
    p.set_defaults(run=_schema)


# -- validate ---------------------------------------------------------------------------------


def load_rules(path: str):
    """Rules, or None after printing every problem."""
    from ..errors import RulesError
    from ..rules import load

    try:
        return load(path)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    from ..errors import RulesError
    from ..rules import load

    try:
        rules = load(args.path)
    except RulesError as exc:
        if args.json:
            print(
                json.dumps(
                    {"valid": False, "problems": [_problem(p) for p in exc.problems]}, indent=2
                )
            )
        else:
            print(str(exc), file=sys.stderr)
        return 1
    kinds = Counter(on.split(".")[0] for rule in rules for on in rule.spec.on)
    flowing = [rule for rule in rules if rule.flow is not None]
    if args.json:
        document: dict[str, Any] = {"valid": True, "files": list(rules.files), "rules": len(rules)}
        document["flow"] = {rule.name: _flow_json(rule) for rule in flowing}
        print(json.dumps(document, indent=2))
    else:
        summary = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        print(f"{args.path}: {len(rules)} rule{'s' if len(rules) != 1 else ''} OK ({summary})")
        if flowing:
            print(f"flow control ({len(flowing)} of the rules launch through Cloud Tasks):")
        for rule in flowing:
            print(f"  {rule.name}:")
            for line in _flow_lines(rule):
                print(f"    {line}")
    return 0


def _flow_json(rule) -> dict[str, Any] | None:
    """A rule's limits and batch as `--json` prints them (None: launched inline)."""
    from ..rules.flow import flow_summary

    if rule.flow is None:
        return None
    summary = flow_summary(rule.flow)
    if summary["batch"] is not None:
        summary["batch"]["key"] = None if rule.batch_key is None else rule.batch_key.source
    return summary


def _flow_lines(rule) -> list[str]:
    from ..rules.flow import flow_lines

    if rule.flow is None:
        return []
    return flow_lines(rule.flow, None if rule.batch_key is None else rule.batch_key.source)


def _problem(problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "rule": problem.rule,
        "message": problem.message,
    }


# -- plan -------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    from ..errors import DecodeError
    from ..events import decode, parse_event_file

    rules = load_rules(args.config)
    if rules is None:
        return 1
    status = 0
    for name in args.events:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{name}: cannot read: {exc}", file=sys.stderr)
            status = 2
            continue
        try:
            headers, body = parse_event_file(text, name)
            event = decode(headers, body)
        except DecodeError as exc:
            _print_rejected(name, exc, args.json)
            continue
        verdicts = rules.verdicts(event)
        if any(v.matched and v.error for v in verdicts):
            status = max(status, 1)  # a rule matched and cannot plan its run: a rules bug
        if args.matched:
            verdicts = [v for v in verdicts if v.matched]
        if args.json:
            print(json.dumps(_plan_json(name, event, verdicts), indent=2))
        else:
            _print_plan(name, event, verdicts)
    return status


def _print_rejected(name: str, exc, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps({"file": name, "rejected": {"reason": exc.reason, "message": exc.message}})
        )
    else:
        print(f"{name}\n  rejected ({exc.reason}): {exc.message}\n")


def _plan_json(name: str, event, verdicts) -> dict[str, Any]:
    out = []
    for v in verdicts:
        entry: dict[str, Any] = {"rule": v.rule.name, "matched": v.matched}
        if v.reason:
            entry["reason"] = v.reason
        if v.request:
            entry.update(v.request.as_dict())
            entry["flow"] = _flow_json(v.rule)
        if v.error:
            entry["error"] = str(v.error)
        out.append(entry)
    return {
        "file": name,
        "event": {"form": event.form, "kind": event.kind, "document": event.document},
        "verdicts": out,
    }


def _print_plan(name: str, event, verdicts) -> None:
    from ..runners.systems import get as get_system

    print(name)
    print(f"  event  {event.type}  ({event.form})")
    print(f"         id={event.id}  source={event.source}")
    if not verdicts:
        print("  (no rule matches)")
    for v in verdicts:
        if not v.matched:
            print(f"  - {v.rule.name}: {v.reason}")
        elif v.error:
            print(f"  ! {v.rule.name}: matched, but cannot plan the run: {v.error}")
        else:
            request = v.request
            print(f"  + {v.rule.name}: run {request.job}")
            print(f"      dedup key: {request.dedup_key}")
            for line in _flow_lines(v.rule):
                print(f"      {line}")
            if request.renderer is None:
                print(f"      POST {API_ROOT}/{request.job}:run")
            else:
                print(f"      {get_system(request.system).title}:")
            body = json.dumps(request.request_body(), indent=2)
            print("      " + body.replace("\n", "\n      "))
    print()


# -- test-pattern ---------------------------------------------------------------------------


def _test_pattern(args: argparse.Namespace) -> int:
    from ..errors import PatternError
    from ..rules.patterns import compile as compile_pattern

    try:
        pattern_source = _read_structured(args.pattern)
        if args.decode:
            from ..events import decode, parse_event_file

            headers, body = parse_event_file(
                Path(args.event).read_text(encoding="utf-8"), args.event
            )
            document = decode(headers, body).document
        else:
            document = json.loads(Path(args.event).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # DecodeError and JSON errors are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(pattern_source, dict):
        print(f"error: {args.pattern}: a pattern is a JSON/YAML object", file=sys.stderr)
        return 2
    try:
        pattern = compile_pattern(pattern_source)
    except PatternError as exc:
        print(f"error: {args.pattern}: invalid pattern: {exc}", file=sys.stderr)
        return 2
    reason = pattern.explain(document)
    print("match" if reason is None else f"no match: {reason}")
    return 0 if reason is None else 1


def _read_structured(path: str) -> Any:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        from ..rules.yamlsource import YAMLProblem, parse, plain

        try:
            return plain(parse(text))
        except YAMLProblem as exc:
            raise ValueError(f"{path}:{exc.line}: {exc.message}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


# -- schema ------------------------------------------------------------------------


def _schema(args: argparse.Namespace) -> int:
    from ..rules.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
