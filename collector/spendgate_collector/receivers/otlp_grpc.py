"""OTLP/gRPC trace receiver (``TraceService/Export``) on ``grpc.aio``, default ``127.0.0.1:4317``.

The request is registered with no deserializer: the pipeline's writer thread parses the bytes with
the lean schema (see ``ingest/otlp.py``), so the event loop only moves bytes. Overload and store failures
answer ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` trailer, which the OpenTelemetry exporters
honour as their back-off; an undecodable request answers ``INVALID_ARGUMENT`` (not retried).
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..errors import Permanent, Retryable
from ..ingest.pipeline import Pipeline

logger = logging.getLogger(__name__)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
RECEIVER = "grpc"


def _retry_trailer(retry_after_s: float) -> tuple[tuple[str, bytes], ...]:
    seconds = int(retry_after_s)
    delay = Duration(seconds=seconds, nanos=int((retry_after_s - seconds) * 1e9))
    return (("google.rpc.retryinfo-bin", RetryInfo(retry_delay=delay).SerializeToString()),)


class OtlpGrpcReceiver:
    """Serve ``TraceService/Export`` on ``host:port`` (port 0 = any free port, see ``port``)."""

    def __init__(self, pipeline: Pipeline, address: str, *, max_message_bytes: int, retry_after_s: float):
        self._pipeline = pipeline
        self._address = address
        self._max_message_bytes = max_message_bytes
        self._retry_trailer = _retry_trailer(retry_after_s)
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self) -> None:
        """Bind and start serving; raise ``OSError`` when the address cannot be bound."""
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self._max_message_bytes),
                # Without this, a second collector could bind the same port and silently take
                # half of the traffic.
                ("grpc.so_reuseport", 0),
            ]
        )
        handler = grpc.unary_unary_rpc_method_handler(self._export)  # raw bytes in, bytes out
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        try:
            self.port = server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(f"cannot bind OTLP/gRPC receiver to {self._address}: {exc}") from None
        await server.start()
        self._server = server
        logger.info("OTLP/gRPC receiver listening on port %d", self.port)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight exports finish for ``grace`` seconds. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    async def _export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            outcome = await self._pipeline.export(request, RECEIVER)
        except Retryable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc), trailing_metadata=self._retry_trailer)
        except Permanent as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return response.SerializeToString()
