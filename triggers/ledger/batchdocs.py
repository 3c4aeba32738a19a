"""`DocumentBatchStore`: batches and cursors over three raw document primitives (create-if-
absent, get, replace-if-token) and a listing, which each backend's batch store provides
(`batchstore.py`: memory, SQLite; `firestore_batches.py`)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from ..flow.batching import Batch, Cursor, cursor_id
from .base import Record


class DocumentBatchStore:
    """Batches and cursors over the raw document primitives a backend subclass provides."""

    def create_batch(self, batch: Batch) -> bool:
        return self._create(batch.id, "batch", batch.rule, batch.opened_at, batch.as_document())

    def get_batch(self, batch_id: str) -> Batch | None:
        document = self._get(batch_id)
        return None if document is None else Batch.from_document(document)

    def replace_batch(self, batch: Batch, expected_token: str) -> bool:
        return self._replace(batch.id, batch.as_document(), expected_token)

    def create_cursor(self, cursor: Cursor) -> bool:
        return self._create(cursor.id, "cursor", cursor.rule, None, cursor.as_document())

    def get_cursor(self, rule: str, key: str) -> Cursor | None:
        document = self._get(cursor_id(rule, key))
        return None if document is None else Cursor.from_document(document)

    def replace_cursor(self, cursor: Cursor, expected_token: str) -> bool:
        return self._replace(cursor.id, cursor.as_document(), expected_token)

    def list_batches(self, *, rule: str | None = None, limit: int = 100) -> builtins.list[Batch]:
        return [Batch.from_document(d) for d in self._list(rule, max(limit, 0))]

    # -- what a backend provides ------------------------------------------------------------

    def _create(self, doc_id: str, kind: str, rule: str, opened_at: Any, doc: dict) -> bool:
        raise NotImplementedError

    def _get(self, doc_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _replace(self, doc_id: str, doc: dict[str, Any], expected_token: str) -> bool:
        raise NotImplementedError

    def _list(self, rule: str | None, limit: int) -> builtins.list[dict[str, Any]]:
        raise NotImplementedError

    def get_records(self, keys: Iterable[str]) -> dict[str, Record]:
        raise NotImplementedError
