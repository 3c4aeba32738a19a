"""Templates for overrides and dedup keys: Jinja2, sandboxed, strict, compiled once at load.

Event content is only ever *data* handed to a compiled template, never template source, so a
crafted object name or message cannot inject template code. `StrictUndefined` turns a missing
field into an error (a permanent rejection for that event) instead of an empty string that would
launch a job with a wrong argument.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

# The names a template may use: the event document's top level, and `event` for all of it
# (CloudEvent extensions live there, e.g. `event.bucket`).
VARIABLES = frozenset({"id", "source", "type", "subject", "time", "data", "event"})

_environment = None


def _env():
    # Jinja costs tens of milliseconds to import: only rules that use templates pay for it.
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


class TemplateProblem(ValueError):
    """A template that cannot compile, or that names a variable no event has."""


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template; plain strings skip Jinja entirely."""

    source: str
    _compiled: Any = None

    @property
    def is_literal(self) -> bool:
        return self._compiled is None

    def render(self, document: Mapping[str, Any]) -> str:
        """Render against an event document. Raises whatever Jinja raises; callers wrap it."""
        if self._compiled is None:
            return self.source
        context = dict(document)
        context["event"] = document
        return self._compiled.render(context)


def compile_template(source: str) -> Template:
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return Template(source)
    from jinja2 import TemplateSyntaxError, meta

    env = _env()
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if source.count("\n") else ""
        raise TemplateProblem(f"template syntax error{where}: {exc.message}") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
    if unknown:
        raise TemplateProblem(
            f"template uses unknown variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; available: {', '.join(sorted(VARIABLES))}"
        )
    return Template(source, env.from_string(ast))
