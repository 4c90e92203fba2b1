"""What one OTLP send attempt came to: one result vocabulary for the proxy's span worker and the collector's forwarder.

A sender makes exactly one attempt per ``send`` and classifies it; the worker that called it owns
retries, backoff and the queue. The classification is the OTLP specification's, with
the collector's pipeline words (review P3, F3; one vocabulary where there were two):

- ``SUCCESS``: delivered (a 2xx/OK answer may still report rejected spans: ``rejected_spans``);
- ``RETRYABLE``: try the same bytes again later (gRPC ``UNAVAILABLE`` and friends, HTTP 429/502/503/504,
  connection errors), waiting at least the server's throttle hint ``retry_after_s``;
- ``PERMANENT``: the same bytes would fail again, so drop them.

The senders themselves (``GrpcSender``/``HttpSender``) still live on each side and move here next
(issue 14 step 3). Standard library only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Result(enum.Enum):
    """How one send attempt ended, and so what the worker does next."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to."""

    result: Result
    retry_after_s: float | None = None
    """The server's throttle hint, when it gave one."""
    detail: str = ""
    """Status code or error, for logs and ``/healthz``."""
    rejected_spans: int = 0
    """Spans a successful answer reported as rejected (OTLP partial success)."""


__all__ = ["Outcome", "Result"]
