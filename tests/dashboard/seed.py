"""A small month of spend for the dashboard tests, dated in the current UTC month so the overview shows it.

Three developers in two teams, priced with ``tests.collector.conftest.PRICES_YAML`` rates, plus one
call of a model no price is known for; sent over real OTLP/HTTP with ``tests.collector.seed.send``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.collector.seed import DATA, PLATFORM
from tests.collector.spans import ours, span


def day_in_month(days_ago: int) -> str:
    """A time ``days_ago`` days back, kept inside the current UTC month (the 1st at the earliest)."""
    now = datetime.now(UTC)
    when = max(now - timedelta(days=days_ago), now.replace(day=1, hour=0, minute=0, second=1, microsecond=0))
    return min(when, now - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")


def seed_spans() -> list:
    return [
        # (5000 x 2.00 + 4000 x 0.20 + 1000 x 2.50 + 500 x 8.00) / 1e6 = 0.0173
        span(
            0x61,
            1,
            ours(
                developer="ana@acme.com",
                **PLATFORM,
                repo="acme-api",
                model="acme-coder",
                provider="acme",
                input_tokens=10_000,
                cache_read=4000,
                cache_write=1000,
                output_tokens=500,
            ),
            end=day_in_month(3),
        ),
        # (2000 x 0.50 + 1000 x 1.50) / 1e6 = 0.0025
        span(
            0x61,
            2,
            ours(
                developer="ana@acme.com",
                **PLATFORM,
                repo="acme-web",
                model="acme-mini",
                provider="acme",
                input_tokens=2000,
                output_tokens=1000,
                feature="chat",
            ),
            end=day_in_month(1),
        ),
        # (1000 x 2.00 + 100 x 8.00) / 1e6 = 0.0028
        span(
            0x62,
            3,
            ours(
                developer="bo@acme.com",
                **PLATFORM,
                repo="acme-api",
                model="acme-coder",
                provider="acme",
                input_tokens=1000,
                output_tokens=100,
            ),
            end=day_in_month(2),
        ),
        # (40000 x 0.50 + 2000 x 1.50) / 1e6 = 0.023
        span(
            0x63,
            4,
            ours(
                developer="cy@acme.com",
                **DATA,
                repo="etl",
                model="acme-mini",
                provider="acme",
                input_tokens=40_000,
                output_tokens=2000,
            ),
            end=day_in_month(0),
        ),
        # No price known: counted as unpriced, never as zero.
        span(
            0x63,
            5,
            ours(
                developer="cy@acme.com",
                **DATA,
                repo="etl",
                model="mystery-model",
                provider="acme",
                input_tokens=500,
                output_tokens=50,
            ),
            end=day_in_month(1),
        ),
    ]
