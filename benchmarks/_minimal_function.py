"""A hand-written Cloud Function doing one rule's job: the baseline of benchmarks/coldstart.py
and benchmarks/serve.py. Not part of `triggers`.

    functions-framework --target handle_http --source benchmarks/_minimal_function.py

It does by hand what `triggers` does for config/rules.yaml's `csv-ingest` rule and nothing more:
parse the CloudEvent (binary or structured mode) with json.loads, check the rule (a finalized
object in raw-data under incoming/ ending in .csv, size > 0), claim a dedup document with
`create()` (AlreadyExists = a duplicate, acknowledged), run the job with args/env/task count/
timeout overrides, record the execution name with `update()`, log one JSON line, answer 200.

Clients are created at module import, the common pattern of hand-written functions and of
Google's samples (so the import pays for them; `triggers` creates its clients on the first
request instead). Neither client connects before its first call.

Environment: GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST (read by the Firestore client),
MINIMAL_CLOUD_RUN_ENDPOINT (e.g. the emulator's http://127.0.0.1:PORT: REST, anonymous
credentials; unset: run.googleapis.com with default credentials), MINIMAL_JOB (the job's full
name), MINIMAL_COLLECTION (the dedup collection).
"""

import hashlib
import json
import os
import posixpath

import functions_framework
from google.api_core.exceptions import AlreadyExists
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, run_v2
from google.protobuf import duration_pb2

JOB = os.environ.get("MINIMAL_JOB", "projects/demo-project/locations/europe-west1/jobs/csv-loader")
COLLECTION = os.environ.get("MINIMAL_COLLECTION", "minimal-runs")
ENDPOINT = os.environ.get("MINIMAL_CLOUD_RUN_ENDPOINT")
FINALIZED = "google.cloud.storage.object.v1.finalized"

db = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
if ENDPOINT:
    jobs = run_v2.JobsClient(
        transport="rest",
        client_options={"api_endpoint": ENDPOINT},
        credentials=AnonymousCredentials(),
    )
else:
    jobs = run_v2.JobsClient()


def _answer(outcome, status=200, **extra):
    return json.dumps({"outcome": outcome, **extra}), status, {"Content-Type": "application/json"}


@functions_framework.http
def handle_http(request):
    body = json.loads(request.get_data() or b"null")
    if request.headers.get("ce-type"):  # binary mode: attributes in headers, data in the body
        event_type, event_id, data = request.headers["ce-type"], request.headers["ce-id"], body
    elif isinstance(body, dict) and "specversion" in body:  # structured mode
        event_type, event_id, data = body.get("type"), body.get("id"), body.get("data") or {}
    else:
        return _answer("ignored", reason="not a CloudEvent")

    bucket, name = data.get("bucket"), data.get("name", "")
    if not (
        event_type == FINALIZED
        and bucket == "raw-data"
        and name.startswith("incoming/")
        and name.endswith(".csv")
        and int(data.get("size") or 0) > 0
    ):
        return _answer("ignored")

    key = f"{bucket}/{name}#{data.get('generation')}"
    doc = db.collection(COLLECTION).document(hashlib.sha256(key.encode()).hexdigest())
    try:
        doc.create(
            {
                "key": key,
                "event_id": event_id,
                "status": "claimed",
                "created_at": firestore.SERVER_TIMESTAMP,
            }
        )
    except AlreadyExists:
        return _answer("duplicate", key=key)

    stem = posixpath.splitext(posixpath.basename(name))[0]
    request_proto = run_v2.RunJobRequest(
        name=JOB,
        overrides=run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    args=[f"--input=gs://{bucket}/{name}", f"--table={stem}"],
                    env=[
                        run_v2.EnvVar(name="GENERATION", value=str(data.get("generation"))),
                        run_v2.EnvVar(name="CONTENT_TYPE", value=str(data.get("contentType"))),
                    ],
                )
            ],
            task_count=2,
            timeout=duration_pb2.Duration(seconds=600),
        ),
    )
    try:
        operation = jobs.run_job(request=request_proto)
        execution = operation.metadata.name
    except Exception:
        doc.delete()  # let the retry claim it again
        raise
    doc.update({"status": "launched", "execution": execution})
    print(
        json.dumps({"severity": "INFO", "message": f"launched {execution}", "key": key}), flush=True
    )
    return _answer("launched", execution=execution)
