"""Budget states from the control stream, and the response headers they give a call within a budget.

The collector publishes one ``BudgetState`` per budget (spend, limit in force, period end, state),
refreshed at most every few seconds per budget (``control_budget_refresh_s``). ``ControlState``
keeps them in a ``BudgetIndex``; the request path asks it for the tightest budget a call falls in
(least remaining) and copies that budget's prebuilt headers onto a successful response:

    x-spendgate-budget                 budget id
    x-spendgate-budget-remaining-usd   limit in force minus spend, never below 0
    x-spendgate-budget-limit-usd       limit in force
    x-spendgate-budget-reset           ISO 8601 end of the current period (UTC)
    x-spendgate-budget-state           ok | alert (or route / pause: the highest threshold reached)

Everything but the clock check is computed when an update is applied, not per request. The
remaining figure lags real spend by the proxies' export interval plus the collector's refresh.
Lifted budgets (a ``lift`` override is active) have no limit to report and are not indexed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from spendgate_semconv import control_pb2

BUDGET_HEADERS = (
    "x-spendgate-budget",
    "x-spendgate-budget-remaining-usd",
    "x-spendgate-budget-limit-usd",
    "x-spendgate-budget-reset",
    "x-spendgate-budget-state",
)
# Browser clients see custom response headers only when they are exposed.
_EXPOSE = {"Access-Control-Expose-Headers": ", ".join(BUDGET_HEADERS)}

# Scope fields in lookup order: the most selective first, as the verdict index orders them.
_FIELDS = ("key_id", "user", "repo", "team", "cost_center", "model")


def _usd(value: float) -> str:
    # Six decimals: budgets in tests and demos are fractions of a cent; no exponent notation.
    return f"{value:.6f}"


def _iso(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget as the proxy holds it, with its response headers built once."""

    budget_id: str
    scope: tuple[str | None, ...]
    """Scope values in ``_FIELDS`` order; None = any."""
    limit_usd: float
    spend_usd: float
    period_start_ms: int
    period_end_ms: int
    state: str
    lifted: bool = False
    remaining_usd: float = 0.0
    """Limit in force minus spend, never below 0."""
    headers: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def checks(self) -> tuple[tuple[int, str], ...]:
        """``(position, value)`` of every set scope field."""
        return tuple((i, v) for i, v in enumerate(self.scope) if v is not None)


def status_from(msg: control_pb2.BudgetState) -> BudgetStatus:
    """A wire budget state as a ``BudgetStatus`` with its headers."""
    s = msg.scope
    status = BudgetStatus(
        budget_id=msg.budget_id,
        scope=tuple(v or None for v in (s.key_id, s.user, s.repo, s.team, s.cost_center, s.model)),
        limit_usd=msg.limit_usd,
        spend_usd=msg.spend_usd,
        period_start_ms=msg.period_start_ms,
        period_end_ms=msg.period_end_ms,
        state=msg.state or "ok",
        lifted=msg.lifted,
        remaining_usd=max(msg.limit_usd - msg.spend_usd, 0.0),
    )
    status.headers.update(
        {
            "x-spendgate-budget": status.budget_id,
            "x-spendgate-budget-remaining-usd": _usd(status.remaining_usd),
            "x-spendgate-budget-limit-usd": _usd(status.limit_usd),
            "x-spendgate-budget-reset": _iso(status.period_end_ms),
            "x-spendgate-budget-state": status.state,
            **_EXPOSE,
        }
    )
    return status


# One indexed budget: what ``find`` reads, flattened out of the dataclass for the hot loop.
_Entry = tuple[float, int, tuple[tuple[int, str], ...], BudgetStatus]


class BudgetIndex:
    """Budgets bucketed by their most selective scope field, so a lookup scans only candidates.

    Each budget sits in one bucket: its first set field of key_id, user, repo, team, cost_center,
    model, or else "everywhere" (org-wide). A call looks up its own value in each non-empty bucket.
    Buckets are sorted by remaining budget, so the first match in a bucket is its tightest.
    """

    def __init__(self, budgets: list[BudgetStatus]) -> None:
        buckets: list[dict[str, list[_Entry]]] = [{} for _ in _FIELDS]
        everywhere: list[_Entry] = []
        for b in sorted(budgets, key=lambda b: (b.remaining_usd, b.budget_id)):
            if b.lifted:
                continue
            checks = b.checks
            entry = (b.remaining_usd, b.period_end_ms, checks[1:], b)
            if checks:
                # The bucket key is checked by the lookup itself; only the other fields remain.
                position, value = checks[0]
                buckets[position].setdefault(value, []).append(entry)
            else:
                everywhere.append(entry)
        self.everywhere = everywhere
        self.active = tuple((position, bucket) for position, bucket in enumerate(buckets) if bucket)

    def __bool__(self) -> bool:
        return bool(self.active or self.everywhere)

    def find(self, values: tuple[str | None, ...], now_ms: int | None = None) -> BudgetStatus | None:
        """The tightest budget (least remaining) whose scope holds ``values`` and whose period has not ended.

        A budget past its period end is skipped: its spend belongs to the old period, and the
        collector's rollover update is on its way.
        """
        best: BudgetStatus | None = None
        best_left = float("inf")
        now_ms = now_ms or time.time_ns() // 1_000_000
        everywhere = self.everywhere
        for position, bucket in self.active:
            candidates = bucket.get(values[position])  # type: ignore[arg-type]
            if candidates is None:
                continue
            for left, end_ms, checks, b in candidates:
                if left >= best_left:
                    break  # sorted: nothing tighter further on
                if end_ms <= now_ms:
                    continue
                for i, value in checks:
                    if values[i] != value:
                        break
                else:
                    best, best_left = b, left
                    break
        for left, end_ms, _, b in everywhere:
            if left >= best_left:
                break
            if end_ms > now_ms:  # org-wide: no scope field to check
                return b
        return best
