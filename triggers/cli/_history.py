"""runs, show, reconcile: what the ledger recorded, and how the executions ended."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import SQLITE_DEFAULT, Progress, use_colour

if TYPE_CHECKING:
    from ..ledger import Ledger


def add_ledger_options(p) -> None:
    """Which ledger to read: the one the function uses, unless told otherwise."""
    p.add_argument(
        "--ledger",
        choices=("sqlite", "firestore"),
        default=None,
        help="default: $TRIGGERS_LEDGER, else sqlite",
    )
    p.add_argument(
        "--sqlite-path", default=None, help=f"default: $TRIGGERS_SQLITE_PATH, else {SQLITE_DEFAULT}"
    )


def add_runs(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="the outcomes recorded in the ledger, newest first",
        description="Recorded outcomes from the ledger the function uses (TRIGGERS_LEDGER,"
        " TRIGGERS_SQLITE_PATH, TRIGGERS_FIRESTORE_*), newest first. Times are UTC.",
    )
    add_ledger_options(p)
    add_record_filters(p, status_help="launched,rejected,...; repeatable", limit=50)
    p.add_argument(
        "--keys", action="store_true", help="begin each line with its key (for `triggers show`)"
    )
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.add_argument(
        "--batches",
        action="store_true",
        help="list batches (batched rules: members, status, execution) instead of records",
    )
    p.set_defaults(run=_runs)


def add_record_filters(p, *, status_help: str, limit: int) -> None:
    """Which records: --rule, --status, --since, --until, --event, --execution, --limit."""
    p.add_argument("--rule", help="only this rule's records")
    p.add_argument("--status", action="append", default=[], help=f"only these ({status_help})")
    p.add_argument("--since", help="only newer ones: 30m, 1h, 2d, 1w or an ISO time")
    p.add_argument("--until", help="only older ones (same forms as --since)")
    p.add_argument("--event", metavar="ID", help="only the records of the event with this id")
    p.add_argument(
        "--execution",
        metavar="NAME",
        help="only the record of this execution: its full name or its last segment"
        " (csv-loader-ab1cd)",
    )
    p.add_argument("--limit", type=int, default=limit, help="at most this many (%(default)s)")


def record_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The `Ledger.list` filters of `add_record_filters`' options; ValueError names the option
    that is wrong."""
    from datetime import datetime

    from ..ops.history import parse_statuses, parse_window

    since, until = parse_window(args.since, args.until, datetime.now(UTC))
    return {
        "rule": args.rule,
        "status": parse_statuses(args.status) or None,
        "since": since,
        "until": until,
        "event_id": _nonempty("--event", args.event),
        "execution": _nonempty("--execution", args.execution),
        "limit": args.limit,
    }


def add_show(sub) -> None:
    p = sub.add_parser(
        "show",
        help="one ledger record in full: its event and its jobs.run request",
        description="One record of the ledger the function uses (as for `triggers runs`), in"
        " full: status, times, execution and outcome, the event it came from and the exact"
        " jobs.run request. Exit 1 if no record has that key.",
    )
    add_ledger_options(p)
    p.add_argument(
        "key",
        metavar="KEY",
        help="the ledger key (`key` in `runs --json`, `ledger_key` in the function's answers),"
        " or its first 8 or more characters",
    )
    p.add_argument("--json", action="store_true", help="the whole record as JSON")
    p.set_defaults(run=_show)


def add_reconcile(sub) -> None:
    p = sub.add_parser(
        "reconcile",
        help="move launched records to succeeded/failed/cancelled from their executions",
        description="Ask Cloud Run (TRIGGERS_CLOUD_RUN_ENDPOINT for the emulator) about every"
        " launched record of the ledger the function uses, and record the outcome of those whose"
        " execution is done. Exit 1 if any record could not be reconciled.",
    )
    add_ledger_options(p)
    p.add_argument("--since", help="only records created since: 30m, 1h, 2d, 1w or an ISO time")
    p.add_argument("--limit", type=int, default=500, help="at most this many (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_reconcile)


def _runs(args: argparse.Namespace) -> int:
    from ..ops.history import as_json, table

    try:
        filters = record_filters(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ledger = open_ledger(args)
    if ledger is None:
        return 2
    if getattr(args, "batches", False):
        return _runs_of_batches(ledger, args)
    try:
        records = ledger.list(**filters)
    except Exception as exc:  # Firestore unreachable, a locked or corrupt SQLite file
        print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    finally:
        close_ledger(ledger)
    if args.json:
        print(json.dumps([as_json(r) for r in records], indent=2, default=str))
    else:
        import shutil

        width = shutil.get_terminal_size((100, 24)).columns
        colour = use_colour(sys.stdout)
        print("\n".join(table(records, width=width, keys=args.keys, colour=colour)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..ledger.base import AmbiguousKey
    from ..ops.history import detail, record_json

    ledger = open_ledger(args)
    if ledger is None:
        return 2
    try:
        record = ledger.find(args.key)
    except ValueError as exc:  # not a key, or a prefix too short
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AmbiguousKey as exc:
        print(
            f"error: {exc.prefix} is the start of more than one ledger key; give more of it:",
            file=sys.stderr,
        )
        for key in exc.keys:
            print(f"  {key}", file=sys.stderr)
        return 2
    except Exception as exc:  # Firestore unreachable, a locked or corrupt SQLite file
        print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    finally:
        close_ledger(ledger)
    batch = _batch_of(ledger, record, args.key.strip())
    close_ledger(ledger)  # reopened by the batch store's read
    if record is None and batch is None:
        print(
            f"error: no record with key {args.key.strip()} in the ledger ({ledger_place(ledger)})",
            file=sys.stderr,
        )
        return 1
    from ..ops.batch_history import batch_detail, batch_json

    if args.json:
        shown: dict[str, Any] = record_json(record) if record is not None else {}
        if batch is not None:
            shown["batch_detail"] = batch_json(batch)
        print(json.dumps(shown, indent=2, ensure_ascii=False, default=str))
    else:
        lines = detail(record) if record is not None else []
        if batch is not None:
            lines += ([""] if lines else []) + batch_detail(batch)
        print("\n".join(lines))
    return 0


def _batch_of(ledger: Ledger, record: Any, key: str) -> Any:
    """The batch a record belongs to (a member, or a batch's own run), or the batch whose id
    `key` is; None when there is none or the store cannot say (the record is shown anyway)."""
    from ..ledger.batchstore import batch_store_for
    from ..ops.batch_history import batch_of

    wanted = batch_of(record) if record is not None else key
    if not wanted:
        return None
    try:
        return batch_store_for(ledger.backend).get_batch(wanted)
    except Exception:  # an older SQLite file without batches, Firestore unreachable
        return None


def _runs_of_batches(ledger: Ledger, args: argparse.Namespace) -> int:
    from ..ledger.batchstore import batch_store_for
    from ..ops.batch_history import batch_json, batch_table

    try:
        batches = batch_store_for(ledger.backend).list_batches(rule=args.rule, limit=args.limit)
    except Exception as exc:
        print(f"error: cannot read the batches: {exc}", file=sys.stderr)
        return 2
    finally:
        close_ledger(ledger)
    if args.json:
        print(json.dumps([batch_json(b) for b in batches], indent=2, default=str))
    else:
        print("\n".join(batch_table(batches)))
    return 0


def _nonempty(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"{option} needs a value")
    return value.strip()


def ledger_place(ledger) -> str:
    backend = ledger.backend
    path = getattr(backend, "path", None)
    if path is not None:
        return f"sqlite {path}"
    collection = getattr(backend, "collection", None)
    return f"firestore collection {collection}" if collection else repr(backend)


def close_ledger(ledger: Ledger) -> None:
    close = getattr(ledger.backend, "close", None)
    if close is not None:
        close()


def _reconcile(args: argparse.Namespace) -> int:
    from datetime import datetime

    from ..ops.history import parse_since
    from ..ops.reconcile import reconcile

    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner = function_runner()
    if runner is None:
        return 2
    ledger = open_ledger(args)
    if ledger is None:
        return 2
    progress = Progress("reconcile")
    try:
        report = reconcile(ledger, runner, since=since, limit=args.limit, progress=progress.step)
    except Exception as exc:  # the ledger could not be listed
        print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        close_ledger(ledger)
    result = report.as_dict()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"checked {result['checked']}: {result['succeeded']} succeeded, {result['failed']}"
            f" failed ({result['not_found']} not found), {result['cancelled']} cancelled,"
            f" {result['running']} still running, {result['conflicts']} changed meanwhile,"
            f" {result['errors']} errors"
        )
        for detail in result["error_details"]:
            print(f"  {detail['key']} ({detail['execution']}): {detail['error']}")
    return 1 if report.errors else 0


def function_runner():
    """The function's runner (TRIGGERS_RUNNER): Cloud Run, at TRIGGERS_CLOUD_RUN_ENDPOINT for the
    emulator, or the dry-run one, which knows its own fake executions; None after saying why."""
    from ..function.app import build_runner
    from ..function.settings import Settings

    try:
        return build_runner(Settings())
    except ValueError as exc:  # e.g. TRIGGERS_RUNNER=nonsense
        print(f"error: {exc}", file=sys.stderr)
        return None


def open_ledger(args: argparse.Namespace) -> Ledger | None:
    """The ledger the function would use, with --ledger/--sqlite-path over TRIGGERS_*."""
    from ..function.app import build_ledger
    from ..function.settings import Settings

    overrides: dict[str, Any] = {}
    if args.ledger:
        overrides["ledger"] = args.ledger
    if args.sqlite_path:
        overrides["sqlite_path"] = args.sqlite_path
    try:
        settings = Settings(**overrides)
    except ValueError as exc:  # e.g. TRIGGERS_LEDGER=nonsense
        print(f"error: {exc}", file=sys.stderr)
        return None
    if settings.ledger == "memory":
        print(
            "error: a memory ledger lives and dies inside its server: use --ledger sqlite",
            file=sys.stderr,
        )
        return None
    if settings.ledger == "sqlite" and not Path(settings.sqlite_path).exists():
        # Opening would create an empty ledger and answer "no runs": say where we looked.
        print(
            f"error: no ledger at {settings.sqlite_path} (start one with `triggers serve`, or"
            " pass --sqlite-path)",
            file=sys.stderr,
        )
        return None
    return build_ledger(settings)
