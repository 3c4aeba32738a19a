"""The job systems a rule can target, and what the rest of triggers needs to know about each.

A rule names its system (`system: cloudrun`, the default); everything else is the same whatever
runs the job: matching, templates, the ledger, dedup, replay and reconcile. Per system this
table says

* which overrides it can express (a rule asking for another one fails at load, `file:line`);
* how its jobs are named (Cloud Run style `projects/P/locations/R/jobs/J`, or its own pattern);
* how a planned run becomes its exact request (`render`: what `triggers plan` prints and the
  ledger records), pure;
* which runner launches it and which execution names are its own (the reconciler asks the
  runner that made an execution how it ended).

This module is pure and imports no client: a system's module is imported only when its runner
is built or one of its requests is rendered.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..plan import RunRequest
    from .base import Runner

#: Every override a rule can set (`overrides:` in a rules file).
OVERRIDES = frozenset({"container", "args", "clear_args", "env", "task_count", "timeout"})

Renderer = Callable[["RunRequest"], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class System:
    name: str  # what `system:` takes
    title: str  # what messages call it
    overrides: frozenset[str]  # the overrides it can express
    # How `job:` is written. None: Cloud Run style (a job id with project/region, or the full
    # projects/P/locations/R/jobs/J), checked by the loader; else the whole value must match.
    job_pattern: re.Pattern[str] | None
    job_help: str
    runner: str  # "module:factory"; factory(options) -> Runner, options = the settings as a dict
    # "module:function" rendering a RunRequest as the exact request; None: the Cloud Run v2
    # `jobs.run` body (RunRequest.run_job_body).
    render: str | None
    executions: re.Pattern[str]  # the execution names this system's runner makes
    # Whether an env override can name a Secret Manager secret (`env: {X: {secret: S}}`), which
    # the system resolves itself at run time, so that the value never passes through triggers.
    secrets: bool = False
    # Whether its runner can list a job's running executions and cancel them, which a rule's
    # `limits.max_running` (and `when_busy: replace`) needs; the loader refuses it otherwise.
    counts_running: bool = False

    def renderer(self) -> Renderer | None:
        return None if self.render is None else _load(self.render)

    def build_runner(self, options: Mapping[str, Any]) -> Runner:
        factory: Callable[[Mapping[str, Any]], Runner] = _load(self.runner)
        return factory(options)

    def owns_execution(self, name: str) -> bool:
        return self.executions.search(name) is not None


DEFAULT = "cloudrun"

SYSTEMS: dict[str, System] = {
    "cloudrun": System(
        name="cloudrun",
        title="Cloud Run Admin API v2",
        overrides=OVERRIDES,
        job_pattern=None,
        job_help="a job id, with project and region, or projects/P/locations/R/jobs/J",
        runner="triggers.runners.cloudrun:from_options",
        render=None,
        executions=re.compile(r"^projects/[^/]+/locations/[^/]+/jobs/[^/]+/executions/[^/]+$"),
        secrets=True,  # EnvVar.valueSource.secretKeyRef {secret, version}
        counts_running=True,  # executions.list (running: no completionTime), executions.cancel
    ),
    "peloton": System(
        name="peloton",
        title="Uber Peloton JobManager",
        overrides=frozenset({"args", "clear_args", "env", "task_count", "timeout"}),
        job_pattern=re.compile(r"[a-z0-9][a-z0-9_-]{0,62}"),
        job_help="a job template name: <TRIGGERS_PELOTON_TEMPLATES>/<job>.yaml (a JobConfig)",
        runner="triggers.runners.peloton:from_options",
        render="triggers.runners.peloton:render_create",
        executions=re.compile(r"^peloton/jobs/[0-9a-f-]{36}$"),
    ),
    "sae": System(
        name="sae",
        title="Alibaba Cloud SAE ExecJob",
        # ExecJob has CommandArgs, Envs and Replicas; no container name (one per template), no
        # "clear args" and no per-run timeout (the template's own applies).
        overrides=frozenset({"args", "env", "task_count"}),
        job_pattern=re.compile(
            r"[a-z]{2,}(?:-[a-z0-9]+)+/"
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        ),
        job_help="REGION/APP_ID: the job template's AppId (a UUID) and its region,"
        " e.g. cn-hangzhou/ee1a7a07-abcb-4652-a1d3-2d57f4150000",
        runner="triggers.runners.sae:from_options",
        render="triggers.runners.sae:render_exec_job",
        executions=re.compile(r"^sae/[a-z0-9-]+/apps/[0-9a-f-]{36}/jobs/[^/]+$"),
    ),
    "cloudrun-v1": System(
        name="cloudrun-v1",
        title="Cloud Run Admin API v1",
        overrides=OVERRIDES,  # containerOverrides (name, args, env, clearArgs), taskCount, timeout
        job_pattern=None,  # the same jobs as v2: `namespaces/P/jobs/J` at the region's endpoint
        job_help="a job id, with project and region, or projects/P/locations/R/jobs/J",
        runner="triggers.runners.cloudrun_v1:from_options",
        render="triggers.runners.cloudrun_v1:render_run_job",
        # v1's own form, which carries no region (the runner knows where to ask)
        executions=re.compile(r"^namespaces/[^/]+/executions/[^/]+$"),
        # Its reference (shared/apis/cloud-run-v1-namespaces-jobs.txt) documents no secret
        # source for a run's env overrides, so a secret there is a load error, not a guess.
        secrets=False,
    ),
}


def get(name: str) -> System:
    """The system called `name`; KeyError with the known names otherwise."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise KeyError(
            f"unknown system {name!r}: use one of {', '.join(sorted(SYSTEMS))}"
        ) from None


@functools.cache
def renderer_of(name: str) -> Renderer | None:
    """The request renderer of the system called `name` (None for Cloud Run v2), cached: the
    rules ask for it at every plan."""
    return get(name).renderer()


def unsupported(system: System, overrides_set: set[str]) -> list[str]:
    """The overrides in `overrides_set` that `system` cannot express, in a stable order."""
    return sorted(overrides_set - system.overrides)


def of_execution(name: str) -> System | None:
    """The system whose runner made the execution `name` (the first that claims it)."""
    return next((s for s in SYSTEMS.values() if s.owns_execution(name)), None)


def _load(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
