"""The middleware that decides every request: who is asking, and may they call this route.

Order of decision for each request:

1. No route matched (404/405): nothing to guard, aiohttp answers.
2. Identity: a ``Bearer`` admin token (compared in constant time; a wrong one is 401 everywhere),
   else the session cookie (``mode: oidc``), else, in ``mode: open``, the local ``admin``.
3. Public routes (``@public``, static files) run for anyone.
4. A handler with no ``@allow`` marker is refused with 403: deny by default, so a new route
   cannot ship unguarded. No identity → 401 (API) or a redirect to sign-in (pages).
   A role not in the marker → 403.
5. A state-changing method (anything but GET/HEAD/OPTIONS) must not come from another site's
   page: a cookie-authenticated one must carry the session's CSRF token (``X-CSRF-Token`` header or
   ``csrf_token`` form field), and any request with a foreign ``Origin`` header is refused.
6. ``AuthError`` raised by a handler (a lead asking for another team) becomes the same 401/403.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from .csrf import CSRF_FIELD, CSRF_HEADER, CSRF_KEY, SAFE_METHODS, tokens_match
from .errors import AuthError, Unauthenticated
from .identity import REQUEST_KEY, Identity, Role, allowed_roles, is_public
from .responses import forbidden, unauthenticated
from .sessions import SessionStore, csrf_for

SESSION_COOKIE = "spendgate_session"
ADMIN_TOKEN_IDENTITY = Identity(subject="admin-token", role=Role.ADMIN, via="token")
OPEN_IDENTITY = Identity(subject="local", role=Role.ADMIN, via="open")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Policy:
    """Identity resolution and the route policy; ``middleware`` is what the app mounts."""

    def __init__(
        self,
        *,
        mode: str,
        admin_token: str | None,
        sessions: SessionStore | None,
        public_url: str | None = None,
    ) -> None:
        self._mode = mode
        self._admin_token = admin_token.encode() if admin_token else None
        self._sessions = sessions
        self._public_origin = _origin(public_url) if public_url else None

    async def resolve(self, request: web.Request) -> tuple[Identity | None, str | None]:
        """The request's identity and, when it came from the session cookie, the session id."""
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, credential = auth.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise Unauthenticated("unsupported Authorization header; send 'Bearer <admin token>'")
            if self._admin_token is None or not hmac.compare_digest(credential.strip().encode(), self._admin_token):
                raise Unauthenticated("invalid bearer token")
            return ADMIN_TOKEN_IDENTITY, None
        if self._mode == "open":
            return OPEN_IDENTITY, None
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id and self._sessions is not None:
            identity = await asyncio.to_thread(self._sessions.get, session_id)
            if identity is not None:
                return identity, session_id
        return None, None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is not None:
            return await handler(request)
        route_handler = match.handler
        open_route = is_public(route_handler) or isinstance(match.route.resource, web.StaticResource)
        can_sign_in = self._mode == "oidc"
        try:
            identity, session_id = await self.resolve(request)
        except Unauthenticated as exc:
            return unauthenticated(request, exc.message, can_sign_in=False)
        if identity is not None:
            request[REQUEST_KEY] = identity
        if session_id is not None:
            request[CSRF_KEY] = csrf_for(session_id)
        if not open_route:
            roles = allowed_roles(route_handler)
            if roles is None:
                return forbidden(request, f"{request.path} has no access policy, so it is refused (deny by default)")
            if identity is None:
                return unauthenticated(request, "sign in first (or send the admin token)", can_sign_in=can_sign_in)
            if identity.role not in roles:
                return forbidden(request, f"the {identity.role} role may not use {request.method} {request.path}")
        if request.method not in SAFE_METHODS:
            refusal = await self._check_forgery(request, session_id)
            if refusal is not None:
                return refusal
        try:
            return await handler(request)
        except Unauthenticated as exc:
            return unauthenticated(request, exc.message, can_sign_in=can_sign_in)
        except AuthError as exc:
            return forbidden(request, exc.message)

    async def _check_forgery(self, request: web.Request, session_id: str | None) -> web.Response | None:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and not self._same_origin(request, origin):
            return forbidden(request, f"cross-site request from {origin} refused")
        if session_id is None:
            return None  # Bearer token or open mode: no ambient credential for another site to ride on
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.content_type in _FORM_TYPES:
            form = await request.post()
            field = form.get(CSRF_FIELD)
            given = field if isinstance(field, str) else None
        if not tokens_match(csrf_for(session_id), given):
            return forbidden(request, f"missing or wrong CSRF token ({CSRF_HEADER} header or {CSRF_FIELD} field)")
        return None

    def _same_origin(self, request: web.Request, origin: str) -> bool:
        if self._public_origin is not None and _origin(origin) == self._public_origin:
            return True
        # Behind a TLS-terminating proxy the scheme we see differs from the browser's; the host must match.
        return urlsplit(origin).netloc.lower() == (request.host or "").lower()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
