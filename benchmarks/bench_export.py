"""Export benchmark: what forwarding enriched spans to another OTLP backend costs the collector.

    python benchmarks/bench_export.py            # ~1-2 minutes
    python benchmarks/bench_export.py --quick    # ~20 seconds, smaller volumes

(a) Rewrite cost, in-process: one 512-span request of realistic spendgate LLM spans (~35
    attributes each) turned into the forwarded request (cost and attribution added), per filter
    setting, against the generic route (decode with the official ``opentelemetry-proto`` classes,
    add the attributes, encode again).
(b) Ingest with forwarding, end to end: a client process sends pre-encoded requests over real gRPC
    to a ``Collector`` in this process (as ``bench_collector.py`` does), in three set-ups:
    - ``none``: no exporter (the baseline of the same run);
    - ``up``: one gRPC exporter to an OTLP sink in its own process (``_otlp_sink.py``);
    - ``down``: the same exporter with nothing listening (every attempt refused, the queue grows).
    Reported per set-up: ingest spans/s (client's view: all requests acknowledged), the collector's
    CPU per span, and for ``up`` how long after the last acknowledgement the sink had every span.

``main()`` returns the numbers as a dict and prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_collector import SPANS_PER_REQUEST, _client, _cpu_seconds, make_payloads

from spendgate_collector.app import Collector
from spendgate_collector.config import CollectorConfig
from spendgate_collector.exporters.enrich import Enricher, SpanFilter, StoredRequest
from spendgate_collector.ingest.normalize import Normalizer
from spendgate_collector.ingest.otlp import parse_export_request
from spendgate_collector.pricing import Pricer
from spendgate_collector.pricing.stage import PricingStage

HERE = Path(__file__).resolve().parent


def bench_rewrite(rounds: int) -> dict[str, Any]:
    """µs per span to turn a stored request into the forwarded one (median of ``rounds``)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    payload = make_payloads(1, seed=5)[0]
    batch = Normalizer().normalize(parse_export_request(payload))
    PricingStage(Pricer()).price(batch.records)
    request = StoredRequest(payload, SPANS_PER_REQUEST, batch.records)

    def timed(fn: Any) -> float:
        fn()  # warm caches
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) / SPANS_PER_REQUEST * 1e6)
        return round(statistics.median(samples), 2)

    out: dict[str, Any] = {}
    for label, span_filter in (
        ("enrich", SpanFilter()),
        ("enrich_llm_only", SpanFilter(llm_only=True)),
        ("enrich_drop_content", SpanFilter(drop_content=True)),
    ):
        enricher = Enricher(span_filter)
        out[f"{label}_us_per_span"] = timed(lambda e=enricher: e.transform(request))
    by_id = {bytes.fromhex(r.trace_id + r.span_id): r for r in batch.records}

    def generic() -> bytes:
        """The same rewrite through the official classes: read the keys, add what is missing."""
        message = ExportTraceServiceRequest.FromString(payload)
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    r = by_id[span.trace_id + span.span_id]
                    present = {kv.key for kv in span.attributes}
                    for key, value in (
                        ("llm.cost.prompt", r.cost_input_usd),
                        ("llm.cost.completion", r.cost_output_usd),
                        ("llm.cost.total", r.cost_usd),
                    ):
                        span.attributes.append(KeyValue(key=key)).value.double_value = value or 0.0
                    for key, text in (
                        ("spendgate.cost.source", r.cost_source),
                        ("spendgate.price.version", r.price_version),
                        ("user.id", r.developer),
                        ("spendgate.team", r.team),
                        ("spendgate.cost_center", r.cost_center),
                        ("vcs.repository.name", r.repo),
                    ):
                        if key not in present:
                            span.attributes.append(KeyValue(key=key)).value.string_value = text or ""
        return message.SerializeToString()

    out["generic_opentelemetry_proto_us_per_span"] = timed(generic)
    out["unchanged_passthrough_us_per_span"] = 0.0  # a request without LLM spans is forwarded as received
    return out


def _pin(pid: int, cpu: int) -> None:
    """Pin a process (all its threads) to one CPU, when the machine has two or more."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        import psutil

        for thread in psutil.Process(pid).threads():
            os.sched_setaffinity(thread.id, {cpu})


def _start_sink() -> tuple[subprocess.Popen[str], int]:
    sink = subprocess.Popen(
        [sys.executable, str(HERE / "_otlp_sink.py"), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None
    port = json.loads(sink.stdout.readline())["port"]
    return sink, port


def _process_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def bench_ingest(mode: str, requests: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """Ingest over real gRPC with no exporter, an exporter to a live sink, or one to a dead port."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    sink, port = _start_sink() if mode != "none" else (None, 0)
    if sink is not None:
        _pin(sink.pid, 1)
    if mode == "down" and sink is not None:  # learn a free port, then leave it closed
        sink.terminate()
        sink.wait()
        sink = None
    exporters = [] if mode == "none" else [{"name": "sink", "endpoint": f"http://127.0.0.1:{port}"}]

    async def run() -> dict[str, Any]:
        config = CollectorConfig(
            db=workdir / f"{mode}.db",
            otlp_grpc="127.0.0.1:0",
            otlp_http="off",
            api="off",
            control="off",
            sqlite_synchronous="full",
            exporters=exporters,
        )
        collector = Collector(config)
        await collector.start()
        _pin(os.getpid(), 0)  # every thread of the collector, the gRPC server's included
        exporters_pid = collector.exporters.pid if collector.exporters is not None else None
        if exporters_pid is not None:
            _pin(exporters_pid, 1)
        await collector.pipeline.export(make_payloads(1, seed=9)[0], "warm-up")  # type: ignore[union-attr]
        if collector.exporters is not None and mode == "up":
            await asyncio.to_thread(collector.exporters.wait_idle, 30)
        client = ctx.Process(
            target=_client, args=(collector.otlp_grpc_endpoint, requests, concurrency, ready, go, results)
        )
        client.start()
        assert client.pid is not None
        _pin(client.pid, 1)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, ready.wait)
        _pin(client.pid, 1)  # and the threads it started meanwhile
        cpu0 = _cpu_seconds()
        child_cpu0 = _process_cpu(exporters_pid)
        go.set()
        outcome = await loop.run_in_executor(None, results.get)
        acked = time.perf_counter()
        cpu_ingest = _cpu_seconds() - cpu0
        await loop.run_in_executor(None, client.join)
        forwarded_after_s = None
        stats: dict[str, Any] = {}
        if collector.exporters is not None:
            if mode == "up":
                await asyncio.to_thread(collector.exporters.wait_idle, 120)
                forwarded_after_s = round(time.perf_counter() - acked, 3)
            else:
                await asyncio.sleep(1.0)  # let the enqueuer catch up before reading the queue
            s = collector.exporters.stats()["sink"]
            stats = {
                "sent_spans": s.sent_spans,
                "queue_spans": s.queue_spans,
                "queue_mib": round(s.queue_bytes / 2**20, 1),
                "dropped": {k: v for k, v in s.dropped_spans.items() if v},
            }
        cpu_total = _cpu_seconds() - cpu0
        child_cpu = _process_cpu(exporters_pid) - child_cpu0
        stored = collector.store.stats().rows_inserted - SPANS_PER_REQUEST  # type: ignore[union-attr]
        await collector.shutdown()
        spans = requests * SPANS_PER_REQUEST
        return {
            "spans": spans,
            "stored": stored,
            "ingest_seconds": round(outcome["seconds"], 3),
            "ingest_spans_per_s": round(spans / outcome["seconds"]),
            "collector_cpu_us_per_span_during_ingest": round(cpu_ingest / spans * 1e6, 1),
            "collector_cpu_us_per_span_total": round(cpu_total / spans * 1e6, 1),
            "all_forwarded_after_last_ack_s": forwarded_after_s,
            "exporters_process_cpu_us_per_span": round(child_cpu / spans * 1e6, 1) if exporters_pid else None,
            "exporter": stats,
            "client_errors": outcome["errors"],
        }

    try:
        return asyncio.run(run())
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()


def main(quick: bool = False) -> dict[str, Any]:
    requests = 20 if quick else 200
    rounds = 5 if quick else 30
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    result: dict[str, Any] = {"rewrite": bench_rewrite(rounds)}
    try:
        for mode in ("none", "up", "down"):
            with tempfile.TemporaryDirectory(prefix="spendgate-bench-export-") as tmp:
                result[f"ingest_{mode}"] = bench_ingest(mode, requests, 16, Path(tmp))
    finally:
        if affinity is not None:
            for thread in __import__("psutil").Process().threads():
                os.sched_setaffinity(thread.id, affinity)
    base = result["ingest_none"]["ingest_spans_per_s"]
    for mode in ("up", "down"):
        result[f"ingest_{mode}"]["ratio_to_none"] = round(result[f"ingest_{mode}"]["ingest_spans_per_s"] / base, 2)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
