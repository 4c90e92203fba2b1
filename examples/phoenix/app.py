"""A small LLM app that sends its traces to the spendgate collector, which forwards them to Phoenix.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 SPENDGATE_KEY_ID=key_... python app.py

It plays an agent answering a support ticket, with the plain OpenTelemetry SDK: a CHAIN span, a
retriever (TOOL) span and two LLM spans carrying OpenInference attributes, as an instrumentor such
as ``openinference-instrumentation-openai`` would write them. No provider is called (the token
counts are made up), so it runs anywhere. The LLM spans carry only the virtual key id: the
collector fills in the developer, team, cost centre and repository from the key's principal, prices
them, and its exporter forwards the whole trace, enriched, to Phoenix.

Reads ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://127.0.0.1:4317``), ``SPENDGATE_KEY_ID``
(default ``key_demo``), ``APP_MODEL`` (default ``gpt-4.1-mini``) and ``PHOENIX_PROJECT_NAME``
(default ``spendgate-demo``: the Phoenix project the spans land in). Prints the trace id.
"""

from __future__ import annotations

import os
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def main() -> int:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    key_id = os.environ.get("SPENDGATE_KEY_ID", "key_demo")
    model = os.environ.get("APP_MODEL", "gpt-4.1-mini")
    resource = Resource.create(
        {
            "service.name": "support-agent",
            # Phoenix files spans under this project (OpenInference resource attribute).
            "openinference.project.name": os.environ.get("PHOENIX_PROJECT_NAME", "spendgate-demo"),
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("support-agent")

    with tracer.start_as_current_span("answer ticket", attributes={"openinference.span.kind": "CHAIN"}) as root:
        with tracer.start_as_current_span("search docs", attributes={"openinference.span.kind": "TOOL"}):
            pass
        for step, (prompt, completion) in enumerate([(1200, 80), (2400, 350)]):
            with tracer.start_as_current_span(
                f"chat {model}",
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.system": "openai",
                    "llm.provider": "openai",
                    "llm.model_name": model,
                    "llm.token_count.prompt": prompt,
                    "llm.token_count.completion": completion,
                    "llm.token_count.total": prompt + completion,
                    "spendgate.key.id": key_id,
                    "spendgate.feature": "agent",
                    "metadata": f'{{"step": {step}}}',
                },
            ):
                pass
        trace_id = f"{root.get_span_context().trace_id:032x}"
    provider.shutdown()  # flushes
    print(trace_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
