"""What budgets put on the board proxies enforce: pause / route verdicts and budget states, and where they go.

Budget states ride along so proxies can tell clients where their budget stands (response
headers); the engine refreshes them at most every few seconds per budget, never per span.

The engine publishes each change it makes to a ``Board``: in the collector, the control plane's
``ControlLog`` (``control.py``), which gives every change one version in the single sequence it
streams to proxies (keys and Cursor hook windows share it) and keeps the history resuming proxies
read. This module holds only the vocabulary, so the engine does not depend on the control plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from spendgate_semconv.scope import Scope

__all__ = ["PAUSE", "ROUTE", "Board", "BudgetState", "Scope", "Verdict"]

PAUSE = "pause"
ROUTE = "route"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision in force: pause the scope, or route one model to another within it."""

    id: str
    """Stable id, e.g. ``<budget id>:<period start>:pause``; an upsert with the same id replaces."""
    action: str
    """``pause`` or ``route``."""
    scope: Scope
    budget_id: str
    reason: str
    spend_usd: float
    limit_usd: float
    since_ms: int
    """Unix ms when the verdict took effect."""
    until_ms: int
    """Unix ms when it lapses on its own (the budget period's end); 0 = until lifted."""
    route_from: str | None = None
    """For ``route``: the requested model that is rewritten (None = any model in scope)."""
    route_to: str | None = None
    """For ``route``: the model served instead."""
    override_hint: str = ""
    """What a refused developer can do (who to ask, the command to run)."""


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Where one budget stands in its current period, as proxies show it in response headers."""

    budget_id: str
    scope: Scope
    limit_usd: float
    """The limit in force (the budget's, raised by a ``raise`` override)."""
    spend_usd: float
    period_start_ms: int
    period_end_ms: int
    """Unix ms when the period ends and the budget resets."""
    state: str
    """``ok`` or the action of the highest threshold reached (``alert``, ``route``, ``pause``)."""
    lifted: bool = False
    """True while a ``lift`` override is active."""


class Board(Protocol):
    """Where the budget engine publishes verdicts and budget states (``control.ControlLog`` in the collector)."""

    def publish(
        self,
        upserts: Sequence[Verdict] = (),
        removals: Sequence[str] = (),
        *,
        budgets: Sequence[BudgetState] = (),
        budgets_removed: Sequence[str] = (),
    ) -> int:
        """Put ``upserts`` in force, lift ``removals`` and set budget states as one change; returns the version.

        A change that alters nothing (same verdicts and states, unknown ids) does not bump the version.
        Called from any thread (the pipeline's writer, API threads, the budget timer).
        """
        ...
