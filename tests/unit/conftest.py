"""Fixtures of the dispatch-level unit tests: the storage rules of tests/fakes.py dispatched
with a memory ledger, a clock that stands still and a scripted runner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import Phase, settings

from tests.fakes import STORAGE_RULES_YAML, Clock, ScriptedRunner
from triggers.dispatch import Dispatcher
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text

STORAGE_RULES = load_text(STORAGE_RULES_YAML, environ={})


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def runner():
    return ScriptedRunner()


@pytest.fixture
def ledger(clock):
    return Ledger(MemoryBackend(), lease=timedelta(minutes=5), clock=clock)


@pytest.fixture
def dispatcher(ledger, runner):
    return Dispatcher(STORAGE_RULES, ledger, runner)


# `--hypothesis-profile=mutation` (what `mutmut run` passes, see docs/testing.md): a failing
# property is reported at once instead of being shrunk, which on a mutant can take minutes.
settings.register_profile(
    "mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=False
)
