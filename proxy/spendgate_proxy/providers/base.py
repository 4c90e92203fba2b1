"""The upstream provider interface: what the proxy needs from OpenAI, Anthropic and Bedrock endpoints.

A :class:`Provider` owns one configured upstream: its URL(s), auth, the pooled aiohttp session
and the knowledge of its wire format. The request handler never builds provider bodies or reads
provider streams itself; it asks the provider:

- ``await provider.send(req)`` renders a canonical :class:`ChatRequest` in the provider's format,
  POSTs it (signing it if the provider needs that) and returns a :class:`Reply`;
- ``await provider.send_raw(body, ...)`` POSTs a body that is already in the provider's own
  format (the passthrough path: same format in and out, bytes untouched);
- a :class:`Reply` is read as canonical stream events (:meth:`Reply.events`), a canonical
  :class:`ChatResponse` (:meth:`Reply.response`), an OpenAI-vocabulary error
  (:meth:`Reply.error`), or raw bytes (``reply.raw``, an ``aiohttp.ClientResponse``, or for
  OpenAI-compatible providers the lean client's ``Http1Response``, which answers the same calls).

Subclasses implement five small hooks: :meth:`Provider.render`, :meth:`Provider.url_for`,
:meth:`Provider.stream_parser`, :meth:`Provider.parse_response` and :meth:`Provider.error_to_openai`;
``headers_for`` (per-request headers, e.g. SigV4) and ``is_stream`` have defaults. Errors are
returned in OpenAI's vocabulary (``{"error": {message, type, param, code}}``) because it is the
proxy's canonical error form: a route answering in another format translates from it.

Connection errors and timeouts propagate as ``aiohttp.ClientError`` / ``TimeoutError``, as before:
the handler's fallback loop decides what to do with them. Callers must ``reply.close()`` (or
``release()``) every reply, in a ``finally``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import yarl

if TYPE_CHECKING:
    from spendgate_proxy.config import ProviderSettings
    from spendgate_proxy.formats.canonical import ChatRequest, ChatResponse, StreamEvent, Usage
    from spendgate_proxy.providers.http1 import Http1Response

ProviderFormat: TypeAlias = Literal["openai", "anthropic", "bedrock"]
"""The wire format a provider speaks: Chat Completions, Anthropic Messages, or Bedrock (Anthropic
bodies in the Bedrock envelope, binary event-stream responses)."""

Endpoint: TypeAlias = Literal["chat", "count_tokens"]
"""Which of a provider's endpoints a raw body goes to."""


class EventParser(Protocol):
    """Provider response bytes (cut anywhere) → canonical stream events.

    ``feed`` returns the events the bytes complete; ``close`` flushes the rest at end of stream.
    A parser may expose ``usage`` (what is known so far, e.g. Anthropic's input tokens from
    ``message_start``) so a cut stream still records what was billed.
    """

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class Provider(ABC):
    """One configured upstream. Holds the provider key; never put it in a repr, log or error."""

    format: ClassVar[ProviderFormat]
    """Wire format, compared with a route's inbound format to choose passthrough or translation."""
    system: ClassVar[str]
    """``gen_ai.provider.name`` / ``llm.system`` value: ``openai``, ``anthropic``, ``aws.bedrock``."""
    default_base_url: ClassVar[str | None] = None

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings
        self.base_url = (settings.base_url or self.default_base_url or "").rstrip("/")
        parts = urlsplit(self.base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.headers: dict[str, str] = {"Content-Type": "application/json", **self.auth_headers(), **settings.headers}
        """Sent on every request (session defaults): content type, static auth, configured extras."""
        self._session: aiohttp.ClientSession | None = None

    # -- hooks -----------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Static auth headers (an API key); signed providers return none and use :meth:`headers_for`."""
        return {}

    @abstractmethod
    def url_for(self, endpoint: Endpoint, model: str, *, stream: bool) -> yarl.URL:
        """Where a request goes (Bedrock puts the model and the streaming choice in the path)."""

    @abstractmethod
    def render(self, req: ChatRequest) -> bytes:
        """A canonical request → this provider's request body (``req.model`` is the upstream model)."""

    def headers_for(self, url: yarl.URL, body: bytes) -> Mapping[str, str] | None:
        """Per-request headers on top of the session's (e.g. a SigV4 signature); none by default."""
        return None

    @abstractmethod
    def stream_parser(self) -> EventParser:
        """A fresh parser for one streamed response."""

    @abstractmethod
    def parse_response(self, data: bytes) -> ChatResponse:
        """A non-streamed response body → :class:`ChatResponse`; never raises on a malformed body."""

    @abstractmethod
    def error_to_openai(self, status: int, data: bytes) -> tuple[int, dict[str, Any]]:
        """An error response → (status, OpenAI ``{"error": {...}}``), overflows as ``context_length_exceeded``."""

    def is_stream(self, content_type: str) -> bool:
        """Whether a 200 response is a stream (SSE by default; Bedrock's is a binary event stream)."""
        return content_type.startswith("text/event-stream")

    def count_tokens_body(self, req: ChatRequest) -> bytes | None:
        """The body for this provider's token-counting endpoint, or None when it has none."""
        return None

    # -- sending ---------------------------------------------------------------------------

    async def send(self, req: ChatRequest) -> Reply:
        """Render ``req`` for this provider and POST it; the reply's events/response are canonical."""
        body = self.render(req)
        return await self.send_raw(body, model=req.model, stream=req.stream)

    async def send_raw(
        self,
        body: bytes,
        *,
        model: str = "",
        stream: bool = False,
        endpoint: Endpoint = "chat",
        headers: Mapping[str, str] | None = None,
        sent: Callable[[], object] | None = None,
    ) -> Reply:
        """POST a body already in this provider's format (the passthrough path).

        ``headers`` are extra client headers worth forwarding (e.g. ``anthropic-beta``); they
        never replace the provider's auth. ``sent`` is called once the request is written (work
        that can run while the upstream computes); a session that cannot tell calls it when the
        answer's head has arrived.
        """
        url = self.url_for(endpoint, model, stream=stream)
        signed = self.headers_for(url, body)
        if headers:
            signed = {**headers, **(signed or {})}
        resp = await self.session.post(url, data=body, headers=signed)
        if sent is not None:
            sent()
        return Reply(self, resp)

    # -- pool ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The provider's pooled session, created on first use (inside the running loop)."""
        if self._session is None:
            t = self.settings.timeouts
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.settings.max_connections, keepalive_timeout=60, ttl_dns_cache=300
                ),
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.read),
                headers=self.headers,  # session defaults: no per-request header merge on the hot path
                skip_auto_headers=("User-Agent",),
                raise_for_status=False,
                # One session serves every developer: a provider's Set-Cookie (e.g. a CDN's bot
                # cookie) must never be replayed on someone else's call. No jar also means no
                # per-request cookie filtering on the hot path.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        """Close the pool; safe to call twice and before first use."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.base_url!r})"


class Reply:
    """One upstream response, read either raw (``raw``) or through the provider's format.

    ``status``, ``headers`` and ``content_type`` come from the response line. Read it exactly one
    way, then ``close()`` it (drops the connection: use when a stream is abandoned) or
    ``release()`` it (returns it to the pool: use after reading it whole).
    """

    __slots__ = ("_parser", "content_type", "headers", "provider", "raw", "status")

    def __init__(self, provider: Provider, raw: aiohttp.ClientResponse | Http1Response) -> None:
        self.provider = provider
        self.raw = raw
        self.status = raw.status
        self.headers = raw.headers
        self.content_type = raw.headers.get("Content-Type", "")
        self._parser: EventParser | None = None

    @property
    def streaming(self) -> bool:
        """A 200 whose body is the provider's stream format."""
        return self.status == 200 and self.provider.is_stream(self.content_type)

    async def events(self) -> AsyncIterator[list[StreamEvent]]:
        """Canonical events, one list per upstream read (empty lists are skipped).

        Raises ``aiohttp.ClientPayloadError`` / ``ClientConnectionError`` / ``TimeoutError`` when
        the provider breaks off mid-stream; the events parsed before stay delivered.
        """
        parser = self._parser = self.provider.stream_parser()
        feed = parser.feed
        async for chunk in self.raw.content.iter_any():
            events = feed(chunk)
            if events:
                yield events
        rest = parser.close()
        if rest:
            yield rest

    @property
    def partial_usage(self) -> Usage | None:
        """Usage the stream reported before it ended or was cut (None if the parser cannot tell)."""
        return getattr(self._parser, "usage", None) if self._parser is not None else None

    async def read(self) -> bytes:
        return await self.raw.read()

    async def response(self) -> ChatResponse:
        """The whole non-streamed answer, canonical."""
        return self.provider.parse_response(await self.raw.read())

    async def error(self) -> tuple[int, dict[str, Any]]:
        """The error response as (status, OpenAI-vocabulary body)."""
        return self.provider.error_to_openai(self.status, await self.raw.read())

    def release(self) -> None:
        self.raw.release()

    def close(self) -> None:
        self.raw.close()


__all__ = ["Endpoint", "EventParser", "Provider", "ProviderFormat", "Reply"]
