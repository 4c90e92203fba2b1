"""The query API over a seeded month: every endpoint, exact numbers, and 400s that name the parameter."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.collector.conftest import RunningCollector, run_collector
from tests.collector.seed import CHARGEBACK_CSV_2026_11, seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with run_collector(tmp_path_factory.mktemp("api")) as running:
        seed(running)
        yield running


def get(running: RunningCollector, path: str, **params: str) -> httpx.Response:
    return httpx.get(running.api_url + path, params=params, timeout=10)


def pick(rows: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(row[k] for k in keys) for row in rows]


def test_spend_grouped_by_team_for_a_month(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/spend", month="2026-11", group_by="team").json()
    assert ("2026-11-01", "2026-11-30", ["team"]) == (body["from"], body["to"], body["group_by"])
    # platform: 0.0173 + 0.0025 + 0.0028 + 0.0084 + 0.0002; data: 0.023 (+ one unpriced call)
    assert [("platform", 0.0312, 5, 1, 0), ("data", 0.023, 2, 0, 1)] == pick(
        body["rows"], "team", "cost_usd", "requests", "errors", "unpriced_requests"
    )
    assert (0.0542, 7, 56_600) == (
        body["totals"]["cost_usd"],
        body["totals"]["requests"],
        body["totals"]["input_tokens"],
    )


def test_spend_with_day_range_and_filters(seeded: RunningCollector) -> None:
    body = get(
        seeded,
        "/api/spend",
        **{"from": "2026-11-01", "to": "2026-11-15", "group_by": "developer,repo", "team": "platform"},
    ).json()
    # bo's acme-infra call (Nov 20) is outside the range.
    assert [("ana@acme.com", "acme-api", 0.0198), ("bo@acme.com", "acme-api", 0.003)] == pick(
        body["rows"], "developer", "repo", "cost_usd"
    )


def test_spend_grouped_by_model_and_feature(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/spend", month="2026-11", group_by="model,feature").json()
    assert [
        ("acme-mini", "agent", 0.023, 1),
        ("acme-coder", "agent", 0.0203, 3),
        ("acme-coder", "chat", 0.0084, 1),
        ("acme-mini", "chat", 0.0025, 1),
        ("mystery-model", "agent", None, 1),  # unpriced: no cost, never 0
    ] == pick(body["rows"], "model", "feature", "cost_usd", "requests")


def test_top_n(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/top", dimension="repo", n="2", month="2026-11").json()
    assert ("repo", 2) == (body["dimension"], body["n"])
    assert [("etl", 0.023), ("acme-api", 0.0228)] == pick(body["rows"], "repo", "cost_usd")
    developers = get(seeded, "/api/top", month="2026-11").json()  # default: developer, 10
    assert ["cy@acme.com", "ana@acme.com", "bo@acme.com"] == [row["developer"] for row in developers["rows"]]


def test_timeseries_by_day(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/timeseries", month="2026-11", developer="bo@acme.com").json()
    assert [("2026-11-03", 0.0028, 0), ("2026-11-04", 0.0002, 1), ("2026-11-20", 0.0084, 0)] == pick(
        body["rows"], "day", "cost_usd", "errors"
    )
    grouped = get(seeded, "/api/timeseries", **{"from": "2026-10-31", "to": "2026-11-02", "group_by": "team"}).json()
    assert [("2026-10-31", "platform", 0.0028), ("2026-11-02", "platform", 0.0173)] == pick(
        grouped["rows"], "day", "team", "cost_usd"
    )


def test_chargeback_json(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/chargeback", month="2026-11").json()
    assert "2026-11" == body["month"]
    assert [
        ("ana@acme.com", "platform", "CC-1001", "acme-api", 0.0198, 12000, 1500, 4000, 1000, 2),
        ("bo@acme.com", "platform", "CC-1001", "acme-api", 0.003, 1100, 100, 0, 0, 2),
        ("bo@acme.com", "platform", "CC-1001", "acme-infra", 0.0084, 3000, 300, 0, 0, 1),
        ("cy@acme.com", "data", "CC-2002", "etl", 0.023, 40500, 2050, 0, 0, 2),
    ] == pick(
        body["rows"],
        "developer",
        "team",
        "cost_center",
        "repo",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "requests",
    )
    assert 0.0542 == body["totals"]["cost_usd"]
    october = get(seeded, "/api/chargeback", month="2026-10").json()
    assert [("ana@acme.com", 0.0028)] == pick(october["rows"], "developer", "cost_usd")


def test_chargeback_csv_line_by_line(seeded: RunningCollector) -> None:
    response = get(seeded, "/api/chargeback.csv", month="2026-11")
    assert (200, "text/csv") == (response.status_code, response.headers["content-type"].split(";")[0])
    assert 'attachment; filename="chargeback-2026-11.csv"' == response.headers["content-disposition"]
    assert CHARGEBACK_CSV_2026_11.splitlines() == response.text.splitlines()
    team_only = get(seeded, "/api/chargeback.csv", month="2026-11", team="data").text.splitlines()
    assert [CHARGEBACK_CSV_2026_11.splitlines()[0], CHARGEBACK_CSV_2026_11.splitlines()[-1]] == team_only


def test_unpriced(seeded: RunningCollector) -> None:
    body = get(seeded, "/api/unpriced", month="2026-11").json()
    assert [
        {
            "model": "mystery-model",
            "provider": "acme",
            "requests": 1,
            "input_tokens": 500,
            "output_tokens": 50,
            "first_day": "2026-11-10",
            "last_day": "2026-11-10",
        }
    ] == body["rows"]


def test_healthz(seeded: RunningCollector) -> None:
    body = get(seeded, "/healthz").json()
    assert "ok" == body["status"]
    assert (True, 0) == (body["pipeline"]["running"], body["pipeline"]["queued_bytes"])
    assert (8, 8) == (body["store"]["rows_inserted"], body["store"]["duplicates"])


def test_metrics_are_prometheus_text(seeded: RunningCollector) -> None:
    response = get(seeded, "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert {
        "spendgate_collector_spans_received_total 16.0",
        "spendgate_collector_llm_spans_total 16.0",
        "spendgate_collector_spans_priced_total 7.0",
        "spendgate_collector_spans_unpriced_total 1.0",
        "spendgate_collector_spans_duplicate_total 8.0",
        "spendgate_collector_spans_rejected_total 0.0",
    } <= lines
    # October's call counts too: the counter is everything stored, not one month.
    assert pytest.approx(0.034) == seeded.metric("spendgate_collector_cost_usd_total", {"team": "platform"})


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/spend", {"group_by": "team,nope"}, "group_by"),
        ("/api/spend", {"group_by": "team,team"}, "group_by"),
        ("/api/spend", {"from": "2026-13-01"}, "from"),
        ("/api/spend", {"to": "yesterday"}, "to"),
        ("/api/spend", {"from": "2026-11-10", "to": "2026-11-01"}, "from"),
        ("/api/spend", {"month": "11-2026"}, "month"),
        ("/api/spend", {"month": "2026-11", "from": "2026-11-01"}, "month"),
        ("/api/spend", {"tema": "platform"}, "tema"),
        ("/api/top", {"n": "0"}, "n"),
        ("/api/top", {"n": "ten"}, "n"),
        ("/api/top", {"dimension": "day"}, "dimension"),
        ("/api/timeseries", {"group_by": "colour"}, "group_by"),
        ("/api/chargeback", {"month": "2026-1"}, "month"),
        ("/api/chargeback", {"from": "2026-11-01"}, "from"),
        ("/api/chargeback.csv", {"month": "nope"}, "month"),
        ("/api/unpriced", {"to": "2026-02-30"}, "to"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    seeded: RunningCollector, path: str, params: dict[str, str], param: str
) -> None:
    response = get(seeded, path, **params)
    assert (400, param) == (response.status_code, response.json()["param"])
    assert response.json()["error"]
