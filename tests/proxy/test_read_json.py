"""``inbound.read_json`` over real HTTP: the whole-body fast path and its size check after decompression.

A body that arrived with its head is taken straight from aiohttp's buffer; a gzip body that was
small on the wire can still decompress past the limit, and must be refused there as ``read()``
would. The server here uses a 64 KiB limit so a modest gzip body arrives whole (fast path) and
still decompresses past it.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import pytest
from aiohttp import web

from spendgate_proxy.errors import ProxyError
from spendgate_proxy.http.inbound import read_json
from tests.support.aio_server import ServerHandle, serve_app

LIMIT = 64 * 1024


def _make_app() -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        whole = request.content.is_eof()  # what the fast path will see
        try:
            raw, body = await read_json(request, LIMIT)
        except ProxyError as exc:
            return web.json_response({"error": exc.code, "whole": whole}, status=exc.status)
        return web.json_response({"bytes": len(raw), "keys": sorted(body), "whole": whole})

    app = web.Application(client_max_size=LIMIT)
    app.router.add_post("/", handler)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with serve_app(_make_app) as handle:
        yield handle


def _post(server: ServerHandle, payload: dict, *, compress: bool) -> tuple[int, dict]:
    """POST with head and body in ONE write, so the body is in the server's buffer with its head
    (what the fast path is for); an HTTP client may write them separately, which would make the
    fast path a matter of timing."""
    data = json.dumps(payload).encode()
    extra = b""
    if compress:
        data, extra = gzip.compress(data), b"Content-Encoding: gzip\r\n"
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data)
    )
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(head + data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, json.loads(reply.partition(b"\r\n\r\n")[2])


def test_a_small_gzip_body_is_read_whole_from_the_buffer(server: ServerHandle) -> None:
    status, body = _post(server, {"model": "m", "messages": []}, compress=True)
    assert status == 200, body
    sent = len(b'{"model": "m", "messages": []}')
    assert body == {"bytes": sent, "keys": ["messages", "model"], "whole": True}


def test_a_gzip_body_that_decompresses_past_the_limit_is_refused_on_the_fast_path(server: ServerHandle) -> None:
    payload = {"model": "m", "pad": "x" * (2 * LIMIT)}  # ~128 KiB of JSON, a few hundred bytes of gzip
    status, body = _post(server, payload, compress=True)
    assert status == 413, body
    # The body was whole in the buffer when the handler ran, so the refusal came from the fast
    # path's own check, not from read()'s.
    assert body == {"error": "request_too_large", "whole": True}


def test_an_uncompressed_body_over_the_limit_is_refused_by_its_length(server: ServerHandle) -> None:
    status, body = _post(server, {"model": "m", "pad": "x" * (2 * LIMIT)}, compress=False)
    assert (status, body["error"]) == (413, "request_too_large")
