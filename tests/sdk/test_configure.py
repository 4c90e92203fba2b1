"""spendgate.configure: pipelines it builds or attaches to, settings resolution, idempotence, failures.

Tests that need the process-wide (global) tracer provider or interpreter exit run a short script
in a subprocess, since OpenTelemetry lets the global provider be set only once per process.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spendgate
from spendgate.processor import SpendgateSpanProcessor
from spendgate_semconv import attributes as sc
from tests.support.otlp_receiver import otlp_receiver

# The module behind `spendgate.configure()` and its settings constants.
cfg = importlib.import_module("spendgate._setup")
ROOT = Path(__file__).resolve().parents[2]
LLM = {sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_LLM}


def run_script(source: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[dict[str, Any], float]:
    """Run ``source`` in a fresh interpreter; it prints one JSON line last. Returns (that JSON, seconds)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    clean.update({"PYTHONPATH": str(ROOT), **(env or {})})
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed


def dead_endpoint() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def processors(provider: TracerProvider) -> list[Any]:
    return list(provider._active_span_processor._span_processors)


def test_configure_twice_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    first = spendgate.configure(tracer_provider=provider, exporter=exporter, team="search")
    try:
        second = spendgate.configure(tracer_provider=provider, exporter=exporter, team="search")
        assert second is first
        spendgate_processor, export_processor = processors(provider)
        assert isinstance(spendgate_processor, SpendgateSpanProcessor)
        assert isinstance(export_processor, BatchSpanProcessor)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        # Attribution defaults of a later call merge in; export settings that differ are ignored loudly.
        with caplog.at_level(logging.WARNING):
            third = spendgate.configure(repo="acme-api", endpoint="http://elsewhere:4317")
        assert third is first
        assert "already called" in caplog.text
        assert len(processors(provider)) == 2
        assert first.processor.defaults == spendgate.Attribution(team="search", repo="acme-api")
    finally:
        first.shutdown()
    assert spendgate.configure is cfg.configure  # the function, though its module was imported


def test_configure_after_shutdown_reuses_the_processor_on_the_same_provider() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    first = spendgate.configure(tracer_provider=provider, team="a")
    first.shutdown()
    first.shutdown()  # idempotent
    second = spendgate.configure(tracer_provider=provider, team="b")
    try:
        assert second is not first
        assert [type(p) for p in processors(provider)] == [BatchSpanProcessor, SpendgateSpanProcessor]
        with provider.get_tracer("t").start_as_current_span("x", attributes=LLM):
            pass
        second.force_flush()
        provider.force_flush()
        assert exporter.get_finished_spans()[0].attributes[sc.SPENDGATE_TEAM] == "b"  # type: ignore[index]
    finally:
        second.shutdown()


def test_baggage_false_stops_writing_baggage_until_shutdown() -> None:
    handle = spendgate.configure(tracer_provider=TracerProvider(), baggage=False)
    try:
        with spendgate.attribute(user="ana@acme.com"):
            assert dict(baggage.get_all()) == {}
        assert handle.processor.read_baggage is False
    finally:
        handle.shutdown()
    with spendgate.attribute(user="ana@acme.com"):
        assert dict(baggage.get_all()) == {"spendgate.user": "ana@acme.com"}


def test_exporter_that_raises_is_counted_not_raised() -> None:
    class Exploding(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            raise ConnectionError("collector is down")

    provider = TracerProvider()
    handle = spendgate.configure(tracer_provider=provider, exporter=Exploding(), team="search")
    try:
        tracer = provider.get_tracer("t")
        for _ in range(3):
            with tracer.start_as_current_span("x", attributes=LLM):
                pass
        assert handle.force_flush() is True
        stats = spendgate.stats()
        assert (stats.spans_stamped, stats.spans_exported, stats.spans_export_failed) == (3, 0, 3)
        assert stats.export_failures >= 1
    finally:
        handle.shutdown()


def test_module_functions_without_configure() -> None:
    assert spendgate.stats() == cfg.SdkStats(0, 0, 0, 0, 0)
    assert spendgate.force_flush() is True
    spendgate.shutdown()  # nothing to do, no error


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="protocol must be one of"):
        spendgate.configure(protocol="http/json")
    with pytest.raises(TypeError, match=r"needs an opentelemetry\.sdk\.trace\.TracerProvider"):
        spendgate.configure(tracer_provider=object())  # type: ignore[arg-type]
    assert cfg.current_handle() is None


def test_http_protobuf_without_its_exporter_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ImportError, match="pip install opentelemetry-exporter-otlp-proto-http"):
        spendgate.configure(
            tracer_provider=TracerProvider(), endpoint="http://localhost:4318", protocol="http/protobuf"
        )
    spendgate.shutdown()


@pytest.mark.parametrize(
    ("env", "protocol", "expected"),
    [
        ({}, None, "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, None, "http/protobuf"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            None,
            "grpc",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "grpc", "grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, None, "grpc"),
    ],
)
def test_protocol_resolution(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], protocol: str | None, expected: str
) -> None:
    for name in (cfg.OTEL_EXPORTER_OTLP_PROTOCOL, cfg.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cfg.resolve_protocol(protocol) == expected


@pytest.mark.parametrize(
    ("env", "endpoint", "protocol", "expected"),
    [
        ({}, None, "grpc", "http://localhost:4317"),
        ({}, None, "http/protobuf", "http://localhost:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4317"}, None, "grpc", "http://col:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318"}, None, "http/protobuf", "http://col:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"},
            None,
            "http/protobuf",
            "http://t:1/x",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://col:4317"}, "http://arg:4317", "grpc", "http://arg:4317"),
        ({}, "https://gw.acme.com/otlp/v1/traces", "http/protobuf", "https://gw.acme.com/otlp/v1/traces"),
        ({}, "https://gw.acme.com/", "http/protobuf", "https://gw.acme.com/v1/traces"),
    ],
)
def test_endpoint_resolution(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str | None, protocol: str, expected: str
) -> None:
    for name in (cfg.OTEL_EXPORTER_OTLP_ENDPOINT, cfg.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cfg.resolve_endpoint(endpoint, protocol) == expected


def test_headers_parse() -> None:
    assert cfg._parse_headers("Authorization=Bearer%20abc, x-team = search,bad") == {
        "authorization": "Bearer abc",
        "x-team": "search",
    }
    assert cfg._parse_headers({"X-Key": "v"}) == {"x-key": "v"}
    assert cfg._parse_headers(None) is None


def test_shutdown_flushes_to_a_real_otlp_receiver() -> None:
    with otlp_receiver() as (address, service):
        handle = spendgate.configure(
            service_name="flush-test", endpoint=f"http://{address}", set_global=False, team="search"
        )
        try:
            assert handle.owns_provider
            tracer = handle.tracer_provider.get_tracer("t")
            with spendgate.attribute(user="ana@acme.com"):
                for _ in range(3):
                    with tracer.start_as_current_span("chat gpt-4.1", attributes=LLM):
                        pass
            # The batch processor waits 5 s before exporting on its own: only shutdown sends these now.
            assert service.spans == []
        finally:
            handle.shutdown()
        spans = service.wait(3, timeout=5)
    assert len(spans) == 3
    assert spans[0]["resource"]["service.name"] == "flush-test"
    assert spans[0]["attributes"][sc.USER_ID] == "ana@acme.com"
    assert spans[0]["attributes"][sc.SPENDGATE_TEAM] == "search"
    assert handle.stats().spans_exported == 3


def test_interpreter_exit_flushes() -> None:
    with otlp_receiver() as (address, service):
        run_script(
            f"""
            import json, spendgate
            from opentelemetry import trace
            spendgate.configure(service_name="exit-test", endpoint="http://{address}", repo="acme-api")
            with trace.get_tracer("t").start_as_current_span("chat", attributes={LLM!r}):
                pass
            print(json.dumps({{}}))  # no shutdown(): the atexit hook must send the span
            """
        )
        spans = service.wait(1, timeout=5)
    assert [s["attributes"][sc.VCS_REPOSITORY_NAME] for s in spans] == ["acme-api"]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_endpoint_down_never_raises_and_is_counted(protocol: str) -> None:
    result, elapsed = run_script(
        f"""
        import dataclasses, json, time, spendgate
        from opentelemetry import trace
        handle = spendgate.configure(
            service_name="down", endpoint="{dead_endpoint()}", protocol="{protocol}", export_timeout=1, team="t"
        )
        tracer = trace.get_tracer("t")
        started = time.monotonic()
        with spendgate.attribute(user="ana@acme.com"):
            for _ in range(50):
                with tracer.start_as_current_span("chat", attributes={LLM!r}):
                    pass
        host_seconds = time.monotonic() - started
        flushed = handle.force_flush()
        stats = spendgate.stats()
        handle.shutdown()
        print(json.dumps({{"host_seconds": host_seconds, "flushed": flushed, **dataclasses.asdict(stats)}}))
        """
    )
    assert result["spans_stamped"] == 50
    assert result["spans_exported"] == 0
    assert result["spans_export_failed"] == 50
    assert result["export_failures"] >= 1
    assert result["host_seconds"] < 1  # the host's spans never waited for the dead endpoint
    assert elapsed < 30


def test_attaches_to_an_existing_global_sdk_provider() -> None:
    result, _ = run_script(
        f"""
        import json, spendgate
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        handle = spendgate.configure(team="search")  # no endpoint: the app already exports
        with trace.get_tracer("t").start_as_current_span("chat", attributes={LLM!r}):
            pass
        print(json.dumps({{
            "same_provider": handle.tracer_provider is provider,
            "owns": handle.owns_provider,
            "processors": [type(p).__name__ for p in provider._active_span_processor._span_processors],
            "team": exporter.get_finished_spans()[0].attributes.get("spendgate.team"),
        }}))
        """
    )
    assert result == {
        "same_provider": True,
        "owns": False,
        "processors": ["SimpleSpanProcessor", "SpendgateSpanProcessor"],
        "team": "search",
    }


def test_creates_and_sets_the_global_provider_from_env() -> None:
    result, _ = run_script(
        f"""
        import json, spendgate
        from opentelemetry import trace
        handle = spendgate.configure()
        with trace.get_tracer("t").start_as_current_span("chat", attributes={LLM!r}):
            pass
        handle.shutdown()
        print(json.dumps({{
            "global": trace.get_tracer_provider() is handle.tracer_provider,
            "owns": handle.owns_provider,
            "service": handle.tracer_provider.resource.attributes.get("service.name"),
            "exporter": type(handle.exporter.inner).__name__,
            "exported": handle.stats().spans_exported,
        }}))
        """,
        env={"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_EXPORTER": "console"},
    )
    assert result == {
        "global": True,
        "owns": True,
        "service": "from-env",
        "exporter": "ConsoleSpanExporter",
        "exported": 1,
    }


def test_traces_exporter_none_exports_nothing_but_still_attributes() -> None:
    result, _ = run_script(
        f"""
        import json, spendgate
        from opentelemetry import trace
        handle = spendgate.configure(team="t")
        with trace.get_tracer("t").start_as_current_span("chat", attributes={LLM!r}):
            pass
        print(json.dumps({{"exporter": handle.exporter is None, "stamped": handle.stats().spans_stamped}}))
        """,
        env={"OTEL_TRACES_EXPORTER": "none"},
    )
    assert result == {"exporter": True, "stamped": 1}
