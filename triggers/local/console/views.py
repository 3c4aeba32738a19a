"""What the console shows, as JSON-ready dicts: pure functions over rules, events and records.

No I/O and no clock: `server.py` gathers the inputs (the rules in use, the ledger's records, the
emulator's executions, a pasted event) and these shape them for the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import DecodeError
from ...events import decode, parse_event_file

# Where `jobs.run` goes, as `triggers plan` prints it.
API_ROOT = "https://run.googleapis.com/v2"
# A pasted event larger than this is refused before decoding (the page is for trying rules).
MAX_PLAN_BYTES = 1024 * 1024


def rules_json(rules: Any) -> list[dict[str, Any]]:
    """Each loaded rule: what it listens to, its pattern and condition, and what it runs."""
    out = []
    for rule in rules:
        spec = rule.spec
        scope = {
            name: getattr(spec, name)
            for name in (
                "topic",
                "subscription",
                "bucket",
                "schedule",
                "time_zone",
                "scheduler_job",
            )
            if getattr(spec, name) is not None
        }
        out.append(
            {
                "name": rule.name,
                "description": spec.description,
                "enabled": spec.enabled,
                "on": list(spec.on),
                "scope": scope,
                "match": spec.match,
                "when": spec.when,
                "system": spec.system,
                "job": rule.job,
                "overrides": spec.overrides.model_dump(mode="json", exclude_defaults=True),
                "dedup": spec.dedup.model_dump(mode="json", exclude_defaults=True),
            }
        )
    return out


def event_json(event: Any) -> dict[str, Any]:
    """The identity of a decoded event, for a line of the events list."""
    return {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "kind": event.kind,
        "form": event.form,
    }


def verdicts_json(verdicts: Iterable[Any], *, requests: bool) -> list[dict[str, Any]]:
    """Every rule's verdict: matched, or the first field that failed and why; with `requests`
    the exact request a matched rule would send (what `triggers plan` prints)."""
    out = []
    for verdict in verdicts:
        entry: dict[str, Any] = {"rule": verdict.rule.name, "matched": verdict.matched}
        if verdict.reason:
            entry["reason"] = verdict.reason
        if verdict.error:
            entry["error"] = str(verdict.error)
        if requests and verdict.request is not None:
            request = verdict.request
            entry["job"] = request.job
            entry["dedup_key"] = request.dedup_key
            entry["ledger_key"] = request.ledger_key
            entry["system"] = request.system
            if request.renderer is None:
                entry["http"] = f"POST {API_ROOT}/{request.job}:run"
            entry["body"] = request.request_body()
        out.append(entry)
    return out


def plan_json(text: str, rules: Any) -> dict[str, Any]:
    """`triggers plan` for a pasted event file (`{headers, body}`) or bare JSON body.

    Never raises for bad input: a text that does not decode gives `rejected` with the reason,
    as the function would record it."""
    if len(text.encode()) > MAX_PLAN_BYTES:
        return {"rejected": {"reason": "too_large", "message": "over 1 MiB: paste a smaller event"}}
    try:
        headers, body = parse_event_file(text, "pasted event")
        event = decode(headers, body)
    except DecodeError as exc:
        return {"rejected": {"reason": exc.reason, "message": exc.message}}
    verdicts = rules.verdicts(event)
    return {
        "event": event_json(event),
        "document": jsonable(event.document),
        "verdicts": verdicts_json(verdicts, requests=True),
        "matched": sum(1 for v in verdicts if v.matched),
    }


def runs_json(
    records: Iterable[Any], executions: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The ledger's records, newest first, each with its emulator execution when there is one
    (`executions` by full name, from `executions_by_name`)."""
    from ...ops.history import as_json

    out = []
    for record in records:
        row = as_json(record)
        row.pop("request", None)  # `triggers show KEY` has it; the list stays light
        row["execution_detail"] = executions.get(record.execution or "")
        out.append(row)
    return out


def executions_by_name(dump: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The emulator's `GET /_emulator/executions` answer, reduced to what the page shows."""
    out = {}
    for execution in dump.get("executions", []):
        emulator = execution.get("emulator", {})
        short = execution["name"].rsplit("/", 1)[1]
        out[execution["name"]] = {
            "name": execution["name"],
            "short": short,
            "state": emulator.get("state"),
            "task_count": execution.get("taskCount"),
            "succeeded": execution.get("succeededCount", 0),
            "failed": execution.get("failedCount", 0),
            "cancelled": execution.get("cancelledCount", 0),
            "running": execution.get("runningCount", 0),
            "started": execution.get("startTime"),
            "completed": execution.get("completionTime"),
            "attempts": [
                {
                    "index": attempt["index"],
                    "attempt": attempt["attempt"],
                    "result": attempt.get("result"),
                    "exit_code": attempt.get("exitCode"),
                    "log": f"api/logs/{short}/{attempt['index']}/{attempt['attempt']}",
                }
                for attempt in emulator.get("attempts", [])
            ],
        }
    return out


def jsonable(value: Any) -> Any:
    """`value` as plain JSON (an event document may hold bytes or other non-JSON leaves)."""
    return json.loads(json.dumps(value, default=str))
