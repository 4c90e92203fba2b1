"""Read an API request's JSON-object body with a size cap, and name who the audit log records.

The budgets and keys routes take the same kind of body and record the same kind of actor; each
raises its own field error (``BudgetError``, ``InvalidKeyRequest``) so its answers keep their shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from ..auth.identity import Identity

ACTOR_HEADER = "X-Spendgate-Actor"
MAX_ACTOR = 200

FieldError = Callable[[str, str], Exception]
"""Builds a route module's own error from ``(field, message)``."""


async def read_json_object(request: web.Request, max_bytes: int, error: FieldError) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty); ``error("(body)", ...)`` when too large or not one."""
    # Content-Length is checked before reading so an oversized body is refused without buffering it.
    if request.content_length is not None and request.content_length > max_bytes:
        raise error("(body)", f"larger than {max_bytes} bytes")
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise error("(body)", f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise error("(body)", "must be a JSON object")
    return body


def audit_actor(identity: Identity, claimed: Callable[[], str]) -> str:
    """Who the audit log records: a signed-in person's own name; otherwise the name ``claimed``
    returns, marked ``(admin token)`` when the admin token made the call.

    ``claimed`` is called only when the caller may name someone, so its checks never refuse a
    signed-in person for a header they need not send.
    """
    if identity.via == "oidc":
        return identity.actor  # a signed-in person cannot claim to be someone else
    named = claimed()
    return f"{named} (admin token)" if identity.via == "token" else named
