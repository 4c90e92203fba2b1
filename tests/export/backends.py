"""OTLP backends for exporter tests: a gRPC and an HTTP/protobuf trace receiver on loopback.

Both decode what they receive with the official ``opentelemetry-proto`` classes (so a test checks the
exporter's bytes with an independent decoder), keep every span, and can be told to fail: answer the
next requests with a retryable or permanent error (with a throttle hint), or be stopped and started
again on the same port to play a backend that is down for a while.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.aio_server import ServerHandle, serve_app

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class ReceivedSpan:
    """One span as a backend saw it."""

    trace_id: str
    span_id: str
    name: str
    kind: int
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    events: list[str]
    raw: Any = field(repr=False)
    """The official ``Span`` message."""


@dataclass
class Failure:
    """How to answer one request instead of accepting it."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    retry_after_s: float | None = None


class _Recorder:
    """What both backends share: the received spans, scripted failures, a condition to wait on."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.failures: deque[Failure] = deque()
        self.always_fail: Failure | None = None
        self.reject_spans = 0
        """Report this many spans rejected (OTLP partial success) in each successful answer."""
        self.delay_s = 0.0
        self.headers: list[dict[str, str]] = []
        self.cond = threading.Condition()

    def next_failure(self) -> Failure | None:
        with self.cond:
            self.requests += 1
            if self.failures:
                return self.failures.popleft()
            return self.always_fail

    def accept(self, payload: bytes, headers: dict[str, str]) -> bytes:
        if self.delay_s:
            time.sleep(self.delay_s)
        request = ExportTraceServiceRequest.FromString(payload)
        received = []
        for rs in request.resource_spans:
            resource = {a.key: any_value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for span in ss.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: any_value(a.value) for a in span.attributes},
                            resource=resource,
                            scope=ss.scope.name,
                            events=[e.name for e in span.events],
                            raw=span,
                        )
                    )
        with self.cond:
            self.spans.extend(received)
            self.headers.append(headers)
            self.cond.notify_all()
        response = ExportTraceServiceResponse()
        if self.reject_spans:
            response.partial_success.rejected_spans = self.reject_spans
            response.partial_success.error_message = "test backend rejects some"
        return response.SerializeToString()

    def wait_spans(self, count: int, timeout: float = 20.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived; return all of them."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)

    def by_span_id(self) -> dict[str, ReceivedSpan]:
        with self.cond:
            return {s.span_id: s for s in self.spans}


class GrpcBackend(_Recorder):
    """An OTLP/gRPC receiver that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GrpcBackend:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)},
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def _export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        failure = self.next_failure()
        if failure is not None:
            trailer: tuple[tuple[str, bytes], ...] = ()
            if failure.retry_after_s is not None:
                delay = Duration()
                delay.FromNanoseconds(int(failure.retry_after_s * 1e9))
                trailer = (("google.rpc.retryinfo-bin", RetryInfo(retry_delay=delay).SerializeToString()),)
            context.set_trailing_metadata(trailer)
            context.abort(failure.grpc_code, "scripted failure")
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        return self.accept(payload, headers)


class HttpBackend(_Recorder):
    """An OTLP/HTTP (protobuf) receiver on aiohttp; accepts gzip bodies."""

    def __init__(self) -> None:
        super().__init__()
        self._handle: ServerHandle | None = None
        self._cm: Any = None

    @property
    def url(self) -> str:
        assert self._handle is not None
        return f"{self._handle.url}/v1/traces"

    def start(self) -> HttpBackend:
        async def export(request: web.Request) -> web.Response:
            failure = self.next_failure()
            if failure is not None:
                headers = {}
                if failure.retry_after_s is not None:
                    headers["Retry-After"] = str(failure.retry_after_s)
                return web.Response(status=failure.http_status, text="scripted failure", headers=headers)
            body = await request.read()  # aiohttp already undid a Content-Encoding: gzip
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            if request.content_type != "application/x-protobuf":
                return web.Response(status=415, text=f"unsupported {request.content_type}")
            data = await asyncio.to_thread(self.accept, body, dict(request.headers))
            return web.Response(body=data, content_type="application/x-protobuf")

        def make_app() -> web.Application:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/traces", export)
            return app

        self._cm = serve_app(make_app)
        self._handle = self._cm.__enter__()
        return self

    def stop(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
