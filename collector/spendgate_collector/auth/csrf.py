"""The CSRF token a page puts in its forms, and how a state-changing request proves it has it.

A browser signed in by cookie sends that cookie with any request, even one a hostile page makes;
so a state-changing request authenticated by the session cookie must also carry the session's CSRF
token (header ``X-CSRF-Token`` or form field ``csrf_token``), which another site cannot read.
Requests with a Bearer token carry no ambient credential and need none.

Pages call ``csrf_token(request)`` and put the value in a hidden ``csrf_token`` field (or the
header of a ``fetch``); the auth middleware does the checking.
"""

from __future__ import annotations

import hmac

from aiohttp import web

CSRF_KEY: web.RequestKey[str] = web.RequestKey("spendgate.csrf", str)
"""Where the middleware puts the session's CSRF token (``request[CSRF_KEY]``)."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: web.Request) -> str:
    """The token to embed in this page's forms; ``""`` when the request is not cookie-authenticated
    (open mode, admin token), where no token is checked."""
    token = request.get(CSRF_KEY)
    return token if isinstance(token, str) else ""


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so timing does not leak how much of a guess was right."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
