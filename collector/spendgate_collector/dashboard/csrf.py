"""Cross-site request forgery defence for the dashboard's forms: a double-submitted random token.

A page sets a random token in a ``SameSite=Strict``, ``HttpOnly`` cookie and puts the same value
in a hidden form field; a POST is accepted only when both are present and equal. Another site can
make a browser send the cookie but can neither read it nor guess it, so it cannot forge the field.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

COOKIE = "sg_dash_csrf"
FIELD = "csrf"


def token_for(request: web.Request) -> str:
    """The request's token (its cookie's), or a fresh one; ``remember`` must then set the cookie."""
    existing = request.cookies.get(COOKIE, "")
    return existing if len(existing) == 43 else secrets.token_urlsafe(32)


def remember(response: web.StreamResponse, request: web.Request, token: str) -> None:
    """Set the token cookie on ``response`` unless the browser already holds it."""
    if request.cookies.get(COOKIE) != token:
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")


def valid(request: web.Request, submitted: str | None) -> bool:
    """True when the form's token matches the cookie's (compared in constant time)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())
