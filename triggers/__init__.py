"""triggers: turn Pub/Sub, Cloud Scheduler and Cloud Storage events into Cloud Run job runs.

The public API, for embedding the library (docs/api.md has it with examples):

    rules = triggers.load("config/rules.yaml")          # RuleSet, or RulesError with every problem
    event = triggers.decode(headers, body)              # Event, or DecodeError with a reason
    for rule in rules.route(event):                     # the matching rules, indexed, no I/O
        request = rule.plan(event)                      # RunRequest: the exact jobs.run call
    dispatcher = triggers.Dispatcher(rules, ledger, runner)
    decision = dispatcher.dispatch(event)               # claim -> run -> record; ack or retry

Everything named in ``__all__`` is public and kept stable; every other module and name is
private and may change. Importing this package is cheap (cold start is a feature): each name is
imported from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    # rules
    "load": "triggers.rules",
    "load_text": "triggers.rules",
    "RuleSet": "triggers.rules",
    "Rule": "triggers.rules",
    "Verdict": "triggers.rules",
    "Pattern": "triggers.rules.patterns",
    "compile_pattern": "triggers.rules.patterns",
    # events
    "decode": "triggers.events",
    "parse_event_file": "triggers.events",
    "Event": "triggers.events",
    # planning
    "RunRequest": "triggers.plan",
    "Overrides": "triggers.plan",
    # dispatch
    "Dispatcher": "triggers.dispatch",
    "Decision": "triggers.dispatch",
    "RuleOutcome": "triggers.dispatch",
    "Outcome": "triggers.dispatch",
    # the ledger and its backends
    "Ledger": "triggers.ledger",
    "Backend": "triggers.ledger",
    "Record": "triggers.ledger",
    "Status": "triggers.ledger",
    "MemoryBackend": "triggers.ledger.memory",
    "SQLiteBackend": "triggers.ledger.sqlite",
    "FirestoreBackend": "triggers.ledger.firestore",
    # runners
    "Runner": "triggers.runners",
    "Launch": "triggers.runners",
    "CloudRunRunner": "triggers.runners.cloudrun",
    "DryRunRunner": "triggers.runners.dryrun",
    # the function's request handling, for an HTTP server of your own
    "App": "triggers.function.app",
    "Response": "triggers.function.app",
    "Settings": "triggers.function.settings",
    # errors
    "TriggersError": "triggers.errors",
    "DecodeError": "triggers.errors",
    "PatternError": "triggers.errors",
    "RulesError": "triggers.errors",
    "SettingsError": "triggers.errors",
    "Problem": "triggers.errors",
    "RenderError": "triggers.errors",
    "RunError": "triggers.errors",
    "PermanentRunError": "triggers.errors",
    "RetryableRunError": "triggers.errors",
    "AmbiguousRunError": "triggers.errors",
    "Unauthorized": "triggers.errors",
}
# public name -> its name in the defining module, where they differ
_RENAMED = {"compile_pattern": "compile"}

__all__ = [
    "AmbiguousRunError",
    "App",
    "Backend",
    "CloudRunRunner",
    "Decision",
    "DecodeError",
    "Dispatcher",
    "DryRunRunner",
    "Event",
    "FirestoreBackend",
    "Launch",
    "Ledger",
    "MemoryBackend",
    "Outcome",
    "Overrides",
    "Pattern",
    "PatternError",
    "PermanentRunError",
    "Problem",
    "Record",
    "RenderError",
    "Response",
    "RetryableRunError",
    "Rule",
    "RuleOutcome",
    "RuleSet",
    "RulesError",
    "RunError",
    "RunRequest",
    "Runner",
    "SQLiteBackend",
    "Settings",
    "SettingsError",
    "Status",
    "TriggersError",
    "Unauthorized",
    "Verdict",
    "compile_pattern",
    "decode",
    "load",
    "load_text",
    "parse_event_file",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'triggers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors see
    from .dispatch import Decision, Dispatcher, Outcome, RuleOutcome
    from .errors import (
        AmbiguousRunError,
        DecodeError,
        PatternError,
        PermanentRunError,
        Problem,
        RenderError,
        RetryableRunError,
        RulesError,
        RunError,
        SettingsError,
        TriggersError,
        Unauthorized,
    )
    from .events import Event, decode, parse_event_file
    from .function.app import App, Response
    from .function.settings import Settings
    from .ledger import Backend, Ledger, Record, Status
    from .ledger.firestore import FirestoreBackend
    from .ledger.memory import MemoryBackend
    from .ledger.sqlite import SQLiteBackend
    from .plan import Overrides, RunRequest
    from .rules import Rule, RuleSet, Verdict, load, load_text
    from .rules.patterns import Pattern
    from .rules.patterns import compile as compile_pattern
    from .runners import Launch, Runner
    from .runners.cloudrun import CloudRunRunner
    from .runners.dryrun import DryRunRunner
