"""The Jinja environment rule templates run in, and the check that refuses a template at load.

Jinja's sandbox stops a template from reaching Python internals, but not from allocating: its
optimizer folds constant expressions when the template is *compiled*, so `{{ 'a' * 10**9 }}`
took 4 GiB inside `triggers validate`, and `'a'.ljust(10**9)` or `'%999999999s' % 1` do the same
when rendered. And what the sandbox refuses (`__class__`, `|attr`, `{% include %}`) it refuses
only per event, so such a rule loaded fine and then rejected every event it matched.

Two defences, both here:

* `BoundedSandbox`: the operators that can multiply a size (`*`, `**`, `+`, `%`) are
  intercepted, which also keeps Jinja from folding them at compile time, and checked before they
  run; the string methods and filters that pad or repeat are bounded or removed; the rendered
  text is capped as it is produced. A value over `MAX_VALUE_CHARS` is a `SecurityError`, which
  the planner turns into a permanent rejection of the rule for that event.
* `template_problems(ast)`: a walk over the parsed template, run before it is compiled (so
  before any folding), that lists, with the template line, everything the sandbox would refuse
  at render: underscore attributes, attributes the immutable sandbox forbids, the refused
  filters and methods, and `import`/`include`/`extends`/`from` (no loader exists) and macros.

Imported only when a template needs Jinja (templates.py), like jinja2 itself.
"""

from __future__ import annotations

import posixpath
import re
import types
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    ImmutableSandboxedEnvironment,
)

# No rendered value may be larger: far above what a run can use (an env value is at most 32 KiB,
# all args and env 512 KiB), far below what hurts a function instance.
MAX_VALUE_CHARS = 1 << 20
# Exponents beyond this many bits of result are refused (10**9 is 30 bits; 2**10000 is fine).
MAX_POWER_BITS = 1 << 16
# `'%5d' % x` is fine; a width or precision over this is refused (and `*` widths always).
MAX_FORMAT_WIDTH = 4096

# Filters that pad, repeat, reach attributes by name, or are not deterministic (a dedup key
# rendered twice must be equal): removed from the environment and refused at load.
REFUSED_FILTERS = {
    "attr": "it reaches any attribute by name, around the sandbox's checks",
    "center": "it pads to any width",
    "indent": "it pads every line to any width",
    "wordwrap": "it can multiply the text",
    "format": "printf-style formatting pads to any width; use ~ to join values",
    "xmlattr": "it is for HTML, not for job arguments",
    "slice": "it builds any number of lists",
    "batch": "it can fill to any size",
    "random": "a rule's output must be the same for the same event",
    "pprint": "it is for debugging",
    "urlize": "it is for HTML, not for job arguments",
}
# String methods that pad or reformat to any width: `str.format` (the sandbox allows it) pads
# with `{:>999999999}`; refused at load and at render.
REFUSED_METHODS = {
    "format": "str.format pads to any width; use ~ to join values",
    "format_map": "str.format_map pads to any width; use ~ to join values",
    "expandtabs": "it can multiply the text",
    "mro": "it reaches Python internals",
}
# What the immutable sandbox refuses whatever the object (it refuses `append` on a list, `pop`
# on a dict...): by name at load, since a template cannot know the type of event data.
_MUTATING = frozenset(
    {
        "add",
        "append",
        "appendleft",
        "clear",
        "difference_update",
        "discard",
        "extend",
        "extendleft",
        "insert",
        "intersection_update",
        "pop",
        "popitem",
        "popleft",
        "remove",
        "reverse",
        "rotate",
        "setdefault",
        "sort",
        "symmetric_difference_update",
        "update",
    }
)
_DICT_MUTATORS = frozenset({"clear", "pop", "popitem", "setdefault", "update"})
_INTERNAL = frozenset(
    UNSAFE_FUNCTION_ATTRIBUTES
    | UNSAFE_METHOD_ATTRIBUTES
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_FORMAT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
# Keyword arguments of filters that name an attribute (`map(attribute='x')`, `sort(...)`).
_ATTRIBUTE_ARGUMENTS = frozenset({"attribute"})


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` (which is not an operator the sandbox can intercept)
    joining through `BoundedSandbox.bounded_concat`: `{% set b = a ~ a %}` twenty times over
    must not double a value twenty times."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every way to build a huge value bounded."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        # Templates see only the event (templates.VARIABLES): no range, lipsum, dict, cycler...
        self.globals.clear()
        for name in REFUSED_FILTERS:
            self.filters.pop(name, None)
        self.filters["replace"] = _bounded_replace
        self.filters["basename"] = posixpath.basename
        self.filters["dirname"] = posixpath.dirname
        self.filters["stem"] = lambda p: posixpath.splitext(posixpath.basename(p))[0]
        self.filters["extension"] = lambda p: posixpath.splitext(p)[1]

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif operator_ == "+" and _sized(left) and _sized(right):
            _check_size(len(left) + len(right), "+")
        elif operator_ == "**":
            _check_power(left, right)
        elif operator_ == "%" and isinstance(left, str):
            _check_printf(left)
        return self.binop_table[operator_](left, right)

    @staticmethod
    def bounded_concat(values: tuple[Any, ...]) -> str:
        parts = [str(value) for value in values]
        _check_size(sum(len(part) for part in parts), "~")
        return "".join(parts)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return attr not in REFUSED_METHODS and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> Any:
        # `str.format` would be let through (the sandbox wraps it): refuse it instead.
        if _is_str_method(value, ("format", "format_map")):
            raise SecurityError(f"str.{value.__name__} is not allowed in rule templates")
        return None

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if _is_str_method(__obj, _PADDING_METHODS) and args and isinstance(args[0], int):
            _check_size(args[0], f"str.{__obj.__name__}")
        elif _is_str_method(__obj, ("replace",)) and len(args) >= 2:
            _check_replace(__obj.__self__, args[0], args[1], args[2] if len(args) > 2 else -1)
        return super().call(__context, __obj, *args, **kwargs)


def render_bounded(compiled: Any, context: dict[str, Any]) -> str:
    """`compiled.render(context)`, stopped as soon as the output passes `MAX_VALUE_CHARS`."""
    parts: list[str] = []
    size = 0
    for part in compiled.generate(context):
        size += len(part)
        if size > MAX_VALUE_CHARS:
            raise SecurityError(f"rendered value is over {MAX_VALUE_CHARS} characters")
        parts.append(part)
    return "".join(parts)


def template_problems(ast: nodes.Template) -> list[tuple[int | None, str]]:
    """(template line, message) for everything in the template that the sandbox would refuse at
    render, or that can only be there to attack: the load-time half of the sandbox."""
    problems: list[tuple[int | None, str]] = []
    for node in _walk(ast):
        message = _problem(node)
        if message is not None:
            problems.append((getattr(node, "lineno", None), message))
    return problems


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(current.iter_child_nodes())))


_BINOPS: dict[type[nodes.Node], str] = {
    nodes.Mul: "*",
    nodes.Pow: "**",
    nodes.Add: "+",
    nodes.Mod: "%",
}


class _Unknown(Exception):
    """The expression is not made of constants only: it is bounded when rendered instead."""


def _constant_value(node: nodes.Node) -> Any:
    """The value of an expression of constants, computed under the render-time bounds (a
    SecurityError when over them), or _Unknown. This is what Jinja's optimizer would fold."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, (nodes.List, nodes.Tuple)):
        return [_constant_value(item) for item in node.items]
    if isinstance(node, nodes.Neg):
        return -_constant_value(node.node)
    if isinstance(node, nodes.BinExpr) and type(node) in _BINOPS:
        left, right = _constant_value(node.left), _constant_value(node.right)
        return _bounded_binop(_BINOPS[type(node)], left, right)
    raise _Unknown


def _bounded_binop(operator_: str, left: Any, right: Any) -> Any:
    if operator_ == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        return left * right
    if operator_ == "+":
        if _sized(left) and _sized(right):
            _check_size(len(left) + len(right), "+")
        return left + right
    if operator_ == "**":
        _check_power(left, right)
        return left**right
    if isinstance(left, str):
        _check_printf(left)
    return left % right


def _constant_problem(node: nodes.Node) -> str | None:
    """Why an operator on constants (`'a' * 10**9`) or a padding call with a constant width
    (`x.ljust(10**9)`) would be refused at render, or None."""
    try:
        if type(node) in _BINOPS:
            _constant_value(node)
        elif (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and node.node.attr in _PADDING_METHODS
            and node.args
        ):
            width = _constant_value(node.args[0])
            if isinstance(width, int):
                _check_size(width, f"str.{node.node.attr}")
    except SecurityError as exc:
        return f"{exc.message}: the limit on any value a template makes"
    except Exception:  # _Unknown, or an operation Python refuses: bounded when rendered
        return None
    return None


def _problem(node: nodes.Node) -> str | None:
    literal = node.value if isinstance(node, nodes.Const) else None
    if isinstance(literal, str):
        unencodable = unencodable_problem(literal)
        if unencodable is not None:
            return unencodable
    constant = _constant_problem(node)
    if constant is not None:
        return constant
    if isinstance(node, (nodes.Import, nodes.FromImport, nodes.Include, nodes.Extends)):
        tag = {
            nodes.Import: "import",
            nodes.FromImport: "from",
            nodes.Include: "include",
            nodes.Extends: "extends",
        }[type(node)]
        return f"{{% {tag} %}} is not allowed: a rule template cannot load other templates"
    if isinstance(node, (nodes.Macro, nodes.CallBlock)):
        return "macros are not allowed in rule templates"
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        return _attribute_problem(node.node.attr, called=True)
    if isinstance(node, nodes.Getattr):
        return _attribute_problem(node.attr, called=False)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        if isinstance(key, str) and key.startswith("__"):
            return _attribute_problem(key, called=False)
    if isinstance(node, (nodes.Filter, nodes.Test)) and node.name is not None:
        if isinstance(node, nodes.Filter) and node.name in REFUSED_FILTERS:
            return f"filter '{node.name}' is not allowed: {REFUSED_FILTERS[node.name]}"
        if isinstance(node, nodes.Filter) and node.name == "map":
            named = _constant(node.args[0]) if node.args else None
            if isinstance(named, str) and named in REFUSED_FILTERS:
                return f"filter '{named}' is not allowed: {REFUSED_FILTERS[named]}"
        for keyword in node.kwargs:
            value = _constant(keyword.value)
            if keyword.key in _ATTRIBUTE_ARGUMENTS and isinstance(value, str):
                # Looked up as an item first: only a dunder can only be an attribute.
                for part in value.split("."):
                    if part.startswith("__"):
                        return _attribute_problem(part, called=False)
    return None


def unencodable_problem(text: str) -> str | None:
    """Why a template's text (its source, or a string literal in it: Jinja reads `'\\ud800'`
    as a lone surrogate) can never be sent, or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"the template holds U+{ord(text[exc.start]):04X}, a lone surrogate UTF-8 cannot"
            " encode: no value made with it could be hashed, stored or sent"
        )
    return None


def _attribute_problem(name: str, *, called: bool) -> str | None:
    """Why `.name` (`called`: `.name(...)`) would be refused at render, or None. A field of an
    event's dict is reached by `.name` only when dicts have no attribute of that name, so a
    method name is refused as a call, except the dict mutators, which dot access always hits."""
    if name.startswith("_"):
        return (
            f"attribute '{name}' is not allowed: names starting with '_' are Python internals"
            " (for an event field that starts with '_', write data['_name'])"
        )
    if name in _INTERNAL:
        return f"attribute '{name}' is not allowed: it reaches Python internals"
    if name in _DICT_MUTATORS or (called and name in _MUTATING):
        return (
            f"'.{name}' is not allowed: templates cannot change the event"
            f" (for an event field named {name!r}, write data['{name}'])"
        )
    if called and name in REFUSED_METHODS:
        return f"'.{name}()' is not allowed: {REFUSED_METHODS[name]}"
    return None


def _constant(node: nodes.Node) -> Any:
    return node.value if isinstance(node, nodes.Const) else None


# -- render-time bounds ---------------------------------------------------------------------


def _sized(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def _check_size(size: int, what: str) -> None:
    if size > MAX_VALUE_CHARS:
        raise SecurityError(f"{what} would make a value of {size} items, over {MAX_VALUE_CHARS}")


def _check_repeat(sequence: Any, times: Any) -> None:
    if _sized(sequence) and isinstance(times, int) and not isinstance(times, bool):
        _check_size(len(sequence) * max(times, 0), "*")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        bits = exponent * abs(base).bit_length()
        if bits > MAX_POWER_BITS:
            raise SecurityError(f"** would make a number of about {bits} bits")


def _check_printf(text: str) -> None:
    for match in _FORMAT_SPEC.finditer(text):
        for number in match.groups():
            if number == "*" or (number is not None and int(number) > MAX_FORMAT_WIDTH):
                raise SecurityError(f"% formatting with a width over {MAX_FORMAT_WIDTH}")


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _check_size(len(text) + found * max(len(new) - len(old), 0), "replace")


def _bounded_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    """Jinja's `replace` filter, refusing a result over the size limit before building it."""
    text, old, new = str(value), str(old), str(new)
    _check_replace(text, old, new, -1 if count is None else count)
    return text.replace(old, new, -1 if count is None else count)


def _is_str_method(value: Any, names: Any) -> bool:
    return (
        isinstance(value, (types.BuiltinMethodType, types.MethodType))
        and isinstance(getattr(value, "__self__", None), str)
        and value.__name__ in names
    )
