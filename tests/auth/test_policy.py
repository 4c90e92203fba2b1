"""The route policy, table-driven over real HTTP: every route x every caller → allowed or refused.

``POLICY`` is the reviewed statement of who may call what. The first test enumerates the routes
registered on the running collector's API app and fails when one has no row (or a row names a
route that is gone), so a new route cannot ship without a decision; the markers on the handlers
must agree with the table; and each row is exercised over HTTP as anonymous, the admin token, and a
signed-in admin, finance, lead and developer. The scoping tests then check what each role sees.
"""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from spendgate_collector.auth.identity import allowed_roles, is_public
from tests.collector.seed import send
from tests.collector.spans import ours, span
from tests.support.oidc_idp import ADMIN_TOKEN, OidcStack, run_oidc_collector

A, F, L, D = "admin", "finance", "lead", "developer"
ALL = frozenset({A, F, L, D})
PUBLIC = "public"

POLICY: dict[tuple[str, str], frozenset[str] | str] = {
    # query API (query/api.py): every role, each narrowed to their slice
    ("GET", "/api/spend"): ALL,
    ("GET", "/api/top"): ALL,
    ("GET", "/api/timeseries"): ALL,
    ("GET", "/api/chargeback"): ALL,
    ("GET", "/api/chargeback.csv"): ALL,
    ("GET", "/api/unpriced"): ALL,
    ("GET", "/healthz"): PUBLIC,  # probes; details only for admins
    ("GET", "/metrics"): PUBLIC,  # Prometheus scrapers; counters only
    # sign-in (auth/routes.py)
    ("GET", "/auth/login"): PUBLIC,
    ("GET", "/auth/callback"): PUBLIC,
    ("GET", "/auth/logout"): PUBLIC,
    ("POST", "/auth/logout"): PUBLIC,
    ("GET", "/auth/me"): ALL,
    # budgets (budgets/api.py): finance and developers read, leads change their teams'
    ("GET", "/api/budgets"): ALL,
    ("POST", "/api/budgets"): frozenset({A, L}),
    ("GET", "/api/budgets/status"): ALL,
    ("GET", "/api/budgets/{id}"): ALL,
    ("PUT", "/api/budgets/{id}"): frozenset({A, L}),
    ("DELETE", "/api/budgets/{id}"): frozenset({A, L}),
    ("POST", "/api/budgets/{id}/overrides"): frozenset({A, L}),
    ("DELETE", "/api/budgets/{id}/overrides/{oid}"): frozenset({A, L}),
    ("GET", "/api/audit"): frozenset({A, F, L}),
    # attribution (attribution/api.py)
    ("GET", "/api/coverage"): ALL,
    ("GET", "/api/reconcile"): frozenset({A, F, L}),
    # keys (keys/api.py): never finance
    ("GET", "/api/keys"): frozenset({A, L, D}),
    ("POST", "/api/keys"): frozenset({A, L, D}),
    ("POST", "/api/keys/{key_id}/revoke"): frozenset({A, L, D}),
    # dashboard pages (dashboard/)
    ("GET", "/"): ALL,
    ("GET", "/chargeback"): ALL,
    ("GET", "/budgets"): ALL,
    ("POST", "/budgets"): frozenset({A, L}),
    ("POST", "/budgets/{id}/overrides"): frozenset({A, L}),
    ("GET", "/unpriced"): frozenset({A, F, L}),
    ("GET", "/coverage"): ALL,
    ("GET", "/proxies"): frozenset({A, L}),
    ("GET", "/keys"): frozenset({A, L, D}),
    ("POST", "/keys"): frozenset({A, L, D}),
    ("POST", "/keys/{key_id}/revoke"): frozenset({A, L, D}),
}
SIGN_INS = {A: "admin@acme.com", F: "finance@acme.com", L: "lead@acme.com", D: "ana@acme.com"}
_MIDDLEWARE_REFUSALS = re.compile(r"may not use|no access policy|sign in first|CSRF|invalid bearer")


def _routes(app: web.Application) -> dict[tuple[str, str], Any]:
    out = {}
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp's automatic twin of each GET, same handler
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        out[(route.method, path)] = route.handler
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcStack]:
    with run_oidc_collector(tmp_path_factory.mktemp("policy")) as running:
        yield running


@pytest.fixture(scope="module")
def callers(stack: OidcStack) -> dict[str, tuple[httpx.Client, dict[str, str]]]:
    """Each caller's client and the headers its state-changing requests need."""
    out: dict[str, tuple[httpx.Client, dict[str, str]]] = {"anonymous": (stack.client(), {})}
    out["token"] = (stack.client(headers=stack.admin_token_headers()), {})
    for role, email in SIGN_INS.items():
        c = stack.sign_in(email)
        out[role] = (c, {"X-CSRF-Token": stack.csrf(c)})
    return out


def test_every_registered_route_has_a_policy_row(stack: OidcStack) -> None:
    registered = set(_routes(stack.running.collector._api_runner.app))  # type: ignore[union-attr]
    assert set() == registered - set(POLICY), "routes without a policy row: add them to POLICY"
    assert set() == set(POLICY) - registered, "policy rows for routes that no longer exist"


def test_handler_markers_agree_with_the_table(stack: OidcStack) -> None:
    for key, handler in _routes(stack.running.collector._api_runner.app).items():  # type: ignore[union-attr]
        marked: frozenset[str] | str = (
            PUBLIC if is_public(handler) else frozenset(r.value for r in allowed_roles(handler) or ())
        )
        assert POLICY[key] == marked, key


def _concrete(path: str) -> str:
    return path.replace("{id}", "no-such-budget").replace("{oid}", "no-such-override").replace("{key_id}", "k-none")


@pytest.mark.parametrize(("method", "path"), sorted(POLICY))
def test_route_x_caller(method: str, path: str, stack: OidcStack, callers: dict[str, Any]) -> None:
    policy = POLICY[(method, path)]
    url = _concrete(path)
    if policy == PUBLIC:
        c, _ = callers["anonymous"]
        resp = c.request(method, url)
        assert resp.status_code not in (401, 403), resp.text
        return
    for who, (c, headers) in callers.items():
        body = {} if method in ("POST", "PUT") else None
        resp = c.request(method, url, headers={"Accept": "application/json", **headers}, json=body)
        if who == "anonymous":
            assert 401 == resp.status_code, (who, resp.text)
        elif who == "token" or who in policy:
            refused = resp.status_code in (401, 403) and _MIDDLEWARE_REFUSALS.search(resp.text)
            assert not refused, (who, resp.status_code, resp.text)
        else:
            assert 403 == resp.status_code, (who, resp.text)
            assert "may not use" in resp.json()["error"]


def test_a_handler_without_a_marker_is_refused(stack: OidcStack) -> None:
    # Deny by default, checked on the policy itself: an unmarked handler behind the real middleware.
    from spendgate_collector.auth.policy import Policy
    from tests.support.aio_server import serve_app

    async def unmarked(request: web.Request) -> web.Response:
        return web.Response(text="secret")

    def make() -> web.Application:
        app = web.Application(middlewares=[Policy(mode="open", admin_token=None, sessions=None).middleware])
        app.router.add_get("/x", unmarked)
        return app

    with serve_app(make) as handle:
        resp = httpx.get(f"{handle.url}/x")
    assert (403, True) == (resp.status_code, "no access policy" in resp.json()["error"])


def test_csrf_is_required_for_cookie_sessions_not_for_the_token(stack: OidcStack, callers: dict[str, Any]) -> None:
    admin, headers = callers[A]
    body = {"id": "csrf-probe", "name": "probe", "scope": {}, "period": "month", "limit_usd": 5}
    assert 403 == admin.put("/api/budgets/csrf-probe", json=body).status_code
    assert 403 == admin.put("/api/budgets/csrf-probe", json=body, headers={"X-CSRF-Token": "wrong"}).status_code
    assert 201 == admin.put("/api/budgets/csrf-probe", json=body, headers=headers).status_code
    token = callers["token"][0]
    assert 200 == token.delete("/api/budgets/csrf-probe").status_code
    evil = {"Origin": "https://evil.example.com", **headers}
    assert 403 == admin.put("/api/budgets/csrf-probe", json=body, headers=evil).status_code


def test_wrong_admin_token_is_401(stack: OidcStack) -> None:
    resp = stack.client(headers={"Authorization": "Bearer " + "x" * len(ADMIN_TOKEN)}).get("/api/spend")
    assert 401 == resp.status_code
    assert ADMIN_TOKEN not in resp.text


def test_healthz_details_only_for_admins(callers: dict[str, Any]) -> None:
    assert {"status": "ok"} == callers["anonymous"][0].get("/healthz").json()
    assert {"status": "ok"} == callers[D][0].get("/healthz").json()
    assert "store" in callers[A][0].get("/healthz").json()


# --- what each role sees


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()


@pytest.fixture(scope="module")
def seeded(stack: OidcStack) -> OidcStack:
    people = [
        ("ana@acme.com", "platform"),
        ("dee@acme.com", "platform"),
        ("bob@acme.com", "mobile"),
        ("cy@acme.com", "web"),
    ]
    send(
        stack.running,
        [
            span(0x7100 + i, 1, ours(developer=dev, team=team, model="acme-coder", provider="acme"), end=_now())
            for i, (dev, team) in enumerate(people)
        ],
    )
    return stack


def _devs(c: httpx.Client, **params: str) -> list[str]:
    resp = c.get("/api/spend", params={"group_by": "developer", **params})
    assert 200 == resp.status_code, resp.text
    return sorted(row["developer"] for row in resp.json()["rows"])


def test_spend_is_scoped_by_role(seeded: OidcStack, callers: dict[str, Any]) -> None:
    everyone = ["ana@acme.com", "bob@acme.com", "cy@acme.com", "dee@acme.com"]
    assert everyone == _devs(callers[A][0]) == _devs(callers[F][0]) == _devs(callers["token"][0])
    assert ["ana@acme.com", "bob@acme.com", "dee@acme.com"] == _devs(callers[L][0])  # platform + mobile
    assert ["bob@acme.com"] == _devs(callers[L][0], team="mobile")
    assert ["ana@acme.com"] == _devs(callers[D][0])
    assert 403 == callers[D][0].get("/api/spend", params={"developer": "bob@acme.com"}).status_code
    assert 403 == callers[L][0].get("/api/top", params={"team": "web"}).status_code
    csv = callers[D][0].get("/api/chargeback.csv").text
    assert "ana@acme.com" in csv and "bob@acme.com" not in csv


def test_budgets_are_scoped_and_changes_audited_with_the_signed_in_actor(
    seeded: OidcStack, callers: dict[str, Any]
) -> None:
    token = callers["token"][0]
    scopes = {"org": {}, "plat": {"team": "platform"}, "web": {"team": "web"}, "bob": {"user": "bob@acme.com"}}
    for bid, scope in scopes.items():
        body = {"name": bid, "scope": scope, "period": "month", "limit_usd": 100}
        resp = token.put(f"/api/budgets/{bid}", json=body, headers={"X-Spendgate-Actor": "ops"})
        assert resp.status_code in (200, 201), resp.text

    def ids(who: str) -> list[str]:
        return sorted(b["id"] for b in callers[who][0].get("/api/budgets").json()["budgets"])

    assert ["bob", "org", "plat", "web"] == ids(F)
    assert ["org", "plat"] == ids(D)
    assert ["org", "plat"] == ids(L)
    assert ["org", "plat"] == sorted(b["id"] for b in callers[D][0].get("/api/budgets/status").json()["budgets"])
    assert 404 == callers[D][0].get("/api/budgets/web").status_code

    lead, lead_headers = callers[L]
    raise_it = {"action": "raise", "limit_usd": 150, "for": "1h", "reason": "release week", "actor": "someone-else"}
    assert 201 == lead.post("/api/budgets/plat/overrides", json=raise_it, headers=lead_headers).status_code
    assert 403 == lead.post("/api/budgets/org/overrides", json=raise_it, headers=lead_headers).status_code
    assert 404 == lead.delete("/api/budgets/web", headers=lead_headers).status_code
    new_web = {"name": "w", "scope": {"team": "web"}, "period": "month", "limit_usd": 1}
    into_mobile = {**new_web, "scope": {"team": "mobile"}}
    assert 403 == lead.put("/api/budgets/web", json=into_mobile, headers=lead_headers).status_code
    assert 403 == lead.put("/api/budgets/lead-web", json=new_web, headers=lead_headers).status_code
    mobile = {"name": "m", "scope": {"team": "mobile"}, "period": "month", "limit_usd": 1}
    assert 201 == lead.put("/api/budgets/mob", json=mobile, headers=lead_headers).status_code
    finance, finance_headers = callers[F]
    assert 403 == finance.put("/api/budgets/mob", json=mobile, headers=finance_headers).status_code

    audit = callers[A][0].get("/api/audit", params={"limit": 50}).json()["entries"]
    actors = {(e["action"], e.get("budget_id")): e["actor"] for e in audit}
    assert "ops (admin token)" == actors[next(k for k in actors if k[1] == "org")]
    assert "lead@acme.com" == actors[next(k for k in actors if k[1] == "mob")]
    assert any(e["actor"] == "lead@acme.com" and "override" in e["action"] for e in audit)
    assert 403 == lead.get("/api/audit").status_code
    assert 200 == lead.get("/api/audit", params={"budget": "plat"}).status_code
    assert 404 == lead.get("/api/audit", params={"budget": "web"}).status_code


def test_open_mode_is_an_admin_on_loopback(tmp_path: Path) -> None:
    from tests.collector.conftest import run_collector

    with run_collector(tmp_path) as running:
        me = httpx.get(f"{running.api_url}/auth/me").json()
    assert ("admin", "open", "local") == (me["role"], me["via"], me["subject"])
