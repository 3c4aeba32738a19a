"""Operator tools over the ledger: `reconcile` (execution outcomes), `history` (runs and show),
`replay` (recorded events through the current rules) and `redrive` (dead letters back in).

The reconciler is also deployed (`handle_reconcile` in `triggers/main.py`); the rest run from the
`triggers` command on an operator's machine.
"""
