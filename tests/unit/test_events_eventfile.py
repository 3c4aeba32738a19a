"""Sample-event files: the JSON format the CLI's `triggers plan EVENT_FILE` reads."""

from __future__ import annotations

import json

import pytest

from triggers.errors import DecodeError
from triggers.events import decode, parse_event_file


def test_envelope_with_json_value_body_is_reserialised_compactly():
    text = json.dumps({"headers": {"X-A": "1"}, "body": {"b": [1, 2], "s": "é"}}, indent=4)
    headers, body = parse_event_file(text)
    assert headers == {"X-A": "1"}
    assert body == '{"b":[1,2],"s":"é"}'.encode()


def test_envelope_with_string_body_is_utf8_text():
    headers, body = parse_event_file('{"headers": {}, "body": "not json ü"}')
    assert body == "not json ü".encode()


@pytest.mark.parametrize("value, raw", [(None, b"null"), (3, b"3"), ([], b"[]"), (True, b"true")])
def test_envelope_with_scalar_bodies(value, raw):
    assert parse_event_file(json.dumps({"body": value}))[1] == raw


def test_envelope_parts_default_to_empty():
    assert parse_event_file('{"headers": {"A": "b"}}') == ({"A": "b"}, b"")
    assert parse_event_file('{"body": ""}') == ({}, b"")


def test_description_is_ignored():
    assert parse_event_file('{"description": "x", "body": "y"}') == ({}, b"y")


def test_whole_file_is_the_body_without_headers_and_body_members():
    headers, body = parse_event_file('{"message": {"messageId": "1"}, "subscription": "s"}')
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {"message": {"messageId": "1"}, "subscription": "s"}


def test_whole_file_form_decodes():
    text = json.dumps({"message": {"messageId": "9"}, "subscription": "projects/p/subscriptions/s"})
    assert decode(*parse_event_file(text)).id == "9"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{", "orders.json: not valid JSON (Expecting property name"),
        ("", "orders.json: not valid JSON"),
        ('{"body": NaN}', "orders.json: not valid JSON (NaN is not valid JSON)"),
        ("[" * 100000, "orders.json: not valid JSON (nested too deeply)"),
        ('{"headers": [], "body": 1}', "orders.json: headers is an array, expected an object"),
        ('{"headers": {"X": 1}}', "orders.json: headers.X is a number, expected a string"),
        ('{"headers": {}, "bdy": 1}', "orders.json: unknown member 'bdy' next to headers/body"),
        ('{"body": "\\ud800"}', "orders.json: body contains a lone surrogate"),
    ],
)
def test_bad_files(text, fragment):
    with pytest.raises(DecodeError) as info:
        parse_event_file(text, "orders.json")
    assert info.value.reason == "bad_json"
    assert fragment in info.value.message


def test_default_name():
    with pytest.raises(DecodeError) as info:
        parse_event_file("{")
    assert info.value.message.startswith("<event>: ")
