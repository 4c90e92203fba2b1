"""``inbound.read_json`` over real HTTP: the whole-body fast path and its size check after decompression.

A body that arrived with its head is taken straight from aiohttp's buffer; a gzip body that was
small on the wire can still decompress past the limit, and must be refused there as ``read()``
would. The server here uses a 64 KiB limit so a modest gzip body arrives whole (fast path) and
still decompresses past it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web

from spendgate.proxy.errors import ProxyError
from spendgate.proxy.inbound import read_json
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


def _post(server: ServerHandle, payload: dict, *, compress: bool) -> httpx.Response:
    data = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if compress:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    return httpx.post(server.url + "/", content=data, headers=headers, timeout=10)


def test_a_small_gzip_body_is_read_whole_from_the_buffer(server: ServerHandle) -> None:
    resp = _post(server, {"model": "m", "messages": []}, compress=True)
    assert resp.status_code == 200, resp.text
    sent = len(b'{"model": "m", "messages": []}')
    assert resp.json() == {"bytes": sent, "keys": ["messages", "model"], "whole": True}


def test_a_gzip_body_that_decompresses_past_the_limit_is_refused_on_the_fast_path(server: ServerHandle) -> None:
    payload = {"model": "m", "pad": "x" * (2 * LIMIT)}  # ~128 KiB of JSON, a few hundred bytes of gzip
    resp = _post(server, payload, compress=True)
    assert resp.status_code == 413, resp.text
    # The body was whole in the buffer when the handler ran, so the refusal came from the fast
    # path's own check, not from read()'s.
    assert resp.json() == {"error": "request_too_large", "whole": True}


def test_an_uncompressed_body_over_the_limit_is_refused_by_its_length(server: ServerHandle) -> None:
    resp = _post(server, {"model": "m", "pad": "x" * (2 * LIMIT)}, compress=False)
    assert resp.status_code == 413
    assert resp.json()["error"] == "request_too_large"
