"""``ProxyRoster``: which proxies budgets do not reach, from stream ends and span sightings; and how
``spendgate status`` shows them. Times are explicit (ms), never waited for."""

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource

from spendgate_collector.ingest.normalize import Normalizer
from spendgate_collector.ingest.otlp import parse_export_request
from spendgate_collector.proxy_roster import FORGET_S, SPAN_LAG_S, ProxyRoster
from spendgate_collector.query.status_cli import render
from spendgate_semconv import attributes as sc
from tests.collector.spans import ours, protobuf_body, span

T0 = 1_800_000_000_000
FORGET_MS = int(FORGET_S * 1000)


def _states(roster: ProxyRoster, connected: set[str], now: int) -> list[tuple[str, str]]:
    return [(p.proxy_id, p.state) for p in roster.not_enforced(connected, now)]


def test_a_lost_stream_counts_until_the_proxy_resubscribes() -> None:
    roster = ProxyRoster()
    roster.subscribed("p1")
    assert [] == _states(roster, {"p1"}, T0)
    roster.stream_ended("p1", left=False, peer="ipv4:10.0.0.7:5000", now_ms=T0)
    (lost,) = roster.not_enforced(set(), T0 + 1000)
    assert ("p1", "lost", T0, 0, "ipv4:10.0.0.7:5000") == (
        lost.proxy_id,
        lost.state,
        lost.since_ms,
        lost.last_span_ms,
        lost.peer,
    )
    # A new stream under the same id before the old one's end was noticed: enforced.
    assert [] == _states(roster, {"p1"}, T0 + 1000)
    roster.subscribed("p1")
    assert [] == _states(roster, set(), T0 + 2000)


def test_a_proxy_that_left_cleanly_is_not_counted_even_with_its_final_spans() -> None:
    roster = ProxyRoster()
    roster.subscribed("p1")
    roster.stream_ended("p1", left=True, peer="x", now_ms=T0)
    roster.saw_spans("p1", now_ms=T0 + 1500)  # its last export flush
    assert [] == _states(roster, set(), T0 + 2000)
    # Spans long after it left: it runs again, without a stream.
    roster.saw_spans("p1", now_ms=T0 + int(SPAN_LAG_S * 1000) + 5000)
    assert [("p1", "no_stream")] == _states(roster, set(), T0 + int(SPAN_LAG_S * 1000) + 6000)


def test_spans_from_a_proxy_without_a_stream_count_and_age_out() -> None:
    roster = ProxyRoster()
    roster.saw_spans("standalone-1", now_ms=T0)
    roster.saw_spans("standalone-1", now_ms=T0 + 5000)
    roster.saw_spans("connected-1", now_ms=T0 + 5000)
    (p,) = roster.not_enforced({"connected-1"}, T0 + 6000)
    assert ("standalone-1", "no_stream", T0, T0 + 5000) == (p.proxy_id, p.state, p.since_ms, p.last_span_ms)
    assert [] == _states(roster, {"connected-1"}, T0 + 5000 + FORGET_MS + 1)  # silent for the window: gone


def test_a_crashed_proxy_drops_out_after_the_window_unless_its_spans_keep_coming() -> None:
    roster = ProxyRoster()
    for pid in ("crashed", "still-serving"):
        roster.subscribed(pid)
        roster.stream_ended(pid, left=False, peer="", now_ms=T0)
    later = T0 + FORGET_MS - 1000
    roster.saw_spans("still-serving", now_ms=later)
    assert [("crashed", "lost"), ("still-serving", "lost")] == _states(roster, set(), later)
    (p,) = roster.not_enforced(set(), T0 + FORGET_MS + 1)
    assert ("still-serving", "lost", later) == (p.proxy_id, p.state, p.last_span_ms)


def test_the_normaliser_reports_the_proxy_id_on_span_resources() -> None:
    roster = ProxyRoster()
    proxy = Resource.create({"service.name": "spendgate-proxy", sc.SPENDGATE_PROXY_ID: "edge-3:4242"})
    sdk_app = Resource.create({"service.name": "support-bot"})
    spans = [
        span(1, 1, ours(), resource=proxy),
        span(1, 2, ours(), resource=proxy),
        span(1, 3, ours(), resource=sdk_app),
    ]
    batch = Normalizer(roster=roster).normalize(parse_export_request(protobuf_body(spans)))
    assert 3 == len(batch.records)
    assert [("edge-3:4242", "no_stream")] == [(p.proxy_id, p.state) for p in roster.not_enforced(set())]


def _health(not_enforced: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "ok", "store": {}, "control": {"version": 3, "proxies": [], "not_enforced": not_enforced}}


def _data(health: dict[str, Any]) -> dict[str, Any]:
    budget = {
        "id": "platform",
        "scope": {"team": "platform"},
        "period": {"kind": "month"},
        "spend_usd": 1.0,
        "effective_limit_usd": 10.0,
        "percent": 10.0,
        "state": "ok",
    }
    return {"month": "2027-01", "health": health, "spend": [], "budgets": [budget]}


def test_status_says_budgets_are_not_enforced_on_n_proxies() -> None:
    lost = {
        "proxy_id": "proxy-1",
        "state": "lost",
        "since_ms": T0,
        "last_span_ms": T0 + 60_000,
        "peer": "ipv4:10.0.0.7:5000",
    }
    silent = {"proxy_id": "edge:77", "state": "no_stream", "since_ms": T0, "last_span_ms": T0 + 5000, "peer": ""}
    out = render(_data(_health([lost, silent])))
    assert "budgets: 1, NOT ENFORCED on 2 proxies:" in out
    assert "proxy-1" in out and "lost its control stream at" in out and "still serving" in out
    assert "edge:77" in out and "holds no control stream" in out
    one = render(_data(_health([silent])))
    assert "NOT ENFORCED on 1 proxy:" in one
    assert "NOT ENFORCED" not in render(_data(_health([])))
    assert "budgets: 1 (the collector's control plane is off: NOT ENFORCED on any proxy)" in render(
        _data({"status": "ok", "store": {}})
    )
