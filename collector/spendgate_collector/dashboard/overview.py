"""The overview page ``/``: a month's spend at a glance for the viewer's slice.

Month to date, spend by day (an SVG chart), the top developers, repos, teams and models, and a
forecast to the month's end with its method; a developer paused by a budget sees why, how much is
left and whom to ask. Every figure links to the chargeback rows behind it.

Speed (benchmarks/bench_dashboard.py): one day x model pass gives the total, the trend and the top
models; the store answers it from the team-day rollup (store/team_daily_rollup.py) unless the
viewer is a developer; the top developers, repos and teams come from the monthly rollup.
The queries run side by side on the API's thread pool and nothing is cached, so a viewer never sees
stale spend.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from ..auth.errors import Forbidden
from ..auth.identity import ALL_ROLES, Role, allow, identity_of
from ..auth.scope import scope_filter
from ..budgets import Budget
from ..errors import QueryError
from ..query.report import totals
from ..store.query import SpendFilter
from .access import budget_rights, scope_note
from .charts import Bar, bar_chart
from .context import DashboardContext
from .forecast import forecast_month
from .page_query import query_month, refusal
from .render import url, usd

TOP_N = 10


def shift_month(month: str, delta: int) -> str:
    """``YYYY-MM`` moved by ``delta`` months (the pages' previous / next month links)."""
    year, mon = int(month[:4]), int(month[5:7]) + delta
    year, mon = year + (mon - 1) // 12, (mon - 1) % 12 + 1
    return f"{year:04d}-{mon:02d}"


class OverviewPage:
    """``GET /``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(*ALL_ROLES)
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        render = self._ctx.renderer
        try:
            month, first, last = query_month(request)
            asked = SpendFilter(first, last, (("team", request.query["team"]),) if request.query.get("team") else ())
            flt = scope_filter(identity, asked)
        except (QueryError, Forbidden) as exc:
            return refusal(render, identity, exc)
        store = self._ctx.store
        by_day_model, developers, repos, teams, statuses = await asyncio.gather(
            self._ctx.run(store.timeseries, flt, ("model",)),
            self._ctx.run(store.top, flt, "developer", TOP_N),
            self._ctx.run(store.top, flt, "repo", TOP_N),
            self._ctx.run(store.top, flt, "team", TOP_N),
            self._budgets(),
        )
        statuses, budgets = statuses
        day_cost: dict[str, float] = defaultdict(float)
        models: dict[str | None, list[Any]] = {}
        for row in by_day_model:
            day_cost[row["day"]] += row["cost_usd"] or 0.0
            models.setdefault(row["model"], []).append(row)
        model_rows = sorted(
            ({"model": m, **totals(rs)} for m, rs in models.items()),
            key=lambda r: (-(r["cost_usd"] or 0), -r["requests"], r["model"] or ""),
        )[:TOP_N]
        total = totals(by_day_model)
        filters = dict(flt.equals)
        base = {"month": month, **filters}
        now = datetime.now(UTC)
        is_current = month == now.strftime("%Y-%m")
        forecast = forecast_month({date.fromisoformat(d): v for d, v in day_cost.items()}, now) if is_current else None
        bars = []
        for day_no in range(1, last.day + 1):
            day = first.replace(day=day_no)
            key = day.isoformat()
            bars.append(
                Bar(
                    label=str(day_no),
                    value=day_cost.get(key, 0.0),
                    href=url("/chargeback", {**filters, "from": key, "to": key}),
                    tooltip=f"{key}: {usd(day_cost.get(key, 0.0))}",
                    muted=is_current and day >= now.date(),
                )
            )
        seen, _ = budget_rights(identity, budgets)
        pauses = [s for s in statuses if s["verdicts"] and s["id"] in seen]
        return render.page(
            "overview.html",
            identity=identity,
            active="/",
            month=month,
            prev_month=shift_month(month, -1),
            next_month=shift_month(month, 1) if not is_current else None,
            scope_note=scope_note(identity, filters, dict(flt.within)),
            lead_teams=identity.teams if identity.role is Role.LEAD and len(identity.teams) > 1 else (),
            base=base,
            total=total,
            forecast=forecast,
            chart=bar_chart(bars, label_every=2 if last.day > 16 else 1),
            tops=[
                ("Developers", "developer", developers),
                ("Repositories", "repo", repos),
                ("Teams", "team", teams),
                ("Models", "model", model_rows),
            ],
            pauses=pauses,
        )

    async def _budgets(self) -> tuple[list[dict[str, Any]], list[Budget]]:
        """Every budget's status and definition (the page keeps those the viewer may see)."""
        engine = self._ctx.budgets
        if engine is None:
            return [], []
        return await self._ctx.run(engine.status), await self._ctx.run(engine.budgets)
