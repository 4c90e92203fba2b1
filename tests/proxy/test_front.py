"""The proxy's HTTP/1.1 front (http/front.py): what it serves itself and what it leaves to aiohttp.

Driven over raw sockets, because the point is the bytes on one connection: keep-alive, pipelining,
a connection handed to aiohttp mid-way, bodies that arrive in pieces, slow readers. ``/healthz``
counts what the front served and handed off, so each test knows which server answered.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

import spendgate_proxy.call.admit as chat_route
import spendgate_proxy.http.front as front_module
from spendgate_simulator import SimulatorConfig
from spendgate_simulator import create_app as create_simulator
from tests.proxy.conftest import PROVIDER_KEY, Gateway, start_gateway
from tests.support.aio_server import ServerHandle, serve_app

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}


class Conn:
    """One client connection that writes requests and reads HTTP/1.1 responses."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            assert self._fill(), "connection closed mid-response"
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            assert self._fill(), "connection closed mid-body"
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the next final response."""
        while True:
            status = int(self._line().split(b" ")[1])
            headers: dict[str, str] = {}
            while line := self._line():
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break  # skip 100 Continue
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._line(), 16):
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
            assert self._line() == b""
        else:
            body = self._exact(int(headers.get("content-length", "0")))
        return status, headers, body

    def at_eof(self) -> bool:
        return not self.buf and not self._fill()


def request(
    key: str,
    body: object = CHAT,
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    version: str = "HTTP/1.1",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> bytes:
    payload = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
    lines = [f"{method} {path} {version}", "Host: proxy", f"Authorization: Bearer {key}"]
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in all_headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def counts(gw: Gateway) -> dict[str, int]:
    return httpx.get(gw.proxy.url + "/healthz").json()["front"]


def served_by(gw: Gateway, before: dict[str, int]) -> tuple[int, int]:
    """Calls the front served and connections it handed off since ``before`` (this check's own
    ``/healthz`` connection, handed off too, not counted)."""
    now = counts(gw)
    return now["served"] - before["served"], now["handed_off"] - before["handed_off"] - 1


@pytest.fixture
def conn_factory(gateway: Gateway) -> Iterator[type[Conn]]:
    opened: list[Conn] = []

    class Tracked(Conn):
        def __init__(self, port: int = gateway.proxy.port, **kwargs: object) -> None:
            super().__init__(port, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

    yield Tracked
    for c in opened:
        c.close()


def test_keep_alive_calls_are_served_by_the_front(gateway: Gateway, conn_factory: type[Conn]) -> None:
    before = counts(gateway)
    conn = conn_factory()
    for _ in range(3):
        conn.send(request(gateway.keys["ana@acme.com"], STREAM))
        status, headers, body = conn.response()
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        assert "date" in headers
        assert body.endswith(b"data: [DONE]\n\n")
        assert b'"usage"' not in body  # the usage chunk the proxy asked for is removed
    conn.send(request(gateway.keys["ana@acme.com"], CHAT))
    status, headers, body = conn.response()
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["usage"]["completion_tokens"] > 0
    assert served_by(gateway, before) == (4, 0)
    assert len(gateway.wait_spans(4)) == 4


def test_pipelined_requests_are_answered_in_order(gateway: Gateway, conn_factory: type[Conn]) -> None:
    key = gateway.keys["ana@acme.com"]
    conn = conn_factory()
    conn.send(request(key, {**CHAT, "model": "gpt-4.1"}) + request(key, {**STREAM, "model": "gpt-4.1-mini"}))
    first, second = conn.response(), conn.response()
    assert first[0] == second[0] == 200
    assert json.loads(first[2])["model"] == "gpt-4.1"
    assert b'"model":"gpt-4.1-mini"' in second[2] and second[2].endswith(b"data: [DONE]\n\n")


def test_other_routes_hand_the_connection_to_aiohttp(gateway: Gateway, conn_factory: type[Conn]) -> None:
    key = gateway.keys["ana@acme.com"]
    before = counts(gateway)
    conn = conn_factory()
    conn.send(request(key, CHAT))
    assert conn.response()[0] == 200
    conn.send(request(key, None, method="GET", path="/v1/models", headers={"Content-Length": None}))
    status, _, body = conn.response()
    assert status == 200 and json.loads(body)["object"] == "list"
    conn.send(request(key, STREAM))  # aiohttp keeps the connection now, and serves chat as well
    status, _, body = conn.response()
    assert status == 200 and body.endswith(b"data: [DONE]\n\n")
    assert served_by(gateway, before) == (1, 1)


@pytest.mark.parametrize(
    "variant",
    ["chunked-body", "expect-continue", "gzip-body", "http-1.0", "percent-encoded-prefix"],
)
def test_requests_the_front_leaves_to_aiohttp_still_work(
    gateway: Gateway, conn_factory: type[Conn], variant: str
) -> None:
    key = gateway.keys["ana@acme.com"]
    payload = orjson.dumps(CHAT)
    path, headers, raw, version = "/v1/chat/completions", {}, payload, "HTTP/1.1"
    if variant == "chunked-body":
        headers = {"Transfer-Encoding": "chunked", "Content-Length": None}
        raw = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
    elif variant == "expect-continue":
        headers = {"Expect": "100-continue"}
    elif variant == "gzip-body":
        raw = gzip.compress(payload)
        headers = {"Content-Encoding": "gzip", "Content-Length": str(len(raw))}
    elif variant == "http-1.0":
        version = "HTTP/1.0"
    else:
        path = "/t/repo%3Dfront-test/v1/chat/completions"
    gateway.clear()
    before = counts(gateway)
    conn = conn_factory()
    conn.send(request(key, raw=raw, path=path, version=version, headers=headers))
    status, _, body = conn.response()
    assert status == 200, body
    assert json.loads(body)["choices"]
    assert served_by(gateway, before) == (0, 1)
    if variant == "percent-encoded-prefix":
        (span,) = gateway.wait_spans(1)
        assert span.attributes["vcs.repository.name"] == "front-test"


def test_a_body_arriving_in_pieces_is_read_whole(gateway: Gateway, conn_factory: type[Conn]) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 300_000}]}
    data = request(gateway.keys["ana@acme.com"], big)
    before = counts(gateway)
    conn = conn_factory()
    for i in range(0, len(data), 70_000):
        conn.send(data[i : i + 70_000])
        time.sleep(0.02)
    status, _, body = conn.response()
    assert status == 200 and json.loads(body)["usage"]["prompt_tokens"] > 0
    assert served_by(gateway, before) == (1, 0)


def test_connection_close_is_honoured(gateway: Gateway, conn_factory: type[Conn]) -> None:
    conn = conn_factory()
    conn.send(request(gateway.keys["ana@acme.com"], STREAM, headers={"Connection": "close"}))
    status, headers, body = conn.response()
    assert status == 200 and headers["connection"] == "close" and body.endswith(b"data: [DONE]\n\n")
    assert conn.at_eof()


def test_errors_keep_their_openai_shape(gateway: Gateway, conn_factory: type[Conn]) -> None:
    conn = conn_factory()
    conn.send(request("sg-not-a-key", CHAT))
    status, headers, body = conn.response()
    assert status == 401 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    conn.send(request(gateway.keys["ana@acme.com"], raw=b"{nope"))  # same connection: still alive
    status, _, body = conn.response()
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"


def test_an_oversized_body_gets_the_openai_413_without_being_sent(gateway: Gateway, conn_factory: type[Conn]) -> None:
    head = request(gateway.keys["ana@acme.com"], raw=b"", headers={"Content-Length": str(10**9)})
    conn = conn_factory()
    conn.send(head)
    status, _, body = conn.response()
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nthis is not a header\r\nContent-Length: 2",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\nContent-Length: 2",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: 1\nContent-Length: 2",  # bare LF
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3",
    ],
    ids=["no-colon", "space-in-name", "bare-lf", "two-lengths"],
)
def test_a_malformed_head_gets_aiohttp_400(gateway: Gateway, conn_factory: type[Conn], head: bytes) -> None:
    # The front never guesses: aiohttp's parser answers what is not plainly well-formed.
    before = counts(gateway)
    conn = conn_factory()
    conn.send(head + b"\r\n\r\n{}")
    assert conn.response()[0] == 400
    assert served_by(gateway, before) == (0, 1)


def test_a_handler_bug_is_an_openai_500(
    gateway: Gateway, conn_factory: type[Conn], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(chat_route, "plan_call", broken)
    conn = conn_factory()
    conn.send(request(gateway.keys["ana@acme.com"], CHAT))
    status, headers, body = conn.response()
    assert status == 500 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "internal_error"
    assert b"boom" not in body and b"Traceback" not in body
    assert conn.at_eof()


def test_idle_keep_alive_connections_are_closed(
    tmp_path: Path, simulator: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(front_module, "KEEPALIVE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(front_module, "SWEEP_INTERVAL_S", 0.05)
    for gw in start_gateway(tmp_path, simulator):
        conn = Conn(gw.proxy.port)
        conn.send(request(gw.keys["ana@acme.com"], CHAT))
        assert conn.response()[0] == 200
        busy = Conn(gw.proxy.port)
        busy.send(request(gw.keys["ana@acme.com"], CHAT)[:40])  # a head that never completes
        time.sleep(0.8)
        assert conn.at_eof() and busy.at_eof()


def _big_stream_upstream(events: int, size: int) -> web.Application:
    """An OpenAI-style upstream streaming ``events`` content chunks of ``size`` characters each."""

    async def chat(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "gpt-4.1",
            "choices": [{"index": 0, "delta": {"content": "y" * size}, "finish_reason": None}],
        }
        event = b"data: " + orjson.dumps(chunk) + b"\n\n"
        for _ in range(events):
            await out.write(event)
        usage = {"prompt_tokens": 5, "completion_tokens": events, "total_tokens": events + 5}
        end = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4.1", "choices": [], "usage": usage}
        await out.write(b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n")
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


def test_a_slow_reader_gets_every_byte(tmp_path: Path) -> None:
    # 8 MB down a connection whose reader stalls: the front must wait for the socket to drain
    # (back-pressure) rather than buffer without bound or drop bytes.
    events, size = 512, 16_000
    with serve_app(lambda: _big_stream_upstream(events, size)) as upstream:
        for gw in start_gateway(tmp_path, upstream):
            conn = Conn(gw.proxy.port, rcvbuf=16_384)
            conn.send(request(gw.keys["ana@acme.com"], {**STREAM, "stream_options": {"include_usage": True}}))
            time.sleep(0.5)  # the proxy fills the socket and must pause
            status, _, body = conn.response()
            assert status == 200
            assert body.count(b"data: ") == events + 2 and body.endswith(b"data: [DONE]\n\n")
            assert body.count(b"y" * size) == events
            (span,) = gw.wait_spans(1)
            assert span.attributes["gen_ai.usage.output_tokens"] == events


def test_stopping_lets_a_call_in_flight_finish(tmp_path: Path) -> None:
    # SIGTERM (or ``spendgate up`` stopping) must not cut a developer's answer in half: the front
    # stops accepting, waits for calls in flight, then closes.
    config = SimulatorConfig(api_key=PROVIDER_KEY, chunks=12, chunk_delay_ms=50)
    with serve_app(lambda: create_simulator(config)) as upstream:
        for gw in start_gateway(tmp_path, upstream):
            conn = Conn(gw.proxy.port)
            conn.send(request(gw.keys["ana@acme.com"], STREAM))
            time.sleep(0.15)  # the stream is under way
            stopper = threading.Thread(target=gw.proxy.stop)
            stopper.start()
            status, _, body = conn.response()
            stopper.join(10)
            assert status == 200 and body.endswith(b"data: [DONE]\n\n")
            assert body.count(b"data: ") >= 13
            with pytest.raises(OSError):
                Conn(gw.proxy.port)  # no longer accepting


def test_the_cursor_and_messages_routes_are_served_by_the_front(gateway: Gateway, conn_factory: type[Conn]) -> None:
    # Cursor's route and Anthropic Messages translate through the canonical model; both run on
    # the front as well, streamed and not, behind a /t/ prefix too.
    key = gateway.keys["ana@acme.com"]
    gateway.clear()
    before = counts(gateway)
    conn = conn_factory()
    conn.send(request(key, STREAM, path="/t/repo=cursor-front/cursor/v1/chat/completions"))
    status, headers, body = conn.response()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n")
    anthropic_body = {"model": "gpt-4.1", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    conn.send(request(key, anthropic_body, path="/v1/messages"))
    status, _, body = conn.response()
    assert status == 200 and json.loads(body)["type"] == "message"
    conn.send(request(key, {**anthropic_body, "stream": True}, path="/v1/messages"))
    status, _, body = conn.response()
    assert status == 200 and b"event: message_stop" in body
    assert served_by(gateway, before) == (3, 0)
    spans = gateway.wait_spans(3)
    assert {s.attributes["vcs.repository.name"] for s in spans} >= {"cursor-front"}
