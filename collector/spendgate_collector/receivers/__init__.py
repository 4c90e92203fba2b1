"""OTLP trace receivers: gRPC (``otlp_grpc``) and HTTP with protobuf or JSON bodies (``otlp_http``).

Both hand protobuf bytes to ``Pipeline.export`` and answer only once the spans are durable:
success (with OTLP partial success for malformed spans), retryable overload (gRPC ``UNAVAILABLE``
with ``RetryInfo``; HTTP 503 with ``Retry-After``) or permanent rejection of an undecodable body.
"""

from __future__ import annotations

from .otlp_grpc import OtlpGrpcReceiver
from .otlp_http import OtlpHttpReceiver

__all__ = ["OtlpGrpcReceiver", "OtlpHttpReceiver"]
