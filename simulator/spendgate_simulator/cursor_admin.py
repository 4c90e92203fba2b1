"""A simulated Cursor Admin API (aiohttp), built from the documented request and response shapes.

For the collector's connector tests and demos: ``create_admin_app(AdminSimulator(...))``. It serves
``GET /teams/members``, ``POST /teams/filtered-usage-events`` (paged, newest first, as Cursor does)
and ``POST /teams/daily-usage-data``, behind HTTP Basic auth with the team key as the user name and
an empty password. Faults a client must survive can be switched on: 429 with ``Retry-After`` on
chosen requests, an event repeated across page boundaries (what a newest-first listing does when a
new event lands between two page reads), and an outage after N requests.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


def usage_event(
    ts_ms: int,
    email: str,
    model: str = "claude-4-sonnet",
    *,
    kind: str = "Usage-based",
    chargeable: bool = True,
    input_tokens: int = 1000,
    output_tokens: int = 200,
    cache_write_tokens: int = 0,
    cache_read_tokens: int = 0,
    total_cents: float = 1.5,
    max_mode: bool = False,
) -> dict[str, Any]:
    """One ``usageEvents[]`` item, in the API's shape (the timestamp is ms as a string)."""
    return {
        "timestamp": str(ts_ms),
        "userEmail": email,
        "model": model,
        "kind": kind,
        "maxMode": max_mode,
        "requestsCosts": 1.0,
        "isTokenBasedCall": True,
        "isChargeable": chargeable,
        "isHeadless": False,
        "tokenUsage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "cacheWriteTokens": cache_write_tokens,
            "cacheReadTokens": cache_read_tokens,
            "totalCents": total_cents,
        },
    }


@dataclass
class AdminSimulator:
    """The simulated team: its key, members and events, the faults to inject, and a request log."""

    api_key: str = "key_test_team"
    members: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    throttle_requests: set[int] = field(default_factory=set)
    """1-based numbers of authenticated requests answered 429 (with ``Retry-After: retry_after_s``)."""
    retry_after_s: float = 1.0
    duplicate_across_pages: bool = False
    """Each page after the first also repeats the previous page's last event."""
    outage_after: int | None = None
    """Authenticated requests served before every further one gets a 503."""
    log: list[tuple[float, str, int]] = field(default_factory=list)
    """``(monotonic time, path, status)`` of every request."""

    def add_events(self, events: Iterable[dict[str, Any]]) -> None:
        self.events.extend(events)


def create_admin_app(sim: AdminSimulator) -> web.Application:
    served = 0

    def check(request: web.Request) -> web.Response | None:
        nonlocal served
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{sim.api_key}:".encode()).decode()
        if header != expected:
            return web.json_response({"error": "Unauthorized"}, status=401)
        served += 1
        if served in sim.throttle_requests:
            return web.json_response(
                {"error": "Too many requests"}, status=429, headers={"Retry-After": f"{sim.retry_after_s:g}"}
            )
        if sim.outage_after is not None and served > sim.outage_after:
            return web.json_response({"error": "Service unavailable"}, status=503)
        return None

    @web.middleware
    async def logged(request: web.Request, handler: Any) -> web.StreamResponse:
        response = check(request) or await handler(request)
        sim.log.append((time.monotonic(), request.path, response.status))
        return response

    async def members(_request: web.Request) -> web.Response:
        return web.json_response({"teamMembers": sim.members})

    async def usage_events(request: web.Request) -> web.Response:
        body = await request.json()
        page = max(1, int(body.get("page") or 1))
        size = max(1, int(body.get("pageSize") or 100))
        start, end, email = body.get("startDate"), body.get("endDate"), body.get("email")
        selected = [
            e
            for e in sim.events
            if (start is None or int(e["timestamp"]) >= int(start))
            and (end is None or int(e["timestamp"]) <= int(end))
            and (not email or e["userEmail"] == email)
        ]
        selected.sort(key=lambda e: int(e["timestamp"]), reverse=True)
        pages = max(1, -(-len(selected) // size))
        items = selected[(page - 1) * size : page * size]
        if sim.duplicate_across_pages and page > 1 and items:
            items = [selected[(page - 1) * size - 1], *items]
        return web.json_response(
            {
                "totalUsageEventsCount": len(selected),
                "pagination": {
                    "numPages": pages,
                    "currentPage": page,
                    "pageSize": size,
                    "hasNextPage": page < pages,
                    "hasPreviousPage": page > 1,
                },
                "usageEvents": items,
                "period": {"startDate": start, "endDate": end},
            }
        )

    async def daily_usage(request: web.Request) -> web.Response:
        body = await request.json()
        start, end = int(body["startDate"]), int(body["endDate"])
        days: dict[tuple[str, int], dict[str, Any]] = {}
        for e in sim.events:
            ts = int(e["timestamp"])
            if not start <= ts <= end:
                continue
            day_ms = ts - ts % 86_400_000
            row = days.setdefault(
                (e["userEmail"], day_ms),
                {
                    "date": day_ms,
                    "email": e["userEmail"],
                    "isActive": True,
                    "composerRequests": 0,
                    "chatRequests": 0,
                    "agentRequests": 0,
                    "cmdkUsages": 0,
                    "totalTabsShown": 0,
                    "totalTabsAccepted": 0,
                    "subscriptionIncludedReqs": 0,
                    "apiKeyReqs": 0,
                    "usageBasedReqs": 0,
                    "mostUsedModel": e["model"],
                },
            )
            row["agentRequests"] += 1
            kind = str(e.get("kind", "")).lower()
            if "api key" in kind:
                row["apiKeyReqs"] += 1
            elif e.get("isChargeable"):
                row["usageBasedReqs"] += 1
            else:
                row["subscriptionIncludedReqs"] += 1
        return web.json_response({"data": list(days.values()), "period": {"startDate": start, "endDate": end}})

    app = web.Application(middlewares=[logged])
    app.router.add_get("/teams/members", members)
    app.router.add_post("/teams/filtered-usage-events", usage_events)
    app.router.add_post("/teams/daily-usage-data", daily_usage)
    return app


def day_ms(day: str) -> int:
    """``YYYY-MM-DD`` → Unix ms of its midnight UTC (handy for seeding events)."""
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
