"""The lean HTTP/1.1 upstream client against real loopback servers that send exact bytes.

A raw asyncio server replies with scripted bytes (so framing, splits, compression and misbehaviour
are under the test's control) and records every request it reads; one test also talks to a real
aiohttp server.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spendgate_proxy.providers.http1 import Http1Pool, UpstreamProtocolError

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Answers each request on a connection with ``reply``; counts connections and keeps requests."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = 0
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.reply(head + body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


def pool(url: str, **kw: object) -> Http1Pool:
    opts: dict = {"headers": {"Authorization": "Bearer sk-test"}, "limit": 4, "connect_timeout": 2, "read_timeout": 5}
    opts.update(kw)
    return Http1Pool(url, **opts)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


SSE = [b'data: {"n":%d}\n\n' % i for i in range(5)] + [b"data: [DONE]\n\n"]
HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


async def _read_stream(p: Http1Pool, url: str) -> tuple[int, bytes]:
    resp = await p.post(url + "/chat/completions", data=b'{"x":1}')
    out = b"".join([c async for c in resp.content.iter_any()])
    resp.close()
    return resp.status, out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 50, 10_000])
def test_chunked_body_split_anywhere_arrives_whole_and_connection_is_reused(step: int) -> None:
    wire = HEAD_CHUNKED + chunked(*SSE)

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        for i in range(0, len(wire), step):
            w.write(wire[i : i + step])
            await w.drain()
            await asyncio.sleep(0)

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            for _ in range(3):
                assert await _read_stream(p, srv.url) == (200, b"".join(SSE))
            assert srv.connections == 1  # kept alive across calls
            await p.close()

    run(main())


@pytest.mark.parametrize("step", [1, 4, 9, 64, 10_000])
def test_chunked_extensions_and_crlf_in_data_decode_the_same_at_any_split(step: int) -> None:
    """Chunks the fast path takes whole and chunks it leaves to the state machine, mixed."""
    parts = [b"data: a\r\n\r\n", b"x" * 300, b"\r\n", b"data: [DONE]\n\n"]
    body = b"5;ext=1\r\nhello\r\n" + b"".join(b"%X\r\n%s\r\n" % (len(x), x) for x in parts)
    wire = HEAD_CHUNKED + body + b"0;end\r\nX-Trailer: 1\r\n\r\n"

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        for i in range(0, len(wire), step):
            w.write(wire[i : i + step])
            await w.drain()
            await asyncio.sleep(0)

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            for _ in range(2):
                assert await _read_stream(p, srv.url) == (200, b"hello" + b"".join(parts))
            assert srv.connections == 1
            await p.close()

    run(main())


def test_request_bytes_and_per_call_headers() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            resp = await p.post(srv.url + "/chat/completions?a=1", data=b"{}", headers={"x-extra": "1"})
            assert await resp.read() == b"ok"
            resp = await p.post(srv.url + "/chat/completions", data=b"[]", headers={"authorization": "Bearer other"})
            assert await resp.read() == b"ok"
            await p.close()
        first, second = srv.requests
        port = srv.url.split(":")[2].split("/")[0]
        assert first.startswith(b"POST /v1/chat/completions?a=1 HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in first
        assert b"Accept-Encoding: identity\r\n" in first and b"Content-Length: 2\r\n" in first
        assert b"Authorization: Bearer sk-test\r\n" in first and b"x-extra: 1\r\n" in first
        assert first.endswith(b"\r\n\r\n{}")
        assert b"sk-test" not in second and b"authorization: Bearer other\r\n" in second  # replaced, not doubled

    run(main())


def test_gzip_and_deflate_bodies_are_decoded() -> None:
    payload = b'{"id":"x","choices":[]}' * 50
    bodies = [(b"gzip", gzip.compress(payload)), (b"deflate", zlib.compress(payload))]

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        name, data = bodies.pop(0)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (name, len(data), data))

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            for _ in range(2):
                resp = await p.post(srv.url + "/chat/completions", data=b"{}")
                assert await resp.read() == payload
            await p.close()

    run(main())


def test_connection_close_and_body_until_eof() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n" + b'{"error":"boom"}')
        await w.drain()
        w.close()

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            for _ in range(2):
                resp = await p.post(srv.url + "/chat/completions", data=b"{}")
                assert resp.status == 500 and resp.headers["connection"] == "close"
                assert await resp.read() == b'{"error":"boom"}'
            assert srv.connections == 2  # never reused after Connection: close
            await p.close()

    run(main())


def test_interim_100_and_no_body_statuses() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Request-Id: r1\r\n\r\n")

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            assert (resp.status, resp.headers["x-request-id"], await resp.read()) == (204, "r1", b"")
            await p.close()

    run(main())


def test_upstream_cut_mid_body_is_a_payload_error() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(HEAD_CHUNKED + b"%x\r\n%s\r\n" % (len(SSE[0]), SSE[0]))
        await w.drain()
        w.close()

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            got = []
            with pytest.raises(aiohttp.ClientPayloadError):
                async for chunk in resp.content.iter_any():
                    got.append(chunk)
            assert b"".join(got) == SSE[0]
            await p.close()

    run(main())


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"SPDY/3 200 OK\r\n\r\n",
        HEAD_CHUNKED + b"zz\r\n",
        b"HTTP/1.1 200 OK\r\nbad\r\n\r\n",
        # A negative size (int() takes a sign) once sent the decoder backwards in a busy loop.
        HEAD_CHUNKED + b"5\r\nhello\r\n-6\r\nxx\r\n0\r\n\r\n",
        HEAD_CHUNKED + b"5\r\nhello\r\n5\r\nworldXX0\r\n\r\n",  # no CRLF after the data
    ],
)
def test_malformed_answers_are_clear_errors(wire: bytes) -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(wire)

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            with pytest.raises(UpstreamProtocolError):
                resp = await p.post(srv.url + "/chat/completions", data=b"{}")
                await resp.read()
            await p.close()

    run(main())


def test_read_timeout_while_silent_but_not_while_bytes_flow() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(HEAD_CHUNKED)
        for event in SSE[:4]:  # 4 x 0.15 s: longer than the 0.3 s read timeout in total, never silent that long
            await asyncio.sleep(0.15)
            w.write(b"%x\r\n%s\r\n" % (len(event), event))
        await asyncio.sleep(5)

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url, read_timeout=0.3)
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            got = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError):
                async for chunk in resp.content.iter_any():
                    got.append(chunk)
            assert b"".join(got) == b"".join(SSE[:4])
            assert loop.time() - started < 2
            await p.close()

    run(main())


def test_total_timeout_caps_a_call_that_keeps_streaming() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(HEAD_CHUNKED)
        for _ in range(100):
            await asyncio.sleep(0.05)
            w.write(b"%x\r\n%s\r\n" % (len(SSE[0]), SSE[0]))

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url, read_timeout=1, total_timeout=0.4)
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            with pytest.raises(TimeoutError):
                async for _ in resp.content.iter_any():
                    pass
            await p.close()

    run(main())


def test_timeouts_hold_on_a_reused_connection() -> None:
    """The timeout timer outlives a call for the next one on the connection: a silent second call
    still times out after the read timeout (the reused timer fires early and re-arms), and after the
    timer lapsed on the idle connection the next call gets its own total timeout, counted from its start."""
    calls = [0]  # requests answered so far; main() resets it between the two pools

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        calls[0] += 1
        if calls[0] == 1:
            w.write(HEAD_CHUNKED + chunked(*SSE))
        elif calls[0] == 2:
            await asyncio.sleep(5)  # silent: the read timeout must end it
        else:
            w.write(HEAD_CHUNKED)
            for _ in range(100):  # never silent: only the total timeout can end it
                await asyncio.sleep(0.05)
                w.write(b"%x\r\n%s\r\n" % (len(SSE[0]), SSE[0]))

    async def main() -> None:
        async with RawServer(reply) as srv:
            loop = asyncio.get_running_loop()
            p = pool(srv.url, read_timeout=0.4)
            assert await _read_stream(p, srv.url) == (200, b"".join(SSE))
            started = loop.time()
            with pytest.raises(TimeoutError):
                await p.post(srv.url + "/chat/completions", data=b"{}")
            assert 0.3 < loop.time() - started < 2
            await p.close()

            p = pool(srv.url, read_timeout=3, total_timeout=0.5)
            calls[0] = 0
            assert await _read_stream(p, srv.url) == (200, b"".join(SSE))  # arms a timer due in 0.5 s
            await asyncio.sleep(0.7)  # it fires on the idle connection and lapses
            calls[0] = 2  # the next call streams without pause
            started = loop.time()
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            with pytest.raises(TimeoutError):
                async for _ in resp.content.iter_any():
                    pass
            assert 0.4 < loop.time() - started < 1.5  # its own 0.5 s total, not a deadline left from the first call
            assert srv.connections == 2  # each pool reused its connection for the second call
            await p.close()

    run(main())


def test_unreachable_and_connect_errors_are_client_errors() -> None:
    async def main() -> None:
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        p = pool(f"http://127.0.0.1:{port}/v1")
        with pytest.raises(aiohttp.ClientConnectionError) as err:
            await p.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}")
        assert "sk-test" not in str(err.value)
        await p.close()

    run(main())


def test_closing_a_stream_drops_the_upstream_connection() -> None:
    seen_close = asyncio.Event

    async def main() -> None:
        closed = seen_close()

        async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
            w.write(HEAD_CHUNKED + b"%x\r\n%s\r\n" % (len(SSE[0]), SSE[0]))
            await w.drain()
            try:
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    w.write(b"%x\r\n%s\r\n" % (len(SSE[1]), SSE[1]))
                    await w.drain()
            except ConnectionError:
                closed.set()

        async with RawServer(reply) as srv:
            p = pool(srv.url)
            resp = await p.post(srv.url + "/chat/completions", data=b"{}")
            async for _ in resp.content.iter_any():
                break
            resp.close()  # what the proxy does when its client leaves
            await asyncio.wait_for(closed.wait(), 5)
            await p.close()

    run(main())


def test_pool_limit_queues_callers_and_cancelled_waiters_leave() -> None:
    gate = asyncio.Event

    async def main() -> None:
        release = gate()

        async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
            await release.wait()
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        async with RawServer(reply) as srv:
            p = pool(srv.url, limit=2)
            url = srv.url + "/chat/completions"
            calls = [asyncio.create_task(p.post(url, data=b"{}")) for _ in range(5)]
            await asyncio.sleep(0.2)
            assert srv.connections == 2 and len(srv.requests) == 2  # three callers wait for a slot
            calls[4].cancel()
            release.set()
            done = await asyncio.gather(*calls[:4])
            assert [await r.read() for r in done] == [b"ok"] * 4
            assert srv.connections == 2
            await p.close()

    run(main())


def test_against_a_real_aiohttp_server_stream_and_json() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in SSE:
            await resp.write(event)
        await resp.write_eof()
        return resp

    async def json_(request: web.Request) -> web.Response:
        return web.json_response({"ok": (await request.json())["x"]})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/stream", stream)
        app.router.add_post("/v1/json", json_)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}/v1"
        p = pool(base)
        try:
            for _ in range(3):
                resp = await p.post(base + "/stream", data=b"{}")
                assert resp.headers["Content-Type"] == "text/event-stream"
                assert b"".join([c async for c in resp.content.iter_any()]) == b"".join(SSE)
                resp = await p.post(base + "/json", data=b'{"x": 7}')
                assert await resp.read() == b'{"ok": 7}'
        finally:
            await p.close()
            await runner.cleanup()

    run(main())


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError) as err:
        pool("http://127.0.0.1:1/v1", headers={"Authorization": "Bearer sk-secret\r\nX-Evil: 1"})
    assert "sk-secret" not in str(err.value)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_tls_upstream_with_hostname_verification(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment,misc]
    trusting = ssl.create_default_context(cafile=str(cert))

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(HEAD_CHUNKED + chunked(*SSE))

    async def main() -> None:
        srv = RawServer(reply)
        srv.server = await asyncio.start_server(srv._serve, "127.0.0.1", 0, ssl=server_ctx)
        port = srv.server.sockets[0].getsockname()[1]
        try:
            p = pool(f"https://localhost:{port}/v1", ssl_context=trusting)
            for _ in range(2):
                assert await _read_stream(p, f"https://localhost:{port}/v1") == (200, b"".join(SSE))
            assert srv.connections == 1 and seen_sni == ["localhost"]
            assert f"Host: localhost:{port}\r\n".encode() in srv.requests[0]
            await p.close()
            # Same server under a name its certificate does not carry: refused, as a client error.
            wrong = pool(f"https://127.0.0.1:{port}/v1", ssl_context=trusting)
            with pytest.raises(aiohttp.ClientConnectionError):
                await wrong.post(f"https://127.0.0.1:{port}/v1/chat/completions", data=b"{}")
            await wrong.close()
            untrusted = pool(f"https://localhost:{port}/v1")  # the system CAs do not know this certificate
            with pytest.raises(aiohttp.ClientConnectionError):
                await untrusted.post(f"https://localhost:{port}/v1/chat/completions", data=b"{}")
            await untrusted.close()
        finally:
            srv.server.close()

    run(main())


def test_keep_alive_timeout_hint_retires_idle_connections_early() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1.2\r\nContent-Length: 2\r\n\r\nok")

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            url = srv.url + "/chat/completions"
            assert await (await p.post(url, data=b"{}")).read() == b"ok"
            assert await (await p.post(url, data=b"{}")).read() == b"ok"  # within 0.2 s: reused
            assert srv.connections == 1
            await asyncio.sleep(0.4)  # past the hint minus a second of margin
            assert await (await p.post(url, data=b"{}")).read() == b"ok"
            assert srv.connections == 2
            await p.close()

    run(main())


def test_large_bodies_read_whole_or_streamed_to_a_slow_reader() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB, far past the pause threshold

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big))
        for i in range(0, len(big), 65536):
            w.write(big[i : i + 65536])
            await w.drain()

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url, read_timeout=3)
            url = srv.url + "/chat/completions"
            resp = await p.post(url, data=b"{}")
            assert await resp.read() == big  # read() never leaves reading paused
            resp = await p.post(url, data=b"{}")
            got = []
            async for chunk in resp.content.iter_any():
                got.append(chunk)
                await asyncio.sleep(0.01)  # a slow client: the upstream is paused and resumed
            assert b"".join(got) == big
            assert srv.connections == 1
            await p.close()

    run(main())


def test_unsolicited_bytes_on_an_idle_connection_retire_it() -> None:
    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(0.05)
        w.write(b"junk")  # after the answer: the connection can no longer be trusted

    async def main() -> None:
        async with RawServer(reply) as srv:
            p = pool(srv.url)
            url = srv.url + "/chat/completions"
            assert await (await p.post(url, data=b"{}")).read() == b"ok"
            await asyncio.sleep(0.2)
            assert await (await p.post(url, data=b"{}")).read() == b"ok"
            assert srv.connections == 2
            await p.close()

    run(main())


def test_sent_runs_once_after_the_request_is_written_and_before_the_answer() -> None:
    """``sent`` is the caller's chance to work while the upstream computes: the server here answers
    only once ``sent`` has run (a ``sent`` called after the answer would time the call out), and a
    ``sent`` that raises drops the exchange's connection like a cancelled call."""
    wire = HEAD_CHUNKED + chunked(*SSE)
    gate: asyncio.Event | None = None

    async def reply(_: bytes, w: asyncio.StreamWriter) -> None:
        assert gate is not None
        await asyncio.wait_for(gate.wait(), 2)
        w.write(wire)
        await w.drain()

    async def main() -> None:
        nonlocal gate
        gate = asyncio.Event()
        calls: list[int] = []

        def sent() -> None:
            calls.append(len(calls))
            gate.set()

        async with RawServer(reply) as srv:
            p = pool(srv.url)
            resp = await p.post(srv.url + "/chat/completions", data=b'{"x":1}', sent=sent)
            assert calls == [0]
            assert b"".join([c async for c in resp.content.iter_any()]) == b"".join(SSE)
            resp.close()

            def broken() -> None:
                raise RuntimeError("span record failed")

            with pytest.raises(RuntimeError, match="span record failed"):
                await p.post(srv.url + "/chat/completions", data=b'{"x":1}', sent=broken)
            for _ in range(100):
                if srv.closed:
                    break
                await asyncio.sleep(0.01)
            assert srv.closed == 1  # the connection that carried the failed exchange is gone
            assert await _read_stream(p, srv.url) == (200, b"".join(SSE))
            assert srv.connections == 2
            await p.close()

    run(main())
