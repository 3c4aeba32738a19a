"""check: every rule's jobs.run request, planned, and with --live validated by Cloud Run.

    triggers check [PATH]                      plan each rule's request from a sample event
    triggers check [PATH] --live               ... and send it with validateOnly: true
             [--endpoint URL] [--rule NAME] [--include-disabled] [--timeout S] [--json]

Exit 0 when every rule checked passed, 1 when the rules do not load or any rule failed (a job
that does not exist, an override Cloud Run refuses, a caller without
run.jobs.runWithOverrides, an unreachable API), 2 on usage errors. The logic is in
triggers.ops.preflight; docs/deploy.md says where it fits in a pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._common import API_ROOT, add_rules_option


def add_check(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "check",
        help="plan every rule's jobs.run request; --live: have Cloud Run validate it",
        description="For every rule, plan the jobs.run request it would send for its example"
        " event (or one synthesized for its `on:` kind). With --live, send each with"
        " validateOnly: true, so that Cloud Run checks the job exists, the caller may run it"
        " with overrides and the overrides are accepted; nothing is launched. Exit 1 if any"
        " rule fails.",
    )
    add_rules_option(p, rules_default, positional=True)
    p.add_argument(
        "--live",
        action="store_true",
        help="call jobs.run with validateOnly: true (credentials: Application Default"
        " Credentials; none for an --endpoint)",
    )
    p.add_argument(
        "--endpoint",
        default=None,
        help="Cloud Run API endpoint, e.g. http://127.0.0.1:8123 for the emulator"
        " (default: $TRIGGERS_CLOUD_RUN_ENDPOINT, else run.googleapis.com)",
    )
    p.add_argument(
        "--rule", action="append", default=[], help="only this rule (repeatable)", metavar="NAME"
    )
    p.add_argument(
        "--include-disabled", action="store_true", help="check rules with enabled: false too"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per API call (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_check)


def _check(args: argparse.Namespace) -> int:
    from ..errors import RulesError
    from ..ops.preflight import preflight
    from ..rules import load

    if args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return 2
    try:
        rules = load(args.path)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    unknown = sorted(set(args.rule) - {rule.name for rule in rules})
    if unknown:
        print(f"error: no rule named {', '.join(map(repr, unknown))}", file=sys.stderr)
        return 2
    endpoint = args.endpoint or os.environ.get("TRIGGERS_CLOUD_RUN_ENDPOINT") or None
    runner = None
    if args.live:
        from ..runners.cloudrun import CloudRunRunner

        runner = CloudRunRunner(endpoint=endpoint, timeout=args.timeout)
    report = preflight(
        rules,
        runner,
        live=args.live,
        only=args.rule,
        include_disabled=args.include_disabled,
        endpoint=(endpoint or API_ROOT) if args.live else None,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print(args.path, report)
    return 0 if report.ok else 1


def _print(path: str, report) -> None:
    how = f"validateOnly at {report.endpoint}" if report.live else "planned only, not sent"
    print(f"{path}: {len(report.checks)} rule{'s' if len(report.checks) != 1 else ''} ({how})")
    width = max((len(check.rule) for check in report.checks), default=0)
    for check in report.checks:
        label = check.status.upper() if check.status == "failed" else check.status
        where = f"  {check.job}" if check.status != "skipped" else ""
        origin = f"  [{check.sample} event]" if check.sample else ""
        print(f"  {label:<8}{check.rule:<{width}}{where}{origin}".rstrip())
        if check.problem:
            print(f"          {check.problem}: {check.message}")
        elif check.status == "skipped" and check.message:
            print(f"          {check.message}")
        if check.sample_mismatch:
            print(
                f"          note: the rule would not match this {check.sample} event"
                f" ({check.sample_mismatch}); give it an `example:`"
            )
        if check.request is not None and (check.status != "ok"):
            print(f"          request: {json.dumps(check.request, separators=(',', ':'))}")
    counts = report.counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    print(f"{'OK' if report.ok else 'FAILED'}: {summary or 'no rules'}")
