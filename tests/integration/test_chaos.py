"""Chaos: exactly once under real faults, through the served function (issue 11).

    the test's senders (like Pub/Sub push: redeliver until a 2xx) --HTTP--> the function
        (functions-framework, a real process; SIGKILLed and restarted in one scenario)
    the function --Firestore ledger--> a TCP proxy (cut in one scenario) --> Firestore emulator
                 --jobs.run, REST--> the Cloud Run emulator (in this process, injecting faults)

Every scenario counts the executions on the Cloud Run emulator by their TRIGGERS_RUN_KEY and
asserts: executions == distinct (rule, key), every event acknowledged (nothing lost), and no
answer but 200 or 503 (no 500). Each prints its figures: sent (requests), acked (events),
retried (503 answers), errors (connections lost or refused), executions, distinct keys. All
waits poll with a deadline; counts and durations are bounded (the file takes about two
minutes on two cores); everything listens on 127.0.0.1.

The settings are scaled down so that the windows are seconds, not minutes: a 1 s Cloud Run
timeout, a 4 s ambiguous margin (so an ambiguous attempt holds its claim 5 s), a 10 s lease,
20 executions per ListExecutions page.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import make_firestore_client
from tests.integration.conftest import FunctionServer, eventually
from tests.integration.tcpproxy import TcpProxy
from triggers.emulators.probe import REGION
from triggers.ledger import Ledger, Status
from triggers.ledger.firestore import FirestoreBackend
from triggers.plan import RUN_KEY_ENV

pytestmark = pytest.mark.integration

PROJECT = "demo-project"
FIRESTORE_PROJECT = "demo-triggers-chaos"
JOB = "chaos"
JOB_NAME = f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/chaos-push"
RUN_TIMEOUT = 1.0  # TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS
AMBIGUOUS_MARGIN = 4.0  # TRIGGERS_AMBIGUOUS_MARGIN_SECONDS: a claim is held 5 s
LATE = 3.5  # a jobs.run the emulator holds past the client's timeout, inside the hold
PUSH_DEADLINE = 10.0  # a push request's timeout (the subscription's ack deadline)
SCENARIO_DEADLINE = 90.0  # every event of a scenario is acknowledged within this

RULES = f"""\
project: {PROJECT}
region: {REGION}
rules:
  - name: chaos
    on: pubsub
    subscription: {SUBSCRIPTION}
    job: {JOB}
"""

JOBS = f"""\
project: {PROJECT}
region: {REGION}
inherit_env: [PATH]
jobs:
  - name: {JOB}
    command: ["true"]
    timeout: 30s
    max_retries: 0
"""


# -- the stack ------------------------------------------------------------------------------------


@dataclass
class Stack:
    emulator: Any  # triggers.emulators.server.EmulatorServer
    proxy: TcpProxy
    env: dict[str, str]
    start: Callable[..., FunctionServer]
    function: FunctionServer
    ledger: Ledger  # the function's ledger, read directly (not through the proxy)
    # When the last call the emulator delayed (a latency fault) is over: a late execution
    # appears only then, so the executions are counted after it.
    delayed_until: float = 0.0

    def watch_latency(self) -> None:
        faults = self.emulator.faults
        take = faults.take

        def taken(method: str, path: str) -> Any:
            decision = take(method, path)
            if decision.latency:
                self.delayed_until = max(self.delayed_until, time.monotonic() + decision.latency)
            return decision

        faults.take = taken

    def settle(self) -> None:
        """Wait until no delayed call can still create an execution (polling, bounded)."""
        eventually(
            lambda: time.monotonic() > self.delayed_until + 1.0,
            timeout=30,
            what="the delayed calls to the emulator to finish",
        )

    @property
    def url(self) -> str:
        return self.function.url

    def restart(self) -> None:
        self.function = self.start(self.env)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    firestore_emulator: str,
    start_cloud_run_emulator: Callable[..., Any],
    start_function: Callable[..., FunctionServer],
) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("chaos")
    (directory / "rules.yaml").write_text(RULES, encoding="utf-8")
    (directory / "jobs.yaml").write_text(JOBS, encoding="utf-8")
    emulator = start_cloud_run_emulator(directory / "jobs.yaml", directory / "logs")
    host, port = firestore_emulator.rsplit(":", 1)
    collection = f"chaos-{uuid.uuid4().hex[:8]}"
    with TcpProxy(host, int(port)) as proxy:
        env = {
            "TRIGGERS_RULES": str(directory / "rules.yaml"),
            "TRIGGERS_LEDGER": "firestore",
            "FIRESTORE_EMULATOR_HOST": proxy.address,
            "TRIGGERS_FIRESTORE_PROJECT": FIRESTORE_PROJECT,
            "TRIGGERS_FIRESTORE_COLLECTION": collection,
            "TRIGGERS_CLOUD_RUN_ENDPOINT": emulator.url,
            "TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS": str(RUN_TIMEOUT),
            "TRIGGERS_AMBIGUOUS_MARGIN_SECONDS": str(AMBIGUOUS_MARGIN),
            "TRIGGERS_LEASE_SECONDS": "10",
            "TRIGGERS_FIND_PAGE_SIZE": "20",
            "TRIGGERS_FIND_BUDGET_SECONDS": "5",
            "TRIGGERS_FIND_MARGIN_SECONDS": "5",
            "TRIGGERS_LEDGER_DEADLINE_SECONDS": "3",  # the defaults, spelled out
            "TRIGGERS_LEDGER_RETRY_SECONDS": "2",
            "TRIGGERS_RETRY_AFTER_SECONDS": "1",
            "TRIGGERS_LOG_LEVEL": "WARNING",
            "THREADS": "16",
        }
        client = make_firestore_client(firestore_emulator, FIRESTORE_PROJECT)
        ledger = Ledger(FirestoreBackend(client, collection=collection))
        stack = Stack(emulator, proxy, env, start_function, start_function(env), ledger)
        stack.watch_latency()
        # One event first, so that the scenarios meet an instance already serving (its
        # Firestore channel open, google-cloud-run imported), as a busy deployment is.
        deliver(stack, f"warm-up-{uuid.uuid4().hex[:6]}", Tally(), deadline=time.monotonic() + 60)
        yield stack
        client.close()


@pytest.fixture
def chaos(stack: Stack) -> Iterator[Stack]:
    """The stack with no executions and no faults; the proxy forwarding."""
    stack.proxy.restore()
    stack.emulator.reset()
    yield stack
    stack.emulator.faults.clear()
    stack.proxy.restore()


# -- events and their delivery --------------------------------------------------------------------


def push_body(message_id: str) -> bytes:
    """A raw Pub/Sub push request body for one message."""
    data = base64.b64encode(json.dumps({"id": message_id}).encode()).decode()
    return json.dumps(
        {
            "message": {
                "data": data,
                "messageId": message_id,
                "publishTime": "2026-12-05T00:00:00Z",
            },
            "subscription": SUBSCRIPTION,
        }
    ).encode()


HEADERS = {"Content-Type": "application/json", "User-Agent": "APIs-Google"}


@dataclass
class Tally:
    """What the senders saw, for the figures and the assertions."""

    sent: int = 0
    acked: int = 0
    retried: int = 0  # 503 answers
    errors: int = 0  # no answer: connection refused or reset, or no answer in time
    statuses: Counter[int] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # one full reason of each kind
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # event -> its 200 body
    slowest_503: float = 0.0
    without_retry_after: int = 0  # 503 answers that do not say when to come back
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unexpected(self) -> dict[int, int]:
        return {s: n for s, n in self.statuses.items() if s not in (200, 503)}


def deliver(
    stack: Stack,
    message_id: str,
    tally: Tally,
    *,
    deadline: float,
    on_answer: Callable[[int, dict[str, Any]], None] | None = None,
) -> None:
    """POST one message until it is acknowledged (200), as a push subscription redelivers it
    (with a short backoff here: 0.1 to 0.3 s). Fails the test past `deadline`."""
    import requests

    body = push_body(message_id)
    while True:
        if time.monotonic() > deadline:
            pytest.fail(f"event {message_id} was never acknowledged", pytrace=False)
        started = time.monotonic()
        with tally.lock:
            tally.sent += 1
        try:
            response = requests.post(stack.url, headers=HEADERS, data=body, timeout=PUSH_DEADLINE)
        except requests.RequestException:
            with tally.lock:
                tally.errors += 1
            time.sleep(random.uniform(0.1, 0.3))
            continue
        elapsed = time.monotonic() - started
        try:
            answer = response.json()
        except ValueError:
            answer = {"text": response.text[:200]}
        with tally.lock:
            tally.statuses[response.status_code] += 1
            if on_answer is not None:
                on_answer(response.status_code, answer)
            if response.status_code == 200:
                tally.acked += 1
                tally.answers[message_id] = answer
                return
            if response.status_code == 503:
                tally.retried += 1
                if not response.headers.get("Retry-After"):
                    tally.without_retry_after += 1
                tally.slowest_503 = max(tally.slowest_503, elapsed)
                for rule in answer.get("rules", []):
                    kind = _reason_kind(rule.get("reason"))
                    tally.reasons[kind] += 1
                    tally.examples.setdefault(kind, str(rule.get("reason"))[:300])
        time.sleep(random.uniform(0.1, 0.3))


def _reason_kind(reason: str | None) -> str:
    text = reason or ""
    for marker, kind in (
        ("may have started the run", "held"),
        ("holds the claim", "busy"),
        ("ledger unavailable", "ledger"),
        ("ledger write failed", "unrecorded launch"),
        ("cannot look for", "find failed"),
    ):
        if marker in text:
            return kind
    return "run failed" if text else "other"


def storm(
    stack: Stack,
    message_ids: list[str],
    *,
    concurrency: int,
    tally: Tally,
    before_each: Callable[[int], None] | None = None,
) -> None:
    """Deliver every message, `concurrency` at a time, each until acknowledged."""
    deadline = time.monotonic() + SCENARIO_DEADLINE

    def one(index: int, message_id: str) -> None:
        if before_each is not None:
            before_each(index)
        deliver(stack, message_id, tally, deadline=deadline)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(one, i, m) for i, m in enumerate(message_ids)]:
            future.result()


def executions_by_key(stack: Stack) -> Counter[str]:
    return Counter(
        key
        for record in stack.emulator.store.records()
        if (key := record.env_value(RUN_KEY_ENV)) is not None
    )


def check_exactly_once(name: str, stack: Stack, tally: Tally, message_ids: list[str]) -> Counter:
    """The assertions every scenario shares, and its figures."""
    stack.settle()
    keys = {}
    for message_id in message_ids:
        answer = tally.answers.get(message_id)
        assert answer is not None, f"{message_id} was never acknowledged"
        [rule] = answer["rules"]
        assert rule["outcome"] in ("launched", "duplicate"), answer
        keys[message_id] = rule["ledger_key"]
    executions = executions_by_key(stack)
    mine = {key: executions[key] for key in keys.values()}
    figures = {
        "sent": tally.sent,
        "acked": tally.acked,
        "retried": tally.retried,
        "errors": tally.errors,
        "executions": sum(mine.values()),
        "distinct keys": len(set(keys.values())),
    }
    print(f"\nchaos {name}: {figures}; 503 reasons {dict(tally.reasons)}")
    for kind, example in tally.examples.items():
        print(f"  e.g. {kind}: {example}")
    assert not tally.unexpected(), f"answers other than 200/503: {tally.unexpected()}"
    assert tally.without_retry_after == 0
    assert len(set(keys.values())) == len(message_ids)  # one (rule, key) per message
    ran_twice = {k: n for k, n in mine.items() if n != 1}
    assert not ran_twice, f"keys not run exactly once: {ran_twice}"
    assert figures["executions"] == figures["distinct keys"]
    return executions


def ids(prefix: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}-{run}-{i}" for i in range(count)]


# -- the scenarios --------------------------------------------------------------------------------


def test_fifty_concurrent_copies_of_one_event_launch_once(chaos):
    [message_id] = ids("copies", 1)
    tally = Tally()
    deadline = time.monotonic() + SCENARIO_DEADLINE
    start = threading.Barrier(50)

    def copy() -> None:
        start.wait()
        deliver(chaos, message_id, tally, deadline=deadline)

    with ThreadPoolExecutor(50) as pool:
        for future in [pool.submit(copy) for _ in range(50)]:
            future.result()
    assert tally.acked == 50
    check_exactly_once("50 copies", chaos, tally, [message_id])


FAULTS: list[tuple[str, str, Callable[[Any], Any]]] = [
    ("429", "RunJob", lambda f: f.fail("RunJob", 429)),
    ("503", "RunJob", lambda f: f.fail("RunJob", 503)),
    ("500", "RunJob", lambda f: f.fail("RunJob", 500)),
    ("closed", "RunJob", lambda f: f.drop_response("RunJob", mode="close")),
    ("ran, then 503", "RunJob", lambda f: f.drop_response("RunJob", mode="status", status=503)),
    ("response held", "RunJob", lambda f: f.drop_response("RunJob", mode="timeout", seconds=1.5)),
    ("late", "RunJob", lambda f: f.add_latency("RunJob", LATE, times=1)),
    ("slow", "RunJob", lambda f: f.add_latency("RunJob", 0.3, times=1)),
    ("find fails", "ListExecutions", lambda f: f.fail("ListExecutions", 503)),
]


def test_two_hundred_events_under_random_api_faults_launch_once_each(chaos):
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    injected: Counter[str] = Counter()
    lock = threading.Lock()

    def maybe_fault(index: int) -> None:
        # About every third delivery arms one fault for the next call of its kind, unless one
        # is still pending for that method: two latencies would add up past the hold, outside
        # what the protocol promises (the API acts within the timeout + margin).
        with lock:
            if rng.random() < 0.35:
                name, method, arm = rng.choice(FAULTS)
                pending = {f["method"] for f in chaos.emulator.faults.list()}
                if method not in pending:
                    arm(chaos.emulator.faults)
                    injected[name] += 1

    message_ids = ids("storm", 200)
    tally = Tally()
    storm(chaos, message_ids, concurrency=8, tally=tally, before_each=maybe_fault)
    print(f"\nseed {seed} (CHAOS_SEED), faults injected: {dict(injected)}")
    check_exactly_once("200 events, random faults", chaos, tally, message_ids)
    assert tally.retried > 0  # the faults did bite


def test_sigkill_of_the_function_mid_storm_then_redelivery_launches_once_each(chaos):
    message_ids = ids("killed", 100)
    tally = Tally()
    killed = threading.Event()

    def kill_after_some(index: int) -> None:
        if index == 40 and not killed.is_set():
            killed.set()
            process = chaos.function.process.process
            assert process is not None
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: arbiter and worker
            chaos.restart()  # a new instance; the senders find it at its new address

    storm(chaos, message_ids, concurrency=8, tally=tally, before_each=kill_after_some)
    assert killed.is_set()
    check_exactly_once("SIGKILL mid-storm", chaos, tally, message_ids)


def test_over_a_hundred_launches_between_an_ambiguous_attempt_and_its_redelivery(chaos):
    import requests

    from triggers.runners.cloudrun import CloudRunRunner

    [message_id] = ids("buried", 1)
    tally = Tally()
    deadline = time.monotonic() + SCENARIO_DEADLINE
    # The first attempt's jobs.run is held past the client timeout: it is answered 503 (the
    # claim held) and its execution appears later. Then 120 other runs of the same job start
    # before the event comes again: the one to adopt is seven pages down.
    chaos.emulator.faults.add_latency("RunJob", LATE, times=1)
    first = requests.post(
        chaos.url, headers=HEADERS, data=push_body(message_id), timeout=PUSH_DEADLINE
    )
    tally.sent += 1
    tally.statuses[first.status_code] += 1
    assert first.status_code == 503, first.text
    tally.retried += 1
    eventually(lambda: executions_by_key(chaos), timeout=30, what="the held jobs.run's execution")
    others = CloudRunRunner(endpoint=chaos.emulator.url, timeout=10)
    for request in other_requests(120):
        others.run(request)
    deliver(chaos, message_id, tally, deadline=deadline)
    executions = check_exactly_once("100+ launches in between", chaos, tally, [message_id])
    [rule] = tally.answers[message_id]["rules"]
    assert rule["outcome"] == "launched" and rule.get("adopted") is True
    # the adopted execution is the buried one: 120 newer executions of the job came after it
    assert sum(executions.values()) == 121
    adopted = chaos.emulator.store.execution_record(rule["execution"])
    assert adopted is not None
    newer = [r for r in chaos.emulator.store.records() if r.create_time > adopted.create_time]
    assert len(newer) == 120


def other_requests(count: int) -> list[Any]:
    """Requests for the chaos job under other run keys (other events' runs)."""
    from triggers.events.model import EventRef
    from triggers.plan import Overrides, RunRequest

    return [
        RunRequest(
            rule="other",
            job=JOB_NAME,
            overrides=Overrides(),
            dedup_key=f"other-{uuid.uuid4().hex}",
            dedup_window_seconds=3600,
            event=EventRef(id=str(i), source="//chaos", type="t"),
        )
        for i in range(count)
    ]


def test_jobs_run_held_past_the_client_timeout_keeps_the_claim_then_adopts(chaos):
    [message_id] = ids("held", 1)
    tally = Tally()
    deadline = time.monotonic() + SCENARIO_DEADLINE
    chaos.emulator.faults.add_latency("RunJob", LATE, times=1)
    # Four senders redeliver at once and keep at it: every delivery inside the hold is told
    # to retry, and the first one after it adopts the execution the held call created.
    with ThreadPoolExecutor(4) as pool:
        for future in [
            pool.submit(deliver, chaos, message_id, tally, deadline=deadline) for _ in range(4)
        ]:
            future.result()
    check_exactly_once("jobs.run held past the client timeout", chaos, tally, [message_id])
    assert tally.reasons["held"] > 0  # redeliveries did arrive inside the hold
    [rule] = tally.answers[message_id]["rules"]
    record = chaos.ledger.get(rule["ledger_key"])
    assert record is not None and record.status is Status.LAUNCHED
    assert record.execution == rule["execution"] and record.ambiguous is False
    assert record.attempts >= 2 and record.operation is None  # adopted by a takeover


def test_ledger_outage_answers_503_fast_and_launches_once_after(chaos):
    message_ids = ids("outage", 60)
    tally = Tally()
    during: list[int] = []
    cut = threading.Event()

    def outage(index: int) -> None:
        if index == 16 and not cut.is_set():
            cut.set()
            chaos.proxy.cut("blackhole")
            threading.Thread(target=restore_later, daemon=True).start()

    def restore_later() -> None:
        # Restore once the senders have had a good number of 503s from the cut ledger.
        eventually(
            lambda: tally.reasons["ledger"] >= 24,
            timeout=60,
            what="503s while the ledger is cut off",
        )
        during.append(tally.reasons["ledger"])
        chaos.proxy.restore()

    storm(chaos, message_ids, concurrency=8, tally=tally, before_each=outage)
    assert cut.is_set() and during
    slowest = f"{tally.slowest_503:.2f} s"
    print(f"\nslowest 503 during the outage: {slowest} (push deadline {PUSH_DEADLINE:g} s)")
    # Every request during the cut was answered, inside the push deadline: no sender timed out.
    assert tally.errors == 0
    check_exactly_once("ledger outage", chaos, tally, message_ids)
