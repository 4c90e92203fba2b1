"""A small async client for the Cursor Admin API: Basic auth, a token-bucket rate limit, 429 backoff.

Cursor allows about 20 requests a minute on most team endpoints (docs/cursor-facts.md), so every call
first takes a token from a bucket refilled at that rate; a 429 still gets through (other tools may
use the same key) and is answered by waiting ``Retry-After`` (or an exponential backoff when the
header is missing), then retrying. 5xx and connection errors are retried the same way; other 4xx are
permanent (a wrong key will not fix itself) and raise at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.cursor.com"
DEFAULT_REQUESTS_PER_MINUTE = 20
DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0


class AdminApiError(Exception):
    """A call that failed for good: ``retryable`` tells the poller whether the next poll may succeed."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class TokenBucket:
    """``rate_per_minute`` tokens a minute, bursts of at most ``burst``; ``acquire`` waits for one."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self._rate_per_s = rate_per_minute / 60.0
        # A burst of 1 by default: the API counts per minute, and spreading calls out never trips it.
        self._capacity = float(burst or 1)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate_per_s)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._sleep((1.0 - self._tokens) / self._rate_per_s)

    def drain(self) -> None:
        """Empty the bucket (after a 429: the server says we are already over)."""
        self._tokens = 0.0
        self._last = self._clock()


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only; an HTTP date is treated as absent)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class CursorAdminClient:
    """``members``, ``usage_events`` (one page) and ``daily_usage`` against one team's API key."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float = 30.0,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("a Cursor Admin API key is required")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), auth=httpx.BasicAuth(api_key, ""), timeout=timeout_s
        )
        self._bucket = bucket or TokenBucket(requests_per_minute, sleep=sleep)
        self._max_attempts = max_attempts
        self._sleep = sleep
        self.requests = 0
        """HTTP requests sent (retries included)."""
        self.throttled = 0
        """429 answers received."""

    async def close(self) -> None:
        await self._http.aclose()

    async def members(self) -> list[dict[str, Any]]:
        body = await self._call("GET", "/teams/members")
        return list(body.get("teamMembers") or [])

    async def usage_events(
        self,
        *,
        page: int,
        page_size: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """One page of ``/teams/filtered-usage-events`` (the whole body: ``usageEvents``, ``pagination``)."""
        payload: dict[str, Any] = {"page": page, "pageSize": page_size}
        if start_ms is not None:
            payload["startDate"] = start_ms
        if end_ms is not None:
            payload["endDate"] = end_ms
        if email:
            payload["email"] = email
        return await self._call("POST", "/teams/filtered-usage-events", payload)

    async def daily_usage(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        body = await self._call("POST", "/teams/daily-usage-data", {"startDate": start_ms, "endDate": end_ms})
        return list(body.get("data") or [])

    async def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        for attempt in range(1, self._max_attempts + 1):
            await self._bucket.acquire()
            self.requests += 1
            try:
                response = await self._http.request(method, path, json=payload)
            except httpx.HTTPError as exc:
                wait = _backoff(attempt)
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 300:
                    return dict(response.json())
                if response.status_code == 429:
                    self.throttled += 1
                    self._bucket.drain()
                    wait = retry_after_s(response.headers.get("retry-after")) or _backoff(attempt)
                elif response.status_code >= 500:
                    wait = _backoff(attempt)
                else:
                    raise AdminApiError(
                        f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}",
                        status=response.status_code,
                        retryable=False,
                    )
                reason = f"HTTP {response.status_code}"
            if attempt == self._max_attempts:
                raise AdminApiError(f"{method} {path}: gave up after {attempt} attempts ({reason})")
            logger.info("Cursor Admin API %s %s: %s; retrying in %.1fs", method, path, reason, wait)
            await self._sleep(wait)
        raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    """Capped exponential backoff with ±20 % jitter (the OTLP exporters' shape)."""
    base = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
    return base * random.uniform(0.8, 1.2)
