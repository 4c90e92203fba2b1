"""Sign-ins under way: what the callback needs (nonce, PKCE verifier, where to go next), by state.

Kept in memory, never in the browser, because the PKCE verifier and nonce must stay secret; each
entry is single-use, expires after ten minutes, and is bound to the browser that started it by a
random cookie (only its hash is kept), so a callback URL sent to someone else signs nobody in.
A collector restart forgets them: whoever was mid-sign-in clicks "sign in" again.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

from .oidc import LoginRequest

PENDING_TTL_S = 600.0
# Bounds memory however many sign-ins are started and abandoned (or started by a script).
MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class Pending:
    login: LoginRequest
    next_path: str
    browser_hash: str
    expires_at: float


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class PendingLogins:
    """Single-use sign-in attempts keyed by their OAuth ``state``."""

    def __init__(self) -> None:
        self._by_state: OrderedDict[str, Pending] = OrderedDict()

    def add(self, login: LoginRequest, next_path: str, browser_binding: str) -> None:
        now = time.monotonic()
        while self._by_state and (
            len(self._by_state) >= MAX_PENDING or next(iter(self._by_state.values())).expires_at <= now
        ):
            self._by_state.popitem(last=False)
        self._by_state[login.state] = Pending(login, next_path, _hash(browser_binding), now + PENDING_TTL_S)

    def take(self, state: str, browser_binding: str | None) -> Pending | None:
        """The attempt for ``state`` if it is live and started by this browser; it is removed either way."""
        pending = self._by_state.pop(state, None)
        if pending is None or pending.expires_at <= time.monotonic() or not browser_binding:
            return None
        if not hmac.compare_digest(pending.browser_hash, _hash(browser_binding)):
            return None
        return pending

    def __len__(self) -> int:
        return len(self._by_state)
