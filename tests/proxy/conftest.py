"""Fixtures for proxy tests: a simulated provider and a proxy in front of it, both on real sockets.

Spans go to the SDK's in-memory exporter through the proxy's real span worker, so a test sees
exactly what would be exported over OTLP, and waits for them with ``force_flush``, not sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spendgate_proxy.app import create_app
from spendgate_proxy.config import load_config
from spendgate_proxy.keys import KeyDirectory, create_key
from spendgate_proxy.telemetry.spans import SDKRecordSink, SpanExportWorker
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.support.aio_server import ServerHandle, serve_app, serve_proxy

PROVIDER_KEY = "sk-sim-provider-secret-0123456789abcdef"
MODELS = ["gpt-4.1", "gpt-4.1-mini", "o4-mini"]


@dataclass
class Gateway:
    """A running proxy with its upstream, keys and captured spans."""

    proxy: ServerHandle
    upstream: ServerHandle
    exporter: InMemorySpanExporter
    worker: SpanExportWorker
    keys: dict[str, str]  # user email -> virtual key
    keys_file: Path

    def client(self, user: str = "ana@acme.com", **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.proxy.url + "/v1", api_key=self.keys[user], max_retries=0, **kwargs)

    def direct(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.upstream.url + "/v1", api_key=PROVIDER_KEY, max_retries=0)

    def spans(self) -> list[ReadableSpan]:
        assert self.worker.force_flush(10)
        return list(self.exporter.get_finished_spans())

    def wait_spans(self, count: int, timeout: float = 10.0) -> list[ReadableSpan]:
        """Spans once ``count`` have arrived: a disconnect is noticed by the proxy after the client left."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.02)

    def clear(self, settle_s: float = 0.15) -> None:
        """Forget the spans so far, including one whose call the client saw end a moment ago.

        The handler records a call's span as its response ends, so the client can be ahead of
        it: wait until no new span has arrived for ``settle_s`` before clearing.
        """
        seen = -1
        while True:
            self.worker.force_flush(10)
            count = len(self.exporter.get_finished_spans())
            if count == seen:
                break
            seen = count
            time.sleep(settle_s)
        self.exporter.clear()


@pytest.fixture(scope="module")
def simulator() -> Iterator[ServerHandle]:
    with serve_app(lambda: create_simulator(SimulatorConfig(api_key=PROVIDER_KEY, cached_ratio=0.25))) as sim:
        yield sim


def start_gateway(tmp_path: Path, upstream: ServerHandle, **settings: object) -> Iterator[Gateway]:
    keys_file = tmp_path / "keys.yaml"
    keys = {}
    for user, team, cc, repo in [
        ("ana@acme.com", "platform", "CC-100", "acme-api"),
        ("bo@acme.com", "platform", "CC-100", None),
        ("cy@acme.com", "mobile", "CC-200", None),
    ]:
        keys[user], _ = create_key(keys_file, user=user, team=team, cost_center=cc, repo=repo)
    create_key(keys_file, user="dee@acme.com", team="mobile", models=("gpt-4.1-mini",))
    config = load_config(
        overrides={
            "keys_file": str(keys_file),
            "providers": {"sim": {"base_url": upstream.url + "/v1", "api_key_env": "SIM_KEY"}},
            "models": [
                {"name": "gpt-4.1", "provider": "sim"},
                {"name": "gpt-4.1-mini", "provider": "sim"},
                {"name": "o4-mini", "provider": "sim"},
                {"name": "fast", "provider": "sim", "upstream_model": "gpt-4.1-mini"},
            ],
            "control": {"endpoint": "off"},  # no collector here: standalone, keys from the file
            **settings,
        },
        env={"SIM_KEY": PROVIDER_KEY},
    )
    exporter = InMemorySpanExporter()
    sink = SDKRecordSink(exporter, Resource.create({"service.name": "spendgate-proxy-test"}))
    worker = SpanExportWorker(sink, interval_s=0.05)
    with serve_proxy(lambda: create_app(config, keys=KeyDirectory(keys_file), worker=worker)) as px:
        yield Gateway(px, upstream, exporter, worker, keys, keys_file)


@pytest.fixture
def gateway(tmp_path: Path, simulator: ServerHandle) -> Iterator[Gateway]:
    yield from start_gateway(tmp_path, simulator)
