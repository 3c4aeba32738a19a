"""How a Google API client (google-cloud-run, google-cloud-tasks) is pointed at its API."""

from __future__ import annotations

from typing import Any


def client_kwargs(endpoint: str | None, credentials: Any) -> dict[str, Any]:
    """Keyword arguments of a GAPIC client: gRPC with `credentials` (ADC when None) against
    Google; with an `endpoint` (an emulator, http://127.0.0.1:PORT) the REST transport, which
    speaks plain HTTP, and anonymous credentials unless some were given."""
    if endpoint is None:
        return {"credentials": credentials}
    if credentials is None:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return {
        "transport": "rest",
        "client_options": {"api_endpoint": endpoint},
        "credentials": credentials,
    }
