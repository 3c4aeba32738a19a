"""Flow control: paced launches, concurrency with an overlap policy, batching, on Cloud Tasks.

A rule with `limits:` or `batch:` does not call its job API inline. The dispatcher claims the
event as usual, then hands the launch to a queue (`queue.TaskQueue`; Cloud Tasks in production,
the project's emulator locally) and acknowledges the event as `queued` (or `batched`). The queue
calls the function back (`TASK_PATH`, OIDC-signed) at the pace its rate and concurrency allow,
and that callback launches, exactly once, through the same ledger claim. docs/flow-control.md.

    spec.py     the compiled `limits:` / `batch:` of a rule (pure values)
    queue.py    the TaskQueue seam, its task shape, and an in-memory queue for unit tests
    naming.py   queue ids (default: one per rule) and task names (from ledger keys, batch ids)
"""
