"""A rule's spec as written, kept as compact JSON text and rebuilt on demand.

A loaded rule does not keep a pydantic `RuleSpec`: with its nested models, their field sets and
the dicts of every default, that was ~5 KiB of a 10,000-rule set's ~11 KiB per rule, for values
that planning reads a handful of (`Rule.options`). Tools that want the rule as written
(`triggers plan`, the local server, samples) ask for `Rule.spec`, which is rebuilt from this text
on first use. The text holds the fields the rule set (`model_dump(exclude_unset=True)`), so the
rebuilt spec has the same values and the same `model_fields_set`; `match` is left out when the
rule's compiled pattern holds it already.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .patterns import Pattern
    from .schema import RuleSpec

_SEPARATORS = (",", ":")


def dump_spec(spec: RuleSpec, *, with_match: bool = False) -> str | None:
    """The spec's set fields as JSON text; None when JSON cannot carry them exactly (an `example`
    with non-string keys...), in which case the caller keeps the spec itself."""
    data = spec.model_dump(mode="python", exclude_unset=True)
    if not with_match and data.get("match") is not None:
        del data["match"]  # the compiled pattern keeps it (Pattern.source)
    try:
        text = json.dumps(data, separators=_SEPARATORS, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == data else None


def load_spec(text: str, pattern: Pattern | None) -> RuleSpec:
    """The RuleSpec `dump_spec` wrote, built without validation (it was validated when dumped).
    `pattern` is the rule's compiled `match:` (None when it has none)."""
    from .schema import DedupSpec, OverridesSpec, RuleSpec, SecretRefSpec
    from .schema_flow import BatchSpec, LimitsSpec

    data: dict[str, Any] = json.loads(text)
    if "match" not in data and pattern is not None:
        data["match"] = pattern.source
    overrides = data.get("overrides")
    if overrides is not None:
        env = overrides.get("env")
        if env is not None:
            # A secret reference was dumped as a mapping; every other env value is a template.
            overrides["env"] = {
                name: _construct(SecretRefSpec, value) if isinstance(value, dict) else value
                for name, value in env.items()
            }
        data["overrides"] = _construct(OverridesSpec, overrides)
    for field, model in (("dedup", DedupSpec), ("limits", LimitsSpec), ("batch", BatchSpec)):
        if data.get(field) is not None:
            data[field] = _construct(model, data[field])
    return _construct(RuleSpec, data)


def _construct(model: Any, values: dict[str, Any]) -> Any:
    # model_construct fills the defaults of unset fields; the set ones are the keys present.
    return model.model_construct(set(values), **values)
