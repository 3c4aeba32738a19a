"""What every model of the rules schema shares: the pydantic configuration and durations.

Its own module so that the parts of the schema (schema.py, schema_flow.py) can share them
without importing each other.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(value: Any) -> int:
    """`90`, `"90s"`, `"30m"`, `"1h30m"`, `"7d"` -> seconds. Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30m', '1h30m', '7d'")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(match.groupdict().values()):
            parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
            return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    raise ValueError(
        f"{value!r} is not a duration: "
        f"use seconds (90) or a string like '90s', '30m', '1h30m', '7d'"
    )


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"},
            ]
        }
    ),
]


class SchemaModel(BaseModel):
    # defer_build: pydantic builds a model's validator on its first use instead of at class
    # creation. Loading validates with RuleSpec only (its validator embeds OverridesSpec and
    # DedupSpec), so the other models' own validators are never built on that path; rules
    # from a pre-validated artifact are made with model_construct and build none. Measured:
    # importing this module and validating a first rule took ~22 ms eagerly, ~11 ms deferred.
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=False, defer_build=True
    )
