"""Batch manifests: the list of a batch's members, written where its execution's tasks read it.

    {"batch": B, "rule": R, "key": K, "size": n, "task_count": t, "per_task": p,
     "members": [{"ledger_key", "dedup_key", "event": <event document>}, ...]}   (join order)

Where it goes (`ManifestWriter.write`):
  * inline, in env `TRIGGERS_BATCH_MANIFEST` (JSON), when it fits Cloud Run's 32 KiB env value;
  * else an object `gs://<bucket>/triggers/batches/<id>.json` (google-cloud-storage, imported on
    first use) whose URI is in `TRIGGERS_BATCH_MANIFEST_URI`;
  * locally without a bucket, `.triggers/manifests/<id>.json` and a `file://` URI.
The object's name is the batch id, so a retried batch task overwrites the same content.

Inside a job, `read_slice()` returns this task's members (`CLOUD_RUN_TASK_INDEX` of
`CLOUD_RUN_TASK_COUNT`): contiguous slices of `per_task` members, in join order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_ENV = "TRIGGERS_BATCH_MANIFEST"
MANIFEST_URI_ENV = "TRIGGERS_BATCH_MANIFEST_URI"
BATCH_ID_ENV = "TRIGGERS_BATCH_ID"
BATCH_SIZE_ENV = "TRIGGERS_BATCH_SIZE"
# Cloud Run's limit on one env var value (the rules schema checks rendered values against it).
MAX_INLINE_BYTES = 32 * 1024
DEFAULT_DIRECTORY = Path(".triggers") / "manifests"
OBJECT_PREFIX = "triggers/batches/"


class ManifestError(RuntimeError):
    """The manifest could not be written (storage unreachable, refused): retry the batch task."""


def build_manifest(
    batch: str, rule: str, key: str, members: list[dict[str, Any]], task_count: int
) -> dict[str, Any]:
    return {
        "batch": batch,
        "rule": rule,
        "key": key,
        "size": len(members),
        "task_count": task_count,
        "per_task": max(1, math.ceil(len(members) / task_count)),
        "members": members,
    }


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


@dataclass
class ManifestWriter:
    """Writes a manifest inline, to Cloud Storage (`bucket`), or to a local `directory`."""

    bucket: str | None = None
    directory: Path = DEFAULT_DIRECTORY
    storage_client: Any = None  # a google.cloud.storage.Client; made on first use
    max_inline_bytes: int = MAX_INLINE_BYTES
    _client_made: bool = field(default=False, repr=False)

    def write(self, manifest: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """The env vars that hand the manifest to the execution (besides id and size)."""
        text = manifest_text(manifest)
        if len(text.encode("utf-8")) <= self.max_inline_bytes:
            return ((MANIFEST_ENV, text),)
        name = f"{OBJECT_PREFIX}{manifest['batch']}.json"
        if self.bucket:
            return ((MANIFEST_URI_ENV, self._upload(name, text)),)
        path = (Path(self.directory) / f"{manifest['batch']}.json").absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".json.partial")
            partial.write_text(text, encoding="utf-8")
            partial.replace(path)  # readers never see half a manifest
        except OSError as exc:
            raise ManifestError(f"cannot write the manifest {path}: {exc}") from exc
        return ((MANIFEST_URI_ENV, path.as_uri()),)

    def _upload(self, name: str, text: str) -> str:
        try:
            client = self._client()
            blob = client.bucket(self.bucket).blob(name)
            blob.upload_from_string(text, content_type="application/json")
        except Exception as exc:  # unreachable, 5xx, permission: the task retries
            raise ManifestError(f"cannot write gs://{self.bucket}/{name}: {exc}") from exc
        return f"gs://{self.bucket}/{name}"

    def _client(self) -> Any:
        if self.storage_client is None:
            self.storage_client = _storage_client()
        return self.storage_client


def read_manifest(
    env: Mapping[str, str] | None = None, *, storage_client: Any = None
) -> dict[str, Any]:
    """The manifest handed to this execution (inline env, a gs:// or a file:// URI)."""
    env = os.environ if env is None else env
    inline = env.get(MANIFEST_ENV)
    if inline:
        return dict(json.loads(inline))
    uri = env.get(MANIFEST_URI_ENV)
    if not uri:
        raise LookupError(f"neither {MANIFEST_ENV} nor {MANIFEST_URI_ENV} is set")
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return dict(json.loads(Path(unquote(urlparse(uri).path)).read_text(encoding="utf-8")))
    if uri.startswith("gs://"):
        bucket, _, name = uri[len("gs://") :].partition("/")
        if storage_client is None:
            storage_client = _storage_client()
        return dict(json.loads(storage_client.bucket(bucket).blob(name).download_as_text()))
    raise ValueError(f"unsupported manifest URI {uri!r}")


def slice_bounds(size: int, per_task: int, index: int) -> tuple[int, int]:
    start = min(index * per_task, size)
    return start, min(start + per_task, size)


def read_slice(
    env: Mapping[str, str] | None = None, *, storage_client: Any = None
) -> list[dict[str, Any]]:
    """This task's members: task i of n gets members [i*p, (i+1)*p) with p = ceil(size / n),
    n from `CLOUD_RUN_TASK_COUNT` (the manifest's `task_count` when run by hand)."""
    env = os.environ if env is None else env
    manifest = read_manifest(env, storage_client=storage_client)
    members = list(manifest["members"])
    index = int(env.get("CLOUD_RUN_TASK_INDEX", "0"))
    count = int(env.get("CLOUD_RUN_TASK_COUNT", manifest["task_count"]))
    start, end = slice_bounds(len(members), max(1, math.ceil(len(members) / count)), index)
    return members[start:end]


def _storage_client() -> Any:
    # Imported here, on first use (~0.3 s): only batches over 32 KiB pay for it.
    import importlib

    return importlib.import_module("google.cloud.storage").Client()
