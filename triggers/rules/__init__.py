"""Rules: the YAML schema, loading with file:line errors, patterns, conditions and templates."""

from .loader import load, load_text
from .rule import Rule, Verdict
from .ruleset import RuleSet

__all__ = ["load", "load_text", "Rule", "RuleSet", "Verdict"]
