"""The Cursor Admin API connector against the simulated Admin API, over real HTTP on loopback.

Covers paging, the rate limit, 429 + Retry-After, a restart in the middle of a backfill, events
repeated across pages, and the chargeback showing Cursor-billed rows beside the gateway's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from spendgate_collector.cursor_admin import (
    AdminApiError,
    CursorAdminClient,
    CursorAdminPoller,
    StateTable,
    TokenBucket,
    event_ids,
    event_to_record,
)
from spendgate_collector.keys.file import Principal
from spendgate_collector.records import SpendRecord
from spendgate_collector.store.query import SpendFilter
from spendgate_collector.store.sqlite import SQLiteStore
from spendgate_simulator.cursor_admin import AdminSimulator, create_admin_app, day_ms, usage_event
from tests.support.aio_server import start_app

DAY = 86_400_000
T0 = day_ms("2026-11-20")
NOW = T0 + 3 * DAY - 1  # three daily windows of backfill, the first starting 1 ms before T0
FAST_RPM = 60_000.0  # the tests that are not about the rate limit should not wait for it


def run(coro_fn: Callable[[str], Awaitable[Any]], sim: AdminSimulator) -> Any:
    """Serve ``sim`` on an ephemeral loopback port and run ``coro_fn(base_url)`` against it."""

    async def main() -> Any:
        runner, port = await start_app(create_admin_app(sim))
        try:
            return await coro_fn(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def make_poller(
    base_url: str, store: SQLiteStore, *, rpm: float = FAST_RPM, page_size: int = 5, **kwargs: Any
) -> CursorAdminPoller:
    client = CursorAdminClient(
        "key_test_team", base_url=base_url, requests_per_minute=rpm, max_attempts=kwargs.pop("max_attempts", 4)
    )
    return CursorAdminPoller(
        client,
        store,
        StateTable(store.path, "https://api.cursor.com"),  # not the ephemeral URL: restarts must find it
        page_size=page_size,
        backfill_s=3 * 86_400,
        lookback_s=3600,
        now_ms=lambda: NOW,
        **kwargs,
    )


def seed_events(n_per_day: int = 12) -> list[dict[str, Any]]:
    events = []
    for day in range(3):
        for i in range(n_per_day):
            email = ("alice@acme.dev", "bob@acme.dev")[i % 2]
            events.append(usage_event(T0 + day * DAY + i * 60_000, email, input_tokens=100 + i, total_cents=2 + i))
    return events


def stored_keys(store: SQLiteStore) -> list[tuple[str, str]]:
    return [(r["trace_id"], r["span_id"]) for r in store.raw_rows()]


# --- mapping


def test_mapping_counts_cache_in_input_and_uses_cursors_cents() -> None:
    event = usage_event(
        T0, "Alice@Acme.dev", input_tokens=1000, cache_write_tokens=300, cache_read_tokens=5000, total_cents=12.5
    )
    principal = Principal(key_id="k1", user="alice@acme.dev", team="platform", cost_center="CC-1")
    record = event_to_record(event, lambda email: principal if email == "alice@acme.dev" else None)
    assert record is not None
    assert record.developer == "alice@acme.dev"
    assert (record.team, record.cost_center) == ("platform", "CC-1")
    assert record.input_tokens == 6300  # input + cache write + cache read, as spendgate counts input
    assert (record.cache_read_tokens, record.cache_write_tokens, record.output_tokens) == (5000, 300, 200)
    assert record.cost_usd == pytest.approx(0.125)
    assert (record.cost_source, record.usage_source, record.repo_source) == (
        "cursor-admin-api",
        "cursor-admin-api",
        "cursor-admin-api",
    )
    assert (record.service_name, record.provider, record.end_ns) == ("cursor-admin-api", "cursor", T0 * 1_000_000)
    assert (record.trace_id, record.span_id) == event_ids(event)
    assert len(record.trace_id) == 32 and len(record.span_id) == 16


def test_mapping_included_events_cost_zero_and_byok_is_skipped() -> None:
    included = event_to_record(usage_event(T0, "a@x", kind="Included in Business", chargeable=False, total_cents=40))
    assert included is not None and included.cost_usd == 0.0 and included.input_tokens == 1000
    assert event_to_record(usage_event(T0, "a@x", kind="User API Key", chargeable=False)) is None


def test_ids_are_stable_and_distinguish_events() -> None:
    a = usage_event(T0, "a@x", input_tokens=10)
    assert event_ids(a) == event_ids(dict(a))
    assert event_ids(a) != event_ids(usage_event(T0, "a@x", input_tokens=11))
    assert event_ids(a) != event_ids(usage_event(T0 + 1, "a@x", input_tokens=10))


# --- the client


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def main() -> None:
        bucket = TokenBucket(20, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(4):
            await bucket.acquire()

    asyncio.run(main())
    assert now[0] == pytest.approx(9.0)  # first at once, then one every 3 s (20/min)


def test_client_rate_limit_over_http() -> None:
    sim = AdminSimulator(members=[{"name": "Alice", "email": "alice@acme.dev", "id": 1, "role": "member"}])

    async def go(url: str) -> None:
        client = CursorAdminClient("key_test_team", base_url=url, requests_per_minute=600)  # one per 0.1 s
        try:
            for _ in range(4):
                assert (await client.members())[0]["email"] == "alice@acme.dev"
        finally:
            await client.close()

    run(go, sim)
    times = [t for t, _, _ in sim.log]
    assert len(times) == 4
    assert times[-1] - times[0] >= 0.28


def test_client_honours_429_retry_after() -> None:
    sim = AdminSimulator(events=seed_events(2), throttle_requests={1, 2}, retry_after_s=0.3)

    async def go(url: str) -> float:
        client = CursorAdminClient("key_test_team", base_url=url, requests_per_minute=FAST_RPM)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            body = await client.usage_events(page=1, page_size=10)
        finally:
            await client.close()
        assert len(body["usageEvents"]) == 6
        assert client.throttled == 2 and client.requests == 3
        return loop.time() - started

    assert run(go, sim) >= 0.6  # two Retry-After waits
    assert [status for _, _, status in sim.log] == [429, 429, 200]


def test_client_wrong_key_is_permanent() -> None:
    async def go(url: str) -> None:
        client = CursorAdminClient("not-the-key", base_url=url, requests_per_minute=FAST_RPM)
        try:
            with pytest.raises(AdminApiError) as info:
                await client.members()
        finally:
            await client.close()
        assert info.value.status == 401 and not info.value.retryable

    run(go, AdminSimulator())


# --- the poller


def test_poller_pages_through_every_window(tmp_path: Path) -> None:
    sim = AdminSimulator(events=seed_events())
    store = SQLiteStore(tmp_path / "s.db")

    async def go(url: str) -> Any:
        poller = make_poller(url, store)
        try:
            return await poller.poll_once()
        finally:
            await poller.shutdown()

    result = run(go, sim)
    assert result.windows == 3 and result.pages == 9  # 12 events a day, 5 a page
    assert result.inserted == 36 and result.events == 36
    rows = store.raw_rows()
    assert len(rows) == 36
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(sum((2 + i) / 100 for i in range(12)) * 3)
    store.close()


def test_poller_second_poll_adds_only_new_events(tmp_path: Path) -> None:
    sim = AdminSimulator(events=seed_events())
    store = SQLiteStore(tmp_path / "s.db")

    async def go(url: str) -> tuple[Any, Any]:
        newest = NOW - 1_800_000
        sim.add_events([usage_event(newest, "alice@acme.dev")])
        poller = make_poller(url, store)
        try:
            first = await poller.poll_once()
            # A late event (before the cursor, inside the lookback) and another at the cursor's very
            # millisecond: both new. The re-read newest event is skipped by the cursor.
            sim.add_events([usage_event(NOW - 600_000, "carol@acme.dev"), usage_event(newest, "dave@acme.dev")])
            second = await poller.poll_once()
            return first, second
        finally:
            await poller.shutdown()

    first, second = run(go, sim)
    assert first.inserted == 37 and second.inserted == 2
    assert second.events == 3 and second.skipped == 1
    assert len(store.raw_rows()) == 39
    store.close()


def test_duplicates_across_pages_are_stored_once(tmp_path: Path) -> None:
    sim = AdminSimulator(events=seed_events(), duplicate_across_pages=True)
    store = SQLiteStore(tmp_path / "s.db")

    async def go(url: str) -> Any:
        poller = make_poller(url, store)
        try:
            return await poller.poll_once()
        finally:
            await poller.shutdown()

    result = run(go, sim)
    assert result.events == 36 + 6  # two repeats per day (pages 2 and 3)
    assert result.inserted == 36
    assert len(store.raw_rows()) == 36
    assert sum(r["requests"] for r in store.rollup_rows()) == 36
    store.close()


def test_restart_mid_backfill_resumes_without_gaps_or_doubles(tmp_path: Path) -> None:
    events = seed_events()
    sim = AdminSimulator(events=events, outage_after=4)  # day 1 (3 pages) done, day 2 dies on page 2
    db = tmp_path / "s.db"

    async def crash(url: str) -> None:
        store = SQLiteStore(db)
        poller = make_poller(url, store, max_attempts=1)
        try:
            with pytest.raises(AdminApiError):
                await poller.poll_once()
        finally:
            await poller.shutdown()
            store.close()

    run(crash, sim)
    store = SQLiteStore(db)
    assert len(store.raw_rows()) == 12  # exactly the first window: its cursor and rows committed together
    store.close()

    sim.outage_after = None

    async def resume(url: str) -> Any:
        store = SQLiteStore(db)
        poller = make_poller(url, store)
        try:
            return await poller.poll_once()
        finally:
            await poller.shutdown()
            store.close()

    result = run(resume, sim)
    # Resumed from the stored cursor (minus the lookback), not from the start of the backfill.
    assert result.events == 24 and result.inserted == 24
    store = SQLiteStore(db)
    rows = store.raw_rows()
    assert len(rows) == 36 and len(set(stored_keys(store))) == 36
    assert sorted(r["start_ns"] // 1_000_000 for r in rows) == sorted(int(e["timestamp"]) for e in events)
    assert sum(r["requests"] for r in store.rollup_rows("rollup_monthly")) == 36
    store.close()


def test_poller_rides_out_429_during_paging(tmp_path: Path) -> None:
    sim = AdminSimulator(events=seed_events(), throttle_requests={2, 5}, retry_after_s=0.2)
    store = SQLiteStore(tmp_path / "s.db")

    async def go(url: str) -> Any:
        poller = make_poller(url, store)
        try:
            return await poller.poll_once()
        finally:
            await poller.shutdown()

    result = run(go, sim)
    assert result.inserted == 36
    assert [s for _, _, s in sim.log].count(429) == 2
    store.close()


def test_background_poller_lifecycle(tmp_path: Path) -> None:
    sim = AdminSimulator(events=seed_events(2))
    store = SQLiteStore(tmp_path / "s.db")

    async def go(url: str) -> None:
        poller = make_poller(url, store, poll_interval_s=0.05)
        await poller.start()
        for _ in range(100):
            if poller.totals.inserted == 6:
                break
            await asyncio.sleep(0.02)
        await poller.shutdown()
        await poller.shutdown()  # idempotent
        assert poller.totals.inserted == 6 and poller.last_error is None

    run(go, sim)
    store.close()


def test_chargeback_shows_cursor_billed_beside_gateway(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    gateway = SpendRecord(
        trace_id="a" * 32,
        span_id="b" * 16,
        start_ns=T0 * 1_000_000,
        end_ns=T0 * 1_000_000,
        model="claude-sonnet-4-6",
        developer="alice@acme.dev",
        team="platform",
        cost_center="CC-1",
        repo="acme-api",
        provider="anthropic",
        input_tokens=1000,
        output_tokens=100,
        cost_usd=0.5,
        cost_source="genai-prices",
    )
    store.write([gateway])
    sim = AdminSimulator(events=[usage_event(T0 + 1000, "alice@acme.dev", total_cents=250)])
    principal = Principal(key_id="k1", user="alice@acme.dev", team="platform", cost_center="CC-1")

    async def go(url: str) -> None:
        poller = make_poller(url, store, principal_for=lambda email: principal)
        try:
            await poller.poll_once()
        finally:
            await poller.shutdown()

    run(go, sim)
    month = SpendFilter(start=day_ms_date("2026-11-01"), end=day_ms_date("2026-11-30"))
    rows = {(r["developer"], r["repo"]): r for r in store.chargeback(month)}
    assert rows[("alice@acme.dev", "acme-api")]["cost_usd"] == pytest.approx(0.5)
    cursor_row = rows[("alice@acme.dev", None)]
    assert cursor_row["cost_usd"] == pytest.approx(2.5)
    assert (cursor_row["team"], cursor_row["cost_center"]) == ("platform", "CC-1")
    by_provider = {r["provider"]: r["cost_usd"] for r in store.spend(month, ("developer", "provider"))}
    assert by_provider == {"cursor": pytest.approx(2.5), "anthropic": pytest.approx(0.5)}
    store.close()


def day_ms_date(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


def test_key_directory_finds_the_principal_by_email(tmp_path: Path) -> None:
    from spendgate_collector.keys.file import KeyDirectory

    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "version: 1\nkeys:\n"
        "  - {id: k0, user: Alice@acme.dev}\n"
        "  - {id: k1, user: alice@acme.dev, team: platform, cost_center: CC-1}\n"
    )
    principal = KeyDirectory(keys).lookup_user("ALICE@acme.dev")
    assert principal is not None and (principal.team, principal.cost_center) == ("platform", "CC-1")
    assert KeyDirectory(keys).lookup_user("nobody@acme.dev") is None
