"""The sign-in routes: ``/auth/login``, ``/auth/callback``, ``/auth/logout``, ``/auth/me``.

    GET  /auth/login?next=/chargeback   start an OIDC sign-in (302 to the IdP); ``next`` must be a local path
    GET  /auth/callback?code=&state=    finish it: verify, create the session, 302 to ``next``
    GET|POST /auth/logout               end the session; 302 to the IdP's end_session_endpoint when it has one
    GET  /auth/me                       the caller's identity as JSON (and the CSRF token for scripts)

In ``mode: open`` there is nothing to sign in to: login and logout just redirect, callback answers
404, and ``/auth/me`` shows the local admin identity.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from .claims import identity_from_claims
from .config import AuthConfig
from .csrf import csrf_token
from .errors import AuthError
from .identity import ALL_ROLES, allow, identity_of, public
from .oidc import OidcClient
from .pending import PENDING_TTL_S, PendingLogins
from .policy import SESSION_COOKIE
from .responses import html_page, json_error, wants_html
from .sessions import SessionStore

logger = logging.getLogger(__name__)

LOGIN_COOKIE = "spendgate_login"


def safe_next(value: str | None) -> str:
    """``next`` if it is a path on this site, else ``/``: never an open redirect to another host."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/"
    return value


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    if wants_html(request):
        return html_page(status, "Sign-in failed", message)
    return json_error(status, message)


class AuthRoutes:
    """The ``/auth/*`` handlers for one configuration."""

    def __init__(self, cfg: AuthConfig, oidc: OidcClient | None, sessions: SessionStore | None) -> None:
        self._cfg = cfg
        self._oidc = oidc
        self._sessions = sessions
        self._pending = PendingLogins()
        public_url = cfg.oidc.public_url or ""
        self._secure = public_url.startswith("https://")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/auth/login", self.login)
        app.router.add_get("/auth/callback", self.callback)
        app.router.add_get("/auth/logout", self.logout)
        app.router.add_post("/auth/logout", self.logout)
        app.router.add_get("/auth/me", self.me)

    @public
    async def login(self, request: web.Request) -> web.StreamResponse:
        next_path = safe_next(request.query.get("next"))
        if self._oidc is None:
            raise web.HTTPFound(next_path)  # open mode: everyone is already the local admin
        try:
            login = await self._oidc.start_login()
        except AuthError as exc:
            logger.warning("sign-in could not start: %s", exc.message)
            return _refuse(request, 502, exc.message)
        binding = secrets.token_urlsafe(32)
        self._pending.add(login, next_path, binding)
        response = web.Response(status=302, headers={"Location": login.url})
        # Lax (not Strict): the IdP's redirect back is a cross-site top-level navigation.
        response.set_cookie(
            LOGIN_COOKIE,
            binding,
            max_age=int(PENDING_TTL_S),
            path="/auth/",
            httponly=True,
            samesite="Lax",
            secure=self._secure,
        )
        return response

    @public
    async def callback(self, request: web.Request) -> web.StreamResponse:
        if self._oidc is None or self._sessions is None:
            return json_error(404, "sign-in is off (auth.mode is 'open')")
        query = request.query
        if query.get("error"):
            # The IdP's own refusal (user cancelled, not assigned to the app): shown, never retried.
            reason = query.get("error_description") or query["error"]
            return _refuse(request, 401, f"the identity provider refused the sign-in: {reason[:200]}")
        state, code = query.get("state"), query.get("code")
        if not state or not code:
            return _refuse(request, 400, "the callback needs code and state")
        pending = self._pending.take(state, request.cookies.get(LOGIN_COOKIE))
        if pending is None:
            return _refuse(request, 400, "unknown or expired sign-in attempt (state); sign in again")
        try:
            claims = await self._oidc.finish_login(code, pending.login)
            identity = identity_from_claims(claims, self._cfg.oidc)
        except AuthError as exc:
            logger.warning("sign-in refused: %s", exc.message)
            return _refuse(request, exc.status, exc.message)
        session_id = await asyncio.to_thread(self._sessions.create, identity, self._cfg.oidc.session_ttl_s)
        logger.info("signed in: %s as %s", identity.actor, identity.role)
        response = web.Response(status=302, headers={"Location": pending.next_path})
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=self._cfg.oidc.session_ttl_s,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._secure,
        )
        response.del_cookie(LOGIN_COOKIE, path="/auth/")
        return response

    @public
    async def logout(self, request: web.Request) -> web.StreamResponse:
        if self._oidc is None or self._sessions is None:
            raise web.HTTPFound("/")
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            await asyncio.to_thread(self._sessions.delete, session_id)
        location = await self._oidc.logout_url(f"{self._cfg.oidc.public_url}/") or "/"
        response = web.Response(status=302, headers={"Location": location})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    @allow(*ALL_ROLES)
    async def me(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        body = {
            "subject": identity.subject,
            "email": identity.email,
            "name": identity.name,
            "role": identity.role.value,
            "teams": list(identity.teams),
            "via": identity.via,
            "csrf_token": csrf_token(request),
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")
