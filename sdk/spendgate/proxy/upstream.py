"""Upstream providers: one pooled aiohttp client session per configured OpenAI-compatible endpoint.

aiohttp's client is the hot-path client because it was measured at about a seventh of httpx's
CPU per streamed request here (docs/performance.md). Each provider gets its own connection pool
(keep-alive, bounded size) and timeouts generous enough for long agent turns: ``read`` bounds the
silence between two reads, not the whole call.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import yarl

from spendgate.proxy.config import ProviderSettings


class Upstream:
    """One provider endpoint: URL, auth headers and connection pool. Provider keys stay in here."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        # Parsed once: aiohttp would otherwise parse the URL string on every request.
        self.chat_url = yarl.URL(settings.base_url + "/chat/completions")
        parts = urlsplit(settings.base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.system = "openai"
        headers = {"Content-Type": "application/json", **settings.headers}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.headers = headers
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            t = self.settings.timeouts
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.settings.max_connections, keepalive_timeout=60, ttl_dns_cache=300
                ),
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.read),
                headers=self.headers,  # session defaults: no per-request header merge
                skip_auto_headers=("User-Agent",),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, {self.settings.base_url!r})"
