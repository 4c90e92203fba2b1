"""Send encoded OTLP trace requests over gRPC or HTTP/protobuf, with the standard OTEL_* settings.

The proxy's span worker hands over bytes already encoded by ``otlp_encode``; these senders only
move them. Each ``send`` makes one attempt and classifies the outcome, so the worker owns retry
and backoff (and keeps the records queued meanwhile): ``RETRYABLE`` for what the OTLP spec calls
retryable (gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, ...; HTTP 429/502/503/504, connection errors),
``PERMANENT`` for a refusal (the same bytes would fail again), with any server throttle hint. ``Result``/``Outcome`` are
``spendgate_semconv.otlp_send``, shared with the collector's forwarder.

Settings, first found wins: explicit argument, ``OTEL_EXPORTER_OTLP_TRACES_*``, ``OTEL_EXPORTER_OTLP_*``,
default. Read: ``ENDPOINT`` (gRPC default ``http://localhost:4317``; HTTP default
``http://localhost:4318``, to which ``/v1/traces`` is added unless the traces-specific variable is
used), ``HEADERS`` (``k=v,k2=v2``, URL-encoded values), ``INSECURE`` (gRPC without a scheme),
``TIMEOUT`` (seconds, default 10), ``COMPRESSION`` (``gzip`` or none).
"""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

from spendgate_semconv.otlp_send import Outcome, Result

TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_TIMEOUT_S = 10.0


def _env(name: str, env: dict[str, str]) -> str | None:
    return env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}")


def _headers(env: dict[str, str]) -> list[tuple[str, str]]:
    raw = _env("HEADERS", env) or ""
    out = []
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            out.append((name.strip().lower(), unquote(value.strip())))
    return out


def _timeout(env: dict[str, str]) -> float:
    try:
        return float(_env("TIMEOUT", env) or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


class GrpcSender:
    """One gRPC channel to an OTLP receiver; sends pre-encoded ``ExportTraceServiceRequest`` bytes."""

    _RETRYABLE = frozenset(
        {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "OUT_OF_RANGE", "DATA_LOSS"}
    )

    def __init__(self, endpoint: str | None = None, env: dict[str, str] | None = None) -> None:
        import grpc

        env = dict(os.environ if env is None else env)
        endpoint = endpoint or _env("ENDPOINT", env) or "http://localhost:4317"
        parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
        target = parts.netloc or endpoint
        if parts.scheme == "https":
            insecure = False
        elif parts.scheme == "http":
            insecure = True
        else:
            insecure = (_env("INSECURE", env) or "false").lower() == "true"
        self.target = target
        compression = grpc.Compression.Gzip if (_env("COMPRESSION", env) or "") == "gzip" else None
        if insecure:
            self._channel = grpc.insecure_channel(target, compression=compression)
        else:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), compression=compression)
        self._call = self._channel.unary_unary(TRACE_EXPORT_METHOD, request_serializer=None, response_deserializer=None)
        self._metadata = _headers(env)
        self._timeout = _timeout(env)
        self._grpc = grpc

    def send(self, data: bytes) -> Outcome:
        try:
            self._call(data, timeout=self._timeout, metadata=self._metadata or None)
        except self._grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            result = Result.RETRYABLE if code in self._RETRYABLE else Result.PERMANENT
            return Outcome(result, _grpc_retry_after(exc), f"gRPC {code}")
        return Outcome(Result.SUCCESS)

    def shutdown(self) -> None:
        self._channel.close()


def _grpc_retry_after(exc: object) -> float | None:
    """The RetryInfo delay a receiver attached to its error, if any."""
    try:
        for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key == "grpc-status-details-bin":
                from google.rpc import error_details_pb2, status_pb2

                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:  # a malformed hint is no reason to fail the export
        return None
    return None


class HttpSender:
    """POSTs pre-encoded requests to an OTLP/HTTP receiver (``application/x-protobuf``)."""

    def __init__(self, endpoint: str | None = None, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if endpoint:
            url = endpoint if urlsplit(endpoint).path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"
        elif traces:
            url = traces
        else:
            url = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318").rstrip("/") + "/v1/traces"
        self.url = url
        self._headers = {"Content-Type": "application/x-protobuf", **dict(_headers(env))}
        self._gzip = (_env("COMPRESSION", env) or "") == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = _timeout(env)

    def send(self, data: bytes) -> Outcome:
        body = gzip.compress(data) if self._gzip else data
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            retry_after = _seconds(exc.headers.get("Retry-After"))
            if exc.code in (429, 502, 503, 504):
                return Outcome(Result.RETRYABLE, retry_after, f"HTTP {exc.code}")
            return Outcome(Result.PERMANENT, None, f"HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return Outcome(Result.RETRYABLE, None, f"{type(exc).__name__}")
        return Outcome(Result.SUCCESS)

    def shutdown(self) -> None:
        pass


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP-date: fall back to our own backoff
