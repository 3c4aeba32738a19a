"""compile: validate the rules and write their pre-validated artifact for the function.

    triggers compile [PATH]          write PATH.compiled.json (exit 1 with every problem)
    triggers compile --check [PATH]  exit 0 if PATH.compiled.json is up to date, 1 if not

A function instance that finds an up-to-date artifact next to its rules builds them from it
without validating again: a shorter cold start (docs/performance.md). Run it with the
environment the function will have: the `${NAME}` values the rules reference are recorded,
and a different value at start makes the function validate the sources instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._common import add_rules_option


def add_compile(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "compile",
        help="validate rules and write PATH.compiled.json, which the function loads unvalidated",
    )
    add_rules_option(p, rules_default, positional=True)
    p.add_argument(
        "--check",
        action="store_true",
        help="only say whether the artifact is up to date (exit 1 if it is missing or stale)",
    )
    p.set_defaults(run=_compile)


def _compile(args: argparse.Namespace) -> int:
    from ..errors import RulesError
    from ..rules.compiled import CompileError, artifact_path, compile_rules, read

    root = Path(args.path)
    target = artifact_path(root)
    if args.check:
        rules, stale = read(root, os.environ)
        if rules is not None:
            print(f"{target}: up to date ({len(rules)} rule{'s' if len(rules) != 1 else ''})")
            return 0
        print(stale or f"{target}: missing (run `triggers compile {args.path}`)", file=sys.stderr)
        return 1
    try:
        written, rules = compile_rules(root)
    except RulesError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (CompileError, OSError) as exc:
        print(f"{args.path}: cannot compile: {exc}", file=sys.stderr)
        return 1
    count = f"{len(rules)} rule{'s' if len(rules) != 1 else ''}"
    print(f"{args.path}: {count} OK, compiled to {written}")
    return 0
