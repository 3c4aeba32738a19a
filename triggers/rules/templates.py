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

from . import _substitution

# The sandbox's bound on one rendered value (`_sandbox.MAX_VALUE_CHARS`, which imports Jinja).
_MAX_VALUE_CHARS = 1 << 20

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

    __slots__ = ("source", "_compiled", "_literal", "_fields")

    def __init__(self, source: str, _compiled: Any = None, *, _literal: bool | None = None) -> None:
        self.source = source
        self._compiled = _compiled
        self._literal = _compiled is None if _literal is None else _literal
        # For a template of plain field substitutions, its parts (`_substitution.parse`),
        # rendered without Jinja; False when it has other syntax; None until first rendered.
        self._fields: Any = None

    @property
    def is_literal(self) -> bool:
        return self._literal

    def render(self, document: Mapping[str, Any]) -> str:
        """Render against an event document. Raises whatever Jinja raises; callers wrap it."""
        if self._literal:
            return self.source
        context = dict(document)
        context["event"] = document
        fields = self._fields
        if fields is None:
            fields = self._fields = _substitution.parse(self.source, VARIABLES) or False
        if fields:
            rendered = _substitution.render(fields, context, _MAX_VALUE_CHARS)
            if rendered is not None:
                return rendered
        compiled = self._compiled
        if compiled is None:
            # Deferred: validated when the artifact was compiled, and checked again here (the
            # artifact may come from an older release). Two threads may both get here; they
            # build equal templates and either one is kept.
            compiled = self._compiled = _compile(self.source)
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


def compile_template(source: str, kinds: frozenset[str] | None = None) -> Template:
    """Check and compile a template now. Raises TemplateProblem.

    With `kinds` (the rule's event kinds), a read of a `data` field that none of those kinds'
    events has (`data.schedul_time` on a Scheduler rule) is a problem too: it could only ever
    fail at render (see triggers/events/fields.py)."""
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
        if not unknown and kinds is not None:
            misread = data_field_problems(ast, kinds)
            if misread:
                line, message = misread[0]
                raise TemplateProblem(f"{message}{_line(source, line)}")
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


def data_field_problems(ast: Any, kinds: frozenset[str]) -> list[tuple[int, str]]:
    """(template line, message) for each read of `data.<path>` (or `event.data.<path>`) that
    no event of `kinds` can have, in template order.

    Only constant paths are checked (`data.a.b`, `data['a'][0]`); a step computed at render
    (`data[key]`) ends the path there. A template that assigns `data` or `event` itself (a loop
    variable, `set`) reads its own value, so that name is not checked.
    """
    from jinja2 import nodes

    from triggers.events.fields import data_problem

    rebound = {n.name for n in ast.find_all(nodes.Name) if n.ctx != "load"}
    problems: list[tuple[int, str]] = []
    seen: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        path: list[str | int] = []
        current = node
        while True:
            if isinstance(current, nodes.Getattr):
                path.append(current.attr)
            elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const):
                if not isinstance(current.arg.value, str | int) or isinstance(
                    current.arg.value, bool
                ):
                    break
                path.append(current.arg.value)
            else:
                break
            current = current.node
        if not isinstance(current, nodes.Name) or current.name in rebound:
            continue
        path.reverse()
        if current.name == "event":
            if path[:1] != ["data"]:
                continue  # the top level also holds the delivery's CloudEvent extensions
            path = path[1:]
        elif current.name != "data":
            continue
        message = data_problem(kinds, path) if path else None
        if message is not None and message not in seen:
            seen.add(message)
            problems.append((node.lineno, message))
    return problems


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
