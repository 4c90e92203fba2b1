"""Where this month's spend will end: month to date plus a recent daily run rate for the days left.

Method (stated on the overview page): take the average daily spend over the last 7 complete UTC
days of the month (fewer at the start of a month; none yet on the 1st, when today's spend so far is
scaled to a whole day) and add it for every day still to come, counting what is left of today as a
fraction of a day. A run rate follows a change of habit within a week, unlike a month-long average,
and needs no history from earlier months.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

WINDOW_DAYS = 7
METHOD = "month to date + the average daily spend of the last {window} complete UTC days times the {left:.1f} days left"
FIRST_DAY_METHOD = "month to date + today's spend so far scaled to a whole day times the {left:.1f} days left (UTC)"


@dataclass(frozen=True, slots=True)
class Forecast:
    """A forecast and how it was made."""

    month_to_date: float
    daily_rate: float
    days_left: float
    window_days: int
    total: float

    @property
    def method(self) -> str:
        if not self.window_days:
            return FIRST_DAY_METHOD.format(left=self.days_left)
        return METHOD.format(window=self.window_days, left=self.days_left)


def forecast_month(spend_by_day: Mapping[date, float], now: datetime) -> Forecast:
    """Forecast the month of ``now`` (a UTC datetime) from its spend per UTC day so far."""
    today = now.date()
    first = today.replace(day=1)
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    mtd = sum(v for d, v in spend_by_day.items() if first <= d <= today)
    elapsed_today = (now - datetime.combine(today, datetime.min.time(), tzinfo=now.tzinfo)).total_seconds() / 86_400
    days_left = days_in_month - (today.day - 1) - elapsed_today
    complete = [today - timedelta(days=i) for i in range(1, WINDOW_DAYS + 1)]
    complete = [d for d in complete if d >= first]
    if complete:
        rate = sum(spend_by_day.get(d, 0.0) for d in complete) / len(complete)
    else:
        rate = spend_by_day.get(today, 0.0) / max(elapsed_today, 1 / 24)  # at least an hour, or one call explodes
    return Forecast(
        month_to_date=mtd,
        daily_rate=rate,
        days_left=days_left,
        window_days=len(complete),
        total=mtd + rate * days_left,
    )
