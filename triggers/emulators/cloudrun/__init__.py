"""The Cloud Run Admin API v2 (Jobs) emulator: jobs file, `jobs.run` overrides, executions and
operations, and their REST shapes. Served by the shared shell in `triggers.emulators.http`.
"""
