"""The Firestore backend puts its deadline and retry on every RPC (pure: a stand-in GAPIC API).

The outage itself, with the real emulator behind a cut proxy, is in
tests/integration/test_ledger_outage.py; this checks the wiring: which calls get the bound,
which keep what the library passed, and that a client shared by two backends is bound once.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from google.api_core import exceptions
from google.api_core.gapic_v1.method import DEFAULT

from triggers.ledger._firestore_rpcs import BoundedRpcs, bound
from triggers.ledger.firestore import FirestoreBackend


class RecordingApi:
    """Records the keyword arguments of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args, **kwargs):
            self.calls.append((name, kwargs))
            return name

        return call


def test_rpcs_without_a_retry_or_timeout_get_the_backends():
    api = RecordingApi()
    bounded = BoundedRpcs(api, retry="RETRY", deadline=2.5)
    bounded.begin_transaction(request={})
    bounded.commit(request={}, retry=DEFAULT, timeout=None)
    [(_, begin), (_, commit)] = api.calls
    assert begin == {"request": {}, "retry": "RETRY", "timeout": 2.5}
    assert commit == {"request": {}, "retry": "RETRY", "timeout": 2.5}


def test_an_rpc_that_names_its_own_keeps_them():
    api = RecordingApi()
    BoundedRpcs(api, retry="RETRY", deadline=2.5).run_query(request={}, retry=None, timeout=9)
    assert api.calls == [("run_query", {"request": {}, "retry": None, "timeout": 9})]


def test_what_is_not_an_rpc_passes_through_untouched():
    api = RecordingApi()
    BoundedRpcs(api, retry="RETRY", deadline=2.5).document_path("p", "d", "x")
    assert api.calls == [("document_path", {})]


def test_a_shared_client_is_bound_once_with_the_last_policy():
    inner = RecordingApi()
    client = SimpleNamespace(_firestore_api_internal=None)
    client._firestore_api = inner  # what the Client's property returns before binding
    bound(client, "FIRST", 1.0)
    client._firestore_api = client._firestore_api_internal
    bound(client, "SECOND", 2.0)
    api = client._firestore_api_internal
    assert isinstance(api, BoundedRpcs) and api.api is inner
    assert (api.retry, api.deadline) == ("SECOND", 2.0)


def test_the_retry_covers_transient_errors_only_within_its_window():
    backend = FirestoreBackend(project="p", deadline=3.0, retry_seconds=2.0)
    retry = backend._rpc_retry()
    assert retry.timeout == 2.0
    for transient in (
        exceptions.ServiceUnavailable("x"),
        exceptions.TooManyRequests("x"),
        exceptions.DeadlineExceeded("x"),
        exceptions.InternalServerError("x"),
    ):
        assert retry._predicate(transient)
    for final in (exceptions.NotFound("x"), exceptions.Conflict("x"), exceptions.Aborted("x")):
        assert not retry._predicate(final)
    assert FirestoreBackend(project="p", retry_seconds=0)._rpc_retry() is None


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="deadline"):
        FirestoreBackend(project="p", deadline=0)
    with pytest.raises(ValueError, match="retry_seconds"):
        FirestoreBackend(project="p", retry_seconds=-1)
