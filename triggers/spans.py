"""Spans around the steps of handling an event (decode, route, and per rule: plan, claim, run,
record), for tracing. The core only knows this protocol; the function's OpenTelemetry
implementation (triggers.function.tracing) is built, and its libraries imported, only when
tracing is turned on. Off, every span is a shared no-op: nothing is allocated per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

Attribute = str | int | float | bool


class Span(Protocol):
    def set(self, key: str, value: Attribute) -> None:
        """Add an attribute once it is known (a rule's outcome, an execution's name)."""
        ...


class Spans(Protocol):
    def request(self, headers: Mapping[str, str]) -> AbstractContextManager[Span]:
        """The span of one request, continuing the trace its headers carry (`traceparent`,
        `X-Cloud-Trace-Context`)."""
        ...

    def span(self, name: str, **attributes: Attribute) -> AbstractContextManager[Span]:
        """A child of the current span."""
        ...


class _NoSpan:
    __slots__ = ()

    def set(self, key: str, value: Attribute) -> None:
        pass


class NoSpans:
    """Tracing off."""

    __slots__ = ()

    def request(self, headers: Mapping[str, str]) -> AbstractContextManager[Span]:
        return _NOTHING

    def span(self, name: str, **attributes: Attribute) -> AbstractContextManager[Span]:
        return _NOTHING


class _Nothing:
    """A reusable context manager (a generator-based one can be entered only once)."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return _NO_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()
_NOTHING = _Nothing()
NO_SPANS = NoSpans()
