"""The cold-start floor of benchmarks/coldstart.py (`--floor`): benchmarks/_minimal_function.py
plus the one thing of triggers no cold start can skip today, its settings (`Settings()`: the
standard library only since issue 15, no longer pydantic-settings).

    functions-framework --target handle_http --source benchmarks/_floor_function.py

Environment: as the minimal function's, which answers every event.
"""

from _minimal_function import handle_http  # noqa: F401  (functions-framework adds this directory)

from triggers.function.settings import Settings

SETTINGS = Settings()
