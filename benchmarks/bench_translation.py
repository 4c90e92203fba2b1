"""Translation benchmark: what translating a streamed call costs, against passthrough, in the same run.

The setup is ``bench_proxy.py``'s (and reuses its process helpers): the simulated provider, an
OTLP/gRPC sink and ``spendgate proxy`` (spans on), the proxy pinned to one CPU and everything else
on the other. The proxy has two providers on the same simulator: an OpenAI-compatible one and an
Anthropic one (``type: anthropic``). Each round runs four phases in rotating order, each after
its own warm-up, with the same Chat Completions request (20 content chunks, include_usage):

- ``direct-openai``: the simulator's ``/v1/chat/completions``;
- ``direct-anthropic``: the simulator's ``/v1/messages`` with the same conversation (the
  simulator's own cost for that route: the baseline of the translated call);
- ``passthrough``: through the proxy to the OpenAI-compatible provider (bytes untouched);
- ``translation``: through the proxy to the Anthropic provider (OpenAI in, Anthropic out, the
  stream translated back event by event).

Added TTFB is paired per round: ``passthrough - direct-openai`` and ``translation -
direct-anthropic``; translation overhead is their difference (target: p50 ≤ 1 ms). Proxy CPU per
call is process time over each proxied phase, its spans exported inside the window.

Run alone with ``python benchmarks/bench_translation.py [--quick]``; ``benchmarks/run.py`` calls ``main``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from _load import PhaseResult, Target, run_phase
from bench_proxy import (
    _Child,
    _code_state,
    _cpu_s,
    _free_port,
    _http_ok,
    _port_open,
    _spawn,
    _spendgate,
    _stop,
    _wait_exported,
    _wait_ready,
)

HERE = Path(__file__).resolve().parent
CHUNKS = 20
CONCURRENCY = (1, 16, 64)
FULL_REQUESTS = {1: 3000, 16: 6000, 64: 6000}
FULL_ROUNDS = 3
QUICK_REQUESTS = {1: 100, 16: 160, 64: 256}
QUICK_ROUNDS = 2
BAR_ADDED_TTFB_P50_MS = 1.0
"""Issue 5: translation may add at most 1 ms to TTFB p50 over passthrough."""

OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4.1-mini", "claude-haiku-4-5"
MESSAGES = [
    {"role": "system", "content": "You are a concise coding assistant."},
    {"role": "user", "content": "Why would a streaming endpoint seem to buffer behind a reverse proxy?"},
]


def _chat_body(model: str) -> bytes:
    body = {"model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(body).encode()


ANTHROPIC_BODY = json.dumps(
    {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 8192,  # what the proxy sends when the client gave none
        "system": MESSAGES[0]["content"],
        "messages": MESSAGES[1:],
        "stream": True,
    }
).encode()


def _config(sim_port: int, keys: Path) -> str:
    return (
        f"keys_file: {keys}\n"
        "providers:\n"
        f"  sim: {{base_url: 'http://127.0.0.1:{sim_port}/v1'}}\n"
        f"  claude: {{type: anthropic, base_url: 'http://127.0.0.1:{sim_port}'}}\n"
        "models:\n"
        f"  - {{name: {OPENAI_MODEL}, provider: sim}}\n"
        f"  - {{name: {ANTHROPIC_MODEL}, provider: claude}}\n"
    )


def _progress(msg: str) -> None:
    print(f"  [translation] {msg}", file=sys.stderr, flush=True)


async def _measure(
    sim_port: int, proxy_port: int, key: str, proxy: psutil.Process, children: list[_Child], quick: bool
) -> dict[str, Any]:
    requests = QUICK_REQUESTS if quick else FULL_REQUESTS
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    pool = max(CONCURRENCY)
    direct_h = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    proxy_h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sim, px = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"
    targets = [
        Target("direct-openai", sim + "/v1/chat/completions", _chat_body(OPENAI_MODEL), direct_h, max_connections=pool),
        Target(
            "direct-anthropic",
            sim + "/v1/messages",
            ANTHROPIC_BODY,
            direct_h,
            max_connections=pool,
            done=b'data: {"type":"message_stop"}\n\n',
        ),
        Target("passthrough", px + "/v1/chat/completions", _chat_body(OPENAI_MODEL), proxy_h, max_connections=pool),
        Target("translation", px + "/v1/chat/completions", _chat_body(ANTHROPIC_MODEL), proxy_h, max_connections=pool),
    ]
    proxied = {"passthrough", "translation"}
    healthz = px + "/healthz"
    sent = 0
    levels: dict[str, Any] = {}
    async with targets[0], targets[1], targets[2], targets[3], aiohttp.ClientSession() as control:
        await asyncio.sleep(0.5)
        for c in CONCURRENCY:
            per_round = max(1, requests[c] // rounds)
            warm = max(10, c) if quick else max(100, 4 * c)
            rows = []
            for r in range(rounds):
                order = targets[r % 4 :] + targets[: r % 4]  # rotate: no phase always runs first
                phases: dict[str, PhaseResult] = {}
                cpu: dict[str, float] = {}
                for target in order:
                    for child in children:
                        child.check_alive()
                    expect_usage = target.name != "direct-anthropic"
                    await run_phase(target, c, warm, expect_usage=expect_usage)
                    if target.name in proxied:
                        sent += warm
                        await _wait_exported(control, healthz, sent)
                        before = _cpu_s(proxy)
                    gc.collect()
                    phase = await run_phase(target, c, per_round, expect_usage=expect_usage)
                    if target.name in proxied:
                        sent += per_round
                        await _wait_exported(control, healthz, sent)
                        cpu[target.name] = (_cpu_s(proxy) - before) * 1000 / per_round
                    phases[target.name] = phase
                    _progress(f"c={c} round {r + 1} {target.name}: {phase.rps:.0f} req/s, errors {phase.errors}")
                rows.append({"phases": {k: v.summary() for k, v in phases.items()}, "cpu_ms_per_call": cpu})
            levels[str(c)] = _level(c, per_round, rows)
    return {"levels": levels}


def _level(c: int, per_round: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    med = statistics.median

    def added(name: str, base: str, metric: str) -> float:
        return med(r["phases"][name][metric] - r["phases"][base][metric] for r in rows)

    out: dict[str, Any] = {"concurrency": c, "requests_per_phase": per_round, "rounds": rows}
    for metric in ("ttfb_p50_ms", "ttfb_p99_ms", "total_p50_ms"):
        pas = added("passthrough", "direct-openai", metric)
        tra = added("translation", "direct-anthropic", metric)
        out[metric] = {
            name: med(r["phases"][name][metric] for r in rows)
            for name in ("direct-openai", "direct-anthropic", "passthrough", "translation")
        }
        out[f"added_{metric}"] = {"passthrough": pas, "translation": tra, "translation_over_passthrough": tra - pas}
    out["cpu_ms_per_call"] = {
        name: med(r["cpu_ms_per_call"][name] for r in rows) for name in ("passthrough", "translation")
    }
    out["errors"] = sum(p["errors"] for r in rows for p in r["phases"].values())
    return out


def _report(result: dict[str, Any]) -> str:
    lines = [
        "Translation benchmark: streamed Chat Completions (20 chunks, include_usage), spans on; "
        "passthrough = OpenAI in → OpenAI out, translation = OpenAI in → Anthropic out",
        f"  {result['config']['pinning']}; {result['config']['rounds']} round(s) per concurrency, medians of "
        "per-round differences; added = proxied - direct to the same simulator route",
        "",
        "| c | added TTFB p50 pass / transl | Δ p50 | added TTFB p99 pass / transl | Δ p99 "
        "| proxy CPU/call pass / transl | Δ CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, lv in result["levels"].items():
        p50, p99, cpu = lv["added_ttfb_p50_ms"], lv["added_ttfb_p99_ms"], lv["cpu_ms_per_call"]
        d50, d99 = p50["translation_over_passthrough"], p99["translation_over_passthrough"]
        dcpu = cpu["translation"] - cpu["passthrough"]
        lines.append(
            f"| {c} | {p50['passthrough']:.3f} / {p50['translation']:.3f} ms | {d50:+.3f}"
            f" | {p99['passthrough']:.3f} / {p99['translation']:.3f} ms | {d99:+.3f}"
            f" | {cpu['passthrough']:.3f} / {cpu['translation']:.3f} ms | {dcpu:+.3f} |"
        )
    for bar in result["bars"]:
        lines.append(
            f"  {'PASS' if bar['pass'] else 'FAIL'}: {bar['name']} = {bar['value']:.3f} ms (limit {bar['limit']} ms)"
        )
    if any(lv["errors"] for lv in result["levels"].values()):
        lines.append("  ERRORS: " + ", ".join(f"c={c}: {lv['errors']}" for c, lv in result["levels"].items()))
    return "\n".join(lines)


def main(quick: bool = False) -> dict[str, Any]:
    """Run the translation benchmark; returns its results with the printable text under ``report``."""
    import uvloop

    from spendgate_proxy.keys import create_key

    started = time.monotonic()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        proxy_cpus: set[int] | None = {cpus[0]}
        rest_cpus: set[int] | None = {cpus[1]}
        pinning = f"proxy on CPU {cpus[0]}; load generator, simulator and sink on CPU {cpus[1]}"
    else:
        proxy_cpus = rest_cpus = None
        pinning = "NOT pinned: one CPU"
    own = os.sched_getaffinity(0)
    children: list[_Child] = []
    tmp = tempfile.TemporaryDirectory(prefix="spendgate-bench-translation-")
    logdir = Path(tmp.name)
    # The proxy runs without a collector here: standalone (the variable works on older trees too).
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "PYTHONUNBUFFERED": "1",
        "SPENDGATE_CONTROL_ENDPOINT": "off",
    }
    try:
        code = _code_state()
        keys = logdir / "keys.yaml"
        key, _ = create_key(keys, user="bench@acme.com", team="bench")
        sink_port, sim_port, proxy_port = _free_port(), _free_port(), _free_port()
        config = logdir / "spendgate.yaml"
        config.write_text(_config(sim_port, keys))
        sink = _spawn(
            "otlp-sink",
            [sys.executable, str(HERE / "_otlp_sink.py"), "--port", str(sink_port)],
            rest_cpus,
            logdir,
            env,
            pipe=True,
        )
        children.append(sink)
        sim = _spawn(
            "simulated-provider",
            _spendgate(["simulate-provider", "--port", str(sim_port), "--chunks", str(CHUNKS)]),
            rest_cpus,
            logdir,
            env,
        )
        children.append(sim)
        proxy = _spawn(
            "proxy",
            _spendgate(
                [
                    "proxy",
                    "--config",
                    str(config),
                    "--listen",
                    f"127.0.0.1:{proxy_port}",
                    "--otlp-endpoint",
                    f"http://127.0.0.1:{sink_port}",
                ]
            ),
            proxy_cpus,
            logdir,
            env,
        )
        children.append(proxy)
        if rest_cpus is not None:
            os.sched_setaffinity(0, rest_cpus)
        _wait_ready(sink, lambda: _port_open(sink_port))
        _wait_ready(sim, lambda: _http_ok(f"http://127.0.0.1:{sim_port}/healthz"))
        _wait_ready(proxy, lambda: _http_ok(f"http://127.0.0.1:{proxy_port}/healthz"))
        _progress(pinning)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            measured = runner.run(_measure(sim_port, proxy_port, key, psutil.Process(proxy.proc.pid), children, quick))
    finally:
        for child in reversed(children):
            _stop(child)
        os.sched_setaffinity(0, own)
        tmp.cleanup()
    c1 = measured["levels"]["1"]
    bars = [
        {
            "name": "translation TTFB p50 over passthrough at c=1",
            "value": c1["added_ttfb_p50_ms"]["translation_over_passthrough"],
            "limit": BAR_ADDED_TTFB_P50_MS,
        }
    ]
    for bar in bars:
        bar["pass"] = bar["value"] <= bar["limit"]
    result: dict[str, Any] = {
        "benchmark": "translation",
        "quick": quick,
        "config": {
            "pinning": pinning,
            "rounds": QUICK_ROUNDS if quick else FULL_ROUNDS,
            "requests": QUICK_REQUESTS if quick else FULL_REQUESTS,
            "chunks": CHUNKS,
            "code": code,
        },
        **measured,
        "bars": bars,
        "duration_s": round(time.monotonic() - started, 1),
    }
    result["report"] = _report(result)
    print(result["report"])
    return result


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
