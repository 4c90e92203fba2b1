"""The audit log: one table recording who changed what, written by budgets, keys and webhooks alike.

Budgets write their lines inside their own transactions (a budget change, an override, a transition
and its audit line commit together: ``INSERT`` with ``AuditEntry.row``); key changes and webhook
outcomes, which have no transaction of their own in the database, go through ``AuditLog.add``. The
budgets API's ``GET /api/audit`` and the dashboard's budget history read it with ``AuditLog.read``.
The table is created with the budgets' (migration 6, ``store/migrations.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .store import db

BUSY_TIMEOUT_MS = 10_000
"""As the budgets': an audit line may wait for the pipeline's spend transaction."""

INSERT = "INSERT INTO audit (at_ns, actor, action, budget_id, details) VALUES (?, ?, ?, ?, ?)"
"""One line, parameters from ``AuditEntry.row``; run inside the writer's own transaction."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit table."""

    at_ns: int
    actor: str
    action: str
    budget_id: str | None
    details: Mapping[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (self.at_ns, self.actor, self.action, self.budget_id, json.dumps(self.details, sort_keys=True))


AuditSink = Callable[[Sequence[AuditEntry]], None]
"""Writes audit lines (``AuditLog.add``)."""


def _iso_ns(ns: int) -> str:
    """Unix nanoseconds → ISO 8601 UTC to the second, as ``budgets.model.iso_ns`` writes every other time."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).isoformat()


class AuditLog:
    """The audit table of one SQLite file, on a connection of its own shared by threads in turn."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = db.SharedConnection(
            db.connect(self.path, schema=db.COLLECTOR, busy_timeout_ms=BUSY_TIMEOUT_MS), name="audit log"
        )

    def add(self, entries: Iterable[AuditEntry]) -> None:
        """Append ``entries`` in one transaction."""
        rows = [e.row() for e in entries]
        with self._db.transaction() as cur:
            cur.executemany(INSERT, rows)

    def read(
        self, *, budget_id: str | None = None, action: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Audit lines, newest first; ``action`` matches itself and its sub-actions (``key`` → ``key.created``)."""
        where: list[str] = ["1"]
        params: list[str | int] = []
        if budget_id is not None:
            where.append("budget_id = ?")
            params.append(budget_id)
        if action is not None:
            where.append("(action = ? OR action LIKE ?)")
            params.extend([action, action + ".%"])
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        sql = (
            "SELECT id, at_ns, actor, action, budget_id, details FROM audit WHERE "
            + " AND ".join(where)
            + " ORDER BY id DESC LIMIT ?"
        )
        rows = self._db.read(sql, (*params, limit))
        return [
            {
                "id": row[0],
                "at": _iso_ns(row[1]),
                "actor": row[2],
                "action": row[3],
                "budget_id": row[4],
                "details": json.loads(row[5]),
            }
            for row in rows
        ]

    def close(self) -> None:
        self._db.close()
