"""The emulator's Secret Manager: a local file of secret name -> value (`--secrets FILE`).

A YAML or JSON mapping. A key is a secret id (a secret of the job's own project) or
``projects/P/secrets/S``; a value is the secret's payload, the same for every version::

    api-token: s3cr3t
    projects/shared-proj/secrets/db-pass: hunter2

Without a file the emulator knows no secret, so an env var that references one fails the run
as Cloud Run does for a secret that does not exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from .jobs import JobsFileError
from .overrides import SECRET_NAME


def load_secrets(path: str | os.PathLike[str]) -> dict[str, str]:
    """Load a secrets file; raise ``JobsFileError`` (the emulator's file error) listing every
    problem, so a typo is found at start, not at the first run that needs the secret."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise JobsFileError(
            [f"{file}: cannot read the secrets file: {exc.strerror or exc}"]
        ) from exc
    try:
        doc = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise JobsFileError([f"{file}: invalid YAML or JSON: {exc}"]) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise JobsFileError([f"{file}: expected a mapping of secret name -> value"])
    problems = []
    secrets: dict[str, str] = {}
    for name, value in doc.items():
        if not isinstance(name, str) or not SECRET_NAME.match(name):
            problems.append(f"{file}: {name!r} is not a secret id nor projects/P/secrets/S")
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(f"{file}: secret {name!r}: the value must be a string")
        else:
            secrets[name] = str(value)
    if problems:
        raise JobsFileError(problems)
    return secrets
