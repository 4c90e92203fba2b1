"""The dashboard in real headless Chromium: what an admin sees and does, end to end over real HTTP.

One browser for the session, a fresh context (cookies) per test; screenshots of each page land in
``tests/dashboard/artifacts/``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page

from spendgate_collector.dashboard.render import usd
from spendgate_collector.query import current_month
from tests.collector.conftest import RunningCollector

MONTH = current_month()


@pytest.fixture
def page(browser: Browser, seeded: RunningCollector) -> Iterator[Page]:
    context = browser.new_context(
        base_url=seeded.api_url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def _api(seeded: RunningCollector, path: str, **params: str) -> httpx.Response:
    response = httpx.get(seeded.api_url + path, params=params, timeout=10)
    response.raise_for_status()
    return response


def test_overview_shows_the_seeded_month(page: Page, seeded: RunningCollector, artifacts: Path) -> None:
    total = _api(seeded, "/api/chargeback", month=MONTH).json()["totals"]
    page.goto("/")
    assert page.get_by_test_id("mtd").inner_text() == usd(total["cost_usd"])
    developers = page.get_by_test_id("top-developer").locator("tr td:first-child").all_inner_texts()
    # cy's 0.023 is the largest; ana 0.0198; bo 0.0028
    assert developers == ["cy@acme.com", "ana@acme.com", "bo@acme.com"]
    assert page.locator("svg.chart rect.bar").count() >= 28  # one bar per day of the month
    assert "Forecast method:" in page.inner_text("main")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    # Every number links to its rows: a developer's total opens the chargeback filtered to them.
    page.get_by_test_id("top-developer").get_by_role("link", name="bo@acme.com").click()
    page.wait_for_url("**/chargeback?**developer=bo%40acme.com**")
    assert sorted(set(page.locator("table[data-testid=chargeback] tbody tr td:first-child").all_inner_texts())) == [
        "bo@acme.com"
    ]


def test_chargeback_filters_and_its_csv_matches_the_api(page: Page, seeded: RunningCollector, artifacts: Path) -> None:
    page.goto("/chargeback")
    page.get_by_test_id("filters").locator("input[name=team]").fill("platform")
    page.get_by_test_id("filters").get_by_role("button", name="Apply").click()
    page.wait_for_url("**team=platform**")
    rows = page.locator("table[data-testid=chargeback] tbody tr")
    shown = [
        (r.locator("td").nth(0).inner_text(), r.locator("td").nth(3).inner_text(), r.locator("td").last.inner_text())
        for r in rows.all()
    ]
    assert shown == [
        ("ana@acme.com", "acme-api", "0.017300"),
        ("ana@acme.com", "acme-web", "0.002500"),
        ("bo@acme.com", "acme-api", "0.002800"),
    ]
    page.screenshot(path=str(artifacts / "chargeback.png"), full_page=True)
    with page.expect_download() as download_info:
        page.get_by_test_id("csv").click()
    downloaded = Path(download_info.value.path()).read_text()
    assert _api(seeded, "/api/chargeback.csv", month=MONTH, team="platform").text == downloaded
    parsed = list(csv.DictReader(io.StringIO(downloaded)))
    assert [(d, r, c) for d, r, c in shown] == [(p["developer"], p["repo"], p["cost_usd"]) for p in parsed]
    assert {"platform"} == {p["team"] for p in parsed}


def test_admin_sets_a_budget_and_an_override(page: Page, seeded: RunningCollector, artifacts: Path) -> None:
    page.goto("/budgets")
    form = page.get_by_test_id("budget-form")
    form.locator("input[name=id]").fill("ana-monthly")
    form.locator("input[name=developer]").fill("ana@acme.com")
    form.locator("input[name=limit_usd]").fill("0.01")  # ana has spent 0.0198: past the 110 % pause
    form.locator("input[name=owner]").fill("lead@acme.com")
    form.get_by_role("button", name="Save budget").click()
    page.wait_for_url("**/budgets?saved=ana-monthly")
    card = page.get_by_test_id("budget-ana-monthly")
    assert "pause" in card.get_by_test_id("state").inner_text()
    status = _api(seeded, "/api/budgets/ana-monthly").json()["status"]
    assert [v["action"] for v in status["verdicts"]] == ["pause"]

    override = card.get_by_test_id("override-form")
    override.locator("select[name=action]").select_option("raise")
    override.locator("input[name=limit_usd]").fill("1")
    override.locator("input[name=reason]").fill("release week")
    override.get_by_role("button", name="Add override").click()
    page.wait_for_url("**/budgets?overridden=ana-monthly")
    card = page.get_by_test_id("budget-ana-monthly")
    assert card.get_by_test_id("state").inner_text() == "ok"
    cells = card.get_by_test_id("overrides").locator("td").all_inner_texts()
    assert cells[:3] == ["raise to $1.00", "local", "release week"]
    # The change history names who did what; the transitions show the pause and its lifting.
    assert "override.created" in page.get_by_test_id("changes").inner_text()
    history = page.get_by_test_id("history").inner_text()
    assert "ok → pause" in history and "pause → ok" in history
    page.screenshot(path=str(artifacts / "budgets.png"), full_page=True)
    status = _api(seeded, "/api/budgets/ana-monthly").json()["status"]
    assert status["verdicts"] == [] and status["overrides"][0]["reason"] == "release week"


def test_a_form_posted_from_another_site_is_refused(seeded: RunningCollector) -> None:
    """What a hostile page could make a browser send to the dashboard changes nothing."""
    response = httpx.post(
        seeded.api_url + "/budgets",
        data={"id": "forged", "limit_usd": "5"},
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert response.status_code == 403
    assert httpx.get(seeded.api_url + "/api/budgets/forged", timeout=10).status_code == 404


def test_unpriced_and_proxies_pages(page: Page, artifacts: Path) -> None:
    page.goto("/unpriced")
    assert "mystery-model" in page.get_by_test_id("unpriced").inner_text()
    page.screenshot(path=str(artifacts / "unpriced.png"), full_page=True)
    page.goto("/proxies")
    assert "no proxy is connected" in page.get_by_test_id("proxies").inner_text()
