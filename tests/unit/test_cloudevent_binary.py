"""A binary-mode CloudEvent 1.0 is read from its headers directly, as the SDK would read it.

`cloudevent.binary_attributes` replaces the cloudevents SDK's `from_http` for binary-mode 1.0
events (triggers/events/cloudevent.py). These tests generate header sets, with the attribute
names that are special to the SDK (data, data_base64, datacontenttype, time, schemaurl, an
empty name) mixed in, and check that the event `parse_binary` builds is the same either way.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggers.errors import DecodeError
from triggers.events import cloudevent
from triggers.events._decode import decode

_SPECIAL = ["data", "data_base64", "datacontenttype", "dataschema", "time", "subject"]
_SPECIAL += ["schemaurl", "datacontentencoding", "", "bucket", "traceparent", "id-x"]
_names = st.sampled_from(_SPECIAL) | st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=16)


@st.composite
def binary_requests(draw):
    headers = {f"ce-{name}": draw(_values) for name in draw(st.lists(_names, max_size=8))}
    headers.update(
        {
            "ce-specversion": "1.0",
            "ce-id": draw(_values.filter(bool)),
            "ce-source": draw(_values.filter(bool)),
            "ce-type": draw(_values.filter(bool)),
        }
    )
    if draw(st.booleans()):
        headers["content-type"] = draw(st.sampled_from(["application/json", "text/csv", ""]))
    body = draw(st.binary(max_size=16))
    return headers, body


@given(binary_requests())
def test_the_headers_read_directly_are_what_the_sdk_reads(request):
    # GIVEN a binary-mode 1.0 request with any mix of attribute headers
    headers, body = request
    # WHEN it is read directly and through the SDK
    direct = cloudevent.binary_event(headers, *cloudevent.binary_attributes(headers, body))
    by_sdk = cloudevent.binary_event(headers, *cloudevent.binary_attributes_by_sdk(headers, body))
    # THEN the events are the same: id, source, type, subject, time, extensions and data
    assert direct == by_sdk
    assert dict(direct.extensions) == dict(by_sdk.extensions)


def test_parse_binary_takes_the_direct_path_for_1_0_and_the_sdk_for_0_3(monkeypatch):
    calls = []
    real = cloudevent.binary_attributes_by_sdk

    def spy(headers, body, where="CloudEvent binary mode"):
        calls.append(headers["ce-specversion"])
        return real(headers, body, where)

    monkeypatch.setattr(cloudevent, "binary_attributes_by_sdk", spy)
    base = {"ce-id": "1", "ce-source": "//s", "ce-type": "t", "ce-bucket": "b"}
    one = cloudevent.parse_binary({**base, "ce-specversion": "1.0"}, b"{}")
    old = cloudevent.parse_binary({**base, "ce-specversion": "0.3"}, b"{}")
    assert calls == ["0.3"]
    assert one.extensions == old.extensions == {"bucket": "b"}


def test_an_unknown_spec_version_is_still_refused_with_the_sdks_words():
    headers = {"ce-specversion": "2.0", "ce-id": "1", "ce-source": "//s", "ce-type": "t"}
    with pytest.raises(DecodeError, match="bad_cloudevent|specversion") as refused:
        decode(headers, b"{}")
    assert "2.0" in str(refused.value)
