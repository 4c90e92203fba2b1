"""Unknown virtual keys: what a flood of requests with bad keys costs the proxy, per rejected request.

A key the proxy does not hold gets one more look for newer key state before the 401
(``proxy/key_refresh.py``), and a key still unknown is then remembered for 0.5 s (the unknown-key
cache). This measures the proxy's CPU time per rejected request (user + system of the whole
process, less its idle CPU over the same time), and the latency of the 401, for:

- ``same key``: one bad key over and over: after the first, answered from the unknown-key cache;
- ``distinct keys``: a new bad key on every request, so the cache never helps: with a key file,
  each costs a hash and a ``stat``; with a collector, each waits for the next ``SyncKeys`` (at most
  one per 0.5 s, shared by every key waiting);

each for a proxy that follows its key file (``control: off``) and one whose keys come from a
collector (a real ``spendgate collector`` on loopback), and, with ``--baseline REV``, for the
proxy of another revision (before the second look existed: a hash and a 401).

Setup as ``bench_proxy.py``: the proxies are pinned to CPU 0, the load generator (8 concurrent
keep-alive connections), the collector and the simulated provider to CPU 1. Rounds alternate the
order; values are medians over rounds. Results go to docs/performance.md ("Unknown virtual keys").

The HTTP handling around a 401 costs far more than the key check, and this shared machine's noise
is larger than the difference, so the key check alone is also timed in this process (7 runs of
20,000 checks; min and median): ``authenticate`` on a known key (the hot path, for scale), on an
unknown key without the second look (what the proxy did before: hash, 401), and with it, for
distinct keys and for one key repeated.

    .venv/bin/python benchmarks/bench_unknown_keys.py [--baseline b0dca42] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop
from bench_proxy import _Child, _free_port, _http_ok, _spawn, _spendgate, _stop, _wait_ready
from proxy_ab import _export_tree, _tree_env

HERE = Path(__file__).resolve().parent
CONCURRENCY = 8
BODY = b'{"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}'


def _health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
        return json.load(resp)


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


async def _flood(url: str, requests: int, distinct: bool) -> tuple[list[float], int]:
    """``requests`` POSTs with bad keys from ``CONCURRENCY`` workers; latencies (ms) and non-401 count."""
    same = "sg-" + secrets.token_urlsafe(32)
    latencies: list[float] = []
    other = 0
    remaining = requests
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=600)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            nonlocal remaining, other
            while remaining > 0:
                remaining -= 1
                key = "sg-" + secrets.token_urlsafe(32) if distinct else same
                headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                start = time.perf_counter_ns()
                async with session.post(url, data=BODY, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 401:
                        other += 1
                latencies.append((time.perf_counter_ns() - start) / 1e6)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies, other


async def _idle_cpu_per_s(pid: int, seconds: float = 3.0) -> float:
    """The proxy's CPU seconds per second with no traffic (heartbeats, the key file's stat, ...)."""
    before = _cpu_s(pid)
    await asyncio.sleep(seconds)
    return (_cpu_s(pid) - before) / seconds


async def _measure(proxies: dict[str, tuple[int, int]], plan: dict[str, int], rounds: int) -> dict[str, Any]:
    rows: dict[str, dict[str, list[float]]] = {}
    idle = {name: await _idle_cpu_per_s(pid) for name, (_, pid) in proxies.items()}
    cases = [(name, distinct) for name in proxies for distinct in (False, True)]
    for r in range(rounds):
        for name, distinct in cases if r % 2 == 0 else cases[::-1]:
            port, pid = proxies[name]
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            n = plan[f"{name}:{'distinct' if distinct else 'same'}"]
            await _flood(url, min(n, 50), distinct)  # warm-up: connections open
            before = _cpu_s(pid)
            started = time.perf_counter()
            latencies, other = await _flood(url, n, distinct)
            wall = time.perf_counter() - started
            used = _cpu_s(pid) - before - idle[name] * wall  # what the flood cost, not the idle background
            if other:
                raise RuntimeError(f"{name}: {other} answers were not 401")
            row = rows.setdefault(f"{name} / {'distinct keys' if distinct else 'same key'}", {})
            row.setdefault("cpu_us", []).append(used / n * 1e6)
            row.setdefault("p50_ms", []).append(statistics.median(latencies))
            row.setdefault("p99_ms", []).append(statistics.quantiles(latencies, n=100)[98])
            row.setdefault("rps", []).append(n / wall)
        print(f"round {r + 1}/{rounds} done", flush=True)
    out: dict[str, Any] = {
        case: {k: round(statistics.median(v), 3) for k, v in row.items()} for case, row in rows.items()
    }
    out["idle_cpu_ms_per_s"] = {name: round(v * 1000, 2) for name, v in idle.items()}
    return out


async def _in_process(runs: int = 7, n: int = 20_000) -> dict[str, dict[str, float]]:
    """µs of CPU per key check, in this process: see the module docstring."""
    from collections import OrderedDict
    from types import SimpleNamespace

    from spendgate_proxy.errors import AuthenticationFailed
    from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again
    from spendgate_proxy.key_refresh import KeyRefresh
    from spendgate_proxy.keys import KeyDirectory, create_key

    path = Path(tempfile.mkdtemp(prefix="bench-unknown-keys-inproc-")) / "keys.yaml"
    known, _ = create_key(path, user="bench@acme.com")
    keys = KeyDirectory(path)
    state = SimpleNamespace(key_refresh=KeyRefresh(keys), keys=keys)
    times: dict[str, list[float]] = {}
    for _ in range(runs):
        for case in ("known key", "unknown, no second look (before)", "unknown, distinct keys", "unknown, same key"):
            bad = ["sg-" + secrets.token_urlsafe(32) for _ in range(n)]
            keys._unknown = OrderedDict()
            if case == "known key":
                presented = [known] * n
            elif case == "unknown, same key":
                presented = [bad[0]] * n
            else:
                presented = bad
            headers = [{"Authorization": f"Bearer {k}"} for k in presented]
            second_look = case.startswith("unknown, ") and "before" not in case
            started = time.process_time()
            for h in headers:
                try:
                    try:
                        authenticate(keys, h)
                    except UnknownVirtualKey as unknown:
                        if not second_look:
                            raise
                        await authenticate_again(state, unknown)  # type: ignore[arg-type]
                except AuthenticationFailed:
                    pass
            times.setdefault(case, []).append((time.process_time() - started) / n * 1e6)
    shutil.rmtree(path.parent, ignore_errors=True)
    return {
        case: {"min_us": round(min(v), 2), "median_us": round(statistics.median(v), 2)} for case, v in times.items()
    }


def _proxy_argv(port: int, keys: Path, sim_port: int, control: str) -> tuple[list[str], dict[str, str]]:
    """``spendgate proxy`` without spans, and the environment that sets its control plane."""
    argv = _spendgate(
        [
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--keys-file",
            str(keys),
            "--upstream",
            f"http://127.0.0.1:{sim_port}/v1",
            "--model",
            "gpt-4.1",
            "--no-spans",
        ]
    )
    return argv, {"SPENDGATE_CONTROL_ENDPOINT": control}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="also measure the proxy of this git revision")
    parser.add_argument("--quick", action="store_true", help="a few hundred requests: checks the pipeline only")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from spendgate_proxy.keys import create_key

    n = 500 if args.quick else 5000
    rounds = 1 if args.quick else args.rounds
    work = Path(tempfile.mkdtemp(prefix="bench-unknown-keys-"))
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpus, rest_cpus = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPENDGATE_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    keys = work / "keys.yaml"
    create_key(keys, user="bench@acme.com", team="bench")
    sim_port, grpc_port, api_port, control_port = (_free_port() for _ in range(4))
    children: list[_Child] = []
    try:
        children.append(
            _spawn(
                "simulated-provider", _spendgate(["simulate-provider", "--port", str(sim_port)]), rest_cpus, work, env
            )
        )
        collector_env = {
            **env,
            "SPENDGATE_COLLECTOR_DB": str(work / "spend.db"),
            "SPENDGATE_COLLECTOR_KEYS_FILE": str(keys),
            "SPENDGATE_COLLECTOR_OTLP_GRPC": f"127.0.0.1:{grpc_port}",
            "SPENDGATE_COLLECTOR_OTLP_HTTP": "off",
            "SPENDGATE_COLLECTOR_API": f"127.0.0.1:{api_port}",
            "SPENDGATE_COLLECTOR_CONTROL": f"127.0.0.1:{control_port}",
        }
        collector = _spawn("collector", _spendgate(["collector"]), rest_cpus, work, collector_env)
        children.append(collector)
        trees: dict[str, tuple[Path | None, str]] = {
            "key file": (None, "off"),
            "collector": (None, f"127.0.0.1:{control_port}"),
        }
        if args.baseline:
            trees[f"{args.baseline} (before)"] = (_export_tree(args.baseline, work / "baseline"), "off")
        proxies: dict[str, tuple[int, int]] = {}
        for name, (tree, control) in trees.items():
            port = _free_port()
            argv_, extra = _proxy_argv(port, keys, sim_port, control)
            child_env = {**env, **extra}
            if tree is not None:
                child_env = _tree_env(child_env, tree)
            child = _spawn(f"proxy-{len(proxies)}", argv_, proxy_cpus, work, child_env)
            children.append(child)
            proxies[name] = (port, child.proc.pid)
        if rest_cpus is not None:
            os.sched_setaffinity(0, rest_cpus)
        _wait_ready(collector, lambda: _http_ok(f"http://127.0.0.1:{api_port}/healthz"))
        for child, (port, _) in zip(children[2:], proxies.values(), strict=True):
            _wait_ready(child, lambda port=port: _http_ok(f"http://127.0.0.1:{port}/healthz"))
        port = proxies["collector"][0]
        _wait_ready(children[3], lambda: _health(port)["control"]["keys_from"] == "collector")
        # A proxy waiting on SyncKeys serves CONCURRENCY keys per 0.5 s: fewer requests for that case.
        plan = {f"{name}:{case}": n for name in proxies for case in ("same", "distinct")}
        plan["collector:distinct"] = 80 if args.quick else 240
        load = os.getloadavg()
        rows = uvloop.run(_measure(proxies, plan, rounds))
        syncs = _health(api_port)["control"]["key_syncs"]
        print(f"\nbad-key floods, {CONCURRENCY} connections, medians of {rounds} rounds; load average {load[0]:.2f}")
        print(f"{'':38s} {'CPU/request':>12s} {'p50':>9s} {'p99':>9s} {'req/s':>8s}")
        for case, row in rows.items():
            if case == "idle_cpu_ms_per_s":
                continue
            print(
                f"{case:38s} {row['cpu_us']:9.1f} µs {row['p50_ms']:6.2f} ms {row['p99_ms']:6.2f} ms {row['rps']:8.0f}"
            )
        print(
            f"SyncKeys calls the collector answered: {syncs}; idle CPU (subtracted) ms/s: {rows['idle_cpu_ms_per_s']}"
        )
        checks = uvloop.run(_in_process(runs=2 if args.quick else 7))
        print("\nthe key check alone, in this process (CPU per check):")
        for case, t in checks.items():
            print(f"  {case:34s} min {t['min_us']:6.2f} µs   median {t['median_us']:6.2f} µs")
        return {
            "rows": rows,
            "in_process": checks,
            "collector_key_syncs": syncs,
            "loadavg_at_start": load,
            "requests": n,
            "rounds": rounds,
        }
    finally:
        for child in reversed(children):
            _stop(child)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    main()
