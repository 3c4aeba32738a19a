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


class Progress:
    """`reconcile: 120/500` on one stderr line, redrawn as work advances, on a terminal only:
    in a pipe or a log nothing is written, and the command's own output stays clean."""

    def __init__(self, what: str, total: int | None = None, stream: TextIO | None = None) -> None:
        import sys

        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0

    def step(self, done: int | None = None, total: int | None = None) -> None:
        self.done = self.done + 1 if done is None else done
        self.total = total if total is not None else self.total
        if self.enabled:
            of = f"/{self.total}" if self.total is not None else ""
            self.stream.write(f"\r{self.what}: {self.done}{of}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\r\x1b[K")  # erase the line: the result follows
            self.stream.flush()
