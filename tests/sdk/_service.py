"""A tiny HTTP service that uses spendgate, for the cross-service baggage test (run as a subprocess).

``python _service.py NAME [--downstream URL] [--team T] [--cost-center C] [--no-baggage]`` starts a
stdlib HTTP server on a free loopback port and prints the port. Every request is handled the way an
instrumented service would: incoming W3C trace context and baggage are extracted and made current
(what an HTTP server instrumentation does), then:

- ``GET /llm`` starts one LLM span (as an LLM client instrumentation would) and answers its final
  attributes and trace id as JSON;
- ``GET /ask?user=U&feature=F`` starts a parent span, enters ``spendgate.attribute(user=U,
  feature=F)``, starts its own LLM span, calls the downstream service's ``/llm`` with the context
  injected into the request headers, and answers both results.

Spans are exported to memory: this process checks what its own spendgate processor stamped.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spendgate
from spendgate_semconv import attributes as sc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--downstream")
    parser.add_argument("--team")
    parser.add_argument("--cost-center")
    parser.add_argument("--no-baggage", action="store_true")
    args = parser.parse_args()

    exporter = InMemorySpanExporter()
    handle = spendgate.configure(
        service_name=args.name,
        team=args.team,
        cost_center=args.cost_center,
        exporter=exporter,
        baggage=not args.no_baggage,
    )
    tracer = trace.get_tracer(args.name)
    assert tracer is not None and handle.owns_provider

    def llm_span(name: str) -> dict[str, Any]:
        with tracer.start_as_current_span(name, attributes={sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_LLM}) as span:
            pass
        return {
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()},  # type: ignore[attr-defined]
            "trace_id": f"{span.get_span_context().trace_id:032x}",
        }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = context.attach(propagate.extract(self.headers))
            try:
                url = urlsplit(self.path)
                if url.path == "/llm":
                    body = llm_span(f"chat {args.name}")
                else:
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    with (
                        tracer.start_as_current_span("ask"),
                        spendgate.attribute(user=query.get("user"), feature=query.get("feature")),
                    ):
                        own = llm_span(f"chat {args.name}")
                        headers: dict[str, str] = {}
                        propagate.inject(headers)
                        request = urllib.request.Request(args.downstream + "/llm", headers=headers)
                        with urllib.request.urlopen(request, timeout=10) as response:
                            downstream = json.loads(response.read())
                    body = {"own": own, "downstream": downstream, "sent_headers": headers}
            finally:
                context.detach(token)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        spendgate.shutdown()


if __name__ == "__main__":
    sys.exit(main())
