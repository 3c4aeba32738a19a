"""CloudRunV1Runner (system `cloudrun-v1`) against the emulator's v1 routes, through the real
google-auth AuthorizedSession: launch, duplicate delivery through a Dispatcher and the SQLite
ledger, a response dropped after the execution was created and its adoption, permanent errors,
and the reconciler to each final state. The v1 routes serve the same executions as the v2 ones,
so the real google-cloud-run client checks what v1 started."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import eventually, launch_recorded
from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.probe import PROBE_JOB, probe_records
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.ledger.base import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import NOT_FOUND, reconcile
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import systems
from triggers.runners.cloudrun_v1 import CloudRunV1Runner, render_run_job
from triggers.runners.routed import SystemRunners

pytestmark = pytest.mark.integration

V1 = "/apis/run.googleapis.com/v1/"
WAIT = 20.0


def request_for(key: str, job: str = PROBE_JOB, **overrides) -> RunRequest:
    return RunRequest(
        rule="v1-runner-test",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
        system="cloudrun-v1",
        renderer=render_run_job,
    )


def an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def v2_request(key: str) -> RunRequest:
    """The same run for the Cloud Run v2 runner."""
    return replace(request_for(key), system="cloudrun", renderer=None)


def v2_name(launch_name: str) -> str:
    """namespaces/P/executions/E -> the same execution's v2 name (the probe job's)."""
    return f"{PROBE_JOB}/executions/{launch_name.rsplit('/', 1)[1]}"


@pytest.fixture(scope="module")
def v1(emulator) -> CloudRunV1Runner:
    return CloudRunV1Runner(endpoint=emulator.url, timeout=5.0)


# ---------------------------------------------------------------------- run


def test_run_launches_with_every_override_and_the_run_key(emu, v1, probe_dir, executions):
    request = request_for(
        "with-overrides",
        args=("--input", "gs://raw-data/a.csv"),
        env=(("SHARED", "from-rule"), ("EXTRA", "1")),
        task_count=2,
        timeout_seconds=20,
    )
    launch = v1.run(request)
    assert launch.execution.startswith("namespaces/demo-project/executions/probe-")
    assert launch.operation is None and launch.adopted is False
    assert systems.of_execution(launch.execution).name == "cloudrun-v1"

    assert emu.store.wait_execution(v2_name(launch.execution)).state == "succeeded"
    records = probe_records(probe_dir, v2_name(launch.execution))
    assert [r["task"] for r in records] == [0, 1]
    for record in records:
        assert record["argv"] == ["--input", "gs://raw-data/a.csv"]
        env = record["env"]
        assert env[RUN_KEY_ENV] == request.ledger_key
        assert env["SHARED"] == "from-rule" and env["EXTRA"] == "1"
        assert env["JOB_ONLY"] == "from-job"  # merged over the job's env
        assert env["CLOUD_RUN_TASK_COUNT"] == "2"
    # the v2 API (the real google-cloud-run client) sees the same execution, timeout included
    execution = executions.get_execution(name=v2_name(launch.execution))
    assert execution.template.timeout.total_seconds() == 20


def test_clear_args_reaches_the_task(emu, v1, probe_dir):
    launch = v1.run(request_for("clear", clear_args=True))
    emu.store.wait_execution(v2_name(launch.execution))
    [record] = probe_records(probe_dir, v2_name(launch.execution))
    assert record["argv"] == []


def test_validate_only_reads_the_job_and_launches_nothing(emu, v1):
    assert v1.run(request_for("validate"), validate_only=True).execution == ""
    assert emu.store.records() == []
    with pytest.raises(PermanentRunError) as info:
        v1.run(request_for("nope", job=PROBE_JOB.replace("/probe", "/nope")), validate_only=True)
    assert info.value.status == 404
    with pytest.raises(PermanentRunError, match="no container 'sidecar'"):
        v1.run(request_for("sidecar", container="sidecar"), validate_only=True)


# ---------------------------------------------------------------------- permanent


def test_unknown_job_is_permanent(emu, v1):
    with pytest.raises(PermanentRunError) as info:
        v1.run(request_for("nope", job=PROBE_JOB.replace("/probe", "/no-such-job")))
    assert info.value.status == 404 and info.value.retryable is False
    assert "no-such-job" in info.value.message


@pytest.mark.parametrize(
    "overrides",
    [{"env": (("CLOUD_RUN_JOB", "x"),)}, {"container": "not-the-jobs-container"}],
    ids=["reserved-env", "unknown-container"],
)
def test_rejected_overrides_are_permanent_and_nothing_ran(emu, v1, overrides):
    with pytest.raises(PermanentRunError) as info:
        v1.run(request_for("rejected", **overrides))
    assert info.value.status == 400
    assert emu.store.records() == []


# ---------------------------------------------------------------------- failures


def test_rate_limited_is_retryable_and_nothing_ran(emu, v1):
    emu.faults.fail("RunJob", 429, match=V1)
    request = request_for("quota")
    with pytest.raises(RetryableRunError) as info:
        v1.run(request)
    assert info.value.status == 429
    assert emu.store.records() == []
    assert v1.run(request).execution


def test_unauthenticated_is_retryable_and_nothing_ran(emu, v1):
    emu.faults.fail("RunJob", 401, match=V1)
    request = request_for("stale-token")
    with pytest.raises(RetryableRunError) as info:
        v1.run(request)
    assert info.value.status == 401
    assert emu.store.records() == []


def test_a_401_with_real_credentials_refreshes_and_a_failed_refresh_is_retryable(emu, emulator):
    # User credentials whose token endpoint refuses connections (a free loopback port): the 401
    # makes AuthorizedSession refresh before sending again; the refresh fails, nothing was sent.
    from google.oauth2.credentials import Credentials

    credentials = Credentials(
        token="stale",
        refresh_token="r",
        token_uri=f"http://127.0.0.1:{free_port()}/token",
        client_id="c",
        client_secret="s",
    )
    runner = CloudRunV1Runner(endpoint=emulator.url, credentials=credentials, timeout=5.0)
    emu.faults.fail("RunJob", 401, match=V1)
    with pytest.raises(RetryableRunError, match="TransportError|RefreshError"):
        runner.run(request_for("refresh"))
    assert emu.store.records() == []


def test_connection_refused_is_retryable():
    runner = CloudRunV1Runner(endpoint=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(RetryableRunError, match="ConnectionError") as info:
        runner.run(request_for("refused"))
    assert info.value.status is None


def test_closed_after_create_is_ambiguous_then_adopted_and_sent_once(emu, v1):
    # the fault this system exists to survive: the execution is created, then the connection
    # is closed without an answer. The POST must not be sent again behind our back.
    emu.faults.drop_response("RunJob", mode="close", match=V1)
    request = request_for("dropped")
    with pytest.raises(AmbiguousRunError) as info:
        v1.run(request)
    assert info.value.status is None
    assert "ConnectionError" in info.value.message
    [record] = emu.store.records()  # it did run, once
    found = v1.find(request, since=an_hour_ago())
    assert found is not None and found.adopted is True
    assert found.execution == f"namespaces/demo-project/executions/{record.short}"
    assert v1.find(request_for("someone-else"), since=an_hour_ago()) is None


def test_why_not_google_api_python_client_its_transport_runs_the_job_twice(emu):
    # The same fault through the discovery client of the run.v1 API (httplib2): it sends the POST
    # again on a closed connection, answers success, and two executions run. This is the reason
    # the runner uses AuthorizedSession; if httplib2 ever stops doing it, this test says so.
    import httplib2
    from googleapiclient.discovery import build_from_document

    from tests.unit.test_runner_cloudrun_v1 import discovery

    service = build_from_document(
        discovery(), http=httplib2.Http(timeout=5), client_options={"api_endpoint": emu.url + "/"}
    )
    emu.faults.drop_response("RunJob", mode="close", match=V1)
    answer = service.namespaces().jobs().run(name="namespaces/demo-project/jobs/probe", body={})
    assert answer.execute()["kind"] == "Execution"  # no error at all...
    assert len(emu.store.records()) == 2  # ...and the job ran twice


def test_concurrent_runs_from_many_threads_each_start_one_execution(emu, v1):
    from concurrent.futures import ThreadPoolExecutor

    requests = [request_for(f"thread-{i}") for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        launches = list(pool.map(v1.run, requests))
    assert len({launch.execution for launch in launches}) == 16
    by_key = {r.env_value(RUN_KEY_ENV): r.short for r in emu.store.records()}
    for request, launch in zip(requests, launches, strict=True):
        assert launch.execution.endswith("/" + by_key[request.ledger_key])


def test_the_documented_fault_over_http_narrows_to_v1_and_a_bare_one_hits_both(emu, v1, runner):
    import requests

    # docs/runners.md: the drop-after-create fault for v1 only, through the control route
    fault = {"kind": "drop", "method": "RunJob", "mode": "close", "match": V1}
    assert requests.post(f"{emu.url}/_emulator/faults", json=fault, timeout=5).status_code == 200
    assert runner.run(v2_request("v2-untouched")).execution  # v2 is not affected...
    with pytest.raises(AmbiguousRunError):
        v1.run(request_for("v1-dropped"))  # ...v1 is
    assert requests.get(f"{emu.url}/_emulator/faults", timeout=5).json() == {"faults": []}
    # without `match`, a fault by RPC name applies to whichever version calls first
    emu.faults.fail("RunJob", 503, times=2)
    with pytest.raises(AmbiguousRunError):
        v1.run(request_for("v1-503"))
    with pytest.raises(AmbiguousRunError):
        runner.run(v2_request("v2-503"))
    assert len(emu.store.records()) == 2  # the v2 run and the dropped v1 one


@pytest.mark.parametrize("executed", [False, True], ids=["before", "after"])
def test_a_503_is_ambiguous_and_find_tells(emu, v1, executed):
    if executed:
        emu.faults.drop_response("RunJob", mode="status", status=503, match=V1)
    else:
        emu.faults.fail("RunJob", 503, match=V1)
    request = request_for(f"unavailable-{executed}")
    with pytest.raises(AmbiguousRunError) as info:
        v1.run(request)
    assert info.value.status == 503
    assert (v1.find(request, since=an_hour_ago()) is not None) is executed
    assert len(emu.store.records()) == int(executed)


def test_read_timeout_is_ambiguous_and_findable(emu, emulator):
    emu.faults.drop_response("RunJob", mode="timeout", seconds=3, match=V1)
    impatient = CloudRunV1Runner(endpoint=emulator.url, timeout=0.5)
    request = request_for("timed-out")
    with pytest.raises(AmbiguousRunError, match="ReadTimeout"):
        impatient.run(request)
    found = impatient.find(request, since=an_hour_ago())
    assert found is not None and found.execution.endswith(emu.store.records()[0].short)


# ---------------------------------------------------------------------- find


def test_find_pages_back_and_stops_at_since(emu, emulator):
    narrow = CloudRunV1Runner(endpoint=emulator.url, timeout=5.0, page_size=1)
    first = request_for("first")
    launched = narrow.run(first)
    for i in range(3):
        narrow.run(request_for(f"later-{i}"))
    # the first is on the 4th page (newest first, one per page)
    found = narrow.find(first, since=an_hour_ago())
    assert found is not None and found.execution == launched.execution
    # older than since: not adopted, however it is found
    assert narrow.find(first, since=datetime.now(UTC) + timedelta(seconds=1)) is None


def test_errors_while_finding_are_retryable(emu, v1):
    emu.faults.fail("ListExecutions", 500, match=V1)
    with pytest.raises(RetryableRunError) as info:
        v1.find(request_for("x"), since=an_hour_ago())
    assert info.value.status == 500


# ---------------------------------------------------------------------- dispatch


RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: ingest-v1
    on: storage.finalized
    bucket: raw-data
    system: cloudrun-v1
    job: probe
    overrides:
      args: ["--object={{ data.name }}"]
    dedup:
      key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
""",
    environ={},
)


def storage_event(name: str | None = None):
    name = name or f"incoming/{uuid.uuid4().hex}.csv"
    resource = {"bucket": "raw-data", "name": name, "generation": "1", "size": "10"}
    body = {
        "message": {
            "data": base64.b64encode(json.dumps(resource).encode()).decode(),
            "attributes": {
                "eventType": "OBJECT_FINALIZE",
                "bucketId": "raw-data",
                "objectId": name,
                "objectGeneration": "1",
                "payloadFormat": "JSON_API_V1",
            },
            "messageId": uuid.uuid4().hex,
            "publishTime": "2026-11-21T12:00:00Z",
        },
        "subscription": "projects/demo-project/subscriptions/gcs-push",
    }
    return decode({"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.fixture
def ledger(tmp_path):
    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    yield Ledger(backend)
    backend.close()


@pytest.fixture
def routed(emulator) -> SystemRunners:
    """The function's runner, built from its settings as `build_runner` does."""
    options = {"cloud_run_v1_endpoint": emulator.url}
    return SystemRunners(lambda system: system.build_runner(options))


def executions_with_key(emu, key: str) -> list[str]:
    return [r.short for r in emu.store.records() if r.env_value(RUN_KEY_ENV) == key]


def test_the_same_event_twice_launches_one_execution(emu, ledger, routed):
    dispatcher = Dispatcher(RULES, ledger, routed)
    event = storage_event()
    [first] = dispatcher.dispatch(event).outcomes
    assert first.outcome is Outcome.LAUNCHED
    assert first.execution.startswith("namespaces/demo-project/executions/probe-")
    [again] = dispatcher.dispatch(event).outcomes
    assert again.outcome is Outcome.DUPLICATE and again.execution == first.execution
    assert executions_with_key(emu, first.ledger_key) == [first.execution.rsplit("/", 1)[1]]
    record = ledger.get(first.ledger_key)
    assert record.execution == first.execution
    assert record.request["overrides"]["containerOverrides"][0]["args"][0].startswith("--object=")


def test_a_dropped_response_is_adopted_by_the_dispatcher_not_repeated(emu, ledger, routed):
    dispatcher = Dispatcher(RULES, ledger, routed)
    event = storage_event()
    emu.faults.drop_response("RunJob", mode="close", match=V1)
    [outcome] = dispatcher.dispatch(event).outcomes
    assert outcome.outcome is Outcome.LAUNCHED and outcome.adopted
    assert ledger.get(outcome.ledger_key).execution == outcome.execution
    assert dispatcher.dispatch(event).outcomes[0].outcome is Outcome.DUPLICATE
    assert len(executions_with_key(emu, outcome.ledger_key)) == 1


def test_a_missing_job_is_rejected_and_recorded(emu, ledger, routed):
    rules = load_text(
        "project: demo-project\nregion: europe-west1\nrules:\n"
        "  - {name: gone, on: storage.finalized, bucket: raw-data, system: cloudrun-v1,"
        " job: no-such-job}\n",
        environ={},
    )
    [outcome] = Dispatcher(rules, ledger, routed).dispatch(storage_event()).outcomes
    assert outcome.outcome is Outcome.REJECTED
    assert ledger.get(outcome.ledger_key).status is Status.REJECTED
    assert emu.store.records() == []


# ---------------------------------------------------------------------- reconcile


def launch(ledger: Ledger, runner, key: str, **overrides) -> tuple[str, str]:
    return launch_recorded(ledger, runner, request_for(key, **overrides))


def test_reconcile_records_each_final_state(emu, ledger, routed, v1, probe_dir, executions):
    ok_key, ok = launch(ledger, routed, "succeeds", task_count=2)
    fail_key, fail = launch(ledger, routed, "fails", env=(("PROBE_FAIL_TASKS", "0"),))
    cancel_key, cancel = launch(ledger, routed, "cancelled", env=(("PROBE_SLEEP", "20"),))
    gone_key, gone = launch(ledger, routed, "deleted")

    # deleted through v2 (the same execution) before anyone asked how it ended
    emu.store.wait_execution(v2_name(gone))
    executions.delete_execution(name=v2_name(gone)).result(timeout=10)
    for name in (ok, fail):
        emu.store.wait_execution(v2_name(name), timeout=WAIT)
    eventually(
        lambda: probe_records(probe_dir, v2_name(cancel), ".started"),
        timeout=WAIT,
        what="the sleeper to start",
    )
    first = reconcile(ledger, routed)
    assert first.errors == 0, first.details
    assert (first.succeeded, first.failed, first.not_found, first.running) == (1, 2, 1, 1)
    assert ledger.get(cancel_key).status is Status.LAUNCHED  # still running: left alone

    # cancelled through v1's own route
    import requests

    answer = requests.post(f"{emu.url}{V1}{cancel}:cancel", timeout=5)
    assert answer.status_code == 200 and answer.json()["kind"] == "Execution"
    emu.store.wait_execution(v2_name(cancel), timeout=WAIT)
    second = reconcile(ledger, routed)
    assert (second.checked, second.cancelled, second.errors) == (1, 1, 0)

    succeeded = ledger.get(ok_key)
    assert succeeded.status is Status.SUCCEEDED
    assert succeeded.outcome["succeeded_count"] == 2 and succeeded.outcome["task_count"] == 2
    assert succeeded.outcome["completed_at"]
    failed = ledger.get(fail_key)
    assert failed.status is Status.FAILED and "failed" in (failed.reason or "")
    assert ledger.get(cancel_key).status is Status.CANCELLED
    deleted = ledger.get(gone_key)
    assert deleted.status is Status.FAILED and deleted.reason == NOT_FOUND
    # and each v1 execution was asked about through the v1 runner
    assert v1.execution_status(ok)["outcome"] == "succeeded"


# ---------------------------------------------------------------------- the sample, served


def test_the_sample_v1_rule_runs_end_to_end_under_serve(tmp_path):
    """config/systems/cloudrun-v1.yaml on the local stack (`triggers serve`): the function, the
    SQLite ledger and the emulator serving config/jobs.yaml; the sample order event twice."""
    from pathlib import Path

    from triggers.local import send
    from triggers.local.serve import LocalServer, ServeOptions

    root = Path(__file__).resolve().parents[2]
    options = ServeOptions(
        rules=str(root / "config/systems/cloudrun-v1.yaml"),
        jobs=str(root / "config/jobs.yaml"),
        port=0,
        sqlite_path=str(tmp_path / "ledger.sqlite3"),
        log_dir=str(tmp_path / "logs"),
        clock=False,
    )
    event = send.event_file(root / "config/events/pubsub-order.push.json")
    with LocalServer(options) as server:
        first = send.post(server.url, event)
        assert first.status == 200, first.body
        [outcome] = first.body["rules"]
        assert outcome["rule"] == "order-export-v1" and outcome["outcome"] == "launched"
        execution = outcome["execution"]
        assert execution.startswith("namespaces/demo-project/executions/order-export-")
        again = send.post(server.url, event)
        assert again.body["rules"][0]["outcome"] == "duplicate"
        [record] = server.emulator.store.records()
        assert server.emulator.store.wait_execution(record.name, timeout=WAIT).state == "succeeded"
        assert record.run.args == ("--order=A-1001",)
        runner = CloudRunV1Runner(endpoint=server.emulator.url, timeout=5.0)
        assert runner.execution_status(execution)["outcome"] == "succeeded"


def test_a_job_id_in_two_regions_is_refused_by_the_v1_routes(tmp_path):
    # One emulator serves every region, and a v1 path names no region: say so, run nothing.
    import requests

    from triggers.emulators.server import EmulatorServer

    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "project: demo-project\nregion: europe-west1\njobs:\n"
        "  - {name: twin, command: ['true']}\n"
        "  - {name: twin, region: us-central1, command: ['true']}\n",
        encoding="utf-8",
    )
    with EmulatorServer(jobs, log_dir=tmp_path / "logs", log_to_stderr=False) as server:
        answer = requests.post(f"{server.url}{V1}namespaces/demo-project/jobs/twin:run", timeout=5)
        assert answer.status_code == 400
        assert "several regions (europe-west1, us-central1)" in answer.json()["error"]["message"]
        assert server.store.records() == []
