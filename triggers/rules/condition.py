"""`when:` conditions: CEL expressions, compiled and type-checked at load time.

Patterns cover what EventBridge can say; CEL covers the rest (arithmetic, comparisons between
fields, string functions). Expressions see two variables: `event` (the whole event document) and
`data` (its `data`). They must produce a bool. The checker runs at load, so a typo or a type
error (`data.size > "x"`) fails the rules file, not an event.

At event time an evaluation error (a missing key, a type mismatch on dynamic data) means "does
not match", with the error kept as the reason: the event did not satisfy the condition.

Rules loaded from a pre-validated artifact (`triggers compile`) compile their conditions on first
use instead (`deferred_condition`): the CEL runtime is then loaded only by an instance whose
events reach a rule with `when:`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

_environment = None


def _env():
    # The CEL runtime is a native extension: load it only when some rule has a `when:`.
    global _environment
    if _environment is None:
        from cel_expr_python import cel

        _environment = cel.NewEnv(
            variables={
                "event": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
                "data": cel.Type.DYN,
            }
        )
    return _environment


class ConditionProblem(ValueError):
    """A CEL expression that does not parse, does not type-check, or is not a bool."""


class Condition:
    """A compiled `when:` expression (or, deferred, one compiled on its first evaluation)."""

    __slots__ = ("source", "_program")

    def __init__(self, source: str, _program: Any = None) -> None:
        self.source = source
        self._program = _program

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def evaluate(self, document: Mapping[str, Any]) -> tuple[bool, str | None]:
        """(matched, reason-if-not)."""
        try:
            program = self._program
            if program is None:  # deferred: validated when the artifact was compiled
                program = self._program = _env().compile(self.source)
            result = program.eval(data={"event": document, "data": document.get("data")})
            value = result.value()
        except Exception as exc:  # the native runtime raises plain RuntimeError/TypeError
            return False, f"when: cannot evaluate ({exc})"
        if value is True:
            return True, None
        if value is False:
            return False, f"when: {self.source!r} is false"
        return False, f"when: cannot evaluate ({value})"


def compile_condition(source: str, kinds: frozenset[str] | None = None) -> Condition:
    """Check and compile a condition now. Raises ConditionProblem.

    With `kinds` (the rule's event kinds), `data` is checked against what those events have
    (triggers/events/fields.py): an unknown field or a type error on a declared one
    (`data.size >= "100"`) fails here, instead of the condition never matching. The program
    kept for evaluation is the plain one: documents are dicts, not the typed messages.
    """
    from cel_expr_python import cel

    try:
        program = _env().compile(source)
    except RuntimeError as exc:
        raise ConditionProblem(_clean(str(exc))) from None
    checked = program
    if kinds is not None:
        from ._cel_types import typed_env

        typed, messages = typed_env(kinds)
        if typed is not None:
            try:
                checked = typed.compile(source)
            except RuntimeError as exc:
                # An int field compared with a double is fine at run time (see _cel_types).
                doubles, _ = typed_env(kinds, ints_as_doubles=True)
                try:
                    checked = doubles.compile(source)
                except RuntimeError:
                    raise ConditionProblem(_typed_problem(str(exc), kinds, messages)) from None
    returns = checked.return_type()
    if returns != cel.Type.BOOL and returns != cel.Type.DYN:
        raise ConditionProblem(f"when: must be a bool expression, this one gives {returns.name()}")
    return Condition(source, program)


_UNDEFINED_FIELD = re.compile(
    r"undefined field '(?P<field>[^']+)' not found in struct '(?P<struct>[^']+)'"
)


def _typed_problem(
    message: str, kinds: frozenset[str], messages: dict[str, tuple[str, tuple[str, ...]]]
) -> str:
    """The checker's message, with an unknown field said in the terms of the event document
    (`data.nmae`, the kinds, the closest field) rather than of the generated proto types."""
    # The checker names a nullable field's type `wrapper(int)`; the document just has an int.
    from triggers.events.fields import listed

    cleaned = re.sub(r"wrapper\((\w+)\)", r"\1", _clean(message))
    unknown = _UNDEFINED_FIELD.search(cleaned)
    if unknown is None or unknown["struct"] not in messages:
        return cleaned
    shown, fields = messages[unknown["struct"]]
    field = unknown["field"]
    whose = " or ".join(f"'{k}'" for k in sorted(kinds))
    said = f"{shown}.{field}: no {whose} event has this field"
    close = difflib.get_close_matches(field, fields, n=1, cutoff=0.6)
    said += f"; did you mean {close[0]!r}?" if close else f"; {listed(fields)}"
    return cleaned[: unknown.start()] + said


def _clean(message: str) -> str:
    # "INVALID_ARGUMENT: ERROR: <input>:1:3: found no matching ... [INVALID_ARGUMENT]"
    message = message.removeprefix("INVALID_ARGUMENT: ").removesuffix(" [INVALID_ARGUMENT]")
    # The runtime adds the expression and a caret on further lines; the column says as much.
    first = message.splitlines()[0] if message else message
    return "when: " + first.replace("ERROR: <input>:", "CEL error at ")


def deferred_condition(source: str) -> Condition:
    """A condition that `compile_condition` accepted before (a pre-validated artifact): compiled
    on its first evaluation instead of now."""
    return Condition(source)
