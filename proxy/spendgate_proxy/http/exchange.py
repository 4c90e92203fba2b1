"""What a model-call handler needs from a request, whichever server read it.

Two servers take model calls: the front (``front.py``, the hot path) and aiohttp's web server
(every other case). ``Exchange`` is the small surface the handlers (``app.MODEL_ROUTES``:
Chat Completions, the Cursor route, Anthropic Messages, and ``call.serve.serve`` under them) use,
so each is written once: headers and path, the ``/t/{attrs}`` segment, the raw body, and a
streamed answer. ``AiohttpExchange`` puts it over an ``aiohttp.web.Request`` (``on_aiohttp``
turns a handler into an aiohttp one); ``front.FrontExchange`` is the front's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from spendgate_proxy.http.inbound import read_body
from spendgate_proxy.http.sse_response import SSEResponse
from spendgate_proxy.state import STATE

if TYPE_CHECKING:
    from aiohttp import web

    from spendgate_proxy.state import ProxyState


class StreamOut(Protocol):
    """A streamed 200 answer: ``prepare``, then ``write`` chunks, then ``write_eof(last)``."""

    async def prepare(self, request: Any) -> Any: ...
    def send_head(self) -> None: ...
    async def write(self, data: bytes) -> None: ...
    async def write_eof(self, data: bytes = b"") -> None: ...


class Exchange(Protocol):
    """One model call's request as its handler sees it."""

    state: ProxyState
    headers: Any  # case-insensitive mapping (``CIMultiDictProxy``)
    path: str
    attrs: str | None  # the ``/t/{attrs}`` segment, None without one
    request: web.Request | None  # aiohttp's request (``prepare`` takes it); None on the front

    async def read_body(self, limit: int) -> bytes: ...
    def stream(self, headers: dict[str, str], *, head_with_first_chunk: bool) -> StreamOut: ...


class AiohttpExchange:
    """``Exchange`` over an ``aiohttp.web.Request``."""

    __slots__ = ("attrs", "headers", "path", "request", "state")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.state: ProxyState = request.app[STATE]
        self.headers = request.headers
        self.path = request.path
        self.attrs: str | None = request.match_info.get("attrs")

    async def read_body(self, limit: int) -> bytes:
        return await read_body(self.request, limit)

    def stream(self, headers: dict[str, str], *, head_with_first_chunk: bool) -> SSEResponse:
        return SSEResponse(headers=headers, head_with_first_chunk=head_with_first_chunk)


def on_aiohttp(handler: Callable[[Exchange], Awaitable[Any]]) -> Callable[[web.Request], Awaitable[Any]]:
    """``handler`` as an aiohttp request handler."""

    async def serve(request: web.Request) -> Any:
        return await handler(AiohttpExchange(request))

    return serve


__all__ = ["AiohttpExchange", "Exchange", "StreamOut", "on_aiohttp"]
