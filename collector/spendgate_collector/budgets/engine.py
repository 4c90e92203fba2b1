"""The budget engine: running totals per budget and period, threshold transitions, verdicts on the board.

    engine = BudgetEngine(BudgetStorage(db_path), control_log, notify=sender.notify)
    engine.open()                          # load budgets, overrides, totals and last states
    result = engine.write(store, records)  # the pipeline's store write, with budget totals in it
    engine.tick()                          # every few seconds: new periods, expired overrides

**Totals.** ``write`` wraps ``SpendStore.write``: from the records the store really inserted (never
duplicates) it computes each budget's delta for the period the record's end falls in, in the
budget's time zone, and hands those as companion writes to the same transaction. Memory is updated
only after that commit, so in-memory totals, the ``budget_totals`` table and the stored spend always
agree; at start the totals are read back from the table. Unpriced records (``cost_usd is None``)
count for nothing. Costs are summed as integer nano-USD, as the rollups are.

**Matching** is a dict lookup per scope field: each budget is indexed under one of its scope
fields (its *anchor*), so a record is checked against the org-wide budgets plus those anchored at
one of its six values, and each distinct attribution of a batch is matched once.

**States.** A budget's *level* is how many of its thresholds the spend has reached against the
effective limit (the limit, raised by a ``raise`` override; a ``lift`` override means no threshold
applies); its state is the action of the highest reached threshold, or ``ok``. A level change is a
transition: it is written with its audit line (in the spend transaction when spend caused it), its
pause/route verdicts are put on or taken off the board, and ``notify`` receives its event once.
Spend only raises the level; a new period, an override, a higher limit or deleting the budget can
lower it.

**Budget states.** Beside verdicts, the board carries one ``BudgetState`` per budget (spend, limit
in force, period end, state) that proxies turn into response headers. Spend would change it on
every batch, so it is republished at most every ``state_refresh_s`` per budget (a budget whose
spend moved sooner is marked dirty and sent by ``tick``); a transition, a new period, an override
or a budget edit publishes at once. The stream so carries O(budgets / refresh) updates, not O(spans).

**The board** is where each operation's verdict and state changes go, as one change: the control
plane's ``ControlLog`` (``board.Board``), which versions it for the proxies.

Thread-safety: one lock. The pipeline's writer thread holds it across the store write (so no budget
change can fall between computing a batch's deltas and applying them); API threads and the timer
take it for their changes. The lock is always taken before any SQLite lock or the board's own lock,
so they cannot deadlock, and changes reach the board in the order the engine made them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from ..audit import AuditEntry
from ..money import NANOS_PER_USD, describe_spend
from ..records import SpendRecord
from ..store.base import SpendStore, WriteResult
from .board import PAUSE, ROUTE, Board, BudgetState, Scope, Verdict
from .model import (
    LIFT,
    OK,
    PERIOD_ADJECTIVE,
    RAISE,
    SCOPE_FIELDS,
    Budget,
    BudgetError,
    BudgetNotFound,
    Override,
    Threshold,
    iso_ns,
    parse_budget,
    parse_override,
)
from .periods import Period, period_at
from .storage import BudgetStorage

logger = logging.getLogger(__name__)

DEFAULT_STATE_REFRESH_S = 5.0
"""Seconds between two spend-driven republishings of one budget's state (transitions go at once)."""
ENGINE_ACTOR = "spendgate"
"""Actor of what the engine does on its own (transitions, expiries)."""

_RecordKey = tuple[str | None, str | None, str | None, str | None, str | None, str | None]


def _record_key(r: SpendRecord) -> _RecordKey:
    # Same order as SCOPE_FIELDS.
    return (r.developer, r.team, r.cost_center, r.repo, r.key_id, r.model)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a budget's state, as webhooks and the audit table see it."""

    budget: Budget
    from_state: str
    to_state: str
    from_level: int
    to_level: int
    spend_nanos: int
    limit_usd: float | None
    """The effective limit the thresholds were measured against; None while lifted."""
    period: Period
    at_ns: int
    cause: str
    """``spend``, ``period``, ``override``, ``override_removed``, ``override_expired``,
    ``budget_changed``, ``deleted`` or ``restart``."""

    @property
    def threshold(self) -> Threshold | None:
        return self.budget.thresholds[self.to_level - 1] if self.to_level else None

    def event(self) -> dict[str, Any]:
        """The generic webhook payload (``webhooks.py`` derives the Slack text from it)."""
        spend = self.spend_nanos / NANOS_PER_USD
        return {
            "event": "budget.transition",
            "budget": self.budget.to_dict(),
            "from": self.from_state,
            "to": self.to_state,
            "threshold": self.threshold.to_dict() if self.threshold else None,
            "cause": self.cause,
            "spend_usd": round(spend, 6),
            "limit_usd": self.limit_usd,
            "percent": _percent(self.spend_nanos, self.limit_usd),
            "period": self.budget.period,
            "period_start": self.period.start_iso,
            "period_end": self.period.end.isoformat(),
            "at": iso_ns(self.at_ns),
            "reason": _describe(self.budget, self.spend_nanos, self.limit_usd),
        }


def _percent(spend_nanos: int, limit_usd: float | None) -> float | None:
    if limit_usd is None:
        return None
    return round(spend_nanos / (limit_usd * NANOS_PER_USD) * 100, 1)


def _describe(budget: Budget, spend_nanos: int, limit_usd: float | None) -> str:
    """``team platform spent $123.40 of its $100.00 monthly budget (123 %)``."""
    return describe_spend(budget.describe_scope(), PERIOD_ADJECTIVE[budget.period], spend_nanos, limit_usd)


def override_hint(budget: Budget) -> str:
    """What a refused developer can do: who to ask, and the command that lifts or raises the budget."""
    command = f"spendgate budgets override {budget.id}"
    if budget.owner:
        return f"ask {budget.owner} for an override ({command})"
    return f"ask a spendgate admin for an override ({command})"


@dataclass(slots=True)
class _Live:
    """A budget's in-memory state for its current period."""

    budget: Budget
    zone: ZoneInfo
    period: Period
    spend_nanos: int
    requests: int
    level: int
    since_ns: int
    overrides: list[Override] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    matchers: tuple[tuple[int, str], ...] = ()
    """``(index in the record key, value)`` for each scope field."""
    other_period: Period | None = None
    """The last period other than the current one a record fell in."""
    published: BudgetState | None = None
    """The budget state last put on the board, and when (engine clock)."""
    published_ns: int = 0

    def matches(self, key: _RecordKey) -> bool:
        return all(key[i] == value for i, value in self.matchers)

    def period_of(self, end_ns: int) -> Period:
        if self.period.contains(end_ns):
            return self.period
        # A late (or early) record: rare, except in a backlog after downtime across a boundary,
        # which is mostly one other period; remember it.
        other = self.other_period
        if other is None or not other.contains(end_ns):
            other = self.other_period = period_at(self.budget.period, self.zone, end_ns)
        return other


@dataclass(slots=True)
class _Changes:
    """What one engine operation did, persisted and published together at its end."""

    upserts: list[Verdict] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    states: list[tuple[str, int, int, str, int]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    budgets: list[BudgetState] = field(default_factory=list)
    budgets_removed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Plan:
    """A batch's budget deltas and the transitions they cause, prepared inside the spend transaction."""

    totals: dict[tuple[str, int], list[Any]]
    current: dict[str, list[int]]
    levels: dict[str, int]


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot for ``/healthz``."""

    budgets: int
    over_threshold: int
    verdicts: int
    transitions: int
    records_counted: int


def _state_name(budget: Budget, level: int) -> str:
    return budget.thresholds[level - 1].action if level else OK


def _scope(budget: Budget) -> Scope:
    """The budget's scope in the board's terms (``developer`` is a verdict's ``user``)."""
    scope = budget.scope_dict
    return Scope(
        user=scope.get("developer"),
        team=scope.get("team"),
        cost_center=scope.get("cost_center"),
        repo=scope.get("repo"),
        key_id=scope.get("key_id"),
        model=scope.get("model"),
    )


class BudgetEngine:
    """Budgets, their running totals and states, writing verdicts to ``board``."""

    def __init__(
        self,
        storage: BudgetStorage,
        board: Board,
        *,
        default_timezone: str = "UTC",
        notify: Callable[[Transition], None] | None = None,
        clock: Callable[[], int] = time.time_ns,
        state_refresh_s: float = DEFAULT_STATE_REFRESH_S,
    ) -> None:
        self.storage = storage
        self.board = board
        self.default_timezone = default_timezone
        self._notify = notify
        self._clock = clock
        self._lock = threading.RLock()
        self._live: dict[str, _Live] = {}
        self._org: list[_Live] = []
        self._index: dict[tuple[int, str], list[_Live]] = {}
        self._next_check_ns = 0
        self._window = (0, 0)
        """``[start, end)`` inside every budget's current period (empty when there are none)."""
        self._transitions = 0
        self._counted = 0
        self._state_refresh_ns = round(state_refresh_s * 1e9)
        self._dirty: set[str] = set()
        """Budgets whose spend moved since their state was last published."""

    # --- start

    def open(self) -> None:
        """Load budgets, active overrides, current totals and last states; restore verdicts."""
        with self._lock:
            now = self._clock()
            loaded = self.storage.load()
            overrides: dict[str, list[Override]] = {}
            for o in loaded.overrides:
                overrides.setdefault(o.budget_id, []).append(o)
            changes = _Changes()
            for spec in loaded.budgets:
                try:
                    budget = parse_budget(spec, default_timezone=self.default_timezone)
                except BudgetError as exc:
                    logger.error("stored budget %s is invalid and ignored: %s", spec.get("id"), exc)
                    continue
                live = self._new_live(budget, now)
                live.overrides = overrides.get(budget.id, [])
                stored = loaded.states.get(budget.id)
                cause = "restart"
                if stored is not None:
                    live.level = min(stored.level, len(budget.thresholds))
                    live.since_ns = stored.since_ns
                    if stored.period_start_ns != live.period.start_ns:
                        cause = "period"  # a period ended while the collector was down
                self._live[budget.id] = live
                self._expire_overrides(live, now, changes)
                self._reassess(live, now, cause, changes, rebuild=True)
            self._reindex()
            self._schedule()
            self._finish(changes)

    def _new_live(self, budget: Budget, now: int) -> _Live:
        zone = budget.zone
        period = period_at(budget.period, zone, now)
        nanos, requests = self.storage.total(budget.id, period.start_ns)
        return _Live(budget, zone, period, nanos, requests, 0, now)

    # --- ingest (pipeline writer thread)

    def write(self, store: SpendStore, records: Sequence[SpendRecord]) -> WriteResult:
        """``store.write(records)`` with every budget's totals updated in the same transaction."""
        with self._lock:
            if not self._live:
                return store.write(records)
            now = self._clock()
            if now >= self._next_check_ns:
                self._check(now)
            plan: _Plan | None = None

            def companion(inserted: list[SpendRecord]) -> list[Any]:
                nonlocal plan
                plan = self._plan(inserted, now)
                return self._statements(plan, now)

            result = store.write(records, companion)
            if plan is not None:  # committed: now memory may follow
                self._apply(plan, now)
            return result

    def _matching(self, key: _RecordKey) -> list[_Live]:
        found = list(self._org)
        for i, value in enumerate(key):
            if value is not None:
                anchored = self._index.get((i, value))
                if anchored:
                    found.extend(live for live in anchored if live.matches(key))
        return found

    def _plan(self, inserted: list[SpendRecord], now: int) -> _Plan:
        totals: dict[tuple[str, int], list[Any]] = {}
        current: dict[str, list[int]] = {}

        def add(live: _Live, period: Period, nanos: int, requests: int) -> None:
            tkey = (live.budget.id, period.start_ns)
            acc = totals.get(tkey)
            if acc is None:
                acc = totals[tkey] = [period.start_iso, 0, 0]
            acc[1] += nanos
            acc[2] += requests
            if period is live.period:
                cur = current.get(live.budget.id)
                if cur is None:
                    cur = current[live.budget.id] = [0, 0]
                cur[0] += nanos
                cur[1] += requests

        # Records that ended inside every budget's current period (nearly all of them) are summed
        # per distinct attribution first, then matched once per attribution; the others are
        # placed record by record.
        low, high = self._window
        by_key: dict[_RecordKey, list[int]] = {}
        others: list[tuple[SpendRecord, int]] = []
        for r in inserted:
            cost = r.cost_usd
            if cost is None:
                continue  # unpriced: no known cost to count (documented in docs/budgets.md)
            nanos = round(cost * NANOS_PER_USD)  # per record, as the rollups round it
            if not low <= r.end_ns < high:
                others.append((r, nanos))
                continue
            key = (r.developer, r.team, r.cost_center, r.repo, r.key_id, r.model)  # SCOPE_FIELDS order
            acc = by_key.get(key)
            if acc is None:
                by_key[key] = [nanos, 1]
            else:
                acc[0] += nanos
                acc[1] += 1
        for key, (nanos, requests) in by_key.items():
            for live in self._matching(key):
                add(live, live.period, nanos, requests)
        matched: dict[_RecordKey, list[_Live]] = {}
        for r, nanos in others:
            key = _record_key(r)
            lives = matched.get(key)
            if lives is None:
                lives = matched[key] = self._matching(key)
            for live in lives:
                add(live, live.period_of(r.end_ns), nanos, 1)
        levels: dict[str, int] = {}
        for bid, (nanos, _) in current.items():
            live = self._live[bid]
            level = self._level(live, live.spend_nanos + nanos, now)
            if level != live.level:
                levels[bid] = level
        return _Plan(totals, current, levels)

    def _statements(self, plan: _Plan, now: int) -> list[Any]:
        states = []
        audit = []
        for bid, level in plan.levels.items():
            live = self._live[bid]
            states.append((bid, live.period.start_ns, level, _state_name(live.budget, level), now))
            audit.append(
                AuditEntry(
                    now,
                    ENGINE_ACTOR,
                    "budget.transition",
                    bid,
                    self._transition(live, level, live.spend_nanos + plan.current[bid][0], now, "spend").event(),
                )
            )
        totals = {k: (v[0], v[1], v[2]) for k, v in plan.totals.items()}
        return self.storage.ingest_statements(totals, states, audit)

    def _apply(self, plan: _Plan, now: int) -> None:
        for bid, (nanos, requests) in plan.current.items():
            live = self._live[bid]
            live.spend_nanos += nanos
            live.requests += requests
            self._counted += requests
        changes = _Changes()
        for bid, level in plan.levels.items():
            live = self._live[bid]
            changes.transitions.append(self._transition(live, level, live.spend_nanos, now, "spend"))
            live.level = level
            live.since_ns = now
            self._sync_verdicts(live, now, changes, rebuild=False)
        for bid in plan.current:
            self._note_state(self._live[bid], now, changes, force=bid in plan.levels)
        # States and audit lines were written in the spend transaction already.
        self._publish(changes)

    # --- timer and checks

    def tick(self) -> None:
        """Start new periods, expire overrides and publish budget states that are due; cheap when nothing is."""
        with self._lock:
            now = self._clock()
            if now >= self._next_check_ns:
                self._check(now)
            if self._dirty:
                changes = _Changes()
                for bid in list(self._dirty):
                    live = self._live.get(bid)
                    if live is None:
                        self._dirty.discard(bid)
                    else:
                        self._note_state(live, now, changes, force=False)
                self._publish(changes)

    def _check(self, now: int) -> None:
        changes = _Changes()
        for live in self._live.values():
            cause = None
            if not live.period.contains(now):
                live.period = period_at(live.budget.period, live.zone, now)
                live.spend_nanos, live.requests = self.storage.total(live.budget.id, live.period.start_ns)
                cause = "period"
            if self._expire_overrides(live, now, changes):
                cause = cause or "override_expired"
            if cause is not None:
                self._reassess(live, now, cause, changes, rebuild=cause == "period")
        self._schedule()
        self._finish(changes)

    def _expire_overrides(self, live: _Live, now: int, changes: _Changes) -> bool:
        expired = [o for o in live.overrides if not o.active(now)]
        if not expired:
            return False
        live.overrides = [o for o in live.overrides if o.active(now)]
        for o in expired:
            changes.audit.append(AuditEntry(now, ENGINE_ACTOR, "override.expired", live.budget.id, o.to_dict()))
        return True

    def _schedule(self) -> None:
        """Note when the next check is due, and the window every current period contains."""
        lives = self._live.values()
        self._window = (
            max((live.period.start_ns for live in lives), default=0),
            min((live.period.end_ns for live in lives), default=0),
        )
        times = [live.period.end_ns for live in self._live.values()]
        times += [o.until_ns for live in self._live.values() for o in live.overrides]
        self._next_check_ns = min(times, default=2**62)

    # --- evaluation

    def _effective_limit(self, live: _Live, now: int) -> float | None:
        limit = live.budget.limit_usd
        for o in live.overrides:
            if o.active(now):
                if o.action == LIFT:
                    return None
                if o.action == RAISE and o.limit_usd is not None:
                    limit = max(limit, o.limit_usd)
        return limit

    def _level(self, live: _Live, spend_nanos: int, now: int) -> int:
        limit = self._effective_limit(live, now)
        if limit is None:
            return 0
        level = 0
        for i, t in enumerate(live.budget.thresholds):
            # Compared in integer nano-USD: 1.1 x $100 must trip at exactly $110.00.
            if spend_nanos >= round(t.at * limit * NANOS_PER_USD):
                level = i + 1
        return level

    def _transition(self, live: _Live, level: int, spend_nanos: int, now: int, cause: str) -> Transition:
        return Transition(
            budget=live.budget,
            from_state=_state_name(live.budget, live.level),
            to_state=_state_name(live.budget, level),
            from_level=live.level,
            to_level=level,
            spend_nanos=spend_nanos,
            limit_usd=self._effective_limit(live, now),
            period=live.period,
            at_ns=now,
            cause=cause,
        )

    def _reassess(self, live: _Live, now: int, cause: str, changes: _Changes, *, rebuild: bool) -> None:
        """Recompute the level after anything but spend changed; record a transition if it moved."""
        level = self._level(live, live.spend_nanos, now)
        moved = level != live.level
        if moved:
            transition = self._transition(live, level, live.spend_nanos, now, cause)
            changes.transitions.append(transition)
            changes.audit.append(AuditEntry(now, ENGINE_ACTOR, "budget.transition", live.budget.id, transition.event()))
            live.level = level
            live.since_ns = now
        if moved or cause == "period":  # the stored state names the period it belongs to
            changes.states.append(
                (live.budget.id, live.period.start_ns, level, _state_name(live.budget, level), live.since_ns)
            )
        self._sync_verdicts(live, now, changes, rebuild=rebuild or moved)
        self._note_state(live, now, changes, force=True)

    def _budget_state(self, live: _Live, now: int) -> BudgetState:
        limit = self._effective_limit(live, now)
        return BudgetState(
            budget_id=live.budget.id,
            scope=_scope(live.budget),
            limit_usd=limit if limit is not None else live.budget.limit_usd,
            spend_usd=round(live.spend_nanos / NANOS_PER_USD, 6),
            period_start_ms=live.period.start_ns // 1_000_000,
            period_end_ms=live.period.end_ns // 1_000_000,
            state=_state_name(live.budget, live.level),
            lifted=limit is None,
        )

    def _note_state(self, live: _Live, now: int, changes: _Changes, *, force: bool) -> None:
        """Publish the budget's state now when forced or its refresh is due; else mark it dirty for ``tick``."""
        bid = live.budget.id
        if not force and now - live.published_ns < self._state_refresh_ns:
            self._dirty.add(bid)
            return
        self._dirty.discard(bid)
        state = self._budget_state(live, now)
        if state != live.published:
            live.published, live.published_ns = state, now
            changes.budgets.append(state)

    def _sync_verdicts(self, live: _Live, now: int, changes: _Changes, *, rebuild: bool) -> None:
        """Make the board hold exactly the pause/route verdicts of the live level."""
        wanted: dict[str, Threshold] = {}
        for t in live.budget.thresholds[: live.level]:
            if t.action in (PAUSE, ROUTE):
                wanted[f"{live.budget.id}:{live.period.start_iso}:{t.action}"] = t
        for vid in list(live.verdicts):
            if vid not in wanted:
                del live.verdicts[vid]
                changes.removals.append(vid)
        limit = self._effective_limit(live, now)
        for vid, t in wanted.items():
            if vid in live.verdicts and not rebuild:
                continue
            verdict = self._verdict(live, vid, t, limit)
            if live.verdicts.get(vid) != verdict:
                live.verdicts[vid] = verdict
                changes.upserts.append(verdict)

    def _verdict(self, live: _Live, vid: str, t: Threshold, limit: float | None) -> Verdict:
        b = live.budget
        reason = _describe(b, live.spend_nanos, limit)
        if t.action == ROUTE:
            reason += f"; {t.route_from or 'every model'} is served as {t.route_to} until the period ends"
        return Verdict(
            id=vid,
            action=t.action,
            scope=_scope(b),
            budget_id=b.id,
            reason=reason,
            spend_usd=round(live.spend_nanos / NANOS_PER_USD, 6),
            limit_usd=limit if limit is not None else b.limit_usd,
            since_ms=live.since_ns // 1_000_000,
            until_ms=live.period.end_ns // 1_000_000,
            route_from=t.route_from if t.action == ROUTE else None,
            route_to=t.route_to if t.action == ROUTE else None,
            override_hint=override_hint(b),
        )

    def _finish(self, changes: _Changes) -> None:
        """Persist states and audit lines of a non-ingest change, then publish it."""
        if changes.states or changes.audit:
            try:
                self.storage.save_states(changes.states, changes.audit)
            except Exception:
                # The change itself is in force; a restart recomputes the state from the totals.
                logger.exception("could not record budget states; they are recomputed at restart")
        self._publish(changes)

    def _publish(self, changes: _Changes) -> None:
        if changes.upserts or changes.removals or changes.budgets or changes.budgets_removed:
            self.board.publish(
                changes.upserts, changes.removals, budgets=changes.budgets, budgets_removed=changes.budgets_removed
            )
        for t in changes.transitions:
            self._transitions += 1
            logger.info(
                "budget %s: %s → %s (%s): %s", t.budget.id, t.from_state, t.to_state, t.cause, t.event()["reason"]
            )
            if self._notify is not None:
                try:
                    self._notify(t)
                except Exception:  # a notifier bug must never fail the spend transaction's caller
                    logger.exception("budget transition notifier failed")

    def _reindex(self) -> None:
        org: list[_Live] = []
        index: dict[tuple[int, str], list[_Live]] = {}
        for live in self._live.values():
            live.matchers = tuple((SCOPE_FIELDS.index(name), value) for name, value in live.budget.scope)
            if not live.matchers:
                org.append(live)
            else:
                index.setdefault(live.matchers[0], []).append(live)
        self._org, self._index = org, index

    # --- management (API threads)

    def put_budget(self, data: Any, *, actor: str, budget_id: str | None = None) -> tuple[Budget, bool]:
        """Create or replace a budget; returns it and whether it was created. Raises ``BudgetError``."""
        budget = parse_budget(data, default_timezone=self.default_timezone, budget_id=budget_id)
        with self._lock:
            now = self._clock()
            live = self._live.get(budget.id)
            if live is not None and live.budget == budget:
                return budget, False
            old = live.budget if live else None
            reseed = old is None or (old.scope, old.period, old.timezone) != (
                budget.scope,
                budget.period,
                budget.timezone,
            )
            period = period_at(budget.period, budget.zone, now)
            audit = AuditEntry(
                now,
                actor,
                "budget.created" if old is None else "budget.updated",
                budget.id,
                {"before": old.to_dict() if old else None, "after": budget.to_dict()},
            )
            seeded = self.storage.save_budget(
                budget, now_ns=now, actor=actor, audit=audit, reseed=period if reseed else None
            )
            changes = _Changes()
            if live is None:
                live = self._live[budget.id] = _Live(budget, budget.zone, period, 0, 0, 0, now)
            live.budget = budget
            live.zone = budget.zone
            live.other_period = None
            if seeded is not None:
                live.period = period
                live.spend_nanos, live.requests = seeded
            self._reindex()
            self._schedule()
            self._reassess(live, now, "budget_changed", changes, rebuild=True)
            self._finish(changes)
            return budget, old is None

    def delete_budget(self, budget_id: str, *, actor: str) -> None:
        """Delete a budget: its verdicts are lifted and, if it was not ok, it transitions to ok."""
        with self._lock:
            live = self._live.get(budget_id)
            if live is None:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            now = self._clock()
            self.storage.delete_budget(
                budget_id,
                now_ns=now,
                actor=actor,
                audit=AuditEntry(now, actor, "budget.deleted", budget_id, live.budget.to_dict()),
            )
            del self._live[budget_id]
            self._reindex()
            self._schedule()
            self._dirty.discard(budget_id)
            changes = _Changes(removals=list(live.verdicts), budgets_removed=[budget_id])
            if live.level:
                t = Transition(
                    live.budget,
                    _state_name(live.budget, live.level),
                    OK,
                    live.level,
                    0,
                    live.spend_nanos,
                    self._effective_limit(live, now),
                    live.period,
                    now,
                    "deleted",
                )
                changes.transitions.append(t)
                changes.audit.append(AuditEntry(now, ENGINE_ACTOR, "budget.transition", budget_id, t.event()))
            self._finish(changes)

    def add_override(self, budget_id: str, data: Any, *, actor: str) -> Override:
        """Lift or raise a budget until a time; the state is re-evaluated at once."""
        with self._lock:
            live = self._live.get(budget_id)
            if live is None:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            now = self._clock()
            override = parse_override(data, live.budget, actor=actor, now_ns=now, period_end_ns=live.period.end_ns)
            self.storage.save_override(
                override, AuditEntry(now, actor, "override.created", budget_id, override.to_dict())
            )
            live.overrides.append(override)
            changes = _Changes()
            self._schedule()
            self._reassess(live, now, "override", changes, rebuild=True)
            self._finish(changes)
            return override

    def remove_override(self, budget_id: str, override_id: str, *, actor: str) -> Override:
        """End an override early; the state is re-evaluated at once."""
        with self._lock:
            live = self._live.get(budget_id)
            if live is None:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            override = next((o for o in live.overrides if o.id == override_id), None)
            if override is None:
                raise BudgetNotFound(f"no active override {override_id!r} on budget {budget_id!r}")
            now = self._clock()
            self.storage.end_override(
                override_id,
                now_ns=now,
                actor=actor,
                audit=AuditEntry(now, actor, "override.removed", budget_id, override.to_dict()),
            )
            live.overrides.remove(override)
            changes = _Changes()
            self._schedule()
            self._reassess(live, now, "override_removed", changes, rebuild=True)
            self._finish(changes)
            return override

    # --- reading (any thread)

    def budgets(self) -> list[Budget]:
        with self._lock:
            return [self._live[bid].budget for bid in sorted(self._live)]

    def get(self, budget_id: str) -> Budget:
        with self._lock:
            live = self._live.get(budget_id)
            if live is None:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            return live.budget

    def status(self, budget_id: str | None = None) -> list[dict[str, Any]]:
        """Per budget: period, spend, limit, effective limit, state, active overrides, verdicts."""
        with self._lock:
            now = self._clock()
            if now >= self._next_check_ns:
                self._check(now)
            if budget_id is not None and budget_id not in self._live:
                raise BudgetNotFound(f"no budget {budget_id!r}")
            ids = [budget_id] if budget_id is not None else sorted(self._live)
            return [self._status(self._live[bid], now) for bid in ids]

    def _status(self, live: _Live, now: int) -> dict[str, Any]:
        b = live.budget
        limit = self._effective_limit(live, now)
        return {
            "id": b.id,
            "name": b.name,
            "scope": b.scope_dict,
            "period": {
                "kind": b.period,
                "timezone": b.timezone,
                "start": live.period.start_iso,
                "end": live.period.end.isoformat(),
            },
            "spend_usd": round(live.spend_nanos / NANOS_PER_USD, 6),
            "requests": live.requests,
            "limit_usd": b.limit_usd,
            "effective_limit_usd": limit,
            "percent": _percent(live.spend_nanos, limit),
            "state": _state_name(b, live.level),
            "since": iso_ns(live.since_ns),
            "thresholds": [t.to_dict() for t in b.thresholds],
            "overrides": [o.to_dict() for o in live.overrides if o.active(now)],
            "verdicts": [asdict(v) for v in live.verdicts.values()],
            "owner": b.owner,
        }

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                budgets=len(self._live),
                over_threshold=sum(1 for live in self._live.values() if live.level),
                verdicts=sum(len(live.verdicts) for live in self._live.values()),
                transitions=self._transitions,
                records_counted=self._counted,
            )
