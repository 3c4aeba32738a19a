"""replay: recorded events, or dead letters, through the current rules again.

See docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import UTC
from typing import Any

from ._common import Progress, add_rules_option
from ._history import (
    add_ledger_options,
    add_record_filters,
    close_ledger,
    function_runner,
    open_ledger,
    record_filters,
)
from ._rules import load_rules


def add_replay(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "replay",
        help="re-send recorded events (or dead letters) through the current rules",
        description="Rebuild the events the ledger recorded (selected by rule, status and time)"
        " and send each through its rule as it is now. --dry-run shows what would run now against"
        " what ran. A real replay runs under a new dedup scope: once per event, however often it"
        " is repeated with the same --scope. --from-topic re-drives dead letters instead. Runs"
        " with the function's settings (TRIGGERS_LEDGER, TRIGGERS_RUNNER,"
        " TRIGGERS_CLOUD_RUN_ENDPOINT, ...). Exit 1 if anything was rejected again or must be"
        " retried.",
    )
    add_rules_option(p, rules_default)
    add_ledger_options(p)
    add_record_filters(
        p, status_help="failed,rejected,...; repeatable; default: every finished status", limit=100
    )
    p.add_argument(
        "--all-rules",
        action="store_true",
        help="send each event through every current rule, not only the one that recorded it",
    )
    p.add_argument(
        "--scope",
        help="dedup scope of the replay (default: replay-<now>); repeat one to resume a replay"
        " without running anything twice",
    )
    p.add_argument(
        "--from-topic",
        metavar="NAME",
        help="re-drive dead letters: the dead-letter topic (if it has one subscription) or"
        " projects/P/subscriptions/S",
    )
    p.add_argument(
        "--max-messages", type=int, default=100, help="with --from-topic: at most this many"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would run; run nothing")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=_replay)


def _replay(args: argparse.Namespace) -> int:
    from datetime import datetime

    from ..ops.replay import new_scope

    scope = args.scope or new_scope(datetime.now(UTC))
    if args.scope is not None and (not args.scope.strip() or "/" in args.scope):
        return _usage("--scope: a non-empty name without '/'")
    rules = load_rules(args.config)
    if rules is None:
        return 1
    if args.from_topic:
        if _selects_records(args) or args.all_rules:
            return _usage(
                "--from-topic re-drives dead letters: --rule, --status, --since,"
                " --until, --event, --execution and --all-rules select ledger records"
                " and do not apply"
            )
        return _from_topic(args, rules, scope)
    return _from_ledger(args, rules, scope)


def _selects_records(args: argparse.Namespace) -> bool:
    return any((args.rule, args.status, args.since, args.until, args.event, args.execution))


# -- ledger records ---------------------------------------------------------------------------


def _from_ledger(args: argparse.Namespace, rules, scope: str) -> int:
    from ..ledger.base import FINISHED, Status
    from ..ops.replay import compare, select

    try:
        filters = record_filters(args)
    except ValueError as exc:
        return _usage(str(exc))
    # Claimed and released records are still being retried by their sender: only when named.
    filters["status"] = filters["status"] or [s for s in Status if s in FINISHED]
    if not args.dry_run and not _selects_records(args):
        return _usage(
            "say what to replay: --rule, --status, --since, --until, --event or"
            " --execution (try --dry-run first)"
        )
    ledger = open_ledger(args)
    if ledger is None:
        return 2
    try:
        try:
            records = select(ledger.list(**filters))
        except Exception as exc:  # Firestore unreachable, a locked SQLite file
            print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
            return 2
        if args.dry_run:
            return _print_comparisons(compare(rules, records, all_rules=args.all_rules), args)
        return _run_replay(args, rules, ledger, records, scope)
    finally:
        close_ledger(ledger)


def _print_comparisons(comparisons, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([c.as_dict() for c in comparisons], indent=2, default=str))
        return 0
    if not comparisons:
        print("no recorded events to replay")
        return 0
    for c in comparisons:
        status = f" ({c.record.status.value})" if c.record is not None else ""
        print(f"{c.mark} {c.rule}  {c.event_id or '-'}{status}  {_describe(c)}")
        for line in c.diff():
            print("      " + line)
    counts = Counter(c.change for c in comparisons)
    would = sum(n for change, n in counts.items() if change.would_run)
    print(
        f"dry run: {would} would run ("
        + ", ".join(f"{n} {change.value}" for change, n in sorted(counts.items()))
        + ")"
    )
    return 0


def _describe(c) -> str:
    from ..ops.replay import Change

    if c.change is Change.SAME:
        return f"would run {c.now['job'].rsplit('/', 1)[-1]} with the same request"
    if c.change is Change.CHANGED:
        return f"would run {c.now['job'].rsplit('/', 1)[-1]}: {c.reason}"
    if c.change is Change.ADDED:
        return f"would also run {c.now['job'].rsplit('/', 1)[-1]} (no record for this event)"
    if c.change is Change.UNMATCHED:
        return f"would not run: no longer matches: {c.reason}"
    if c.change is Change.REMOVED:
        return "would not run: the rule is gone"
    if c.change is Change.FAILS:
        return f"would be rejected: {c.reason}"
    return f"cannot replay: {c.reason}"


def _run_replay(args: argparse.Namespace, rules, ledger, records, scope: str) -> int:
    from ..dispatch import Dispatcher
    from ..ops.replay import replay

    runner = function_runner()
    if runner is None:
        return 2
    dispatcher = Dispatcher(rules, ledger, runner, **_flow_options(rules, ledger))
    if not args.json:
        print(
            f"replaying {len(records)} record{'s' if len(records) != 1 else ''} under scope"
            f" {scope} (run again with --scope {scope} to resume: nothing runs twice)"
        )
    results = []
    tally: Counter[str] = Counter()
    # One line per result already shows the way without --json; with it, stdout is the JSON.
    progress = Progress("replay", len(records)) if args.json else None
    for result in replay(dispatcher, records, scope=scope, all_rules=args.all_rules):
        if progress is not None:
            progress.step()
        results.append(result)
        if result.skipped is not None:
            tally["skipped"] += 1
        for outcome in result.outcomes:
            tally[outcome.outcome.value] += 1
        if not args.json:
            _print_replayed(result)
    if progress is not None:
        progress.close()
    if args.json:
        print(
            json.dumps(
                {"scope": scope, "results": [r.as_dict() for r in results], "totals": dict(tally)},
                indent=2,
                default=str,
            )
        )
    else:
        print(
            "done: "
            + ", ".join(
                f"{tally[name]} {name}"
                for name in ("launched", "duplicate", "rejected", "retry", "skipped")
            )
        )
    return 1 if tally["rejected"] or tally["retry"] else 0


def _flow_options(rules, ledger) -> dict:
    """Rules with `limits:` / `batch:` replay through the deployment's queues when the
    environment names them (the function's TRIGGERS_TASK* settings); otherwise they answer
    retry, with a reason that says so."""
    from ..function.settings import Settings
    from ..function.tasks import flow_dispatcher_options

    return flow_dispatcher_options(Settings(), rules, ledger)


def _print_replayed(result) -> None:
    head = f"  {result.record.rule}  {result.event_id or '-'}"
    if result.skipped is not None:
        print(f"{head}  skipped: {result.skipped}")
        return
    for outcome in result.outcomes:
        detail = outcome.execution.rsplit("/", 1)[-1] if outcome.execution else outcome.reason
        rule = "" if outcome.rule == result.record.rule else f" -> {outcome.rule}"
        print(f"{head}{rule}  {outcome.outcome.value}" + (f"  {detail}" if detail else ""))


# -- dead letters ---------------------------------------------------------------------------


def _from_topic(args: argparse.Namespace, rules, scope: str) -> int:
    from ..dispatch import Dispatcher
    from ..ops.redrive import PubSubLetters, redrive, resolve_subscription

    try:
        subscription = resolve_subscription(args.from_topic)
        letters = PubSubLetters(subscription)
    except ValueError as exc:
        return _usage(str(exc))
    except Exception as exc:  # Pub/Sub unreachable, permission denied, no credentials
        print(f"error: cannot read {args.from_topic}: {exc}", file=sys.stderr)
        return 2
    runner = _DryRun() if args.dry_run else function_runner()
    if args.dry_run:  # nothing is dispatched: a throwaway ledger that nothing reads
        from ..ledger import Ledger
        from ..ledger.memory import MemoryBackend

        ledger: Ledger | None = Ledger(MemoryBackend())
    else:
        ledger = open_ledger(args)
    if runner is None or ledger is None:
        return 2
    options = {} if args.dry_run else _flow_options(rules, ledger)
    dispatcher = Dispatcher(rules, ledger, runner, **options)
    if not args.json:
        verb = "checking" if args.dry_run else f"re-driving (scope {scope})"
        print(f"{verb} dead letters from {subscription}")
    results = []
    progress = Progress("dead letters") if args.json else None
    try:
        for result in redrive(
            letters, dispatcher, scope=scope, max_messages=args.max_messages, dry_run=args.dry_run
        ):
            results.append(result)
            if progress is not None:
                progress.step()
            if not args.json:
                _print_redriven(result)
    except Exception as exc:  # the subscription went away, Pub/Sub failed mid-pass
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
        letters.close()
        close_ledger(ledger)
    resolved = sum(r.resolved for r in results)
    if args.json:
        print(
            json.dumps(
                {
                    "subscription": subscription,
                    "scope": scope,
                    "dry_run": args.dry_run,
                    "results": [r.as_dict() for r in results],
                },
                indent=2,
                default=str,
            )
        )
    else:
        left = len(results) - resolved
        print(
            f"done: {len(results)} dead letter{'s' if len(results) != 1 else ''}, {resolved}"
            f" re-driven and acknowledged, {left} left in the subscription"
        )
    return 0 if args.dry_run or resolved == len(results) else 1


def _print_redriven(result) -> None:
    what = f"rule {result.rule}" if result.rule else "request"
    print(f"  {result.message_id}  {what}  event {result.event_id or '-'}  (was: {result.reason})")
    for plan in result.plans:
        if plan["would"] == "run":
            print(f"      {plan['rule']}: would run {plan['job'].rsplit('/', 1)[-1]}")
        else:
            print(f"      {plan['rule']}: would be rejected: {plan['error']}")
    for outcome in result.outcomes:
        detail = outcome.execution.rsplit("/", 1)[-1] if outcome.execution else outcome.reason
        print(f"      {outcome.rule}: {outcome.outcome.value}" + (f"  {detail}" if detail else ""))
    if result.resolved:
        print("      acknowledged")
    elif result.note and result.note != "dry run":
        print(f"      left in the subscription: {result.note}")


# -- shared -----------------------------------------------------------------------------------


class _DryRun:
    """For a dry-run re-drive: nothing is dispatched, so nothing may be run or recorded."""

    def run(self, request, *, validate_only: bool = False) -> Any:  # pragma: no cover
        raise AssertionError("a dry run runs nothing")

    def find(self, request, *, since) -> Any:  # pragma: no cover
        raise AssertionError("a dry run runs nothing")

    def running(self, job: str) -> Any:  # pragma: no cover
        raise AssertionError("a dry run runs nothing")

    def cancel(self, execution: str) -> Any:  # pragma: no cover
        raise AssertionError("a dry run runs nothing")

    def execution_status(self, name: str) -> Any:  # pragma: no cover
        raise AssertionError("a dry run runs nothing")


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
