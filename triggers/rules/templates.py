"""Templates for overrides and dedup keys: Jinja2, sandboxed, strict, compiled once.

Event content is only ever *data* handed to a compiled template, never template source, so a
crafted object name or message cannot inject template code. `StrictUndefined` turns a missing
field into an error (a permanent rejection for that event) instead of an empty string that would
launch a job with a wrong argument.

A string without Jinja syntax (no `{{`, `{%`, `{#`) is a literal: it never touches Jinja. The
others are compiled when the rules load (`compile_template`, which is also the check that makes a
broken template fail the rules file), or, for rules loaded from a pre-validated artifact
(`triggers compile`), on their first render (`deferred_template`): a cold start then compiles
only the templates of the rules its first events match.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

# The names a template may use: the event document's top level, and `event` for all of it
# (CloudEvent extensions live there, e.g. `event.bucket`).
VARIABLES = frozenset({"id", "source", "type", "subject", "time", "data", "event"})

_environment = None


def _env():
    # Created once, and only when some template needs Jinja.
    global _environment
    if _environment is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        env.filters["basename"] = posixpath.basename
        env.filters["dirname"] = posixpath.dirname
        env.filters["stem"] = lambda p: posixpath.splitext(posixpath.basename(p))[0]
        env.filters["extension"] = lambda p: posixpath.splitext(p)[1]
        _environment = env
    return _environment


def is_literal_source(source: str) -> bool:
    """True when `source` has no Jinja syntax at all, so that it renders as itself."""
    return "{{" not in source and "{%" not in source and "{#" not in source


class TemplateProblem(ValueError):
    """A template that cannot compile, or that names a variable no event has."""


class Template:
    """A template: a literal, a compiled Jinja template, or one compiled on first render."""

    __slots__ = ("source", "_compiled", "_literal")

    def __init__(self, source: str, _compiled: Any = None, *, _literal: bool | None = None) -> None:
        self.source = source
        self._compiled = _compiled
        self._literal = _compiled is None if _literal is None else _literal

    @property
    def is_literal(self) -> bool:
        return self._literal

    def render(self, document: Mapping[str, Any]) -> str:
        """Render against an event document. Raises whatever Jinja raises; callers wrap it."""
        if self._literal:
            return self.source
        compiled = self._compiled
        if compiled is None:
            # Deferred: validated when the artifact was compiled. Two threads may both get here;
            # they build equal templates and either one is kept.
            compiled = self._compiled = _env().from_string(self.source)
        context = dict(document)
        context["event"] = document
        return compiled.render(context)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Template):
            return NotImplemented
        return self.source == other.source and self._literal == other._literal

    def __hash__(self) -> int:
        return hash((self.source, self._literal))

    def __repr__(self) -> str:
        kind = "literal" if self._literal else "jinja"
        return f"Template({self.source!r}, {kind})"


def compile_template(source: str) -> Template:
    """Check and compile a template now. Raises TemplateProblem."""
    if is_literal_source(source):
        return Template(source)
    from jinja2 import TemplateSyntaxError, meta

    env = _env()
    try:
        ast = env.parse(source)
        # Jinja's code generator does this walk: it also refuses unknown filters and tests
        # (TemplateAssertionError, a TemplateSyntaxError).
        unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
        compiled = None if unknown else env.from_string(ast)
    except TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if source.count("\n") else ""
        raise TemplateProblem(f"template syntax error{where}: {exc.message}") from None
    if unknown:
        raise TemplateProblem(
            f"template uses unknown variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; available: {', '.join(sorted(VARIABLES))}"
        )
    return Template(source, compiled)


def deferred_template(source: str) -> Template:
    """A template that `compile_template` accepted before (a pre-validated artifact): compiled
    on its first render instead of now."""
    return Template(source, _literal=is_literal_source(source))
