"""The Cloud Tasks emulator's handlers on arbitrary request bodies: every bad input is a
Google-shaped 4xx/501 ApiError, never another exception (which the shell would answer 500).
The store's sender is a stand-in that answers 200 without a network: nothing leaves the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggers.emulators.cloudtasks.api import CloudTasksService
from triggers.emulators.cloudtasks.delivery import Outcome
from triggers.emulators.cloudtasks.resources import Queue
from triggers.emulators.cloudtasks.store import TasksStore
from triggers.emulators.http import Call
from triggers.emulators.rpc import ApiError

QUEUE = ("p", "l", "q")
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
http_requests = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(["http://127.0.0.1:9/t", "https://x/", "nope"]) | json_scalars,
        "httpMethod": st.sampled_from(["POST", "GET", 1, 2, 99, "BOGUS"]) | json_values,
        "headers": st.dictionaries(st.text(max_size=5), json_scalars, max_size=2) | json_values,
        "body": st.sampled_from(["aGk=", "aGk", "a-_b", "!!"]) | json_values,
        "oidcToken": st.fixed_dictionaries(
            {}, optional={"serviceAccountEmail": json_scalars, "audience": json_scalars}
        )
        | json_values,
    },
)
tasks = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(
            [
                "projects/p/locations/l/queues/q/tasks/t-1",
                "projects/p/locations/l/queues/q/tasks/a.b",
            ]
        )
        | json_scalars,
        "httpRequest": http_requests | json_values,
        "scheduleTime": st.sampled_from(["2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "soon"])
        | json_scalars,
        "dispatchDeadline": st.sampled_from(["10s", "60s", "1.5s", "forever"]) | json_scalars,
    },
)
queues = st.fixed_dictionaries(
    {
        "name": st.sampled_from(
            ["projects/p/locations/l/queues/q", "projects/p/locations/l/queues/bad_id"]
        )
        | json_scalars
    },
    optional={
        "rateLimits": st.dictionaries(
            st.sampled_from(["maxDispatchesPerSecond", "maxConcurrentDispatches", "maxBurstSize"]),
            json_scalars,
        )
        | json_values,
        "retryConfig": st.dictionaries(
            st.sampled_from(
                ["maxAttempts", "minBackoff", "maxBackoff", "maxDoublings", "maxRetryDuration"]
            ),
            json_scalars | st.sampled_from(["1s", "0.5s", "-1s"]),
        )
        | json_values,
    },
)


@pytest.fixture(scope="module")
def service() -> Iterator[CloudTasksService]:
    store = TasksStore(sender=lambda request, headers, deadline: Outcome(200))
    yield CloudTasksService(store)
    store.shutdown(5)


def _call(
    service: CloudTasksService,
    handler: Any,
    params: tuple[str, ...],
    body: Any,
    query: dict | None = None,
) -> None:
    try:
        handler(Call(params, query or {}, body))
    except ApiError as err:
        assert 400 <= err.http_status < 600 and err.http_status != 500, err.message
        assert err.body()["error"]["message"]


@settings(max_examples=300, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {}, optional={"task": tasks | json_values, "responseView": json_scalars}
    )
    | json_values
)
def test_create_task_answers_any_body_with_a_task_or_a_clear_error(
    service: CloudTasksService, body: Any
) -> None:
    service.store.reset()
    service.store.add_queue(Queue("projects/p/locations/l/queues/q"))
    _call(service, service._create_task, QUEUE, body)


@settings(max_examples=300, deadline=None)
@given(
    body=queues | json_values,
    mask=st.sampled_from(
        ["", "rateLimits", "retry_config.max_attempts", "rateLimits.maxBurstSize", ",,"]
    ),
)
def test_queue_writes_answer_any_body_with_a_queue_or_a_clear_error(
    service: CloudTasksService, body: Any, mask: str
) -> None:
    service.store.reset()
    _call(service, service._create_queue, ("p", "l"), body)
    _call(service, service._update_queue, QUEUE, body, {"updateMask": mask})


@pytest.mark.parametrize("query", [{"pageSize": "x"}, {"pageToken": "-1"}, {"responseView": "7"}])
def test_list_queries_that_make_no_sense_are_400(service: CloudTasksService, query: dict) -> None:
    service.store.reset()
    service._create_queue(Call(("p", "l"), {}, {"name": "projects/p/locations/l/queues/q"}))
    with pytest.raises(ApiError) as err:
        service._list_tasks(Call(QUEUE, query, None))
    assert err.value.http_status == 400
