"""The `triggers` command line.

    triggers validate [PATH]                     load and check rules; exit 1 with every problem
    triggers plan [--config PATH] EVENT_FILE...  each rule's verdict and the exact jobs.run body
    triggers test-pattern PATTERN_FILE EVENT_FILE
    triggers schema                              JSON Schema of the rules file
    triggers compile [PATH] [--check]            validate and write PATH.compiled.json, which
                                                 the function loads without validating again
    triggers check [PATH] [--live] [--json]      every rule's jobs.run request, planned from its
                                                 example (or a synthesized) event; --live sends
                                                 it with validateOnly: exit 1 if any is refused
    triggers emulator --jobs FILE --port N       the local Cloud Run Jobs emulator
    triggers serve [--config PATH] [--port N]    the function, SQLite ledger, emulator and a
                                                 Scheduler clock, locally (docs/local.md)
    triggers send pubsub|storage|scheduler ...   post an event of that kind to a running server
    triggers send --file EVENT_FILE              post a request file (config/events)
    triggers runs [--rule R] [--since 1h]        the ledger's recorded outcomes, newest first
                  [--event ID] [--execution E]   (also --status, --until, --limit, --keys)
    triggers show KEY [--json]                   one ledger record in full: its event and the
                                                 exact jobs.run request (KEY: 8+ characters)
    triggers reconcile [--since 1d] [--json]     record the outcome of finished executions
    triggers replay [--status failed] [--since 1d] [--dry-run]
                                                 recorded events through the current rules again
    triggers replay --from-topic NAME [--dry-run]
                                                 re-drive dead letters after a fix
    triggers demo                                serve the samples, send every sample event, show
                                                 what ran; exit 1 if anything misbehaved
    triggers completion bash|zsh|fish            a shell completion script

Exit codes: 0 success, 1 the answer is "no" (invalid rules, no match, a send answered with a
retry or an error, a demo that misbehaved, a check that failed), 2 usage or input errors, or no
server to send to.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import _batches, _check, _compile, _completion, _history, _local, _purge, _replay, _rules
from ._common import DEFAULT_RULES, resolve_rules


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        # The emulator owns its options (argparse cannot pass `--help` through a subparser).
        from ..emulators.server import main as emulator_main

        return emulator_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    resolve_rules(parser, args)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # `triggers plan ... | head`
        return 0


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="triggers", description="Turn cloud events into Cloud Run job runs."
    )
    parser.add_argument("--version", action="version", version=f"triggers {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    rules_default = os.environ.get("TRIGGERS_RULES", DEFAULT_RULES)

    _rules.add_commands(sub, rules_default)
    _compile.add_compile(sub, rules_default)
    _check.add_check(sub, rules_default)
    # Listed for `triggers --help`; main() hands `triggers emulator ...` to the emulator itself.
    sub.add_parser("emulator", help="run the local Cloud Run Jobs emulator (--help for options)")

    _local.add_serve(sub, rules_default)
    _local.add_send(sub)
    _history.add_runs(sub)
    _history.add_show(sub)
    _history.add_reconcile(sub)
    _replay.add_replay(sub, rules_default)
    _batches.add_close_batch(sub, rules_default)
    _purge.add_purge(sub)
    _local.add_demo(sub, rules_default)
    _completion.add_completion(sub, _parser)
    return parser
