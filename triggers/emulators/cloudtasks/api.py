"""The Cloud Tasks v2 REST routes, as the google-cloud-tasks client (REST transport) calls
them, over the store; served by the shared shell (``triggers.emulators.http``).

    POST   /v2/projects/{p}/locations/{l}/queues                       CreateQueue
    GET    /v2/projects/{p}/locations/{l}/queues                       ListQueues
    GET    /v2/projects/{p}/locations/{l}/queues/{q}                   GetQueue
    PATCH  /v2/projects/{p}/locations/{l}/queues/{q}?updateMask=..     UpdateQueue (upsert)
    DELETE /v2/projects/{p}/locations/{l}/queues/{q}                   DeleteQueue
    POST   /v2/projects/{p}/locations/{l}/queues/{q}:purge|:pause|:resume
    POST   /v2/projects/{p}/locations/{l}/queues/{q}/tasks             CreateTask
    GET    /v2/projects/{p}/locations/{l}/queues/{q}/tasks             ListTasks
    GET    /v2/projects/{p}/locations/{l}/queues/{q}/tasks/{t}         GetTask
    DELETE /v2/projects/{p}/locations/{l}/queues/{q}/tasks/{t}         DeleteTask
    POST   /v2/projects/{p}/locations/{l}/queues/{q}/tasks/{t}:run     RunTask

    GET    /_emulator/tasks                  queues, their pending and in-flight tasks, clock
    GET    /_emulator/tasks/dispatches       every attempt: queue, task, attempt, emulator time,
                                             status  (``/_emulator/tasks/dispatches/{queue}``)
    POST   /_emulator/tasks/drain            {"timeout": s, "queue": id?} -> {"drained": bool}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from ..http import Call, Handler
from ..rpc import ApiError
from .resources import (
    DEFAULT_DISPATCH_DEADLINE,
    MAX_SCHEDULE_AHEAD,
    QUEUE_ID,
    TASK_ID,
    VIEWS,
    Queue,
    TaskState,
    apply_queue_fields,
    enum_value,
    parse_duration,
    parse_http_request,
    parse_timestamp,
    to_int_enums,
    update_mask_paths,
)
from .store import TasksStore, new_task_id

_SEG = r"([^/:]+)"
_LOC = rf"/v2/projects/{_SEG}/locations/{_SEG}"
MAX_PAGE_SIZE = 1000
MAX_DRAIN_WAIT = 600.0


class CloudTasksService:
    """Cloud Tasks v2 as a ``triggers.emulators.http.Service``."""

    def __init__(self, store: TasksStore) -> None:
        self.store = store
        queue = rf"{_LOC}/queues/{_SEG}"
        task = rf"{queue}/tasks/{_SEG}"
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("POST", re.compile(rf"^{_LOC}/queues$"), "CreateQueue", self._create_queue),
            ("GET", re.compile(rf"^{_LOC}/queues$"), "ListQueues", self._list_queues),
            ("GET", re.compile(rf"^{queue}$"), "GetQueue", self._get_queue),
            ("PATCH", re.compile(rf"^{queue}$"), "UpdateQueue", self._update_queue),
            ("DELETE", re.compile(rf"^{queue}$"), "DeleteQueue", self._delete_queue),
            ("POST", re.compile(rf"^{queue}:purge$"), "PurgeQueue", self._purge),
            ("POST", re.compile(rf"^{queue}:pause$"), "PauseQueue", self._pause),
            ("POST", re.compile(rf"^{queue}:resume$"), "ResumeQueue", self._resume),
            ("POST", re.compile(rf"^{queue}/tasks$"), "CreateTask", self._create_task),
            ("GET", re.compile(rf"^{queue}/tasks$"), "ListTasks", self._list_tasks),
            ("GET", re.compile(rf"^{task}$"), "GetTask", self._get_task),
            ("DELETE", re.compile(rf"^{task}$"), "DeleteTask", self._delete_task),
            ("POST", re.compile(rf"^{task}:run$"), "RunTask", self._run_task),
        ]

    # ------------------------------------------------------------------ Service

    def route(self, verb: str, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        for method, pattern, rpc, handler in self.routes:
            if method == verb:
                m = pattern.match(path)
                if m:
                    return rpc, handler, tuple(unquote(g) for g in m.groups())
        return None

    def control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]] | None:
        if path == "/_emulator/tasks" and verb == "GET":
            return 200, self.store.summary()
        m = re.fullmatch(r"/_emulator/tasks/dispatches(?:/([^/]+))?", path)
        if m and verb == "GET":
            return 200, {"dispatches": self.store.dispatch_log(m.group(1))}
        if path == "/_emulator/tasks/drain" and verb == "POST":
            options = body if isinstance(body, Mapping) else {}
            timeout = options.get("timeout", 30)
            queue = options.get("queue")
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
                raise ApiError.invalid("timeout must be a number of seconds >= 0")
            drained = self.store.wait_drained(min(float(timeout), MAX_DRAIN_WAIT), queue)
            return 200, {"drained": drained, "pending": self.store.pending(queue)}
        return None

    def health(self) -> dict[str, Any]:
        return {"taskQueues": len(self.store.summary()["queues"])}

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        if "enum-encoding=int" in query.get("$alt", ""):
            return to_int_enums(result)
        return result

    def reset(self) -> None:
        self.store.reset()

    def shutdown(self, timeout: float) -> None:
        self.store.shutdown(timeout)

    def injected_error(self, status: int, message: str | None) -> ApiError:
        default = {
            429: "Quota exceeded for quota metric 'Requests' of service"
            " 'cloudtasks.googleapis.com' (injected by the emulator).",
        }
        return ApiError.injected(status, message or default.get(status))

    # ------------------------------------------------------------------ queues

    def _create_queue(self, call: Call) -> dict[str, Any]:
        parent = _parent(call.params)
        body = _body(call)
        name = body.get("name")
        if not isinstance(name, str) or not name.startswith(parent + "/queues/"):
            raise ApiError.invalid(f"queue.name must be {parent}/queues/QUEUE_ID", "queue.name")
        _check_queue_id(name)
        queue = Queue(name)
        apply_queue_fields(queue, body, None)
        return self.store.add_queue(queue).as_json()

    def _list_queues(self, call: Call) -> dict[str, Any]:
        queues = [q.as_json() for q in self.store.queues(_parent(call.params))]
        page, token = _page(queues, call)
        return {"queues": page, **({"nextPageToken": token} if token else {})}

    def _get_queue(self, call: Call) -> dict[str, Any]:
        return self.store.queue(_queue_name(call.params)).as_json()

    def _update_queue(self, call: Call) -> dict[str, Any]:
        name = _queue_name(call.params)
        body = _body(call)
        if body.get("name") not in (None, "", name):
            raise ApiError.invalid("queue.name does not match the URL", "queue.name")
        paths = update_mask_paths(call.query.get("updateMask", call.query.get("update_mask", "")))
        try:
            self.store.queue(name)
        except ApiError:  # UpdateQueue creates a queue that does not exist
            _check_queue_id(name)
            queue = Queue(name)
            apply_queue_fields(queue, body, None)
            try:
                return self.store.add_queue(queue).as_json()
            except ApiError:
                pass  # created meanwhile: update it
        updated = self.store.update_queue(name, lambda q: apply_queue_fields(q, body, paths))
        return updated.as_json()

    def _delete_queue(self, call: Call) -> dict[str, Any]:
        self.store.delete_queue(_queue_name(call.params))
        return {}

    def _purge(self, call: Call) -> dict[str, Any]:
        return self.store.purge(_queue_name(call.params)).as_json()

    def _pause(self, call: Call) -> dict[str, Any]:
        return self.store.set_state(_queue_name(call.params), "PAUSED").as_json()

    def _resume(self, call: Call) -> dict[str, Any]:
        return self.store.set_state(_queue_name(call.params), "RUNNING").as_json()

    # ------------------------------------------------------------------ tasks

    def _create_task(self, call: Call) -> dict[str, Any]:
        queue_name = _queue_name(call.params)
        body = _body(call)
        view = _view(body.get("responseView"))
        raw = body.get("task")
        if not isinstance(raw, Mapping):
            raise ApiError.invalid("task is required", "task")
        if "appEngineHttpRequest" in raw:
            raise ApiError(501, "App Engine tasks are not emulated", "UNIMPLEMENTED")
        if "httpRequest" not in raw:
            raise ApiError.invalid("task.http_request is required", "task.http_request")
        name = raw.get("name") or f"{queue_name}/tasks/{new_task_id()}"
        if not isinstance(name, str) or not name.startswith(queue_name + "/tasks/"):
            raise ApiError.invalid(f"task.name must be {queue_name}/tasks/TASK_ID", "task.name")
        if not TASK_ID.fullmatch(name.rsplit("/", 1)[-1]):
            raise ApiError.invalid(
                "Task ID must contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or"
                " underscores (_); the maximum length is 500 characters.",
                "task.name",
            )
        now = datetime.now(UTC)
        schedule = now
        if raw.get("scheduleTime"):
            schedule = parse_timestamp(raw["scheduleTime"], "task.schedule_time")
            if (schedule - now).total_seconds() > MAX_SCHEDULE_AHEAD:
                raise ApiError.invalid(
                    "schedule_time must be at most 30 days in the future", "task.schedule_time"
                )
        deadline = DEFAULT_DISPATCH_DEADLINE
        if raw.get("dispatchDeadline"):
            deadline = parse_duration(raw["dispatchDeadline"], "task.dispatch_deadline")
            if not 15 <= deadline <= 1800:
                raise ApiError.invalid(
                    "dispatch_deadline must be between 15s and 30m", "task.dispatch_deadline"
                )
        request = parse_http_request(raw["httpRequest"])
        task = TaskState(name, request, schedule, now, deadline)
        return self.store.add_task(task).as_json(view)

    def _list_tasks(self, call: Call) -> dict[str, Any]:
        view = _view(call.query.get("responseView", call.query.get("response_view")))
        tasks = [t.as_json(view) for t in self.store.tasks(_queue_name(call.params))]
        page, token = _page(tasks, call)
        return {"tasks": page, **({"nextPageToken": token} if token else {})}

    def _get_task(self, call: Call) -> dict[str, Any]:
        view = _view(call.query.get("responseView", call.query.get("response_view")))
        return self.store.task(_task_name(call.params)).as_json(view)

    def _delete_task(self, call: Call) -> dict[str, Any]:
        self.store.delete_task(_task_name(call.params))
        return {}

    def _run_task(self, call: Call) -> dict[str, Any]:
        view = _view(_body(call).get("responseView"))
        return self.store.run_task(_task_name(call.params)).as_json(view)


def _body(call: Call) -> Mapping[str, Any]:
    if call.body is None:
        return {}
    if not isinstance(call.body, Mapping):
        raise ApiError.invalid("Invalid JSON payload received. Expected an object.")
    return call.body


def _view(raw: Any) -> str:
    if raw in (None, ""):
        return "BASIC"
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    view = enum_value(raw, VIEWS, "response_view")
    return "BASIC" if view == "VIEW_UNSPECIFIED" else view


def _page(items: list[dict[str, Any]], call: Call) -> tuple[list[dict[str, Any]], str]:
    raw_size = call.query.get("pageSize", call.query.get("page_size", "")) or "0"
    raw_token = call.query.get("pageToken", call.query.get("page_token", "")) or "0"
    try:
        size, start = int(raw_size), int(raw_token)
    except ValueError:
        raise ApiError.invalid("invalid page_size or page_token") from None
    if size < 0 or start < 0:
        raise ApiError.invalid("invalid page_size or page_token")
    size = min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def _check_queue_id(name: str) -> None:
    if not QUEUE_ID.fullmatch(name.rsplit("/", 1)[-1]):
        raise ApiError.invalid(
            "Queue ID must contain only letters ([A-Za-z]), numbers ([0-9]), or hyphens (-);"
            " the maximum length is 100 characters.",
            "queue.name",
        )


def _parent(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}"


def _queue_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/queues/{p[2]}"


def _task_name(p: tuple[str, ...]) -> str:
    return f"{_queue_name(p)}/tasks/{p[3]}"
