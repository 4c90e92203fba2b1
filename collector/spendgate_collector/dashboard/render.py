"""Pages as HTML: the Jinja2 environment, number formatting and links that carry filters.

Templates live in ``templates/`` (autoescaped); the stylesheet and the little script are inlined by
the base template, so a page is one request and the dashboard needs no static route.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from ..auth.identity import Identity, Role

NAV: tuple[tuple[str, str, frozenset[Role]], ...] = (
    ("/", "Overview", frozenset(Role)),
    ("/chargeback", "Chargeback", frozenset(Role)),
    ("/budgets", "Budgets", frozenset(Role)),
    ("/keys", "Keys", frozenset({Role.ADMIN, Role.LEAD, Role.DEVELOPER})),
    ("/unpriced", "Unpriced", frozenset({Role.ADMIN, Role.FINANCE, Role.LEAD})),
    ("/coverage", "Coverage", frozenset(Role)),
    ("/proxies", "Proxies", frozenset({Role.ADMIN, Role.LEAD})),
)
"""Navigation entries and the roles that see them (the pages enforce the same roles themselves)."""


_ERROR_TITLES = {400: "This request is not right", 403: "Not allowed", 404: "Not found", 503: "Unavailable"}


def usd(value: float | None, places: int = 2) -> str:
    """``1234.5`` → ``$1,234.50``; unknown cost → ``n/a``; tiny non-zero amounts keep 4 places."""
    if value is None:
        return "n/a"
    if 0 < abs(value) < 0.01 and places == 2:
        places = 4
    return f"${value:,.{places}f}"


def number(value: float | None) -> str:
    """Thousands separators, no decimals; ``None`` → ``0``."""
    return f"{value or 0:,.0f}"


def ms_time(ms: int | None) -> str:
    """Unix milliseconds → ``2026-11-29 12:47 UTC``."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def compact(value: float | None) -> str:
    """``12_345_678`` → ``12.3M`` for token counts in tight tables."""
    v = float(value or 0)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.1f}{unit}"
    return f"{v:.0f}"


def url(path: str, params: Mapping[str, Any] | None = None, **more: Any) -> str:
    """``path`` with query parameters; empty values are left out so links stay short."""
    merged = {**(params or {}), **more}
    query = {k: str(v) for k, v in merged.items() if v not in (None, "")}
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


class Renderer:
    """Renders a template into a full page (navigation for the viewer's role, the CSRF token)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("spendgate_collector.dashboard", "templates"),
            autoescape=jinja2.select_autoescape(["html", "svg"]),
            undefined=jinja2.StrictUndefined,  # a typo in a template fails the test, not the page silently
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(usd=usd, number=number, compact=compact, ms_time=ms_time)
        self.env.globals.update(url=url)

    def page(
        self,
        template: str,
        *,
        identity: Identity,
        active: str,
        csrf: str = "",
        status: int = 200,
        **context: Any,
    ) -> web.Response:
        nav = [(href, label) for href, label, roles in NAV if identity.role in roles]
        html = self.env.get_template(template).render(identity=identity, nav=nav, active=active, csrf=csrf, **context)
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            # Pages show spend for one viewer: never from a shared cache, never framed by another site.
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
                "Referrer-Policy": "same-origin",
            },
        )

    def error(self, identity: Identity, status: int, message: str) -> web.Response:
        """An error page in the dashboard's frame (a page's client is a person, not a program)."""
        title = _ERROR_TITLES.get(status, "Something went wrong")
        return self.page("error.html", identity=identity, active="", status=status, title=title, message=message)
