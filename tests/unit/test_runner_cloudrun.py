"""CloudRunRunner, the pure parts: the proto it sends, error classification, run/find logic."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from http.client import RemoteDisconnected
from types import SimpleNamespace

import pytest
import requests
import urllib3.exceptions
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud import run_v2
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events.model import EventRef
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.runners.cloudrun import CloudRunRunner, build_run_job_request, classify_error

JOB = "projects/demo-project/locations/europe-west1/jobs/csv-loader"


def make_request(overrides: Overrides | None = None, key: str = "a/b#1") -> RunRequest:
    overrides = Overrides() if overrides is None else overrides
    return RunRequest(
        rule="rule",
        job=JOB,
        overrides=overrides,
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id="1", source="//test", type="t"),
    )


def as_json(proto: run_v2.RunJobRequest) -> dict:
    return json_format.MessageToDict(run_v2.RunJobRequest.pb(proto))


# ---------------------------------------------------------------------- the request


def test_full_overrides_become_the_proto_field_by_field():
    request = make_request(
        Overrides(
            container="worker",
            args=("--input=gs://b/o", "--x"),
            env=(("GENERATION", "7"), ("STATIC", "yes")),
            task_count=4,
            timeout_seconds=1800,
        )
    )
    proto = build_run_job_request(request)
    assert proto.name == JOB
    assert not proto.validate_only
    [container] = proto.overrides.container_overrides
    assert container.name == "worker"
    assert list(container.args) == ["--input=gs://b/o", "--x"]
    assert [(e.name, e.value) for e in container.env] == [
        ("GENERATION", "7"),
        ("STATIC", "yes"),
        (RUN_KEY_ENV, request.ledger_key),
    ]
    assert not container.clear_args
    assert proto.overrides.task_count == 4
    assert proto.overrides.timeout.total_seconds() == 1800


def test_no_overrides_still_carry_the_run_key():
    request = make_request()
    proto = build_run_job_request(request)
    [container] = proto.overrides.container_overrides
    assert container.name == "" and list(container.args) == []
    assert [(e.name, e.value) for e in container.env] == [(RUN_KEY_ENV, request.ledger_key)]
    assert "taskCount" not in as_json(proto)["overrides"]
    assert "timeout" not in as_json(proto)["overrides"]


def test_clear_args_is_sent():
    proto = build_run_job_request(make_request(Overrides(clear_args=True)))
    assert proto.overrides.container_overrides[0].clear_args is True


def test_validate_only_is_set_only_when_asked():
    assert build_run_job_request(make_request(), validate_only=True).validate_only is True
    assert "validateOnly" not in as_json(build_run_job_request(make_request()))


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_overrides = st.builds(
    Overrides,
    container=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    args=st.none() | st.lists(_text, min_size=1, max_size=4).map(tuple),
    clear_args=st.booleans(),
    env=st.lists(
        st.tuples(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), _text), max_size=4
    ).map(tuple),
    task_count=st.none() | st.integers(1, 10_000),
    timeout_seconds=st.none() | st.integers(1, 168 * 3600),
)


@given(_overrides, st.booleans())
def test_the_proto_is_exactly_the_rest_body(overrides, validate_only):
    """What is sent (the proto) and what `triggers plan` shows (run_job_body) never drift."""
    request = make_request(overrides)
    expected = {"name": JOB, **request.run_job_body()}
    if validate_only:
        expected["validateOnly"] = True
    assert as_json(build_run_job_request(request, validate_only=validate_only)) == expected


def test_empty_args_clear_the_args():
    request = make_request(Overrides(args=()))
    proto = build_run_job_request(request)
    assert proto.overrides.container_overrides[0].clear_args is True


def test_a_request_the_proto_cannot_hold_is_permanent():
    request = make_request(Overrides(task_count=2**40))  # int32 field
    with pytest.raises(PermanentRunError, match="cannot build"):
        CloudRunRunner(client=object()).run(request)


# ---------------------------------------------------------------------- classification


def _refused() -> requests.exceptions.ConnectionError:
    # The exact shape requests gives for "Connection refused" (and DNS failures).
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection")
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/v2/x:run", reason=reason)
    )


def _dns_failure() -> requests.exceptions.ConnectionError:
    reason = urllib3.exceptions.NameResolutionError("run.example", None, OSError("no name"))
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/v2/x:run", reason=reason)
    )


def _dropped() -> requests.exceptions.ConnectionError:
    # The shape for a connection closed after the request was sent (no response).
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError(
            "Connection aborted.", RemoteDisconnected("Remote end closed connection")
        )
    )


CLASSIFICATION = [
    # (exception, class, status)
    (gexc.BadRequest("bad"), PermanentRunError, 400),
    (gexc.InvalidArgument("bad"), PermanentRunError, 400),
    (gexc.FailedPrecondition("job not ready"), PermanentRunError, 400),
    (gexc.Unauthorized("token"), RetryableRunError, 401),
    (gexc.Unauthenticated("token"), RetryableRunError, 401),
    (gexc.Forbidden("iam"), PermanentRunError, 403),
    (gexc.PermissionDenied("iam"), PermanentRunError, 403),
    (gexc.NotFound("no job"), PermanentRunError, 404),
    (gexc.Conflict("etag"), PermanentRunError, 409),
    (gexc.AlreadyExists("exists"), PermanentRunError, 409),
    (gexc.Aborted("etag"), PermanentRunError, 409),
    (gexc.PreconditionFailed("etag"), PermanentRunError, 412),
    (gexc.TooManyRequests("quota"), RetryableRunError, 429),
    (gexc.ResourceExhausted("quota"), RetryableRunError, 429),
    (gexc.Cancelled("client went away"), AmbiguousRunError, 499),
    (gexc.InternalServerError("oops"), AmbiguousRunError, 500),
    (gexc.Unknown("?"), AmbiguousRunError, None),  # gRPC UNKNOWN has no HTTP status
    (gexc.MethodNotImplemented("no"), PermanentRunError, 501),
    (gexc.BadGateway("proxy"), AmbiguousRunError, 502),
    (gexc.ServiceUnavailable("backend unavailable"), AmbiguousRunError, 503),
    (gexc.GatewayTimeout("slow"), AmbiguousRunError, 504),
    (gexc.DeadlineExceeded("Deadline Exceeded"), AmbiguousRunError, 504),
    # gRPC's own UNAVAILABLE for a call that never reached a server (messages as grpc 1.85 words
    # them for a refused connection, a failed DNS lookup and a failed token fetch)
    (
        gexc.ServiceUnavailable(
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1:"
            " Failed to connect to remote host: Connection refused"
        ),
        RetryableRunError,
        503,
    ),
    (
        gexc.ServiceUnavailable(
            "errors resolving run.example:443: [field:hostname lookup error:address lookup"
            " failed for run.example:443: Domain name not found]"
        ),
        RetryableRunError,
        503,
    ),
    (
        gexc.ServiceUnavailable("Getting metadata from plugin failed with error: no ADC"),
        RetryableRunError,
        503,
    ),
    # requests, unwrapped by the REST transport
    (_refused(), RetryableRunError, None),
    (_dns_failure(), RetryableRunError, None),
    (requests.exceptions.ConnectTimeout("connect timed out"), RetryableRunError, None),
    (_dropped(), AmbiguousRunError, None),
    (requests.exceptions.ConnectionError("reset by peer"), AmbiguousRunError, None),
    (requests.exceptions.SSLError("bad record mac"), AmbiguousRunError, None),
    (requests.exceptions.ReadTimeout("read timed out"), AmbiguousRunError, None),
    (requests.exceptions.ChunkedEncodingError("cut"), AmbiguousRunError, None),
    # google-auth fails to get a token before anything is sent
    (auth_exceptions.RefreshError("metadata server"), RetryableRunError, None),
    (auth_exceptions.TransportError("metadata server"), RetryableRunError, None),
    # anything else: the safe side
    (RuntimeError("boom"), AmbiguousRunError, None),
    (OSError("broken pipe"), AmbiguousRunError, None),
]


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    CLASSIFICATION,
    ids=[f"{i}-{type(exc).__name__}" for i, (exc, _, _) in enumerate(CLASSIFICATION)],
)
def test_classification(exc, expected, status):
    error = classify_error(exc, "jobs.run J")
    assert type(error) is expected
    assert error.status == status
    assert error.retryable is (expected is not PermanentRunError)
    assert error.message.startswith("jobs.run J: ")
    assert str(exc) in error.message


def test_classification_keeps_the_original_message():
    error = classify_error(ValueError("surprising detail"))
    assert isinstance(error, AmbiguousRunError)
    assert "ValueError: surprising detail" in str(error)


# ---------------------------------------------------------------------- run, with fakes


class FakeOperation:
    """An api_core Operation stand-in whose metadata gets its name after ``named_after`` polls."""

    def __init__(self, name="ops/1", execution="jobs/j/executions/e", named_after=0, done=False):
        self.operation = SimpleNamespace(name=name, done=done)
        self._execution = execution
        self.named_after = named_after
        self.polls = 0

    @property
    def metadata(self):
        if self.polls < self.named_after:  # first no metadata, then an Execution without a name
            return run_v2.Execution() if self.polls else None
        return run_v2.Execution(name=self._execution)

    def done(self):
        self.polls += 1
        return self.operation.done


class FakeJobs:
    def __init__(self, result):
        self.result = result
        self.calls = []

    def run_job(self, **kwargs):
        self.calls.append(kwargs)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def test_run_sends_once_without_client_retry_and_with_a_timeout():
    jobs = FakeJobs(FakeOperation())
    launch = CloudRunRunner(client=jobs, timeout=7.5).run(make_request())
    assert launch.execution == "jobs/j/executions/e"
    assert launch.operation == "ops/1" and launch.adopted is False
    [call] = jobs.calls
    assert call["retry"] is None and call["timeout"] == 7.5
    assert call["request"] == build_run_job_request(make_request())


def test_run_polls_until_the_metadata_names_the_execution():
    op = FakeOperation(named_after=2)
    launch = CloudRunRunner(client=FakeJobs(op)).run(make_request())
    assert launch.execution == "jobs/j/executions/e"
    assert op.polls == 2


def test_an_operation_that_never_names_its_execution_is_ambiguous():
    op = FakeOperation(named_after=10**6)
    with pytest.raises(AmbiguousRunError, match="accepted"):
        CloudRunRunner(client=FakeJobs(op), timeout=0.3).run(make_request())


def test_validate_only_does_not_wait_for_a_name():
    jobs = FakeJobs(FakeOperation(name="", named_after=10**6, done=True))
    launch = CloudRunRunner(client=jobs).run(make_request(), validate_only=True)
    assert launch.execution == "" and launch.operation is None
    assert jobs.calls[0]["request"].validate_only is True


def test_run_raises_the_classified_error_with_its_cause():
    cause = gexc.TooManyRequests("quota")
    with pytest.raises(RetryableRunError) as info:
        CloudRunRunner(client=FakeJobs(cause)).run(make_request())
    assert info.value.__cause__ is cause and info.value.status == 429
    assert JOB in info.value.message


# ---------------------------------------------------------------------- find, with fakes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def execution(name: str, minutes_ago: float, key: str | None) -> run_v2.Execution:
    env = [run_v2.EnvVar(name="OTHER", value="x")]
    if key is not None:
        env.append(run_v2.EnvVar(name=RUN_KEY_ENV, value=key))
    return run_v2.Execution(
        name=f"{JOB}/executions/{name}",
        create_time=NOW - timedelta(minutes=minutes_ago),
        template=run_v2.TaskTemplate(containers=[run_v2.Container(env=env)]),
    )


class FakeExecutions:
    """ListExecutions over a list, newest first, served in pages of the request's page_size
    with a page token, as the API does. `yielded` counts the executions handed out."""

    def __init__(self, executions, *, on_page=None):
        self.executions = executions
        self.requests = []
        self.yielded = 0
        self.on_page = on_page  # called before each page (a clock that moves, a failure)

    def list_executions(self, request, timeout):
        self.requests.append((request, timeout))
        if self.on_page is not None:
            self.on_page(len(self.requests))
        start = int(request.page_token or 0)
        end = start + request.page_size
        chunk = self.executions[start:end]
        self.yielded += len(chunk)
        more = end < len(self.executions)
        return SimpleNamespace(executions=chunk, next_page_token=str(end) if more else "")


def test_find_adopts_the_execution_that_carries_the_key():
    request = make_request()
    fake = FakeExecutions(
        [
            execution("new", 1, "someone-else"),
            execution("mine", 5, request.ledger_key),
            execution("older-dup", 6, request.ledger_key),
        ]
    )
    runner = CloudRunRunner(executions_client=fake, timeout=4.0, find_page_size=20)
    launch = runner.find(request, since=NOW - timedelta(minutes=30))
    assert launch is not None
    assert launch.execution == f"{JOB}/executions/mine" and launch.adopted is True
    [(sent, timeout)] = fake.requests
    assert sent.parent == JOB and sent.page_size == 20 and sent.show_deleted is True
    assert sent.page_token == ""
    assert 0 < timeout <= 4.0


def test_find_stops_at_executions_older_than_since():
    request = make_request()
    fake = FakeExecutions(
        [
            execution("recent", 1, None),
            execution("old", 31, request.ledger_key),
            execution("older", 40, None),
        ]
    )
    runner = CloudRunRunner(executions_client=fake, find_page_size=1)
    assert runner.find(request, since=NOW - timedelta(minutes=30)) is None
    assert fake.yielded == 2 and len(fake.requests) == 2  # no page past the first old one


def test_find_pages_back_to_since_however_many_executions_came_after():
    # The issue-11 case: far more launches of the job since the claim than one page holds.
    request = make_request()
    newer = [execution(f"e{i}", 1, None) for i in range(1050)]
    fake = FakeExecutions([*newer, execution("mine", 2, request.ledger_key)])
    runner = CloudRunRunner(executions_client=fake, find_page_size=100)
    found = runner.find(request, since=NOW - timedelta(minutes=30))
    assert found is not None and found.execution == f"{JOB}/executions/mine"
    assert len(fake.requests) == 11
    tokens = [sent.page_token for sent, _ in fake.requests]
    assert tokens == [""] + [str(100 * i) for i in range(1, 11)]


def test_find_reads_every_page_when_nothing_is_older_than_since():
    request = make_request()
    fake = FakeExecutions([execution(f"e{i}", 1, None) for i in range(25)])
    runner = CloudRunRunner(executions_client=fake, find_page_size=10)
    assert runner.find(request, since=NOW - timedelta(minutes=30)) is None
    assert fake.yielded == 25 and len(fake.requests) == 3


def test_find_out_of_budget_before_since_is_not_an_answer(monkeypatch):
    # Time, not a count, bounds the walk: past the budget "not found" would be a guess.
    import triggers.runners.cloudrun as cloudrun

    now = [1000.0]
    monkeypatch.setattr(cloudrun.time, "monotonic", lambda: now[0])

    def slow_page(number):
        now[0] += 4.0  # each page takes 4 s

    request = make_request()
    fake = FakeExecutions([execution(f"e{i}", 1, None) for i in range(50)], on_page=slow_page)
    runner = CloudRunRunner(executions_client=fake, find_page_size=5, find_budget=10.0)
    with pytest.raises(RetryableRunError, match="without reaching"):
        runner.find(request, since=NOW - timedelta(minutes=30))
    assert len(fake.requests) == 3  # 0 s, 4 s, 8 s; at 12 s the budget is spent
    # every page's own timeout is what is left of the budget, at most the call timeout
    assert [t for _, t in fake.requests] == [10.0, 6.0, 2.0]


def test_find_rejects_page_sizes_the_api_does_not_serve():
    with pytest.raises(ValueError, match="find_page_size"):
        CloudRunRunner(find_page_size=0)
    with pytest.raises(ValueError, match="find_page_size"):
        CloudRunRunner(find_page_size=1001)
    with pytest.raises(ValueError, match="find_budget"):
        CloudRunRunner(find_budget=0)


def test_find_takes_a_naive_since_as_utc_and_defaults_to_the_window():
    request = make_request()
    recent = execution("mine", 0, request.ledger_key)
    recent.create_time = datetime.now(UTC) - timedelta(minutes=10)
    runner = CloudRunRunner(executions_client=FakeExecutions([recent]))
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None)
    assert runner.find(request, since=naive) is not None
    assert runner.find(request) is not None  # default window: 1 h
    narrow = CloudRunRunner(
        executions_client=FakeExecutions([recent]), find_window=timedelta(minutes=5)
    )
    assert narrow.find(request) is None


@pytest.mark.parametrize(
    ("cause", "status"),
    [(gexc.ServiceUnavailable("down"), 503), (gexc.NotFound("no job"), 404), (_dropped(), None)],
)
def test_errors_while_finding_are_retryable(cause, status):
    class Failing:
        def list_executions(self, request, timeout):
            raise cause

    with pytest.raises(RetryableRunError) as info:
        CloudRunRunner(executions_client=Failing()).find(make_request(), since=NOW)
    assert info.value.status == status and info.value.__cause__ is cause


# ---------------------------------------------------------------------- clients


def test_emulator_endpoint_gets_one_reused_rest_client():
    runner = CloudRunRunner(endpoint="http://127.0.0.1:9")
    client = runner.jobs_client
    assert client is runner.jobs_client
    assert client.transport.kind == "rest"
    assert runner.executions_client.transport.kind == "rest"


def test_production_uses_grpc():
    from google.auth.credentials import AnonymousCredentials

    runner = CloudRunRunner(credentials=AnonymousCredentials())
    assert runner.jobs_client.transport.kind == "grpc"


def test_importing_and_constructing_imports_no_google_client():
    code = (
        "import sys\n"
        "from triggers.runners.cloudrun import CloudRunRunner\n"
        "CloudRunRunner(endpoint='http://127.0.0.1:9')\n"
        "heavy = [m for m in sys.modules if m.startswith(('google.cloud.run', 'google.api_core',"
        " 'grpc', 'requests', 'google.protobuf'))]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
