"""serve, send, demo: the function on this machine, and events to post to it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC
from pathlib import Path

from ._common import DEFAULT_RULES, DEFAULT_URL, SQLITE_DEFAULT, SUPPRESS, add_rules_option


def add_serve(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "serve",
        help="run the function locally: ledger, Cloud Run emulator, Scheduler clock",
        description="Serve the function (functions-framework, target handle_http) with the SQLite"
        " ledger, the Cloud Run Jobs emulator running the jobs file's jobs as local processes, and"
        " a clock that fires every rule's `schedule` like Cloud Scheduler. See docs/local.md.",
    )
    add_rules_option(p, rules_default)
    p.add_argument("--jobs", default="config/jobs.yaml", help="jobs file (%(default)s)")
    p.add_argument(
        "--secrets",
        default=None,
        metavar="FILE",
        help="YAML/JSON of secret name -> value: the emulator's Secret Manager, for env vars"
        " that reference a secret (default: none)",
    )
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
        "--no-reload",
        action="store_true",
        help="do not reload the rules when their files change (by default an edited, valid"
        " rules file is used from the next event on)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="plan and record runs, launch nothing (no emulator)"
    )
    p.add_argument(
        "--no-console",
        action="store_true",
        help="do not serve the web console (rules, events, runs, try an event) at /_console/",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="run the emulator's Cloud Tasks queues (rates, backoffs) and the jobs.run quota F"
        " times faster than real time (%(default)s)",
    )
    p.add_argument(
        "--run-quota",
        metavar="N/min",
        help="the Cloud Run emulator answers jobs.run 429 RESOURCE_EXHAUSTED past N per minute"
        " per region, like the real quota (e.g. 180/min; default: no quota)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log every emulator request")
    # For tests: the clock's time at start, so a schedule fires without waiting for it.
    p.add_argument("--clock-start", help=argparse.SUPPRESS)
    p.set_defaults(run=_serve)


def add_send(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=SUPPRESS, help=f"the function's URL ({DEFAULT_URL})")
    common.add_argument(
        "--json", action="store_true", default=SUPPRESS, help="print the answer as JSON"
    )
    common.add_argument("--timeout", type=float, default=SUPPRESS, help="seconds (30)")
    common.add_argument(
        "--print",
        action="store_true",
        default=SUPPRESS,
        help="print the request as an event file instead of posting it (for `triggers plan`)",
    )
    common.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=SUPPRESS,
        help="write the request as an event file to FILE instead of posting it",
    )

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
    # The project of short topic and subscription names: the served rules' (see _project).
    project = None

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
    k.add_argument(
        "--project",
        default=project,
        help="for a short topic (default: the served rules' project, $TRIGGERS_RULES or"
        " config/rules.yaml; else $TRIGGERS_PROJECT or demo-project)",
    )

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
    k.add_argument(
        "--project", default=project, help="for the notification's subscription (as pubsub's)"
    )

    k = kinds.add_parser(
        "scheduler",
        parents=[common],
        help="a Cloud Scheduler tick (HTTP target)",
        description="What a Scheduler job with an HTTP target sends when it fires.",
    )
    k.add_argument("--job", default="nightly-report", help="Scheduler job name (%(default)s)")
    k.add_argument("--schedule-time", help="ISO time of the tick (default: now)")
    k.add_argument("--body", help="the job's body (JSON or text; default none)")


def add_demo(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "demo",
        help="serve the samples, send every sample event, show what ran",
        description="Start the local stack on free ports with a ledger in a temporary directory,"
        " post every sample event and one tick per Scheduler job, wait for the executions, print"
        " each outcome and the run history, and stop. Exit 0 when everything behaved.",
    )
    add_rules_option(p, rules_default)
    p.add_argument("--jobs", default="config/jobs.yaml", help="jobs file (%(default)s)")
    p.add_argument("--events", default="config/events", help="sample events dir (%(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the ledger and task logs")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for executions")
    p.add_argument(
        "--all-systems",
        action="store_true",
        help="also the rules and sample events of config/systems/ (Cloud Run v1, SAE, Peloton),"
        " each on its own emulator",
    )
    p.set_defaults(run=_demo)


def _serve(args: argparse.Namespace) -> int:
    from ..local.serve import ServeOptions, serve

    clock_start = None
    if args.clock_start:
        from ..local.send import parse_time

        try:
            clock_start = parse_time(args.clock_start)
        except ValueError as exc:
            print(f"error: --clock-start: {exc}", file=sys.stderr)
            return 2
    options = ServeOptions(
        rules=args.config,
        jobs=args.jobs,
        secrets=args.secrets,
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
        reload_interval=0.0 if args.no_reload else 1.0,
        console=not args.no_console,
        time_scale=args.time_scale,
        run_quota=args.run_quota,
    )
    return serve(options)


def _send(args: argparse.Namespace) -> int:
    from ..local import send

    args.url = getattr(args, "url", DEFAULT_URL)
    args.json = getattr(args, "json", False)
    args.timeout = getattr(args, "timeout", 30.0)
    try:
        requests = _send_requests(args)
    except (OSError, ValueError) as exc:  # unreadable or malformed file, bad K=V, bad time
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not requests:
        print(
            "error: say what to send: triggers send pubsub|storage|scheduler ... or"
            " --file EVENT_FILE (see triggers send --help)",
            file=sys.stderr,
        )
        return 2
    output = getattr(args, "output", None)
    if getattr(args, "print", False) or output:
        return _write_event_files(requests, output)
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


def _project() -> str:
    """The project of the rules `triggers serve` serves by default: what their short topic and
    subscription names mean. Falls back to $TRIGGERS_PROJECT, then demo-project."""
    fallback = os.environ.get("TRIGGERS_PROJECT", "demo-project")
    path = Path(os.environ.get("TRIGGERS_RULES", DEFAULT_RULES))
    if not path.exists():
        return fallback
    from ..errors import RulesError
    from ..rules import load

    try:
        rules = load(path)
    except RulesError:
        return fallback
    projects = {rule.job.split("/")[1] for rule in rules if rule.job.startswith("projects/")}
    return projects.pop() if len(projects) == 1 else fallback


def _write_event_files(requests: list, output: str | None) -> int:
    from ..local import send

    if output and len(requests) > 1:
        print("error: -o writes one event file: send one event at a time", file=sys.stderr)
        return 2
    text = "".join(send.event_file_text(request) for request in requests)
    if not output:
        print(text, end="")
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {output}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output}: {requests[0].summary}", file=sys.stderr)
    return 0


def _send_requests(args: argparse.Namespace) -> list:
    from datetime import datetime

    from ..local import send

    requests = [send.event_file(path) for path in args.file or ()]
    if args.kind == "pubsub":
        sample = args.data is None and not args.attribute
        data = send.SAMPLE_ORDER if sample else (args.data or "")
        attributes = {"kind": "order"} if sample else _pairs(args.attribute, "--attribute")
        requests.append(
            send.pubsub_message(
                args.topic,
                data,
                attributes,
                form=args.form,
                project=args.project or _project(),
                subscription=args.subscription,
                message_id=args.id,
            )
        )
    elif args.kind == "storage":
        now = datetime.now(UTC)
        generation = args.generation or int(now.timestamp() * 1_000_000)
        requests.append(
            send.storage_object(
                args.bucket,
                args.name,
                generation=generation,
                size=args.size,
                event=args.event,
                form=args.form,
                content_type=args.content_type,
                metadata=_pairs(args.metadata, "--metadata"),
                project=args.project or _project(),
                time=now,
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


def _demo(args: argparse.Namespace) -> int:
    from ..local.demo import demo

    if not args.all_systems:
        return demo(
            rules=args.config,
            jobs=args.jobs,
            events=args.events,
            keep=args.keep,
            timeout=args.timeout,
        )
    import shutil
    import tempfile

    # One rules directory: the main rules and one file per job system, loaded together.
    systems = Path(args.config).parent / "systems"
    with tempfile.TemporaryDirectory(prefix="triggers-all-systems-") as workdir:
        rules = Path(workdir) / "rules"
        rules.mkdir()
        shutil.copy(args.config, rules / "00-rules.yaml")
        for path in sorted(systems.glob("*.yaml")):
            shutil.copy(path, rules / path.name)
        return demo(
            rules=str(rules),
            jobs=args.jobs,
            events=args.events,
            extra_events=sorted(systems.glob("*.json")),
            keep=args.keep,
            timeout=args.timeout,
        )
