"""Collector benchmark: OTLP ingest throughput, chargeback query latency at 5M spans, peak memory.

    python benchmarks/bench_collector.py            # ~1-2 minutes
    python benchmarks/bench_collector.py --quick    # ~20 seconds, smaller volumes

(a) Ingest: realistic spendgate LLM spans (~30 attributes each, 512 per export request), priced and
    committed durably (SQLite WAL, synchronous=FULL) before each request is acknowledged.
    - ``pipeline``: export requests handed straight to the pipeline (parse → normalise → price →
      store + rollups), no network.
    - ``grpc``: a separate client process sends pre-encoded ``ExportTraceServiceRequest``s over
      real gRPC to a ``Collector`` in this process, several requests in flight, as exporters would.
      The client encodes ahead of time so that its own CPU does not cap the measurement.
(b) Query: rollups for one month of 5 million spans (500 developers, 40 repos, 8 teams, 5 models,
    4 features) are synthesised straight into a fresh database with ``executemany`` (not through
    OTLP), then the chargeback for the month is queried repeatedly; the median is reported, for the
    store call and through the HTTP API.
(c) Memory: resident set size after each phase and at peak (this process holds the collector, the
    pipeline run's pre-encoded requests and the query phase) and the client process's peak.

``main()`` returns the numbers as a dict and prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _synthetic_month import DEVELOPERS, TEAMS, bulk_write, weekdays
from _synthetic_month import developer as synthetic_developer
from _timing import median_ms
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from spendgate_collector.app import Collector
from spendgate_collector.config import CollectorConfig
from spendgate_collector.ingest.normalize import Normalizer
from spendgate_collector.ingest.pipeline import Pipeline
from spendgate_collector.metrics import CollectorMetrics
from spendgate_collector.pricing import Pricer
from spendgate_collector.pricing.stage import PricingStage
from spendgate_collector.store import team_daily_rollup
from spendgate_collector.store.query import SpendFilter, parse_month
from spendgate_collector.store.sqlite import ROLLUP_MEASURES, SQLiteStore
from spendgate_semconv import attributes as sc

SPANS_PER_REQUEST = 512
EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

REPOS = 40
# (model, provider, share of calls): what a Cursor-heavy organisation sends.
MODELS = [
    ("claude-sonnet-4-5", "anthropic"),
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-haiku-4-5", "anthropic"),
    ("o3-mini", "openai"),
]
FEATURES = ["agent", "chat", "summarise", "other"]


def _kv(key: str, value: Any) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = value
    return kv


def _span_attributes(i: int, rng: random.Random) -> list[KeyValue]:
    developer, team, cost_center = synthetic_developer(i % DEVELOPERS)
    model, provider = MODELS[i % len(MODELS)]
    repo = f"repo-{(i * 7) % REPOS:02d}"
    cache_read = rng.randrange(0, 30_000)
    cache_write = rng.randrange(0, 3000)
    prompt = cache_read + cache_write + rng.randrange(100, 8000)
    completion = rng.randrange(50, 3000)
    attrs = {
        sc.OPENINFERENCE_SPAN_KIND: sc.SPAN_KIND_LLM,
        sc.LLM_SYSTEM: provider,
        sc.LLM_PROVIDER: provider,
        sc.LLM_MODEL_NAME: model,
        sc.LLM_INVOCATION_PARAMETERS: '{"temperature":0.2,"max_tokens":4096}',
        sc.LLM_TOKEN_COUNT_PROMPT: prompt,
        sc.LLM_TOKEN_COUNT_COMPLETION: completion,
        sc.LLM_TOKEN_COUNT_TOTAL: prompt + completion,
        sc.LLM_TOKEN_COUNT_PROMPT_CACHE_READ: cache_read,
        sc.LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE: cache_write,
        sc.LLM_TOKEN_COUNT_COMPLETION_REASONING: 0,
        sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_CHAT,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.GEN_AI_RESPONSE_MODEL: model,
        sc.GEN_AI_RESPONSE_ID: f"chatcmpl-{rng.getrandbits(64):016x}",
        sc.GEN_AI_USAGE_INPUT_TOKENS: prompt,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: completion,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cache_read,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: cache_write,
        sc.SERVER_ADDRESS: "api.example.com",
        sc.USER_ID: developer,
        sc.SESSION_ID: f"conv-{i % 97}",
        sc.SPENDGATE_TEAM: team,
        sc.SPENDGATE_COST_CENTER: cost_center,
        sc.VCS_REPOSITORY_NAME: repo,
        sc.VCS_REPOSITORY_URL_FULL: f"https://github.com/acme/{repo}",
        sc.SPENDGATE_REPO_SOURCE: sc.RepoSource.CURSOR_HOOK,
        sc.SPENDGATE_FEATURE: FEATURES[i % len(FEATURES)],
        sc.SPENDGATE_KEY_ID: f"key_{i % DEVELOPERS:010x}",
        sc.SPENDGATE_MODEL_REQUESTED: model,
        sc.SPENDGATE_STREAM: True,
        sc.SPENDGATE_TTFT_MS: float(rng.randrange(200, 2000)),
        sc.SPENDGATE_USAGE_SOURCE: sc.UsageSource.PROVIDER,
        sc.SPENDGATE_HTTP_STATUS: 200,
    }
    return [_kv(k, v) for k, v in attrs.items()]


def make_payloads(requests: int, seed: int = 1) -> list[bytes]:
    """``requests`` export requests of 512 distinct, realistic LLM spans each (protobuf bytes)."""
    rng = random.Random(seed)
    template = ExportTraceServiceRequest()
    resource_spans = template.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [_kv("service.name", "spendgate-proxy"), _kv("service.version", "0.1.0"), _kv("host.name", "gw-1")]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "spendgate.proxy"
    now = time.time_ns()
    for i in range(SPANS_PER_REQUEST):
        span = scope.spans.add()
        span.name = "chat"
        span.kind = 3
        span.attributes.extend(_span_attributes(i, rng))
        span.status.code = 1
    payloads = []
    for r in range(requests):
        for i, span in enumerate(scope.spans):
            span.trace_id = (seed << 96 | r << 32 | i).to_bytes(16, "big")
            span.span_id = (r << 20 | i | 1 << 60).to_bytes(8, "big")
            end = now - rng.randrange(0, 3 * 86_400) * 1_000_000_000
            span.end_time_unix_nano = end
            span.start_time_unix_nano = end - rng.randrange(500, 30_000) * 1_000_000
        payloads.append(template.SerializeToString())
    return payloads


def _rss_mib() -> float:
    """Current resident set size (Linux), else the peak so far."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_pipeline(requests: int, workdir: Path) -> dict[str, Any]:
    """Export requests straight into the pipeline: parse, normalise, price, durable commit."""
    payloads = make_payloads(requests, seed=2)
    store = SQLiteStore(workdir / "pipeline.db", synchronous="full")
    pipeline = Pipeline(
        store,
        Normalizer(),
        PricingStage(Pricer()),
        CollectorMetrics(),
        queue_max_bytes=1 << 34,
        batch_max_bytes=4 * 1024 * 1024,
    )

    async def run() -> float:
        await pipeline.start()
        # Warm the pricer and the value cache with one request, as a running collector would be.
        await pipeline.export(make_payloads(1, seed=9)[0], "bench")
        started = time.perf_counter()
        await asyncio.gather(*(pipeline.export(p, "bench") for p in payloads))
        elapsed = time.perf_counter() - started
        await pipeline.shutdown()
        return elapsed

    cpu0 = _cpu_seconds()
    elapsed = asyncio.run(run())
    cpu = _cpu_seconds() - cpu0
    spans = requests * SPANS_PER_REQUEST
    stored = store.stats().rows_inserted - SPANS_PER_REQUEST  # minus the warm-up request
    store.close()
    return {
        "spans": spans,
        "stored": stored,
        "seconds": round(elapsed, 3),
        "spans_per_s": round(spans / elapsed),
        "cpu_seconds": round(cpu, 3),
    }


def _client(endpoint: str, requests: int, concurrency: int, ready: Any, go: Any, results: Any) -> None:
    import grpc

    payloads = make_payloads(requests, seed=3)
    channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
    export = channel.unary_unary(EXPORT_PATH)  # pre-encoded bytes, as an exporter sends them
    grpc.channel_ready_future(channel).result(timeout=30)
    ready.set()
    go.wait()
    errors: list[str] = []

    def worker(share: list[bytes]) -> None:
        for payload in share:
            for _attempt in range(20):
                try:
                    export(payload, timeout=60)
                    break
                except grpc.RpcError as exc:  # retry on overload, like an exporter
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        errors.append(str(exc.code()))
                        break
                    time.sleep(0.2)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(payloads[i::concurrency],)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    channel.close()
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results.put({"seconds": elapsed, "errors": errors, "client_peak_rss_mib": round(rss_kib / 1024, 1)})


def bench_grpc(requests: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """A client process sends export requests over real gRPC to a Collector in this process."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()

    async def run() -> dict[str, Any]:
        config = CollectorConfig(
            db=workdir / "grpc.db", otlp_grpc="127.0.0.1:0", otlp_http="off", api="off", sqlite_synchronous="full"
        )
        collector = Collector(config)
        await collector.start()
        await collector.pipeline.export(make_payloads(1, seed=9)[0], "warm-up")  # type: ignore[union-attr]
        client = ctx.Process(
            target=_client, args=(collector.otlp_grpc_endpoint, requests, concurrency, ready, go, results)
        )
        client.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ready.wait)
        cpu0 = _cpu_seconds()
        go.set()
        outcome = await loop.run_in_executor(None, results.get)
        cpu = _cpu_seconds() - cpu0
        await loop.run_in_executor(None, client.join)
        stored = collector.store.stats().rows_inserted - SPANS_PER_REQUEST  # type: ignore[union-attr]
        overloaded = collector.pipeline.stats().overloaded  # type: ignore[union-attr]
        commits = collector.pipeline.stats().batches - 1  # type: ignore[union-attr]
        await collector.shutdown()
        spans = requests * SPANS_PER_REQUEST
        return {
            "spans": spans,
            "stored": stored,
            "seconds": round(outcome["seconds"], 3),
            "spans_per_s": round(spans / outcome["seconds"]),
            "collector_cpu_seconds": round(cpu, 3),
            "spans_per_collector_cpu_s": round(spans / cpu) if cpu else None,
            "requests_in_flight": concurrency,
            "commits": commits,
            "overloaded_answers": overloaded,
            "client_errors": outcome["errors"],
            "client_peak_rss_mib": outcome["client_peak_rss_mib"],
        }

    return asyncio.run(run())


def synthesize_month(db: Path, month: str, spans_total: int, rng: random.Random) -> dict[str, int]:
    """Write one month of rollups for ``spans_total`` spans straight into ``db``, at realistic cardinality.

    Every developer works every weekday in 1-3 of their team's repos, with 3 of the 5 models and every
    feature: about 20 daily rollup rows per developer-day, so ~220k rows for the month (the daily rollup
    is what a month of real traffic produces); the monthly rollup is derived from it in SQL.
    """
    days = weekdays(month)
    team_repos = {t: [f"repo-{r:02d}" for r in range(REPOS) if r % TEAMS == t] for t in range(TEAMS)}
    keys: list[tuple[str, ...]] = []
    for dev in range(DEVELOPERS):
        developer, team, cost_center = synthetic_developer(dev)
        repos = team_repos[dev % TEAMS]
        my_repos = rng.sample(repos, k=min(3, len(repos)))
        my_models = rng.sample(MODELS, k=3)
        for day in days:
            todays = my_repos[: rng.randint(1, len(my_repos))]
            for repo in todays:
                for model, provider in my_models:
                    for feature in FEATURES:
                        if rng.random() < 0.6:
                            keys.append((day.isoformat(), developer, team, cost_center, repo, model, feature, provider))
    per_row = spans_total // len(keys)
    extra = spans_total - per_row * len(keys)
    rows = []
    for i, key in enumerate(keys):
        requests = per_row + (1 if i < extra else 0)
        input_tokens = requests * rng.randrange(5_000, 40_000)
        output_tokens = requests * rng.randrange(200, 2_000)
        cache_read = input_tokens // 2
        measures = {
            "requests": requests,
            "errors": requests // 50,
            "unpriced_requests": 0,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": input_tokens // 20,
            "reasoning_tokens": 0,
            "cost_nanos": input_tokens * 1500 + output_tokens * 12_000,
            "unpriced_input_tokens": 0,
            "unpriced_output_tokens": 0,
        }
        rows.append((*key, *(measures[m] for m in ROLLUP_MEASURES)))
    with bulk_write(db) as conn:
        placeholders = ", ".join("?" * (8 + len(ROLLUP_MEASURES)))
        conn.executemany(f"INSERT INTO rollup_daily VALUES ({placeholders})", rows)
        sums = ", ".join(f"SUM({m})" for m in ROLLUP_MEASURES)
        conn.execute(
            f"INSERT INTO rollup_monthly SELECT substr(day, 1, 7), developer, team, cost_center, repo, {sums} "
            "FROM rollup_daily GROUP BY 1, 2, 3, 4, 5"
        )
        # The team-day rollup holds the same sums regrouped, as the store derives it per batch.
        keys = ", ".join(team_daily_rollup.KEY)
        conn.execute(
            f"INSERT INTO {team_daily_rollup.TABLE} ({keys}, {', '.join(ROLLUP_MEASURES)}) "
            f"SELECT {keys}, {sums} FROM rollup_daily GROUP BY {keys}"
        )
        daily = conn.execute("SELECT count(*) FROM rollup_daily").fetchone()[0]
        monthly = conn.execute("SELECT count(*) FROM rollup_monthly").fetchone()[0]
        spans = conn.execute("SELECT sum(requests) FROM rollup_daily").fetchone()[0]
    return {"spans": spans, "daily_rollup_rows": daily, "monthly_rollup_rows": monthly}


def bench_queries(spans_total: int, repeats: int, workdir: Path) -> dict[str, Any]:
    """Chargeback (and other) query latency over one synthesised month of ``spans_total`` spans."""
    db = workdir / "query.db"
    rng = random.Random(4)
    started = time.perf_counter()
    shape = synthesize_month(db, "2026-11", spans_total, rng)
    shape["synthesis_seconds"] = round(time.perf_counter() - started, 2)
    store = SQLiteStore(db, readonly=True)
    first, last = parse_month("month", "2026-11")
    november = SpendFilter(start=first, end=last)
    rows = store.chargeback(november)
    result: dict[str, Any] = {
        **shape,
        "chargeback_rows": len(rows),
        "chargeback_store_median_ms": median_ms(lambda: store.chargeback(november), repeats),
        "spend_by_team_median_ms": median_ms(lambda: store.spend(november, ("team",)), repeats),
        "spend_by_model_median_ms (daily rollup)": median_ms(lambda: store.spend(november, ("model",)), repeats),
        "top_developers_week_median_ms (daily rollup)": median_ms(
            lambda: store.top(SpendFilter(start=first, end=first.replace(day=7)), "developer", 10), repeats
        ),
    }
    store.close()

    async def via_api() -> float:
        config = CollectorConfig(db=db, otlp_grpc="off", otlp_http="off", api="127.0.0.1:0")
        collector = Collector(config)
        await collector.start()
        url = f"{collector.api_url}/api/chargeback.csv?month=2026-11"
        loop = asyncio.get_running_loop()

        def fetch() -> None:
            with urllib.request.urlopen(url) as response:
                response.read()

        median = await loop.run_in_executor(None, median_ms, fetch, repeats)
        await collector.shutdown()
        return median

    result["chargeback_csv_http_median_ms"] = asyncio.run(via_api())
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volumes (~20 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary databases")
    args = parser.parse_args(argv)
    quick = args.quick
    workdir = Path(tempfile.mkdtemp(prefix="spendgate-bench-"))
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "quick": quick,
        "spans_per_request": SPANS_PER_REQUEST,
    }
    # The gRPC run comes first so its RSS is the collector's alone (the pipeline run holds its
    # pre-encoded requests in this process).
    results["ingest_grpc"] = bench_grpc(40 if quick else 300, 16, workdir)
    results["ingest_grpc"]["rss_after_mib"] = _rss_mib()
    results["ingest_pipeline"] = bench_pipeline(40 if quick else 200, workdir)
    gc.collect()
    results["ingest_pipeline"]["rss_after_mib"] = _rss_mib()
    results["query"] = bench_queries(500_000 if quick else 5_000_000, 10 if quick else 25, workdir)
    results["query"]["rss_after_mib"] = _rss_mib()
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if not args.keep:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
