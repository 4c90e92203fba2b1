"""The query API (aiohttp, JSON and CSV), default ``127.0.0.1:8788``.

    GET /api/spend?from=&to=&month=&group_by=team,repo&developer=&team=&cost_center=&repo=&model=&feature=&provider=
    GET /api/top?dimension=developer&n=10&...filters
    GET /api/timeseries?group_by=&...filters           (by UTC day)
    GET /api/chargeback?month=2026-11&...filters        (JSON)
    GET /api/chargeback.csv?month=2026-11&...filters    (CSV with a header line)
    GET /api/unpriced?...filters                        (calls no price was found for)
    GET /healthz                                        (queue, store and pricer state; public, details for admins)
    GET /metrics                                        (Prometheus text; public)

Every query reads the rollups, never the raw rows, and runs on a small thread pool so a slow query
never stalls the event loop. A bad parameter answers 400 with ``{"error": ..., "param": ...}``.
Every spend route is open to every role but narrowed to the caller's slice (``auth.scope_filter``):
a developer sees their own usage, a lead their teams'; asking for someone else's slice is 403.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

import orjson
from aiohttp import web

from ..auth import ALL_ROLES, Role, allow, scope_filter
from ..auth.identity import identity_of, public
from ..errors import QueryError, StoreUnavailable
from ..http.blocking import run_blocking
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import CollectorMetrics
from ..store.base import Row, SpendStore
from ..store.query import (
    DIMENSIONS,
    MAX_TOP_N,
    current_month,
    parse_dimension,
    parse_filter,
    parse_group_by,
    parse_positive_int,
)
from . import report

logger = logging.getLogger(__name__)

_FILTER_PARAMS = frozenset({"from", "to", "month", *DIMENSIONS})
_ALLOWED = {
    "spend": _FILTER_PARAMS | {"group_by"},
    "top": _FILTER_PARAMS | {"dimension", "n"},
    "timeseries": _FILTER_PARAMS | {"group_by"},
    "chargeback": frozenset({"month", *DIMENSIONS}),
    "unpriced": _FILTER_PARAMS,
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )


def _check_params(kind: str, query: Mapping[str, str]) -> None:
    for name in query:
        if name not in _ALLOWED[kind]:
            raise QueryError(name, f"unknown parameter; allowed: {', '.join(sorted(_ALLOWED[kind]))}")


def _period(flt: Any) -> dict[str, str | None]:
    return {
        "from": flt.start.isoformat() if flt.start else None,
        "to": flt.end.isoformat() if flt.end else None,
    }


def _totals(rows: list[Row]) -> Row:
    return report.totals(rows)


class QueryApi:
    """Builds the API application around a store; ``health`` supplies the ``/healthz`` body."""

    def __init__(
        self,
        store: SpendStore,
        metrics: CollectorMetrics,
        executor: Executor,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._executor = executor
        self._health = health or (lambda: {})
        self.extra_routes: list[Callable[[web.Application], None]] = []
        """Functions that add more routes (budgets/api.py) when the app is made."""
        self.middlewares: list[Any] = []
        """Middlewares inside the error mapping (the auth policy, auth/gate.py)."""

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, *self.middlewares])
        app.router.add_get("/api/spend", self.spend)
        app.router.add_get("/api/top", self.top)
        app.router.add_get("/api/timeseries", self.timeseries)
        app.router.add_get("/api/chargeback", self.chargeback)
        app.router.add_get("/api/chargeback.csv", self.chargeback_csv)
        app.router.add_get("/api/unpriced", self.unpriced)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        for add_routes in self.extra_routes:
            add_routes(app)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except QueryError as exc:
            return _json({"error": exc.message, "param": exc.param}, status=400)
        except StoreUnavailable as exc:
            logger.warning("query failed: %s", exc)
            return _json({"error": str(exc)}, status=503)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_blocking(self._executor, fn, *args)

    @allow(*ALL_ROLES)
    async def spend(self, request: web.Request) -> web.Response:
        _check_params("spend", request.query)
        flt = scope_filter(identity_of(request), parse_filter(request.query))
        group_by = parse_group_by(request.query.get("group_by"))
        rows = await self._run(self._store.spend, flt, group_by)
        return _json({**_period(flt), "group_by": list(group_by), "rows": rows, "totals": _totals(rows)})

    @allow(*ALL_ROLES)
    async def top(self, request: web.Request) -> web.Response:
        _check_params("top", request.query)
        flt = scope_filter(identity_of(request), parse_filter(request.query))
        dimension = parse_dimension("dimension", request.query.get("dimension"))
        n = parse_positive_int("n", request.query.get("n"), 10, MAX_TOP_N)
        rows = await self._run(self._store.top, flt, dimension, n)
        return _json({**_period(flt), "dimension": dimension, "n": n, "rows": rows})

    @allow(*ALL_ROLES)
    async def timeseries(self, request: web.Request) -> web.Response:
        _check_params("timeseries", request.query)
        flt = scope_filter(identity_of(request), parse_filter(request.query))
        group_by = parse_group_by(request.query.get("group_by"), default=())
        rows = await self._run(self._store.timeseries, flt, group_by)
        return _json({**_period(flt), "group_by": ["day", *[g for g in group_by if g != "day"]], "rows": rows})

    async def _chargeback_rows(self, request: web.Request) -> tuple[str, list[Row]]:
        _check_params("chargeback", request.query)
        query = dict(request.query)
        month = query.setdefault("month", current_month())
        flt = scope_filter(identity_of(request), parse_filter(query))
        return month, await self._run(self._store.chargeback, flt)

    @allow(*ALL_ROLES)
    async def chargeback(self, request: web.Request) -> web.Response:
        month, rows = await self._chargeback_rows(request)
        return _json({"month": month, "rows": rows, "totals": _totals(rows)})

    @allow(*ALL_ROLES)
    async def chargeback_csv(self, request: web.Request) -> web.Response:
        month, rows = await self._chargeback_rows(request)
        return web.Response(
            text=report.chargeback_csv(month, rows),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="chargeback-{month}.csv"'},
        )

    @allow(*ALL_ROLES)
    async def unpriced(self, request: web.Request) -> web.Response:
        _check_params("unpriced", request.query)
        flt = scope_filter(identity_of(request), parse_filter(request.query))
        rows = await self._run(self._store.unpriced, flt)
        return _json({**_period(flt), "rows": rows})

    @public
    async def healthz(self, request: web.Request) -> web.Response:
        # Public so load balancers and probes can call it; the details (store path, connected proxies'
        # addresses) are for admins only.
        try:
            is_admin = identity_of(request).role is Role.ADMIN
        except LookupError:
            is_admin = False
        body = {"status": "ok", **self._health()} if is_admin else {"status": "ok"}
        return _json(_plain(body))

    @public
    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def _plain(value: Any) -> Any:
    """Dataclass snapshots (``stats()`` results) → JSON-ready dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
