"""HTTP routes for attribution quality, mounted on the query API through ``QueryApi.extra_routes``.

    GET /api/coverage?month=|from=&to=&developer=&team=&cost_center=&group_by=team|developer|cost_center
        share of spend with a repo, by attribution source; Cursor-billed spend on its own line
    GET /api/reconcile?month=|from=&to=&developer=&team=&min_gap=&tolerance=&settle_hours=
        per developer and UTC hour, gateway calls against Cursor's BYOK requests; the gaps

Coverage is open to every role, narrowed to the asker's slice (``auth.scope.scope_filter``: a
developer sees their own, a lead their teams'); reconciliation to admin, finance and lead (a lead's
developers are those with spend in their teams). A bad parameter answers 400 naming it, through the
query API's error middleware. Queries run on the API's thread pool, never on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..auth.identity import REQUEST_KEY, Identity, Role, allow
from ..auth.scope import scope_filter
from ..errors import QueryError
from ..http.blocking import run_blocking
from ..store.base import SpendStore
from ..store.query import SpendFilter
from . import coverage, reconcile


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _check_params(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    for name in query:
        if name not in allowed:
            raise QueryError(name, f"unknown parameter; allowed: {', '.join(sorted(allowed))}")


def _scoped(request: web.Request, flt: SpendFilter) -> SpendFilter:
    """``flt`` narrowed to the signed-in identity's slice; unchanged when no auth middleware is mounted."""
    identity = request.get(REQUEST_KEY)
    return scope_filter(identity, flt) if isinstance(identity, Identity) else flt


class AttributionApi:
    """``/api/coverage`` and ``/api/reconcile`` over a store and its database file."""

    def __init__(
        self,
        store: SpendStore,
        db_path: str | Path,
        executor: Executor,
        *,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._store = store
        self._db_path = Path(db_path)
        self._executor = executor
        self._now_ms = now_ms

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/coverage", self.coverage)
        app.router.add_get("/api/reconcile", self.reconcile)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_blocking(self._executor, fn, *args)

    @allow(Role.ADMIN, Role.FINANCE, Role.LEAD, Role.DEVELOPER)
    async def coverage(self, request: web.Request) -> web.Response:
        _check_params(request.query, coverage.PARAMS)
        flt, group_by = coverage.parse_params(request.query)
        flt = _scoped(request, flt)
        rows = await self._run(self._store.coverage, flt, group_by)
        return _json(coverage.body(flt, coverage.build(rows, group_by)))

    @allow(Role.ADMIN, Role.FINANCE, Role.LEAD)
    async def reconcile(self, request: web.Request) -> web.Response:
        _check_params(request.query, reconcile.PARAMS)
        flt, options = reconcile.parse_params(request.query)
        flt = _scoped(request, flt)
        body = await self._run(reconcile.reconcile, self._store, self._db_path, flt, options, self._now_ms())
        return _json(body)
