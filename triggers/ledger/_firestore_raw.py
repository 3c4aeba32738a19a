"""The Firestore ledger's hot RPCs, built as raw protobufs: the two writes of every new event
and the masked read of every duplicate.

A claim is one `create` (precondition: the document does not exist) and its owner's outcome one
`update` (precondition: the update time of the claim, see firestore.py). Both are exactly the
`Write` messages `DocumentReference.create()` and `.update(option=write_option(...))` send, and
go through the same GAPIC `commit` (so with the backend's deadline and retry policy), but
without the client's generic path to them: `pbs_for_create` / `pbs_for_update` walk the dict
for nested maps, field paths, sentinels and transforms, then wrap every value in a proto-plus
`Value`. For the ledger's flat documents of scalars that was ~28 % of what the served function
spent over a hand-written one (docs/performance.md); here each value is one protobuf
constructor, and a claim's create costs the function ~0.35 ms of CPU instead of 0.5–0.7.

A value that is not a scalar (the reconciler's `outcome` map) is encoded by the client's own
`encode_value`. tests/unit/test_firestore_raw.py checks that every message equals the
client's for generated documents, so a change in the client's encoding shows up there.

A duplicate's conflict read (`get`) is one unary `GetDocument` with a field mask, where
`DocumentReference.get` opens a `BatchGetDocuments` stream for the one document; the fields are
decoded by the client's own `decode_dict`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class RawDocuments:
    """`create`, precondition `update` and masked `get` of one collection's documents, as raw
    protobufs through the client's GAPIC API (`client._firestore_api`)."""

    def __init__(self, client: Any, collection: str) -> None:
        from google.cloud.firestore_v1 import _helpers
        from google.cloud.firestore_v1.types import common, document, firestore, write
        from google.protobuf import struct_pb2, timestamp_pb2

        self._client = client
        # The document name is the collection's path plus the key, as DocumentReference does it.
        sample = client.collection(collection).document("_")._document_path
        self._prefix = sample[: -len("_")]
        self._database = client._database_string
        self._Write = write.Write.pb()
        self._Document = document.Document.pb()
        self._Value = document.Value.pb()
        self._Precondition = common.Precondition.pb()
        self._DocumentMask = common.DocumentMask.pb()
        self._CommitRequest = firestore.CommitRequest
        self._CommitRequestPb = firestore.CommitRequest.pb()
        self._CommitResponse = firestore.CommitResponse
        self._ValueMessage = document.Value
        self._Timestamp = timestamp_pb2.Timestamp
        self._null = struct_pb2.NULL_VALUE
        self._encode_value = _helpers.encode_value
        self._decode_dict: Any = _helpers.decode_dict  # typed as any Value, a map here
        self._GetDocumentRequest = firestore.GetDocumentRequest
        self._GetDocumentRequestPb = firestore.GetDocumentRequest.pb()
        self._DocumentMessage = document.Document

    # -- messages (no I/O) ---------------------------------------------------------------------

    def create_write(self, key: str, data: dict[str, Any]) -> Any:
        """The `Write` of `DocumentReference(key).create(data)`."""
        return self._Write(
            update=self._document(key, data), current_document=self._Precondition(exists=False)
        )

    def update_write(self, key: str, data: dict[str, Any], last_update_time: Any) -> Any:
        """The `Write` of `DocumentReference(key).update(data, option=write_option(
        last_update_time=...))`; `last_update_time` is a protobuf Timestamp. The fields of
        `data` are top-level names, each one field path (no dots in ledger field names)."""
        return self._Write(
            update=self._document(key, data),
            update_mask=self._DocumentMask(field_paths=sorted(data)),
            current_document=self._Precondition(update_time=last_update_time),
        )

    def _document(self, key: str, data: dict[str, Any]) -> Any:
        return self._Document(
            name=self._prefix + key, fields={name: self.value(v) for name, v in data.items()}
        )

    def value(self, value: Any) -> Any:
        """The Firestore `Value` protobuf of one field, as the client would encode it."""
        if value is None:
            return self._Value(null_value=self._null)
        kind = type(value)
        if kind is str:
            return self._Value(string_value=value)
        if kind is bool:
            return self._Value(boolean_value=value)
        if kind is int:
            return self._Value(integer_value=value)
        if kind is float:
            return self._Value(double_value=value)
        if kind is datetime and value.tzinfo is not None:
            # proto-plus's conversion, which the client's `encode_value` goes through.
            stamp = self._Timestamp(seconds=int(value.timestamp()), nanos=value.microsecond * 1000)
            return self._Value(timestamp_value=stamp)
        # Maps, arrays, naive or nanosecond times, bytes, subclasses: the client's own rules.
        return self._ValueMessage.pb(self._encode_value(value))

    # -- the RPC ---------------------------------------------------------------------------------

    def create(self, key: str, data: dict[str, Any]) -> Any:
        """Create the document; returns its update time (a protobuf Timestamp). Raises the
        API's AlreadyExists (a Conflict) when it exists."""
        return self._commit(self.create_write(key, data))

    def update(self, key: str, data: dict[str, Any], last_update_time: Any) -> Any:
        """Update the fields of `data` if the document was last written at `last_update_time`;
        returns the new update time. Raises FailedPrecondition (written since) or NotFound."""
        return self._commit(self.update_write(key, data, last_update_time))

    def get(self, key: str, field_paths: Any) -> dict[str, Any] | None:
        """The fields `field_paths` of the document (those it has), or None if there is none.
        Raises the API's error for anything else."""
        from google.api_core.exceptions import NotFound

        client = self._client
        request = self._GetDocumentRequest.wrap(
            self._GetDocumentRequestPb(
                name=self._prefix + key, mask=self._DocumentMask(field_paths=list(field_paths))
            )
        )
        try:
            found = client._firestore_api.get_document(
                request=request, metadata=client._rpc_metadata
            )
        except NotFound:
            return None
        return self._decode_dict(self._DocumentMessage.pb(found).fields, client)

    def _commit(self, write: Any) -> Any:
        client = self._client
        request = self._CommitRequest.wrap(
            self._CommitRequestPb(database=self._database, writes=[write])
        )
        # `_firestore_api` is the backend's `BoundedRpcs`: its deadline and retry apply.
        response = client._firestore_api.commit(request=request, metadata=client._rpc_metadata)
        return self._CommitResponse.pb(response).write_results[0].update_time


def update_time_pb(write_result: Any) -> Any:
    """The update time of a client `WriteResult` (proto-plus) as a protobuf Timestamp, the form
    `RawDocuments.update` takes (it keeps the server's nanoseconds)."""
    from google.cloud.firestore_v1.types import write

    return write.WriteResult.pb(write_result).update_time
