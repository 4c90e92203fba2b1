"""Fixtures for the dashboard tests: a seeded collector behind OIDC sign-in, and one headless Chromium.

The collector runs in ``auth.mode: oidc`` against the local test IdP (``tests/support/oidc_idp.py``:
real HTTP, real RS256-signed ID tokens); a browser signs in by choosing the IdP's user and opening a
page, exactly as a person would be redirected through their company's IdP.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``), driven by Playwright's
Python package through ``executable_path``; Playwright downloads no browser. The flags keep it from
calling home (without them it floods a closed network with retries). Screenshots go to
``tests/dashboard/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.collector.seed import send
from tests.dashboard.seed import seed_spans
from tests.support.oidc_idp import OidcStack, run_oidc_collector

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcStack]:
    """The test IdP and a collector holding the seed month (``seed.py``), with budgets and keys on."""
    tmp = tmp_path_factory.mktemp("dashboard")
    with run_oidc_collector(tmp, keys_file=tmp / "keys.yaml") as oidc:
        send(oidc.running, seed_spans())
        yield oidc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running on the main thread
    # while it is open, and every later test that calls asyncio.run() would fail with "cannot be
    # called from a running event loop".
    if not CHROMIUM.exists():
        # A developer's `make test` without Chromium skips, saying how to get it; CI sets
        # SPENDGATE_REQUIRE_BROWSER so a failed install can never pass as a skip there.
        message = "Debian's chromium is missing: run `apt-get install -y chromium` (.ci/run does)"
        if os.environ.get("SPENDGATE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
