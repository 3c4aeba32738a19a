"""CloudEvents over HTTP, binary and structured mode, into the parts the decoders need.

The cloudevents SDK does the specification work (specversion, required attributes, extension
collection, ``data_base64``). It is imported inside the two ``parse_*`` functions only, so a
request in any other form never pays its import on a cold start. A binary-mode 1.0 event, the
form Eventarc delivers every event in, is the exception: once the checks below have passed, all
the SDK would do is collect the ``ce-*`` headers, so `binary_attributes` does that (~5 against
~50 µs per event) and a test holds it to the SDK's result.

Around the SDK we add what it leaves out: deterministic messages for the common mistakes,
attribute type checks, and no invented values (the SDK fills in a missing ``time`` with "now",
which would make decoding impure and lie about when the event happened).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from triggers.errors import DecodeError
from triggers.events import _wire

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

_REQUIRED = ("specversion", "id", "source", "type")
_OPTIONAL = ("subject", "time", "datacontenttype", "dataschema")
# Context attributes of CloudEvents 1.0 and 0.3; everything else is an extension attribute.
_CONTEXT = frozenset(_REQUIRED + _OPTIONAL + ("schemaurl", "datacontentencoding"))
_NOT_EXTENSIONS = _CONTEXT | {"data", "data_base64", "extensions"}


@dataclass(frozen=True, slots=True)
class CloudEventIn:
    """A CloudEvent as received: context attributes, extensions and the undecoded data.

    ``data`` is a JSON value (structured mode ``data`` member), ``bytes`` (the binary-mode body
    or a structured ``data_base64``) or ``None`` (no data). Interpreting bytes is up to the
    decoder of the event's type, because only it knows what the payload must be.
    """

    mode: str
    id: str
    source: str
    type: str
    subject: str | None
    time: str | None
    datacontenttype: str | None
    extensions: Mapping[str, Any]
    data: Any

    @property
    def form(self) -> str:
        return f"cloudevent-{self.mode}"


def _identity(data: Any) -> Any:
    # Keep the SDK from guessing at the payload (its default turns undecodable JSON into the
    # raw value silently); each decoder interprets data according to the event type.
    return data


def _from_http(headers: Mapping[str, str], body: bytes | str, where: str) -> Any:
    # Lazy imports: see the module docstring.
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    try:
        return from_http(headers, body, data_unmarshaller=_identity)
    except GenericException as exc:
        raise DecodeError("bad_cloudevent", f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        # Malformed input can also surface from inside the SDK as a TypeError or the like.
        # Whatever it raised, the request is not a CloudEvent the SDK can read.
        raise DecodeError(
            "bad_cloudevent",
            f"{where}: the CloudEvents SDK cannot read it ({type(exc).__name__}: {exc})",
        ) from None


def _reject_reserved(names: Any, where: str, spelling: str) -> None:
    # The SDK keeps extension attributes in an internal attribute called "extensions", so an
    # event attribute of that name would overwrite it; refuse it with a message that says so.
    if "extensions" in names:
        raise DecodeError(
            "bad_cloudevent",
            f"{where}: {spelling.format('extensions')} is not supported as an attribute name",
        )


def _extensions(attributes: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(
        {name: value for name, value in attributes.items() if name not in _NOT_EXTENSIONS}
    )


def parse_binary(headers: Mapping[str, str], body: bytes) -> CloudEventIn:
    """Binary mode: attributes in ``ce-*`` headers, data in the body. ``headers`` lower-cased."""
    where = "CloudEvent binary mode"
    mtype = _wire.media_type(headers.get("content-type"))
    if mtype.startswith("application/cloudevents"):
        raise DecodeError(
            "bad_cloudevent",
            f"{where}: a ce-specversion header and Content-Type {mtype} contradict each other"
            " (binary mode carries the data's own content type)",
        )
    _reject_reserved({key[3:] for key in headers if key.startswith("ce-")}, where, "header ce-{}")
    for name in _REQUIRED:
        if not headers.get(f"ce-{name}"):
            raise DecodeError(
                "bad_cloudevent", f"{where}: required header ce-{name} is missing or empty"
            )
    if headers.get("ce-specversion") == "1.0":
        attributes, data = binary_attributes(headers, body)
    else:  # 0.3, or a version the SDK will name in its refusal
        attributes, data = binary_attributes_by_sdk(headers, body, where)
    return binary_event(headers, attributes, data)


def binary_event(
    headers: Mapping[str, str], attributes: Mapping[str, Any], data: Any
) -> CloudEventIn:
    return CloudEventIn(
        mode="binary",
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        subject=headers.get("ce-subject"),
        time=headers.get("ce-time"),
        datacontenttype=headers.get("content-type"),
        extensions=_extensions(attributes),
        data=data if data else None,
    )


def binary_attributes(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], Any]:
    """The attributes and data of a binary-mode CloudEvent 1.0 that passed `parse_binary`'s
    checks, read from the ``ce-*`` headers: for what `binary_event` takes from them (id,
    source, type, extensions, data) the same as the SDK's `from_http`
    (`binary_attributes_by_sdk`), at a tenth of its cost on every event. The SDK also fills in
    a missing `time` with "now" and takes `datacontenttype` from the headers, which
    `binary_event` reads itself. tests/unit/test_cloudevent_binary.py compares the two paths
    on generated headers."""
    attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}
    return attributes, body or None


def binary_attributes_by_sdk(
    headers: Mapping[str, str], body: bytes, where: str = "CloudEvent binary mode"
) -> tuple[dict[str, Any], Any]:
    """The attributes and data of a binary-mode CloudEvent as the cloudevents SDK reads them."""
    event = _from_http(headers, body, where)
    return dict(event.get_attributes()), event.get_data() or None


def _check_structured(raw: Any, where: str) -> None:
    """Checks the SDK skips, with messages that name the attribute."""
    if not isinstance(raw, dict):
        raise DecodeError(
            "bad_cloudevent", f"{where}: body is {_wire.json_type_name(raw)}, expected an object"
        )
    for name in _REQUIRED:
        value = raw.get(name)
        if value is None:
            raise DecodeError("bad_cloudevent", f"{where}: required attribute {name} is missing")
        if not isinstance(value, str) or not value:
            raise DecodeError(
                "bad_cloudevent",
                f"{where}: attribute {name} must be a non-empty string,"
                f" not {_wire.json_type_name(value)}",
            )
    for name in _OPTIONAL:
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise DecodeError(
                "bad_cloudevent",
                f"{where}: attribute {name} must be a string, not {_wire.json_type_name(value)}",
            )
    _reject_reserved(raw, where, "member {}")
    if "data" in raw and "data_base64" in raw:
        raise DecodeError("bad_cloudevent", f"{where}: has both data and data_base64")
    if "data_base64" in raw:
        encoded = raw["data_base64"]
        if not isinstance(encoded, str):
            raise DecodeError(
                "bad_cloudevent",
                f"{where}: data_base64 must be a string, not {_wire.json_type_name(encoded)}",
            )
        try:
            _wire.b64decode(encoded, f"{where}: data_base64")
        except DecodeError as exc:
            # Base64 in the CloudEvents envelope is part of the spec, not of a Pub/Sub message.
            raise DecodeError("bad_cloudevent", exc.message) from None


def parse_structured(headers: Mapping[str, str], body: bytes, raw: Any = None) -> CloudEventIn:
    """Structured mode: the whole event is one JSON object in the body.

    ``raw`` is the already-parsed body when the dispatcher had to parse it to recognise the
    form (a JSON body with ``specversion`` but no CloudEvents content type).
    """
    where = "structured CloudEvent"
    text = _wire.require_utf8(body, f"{where}: body")
    if raw is None:
        raw = _wire.parse_json(text, f"{where}: body")
    _check_structured(raw, where)
    event = _from_http(headers, text, where)
    attributes = event.get_attributes()
    # The SDK hands a "data" member over re-serialised as JSON text; the value we parsed is the
    # same and saves another pass over a possibly large body. Else: data_base64 decoded to
    # bytes, or no data.
    data = raw["data"] if "data" in raw else (event.get_data() or None)
    return CloudEventIn(
        mode="structured",
        id=raw["id"],
        source=raw["source"],
        type=raw["type"],
        subject=raw.get("subject"),
        # Not attributes["time"]: the SDK invents "now" when the event has no time.
        time=raw.get("time"),
        datacontenttype=raw.get("datacontenttype"),
        extensions=_extensions(attributes),
        data=data,
    )


def json_object_data(event: CloudEventIn, where: str) -> dict[str, Any]:
    """The data of a Google event type, which is always a JSON object."""
    data = event.data
    if isinstance(data, bytes):
        mtype = _wire.media_type(event.datacontenttype)
        if mtype and not _wire.is_json_media_type(mtype):
            raise DecodeError(
                "unsupported_content_type",
                f"{where}: data content type {mtype} is not supported, expected application/json",
            )
        data = _wire.parse_json(data, f"{where}: data")
    if data is None:
        raise DecodeError("missing_field", f"{where}: data is missing")
    if not isinstance(data, dict):
        raise DecodeError(
            "bad_field", f"{where}: data is {_wire.json_type_name(data)}, expected an object"
        )
    return data
