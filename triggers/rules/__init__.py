"""Rules: the YAML schema, loading with file:line errors, patterns, conditions and templates.

`load` is the front door: a rules file or directory in, a `RuleSet` (the router) out, or one
`RulesError` listing every problem. `loader` validates sources; `compiled` reads and writes the
pre-validated artifact of `triggers compile`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from ._sources import no_cyclic_gc
from .rule import Rule, Verdict
from .ruleset import RuleSet

__all__ = ["Rule", "RuleSet", "Verdict", "load", "load_text"]

log = logging.getLogger("triggers.rules")


def load(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    compiled: bool = False,
) -> RuleSet:
    """Load one rules file, or every `*.yaml`/`*.yml` below a directory (sorted by path).

    compiled: first try the pre-validated artifact next to the rules (`triggers compile`); it
    is used only if it is up to date with the sources, the environment and this version of
    triggers, and otherwise the rules are validated as usual (a warning says why).
    """
    root = Path(path)
    environ = os.environ if environ is None else environ
    with no_cyclic_gc():
        if compiled:
            from .compiled import read

            rules, stale = read(root, environ)
            if rules is not None:
                return rules
            if stale is not None:
                log.warning("%s; validating the rules instead", stale)
        from .loader import load_source  # pydantic: only when the rules are validated

        return load_source(root, environ)


def load_text(
    text: str, *, name: str = "<rules>", environ: Mapping[str, str] | None = None
) -> RuleSet:
    """Load rules from a string (tests, tools); see loader.load_text."""
    from .loader import load_text as validate

    return validate(text, name=name, environ=environ)
