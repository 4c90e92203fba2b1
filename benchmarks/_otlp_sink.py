"""A minimal OTLP/gRPC trace receiver for benchmarks: accepts every export, counts spans, keeps nothing.

The proxy benchmark runs with spans on, so the proxy needs somewhere real to send them over gRPC.
This sink answers ``TraceService/Export`` with success and only counts what it got, so its own
cost stays small and fixed (it shares a core with the load generator). Run it as a script:

    python benchmarks/_otlp_sink.py --port 4317

It prints ``{"port": N}`` on stdout once it listens (``--port 0`` picks a free port), and on
SIGTERM or SIGINT prints ``{"spans": S, "requests": R}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

# A full proxy batch (512 spans of ~1.5 KB) is well under gRPC's 4 MiB default; the headroom is
# for bigger batch settings, so a benchmark never fails on message size.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class CountingTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """Counts spans and export calls; the data itself is dropped."""

    def __init__(self) -> None:
        self.spans = 0
        self.requests = 0
        self._lock = threading.Lock()  # gRPC calls handlers from a thread pool

    def Export(  # the name is fixed by the generated servicer
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self._lock:
            self.spans += count
            self.requests += 1
        return trace_service_pb2.ExportTraceServiceResponse()


def serve(host: str, port: int) -> tuple[grpc.Server, CountingTraceService, int]:
    """Start the sink; returns the server (call ``stop``), its service and the bound port."""
    service = CountingTraceService()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    return server, service, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count OTLP/gRPC spans and discard them.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    args = parser.parse_args(argv)

    server, service, port = serve(args.host, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"port": port}), flush=True)
    while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    server.stop(grace=1.0).wait()
    print(json.dumps({"spans": service.spans, "requests": service.requests}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
