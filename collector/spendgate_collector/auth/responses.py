"""How a refusal looks to the client that asked: JSON for the API, a sign-in redirect or a small page for browsers.

``/api/*`` callers (and anything not asking for HTML) get ``{"error": ...}`` with 401 or 403 and,
for 401, a ``WWW-Authenticate`` header. A browser asking for a page is sent to ``/auth/login``
with ``next`` set to where it was going, or shown a short HTML explanation of a 403.
"""

from __future__ import annotations

import html
from urllib.parse import quote

import orjson
from aiohttp import web

LOGIN_PATH = "/auth/login"


def wants_html(request: web.Request) -> bool:
    """A browser navigating to a page (never an ``/api/`` call, whatever its Accept header)."""
    return not request.path.startswith("/api/") and "text/html" in request.headers.get("Accept", "")


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message}), status=status, content_type="application/json", headers=headers
    )


def html_page(status: int, title: str, message: str) -> web.Response:
    t, m = html.escape(title), html.escape(message)
    body = (
        f"<!doctype html><html><head><meta charset=utf-8><title>spendgate: {t}</title></head>"
        f"<body style='font-family:system-ui;max-width:40em;margin:4em auto'><h1>{t}</h1><p>{m}</p>"
        "<p><a href='/'>Back to the overview</a> · <a href='/auth/logout'>Sign out</a></p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html")


def login_redirect(request: web.Request) -> web.Response:
    """302 to the sign-in route, coming back to this page afterwards."""
    return web.Response(status=302, headers={"Location": f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}"})


def unauthenticated(request: web.Request, message: str, *, can_sign_in: bool) -> web.Response:
    if can_sign_in and wants_html(request) and request.method in ("GET", "HEAD"):
        return login_redirect(request)
    challenge = 'Bearer realm="spendgate"'
    return json_error(401, message, headers={"WWW-Authenticate": challenge})


def forbidden(request: web.Request, message: str) -> web.Response:
    if wants_html(request):
        return html_page(403, "Not allowed", message)
    return json_error(403, message)
