"""The proxy's HTTP/1.1 front: serves the model-call routes itself, hands everything else to aiohttp.

Measured on the benchmark machine (docs/performance.md), aiohttp's web server costs about 75 µs of
CPU and 45 µs of latency per request before and after the handler, a large share of what the
proxy adds to a call. The front is an ``asyncio.Protocol`` that reads the common case on its own:
an HTTP/1.1 ``POST`` with a ``Content-Length`` body to one of the routes every model call takes
(``app.MODEL_ROUTES``: Chat Completions, the Cursor route, Anthropic Messages). It runs the same
handler aiohttp would (written once over ``exchange.Exchange``) and writes the answer straight to
the transport.

Anything else (another route, a chunked, compressed or ``Expect: 100-continue`` body, an
oversized body, HTTP/1.0, an odd request line or header) hands the connection to aiohttp's
``RequestHandler`` **before a byte is answered**: aiohttp gets the very bytes the client sent and
keeps the connection from then on. So aiohttp remains the one implementation of HTTP's corner
cases; the front only accelerates the requests every editor keystroke makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from spendgate_proxy.errors import error_response

if TYPE_CHECKING:
    from spendgate_proxy.state import ProxyState

logger = logging.getLogger("spendgate.proxy")

MAX_HEAD_BYTES = 65536  # aiohttp refuses longer heads (with a 400); the front leaves them to it
KEEPALIVE_TIMEOUT_S = 75.0  # aiohttp's default for idle keep-alive connections
SWEEP_INTERVAL_S = 10.0  # one timer for all connections, not one per connection and request
# Bodies aiohttp decodes (chunked, compressed), a 100-continue it must answer, a protocol switch.
_HANDOFF_HEADERS = ("Transfer-Encoding", "Content-Encoding", "Expect", "Upgrade")
_NO_BODY_HEADERS = frozenset(("content-length", "transfer-encoding"))
# A head the front reads itself: "POST <target> HTTP/1.1", then lines "<token>:<value>" separated
# by CRLF, with no bare CR, LF or NUL anywhere (so no obsolete line folding, no whitespace in or
# after a name). Checked in one C-speed match; anything else is aiohttp's to accept or refuse.
_PLAIN_HEAD = re.compile(r"POST [^ \x00-\x20\x7f]+ HTTP/1\.1(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n\x00]*)*")

Handler = Callable[["FrontExchange"], Awaitable[Any]]
"""A route's handler over an exchange (exchange.py): returns a ``web.Response`` or a finished stream."""


def route_of(path: str, routes: Mapping[str, Handler]) -> tuple[Handler | None, str | None]:
    """The handler ``path`` goes to, and its ``/t/{attrs}`` segment if any (None, None: not ours).

    The same paths aiohttp's router matches for these routes (``{attrs}`` is ``[^{}/]+``).
    """
    handler = routes.get(path)
    if handler is not None:
        return handler, None
    if path.startswith("/t/"):
        segment, sep, tail = path[3:].partition("/")
        if segment and sep and "{" not in segment and "}" not in segment:
            return routes.get("/" + tail), segment
    return None, None


class _Date:
    """The ``Date`` header line, formatted once a second rather than per response."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


_DATE = _Date()


def _head(status: int, reason: str, headers: Any, *, chunked: bool, length: int, close: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))]
    for name, value in headers.items():
        if name.lower() not in _NO_BODY_HEADERS:
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length)
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(_DATE.line())
    lines.append(b"\r\n")
    return b"".join(lines)


class FrontExchange:
    """One request read by the front: what its handler reads, and how it answers.

    Duck-types the parts of ``aiohttp.web.Request`` the handler and span record use (``headers``,
    ``path``) plus the body, which the front has already read whole.
    """

    __slots__ = ("_proto", "attrs", "body", "headers", "path", "state")

    request = None  # no aiohttp request behind it

    def __init__(
        self,
        proto: FrontProtocol,
        state: ProxyState,
        path: str,
        attrs: str | None,
        headers: CIMultiDictProxy[str],
        body: bytes,
    ) -> None:
        self._proto = proto
        self.state = state
        self.path = path
        self.attrs = attrs
        self.headers = headers
        self.body = body

    async def read_body(self, limit: int) -> bytes:
        return self.body  # the front never takes a body over the limit (aiohttp answers those)

    def stream(self, headers: dict[str, str], *, head_with_first_chunk: bool) -> FrontStream:
        """A chunked 200 response; the head waits for the first chunk when it is already here."""
        return FrontStream(self._proto, headers, head_with_first_chunk)


class FrontStream:
    """A chunked ``text/event-stream`` answer written straight to the transport.

    Same contract as ``sse_response.SSEResponse``: ``prepare`` sends the head unless it may wait
    for the first chunk, ``write`` frames one chunk, ``write_eof(last)`` sends the last chunk with
    the end marker. Writing after the client left raises ``ConnectionResetError`` (as aiohttp does).
    """

    __slots__ = ("_head", "_proto", "_wait")

    def __init__(self, proto: FrontProtocol, headers: dict[str, str], wait: bool) -> None:
        self._proto = proto
        self._head: bytes | None = _head(200, "OK", headers, chunked=True, length=0, close=proto.close_after)
        self._wait = wait

    async def prepare(self, request: Any = None) -> None:
        if not self._wait:
            self.send_head()

    def send_head(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._proto.send(head)

    async def write(self, data: bytes) -> None:
        if not data:
            return
        frame = b"%x\r\n%b\r\n" % (len(data), data)
        head, self._head = self._head, None
        self._proto.send(frame if head is None else head + frame)
        if self._proto.paused:
            await self._proto.drain()

    async def write_eof(self, last: bytes = b"") -> None:
        frame = (b"%x\r\n%b\r\n0\r\n\r\n" % (len(last), last)) if last else b"0\r\n\r\n"
        head, self._head = self._head, None
        self._proto.send(frame if head is None else head + frame)
        self._proto.finished = True


class FrontProtocol(asyncio.Protocol):
    """One client connection: parse, serve the hot path, or hand the connection to aiohttp."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self.paused = False
        self.close_after = False
        self.finished = False  # the current answer has been written whole
        self.answered = False  # some of the current answer has been written
        self._pending: tuple[int, tuple[Handler, str, str | None, CIMultiDictProxy[str], int]] | None = None
        self.last_active = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.last_active = self._front.loop.time()
        self._front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self.last_active = self._front.loop.time()
        if self._task is None:
            self._next()
        elif len(self._buf) > MAX_HEAD_BYTES and self._transport is not None:
            # A client sending ahead while its previous call streams: hold it at the socket.
            self._transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.connections.discard(self)
        self._transport = None
        if self._task is not None:
            self._task.cancel()  # as aiohttp's handler_cancellation: the call records a disconnect
        self._wake_drain()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drain()

    # -- writing -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)
        self.answered = True

    async def drain(self) -> None:
        if self._transport is None:
            raise ConnectionResetError("Connection lost")
        loop = self._front.loop
        self._drain = loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None
        if self._transport is None:
            raise ConnectionResetError("Connection lost")

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- reading -----------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the next buffered request: serve it, wait for more bytes, or hand off."""
        buf = self._buf
        if self._pending is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES or b"\n\n" in buf:
                    self._handoff()  # too long, or bare-LF line ends: aiohttp answers those
                return
            parsed = self._parse(bytes(buf[:end]))
            if parsed is None:
                self._handoff()
                return
            self._pending = (end, parsed)
        end, (handler, path, attrs, headers, length) = self._pending
        need = end + 4 + length
        if len(buf) < need:
            return  # the rest of the body is on its way (a long prompt comes in many reads)
        self._pending = None
        body = bytes(buf[end + 4 : need])
        del buf[:need]
        exchange = FrontExchange(self, self._front.state, path, attrs, headers, body)
        self.finished = self.answered = False
        self._front.counts["served"] += 1
        self._task = self._front.loop.create_task(self._serve(handler, exchange))

    def _parse(self, head: bytes) -> tuple[Handler, str, str | None, CIMultiDictProxy[str], int] | None:
        """The request's handler, path, ``/t/`` segment, headers and body length; None when the
        front does not serve it (aiohttp will). Bodies over ``max_body_bytes`` go to aiohttp too,
        which answers them with the route's own 413."""
        text = head.decode("latin-1")
        if _PLAIN_HEAD.fullmatch(text) is None:
            return None  # not a plain POST head (see _PLAIN_HEAD): aiohttp's parser decides
        lines = text.split("\r\n")
        path, _, _query = lines[0][5:-9].partition("?")
        if "%" in path:
            return None  # aiohttp decodes percent-escapes before routing; leave those to it
        front = self._front
        handler, attrs = route_of(path, front.routes)
        if handler is None:
            return None
        headers = CIMultiDictProxy(
            CIMultiDict([(name, value.strip(" \t")) for name, _, value in (line.partition(":") for line in lines[1:])])
        )
        for name in _HANDOFF_HEADERS:
            if name in headers:
                return None
        lengths = headers.getall("Content-Length", ())
        if len(lengths) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
            return None
        length = int(lengths[0])
        if length > front.state.max_body:
            return None
        connection = headers.get("Connection", "").lower()
        self.close_after = "close" in connection
        return handler, path, attrs, headers, length

    def _handoff(self) -> None:
        """Give the connection, and every byte read but not answered, to aiohttp's server."""
        transport = self._transport
        if transport is None:
            return
        self._front.connections.discard(self)
        self._front.counts["handed_off"] += 1
        handler = self._front.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        data, self._buf = bytes(self._buf), bytearray()
        self._transport = None
        if data:
            handler.data_received(data)

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, handler: Handler, exchange: FrontExchange) -> None:
        try:
            result = await handler(exchange)
            if isinstance(result, web.Response):
                self._send_response(result)
            elif not self.finished:
                raise RuntimeError("handler returned without finishing its answer")
        except asyncio.CancelledError:
            return  # the client left; the handler has recorded the call
        except ConnectionResetError:
            return
        except Exception:
            logger.exception("unhandled error serving %s", exchange.path)
            self._fail()
            return
        finally:
            self._task = None
        if self._transport is None:
            return
        if self.close_after:
            self._transport.close()
            return
        self.last_active = self._front.loop.time()
        self._transport.resume_reading()
        if self._buf:
            self._next()  # a pipelined request arrived while this one was served

    def _send_response(self, resp: web.Response) -> None:
        body = resp.body
        if body is None:
            body = b""
        elif not isinstance(body, (bytes, bytearray)):
            raise TypeError(f"front serves bytes bodies only, got {type(body).__name__}")
        head = _head(
            resp.status, resp.reason or "", resp.headers, chunked=False, length=len(body), close=self.close_after
        )
        self.send(head + body)
        self.finished = True

    def _fail(self) -> None:
        """A bug in a handler: an OpenAI-style 500 if nothing was sent yet, then close."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self.answered:
            self.close_after = True
            with contextlib.suppress(ConnectionResetError):
                self._send_response(
                    error_response(
                        500,
                        "The gateway hit an internal error; it has been logged.",
                        "api_error",
                        code="internal_error",
                    )
                )
        transport.close()

    def close_if_idle(self, now: float, idle_s: float) -> None:
        if self._task is None and now - self.last_active >= idle_s:
            self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def busy(self) -> bool:
        return self._task is not None


class Front:
    """The listening side: a socket server of ``FrontProtocol`` connections over one aiohttp app.

    ``start`` binds and serves; ``close`` stops accepting, lets in-flight calls finish (up to a
    timeout), then cleans up the aiohttp runner (its connections, the app's upstreams and spans).
    """

    def __init__(
        self,
        runner: web.AppRunner,
        state: ProxyState,
        routes: Mapping[str, Handler],
    ) -> None:
        self._runner = runner
        # Read here rather than bound as defaults, so a test can shorten them on the module.
        self._keepalive_s = KEEPALIVE_TIMEOUT_S
        self._sweep_s = SWEEP_INTERVAL_S
        self.state = state
        self.routes = routes
        self.loop = asyncio.get_running_loop()
        self.connections: set[FrontProtocol] = set()
        self.counts = {"served": 0, "handed_off": 0}
        state.front_counts = self.counts  # shown by GET /healthz
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.port = 0

    def fallback(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None, "runner not set up"
        return server()

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> int:
        self._server = await self.loop.create_server(
            lambda: FrontProtocol(self), host, port, backlog=backlog, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = self.loop.call_later(self._sweep_s, self._sweep)
        return self.port

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            conn.close_if_idle(now, self._keepalive_s)
        self._sweeper = self.loop.call_later(self._sweep_s, self._sweep)

    async def close(self, timeout_s: float = 5.0) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + timeout_s
        while True:
            for conn in list(self.connections):
                conn.close_if_idle(float("inf"), 0.0)
            if not any(conn.busy for conn in self.connections) or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        await self._runner.cleanup()

    async def cleanup(self) -> None:
        """The ``AppRunner`` spelling of :meth:`close`, for callers that hold either."""
        await self.close()


__all__ = ["Front", "FrontExchange", "FrontProtocol", "FrontStream", "Handler", "route_of"]
