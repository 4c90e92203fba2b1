"""The collector's one database layer: numbered migrations, and files written before the registry.

``tests/fixtures/db/collector-b0dca42.sql`` is a database written by the code before ``store/db.py``
(every feature with its own connection and DDL, ``user_version`` 1); its README says how it was
made. Opening it with today's code must migrate it to the current version and keep every row.
"""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from spendgate_collector.audit import AuditLog
from spendgate_collector.auth.identity import Role
from spendgate_collector.auth.sessions import SessionStore
from spendgate_collector.budgets import BudgetEngine, BudgetStorage
from spendgate_collector.control import ControlLog
from spendgate_collector.cursor_admin.state import StateTable
from spendgate_collector.errors import StoreUnavailable
from spendgate_collector.exporters.queue import ExportQueue
from spendgate_collector.store import db
from spendgate_collector.store.migrations import COLLECTOR, EXPORT_QUEUE, Migration, Schema
from spendgate_collector.store.query import SpendFilter, parse_month
from spendgate_collector.store.sqlite import SQLiteStore
from tests.support.board import budget_states, in_force

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "db" / "collector-b0dca42.sql"
NOV_10_13H = 1_794_315_600_000_000_000  # 2026-11-10T13:00:00Z, the old engine's clock
SESSION_ID = "old-session-id-from-b0dca42"


def _old_database(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(FIXTURE.read_text())
    return path


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: what a migration must keep."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def _shape(path: Path) -> dict[str, Any]:
    """Tables with their columns (name, type, not null, default, primary key) and indexes with their columns."""
    with closing(sqlite3.connect(path)) as conn:
        shape: dict[str, Any] = {}
        for kind, name, table in conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ):
            if kind == "table":
                shape[name] = [row[1:] for row in conn.execute(f'PRAGMA table_info("{name}")')]
            elif kind == "index":
                shape[name] = (table, [row[2] for row in conn.execute(f'PRAGMA index_info("{name}")')])
        return shape


def _version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_a_database_from_before_the_registry_is_migrated_without_loss(tmp_path: Path) -> None:
    old = _old_database(tmp_path / "old.db")
    before = _rows(old)
    assert 1 == _version(old)

    SQLiteStore(old).close()  # what a collector start does first

    assert COLLECTOR.version == _version(old)
    # Every table it had, every row, unchanged; and the tables a fresh file has, no fewer and no more.
    assert before == {table: rows for table, rows in _rows(old).items() if table in before}
    with closing(SQLiteStore(tmp_path / "new.db")):
        pass
    assert _shape(tmp_path / "new.db") == _shape(old)


def test_every_feature_reads_its_rows_from_a_migrated_old_database(tmp_path: Path) -> None:
    path = _old_database(tmp_path / "old.db")
    store = SQLiteStore(path)
    try:
        # Spend rows and rollups: five calls, four priced (60 + 50 + 7 + 0.50 dollars), one unpriced.
        assert 5 == len(store.raw_rows())
        nov = SpendFilter(*parse_month("month", "2026-11"))
        by_team = {r["team"]: (r["requests"], r["cost_usd"]) for r in store.spend(nov, ("team",))}
        assert {"platform": (4, 110.5), "mobile": (1, 7.0)} == by_team
        assert {"k-ana": 1_794_312_299_000_000_000} == store.key_last_used()
    finally:
        store.close()

    # Budgets: definitions, running totals, the platform pause (and its verdict), the org override.
    engine = BudgetEngine(BudgetStorage(path), log := ControlLog(), clock=lambda: NOV_10_13H)
    engine.open()
    try:
        status = {s["id"]: s for s in engine.status()}
        assert (110.0, "pause") == (status["platform"]["spend_usd"], status["platform"]["state"])
        assert (117.0, 2000.0) == (status["org"]["spend_usd"], status["org"]["effective_limit_usd"])
        assert ["launch"] == [o["reason"] for o in status["org"]["overrides"]]
        assert ["platform"] == [v.budget_id for v in in_force(log)]
        assert {"org", "platform"} == {b.budget_id for b in budget_states(log)}
    finally:
        engine.storage.close()

    audit = AuditLog(path)
    try:
        assert ["override.created", "budget.transition", "budget.created", "budget.created"] == [
            e["action"] for e in audit.read()
        ]
    finally:
        audit.close()

    sessions = SessionStore(path)
    try:
        identity = sessions.get(SESSION_ID)
        assert identity is not None
        assert (Role.LEAD, "lea@acme.com", ("platform",)) == (identity.role, identity.email, identity.teams)
    finally:
        sessions.close()

    cursor = StateTable(path, "https://api.cursor.com").load()
    assert (1_794_312_000_000, 1_794_311_999_995, {"e1"}) == (cursor.scanned_to_ms, cursor.last_ts_ms, cursor.seen)


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    path = _old_database(tmp_path / "old.db")
    SQLiteStore(path).close()
    once = _rows(path)
    for opener in (SQLiteStore, BudgetStorage, AuditLog, SessionStore):
        opener(path).close()
    assert once == _rows(path)


@pytest.mark.parametrize("opener", [SQLiteStore, BudgetStorage, AuditLog, SessionStore], ids=lambda o: o.__name__)
def test_whichever_feature_opens_a_new_file_first_brings_it_to_the_whole_schema(tmp_path: Path, opener: Any) -> None:
    opener(tmp_path / "first.db").close()
    with closing(SQLiteStore(tmp_path / "store.db")):
        pass
    assert COLLECTOR.version == _version(tmp_path / "first.db")
    assert _shape(tmp_path / "store.db") == _shape(tmp_path / "first.db")
    with closing(sqlite3.connect(tmp_path / "first.db")) as conn:
        assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_file_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {COLLECTOR.version + 1}")
    with pytest.raises(StoreUnavailable, match=f"schema v{COLLECTOR.version + 1} is newer than this collector"):
        SQLiteStore(path)


def test_a_failing_migration_leaves_the_file_at_the_version_before_it(tmp_path: Path) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("disk full, say")

    schema = Schema(
        "test",
        (
            Migration(1, "a", "first", ("CREATE TABLE one (x INTEGER)",)),
            Migration(2, "b", "fails half-way", ("CREATE TABLE two (x INTEGER)", boom)),
        ),
    )
    path = tmp_path / "t.db"
    with pytest.raises(RuntimeError, match="disk full"):
        db.connect(path, schema=schema)
    assert 1 == _version(path)
    assert ["one"] == list(_shape(path))


def test_migrations_must_be_numbered_in_order() -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        Schema("test", (Migration(1, "a", "", ()), Migration(3, "a", "", ())))


def test_an_export_queue_written_before_the_registry_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    with closing(sqlite3.connect(path)) as conn:  # the queue's DDL before the registry (no user_version)
        conn.executescript(
            "CREATE TABLE export_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, exporter TEXT NOT NULL, "
            "spans INTEGER NOT NULL, bytes INTEGER NOT NULL, enqueued_ns INTEGER NOT NULL, payload BLOB NOT NULL);"
            "CREATE INDEX export_queue_by_exporter ON export_queue (exporter, seq);"
            "INSERT INTO export_queue (exporter, spans, bytes, enqueued_ns, payload) "
            "VALUES ('backend', 2, 3, 1, x'0a0b0c');"
        )
    queue = ExportQueue(path)
    try:
        assert ["backend"] == queue.exporters_with_rows()
        item = queue.peek("backend", 1 << 20)
        assert item is not None and (2, b"\x0a\x0b\x0c") == (item.spans, item.payload)
    finally:
        queue.close()
    assert EXPORT_QUEUE.version == _version(path)
