"""A small OpenID Connect provider for tests, and a real collector signed in through it.

The provider is an aiohttp server on loopback built on the libraries the collector uses (Authlib's
PKCE helper, joserfc for RS256 keys and signatures): discovery, an authorization endpoint that
approves at once (the user named by ``login_hint``, else the one chosen with ``select_user``), a
token endpoint that checks the client, the redirect URI and the PKCE verifier, JWKS, and an
end-session endpoint. ID tokens are real RS256 JWTs; ``sabotage`` makes the token endpoint return
a tampered / expired / wrong-audience / wrong-issuer / wrong-nonce one instead, and ``mint`` builds
any of them directly.

Use from a test (or a conftest: ``from tests.support.oidc_idp import oidc_stack  # noqa: F401``
makes the fixture available)::

    def test_something(oidc_stack: OidcStack) -> None:
        admin = oidc_stack.sign_in("admin@acme.com")          # an httpx.Client holding the session cookie
        assert admin.get("/api/spend").status_code == 200
        dev = oidc_stack.sign_in("ana@acme.com")
        dev.post("/api/budgets", json=..., headers={"X-CSRF-Token": oidc_stack.csrf(dev)})

    # A browser (Playwright): choose who the IdP signs in, then just open a page; the collector
    # redirects to /auth/login, the IdP approves without a form, and the browser lands back signed in.
    oidc_stack.idp.select_user("lead@acme.com")
    page.goto(oidc_stack.api_url + "/chargeback")

``USERS`` lists the test people (one per role; groups map to roles through ``ROLE_MAP``);
``run_oidc_collector(tmp_path, users=..., **collector_settings)`` is the context manager behind the
fixture, for tests that need their own settings (seeded data, another database).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from spendgate_collector.auth.policy import SESSION_COOKIE
from tests.collector.conftest import RunningCollector, run_collector
from tests.support.aio_server import ServerHandle, serve_app

CLIENT_ID = "spendgate-test"
CLIENT_SECRET = "test-client-secret-not-a-real-one"
CLIENT_SECRET_ENV = "SPENDGATE_TEST_OIDC_CLIENT_SECRET"
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN_TOKEN_ENV = "SPENDGATE_TEST_ADMIN_TOKEN"
ROLE_MAP = {"admin": ["sg-admins"], "finance": ["sg-finance"], "lead": ["sg-leads"]}
SABOTAGES = ("tampered", "expired", "wrong_audience", "wrong_issuer", "wrong_nonce", "unknown_key", "alg_none")


@dataclass(frozen=True)
class TestUser:
    """A person the test IdP can sign in."""

    __test__ = False  # not a pytest test class

    email: str
    groups: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    name: str = ""
    email_verified: bool = True

    @property
    def sub(self) -> str:
        return "sub-" + self.email.split("@")[0]


USERS: dict[str, TestUser] = {
    u.email: u
    for u in (
        TestUser("admin@acme.com", ("sg-admins",), name="Ada Admin"),
        TestUser("finance@acme.com", ("sg-finance",), name="Fin Ance"),
        TestUser("lead@acme.com", ("sg-leads",), ("platform", "mobile"), name="Lee Lead"),
        TestUser("ana@acme.com", ("engineering",), ("platform",), name="Ana Dev"),
        TestUser("bob@acme.com", ("engineering",), ("mobile",), name="Bob Dev"),
    )
}


@dataclass
class _Grant:
    user: TestUser
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str
    expires_at: float


@dataclass
class TestIdP:
    """The provider's state; ``app()`` serves it. Thread-safe enough for tests (one loop)."""

    __test__ = False

    issuer: str = ""
    users: dict[str, TestUser] = field(default_factory=lambda: dict(USERS))
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    selected: str | None = None
    sabotage: str | None = None
    """Set to one of ``SABOTAGES`` to make the token endpoint return a bad ID token."""
    ended_sessions: list[dict[str, str]] = field(default_factory=list)
    token_requests: int = 0
    jwks_requests: int = 0
    _grants: dict[str, _Grant] = field(default_factory=dict)

    def select_user(self, email: str | None) -> None:
        """Who ``/authorize`` signs in when the request has no ``login_hint``."""
        if email is not None and email not in self.users:
            raise KeyError(email)
        self.selected = email

    def rotate_key(self) -> None:
        """A new signing key with a new kid (the old one leaves the JWKS), as providers rotate."""
        self.key = RSAKey.generate_key(2048, parameters={"kid": f"k{secrets.token_hex(4)}"})

    # --- tokens

    def claims_for(self, user: TestUser, *, nonce: str | None, client_id: str = CLIENT_ID) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": client_id,
            "iat": now,
            "exp": now + 300,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "groups": list(user.groups),
            "teams": list(user.teams),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        return claims

    def mint(self, user: TestUser, *, nonce: str | None, sabotage: str | None = None) -> str:
        """An RS256 ID token for ``user``, spoiled as ``sabotage`` says (``None``: a good one)."""
        claims = self.claims_for(user, nonce=nonce)
        key = self.key
        if sabotage == "expired":
            claims["iat"], claims["exp"] = claims["iat"] - 7200, claims["iat"] - 3600
        elif sabotage == "wrong_audience":
            claims["aud"] = "someone-else"
        elif sabotage == "wrong_issuer":
            claims["iss"] = "https://evil.example.com"
        elif sabotage == "wrong_nonce":
            claims["nonce"] = "not-the-nonce"
        elif sabotage == "unknown_key":
            key = RSAKey.generate_key(2048, parameters={"kid": "attacker"})
        if sabotage == "alg_none":
            header = _b64(b'{"alg":"none","typ":"JWT"}')
            return f"{header}.{_b64(json.dumps(claims).encode())}."
        token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        if sabotage == "tampered":
            # Same signature, different payload: the role claim is upgraded after signing.
            head, _, sig = token.split(".")
            claims["groups"] = ["sg-admins"]
            token = f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"
        return token

    # --- HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/end_session", self._end_session)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/end_session",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        return web.json_response(KeySet([self.key]).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        client = self.clients.get(q.get("client_id", ""))
        if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
            return web.json_response({"error": "invalid_client"}, status=400)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return _redirect(q["redirect_uri"], error="invalid_request", state=q.get("state"))
        if "openid" not in q.get("scope", "").split():
            return _redirect(q["redirect_uri"], error="invalid_scope", state=q.get("state"))
        email = q.get("login_hint") or self.selected
        user = self.users.get(email or "")
        if user is None:
            return _redirect(q["redirect_uri"], error="access_denied", state=q.get("state"))
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            user, q["client_id"], q["redirect_uri"], q.get("nonce"), q["code_challenge"], time.time() + 60
        )
        return _redirect(q["redirect_uri"], code=code, state=q.get("state"))

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        client_id, secret = _client_auth(request, form)
        client = self.clients.get(client_id or "")
        if client is None or (client["secret"] is not None and client["secret"] != secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self._grants.pop(str(form.get("code", "")), None)  # single use
        if grant is None or grant.expires_at < time.time() or grant.client_id != client_id:
            return web.json_response({"error": "invalid_grant", "error_description": "unknown code"}, status=400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return web.json_response({"error": "invalid_grant", "error_description": "redirect_uri"}, status=400)
        verifier = str(form.get("code_verifier", ""))
        if not verifier or create_s256_code_challenge(verifier) != grant.challenge:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE check failed"}, status=400)
        id_token = self.mint(grant.user, nonce=grant.nonce, sabotage=self.sabotage)
        return web.json_response(
            {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )

    async def _end_session(self, request: web.Request) -> web.Response:
        self.ended_sessions.append(dict(request.query))
        target = request.query.get("post_logout_redirect_uri")
        if target:
            raise web.HTTPFound(target)
        return web.Response(text="signed out")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _redirect(uri: str, **params: str | None) -> web.Response:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query) + [(k, v) for k, v in params.items() if v is not None]
    raise web.HTTPFound(urlunsplit(parts._replace(query=urlencode(query))))


def _client_auth(request: web.Request, form: Any) -> tuple[str | None, str | None]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        raw = base64.b64decode(header[6:]).decode()
        cid, _, secret = raw.partition(":")
        return unquote(cid), unquote(secret)
    cid = form.get("client_id")
    secret = form.get("client_secret")
    return (str(cid) if cid else None), (str(secret) if secret else None)


@contextlib.contextmanager
def run_idp() -> Iterator[tuple[TestIdP, ServerHandle]]:
    """Start a ``TestIdP`` on a loopback port; its issuer is its base URL."""
    idp = TestIdP()
    with serve_app(idp.app) as handle:
        idp.issuer = handle.url
        yield idp, handle


def free_port() -> int:
    """A loopback port free right now (the collector's public URL must be known before it starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OidcStack:
    """The running IdP and collector, and helpers to act as a signed-in person."""

    idp: TestIdP
    running: RunningCollector
    api_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client on the collector's API that does not follow redirects (closed at the end)."""
        c = httpx.Client(base_url=self.api_url, follow_redirects=False, timeout=15, **kwargs)
        self.clients.append(c)
        return c

    def sign_in(self, email: str, *, next_path: str = "/auth/me") -> httpx.Client:
        """Walk the real sign-in (login → IdP → callback) and return a client holding the session."""
        c = self.client()
        start = c.get("/auth/login", params={"next": next_path})
        assert start.status_code == 302, start.text
        to_idp = httpx.URL(start.headers["location"]).copy_add_param("login_hint", email)
        back = httpx.get(to_idp, follow_redirects=False, timeout=15)
        assert back.status_code == 302, back.text
        done = c.get(back.headers["location"])
        assert done.status_code == 302, done.text
        assert done.headers["location"] == next_path
        return c

    def session_cookie(self, email: str) -> tuple[str, str]:
        """``(name, value)`` of a fresh session cookie for ``email`` (for a browser's cookie jar)."""
        c = self.sign_in(email)
        return SESSION_COOKIE, str(c.cookies.get(SESSION_COOKIE))

    def csrf(self, c: httpx.Client) -> str:
        """The CSRF token of ``c``'s session (send it as ``X-CSRF-Token`` on POST/PUT/DELETE)."""
        return str(c.get("/auth/me").json()["csrf_token"])

    def admin_token_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def close(self) -> None:
        for c in self.clients:
            c.close()


@contextlib.contextmanager
def run_oidc_collector(
    tmp_path: Path, *, monkeypatch: pytest.MonkeyPatch | None = None, **settings: Any
) -> Iterator[OidcStack]:
    """A test IdP and a real collector with ``auth.mode: oidc`` (and the test admin token) using it."""
    patcher = monkeypatch or pytest.MonkeyPatch()
    patcher.setenv(CLIENT_SECRET_ENV, CLIENT_SECRET)
    patcher.setenv(ADMIN_TOKEN_ENV, ADMIN_TOKEN)
    try:
        with run_idp() as (idp, _handle):
            port = free_port()
            public_url = f"http://127.0.0.1:{port}"
            idp.clients[CLIENT_ID] = {"secret": CLIENT_SECRET, "redirect_uris": [f"{public_url}/auth/callback"]}
            auth = {
                "mode": "oidc",
                "admin_token_env": ADMIN_TOKEN_ENV,
                "oidc": {
                    "issuer": idp.issuer,
                    "client_id": CLIENT_ID,
                    "client_secret_env": CLIENT_SECRET_ENV,
                    "public_url": public_url,
                    "role_map": ROLE_MAP,
                    **settings.pop("oidc", {}),
                },
            }
            with run_collector(tmp_path, api=f"127.0.0.1:{port}", auth=auth, **settings) as running:
                stack = OidcStack(idp, running, running.api_url)
                try:
                    yield stack
                finally:
                    stack.close()
    finally:
        if monkeypatch is None:
            patcher.undo()


@pytest.fixture
def oidc_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcStack]:
    """A test IdP plus a real collector in ``auth.mode: oidc``; see the module docstring."""
    with run_oidc_collector(tmp_path, monkeypatch=monkeypatch) as stack:
        yield stack
