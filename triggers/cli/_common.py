"""What the command modules share: defaults and option spellings."""

from __future__ import annotations

import argparse

DEFAULT_RULES = "config/rules.yaml"
API_ROOT = "https://run.googleapis.com/v2"
SQLITE_DEFAULT = ".triggers/ledger.sqlite3"
DEFAULT_URL = "http://127.0.0.1:8080/"
SUPPRESS = argparse.SUPPRESS
