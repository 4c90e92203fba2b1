"""Calls that do not end well still end in exactly one span with what the provider will bill.

Client disconnects, upstream cuts mid-stream, unreachable and slow upstreams, and upstream error
statuses: each is driven for real over loopback sockets.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from aiohttp import web

from spendgate_semconv import attributes as A
from tests.proxy.conftest import PROVIDER_KEY, Gateway, start_gateway
from tests.support.aio_server import ServerHandle, serve_app


def _slow_messages(marker: str = "[[sim:slow=40]]") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Explain the build system in detail {marker}"}]


def test_client_disconnect_mid_stream_records_estimated_usage(gateway: Gateway) -> None:
    body = {"model": "gpt-4.1", "messages": _slow_messages(), "stream": True}
    headers = {"Authorization": f"Bearer {gateway.keys['ana@acme.com']}"}
    received = b""
    with httpx.stream("POST", gateway.proxy.url + "/v1/chat/completions", json=body, headers=headers) as resp:
        for chunk in resp.iter_raw():
            received += chunk
            if received.count(b"data: ") >= 5:
                break  # leave mid-stream, as a developer closing Cursor's chat would
    spans = gateway.wait_spans(1)
    assert len(spans) == 1
    attrs = spans[0].attributes
    assert attrs[A.SPENDGATE_CLIENT_DISCONNECTED] is True
    assert attrs[A.ERROR_TYPE] == "client_disconnected"
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.ESTIMATE
    assert attrs[A.LLM_TOKEN_COUNT_PROMPT] > 0
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] > 0  # the words streamed before the client left
    assert attrs[A.USER_ID] == "ana@acme.com"
    # Disconnects are not failures of the gateway: the span status stays unset.
    assert spans[0].status.is_ok


def test_upstream_drop_mid_stream_ends_client_stream_with_error_event(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "write a long story [[sim:drop-after=4]]"}]
    chunks = []
    with pytest.raises(openai.APIError) as err:
        for chunk in gateway.client().chat.completions.create(model="gpt-4.1", messages=messages, stream=True):
            chunks.append(chunk)
    assert "ended the stream unexpectedly" in str(err.value)
    assert len(chunks) >= 4  # what arrived before the cut was passed on
    attrs = gateway.wait_spans(1)[0].attributes
    assert attrs[A.ERROR_TYPE] == "upstream_stream_error"
    assert attrs[A.SPENDGATE_USAGE_SOURCE] == A.UsageSource.ESTIMATE
    assert attrs[A.LLM_TOKEN_COUNT_COMPLETION] > 0


def test_upstream_500_passes_through(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "hi [[sim:500]]"}]
    with pytest.raises(openai.InternalServerError) as err:
        gateway.client().chat.completions.create(model="gpt-4.1", messages=messages)
    assert err.value.status_code == 500
    assert "Traceback" not in err.value.response.text
    attrs = gateway.wait_spans(1)[0].attributes
    assert attrs[A.ERROR_TYPE] == "500"


def test_context_overflow_error_keeps_openai_code(gateway: Gateway) -> None:
    messages = [{"role": "user", "content": "hi [[sim:context-overflow]]"}]
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client().chat.completions.create(model="gpt-4.1", messages=messages, stream=True)
    assert err.value.code == "context_length_exceeded"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dead_upstream_gateway(tmp_path: Path) -> Iterator[Gateway]:
    dead = ServerHandle("127.0.0.1", _free_port(), None, lambda: None)  # nothing listens there
    yield from start_gateway(tmp_path, dead)


def test_unreachable_upstream_is_502_with_openai_error(dead_upstream_gateway: Gateway) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        dead_upstream_gateway.client().chat.completions.create(model="gpt-4.1", messages=_slow_messages(""))
    assert err.value.status_code == 502
    assert err.value.body["code"] == "upstream_unreachable"
    assert str(dead_upstream_gateway.proxy.port) not in err.value.response.text
    attrs = dead_upstream_gateway.wait_spans(1)[0].attributes
    assert attrs[A.ERROR_TYPE] == "upstream_unreachable"
    assert A.LLM_TOKEN_COUNT_PROMPT not in attrs  # never reached a provider: nothing billed


@pytest.fixture
def silent_upstream() -> Iterator[ServerHandle]:
    async def hang(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"id":"x","object":"chat.completion.chunk","choices":[]}\n\n')
        await web.asyncio.sleep(30)
        return resp

    def make() -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", hang)
        return app

    with serve_app(make, handler_cancellation=True) as srv:
        yield srv


def test_read_timeout_mid_stream_is_reported(tmp_path: Path, silent_upstream: ServerHandle) -> None:
    provider = {"base_url": silent_upstream.url + "/v1", "timeouts": {"read": 0.3}}
    gen = start_gateway(tmp_path, silent_upstream, providers={"sim": provider})
    gw = next(gen)
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIError):
            list(gw.client().chat.completions.create(model="gpt-4.1", messages=_slow_messages(""), stream=True))
        assert time.monotonic() - started < 10
        attrs = gw.wait_spans(1)[0].attributes
        assert attrs[A.ERROR_TYPE] == "upstream_stream_error"
    finally:
        gen.close()


def test_provider_key_never_returned_to_client(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi [[sim:500]]"}]},
        headers={"Authorization": f"Bearer {gateway.keys['ana@acme.com']}"},
    )
    assert PROVIDER_KEY not in resp.text
    assert PROVIDER_KEY not in str(resp.headers)


@pytest.fixture
def cookie_upstream() -> Iterator[tuple[ServerHandle, list[str | None]]]:
    """Sets a cookie on every answer and records the Cookie header it receives."""
    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4.1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )
        resp.set_cookie("__cf_bm", "tracking-" + str(len(seen)))
        return resp

    def make() -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app

    with serve_app(make) as srv:
        yield srv, seen


def test_provider_cookies_are_never_replayed(tmp_path: Path, cookie_upstream: tuple[ServerHandle, list]) -> None:
    srv, seen = cookie_upstream
    # By host name: aiohttp's default jar ignores cookies from bare IP addresses, which would hide the bug.
    url = f"http://localhost:{srv.port}/v1"
    gen = start_gateway(tmp_path, srv, providers={"sim": {"base_url": url}})
    gw = next(gen)
    try:
        for user in ("ana@acme.com", "bo@acme.com"):
            gw.client(user).chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    finally:
        gen.close()
    assert seen == [None, None]  # ana's provider cookie never reaches bo's call
