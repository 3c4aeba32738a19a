"""A Cloud Tasks v2 REST emulator: queues with rate limits, max concurrent dispatches and retry
backoff, task-name deduplication (with tombstones), scheduled tasks, HTTP targets with OIDC
headers, and a time scale. See docs/emulator.md, "Cloud Tasks".

Modules: ``pacing`` (clock, token bucket, backoff: pure), ``resources`` (REST JSON: pure),
``delivery`` (one HTTP attempt), ``store`` (state + dispatcher thread), ``api`` (routes).
"""
