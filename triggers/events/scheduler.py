"""Cloud Scheduler ticks, from an HTTP target or a Pub/Sub target.

One tick is identified by job name + schedule time, never by a message id: Scheduler retries a
Pub/Sub target by publishing a *new* message. So ``id`` and ``dedup_hint`` are both
``job#schedule_time`` and every retry of a tick collapses onto one ledger entry.

Scheduler puts no attributes on the messages it publishes, so a Pub/Sub target is recognised by
our own convention: the project's Terraform module sets the ``scheduler_job`` attribute (and
``schedule_time`` when it can); without ``schedule_time`` the publish time stands in.

The job may be named by its id (``nightly-report``) or by its full resource name
(``projects/P/locations/L/jobs/nightly-report``): ``data.job_name``, ``id`` and so the dedup key
always use the id, which is what a rule's ``scheduler_job`` (or name) is, so a tick matches its
rule and keeps one identity whichever form the sender used; ``source`` keeps the full name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from triggers.errors import DecodeError
from triggers.events import _wire
from triggers.events.model import SCHEDULER_EXECUTED, Event
from triggers.events.pubsub import Delivery

JOB_ATTRIBUTE = "scheduler_job"
TIME_ATTRIBUTE = "schedule_time"
_SOURCE_PREFIX = "//cloudscheduler.googleapis.com/"
_FULL_JOB_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/jobs/(?P<job>[^/]+)$")


def job_id(name: str) -> str:
    """``projects/P/locations/L/jobs/J`` -> ``J``; a job id (or anything else) is kept."""
    full = _FULL_JOB_NAME.match(name)
    return full["job"] if full else name


def is_http_target(headers: Mapping[str, str]) -> bool:
    """``headers`` lower-cased. Either signal suffices: proxies may drop the custom header."""
    if headers.get("x-cloudscheduler", "").strip().lower() == "true":
        return True
    return "google-cloud-scheduler" in headers.get("user-agent", "").lower()


def is_pubsub_target(attributes: Mapping[str, str]) -> bool:
    return JOB_ATTRIBUTE in attributes


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z``, the way Scheduler writes times; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def _event(
    *,
    job: str,
    schedule_time: str,
    inferred: bool,
    form: str,
    text: str | None,
    attributes: Mapping[str, str],
    extensions: Mapping[str, Any],
) -> Event:
    short = job_id(job)
    tick = f"{short}#{schedule_time}"
    _, parsed = _wire.try_loads(text)
    return Event(
        id=tick,
        source=_SOURCE_PREFIX + (job if short != job else f"jobs/{job}"),
        type=SCHEDULER_EXECUTED,
        kind="scheduler",
        form=form,
        time=schedule_time,
        extensions=extensions,
        dedup_hint=tick,
        data={
            "job_name": short,
            "schedule_time": schedule_time,
            "schedule_time_inferred": inferred,
            "text": text,
            "json": parsed,
            "attributes": dict(attributes),
        },
    )


def from_http(headers: Mapping[str, str], body: bytes, now: Callable[[], datetime]) -> Event:
    """``headers`` lower-cased; ``now`` supplies the time of a manual run, which has none."""
    where = "Cloud Scheduler HTTP target"
    job = headers.get("x-cloudscheduler-jobname", "").strip()
    if not job:
        raise DecodeError("missing_field", f"{where}: header X-CloudScheduler-JobName is missing")
    schedule_time = headers.get("x-cloudscheduler-scheduletime", "").strip()
    # A "force run" from the console or `gcloud scheduler jobs run` sends no schedule time.
    inferred = not schedule_time
    if inferred:
        schedule_time = rfc3339(now())
    return _event(
        job=job,
        schedule_time=schedule_time,
        inferred=inferred,
        form="scheduler-http",
        text=_wire.utf8_or_none(body) if body else None,
        attributes={},
        extensions=MappingProxyType({}),
    )


def from_delivery(delivery: Delivery) -> Event:
    """A Pub/Sub target's message, through a raw push or an Eventarc Pub/Sub CloudEvent."""
    attributes = delivery.message.attributes
    where = f"Cloud Scheduler Pub/Sub target ({delivery.where}): {delivery.path}"
    job = attributes[JOB_ATTRIBUTE].strip()
    if not job:
        raise DecodeError("bad_field", f"{where}.attributes.{JOB_ATTRIBUTE} is empty")
    schedule_time = attributes.get(TIME_ATTRIBUTE, "").strip()
    inferred = not schedule_time
    if inferred:
        schedule_time = delivery.message.publish_time or delivery.time or ""
    if not schedule_time:
        raise DecodeError(
            "missing_field",
            f"{where}: neither attributes.{TIME_ATTRIBUTE} nor a publish time is present",
        )
    return _event(
        job=job,
        schedule_time=schedule_time,
        inferred=inferred,
        form="scheduler-pubsub",
        text=delivery.message.text,
        attributes=attributes,
        extensions=delivery.extensions,
    )
