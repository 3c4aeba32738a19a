"""Runners turn a RunRequest into an execution: `cloudrun` (v2, the default)."""

from .base import Launch, Runner

__all__ = ["Launch", "Runner"]
