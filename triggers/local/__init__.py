"""The local stack, for a desk and never deployed: `serve` (the function with an SQLite ledger,
the emulators and a Scheduler `clock`), `send` (well-formed events to a running server) and
`demo` (all of it, once, on the samples).
"""
