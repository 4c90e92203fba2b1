"""Proxy cost per streamed call, two code trees side by side in one run: CPU time and instruction counts.

For comparing a change on a shared, loaded machine, where wall-clock latency is mostly other
people's work: the same simulated provider and OTLP sink (CPU 1) serve a *baseline* and a
*candidate* proxy (both pinned to CPU 0, measured one at a time), and each round sends the same
calls (concurrency 1, streaming, 20 chunks, usage on, spans on) directly, through the baseline and
through the candidate, in alternating order. Per proxy it reports, as medians over rounds:

- CPU time per call (user + system of the whole process, the span export included: each phase
  waits for the next export before reading the clock), and its read/write system calls per call;
- added TTFB p50/p99 against the direct calls of the same round (only meaningful when quiet);
- with ``--instructions``: instructions per call under ``valgrind --tool=callgrind``, from the
  difference between runs of N and 2N calls (so start-up cancels out). Instruction counts do not
  move with the machine's load, so they settle small differences the CPU times cannot.

Trees: ``--baseline REV`` (a git revision, exported with ``git archive``) or ``--baseline-tree DIR``
(a source tree); the candidate is this working tree unless ``--candidate-tree`` says otherwise. The
proxies import the trees through ``PYTHONPATH``, so only the code of the tree's import roots differs
between them. Either tree may have either layout: one package per program (``app/``, ``proxy/``,
``simulator/``, ``sdk/``, ``semconv/``) or the older one (everything but the contract under ``sdk/``,
beside ``semconv/``).

    .venv/bin/python benchmarks/proxy_ab.py --baseline HEAD~3 [--instructions] [--calls 1500 --rounds 5]

Not part of ``make bench`` (it needs a baseline); results go to stdout only.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import uvloop
from _load import Target, run_phase
from bench_proxy import (
    CHUNKS,
    REQUEST_BODY,
    _Child,
    _free_port,
    _http_ok,
    _port_open,
    _spawn,
    _spendgate,
    _stop,
    _wait_ready,
    proxy_command,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXPORT_WAIT_S = 1.3  # the proxy exports spans every second: each phase's export lands in its window


# A tree's import roots and the module of its ``spendgate`` command, per layout, newest first.
LAYOUTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("app", "proxy", "simulator", "sdk", "semconv"), "spendgate_app.cli"),  # one package per program
    (("sdk", "semconv"), "spendgate.cli"),  # proxy, simulator and CLI inside the spendgate package
)


def _layout(tree: Path) -> tuple[tuple[str, ...], str]:
    """Import roots and CLI module of ``tree``: the first layout whose roots all exist there."""
    for roots, cli_module in LAYOUTS:
        if all((tree / root).is_dir() for root in roots):
            return roots, cli_module
    raise SystemExit(f"{tree} has neither layout: expected {' or '.join('/, '.join(r) + '/' for r, _ in LAYOUTS)}")


def _export_tree(rev: str, into: Path) -> Path:
    """The import roots of git revision ``rev`` (either layout) under ``into``."""
    into.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "--name-only", rev], check=True, capture_output=True, text=True
    )
    roots = sorted({root for r, _ in LAYOUTS for root in r} & set(listed.stdout.split()))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, *roots], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    roots, _ = _layout(tree)
    return {**env, "PYTHONPATH": os.pathsep.join(str(tree / root) for root in roots)}


def _tree_proxy_command(tree: Path, port: int, keys: Path, sim_port: int, sink_port: int) -> list[str]:
    return proxy_command(port, keys, sim_port, sink_port, cli_module=_layout(tree)[1])


def _usage(pid: int) -> tuple[float, float, int, int]:
    """User s, system s, read and write system calls of a process so far."""
    t = psutil.Process(pid).cpu_times()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return t.user, t.system, int(io["syscr"]), int(io["syscw"])


async def _phase(url: str, headers: dict[str, str], calls: int) -> Any:
    target = Target("t", url, REQUEST_BODY, headers, max_connections=1)  # bench_proxy's call
    async with target:
        result = await run_phase(target, 1, calls)
    if result.errors:
        raise RuntimeError(f"{result.errors} failed calls, first: {result.first_error}")
    return result


async def _cpu_rounds(
    sim_port: int, proxies: dict[str, tuple[int, int]], headers: dict[str, str], calls: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    urls = {"direct": f"http://127.0.0.1:{sim_port}/v1/chat/completions"}
    urls.update({name: f"http://127.0.0.1:{port}/v1/chat/completions" for name, (port, _) in proxies.items()})
    out: dict[str, dict[str, list[float]]] = {name: {} for name in urls}
    order = list(urls)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            await _phase(urls[name], headers, 100)  # warm-up: pooled connections open, caches filled
            await asyncio.sleep(EXPORT_WAIT_S)
            pid = proxies[name][1] if name in proxies else None
            before = _usage(pid) if pid else None
            result = await _phase(urls[name], headers, calls)
            await asyncio.sleep(EXPORT_WAIT_S)
            row = out[name]
            row.setdefault("ttfb_p50", []).append(statistics.median(result.ttfb_ms))
            row.setdefault("ttfb_p99", []).append(statistics.quantiles(result.ttfb_ms, n=100)[98])
            if pid and before:
                after = _usage(pid)
                d = [(b - a) / calls for a, b in zip(before, after, strict=True)]
                row.setdefault("cpu_ms", []).append((d[0] + d[1]) * 1000)
                row.setdefault("user_ms", []).append(d[0] * 1000)
                row.setdefault("sys_ms", []).append(d[1] * 1000)
                row.setdefault("reads", []).append(d[2])
                row.setdefault("writes", []).append(d[3])
        line = "  ".join(f"{n} {out[n].get('cpu_ms', [0])[-1]:.3f} ms" for n in proxies)
        print(f"round {r + 1}/{rounds}: CPU per call {line}", flush=True)
    return out


def _instructions(
    tree: Path, env: dict[str, str], keys: Path, sim_port: int, sink_port: int, headers: dict[str, str], calls: int
) -> float:
    """Instructions per call of a proxy run under callgrind: (2N calls - N calls) / N."""
    port = _free_port()
    out = Path(tempfile.mkdtemp(prefix="proxy-ab-cg-")) / "cg"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", "--instr-atstart=no", "--dump-instr=no"]
    proc = subprocess.Popen(
        argv + _tree_proxy_command(tree, port, keys, sim_port, sink_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_tree_env(env, tree),
    )
    child = _Child("proxy under callgrind", proc, None)
    try:
        _wait_ready(child, lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout_s=300)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        uvloop.run(_phase(url, headers, 50))
        totals = []
        for n in (calls, 2 * calls):
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            uvloop.run(_phase(url, headers, n))
            time.sleep(4)  # the span export of these calls (slow under valgrind) lands in the window
            before = set(glob.glob(f"{out}.*"))
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            dump = sorted(set(glob.glob(f"{out}.*")) - before)[-1]
            lines = Path(dump).read_text().splitlines()
            totals.append(next(int(ln.split()[1]) for ln in lines if ln.startswith(("summary:", "totals:"))))
        return (totals[1] - totals[0]) / calls
    finally:
        _stop(child, timeout_s=60)
        shutil.rmtree(out.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    base = parser.add_mutually_exclusive_group(required=True)
    base.add_argument("--baseline", metavar="REV", help="git revision to compare against")
    base.add_argument("--baseline-tree", type=Path, metavar="DIR", help="a source tree (either layout)")
    parser.add_argument("--candidate-tree", type=Path, default=REPO, metavar="DIR", help="default: this tree")
    parser.add_argument("--calls", type=int, default=1500, help="calls per phase (default 1500)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of direct/baseline/candidate (default 5)")
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    parser.add_argument(
        "--instruction-calls", type=int, default=300, help="N for the callgrind runs (below ~200 background work shows)"
    )
    args = parser.parse_args(argv)

    from spendgate_proxy.keys import create_key

    work = Path(tempfile.mkdtemp(prefix="proxy-ab-"))
    trees = {
        "baseline": args.baseline_tree or _export_tree(args.baseline, work / "baseline"),
        "candidate": args.candidate_tree,
    }
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpus, rest_cpus = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)
    # The proxy runs without a collector here: standalone (the variable works on older trees too).
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "PYTHONUNBUFFERED": "1",
        "SPENDGATE_CONTROL_ENDPOINT": "off",
    }
    key, _ = create_key(work / "keys.yaml", user="bench@acme.com", team="bench")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sink_port, sim_port = _free_port(), _free_port()
    children: list[_Child] = []
    try:
        sink_argv = [sys.executable, str(HERE / "_otlp_sink.py"), "--port", str(sink_port)]
        children.append(_spawn("otlp-sink", sink_argv, rest_cpus, work, env))
        sim_argv = _spendgate(["simulate-provider", "--port", str(sim_port), "--chunks", str(CHUNKS)])
        children.append(_spawn("simulated-provider", sim_argv, rest_cpus, work, env))
        proxies: dict[str, tuple[int, int]] = {}
        for name, tree in trees.items():
            port = _free_port()
            child = _spawn(
                name,
                _tree_proxy_command(tree, port, work / "keys.yaml", sim_port, sink_port),
                proxy_cpus,
                work,
                _tree_env(env, tree),
            )
            children.append(child)
            proxies[name] = (port, child.proc.pid)
        if rest_cpus is not None:
            os.sched_setaffinity(0, rest_cpus)
        _wait_ready(children[0], lambda: _port_open(sink_port))
        _wait_ready(children[1], lambda: _http_ok(f"http://127.0.0.1:{sim_port}/healthz"))
        for child, (port, _) in zip(children[2:], proxies.values(), strict=True):
            _wait_ready(child, lambda port=port: _http_ok(f"http://127.0.0.1:{port}/healthz"))
        load = os.getloadavg()
        rows = uvloop.run(_cpu_rounds(sim_port, proxies, headers, args.calls, args.rounds))
        result: dict[str, Any] = {"trees": {k: str(v) for k, v in trees.items()}, "loadavg_at_start": load}
        direct50, direct99 = rows["direct"]["ttfb_p50"], rows["direct"]["ttfb_p99"]
        print(f"\nconcurrency 1, {args.calls} calls x {args.rounds} rounds; load average at start {load[0]:.2f}")
        heads = ("CPU/call", "user", "sys", "reads", "writes", "+TTFB p50", "+TTFB p99")
        print(f"{'':10s} {heads[0]:>9s} {heads[1]:>7s} {heads[2]:>7s} {heads[3]:>6s} {heads[4]:>6s}", end="")
        print(f" {heads[5]:>10s} {heads[6]:>10s}")
        for name in proxies:
            row = rows[name]
            med = {k: statistics.median(v) for k, v in row.items()}
            med["added_p50"] = statistics.median(a - b for a, b in zip(row["ttfb_p50"], direct50, strict=True))
            med["added_p99"] = statistics.median(a - b for a, b in zip(row["ttfb_p99"], direct99, strict=True))
            result[name] = med
            print(
                f"{name:10s} {med['cpu_ms']:7.3f} ms {med['user_ms']:7.3f} {med['sys_ms']:7.3f} {med['reads']:6.1f}"
                f" {med['writes']:6.1f} {med['added_p50']:+8.3f} ms {med['added_p99']:+8.3f} ms"
            )
        if args.instructions:
            for name, tree in trees.items():
                n = _instructions(tree, env, work / "keys.yaml", sim_port, sink_port, headers, args.instruction_calls)
                result[name]["instructions"] = n
                print(f"{name:10s} {n / 1e6:.3f} M instructions per call (callgrind, {args.instruction_calls} calls)")
        return result
    finally:
        for child in reversed(children):
            _stop(child)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
