"""The time span over which a genai-prices model keeps the price entry it has at a given moment.

genai-prices picks a model's price per request: the last ``ConditionalPrice`` whose constraint is
active wins. Constraints are a start date (active from that UTC midnight on) or a daily time window
(DeepSeek's off-peak hours). Between two consecutive "change points" of all constraints the set of
active constraints, and so the chosen entry, cannot change; that interval is what a compiled entry
may be reused for.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo

EARLIEST = datetime.min.replace(tzinfo=UTC)
"""Start of an interval with no change point before it."""
LATEST = datetime.max.replace(tzinfo=UTC)
"""End (exclusive) of an interval with no change point after it."""


def validity(model: ModelInfo, at: datetime) -> tuple[datetime, datetime]:
    """Return ``[start, end)`` in UTC around ``at`` (UTC-aware) within which the model's price entry holds."""
    from genai_prices.types import ModelPrice, StartDateConstraint, TimeOfDateConstraint

    if isinstance(model.prices, ModelPrice):
        return EARLIEST, LATEST

    points: list[datetime] = []
    for conditional in model.prices:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint):
            points.append(datetime.combine(constraint.start_date, time(), tzinfo=UTC))
        elif isinstance(constraint, TimeOfDateConstraint):
            # Both window edges on the days around `at`: enough to bracket `at`, whatever the offset.
            for day in range(-2, 3):
                day_date = at.date() + timedelta(days=day)
                points.append(_utc_instant(day_date, constraint.start_time))
                points.append(_utc_instant(day_date, constraint.end_time))
        elif constraint is not None:
            # A constraint kind this module does not know: valid for this instant only, so every
            # other timestamp asks genai-prices again rather than reusing a possibly wrong entry.
            return at, at + timedelta(microseconds=1)

    start = max((point for point in points if point <= at), default=EARLIEST)
    end = min((point for point in points if point > at), default=LATEST)
    return start, end


def _utc_instant(day: date, clock: time) -> datetime:
    """The instant ``clock`` on ``day``, naive clock times read as UTC (as genai-prices reads them)."""
    if clock.tzinfo is None:
        clock = clock.replace(tzinfo=UTC)
    return datetime.combine(day, clock).astimezone(UTC)
