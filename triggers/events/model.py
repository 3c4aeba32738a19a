"""The one value every decoder produces and every rule reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# CloudEvent types of the three sources. Scheduler has no Eventarc type of its own for HTTP
# targets; we use the Google Events name for a Scheduler job execution.
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_PREFIX = "google.cloud.storage.object.v1."
STORAGE_FINALIZED = STORAGE_PREFIX + "finalized"
STORAGE_DELETED = STORAGE_PREFIX + "deleted"
STORAGE_ARCHIVED = STORAGE_PREFIX + "archived"
STORAGE_METADATA_UPDATED = STORAGE_PREFIX + "metadataUpdated"
SCHEDULER_EXECUTED = "google.cloud.scheduler.job.v1.executed"

# Which family an event belongs to; rules' `on:` shorthands are spelled in these.
KINDS = ("pubsub", "storage", "scheduler", "generic")

# The input forms a request can arrive in (kept on the Event for logs and `triggers plan`).
FORMS = (
    "cloudevent-binary",
    "cloudevent-structured",
    "pubsub-push",
    "storage-notification",
    "scheduler-http",
    "scheduler-pubsub",
)

_CORE = ("id", "source", "type", "subject", "time")


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded, normalised event.

    ``document`` is the single dict that patterns match and templates render:
    ``{id, source, type, subject, time, <extensions...>, data}``. It is built once by the
    decoder and must be treated as read-only by everything downstream.

    ``dedup_hint`` is the identity of the *occurrence* when it differs from ``source#id``
    (a Scheduler tick is ``job#schedule_time``, because Scheduler retries carry new ids).
    """

    id: str
    source: str
    type: str
    kind: str
    form: str
    data: Any
    subject: str | None = None
    time: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    dedup_hint: str | None = None
    document: Mapping[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if self.form not in FORMS:
            raise ValueError(f"unknown event form {self.form!r}")
        doc: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
        }
        for name, value in self.extensions.items():
            if name not in _CORE and name != "data":
                doc[name] = value
        doc["data"] = self.data
        object.__setattr__(self, "document", doc)

    @property
    def default_dedup_key(self) -> str:
        """The occurrence identity used when a rule sets no key of its own."""
        return self.dedup_hint or f"{self.source}#{self.id}"

    @property
    def ref(self) -> EventRef:
        return EventRef(
            id=self.id, source=self.source, type=self.type, kind=self.kind, form=self.form
        )


@dataclass(frozen=True, slots=True)
class EventRef:
    """Enough to find an event again: what a RunRequest and a ledger record point back to.

    ``kind`` and ``form`` are kept so that `triggers replay` can rebuild the Event from the
    recorded document exactly as it was decoded (a Scheduler tick's default key depends on its
    form); they are None only in references built by hand.
    """

    id: str
    source: str
    type: str
    kind: str | None = None
    form: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"id": self.id, "source": self.source, "type": self.type}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.form is not None:
            out["form"] = self.form
        return out
