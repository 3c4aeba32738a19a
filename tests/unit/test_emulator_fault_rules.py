"""Fault injection rules (pure)."""

from __future__ import annotations

import pytest

from triggers.emulators.faults import Faults
from triggers.emulators.rpc import ApiError


def test_error_fault_is_consumed_after_times_calls():
    f = Faults()
    f.fail("RunJob", 429, times=2)
    assert f.take("GetJob", "/v2/x").error is None
    assert f.take("RunJob", "/v2/x").error.status == 429
    assert f.take("RunJob", "/v2/x").error.status == 429
    assert f.take("RunJob", "/v2/x").error is None
    assert f.list() == []


def test_unlimited_faults_stay_until_cleared():
    f = Faults()
    fault = f.fail("*", 503, times=None)
    for method in ("RunJob", "GetOperation", "ListExecutions"):
        assert f.take(method, "/").error is fault
    assert fault.hits == 3
    f.clear()
    assert f.take("RunJob", "/").error is None


def test_match_restricts_by_path():
    f = Faults()
    f.fail("RunJob", 503, match="/jobs/csv-loader:")
    assert f.take("RunJob", "/v2/projects/p/locations/l/jobs/other:run").error is None
    assert f.take("RunJob", "/v2/projects/p/locations/l/jobs/csv-loader:run").error is not None


def test_latency_adds_up_and_combines_with_one_error_or_drop():
    f = Faults()
    f.add_latency("*", 0.1, times=1)
    f.add_latency("RunJob", 0.2)
    drop = f.drop_response("RunJob", mode="status", status=503)
    f.fail("RunJob", 500)
    decision = f.take("RunJob", "/")
    assert decision.latency == pytest.approx(0.3)
    assert decision.drop is drop and decision.error is None  # the older fault wins, the other waits
    decision = f.take("RunJob", "/")
    assert (
        decision.latency == pytest.approx(0.2)
        and decision.error.status == 500
        and decision.drop is None
    )


def test_remove_one_fault():
    f = Faults()
    a = f.fail("RunJob", 503)
    b = f.fail("GetJob", 503)
    assert f.remove(a.id) and not f.remove(a.id)
    assert [x["id"] for x in f.list()] == [b.id]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "explode"},
        {"method": "RunJob"},
        {"kind": "error", "method": "Nope"},
        {"kind": "error", "status": 200},
        {"kind": "error", "status": True},
        {"kind": "error", "times": 0},
        {"kind": "latency"},
        {"kind": "latency", "seconds": -1},
        {"kind": "drop", "mode": "vanish"},
        {"kind": "error", "colour": "red"},
        [],
    ],
)
def test_invalid_fault_bodies(body):
    with pytest.raises(ValueError):
        Faults().add_from_json(body)


def test_fault_from_json():
    f = Faults()
    fault = f.add_from_json({"kind": "drop", "method": "RunJob", "mode": "timeout"})
    assert (fault.kind, fault.mode, fault.seconds, fault.times) == ("drop", "timeout", 30.0, 1)
    assert f.add_from_json({"kind": "error", "status": 429, "times": None}).times is None


def test_injected_errors_look_like_google_errors():
    body = ApiError.injected(429).body()["error"]
    assert body["code"] == 429 and body["status"] == "RESOURCE_EXHAUSTED"
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert ApiError.injected(503).body()["error"]["status"] == "UNAVAILABLE"
    assert ApiError.injected(500, "custom").body()["error"]["message"] == "custom"
