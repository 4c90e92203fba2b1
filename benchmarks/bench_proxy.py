"""Proxy benchmark: what the proxy adds to a streamed call, measured against a direct call in the same run.

Starts three real processes on 127.0.0.1: the simulated provider (20 content chunks per answer,
usage on), an OTLP/gRPC sink that counts spans, and ``spendgate proxy`` in front of the provider
exporting spans to the sink (spans on, as in production). The proxy is pinned to one CPU; this
process (the load generator), the provider and the sink share the other, so the proxy's CPU is
its own and the client side never steals from it.

At each concurrency (1, 16, 64) it runs rounds of one direct phase and one proxied phase, in
alternating order, each after its own warm-up, and reports medians over the least disturbed
rounds (the machine is shared: other processes' CPU share is estimated per phase, and extra
rounds run when too few were quiet): TTFB and total latency (p50, p99) of each, what the proxy
adds (per-round proxied minus direct, so both sides of a difference saw the same machine),
throughput ratio, proxy CPU per request (process user+system time, span export thread included,
with every span of the phase exported inside the window) and peak RSS (sampled every 50 ms, plus
the kernel's VmHWM). It checks that every proxied call was exported as a span. Bars are printed
as PASS/FAIL; they never fail the run.

Run alone with ``python benchmarks/bench_proxy.py [--quick]``; ``benchmarks/run.py`` calls ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from _load import PhaseResult, Target, run_phase

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4.1-mini"
CHUNKS = 20
CONCURRENCY = (1, 16, 64)

# Requests per target and concurrency, split evenly over the rounds. Full mode is sized for a
# p99 over 2,000-3,000 calls per phase, five rounds for medians that shrug off one noisy round,
# and the whole benchmark under ~4 minutes on the 2-core machine (about 1.5 measured there).
# Quick mode only proves the pipeline works (a few hundred calls; its numbers mean little).
FULL_REQUESTS = {1: 10000, 16: 15000, 64: 15000}
FULL_ROUNDS = 5
QUICK_REQUESTS = {1: 50, 16: 80, 64: 128}
QUICK_ROUNDS = 1


def _warmup(concurrency: int, quick: bool) -> int:
    """Calls before each measured phase: every pooled connection opened and used a few times."""
    return max(10, concurrency) if quick else max(100, 4 * concurrency)


# A round counts as quiet when other processes took at most this share of either CPU during its
# measured phases. Full mode runs up to FULL_EXTRA_ROUNDS more rounds per concurrency while fewer
# than the planned number were quiet (but starts none after EXTRA_ROUNDS_UNTIL_S, to stay within
# ~4 minutes), then keeps the least disturbed ones.
QUIET_MAX_OTHER_PCT = 10.0
FULL_EXTRA_ROUNDS = 3
EXTRA_ROUNDS_UNTIL_S = 170.0

RSS_SAMPLE_S = 0.05
REFERENCE_LOOP = 3_000_000
IDLE_MEASURE_S = 3.0
DRAIN_TIMEOUT_S = 20.0

# Bars for this machine (issue 2). Printed with PASS/FAIL; they never fail the run.
BAR_ADDED_TTFB_P50_MS = 0.5
BAR_ADDED_TTFB_P99_MS = 2.0
BAR_CPU_MS_PER_REQUEST = 0.6
BAR_RSS_MB = 80.0

REQUEST_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise coding assistant."},
            {"role": "user", "content": "Why would a streaming endpoint seem to buffer behind a reverse proxy?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()


# -- child processes ---------------------------------------------------------------------------


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None

    def log_tail(self, lines: int = 20) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode} during the benchmark:\n{self.log_tail()}"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(
    name: str, argv: list[str], cpus: set[int] | None, logdir: Path, env: dict[str, str], *, pipe: bool = False
) -> _Child:
    """Start a child on ``cpus``: it inherits this process's affinity at fork, so every thread it
    ever starts (span export, gRPC, executors) stays there without pinning threads one by one."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE if pipe else out, stderr=out, stdin=subprocess.DEVNULL, env=env
        )
    return _Child(name, proc, log)


CLI_MODULE = "spendgate_app.cli"
"""The module of the ``spendgate`` command (``spendgate.cli`` in trees from before one package per program)."""


def _spendgate(args: list[str], cli_module: str = CLI_MODULE) -> list[str]:
    return [sys.executable, "-c", f"from {cli_module} import main; main()", *args]


def proxy_command(port: int, keys: Path, sim_port: int, sink_port: int, cli_module: str = CLI_MODULE) -> list[str]:
    """``spendgate proxy`` in front of the simulator on ``sim_port``, exporting spans to the sink."""
    return _spendgate(
        [
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--keys-file",
            str(keys),
            "--upstream",
            f"http://127.0.0.1:{sim_port}/v1",
            "--model",
            MODEL,
            "--otlp-endpoint",
            f"http://127.0.0.1:{sink_port}",
        ],
        cli_module,
    )


def _wait_ready(child: _Child, check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        child.check_alive()
        with contextlib.suppress(OSError, urllib.error.URLError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready after {timeout_s:.0f} s:\n{child.log_tail()}")
        time.sleep(0.05)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:
        return resp.status == 200


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def _stop(child: _Child, timeout_s: float = 10.0) -> bytes:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns what a piped stdout still held."""
    proc = child.proc
    if proc.returncode is not None and (proc.stdout is None or proc.stdout.closed):
        return b""  # already stopped and read
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or b""


def _thread_cpus(pid: int) -> list[list[int]]:
    """The distinct CPU sets of every thread of ``pid`` (proof of the pinning, for the report)."""
    seen: set[tuple[int, ...]] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            seen.add(tuple(sorted(os.sched_getaffinity(int(tid)))))
    return [list(s) for s in sorted(seen)]


def _vm_hwm_mb(pid: int) -> float | None:
    """The kernel's peak resident set for ``pid`` since it started (``VmHWM``), in MB."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _reference_loop_ms(cpus: set[int] | None) -> float:
    """Best of three timings of a fixed pure-Python loop on ``cpus``: how fast this (shared,
    virtual) machine runs Python right now, to compare runs made at different times."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(REFERENCE_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


# -- measurement -------------------------------------------------------------------------------


class _RssSampler:
    """Samples a process's RSS every ``RSS_SAMPLE_S`` on the event loop; keeps the peak."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
                self.samples += 1
            await asyncio.sleep(RSS_SAMPLE_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _OtherLoad:
    """CPU time used on each pinned CPU by processes outside the benchmark, to flag disturbed phases.

    Busy time per CPU comes from ``/proc/stat`` (tick-sampled), the benchmark's own from its
    processes; the difference is approximate (it reads a few percent low under load) but a large
    share means another tenant of this shared machine competed for that CPU during the phase.
    In a direct phase only the load generator's CPU counts: the proxy's sits idle then.
    """

    def __init__(self, owners: dict[int, list[psutil.Process]], proxy_cpu: int) -> None:
        self.owners = owners
        self.proxy_cpu = str(proxy_cpu)
        self._tick = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> dict[int, float]:
        busy: dict[int, float] = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.owners:
                    user, nice, system = (int(v) for v in values[:3])
                    busy[int(name[3:])] = (user + nice + system) / self._tick
        for cpu, procs in self.owners.items():
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    busy[cpu] -= _cpu_s(proc)
        return busy

    @staticmethod
    def share(before: dict[int, float], after: dict[int, float], wall_s: float) -> dict[str, float]:
        """Percent of ``wall_s`` other processes ran on each CPU (clamped to 0-100: the estimate is rough)."""
        return {
            str(cpu): min(100.0, max(0.0, 100 * (after[cpu] - before[cpu]) / wall_s)) for cpu in before if wall_s > 0
        }


async def _span_stats(session: aiohttp.ClientSession, url: str) -> dict[str, int] | None:
    async with session.get(url) as resp:
        body = await resp.json(content_type=None)
    return body.get("spans")


async def _wait_exported(session: aiohttp.ClientSession, url: str, expected: int) -> dict[str, int] | None:
    """Wait until the proxy reports ``expected`` spans exported (or dropped), so the CPU window
    closes only after the export work of its own calls (batches leave at most every second)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        spans = await _span_stats(session, url)
        if spans is None or spans["exported"] + spans["dropped"] >= expected or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


def _progress(msg: str) -> None:
    print(f"  [proxy] {msg}", file=sys.stderr, flush=True)


async def _measure(
    *,
    sim_port: int,
    proxy_port: int,
    key: str,
    proxy: psutil.Process,
    simulator: psutil.Process,
    children: list[_Child],
    other: _OtherLoad | None,
    requests: dict[int, int],
    rounds: int,
    extra_rounds: int,
    extra_until: float,
    quick: bool,
) -> dict[str, Any]:
    headers_direct = {"Authorization": "Bearer sk-bench-direct", "Content-Type": "application/json"}
    headers_proxy = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pool = max(CONCURRENCY)
    direct = Target(
        "direct", f"http://127.0.0.1:{sim_port}/v1/chat/completions", REQUEST_BODY, headers_direct, max_connections=pool
    )
    proxied = Target(
        "proxied",
        f"http://127.0.0.1:{proxy_port}/v1/chat/completions",
        REQUEST_BODY,
        headers_proxy,
        max_connections=pool,
    )
    healthz = f"http://127.0.0.1:{proxy_port}/healthz"
    sampler = _RssSampler(proxy)
    sent_to_proxy = 0
    levels: dict[str, Any] = {}

    async with direct, proxied, aiohttp.ClientSession() as control:
        await asyncio.sleep(0.5)  # let start-up work settle first
        idle_rss = proxy.memory_info().rss
        sampler.start()

        async def one_round(c: int, r: int, per_round: int, warm: int) -> dict[str, Any]:
            nonlocal sent_to_proxy
            order = (direct, proxied) if r % 2 == 0 else (proxied, direct)
            phases: dict[str, PhaseResult] = {}
            other_load: dict[str, dict[str, float]] = {}
            cpu_ms = sim_cpu_ms = 0.0
            for target in order:
                for child in children:
                    child.check_alive()
                await run_phase(target, c, warm)
                if target is proxied:
                    sent_to_proxy += warm
                    await _wait_exported(control, healthz, sent_to_proxy)
                    before = _cpu_s(proxy)
                gc.collect()
                load_before = other.snapshot() if other else {}
                sim_before = _cpu_s(simulator)
                phase = await run_phase(target, c, per_round)
                if target is direct:
                    sim_cpu_ms = (_cpu_s(simulator) - sim_before) * 1000
                if other is not None:
                    shares = other.share(load_before, other.snapshot(), phase.wall_s)
                    if target is direct:
                        # The proxy's CPU sits idle in a direct phase; whoever used it there did not
                        # compete with anything measured.
                        shares = {cpu: pct for cpu, pct in shares.items() if cpu != other.proxy_cpu}
                    other_load[target.name] = shares
                if target is proxied:
                    sent_to_proxy += per_round
                    await _wait_exported(control, healthz, sent_to_proxy)
                    cpu_ms = (_cpu_s(proxy) - before) * 1000
                phases[target.name] = phase
                _progress(
                    f"c={c} round {r + 1} {target.name}: {phase.completed} calls, {phase.rps:.0f} req/s, "
                    f"errors {phase.errors}, other load % by CPU "
                    f"{ {cpu: round(pct) for cpu, pct in other_load.get(target.name, {}).items()} }"
                )
            return {
                "direct": phases["direct"].summary(),
                "proxied": phases["proxied"].summary(),
                "proxy_cpu_ms": round(cpu_ms, 2),
                "proxy_cpu_ms_per_request": cpu_ms / max(1, per_round),
                "simulator_cpu_ms": round(sim_cpu_ms, 2),
                "other_load_pct": other_load,
                "noise_pct": max((p for shares in other_load.values() for p in shares.values()), default=0.0),
            }

        for c in CONCURRENCY:
            per_round = max(1, requests[c] // rounds)
            warm = _warmup(c, quick)
            rows: list[dict[str, Any]] = []
            # Run the planned rounds, then (full mode, within the time budget) extra ones until
            # `rounds` of them were quiet; the `rounds` least disturbed ones are kept.
            while len(rows) < rounds or (
                sum(row["noise_pct"] <= QUIET_MAX_OTHER_PCT for row in rows) < rounds
                and len(rows) < rounds + extra_rounds
                and time.monotonic() < extra_until
            ):
                rows.append(await one_round(c, len(rows), per_round, warm))
            levels[str(c)] = _level_summary(c, per_round, warm, rows, rounds)

        await sampler.stop()
        final_spans = await _wait_exported(control, healthz, sent_to_proxy)
        # Idle cost of the proxy (key-file watcher, export timer), measured once everything is
        # warm: it is inside every CPU window too, for the second or so of each drain.
        await asyncio.sleep(1.0)
        cpu0 = _cpu_s(proxy)
        await asyncio.sleep(IDLE_MEASURE_S)
        idle_cpu_ms_per_s = (_cpu_s(proxy) - cpu0) * 1000 / IDLE_MEASURE_S

    return {
        "levels": levels,
        "sent_to_proxy": sent_to_proxy,
        "final_spans": final_spans,
        "idle_rss_mb": idle_rss / 2**20,
        "idle_cpu_ms_per_s": idle_cpu_ms_per_s,
        "peak_rss_mb": sampler.peak / 2**20,
        "rss_samples": sampler.samples,
    }


_METRICS = ("ttfb_p50_ms", "ttfb_p99_ms", "total_p50_ms", "total_p99_ms", "rps")


def _level_summary(c: int, per_round: int, warm: int, ran: list[dict[str, Any]], keep: int) -> dict[str, Any]:
    """Medians over the ``keep`` least disturbed rounds; 'added' is the median of per-round
    differences (paired in time)."""
    kept = sorted(range(len(ran)), key=lambda i: ran[i]["noise_pct"])[:keep]
    for i, row in enumerate(ran):
        row["kept"] = i in kept
    rows = [row for row in ran if row["kept"]]
    med = statistics.median
    direct = {m: med(r["direct"][m] for r in rows) for m in _METRICS}
    proxied = {m: med(r["proxied"][m] for r in rows) for m in _METRICS}
    added = {m: med(r["proxied"][m] - r["direct"][m] for r in rows) for m in _METRICS if m != "rps"}
    ratio = med(r["proxied"]["rps"] / r["direct"]["rps"] for r in rows if r["direct"]["rps"])
    total_cpu_ms = sum(r["proxy_cpu_ms"] for r in rows)
    total_calls = per_round * len(rows)
    cpu_per_req = total_cpu_ms / total_calls
    sim_per_req = sum(r["simulator_cpu_ms"] for r in rows) / total_calls
    return {
        "concurrency": c,
        "requests_per_phase": per_round,
        "warmup_per_phase": warm,
        "rounds": ran,
        "rounds_run": len(ran),
        "rounds_kept": len(rows),
        "kept_noise_max_pct": max(row["noise_pct"] for row in rows),
        "direct": direct,
        "proxied": proxied,
        "added_ms": added,
        "throughput_ratio": ratio,
        "proxy_cpu_ms_per_request": cpu_per_req,
        "serves_rps_per_core": 1000 / cpu_per_req if cpu_per_req > 0 else None,
        "simulator_cpu_ms_per_direct_request": sim_per_req,
        "errors": sum(r["direct"]["errors"] + r["proxied"]["errors"] for r in ran),
        "first_error": next(
            (r[t]["first_error"] for r in ran for t in ("direct", "proxied") if r[t]["first_error"]), None
        ),
        "same_bytes": all(r["direct"]["response_bytes"] == r["proxied"]["response_bytes"] for r in ran),
        "other_load_pct": _other_load_summary(rows),
    }


def _other_load_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per CPU: median and worst share of a measured phase that other processes took."""
    per_cpu: dict[str, list[float]] = {}
    for row in rows:
        for shares in row["other_load_pct"].values():
            for cpu, pct in shares.items():
                per_cpu.setdefault(cpu, []).append(pct)
    return {cpu: {"median": statistics.median(v), "max": max(v)} for cpu, v in per_cpu.items()}


# -- report ------------------------------------------------------------------------------------


def _bars(result: dict[str, Any]) -> list[dict[str, Any]]:
    c1 = result["levels"]["1"]
    bars = [
        {
            "name": "added TTFB p50 at c=1",
            "value": c1["added_ms"]["ttfb_p50_ms"],
            "limit": BAR_ADDED_TTFB_P50_MS,
            "unit": "ms",
        },
        {
            "name": "added TTFB p99 at c=1",
            "value": c1["added_ms"]["ttfb_p99_ms"],
            "limit": BAR_ADDED_TTFB_P99_MS,
            "unit": "ms",
        },
    ]
    for c, level in result["levels"].items():
        bars.append(
            {
                "name": f"proxy CPU per streamed request at c={c}",
                "value": level["proxy_cpu_ms_per_request"],
                "limit": BAR_CPU_MS_PER_REQUEST,
                "unit": "ms",
            }
        )
    peak = max(result["memory"]["peak_rss_mb"], result["memory"]["vm_hwm_mb"] or 0.0)
    bars.append(
        {"name": "proxy peak RSS under load (max of sampled, VmHWM)", "value": peak, "limit": BAR_RSS_MB, "unit": "MB"}
    )
    for bar in bars:
        bar["pass"] = bar["value"] <= bar["limit"]
    return bars


def _fmt_ms(v: float, signed: bool = False) -> str:
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"Proxy benchmark: streamed chat completions ({CHUNKS} content chunks, include_usage), spans on "
        "(OTLP/gRPC to a counting sink)",
        f"  pinning: {cfg['pinning']}",
        "  checked at the end, CPU sets of every thread: "
        + ", ".join(f"{name} {cpus}" for name, cpus in cfg["thread_cpus"].items()),
        f"  per concurrency: medians over the {cfg['rounds']} least disturbed round(s) (a round = one direct and "
        "one proxied phase, order alternating); 'added' = median of per-round (proxied - direct)",
        f"  Python {cfg['python']}, aiohttp {cfg['versions']['aiohttp']}, uvloop {cfg['versions']['uvloop']}, "
        f"{cfg['cpus']} CPUs; machine speed, {REFERENCE_LOOP:,}-step Python loop: "
        + ", ".join(f"CPU {cpu} {ms:.0f} ms" for cpu, ms in cfg["reference_loop_ms"].items()),
    ]
    code = cfg["code"]
    lines.append(
        f"  code: commit {code['commit']}"
        + (f", uncommitted changes in {', '.join(code['uncommitted'])}" if code["uncommitted"] else "")
    )
    if cfg["quick"]:
        lines.append("  QUICK MODE: too few calls for meaningful numbers (it checks that the benchmark runs)")
    lines.append("")
    for c, lv in result["levels"].items():
        d, p, a = lv["direct"], lv["proxied"], lv["added_ms"]
        lines.append(
            f"concurrency {c}: {lv['rounds_kept']} x {lv['requests_per_phase']} calls per target "
            f"(+{lv['warmup_per_phase']} warm-up per phase); kept {lv['rounds_kept']} of {lv['rounds_run']} rounds run"
        )
        lines.append(f"  {'':22}{'direct':>10}{'proxied':>10}{'added':>10}")
        for m, label in (
            ("ttfb_p50_ms", "TTFB p50 (ms)"),
            ("ttfb_p99_ms", "TTFB p99 (ms)"),
            ("total_p50_ms", "total p50 (ms)"),
            ("total_p99_ms", "total p99 (ms)"),
        ):
            lines.append(f"  {label:22}{_fmt_ms(d[m]):>10}{_fmt_ms(p[m]):>10}{_fmt_ms(a[m], True):>10}")
        lines.append(
            f"  {'throughput (req/s)':22}{d['rps']:>10.0f}{p['rps']:>10.0f}"
            f"{'ratio ' + format(lv['throughput_ratio'], '.2f'):>16}"
        )
        serves = lv["serves_rps_per_core"]
        lines.append(
            f"  proxy CPU per request: {lv['proxy_cpu_ms_per_request']:.3f} ms "
            f"-> one process serves ~{serves:,.0f} streamed req/s per core"
        )
        sim_ms = lv["simulator_cpu_ms_per_direct_request"]
        lines.append(
            f"  for scale, the simulated provider's CPU per direct call: {sim_ms:.3f} ms "
            "(an aiohttp server writing 24 cached events)"
        )
        if lv["other_load_pct"]:
            shares = ", ".join(
                f"CPU {cpu} median {v['median']:.0f}% worst {v['max']:.0f}%" for cpu, v in lv["other_load_pct"].items()
            )
            lines.append(f"  other processes during kept phases (approx.): {shares}")
            if lv["kept_noise_max_pct"] > QUIET_MAX_OTHER_PCT:
                lines.append(
                    f"  WARNING: a kept round was disturbed (> {QUIET_MAX_OTHER_PCT:.0f}% of a CPU): rerun when quiet"
                )
        if lv["errors"]:
            lines.append(f"  ERRORS: {lv['errors']} failed calls (first: {lv['first_error']})")
        if not lv["same_bytes"]:
            lines.append("  WARNING: proxied responses differ in size from direct ones")
        lines.append("")
    mem, spans = result["memory"], result["spans"]
    hwm = f"{mem['vm_hwm_mb']:.1f} MB" if mem["vm_hwm_mb"] is not None else "n/a"
    lines.append(
        f"proxy memory: peak RSS {mem['peak_rss_mb']:.1f} MB ({mem['rss_samples']} samples every "
        f"{RSS_SAMPLE_S * 1000:.0f} ms), VmHWM {hwm}, idle after start {mem['idle_rss_mb']:.1f} MB"
    )
    lines.append(f"proxy idle CPU after the run: {result['idle_cpu_ms_per_s']:.1f} ms per second")
    lines.append(
        f"spans: {spans['proxied_calls']} proxied calls, proxy exported {spans['exported']}, "
        f"sink received {spans['sink_spans']}, dropped {spans['dropped']}, "
        f"failed export attempts {spans['failed_attempts']} -> {'OK' if spans['ok'] else 'MISMATCH'}"
    )
    lines.append("")
    lines.append("bars (this machine; informational, the run does not fail on them)")
    for bar in result["bars"]:
        verdict = "PASS" if bar["pass"] else "FAIL"
        lines.append(f"  {bar['name']:52} {bar['value']:8.3f} {bar['unit']:2} <= {bar['limit']:<5} {verdict}")
    lines.append(f"(took {result['elapsed_s']:.0f} s)")
    return "\n".join(lines)


# -- entry point -------------------------------------------------------------------------------


def _code_state() -> dict[str, Any]:
    """The commit measured, and which proxy/simulator files differed from it (others edit this tree)."""
    root = HERE.parent

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.rstrip() if out.returncode == 0 else ""  # keep porcelain's leading status column

    dirty = git("status", "--porcelain", "--", "proxy/spendgate_proxy", "simulator/spendgate_simulator")
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "uncommitted": [ln[3:] for ln in dirty.splitlines()]}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(quick: bool = False) -> dict[str, Any]:
    """Run the proxy benchmark; returns its results (JSON-ready) with the printable text under ``report``."""
    import uvloop

    from spendgate_proxy.keys import create_key

    started = time.monotonic()
    requests = QUICK_REQUESTS if quick else FULL_REQUESTS
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    own_cpus = os.sched_getaffinity(0)
    cpus = sorted(own_cpus)
    if len(cpus) >= 2:
        proxy_cpus: set[int] | None = {cpus[0]}
        rest_cpus: set[int] | None = {cpus[1]}
        pinning = f"proxy on CPU {cpus[0]}; load generator, simulated provider and OTLP sink on CPU {cpus[1]}"
    else:
        proxy_cpus = rest_cpus = None
        pinning = "NOT pinned: only one CPU available, every process shares it"
    children: list[_Child] = []
    tmp = tempfile.TemporaryDirectory(prefix="spendgate-bench-proxy-")
    logdir = Path(tmp.name)
    # The proxy runs without a collector here: standalone (the variable works on older trees too).
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "PYTHONUNBUFFERED": "1",
        "SPENDGATE_CONTROL_ENDPOINT": "off",
    }
    try:
        code = _code_state()  # read at start: the proxy process imports the tree as it is now
        reference_ms = {str(min(c)): _reference_loop_ms(c) for c in (proxy_cpus, rest_cpus) if c is not None}
        key, _ = create_key(logdir / "keys.yaml", user="bench@acme.com", team="bench")
        sink_port, sim_port, proxy_port = _free_port(), _free_port(), _free_port()
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
            proxy_command(proxy_port, logdir / "keys.yaml", sim_port, sink_port),
            proxy_cpus,
            logdir,
            env,
        )
        children.append(proxy)
        if rest_cpus is not None:
            os.sched_setaffinity(0, rest_cpus)  # this process is the load generator
        _wait_ready(sink, lambda: _port_open(sink_port))
        _wait_ready(sim, lambda: _http_ok(f"http://127.0.0.1:{sim_port}/healthz"))
        _wait_ready(proxy, lambda: _http_ok(f"http://127.0.0.1:{proxy_port}/healthz"))
        _progress(f"{pinning}; proxy pid {proxy.proc.pid}")

        proxy_ps = psutil.Process(proxy.proc.pid)
        other = None
        if proxy_cpus is not None and rest_cpus is not None:
            other = _OtherLoad(
                {
                    min(proxy_cpus): [proxy_ps],
                    min(rest_cpus): [psutil.Process(), psutil.Process(sim.proc.pid), psutil.Process(sink.proc.pid)],
                },
                proxy_cpu=min(proxy_cpus),
            )
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            measured = runner.run(
                _measure(
                    sim_port=sim_port,
                    proxy_port=proxy_port,
                    key=key,
                    proxy=proxy_ps,
                    simulator=psutil.Process(sim.proc.pid),
                    children=children,
                    other=other,
                    requests=requests,
                    rounds=rounds,
                    extra_rounds=0 if quick else FULL_EXTRA_ROUNDS,
                    extra_until=started + EXTRA_ROUNDS_UNTIL_S,
                    quick=quick,
                )
            )
        vm_hwm = _vm_hwm_mb(proxy.proc.pid)
        pinned_threads = {child.name: _thread_cpus(child.proc.pid) for child in children}

        proxy_log = proxy.log_tail()
        _stop(proxy)
        sink_out = _stop(sink).decode(errors="replace").strip().splitlines()
        sink_stats = json.loads(sink_out[-1]) if sink_out else {}
    finally:
        for child in reversed(children):
            _stop(child, timeout_s=5.0)
        os.sched_setaffinity(0, own_cpus)
        tmp.cleanup()

    spans = measured["final_spans"] or {}
    sent = measured["sent_to_proxy"]
    span_check = {
        "proxied_calls": sent,
        "exported": spans.get("exported"),
        "dropped": spans.get("dropped"),
        "failed_attempts": spans.get("failed_attempts"),
        "queued": spans.get("queued"),
        "sink_spans": sink_stats.get("spans"),
        "sink_export_calls": sink_stats.get("requests"),
    }
    span_check["ok"] = span_check["exported"] == sent and span_check["sink_spans"] == sent
    result: dict[str, Any] = {
        "config": {
            "quick": quick,
            "rounds": rounds,
            "requests_per_target": requests,
            "chunks": CHUNKS,
            "model": MODEL,
            "pinning": pinning,
            "thread_cpus": pinned_threads,
            "reference_loop_ms": reference_ms,
            "code": code,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": {d: _version(d) for d in ("aiohttp", "uvloop", "orjson", "grpcio", "opentelemetry-sdk")},
        },
        "levels": measured["levels"],
        "memory": {
            "peak_rss_mb": measured["peak_rss_mb"],
            "vm_hwm_mb": vm_hwm,
            "idle_rss_mb": measured["idle_rss_mb"],
            "rss_samples": measured["rss_samples"],
        },
        "idle_cpu_ms_per_s": measured["idle_cpu_ms_per_s"],
        "spans": span_check,
        "elapsed_s": time.monotonic() - started,
    }
    if not span_check["ok"]:
        result["proxy_log_tail"] = proxy_log
    result["bars"] = _bars(result)
    result["report"] = _report(result)
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred calls: checks the pipeline only")
    print(main(quick=parser.parse_args().quick)["report"])
