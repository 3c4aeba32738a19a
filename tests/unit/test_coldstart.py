"""What the function does for its cold start that is not visible in its answers: the garbage
collector is paused while the instance starts and answers its first event, and always resumes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""\
    import gc, json
    import functions_framework
    seen = {"before": gc.isenabled()}
    app = functions_framework.create_app(target="handle_http", source="triggers/main.py")
    seen["after_start"] = gc.isenabled()
    seen["frozen_at_start"] = gc.get_freeze_count() > 0
    import main
    paused = []
    real = main.get_app
    def spy():
        paused.append(not gc.isenabled())
        return real()
    main.get_app = spy
    client = app.test_client()
    for _ in range(2):
        answer = client.post("/", data=b"{}", headers={"Content-Type": "application/json"})
        assert answer.status_code == 200, answer.data
    seen["paused_during"] = paused
    seen["after_events"] = gc.isenabled()
    print(json.dumps(seen))
""")


def _run(env_extra: dict[str, str]) -> str:
    env = {**os.environ, "TRIGGERS_LEDGER": "memory", "TRIGGERS_RUNNER": "dry-run", **env_extra}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_gc_is_paused_for_the_start_and_the_first_event_only():
    import json

    seen = json.loads(_run({}))
    assert seen == {
        "before": True,
        "after_start": True,  # resumed once the app is built...
        "frozen_at_start": True,  # ...with what the start allocated frozen out of collections
        "paused_during": [True, False],  # the first event is answered paused, the next is not
        "after_events": True,
    }
