"""Webhooks for budget transitions: generic JSON or Slack-compatible, posted off the writer thread.

    sender = WebhookSender(targets, on_outcome=record)   # record(outcome) writes the audit line
    await sender.start()
    sender.notify(event)        # from any thread; never blocks, never raises
    await sender.shutdown()     # idempotent; deliveries still retrying get a short grace, then stop

``notify`` takes the generic payload (``Transition.event()``) and hands it to the event loop, where
it waits in a bounded queue (full → the oldest event is dropped, counted and logged, so a dead
webhook can never hold memory or the pipeline). One task per event and webhook delivers it with
``httpx.AsyncClient`` (speed does not matter here): retries on connection errors, 408, 425, 429 and
5xx with exponential backoff (±20 % jitter, capped), waiting at least a ``Retry-After`` the receiver
sends; other statuses are permanent. It gives up after ``max_attempts`` or when the next wait would
pass the webhook's ``deadline_s``. Each delivery ends in exactly one outcome: ``delivered`` or
``failed``, with the attempt count and the last error. ``on_outcome`` may be a coroutine function
(the collector writes the audit line from a thread). Webhook URLs appear in logs and the audit
table without their path, which for Slack and most others is the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import logging
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .model import WebhookSpec

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 1_000
DEFAULT_MAX_CONCURRENCY = 8
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
SHUTDOWN_GRACE_S = 2.0
_RETRYABLE = {408, 425, 429}
_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """How one event went to one webhook."""

    url: str
    """Scheme and host only (``redact_url``)."""
    format: str
    budget_id: str | None
    event: Mapping[str, Any]
    outcome: str
    """``delivered`` or ``failed``."""
    attempts: int
    status: int | None
    """The last HTTP status, None when the last attempt got no answer."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SenderStats:
    """A snapshot for ``/healthz``."""

    webhooks: int
    queued: int
    in_flight: int
    delivered: int
    failed: int
    dropped: int


def slack_text(event: Mapping[str, Any]) -> str:
    """One Slack line for a transition, e.g. ``:no_entry: Budget *platform* ok → pause: team ...``."""
    icon = {"ok": ":white_check_mark:", "alert": ":warning:", "route": ":twisted_rightwards_arrows:"}.get(
        str(event.get("to")), ":no_entry:"
    )
    budget = event.get("budget") or {}
    text = f"{icon} Budget *{budget.get('name') or budget.get('id')}* {event.get('from')} → {event.get('to')}"
    text += f": {event.get('reason')}"
    threshold = event.get("threshold") or {}
    if event.get("to") == "route" and threshold.get("to"):
        text += f". {threshold.get('from') or 'Every model'} is now served as {threshold['to']}"
    cause = event.get("cause")
    if cause and cause != "spend":
        text += f" ({str(cause).replace('_', ' ')})"
    return text + f". Period {event.get('period_start')} to {event.get('period_end')}."


def payload_for(fmt: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """The body posted to a webhook of format ``json`` (the event itself) or ``slack`` (``{"text"}``)."""
    if fmt == "slack":
        return {"text": slack_text(event)}
    return dict(event)


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_MAX_S) -> float:
    """Wait before attempt ``attempt + 1``: base x 2^(attempt-1), capped, ±20 % jitter."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * random.uniform(1 - _JITTER, 1 + _JITTER)


class WebhookSender:
    """Bounded queue of transition events, delivered to every matching webhook by asyncio tasks."""

    def __init__(
        self,
        webhooks: Sequence[WebhookSpec],
        *,
        on_outcome: Callable[[DeliveryOutcome], Any] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        backoff_base_s: float = BACKOFF_BASE_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.webhooks = tuple(webhooks)
        self._on_outcome = on_outcome
        self._max_queue = max_queue
        self._max_concurrency = max_concurrency
        self._backoff_base_s = backoff_base_s
        self._transport = transport
        self._queue: deque[Mapping[str, Any]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._delivered = self._failed = self._dropped = 0

    # --- lifecycle (event loop)

    async def start(self) -> None:
        """Start the worker on the running loop; with no webhooks, nothing runs. Returns at once."""
        if self._worker is not None or self._closed or not self.webhooks:
            return
        import httpx  # the collector imports httpx only when a webhook is configured

        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_concurrency)
        self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        self._worker = asyncio.create_task(self._run(), name="spendgate-webhooks")

    async def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop taking events; deliveries in flight get ``grace_s``, then are cancelled. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._worker is None:
            return
        assert self._stopping is not None and self._wakeup is not None
        self._wakeup.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=grace_s)
            self._stopping.set()  # cuts every backoff short: the attempt in progress is the last
            if pending:
                _, pending = await asyncio.wait(pending, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._queue:
            logger.warning("%d budget events not delivered: collector stopping", len(self._queue))
        if self._client is not None:
            await self._client.aclose()

    # --- intake (any thread)

    def notify(self, event: Mapping[str, Any]) -> None:
        """Queue an event for every matching webhook. Never blocks; drops the oldest when full."""
        loop = self._loop
        if loop is None or self._closed or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._enqueue, event)

    def _enqueue(self, event: Mapping[str, Any]) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            dropped = self._queue.popleft()
            self._dropped += 1
            logger.warning(
                "webhook queue full (%d events): dropped the oldest (%s, %d dropped so far)",
                self._max_queue,
                (dropped.get("budget") or {}).get("id"),
                self._dropped,
            )
        self._queue.append(event)
        assert self._wakeup is not None
        self._wakeup.set()

    def stats(self) -> SenderStats:
        return SenderStats(
            webhooks=len(self.webhooks),
            queued=len(self._queue),
            in_flight=len(self._deliveries),
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._dropped,
        )

    # --- delivery (event loop)

    async def _run(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            event = self._queue.popleft()
            budget_id = (event.get("budget") or {}).get("id")
            for hook in self.webhooks:
                if hook.budgets and budget_id not in hook.budgets:
                    continue
                # A free slot first: while every slot is retrying a dead webhook, events wait in the
                # bounded queue (and the oldest are dropped), never in unbounded tasks.
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(hook, event), name=f"spendgate-webhook {hook.url}")
                self._deliveries.add(task)
                task.add_done_callback(self._delivery_done)

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        assert self._slots is not None
        self._slots.release()

    async def _deliver(self, hook: WebhookSpec, event: Mapping[str, Any]) -> None:
        import httpx

        assert self._client is not None and self._stopping is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hook.deadline_s
        body = payload_for(hook.format, event)
        headers = {"User-Agent": "spendgate-collector", **dict(hook.headers)}
        attempts = 0
        status: int | None = None
        error: str | None = None
        outcome = "failed"
        try:
            while True:
                attempts += 1
                wait: float | None = None
                try:
                    response = await self._client.post(hook.url, json=body, headers=headers, timeout=hook.timeout_s)
                    status = response.status_code
                    if 200 <= status < 300:
                        outcome, error = "delivered", None
                        break
                    error = f"HTTP {status}"
                    if status not in _RETRYABLE and status < 500:
                        break  # permanent: the same body fails again
                    wait = retry_after_s(response.headers.get("Retry-After"))
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempts >= hook.max_attempts or self._stopping.is_set():
                    break
                delay = max(wait or 0.0, backoff_s(attempts, self._backoff_base_s))
                if loop.time() + delay > deadline:
                    error = f"{error}; next retry would pass the {hook.deadline_s:g}s deadline"
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                    error = f"{error}; collector stopping"
                    break
        except asyncio.CancelledError:
            error = f"{error or 'not delivered'}; collector stopped"
            await self._record(
                DeliveryOutcome(
                    redact_url(hook.url), hook.format, _budget_id(event), event, "failed", attempts, status, error
                )
            )
            raise
        await self._record(
            DeliveryOutcome(
                redact_url(hook.url), hook.format, _budget_id(event), event, outcome, attempts, status, error
            )
        )

    async def _record(self, outcome: DeliveryOutcome) -> None:
        if outcome.outcome == "delivered":
            self._delivered += 1
        else:
            self._failed += 1
            logger.warning(
                "webhook %s: %s not delivered after %d attempts: %s",
                outcome.url,
                outcome.event.get("event"),
                outcome.attempts,
                outcome.error,
            )
        if self._on_outcome is not None:
            try:
                result = self._on_outcome(outcome)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("recording a webhook outcome failed")


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/…``: a webhook's path often is its secret, so logs and audit omit it."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{'/…' if parts.path.strip('/') else ''}"


def _budget_id(event: Mapping[str, Any]) -> str | None:
    return (event.get("budget") or {}).get("id")
