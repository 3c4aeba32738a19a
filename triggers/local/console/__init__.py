"""The local console: a small web page over `triggers serve` (docs/local.md, "The console").

It shows the loaded rules, the requests the function received with every rule's verdict, the
runs with their executions and task logs, and plans a pasted event as `triggers plan` does.
Plain HTML, CSS and JavaScript shipped in `static/` (no build step); served by `server.Console`
at `/_console/` on the function's own port. Only `triggers serve` uses it: the deployed
function (`triggers/main.py`) never imports anything from `triggers.local`.
"""

from .recorder import EventLog, RecordingApp
from .server import PREFIX, Console

__all__ = ["PREFIX", "Console", "EventLog", "RecordingApp"]
