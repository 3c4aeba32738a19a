"""`CloudTasksQueue`: the production `TaskQueue`, on the real google-cloud-tasks client.

A task becomes an HTTP task: `POST {target_url}` with the task's body as JSON, signed with an
OIDC token of `service_account` for `audience` (the function checks it), named
`{queue path}/tasks/{task.name}` so that a second enqueue of the same launch is ALREADY_EXISTS.

How `enqueue` reads the API's answers:

    created                                   True
    409 ALREADY_EXISTS (also: the name was used recently)     False: the task exists (or did)
    429, 5xx, 409 ABORTED, 401, deadline, connection errors    QueueUnavailable (retry later)
    404 (no such queue), 403, 400 and other refusals           TaskQueueError naming the queue

google-cloud-tasks (and grpc/protobuf behind it) is imported on first use: the function's cold
start does not pay for it unless a rule has flow control.

`ensure_queues` creates or updates queues from the rules' `Limits` (the local stack; production
queues come from Terraform).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from .._gapic import client_kwargs
from .queue import QueueUnavailable, Task, TaskQueueError
from .spec import Limits

# Every flow-control queue retries a task forever with this backoff: the task handler bounds
# waiting itself (`max_wait`), so the queue must never drop a launch on its own.
RETRY_MAX_ATTEMPTS = -1
RETRY_MIN_BACKOFF_SECONDS = 1
RETRY_MAX_BACKOFF_SECONDS = 300
DEFAULT_TIMEOUT = 10.0


class CloudTasksQueue:
    """Creates HTTP tasks in the queues of one project and location. Thread-safe.

    target_url: where tasks call back (the function's URL including TASK_PATH).
    service_account / audience: the OIDC token's signer and audience (audience defaults to
        the target URL, as in Cloud Tasks); no service_account = no Authorization header.
    endpoint: e.g. ``http://127.0.0.1:8123`` (the emulator): REST transport and anonymous
        credentials unless ``credentials`` are given. Without it: gRPC to
        cloudtasks.googleapis.com with ``credentials`` or Application Default Credentials.
    timeout: seconds for each API call.
    client: a ready `tasks_v2.CloudTasksClient` (tests, custom transports).
    """

    def __init__(
        self,
        project: str,
        location: str,
        target_url: str,
        *,
        service_account: str | None = None,
        audience: str | None = None,
        endpoint: str | None = None,
        credentials: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: Any = None,
    ) -> None:
        if not project or not location:
            raise ValueError("project and location are required")
        if not target_url.startswith(("https://", "http://")):
            raise ValueError(f"target_url must be an http(s) URL, not {target_url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.project = project
        self.location = location
        self.target_url = target_url
        self.service_account = service_account
        self.audience = audience
        self.endpoint = endpoint
        self.timeout = timeout
        self._credentials = credentials
        self._client = client
        self._lock = threading.Lock()

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def queue_path(self, queue: str) -> str:
        return f"{self.parent}/queues/{queue}"

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.cloud import tasks_v2

                    self._client = tasks_v2.CloudTasksClient(**self._client_kwargs())
        return self._client

    def _client_kwargs(self) -> dict[str, Any]:
        return client_kwargs(self.endpoint, self._credentials)

    # ------------------------------------------------------------------ enqueue

    def http_task(self, task: Task) -> dict[str, Any]:
        """The Cloud Tasks `Task` (as a dict the client accepts) for ``task``."""
        request: dict[str, Any] = {
            "url": self.target_url,
            "http_method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(task.body, separators=(",", ":"), sort_keys=True).encode(),
        }
        if self.service_account:
            request["oidc_token"] = {
                "service_account_email": self.service_account,
                "audience": self.audience or self.target_url,
            }
        created: dict[str, Any] = {
            "name": f"{self.queue_path(task.queue)}/tasks/{task.name}",
            "http_request": request,
        }
        if task.schedule_time is not None:
            from google.protobuf import timestamp_pb2

            when = timestamp_pb2.Timestamp()
            when.FromDatetime(task.schedule_time)
            created["schedule_time"] = when
        return created

    def enqueue(self, task: Task) -> bool:
        """Create the task: True if created now, False if its name exists or existed recently.
        Raises QueueUnavailable (retry later) or TaskQueueError (a refusal that will repeat)."""
        queue = self.queue_path(task.queue)
        try:
            self.client.create_task(
                request={"parent": queue, "task": self.http_task(task)},
                timeout=self.timeout,
                retry=None,
            )
        except Exception as exc:
            error = classify_error(exc, f"creating task {task.name!r} in queue {queue}")
            if error is None:
                return False
            raise error from exc
        return True


def classify_error(exc: BaseException, what: str) -> TaskQueueError | None:
    """What an exception of the client means for an enqueue: None = ALREADY_EXISTS (the task
    exists), QueueUnavailable = try again later, TaskQueueError = refused for good."""
    from google.api_core import exceptions as gexc

    message = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, gexc.GoogleAPICallError):
        if isinstance(exc, gexc.Conflict):
            # REST maps every 409 to Conflict; the body's status tells ALREADY_EXISTS (the only
            # 409 CreateTask documents) from ABORTED (a concurrency conflict: retry).
            if isinstance(exc, gexc.Aborted) or _rest_status(exc) == "ABORTED":
                return QueueUnavailable(message)
            return None
        if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.Unauthorized):
            return QueueUnavailable(message)  # quota, outage, deadline, a stale token
        if isinstance(exc, gexc.Cancelled):
            return QueueUnavailable(message)
        return TaskQueueError(message)  # 400, 403, 404 (no such queue), 412, 501 ...
    if isinstance(exc, gexc.RetryError):
        return QueueUnavailable(message)
    if _is_transport_error(exc):
        return QueueUnavailable(message)
    return TaskQueueError(message)


def _rest_status(exc: Any) -> str | None:
    response = getattr(exc, "response", None)
    try:
        return str(response.json()["error"]["status"])  # type: ignore[union-attr]
    except Exception:  # no response, not JSON, another shape
        return None


def _is_transport_error(exc: BaseException) -> bool:
    """Timeouts and connection failures of the REST transport (`requests`, unwrapped) or of
    getting a token (google-auth): nothing is known to be created, a retry is harmless."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    try:
        from google.auth import exceptions as auth_exceptions

        if isinstance(exc, auth_exceptions.TransportError | auth_exceptions.RefreshError):
            return True
    except ImportError:  # pragma: no cover - google-auth comes with the client
        pass
    try:
        import requests
    except ImportError:  # pragma: no cover - only the gRPC transport is installed
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


# ---------------------------------------------------------------------- queues


def queue_settings(limits: Limits) -> dict[str, Any]:
    """The Cloud Tasks `Queue` fields a rule's limits ask for (rate, retry forever)."""
    settings: dict[str, Any] = {
        "retry_config": {
            "max_attempts": RETRY_MAX_ATTEMPTS,
            "min_backoff": {"seconds": RETRY_MIN_BACKOFF_SECONDS},
            "max_backoff": {"seconds": RETRY_MAX_BACKOFF_SECONDS},
        }
    }
    if limits.rate_per_second is not None:
        settings["rate_limits"] = {"max_dispatches_per_second": limits.rate_per_second}
    return settings


def ensure_queues(queues_of: CloudTasksQueue, queues: Mapping[str, Limits]) -> dict[str, str]:
    """Create each queue, or update it if its rate or retry config differ: queue id ->
    "created" | "updated" | "unchanged". Idempotent. ``queues_of`` gives the client, project
    and location (anything with ``client`` and ``parent``). Raises QueueUnavailable or
    TaskQueueError like `enqueue`."""
    from google.api_core import exceptions as gexc

    client, parent = queues_of.client, queues_of.parent
    done: dict[str, str] = {}
    for queue_id, limits in sorted(queues.items()):
        name = f"{parent}/queues/{queue_id}"
        wanted = {"name": name, **queue_settings(limits)}
        try:
            try:
                client.create_queue(request={"parent": parent, "queue": wanted})
                done[queue_id] = "created"
                continue
            except gexc.Conflict:
                pass
            current = client.get_queue(request={"name": name})
            if _matches(current, limits):
                done[queue_id] = "unchanged"
                continue
            mask = [
                "retry_config.max_attempts",
                "retry_config.min_backoff",
                "retry_config.max_backoff",
            ]
            if limits.rate_per_second is not None:
                mask.append("rate_limits.max_dispatches_per_second")
            client.update_queue(request={"queue": wanted, "update_mask": {"paths": mask}})
            done[queue_id] = "updated"
        except Exception as exc:
            error = classify_error(exc, f"ensuring queue {name}")
            raise (error or TaskQueueError(f"ensuring queue {name}: {exc}")) from exc
    return done


def _matches(queue: Any, limits: Limits) -> bool:
    retry = queue.retry_config
    if (
        retry.max_attempts != RETRY_MAX_ATTEMPTS
        or retry.min_backoff.total_seconds() != RETRY_MIN_BACKOFF_SECONDS
        or retry.max_backoff.total_seconds() != RETRY_MAX_BACKOFF_SECONDS
    ):
        return False
    rate = limits.rate_per_second
    return rate is None or abs(queue.rate_limits.max_dispatches_per_second - rate) < 1e-9
