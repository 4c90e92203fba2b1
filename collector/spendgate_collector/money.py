"""How amounts of money are written for people (stdlib only: the command-line clients use it too)."""

from __future__ import annotations


def usd(value: float) -> str:
    """Dollars for people: cents for real budgets, more digits for tiny ones ($0.0023, not $0.00)."""
    if value != 0 and abs(value) < 1:
        return f"${value:,.4f}"
    return f"${value:,.2f}"
