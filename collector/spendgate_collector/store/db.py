"""The collector's one database layer: how connections are opened, one transaction shape, migrations.

Every part of the collector that keeps rows in SQLite opens its connections here, so they are all
made alike (explicit transactions, a busy timeout, WAL), and a writer's first connection brings the
file's schema up to date: ``migrate`` runs the numbered migrations of ``migrations.py`` past the
file's ``PRAGMA user_version``. Nothing outside ``store/`` opens a connection or writes DDL or
pragmas (``tests/test_import_rules.py``), so a PostgreSQL backend plugs in here; feature modules
pass portable SQL to the connections and transactions this module hands out.

    conn = connect(path, schema=COLLECTOR)   # a writer's connection: WAL, schema migrated
    with transaction(conn) as cur:           # BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error
        cur.execute(...)

    budgets = SharedConnection(connect(path, schema=COLLECTOR), name="budget storage")
    with budgets.transaction() as cur: ...   # one connection shared by threads, one user at a time

Connections are opened with ``check_same_thread=False``: each owner serialises its use (one thread,
or ``SharedConnection``'s lock).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import StoreUnavailable
from .migrations import COLLECTOR, EXPORT_QUEUE, Schema

__all__ = ["BUSY_TIMEOUT_MS", "COLLECTOR", "EXPORT_QUEUE", "SharedConnection", "connect", "migrate", "transaction"]

BUSY_TIMEOUT_MS = 5_000
"""How long a statement waits for another connection's write lock before it fails."""


def connect(
    path: str | Path,
    *,
    schema: Schema | None = None,
    readonly: bool = False,
    query_only: bool = False,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    cache_kib: int | None = None,
    synchronous: str | None = None,
) -> sqlite3.Connection:
    """A connection to ``path`` in autocommit mode (transactions are explicit: ``transaction``).

    With ``schema`` (a writer) the file and its directory are created when missing, the file is put
    in WAL mode and migrated to ``schema``; ``StoreUnavailable`` when it is newer than this code.
    ``readonly`` opens an existing file that is never written (no migration); ``query_only`` refuses
    writes on this connection. ``cache_kib`` sizes the page cache, ``synchronous`` is ``full`` or
    ``normal`` (WAL: ``normal`` may lose the last commits on power loss, never corrupt the file).
    """
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
        )
    else:
        if schema is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if cache_kib is not None:
            conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        if schema is not None and not readonly:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, schema)
        if synchronous is not None:
            if synchronous not in ("full", "normal"):
                raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        if query_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises anything.

    IMMEDIATE takes the write lock at the start, so concurrent writers queue on the busy timeout
    instead of failing when a read transaction tries to become a write one.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn.cursor()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version the file records (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, schema: Schema) -> int:
    """Apply ``schema``'s migrations past the file's version, in order, each in its own transaction.

    Safe when several processes open the same file at once: each migration re-reads the version
    once it holds the write lock and skips what another process applied meanwhile. Returns the
    file's version; ``StoreUnavailable`` when the file is newer than this code.
    """
    current = user_version(conn)
    if current > schema.version:
        raise StoreUnavailable(f"database schema v{current} is newer than this collector (v{schema.version})")
    for migration in schema.migrations[current:]:
        with transaction(conn) as cur:
            if user_version(conn) >= migration.version:
                continue
            for step in migration.steps:
                if isinstance(step, str):
                    cur.execute(step)
                else:
                    step(conn)
            # A pragma takes no parameters; the version is an int from this module.
            cur.execute(f"PRAGMA user_version = {int(migration.version)}")
    return schema.version


class SharedConnection:
    """One connection several threads use in turn, for features with few, short statements.

    ``transaction`` and ``read`` hold a lock for their duration. With ``map_errors`` (the default)
    SQLite errors become ``StoreUnavailable`` naming ``name`` (``budget storage write failed: ...``),
    as callers that answer 503 expect; without, they propagate unchanged.
    """

    def __init__(self, conn: sqlite3.Connection, *, name: str, map_errors: bool = True) -> None:
        self.name = name
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self._map_errors = map_errors

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            conn = self._require()
            with self._errors("write"), transaction(conn) as cur:
                yield cur

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query."""
        with self._lock:
            conn = self._require()
            with self._errors("read"):
                return conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise ``StoreUnavailable``."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"{self.name} is closed")
        return self._conn

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if not self._map_errors:
            yield
            return
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.name} {what} failed: {exc}") from exc
