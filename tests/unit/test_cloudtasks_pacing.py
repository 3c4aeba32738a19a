"""The pure parts of the Cloud Tasks emulator and adapter: token bucket, burst size, retry
backoff, the scaled clock, REST field parsing, the OIDC token, and how CloudTasksQueue reads
the client's exceptions."""

from __future__ import annotations

import base64
import json

import pytest
from google.api_core import exceptions as gexc

from triggers.emulators.cloudtasks.delivery import build_headers, oidc_token
from triggers.emulators.cloudtasks.pacing import (
    RetryPolicy,
    ScaledClock,
    TokenBucket,
    derived_burst_size,
)
from triggers.emulators.cloudtasks.resources import (
    HttpRequest,
    Queue,
    apply_queue_fields,
    parse_http_request,
    update_mask_paths,
)
from triggers.emulators.cloudtasks.wire import parse_timestamp, to_int_enums
from triggers.emulators.rpc import ApiError
from triggers.flow.cloudtasks import classify_error, queue_settings
from triggers.flow.queue import QueueUnavailable, TaskQueueError
from triggers.flow.spec import Limits

# -- token bucket -------------------------------------------------------------------------------


def test_a_full_bucket_gives_its_burst_then_one_token_per_period() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(0.0) == pytest.approx(0.5)
    assert not bucket.take(0.49)
    assert bucket.take(0.5)
    assert not bucket.take(0.5)


def test_a_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket.full(rate=10.0, capacity=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    # idle for an hour: still only two tokens
    assert [bucket.take(3600.0) for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize("rate", [1 / 60, 1.0, 3.0, 7.5, 500.0])
def test_dispatches_from_a_bucket_never_exceed_burst_plus_rate_times_window(rate: float) -> None:
    """Greedy taking at fine steps: in any window of W seconds, at most burst + rate*W."""
    burst = derived_burst_size(rate)
    bucket = TokenBucket.full(rate, burst, 0.0)
    step = 0.25 / rate
    times = [i * step for i in range(2000) if bucket.take(i * step)]
    window = 10 / rate
    for i, start in enumerate(times):
        inside = sum(1 for t in times[i:] if t < start + window)
        assert inside <= burst + rate * window + 1e-9


def test_a_rate_change_keeps_the_tokens_but_caps_them() -> None:
    bucket = TokenBucket.full(rate=100.0, capacity=20, now=0.0)
    bucket.reconfigure(rate=1.0, capacity=1, now=0.0)
    assert bucket.take(0.0) and not bucket.take(0.5) and bucket.take(1.0)


@pytest.mark.parametrize(
    ("rate", "burst"), [(500.0, 100), (100.0, 20), (10.0, 2), (5.0, 1), (1.0, 1), (1 / 60, 1)]
)
def test_the_burst_size_is_derived_from_the_rate(rate: float, burst: int) -> None:
    assert derived_burst_size(rate) == burst
    assert (
        Queue("q", max_dispatches_per_second=rate).as_json()["rateLimits"]["maxBurstSize"] == burst
    )


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_then_grows_linearly_then_caps_as_documented() -> None:
    policy = RetryPolicy(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [policy.backoff(n) for n in range(1, 10)] == [10, 20, 40, 80, 160, 240, 300, 300, 300]


def test_backoff_with_no_doublings_is_linear_from_the_start() -> None:
    policy = RetryPolicy(min_backoff=1, max_backoff=5, max_doublings=0)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 3, 4, 5, 5]


def test_backoff_of_a_huge_retry_number_stays_finite() -> None:
    assert (
        RetryPolicy(min_backoff=0.1, max_backoff=3600, max_doublings=10_000).backoff(10_000) == 3600
    )
    with pytest.raises(ValueError):
        RetryPolicy().backoff(0)


def test_a_task_is_given_up_only_when_both_limits_are_reached() -> None:
    assert not RetryPolicy(max_attempts=-1).exhausted(10**6, 10**9)
    assert RetryPolicy(max_attempts=3).exhausted(3, 0.0)
    assert not RetryPolicy(max_attempts=3).exhausted(2, 0.0)
    both = RetryPolicy(max_attempts=3, max_retry_duration=60)
    assert not both.exhausted(5, 59.0)
    assert not both.exhausted(2, 600.0)
    assert both.exhausted(3, 60.0)


# -- clock ---------------------------------------------------------------------------------------


def test_the_scaled_clock_runs_scale_times_faster_than_the_real_one() -> None:
    clock = ScaledClock(60.0, real_start=100.0, wall_start=1_000_000.0)
    assert clock.elapsed(101.0) == 60.0
    assert clock.epoch(102.0) == 1_000_120.0
    assert clock.real_seconds(60.0) == 1.0
    with pytest.raises(ValueError):
        ScaledClock(0, 0, 0)


# -- REST fields -----------------------------------------------------------------------------------


def test_an_update_mask_takes_camel_or_snake_case_and_refuses_output_only_fields() -> None:
    assert update_mask_paths("rate_limits.max_dispatches_per_second,retryConfig") == {
        "rateLimits.maxDispatchesPerSecond",
        "retryConfig",
    }
    assert update_mask_paths("") is None
    with pytest.raises(ApiError) as err:
        update_mask_paths("rateLimits.maxBurstSize")
    assert err.value.http_status == 400


def test_a_masked_update_changes_only_the_named_fields() -> None:
    queue = Queue("q")
    apply_queue_fields(queue, {"rateLimits": {"maxDispatchesPerSecond": 2}}, None)
    apply_queue_fields(queue, {"retryConfig": {"maxAttempts": -1}}, {"retryConfig.maxAttempts"})
    assert queue.max_dispatches_per_second == 2 and queue.retry.max_attempts == -1
    assert queue.retry.min_backoff == RetryPolicy().min_backoff


@pytest.mark.parametrize(
    "body",
    [
        {"rateLimits": {"maxDispatchesPerSecond": 501}},
        {"rateLimits": {"maxConcurrentDispatches": 5001}},
        {"retryConfig": {"maxAttempts": -2}},
        {"retryConfig": {"minBackoff": "10s", "maxBackoff": "1s"}},
        {"retryConfig": {"minBackoff": "ten seconds"}},
        {"rateLimits": "fast"},
    ],
)
def test_invalid_queue_settings_are_refused_with_400(body: dict) -> None:
    with pytest.raises(ApiError) as err:
        apply_queue_fields(Queue("q"), body, None)
    assert err.value.http_status == 400 and err.value.status == "INVALID_ARGUMENT"


def test_an_http_request_takes_enum_numbers_and_base64_bodies() -> None:
    request = parse_http_request(
        {
            "url": "http://127.0.0.1:1/x",
            "httpMethod": 4,
            "body": base64.b64encode(b"\x00hi").decode(),
            "oidcToken": {"serviceAccountEmail": "sa@p.iam.gserviceaccount.com"},
        }
    )
    assert (request.method, request.body, request.oidc_email) == (
        "PUT",
        b"\x00hi",
        "sa@p.iam.gserviceaccount.com",
    )
    assert request.as_json(full=False).get("body") is None
    assert request.as_json(full=True)["body"] == base64.b64encode(b"\x00hi").decode()
    assert (
        to_int_enums({"httpRequest": request.as_json(True), "view": "FULL"})["httpRequest"][
            "httpMethod"
        ]
        == 4
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"url": "ftp://x"},
        {"url": "http://x/", "body": "!!!"},
        {"url": "http://x/", "httpMethod": "GET", "body": "aGk="},
        {"url": "http://x/", "httpMethod": 99},
        {"url": "http://x/", "oidcToken": {"audience": "a"}},
        {"url": "http://x/", "body": base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()},
    ],
)
def test_invalid_http_requests_are_refused_with_400(raw: dict) -> None:
    with pytest.raises(ApiError) as err:
        parse_http_request(raw)
    assert err.value.http_status == 400


def test_timestamps_with_offsets_and_nanoseconds_parse_to_utc() -> None:
    when = parse_timestamp("2026-01-02T03:04:05.123456789+01:00", "t")
    assert when.isoformat() == "2026-01-02T02:04:05.123456+00:00"
    with pytest.raises(ApiError):
        parse_timestamp("yesterday", "t")


# -- what a target is sent -------------------------------------------------------------------------


def _claims(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")

    def decode(part: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    return decode(header), decode(payload), signature


def test_the_oidc_token_is_an_unsigned_jwt_with_googles_claims() -> None:
    header, claims, signature = _claims(
        oidc_token("sa@p.iam.gserviceaccount.com", "https://f", 1000.0)
    )
    assert header["alg"] == "none" and signature == ""
    assert claims["iss"] == "https://accounts.google.com"
    assert (claims["aud"], claims["email"], claims["iat"]) == (
        "https://f",
        "sa@p.iam.gserviceaccount.com",
        1000,
    )
    assert claims["exp"] > claims["iat"]


def test_cloud_tasks_headers_win_over_the_tasks_own_and_the_audience_defaults_to_the_url() -> None:
    request = HttpRequest(
        "http://127.0.0.1:9/t",
        headers={"X-CloudTasks-TaskName": "forged", "X-Mine": "1"},
        body=b"{}",
        oidc_email="sa@p",
    )
    headers = build_headers(
        request,
        queue_id="q",
        task_id="t1",
        retry_count=2,
        execution_count=1,
        eta=12.5,
        previous_response=503,
        now=1000.0,
    )
    assert headers["X-CloudTasks-TaskName"] == "t1" and headers["X-Mine"] == "1"
    assert headers["X-CloudTasks-TaskRetryCount"] == "2"
    assert headers["X-CloudTasks-TaskExecutionCount"] == "1"
    assert headers["X-CloudTasks-TaskPreviousResponse"] == "503"
    assert headers["Content-Type"] == "application/octet-stream"
    assert _claims(headers["Authorization"].removeprefix("Bearer "))[1]["aud"] == request.url


# -- CloudTasksQueue's reading of errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (gexc.AlreadyExists("exists"), None),
        (gexc.Conflict("409 from REST"), None),
        (gexc.Aborted("conflict"), QueueUnavailable),
        (gexc.TooManyRequests("quota"), QueueUnavailable),
        (gexc.ServiceUnavailable("down"), QueueUnavailable),
        (gexc.InternalServerError("oops"), QueueUnavailable),
        (gexc.DeadlineExceeded("slow"), QueueUnavailable),
        (gexc.Unauthorized("token"), QueueUnavailable),
        (gexc.RetryError("gave up", cause=None), QueueUnavailable),
        (ConnectionRefusedError("refused"), QueueUnavailable),
        (TimeoutError("timed out"), QueueUnavailable),
        (gexc.NotFound("no queue"), TaskQueueError),
        (gexc.PermissionDenied("no"), TaskQueueError),
        (gexc.InvalidArgument("bad"), TaskQueueError),
        (ValueError("a bug"), TaskQueueError),
    ],
)
def test_client_errors_map_to_exists_unavailable_or_refused(
    exc: Exception, expected: type | None
) -> None:
    error = classify_error(exc, "creating task 't' in queue projects/p/locations/l/queues/q")
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert "projects/p/locations/l/queues/q" in str(error)


def test_queue_settings_retry_forever_and_carry_the_rate_when_there_is_one() -> None:
    assert queue_settings(Limits("q", rate_per_second=1.0))["rate_limits"] == {
        "max_dispatches_per_second": 1.0
    }
    settings = queue_settings(Limits("q"))
    assert "rate_limits" not in settings
    assert settings["retry_config"]["max_attempts"] == -1
