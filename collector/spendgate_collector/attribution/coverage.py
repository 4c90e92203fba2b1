"""Attribution coverage: what share of spend has a repository, by the source that named it.

Built from the coverage rollup (``store/coverage_rollup.py``), so a month of millions of spans is a
few thousand rows to sum. Every call falls in exactly one category:

- ``attributed``: it has a repo; ``source`` says how it was found (``spendgate.repo.source``:
  header, path-prefix, model-alias, cursor-hook, prompt-workspace, key-default, sdk...;
  ``unspecified`` when a repo came without a source, ``untracked`` for spend back-filled from
  before the coverage rollup existed);
- ``unattributed``: gateway traffic with no repo (source ``none``, or the source recorded);
- ``cursor-billed``: rows read from the Cursor Admin API. Cursor's usage events name no repo, so
  these never have one; they are their own line so they do not read as a gateway misconfiguration.

Shares are of the group's total (all three categories); ``gateway_coverage`` is the attributed
share of gateway traffic only (attributed / (attributed + unattributed)). See docs/chargeback.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spendgate_semconv.attributes import RepoSource

from ..errors import QueryError
from ..store.coverage_rollup import NANOS_PER_USD
from ..store.query import DIMENSIONS, SpendFilter, parse_filter

GROUPABLE = ("developer", "team", "cost_center")
"""What a coverage report may be grouped (and filtered) by: the rollup's identity columns."""

ATTRIBUTED = "attributed"
UNATTRIBUTED = "unattributed"
CURSOR_BILLED = "cursor-billed"
CATEGORIES = (ATTRIBUTED, UNATTRIBUTED, CURSOR_BILLED)

UNSPECIFIED = "unspecified"
"""Label of calls that have a repo but no recorded source (another instrumentation set the repo)."""

PARAMS = frozenset({"from", "to", "month", "group_by", *GROUPABLE})
"""Query parameters ``GET /api/coverage`` accepts."""

COLUMNS: tuple[str, ...] = (
    "category",
    "source",
    "requests",
    "requests_share",
    "cost_usd",
    "cost_share",
    "unpriced_requests",
    "input_tokens",
    "output_tokens",
)
"""Columns of one coverage line, after the group columns (CSV and JSON ``rows``)."""


def parse_params(params: Mapping[str, str]) -> tuple[SpendFilter, tuple[str, ...]]:
    """The filter and grouping of a coverage question; ``QueryError`` naming the bad parameter."""
    for name in DIMENSIONS:
        if name not in GROUPABLE and params.get(name):
            raise QueryError(name, f"coverage is counted per developer, team and cost_center only, not per {name}")
    group_by: tuple[str, ...] = ()
    text = params.get("group_by") or ""
    if text.strip():
        group_by = tuple(part.strip() for part in text.split(",") if part.strip())
        for name in group_by:
            if name not in GROUPABLE:
                raise QueryError("group_by", f"unknown dimension {name!r}; choose from {', '.join(GROUPABLE)}")
        if len(set(group_by)) != len(group_by):
            raise QueryError("group_by", "a dimension is named twice")
    return parse_filter(params), group_by


def category(source: str, attributed: bool) -> str:
    """Which of ``CATEGORIES`` a rollup line belongs to."""
    if source == RepoSource.CURSOR_ADMIN_API:
        return CURSOR_BILLED
    return ATTRIBUTED if attributed else UNATTRIBUTED


def _label(source: str, attributed: bool) -> str:
    if source:
        return source
    return UNSPECIFIED if attributed else RepoSource.NONE


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _measures(acc: Mapping[str, int], total: Mapping[str, int]) -> dict[str, Any]:
    requests, unpriced, nanos = acc["requests"], acc["unpriced_requests"], acc["cost_nanos"]
    return {
        "requests": requests,
        "requests_share": _share(requests, total["requests"]),
        # Only unpriced calls: no known cost (null), never a misleading 0, as in the chargeback.
        "cost_usd": None if requests and unpriced == requests else round(nanos / NANOS_PER_USD, 9),
        "cost_share": _share(nanos, total["cost_nanos"]),
        "unpriced_requests": unpriced,
        "input_tokens": acc["input_tokens"],
        "output_tokens": acc["output_tokens"],
    }


def _zero() -> dict[str, int]:
    return {"requests": 0, "unpriced_requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_nanos": 0}


def _add(acc: dict[str, int], row: Mapping[str, Any]) -> None:
    for name in acc:
        acc[name] += row.get(name) or 0


def build(rows: Sequence[Mapping[str, Any]], group_by: Sequence[str]) -> dict[str, Any]:
    """Store rows (``SpendStore.coverage``) → ``{"rows": [...], "summary": [...]}``.

    ``rows``: one line per group x category x source, attributed first, costliest first within a
    category. ``summary``: per group, the totals and each category's requests and cost with shares,
    and ``gateway_coverage``.
    """
    groups: dict[tuple[Any, ...], dict[tuple[str, str], dict[str, int]]] = {}
    for row in rows:
        group = tuple(row[g] or None for g in group_by)
        attributed = bool(row["attributed"])
        source = str(row["repo_source"] or "")
        key = (category(source, attributed), _label(source, attributed))
        acc = groups.setdefault(group, {}).setdefault(key, _zero())
        _add(acc, row)

    out_rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for group in sorted(groups, key=lambda g: tuple("" if v is None else v for v in g)):
        lines = groups[group]
        names = dict(zip(group_by, group, strict=True))
        total = _zero()
        per_category = {c: _zero() for c in CATEGORIES}
        for (cat, _source), acc in lines.items():
            _add(total, acc)
            _add(per_category[cat], acc)
        order = sorted(
            lines, key=lambda k: (CATEGORIES.index(k[0]), -lines[k]["cost_nanos"], -lines[k]["requests"], k[1])
        )
        for cat, source in order:
            out_rows.append({**names, "category": cat, "source": source, **_measures(lines[(cat, source)], total)})
        gateway = _zero()
        _add(gateway, per_category[ATTRIBUTED])
        _add(gateway, per_category[UNATTRIBUTED])
        summary.append(
            {
                **names,
                "total": _measures(total, total),
                **{c.replace("-", "_"): _measures(per_category[c], total) for c in CATEGORIES},
                "gateway_coverage": {
                    "requests_share": _share(per_category[ATTRIBUTED]["requests"], gateway["requests"]),
                    "cost_share": _share(per_category[ATTRIBUTED]["cost_nanos"], gateway["cost_nanos"]),
                },
            }
        )
    return {"group_by": list(group_by), "rows": out_rows, "summary": summary}


def body(flt: SpendFilter, report: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/api/coverage`` JSON: the period, then ``build``'s ``group_by``, ``rows`` and ``summary``."""
    return {
        "from": flt.start.isoformat() if flt.start else None,
        "to": flt.end.isoformat() if flt.end else None,
        **report,
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def format_table(report: Mapping[str, Any]) -> str:
    """The readable form: one line per category x source, then one plain sentence per group."""
    group_by: list[str] = report["group_by"]
    headers = [
        *(g.replace("_", " ") for g in group_by),
        "category",
        "source",
        "requests",
        "req share",
        "cost USD",
        "cost share",
    ]
    lines = []
    for row in report["rows"]:
        lines.append(
            [
                *("(none)" if row[g] is None else str(row[g]) for g in group_by),
                row["category"],
                row["source"],
                f"{row['requests']:,}",
                _percent(row["requests_share"]),
                "n/a" if row["cost_usd"] is None else f"{row['cost_usd']:,.4f}",
                _percent(row["cost_share"]),
            ]
        )
    numeric = set(range(len(group_by) + 2, len(headers)))
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [render(headers), render(["-" * w for w in widths]), *(render(line) for line in lines)]
    if not lines:
        out.append("(no spend in this period)")
    out.append("")
    for entry in report["summary"]:
        who = ", ".join(f"{g} {entry[g] or '(none)'}" for g in group_by) or "All spend"
        out.append(
            f"{who}: repo known for {_percent(entry['attributed']['requests_share'])} of requests "
            f"({_percent(entry['attributed']['cost_share'])} of cost); no repo "
            f"{_percent(entry['unattributed']['requests_share'])} ({_percent(entry['unattributed']['cost_share'])}); "
            f"Cursor-billed, no repo by nature, {_percent(entry['cursor_billed']['requests_share'])} "
            f"({_percent(entry['cursor_billed']['cost_share'])}). Gateway traffic with a repo: "
            f"{_percent(entry['gateway_coverage']['requests_share'])} of requests, "
            f"{_percent(entry['gateway_coverage']['cost_share'])} of cost."
        )
    return "\n".join(out) + "\n"
