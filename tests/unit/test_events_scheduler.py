"""Cloud Scheduler ticks: HTTP targets and Pub/Sub targets, identified by job + schedule time."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from triggers.errors import DecodeError
from triggers.events import SCHEDULER_EXECUTED, decode

JOB, TICK = "nightly-report", "2026-11-21T02:00:00Z"


def http(body=b'{"report": "daily-sales"}', **headers):
    h = {
        "Content-Type": "application/json",
        "User-Agent": "Google-Cloud-Scheduler",
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": JOB,
        "X-CloudScheduler-ScheduleTime": TICK,
        **headers,
    }
    return {k: v for k, v in h.items() if v is not None}, body


def pubsub_push(attrs, data=b'{"report": "daily-sales"}', message_id="m-1"):
    message = {
        "messageId": message_id,
        "publishTime": "2026-11-21T02:00:01.5Z",
        "attributes": attrs,
    }
    if data is not None:
        message["data"] = base64.b64encode(data).decode()
    body = {"message": message, "subscription": "projects/demo-project/subscriptions/ticks"}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def fixed(moment):
    def now():
        return moment

    return now


class TestHttpTarget:
    def test_tick(self):
        event = decode(*http())
        assert event.kind == "scheduler"
        assert event.form == "scheduler-http"
        assert event.type == SCHEDULER_EXECUTED
        assert event.id == f"{JOB}#{TICK}"
        assert event.source == f"//cloudscheduler.googleapis.com/jobs/{JOB}"
        assert event.time == TICK
        assert event.dedup_hint == f"{JOB}#{TICK}"
        assert event.default_dedup_key == f"{JOB}#{TICK}"
        assert event.data == {
            "job_name": JOB,
            "schedule_time": TICK,
            "schedule_time_inferred": False,
            "text": '{"report": "daily-sales"}',
            "json": {"report": "daily-sales"},
            "attributes": {},
        }

    def test_user_agent_alone_is_enough(self):
        assert decode(*http(**{"X-CloudScheduler": None})).kind == "scheduler"

    def test_header_alone_is_enough(self):
        headers, body = http(
            **{"User-Agent": None, "X-CloudScheduler": None, "X-CLOUDSCHEDULER": "TRUE"}
        )
        assert "User-Agent" not in headers and "X-CloudScheduler" not in headers
        assert decode(headers, body).kind == "scheduler"

    def test_header_false_without_user_agent_is_not_scheduler(self):
        headers, body = http(**{"User-Agent": None, "X-CloudScheduler": "false"})
        with pytest.raises(DecodeError) as info:
            decode(headers, body)
        assert info.value.reason == "unrecognised"

    def test_force_run_uses_now(self):
        moment = datetime(2026, 11, 21, 9, 30, 15, 250000, tzinfo=UTC)
        event = decode(*http(**{"X-CloudScheduler-ScheduleTime": None}), now=fixed(moment))
        assert event.data["schedule_time"] == "2026-11-21T09:30:15.250000Z"
        assert event.data["schedule_time_inferred"] is True
        assert event.id == f"{JOB}#2026-11-21T09:30:15.250000Z"

    def test_force_run_converts_other_zones_and_naive_times_to_utc(self):
        plus_two = datetime(2026, 11, 21, 11, 0, tzinfo=timezone(timedelta(hours=2)))
        naive = datetime(2026, 11, 21, 9, 0)
        headers, body = http(**{"X-CloudScheduler-ScheduleTime": None})
        assert decode(headers, body, now=fixed(plus_two)).time == "2026-11-21T09:00:00.000000Z"
        assert decode(headers, body, now=fixed(naive)).time == "2026-11-21T09:00:00.000000Z"

    def test_conversion_to_utc_does_not_depend_on_the_machines_zone(self, monkeypatch):
        # On a machine whose local zone is not UTC, a naive time is still taken as UTC and an
        # aware one converted to UTC (not to local time). CI machines run in UTC, which hides it.
        monkeypatch.setenv("TZ", "Asia/Tokyo")
        time.tzset()
        try:
            plus_two = datetime(2026, 11, 21, 11, 0, tzinfo=timezone(timedelta(hours=2)))
            naive = datetime(2026, 11, 21, 9, 0)
            headers, body = http(**{"X-CloudScheduler-ScheduleTime": None})
            for now in (plus_two, naive):
                assert decode(headers, body, now=fixed(now)).time == "2026-11-21T09:00:00.000000Z"
        finally:
            monkeypatch.undo()
            time.tzset()

    def test_default_now_is_utc(self):
        event = decode(*http(**{"X-CloudScheduler-ScheduleTime": None}))
        assert event.time.endswith("Z")
        parsed = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
        assert abs(parsed - datetime.now(UTC)) < timedelta(minutes=1)

    def test_now_is_not_called_when_the_header_is_present(self):
        def explode():
            raise AssertionError("now() called")

        assert decode(*http(), now=explode).time == TICK

    def test_empty_body(self):
        event = decode(*http(body=b""))
        assert event.data["text"] is None and event.data["json"] is None

    def test_non_json_body_is_text(self):
        data = decode(*http(body=b"run it")).data
        assert data["text"] == "run it" and data["json"] is None

    def test_non_utf8_body_has_no_text(self):
        data = decode(*http(body=b"\xff\x00")).data
        assert data["text"] is None and data["json"] is None

    def test_missing_job_name(self):
        with pytest.raises(DecodeError) as info:
            decode(*http(**{"X-CloudScheduler-JobName": None}))
        assert info.value.reason == "missing_field"
        assert info.value.message == (
            "Cloud Scheduler HTTP target: header X-CloudScheduler-JobName is missing"
        )

    def test_body_that_looks_like_a_push_is_still_a_tick(self):
        # Scheduler headers are checked before the body is sniffed.
        event = decode(*http(body=b'{"message": {"messageId": "1"}}'))
        assert event.kind == "scheduler"


class TestPubsubTarget:
    def test_tick_with_schedule_time_attribute(self):
        event = decode(*pubsub_push({"scheduler_job": JOB, "schedule_time": TICK}))
        assert event.kind == "scheduler"
        assert event.form == "scheduler-pubsub"
        assert event.id == event.dedup_hint == f"{JOB}#{TICK}"
        assert event.source == f"//cloudscheduler.googleapis.com/jobs/{JOB}"
        assert event.time == TICK
        assert event.data == {
            "job_name": JOB,
            "schedule_time": TICK,
            "schedule_time_inferred": False,
            "text": '{"report": "daily-sales"}',
            "json": {"report": "daily-sales"},
            "attributes": {"scheduler_job": JOB, "schedule_time": TICK},
        }

    def test_retries_with_new_message_ids_share_one_identity(self):
        first = decode(*pubsub_push({"scheduler_job": JOB, "schedule_time": TICK}, message_id="1"))
        retry = decode(*pubsub_push({"scheduler_job": JOB, "schedule_time": TICK}, message_id="2"))
        assert first.default_dedup_key == retry.default_dedup_key

    def test_publish_time_stands_in_for_a_missing_schedule_time(self):
        event = decode(*pubsub_push({"scheduler_job": JOB}))
        assert event.data["schedule_time"] == "2026-11-21T02:00:01.5Z"
        assert event.data["schedule_time_inferred"] is True

    def test_the_publish_time_leads_the_cloudevent_time_when_no_schedule_time(self):
        # The publish time is when Scheduler fired; Eventarc's ce-time is later, its routing.
        headers, body = self._eventarc({"scheduler_job": JOB}, publish_time="2026-11-21T02:00:00Z")
        event = decode(headers, body)
        assert event.data["schedule_time"] == "2026-11-21T02:00:00Z"
        assert event.data["schedule_time_inferred"] is True
        assert event.id == f"{JOB}#2026-11-21T02:00:00Z"

    def test_without_a_publish_time_the_cloudevent_time_stands_in(self):
        headers, body = self._eventarc({"scheduler_job": JOB})
        event = decode(headers, body)
        assert event.data["schedule_time"] == "2026-11-21T02:00:01Z"
        assert event.time == "2026-11-21T02:00:01Z"

    def test_cloudevent_extensions_are_kept(self):
        headers, body = self._eventarc({"scheduler_job": JOB, "schedule_time": TICK})
        headers["ce-traceparent"] = "00-abc-def-01"
        assert decode(headers, body).extensions == {"traceparent": "00-abc-def-01"}

    @staticmethod
    def _eventarc(attributes, publish_time=None):
        message = {"messageId": "m-1", "attributes": attributes}
        if publish_time:
            message["publishTime"] = publish_time
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "m-1",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": "//pubsub.googleapis.com/projects/demo-project/topics/ticks",
            "ce-time": "2026-11-21T02:00:01Z",
            "Content-Type": "application/json",
        }
        return headers, json.dumps({"message": message}).encode()

    def test_through_eventarc(self):
        message = {
            "messageId": "m-1",
            "attributes": {"scheduler_job": JOB, "schedule_time": TICK},
            "data": base64.b64encode(b"go").decode(),
        }
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "m-1",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": "//pubsub.googleapis.com/projects/demo-project/topics/ticks",
            "ce-time": "2026-11-21T02:00:01Z",
            "Content-Type": "application/json",
        }
        event = decode(headers, json.dumps({"message": message}).encode())
        assert event.form == "scheduler-pubsub"
        assert event.id == f"{JOB}#{TICK}"
        assert event.data["text"] == "go"

    def test_no_time_at_all(self):
        headers = {"Content-Type": "application/json"}
        body = {
            "message": {"messageId": "1", "attributes": {"scheduler_job": JOB}},
            "subscription": "projects/p/subscriptions/s",
        }
        with pytest.raises(DecodeError) as info:
            decode(headers, json.dumps(body).encode())
        assert info.value.reason == "missing_field"
        assert (
            "neither attributes.schedule_time nor a publish time is present" in info.value.message
        )

    def test_empty_job_attribute(self):
        with pytest.raises(DecodeError) as info:
            decode(*pubsub_push({"scheduler_job": " "}))
        assert info.value.reason == "bad_field"
        assert "message.attributes.scheduler_job is empty" in info.value.message

    def test_scheduler_convention_wins_over_storage_attributes(self):
        attrs = {"scheduler_job": JOB, "schedule_time": TICK, "eventType": "x", "bucketId": "b"}
        assert decode(*pubsub_push(attrs)).kind == "scheduler"


# -- a job named by its full resource name ----------------------------------------------------

FULL_JOB = f"projects/demo-project/locations/europe-west1/jobs/{JOB}"
OWNING_RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: nightly-report
    on: scheduler
    schedule: "0 2 * * *"
    job: nightly-report
  - name: renamed-job
    on: scheduler
    scheduler_job: weekly-digest
    job: nightly-report
"""


class TestFullJobResourceName:
    """Scheduler may name the job `projects/P/locations/L/jobs/J`; rules own it by its id J."""

    def rules(self):
        from triggers.rules import load_text

        return load_text(OWNING_RULES, environ={})

    def test_http_target_uses_the_job_id_and_keeps_the_full_name_in_source(self):
        event = decode(*http(**{"X-CloudScheduler-JobName": FULL_JOB}))
        assert event.data["job_name"] == JOB
        assert event.id == event.default_dedup_key == f"{JOB}#{TICK}"
        assert event.source == f"//cloudscheduler.googleapis.com/{FULL_JOB}"

    def test_http_target_matches_the_rule_that_owns_the_schedule(self):
        event = decode(*http(**{"X-CloudScheduler-JobName": FULL_JOB}))
        assert [rule.name for rule in self.rules().route(event)] == ["nightly-report"]

    def test_http_target_matches_a_rule_by_its_scheduler_job(self):
        full = "projects/demo-project/locations/europe-west1/jobs/weekly-digest"
        event = decode(*http(**{"X-CloudScheduler-JobName": full}))
        assert [rule.name for rule in self.rules().route(event)] == ["renamed-job"]

    def test_the_dedup_key_is_the_same_as_for_the_job_id(self):
        rule = self.rules().get("nightly-report")
        by_id = rule.plan(decode(*http()))
        by_full_name = rule.plan(decode(*http(**{"X-CloudScheduler-JobName": FULL_JOB})))
        assert by_full_name.dedup_key == by_id.dedup_key == f"{JOB}#{TICK}"
        assert by_full_name.ledger_key == by_id.ledger_key

    def test_pubsub_target_matches_and_names_the_tick_by_the_schedule(self):
        event = decode(*pubsub_push({"scheduler_job": FULL_JOB}))  # no schedule_time
        assert event.data["job_name"] == JOB
        assert event.data["attributes"]["scheduler_job"] == FULL_JOB  # as sent
        (rule,) = self.rules().route(event)
        assert rule.name == "nightly-report"
        # published 02:00:01.5: the tick is the 02:00 fire time, keyed like the HTTP tick
        assert rule.plan(event).dedup_key == f"{JOB}#{TICK}"

    def test_pubsub_target_with_a_schedule_time_attribute(self):
        event = decode(*pubsub_push({"scheduler_job": FULL_JOB, "schedule_time": TICK}))
        assert event.id == f"{JOB}#{TICK}"
        assert [rule.name for rule in self.rules().route(event)] == ["nightly-report"]

    @pytest.mark.parametrize(
        "name",
        [
            "projects/demo-project/jobs/nightly-report",  # not a Scheduler resource name
            "locations/europe-west1/jobs/nightly-report",
            "projects/p/locations/l/jobs/nightly-report/extra",
        ],
    )
    def test_other_slashed_names_are_kept_as_they_are(self, name):
        event = decode(*http(**{"X-CloudScheduler-JobName": name}))
        assert event.data["job_name"] == name
        assert self.rules().route(event) == []
