"""Load generator for the benchmarks: concurrent streaming chat calls on one keep-alive aiohttp session.

A ``Target`` is one endpoint (the simulated provider directly, or the proxy in front of it) with
its own connection pool, kept open across phases so that connection setup stays out of the
numbers. ``run_phase`` sends a fixed number of identical requests from N workers and records,
per request, the time to the first body chunk (TTFB) and to the end of the stream, checking that
every stream ended with ``data: [DONE]`` (and carried usage, when asked for).

Run it inside a uvloop event loop for the lowest client overhead. Percentiles are computed here
(nearest rank on a sorted list); no numpy.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

DONE = b"data: [DONE]\n\n"
_TAIL_BYTES = 1024  # enough for the usage event (~400 bytes) and [DONE] at the end of a stream


class BadResponse(Exception):
    """A call did not end the way a complete stream must (status, missing [DONE] or usage)."""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100] of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class PhaseResult:
    """What one phase measured. Times are in milliseconds, one entry per successful call."""

    target: str
    concurrency: int
    ttfb_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    wall_s: float = 0.0
    response_sizes: set[int] = field(default_factory=set)

    @property
    def completed(self) -> int:
        return len(self.total_ms)

    @property
    def rps(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """Percentiles and throughput, JSON-ready (no raw samples)."""
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "requests": self.completed,
            "errors": self.errors,
            "first_error": self.first_error,
            "wall_s": round(self.wall_s, 4),
            "rps": round(self.rps, 1),
            "ttfb_p50_ms": round(percentile(self.ttfb_ms, 50), 4),
            "ttfb_p99_ms": round(percentile(self.ttfb_ms, 99), 4),
            "total_p50_ms": round(percentile(self.total_ms, 50), 4),
            "total_p99_ms": round(percentile(self.total_ms, 99), 4),
            "response_bytes": sorted(self.response_sizes),
        }


class Target:
    """One endpoint to load: URL, headers and body, and a pooled session (``async with``)."""

    def __init__(
        self,
        name: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        *,
        max_connections: int = 64,
        done: bytes = DONE,
    ) -> None:
        self.name = name
        self.done = done
        """How a complete stream ends (Anthropic streams end with ``message_stop``, not ``[DONE]``)."""
        self.url = url
        self.body = body
        self.headers = headers
        self.max_connections = max_connections
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Target:
        self.session = aiohttp.ClientSession(
            # A long keep-alive: phases are interleaved with pauses, and a reconnect inside a
            # measured phase would be counted against whichever target happened to pay it.
            connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=600),
            timeout=aiohttp.ClientTimeout(total=60),
            skip_auto_headers=("User-Agent",),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


async def _one_call(target: Target, expect_usage: bool, result: PhaseResult) -> None:
    session = target.session
    assert session is not None, "use the target as `async with target:`"
    start = time.perf_counter_ns()
    first: int | None = None
    size = 0
    tail = b""
    async with session.post(target.url, data=target.body, headers=target.headers) as resp:
        if resp.status != 200:
            text = (await resp.read())[:200]
            raise BadResponse(f"HTTP {resp.status}: {text!r}")
        async for chunk in resp.content.iter_any():
            if first is None:
                first = time.perf_counter_ns()
            size += len(chunk)
            tail = chunk[-_TAIL_BYTES:] if len(chunk) >= _TAIL_BYTES else (tail + chunk)[-_TAIL_BYTES:]
    end = time.perf_counter_ns()
    if first is None or not tail.endswith(target.done):
        raise BadResponse(f"stream did not end with {target.done!r} (last bytes {tail[-60:]!r})")
    if expect_usage and b'"prompt_tokens"' not in tail:
        raise BadResponse("stream carried no usage event")
    result.ttfb_ms.append((first - start) / 1e6)
    result.total_ms.append((end - start) / 1e6)
    result.response_sizes.add(size)


async def run_phase(target: Target, concurrency: int, requests: int, *, expect_usage: bool = True) -> PhaseResult:
    """Send ``requests`` calls to ``target`` from ``concurrency`` workers; one result for the phase.

    Failed calls are counted in ``errors`` (with the first one's message) and left out of timings.
    """
    result = PhaseResult(target.name, concurrency)
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1  # one event loop thread: no race between workers
            try:
                await _one_call(target, expect_usage, result)
            except (aiohttp.ClientError, TimeoutError, BadResponse) as exc:
                result.errors += 1
                if result.first_error is None:
                    result.first_error = f"{type(exc).__name__}: {exc}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result
