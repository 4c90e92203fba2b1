"""Budgets: spend limits per scope and period, evaluated incrementally on ingest, decided as verdicts.

``model`` (what a budget and an override are, and their validation), ``periods`` (day / ISO week /
calendar month in a time zone), ``storage`` (the SQLite tables), ``engine`` (totals, transitions,
verdicts), ``board`` (the verdicts and budget states proxies receive). ``api`` (HTTP routes) and
``cli`` (``spendgate budgets``) manage them; ``webhooks`` posts transitions.
"""

from __future__ import annotations

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
from .storage import AuditEntry, BudgetStorage

__all__ = [
    "AuditEntry",
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
