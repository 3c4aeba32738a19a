"""The local stack: the real function server, the Cloud Run emulator, and a Scheduler clock.

    with LocalServer(ServeOptions(rules="config/rules.yaml", port=0)) as server:
        send.post(server.url, send.pubsub_message("orders", b"{}"))

`LocalServer` wires up what a deployment has, on one machine:

* the function: functions-framework's own app for `triggers/main.py` (target `handle_http`, the
  entry point that accepts every form), served by werkzeug on `host:port`. It is configured the
  way a deployment is, through `TRIGGERS_*` variables, and gets its `App` installed up front so a
  broken rules file fails here rather than at the first request;
* the ledger: SQLite in `.triggers/` (or in memory), shared with `triggers runs`;
* Cloud Run: the embedded emulator runs each job of the jobs file as local processes, and the
  function reaches it through the production runner (`TRIGGERS_CLOUD_RUN_ENDPOINT`);
* Cloud Scheduler: `clock.SchedulerClock` fires every rule's `schedule` on time by posting the
  request a Scheduler job's HTTP target sends (`send.scheduler_tick`) to the function;
* the console (`console/`, unless `console=False`): a web page at `/_console/` on the same port
  over the rules, the requests the function received with every rule's verdict (recorded by
  `console.RecordingApp` in a bounded ring), the runs and their executions' task logs.

`serve()` is `triggers serve`; `demo.demo()` drives the same stack once with the sample events.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ..rules.schedule import Schedule, rfc3339
from . import send
from .clock import ScheduledJob, SchedulerClock, offset_clock, scheduled_jobs, utcnow

log = logging.getLogger("triggers.local.clock")  # what serve logs is the clock firing

MAIN_SOURCE = Path(__file__).resolve().parent.parent / "main.py"
TARGET = "handle_http"
# Names of the variables this stack sets for the function, restored when it stops.
_ENV_NAMES = (
    "TRIGGERS_RULES",
    "TRIGGERS_LEDGER",
    "TRIGGERS_SQLITE_PATH",
    "TRIGGERS_RUNNER",
    "TRIGGERS_CLOUD_RUN_ENDPOINT",
    "TRIGGERS_PELOTON_ENDPOINT",
    "TRIGGERS_SAE_ENDPOINT",
    "TRIGGERS_CLOUD_RUN_V1_ENDPOINT",
    "TRIGGERS_OIDC_AUDIENCE",
    "TRIGGERS_TASKS_ENDPOINT",
    "TRIGGERS_TASK_TARGET_URL",
)


class ServeError(Exception):
    """The stack cannot start: a bad rules or jobs file, a port in use. The message says which."""


@dataclass(frozen=True)
class ServeOptions:
    rules: str = "config/rules.yaml"
    jobs: str = "config/jobs.yaml"
    secrets: str | None = None  # the emulator's secrets file (name -> value); None: no secret
    host: str = "127.0.0.1"
    port: int = 8080  # 0: any free port
    emulator_port: int = 0
    ledger: str = "sqlite"  # or "memory"
    sqlite_path: str = ".triggers/ledger.sqlite3"
    log_dir: str = ".triggers/logs"
    clock: bool = True
    dry_run: bool = False
    clock_start: datetime | None = None  # the clock's "now" at start (tests); None: real time
    verbose: bool = False  # also log every emulator API request
    reload_interval: float = 1.0  # seconds between looks at the rules files; 0: never reload
    log_level: int = logging.INFO  # of the function's, the emulator's and the clock's lines
    console: bool = True  # serve the web console at /_console/ (`--no-console`: off)
    # Flow control: the emulator's Cloud Tasks (and jobs.run quota) run this many times faster.
    time_scale: float = 1.0
    run_quota: str | None = None  # the Cloud Run emulator's jobs.run quota, e.g. "180/min"


# -- the stack --------------------------------------------------------------------------------


class LocalServer:
    """The function server, the emulator and the clock, started and stopped together."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.rules: Any = None
        self.scheduled: list[ScheduledJob] = []
        self.notes: list[str] = []
        self.emulator: Any = None
        self.app: Any = None
        self.clock: SchedulerClock | None = None
        self.events: Any = None  # console.EventLog: what the function received, for the console
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._modules: list[Any] = []  # where the app is installed
        self._saved_env: dict[str, str | None] = {}
        self._handler: logging.Handler | None = None
        self._watcher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rules_stamp: tuple[tuple[str, int, int], ...] = ()

    # -- facts --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = self.options.host if ":" not in self.options.host else f"[{self.options.host}]"
        return f"http://{host}:{self._httpd.port}/"

    @property
    def console_url(self) -> str | None:
        if not self.options.console:
            return None
        from .console import PREFIX

        return self.url + PREFIX.lstrip("/") + "/"

    @property
    def sqlite_path(self) -> Path | None:
        if self.options.ledger != "sqlite":
            return None
        return Path(self.options.sqlite_path).expanduser().absolute()

    @property
    def log_dir(self) -> Path | None:
        return self.emulator.log_dir if self.emulator is not None else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        opts = self.options
        self._handler = _attach_console_logging(opts.verbose, opts.log_level)
        self.rules = _load_rules(opts.rules)
        self.scheduled, self.notes = scheduled_jobs(self.rules)
        if not opts.dry_run:
            self.emulator = _start_emulator(opts)
        self._set_env()
        self._httpd = self._make_server()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="function-server",
            daemon=True,
        )
        self._thread.start()
        self._start_clock()
        self._rules_stamp = _stamp(opts.rules)
        if opts.reload_interval > 0:
            self._watcher = threading.Thread(target=self._watch, name="rules-watcher", daemon=True)
            self._watcher.start()

    def _start_clock(self) -> None:
        opts = self.options
        now = offset_clock(opts.clock_start) if opts.clock_start else utcnow
        self.clock = SchedulerClock(self.scheduled, self.fire, now=now)
        if opts.clock:
            self.clock.start()

    # -- reloading ------------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(self.options.reload_interval):
            stamp = _stamp(self.options.rules)
            if stamp != self._rules_stamp:
                self._rules_stamp = stamp
                self.reload()

    def reload(self) -> bool:
        """Load the rules again. Valid: the function routes with them from the next request
        on, and the clock follows their schedules. Invalid: the old rules keep serving and the
        problems are logged. True when the new rules are in use."""
        from ..errors import RulesError
        from ..rules import load

        try:
            rules = load(self.options.rules)
        except (RulesError, OSError) as exc:
            log.warning(
                "%s changed but cannot be used; still serving the previous %d rules:\n%s",
                self.options.rules,
                len(self.rules),
                exc,
            )
            return False
        self.rules = rules
        self.app.use_rules(rules)
        try:
            self._ensure_queues(rules)
        except ServeError as exc:
            log.warning("%s", exc)
        scheduled, self.notes = scheduled_jobs(rules)
        if [(j.name, j.schedule.cron) for j in scheduled] != [
            (j.name, j.schedule.cron) for j in self.scheduled
        ]:
            if self.clock is not None:
                self.clock.stop()
            self.scheduled = scheduled
            self._start_clock()
        log.warning("%s reloaded: %d rules", self.options.rules, len(rules))
        return True

    def _set_env(self) -> None:
        opts = self.options
        env = {
            "TRIGGERS_RULES": str(Path(opts.rules).absolute()),
            "TRIGGERS_LEDGER": opts.ledger,
            "TRIGGERS_SQLITE_PATH": str(self.sqlite_path or Path(opts.sqlite_path).absolute()),
            "TRIGGERS_RUNNER": "dry-run" if opts.dry_run else "cloudrun",
            # Nothing local can mint Google OIDC tokens: a deployment's audience must not apply.
            "TRIGGERS_OIDC_AUDIENCE": "",
        }
        if self.emulator is not None:
            env["TRIGGERS_CLOUD_RUN_ENDPOINT"] = self.emulator.url
            # Rules with `limits:` queue their launches on the emulator's Cloud Tasks, which
            # calls this function back (the target is set once the port is bound).
            env["TRIGGERS_TASKS_ENDPOINT"] = self.emulator.url
            env["TRIGGERS_PELOTON_ENDPOINT"] = self.emulator.url  # served on the same port
            env["TRIGGERS_SAE_ENDPOINT"] = self.emulator.url  # system: sae, same emulator
            env["TRIGGERS_CLOUD_RUN_V1_ENDPOINT"] = self.emulator.url  # its v1 routes
        self._saved_env = {name: os.environ.get(name) for name in _ENV_NAMES}
        for name in _ENV_NAMES:
            os.environ.pop(name, None)
        os.environ.update(env)

    def _make_server(self) -> Any:
        # Bind first: the port (0 = any free one) is part of the task target's URL. Here rather
        # than in make_server, which prints and calls sys.exit(1) when the port is taken;
        # werkzeug serves on a duplicate of this socket's descriptor.
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        try:
            listener = socket.create_server((self.options.host, self.options.port), family=family)
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {self.options.host}:{self.options.port}: {exc.strerror or exc}"
                " (another `triggers serve`? pick one with --port, or --port 0 for any free port)"
            ) from None
        with listener:
            port = listener.getsockname()[1]
            if self.emulator is not None:
                os.environ["TRIGGERS_TASK_TARGET_URL"] = _task_target(self.options.host, port)
            return self._serve_on(listener, port)

    def _serve_on(self, listener: socket.socket, port: int) -> Any:
        import functions_framework
        from werkzeug.serving import WSGIRequestHandler, make_server

        from ..function.app import App
        from ..function.settings import Settings

        try:
            settings = Settings()
        except ValueError as exc:  # a TRIGGERS_* variable of the environment is invalid
            raise ServeError(f"invalid TRIGGERS_* setting: {exc}") from None
        if self.options.console:
            from .console import EventLog, RecordingApp

            self.events = EventLog()
            self.app = RecordingApp(settings, rules=self.rules, events=self.events)
        else:
            self.app = App(settings, rules=self.rules)
        try:
            # Opens (and for SQLite creates) the ledger now: a path that cannot be written fails
            # here, and `triggers runs` finds the file before the first event has arrived.
            self.app.ledger.list(limit=1)
        except Exception as exc:
            raise ServeError(f"cannot open the {self.options.ledger} ledger: {exc}") from None
        self._ensure_queues(self.rules)
        # Installed before functions-framework loads triggers/main.py (by path, as module
        # `main`, which shares triggers.main's app): it then uses this one instead of building
        # another, and keeps its Cloud Logging JSON off the console.
        from .. import main as function

        self._modules = [function]
        function.set_app(self.app)
        flask_app = functions_framework.create_app(target=TARGET, source=str(MAIN_SOURCE))
        loaded = sys.modules.get("main")
        if loaded is not None and loaded is not function and hasattr(loaded, "set_app"):
            loaded.set_app(self.app)  # the same call when it shares the app; needed if not
            self._modules.append(loaded)
        wsgi_app: Any = flask_app
        if self.options.console:
            from werkzeug.middleware.dispatcher import DispatcherMiddleware

            from .console import PREFIX, Console

            # Beside the function, not inside it: the deployed function has no such path.
            wsgi_app = DispatcherMiddleware(flask_app, {PREFIX: Console(self, self.events)})

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                pass  # the function logs each decision; an access log line would only repeat it

        return make_server(
            self.options.host,
            port,
            wsgi_app,
            threaded=True,
            request_handler=QuietHandler,
            fd=listener.fileno(),
        )

    def _ensure_queues(self, rules: Any) -> None:
        """Create (or update) on the emulator the Cloud Tasks queues the rules' `limits:`
        name, as Terraform does in a deployment; the function itself never creates queues."""
        queues = {r.flow.limits.queue: r.flow.limits for r in rules if r.flow is not None}
        if not queues or self.emulator is None:
            return
        queue = getattr(self.app.dispatcher.queue, "queue", None)  # the LazyTaskQueue's client
        if queue is None:
            return
        from ..flow.cloudtasks import ensure_queues

        try:
            done = ensure_queues(queue, queues)
            self._serialise_counted(queue, queues)
        except Exception as exc:
            raise ServeError(
                f"cannot create the Cloud Tasks queues on the emulator: {exc}"
            ) from None
        for queue_id, what in done.items():
            if what != "unchanged":
                log.info("queue %s %s on the emulator's Cloud Tasks", queue_id, what)

    @staticmethod
    def _serialise_counted(queue: Any, queues: dict[str, Any]) -> None:
        # One task at a time where executions are counted: count-then-launch cannot race
        # (docs/flow-control.md, "The count-then-launch race").
        for queue_id, limits in queues.items():
            if limits.max_running is not None:
                queue.client.update_queue(
                    request={
                        "queue": {
                            "name": queue.queue_path(queue_id),
                            "rate_limits": {"max_concurrent_dispatches": 1},
                        },
                        "update_mask": {"paths": ["rate_limits.max_concurrent_dispatches"]},
                    }
                )

    def fire(self, job: ScheduledJob, at: datetime) -> send.Answer:
        """Send `job`'s tick for fire time `at` to the function, as its HTTP target would."""
        answer = send.post(self.url, send.scheduler_tick(job.name, at))
        log.info("%s fired for %s -> %s", job.name, rfc3339(at), send.one_line(answer))
        return answer

    def reconcile(self) -> dict[str, Any]:
        """One `triggers reconcile` pass over this stack's ledger with its runner (the console's
        "Reconcile now"): launched runs whose executions ended get their outcome."""
        from ..ops.reconcile import reconcile

        return reconcile(self.app.ledger, self.app.runner).as_dict()

    def stop(self) -> None:
        """Stop the clock, the server and the emulator (killing running tasks); idempotent."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(5)
            self._watcher = None
        if self.clock is not None:
            self.clock.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for module in self._modules:
            module.set_app(None)
        self._modules = []
        if self.app is not None:
            close = getattr(self.app.ledger.backend, "close", None)
            if close is not None:
                close()
        if self.emulator is not None:
            self.emulator.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}
        if self._handler is not None:
            logging.getLogger("triggers").removeHandler(self._handler)
            self._handler = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- what it says at start ---------------------------------------------------------------

    def banner(self, clock_off: str = "clock off (--no-clock); next tick would be") -> list[str]:
        opts = self.options
        kinds = Counter(on.split(".")[0] for rule in self.rules for on in rule.spec.on)
        summary = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        count = len(self.rules)
        ledger = f"sqlite {self.sqlite_path}" if self.sqlite_path else "memory (gone when it stops)"
        lines = [
            f"function   {self.url}  (functions-framework, target {TARGET} in {_rel(MAIN_SOURCE)})",
            f"rules      {opts.rules}: {count} rule{'s' if count != 1 else ''} ({summary})",
            f"ledger     {ledger}",
        ]
        if self.console_url:
            lines.append(
                f"console    {self.console_url}  (rules, events and verdicts, runs and task logs,"
                " try an event)"
            )
        if self.emulator is not None:
            jobs = len(self.emulator.catalog)
            lines.append(
                f"emulator   {self.emulator.url}  (Cloud Run: {jobs} job{'s' if jobs != 1 else ''}"
                f" from {opts.jobs}, each task a local process)"
            )
            lines.append(f"task logs  {_rel(self.emulator.log_dir)}/<execution>/")
            queues = sorted({r.flow.limits.queue for r in self.rules if r.flow is not None})
            if queues:
                lines.append(
                    f"queues     Cloud Tasks on the emulator ({opts.time_scale:g}x time):"
                    f" {', '.join(queues)}"
                )
        else:
            lines.append("runner     dry run: runs are planned and recorded, never launched")
        for job, at in self.clock.upcoming() if self.clock else []:
            schedule = job.schedule
            lines.append(f'scheduler  {job.name}: "{schedule.cron}" ({schedule.describe()})')
            state = "next tick" if opts.clock else clock_off
            lines.append(f"           {state} {_when(at, job.schedule)}")
        lines.extend(f"           {note}" for note in self.notes)
        return lines

    def examples(self) -> list[str]:
        url = "" if self.url == send.DEFAULT_URL else f" --url {self.url}"
        lines = ["Send events from another terminal (`triggers send --help`):"]
        lines.extend(f"  triggers send {command}" for command in send_examples(self.rules, url))
        lines.append(
            f"  triggers send{url} --file EVENT_FILE   (a request file, as in config/events/)"
        )
        if self.sqlite_path:
            default = Path(".triggers/ledger.sqlite3").absolute()
            where = "" if self.sqlite_path == default else f" --sqlite-path {self.sqlite_path}"
            lines.append(f"then see what ran:  triggers runs{where}")
        exports = self.exports()
        if exports:
            lines.append("For `triggers reconcile`, `replay` and `show` in another shell:")
            lines.extend(f"  export {name}={value}" for name, value in exports.items())
        return lines

    def exports(self) -> dict[str, str]:
        """The TRIGGERS_* settings the operator commands need to act on this stack."""
        out = {"TRIGGERS_LEDGER": self.options.ledger}
        if self.sqlite_path:
            out["TRIGGERS_SQLITE_PATH"] = str(self.sqlite_path)
        if self.emulator is not None:
            out["TRIGGERS_CLOUD_RUN_ENDPOINT"] = self.emulator.url
        else:
            out["TRIGGERS_RUNNER"] = "dry-run"
        return out if self.options.ledger == "sqlite" else {}


def send_examples(rules: Any, url: str = "", most: int = 6) -> list[str]:
    """`triggers send` arguments that reach the served rules: one per rule (at most `most`),
    from its kind, its scope (topic, bucket, Scheduler job) and the fields its pattern asks
    for, each naming its rule."""
    import shlex

    out: list[str] = []
    for rule in rules:
        spec = rule.spec
        kinds = {on.split(".")[0] for on in spec.on}
        scope = rule.scope.source.get("data", {}) if rule.scope is not None else {}
        if "pubsub" in kinds:
            if spec.topic:
                where = f" --topic {spec.topic}"
            elif spec.subscription:  # a raw push names its subscription, in full
                where = f" --form push --subscription {scope['subscription'][0]}"
            else:
                where = " --topic orders"
            command = f"pubsub{url}{where}{_message_flags(rule)}"
        elif "storage" in kinds:
            event = next((on.split(".")[1] for on in spec.on if "." in on), "finalized")
            bucket = f" --bucket {spec.bucket}" if spec.bucket else ""
            name = shlex.quote(_object_name(rule))
            command = f"storage{url}{bucket} --event {event} --name {name}"
        elif "scheduler" in kinds:
            command = f"scheduler{url} --job {spec.scheduler_job or rule.name}"
        else:
            continue
        out.append(f"{command}   # {rule.name}")
        if len(out) == most:
            break
    return out


def _message_flags(rule: Any) -> str:
    """`--attribute K=V` and `--data JSON` for a message the rule's pattern accepts (the fields
    `triggers check` would synthesize for it); nothing when it asks for neither."""
    import json
    import shlex

    from ..rules.samples import desired_document

    message = (desired_document(rule).get("data") or {}).get("message") or {}
    attributes: dict[str, Any] = message.get("attributes") or {}
    payload: dict[str, Any] = message.get("json") or {}
    flags = "".join(f" --attribute {shlex.quote(f'{k}={v}')}" for k, v in attributes.items())
    if payload or attributes:
        flags += f" --data {shlex.quote(json.dumps(payload))}"
    return flags


def _object_name(rule: Any) -> str:
    """An object name the rule's pattern accepts, else a sample one."""
    from ..rules.samples import desired_document

    name = (desired_document(rule).get("data") or {}).get("name") if rule.spec.match else None
    return name if isinstance(name, str) and name else "incoming/a.csv"


def _stamp(path: str) -> tuple[tuple[str, int, int], ...]:
    """What changes when a rules file or directory is edited: each file's mtime and size."""
    root = Path(path)
    files = sorted(root.rglob("*.y*ml")) if root.is_dir() else [root]
    stamp = []
    for file in files:
        try:
            info = file.stat()
        except OSError:
            continue
        stamp.append((str(file), info.st_mtime_ns, info.st_size))
    return tuple(stamp)


def _load_rules(path: str) -> Any:
    from ..errors import RulesError
    from ..rules import load

    if not Path(path).exists():
        raise ServeError(f"no rules at {path} (run from the project root, or pass --config PATH)")
    try:
        return load(path)
    except RulesError as exc:
        raise ServeError(str(exc)) from None


def _task_target(host: str, port: int) -> str:
    """The URL the emulator's Cloud Tasks calls back: this function's task path, on loopback
    when it listens on every address."""
    from ..flow.queue import TASK_PATH

    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{TASK_PATH}"


def _start_emulator(opts: ServeOptions) -> Any:
    from ..emulators.cloudrun.jobs import JobsFileError
    from ..emulators.server import EmulatorServer

    if not Path(opts.jobs).exists():
        raise ServeError(
            f"no jobs file at {opts.jobs} (pass --jobs PATH, or --dry-run to launch nothing)"
        )
    try:
        emulator = EmulatorServer(
            opts.jobs,
            opts.host,
            opts.emulator_port,
            opts.log_dir,
            log_to_stderr=False,
            secrets=opts.secrets,
            tasks_time_scale=opts.time_scale,
            run_quota=opts.run_quota,
        )
    except (JobsFileError, ValueError) as exc:
        raise ServeError(str(exc)) from None
    try:
        return emulator.start()
    except OSError as exc:
        raise ServeError(
            f"the emulator cannot listen on {opts.host}:{opts.emulator_port}:"
            f" {exc.strerror or exc} (leave --emulator-port out for a free port)"
        ) from None


# -- console logging --------------------------------------------------------------------------


class _ConsoleHandler(logging.StreamHandler):
    """Short human lines on whatever `sys.stderr` is when a record arrives (pytest swaps it)."""

    LABELS = {"triggers.emulators": "emulator", "triggers.local.clock": "clock"}

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.setFormatter(logging.Formatter("%(asctime)s %(label)-8s %(message)s", "%H:%M:%S"))

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        label = next((v for k, v in self.LABELS.items() if record.name.startswith(k)), "function")
        # The emulator logs every API request (the runner's polling included) from its api
        # module: useful when debugging the emulator, noise otherwise.
        if label == "emulator" and record.module == "api" and not self.verbose:
            return False
        record.label = label
        return super().filter(record)


def _attach_console_logging(verbose: bool, level: int) -> logging.Handler:
    logger = logging.getLogger("triggers")
    handler = _ConsoleHandler(verbose)
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.level or level))
    logger.propagate = False  # the root logger would print them a second time
    return handler


def _rel(path: Path | str) -> str:
    """`path` relative to the working directory when it is under it (shorter to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _when(at: datetime, schedule: Schedule) -> str:
    """`2026-11-22 02:00 CET (01:00:00Z)`; just the UTC time for a UTC schedule."""
    wall = at.astimezone(schedule.zone)
    if wall.utcoffset() == timedelta(0) and schedule.zone.key.endswith("UTC"):
        return rfc3339(at)
    return f"{wall:%Y-%m-%d %H:%M %Z} ({rfc3339(at)})"


# -- triggers serve ---------------------------------------------------------------------------


def serve(options: ServeOptions, out: TextIO | None = None) -> int:
    """Run the stack until SIGINT or SIGTERM. 0 after a clean stop, 2 if it cannot start."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = LocalServer(options)
    try:
        try:
            server.start()
        except ServeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        say("triggers serve: the function, its ledger, Cloud Run and Cloud Scheduler, locally")
        for line in server.banner():
            say("  " + line)
        say()
        for line in server.examples():
            say(line)
        say()
        say(f"ready: listening on {server.url} (Ctrl-C to stop)")
        done.wait()
        # A second Ctrl-C while stopping interrupts the clean stop.
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        records = server.emulator.store.records() if server.emulator else []
        running = sum(1 for record in records if not record.done)
        say(f"stopping{f' (killing {running} running task(s))' if running else ''}...")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    say("stopped")
    return 0
