"""End to end: the official ``openai`` SDK → spendgate proxy → simulated provider; the proxy exports
its spans over real OTLP/gRPC to the collector, and the chargeback CSV is checked line by line.

Three developers in two teams, streamed and non-streamed calls, a repo from the key's default and
one from a request header. Expected costs are worked out from the usage each client saw and the
custom rates below, independently of the collector.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.sdk.resources import Resource

from spendgate_proxy.app import create_app
from spendgate_proxy.config import load_config as load_proxy_config
from spendgate_proxy.keys import KeyDirectory, create_key
from spendgate_proxy.telemetry.otlp_export import GrpcSender
from spendgate_proxy.telemetry.spans import OTLPRecordSink, SpanExportWorker
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.collector.conftest import RunningCollector, run_collector
from tests.support.aio_server import serve_app, serve_proxy

PROVIDER_KEY = "sk-sim-provider-secret-0123456789abcdef"
# USD per million tokens for every gpt-4.1 variant the simulator serves: whole micro-dollars per
# token, so the expected sums print to 6 decimals exactly whichever way they are added up.
INPUT, CACHE_READ, OUTPUT = 2.00, 1.00, 8.00
PRICES = f"""\
models:
  - model: "gpt-4.1*"
    input_per_mtok: {INPUT}
    cache_read_per_mtok: {CACHE_READ}
    output_per_mtok: {OUTPUT}
"""
PRINCIPALS = [
    ("ana@acme.com", "platform", "CC-100", "acme-api"),
    ("bo@acme.com", "platform", "CC-100", None),
    ("cy@acme.com", "mobile", "CC-200", None),
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[RunningCollector, str, dict[str, str], SpanExportWorker]]:
    keys_file = tmp_path / "keys.yaml"
    keys = {
        user: create_key(keys_file, user=user, team=team, cost_center=cc, repo=repo)[0]
        for user, team, cc, repo in PRINCIPALS
    }
    (tmp_path / "prices.yaml").write_text(PRICES)
    simulator = lambda: create_simulator(SimulatorConfig(api_key=PROVIDER_KEY, cached_ratio=0.25))  # noqa: E731
    with run_collector(tmp_path, keys_file=keys_file) as collector, serve_app(simulator) as sim:
        settings = load_proxy_config(
            overrides={
                "keys_file": str(keys_file),
                "providers": {"sim": {"base_url": sim.url + "/v1", "api_key_env": "SIM_KEY"}},
                "models": [
                    {"name": "gpt-4.1", "provider": "sim"},
                    {"name": "gpt-4.1-mini", "provider": "sim"},
                ],
                "control": {"endpoint": "off"},  # this test is about spans: keys from the file, no control stream
            },
            env={"SIM_KEY": PROVIDER_KEY},
        )
        # The proxy's own default path: records encoded to OTLP protobuf and sent over gRPC.
        sink = OTLPRecordSink(
            GrpcSender("http://" + collector.grpc_endpoint), Resource.create({"service.name": "spendgate-proxy"})
        )
        worker = SpanExportWorker(sink, interval_s=0.05)
        app = lambda: create_app(settings, keys=KeyDirectory(keys_file), worker=worker)  # noqa: E731
        with serve_proxy(app) as proxy:
            yield collector, proxy.url, keys, worker


def _cost(prompt: int, cached: int, completion: int) -> float:
    return ((prompt - cached) * INPUT + cached * CACHE_READ + completion * OUTPUT) / 1e6


def test_openai_sdk_traffic_through_the_proxy_lands_in_the_chargeback(stack) -> None:
    collector, proxy_url, keys, worker = stack
    month = datetime.now(UTC).strftime("%Y-%m")
    # (developer, team, cost centre, repo) -> [cost, input, output, cache read, requests]
    expected: dict[tuple[str, str, str, str], list[float]] = {}

    def call(user: str, model: str, stream: bool, repo_header: str | None = None) -> None:
        client = openai.OpenAI(base_url=proxy_url + "/v1", api_key=keys[user], max_retries=0)
        headers = {"x-spendgate-repo": repo_header} if repo_header else None
        messages = [{"role": "user", "content": f"Refactor the billing module for {user}, please."}]
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers=headers,
                )
            )
            usage = chunks[-1].usage
        else:
            usage = client.chat.completions.create(model=model, messages=messages, extra_headers=headers).usage
        assert usage is not None
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        _, team, cc, key_repo = next(p for p in PRINCIPALS if p[0] == user)
        row = expected.setdefault((user, team, cc, repo_header or key_repo or ""), [0.0, 0, 0, 0, 0])
        row[0] += _cost(usage.prompt_tokens, cached or 0, usage.completion_tokens)
        row[1] += usage.prompt_tokens
        row[2] += usage.completion_tokens
        row[3] += cached or 0
        row[4] += 1

    call("ana@acme.com", "gpt-4.1", stream=True)
    call("ana@acme.com", "gpt-4.1", stream=False)
    call("bo@acme.com", "gpt-4.1-mini", stream=True, repo_header="acme-web")
    call("bo@acme.com", "gpt-4.1-mini", stream=False)  # no repo anywhere
    call("cy@acme.com", "gpt-4.1-mini", stream=True, repo_header="mobile-app")
    call("cy@acme.com", "gpt-4.1", stream=False, repo_header="mobile-app")
    # The collector acknowledges an export only once it is committed: after the flush, it is stored.
    assert worker.force_flush(10)

    assert any(row[3] for row in expected.values()), "the simulator should report cached tokens"
    header = (
        "month,developer,team,cost_center,repo,cost_usd,input_tokens,output_tokens,"
        "cache_read_tokens,cache_write_tokens,reasoning_tokens,requests,unpriced_requests"
    )
    lines = [header] + [
        f"{month},{dev},{team},{cc},{repo},{cost:.6f},{inp},{out},{cached},0,0,{requests},0"
        for (dev, team, cc, repo), (cost, inp, out, cached, requests) in sorted(expected.items())
    ]
    csv = httpx.get(f"{collector.api_url}/api/chargeback.csv", params={"month": month}, timeout=10).text
    assert lines == csv.splitlines()

    sources = {(row["developer"], row["repo_source"]) for row in collector.store.raw_rows()}
    assert ("ana@acme.com", "key-default") in sources
    assert ("cy@acme.com", "header") in sources
    assert 6.0 == collector.metric("spendgate_collector_spans_priced_total")
