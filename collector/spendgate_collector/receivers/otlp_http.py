"""OTLP/HTTP trace receiver (``POST /v1/traces``) on aiohttp, default ``127.0.0.1:4318``.

Bodies are protobuf (``application/x-protobuf``) or OTLP/JSON (``application/json``: hex ids,
camelCase names, integer enums), optionally gzip-compressed (aiohttp inflates them, and the size
limit applies to the inflated body, so a small gzip bomb is refused). The answer uses the request's
encoding: ``ExportTraceServiceResponse`` (with partial success) on 200; a ``google.rpc.Status`` with
503 + ``Retry-After`` when overloaded (retried by OTel exporters), 400 for undecodable bodies,
413/415 for oversized or unsupported ones.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

from aiohttp import web
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..errors import InvalidPayload, Permanent, Retryable
from ..ingest.otlp import json_to_protobuf
from ..ingest.pipeline import Pipeline

if TYPE_CHECKING:
    from google.protobuf.message import Message

logger = logging.getLogger(__name__)

PATH = "/v1/traces"
RECEIVER = "http"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _reply(message: Message, *, as_json: bool, status: int, headers: dict[str, str] | None = None) -> web.Response:
    if as_json:
        body = json_format.MessageToJson(message, indent=None).encode()
        return web.Response(body=body, status=status, content_type=JSON, headers=headers)
    return web.Response(body=message.SerializeToString(), status=status, content_type=PROTOBUF, headers=headers)


class OtlpHttpReceiver:
    """Serve ``POST /v1/traces`` on ``host:port`` (port 0 = any free port, see ``port``)."""

    def __init__(self, pipeline: Pipeline, address: str, *, max_request_bytes: int, retry_after_s: float):
        from ..config import split_host_port

        self._pipeline = pipeline
        self._host, self._requested_port = split_host_port(address)
        self._max_request_bytes = max_request_bytes
        self._retry_after = str(max(1, math.ceil(retry_after_s)))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_request_bytes)
        app.router.add_post(PATH, self._handle)
        return app

    async def start(self) -> None:
        """Bind and start serving; raise ``OSError`` when the address cannot be bound."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        logger.info("OTLP/HTTP receiver listening on port %d", self.port)

    async def shutdown(self) -> None:
        """Stop accepting and close connections (in-flight requests finish first). Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        as_json = content_type == JSON
        if not as_json and content_type != PROTOBUF:
            return _reply(
                Status(code=3, message=f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}"),
                as_json=False,
                status=415,
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reply(
                Status(code=8, message=f"request body larger than {self._max_request_bytes} bytes"),
                as_json=as_json,
                status=413,
            )
        try:
            # json_format is pure Python (~100 µs a span): off the event loop, so a large JSON
            # export does not stall the other receivers.
            payload = await asyncio.to_thread(json_to_protobuf, body) if as_json else body
            outcome = await self._pipeline.export(payload, RECEIVER)
        except Retryable as exc:
            return _reply(
                Status(code=14, message=str(exc)),
                as_json=as_json,
                status=503,
                headers={"Retry-After": self._retry_after},
            )
        except (Permanent, InvalidPayload) as exc:
            return _reply(Status(code=3, message=str(exc)), as_json=as_json, status=400)
        response = ExportTraceServiceResponse()
        if outcome.rejected:
            response.partial_success.rejected_spans = outcome.rejected
            response.partial_success.error_message = outcome.message
        return _reply(response, as_json=as_json, status=200)
