"""How amounts of money are written for people (stdlib only: the command-line clients use it too)."""

from __future__ import annotations

NANOS_PER_USD = 1_000_000_000
"""Costs are summed as integer nano-USD (rollups, budget totals), so sums and thresholds are exact."""


def usd(value: float) -> str:
    """Dollars for people: cents for real budgets, more digits for tiny ones ($0.0023, not $0.00)."""
    if value != 0 and abs(value) < 1:
        return f"${value:,.4f}"
    return f"${value:,.2f}"


def describe_spend(who: str, period_adjective: str, spend_nanos: int, limit_usd: float | None) -> str:
    """``team platform spent $123.40 of its $100.00 monthly budget (123 %)``.

    ``who`` is the budget's scope in words (``team platform``, ``the organisation``), ``period_adjective``
    ``daily``, ``weekly`` or ``monthly``; ``limit_usd`` None means an override lifted the budget.
    """
    spend = spend_nanos / NANOS_PER_USD
    if limit_usd is None:
        return f"{who} spent {usd(spend)} of its {period_adjective} budget (lifted by an override)"
    percent = round(spend_nanos / (limit_usd * NANOS_PER_USD) * 100)
    return f"{who} spent {usd(spend)} of its {usd(limit_usd)} {period_adjective} budget ({percent} %)"
