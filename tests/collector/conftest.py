"""Fixtures for collector tests: a real ``Collector`` on loopback ephemeral ports, in its own loop.

Tests stay synchronous (the official OpenTelemetry exporters block) while the collector runs in a
background thread exactly as it would in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from spendgate_collector.app import Collector
from spendgate_collector.config import CollectorConfig
from spendgate_collector.store.sqlite import SQLiteStore

# Rates of the custom models below, USD per million tokens: chosen so every expected cost in the
# tests can be worked out by hand and does not move when genai-prices' data is updated.
PRICES_YAML = """\
models:
  - model: acme-coder
    input_per_mtok: 2.00
    output_per_mtok: 8.00
    cache_read_per_mtok: 0.20
    cache_write_per_mtok: 2.50
  - model: acme-mini
    input_per_mtok: 0.50
    output_per_mtok: 1.50
"""


@dataclass
class RunningCollector:
    """A started collector, the loop it runs on, and shortcuts to its addresses and store."""

    collector: Collector
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    @property
    def grpc_endpoint(self) -> str:
        assert self.collector.otlp_grpc_endpoint
        return self.collector.otlp_grpc_endpoint

    @property
    def http_url(self) -> str:
        assert self.collector.otlp_http_url
        return self.collector.otlp_http_url

    @property
    def api_url(self) -> str:
        assert self.collector.api_url
        return self.collector.api_url

    @property
    def store(self) -> SQLiteStore:
        assert self.collector.store is not None
        return self.collector.store

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.collector.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self.collector.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(15)
        self.loop.close()


@contextlib.contextmanager
def run_collector(tmp_path: Path, **settings: Any) -> Iterator[RunningCollector]:
    """Start a collector on 127.0.0.1 ephemeral ports with ``settings`` over test defaults."""
    prices = tmp_path / "prices.yaml"
    if not prices.exists():
        prices.write_text(PRICES_YAML)
    config = CollectorConfig(
        **{
            "db": tmp_path / "spendgate.db",
            "otlp_grpc": "127.0.0.1:0",
            "otlp_http": "127.0.0.1:0",
            "api": "127.0.0.1:0",
            "control": "127.0.0.1:0",
            "prices": prices,
            **settings,
        }
    )
    collector = Collector(config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(target=lambda: (asyncio.set_event_loop(loop), ready.set(), loop.run_forever()))
    thread.daemon = True
    thread.start()
    ready.wait(5)
    running = RunningCollector(collector, loop, thread)
    try:
        running.call(collector.start())
    except BaseException:
        running.stop()
        raise
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    with run_collector(tmp_path) as running:
        yield running
