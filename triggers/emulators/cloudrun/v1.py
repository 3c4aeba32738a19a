"""The Cloud Run Admin API v1 (Knative-style) routes for jobs, over the same store as the v2
routes: an execution started through v1 is the same execution v2 lists, and the other way round.

Routes (served by the shared shell, so the shared fault model applies; the RPC names are v2's, as
these are the same calls: a fault on ``RunJob`` hits both versions, ``match:
"/apis/run.googleapis.com/v1/"`` narrows it to v1):

    POST /apis/run.googleapis.com/v1/namespaces/{p}/jobs/{job}:run              RunJob
    GET  /apis/run.googleapis.com/v1/namespaces/{p}/jobs/{job}                  GetJob
    GET  /apis/run.googleapis.com/v1/namespaces/{p}/executions                  ListExecutions
         ?labelSelector=run.googleapis.com/job={job}&limit=N&continue=TOKEN     (newest first)
    GET  /apis/run.googleapis.com/v1/namespaces/{p}/executions/{e}              GetExecution
    POST /apis/run.googleapis.com/v1/namespaces/{p}/executions/{e}:cancel       CancelExecution

Resources are `{apiVersion, kind, metadata, spec, status}` with `metadata.name` the short name
and `metadata.namespace` the project; conditions have `status` True/False/Unknown and a CamelCase
`reason`. v1 is served per region, and one emulator serves every region: a namespace's job is
found by its id, which must then be unique in the project (the jobs file's problem otherwise, a
400 that says so). Errors keep Google's JSON shape, as the service answers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..http import Call, Handler
from ..rpc import ApiError
from .jobs import JobSpec
from .overrides import parse_run_body
from .records import page
from .state import Store

PREFIX = "/apis/run.googleapis.com/v1"
API_VERSION = "run.googleapis.com/v1"
JOB_LABEL = "run.googleapis.com/job"
LOCATION_LABEL = "cloud.googleapis.com/location"
_SEG = r"([^/:]+)"
_NS = rf"{PREFIX}/namespaces/{_SEG}"
_SELECTOR = re.compile(r"^\s*run\.googleapis\.com/job\s*==?\s*([^\s,]+)\s*$")


class CloudRunV1Service:
    """The jobs and executions of the Cloud Run Admin API v1 as a
    ``triggers.emulators.http.Service``, over the v2 service's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("POST", re.compile(rf"^{_NS}/jobs/{_SEG}:run$"), "RunJob", self._run_job),
            ("GET", re.compile(rf"^{_NS}/jobs/{_SEG}$"), "GetJob", self._get_job),
            ("GET", re.compile(rf"^{_NS}/executions$"), "ListExecutions", self._list),
            ("GET", re.compile(rf"^{_NS}/executions/{_SEG}$"), "GetExecution", self._get),
            (
                "POST",
                re.compile(rf"^{_NS}/executions/{_SEG}:cancel$"),
                "CancelExecution",
                self._cancel,
            ),
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
        return None  # the v2 service's /_emulator/executions shows the same executions

    def health(self) -> dict[str, Any]:
        return {"cloudrun-v1": True}

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        return result

    # The store is shared with the v2 service; both may reset it (the second finds it empty),
    # and this one must when it is served alone (`--api cloudrun-v1`).
    def reset(self) -> None:
        self.store.reset()

    def shutdown(self, timeout: float) -> None:
        self.store.shutdown(timeout)

    # ------------------------------------------------------------------ handlers

    def _job(self, project: str, job_id: str) -> JobSpec:
        found = [j for j in self.store.catalog if j.project == project and j.name == job_id]
        if not found:
            raise ApiError(
                404, f"Resource '{job_id}' of kind 'JOB' in project '{project}' does not exist."
            )
        if len(found) > 1:
            regions = ", ".join(sorted(j.region for j in found))
            raise ApiError.invalid(
                f"job '{job_id}' exists in several regions ({regions}) of project '{project}';"
                " the emulator's v1 routes (one endpoint for every region) need it to be unique"
            )
        return found[0]

    def _run_job(self, call: Call) -> dict[str, Any]:
        project, job_id = call.params
        job = self._job(project, job_id)
        operation = self.store.run_job(job.full_name, parse_run_body(v2_run_body(call.body)))
        execution = {k: v for k, v in operation["metadata"].items() if k != "@type"}
        return execution_v1(execution)

    def _get_job(self, call: Call) -> dict[str, Any]:
        project, job_id = call.params
        return job_v1(self.store.get_job(self._job(project, job_id).full_name))

    def _full_name(self, project: str, short: str) -> str:
        for rec in self.store.records():
            live = self.store.execution_record(rec.name) is not None
            if rec.short == short and rec.job.project == project and live:
                return rec.name
        raise ApiError(
            404, f"Resource '{short}' of kind 'EXECUTION' in project '{project}' does not exist."
        )

    def _get(self, call: Call) -> dict[str, Any]:
        return execution_v1(self.store.get_execution(self._full_name(*call.params)))

    def _cancel(self, call: Call) -> dict[str, Any]:
        name = self._full_name(*call.params)
        self.store.cancel_execution(name)
        return execution_v1(self.store.get_execution(name))

    def _list(self, call: Call) -> dict[str, Any]:
        (project,) = call.params
        selector = call.query.get("labelSelector", "")
        job_id = None
        if selector.strip():
            m = _SELECTOR.match(selector)
            if m is None:
                raise ApiError.invalid(
                    f"unsupported labelSelector {selector!r}: the emulator supports"
                    f" '{JOB_LABEL}=JOB' only",
                    "labelSelector",
                )
            job_id = m.group(1)
        raw_limit = call.query.get("limit", "") or "0"
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ApiError.invalid(
                f"Invalid value at 'limit' (TYPE_INT32), \"{raw_limit}\""
            ) from None
        live = [
            r
            for r in reversed(self.store.records())  # newest first
            if r.job.project == project
            and (job_id is None or r.job.name == job_id)
            and self.store.execution_record(r.name) is not None
        ]
        chunk, nxt = page(live, limit, call.query.get("continue", ""), f"v1/{project}/{selector}")
        items = []
        for rec in chunk:
            try:
                items.append(execution_v1(self.store.get_execution(rec.name)))
            except ApiError:
                continue  # deleted since: no longer listed
        return {
            "apiVersion": API_VERSION,
            "kind": "ExecutionsList",
            "metadata": {"continue": nxt} if nxt else {},
            "items": items,
        }


# ---------------------------------------------------------------------- request


def v2_run_body(body: Any) -> dict[str, Any]:
    """A v1 `RunJobRequest` as the v2 body the store's parser validates: the same overrides,
    but `timeoutSeconds` (an integer) becomes a Duration. Unknown fields are refused (400)."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise ApiError.invalid("Invalid JSON payload received. Expected an object.")
    unknown = sorted(set(body) - {"overrides"})
    if unknown:
        raise ApiError.invalid(f'Invalid JSON payload received. Unknown name "{unknown[0]}"')
    raw = body.get("overrides")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ApiError.invalid("Invalid value at 'overrides'", "overrides")
    known = {"containerOverrides", "taskCount", "timeoutSeconds", "delayExecution"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ApiError.invalid(
            f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'overrides'"
        )
    overrides = {k: v for k, v in raw.items() if k in ("containerOverrides", "taskCount")}
    if raw.get("delayExecution") not in (None, False):
        raise ApiError.invalid(
            "overrides.delayExecution: the emulator starts executions at once", "overrides"
        )
    seconds = raw.get("timeoutSeconds")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | str):
            raise ApiError.invalid(
                f"Invalid value at 'overrides.timeout_seconds' (TYPE_INT32), {seconds!r}"
            )
        try:
            value = int(seconds)
        except ValueError:
            raise ApiError.invalid(
                f"Invalid value at 'overrides.timeout_seconds' (TYPE_INT32), \"{seconds}\""
            ) from None
        if value <= 0:
            raise ApiError.invalid(f"overrides.timeout_seconds must be positive, got {value}")
        overrides["timeout"] = f"{value}s"
    return {"overrides": overrides}


# ---------------------------------------------------------------------- resources


def _parts(v2_name: str) -> tuple[str, str, str, str]:
    """`projects/P/locations/R/jobs/J/executions/E` -> (P, R, J, E)."""
    p = v2_name.split("/")
    return p[1], p[3], p[5], p[7]


def _seconds(duration: str) -> str:
    return str(int(float(duration.rstrip("s"))))


_STATUS = {
    "CONDITION_SUCCEEDED": "True",
    "CONDITION_FAILED": "False",
    "CONDITION_PENDING": "Unknown",
    "CONDITION_RECONCILING": "Unknown",
}
_REASONS = {
    "CANCELLED": "Cancelled",
    "CANCELLING": "Cancelling",
    "NON_ZERO_EXIT_CODE": "NonZeroExitCode",
}


def condition_v1(c: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 condition (`state`, `executionReason`) in v1's Kubernetes form (`status`,
    `reason`)."""
    status = _STATUS.get(c.get("state", ""), "Unknown")
    out: dict[str, Any] = {"type": c["type"], "status": status}
    reason = _REASONS.get(c.get("executionReason", ""))
    if reason is None and status == "False":
        reason = "Failed"
    if reason:
        out["reason"] = reason
    if c.get("message"):
        out["message"] = c["message"]
    if c.get("lastTransitionTime"):
        out["lastTransitionTime"] = c["lastTransitionTime"]
    if status == "False":
        out["severity"] = "Error"
    return out


def _task_template(template: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "spec": {
            "containers": template.get("containers", []),
            "maxRetries": template.get("maxRetries", 0),
            "timeoutSeconds": _seconds(template.get("timeout", "0s")),
            "serviceAccountName": "emulator@triggers.local",
        }
    }


def execution_v1(e: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 Execution (the store's JSON) as a v1 Execution."""
    project, region, job, short = _parts(e["name"])
    metadata: dict[str, Any] = {
        "name": short,
        "namespace": project,
        "selfLink": f"{PREFIX}/namespaces/{project}/executions/{short}",
        "uid": e["uid"],
        "resourceVersion": e.get("etag", "").strip('"'),
        "generation": 1,
        "creationTimestamp": e["createTime"],
        "labels": {JOB_LABEL: job, LOCATION_LABEL: region},
        "ownerReferences": [
            {"kind": "Job", "name": job, "apiVersion": API_VERSION, "controller": True}
        ],
    }
    if e.get("deleteTime"):
        metadata["deletionTimestamp"] = e["deleteTime"]
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [condition_v1(c) for c in e.get("conditions", [])],
        "logUri": e.get("logUri", ""),
    }
    for field in ("startTime", "completionTime"):
        if e.get(field):
            status[field] = e[field]
    for field in ("runningCount", "succeededCount", "failedCount", "cancelledCount"):
        if e.get(field):
            status[field] = e[field]
    if e.get("retriedCount"):
        status["retriedCount"] = e["retriedCount"]
    return {
        "apiVersion": API_VERSION,
        "kind": "Execution",
        "metadata": metadata,
        "spec": {
            "parallelism": e.get("parallelism", 0),
            "taskCount": e.get("taskCount", 1),
            "template": _task_template(e.get("template", {})),
        },
        "status": status,
    }


def job_v1(j: Mapping[str, Any]) -> dict[str, Any]:
    """A v2 Job (the store's JSON) as a v1 Job."""
    parts = j["name"].split("/")
    project, region, job = parts[1], parts[3], parts[5]
    template = j.get("template", {})
    spec: dict[str, Any] = {
        "taskCount": template.get("taskCount", 1),
        "template": _task_template(template.get("template", {})),
    }
    if template.get("parallelism"):
        spec["parallelism"] = template["parallelism"]
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [condition_v1(j["terminalCondition"])] if "terminalCondition" in j else [],
        "executionCount": j.get("executionCount", 0),
    }
    latest = j.get("latestCreatedExecution")
    if latest:
        ref = {"name": latest["name"].rsplit("/", 1)[-1]}
        for v2_field, v1_field in (
            ("createTime", "creationTimestamp"),
            ("completionTime", "completionTimestamp"),
            ("deleteTime", "deletionTimestamp"),
        ):
            if latest.get(v2_field):
                ref[v1_field] = latest[v2_field]
        ref["completionStatus"] = latest.get("completionStatus", "COMPLETION_STATUS_UNSPECIFIED")
        status["latestCreatedExecution"] = ref
    return {
        "apiVersion": API_VERSION,
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": project,
            "selfLink": f"{PREFIX}/namespaces/{project}/jobs/{job}",
            "uid": j.get("uid", ""),
            "resourceVersion": j.get("etag", "").strip('"'),
            "generation": 1,
            "creationTimestamp": j.get("createTime", ""),
            "labels": {LOCATION_LABEL: region},
        },
        "spec": {"template": {"metadata": {}, "spec": spec}},
        "status": status,
    }
