"""The ledger's direct Firestore writes are the very messages the client would send.

`RawDocuments` builds a claim's `create` and its owner's precondition `update` as protobufs
(triggers/ledger/_firestore_raw.py). These tests hold it to google-cloud-firestore's own
`pbs_for_create` / `pbs_for_update` on generated documents of every value kind a ledger record
has (text, times, integers, flags, None, the reconciler's maps) and some it never has, so a
difference in encoding, or a change in the client's, fails here. Writing them to the emulator
is covered by every Firestore ledger test in tests/integration.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import write
from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from triggers.ledger._firestore_raw import RawDocuments, update_time_pb

COLLECTION = "triggers-runs"


@pytest.fixture(scope="module")
def client():
    # Building a client connects nothing; only the messages are compared here.
    return firestore.Client(project="demo-writes", credentials=AnonymousCredentials())


@pytest.fixture(scope="module")
def writes(client):
    return RawDocuments(client, COLLECTION)


field_names = st.from_regex(r"[a-z][a-z_]{0,14}", fullmatch=True)
aware_times = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    aware_times,
    st.datetimes(min_value=datetime(1971, 1, 1)),  # naive: the client's rules (local time)
)
values = st.one_of(
    scalars,
    st.dictionaries(field_names, scalars, max_size=4),  # `outcome`
    st.lists(st.one_of(st.integers(0, 9), st.text(max_size=5)), max_size=4),
)
documents = st.dictionaries(field_names, values, min_size=1, max_size=12)
keys = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)


def client_message(message):
    return write.Write.pb(message)


@given(key=keys, data=documents)
def test_create_is_the_clients_create(client, writes, key, data):
    # GIVEN a document as the ledger would write it
    path = client.collection(COLLECTION).document(key)._document_path
    # WHEN it is built directly and by the client
    ours = writes.create_write(key, data)
    (theirs,) = _helpers.pbs_for_create(path, data)
    # THEN the two messages are the same, byte for byte
    assert ours == client_message(theirs)
    assert ours.SerializeToString(deterministic=True) == client_message(theirs).SerializeToString(
        deterministic=True
    )


@given(
    key=keys,
    data=documents,
    seconds=st.integers(0, 2**33),
    nanos=st.integers(0, 999_999_999),
)
def test_update_is_the_clients_update_with_a_last_update_time(
    client, writes, key, data, seconds, nanos
):
    # GIVEN the update time of our last write, as the server sent it (nanoseconds included)
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    path = client.collection(COLLECTION).document(key)._document_path
    option = client.write_option(last_update_time=stamp)
    # WHEN the precondition update is built directly and by the client
    ours = writes.update_write(key, data, stamp)
    (theirs,) = _helpers.pbs_for_update(path, data, option)
    # THEN they are the same message: fields, mask and precondition
    assert ours == client_message(theirs)


def test_ledger_times_take_the_fast_path_and_keep_microseconds(writes):
    moment = datetime(2026, 12, 5, 9, 30, 1, 123456, tzinfo=UTC)
    value = writes.value(moment)
    assert value.timestamp_value.seconds == int(moment.timestamp())
    assert value.timestamp_value.nanos == 123456000


def test_a_nanosecond_time_keeps_its_nanoseconds(writes):
    from google.api_core.datetime_helpers import DatetimeWithNanoseconds

    moment = DatetimeWithNanoseconds(2026, 12, 5, 9, 30, 1, nanosecond=123456789, tzinfo=UTC)
    assert writes.value(moment).timestamp_value.nanos == 123456789


def test_update_time_of_a_client_write_result_is_its_timestamp():
    stamp = timestamp_pb2.Timestamp(seconds=1_800_000_000, nanos=7)
    result = write.WriteResult(update_time=stamp)
    assert update_time_pb(result) == stamp


def test_a_value_the_client_refuses_is_refused(writes):
    with pytest.raises(TypeError):
        writes.value(object())
