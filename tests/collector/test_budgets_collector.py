"""Budgets through a real collector: OTLP over real gRPC from the official exporter, verdicts on the board.

Costs use the test prices of ``conftest.py`` (acme-coder: $2 per million input tokens), so a span
with 500,000 input tokens and no output costs exactly $1.00.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from spendgate_collector.budgets.board import Scope
from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.spans import ours, span
from tests.support.board import in_force

PLATFORM_BUDGET = {"id": "platform", "name": "Platform team", "limit_usd": 10, "scope": {"team": "platform"}}
ROUTE_BUDGET = {
    "id": "mobile",
    "limit_usd": 5,
    "scope": {"team": "mobile"},
    "thresholds": [
        {"at": 0.8, "action": "alert"},
        {"at": 1.0, "action": "route", "from": "acme-coder", "to": "acme-mini"},
        {"at": 1.2, "action": "pause"},
    ],
}


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()


class Traffic:
    """Dollar-sized spans exported over real OTLP/gRPC."""

    def __init__(self, running: RunningCollector) -> None:
        self.exporter = OTLPSpanExporter(endpoint=running.grpc_endpoint, insecure=True, timeout=10)
        self.next_id = 0

    def spans(self, dollars: int, **attrs: Any) -> list[ReadableSpan]:
        out = []
        for _ in range(dollars):
            self.next_id += 1
            attributes = ours(model="acme-coder", input_tokens=500_000, output_tokens=0, **attrs)
            out.append(span(self.next_id, self.next_id, attributes, end=_now_iso()))
        return out

    def send(self, spans: list[ReadableSpan]) -> None:
        assert SpanExportResult.SUCCESS == self.exporter.export(spans)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningCollector]:
    with run_collector(tmp_path, budgets=[PLATFORM_BUDGET, ROUTE_BUDGET]) as running:
        yield running


@pytest.fixture
def traffic(running: RunningCollector) -> Iterator[Traffic]:
    t = Traffic(running)
    yield t
    t.exporter.shutdown()


def _verdicts(running: RunningCollector) -> dict[str, Any]:
    return {v.id: v for v in in_force(running.collector.control_log)}


def _status(running: RunningCollector, bid: str) -> dict[str, Any]:
    return httpx.get(f"{running.api_url}/api/budgets/{bid}").json()["status"]


def test_crossing_a_team_budget_pauses_it_and_an_override_lifts_it(running: RunningCollector, traffic: Traffic) -> None:
    first = traffic.spans(10)
    traffic.send(first)
    traffic.send(first)  # the exporter retries the batch: counted once
    assert {} == _verdicts(running)
    assert ("alert", 10.0) == (_status(running, "platform")["state"], _status(running, "platform")["spend_usd"])

    traffic.send(traffic.spans(1) + traffic.spans(3, team="mobile"))  # $11 of $10: 110 %
    (verdict,) = [v for v in _verdicts(running).values() if v.budget_id == "platform"]
    period_start = _status(running, "platform")["period"]["start"]
    assert f"platform:{period_start}:pause" == verdict.id
    assert ("pause", Scope(team="platform")) == (verdict.action, verdict.scope)
    assert "team platform spent $11.00 of its $10.00 monthly budget (110 %)" == verdict.reason

    answer = httpx.post(
        f"{running.api_url}/api/budgets/platform/overrides",
        json={"action": "lift", "for": "1h", "reason": "finish the refactor"},
        headers={"X-Spendgate-Actor": "lead@acme.com"},
    )
    assert 201 == answer.status_code
    assert "platform" not in {v.budget_id for v in _verdicts(running).values()}
    assert "ok" == answer.json()["status"]["state"]
    (created,) = httpx.get(f"{running.api_url}/api/audit", params={"action": "override"}).json()["entries"]
    assert ("lead@acme.com", "finish the refactor") == (created["actor"], created["details"]["reason"])


def test_a_route_threshold_puts_a_route_verdict_then_a_pause(running: RunningCollector, traffic: Traffic) -> None:
    traffic.send(traffic.spans(5, team="mobile"))  # $5 of $5
    (verdict,) = _verdicts(running).values()
    assert ("route", "mobile") == (verdict.action, verdict.budget_id)
    assert ("acme-coder", "acme-mini") == (verdict.route_from, verdict.route_to)
    assert Scope(team="mobile") == verdict.scope
    traffic.send(traffic.spans(1, team="mobile"))  # $6 of $5: 120 %
    assert ["pause", "route"] == sorted(v.action for v in _verdicts(running).values())
    assert "pause" == _status(running, "mobile")["state"]


def test_budgets_survive_a_collector_restart(tmp_path: Path) -> None:
    with run_collector(tmp_path, budgets=[PLATFORM_BUDGET]) as running:
        traffic = Traffic(running)
        traffic.send(traffic.spans(12))
        traffic.exporter.shutdown()
        before = in_force(running.collector.control_log)
    # Restarted without the budget in its config: the stored budget, total and verdict remain.
    with run_collector(tmp_path) as running:
        assert 12.0 == _status(running, "platform")["spend_usd"]
        assert before == in_force(running.collector.control_log)


def test_config_budgets_are_upserted_once_and_changes_are_audited(tmp_path: Path) -> None:
    with run_collector(tmp_path, budgets=[PLATFORM_BUDGET]):
        pass
    with run_collector(tmp_path, budgets=[PLATFORM_BUDGET]):  # unchanged: left alone
        pass
    with run_collector(tmp_path, budgets=[{**PLATFORM_BUDGET, "limit_usd": 20}]) as running:
        entries = httpx.get(f"{running.api_url}/api/audit", params={"action": "budget"}).json()["entries"]
        assert 20.0 == _status(running, "platform")["limit_usd"]
    assert [("budget.updated", "config"), ("budget.created", "config")] == [(e["action"], e["actor"]) for e in entries]
