"""`FirestoreBackend`: the ledger as one Firestore document per (rule, dedup key).

How the primitives map (docs/ledger.md has the round-trip counts and index advice):

* create  — a write with precondition exists=false, what `DocumentReference.create()` sends
            (built directly, _firestore_raw.py, as is the update below): of any number
            of concurrent creators exactly one wins, the others get AlreadyExists. Firestore does
            not send the current document with the conflict, so `create` reads it, with a field
            mask (one unary GetDocument): the fields a claim decision and a duplicate's answer
            need, not the big `event`, `event_document`, `request` and `outcome` (a summary,
            `RecordExists`).
* replace — a transaction: read the token, compare, overwrite.
* update  — the same transaction, unless this backend wrote the record last: then one write
            with an update-time precondition proves nobody has touched it since (so the token is
            still ours) without reading it. That is the common path, claim then `launched` in
            one function instance, and it makes a new event cost two round trips, not four.
* count_duplicate — off the request path: the count is noted in memory and a daemon thread
            writes each record's total at most once per `duplicate_flush_seconds`, as one
            `update()` with a server-side `Increment` (duplicate_counts.py); 0 writes it at once.
* list    — one query: equality filters and a `created_at` range, ordered by `created_at`; by
            event id or execution, one equality query and the rest done here (no composite
            index needed).
* with_prefix — one query: a range on the document id.

Every Firestore RPC the backend makes (transactions' begin, commit and rollback included) has
an explicit deadline, ``deadline`` seconds with its retries, and retries only transient errors
(UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL) for at most ``retry_seconds``,
instead of the client's defaults (60 s and more): when Firestore is unreachable a call fails
within seconds and the function answers 503 well inside a push deadline. Retrying a write is
safe here: a create or a transaction that had in fact committed is recognised by its token.
(_firestore_rpcs.py puts the bound on the client.) How a record lies in a document is
_firestore_codec.py.

`google.cloud.firestore` is imported on first use, never at import: the import alone costs
~0.5 s, which a cold start should pay only if this backend is actually used.
"""

from __future__ import annotations

import builtins
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._firestore_codec import (
    SUMMARY_FIELDS,
    UPDATABLE,
    decode_record,
    derived_fields,
    encode_field,
    encode_record,
    utc_time,
)
from ._firestore_raw import RawDocuments, update_time_pb
from ._firestore_rpcs import api_error_in, bound, gave_up
from .base import LedgerContention, RecordExists
from .duplicate_counts import DEFAULT_MAX_KEYS, PendingDuplicates
from .records import Record, Status, execution_lookup, matches, newest_first

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps the import lazy at runtime
    from google.cloud.firestore import Client

DEFAULT_COLLECTION = "triggers-runs"
DEFAULT_DATABASE = "(default)"

# Remember the update time of this many of our own writes (one entry is ~150 bytes).
_REMEMBERED_WRITES = 4096

# Backoff between retries of a transient error, within `retry_seconds`.
_RETRY_INITIAL = 0.1
_RETRY_MAXIMUM = 1.0


class FirestoreBackend:
    """The ledger primitives over a Firestore collection; document ids are the ledger keys."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        project: str | None = None,
        database: str = DEFAULT_DATABASE,
        collection: str = DEFAULT_COLLECTION,
        transaction_attempts: int = 5,
        deadline: float = 10.0,
        retry_seconds: float = 5.0,
        duplicate_flush_seconds: float = 1.0,
        max_pending_duplicates: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if client is not None and project is not None:
            raise ValueError("pass either a Firestore client or a project, not both")
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        if retry_seconds < 0:
            raise ValueError("retry_seconds must not be negative")
        if duplicate_flush_seconds < 0:
            raise ValueError("duplicate_flush_seconds must not be negative")
        self.deadline = deadline
        self.retry_seconds = retry_seconds
        self._client = client
        self.project = project
        self.database = database
        self.collection = collection
        self.transaction_attempts = transaction_attempts
        # `calls` counts primitives (comparable across backends); `rpcs` counts the Firestore
        # round trips they cost, by kind (the client's own transport retries not included).
        self.calls: Counter[str] = Counter()
        self.rpcs: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._written: OrderedDict[str, tuple[str, Any]] = (
            OrderedDict()
        )  # key -> (token, update Timestamp)
        self._fs: Any = None  # the google.cloud.firestore module, once imported
        self._direct: RawDocuments | None = None  # the hot RPCs (_firestore_raw.py), once built
        self._bounded = False  # the client's RPCs carry our deadline and retry (`bound`)
        self._exceptions: Any = None  # google.api_core.exceptions, likewise
        # Duplicate counts wait here and are written off the request path (None: at once).
        self.duplicate_flush_seconds = duplicate_flush_seconds
        self.duplicates: PendingDuplicates | None = (
            PendingDuplicates(
                self._write_duplicates,
                interval=duplicate_flush_seconds,
                max_keys=max_pending_duplicates,
                name=f"firestore ledger {collection}",
            )
            if duplicate_flush_seconds > 0
            else None
        )

    # -- primitives -------------------------------------------------------------------------

    def create(self, record: Record) -> None:
        _, exceptions = self._firestore()
        self._count("create", commit=1)
        try:
            update_time = self._raw().create(record.key, encode_record(record))
        except exceptions.Conflict:  # AlreadyExists is a Conflict
            # Possibly our own write, committed by a try whose reply was lost and reported as a
            # conflict by the retry: the ledger compares tokens. It gets the summary, so a
            # duplicate costs this read and nothing more on the request path; None if the
            # record vanished since (the ledger's next pass creates it again).
            raise RecordExists(self._summary(record.key)) from None
        self._remember(record.key, record.token, update_time)

    def _summary(self, key: str) -> Record | None:
        """The record without its big fields (empty: `{}` / None), in one masked read."""
        self._count(None, read=1)
        fields = self._raw().get(key, SUMMARY_FIELDS)
        if fields is None:
            return None
        return decode_record(key, {"event": {}, "request": {}, **fields})

    def get(self, key: str) -> Record | None:
        self._count("get", read=1)
        snapshot = self._doc(key).get()
        return decode_record(key, snapshot.to_dict()) if snapshot.exists else None

    def replace(self, record: Record, expected_token: str) -> bool:
        data = encode_record(record)

        def write(transaction: Any, ref: Any) -> None:
            transaction.set(ref, data)

        return self._compare_and_set("replace", record.key, expected_token, record.token, write)

    def update(self, key: str, token: str, changes: dict[str, Any]) -> bool:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update ledger record fields {sorted(unknown)}")
        if not changes:
            raise ValueError("update needs at least one field to change")
        data = {name: encode_field(name, value) for name, value in changes.items()}
        data.update(derived_fields(changes))
        new_token = data.get("token", token)
        _, exceptions = self._firestore()

        last_write = self._last_write(key, token)
        if last_write is not None:
            self._count("update", commit=1)
            try:
                update_time = self._raw().update(key, data, last_write)
            except (exceptions.FailedPrecondition, exceptions.NotFound):
                # Written since (a duplicate counted, a takeover, another instance): the update
                # time proves nothing any more; ask the token, in a transaction.
                self._forget(key)
            else:
                self._remember(key, new_token, update_time)
                return True
        else:
            self._count("update")

        def write(transaction: Any, ref: Any) -> None:
            transaction.update(ref, data)

        return self._compare_and_set(None, key, token, new_token, write)

    def count_duplicate(self, key: str, now: datetime) -> None:
        self._count("count_duplicate")
        if self.duplicates is None:
            self._write_duplicates(key, 1, now)
        else:
            self.duplicates.add(key, utc_time(now))  # a naive time is refused here, not later

    def flush(self) -> int:
        """Write the duplicate counts still waiting now (tests, tools, shutdown). Returns how
        many records' counts are still pending (a write failed): 0 when all went through."""
        return 0 if self.duplicates is None else self.duplicates.flush()

    def _write_duplicates(self, key: str, count: int, latest: datetime) -> bool:
        """Add `count` to the record's `duplicates`; False if the record no longer exists."""
        fs, exceptions = self._firestore()
        self._count(None, commit=1)
        try:
            self._doc(key).update(
                {"duplicates": fs.Increment(count), "updated_at": utc_time(latest)}
            )
        except exceptions.NotFound:
            return False  # deleted by the TTL policy since it was read: nothing to count
        return True

    def list(
        self,
        *,
        rule: str | None = None,
        status: Iterable[Status] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        event_id: str | None = None,
        execution: str | None = None,
        limit: int = 100,
    ) -> list[Record]:
        fs, _ = self._firestore()
        FieldFilter = fs.FieldFilter

        wanted = None if status is None else sorted({Status(s).value for s in status})
        if wanted == [] or limit <= 0:
            return []
        collection = self.client.collection(self.collection)
        if execution is not None or event_id is not None:
            # One event or one execution has a handful of records: one equality query on a
            # top-level field (its single-field index, no composite index, no order_by), the
            # other filters and the order on this side. `event` is exempt from indexing, so
            # its id is queried as the `event_id` field written beside it.
            field, value = (
                execution_lookup(execution)
                if execution is not None
                else ("event_id", str(event_id))
            )
            self._count("list", query=1)
            lookup = collection.where(filter=FieldFilter(field, "==", value))
            statuses = None if wanted is None else frozenset(Status(s) for s in wanted)
            found = (decode_record(doc.id, doc.to_dict() or {}) for doc in lookup.stream())
            return newest_first(
                r
                for r in found
                if matches(
                    r,
                    rule=rule,
                    status=statuses,
                    since=since,
                    until=until,
                    event_id=event_id,
                    execution=execution,
                )
            )[:limit]

        # Equality filters on rule and/or status with `order_by(created_at)` need composite
        # indexes in real Firestore (the emulator does not check): (rule, created_at DESC),
        # (status, created_at DESC), (rule, status, created_at DESC); see docs/ledger.md.
        query: Any = collection
        if rule is not None:
            query = query.where(filter=FieldFilter("rule", "==", rule))
        if wanted is not None:
            query = query.where(filter=FieldFilter("status", "in", wanted))
        if since is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", utc_time(since)))
        if until is not None:
            query = query.where(filter=FieldFilter("created_at", "<", utc_time(until)))
        self._count("list", query=1)
        # Ties on created_at fall back to the document id, descending too (Firestore's implicit
        # last ordering): the same order as the other backends.
        query = query.order_by("created_at", direction=fs.Query.DESCENDING).limit(limit)
        return [decode_record(doc.id, doc.to_dict() or {}) for doc in query.stream()]

    def with_prefix(self, prefix: str, limit: int = 2) -> builtins.list[Record]:
        fs, _ = self._firestore()
        if limit <= 0:
            return []
        # A range on the document id: Firestore's built-in index, no composite index needed.
        collection = self.client.collection(self.collection)
        name = "__name__"  # FieldPath.document_id()
        query = (
            collection.where(filter=fs.FieldFilter(name, ">=", collection.document(prefix)))
            .where(filter=fs.FieldFilter(name, "<", collection.document(prefix + "\uffff")))
            .order_by(name)
            .limit(limit)
        )
        self._count("with_prefix", query=1)
        return [decode_record(doc.id, doc.to_dict() or {}) for doc in query.stream()]

    # -- the client ---------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        client = self._client
        if client is None or not self._bounded:
            fs, _ = self._firestore()
            with self._lock:
                if self._client is None:
                    self._client = fs.Client(project=self.project, database=self.database)
                if not self._bounded:
                    bound(self._client, self._rpc_retry(), self.deadline)
                    self._bounded = True
            client = self._client
        return client

    def _rpc_retry(self) -> Any:
        """The retry policy of every RPC: transient errors only, within `retry_seconds`."""
        if not self.retry_seconds:
            return None
        from google.api_core import retry as retries

        _, exceptions = self._firestore()
        return retries.Retry(
            predicate=retries.if_exception_type(
                exceptions.ServiceUnavailable,
                exceptions.TooManyRequests,
                exceptions.DeadlineExceeded,
                exceptions.InternalServerError,
            ),
            initial=_RETRY_INITIAL,
            maximum=_RETRY_MAXIMUM,
            multiplier=2.0,
            timeout=self.retry_seconds,
        )

    def _firestore(self) -> tuple[Any, Any]:
        if self._fs is None:
            try:
                from google.api_core import exceptions
                from google.cloud import firestore
            except ImportError as exc:  # pragma: no cover - depends on the installation
                raise ImportError(
                    "the Firestore ledger needs google-cloud-firestore: "
                    "pip install 'google-cloud-firestore>=2.16,<3'"
                ) from exc
            self._exceptions = exceptions
            self._fs = firestore
        return self._fs, self._exceptions

    def _doc(self, key: str) -> Any:
        return self.client.collection(self.collection).document(key)

    def _raw(self) -> RawDocuments:
        raw = self._direct
        if raw is None:
            raw = self._direct = RawDocuments(self.client, self.collection)
        return raw

    # -- compare-and-set in a transaction -------------------------------------------------------

    def _compare_and_set(
        self, primitive: str | None, key: str, expected: str, new_token: str, write: Any
    ) -> bool:
        """Run `write` in a transaction if the stored token is `expected`; True if it wrote."""
        fs, exceptions = self._firestore()
        if primitive is not None:
            self._count(primitive)
        ref = self._doc(key)

        @fs.transactional
        def attempt(transaction: Any) -> bool:
            # One attempt: begin, read (which locks the document), commit. Retried on ABORTED.
            self._count(None, begin=1, read=1, commit=1)
            snapshot = ref.get(field_paths=["token"], transaction=transaction)
            if not snapshot.exists or (snapshot.to_dict() or {}).get("token") != expected:
                return False  # the empty commit that follows just ends the transaction
            write(transaction, ref)
            return True

        transaction = self.client.transaction(max_attempts=self.transaction_attempts)
        try:
            written = attempt(transaction)
        except ValueError as exc:
            if not gave_up(exc, exceptions):
                # A failed begin makes `@transactional`'s rollback raise "no transaction in
                # progress" over the real error: report what actually failed.
                cause = api_error_in(exc, exceptions)
                if cause is not None:
                    raise cause from exc
                raise
            raise LedgerContention(
                f"ledger record {self.collection}/{key} is contended: gave up after "
                f"{self.transaction_attempts} aborted transaction attempt(s), nothing was written"
            ) from exc
        except exceptions.Aborted as exc:
            raise LedgerContention(
                f"ledger record {self.collection}/{key} is contended: the transaction aborted "
                "and nothing was written"
            ) from exc
        if written:
            results = getattr(transaction, "write_results", None) or ()
            if results:
                self._remember(key, new_token, update_time_pb(results[0]))
        else:
            self._forget(key)
        return written

    # -- bookkeeping ----------------------------------------------------------------------------

    def _count(self, primitive: str | None, **rpcs: int) -> None:
        with self._lock:
            if primitive is not None:
                self.calls[primitive] += 1
            self.rpcs.update(rpcs)

    def _remember(self, key: str, token: str, update_time: Any) -> None:
        with self._lock:
            self._written[key] = (token, update_time)
            self._written.move_to_end(key)
            while len(self._written) > _REMEMBERED_WRITES:
                self._written.popitem(last=False)

    def _forget(self, key: str) -> None:
        with self._lock:
            self._written.pop(key, None)

    def _last_write(self, key: str, token: str) -> Any:
        with self._lock:
            remembered = self._written.get(key)
        return remembered[1] if remembered is not None and remembered[0] == token else None

    def __repr__(self) -> str:
        return (
            f"FirestoreBackend(project={self.project!r}, database={self.database!r}, "
            f"collection={self.collection!r})"
        )
