"""triggers: turn Pub/Sub, Cloud Scheduler and Cloud Storage events into Cloud Run job runs.

The package is deliberately light to import (cold start is a feature): submodules load what they
need when they are used. Start at `triggers.events.decode`, `triggers.rules.load` and
`triggers.rules.patterns.compile`.
"""

__version__ = "0.1.0"
