"""The ledger: claim, record and list runs. Backends: `firestore`, `sqlite`, `memory`.

The backends are imported from their modules (`triggers.ledger.sqlite.SQLiteBackend`, ...) so
that using one never imports another's client library.
"""

from .base import (
    AmbiguousKey,
    Backend,
    Claim,
    ClaimKind,
    Ledger,
    LedgerContention,
    Record,
    RecordExists,
    Status,
)

__all__ = [
    "AmbiguousKey",
    "Backend",
    "Claim",
    "ClaimKind",
    "Ledger",
    "LedgerContention",
    "Record",
    "RecordExists",
    "Status",
]
