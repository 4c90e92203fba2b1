"""The unpriced and unattributed page ``/unpriced``: spend the totals cannot account for yet.

Unpriced calls (no price known for their model) are listed by model and provider: they are counted
as calls, never as zero cost. Unattributed spend is the month's spend with no developer, team, cost
centre or repo; each figure links to the chargeback grouped by that dimension, where the
``(none)`` row is.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..auth.errors import Forbidden
from ..auth.identity import Role, allow, identity_of
from ..auth.scope import scope_filter
from ..errors import QueryError
from ..query.report import totals
from ..store.query import CHARGEBACK_DIMENSIONS, SpendFilter
from .context import DashboardContext
from .page_query import query_month, refusal


class UnpricedPage:
    """``GET /unpriced``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(Role.ADMIN, Role.FINANCE, Role.LEAD)
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        render = self._ctx.renderer
        try:
            month, first, last = query_month(request)
            flt = scope_filter(identity, SpendFilter(first, last))
        except (QueryError, Forbidden) as exc:
            return refusal(render, identity, exc)
        store = self._ctx.store
        unpriced, *by_dimension = await asyncio.gather(
            self._ctx.run(store.unpriced, flt),
            *(self._ctx.run(store.spend, flt, (dim,)) for dim in CHARGEBACK_DIMENSIONS),
        )
        all_rows = by_dimension[0]
        unattributed = []
        for dim, rows in zip(CHARGEBACK_DIMENSIONS, by_dimension, strict=True):
            missing = next((r for r in rows if r[dim] is None), None)
            unattributed.append((dim, missing))
        return render.page(
            "unpriced.html",
            identity=identity,
            active="/unpriced",
            month=month,
            filters=dict(flt.equals),
            unpriced=unpriced,
            unattributed=unattributed,
            total=totals(all_rows),
        )
