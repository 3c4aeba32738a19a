"""What the command modules share: defaults and option spellings."""

from __future__ import annotations

import argparse
import os
from typing import TextIO

DEFAULT_RULES = "config/rules.yaml"
API_ROOT = "https://run.googleapis.com/v2"
SQLITE_DEFAULT = ".triggers/ledger.sqlite3"
DEFAULT_URL = "http://127.0.0.1:8080/"
SUPPRESS = argparse.SUPPRESS


def add_rules_option(p: argparse.ArgumentParser, rules_default: str, *, positional: bool = False):
    """The rules file or directory: `-c/--config PATH` on every command that reads rules.

    `validate`, `compile` and `check` also take it as their one positional argument (`triggers
    validate rules/`); giving both is a usage error. `resolve_rules` fills in the default.
    """
    p.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="PATH",
        help=f"rules file or directory (default: $TRIGGERS_RULES or {rules_default})",
    )
    if positional:
        p.add_argument("path", nargs="?", default=None, metavar="PATH", help="same as --config")
    p.set_defaults(rules_default=rules_default)


def resolve_rules(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One rules path in both `args.config` and `args.path`, or a usage error (exit 2)."""
    if not hasattr(args, "rules_default"):
        return
    positional = getattr(args, "path", None)
    if positional is not None and args.config is not None and positional != args.config:
        parser.error(f"the rules are given twice ({positional} and --config {args.config})")
    args.config = args.path = positional or args.config or args.rules_default


def use_colour(stream: TextIO) -> bool:
    """Colour for a terminal, unless NO_COLOR is set (https://no-color.org) or TERM is dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
