"""The poller's resume cursor, kept in the spend database so a restart continues where it stopped.

One row per Admin API base URL (a second team polled into the same file gets its own cursor): the
end of the last window paged through completely (``scanned_to_ms``), the largest event timestamp
stored so far and the identities of the events seen at exactly that millisecond (several events can
share it, and the next poll reads from before it, so these are the ones to skip outright; any other
re-read event is dropped by the store, whose ids are derived from the event). The row is written by
``SpendStore.write``'s companion hook, in the transaction that stores the events, so the cursor can
never run ahead of the spend rows. The table comes with migration 8 (``store/migrations.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import db

TABLE = "cursor_admin_state"
BUSY_TIMEOUT_MS = 5_000
_UPSERT = (
    f"INSERT INTO {TABLE} (source, scanned_to_ms, last_ts_ms, seen) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (source) DO UPDATE SET scanned_to_ms = excluded.scanned_to_ms, "
    "last_ts_ms = excluded.last_ts_ms, seen = excluded.seen"
)


@dataclass(slots=True)
class CursorState:
    """Where the next poll starts: events at ``last_ts_ms`` whose identity is in ``seen`` are done."""

    scanned_to_ms: int = 0
    """Every event up to this instant has been read (0: never polled)."""
    last_ts_ms: int = 0
    seen: set[str] = field(default_factory=set)

    def copy(self) -> CursorState:
        return CursorState(self.scanned_to_ms, self.last_ts_ms, set(self.seen))

    def advance(self, ts_ms: int, identity: str) -> None:
        """Take one stored event into account (any order)."""
        if ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms
            self.seen = {identity}
        elif ts_ms == self.last_ts_ms:
            self.seen.add(identity)

    def already_seen(self, ts_ms: int, identity: str) -> bool:
        return ts_ms == self.last_ts_ms and identity in self.seen


class StateTable:
    """Reads the cursor on a short-lived connection of its own; writes go through the store's transaction."""

    def __init__(self, db_path: str | os.PathLike[str], source: str) -> None:
        self._path = Path(db_path)
        self._source = source

    @property
    def path(self) -> Path:
        """The database file the cursor (and the poller's other tables) live in."""
        return self._path

    @property
    def source(self) -> str:
        """The Admin API base URL this cursor belongs to."""
        return self._source

    def ensure(self) -> None:
        """Bring the database up to the schema the poller's tables are in (idempotent; WAL lets this
        run beside the store's writer)."""
        db.connect(self._path, schema=db.COLLECTOR, busy_timeout_ms=BUSY_TIMEOUT_MS).close()

    def load(self) -> CursorState:
        with contextlib.closing(db.connect(self._path, schema=db.COLLECTOR, busy_timeout_ms=BUSY_TIMEOUT_MS)) as conn:
            row = conn.execute(
                f"SELECT scanned_to_ms, last_ts_ms, seen FROM {TABLE} WHERE source = ?", (self._source,)
            ).fetchone()
        if row is None:
            return CursorState()
        return CursorState(scanned_to_ms=int(row[0]), last_ts_ms=int(row[1]), seen=set(json.loads(row[2])))

    def companion_write(self, state: CursorState) -> list[tuple[str, Sequence[Sequence[Any]]]]:
        """The ``(sql, rows)`` that saves ``state`` inside a ``SpendStore.write`` transaction."""
        return [(_UPSERT, [(self._source, state.scanned_to_ms, state.last_ts_ms, json.dumps(sorted(state.seen)))])]
