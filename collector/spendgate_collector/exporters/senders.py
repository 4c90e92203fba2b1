"""Send one ready-made OTLP trace request to a backend over gRPC or HTTP/protobuf, and classify the result.

A sender makes exactly one attempt per ``send`` and says what it came to; the exporter's worker owns
retries and the queue (``manager.py``). The classification is the OTLP specification's:

- gRPC: ``UNAVAILABLE``, ``CANCELLED``, ``DEADLINE_EXCEEDED``, ``ABORTED``, ``OUT_OF_RANGE`` and
  ``DATA_LOSS`` are retryable, and ``RESOURCE_EXHAUSTED`` when the server attached a ``RetryInfo``
  (otherwise it means "too big", which fails again); every other code is permanent.
- HTTP: 429, 502, 503 and 504 are retryable, as are connection errors and timeouts; every other 4xx
  or 5xx is permanent.

Retryable outcomes carry the server's throttle hint (gRPC ``RetryInfo``, HTTP ``Retry-After``), which
the worker waits at least. A 2xx/OK answer may still report spans the backend rejected (OTLP partial
success); they are counted, not retried. ``close()`` may be called from another thread to cut short
a send in progress (it then ends as retryable).

The result vocabulary (``Result``, ``Outcome``) is ``spendgate_semconv.otlp_send``, shared with the
proxy's span worker; the senders themselves are still the collector's own (issue 14 step 3).
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from spendgate_semconv.otlp_send import Outcome, Result

from .wire import partial_success

if TYPE_CHECKING:
    from .config import ExporterConfig

TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
USER_AGENT = "spendgate-collector"


class Sender(Protocol):
    """What the worker needs from a transport."""

    description: str

    def send(self, payload: bytes) -> Outcome: ...

    def close(self) -> None: ...


def make_sender(config: ExporterConfig) -> Sender:
    """The sender for ``config.protocol``; raises ``ValueError`` for unreadable TLS files."""
    if config.protocol == "grpc":
        return GrpcSender(config)
    return HttpSender(config)


# --- gRPC

_GRPC_RETRYABLE = frozenset({"UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS"})


def _read(path: object) -> bytes | None:
    return None if path is None else Path(str(path)).read_bytes()


class GrpcSender:
    """One gRPC channel to an OTLP receiver; sends pre-encoded ``ExportTraceServiceRequest`` bytes."""

    def __init__(self, config: ExporterConfig) -> None:
        import grpc

        endpoint = config.endpoint
        parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
        target = parts.netloc
        secure = parts.scheme == "https" or (parts.scheme == "" and not config.insecure)
        options = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ]
        compression = grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(config.tls.ca_file),
                private_key=_read(config.tls.key_file),
                certificate_chain=_read(config.tls.cert_file),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options, compression=compression)
        else:
            self._channel = grpc.insecure_channel(target, options=options, compression=compression)
        self._call = self._channel.unary_unary(TRACE_EXPORT_METHOD, request_serializer=None, response_deserializer=None)
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items()) or None
        self._timeout = config.timeout_s
        self._grpc = grpc
        self.description = f"grpc{'s' if secure else ''}://{target}"

    def send(self, payload: bytes) -> Outcome:
        try:
            response = self._call(payload, timeout=self._timeout, metadata=self._metadata, wait_for_ready=False)
        except self._grpc.RpcError as exc:
            code_obj = exc.code() if hasattr(exc, "code") else None
            code = code_obj.name if code_obj is not None else "UNKNOWN"
            retry_after = _grpc_retry_after(exc)
            retryable = code in _GRPC_RETRYABLE or (code == "RESOURCE_EXHAUSTED" and retry_after is not None)
            details = exc.details() if hasattr(exc, "details") else ""
            return Outcome(
                Result.RETRYABLE if retryable else Result.PERMANENT,
                retry_after,
                detail=f"gRPC {code}: {details}"[:300],
            )
        except ValueError as exc:  # the channel was closed under us (shutdown)
            return Outcome(Result.RETRYABLE, detail=f"channel closed: {exc}")
        rejected, message = partial_success(response)
        return Outcome(Result.SUCCESS, rejected_spans=rejected, detail=message[:300])

    def close(self) -> None:
        self._channel.close()


def _grpc_retry_after(exc: object) -> float | None:
    """The ``RetryInfo`` delay the server attached to its error, if any.

    Servers put it in the standard rich status (``grpc-status-details-bin``, as the Go collector
    does) or alone in ``google.rpc.retryinfo-bin`` (as the Python exporters read it, and the
    spendgate collector sends it); both are read.
    """
    try:
        from google.rpc import error_details_pb2, status_pb2

        for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]  # an RpcError from a call is also a grpc.Call (grpc is untyped)
            if key == "google.rpc.retryinfo-bin":
                info = error_details_pb2.RetryInfo.FromString(value)
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            if key == "grpc-status-details-bin":
                for detail in status_pb2.Status.FromString(value).details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
                        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    except Exception:  # a malformed hint is no reason to fail the export
        return None
    return None


# --- HTTP/protobuf

_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})


class HttpSender:
    """POSTs ``application/x-protobuf`` requests over one kept-alive connection (reopened on error)."""

    def __init__(self, config: ExporterConfig) -> None:
        parts = urlsplit(config.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        path = parts.path if parts.path not in ("", "/") else "/v1/traces"
        self._path = path + (f"?{parts.query}" if parts.query else "")
        self._timeout = config.timeout_s
        self._gzip = config.compression == "gzip"
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
            **({"Content-Encoding": "gzip"} if self._gzip else {}),
            **config.headers,
        }
        self._context: ssl.SSLContext | None = None
        if self._https:
            tls = config.tls
            context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file is not None and tls.key_file is not None:
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            if tls.insecure_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.description = f"{parts.scheme}://{parts.netloc}{self._path}"

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("sender closed")
            if self._conn is None:
                if self._https:
                    self._conn = http.client.HTTPSConnection(
                        self._host, self._port, timeout=self._timeout, context=self._context
                    )
                else:
                    self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            return self._conn

    def _drop_connection(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def send(self, payload: bytes) -> Outcome:
        body = gzip.compress(payload, compresslevel=5) if self._gzip else payload
        try:
            conn = self._connection()
            conn.request("POST", self._path, body, self._headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            return Outcome(Result.RETRYABLE, detail=f"{type(exc).__name__}: {exc}"[:300])
        status = response.status
        if response.will_close:
            self._drop_connection()
        if 200 <= status < 300:
            rejected, message = 0, ""
            if "protobuf" in (response.getheader("Content-Type") or ""):
                rejected, message = partial_success(data)
            return Outcome(Result.SUCCESS, rejected_spans=rejected, detail=message[:300])
        retry_after = _retry_after(response.getheader("Retry-After"))
        result = Result.RETRYABLE if status in _HTTP_RETRYABLE else Result.PERMANENT
        return Outcome(result, retry_after, detail=f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None and conn.sock is not None:
            # Wakes a send blocked on this socket in another thread.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
