"""Reading a spend page's query string: the parameters it takes, its month, and the answer to a bad one.

The chargeback, overview, coverage and unpriced pages take the API's parameters; a bad value or a
slice the viewer may not see is an error page (a page's client is a person), not a JSON error.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from aiohttp import web

from ..auth.errors import Forbidden
from ..auth.identity import Identity
from ..errors import QueryError
from ..store.query import current_month, parse_month
from .render import Renderer


def query_params(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The ``allowed`` parameters that have a value, stripped; others are ignored (links may carry extras)."""
    return {k: v.strip() for k, v in request.query.items() if k in allowed and v.strip()}


def query_month(request: web.Request) -> tuple[str, date, date]:
    """The ``month`` parameter (this month when absent) and its first and last days; ``QueryError`` if bad."""
    month = request.query.get("month") or current_month()
    first, last = parse_month("month", month)
    return month, first, last


def refusal(render: Renderer, identity: Identity, exc: QueryError | Forbidden) -> web.Response:
    """The error page for a bad parameter (400, naming it) or a slice outside the viewer's scope (403)."""
    if isinstance(exc, QueryError):
        return render.error(identity, 400, f"{exc.param}: {exc.message}")
    return render.error(identity, 403, str(exc))
