"""Budget periods: the day, ISO week (Monday start) or calendar month holding an instant, in a time zone.

Boundaries are local midnights built as wall-clock times in the zone, so a day is 23 or 25 hours
long across a DST change and the instants are exact (Unix nanoseconds, whole seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

NANOS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Period:
    """One period of a budget: ``[start, end)`` as local datetimes and as Unix nanoseconds."""

    start: datetime
    end: datetime
    start_ns: int
    end_ns: int

    @property
    def start_iso(self) -> str:
        """The period's id in verdict ids and the totals table, e.g. ``2026-11-01T00:00:00+01:00``."""
        return self.start.isoformat()

    def contains(self, ns: int) -> bool:
        return self.start_ns <= ns < self.end_ns


def _first_day(kind: str, day: date) -> date:
    if kind == "day":
        return day
    if kind == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if kind == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {kind!r}")


def _next_first_day(kind: str, first: date) -> date:
    if kind == "day":
        return first + timedelta(days=1)
    if kind == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    # A wall-clock midnight; where DST skips midnight (e.g. America/Santiago) zoneinfo maps the
    # missing time with the earlier offset, which is exactly the instant the day starts.
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NANOS_PER_SECOND


def period_at(kind: str, zone: ZoneInfo, at_ns: int) -> Period:
    """The ``kind`` (``day``, ``week``, ``month``) period in ``zone`` that holds ``at_ns``."""
    # Boundaries fall on whole seconds, so the floored second is in the same period as the instant
    # (no float rounding can move an instant across a boundary).
    local = datetime.fromtimestamp(at_ns // NANOS_PER_SECOND, zone)
    first = _first_day(kind, local.date())
    start = _midnight(first, zone)
    end = _midnight(_next_first_day(kind, first), zone)
    return Period(start, end, _ns(start), _ns(end))
