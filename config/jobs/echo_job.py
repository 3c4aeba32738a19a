"""A stand-in for a Cloud Run job container: prints what it was started with, then exits 0.

Run by a batched rule (TRIGGERS_BATCH_ID set), it also prints the slice of the batch's manifest
this task reads (`triggers.flow.manifest.read_slice()`): one `slice:` line per member. With
ECHO_SLEEP_SECONDS set it stays running that long before exiting (to show `max_running`).

It prints its arguments and the environment variables that matter to a run: the Cloud Run job
contract (CLOUD_RUN_*), the framework's (TRIGGERS_*) and every variable the job definition or the
run's overrides set (anything a container would not inherit from the host). With
TRIGGERS_ECHO_FILE set, it also writes the same as JSON to that path ("{task}" and "{attempt}" in
the path are replaced by the task index and attempt).
"""

import json
import os
import sys
import time

HOST_VARS = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "COMSPEC",
    "PATHEXT",
    "WINDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PWD",
}


def main() -> int:
    env = {
        k: v
        for k, v in sorted(os.environ.items())
        if k not in HOST_VARS and not k.startswith("LC_")
    }
    job = env.get("CLOUD_RUN_JOB", "?")
    print(
        f"{job}: execution {env.get('CLOUD_RUN_EXECUTION', '?')}"
        f" task {env.get('CLOUD_RUN_TASK_INDEX', '?')}/{env.get('CLOUD_RUN_TASK_COUNT', '?')}"
        f" attempt {env.get('CLOUD_RUN_TASK_ATTEMPT', '?')}"
    )
    print(f"args: {json.dumps(sys.argv[1:])}")
    for k, v in env.items():
        print(f"env: {k}={v}")
    target = os.environ.get("TRIGGERS_ECHO_FILE")
    if target:
        path = target.replace("{task}", env.get("CLOUD_RUN_TASK_INDEX", "0")).replace(
            "{attempt}", env.get("CLOUD_RUN_TASK_ATTEMPT", "0")
        )
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"args": sys.argv[1:], "env": env, "cwd": os.getcwd()}, f, indent=2)
    if env.get("TRIGGERS_BATCH_ID"):
        print_slice()
    time.sleep(float(env.get("ECHO_SLEEP_SECONDS") or 0))
    return 0


def print_slice() -> None:
    """What a batch job does first: read this task's members from the manifest."""
    # In a real image with triggers installed; here the emulator's Python, which has it.
    from triggers.flow.manifest import read_slice

    members = read_slice()
    size = os.environ.get("TRIGGERS_BATCH_SIZE", "?")
    print(f"slice: {len(members)} of the batch's {size} members")
    for member in members:
        data = (member.get("event") or {}).get("data") or {}
        key = member["ledger_key"][:12]
        print(f"slice: gs://{data.get('bucket')}/{data.get('name')}  (member {key}…)")


if __name__ == "__main__":
    sys.exit(main())
