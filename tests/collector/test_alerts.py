"""Webhooks against a real local HTTP receiver (aiohttp on loopback): retries, Retry-After, give-up, drops.

The sender runs on its own loop (``asyncio.run``) while the receiver runs in a background thread,
as two processes would. The last tests go through a real collector: a transition is delivered
exactly once despite failures, and a dead webhook is recorded as failed without slowing ingest.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from spendgate_collector.budgets import WebhookSpec
from spendgate_collector.budgets.webhooks import DeliveryOutcome, WebhookSender, redact_url, retry_after_s, slack_text
from tests.collector.conftest import run_collector
from tests.collector.test_budgets_collector import Traffic
from tests.support.aio_server import ServerHandle, serve_app

EVENT: dict[str, Any] = {
    "event": "budget.transition",
    "budget": {"id": "platform", "name": "Platform team"},
    "from": "alert",
    "to": "pause",
    "threshold": {"at": 1.1, "action": "pause"},
    "cause": "spend",
    "spend_usd": 110.0,
    "limit_usd": 100.0,
    "percent": 110.0,
    "period": "month",
    "period_start": "2026-11-01T00:00:00+00:00",
    "period_end": "2026-12-01T00:00:00+00:00",
    "at": "2026-11-20T10:00:00+00:00",
    "reason": "team platform spent $110.00 of its $100.00 monthly budget (110 %)",
}


@dataclass
class Receiver:
    """Answers each request with the next scripted ``(status, headers)``, then 200; keeps what it got."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang_s: float = 0.0
    received: list[tuple[float, dict[str, Any], int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            if self.hang_s:
                await asyncio.sleep(self.hang_s)
            with self.lock:
                status, headers = self.script.pop(0) if self.script else (200, {})
                self.received.append((time.monotonic(), body, status))
            return web.json_response({"ok": status == 200}, status=status, headers=headers)

        app = web.Application()
        app.router.add_post("/hooks/secret-token", handle)
        return app

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, body, status in self.received if status == 200]


@pytest.fixture
def flaky() -> Iterator[tuple[Receiver, ServerHandle]]:
    receiver = Receiver(script=[(500, {}), (503, {"Retry-After": "1"})])
    with serve_app(receiver.app) as server:
        yield receiver, server


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/secret-token"


def _deliver(spec: WebhookSpec, events: list[dict[str, Any]], **kw: Any) -> tuple[list[DeliveryOutcome], Any]:
    outcomes: list[DeliveryOutcome] = []

    async def scenario() -> Any:
        done = asyncio.Event()

        async def record(outcome: DeliveryOutcome) -> None:
            outcomes.append(outcome)
            if len(outcomes) == len(events):
                done.set()

        sender = WebhookSender([spec], on_outcome=record, backoff_base_s=0.05, **kw)
        await sender.start()
        for event in events:
            sender.notify(event)
        await asyncio.wait_for(done.wait(), 30)
        await sender.shutdown()
        return sender.stats()

    return outcomes, asyncio.run(scenario())


def test_retries_500_and_503_honouring_retry_after_then_delivers_once(flaky: tuple[Receiver, ServerHandle]) -> None:
    receiver, server = flaky
    url = f"{server.url}/hooks/secret-token"
    (outcome,), stats = _deliver(WebhookSpec(url=url), [EVENT])
    assert ("delivered", 3, 200, None) == (outcome.outcome, outcome.attempts, outcome.status, outcome.error)
    assert [EVENT, EVENT, EVENT] == [body for _, body, _ in receiver.received]
    assert [EVENT] == receiver.delivered()
    (t1, _, _), (t2, _, _), (t3, _, _) = receiver.received
    assert t3 - t2 >= 0.95  # waited for Retry-After: 1, far above the 0.05 s backoff
    assert t2 - t1 < 0.5
    assert (1, 0, 0) == (stats.delivered, stats.failed, stats.dropped)
    assert f"{server.url}/…" == outcome.url  # the secret path stays out of logs and audit


def test_slack_format_posts_text(flaky: tuple[Receiver, ServerHandle]) -> None:
    receiver, server = flaky
    receiver.script.clear()
    _deliver(WebhookSpec(url=f"{server.url}/hooks/secret-token", format="slack"), [EVENT])
    expected = (
        ":no_entry: Budget *Platform team* alert → pause: team platform spent $110.00 of its $100.00 monthly "
        "budget (110 %). Period 2026-11-01T00:00:00+00:00 to 2026-12-01T00:00:00+00:00."
    )
    assert [{"text": expected}] == receiver.delivered()
    assert expected == slack_text(EVENT)


def test_a_dead_webhook_is_recorded_as_failed_after_its_attempts() -> None:
    (outcome,), stats = _deliver(WebhookSpec(url=_dead_url(), max_attempts=3), [EVENT])
    assert ("failed", 3, None) == (outcome.outcome, outcome.attempts, outcome.status)
    assert "ConnectError" in (outcome.error or "")
    assert (0, 1) == (stats.delivered, stats.failed)


def test_a_permanent_error_is_not_retried(flaky: tuple[Receiver, ServerHandle]) -> None:
    receiver, server = flaky
    receiver.script[:] = [(404, {})]
    (outcome,), _ = _deliver(WebhookSpec(url=f"{server.url}/hooks/secret-token"), [EVENT])
    assert ("failed", 1, 404, "HTTP 404") == (outcome.outcome, outcome.attempts, outcome.status, outcome.error)


def test_retries_stop_at_the_deadline(flaky: tuple[Receiver, ServerHandle]) -> None:
    receiver, server = flaky
    receiver.script[:] = [(429, {"Retry-After": "30"})]
    started = time.monotonic()
    (outcome,), _ = _deliver(WebhookSpec(url=f"{server.url}/hooks/secret-token", deadline_s=5), [EVENT])
    assert ("failed", 1) == (outcome.outcome, outcome.attempts)
    assert "deadline" in (outcome.error or "")
    assert time.monotonic() - started < 5


def test_a_full_queue_drops_the_oldest_events_and_counts_them() -> None:
    receiver = Receiver(hang_s=0.5)
    with serve_app(receiver.app) as server:
        events = [{**EVENT, "at": str(i)} for i in range(10)]

        async def scenario() -> Any:
            sender = WebhookSender(
                [WebhookSpec(url=f"{server.url}/hooks/secret-token")], max_queue=2, max_concurrency=1
            )
            await sender.start()
            for event in events:
                sender.notify(event)
            for _ in range(200):  # until every event is either delivered or dropped
                stats = sender.stats()
                if stats.delivered + stats.dropped == len(events):
                    break
                await asyncio.sleep(0.05)
            await sender.shutdown()
            return sender.stats()

        stats = asyncio.run(scenario())
    assert stats.dropped >= 6
    assert 10 == stats.dropped + stats.delivered
    # The newest events survive: the last one notified is delivered.
    assert "9" == receiver.delivered()[-1]["at"]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert 7.0 == retry_after_s("7")
    assert 30.0 == pytest.approx(retry_after_s("Fri, 20 Nov 2026 10:00:30 GMT", now=1_795_168_800.0))
    assert retry_after_s("soon") is None
    assert "https://hooks.slack.com/…" == redact_url("https://user:pw@hooks.slack.com/services/T0/B0/XYZ")


def _wait_for(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


BUDGET = {"id": "platform", "limit_usd": 10, "scope": {"team": "platform"}}


def test_collector_delivers_each_transition_once_despite_failures(
    tmp_path: Path, flaky: tuple[Receiver, ServerHandle]
) -> None:
    receiver, server = flaky
    webhook = {"url": f"{server.url}/hooks/secret-token", "max_attempts": 5}
    with run_collector(tmp_path, budgets=[BUDGET], webhooks=[webhook]) as running:
        traffic = Traffic(running)
        traffic.send(traffic.spans(8))  # ok → alert
        traffic.send(traffic.spans(2))  # still alert: no event
        traffic.send(traffic.spans(1))  # alert → pause
        traffic.exporter.shutdown()
        delivered = _wait_for(lambda: len(receiver.delivered()) >= 2 and receiver.delivered())
        audit = _wait_for(
            lambda: (
                (entries := httpx.get(f"{running.api_url}/api/audit", params={"action": "webhook"}).json()["entries"])
                and len(entries) == 2
                and entries
            )
        )
        time.sleep(0.5)  # nothing more arrives
        assert 2 == len(receiver.delivered())
    assert [("alert", "pause"), ("ok", "alert")] == sorted((e["from"], e["to"]) for e in delivered)
    assert 4 == len(receiver.received)  # two failures, two deliveries
    assert {"webhook.delivered"} == {e["action"] for e in audit}
    # The two failures may hit either event (they are delivered concurrently); every attempt is counted.
    assert 4 == sum(e["details"]["attempts"] for e in audit)


def test_collector_records_a_dead_webhook_as_failed_and_keeps_ingesting(tmp_path: Path) -> None:
    webhook = {"url": _dead_url(), "max_attempts": 3}
    with run_collector(tmp_path, budgets=[BUDGET], webhooks=[webhook]) as running:
        traffic = Traffic(running)
        traffic.send(traffic.spans(12))  # ok → pause: one event for a dead webhook
        started = time.monotonic()
        for _ in range(5):  # while its retries are waiting, ingest carries on at full speed
            traffic.send(traffic.spans(1))
        assert time.monotonic() - started < 2
        traffic.exporter.shutdown()
        (failed,) = _wait_for(
            lambda: httpx.get(f"{running.api_url}/api/audit", params={"action": "webhook"}).json()["entries"]
        )
        assert 17.0 == httpx.get(f"{running.api_url}/api/budgets/platform").json()["status"]["spend_usd"]
    assert ("webhook.failed", "platform", 3) == (failed["action"], failed["budget_id"], failed["details"]["attempts"])
    assert ("ok", "pause") == (failed["details"]["transition"]["from"], failed["details"]["transition"]["to"])
