"""The `triggers` command line.

    triggers validate [PATH]                     load and check rules; exit 1 with every problem
    triggers plan [--config PATH] EVENT_FILE...  each rule's verdict and the exact jobs.run body
    triggers test-pattern PATTERN_FILE EVENT_FILE
    triggers schema                              JSON Schema of the rules file
    triggers emulator --jobs FILE --port N       the local Cloud Run Jobs emulator
    triggers serve [--config PATH] [--port N]    the function, SQLite ledger, emulator and a
                                                 Scheduler clock, locally (docs/local.md)
    triggers send pubsub|storage|scheduler ...   post an event of that kind to a running server
    triggers send --file EVENT_FILE              post a request file (config/events)
    triggers runs [--rule R] [--since 1h]        the ledger's recorded outcomes, newest first
    triggers reconcile [--since 1d] [--json]     record the outcome of finished executions
    triggers demo                                serve the samples, send every sample event, show
                                                 what ran; exit 1 if anything misbehaved

Exit codes: 0 success, 1 the answer is "no" (invalid rules, no match, a send answered with a
retry or an error, a demo that misbehaved), 2 usage or input errors, or no server to send to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

DEFAULT_RULES = "config/rules.yaml"
API_ROOT = "https://run.googleapis.com/v2"
SQLITE_DEFAULT = ".triggers/ledger.sqlite3"
DEFAULT_URL = "http://127.0.0.1:8080/"
SUPPRESS = argparse.SUPPRESS


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        # The emulator owns its options (argparse cannot pass `--help` through a subparser).
        from .emulator.server import main as emulator_main

        return emulator_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # `triggers plan ... | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triggers", description="Turn cloud events into Cloud Run job runs."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rules_default = os.environ.get("TRIGGERS_RULES", DEFAULT_RULES)

    p = sub.add_parser("validate", help="load and check a rules file or directory")
    p.add_argument("path", nargs="?", default=rules_default, help=f"default: {rules_default}")
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.set_defaults(run=_validate)

    p = sub.add_parser("plan", help="show what each rule would do with each event")
    p.add_argument("--config", default=rules_default, help=f"rules file or dir ({rules_default})")
    p.add_argument("events", nargs="+", metavar="EVENT_FILE", help="event files (config/events)")
    p.add_argument("--json", action="store_true", help="print one JSON document per event")
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

    # Listed for `triggers --help`; main() hands `triggers emulator ...` to the emulator itself.
    sub.add_parser("emulator", help="run the local Cloud Run Jobs emulator (--help for options)")

    _add_serve(sub, rules_default)
    _add_send(sub)
    _add_runs(sub)
    _add_reconcile(sub)
    _add_demo(sub, rules_default)
    return parser


def _add_serve(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "serve",
        help="run the function locally: ledger, Cloud Run emulator, Scheduler clock",
        description="Serve the function (functions-framework, target handle_http) with the SQLite"
        " ledger, the Cloud Run Jobs emulator running the jobs file's jobs as local processes, and"
        " a clock that fires every rule's `schedule` like Cloud Scheduler. See docs/local.md.",
    )
    p.add_argument("--config", default=rules_default, help=f"rules file or dir ({rules_default})")
    p.add_argument("--jobs", default="config/jobs.yaml", help="jobs file (%(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    p.add_argument(
        "--port", type=int, default=8080, help="function port, 0 = any free (%(default)s)"
    )
    p.add_argument(
        "--emulator-port", type=int, default=0, help="Cloud Run emulator port (default: any free)"
    )
    p.add_argument(
        "--ledger", choices=("sqlite", "memory"), default="sqlite", help="ledger (%(default)s)"
    )
    p.add_argument(
        "--sqlite-path",
        default=os.environ.get("TRIGGERS_SQLITE_PATH", SQLITE_DEFAULT),
        help="SQLite ledger file (%(default)s)",
    )
    p.add_argument("--log-dir", default=".triggers/logs", help="task logs (%(default)s)")
    p.add_argument("--no-clock", action="store_true", help="do not fire the rules' schedules")
    p.add_argument(
        "--dry-run", action="store_true", help="plan and record runs, launch nothing (no emulator)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log every emulator request")
    # For tests: the clock's time at start, so a schedule fires without waiting for it.
    p.add_argument("--clock-start", help=argparse.SUPPRESS)
    p.set_defaults(run=_serve)


def _add_send(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=SUPPRESS, help=f"the function's URL ({DEFAULT_URL})")
    common.add_argument(
        "--json", action="store_true", default=SUPPRESS, help="print the answer as JSON"
    )
    common.add_argument("--timeout", type=float, default=SUPPRESS, help="seconds (30)")

    p = sub.add_parser(
        "send",
        help="post an event to a running function (triggers serve)",
        description="Post a well-formed event to a running function and print its answer: the"
        " HTTP status and each rule's outcome. Exit 0 on 2xx, 1 on any other answer (a retry),"
        " 2 when nothing answers.",
        parents=[common],
    )
    p.add_argument(
        "--file", action="append", metavar="EVENT_FILE", help="post a request file (repeatable)"
    )
    # Not set_defaults: parents share their Action objects, so a default set here would reach
    # the kinds' copies and override `triggers send --url X pubsub`. _send() fills them in.
    p.set_defaults(run=_send)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    project = os.environ.get("TRIGGERS_PROJECT", "demo-project")

    k = kinds.add_parser(
        "pubsub",
        parents=[common],
        help="a Pub/Sub message",
        description="A message published to a topic. Without --data and --attribute: the sample"
        " order (kind=order, status paid), which the sample rule paid-orders runs.",
    )
    k.add_argument(
        "--topic", default="orders", help="short name or projects/P/topics/T (%(default)s)"
    )
    k.add_argument("--data", help="the payload: JSON or any text")
    k.add_argument("--attribute", action="append", metavar="K=V", help="an attribute (repeatable)")
    k.add_argument(
        "--form",
        choices=("cloudevent", "push"),
        default="cloudevent",
        help="Eventarc CloudEvent, or raw push (which does not name its topic) (%(default)s)",
    )
    k.add_argument("--subscription", help="projects/P/subscriptions/S (default: derived)")
    k.add_argument("--id", help="message id (default: a new one; repeat one to see dedup)")
    k.add_argument("--project", default=project, help="for a short topic (%(default)s)")

    k = kinds.add_parser(
        "storage",
        parents=[common],
        help="a Cloud Storage object event",
        description="A change to an object. The generation defaults to now in microseconds (as"
        " Cloud Storage does), so each send is a new object version and a new run.",
    )
    k.add_argument("--bucket", default="raw-data", help="(%(default)s)")
    k.add_argument("--name", default="incoming/example.csv", help="object name (%(default)s)")
    k.add_argument("--generation", type=int, help="object generation (default: now, in µs)")
    k.add_argument("--size", type=int, default=1024, help="bytes (%(default)s)")
    k.add_argument("--content-type", help="(default: from the name's extension)")
    k.add_argument(
        "--metadata", action="append", metavar="K=V", help="custom metadata (repeatable)"
    )
    k.add_argument(
        "--event",
        choices=("finalized", "deleted", "archived", "metadataUpdated"),
        default="finalized",
        help="(%(default)s)",
    )
    k.add_argument(
        "--form",
        choices=("cloudevent", "notification"),
        default="cloudevent",
        help="Eventarc CloudEvent, or a Pub/Sub notification via raw push (%(default)s)",
    )
    k.add_argument("--project", default=project, help="for the notification's subscription")

    k = kinds.add_parser(
        "scheduler",
        parents=[common],
        help="a Cloud Scheduler tick (HTTP target)",
        description="What a Scheduler job with an HTTP target sends when it fires.",
    )
    k.add_argument("--job", default="nightly-report", help="Scheduler job name (%(default)s)")
    k.add_argument("--schedule-time", help="ISO time of the tick (default: now)")
    k.add_argument("--body", help="the job's body (JSON or text; default none)")


def _add_ledger_options(p) -> None:
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


def _add_runs(sub) -> None:
    p = sub.add_parser(
        "runs",
        help="the outcomes recorded in the ledger, newest first",
        description="Recorded outcomes from the ledger the function uses (TRIGGERS_LEDGER,"
        " TRIGGERS_SQLITE_PATH, TRIGGERS_FIRESTORE_*), newest first. Times are UTC.",
    )
    _add_ledger_options(p)
    p.add_argument("--rule", help="only this rule's records")
    p.add_argument(
        "--status",
        action="append",
        default=[],
        help="only these (launched,rejected,...; repeatable)",
    )
    p.add_argument("--since", help="only newer ones: 30m, 1h, 2d, 1w or an ISO time")
    p.add_argument("--limit", type=int, default=50, help="at most this many (%(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON array")
    p.set_defaults(run=_runs)


def _add_reconcile(sub) -> None:
    p = sub.add_parser(
        "reconcile",
        help="move launched records to succeeded/failed/cancelled from their executions",
        description="Ask Cloud Run (TRIGGERS_CLOUD_RUN_ENDPOINT for the emulator) about every"
        " launched record of the ledger the function uses, and record the outcome of those whose"
        " execution is done. Exit 1 if any record could not be reconciled.",
    )
    _add_ledger_options(p)
    p.add_argument("--since", help="only records created since: 30m, 1h, 2d, 1w or an ISO time")
    p.add_argument("--limit", type=int, default=500, help="at most this many (%(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=_reconcile)


def _add_demo(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "demo",
        help="serve the samples, send every sample event, show what ran",
        description="Start the local stack on free ports with a ledger in a temporary directory,"
        " post every sample event and one tick per Scheduler job, wait for the executions, print"
        " each outcome and the run history, and stop. Exit 0 when everything behaved.",
    )
    p.add_argument("--config", default=rules_default, help=f"rules ({rules_default})")
    p.add_argument("--jobs", default="config/jobs.yaml", help="jobs file (%(default)s)")
    p.add_argument("--events", default="config/events", help="sample events dir (%(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the ledger and task logs")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for executions")
    p.set_defaults(run=_demo)


# -- validate ---------------------------------------------------------------------------------


def _load(path: str):
    """Rules, or None after printing every problem."""
    from .errors import RulesError
    from .rules import load

    try:
        return load(path)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    from .errors import RulesError
    from .rules import load

    try:
        rules = load(args.path)
    except RulesError as exc:
        if args.json:
            print(json.dumps({"valid": False, "problems": [_problem(p) for p in exc.problems]}, indent=2))
        else:
            print(str(exc), file=sys.stderr)
        return 1
    kinds = Counter(on.split(".")[0] for rule in rules for on in rule.spec.on)
    if args.json:
        print(json.dumps({"valid": True, "files": list(rules.files), "rules": len(rules)}, indent=2))
    else:
        summary = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        print(f"{args.path}: {len(rules)} rule{'s' if len(rules) != 1 else ''} OK ({summary})")
    return 0


def _problem(problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "rule": problem.rule, "message": problem.message}


# -- plan -------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    from .errors import DecodeError
    from .events import decode, parse_event_file

    rules = _load(args.config)
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
        if args.json:
            print(json.dumps(_plan_json(name, event, verdicts), indent=2))
        else:
            _print_plan(name, event, verdicts)
    return status


def _print_rejected(name: str, exc, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": name, "rejected": {"reason": exc.reason, "message": exc.message}}))
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
        if v.error:
            entry["error"] = str(v.error)
        out.append(entry)
    return {
        "file": name,
        "event": {"form": event.form, "kind": event.kind, "document": event.document},
        "verdicts": out,
    }


def _print_plan(name: str, event, verdicts) -> None:
    print(name)
    print(f"  event  {event.type}  ({event.form})")
    print(f"         id={event.id}  source={event.source}")
    for v in verdicts:
        if not v.matched:
            print(f"  - {v.rule.name}: {v.reason}")
        elif v.error:
            print(f"  ! {v.rule.name}: matched, but cannot plan the run: {v.error}")
        else:
            request = v.request
            print(f"  + {v.rule.name}: run {request.job}")
            print(f"      dedup key: {request.dedup_key}")
            print(f"      POST {API_ROOT}/{request.job}:run")
            body = json.dumps(request.run_job_body(), indent=2)
            print("      " + body.replace("\n", "\n      "))
    print()


# -- test-pattern ---------------------------------------------------------------------------


def _test_pattern(args: argparse.Namespace) -> int:
    from .errors import PatternError
    from .patterns import compile as compile_pattern

    try:
        pattern_source = _read_structured(args.pattern)
        if args.decode:
            from .events import decode, parse_event_file

            headers, body = parse_event_file(Path(args.event).read_text(encoding="utf-8"), args.event)
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
        from .rules.yamlsource import YAMLProblem, parse, plain

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
    from .rules.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


# -- serve, send, runs, demo --------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .serve import ServeOptions, serve

    clock_start = None
    if args.clock_start:
        from .send import parse_time

        try:
            clock_start = parse_time(args.clock_start)
        except ValueError as exc:
            print(f"error: --clock-start: {exc}", file=sys.stderr)
            return 2
    options = ServeOptions(
        rules=args.config,
        jobs=args.jobs,
        host=args.host,
        port=args.port,
        emulator_port=args.emulator_port,
        ledger=args.ledger,
        sqlite_path=args.sqlite_path,
        log_dir=args.log_dir,
        clock=not args.no_clock,
        dry_run=args.dry_run,
        clock_start=clock_start,
        verbose=args.verbose,
    )
    return serve(options)


def _send(args: argparse.Namespace) -> int:
    from . import send

    args.url = getattr(args, "url", DEFAULT_URL)
    args.json = getattr(args, "json", False)
    args.timeout = getattr(args, "timeout", 30.0)
    try:
        requests = _send_requests(args)
    except (OSError, ValueError) as exc:  # unreadable or malformed file, bad K=V, bad time
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not requests:
        print("error: say what to send: triggers send pubsub|storage|scheduler ... or"
              " --file EVENT_FILE (see triggers send --help)", file=sys.stderr)
        return 2
    status = 0
    answers = []
    for request in requests:
        try:
            answer = send.post(args.url, request, timeout=args.timeout)
        except send.Unreachable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            answers.append(
                {"request": request.summary, "status": answer.status, "answer": answer.body}
            )
        else:
            print(request.summary)
            for line in send.describe(answer):
                print("  " + line)
        status = max(status, 0 if answer.ok else 1)
    if args.json:
        print(json.dumps(answers[0] if len(answers) == 1 else answers, indent=2))
    return status


def _send_requests(args: argparse.Namespace) -> list:
    from datetime import datetime, timezone

    from . import send

    requests = [send.event_file(path) for path in args.file or ()]
    if args.kind == "pubsub":
        sample = args.data is None and not args.attribute
        data = send.SAMPLE_ORDER if sample else (args.data or "")
        attributes = {"kind": "order"} if sample else _pairs(args.attribute, "--attribute")
        requests.append(
            send.pubsub_message(
                args.topic, data, attributes, form=args.form, project=args.project,
                subscription=args.subscription, message_id=args.id,
            )
        )
    elif args.kind == "storage":
        now = datetime.now(timezone.utc)
        generation = args.generation or int(now.timestamp() * 1_000_000)
        requests.append(
            send.storage_object(
                args.bucket, args.name, generation=generation, size=args.size, event=args.event,
                form=args.form, content_type=args.content_type,
                metadata=_pairs(args.metadata, "--metadata"), project=args.project, time=now,
            )
        )
    elif args.kind == "scheduler":
        at = send.parse_time(args.schedule_time) if args.schedule_time else send.now_utc()
        requests.append(send.scheduler_tick(args.job, at.replace(microsecond=0), args.body))
    return requests


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or ():
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {value!r}: use KEY=VALUE")
        pairs[key] = item
    return pairs


def _runs(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .runs import as_json, parse_since, parse_statuses, table

    try:
        statuses = parse_statuses(args.status) or None
        since = parse_since(args.since, datetime.now(timezone.utc)) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ledger = _open_ledger(args)
    if ledger is None:
        return 2
    try:
        records = ledger.list(rule=args.rule, status=statuses, since=since, limit=args.limit)
    except Exception as exc:  # Firestore unreachable, a locked or corrupt SQLite file
        print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    finally:
        close = getattr(ledger.backend, "close", None)
        if close is not None:
            close()
    if args.json:
        print(json.dumps([as_json(r) for r in records], indent=2, default=str))
    else:
        import shutil

        width = shutil.get_terminal_size((100, 24)).columns
        print("\n".join(table(records, width=width)))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .reconcile import reconcile
    from .runners.cloudrun import CloudRunRunner
    from .runs import parse_since
    from .settings import Settings

    try:
        since = parse_since(args.since, datetime.now(timezone.utc)) if args.since else None
        endpoint = Settings().cloud_run_endpoint
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ledger = _open_ledger(args)
    if ledger is None:
        return 2
    try:
        report = reconcile(ledger, CloudRunRunner(endpoint=endpoint), since=since,
                           limit=args.limit)
    except Exception as exc:  # the ledger could not be listed
        print(f"error: cannot read the ledger: {exc}", file=sys.stderr)
        return 2
    finally:
        close = getattr(ledger.backend, "close", None)
        if close is not None:
            close()
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


def _open_ledger(args: argparse.Namespace):
    """The ledger the function would use, with --ledger/--sqlite-path over TRIGGERS_*."""
    from .app import build_ledger
    from .settings import Settings

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
        print("error: a memory ledger lives and dies inside its server: use --ledger sqlite",
              file=sys.stderr)
        return None
    if settings.ledger == "sqlite" and not Path(settings.sqlite_path).exists():
        # Opening would create an empty ledger and answer "no runs": say where we looked.
        print(f"error: no ledger at {settings.sqlite_path} (start one with `triggers serve`, or"
              " pass --sqlite-path)", file=sys.stderr)
        return None
    return build_ledger(settings)


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(
        rules=args.config, jobs=args.jobs, events=args.events, keep=args.keep, timeout=args.timeout
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
