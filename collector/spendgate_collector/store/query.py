"""What a spend question looks like: period, filters and grouping, parsed and validated once.

The HTTP API and ``spendgate report`` both build these from user input; stores answer them. Every
parse error is a ``QueryError`` naming the parameter, which the API turns into a 400.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ..errors import QueryError

DIMENSIONS = ("developer", "team", "cost_center", "repo", "model", "feature", "provider")
"""Attribution dimensions every rollup row is keyed by (besides its day)."""

GROUPABLE = ("day", "month", *DIMENSIONS)
"""What ``group_by`` may name."""

CHARGEBACK_DIMENSIONS = ("developer", "team", "cost_center", "repo")
"""The dimensions of a chargeback row (and of the monthly rollup that answers it)."""

MEASURES = (
    "requests",
    "errors",
    "unpriced_requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
)
"""Summed columns of every result row."""

MAX_TOP_N = 1000
_MONTH = re.compile(r"\d{4}-\d{2}")


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """A closed day range (UTC, both ends inclusive; ``None`` = open) and equality filters."""

    start: date | None = None
    end: date | None = None
    equals: tuple[tuple[str, str], ...] = field(default=())
    """``(dimension, value)`` pairs, all of which must match."""
    within: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    """``(dimension, values)`` pairs: the dimension must be one of the values (an empty tuple matches
    nothing). Access control adds these (a lead sees only their teams); users never set them."""

    def covers_whole_months(self) -> bool:
        """True when the range starts on a 1st and ends on a month's last day (or is open)."""
        starts_ok = self.start is None or self.start.day == 1
        ends_ok = self.end is None or self.end.day == calendar.monthrange(self.end.year, self.end.month)[1]
        return starts_ok and ends_ok


def parse_day(param: str, text: str) -> date:
    """``YYYY-MM-DD`` → ``date``; raise ``QueryError`` naming ``param``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(param, f"expected a date YYYY-MM-DD, got {text!r}") from None


def parse_month(param: str, text: str) -> tuple[date, date]:
    """``YYYY-MM`` → (first day, last day) of that month; raise ``QueryError`` naming ``param``."""
    try:
        if not _MONTH.fullmatch(text.strip()):
            raise ValueError(text)
        first = datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        raise QueryError(param, f"expected a month YYYY-MM, got {text!r}") from None
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def current_month() -> str:
    """This month (UTC) as ``YYYY-MM``."""
    return datetime.now(UTC).strftime("%Y-%m")


def parse_filter(params: Mapping[str, str]) -> SpendFilter:
    """Read ``from``, ``to``, ``month`` and one equality filter per dimension from query parameters."""
    start = parse_day("from", params["from"]) if params.get("from") else None
    end = parse_day("to", params["to"]) if params.get("to") else None
    if params.get("month"):
        if start is not None or end is not None:
            raise QueryError("month", "give either month or from/to, not both")
        start, end = parse_month("month", params["month"])
    if start is not None and end is not None and start > end:
        raise QueryError("from", f"{start} is after to={end}")
    equals = tuple((name, params[name]) for name in DIMENSIONS if params.get(name))
    return SpendFilter(start=start, end=end, equals=equals)


def parse_group_by(text: str | None, default: tuple[str, ...] = ("team",)) -> tuple[str, ...]:
    """``team,repo`` → ``("team", "repo")``; raise ``QueryError`` for unknown or repeated names."""
    if text is None or not text.strip():
        return default
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in GROUPABLE:
            raise QueryError("group_by", f"unknown dimension {name!r}; choose from {', '.join(GROUPABLE)}")
    if len(set(names)) != len(names):
        raise QueryError("group_by", "a dimension is named twice")
    return names


def parse_dimension(param: str, text: str | None, default: str = "developer") -> str:
    """One dimension name (for top-N); raise ``QueryError`` when unknown."""
    name = (text or default).strip()
    if name not in DIMENSIONS:
        raise QueryError(param, f"unknown dimension {name!r}; choose from {', '.join(DIMENSIONS)}")
    return name


def parse_positive_int(param: str, text: str | None, default: int, maximum: int) -> int:
    """A positive integer no larger than ``maximum``; raise ``QueryError`` otherwise."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(param, f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= maximum:
        raise QueryError(param, f"must be between 1 and {maximum}, got {value}")
    return value
