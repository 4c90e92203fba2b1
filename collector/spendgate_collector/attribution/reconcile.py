"""Reconciliation: per developer and UTC hour, the gateway's calls against Cursor's BYOK requests.

A Cursor request on the team's own API key ("BYOK", ``kind`` naming an API key) should have gone
through the gateway when the developer's base URL points at it. So, per developer and hour:

- gateway side: calls the gateway recorded, by the hour of the call's **start**
  (``store/developer_hours.py``); Cursor-billed rows are not counted;
- Cursor side: BYOK usage events from the Admin API, by the hour of their timestamp
  (``cursor_admin/byok.py``); and per day, ``apiKeyReqs`` from ``/teams/daily-usage-data``
  (``cursor_admin/daily_usage.py``) as a cross-check of the events themselves.

All hours are UTC (Unix time divided by 3600), on both sides. A call that starts just before an
hour boundary can land in the next hour on the other side, so before judging, opposite differences
in two adjacent hours cancel out. A gap is a remaining difference of at least ``min_gap`` requests
and more than ``tolerance`` of the larger count.

Cursor's data lags: it aggregates usage hourly and the poller reads it every few minutes. An hour
is judged only once it ended ``settle_hours`` before the poller's last complete read (and before
now); later hours are reported as pending, never as gaps. Only developers Cursor reports in the
period (a BYOK event or a daily-usage row) are compared: other gateway users are not Cursor users.
See docs/cursor-admin.md.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..cursor_admin import byok, daily_usage
from ..cursor_admin.state import TABLE as STATE_TABLE
from ..errors import QueryError
from ..store import db
from ..store.base import SpendStore
from ..store.query import SpendFilter, current_month, parse_filter

PARAMS = frozenset({"from", "to", "month", "developer", "team", "min_gap", "tolerance", "settle_hours"})
"""Query parameters ``GET /api/reconcile`` accepts."""

DEFAULT_MIN_GAP = 3
DEFAULT_TOLERANCE = 0.1
DEFAULT_SETTLE_HOURS = 2
"""Cursor aggregates usage hourly and the poller re-reads 2 hours by default: hours newer than this are not final."""

MS_PER_HOUR = 3_600_000
HOURS_PER_DAY = 24

CURSOR_ONLY = "cursor-only"
CURSOR_MORE = "cursor-more"
GATEWAY_ONLY = "gateway-only"
GATEWAY_MORE = "gateway-more"
SOURCES_DISAGREE = "cursor-sources-disagree"

COLUMNS: tuple[str, ...] = (
    "developer",
    "period",
    "start",
    "end",
    "kind",
    "gap",
    "gateway_requests",
    "cursor_byok_requests",
    "cursor_api_key_reqs",
    "gateway_input_tokens",
    "gateway_output_tokens",
    "cursor_input_tokens",
    "cursor_output_tokens",
    "reason",
)
"""Columns of one gap (CSV and JSON ``gaps``)."""


@dataclass(frozen=True, slots=True)
class Options:
    """How strict the comparison is."""

    min_gap: int = DEFAULT_MIN_GAP
    tolerance: float = DEFAULT_TOLERANCE
    settle_hours: int = DEFAULT_SETTLE_HOURS


def parse_params(params: Mapping[str, str]) -> tuple[SpendFilter, Options]:
    """Period (default: this month), developer/team filters and options; ``QueryError`` names the bad one."""
    query = dict(params)
    if not any(query.get(k) for k in ("month", "from", "to")):
        query["month"] = current_month()
    for name in ("repo", "model", "feature", "provider", "cost_center"):
        if query.get(name):
            raise QueryError(name, "reconciliation is per developer (or team), not per " + name)
    flt = parse_filter(query)
    if flt.start is None or flt.end is None:
        raise QueryError("from", "reconciliation needs a closed period: give month, or both from and to")
    options = Options(
        min_gap=_int_param(query, "min_gap", DEFAULT_MIN_GAP, 1, 1_000_000),
        tolerance=_float_param(query, "tolerance", DEFAULT_TOLERANCE),
        settle_hours=_int_param(query, "settle_hours", DEFAULT_SETTLE_HOURS, 0, 72),
    )
    return flt, options


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(name, f"expected an integer, got {text!r}") from None
    if not low <= value <= high:
        raise QueryError(name, f"must be between {low} and {high}, got {value}")
    return value


def _float_param(query: Mapping[str, str], name: str, default: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise QueryError(name, f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise QueryError(name, f"must be at least 0 and below 1, got {value}")
    return value


def _iso_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_start_hour(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) // 3600


def _polled_until_ms(conn: sqlite3.Connection) -> int | None:
    """End of the Cursor poller's last complete read (latest over polled teams), or ``None``: never polled."""
    try:
        row = conn.execute(f"SELECT max(scanned_to_ms) FROM {STATE_TABLE}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(row[0]) if row and row[0] else None


def _developers(store: SpendStore, flt: SpendFilter) -> list[str] | None:
    """Lowercased developers the filter narrows to, or ``None`` for everyone.

    A team (asked for, or a lead's scope) is resolved to the developers with spend in that team in
    the period, since neither side of the comparison is keyed by team.
    """
    asked = dict(flt.equals)
    developer = asked.get("developer")
    team_conditions = [(n, v) for n, v in flt.equals if n == "team"]
    team_within = [(n, v) for n, v in flt.within if n == "team"]
    if not team_conditions and not team_within:
        return None if developer is None else [developer.lower()]
    team_flt = replace(flt, equals=tuple(team_conditions), within=tuple(team_within))
    members = {str(r["developer"]).lower() for r in store.spend(team_flt, ("developer",)) if r.get("developer")}
    if developer is not None:
        return [developer.lower()] if developer.lower() in members else []
    return sorted(members)


def _smooth(diff: dict[int, int]) -> dict[int, int]:
    """Cancel opposite differences in adjacent hours (a call straddling the boundary), earliest first."""
    out = dict(diff)
    for hour in sorted(out):
        nxt = hour + 1
        if nxt in out and out[hour] * out[nxt] < 0:
            moved = min(abs(out[hour]), abs(out[nxt]))
            out[hour] += moved if out[hour] < 0 else -moved
            out[nxt] += moved if out[nxt] < 0 else -moved
    return out


def _flagged(gap: int, a: int, b: int, options: Options) -> bool:
    return abs(gap) >= options.min_gap and abs(gap) > options.tolerance * max(a, b)


def _hour_reason(developer: str, gateway: int, cursor: int, gap: int) -> tuple[str, str]:
    if gap > 0 and gateway == 0:
        return CURSOR_ONLY, (
            f"Cursor reports {cursor} requests on an API key and the gateway saw none from {developer}: "
            "Cursor's base URL on their machine is probably not the gateway (override off, or a wrong URL), "
            "or they used a personal provider key outside the gateway."
        )
    if gap > 0:
        return CURSOR_MORE, (
            f"Cursor reports {cursor} requests on an API key, the gateway saw {gateway}: {gap} went around the "
            "gateway (another machine or Cursor profile with a direct key), or their spans were lost on the way "
            "(check the proxy's export queue)."
        )
    if cursor == 0:
        return GATEWAY_ONLY, (
            f"The gateway saw {gateway} requests from {developer} and Cursor reports none on an API key: they came "
            "from another client on this developer's key (an SDK app, a script, another editor), or Cursor's data "
            "for this hour is incomplete."
        )
    return GATEWAY_MORE, (
        f"The gateway saw {gateway} requests, Cursor reports {cursor} on an API key: the other {-gap} came from "
        "another client on this developer's key, or Cursor has not reported all of this hour yet."
    )


def _day_reason(api_key_reqs: int, events: int) -> str:
    if api_key_reqs > events:
        return (
            f"Cursor's daily usage counts {api_key_reqs} API-key requests but only {events} usage events were read: "
            "some events were missed (the poller was off longer than Cursor keeps them, or its first read did not "
            "reach back this far), so this day's hourly comparison is incomplete."
        )
    return (
        f"Cursor's usage events list {events} API-key requests but its daily usage counts {api_key_reqs}: the "
        "daily figure was probably read before the day was final; it is re-read on the next poll."
    )


def reconcile(
    store: SpendStore, db_path: str | Path, flt: SpendFilter, options: Options, now_ms: int
) -> dict[str, Any]:
    """The gaps for ``flt``'s period (closed day range) and developers, as a JSON-ready dict."""
    assert flt.start is not None and flt.end is not None
    start_hour = _day_start_hour(flt.start)
    end_hour = _day_start_hour(flt.end + timedelta(days=1))
    developers = _developers(store, flt)
    # Read-only: reconciliation may read a file no collector has migrated (``spendgate report --db``).
    with contextlib.closing(db.connect(Path(db_path), readonly=True)) as conn:
        polled_until = _polled_until_ms(conn)
        cursor_hours = byok.hourly(conn, start_hour * MS_PER_HOUR, end_hour * MS_PER_HOUR, developers)
        daily = daily_usage.read(conn, flt.start.isoformat(), flt.end.isoformat(), developers)
    gateway_hours = store.developer_hours(start_hour, end_hour, developers)

    header: dict[str, Any] = {
        "from": flt.start.isoformat(),
        "to": flt.end.isoformat(),
        "min_gap": options.min_gap,
        "tolerance": options.tolerance,
        "settle_hours": options.settle_hours,
        "cursor_polled_until": _iso_hour(polled_until // MS_PER_HOUR) if polled_until else None,
    }
    if polled_until is None:
        return {
            **header,
            "judged_until": None,
            "note": "The Cursor Admin API connector has not read this database's Cursor data yet "
            "(cursor_admin.enabled in the collector config): there is nothing to compare with.",
            "summary": _summary(0, 0, 0, 0, 0, 0),
            "gaps": [],
        }
    # The first hour NOT judged: settle_hours before the last complete read, and never in the future.
    judged_until = min(polled_until, now_ms) // MS_PER_HOUR - options.settle_hours
    header["judged_until"] = _iso_hour(judged_until)

    cursor = {(r["developer"], r["hour"]): r for r in cursor_hours}
    gateway = {(r["developer"], r["hour"]): r for r in gateway_hours}
    cursor_users = {d for d, _ in cursor} | {r["developer"] for r in daily}

    gaps: list[dict[str, Any]] = []
    judged = pending = gateway_total = cursor_total = 0
    for developer in sorted(cursor_users):
        hours = sorted({h for d, h in cursor if d == developer} | {h for d, h in gateway if d == developer})
        diff: dict[int, int] = {}
        for hour in hours:
            c = cursor.get((developer, hour), {}).get("requests", 0)
            g = gateway.get((developer, hour), {}).get("requests", 0)
            if hour >= judged_until:
                pending += 1
                continue
            judged += 1
            gateway_total += g
            cursor_total += c
            diff[hour] = c - g
        for hour, gap in sorted(_smooth(diff).items()):
            c_row = cursor.get((developer, hour), {})
            g_row = gateway.get((developer, hour), {})
            c, g = c_row.get("requests", 0), g_row.get("requests", 0)
            if not gap or not _flagged(gap, c, g, options):
                continue
            kind, reason = _hour_reason(developer, g, c, gap)
            gaps.append(
                {
                    "developer": developer,
                    "period": "hour",
                    "start": _iso_hour(hour),
                    "end": _iso_hour(hour + 1),
                    "kind": kind,
                    "gap": gap,
                    "gateway_requests": g,
                    "cursor_byok_requests": c,
                    "cursor_api_key_reqs": None,
                    "gateway_input_tokens": g_row.get("input_tokens", 0),
                    "gateway_output_tokens": g_row.get("output_tokens", 0),
                    "cursor_input_tokens": c_row.get("input_tokens", 0),
                    "cursor_output_tokens": c_row.get("output_tokens", 0),
                    "reason": reason,
                }
            )
    gaps.extend(_daily_gaps(daily, cursor, gateway, judged_until, options))
    gaps.sort(key=lambda g: (g["developer"], g["start"], g["period"]))
    summary = _summary(len(cursor_users), judged, pending, gateway_total, cursor_total, len(gaps))
    return {**header, "summary": summary, "gaps": gaps}


def _daily_gaps(
    daily: Sequence[Mapping[str, Any]],
    cursor: Mapping[tuple[str, int], Mapping[str, Any]],
    gateway: Mapping[tuple[str, int], Mapping[str, Any]],
    judged_until: int,
    options: Options,
) -> list[dict[str, Any]]:
    """Days (over by ``judged_until``) where ``apiKeyReqs`` and the BYOK events read disagree."""
    out = []
    for row in daily:
        first = _day_start_hour(date.fromisoformat(row["day"]))
        if first + HOURS_PER_DAY > judged_until:
            continue  # the day is not final yet
        developer = row["developer"]
        hours = range(first, first + HOURS_PER_DAY)
        events = sum(cursor.get((developer, h), {}).get("requests", 0) for h in hours)
        seen = sum(gateway.get((developer, h), {}).get("requests", 0) for h in hours)
        api_key_reqs = int(row["api_key_reqs"] or 0)
        gap = api_key_reqs - events
        if not gap or not _flagged(gap, api_key_reqs, events, options):
            continue
        out.append(
            {
                "developer": developer,
                "period": "day",
                "start": _iso_hour(first),
                "end": _iso_hour(first + HOURS_PER_DAY),
                "kind": SOURCES_DISAGREE,
                "gap": gap,
                "gateway_requests": seen,
                "cursor_byok_requests": events,
                "cursor_api_key_reqs": api_key_reqs,
                "gateway_input_tokens": sum(gateway.get((developer, h), {}).get("input_tokens", 0) for h in hours),
                "gateway_output_tokens": sum(gateway.get((developer, h), {}).get("output_tokens", 0) for h in hours),
                "cursor_input_tokens": sum(cursor.get((developer, h), {}).get("input_tokens", 0) for h in hours),
                "cursor_output_tokens": sum(cursor.get((developer, h), {}).get("output_tokens", 0) for h in hours),
                "reason": _day_reason(api_key_reqs, events),
            }
        )
    return out


def _summary(
    developers: int, judged: int, pending: int, gateway_total: int, cursor_total: int, gaps: int
) -> dict[str, int]:
    return {
        "developers_compared": developers,
        "developer_hours_judged": judged,
        "developer_hours_pending": pending,
        "gateway_requests_judged": gateway_total,
        "cursor_byok_requests_judged": cursor_total,
        "gaps": gaps,
    }


def format_table(report: Mapping[str, Any]) -> str:
    """The readable form: what was compared, then one block per gap with its reason."""
    s = report["summary"]
    lines = [
        f"Reconciliation {report['from']} .. {report['to']} (UTC hours): {s['developers_compared']} developers, "
        f"{s['developer_hours_judged']} developer-hours judged, {s['developer_hours_pending']} pending.",
        f"Judged: hours before {report['judged_until'] or '-'} (Cursor data read until "
        f"{report['cursor_polled_until'] or 'never'}, minus {report['settle_hours']} h for Cursor's lag).",
        f"Flagged: a difference of at least {report['min_gap']} requests and more than "
        f"{report['tolerance'] * 100:g} % of the larger side.",
    ]
    if report.get("note"):
        lines.append(report["note"])
    lines.append("")
    if not report["gaps"]:
        lines.append("No gaps.")
    for gap in report["gaps"]:
        counts = f"gateway {gap['gateway_requests']}, Cursor BYOK events {gap['cursor_byok_requests']}"
        if gap["cursor_api_key_reqs"] is not None:
            counts += f", Cursor daily apiKeyReqs {gap['cursor_api_key_reqs']}"
        lines.append(f"{gap['developer']}  {gap['start']} .. {gap['end']}  {gap['kind']}  ({counts})")
        lines.append(f"  {gap['reason']}")
    return "\n".join(lines) + "\n"
