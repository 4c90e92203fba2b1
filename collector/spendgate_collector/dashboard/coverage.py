"""The attribution coverage page ``/coverage``: what share of spend has a repository, and who named it.

The numbers are ``GET /api/coverage``'s (``coverage.build`` over the coverage rollup, narrowed to the
viewer's slice by the same ``scope_filter``), for one month and optionally grouped by team, developer
or cost centre: per group a stacked bar of the source mix and one table line per category x source
with its calls, cost and shares. Each figure links to the chargeback rows behind it: the chargeback
has no "repo is empty" filter, so attributed and unattributed spend open that group's chargeback
grouped by repo (the ``(none)`` row is the unattributed part); Cursor-billed spend opens it filtered
to provider ``cursor``, the provider Cursor Admin API rows carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from ..attribution import coverage as cov
from ..auth.errors import Forbidden
from ..auth.identity import Role, allow, identity_of
from ..auth.scope import scope_filter
from ..cursor_admin.mapping import PROVIDER as CURSOR_PROVIDER
from ..errors import QueryError
from ..store.query import current_month
from .access import scope_note
from .charts import Segment, stacked_bar
from .context import DashboardContext
from .overview import shift_month
from .page_query import query_params, refusal
from .render import url

_PARAMS = cov.PARAMS - {"from", "to"}
"""The API's parameters but its day range: the page is by month, like the overview."""


def rows_link(base: Mapping[str, str], group: Mapping[str, str | None], category: str) -> str:
    """The chargeback rows behind one coverage figure of ``group`` (see the module docstring)."""
    unnamed = [g for g, v in group.items() if v is None]
    named = {g: v for g, v in group.items() if v is not None}
    if unnamed:
        # No filter selects "team is empty": show that dimension grouped, where the (none) row is.
        return url("/chargeback", base, **named, group_by=unnamed[0])
    if category == cov.CURSOR_BILLED:
        return url("/chargeback", base, **named, provider=CURSOR_PROVIDER, group_by="developer")
    return url("/chargeback", base, **named, group_by="repo")


def _segments(
    lines: Sequence[Mapping[str, Any]], base: Mapping[str, str], group: Mapping[str, str | None]
) -> list[Segment]:
    """One segment per category x source line, sized by cost share (by calls when nothing is priced)."""
    by_cost = any(line["cost_share"] for line in lines)
    segments = []
    for line in lines:
        share = (line["cost_share"] if by_cost else line["requests_share"]) or 0.0
        segments.append(
            Segment(
                share=share,
                kind=line["kind"],
                href=rows_link(base, group, line["category"]),
                tooltip=f"{line['category']} / {line['source']}: {share * 100:.1f} % of "
                + ("cost" if by_cost else "calls"),
            )
        )
    return segments


def _with_kinds(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each line with its CSS classes: the category's colour, a lighter shade for each further source."""
    seen: dict[str, int] = {}
    out = []
    for line in lines:
        n = seen.get(line["category"], 0)
        seen[line["category"]] = n + 1
        out.append({**line, "kind": f"{line['category']} s{min(n, 3)}"})
    return out


class CoveragePage:
    """``GET /coverage``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(Role.ADMIN, Role.FINANCE, Role.LEAD, Role.DEVELOPER)
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        render = self._ctx.renderer
        params = query_params(request, _PARAMS)
        month = params.setdefault("month", current_month())
        try:
            asked, group_by = cov.parse_params(params)
            if len(group_by) > 1:
                raise QueryError("group_by", "the page groups by one dimension; the API takes several")
            flt = scope_filter(identity, asked)
        except (QueryError, Forbidden) as exc:
            return refusal(render, identity, exc)
        store = self._ctx.store
        # The whole slice's summary heads the page; with a grouping, the groups are a second question.
        if group_by:
            whole_rows, group_rows = await asyncio.gather(
                self._ctx.run(store.coverage, flt, ()), self._ctx.run(store.coverage, flt, group_by)
            )
        else:
            whole_rows = group_rows = await self._ctx.run(store.coverage, flt, ())
        whole = cov.build(whole_rows, ())
        report = cov.build(group_rows, group_by)
        filters = dict(flt.equals)
        base = {"month": month, **filters}
        groups = []
        for entry in report["summary"]:
            group = {g: entry[g] for g in group_by}
            lines = _with_kinds([r for r in report["rows"] if all(r[g] == v for g, v in group.items())])
            groups.append(
                {
                    "names": group,
                    "label": ", ".join(str(v) if v is not None else "(none)" for v in group.values()) or "All spend",
                    "summary": entry,
                    "bar": stacked_bar(_segments(lines, base, group)),
                    "lines": [{**line, "href": rows_link(base, group, line["category"])} for line in lines],
                    "href": {c: rows_link(base, group, c) for c in cov.CATEGORIES},
                }
            )
        return render.page(
            "coverage.html",
            identity=identity,
            active="/coverage",
            month=month,
            prev_month=shift_month(month, -1),
            next_month=shift_month(month, 1) if month < current_month() else None,
            scope_note=scope_note(identity, filters, dict(flt.within)),
            base=base,
            group_by=group_by,
            groupable=cov.GROUPABLE,
            overall=whole["summary"][0] if whole["summary"] else None,
            overall_href={c: rows_link(base, {}, c) for c in cov.CATEGORIES},
            groups=groups,
            categories=cov.CATEGORIES,
        )
