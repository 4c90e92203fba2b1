"""The Cursor Admin API poller: reads new usage events on a timer and stores them as spend rows.

Each poll reads ``/teams/filtered-usage-events`` from the persisted cursor up to "now", in windows
of at most ``window_s`` (one day by default). A window is paged through completely, then its events
and the advanced cursor are written in one store transaction; so a restart resumes at the first
window not yet stored, whatever order the API returns events in, and never counts one twice:

- the query starts ``lookback_s`` before the end of the last window read, because Cursor aggregates
  usage hourly and an event can show up after its own timestamp has been passed;
- events at the cursor's last timestamp that it already names are skipped;
- every other re-read event (the lookback, a page that repeats an event, a window re-read after a
  crash) maps to the same ids and ``SpendStore.write`` ignores it.

BYOK events are not spend rows; they go to ``byok.py``'s table in the same transaction (keyed by the
same ids, so they are stored once too). After the windows, the poll reads ``/teams/daily-usage-data``
for every UTC day it touched and replaces those days' rows (``daily_usage.py``); that read failing
only logs, because it is a cross-check and must not stop the spend rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import SpendRecord
from ..store.base import CompanionWrites, SpendStore, WriteResult
from . import byok, daily_usage
from .client import AdminApiError, CursorAdminClient
from .mapping import PrincipalLookup, event_identity, event_timestamp_ms, event_to_record
from .state import CursorState, StateTable

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
DEFAULT_POLL_INTERVAL_S = 300.0
DEFAULT_LOOKBACK_S = 2 * 3600.0
DEFAULT_BACKFILL_S = 7 * 86_400.0
DEFAULT_WINDOW_S = 86_400.0
# A runaway paginator (hasNextPage stuck at true) must not page forever.
MAX_PAGES_PER_WINDOW = 10_000
# Days per /teams/daily-usage-data request: well inside the range Cursor accepts in one call.
DAILY_USAGE_CHUNK_DAYS = 30

Writer = Callable[[Sequence[SpendRecord], CompanionWrites], Awaitable[WriteResult]]
"""Stores records plus companion writes in one transaction, off the event loop."""


@dataclass(slots=True)
class PollResult:
    """What one poll did."""

    events: int = 0
    """Events read (duplicates included)."""
    inserted: int = 0
    """Spend rows newly stored."""
    skipped: int = 0
    """Events not stored: BYOK, already at the cursor, or repeated."""
    pages: int = 0
    windows: int = 0
    byok_events: int = 0
    """BYOK events read (kept for reconciliation, not as spend)."""
    daily_rows: int = 0
    """``/teams/daily-usage-data`` rows stored (each replaces the same user-day)."""


class CursorAdminPoller:
    """Polls one team's usage events into a ``SpendStore``; ``start``/``shutdown`` like the rest of the collector."""

    def __init__(
        self,
        client: CursorAdminClient,
        store: SpendStore,
        state: StateTable,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        lookback_s: float = DEFAULT_LOOKBACK_S,
        backfill_s: float = DEFAULT_BACKFILL_S,
        window_s: float = DEFAULT_WINDOW_S,
        principal_for: PrincipalLookup | None = None,
        writer: Writer | None = None,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._client = client
        self._store = store
        self._state_table = state
        self._page_size = page_size
        self._poll_interval_s = poll_interval_s
        self._lookback_ms = int(lookback_s * 1000)
        self._backfill_ms = int(backfill_s * 1000)
        self._window_ms = max(1, int(window_s * 1000))
        self._principal_for = principal_for
        self._writer = writer or self._write_in_thread
        self._now_ms = now_ms
        self._state: CursorState | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.last_daily_error: str | None = None
        self.totals = PollResult()

    async def _write_in_thread(self, records: Sequence[SpendRecord], companion: CompanionWrites) -> WriteResult:
        return await asyncio.to_thread(self._store.write, records, companion)

    # --- lifecycle

    async def start(self) -> None:
        """Start polling in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="spendgate-cursor-admin-poller")

    async def shutdown(self) -> None:
        """Stop polling (a window being written finishes or rolls back as a whole); idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.close()

    async def _run(self) -> None:
        while True:
            try:
                result = await self.poll_once()
                self.last_error = None
                logger.info("Cursor Admin API poll: %d events, %d new spend rows", result.events, result.inserted)
            except AdminApiError as exc:
                self.last_error = str(exc)
                if not exc.retryable:
                    logger.error("Cursor Admin API poller stopped: %s", exc)
                    return
                logger.warning("Cursor Admin API poll failed, next try in %.0fs: %s", self._poll_interval_s, exc)
            except Exception as exc:  # the poller must never take the collector down
                self.last_error = str(exc)
                logger.exception("Cursor Admin API poll failed")
            await asyncio.sleep(self._poll_interval_s)

    # --- one poll

    async def poll_once(self) -> PollResult:
        """Read everything from the cursor to now, window by window; each window is stored atomically."""
        if self._state is None:
            await asyncio.to_thread(self._state_table.ensure)
            self._state = await asyncio.to_thread(self._state_table.load)
        end_ms = self._now_ms()
        if self._state.scanned_to_ms:
            start_ms = max(0, self._state.scanned_to_ms - self._lookback_ms)
        else:
            start_ms = max(0, end_ms - self._backfill_ms)
        result = PollResult()
        window_start = start_ms
        while window_start < end_ms:
            window_end = min(end_ms, window_start + self._window_ms)
            await self._poll_window(window_start, window_end, result)
            window_start = window_end + 1  # both ends are inclusive in the API's filter
        if start_ms < end_ms:
            await self._poll_daily(start_ms, end_ms, result)
        for name in ("events", "inserted", "skipped", "pages", "windows", "byok_events", "daily_rows"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
        return result

    async def _poll_window(self, start_ms: int, end_ms: int, result: PollResult) -> None:
        assert self._state is not None
        state = self._state.copy()
        records: dict[tuple[str, str], SpendRecord] = {}
        byok_rows: list[tuple[object, ...]] = []
        page = 1
        while page <= MAX_PAGES_PER_WINDOW:
            body = await self._client.usage_events(
                page=page, page_size=self._page_size, start_ms=start_ms, end_ms=end_ms
            )
            result.pages += 1
            events = body.get("usageEvents") or []
            for event in events:
                result.events += 1
                ts_ms = event_timestamp_ms(event)
                identity = event_identity(event)
                record = (
                    None if self._state.already_seen(ts_ms, identity) else event_to_record(event, self._principal_for)
                )
                if record is None or (record.trace_id, record.span_id) in records:
                    result.skipped += 1
                else:
                    records[(record.trace_id, record.span_id)] = record
                byok_row = byok.row(event, self._state_table.source)
                if byok_row is not None:
                    result.byok_events += 1
                    byok_rows.append(byok_row)  # keyed by event: repeats and re-reads are skipped
                state.advance(ts_ms, identity)
            pagination = body.get("pagination") or {}
            if not events or not pagination.get("hasNextPage"):
                break
            page += 1
        state.scanned_to_ms = max(state.scanned_to_ms, end_ms)
        companion = _companion(self._state_table, state, byok_rows)
        written = await self._writer(list(records.values()), companion)
        result.inserted += len(written.inserted)
        result.skipped += len(records) - len(written.inserted)
        result.windows += 1
        self._state = state  # only once the window and its cursor are durable

    async def _poll_daily(self, start_ms: int, end_ms: int, result: PollResult) -> None:
        """Read the whole UTC days from ``start_ms``'s to ``end_ms``'s and replace their stored rows."""
        day_start = start_ms - start_ms % daily_usage.MS_PER_DAY
        chunk_ms = DAILY_USAGE_CHUNK_DAYS * daily_usage.MS_PER_DAY
        try:
            while day_start <= end_ms:
                # Whole days only: a row read for part of a day would replace the full day's count.
                chunk_end = min(day_start + chunk_ms, end_ms - end_ms % daily_usage.MS_PER_DAY + daily_usage.MS_PER_DAY)
                data = await self._client.daily_usage(day_start, chunk_end - 1)
                rows = daily_usage.rows(data, self._state_table.source, self._now_ms())
                if rows:
                    await self._writer([], _upserting(rows))
                result.daily_rows += len(rows)
                day_start = chunk_end
            self.last_daily_error = None
        except AdminApiError as exc:
            self.last_daily_error = str(exc)
            logger.warning("Cursor Admin API daily usage not read (reconciliation's cross-check): %s", exc)


def _companion(table: StateTable, state: CursorState, byok_rows: Sequence[tuple[object, ...]]) -> CompanionWrites:
    def writes(_inserted: list[SpendRecord]) -> list[tuple[str, Sequence[Sequence[object]]]]:
        out = table.companion_write(state)
        if byok_rows:
            out.append((byok.INSERT, byok_rows))
        return out

    return writes


def _upserting(rows: list[tuple[Any, ...]]) -> CompanionWrites:
    """Companion writes that upsert these daily-usage ``rows`` (bound now, not when the writer runs)."""
    return lambda _inserted: [(daily_usage.UPSERT, rows)]
