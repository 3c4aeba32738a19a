"""A loaded set of rules: the router and what callers ask of it."""

from __future__ import annotations

from collections.abc import Iterable

from ..events.model import Event
from .router import Router
from .rule import Rule, Verdict


class RuleSet:
    def __init__(self, rules: Iterable[Rule], *, files: tuple[str, ...] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.files = files
        self._router = Router([rule for rule in self.rules if rule.enabled])

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)

    def get(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    def route(self, event: Event) -> list[Rule]:
        """The enabled rules that match, in declaration order (indexed; no I/O)."""
        return self._router.route(event)

    def verdicts(self, event: Event) -> list[Verdict]:
        """Every rule's verdict with its reason, for `triggers plan` (a full scan, on purpose)."""
        verdicts = []
        for rule in self.rules:
            if not rule.enabled:
                verdicts.append(Verdict(rule, matched=False, reason="rule is disabled"))
            else:
                verdicts.append(rule.verdict(event))
        return verdicts

    def stats(self) -> dict[str, int]:
        return self._router.stats()
