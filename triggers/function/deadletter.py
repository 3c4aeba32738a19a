"""Dead letters: what was rejected for good, published to a Pub/Sub topic for a later look.

A request is *rejected* when no retry can ever make it succeed: it is not an event we can decode
(bad input), a rule's template fails for it, or Cloud Run refuses the run for good (a permanent
API error). The function acknowledges such requests, so without a copy elsewhere the event is
gone; with `TRIGGERS_DEAD_LETTER_TOPIC` set, `App` publishes one message per rejection:

    data        the original request body, byte for byte
    attributes  reason, rule, event_id, detail, content_type, ce_* (see docs/deadletters.md)

Publishing is best effort. A failure (topic missing, permission denied, timeout) is logged at
ERROR and never changes the function's answer: an acknowledged event stays acknowledged, and the
rejection is still in the ledger. Delivery is at least once: a redelivered request that is
rejected again is published again.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any, Protocol

log = logging.getLogger("triggers.function.deadletter")

# Pub/Sub limits (https://cloud.google.com/pubsub/quotas#resource_limits).
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTES = 100
# A publish request is at most 10 MB, attributes included: a larger body is not sent.
MAX_DATA_BYTES = 9 * 1024 * 1024

TOPIC_PATTERN = re.compile(r"^projects/[^/]+/topics/[^/]+$")

_TRUNCATED = "…"
# Request headers that describe the event (a binary CloudEvent's attributes, a Scheduler HTTP
# target's job and tick) and are kept as attributes; other headers are about the delivery.
_KEPT_HEADERS = ("ce-", "x-cloudscheduler")


class DeadLetters(Protocol):
    """Where rejected requests go. Implementations must not raise for a failed delivery."""

    def publish(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        reason: str,
        rule: str | None,
        event_id: str | None,
        detail: str,
        push_topic: str | None = None,
    ) -> None: ...


def truncate(value: str, limit: int = MAX_ATTRIBUTE_VALUE_BYTES) -> str:
    """`value` cut to at most `limit` bytes of UTF-8, on a character boundary, ending in `…`
    when something was cut. A character UTF-8 cannot encode (a lone surrogate in a header a
    client sent) is written as its escape: a dead letter must never fail on what it reports."""
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    encoded = value.encode("utf-8")
    if len(encoded) <= limit:
        return value
    room = limit - len(_TRUNCATED.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore") + _TRUNCATED


def attributes(
    body: bytes,
    headers: Mapping[str, str],
    *,
    reason: str,
    rule: str | None,
    event_id: str | None,
    detail: str,
    push_topic: str | None = None,
) -> dict[str, str]:
    """The attributes of a dead letter: ours first, then the request's `ce-*` and
    `x-cloudscheduler*` headers as `ce_*` and `x_cloudscheduler*` (lower case, `-` as `_`), every
    value within Pub/Sub's 1024-byte limit: enough to rebuild the request and decode it again
    (`triggers replay --from-topic`). Absent values are left out rather than sent empty.
    `push_topic` is the topic a push endpoint named (`?topic=`): not in the body, so kept here."""
    out: dict[str, str] = {"reason": reason}
    if rule is not None:
        out["rule"] = rule
    if event_id is not None:
        out["event_id"] = event_id
    if detail:
        out["detail"] = detail
    if push_topic:
        out["push_topic"] = push_topic
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if content_type:
        out["content_type"] = content_type
    if len(body) > MAX_DATA_BYTES:
        out["data_omitted"] = (
            f"the body of {len(body)} bytes is over the {MAX_DATA_BYTES}-byte limit"
        )
    for name, value in sorted(headers.items(), key=lambda kv: kv[0].lower()):
        lowered = name.lower()
        if not lowered.startswith(_KEPT_HEADERS) or len(out) >= MAX_ATTRIBUTES:
            continue
        key = lowered.replace("-", "_")
        if key in out or len(key.encode("utf-8")) > MAX_ATTRIBUTE_KEY_BYTES:
            continue
        out[key] = str(value)
    return {key: truncate(value) for key, value in out.items()}


class PubSubDeadLetters:
    """Publishes dead letters to `topic` (`projects/P/topics/T`) with google-cloud-pubsub.

    The client is created on first use, once per instance (thread-safe); each publish waits up
    to `timeout` seconds for the server to accept the message. Pass `client` to use a
    PublisherClient built elsewhere (tests: one bound to the emulator).
    """

    def __init__(self, topic: str, *, timeout: float = 10.0, client: Any = None) -> None:
        if not TOPIC_PATTERN.match(topic):
            raise ValueError(
                f"dead-letter topic must be projects/PROJECT/topics/TOPIC, not {topic!r}"
            )
        self.topic = topic
        self.timeout = timeout
        self._client = client
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.cloud.pubsub_v1 import PublisherClient

                    self._client = PublisherClient()
        return self._client

    def publish(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        reason: str,
        rule: str | None,
        event_id: str | None,
        detail: str,
        push_topic: str | None = None,
    ) -> None:
        attrs = attributes(
            body,
            headers,
            reason=reason,
            rule=rule,
            event_id=event_id,
            detail=detail,
            push_topic=push_topic,
        )
        data = b"" if "data_omitted" in attrs else bytes(body)
        try:
            future = self.client().publish(self.topic, data, **attrs)
            message_id = future.result(timeout=self.timeout)
        except Exception as exc:  # best effort: the answer to the sender must not change
            log.error(
                "could not publish a dead letter to %s: %s",
                self.topic,
                exc,
                extra={"labels": _labels("dead_letter_failed", reason, rule, event_id)},
            )
            return
        log.info(
            "dead-lettered %s to %s as message %s",
            event_id or "a request",
            self.topic,
            message_id,
            extra={"labels": _labels("dead_letter", reason, rule, event_id)},
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()


def _labels(kind: str, reason: str, rule: str | None, event_id: str | None) -> dict[str, str]:
    # `kind` is what the Terraform module's dead-letter metric selects (terraform/monitoring.tf).
    labels = {"kind": kind, "dead_letter_reason": truncate(reason, 256)}
    if rule is not None:
        labels["rule"] = rule
    if event_id is not None:
        labels["event_id"] = event_id
    return labels


def build_dead_letters(topic: str | None, *, timeout: float = 10.0) -> PubSubDeadLetters | None:
    """The sink for `TRIGGERS_DEAD_LETTER_TOPIC`, or None when it is unset.

    A configured topic without google-cloud-pubsub installed fails here, when the function
    starts, rather than at the first rejected event.
    """
    if not topic:
        return None
    import importlib.util

    try:
        found = importlib.util.find_spec("google.cloud.pubsub_v1") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise RuntimeError(
            "TRIGGERS_DEAD_LETTER_TOPIC is set but google-cloud-pubsub is not installed; "
            "add google-cloud-pubsub to the function's requirements"
        )
    return PubSubDeadLetters(topic, timeout=timeout)
