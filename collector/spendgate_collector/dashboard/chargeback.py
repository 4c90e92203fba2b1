"""The chargeback page ``/chargeback``: spend grouped and filtered, with the CSV finance downloads.

Query parameters are the API's (``month`` or ``from``/``to``, one filter per dimension) plus
``group_by``; the default grouping is the chargeback's (developer x team x cost centre x repo).
The CSV link is ``/api/chargeback.csv`` with the same month and filters, so the file is the API's,
byte for byte. Each dimension value links to the table filtered to it.
"""

from __future__ import annotations

from aiohttp import web

from ..auth.errors import Forbidden
from ..auth.identity import ALL_ROLES, allow, identity_of
from ..auth.scope import scope_filter
from ..errors import QueryError
from ..query.report import totals
from ..store.query import CHARGEBACK_DIMENSIONS, DIMENSIONS, GROUPABLE, current_month, parse_filter, parse_group_by
from .context import DashboardContext
from .page_query import query_params, refusal

MAX_ROWS = 1000
"""Rows shown on the page; the CSV carries every row."""
_PARAMS = frozenset({"month", "from", "to", "group_by", *DIMENSIONS})


class ChargebackPage:
    """``GET /chargeback``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(*ALL_ROLES)
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        render = self._ctx.renderer
        params = query_params(request, _PARAMS)
        if not params.get("from") and not params.get("to"):
            params.setdefault("month", current_month())
        try:
            flt = scope_filter(identity, parse_filter(params))
            group_by = parse_group_by(params.get("group_by"), default=CHARGEBACK_DIMENSIONS)
        except (QueryError, Forbidden) as exc:
            return refusal(render, identity, exc)
        if group_by == CHARGEBACK_DIMENSIONS:
            rows = await self._ctx.run(self._ctx.store.chargeback, flt)
        else:
            rows = await self._ctx.run(self._ctx.store.spend, flt, group_by)
        filters = dict(flt.equals)
        # The link keeps the viewer's scope filters, so what they download is the slice they see.
        period = {"month": params.get("month"), "from": params.get("from"), "to": params.get("to")}
        csv_month = params.get("month") or (params.get("from") or current_month())[:7]
        return render.page(
            "chargeback.html",
            identity=identity,
            active="/chargeback",
            params=params,
            period=period,
            filters=filters,
            group_by=group_by,
            default_grouping=group_by == CHARGEBACK_DIMENSIONS,
            groupable=[g for g in GROUPABLE if g != "month"],
            dimensions=DIMENSIONS,
            rows=rows[:MAX_ROWS],
            row_count=len(rows),
            max_rows=MAX_ROWS,
            total=totals(rows),
            link_dims=set(DIMENSIONS),
            csv_params={"month": csv_month, **filters},
            csv_whole_month=not params.get("month"),
        )
