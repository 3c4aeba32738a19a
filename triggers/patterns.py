"""EventBridge content patterns: the public entry points (see ``triggers.rules.patterns``)."""

from .errors import PatternError
from .rules.patterns import Pattern, compile, exact_key, values_at

__all__ = ["Pattern", "PatternError", "compile", "exact_key", "values_at"]
