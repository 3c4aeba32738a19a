"""Shared fixtures: a Firestore emulator for the ledger tests, started once per session.

The emulator is started only when a test asks for it. Nothing here sets FIRESTORE_EMULATOR_HOST
for the whole session: `firestore_client` sets it just while a client is constructed (the client
reads it then, and keeps the address), so unrelated tests never see it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EMULATOR_START_TIMEOUT = 60.0
_ENV_LOCK = threading.Lock()
# What gcloud says when the emulator component is absent (it cannot install it here).
_MISSING_COMPONENT = ("not installed", "[cloud-firestore-emulator]", "components are required")


def _unavailable(reason: str) -> None:
    """Missing tooling: skip locally, but fail in CI, where a skip would hide lost coverage."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Firestore emulator unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"Firestore emulator unavailable: {reason}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(host_port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_port}/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    # gcloud runs the emulator as a Java child: signal the whole process group we created.
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Firestore emulator on a free local port; yields its `host:port`."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        _unavailable("gcloud is not on PATH")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("the emulator needs Java, and neither java nor JAVA_HOME is present")

    host_port = f"127.0.0.1:{_free_port()}"
    log_path = Path(tmp_path_factory.mktemp("firestore-emulator")) / "emulator.log"
    env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}  # never ask to install things
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port={host_port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so we can stop Java too
        )

    def output() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT
        while not _answers(host_port):
            if process.poll() is not None:
                text = output()
                if any(marker in text.lower() for marker in _MISSING_COMPONENT):
                    _unavailable(f"the cloud-firestore-emulator component is missing:\n{text}")
                pytest.fail(
                    f"the Firestore emulator exited with {process.returncode} before answering "
                    f"on {host_port}:\n{text}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Firestore emulator did not answer on {host_port} within "
                    f"{EMULATOR_START_TIMEOUT:.0f}s:\n{output()}",
                    pytrace=False,
                )
            time.sleep(0.2)
        yield host_port
        # Duplicate counts the session's Firestore backends still hold (written off the
        # request path): now, while the emulator answers, not by the exit hook after it has
        # gone (each would wait out its deadline and log a failed write).
        from triggers.ledger.duplicate_counts import flush_all

        flush_all()
    finally:
        _stop(process)


@contextlib.contextmanager
def emulator_env(variable: str, host_port: str) -> Iterator[None]:
    """`variable` (FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST) set to `host_port` for the
    block only, one block at a time: Google clients read it in their constructors, so a client
    built inside is bound to the emulator and the variable never leaks to other tests."""
    with _ENV_LOCK:
        previous = os.environ.get(variable)
        os.environ[variable] = host_port
        try:
            yield
        finally:
            if previous is None:
                del os.environ[variable]
            else:
                os.environ[variable] = previous


def make_firestore_client(host_port: str, project: str) -> Any:
    """A Firestore client bound to the emulator at `host_port`, without leaking the env var."""
    from google.cloud import firestore

    with emulator_env("FIRESTORE_EMULATOR_HOST", host_port):
        return firestore.Client(project=project)


@pytest.fixture(scope="session")
def firestore_client(firestore_emulator: str) -> Iterator[Any]:
    """One client (one gRPC channel) for the session; isolate tests by collection."""
    client = make_firestore_client(firestore_emulator, "demo-triggers-ledger")
    yield client
    client.close()
