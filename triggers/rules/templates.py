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

Both run in `_sandbox.BoundedSandbox` and are first checked by `_sandbox.template_problems`:
what the sandbox would refuse at render is refused at load, and no value a template builds, at
compile time or at render, may grow past a fixed size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The names a template may use: the event document's top level, and `event` for all of it
# (CloudEvent extensions live there, e.g. `event.bucket`).
VARIABLES = frozenset({"id", "source", "type", "subject", "time", "data", "event"})

_environment = None


def _env():
    # Created once, and only when some template needs Jinja (so is the sandbox module).
    global _environment
    if _environment is None:
        from ._sandbox import BoundedSandbox

        _environment = BoundedSandbox()
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
            # Deferred: validated when the artifact was compiled, and checked again here (the
            # artifact may come from an older release). Two threads may both get here; they
            # build equal templates and either one is kept.
            compiled = self._compiled = _compile(self.source)
        context = dict(document)
        context["event"] = document
        from ._sandbox import render_bounded

        return render_bounded(compiled, context)

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
    if not source.isascii():
        from ._sandbox import unencodable_problem

        problem = unencodable_problem(source)
        if problem is not None:
            raise TemplateProblem(problem)
    if is_literal_source(source):
        return Template(source)
    from jinja2 import TemplateSyntaxError, meta

    from ._sandbox import template_problems

    env = _env()
    try:
        ast = env.parse(source)
        # Before compiling, which folds constant expressions: what the sandbox would refuse
        # at render is refused now, with its line, and nothing has been evaluated yet.
        refused = template_problems(ast)
        if refused:
            line, message = refused[0]
            raise TemplateProblem(f"{message}{_line(source, line)}")
        # Jinja's code generator does this walk: it also refuses unknown filters and tests
        # (TemplateAssertionError, a TemplateSyntaxError).
        unknown = sorted(meta.find_undeclared_variables(ast) - VARIABLES)
        compiled = None if unknown else env.from_string(ast)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"template syntax error{_line(source, exc.lineno)}: {exc.message}"
        ) from None
    if unknown:
        raise TemplateProblem(
            f"template uses unknown variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}; available: {', '.join(sorted(VARIABLES))}"
        )
    return Template(source, compiled)


def _compile(source: str) -> Any:
    """Compile a template that was validated before, refusing it if the sandbox check finds
    anything now (TemplateProblem, which the planner reports as a render error)."""
    from ._sandbox import template_problems

    env = _env()
    ast = env.parse(source)
    refused = template_problems(ast)
    if refused:
        line, message = refused[0]
        raise TemplateProblem(f"{message}{_line(source, line)}")
    return env.from_string(ast)


def _line(source: str, line: int | None) -> str:
    """`" (template line N)"` for a template of several lines; the rules file line says the rest."""
    return f" (template line {line})" if line is not None and source.count("\n") else ""


def deferred_template(source: str) -> Template:
    """A template that `compile_template` accepted before (a pre-validated artifact): compiled
    on its first render instead of now."""
    return Template(source, _literal=is_literal_source(source))
