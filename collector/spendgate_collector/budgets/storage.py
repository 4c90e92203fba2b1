"""Budget tables in the collector's SQLite file: definitions, overrides, running totals, state, audit.

Tables (migration 6 in ``store/migrations.py`` creates them, beside the spend tables):

- ``budgets``: one row per budget, its definition as JSON.
- ``budget_overrides``: every override ever made; ``ended_ns`` is set when one is removed.
- ``budget_totals``: priced spend (integer nano-USD) and priced calls per budget and period. Only
  two writes ever change it: the spend transaction itself (``ingest_statements``, run by the store
  in the same transaction as the inserted rows) and the seeding of a new or re-scoped budget, which
  sums the stored spend inside the transaction that saves the budget. So it cannot drift from the
  spend that is stored, whatever crashes when.
- ``budget_state``: the last state per budget (level, state name, period, since), so a restart
  neither repeats nor loses a transition.

Every change here writes its line to the collector's audit log (``audit.py``) in the same transaction.

This object has its own connection (the store's writer connection belongs to the pipeline thread),
shared by threads in turn (``store.db.SharedConnection``). ``BEGIN IMMEDIATE`` makes each of its
writes wait for, and exclude, the pipeline's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audit import INSERT as _INSERT_AUDIT
from ..audit import AuditEntry
from ..store import db
from .model import Budget, Override
from .periods import Period

BUSY_TIMEOUT_MS = 10_000

_UPSERT_TOTAL = (
    "INSERT INTO budget_totals (budget_id, period_start_ns, period_start, cost_nanos, requests) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (budget_id, period_start_ns) DO UPDATE SET "
    "cost_nanos = cost_nanos + excluded.cost_nanos, requests = requests + excluded.requests"
)
_UPSERT_STATE = (
    "INSERT INTO budget_state (budget_id, period_start_ns, level, state, since_ns) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (budget_id) DO UPDATE SET period_start_ns = excluded.period_start_ns, level = excluded.level, "
    "state = excluded.state, since_ns = excluded.since_ns"
)

Statement = tuple[str, Sequence[Sequence[Any]]]
"""SQL and its parameter rows, run with ``executemany`` inside someone else's transaction."""


@dataclass(frozen=True, slots=True)
class StoredState:
    """The last state the engine recorded for a budget."""

    period_start_ns: int
    level: int
    state: str
    since_ns: int


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything the engine needs at start."""

    budgets: list[dict[str, Any]]
    overrides: list[Override]
    states: dict[str, StoredState]


def _scope_sql(budget: Budget) -> tuple[str, list[Any]]:
    # Scope field names are the spend table's column names (model.SCOPE_FIELDS), never user input.
    clauses = [f"{name} = ?" for name, _ in budget.scope]
    return "".join(f" AND {c}" for c in clauses), [value for _, value in budget.scope]


class BudgetStorage:
    """The budget tables of one SQLite file, on a connection of their own."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Budget writes wait for the pipeline's spend transaction, which can take a while on a big batch.
        self._db = db.SharedConnection(
            db.connect(self.path, schema=db.COLLECTOR, busy_timeout_ms=BUSY_TIMEOUT_MS), name="budget storage"
        )

    # --- start

    def load(self) -> Loaded:
        budgets = [json.loads(spec) for (spec,) in self._db.read("SELECT spec FROM budgets ORDER BY id")]
        overrides = [
            Override(
                id=row[0],
                budget_id=row[1],
                action=row[2],
                limit_usd=row[3],
                until_ns=row[4],
                actor=row[5],
                reason=row[6],
                created_ns=row[7],
            )
            for row in self._db.read(
                "SELECT id, budget_id, action, limit_usd, until_ns, actor, reason, created_ns "
                "FROM budget_overrides WHERE ended_ns IS NULL ORDER BY created_ns"
            )
        ]
        states = {
            row[0]: StoredState(*row[1:])
            for row in self._db.read("SELECT budget_id, period_start_ns, level, state, since_ns FROM budget_state")
        }
        return Loaded(budgets, overrides, states)

    def total(self, budget_id: str, period_start_ns: int) -> tuple[int, int]:
        """Stored ``(cost_nanos, requests)`` of a budget's period; zeros when nothing was counted."""
        rows = self._db.read(
            "SELECT cost_nanos, requests FROM budget_totals WHERE budget_id = ? AND period_start_ns = ?",
            (budget_id, period_start_ns),
        )
        return rows[0] if rows else (0, 0)

    # --- definitions (any thread; the engine holds its lock around each call)

    def save_budget(
        self, budget: Budget, *, now_ns: int, actor: str, audit: AuditEntry, reseed: Period | None
    ) -> tuple[int, int] | None:
        """Save a budget and its audit line; with ``reseed``, recount that period from stored spend.

        Re-seeding deletes the budget's totals and sums the priced spend rows of the period in this
        same transaction, so no span is counted twice or missed whatever the pipeline commits
        around it. Returns the seeded ``(cost_nanos, requests)``, or None without ``reseed``.
        """
        spec = json.dumps(budget.to_dict(), sort_keys=True)
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO budgets (id, spec, created_ns, updated_ns, updated_by) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_ns = excluded.updated_ns, "
                "updated_by = excluded.updated_by",
                (budget.id, spec, now_ns, now_ns, actor),
            )
            cur.execute(_INSERT_AUDIT, audit.row())
            if reseed is None:
                return None
            cur.execute("DELETE FROM budget_totals WHERE budget_id = ?", (budget.id,))
            where, params = _scope_sql(budget)
            nanos, requests = cur.execute(
                # Rounded per row exactly as the engine rounds each record's cost.
                "SELECT coalesce(sum(CAST(round(cost_usd * 1000000000) AS INTEGER)), 0), count(*) FROM spend "
                "WHERE end_ns >= ? AND end_ns < ? AND cost_usd IS NOT NULL" + where,
                (reseed.start_ns, reseed.end_ns, *params),
            ).fetchone()
            cur.execute(_UPSERT_TOTAL, (budget.id, reseed.start_ns, reseed.start_iso, nanos, requests))
            return nanos, requests

    def delete_budget(self, budget_id: str, *, now_ns: int, actor: str, audit: AuditEntry) -> None:
        """Delete a budget with its totals and state; its overrides end (they stay in the history)."""
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM budgets WHERE id = ?", (budget_id,))
            cur.execute("DELETE FROM budget_totals WHERE budget_id = ?", (budget_id,))
            cur.execute("DELETE FROM budget_state WHERE budget_id = ?", (budget_id,))
            cur.execute(
                "UPDATE budget_overrides SET ended_ns = ?, ended_by = ? WHERE budget_id = ? AND ended_ns IS NULL",
                (now_ns, actor, budget_id),
            )
            cur.execute(_INSERT_AUDIT, audit.row())

    def save_override(self, override: Override, audit: AuditEntry) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO budget_overrides (id, budget_id, action, limit_usd, until_ns, actor, reason, created_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    override.id,
                    override.budget_id,
                    override.action,
                    override.limit_usd,
                    override.until_ns,
                    override.actor,
                    override.reason,
                    override.created_ns,
                ),
            )
            cur.execute(_INSERT_AUDIT, audit.row())

    def end_override(self, override_id: str, *, now_ns: int, actor: str, audit: AuditEntry) -> None:
        with self._db.transaction() as cur:
            cur.execute(
                "UPDATE budget_overrides SET ended_ns = ?, ended_by = ? WHERE id = ? AND ended_ns IS NULL",
                (now_ns, actor, override_id),
            )
            cur.execute(_INSERT_AUDIT, audit.row())

    # --- state and audit

    def save_states(self, states: Iterable[tuple[str, int, int, str, int]], audit: Iterable[AuditEntry]) -> None:
        """Record ``(budget_id, period_start_ns, level, state, since_ns)`` rows and their audit lines."""
        with self._db.transaction() as cur:
            cur.executemany(_UPSERT_STATE, list(states))
            cur.executemany(_INSERT_AUDIT, [a.row() for a in audit])

    @staticmethod
    def ingest_statements(
        totals: Mapping[tuple[str, int], tuple[str, int, int]],
        states: Sequence[tuple[str, int, int, str, int]],
        audit: Sequence[AuditEntry],
    ) -> list[Statement]:
        """The writes that go into the spend transaction: totals deltas, new states, their audit lines.

        ``totals`` maps ``(budget_id, period_start_ns)`` to ``(period_start_iso, cost_nanos, requests)``.
        """
        statements: list[Statement] = [
            (_UPSERT_TOTAL, [(bid, start, iso, nanos, reqs) for (bid, start), (iso, nanos, reqs) in totals.items()])
        ]
        if states:
            statements.append((_UPSERT_STATE, list(states)))
        if audit:
            statements.append((_INSERT_AUDIT, [a.row() for a in audit]))
        return statements

    def close(self) -> None:
        self._db.close()
