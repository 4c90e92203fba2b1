"""Budgets: spend limits per scope and period, evaluated incrementally on ingest, decided as verdicts.

``model`` (what a budget and an override are, and their validation), ``periods`` (day / ISO week /
calendar month in a time zone), ``storage`` (the SQLite tables), ``engine`` (totals, transitions,
verdicts), ``board`` (the verdicts and budget states proxies receive). ``api`` (HTTP routes) and
``cli`` (``spendgate budgets``) manage them; ``webhooks`` posts transitions.

Names are imported on first use, so ``spendgate budgets`` (``cli``, an HTTP client of a running
collector) loads neither the engine nor the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import BudgetEngine, EngineStats, Transition
    from .model import (
        Budget,
        BudgetError,
        BudgetNotFound,
        Override,
        Threshold,
        WebhookSpec,
        parse_budget,
        parse_override,
        parse_webhook,
    )
    from .periods import Period, period_at
    from .storage import BudgetStorage

__all__ = [
    "Budget",
    "BudgetEngine",
    "BudgetError",
    "BudgetNotFound",
    "BudgetStorage",
    "EngineStats",
    "Override",
    "Period",
    "Threshold",
    "Transition",
    "WebhookSpec",
    "parse_budget",
    "parse_override",
    "parse_webhook",
    "period_at",
]

_LAZY = {
    "BudgetEngine": ".engine",
    "EngineStats": ".engine",
    "Transition": ".engine",
    "Budget": ".model",
    "BudgetError": ".model",
    "BudgetNotFound": ".model",
    "Override": ".model",
    "Threshold": ".model",
    "WebhookSpec": ".model",
    "parse_budget": ".model",
    "parse_override": ".model",
    "parse_webhook": ".model",
    "Period": ".periods",
    "period_at": ".periods",
    "BudgetStorage": ".storage",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
