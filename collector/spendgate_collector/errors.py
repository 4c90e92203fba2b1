"""The collector's exception family, named for what the caller does next.

``Retryable`` errors mean "send the same data again later" (receivers answer gRPC ``UNAVAILABLE``
or HTTP 503 with a retry hint); ``Permanent`` errors mean "the same input fails again, drop it"
(gRPC ``INVALID_ARGUMENT``, HTTP 400). Everything the collector raises on purpose derives from
``CollectorError``, so an embedding process can catch one class.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of every error the collector raises on purpose."""


class ConfigError(CollectorError):
    """The configuration is invalid; the message names every bad field."""


class Retryable(CollectorError):
    """The request may succeed if sent again later."""


class Overloaded(Retryable):
    """The ingest queue is full; the exporter should back off and retry."""


class StoreUnavailable(Retryable):
    """The store could not commit (busy, locked, disk full); nothing from the batch was kept."""


class ShuttingDown(Retryable):
    """The collector is stopping and accepts no more data."""


class Permanent(CollectorError):
    """The same input fails again; retrying is pointless."""


class InvalidPayload(Permanent):
    """The request body is not a decodable OTLP export request."""


class QueryError(CollectorError):
    """A query parameter is invalid; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
