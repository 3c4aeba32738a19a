"""Helpers for tests that talk to the emulator with the real google-cloud-run client.

    emu = EmulatorServer(write_probe_jobs(tmp_path)).start()
    jobs = jobs_client(emu.url)
    op = jobs.run_job(name=PROBE_JOB)
    execution = wait(op)

The probe job (``probe``) records what each task attempt saw (argv, env, cwd, start/end times) as
JSON in ``<dir>/out/<execution>-<task>-<attempt>.json`` and can be told, through env overrides,
to sleep (``PROBE_SLEEP``), to fail its first attempts (``PROBE_FAIL_ATTEMPTS=N``) or to fail
some tasks always (``PROBE_FAIL_TASKS=0,2``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROJECT = "demo-project"
REGION = "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
PROBE_JOB = f"{PARENT}/jobs/probe"

PROBE_SCRIPT = r"""
import json, os, sys, time
out = os.environ["PROBE_DIR"]
key = "%s-%s-%s" % (os.environ.get("CLOUD_RUN_EXECUTION"), os.environ.get("CLOUD_RUN_TASK_INDEX"),
                    os.environ.get("CLOUD_RUN_TASK_ATTEMPT"))
record = {"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
          "start": time.time()}
def publish(suffix):
    # Written aside, then renamed: a test polling the directory never reads half a file.
    path = os.path.join(out, key + suffix)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)
publish(".started")
print("probe", key, sys.argv[1:], flush=True)
time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
record["end"] = time.time()
publish(".json")
attempt = int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0"))
failing = [t for t in os.environ.get("PROBE_FAIL_TASKS", "").split(",") if t]
index = os.environ.get("CLOUD_RUN_TASK_INDEX")
if attempt < int(os.environ.get("PROBE_FAIL_ATTEMPTS", "0")) or index in failing:
    print("probe failing on purpose", file=sys.stderr)
    sys.exit(3)
"""

PROBE_JOBS_YAML = """\
project: {project}
region: {region}
inherit_env: [PATH]
jobs:
  - name: probe
    command: ["{{python}}", "{{here}}/probe.py"]
    args: ["--default", "arg"]
    env: {{PROBE_DIR: "{out}", JOB_ONLY: from-job, SHARED: job-value}}
    task_count: 1
    parallelism: 0
    timeout: 30s
    max_retries: 0
    working_dir: "{{here}}/work"
  - name: probe-parallel
    command: ["{{python}}", "{{here}}/probe.py"]
    env: {{PROBE_DIR: "{out}"}}
    task_count: 4
    parallelism: 2
    timeout: 30s
    max_retries: 0
  - name: probe-retry
    command: ["{{python}}", "{{here}}/probe.py"]
    env: {{PROBE_DIR: "{out}"}}
    timeout: 30s
    max_retries: 2
  - name: named-container
    container_name: worker
    command: ["{{python}}", "{{here}}/probe.py"]
    env: {{PROBE_DIR: "{out}"}}
"""


def write_probe_jobs(directory: Path) -> Path:
    """Write ``probe.py`` and a jobs file into ``directory``; return the file."""
    directory = Path(directory)
    (directory / "out").mkdir(parents=True, exist_ok=True)
    (directory / "work").mkdir(exist_ok=True)
    (directory / "probe.py").write_text(PROBE_SCRIPT, encoding="utf-8")
    path = directory / "jobs.yaml"
    path.write_text(
        PROBE_JOBS_YAML.format(project=PROJECT, region=REGION, out=(directory / "out").as_posix()),
        encoding="utf-8",
    )
    return path


def probe_records(directory: Path, execution: str, suffix: str = ".json") -> list[dict[str, Any]]:
    """What the probe tasks of ``execution`` (short or full name) recorded, by (task, attempt)."""
    short = execution.rsplit("/", 1)[-1]
    records = []
    for p in sorted(Path(directory, "out").glob(f"{short}-*{suffix}")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        rec["task"] = int(rec["env"]["CLOUD_RUN_TASK_INDEX"])
        rec["attempt"] = int(rec["env"]["CLOUD_RUN_TASK_ATTEMPT"])
        records.append(rec)
    return sorted(records, key=lambda r: (r["task"], r["attempt"]))


def _client_kwargs(url: str) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials

    return {
        "transport": "rest",
        "client_options": {"api_endpoint": url},
        "credentials": AnonymousCredentials(),
    }


def jobs_client(url: str):
    """The real ``run_v2.JobsClient`` over REST, pointed at the emulator."""
    from google.cloud import run_v2

    return run_v2.JobsClient(**_client_kwargs(url))


def executions_client(url: str):
    from google.cloud import run_v2

    return run_v2.ExecutionsClient(**_client_kwargs(url))


def fast_polling(timeout: float = 15.0):
    """LRO polling for tests: every 50-200 ms instead of the default 1 s and more."""
    from google.api_core.future.polling import DEFAULT_POLLING

    return DEFAULT_POLLING.with_delay(initial=0.05, maximum=0.2, multiplier=1.5).with_timeout(
        timeout
    )


def wait(operation, timeout: float = 15.0):
    """``operation.result()`` with fast polling."""
    return operation.result(timeout=timeout, polling=fast_polling(timeout))
