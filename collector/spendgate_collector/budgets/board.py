"""The verdict board: the versioned set of pause / route verdicts (and budget states) pushed to proxies.

Budget states ride along so proxies can tell clients where their budget stands (response
headers); the engine refreshes them at most every few seconds per budget, never per span.

Budgets write to it (from the pipeline's writer thread); the control-plane server reads it (on the
event loop) and streams a snapshot, then every change, to each subscribed proxy. Each change bumps
one global version, so a proxy that reconnects says the last version it applied and receives only
what it missed, or a fresh snapshot when the board no longer holds that far back.

Thread-safety: every method takes one lock; waiters on an asyncio loop are woken with
``call_soon_threadsafe``, so writers never block on readers.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

PAUSE = "pause"
ROUTE = "route"
MAX_HISTORY = 10_000
"""Changes kept for resuming subscribers; older resumes get a snapshot instead."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which calls a verdict applies to: every non-empty field must match the call."""

    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    key_id: str | None = None
    model: str | None = None

    def matches(
        self,
        *,
        user: str | None,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        key_id: str | None,
        model: str | None,
    ) -> bool:
        return (
            (self.user is None or self.user == user)
            and (self.team is None or self.team == team)
            and (self.cost_center is None or self.cost_center == cost_center)
            and (self.repo is None or self.repo == repo)
            and (self.key_id is None or self.key_id == key_id)
            and (self.model is None or self.model == model)
        )


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


@dataclass(frozen=True, slots=True)
class Change:
    """One versioned change: verdicts put in force (or replaced), verdict ids lifted, budget states."""

    version: int
    upserts: tuple[Verdict, ...] = ()
    removals: tuple[str, ...] = ()
    budgets: tuple[BudgetState, ...] = ()
    budgets_removed: tuple[str, ...] = ()


@dataclass
class VerdictBoard:
    """Versioned verdicts with a bounded change history and asyncio waiters."""

    max_history: int = MAX_HISTORY
    _verdicts: dict[str, Verdict] = field(default_factory=dict)
    _budgets: dict[str, BudgetState] = field(default_factory=dict)
    _history: deque[Change] = field(default_factory=deque)
    _version: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self._version

    def apply(
        self,
        upserts: tuple[Verdict, ...] = (),
        removals: tuple[str, ...] = (),
        *,
        budgets: tuple[BudgetState, ...] = (),
        budgets_removed: tuple[str, ...] = (),
    ) -> int:
        """Put ``upserts`` in force, lift ``removals`` and set budget states as one change; returns the version.

        A change that alters nothing (same verdicts and states, unknown ids) does not bump the version.
        """
        with self._lock:
            ups = tuple(v for v in upserts if self._verdicts.get(v.id) != v)
            rms = tuple(i for i in removals if i in self._verdicts and i not in {v.id for v in ups})
            b_ups = tuple(b for b in budgets if self._budgets.get(b.budget_id) != b)
            b_rms = tuple(i for i in budgets_removed if i in self._budgets and i not in {b.budget_id for b in b_ups})
            if not (ups or rms or b_ups or b_rms):
                return self._version
            for v in ups:
                self._verdicts[v.id] = v
            for i in rms:
                del self._verdicts[i]
            for b in b_ups:
                self._budgets[b.budget_id] = b
            for i in b_rms:
                del self._budgets[i]
            self._version += 1
            self._history.append(Change(self._version, ups, rms, b_ups, b_rms))
            while len(self._history) > self.max_history:
                self._history.popleft()
            waiters, self._waiters = self._waiters, []
            version = self._version
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
        return version

    def snapshot(self) -> tuple[int, list[Verdict]]:
        """The version and every verdict in force."""
        with self._lock:
            return self._version, list(self._verdicts.values())

    def state(self) -> tuple[int, list[Verdict], list[BudgetState]]:
        """The version, every verdict in force and every budget state, read together."""
        with self._lock:
            return self._version, list(self._verdicts.values()), list(self._budgets.values())

    def changes_since(self, version: int) -> list[Change] | None:
        """Changes after ``version`` in order; None when the history no longer reaches back that far."""
        with self._lock:
            if version > self._version:
                return None  # a subscriber from another board's lifetime (collector restarted)
            if version == self._version:
                return []
            if not self._history or self._history[0].version > version + 1:
                return None
            return [c for c in self._history if c.version > version]

    async def wait_changed(self, version: int, timeout: float) -> bool:
        """Wait until the board is past ``version`` or ``timeout`` seconds pass; True when it changed."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            if self._version > version:
                return True
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            with self._lock:  # heartbeats time out often: leave no waiter behind
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            return self._version > version
        return True
