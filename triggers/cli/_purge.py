"""purge: delete what an SQLite ledger keeps past its dedup window (docs/ledger.md).

Firestore needs none: its TTL policy on `expire_at` (terraform/firestore.tf) deletes expired
records and batches itself.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from ._history import add_ledger_options, close_ledger, ledger_place, open_ledger


def add_purge(sub) -> None:
    p = sub.add_parser(
        "purge",
        help="delete the records and batches an SQLite ledger keeps past their dedup window",
        description="Delete the records, and the batch documents, whose expire_at has passed:"
        " what Firestore's TTL policy does on its own, for an SQLite ledger (`triggers serve`)."
        " An event whose record was purged is a new event again, as after its dedup window.",
    )
    add_ledger_options(p)
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--json", action="store_true", help="the counts as one JSON object")
    p.set_defaults(run=_purge)


def _purge(args: argparse.Namespace) -> int:
    from ..ledger.batchstore import SQLiteBatchStore
    from ..ledger.sqlite import SQLiteBackend

    ledger = open_ledger(args)
    if ledger is None:
        return 1
    try:
        backend = ledger.backend
        if not isinstance(backend, SQLiteBackend):
            print(
                f"nothing to purge in {ledger_place(ledger)}: Firestore's TTL policy on expire_at"
                " deletes expired records and batches itself (terraform/firestore.tf)"
            )
            return 0
        now = datetime.now(UTC)
        records = backend.purge_expired(now, dry_run=args.dry_run)
        batches = SQLiteBatchStore(backend).purge_expired(now, dry_run=args.dry_run)
    finally:
        close_ledger(ledger)
    if args.json:
        print(json.dumps({"records": records, "batches": batches, "dry_run": args.dry_run}))
    else:
        verb = "would purge" if args.dry_run else "purged"
        print(
            f"{verb} {records} record{'s' * (records != 1)} and {batches} batch"
            f" document{'s' * (batches != 1)} past their dedup window from {ledger_place(ledger)}"
        )
    return 0
