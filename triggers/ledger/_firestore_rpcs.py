"""The Firestore backend's bound on every RPC: a deadline and a retry policy on the client's
GAPIC API, and how a failed transaction's errors are read."""

from __future__ import annotations

from typing import Any

# The Firestore RPCs the backend's calls can reach (through documents, queries, transactions).
RPCS = frozenset(
    {
        "get_document",
        "batch_get_documents",
        "create_document",
        "update_document",
        "delete_document",
        "list_documents",
        "begin_transaction",
        "commit",
        "rollback",
        "run_query",
        "run_aggregation_query",
        "batch_write",
    }
)


class BoundedRpcs:
    """The client's Firestore API (its GAPIC client) with a deadline and a retry policy on
    every RPC that does not name its own.

    The document, query and transaction methods of google-cloud-firestore take a retry and a
    timeout, but a transaction's begin, commit and rollback do not: they always use the GAPIC
    defaults (a 60 s deadline, retried). Their one common path is the client's
    `_firestore_api`, so that is where the bound goes. A float timeout is a deadline for the
    call with all its retries (`TimeToDeadlineTimeout`).
    """

    def __init__(self, api: Any, retry: Any, deadline: float) -> None:
        self.api = api
        self.retry = retry
        self.deadline = deadline

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.api, name)
        if name not in RPCS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            from google.api_core.gapic_v1.method import DEFAULT

            if kwargs.get("retry", DEFAULT) is DEFAULT:
                kwargs["retry"] = self.retry
            if kwargs.get("timeout", DEFAULT) in (None, DEFAULT):
                kwargs["timeout"] = self.deadline
            return target(*args, **kwargs)

        return call


def bound(client: Any, retry: Any, deadline: float) -> None:
    """Put `BoundedRpcs` between `client` and its GAPIC client (re-bound if it was already:
    a client shared by several backends takes the last one's policy)."""
    api = client._firestore_api  # creates the GAPIC client (and its channel) if need be
    if isinstance(api, BoundedRpcs):
        api = api.api
    client._firestore_api_internal = BoundedRpcs(api, retry, deadline)


def api_error_in(exc: BaseException, exceptions: Any) -> BaseException | None:
    """The first Google API error (or retry deadline) along `exc`'s chain of causes."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, exceptions.GoogleAPIError):
            return error
        error = error.__cause__ or error.__context__
    return None


def gave_up(exc: ValueError, exceptions: Any) -> bool:
    """Whether a ValueError is `@transactional` giving up after ABORTED commits.

    It raises ValueError from the last Aborted; a failing rollback afterwards may replace it
    with another ValueError whose context is the first, so look along the whole chain.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, exceptions.Aborted) or "Failed to commit transaction" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
