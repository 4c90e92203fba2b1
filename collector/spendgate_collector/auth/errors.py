"""Why a request was refused: not signed in (401) or signed in without the right (403).

Handlers and helpers raise these; the auth middleware turns them into the answer the client
expects (JSON for ``/api/*``, a redirect to sign-in or a small HTML page for browsers).
"""

from __future__ import annotations

from ..errors import CollectorError


class AuthError(CollectorError):
    """Base of the access-control refusals; ``message`` is safe to show the client."""

    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(AuthError):
    """No valid credentials (no session, an expired one, a wrong token)."""

    status = 401


class Forbidden(AuthError):
    """The identity is known but its role or slice does not cover what was asked."""

    status = 403
