"""OIDC sign-in end to end against the test IdP: sessions, /auth/me, logout, and every bad token refused."""

from __future__ import annotations

# Expected value first in every assert (house style), which ruff's SIM300 calls a Yoda condition.
# ruff: noqa: SIM300
import httpx
import pytest

from spendgate_collector.auth.policy import SESSION_COOKIE
from tests.support.oidc_idp import SABOTAGES, OidcStack


def test_sign_in_maps_groups_to_roles_and_teams(oidc_stack: OidcStack) -> None:
    expected = {
        "admin@acme.com": ("admin", []),
        "finance@acme.com": ("finance", []),
        "lead@acme.com": ("lead", ["platform", "mobile"]),
        "ana@acme.com": ("developer", ["platform"]),
    }
    for email, (role, teams) in expected.items():
        me = oidc_stack.sign_in(email).get("/auth/me").json()
        assert (email, role, teams, "oidc") == (me["email"], me["role"], me["teams"], me["via"])
        assert me["csrf_token"]


def test_session_cookie_is_httponly_lax_and_only_its_hash_is_stored(oidc_stack: OidcStack) -> None:
    c = oidc_stack.client()
    start = c.get("/auth/login", params={"next": "/chargeback?month=2026-11"})
    back = httpx.get(httpx.URL(start.headers["location"]).copy_add_param("login_hint", "ana@acme.com"))
    done = c.get(back.headers["location"])
    assert (302, "/chargeback?month=2026-11") == (done.status_code, done.headers["location"])
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # http on loopback
    session_id = c.cookies[SESSION_COOKIE]
    raw = oidc_stack.running.collector.config.db.read_bytes()
    assert session_id.encode() not in raw


def test_pkce_state_and_nonce_are_sent(oidc_stack: OidcStack) -> None:
    location = httpx.URL(oidc_stack.client().get("/auth/login").headers["location"])
    params = dict(location.params)
    assert "S256" == params["code_challenge_method"]
    assert params["state"] and params["nonce"] and params["code_challenge"]
    assert oidc_stack.idp.issuer + "/authorize" == str(location.copy_with(query=None))


@pytest.mark.parametrize("next_path", ["https://evil.example.com/", "//evil.example.com", "/\\evil.example.com"])
def test_next_must_be_a_local_path(oidc_stack: OidcStack, next_path: str) -> None:
    c = oidc_stack.client()
    start = c.get("/auth/login", params={"next": next_path})
    back = httpx.get(httpx.URL(start.headers["location"]).copy_add_param("login_hint", "ana@acme.com"))
    assert "/" == c.get(back.headers["location"]).headers["location"]


def test_unauthenticated_api_is_401_and_pages_redirect_to_sign_in(oidc_stack: OidcStack) -> None:
    c = oidc_stack.client()
    api = c.get("/api/spend")
    assert (401, "application/json") == (api.status_code, api.headers["content-type"].split(";")[0])
    assert api.headers["www-authenticate"].startswith("Bearer")
    page = c.get("/auth/me", headers={"Accept": "text/html"})
    assert (302, "/auth/login?next=%2Fauth%2Fme") == (page.status_code, page.headers["location"])
    assert 401 == c.get("/api/spend", headers={"Cookie": f"{SESSION_COOKIE}=forged"}).status_code


@pytest.mark.parametrize("sabotage", SABOTAGES)
def test_bad_id_tokens_are_refused(oidc_stack: OidcStack, sabotage: str) -> None:
    oidc_stack.idp.sabotage = sabotage
    c = oidc_stack.client()
    start = c.get("/auth/login")
    back = httpx.get(httpx.URL(start.headers["location"]).copy_add_param("login_hint", "ana@acme.com"))
    done = c.get(back.headers["location"])
    assert 401 == done.status_code, done.text
    assert SESSION_COOKIE not in c.cookies
    assert 401 == c.get("/auth/me").status_code


def test_bad_state_and_replayed_callbacks_are_refused(oidc_stack: OidcStack) -> None:
    c = oidc_stack.client()
    start = c.get("/auth/login")
    back = httpx.get(httpx.URL(start.headers["location"]).copy_add_param("login_hint", "ana@acme.com"))
    callback = httpx.URL(back.headers["location"])
    forged = callback.copy_set_param("state", "forged")
    assert 400 == c.get(forged).status_code
    # A callback URL opened in another browser (no login cookie) signs nobody in.
    assert 400 == oidc_stack.client().get(callback).status_code
    # The state was consumed by that attempt: replaying it fails too.
    assert 400 == c.get(callback).status_code
    assert 0 == oidc_stack.idp.token_requests


def test_rotated_keys_are_fetched_again(oidc_stack: OidcStack) -> None:
    oidc_stack.sign_in("ana@acme.com")
    before = oidc_stack.idp.jwks_requests
    oidc_stack.idp.rotate_key()
    assert "developer" == oidc_stack.sign_in("bob@acme.com").get("/auth/me").json()["role"]
    assert before + 1 == oidc_stack.idp.jwks_requests


def test_logout_ends_the_session_here_and_at_the_idp(oidc_stack: OidcStack) -> None:
    c = oidc_stack.sign_in("ana@acme.com")
    session_id = c.cookies[SESSION_COOKIE]
    out = c.post("/auth/logout", headers={"X-CSRF-Token": oidc_stack.csrf(c)})
    assert 302 == out.status_code
    location = httpx.URL(out.headers["location"])
    assert oidc_stack.idp.issuer + "/end_session" == str(location.copy_with(query=None))
    assert "spendgate-test" == location.params["client_id"]
    again = oidc_stack.client(cookies={SESSION_COOKIE: session_id})
    assert 401 == again.get("/auth/me").status_code
