"""`FirestoreBatchStore`: batches and cursors in a collection of their own (`triggers-batches`
by default, beside the ledger's `triggers-runs`), through the ledger backend's client.

* create  — `DocumentReference.create()` (precondition exists=false): of concurrent openers of
            one batch id exactly one wins.
* replace — read, compare the token, write with an update-time precondition (optimistic).
* list    — one query on `kind == batch` ordered by `opened_at` (a composite index on
            (kind, opened_at) and (kind, rule, opened_at) in real Firestore; docs/flow-control.md,
            "Batching").
* records — `Client.get_all`: the members' ledger records in one streamed read.

The body is JSON text (`body`): a 5,000-member list as an array would cost 5,000 index entries
on every append. `kind`, `rule`, `opened_at`, `token` and `expire_at` are top-level fields, the
last as a timestamp a TTL policy can use.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from ..flow.batching import decode_document, encode_document
from ._firestore_codec import decode_record
from .base import Record
from .batchdocs import DocumentBatchStore
from .firestore import FirestoreBackend

DEFAULT_BATCH_COLLECTION = "triggers-batches"
# `get_all` takes this many references per call comfortably.
_READ_CHUNK = 300


class FirestoreBatchStore(DocumentBatchStore):
    def __init__(self, records: FirestoreBackend, *, collection: str | None = None) -> None:
        self.records = records
        # Beside the ledger's own collection: tests that isolate the ledger by collection
        # isolate its batches too.
        self.collection = collection or (
            DEFAULT_BATCH_COLLECTION
            if records.collection == "triggers-runs"
            else f"{records.collection}-batches"
        )

    def _ref(self, doc_id: str) -> Any:
        return self.records.client.collection(self.collection).document(doc_id)

    @staticmethod
    def _fields(kind: str, rule: str, opened_at: Any, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": kind,
            "rule": rule,
            "opened_at": opened_at,
            "token": doc["token"],
            "expire_at": doc.get("expire_at"),
            "body": encode_document(doc),
        }

    def _create(self, doc_id: str, kind: str, rule: str, opened_at: Any, doc: dict) -> bool:
        _, exceptions = self.records._firestore()
        try:
            self._ref(doc_id).create(self._fields(kind, rule, opened_at, doc))
        except exceptions.Conflict:
            # Possibly our own create, retried after a lost reply: the caller reads the
            # document and finds itself in it (a batch's first member) or joins it anew.
            return False
        return True

    def _get(self, doc_id: str) -> dict[str, Any] | None:
        snapshot = self._ref(doc_id).get()
        if not snapshot.exists:
            return None
        return decode_document((snapshot.to_dict() or {})["body"])

    def _replace(self, doc_id: str, doc: dict[str, Any], expected_token: str) -> bool:
        """Optimistic: read, compare the token, write with the read's update time as the
        precondition. No transaction: under contention (every member of a busy batch appends
        to one document) a transaction holds the document's lock and makes the others wait
        and abort; a precondition just fails the losers at once, and they read again."""
        _, exceptions = self.records._firestore()
        ref = self._ref(doc_id)
        snapshot = ref.get()
        current = snapshot.to_dict() if snapshot.exists else None
        if current is None or current.get("token") != expected_token:
            return False
        fields = self._fields(current["kind"], current["rule"], current.get("opened_at"), doc)
        option = self.records.client.write_option(last_update_time=snapshot.update_time)
        try:
            ref.update(fields, option=option)
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            return False  # written (or deleted) since we read it: the caller reads again
        return True

    def _list(self, rule: str | None, limit: int) -> builtins.list[dict[str, Any]]:
        fs, _ = self.records._firestore()
        query: Any = self.records.client.collection(self.collection).where(
            filter=fs.FieldFilter("kind", "==", "batch")
        )
        if rule is not None:
            query = query.where(filter=fs.FieldFilter("rule", "==", rule))
        query = query.order_by("opened_at", direction=fs.Query.DESCENDING).limit(limit)
        found = [decode_document((doc.to_dict() or {})["body"]) for doc in query.stream()]
        # Ties on opened_at: by id descending, as the other stores.
        found.sort(key=lambda d: (d["opened_at"], d["id"]), reverse=True)
        return found

    def get_records(self, keys: Iterable[str]) -> dict[str, Record]:
        wanted = list(dict.fromkeys(keys))
        client = self.records.client
        runs = client.collection(self.records.collection)
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), _READ_CHUNK):
            refs = [runs.document(key) for key in wanted[start : start + _READ_CHUNK]]
            for snapshot in client.get_all(refs):
                if snapshot.exists:
                    found[snapshot.id] = decode_record(snapshot.id, snapshot.to_dict() or {})
        return found
