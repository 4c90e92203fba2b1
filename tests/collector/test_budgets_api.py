"""The budget HTTP API and ``spendgate budgets`` against a real collector on loopback."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
# The exact CLI tables are wider than the line limit.
# ruff: noqa: E501
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from spendgate_collector.budgets.cli import budgets_group, parse_threshold
from tests.collector.conftest import RunningCollector
from tests.collector.test_budgets_collector import Traffic
from tests.support.board import in_force

PLATFORM = {"name": "Platform", "limit_usd": 100, "scope": {"team": "platform"}, "owner": "#platform-leads"}


def api(
    collector: RunningCollector, method: str, path: str, body: Any = None, actor: str | None = None
) -> httpx.Response:
    headers = {"X-Spendgate-Actor": actor} if actor else {}
    return httpx.request(method, f"{collector.api_url}{path}", json=body, headers=headers, timeout=10)


def cli(collector: RunningCollector, *args: str) -> Result:
    return CliRunner().invoke(budgets_group, [*args, "--api", collector.api_url, "--actor", "ana"])


# --- HTTP


def test_put_get_list_delete(collector: RunningCollector) -> None:
    created = api(collector, "PUT", "/api/budgets/platform", PLATFORM)
    assert 201 == created.status_code
    budget = {
        "id": "platform",
        "name": "Platform",
        "scope": {"team": "platform"},
        "period": "month",
        "timezone": "UTC",
        "limit_usd": 100.0,
        "thresholds": [{"at": 0.8, "action": "alert"}, {"at": 1.1, "action": "pause"}],
        "owner": "#platform-leads",
    }
    assert budget == created.json()["budget"]
    again = api(collector, "PUT", "/api/budgets/platform", PLATFORM)
    assert (200, False) == (again.status_code, again.json()["created"])
    assert {"budgets": [budget]} == api(collector, "GET", "/api/budgets").json()
    one = api(collector, "GET", "/api/budgets/platform").json()
    assert ("ok", 0.0, 100.0) == (one["status"]["state"], one["status"]["spend_usd"], one["status"]["limit_usd"])
    assert 201 == api(collector, "POST", "/api/budgets", {**PLATFORM, "id": "second"}).status_code

    assert {"deleted": "platform"} == api(collector, "DELETE", "/api/budgets/platform").json()
    assert 404 == api(collector, "GET", "/api/budgets/platform").status_code
    assert 404 == api(collector, "DELETE", "/api/budgets/platform").status_code
    assert ["second"] == [b["id"] for b in api(collector, "GET", "/api/budgets").json()["budgets"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit_usd": 10, "period": "fortnight"}, "period"),
        ({"limit_usd": -1}, "limit_usd"),
        ({"limit_usd": 10, "scope": {"squad": "a"}}, "scope.squad"),
        ({"limit_usd": 10, "thresholds": [{"at": 1.1, "action": "pause"}, {"at": 0.8, "action": "alert"}]}, "thresholds.1.at"),
        ({"limit_usd": 10, "thresholds": [{"at": 1.0, "action": "route", "from": "claude-opus-4-1"}]}, "thresholds.0.to"),
        ({"limit_usd": 10, "timezone": "Europe/Atlantis"}, "timezone"),
        ({"id": "other", "limit_usd": 10}, "id"),
    ],
)  # fmt: skip
def test_invalid_budget_answers_400_naming_the_field(
    collector: RunningCollector, body: dict[str, Any], field: str
) -> None:
    answer = api(collector, "PUT", "/api/budgets/b1", body)
    assert 400 == answer.status_code
    assert field == answer.json()["field"]
    assert [] == api(collector, "GET", "/api/budgets").json()["budgets"]


def test_body_that_is_not_json_answers_400(collector: RunningCollector) -> None:
    answer = httpx.put(f"{collector.api_url}/api/budgets/b1", content=b"{nope", timeout=10)
    assert (400, "(body)") == (answer.status_code, answer.json()["field"])


def test_overrides_status_and_audit(collector: RunningCollector) -> None:
    api(collector, "PUT", "/api/budgets/platform", PLATFORM, actor="cfo@acme.com")
    bad = api(collector, "POST", "/api/budgets/platform/overrides", {"action": "raise", "reason": "x"})
    assert (400, "limit_usd") == (bad.status_code, bad.json()["field"])
    assert 404 == api(collector, "POST", "/api/budgets/nope/overrides", {"action": "lift", "reason": "x"}).status_code

    made = api(
        collector,
        "POST",
        "/api/budgets/platform/overrides",
        {"action": "raise", "limit_usd": 150, "until": "2099-01-01T00:00:00Z", "reason": "release", "actor": "lead"},
    )
    assert 201 == made.status_code
    override = made.json()["override"]
    assert ("raise", 150.0, "2099-01-01T00:00:00+00:00", "lead") == (
        override["action"],
        override["limit_usd"],
        override["until"],
        override["actor"],
    )
    (status,) = api(collector, "GET", "/api/budgets/status").json()["budgets"]
    assert (100.0, 150.0, [override["id"]]) == (
        status["limit_usd"],
        status["effective_limit_usd"],
        [o["id"] for o in status["overrides"]],
    )
    removed = api(collector, "DELETE", f"/api/budgets/platform/overrides/{override['id']}")
    assert (200, 100.0) == (removed.status_code, removed.json()["status"]["effective_limit_usd"])
    assert 404 == api(collector, "DELETE", f"/api/budgets/platform/overrides/{override['id']}").status_code

    entries = api(collector, "GET", "/api/audit?budget=platform").json()["entries"]
    assert [("override.removed", "api"), ("override.created", "lead"), ("budget.created", "cfo@acme.com")] == [
        (e["action"], e["actor"]) for e in entries
    ]
    assert 400 == api(collector, "GET", "/api/audit?limit=0").status_code
    assert 400 == api(collector, "GET", "/api/audit?colour=red").status_code


# --- CLI


def test_cli_set_list_status_override_rm(collector: RunningCollector) -> None:
    result = cli(collector, "set", "platform", "--team", "platform", "--limit", "10", "--owner", "#platform-leads")
    assert 0 == result.exit_code, result.output
    assert (
        "created budget platform: team=platform, $10.00 per month (UTC), alert 80 %, pause 110 %; now ok\n"
        == result.output
    )
    # Changing the limit keeps the scope and thresholds.
    result = cli(collector, "set", "platform", "--limit", "20")
    assert "updated budget platform: team=platform, $20.00 per month (UTC), alert 80 %, pause 110 %; now ok\n" == (
        result.output
    )
    result = cli(
        collector,
        "set",
        "opus",
        "--org",
        "--limit",
        "5",
        "--period",
        "week",
        "--timezone",
        "Europe/Berlin",
        "--threshold",
        "80%:alert",
        "--threshold",
        "1.0:route:acme-coder->acme-mini",
    )
    assert 0 == result.exit_code, result.output

    listing = cli(collector, "list").output
    assert [
        "ID        NAME      SCOPE          PERIOD                 LIMIT  THRESHOLDS                                      OWNER",
        "--------  --------  -------------  --------------------  ------  ----------------------------------------------  ---------------",
        "opus      opus      (org)          week (Europe/Berlin)   $5.00  alert 80 %, route 100 % (acme-coder→acme-mini)",
        "platform  platform  team=platform  month (UTC)           $20.00  alert 80 %, pause 110 %                         #platform-leads",
    ] == listing.splitlines()

    traffic = Traffic(collector)
    traffic.send(traffic.spans(25))  # $25: platform paused, org-wide opus routed
    traffic.exporter.shutdown()
    lines = cli(collector, "status").output.splitlines()
    assert ["ID", "SCOPE", "PERIOD", "SPEND", "LIMIT", "USED", "STATE", "VERDICTS"] == lines[0].split()
    assert ["opus", "(org)", "$25.00", "$5.00", "500", "%", "route", "route"] == [
        w for w in lines[2].split() if ".." not in w and "-" not in w
    ]
    assert ["platform", "team=platform", "$25.00", "$20.00", "125", "%", "pause", "pause"] == [
        w for w in lines[3].split() if ".." not in w and "-" not in w
    ]

    result = cli(collector, "override", "platform", "--lift", "--for", "1h", "--reason", "finish the refactor")
    assert 0 == result.exit_code, result.output
    assert result.output.startswith("platform lifted until ") and result.output.endswith("; now ok\n")
    override_id = result.output.split("(override ")[1].split(")")[0]
    data = cli(collector, "status", "platform", "--json").output
    assert '"state": "ok"' in data and override_id in data
    result = cli(collector, "override", "platform", "--remove", override_id)
    assert f"removed override {override_id} of platform; now pause\n" == result.output

    assert "deleted budget platform\n" == cli(collector, "rm", "platform").output
    assert 0 == cli(collector, "rm", "opus").exit_code
    assert [] == in_force(collector.collector.control_log)
    audit = cli(collector, "audit", "--budget", "platform", "--json").output
    assert '"actor": "ana"' in audit


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "x", "--limit", "-5"], "Error: limit_usd: must be above 0, got -5.0\n"),
        (["set", "x", "--team", "a"], "Error: --limit: a new budget needs a limit in USD\n"),
        (["set", "x", "--limit", "5", "--threshold", "1.0:route"], "Error: thresholds.0.to: a route threshold needs"),
        (["set", "x", "--limit", "5", "--timezone", "Mars/Base"], "Error: timezone: unknown IANA time zone"),
        (["override", "nope", "--lift", "--reason", "r"], "Error: no budget 'nope'\n"),
        (["override", "nope", "--lift"], "Error: --reason: say why"),
        (["rm", "nope"], "Error: no budget 'nope'\n"),
    ],
)
def test_cli_errors_name_what_is_wrong(collector: RunningCollector, args: list[str], message: str) -> None:
    result = cli(collector, *args)
    assert 1 == result.exit_code
    assert result.output.startswith(message), result.output


def test_cli_cannot_reach_the_api() -> None:
    result = CliRunner().invoke(budgets_group, ["list", "--api", "http://127.0.0.1:9"])
    assert 1 == result.exit_code
    assert result.output.startswith("Error: cannot reach the collector API at http://127.0.0.1:9")


def test_threshold_syntax() -> None:
    assert {"at": 0.8, "action": "alert"} == parse_threshold("80%:alert")
    assert {"at": 1.0, "action": "route", "from": "a:1", "to": "b"} == parse_threshold("1.0:route:a:1->b")
    assert {"at": 1.0, "action": "route", "to": "b"} == parse_threshold("1:route:b")
