"""The dashboard in real headless Chromium, signed in through the local OIDC provider.

The acceptance path of issue #8: see the overview with seeded data, filter the chargeback and
download its CSV (compared with the API's), set a budget and an override as an admin, see the pause
as the developer concerned, create a key as a developer (shown once). One browser for the session,
a fresh context (cookie jar) per person; screenshots land in ``tests/dashboard/artifacts/``.
The tests run in file order and build on each other's budgets, as one story.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from spendgate_collector.dashboard.render import usd
from spendgate_collector.store.query import current_month
from tests.collector.seed import send
from tests.collector.spans import ours, span
from tests.dashboard.seed import DATA, day_in_month
from tests.support.oidc_idp import OidcStack

MONTH = current_month()
CHARGEBACK_ROWS = "table[data-testid=chargeback] tbody tr"
COVERAGE_ROWS = "table[data-testid=coverage] tbody tr"

SignIn = Callable[[str], Page]


@pytest.fixture
def sign_in(browser: Browser, stack: OidcStack) -> Iterator[SignIn]:
    """Open the dashboard as ``email``: the collector sends the browser to the IdP and back."""
    contexts: list[BrowserContext] = []

    def open_as(email: str) -> Page:
        context = browser.new_context(
            base_url=stack.api_url, viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        stack.idp.select_user(email)
        page.goto("/")
        page.wait_for_url(stack.api_url + "/")  # back from the IdP, signed in
        assert email in page.locator("header .who").inner_text()
        return page

    yield open_as
    for context in contexts:
        context.close()


def _api(stack: OidcStack, path: str, **params: str) -> httpx.Response:
    response = httpx.get(stack.api_url + path, params=params, headers=stack.admin_token_headers(), timeout=10)
    response.raise_for_status()
    return response


def test_overview_shows_the_seeded_month(sign_in: SignIn, stack: OidcStack, artifacts: Path) -> None:
    page = sign_in("admin@acme.com")
    total = _api(stack, "/api/chargeback", month=MONTH).json()["totals"]
    assert usd(total["cost_usd"]) == page.get_by_test_id("mtd").inner_text()
    developers = page.get_by_test_id("top-developer").locator("tr td:first-child").all_inner_texts()
    assert developers == ["cy@acme.com", "ana@acme.com", "bo@acme.com"]  # 0.023, 0.0198, 0.0028
    assert page.locator("svg.chart rect.bar").count() >= 28  # one bar per day of the month
    assert "Forecast method:" in page.inner_text("main")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    # Every number links to its rows: a developer's total opens the chargeback filtered to them.
    page.get_by_test_id("top-developer").get_by_role("link", name="bo@acme.com").click()
    page.wait_for_url("**/chargeback?**developer=bo%40acme.com**")
    assert {"bo@acme.com"} == set(page.locator(f"{CHARGEBACK_ROWS} td:first-child").all_inner_texts())


def test_chargeback_filters_and_its_csv_matches_the_api(sign_in: SignIn, stack: OidcStack, artifacts: Path) -> None:
    page = sign_in("finance@acme.com")
    assert "Keys" not in page.locator("header nav").inner_text()  # finance never sees keys
    page.goto("/chargeback")
    page.get_by_test_id("filters").locator("input[name=team]").fill("platform")
    page.get_by_test_id("filters").get_by_role("button", name="Apply").click()
    page.wait_for_url("**team=platform**")
    shown = [
        (r.locator("td").nth(0).inner_text(), r.locator("td").nth(3).inner_text(), r.locator("td").last.inner_text())
        for r in page.locator(CHARGEBACK_ROWS).all()
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
    assert _api(stack, "/api/chargeback.csv", month=MONTH, team="platform").text == downloaded
    parsed = list(csv.DictReader(io.StringIO(downloaded)))
    assert shown == [(p["developer"], p["repo"], p["cost_usd"]) for p in parsed]
    assert page.goto("/keys").status == 403  # and the page itself refuses, not only the menu


def test_admin_sets_budgets_and_an_override(sign_in: SignIn, stack: OidcStack, artifacts: Path) -> None:
    page = sign_in("admin@acme.com")

    def set_budget(budget_id: str, limit: str, **scope: str) -> None:
        page.goto("/budgets")
        form = page.get_by_test_id("budget-form")
        form.locator("input[name=id]").fill(budget_id)
        for name, value in scope.items():
            form.locator(f"input[name={name}]").fill(value)
        form.locator("input[name=limit_usd]").fill(limit)
        form.locator("input[name=owner]").fill("lead@acme.com")
        form.get_by_role("button", name="Save budget").click()
        page.wait_for_url(f"**/budgets?saved={budget_id}")

    set_budget("platform", "0.01", team="platform")  # the team has spent 0.0226: past the 110 % pause
    card = page.get_by_test_id("budget-platform")
    assert card.get_by_test_id("state").inner_text() == "pause"
    assert [v["action"] for v in _api(stack, "/api/budgets/platform").json()["status"]["verdicts"]] == ["pause"]

    override = card.get_by_test_id("override-form")
    override.locator("select[name=action]").select_option("raise")
    override.locator("input[name=limit_usd]").fill("1")
    override.locator("input[name=reason]").fill("release week")
    override.get_by_role("button", name="Add override").click()
    page.wait_for_url("**/budgets?overridden=platform")
    card = page.get_by_test_id("budget-platform")
    assert card.get_by_test_id("state").inner_text() == "ok"
    assert card.get_by_test_id("overrides").locator("td").all_inner_texts()[:3] == [
        "raise to $1.00",
        "admin@acme.com",
        "release week",
    ]
    # The changes name who did what; the transitions show the pause and its lifting.
    assert "override.created" in page.get_by_test_id("changes").inner_text()
    history = page.get_by_test_id("history").inner_text()
    assert "ok → pause" in history and "pause → ok" in history
    status = _api(stack, "/api/budgets/platform").json()["status"]
    assert status["verdicts"] == [] and status["overrides"][0]["reason"] == "release week"

    set_budget("ana-monthly", "0.01", developer="ana@acme.com")  # ana has spent 0.0198
    assert page.get_by_test_id("budget-ana-monthly").get_by_test_id("state").inner_text() == "pause"
    page.screenshot(path=str(artifacts / "budgets.png"), full_page=True)


def test_the_paused_developer_sees_why(sign_in: SignIn, artifacts: Path) -> None:
    page = sign_in("ana@acme.com")
    banner = page.get_by_test_id("paused")
    assert banner.count() == 1
    text = banner.inner_text()
    assert "Paused by budget “ana-monthly”" in text
    assert "Remaining: $0.00" in text and "lead@acme.com" in text
    # Her own spend only: 0.0198, not the organisation's.
    assert page.get_by_test_id("mtd").inner_text() == "$0.02"
    assert page.get_by_test_id("top-developer").locator("tr td:first-child").all_inner_texts() == ["ana@acme.com"]
    page.screenshot(path=str(artifacts / "overview-paused-developer.png"), full_page=True)
    # She sees her budgets, with no forms to change them.
    page.goto("/budgets")
    assert page.get_by_test_id("budget-ana-monthly").count() == 1
    assert page.get_by_test_id("budget-form").count() == 0 and page.get_by_test_id("override-form").count() == 0


def test_a_developer_creates_a_key_shown_once(sign_in: SignIn, stack: OidcStack, artifacts: Path) -> None:
    page = sign_in("bob@acme.com")
    page.goto("/keys")
    page.get_by_test_id("key-form").get_by_role("button", name="Issue key").click()
    secret = page.get_by_test_id("secret").inner_text().strip()
    assert secret.startswith("sg-")
    assert "Override OpenAI Base URL" in page.get_by_test_id("new-key").inner_text()
    rows = page.get_by_test_id("keys").locator("tr").all_inner_texts()[1:]
    assert len(rows) == 1 and "bob@acme.com" in rows[0] and "mobile" in rows[0]
    # Docs screenshot without the real key in it.
    page.evaluate(
        "s => document.querySelectorAll('pre').forEach(p => p.textContent = p.textContent.replace(s, MASK))".replace(
            "MASK", "'sg-' + '•'.repeat(40)"
        ),
        secret,
    )
    page.screenshot(path=str(artifacts / "keys-created.png"), full_page=True)
    page.goto("/keys")  # shown once: never again
    assert page.get_by_test_id("secret").count() == 0 and secret not in page.content()
    assert secret not in (stack.running.collector.config.keys_file or Path()).read_text()
    # The key works as a credential for nobody but the proxy: the collector knows only its hash.
    keys = httpx.get(stack.api_url + "/api/keys", headers=stack.admin_token_headers(), timeout=10).json()["keys"]
    assert [(k["user"], k["team"]) for k in keys] == [("bob@acme.com", "mobile")]


def test_a_form_posted_from_another_site_is_refused(stack: OidcStack) -> None:
    """What a hostile page could make a signed-in browser send changes nothing."""
    client = stack.sign_in("admin@acme.com")
    response = client.post(
        "/budgets",
        data={"id": "forged", "limit_usd": "5", "csrf_token": "guess"},
        headers={"Origin": stack.api_url},
    )
    assert response.status_code == 403
    assert _api_status(stack, "/api/budgets/forged") == 404


def _api_status(stack: OidcStack, path: str) -> int:
    return httpx.get(stack.api_url + path, headers=stack.admin_token_headers(), timeout=10).status_code


def test_unpriced_and_proxies_pages(sign_in: SignIn, artifacts: Path) -> None:
    page = sign_in("lead@acme.com")
    page.goto("/unpriced")
    assert page.goto("/unpriced").status == 200
    # The lead's teams are platform and mobile: the data team's unpriced model is not theirs.
    assert "every call this month has a price" in page.get_by_test_id("unpriced").inner_text()
    page = sign_in("admin@acme.com")
    page.goto("/unpriced")
    assert "mystery-model" in page.get_by_test_id("unpriced").inner_text()
    page.screenshot(path=str(artifacts / "unpriced.png"), full_page=True)
    page.goto("/proxies")
    assert "no proxy is connected" in page.get_by_test_id("proxies").inner_text()


def test_coverage_page_matches_the_api(sign_in: SignIn, stack: OidcStack, artifacts: Path) -> None:
    """Last in the file: it adds a call with no repo, which the earlier steps' numbers do not include."""
    # cy@acme.com (data) calls without a repo: (3000 x 0.50 + 300 x 1.50) / 1e6 = 0.00195 unattributed.
    no_repo = ours(
        developer="cy@acme.com",
        **DATA,
        repo=None,
        model="acme-mini",
        provider="acme",
        input_tokens=3000,
        output_tokens=300,
    )
    send(stack.running, [span(0x64, 6, no_repo, end=day_in_month(0))])
    page = sign_in("admin@acme.com")
    page.goto("/coverage?group_by=team")
    api = _api(stack, "/api/coverage", month=MONTH, group_by="team").json()
    whole = _api(stack, "/api/coverage", month=MONTH).json()["summary"][0]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 100:.1f} %"

    shown = [[td.inner_text() for td in tr.locator("td").all()] for tr in page.locator(COVERAGE_ROWS).all()]
    assert shown == [
        [
            row["team"] or "(none)",
            row["category"],
            row["source"],
            f"{row['requests']:,}",
            pct(row["requests_share"]),
            "n/a" if row["cost_usd"] is None else usd(row["cost_usd"], 4),
            pct(row["cost_share"]),
        ]
        for row in api["rows"]
    ]
    assert sorted({row[0] for row in shown}) == ["data", "platform"]
    assert ("data", "unattributed", "none") in {(r[0], r[1], r[2]) for r in shown}
    assert pct(whole["gateway_coverage"]["cost_share"]) == page.get_by_test_id("gateway-coverage").inner_text()
    assert usd(whole["unattributed"]["cost_usd"], 4) == page.get_by_test_id("tile-unattributed").inner_text()
    assert page.get_by_test_id("mix").locator("svg.stack").count() == 2  # one stacked bar per team
    page.screenshot(path=str(artifacts / "coverage.png"), full_page=True)
    # The unattributed calls of the data team open its chargeback by repo, where the (none) row is.
    data_unattributed = page.locator(COVERAGE_ROWS).filter(has_text="unattributed").filter(has_text="data")
    data_unattributed.get_by_role("link").first.click()
    page.wait_for_url("**/chargeback?**team=data**group_by=repo**")
    repos = [r.locator("td").first.inner_text() for r in page.locator(CHARGEBACK_ROWS).all()]
    assert repos == ["etl", "(none)"]
    # A developer sees their own coverage only (0.0173 + 0.0025), as the API would answer them.
    page = sign_in("ana@acme.com")
    page.goto("/coverage")
    assert "your own spend (ana@acme.com)" in page.inner_text("main")
    assert [[td.inner_text() for td in tr.locator("td").all()] for tr in page.locator(COVERAGE_ROWS).all()] == [
        ["attributed", "header", "2", "100.0 %", "$0.0198", "100.0 %"]
    ]
