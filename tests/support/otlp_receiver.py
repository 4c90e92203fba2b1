"""A minimal OTLP/gRPC trace receiver for tests: keeps every export request it is sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def any_value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def Export(self, request: Any, context: Any) -> Any:
        with self.cond:
            for rs in request.resource_spans:
                resource = {a.key: any_value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "resource": resource,
                                "trace_id": span.trace_id.hex(),
                                "attributes": {a.key: any_value(a.value) for a in span.attributes},
                            }
                        )
            self.cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, _Service]]:
    """Yields (``host:port``, service) for a receiver on a free loopback port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    service = _Service()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(grace=None)
