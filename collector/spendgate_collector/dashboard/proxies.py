"""The connected proxies page ``/proxies``: every proxy subscribed to the control stream right now.

Shows each proxy's id, address, version, when it connected, whether it resumed from its own state
(deltas) or took a snapshot, and the last control-plane version it was sent, so an operator can
see that every proxy has the latest keys and verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ..auth.identity import Role, allow, identity_of
from .context import DashboardContext


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "never"


class ProxiesPage:
    """``GET /proxies``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self._ctx = ctx

    @allow(Role.ADMIN, Role.LEAD)
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        proxies = sorted(self._ctx.proxies(), key=lambda p: p.connected_since_ms)
        rows = [
            {
                "proxy_id": p.proxy_id,
                "peer": p.peer,
                "version": p.proxy_version,
                "since": _when(p.connected_since_ms),
                "resumed": p.resumed,
                "last_version_sent": p.last_version_sent,
                "last_sent": _when(p.last_sent_ms),
            }
            for p in proxies
        ]
        return self._ctx.renderer.page("proxies.html", identity=identity, active="/proxies", proxies=rows)
