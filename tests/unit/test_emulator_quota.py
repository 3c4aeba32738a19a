"""The Cloud Run emulator's jobs.run quota: N per emulator minute per region, then 429."""

from __future__ import annotations

import pytest

from triggers.emulators.cloudrun.quota import RunQuota
from triggers.emulators.rpc import ApiError


def test_the_quota_refuses_past_n_per_minute_per_region_with_429():
    now = [0.0]
    quota = RunQuota(3, clock=lambda: now[0])
    for _ in range(3):
        quota.take("europe-west1")
    with pytest.raises(ApiError) as refused:
        quota.take("europe-west1")
    assert (refused.value.http_status, refused.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert "per minute per region" in refused.value.message
    quota.take("us-central1")  # another region has its own minute
    now[0] = 60.0
    quota.take("europe-west1")  # the first three left the window
    assert quota.refused == 1 and len(quota.accepted_at) == 5


def test_the_minute_follows_the_time_scale():
    now = [0.0]
    quota = RunQuota(1, time_scale=60.0, clock=lambda: now[0])
    quota.take("r")
    now[0] = 0.5  # 30 emulator seconds
    with pytest.raises(ApiError):
        quota.take("r")
    now[0] = 1.0  # a whole emulator minute
    quota.take("r")
    assert quota.accepted_at == [0.0, 60.0]


@pytest.mark.parametrize(("spec", "per_minute"), [("180/min", 180), ("3/s", 180), ("60/h", 1)])
def test_quota_specs(spec, per_minute):
    assert RunQuota.parse(spec).per_minute == per_minute


@pytest.mark.parametrize("spec", ["", "0/min", "180", "180/day", "-1/s"])
def test_bad_quota_specs_are_refused(spec):
    with pytest.raises(ValueError, match="180/min"):
        RunQuota.parse(spec)


def test_reset_forgets_the_minute():
    quota = RunQuota(1, clock=lambda: 0.0)
    quota.take("r")
    with pytest.raises(ApiError):
        quota.take("r")
    quota.reset()
    quota.take("r")
    assert (quota.refused, quota.accepted_at) == (0, [0.0])


def test_the_emulator_command_refuses_a_bad_quota(capsys):
    from triggers.emulators.server import main

    assert main(["--jobs", "config/jobs.yaml", "--run-quota", "lots"]) == 2
    assert "a run quota looks like 180/min" in capsys.readouterr().err
