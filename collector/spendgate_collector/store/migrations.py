"""Every table of the collector's databases, as numbered migrations ``db.migrate`` applies in order.

The collector's SQLite file (``COLLECTOR``) holds the tables of every feature: spend and its
rollups (``store/``), budgets (``budgets/storage.py``), the audit log (``audit.py``), sign-in
sessions (``auth/sessions.py``) and the Cursor connector's cursor and tables (``cursor_admin/``).
A feature adds a table or a column by appending a migration here, never by creating it itself, so
one ``PRAGMA user_version`` says what a file holds and the SQL dialect stays inside ``store/``.
The exporters' queue is a file of its own by design (a crash-safe spool beside the store, written
by another process), so it has its own short list (``EXPORT_QUEUE``).

A migration is history: once released it never changes, and its SQL is written out here rather
than derived from the code's current column lists. Each runs in one transaction with its
``user_version`` bump, so a crash leaves a file at the version before it, never half-migrated.

Migrations 1-8 are the schema as it stood when this registry was introduced. Files written before
it carry ``user_version`` 1 (the spend store's own number) whatever other tables they hold, so
2-8 create only what is missing: ``IF NOT EXISTS`` for plain tables, and each rollup is
back-filled only when its table is new (an existing one is already up to date, since every
batch adds to it). Migrations after 8 may assume the state the ones before them leave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .rollup_tables import table_exists

Step = str | Callable[[sqlite3.Connection], None]
"""One statement (no parameters) or a function run on the migrating connection, inside its transaction."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered change of a schema."""

    version: int
    feature: str
    """Who owns what it creates, e.g. ``budgets``."""
    summary: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Schema:
    """A kind of database file and its migrations, numbered 1, 2, 3, ... in order."""

    name: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        numbers = [m.version for m in self.migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"{self.name} migrations must be numbered 1..n in order, got {numbers}")

    @property
    def version(self) -> int:
        """The version a file has once every migration ran."""
        return len(self.migrations)


def _new_rollup(table: str, ddl: str, *fills: tuple[str, Sequence[Any]]) -> Callable[[sqlite3.Connection], None]:
    """Create ``table`` and back-fill it, unless a file from before the registry already has it."""

    def step(conn: sqlite3.Connection) -> None:
        if table_exists(conn, table):
            return
        conn.execute(ddl)
        for sql, params in fills:
            conn.execute(sql, params)

    return step


# --- 1: spend, and the daily and monthly rollups (store/sqlite.py)

_SPEND = """CREATE TABLE IF NOT EXISTS "spend" (
   "trace_id" TEXT NOT NULL,
   "span_id" TEXT NOT NULL,
   "start_ns" INTEGER NOT NULL,
   "end_ns" INTEGER NOT NULL,
   "developer" TEXT,
   "team" TEXT,
   "cost_center" TEXT,
   "repo" TEXT,
   "repo_url" TEXT,
   "branch" TEXT,
   "repo_source" TEXT,
   "feature" TEXT,
   "key_id" TEXT,
   "provider" TEXT,
   "model" TEXT,
   "requested_model" TEXT,
   "input_tokens" INTEGER NOT NULL,
   "output_tokens" INTEGER NOT NULL,
   "cache_read_tokens" INTEGER NOT NULL,
   "cache_write_tokens" INTEGER NOT NULL,
   "reasoning_tokens" INTEGER NOT NULL,
   "usage_source" TEXT,
   "status" TEXT NOT NULL,
   "error_type" TEXT,
   "ttft_ms" REAL,
   "service_name" TEXT,
   "cost_usd" REAL,
   "cost_source" TEXT,
   "price_version" TEXT
)"""
_MEASURES = (
    "requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, "
    "unpriced_requests INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, "
    "output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0, "
    "cache_write_tokens INTEGER NOT NULL DEFAULT 0, reasoning_tokens INTEGER NOT NULL DEFAULT 0, "
    "cost_nanos INTEGER NOT NULL DEFAULT 0, unpriced_input_tokens INTEGER NOT NULL DEFAULT 0, "
    "unpriced_output_tokens INTEGER NOT NULL DEFAULT 0"
)
_ROLLUP_DAILY = (
    "CREATE TABLE IF NOT EXISTS rollup_daily (day TEXT NOT NULL, developer TEXT NOT NULL, team TEXT NOT NULL, "
    "cost_center TEXT NOT NULL, repo TEXT NOT NULL, model TEXT NOT NULL, feature TEXT NOT NULL, "
    f"provider TEXT NOT NULL, {_MEASURES}, "
    "PRIMARY KEY (day, developer, team, cost_center, repo, model, feature, provider)) WITHOUT ROWID"
)
_ROLLUP_MONTHLY = (
    "CREATE TABLE IF NOT EXISTS rollup_monthly (month TEXT NOT NULL, developer TEXT NOT NULL, team TEXT NOT NULL, "
    f"cost_center TEXT NOT NULL, repo TEXT NOT NULL, {_MEASURES}, "
    "PRIMARY KEY (month, developer, team, cost_center, repo)) WITHOUT ROWID"
)

# --- 2: the team-day rollup (store/team_daily_rollup.py), back-filled from the daily rollup

_ROLLUP_DAILY_TEAM = (
    "CREATE TABLE rollup_daily_team (day TEXT NOT NULL, team TEXT NOT NULL, cost_center TEXT NOT NULL, "
    f"model TEXT NOT NULL, feature TEXT NOT NULL, provider TEXT NOT NULL, {_MEASURES}, "
    "PRIMARY KEY (day, team, cost_center, model, feature, provider)) WITHOUT ROWID"
)
_FILL_DAILY_TEAM = (
    "INSERT INTO rollup_daily_team (day, team, cost_center, model, feature, provider, requests, errors, "
    "unpriced_requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
    "cost_nanos, unpriced_input_tokens, unpriced_output_tokens) "
    "SELECT day, team, cost_center, model, feature, provider, SUM(requests), SUM(errors), SUM(unpriced_requests), "
    "SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(reasoning_tokens), "
    "SUM(cost_nanos), SUM(unpriced_input_tokens), SUM(unpriced_output_tokens) "
    "FROM rollup_daily GROUP BY day, team, cost_center, model, feature, provider"
)

# --- 3: keys' last use (store/key_usage.py), back-filled from the spend rows

_KEY_LAST_USED = "CREATE TABLE key_last_used (key_id TEXT PRIMARY KEY, last_start_ns INTEGER NOT NULL) WITHOUT ROWID"
_FILL_KEY_LAST_USED = (
    "INSERT INTO key_last_used (key_id, last_start_ns) "
    "SELECT key_id, max(start_ns) FROM spend WHERE key_id IS NOT NULL AND key_id != '' GROUP BY key_id"
)

# --- 4: the coverage rollup (store/coverage_rollup.py), back-filled from the spend rows, then
# from the daily rollup for spend whose raw rows retention had already deleted (source 'untracked').
# SQLite's round() rounds halves away from zero, Python's to even: the two can differ by one
# nano-dollar on an exact half, never more.

_ROLLUP_COVERAGE = (
    "CREATE TABLE rollup_coverage (day TEXT NOT NULL, developer TEXT NOT NULL, team TEXT NOT NULL, "
    "cost_center TEXT NOT NULL, repo_source TEXT NOT NULL, attributed INTEGER NOT NULL, "
    "requests INTEGER NOT NULL DEFAULT 0, unpriced_requests INTEGER NOT NULL DEFAULT 0, "
    "input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, "
    "cost_nanos INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (day, developer, team, cost_center, repo_source, attributed)) WITHOUT ROWID"
)
_COVERAGE_COLUMNS = (
    "day, developer, team, cost_center, repo_source, attributed, requests, unpriced_requests, input_tokens, "
    "output_tokens, cost_nanos"
)
_FILL_COVERAGE_FROM_SPEND = (
    f"INSERT INTO rollup_coverage ({_COVERAGE_COLUMNS}) "
    "SELECT strftime('%Y-%m-%d', end_ns / 1000000000, 'unixepoch'), coalesce(developer, ''), coalesce(team, ''), "
    "coalesce(cost_center, ''), coalesce(repo_source, ''), coalesce(repo, '') != '', "
    "count(*), sum(cost_usd IS NULL), sum(input_tokens), sum(output_tokens), "
    "coalesce(sum(CAST(round(cost_usd * 1000000000) AS INTEGER)), 0) "
    "FROM spend GROUP BY 1, 2, 3, 4, 5, 6"
)
_FILL_COVERAGE_REMAINDER = (
    f"INSERT INTO rollup_coverage ({_COVERAGE_COLUMNS}) "
    "SELECT d.day, d.developer, d.team, d.cost_center, ?, d.attributed, "
    "d.requests - coalesce(c.requests, 0), d.unpriced - coalesce(c.unpriced, 0), "
    "d.input_tokens - coalesce(c.input_tokens, 0), d.output_tokens - coalesce(c.output_tokens, 0), "
    "d.cost_nanos - coalesce(c.cost_nanos, 0) "
    "FROM (SELECT day, developer, team, cost_center, repo != '' AS attributed, sum(requests) AS requests, "
    "sum(unpriced_requests) AS unpriced, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
    "sum(cost_nanos) AS cost_nanos FROM rollup_daily GROUP BY 1, 2, 3, 4, 5) AS d "
    "LEFT JOIN (SELECT day, developer, team, cost_center, attributed, sum(requests) AS requests, "
    "sum(unpriced_requests) AS unpriced, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
    "sum(cost_nanos) AS cost_nanos FROM rollup_coverage GROUP BY 1, 2, 3, 4, 5) AS c "
    "USING (day, developer, team, cost_center, attributed) "
    "WHERE d.requests > coalesce(c.requests, 0)"
)
_UNTRACKED = "untracked"  # coverage_rollup.UNTRACKED

# --- 5: gateway calls per developer-hour (store/developer_hours.py), back-filled from the spend
# rows; Cursor-billed rows (repo_source 'cursor-admin-api') are not gateway traffic.

_ROLLUP_DEVELOPER_HOURS = (
    "CREATE TABLE rollup_developer_hours (hour INTEGER NOT NULL, developer TEXT NOT NULL, "
    "requests INTEGER NOT NULL DEFAULT 0, errors INTEGER NOT NULL DEFAULT 0, input_tokens INTEGER NOT NULL DEFAULT 0, "
    "output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (hour, developer)) WITHOUT ROWID"
)
_FILL_DEVELOPER_HOURS = (
    "INSERT INTO rollup_developer_hours (hour, developer, requests, errors, input_tokens, output_tokens, "
    "cache_read_tokens) "
    "SELECT start_ns / 3600000000000, coalesce(developer, ''), count(*), sum(status = 'error'), "
    "sum(input_tokens), sum(output_tokens), sum(cache_read_tokens) FROM spend "
    "WHERE coalesce(repo_source, '') != ? GROUP BY 1, 2"
)
_CURSOR_ADMIN_API = "cursor-admin-api"  # spendgate_semconv.attributes.RepoSource.CURSOR_ADMIN_API

COLLECTOR = Schema(
    "collector",
    (
        Migration(
            1,
            "spend",
            "spend rows, unique per span, and the daily and monthly rollups",
            (
                _SPEND,
                'CREATE UNIQUE INDEX IF NOT EXISTS "spend_span" ON "spend" ("trace_id", "span_id")',
                'CREATE INDEX IF NOT EXISTS "spend_end" ON "spend" ("end_ns")',
                _ROLLUP_DAILY,
                _ROLLUP_MONTHLY,
            ),
        ),
        Migration(
            2,
            "spend",
            "the team-day rollup",
            (_new_rollup("rollup_daily_team", _ROLLUP_DAILY_TEAM, (_FILL_DAILY_TEAM, ())),),
        ),
        Migration(
            3,
            "keys",
            "each key's last use",
            (_new_rollup("key_last_used", _KEY_LAST_USED, (_FILL_KEY_LAST_USED, ())),),
        ),
        Migration(
            4,
            "attribution",
            "the coverage rollup",
            (
                _new_rollup(
                    "rollup_coverage",
                    _ROLLUP_COVERAGE,
                    (_FILL_COVERAGE_FROM_SPEND, ()),
                    (_FILL_COVERAGE_REMAINDER, (_UNTRACKED,)),
                ),
            ),
        ),
        Migration(
            5,
            "attribution",
            "gateway calls per developer-hour",
            (
                _new_rollup(
                    "rollup_developer_hours", _ROLLUP_DEVELOPER_HOURS, (_FILL_DEVELOPER_HOURS, (_CURSOR_ADMIN_API,))
                ),
            ),
        ),
        Migration(
            6,
            "budgets",
            "budgets, overrides, running totals, last states, and the audit log",
            (
                """CREATE TABLE IF NOT EXISTS budgets (
        id TEXT PRIMARY KEY, spec TEXT NOT NULL, created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
        updated_by TEXT NOT NULL)""",
                """CREATE TABLE IF NOT EXISTS budget_overrides (
        id TEXT PRIMARY KEY, budget_id TEXT NOT NULL, action TEXT NOT NULL, limit_usd REAL,
        until_ns INTEGER NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL, created_ns INTEGER NOT NULL,
        ended_ns INTEGER, ended_by TEXT)""",
                "CREATE INDEX IF NOT EXISTS budget_overrides_budget ON budget_overrides (budget_id)",
                """CREATE TABLE IF NOT EXISTS budget_totals (
        budget_id TEXT NOT NULL, period_start_ns INTEGER NOT NULL, period_start TEXT NOT NULL,
        cost_nanos INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (budget_id, period_start_ns)) WITHOUT ROWID""",
                """CREATE TABLE IF NOT EXISTS budget_state (
        budget_id TEXT PRIMARY KEY, period_start_ns INTEGER NOT NULL, level INTEGER NOT NULL,
        state TEXT NOT NULL, since_ns INTEGER NOT NULL)""",
                """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at_ns INTEGER NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, budget_id TEXT, details TEXT NOT NULL)""",
                "CREATE INDEX IF NOT EXISTS audit_budget ON audit (budget_id, id)",
            ),
        ),
        Migration(
            7,
            "auth",
            "sign-in sessions (only the hash of a session id is stored)",
            (
                """CREATE TABLE IF NOT EXISTS auth_sessions (
    id_hash TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    email TEXT,
    name TEXT,
    teams TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL
)""",
                "CREATE INDEX IF NOT EXISTS auth_sessions_expiry ON auth_sessions (expires_ns)",
            ),
        ),
        Migration(
            8,
            "cursor_admin",
            "the Admin API poller's cursor, BYOK usage events and daily usage",
            (
                "CREATE TABLE IF NOT EXISTS cursor_admin_state (source TEXT PRIMARY KEY, "
                "scanned_to_ms INTEGER NOT NULL, last_ts_ms INTEGER NOT NULL, seen TEXT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS cursor_byok_events (event_id TEXT PRIMARY KEY, source TEXT NOT NULL, "
                "ts_ms INTEGER NOT NULL, email TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL, "
                "input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, "
                "cache_write_tokens INTEGER NOT NULL) WITHOUT ROWID",
                "CREATE INDEX IF NOT EXISTS cursor_byok_events_ts ON cursor_byok_events (ts_ms)",
                "CREATE TABLE IF NOT EXISTS cursor_daily_usage (source TEXT NOT NULL, day TEXT NOT NULL, "
                "email TEXT NOT NULL, api_key_reqs INTEGER NOT NULL, usage_based_reqs INTEGER NOT NULL, "
                "subscription_included_reqs INTEGER NOT NULL, composer_requests INTEGER NOT NULL, "
                "chat_requests INTEGER NOT NULL, agent_requests INTEGER NOT NULL, cmdk_usages INTEGER NOT NULL, "
                "total_tabs_accepted INTEGER NOT NULL, most_used_model TEXT, fetched_ms INTEGER NOT NULL, "
                "PRIMARY KEY (source, day, email)) WITHOUT ROWID",
            ),
        ),
    ),
)
"""The collector's database (``db``, default ``./spendgate-data/spendgate.db``)."""

EXPORT_QUEUE = Schema(
    "export queue",
    (
        Migration(
            1,
            "exporters",
            "one FIFO of ready-to-send requests per exporter",
            (
                """CREATE TABLE IF NOT EXISTS export_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exporter TEXT NOT NULL,
    spans INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    enqueued_ns INTEGER NOT NULL,
    payload BLOB NOT NULL
)""",
                "CREATE INDEX IF NOT EXISTS export_queue_by_exporter ON export_queue (exporter, seq)",
            ),
        ),
    ),
)
"""The exporters' persistent queue (``exporters_queue_file``, default beside the store)."""
