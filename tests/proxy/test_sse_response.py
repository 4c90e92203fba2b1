"""SSEResponse over real loopback HTTP: the head waits for an at-hand first chunk, and only then."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from spendgate_proxy.http.sse_response import SSEResponse

HEADERS = {"Content-Type": "text/event-stream"}


async def _serve(handler: object) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/s", handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _recv(sock: socket.socket, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
    except TimeoutError:
        return b""


def _run(head_with_first_chunk: bool, first: bytes) -> list[bytes]:
    """What the client reads: right after prepare, after the first write, after the end."""
    steps = [asyncio.Event() for _ in range(3)]

    async def handler(request: web.Request) -> web.StreamResponse:
        out = SSEResponse(headers=HEADERS, head_with_first_chunk=head_with_first_chunk)
        await out.prepare(request)
        await steps[0].wait()
        if first:
            await out.write(first)
        else:
            out.send_head()
        await steps[1].wait()
        await out.write_eof(b"data: [DONE]\n\n")
        return out

    async def main() -> list[bytes]:
        runner, port = await _serve(handler)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_sendall(sock, b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
            got = [await _recv(sock, 0.3)]
            steps[0].set()
            got.append(await _recv(sock, 0.3))
            steps[1].set()
            got.append(await _recv(sock, 0.3))
            return got
        finally:
            sock.close()
            await runner.cleanup()

    return asyncio.run(main())


def test_head_goes_with_the_first_chunk_when_asked() -> None:
    before, first, end = _run(True, b"data: 1\n\n")
    assert before == b""  # nothing on the wire until the chunk
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert end == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"  # last chunk and end marker together


def test_head_goes_at_once_otherwise() -> None:
    before, first, _ = _run(False, b"data: 1\n\n")
    assert before.startswith(b"HTTP/1.1 200 OK\r\n") and before.endswith(b"\r\n\r\n")
    assert first == b"9\r\ndata: 1\n\n\r\n"


def test_send_head_releases_a_waiting_head() -> None:
    before, head, _ = _run(True, b"")
    assert before == b"" and head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
