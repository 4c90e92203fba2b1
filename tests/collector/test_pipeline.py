"""The pipeline on its own (real normaliser, pricer and store) and the Collector lifecycle."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import asyncio
from pathlib import Path

import httpx
import pytest

from spendgate_collector.app import Collector
from spendgate_collector.config import CollectorConfig
from spendgate_collector.errors import ConfigError, InvalidPayload, ShuttingDown
from spendgate_collector.ingest.normalize import Normalizer
from spendgate_collector.ingest.pipeline import ExportOutcome, Pipeline
from spendgate_collector.metrics import CollectorMetrics
from spendgate_collector.pricing import Pricer
from spendgate_collector.pricing.stage import PricingStage
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_semconv import attributes as sc
from tests.collector.conftest import RunningCollector
from tests.collector.spans import ours, protobuf_body, span


def make_pipeline(tmp_path: Path, **kw: int) -> tuple[Pipeline, SQLiteStore]:
    store = SQLiteStore(tmp_path / "p.db")
    pipeline = Pipeline(
        store,
        Normalizer(),
        PricingStage(Pricer()),
        CollectorMetrics(),
        queue_max_bytes=kw.get("queue_max_bytes", 1 << 20),
        batch_max_bytes=kw.get("batch_max_bytes", 1 << 20),
    )
    return pipeline, store


def test_requests_queued_together_commit_in_one_batch(tmp_path: Path) -> None:
    pipeline, store = make_pipeline(tmp_path)

    async def scenario() -> list[object]:
        await pipeline.start()
        # Admitted back to back, before the writer runs: one transaction for all three.
        futures = [
            pipeline.submit_nowait(protobuf_body([span(1, 1, ours())]), "test"),
            pipeline.submit_nowait(b"\xff not protobuf", "test"),
            pipeline.submit_nowait(protobuf_body([span(1, 2, ours()), span(1, 3, {"http.route": "/"})]), "test"),
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        await pipeline.shutdown()
        return results

    first, bad, third = asyncio.run(scenario())
    assert ExportOutcome(spans=1, rejected=0) == first
    assert isinstance(bad, InvalidPayload)
    assert ExportOutcome(spans=2, rejected=0) == third
    assert 1 == pipeline.stats().batches
    assert 2 == len(store.raw_rows())
    store.close()


def test_pipeline_shut_down_before_start_stays_shut(tmp_path: Path) -> None:
    pipeline, store = make_pipeline(tmp_path)

    async def scenario() -> None:
        await pipeline.shutdown()
        await pipeline.start()
        with pytest.raises(ShuttingDown):
            pipeline.submit_nowait(protobuf_body([span(2, 1, ours())]), "test")

    asyncio.run(scenario())
    store.close()


def test_shutdown_stores_what_was_admitted_then_refuses(tmp_path: Path) -> None:
    pipeline, store = make_pipeline(tmp_path)

    async def scenario() -> None:
        await pipeline.start()
        future = pipeline.submit_nowait(protobuf_body([span(2, 1, ours())]), "test")
        await pipeline.shutdown()
        assert ExportOutcome(1, 0) == future.result()
        with pytest.raises(ShuttingDown):
            pipeline.submit_nowait(protobuf_body([span(2, 2, ours())]), "test")
        await pipeline.shutdown()  # idempotent

    asyncio.run(scenario())
    assert 1 == len(store.raw_rows())
    store.close()


@pytest.mark.parametrize(
    ("model", "provider", "usage"),
    [
        ("gpt-4o", "openai", {"input_tokens": 5000, "cache_read": 2048, "output_tokens": 700}),
        (
            "claude-sonnet-4-5",
            "anthropic",
            {"input_tokens": 30_000, "cache_read": 20_000, "cache_write": 8000, "output_tokens": 1200},
        ),
        ("o3-mini", "openai", {"input_tokens": 900, "output_tokens": 2500, "reasoning": 2000}),
    ],
)
def test_streamed_and_non_streamed_calls_cost_the_same(
    collector: RunningCollector, model: str, provider: str, usage: dict[str, int]
) -> None:
    streamed = ours(model=model, provider=provider, stream=True, **usage)
    whole = ours(model=model, provider=provider, stream=False, **usage)
    assert streamed[sc.SPENDGATE_STREAM] is True and sc.SPENDGATE_TTFT_MS not in whole
    response = httpx.post(
        collector.http_url,
        content=protobuf_body([span(7, 1, streamed), span(7, 2, whole)]),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert 200 == response.status_code
    first, second = collector.store.raw_rows()
    assert first["cost_usd"] is not None and first["cost_usd"] > 0
    assert first["cost_usd"] == second["cost_usd"]
    assert "genai-prices" == first["cost_source"] == second["cost_source"]


def test_unknown_model_is_unpriced_never_zero(collector: RunningCollector) -> None:
    response = httpx.post(
        collector.http_url,
        content=protobuf_body([span(8, 1, ours(model="in-house-llm-v9", provider="vllm"))]),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert 200 == response.status_code
    (row,) = collector.store.raw_rows()
    assert (None, "unpriced") == (row["cost_usd"], row["cost_source"])
    assert 1.0 == collector.metric("spendgate_collector_spans_unpriced_total")


def test_collector_shutdown_is_idempotent_and_safe_before_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        never = Collector(CollectorConfig(db=tmp_path / "never.db", control="127.0.0.1:0"))
        await never.shutdown()
        await never.shutdown()
        assert not (tmp_path / "never.db").exists()

        config = CollectorConfig(
            db=tmp_path / "c.db", otlp_grpc="127.0.0.1:0", otlp_http="off", api="127.0.0.1:0", control="127.0.0.1:0"
        )
        async with Collector(config) as running:
            assert running.otlp_grpc_port and running.api_port
            assert running.otlp_http_url is None
        await running.shutdown()

    asyncio.run(scenario())


def test_collector_start_names_the_field_that_failed(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = Collector(
            CollectorConfig(db=tmp_path / "a.db", otlp_grpc="off", otlp_http="127.0.0.1:0", api="off", control="off")
        )
        await first.start()
        try:
            taken = f"127.0.0.1:{first.otlp_http_port}"
            clash = Collector(
                CollectorConfig(db=tmp_path / "b.db", otlp_grpc="off", otlp_http=taken, api="off", control="off")
            )
            with pytest.raises(ConfigError, match=r"^otlp_http: cannot listen on 127\.0\.0\.1:\d+"):
                await clash.start()
            missing = Collector(CollectorConfig(db=tmp_path / "c.db", prices=tmp_path / "nope.yaml", control="off"))
            with pytest.raises(ConfigError, match=r"^prices: "):
                await missing.start()
        finally:
            await first.shutdown()

    asyncio.run(scenario())
