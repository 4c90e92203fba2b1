"""Budgets on their own: period math, validation, and the engine over a real SQLite store with a fake clock."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from spendgate_collector.audit import AuditLog
from spendgate_collector.budgets import (
    BudgetEngine,
    BudgetError,
    BudgetStorage,
    Transition,
    parse_budget,
    period_at,
)
from spendgate_collector.budgets.board import Scope
from spendgate_collector.control import ControlLog
from spendgate_collector.errors import StoreUnavailable
from spendgate_collector.records import SpendRecord
from spendgate_collector.store.base import WriteResult
from spendgate_collector.store.sqlite import SQLiteStore
from tests.collector.spans import ns
from tests.support.board import budget_states, in_force

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR_NS = 3600 * 1_000_000_000


def _local(iso: str, zone: ZoneInfo) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=zone).timestamp()) * 1_000_000_000


# --- periods


@pytest.mark.parametrize(
    ("kind", "zone", "at", "start", "end", "hours"),
    [
        ("day", UTC, "2026-11-03T10:00:00+00:00", "2026-11-03T00:00:00+00:00", "2026-11-04T00:00:00+00:00", 24),
        # Berlin leaves summer time on Sunday 2026-10-25 at 03:00 CEST: that day has 25 hours.
        ("day", BERLIN, "2026-10-25T12:00:00+01:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25),
        ("week", BERLIN, "2026-10-25T12:00:00+01:00", "2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 169),
        ("month", BERLIN, "2026-10-31T23:30:00+01:00", "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00", 745),
        # New York leaves daylight time on Sunday 2026-11-01 at 02:00 EDT, enters it on 2026-03-08.
        ("day", NEW_YORK, "2026-11-01T01:30:00-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 25),
        ("day", NEW_YORK, "2026-03-08T12:00:00-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 23),
        ("week", NEW_YORK, "2026-11-04T09:00:00-05:00", "2026-11-02T00:00:00-05:00", "2026-11-09T00:00:00-05:00", 168),
        # 02:30 UTC on 1 November is still October in New York.
        ("month", NEW_YORK, "2026-11-01T02:30:00+00:00", "2026-10-01T00:00:00-04:00", "2026-11-01T00:00:00-04:00", 744),
        # ISO weeks start on Monday: Sunday 1 November belongs to the week of 26 October.
        ("week", UTC, "2026-11-01T23:59:59+00:00", "2026-10-26T00:00:00+00:00", "2026-11-02T00:00:00+00:00", 168),
        ("month", UTC, "2026-12-31T23:59:59+00:00", "2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", 744),
    ],
)
def test_period_boundaries(kind: str, zone: Any, at: str, start: str, end: str, hours: int) -> None:
    at_ns = int(datetime.fromisoformat(at).timestamp()) * 1_000_000_000
    period = period_at(kind, zone, at_ns)
    assert start == period.start_iso
    assert end == period.end.isoformat()
    assert hours * HOUR_NS == period.end_ns - period.start_ns
    assert period.contains(at_ns)


def test_an_instant_on_a_boundary_starts_the_next_period() -> None:
    boundary = _local("2026-10-26T00:00:00", BERLIN)
    assert "2026-10-26T00:00:00+01:00" == period_at("day", BERLIN, boundary).start_iso
    assert "2026-10-25T00:00:00+02:00" == period_at("day", BERLIN, boundary - 1).start_iso


# --- validation


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"id": "a", "limit_usd": 10, "period": "year"}, "period"),
        ({"id": "a", "limit_usd": -5}, "limit_usd"),
        ({"id": "a", "limit_usd": 0}, "limit_usd"),
        ({"id": "a"}, "limit_usd"),
        ({"id": "a", "limit_usd": "lots"}, "limit_usd"),
        ({"id": "A B", "limit_usd": 10}, "id"),
        ({"id": "status", "limit_usd": 10}, "id"),
        ({"id": "a", "limit_usd": 10, "scope": {"squad": "x"}}, "scope.squad"),
        ({"id": "a", "limit_usd": 10, "timezone": "Mars/Olympus"}, "timezone"),
        (
            {
                "id": "a",
                "limit_usd": 10,
                "thresholds": [{"at": 0.9, "action": "alert"}, {"at": 0.8, "action": "pause"}],
            },
            "thresholds.1.at",
        ),
        (
            {"id": "a", "limit_usd": 10, "thresholds": [{"at": 1.0, "action": "route", "from": "big"}]},
            "thresholds.0.to",
        ),
        ({"id": "a", "limit_usd": 10, "thresholds": [{"at": 1.0, "action": "shout"}]}, "thresholds.0.action"),
        (
            {"id": "a", "limit_usd": 10, "thresholds": [{"at": 1, "action": "pause"}, {"at": 2, "action": "pause"}]},
            "thresholds.1.action",
        ),
        ({"id": "a", "limit_usd": 10, "thresholds": [{"at": 1.0, "action": "alert", "to": "x"}]}, "thresholds.0.to"),
        ({"id": "a", "limit_usd": 10, "colour": "red"}, "colour"),
    ],
)
def test_invalid_budgets_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(BudgetError) as info:
        parse_budget(data)
    assert field == info.value.field


def test_budget_defaults_and_user_alias() -> None:
    budget = parse_budget(
        {"id": "ana", "limit_usd": 50, "scope": {"user": "ana@acme.com"}}, default_timezone="Europe/Berlin"
    )
    assert {"developer": "ana@acme.com"} == budget.scope_dict
    assert "month" == budget.period
    assert "Europe/Berlin" == budget.timezone
    assert [{"at": 0.8, "action": "alert"}, {"at": 1.1, "action": "pause"}] == [t.to_dict() for t in budget.thresholds]


# --- the engine over a real store


class Clock:
    def __init__(self, iso: str) -> None:
        self.now = ns(iso)

    def __call__(self) -> int:
        return self.now

    def set(self, iso: str) -> None:
        self.now = ns(iso)


class Harness:
    """A store, a board, an engine and the audit log on one SQLite file, with a fake clock and the transitions seen."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self.store = SQLiteStore(path)
        self.board = ControlLog()
        self.transitions: list[Transition] = []
        self.engine = BudgetEngine(BudgetStorage(path), self.board, notify=self.transitions.append, clock=clock)
        self.engine.open()
        self.audit = AuditLog(path)
        self._next = 0

    def record(
        self, cost: float | None, *, end: str | None = None, span: int | None = None, **attrs: Any
    ) -> SpendRecord:
        if span is None:
            self._next += 1
            span = self._next
        end_ns = ns(end) if end else self.clock.now
        fields = {"developer": "ana@acme.com", "team": "platform", "repo": "acme-api", "model": "acme-coder", **attrs}
        return SpendRecord(f"{span:032x}", f"{span:016x}", end_ns - 1, end_ns, cost_usd=cost, **fields)

    def write(self, records: Sequence[SpendRecord]) -> WriteResult:
        return self.engine.write(self.store, records)

    def spend(self, bid: str) -> float:
        return self.status(bid)["spend_usd"]

    def status(self, bid: str) -> dict[str, Any]:
        (status,) = self.engine.status(bid)
        return status

    def moves(self) -> list[tuple[str, str, str, str]]:
        return [(t.budget.id, t.from_state, t.to_state, t.cause) for t in self.transitions]

    def verdict_ids(self) -> list[str]:
        return sorted(v.id for v in in_force(self.board))

    def close(self) -> None:
        self.audit.close()
        self.engine.storage.close()
        self.store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-11-10T12:00:00")


@pytest.fixture
def h(tmp_path: Path, clock: Clock) -> Iterator[Harness]:
    harness = Harness(tmp_path / "b.db", clock)
    yield harness
    harness.close()


PLATFORM = {"id": "platform", "limit_usd": 100, "scope": {"team": "platform"}}
NOV = "2026-11-01T00:00:00+00:00"


def test_thresholds_transition_exactly_once_each(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.write([h.record(79.99)])
    assert "ok" == h.status("platform")["state"]
    h.write([h.record(0.01)])  # exactly 80 %
    h.write([h.record(5.0), h.record(5.0)])
    assert "alert" == h.status("platform")["state"]
    assert [] == h.verdict_ids()  # alerts put nothing on the board
    h.write([h.record(20.0)])  # exactly 110 %
    h.write([h.record(3.0)])
    assert [("platform", "ok", "alert", "spend"), ("platform", "alert", "pause", "spend")] == h.moves()
    assert [f"platform:{NOV}:pause"] == h.verdict_ids()
    (verdict,) = in_force(h.board)
    assert Scope(team="platform") == verdict.scope
    assert "team platform spent $110.00 of its $100.00 monthly budget (110 %)" == verdict.reason
    assert (110.0, 100.0) == (verdict.spend_usd, verdict.limit_usd)
    assert ns("2026-12-01T00:00:00") // 1_000_000 == verdict.until_ms
    assert "spendgate budgets override platform" in verdict.override_hint
    assert 113.0 == h.spend("platform")


def test_totals_are_exact_and_match_the_stored_spend(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.engine.put_budget({"id": "org", "limit_usd": 1000}, actor="test")
    records = [
        h.record(0.1),
        h.record(0.2),
        h.record(None),  # unpriced: counts for nothing
        h.record(7.0, team="mobile"),  # another team: only the org budget
        h.record(1.0, end="2026-10-31T23:59:59"),  # last month: its own period
    ]
    h.write(records)
    h.write(records)  # an exporter retry: all duplicates, nothing counts twice
    assert 0.3 == h.spend("platform")
    assert 2 == h.status("platform")["requests"]
    assert 7.3 == h.spend("org")
    with sqlite3.connect(h.path) as db:
        totals = db.execute(
            "SELECT budget_id, period_start, cost_nanos, requests FROM budget_totals ORDER BY 1, 2"
        ).fetchall()
        stored_platform = db.execute(
            "SELECT sum(CAST(round(cost_usd * 1e9) AS INTEGER)) FROM spend WHERE team = 'platform' AND end_ns >= ?",
            (ns("2026-11-01T00:00:00"),),
        ).fetchone()[0]
    assert [
        ("org", "2026-10-01T00:00:00+00:00", 1_000_000_000, 1),
        ("org", NOV, 7_300_000_000, 3),
        ("platform", "2026-10-01T00:00:00+00:00", 1_000_000_000, 1),
        ("platform", NOV, 300_000_000, 2),
    ] == totals
    assert 300_000_000 == stored_platform


def test_restart_keeps_totals_states_and_verdicts_without_repeating_transitions(tmp_path: Path, clock: Clock) -> None:
    first = Harness(tmp_path / "b.db", clock)
    first.engine.put_budget(PLATFORM, actor="test")
    first.write([first.record(111.5)])
    verdicts = in_force(first.board)
    first.close()

    second = Harness(tmp_path / "b.db", clock)
    assert 111.5 == second.spend("platform")
    assert "pause" == second.status("platform")["state"]
    assert verdicts == in_force(second.board)  # same id, since, reason
    assert [] == second.moves()
    second.close()


def test_a_budget_created_mid_period_counts_the_spend_already_stored(h: Harness) -> None:
    h.write([h.record(30.0), h.record(20.0, repo="other"), h.record(5.0, end="2026-10-30T10:00:00")])
    h.engine.put_budget({**PLATFORM, "scope": {"team": "platform", "repo": "acme-api"}}, actor="test")
    assert 30.0 == h.spend("platform")
    h.engine.put_budget({**PLATFORM, "scope": {"team": "platform"}}, actor="test")  # re-scoped: recounted
    assert 50.0 == h.spend("platform")


def test_scope_matching(h: Harness) -> None:
    budgets = {
        "ana": {"developer": "ana@acme.com"},
        "team-repo": {"team": "platform", "repo": "acme-api"},
        "repo": {"repo": "acme-api"},
        "opus": {"model": "claude-opus-4-1"},
        "key": {"key_id": "key_1"},
        "cc": {"cost_center": "CC-1"},
    }
    for bid, scope in budgets.items():
        h.engine.put_budget({"id": bid, "limit_usd": 1000, "scope": scope}, actor="test")
    h.write(
        [
            h.record(1.0),  # ana, platform, acme-api, acme-coder
            h.record(2.0, developer="bo@acme.com", repo="web"),
            h.record(4.0, model="claude-opus-4-1", key_id="key_1", cost_center="CC-1"),
            h.record(8.0, team=None, developer=None),
        ]
    )
    assert {"ana": 5.0, "team-repo": 5.0, "repo": 13.0, "opus": 4.0, "key": 4.0, "cc": 4.0} == {
        bid: h.spend(bid) for bid in budgets
    }


def test_lift_override_removes_the_verdict_until_it_expires(h: Harness, clock: Clock) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.write([h.record(120.0)])
    override = h.engine.add_override(
        "platform", {"action": "lift", "for": "2h", "reason": "refactor"}, actor="lead@acme.com"
    )
    assert [] == h.verdict_ids()
    status = h.status("platform")
    assert ("ok", None) == (status["state"], status["effective_limit_usd"])
    assert [override.id] == [o["id"] for o in status["overrides"]]

    clock.now += 2 * HOUR_NS  # the override lapses: paused again
    h.engine.tick()
    assert "pause" == h.status("platform")["state"]
    assert [f"platform:{NOV}:pause"] == h.verdict_ids()
    assert [
        ("platform", "ok", "pause", "spend"),
        ("platform", "pause", "ok", "override"),
        ("platform", "ok", "pause", "override_expired"),
    ] == h.moves()
    actions = [e["action"] for e in h.audit.read(budget_id="platform")]
    assert ["budget.transition", "override.expired", "budget.transition", "override.created"] == actions[:4]


def test_raise_override_and_removing_it(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.write([h.record(115.0)])
    override = h.engine.add_override(
        "platform", {"action": "raise", "limit_usd": 125, "reason": "release"}, actor="lead"
    )
    status = h.status("platform")
    assert ("alert", 125.0, 92.0) == (status["state"], status["effective_limit_usd"], status["percent"])
    assert [] == h.verdict_ids()
    h.engine.remove_override("platform", override.id, actor="lead")
    assert "pause" == h.status("platform")["state"]
    with pytest.raises(BudgetError) as info:
        h.engine.add_override("platform", {"action": "raise", "limit_usd": 90, "reason": "x"}, actor="lead")
    assert "limit_usd" == info.value.field


def test_raising_the_limit_returns_to_ok(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.write([h.record(115.0)])
    h.engine.put_budget({**PLATFORM, "limit_usd": 200}, actor="test")
    assert ("ok", 115.0) == (h.status("platform")["state"], h.spend("platform"))  # not recounted, not lost
    assert [] == h.verdict_ids()
    assert ("platform", "pause", "ok", "budget_changed") == h.moves()[-1]


def test_a_new_period_starts_at_ok(h: Harness, clock: Clock) -> None:
    h.engine.put_budget({**PLATFORM, "period": "day", "timezone": "Europe/Berlin"}, actor="test")
    h.write([h.record(111.0)])
    assert ["platform:2026-11-10T00:00:00+01:00:pause"] == h.verdict_ids()
    clock.set("2026-11-10T23:00:00")  # midnight in Berlin
    h.engine.tick()
    assert ("ok", 0.0) == (h.status("platform")["state"], h.spend("platform"))
    assert [] == h.verdict_ids()
    assert ("platform", "pause", "ok", "period") == h.moves()[-1]
    # A span of yesterday that arrives late counts for yesterday, not today.
    h.write([h.record(50.0, end="2026-11-10T22:59:59")])
    assert 0.0 == h.spend("platform")
    assert 161_000_000_000 == h.engine.storage.total("platform", ns("2026-11-09T23:00:00"))[0]


def test_route_threshold_puts_a_route_verdict_scoped_to_the_developer(h: Harness) -> None:
    thresholds = [
        {"at": 0.8, "action": "alert"},
        {"at": 1.0, "action": "route", "from": "claude-opus-4-1", "to": "claude-sonnet-4-5"},
        {"at": 1.5, "action": "pause"},
    ]
    h.engine.put_budget(
        {
            "id": "ana",
            "limit_usd": 10,
            "scope": {"developer": "ana@acme.com"},
            "thresholds": thresholds,
            "owner": "#eng-budgets",
        },
        actor="test",
    )
    h.write([h.record(10.0)])
    (verdict,) = in_force(h.board)
    assert (f"ana:{NOV}:route", "route") == (verdict.id, verdict.action)
    assert ("claude-opus-4-1", "claude-sonnet-4-5") == (verdict.route_from, verdict.route_to)
    assert Scope(user="ana@acme.com") == verdict.scope
    assert "ask #eng-budgets for an override (spendgate budgets override ana)" == verdict.override_hint
    h.write([h.record(5.0)])
    assert [f"ana:{NOV}:pause", f"ana:{NOV}:route"] == h.verdict_ids()
    assert [("ana", "ok", "route", "spend"), ("ana", "route", "pause", "spend")] == h.moves()


def test_deleting_a_paused_budget_lifts_its_verdict(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    h.write([h.record(200.0)])
    h.engine.delete_budget("platform", actor="test")
    assert [] == h.verdict_ids()
    assert ("platform", "pause", "ok", "deleted") == h.moves()[-1]
    with sqlite3.connect(h.path) as db:
        assert 0 == db.execute("SELECT count(*) FROM budget_totals").fetchone()[0]


def test_a_failed_commit_changes_no_total(h: Harness) -> None:
    h.engine.put_budget(PLATFORM, actor="test")

    class FailingStore:
        """Runs the real transaction, companion included, then fails as a full disk would."""

        def write(self, records: Sequence[SpendRecord], companion: Any = None) -> WriteResult:
            def failing(inserted: list[SpendRecord]) -> Any:
                companion(inserted)
                raise StoreUnavailable("disk full")

            return h.store.write(records, failing)

    with pytest.raises(StoreUnavailable):
        h.engine.write(FailingStore(), [h.record(150.0)])  # type: ignore[arg-type]
    assert (0.0, "ok") == (h.spend("platform"), h.status("platform")["state"])
    assert [] == h.store.raw_rows()
    h.write([h.record(150.0, span=1)])  # the exporter's retry
    assert (150.0, "pause") == (h.spend("platform"), h.status("platform")["state"])


def test_budgets_in_different_time_zones_count_each_record_in_their_own_day(h: Harness) -> None:
    # At 12:00 UTC, Berlin's day started at 23:00 UTC yesterday and New York's at 05:00 UTC today.
    h.engine.put_budget({"id": "berlin", "limit_usd": 100, "period": "day", "timezone": "Europe/Berlin"}, actor="t")
    h.engine.put_budget({"id": "nyc", "limit_usd": 100, "period": "day", "timezone": "America/New_York"}, actor="t")
    h.write(
        [
            h.record(1.0, end="2026-11-10T03:00:00"),  # Berlin today, New York yesterday
            h.record(2.0, end="2026-11-10T12:00:00"),  # both today
            h.record(4.0, end="2026-11-10T23:30:00"),  # Berlin tomorrow, New York today
        ]
    )
    assert (3.0, 6.0) == (h.spend("berlin"), h.spend("nyc"))
    assert 1_000_000_000 == h.engine.storage.total("nyc", ns("2026-11-09T05:00:00"))[0]
    assert 4_000_000_000 == h.engine.storage.total("berlin", ns("2026-11-10T23:00:00"))[0]


# --- budget states on the board (what proxies turn into response headers)


def _budget_states(h: Harness) -> dict[str, Any]:
    return {b.budget_id: b for b in budget_states(h.board)}


def test_budget_state_is_published_at_once_on_change_and_spend_is_rate_limited(h: Harness, clock: Clock) -> None:
    h.engine.put_budget(PLATFORM, actor="test")
    b = _budget_states(h)["platform"]
    assert (Scope(team="platform"), 100.0, 0.0, "ok", False) == (b.scope, b.limit_usd, b.spend_usd, b.state, b.lifted)
    assert (ns("2026-11-01T00:00:00"), ns("2026-12-01T00:00:00")) == (
        b.period_start_ms * 1_000_000,
        b.period_end_ms * 1_000_000,
    )
    version = h.board.version
    # Spend within the refresh interval (5 s by default) is held back: no board change per batch.
    h.write([h.record(10.0)])
    clock.now += 2_000_000_000
    h.write([h.record(5.0)])
    h.engine.tick()
    assert (version, 0.0) == (h.board.version, _budget_states(h)["platform"].spend_usd)
    # Once the interval has passed, the timer publishes the total in one change.
    clock.now += 3_000_000_000
    h.engine.tick()
    assert (version + 1, 15.0) == (h.board.version, _budget_states(h)["platform"].spend_usd)
    h.engine.tick()
    assert version + 1 == h.board.version  # nothing new, nothing sent
    # A transition is sent at once, with its verdicts in the same change.
    h.write([h.record(70.0)])
    b = _budget_states(h)["platform"]
    assert (version + 2, 85.0, "alert") == (h.board.version, b.spend_usd, b.state)


def test_budget_state_follows_overrides_periods_and_deletion(h: Harness, clock: Clock) -> None:
    h.engine.put_budget({**PLATFORM, "period": "day"}, actor="test")
    h.write([h.record(111.0)])
    assert "pause" == _budget_states(h)["platform"].state
    h.engine.add_override("platform", {"action": "raise", "limit_usd": 500, "for": "1h", "reason": "x"}, actor="lead")
    b = _budget_states(h)["platform"]
    assert (500.0, "ok", False) == (b.limit_usd, b.state, b.lifted)
    h.engine.add_override("platform", {"action": "lift", "for": "1h", "reason": "x"}, actor="lead")
    assert _budget_states(h)["platform"].lifted
    clock.set("2026-11-11T00:00:00")
    h.engine.tick()
    b = _budget_states(h)["platform"]
    assert (0.0, "ok", ns("2026-11-12T00:00:00")) == (b.spend_usd, b.state, b.period_end_ms * 1_000_000)
    h.engine.delete_budget("platform", actor="test")
    assert {} == _budget_states(h)
