"""Templates that only substitute fields, rendered without Jinja, exactly as Jinja would.

Most rule templates are text with a few `{{ data.name }}` in it, sometimes through one of the
path filters (`{{ data.name | stem }}`). Rendering those through the sandbox costs ~25 µs each
and a new event renders several (args, env, the dedup key). Here such a template is split once
into literal text and field paths, and rendered by dictionary lookups.

Exactly as Jinja would, or not at all: `render` returns None whenever the result could differ
from the sandbox's (a missing field, a key that is also a dict attribute such as `items`, a
value that is not a dict along the path, a filter given something other than text, an output
over the size bound), and the caller renders through Jinja, which then produces its own value
or its own error. tests/unit/test_template_substitution.py checks the equivalence on generated
templates and documents.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_FILTERS: dict[str, Callable[[str], str]] = {
    "basename": posixpath.basename,
    "dirname": posixpath.dirname,
    "stem": lambda p: posixpath.splitext(posixpath.basename(p))[0],
    "extension": lambda p: posixpath.splitext(p)[1],
}
_FIELD = re.compile(
    rf"\{{\{{[ \t]*({_NAME}(?:\.{_NAME})*)[ \t]*(?:\|[ \t]*({'|'.join(_FILTERS)})[ \t]*)?\}}\}}"
)
_JINJA_SYNTAX = ("{{", "{%", "{#")

# (literal, path, filter): the literal text before a field, the field's path, its filter.
Part = tuple[str, tuple[str, ...], str | None]


def parse(source: str, variables: frozenset[str]) -> tuple[tuple[Part, ...], str] | None:
    """(parts, trailing literal) when `source` is only literal text and simple fields whose
    first name is one of `variables`; None otherwise (Jinja renders it)."""
    if "\r" in source:  # Jinja normalises line endings in template text
        return None
    parts: list[Part] = []
    position = 0
    for match in _FIELD.finditer(source):
        literal = source[position : match.start()]
        if any(syntax in literal for syntax in _JINJA_SYNTAX):
            return None
        path = tuple(match.group(1).split("."))
        if path[0] not in variables:
            return None
        parts.append((literal, path, match.group(2)))
        position = match.end()
    tail = source[position:]
    if not parts or any(syntax in tail for syntax in _JINJA_SYNTAX):
        return None
    return tuple(parts), tail


def render(
    parsed: tuple[tuple[Part, ...], str], context: Mapping[str, Any], max_chars: int
) -> str | None:
    """The rendered text, or None when Jinja must decide (see the module docstring)."""
    parts, tail = parsed
    out: list[str] = []
    size = len(tail)
    for literal, path, filter_name in parts:
        value = context.get(path[0], _MISSING)
        if value is _MISSING:
            return None
        for name in path[1:]:
            # The sandbox's getattr: an attribute of the object first (a dict's `items`...),
            # then the key; only the plain key lookup is taken here.
            if type(value) is not dict or name not in value or hasattr(dict, name):
                return None
            value = value[name]
        if filter_name is not None:
            if type(value) is not str:
                return None
            value = _FILTERS[filter_name](value)
        text = value if type(value) is str else _text(value)
        if text is None:
            return None
        size += len(literal) + len(text)
        out.append(literal)
        out.append(text)
    if size > max_chars:
        return None
    out.append(tail)
    return "".join(out)


_MISSING = object()


def _text(value: Any) -> str | None:
    """`str(value)` for the JSON scalars, as Jinja's output does; None for anything else."""
    if value is None or type(value) in (bool, int, float):
        return str(value)
    return None
