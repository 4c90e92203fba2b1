"""A lean HTTP/1.1 client for one upstream origin: pooled keep-alive connections, POST only.

Why not aiohttp's client here: on the proxy's hot path (one streamed call at a time) aiohttp's
general ``ClientSession.request`` machinery (request object, payload registry, header merging,
connector bookkeeping, a read-timeout timer re-armed on every chunk, a ``StreamReader``) was the
largest Python item before the first byte. This client does only what a call to an
OpenAI-compatible upstream needs, on ``asyncio.Protocol`` connections:

- one request per connection at a time, written in one ``writelines`` (head + body);
- keep-alive pooling per origin with a connection limit (callers wait for a free slot) and an idle
  lifetime; a connection is reused only when its response was read to the end and the server
  did not say ``Connection: close``;
- response bodies framed by ``Content-Length``, chunked transfer coding or connection close;
  ``Accept-Encoding: identity`` is asked for, and gzip/deflate are still decoded if sent anyway;
- TLS for ``https`` origins (the default SSL context, SNI from the host name);
- timeouts: connect, read (the longest silence while a response is due, checked without re-arming
  a timer per chunk) and an optional total per call;
- errors raised as aiohttp's exception classes (``ClientOSError``, ``ServerDisconnectedError``,
  ``ClientPayloadError``, ``ConnectionTimeoutError`` / ``SocketTimeoutError``, both ``TimeoutError``),
  so callers handle both clients alike. Messages never include request headers (they hold keys).

The response object offers the subset of ``aiohttp.ClientResponse`` the proxy uses: ``status``,
``headers``, ``content.iter_any()``, ``read()``, ``release()`` and ``close()`` (closing drops the
connection: how a client disconnect reaches the provider).

Proxy environment variables (``HTTPS_PROXY`` ...) are not read, as with the aiohttp session it
replaces (``trust_env`` off): a gateway's upstream route is its configuration, not its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD_BYTES = 64 * 1024
"""Largest response head (status line + headers) accepted."""
PAUSE_ABOVE_BYTES = 256 * 1024
"""Unread body bytes at which reading from the upstream pauses (the client is slower than it)."""

_HEAD_END = b"\r\n\r\n"
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamProtocolError(aiohttp.ClientPayloadError):
    """The upstream sent something that is not valid HTTP/1.1 (a bad status line, chunk size, ...)."""


def _check_header(name: str, value: str) -> None:
    if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
        # Never echo the value: it may be a key.
        raise ValueError(f"header {name!r}: line breaks are not allowed in header names or values")


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request/response exchange at a time."""

    __slots__ = (
        "_activity",
        "_buf",
        "_chunk_left",
        "_deadline",
        "_decoder",
        "_framing",
        "_head_waiter",
        "_left",
        "_loop",
        "_read_timeout",
        "_state",
        "_timer",
        "closed",
        "idle_limit",
        "idle_since",
        "paused",
        "pool",
        "response",
        "reusable",
        "transport",
    )

    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self._loop = pool.loop
        self._read_timeout = pool.read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.idle_limit = pool.keepalive_s
        self.response: Http1Response | None = None
        self.reusable = False
        self._head_waiter: asyncio.Future[Http1Response] | None = None
        self._buf = b""
        self._state = 0  # 0 idle, 1 head, 2 body by length, 3 chunked, 4 until close, 5 done
        self._framing = 0
        self._left = 0
        self._chunk_left = 0
        self._decoder: Any = None
        self._activity = 0.0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        state = self._state
        if state == 4:  # a body delimited by the connection's end: this is its end
            self._finish()
        elif state in (1, 2, 3):
            if state == 1:
                self._fail_head(aiohttp.ServerDisconnectedError("upstream closed the connection before answering"))
            else:
                self._fail_body(aiohttp.ClientPayloadError("upstream closed the connection mid-body"))
        self.pool._forget(self)

    def data_received(self, data: bytes) -> None:
        self._activity = self._loop.time()
        state = self._state
        if state == 3:
            self._chunked(data)
        elif state == 2:
            self._by_length(data)
        elif state == 4:
            self._deliver(data)
        elif state == 1:
            self._head(data)
        # state 0 or 5: bytes nobody asked for; the connection is no longer reusable
        elif data:
            self.reusable = False

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    # -- one exchange --------------------------------------------------------------------------

    def start(self, head: bytes, body: bytes) -> asyncio.Future[Http1Response]:
        """Send a request; the future resolves to the response once its head has arrived."""
        assert self.transport is not None
        waiter: asyncio.Future[Http1Response] = self._loop.create_future()
        self._head_waiter = waiter
        self._state = 1
        self._buf = b""
        self.reusable = False
        self.response = None
        self._decoder = None
        now = self._activity = self._loop.time()
        total = self.pool.total_timeout
        self._deadline = now + total if total is not None else float("inf")
        # One timer per connection, not one per chunk or per call: it re-arms itself while bytes keep
        # coming, and outlives the exchange (``_finish`` leaves it), so the next call on this
        # connection reuses it unless it would fire too late for this call's deadlines. A check that
        # fires early just re-arms; one that fires between calls finds nothing due and lapses.
        due = min(now + self._read_timeout, self._deadline)
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(due, self._check_idle)
        self.transport.writelines((head, body))
        return waiter

    def _check_idle(self) -> None:
        """The read and total timeouts: fires once per period and re-arms while bytes keep coming."""
        self._timer = None
        if self._state not in (1, 2, 3, 4):
            return
        now = self._loop.time()
        if now >= self._deadline:
            total = self.pool.total_timeout
            self.fail(aiohttp.ServerTimeoutError(f"the upstream call took longer than {total:g} s in total"))
            return
        due = min(self._activity + self._read_timeout, self._deadline)
        if now < due:
            self._timer = self._loop.call_at(due, self._check_idle)
            return
        self.fail(aiohttp.SocketTimeoutError(f"no data from the upstream for {self._read_timeout:g} s"))

    def fail(self, exc: BaseException) -> None:
        """End the exchange with ``exc`` and drop the connection."""
        if self._state == 1:
            self._fail_head(exc)
        elif self._state in (2, 3, 4):
            self._fail_body(exc)
        self.close()

    def close(self) -> None:
        self._cancel_timer()
        self._state = 5
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
            self.pool._forget(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail_head(self, exc: BaseException) -> None:
        self._state = 5
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _fail_body(self, exc: BaseException) -> None:
        self._state = 5
        if self.response is not None:
            self.response._fail(exc)

    # -- parsing -----------------------------------------------------------------------------

    def _head(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        end = buf.find(_HEAD_END)
        if end == -1:
            if len(buf) > MAX_HEAD_BYTES:
                self.fail(UpstreamProtocolError("upstream response head is larger than 64 KiB"))
            else:
                self._buf = buf
            return
        self._buf = b""
        try:
            version, status, reason, headers = _parse_head(buf[:end])
        except ValueError as exc:
            self.fail(UpstreamProtocolError(f"malformed upstream response head ({exc})"))
            return
        rest = buf[end + 4 :]
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            if rest:
                self._head(rest)
            return
        conn = headers.get("Connection", "").lower()
        keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        if (hint := headers.get("Keep-Alive")) is not None:
            self._note_keep_alive(hint)
        response = Http1Response(self, status, reason, CIMultiDictProxy(headers))
        self.response = response
        encoding = headers.get("Content-Encoding", "identity").lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            # Asked for identity; some servers compress anyway. wbits 47: gzip or zlib, auto-detected.
            self._decoder = zlib.decompressobj(47)
        elif encoding != "identity":
            self.fail(UpstreamProtocolError(f"upstream used content-encoding {encoding!r}, which is not supported"))
            return
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._state, self.reusable = 3, keep_alive
            self._chunk_left = 0
            self._framing = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        elif status in _NO_BODY_STATUSES:
            self._state, self.reusable = 2, keep_alive
            self._left = 0
        elif (length := headers.get("Content-Length")) is not None:
            try:
                self._left = int(length)
            except ValueError:
                self.fail(UpstreamProtocolError("malformed Content-Length from the upstream"))
                return
            self._state, self.reusable = 2, keep_alive
        else:
            self._state, self.reusable = 4, False
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        if self._state == 2 and self._left == 0:
            if rest:
                self.reusable = False  # bytes after a complete answer: do not reuse
            self._finish()
        elif rest:
            self.data_received(rest)

    def _note_keep_alive(self, hint: str) -> None:
        """Honour ``Keep-Alive: timeout=N``: reuse the connection only well before the server drops it,
        which narrows the race of a request sent on a connection the server is closing."""
        for part in hint.split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "timeout":
                with contextlib.suppress(ValueError):  # a malformed hint: keep our own limit
                    self.idle_limit = min(self.pool.keepalive_s, max(0.0, float(value) - 1.0))

    def _by_length(self, data: bytes) -> None:
        left = self._left
        if len(data) > left:
            self.reusable = False  # more than the announced length: do not trust this connection
            data = data[:left]
        self._left = left - len(data)
        self._deliver(data)
        if not self._left:
            self._finish()

    def _chunked(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos, end = 0, len(buf)
        out: list[bytes] = []
        framing = self._framing
        if framing == 0:
            pos = _whole_chunks(buf, end, out)
        while pos < end:
            if framing == 1:  # chunk data
                take = min(self._chunk_left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if not self._chunk_left:
                    framing = 2
            elif framing == 0:  # size line
                nl = buf.find(b"\r\n", pos)
                if nl == -1:
                    if end - pos > 1024:
                        self._framing = framing
                        self.fail(UpstreamProtocolError("chunk size line too long"))
                        return
                    break
                try:
                    size = int(buf[pos:nl].split(b";", 1)[0], 16)
                    if size < 0:  # int() takes a sign; a negative size would move the parser backwards forever
                        raise ValueError(size)
                except ValueError:
                    self.fail(UpstreamProtocolError("malformed chunk size from the upstream"))
                    return
                pos = nl + 2
                if size:
                    self._chunk_left, framing = size, 1
                else:
                    framing = 3
            elif framing == 2:  # CRLF after chunk data
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    self.fail(UpstreamProtocolError("chunk not followed by CRLF"))
                    return
                pos += 2
                framing = 0
            else:  # trailers, up to an empty line
                nl = buf.find(b"\r\n", pos)
                if nl == -1:
                    break
                if nl == pos:
                    pos += 2
                    if pos < end:
                        self.reusable = False
                    self._buf = b""
                    self._framing = framing
                    if out:
                        self._deliver(b"".join(out))
                    self._finish()
                    return
                pos = nl + 2
        self._framing = framing
        self._buf = buf[pos:] if pos < end else b""
        if out:
            self._deliver(out[0] if len(out) == 1 else b"".join(out))

    def _deliver(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                self.fail(UpstreamProtocolError("upstream body does not decompress"))
                return
        if data and self.response is not None:
            self.response._feed(data)

    def _finish(self) -> None:
        """The body is complete: hand the rest to the response and give the connection back.

        The timer stays armed for the next call (see ``start``); ``close`` cancels it.
        """
        self._state = 5
        response = self.response
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail and response is not None:
                response._feed(tail)
        if response is not None:
            response._end()
        self.response = None
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        self.pool._release(self)

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()


def _parse_head(head: bytes) -> tuple[str, int, str, CIMultiDict[str]]:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(rest) < 3:
        raise ValueError("status line")
    status = int(rest[:3])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t":
            raise ValueError("header line")
        headers.add(name.decode("ascii"), value.strip().decode("utf-8", "surrogateescape"))
    return version.decode("ascii"), status, rest[4:].decode("latin-1"), headers


class _Body:
    """``response.content``: the body as it arrives."""

    __slots__ = ("_response",)

    def __init__(self, response: Http1Response) -> None:
        self._response = response

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._response._iter_any()

    async def read(self) -> bytes:
        return await self._response.read()


def _whole_chunks(buf: bytes, end: int, out: list[bytes]) -> int:
    """``_chunked``'s fast path: each chunk at the start of ``buf`` that arrived whole (size line,
    data, CRLF) in one step instead of three turns of its state machine (29 -> 15 µs for a 24-event
    stream); their data go to ``out``. Anything else (a partial chunk, an extension, the last chunk,
    a malformed line) stops it at the chunk's start, returned, where the state machine takes over
    exactly as if it had run from the top."""
    pos = 0
    find = buf.find
    while True:
        nl = find(b"\r\n", pos)
        if nl == -1:
            return pos
        try:
            size = int(buf[pos:nl], 16)
        except ValueError:
            return pos
        start = nl + 2
        stop = start + size
        # size <= 0: the last chunk, or a negative size (int() takes a sign) that must never move pos back
        if size <= 0 or stop + 2 > end or buf[stop : stop + 2] != b"\r\n":
            return pos
        out.append(buf[start:stop])
        pos = stop + 2


class Http1Response:
    """One upstream response; its body arrives in the background and is read once."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_loop",
        "_pausable",
        "_size",
        "_waiter",
        "headers",
        "reason",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str]) -> None:
        self._conn: _Connection | None = conn
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every call.
        self._loop = conn.pool.loop
        self.status = status
        self.reason = reason
        self.headers = headers
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pausable = True  # off while read() gathers the whole body: nobody takes chunks meanwhile

    @property
    def content(self) -> _Body:
        return _Body(self)

    @property
    def buffered(self) -> bool:
        """Body bytes have arrived that were not read yet."""
        return bool(self._chunks)

    @property
    def at_eof(self) -> bool:
        """The whole body arrived without error and has been read: the last chunk read was the last."""
        return self._done and not self._chunks and self._error is None

    # called by the connection
    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > PAUSE_ABOVE_BYTES and self._pausable and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _end(self) -> None:
        self._done = True
        self._conn = None  # released to the pool: close() must no longer touch it
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> bytes:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._conn is not None and self._conn.paused:
            self._conn.resume()
        return data

    async def _iter_any(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                yield self._take()
            elif self._done:
                if self._error is not None:
                    raise self._error
                return
            else:
                waiter = self._waiter = self._loop.create_future()
                await waiter

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        self._pausable = False
        if self._conn is not None and self._conn.paused:
            self._conn.resume()
        while not self._done:
            waiter = self._waiter = self._loop.create_future()
            await waiter
        if self._error is not None:
            raise self._error
        return self._take() if self._chunks else b""

    def release(self) -> None:
        """Done with this response: the connection returns to the pool if the body was read whole."""
        self.close()

    def close(self) -> None:
        """Drop the connection unless the body already completed (then it is back in the pool)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if not self._done:
            self._fail(aiohttp.ClientConnectionError("response closed"))


class Http1Pool:
    """Keep-alive connections to one origin (``scheme://host:port``), at most ``limit`` at a time.

    Defaults headers are sent on every request; ``post`` may add more. ``close`` drops every
    connection; waiters for a slot then fail.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float | None = None,
        keepalive_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = yarl.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) origin: {base_url!r}")
        self.host = url.host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.keepalive_s = keepalive_s
        host = self.host if url.is_default_port() else f"{self.host}:{self.port}"
        if ":" in self.host and not self.host.startswith("["):  # an IPv6 literal
            host = f"[{self.host}]" if url.is_default_port() else f"[{self.host}]:{self.port}"
        fixed = {"Host": host, "Accept": "*/*", "Accept-Encoding": "identity", **headers}
        for name, value in fixed.items():
            _check_header(name, value)
        self._fixed_names = {name.lower() for name in fixed}
        self._fixed = fixed
        self._fixed_head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: deque[_Connection] = deque()
        self._busy: set[_Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def post(
        self,
        url: yarl.URL | str,
        *,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        sent: Callable[[], object] | None = None,
    ) -> Http1Response:
        """POST ``data`` to ``url`` (on this pool's origin); returns once the response head arrived.

        ``sent`` is called once the request is written, before its answer is awaited: work the
        caller needs only after the answer (a span record) then runs while the upstream computes
        instead of delaying the request. If it raises, the exchange is dropped like a cancelled one.
        """
        target = url.raw_path_qs if isinstance(url, yarl.URL) else yarl.URL(url).raw_path_qs
        if headers:
            for name, value in headers.items():
                _check_header(name, value)
            names = {k.lower() for k in headers}
            if names & self._fixed_names:  # a per-call header replaces the default of the same name
                kept = {k: v for k, v in self._fixed.items() if k.lower() not in names}
                head = "".join(f"{k}: {v}\r\n" for k, v in {**kept, **headers}.items())
            else:
                head = self._fixed_head + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        else:
            head = self._fixed_head
        request_head = f"POST {target} HTTP/1.1\r\n{head}Content-Length: {len(data)}\r\n\r\n".encode()
        conn = await self._acquire()
        try:
            answer = conn.start(request_head, data)
            if sent is not None:
                sent()
            return await answer
        except BaseException:
            conn.close()  # cancelled or failed before an answer: the connection is in an unknown state
            raise

    async def _acquire(self) -> _Connection:
        loop = self.loop
        while True:
            if self._closed:
                raise aiohttp.ClientConnectionError("upstream pool is closed")
            now = loop.time()
            while self._idle:
                conn = self._idle.pop()  # most recently used first: the least likely to be stale
                if conn.closed or not conn.reusable or now - conn.idle_since > conn.idle_limit:
                    conn.close()
                    continue
                self._busy.add(conn)
                return conn
            if len(self._busy) + self._connecting < self.limit:
                return await self._connect()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the slot we were given on to the next waiter
                raise

    async def _connect(self) -> _Connection:
        self._connecting += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise aiohttp.ConnectionTimeoutError(
                f"connecting to {self.host}:{self.port} took longer than {self.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise aiohttp.ClientOSError(exc.errno, f"cannot connect to {self.host}:{self.port}: {reason}") from exc
        finally:
            self._connecting -= 1
        self._busy.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.reusable and not conn.closed and not self._closed:
            conn.idle_since = self.loop.time()
            self._idle.append(conn)
        else:
            conn.close()
        self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Drop every connection; safe to call twice."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.fail(aiohttp.ClientConnectionError("upstream pool closed"))
        self._idle.clear()
        self._busy.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # wakes to find the pool closed


__all__ = ["Http1Pool", "Http1Response", "UpstreamProtocolError"]
