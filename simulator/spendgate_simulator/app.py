"""The simulated provider's HTTP routes: thin aiohttp handlers around the pure replies of responses.py.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``POST /v1/messages`` and
``/v1/messages/count_tokens`` (Anthropic's shapes, see anthropic.py), ``POST /model/{modelId}/invoke``
and ``/model/{modelId}/invoke-with-response-stream`` (Bedrock's, SigV4-checked, see bedrock.py), ``GET /v1/models`` (and
``/models``), ``GET``/``DELETE /_sim/requests`` (what was received, for tests) and ``GET /healthz``.
This server is the "direct" baseline of the proxy benchmark, so the request path does as little as
it can: replies are cached by raw body, recorded requests are parsed only when someone asks.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import random
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from spendgate_simulator import anthropic, bedrock
from spendgate_simulator.config import SimulatorConfig
from spendgate_simulator.responses import (
    Reply,
    auth_error_reply,
    build_reply,
    error_reply,
    models_object,
    rate_limit_reply,
    server_error_reply,
)

CONFIG_KEY = web.AppKey("spendgate_simulator_config", SimulatorConfig)

# Cursor-sized prompts run to megabytes; aiohttp's default limit (1 MiB) would reject them.
_MAX_BODY = 64 * 1024 * 1024
# Bodies up to this size have their reply cached. Benchmarks repeat a handful of bodies; large,
# one-off bodies would only churn the cache.
_CACHEABLE_BODY = 64 * 1024
_CACHE_SIZE = 256

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_JSON = "application/json"


class _Simulator:
    """The state behind the routes: config, the reply cache, recorded requests, the fault RNG."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._build = functools.partial(build_reply, chunks=config.chunks, cached_ratio=config.cached_ratio)
        self._cached_build = functools.lru_cache(maxsize=_CACHE_SIZE)(self._build)
        self._recorded: deque[tuple[str, dict[str, str], bytes]] | None = (
            deque(maxlen=config.record_requests) if config.record_requests else None
        )
        self._expected_auth = None if config.api_key is None else f"Bearer {config.api_key}".encode()
        self._expected_key = None if config.api_key is None else config.api_key.encode()
        self._random = random.Random(config.seed)
        self._fault_rates = config.error_rate_429 > 0 or config.error_rate_500 > 0
        self._ttft = config.ttft_ms / 1000
        self._models_body = orjson.dumps(models_object(config.models))
        self._prompt_cache = anthropic.PromptCache()
        self._bedrock = bedrock.BedrockRoutes(cache=self._prompt_cache, chunks=config.chunks)

    # -- helpers ---------------------------------------------------------------------------

    def _unauthorized(self, request: web.Request) -> Reply | None:
        if self._expected_auth is None:
            return None
        sent = request.headers.get("Authorization")
        if sent is not None and hmac.compare_digest(sent.encode(), self._expected_auth):
            return None
        return auth_error_reply(sent_any=bool(sent))

    def _unauthorized_anthropic(self, request: web.Request) -> Reply | None:
        # Anthropic's SDK sends x-api-key; OAuth-style clients send a bearer token. Either will do.
        if self._expected_auth is None or self._expected_key is None:
            return None
        key = request.headers.get("x-api-key")
        if key is not None and hmac.compare_digest(key.encode(), self._expected_key):
            return None
        bearer = request.headers.get("Authorization")
        if bearer is not None and hmac.compare_digest(bearer.encode(), self._expected_auth):
            return None
        return anthropic.auth_error_reply(sent_any=bool(key or bearer))

    def _random_fault(self, raw: bytes) -> Reply | None:
        draw = self._random.random()
        if draw < self.config.error_rate_429:
            try:
                model = orjson.loads(raw).get("model") or "the model"
            except (orjson.JSONDecodeError, AttributeError):
                model = "the model"
            return rate_limit_reply(str(model))
        if draw < self.config.error_rate_429 + self.config.error_rate_500:
            return server_error_reply()
        return None

    @staticmethod
    def _send(reply: Reply) -> web.Response:
        return web.Response(status=reply.status, body=reply.body, content_type=_JSON, headers=dict(reply.headers))

    @staticmethod
    def _cut(request: web.Request) -> None:
        # Simulates a provider dying mid-answer: whatever was written is flushed, then the socket
        # closes with the HTTP message unfinished (no terminating chunk), so clients see a broken
        # stream rather than a clean end. force_close stops aiohttp from reusing the connection.
        request.protocol.force_close()
        if request.transport is not None:
            request.transport.close()

    # -- routes ----------------------------------------------------------------------------

    def _record(self, request: web.Request, raw: bytes) -> None:
        if self._recorded is not None:
            headers = {name.lower(): value for name, value in request.headers.items()}
            self._recorded.append((request.path, headers, raw))

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self._record(request, raw)
        denied = self._unauthorized(request)
        if denied is not None:
            return self._send(denied)
        reply = self._cached_build(raw) if len(raw) <= _CACHEABLE_BODY else self._build(raw)
        if reply.status == 200 and self._fault_rates:
            reply = self._random_fault(raw) or reply
        return await self._answer(request, reply)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        # Not cached by body: the prompt cache makes a repeated body answer differently (a read).
        raw = await request.read()
        self._record(request, raw)
        denied = self._unauthorized_anthropic(request)
        if denied is not None:
            return self._send(denied)
        reply = anthropic.build_reply(raw, cache=self._prompt_cache, chunks=self.config.chunks)
        if reply.status == 200 and self._fault_rates:
            draw = self._random.random()
            if draw < self.config.error_rate_429:
                reply = anthropic.rate_limit_reply()
            elif draw < self.config.error_rate_429 + self.config.error_rate_500:
                reply = anthropic.server_error_reply()
        return await self._answer(request, reply)

    async def count_tokens(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self._record(request, raw)
        denied = self._unauthorized_anthropic(request)
        return self._send(denied or anthropic.count_tokens_reply(raw))

    async def bedrock_invoke(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self._record(request, raw)
        stream = request.path.endswith("/invoke-with-response-stream")
        # The signature covers the path exactly as sent (still percent-encoded).
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        model_id = request.match_info["model_id"]
        reply = self._bedrock.answer(request.method, url, request.headers, raw, model_id, stream=stream)
        request_id = (("x-amzn-RequestId", bedrock.request_id(raw)),)
        if reply.status != 200:
            return web.Response(
                status=reply.status, body=reply.body, content_type=_JSON, headers=dict(reply.headers + request_id)
            )
        headers = {"Content-Type": bedrock.EVENT_STREAM_CONTENT_TYPE} if reply.stream else {}
        return await self._answer(request, reply, headers={**headers, **dict(reply.headers + request_id)})

    async def _answer(
        self, request: web.Request, reply: Reply, headers: dict[str, str] | None = None
    ) -> web.StreamResponse:
        """Send a built reply: an error at once, else the stream or the body after the simulated wait."""
        if reply.status != 200:
            return self._send(reply)

        delay = (self.config.chunk_delay_ms if reply.slow_ms is None else reply.slow_ms) / 1000
        if reply.stream:
            return await self._stream(request, reply, delay, headers or _SSE_HEADERS)

        # A non-streamed answer takes as long as the streamed one would have.
        wait = self._ttft + delay * reply.delta_events
        if wait > 0:
            await asyncio.sleep(wait)
        if reply.drop_after is not None:
            self._cut(request)  # the response below is never sent: the connection is closed
        return web.Response(body=reply.body, content_type=_JSON, headers=headers)

    async def _stream(
        self, request: web.Request, reply: Reply, delay: float, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        if self._ttft > 0:
            await asyncio.sleep(self._ttft)
        events = reply.events
        count = len(events) if reply.drop_after is None else 1 + min(reply.drop_after, reply.delta_events)
        try:
            await response.prepare(request)
            # One write per event, so anything in between sees the chunks as a provider sends them.
            for i in range(count):
                if i and delay > 0:
                    await asyncio.sleep(delay)
                await response.write(events[i])
            if reply.drop_after is not None:
                self._cut(request)
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing left to do
        return response

    async def models(self, request: web.Request) -> web.Response:
        denied = self._unauthorized(request)
        if denied is not None:
            return self._send(denied)
        return web.Response(body=self._models_body, content_type=_JSON)

    async def recorded_requests(self, request: web.Request) -> web.Response:
        recorded: list[dict[str, Any]] = []
        for path, headers, raw in self._recorded or ():
            try:
                body: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            recorded.append({"path": path, "headers": headers, "body": body})
        return web.Response(body=orjson.dumps(recorded), content_type=_JSON)

    async def clear_requests(self, request: web.Request) -> web.Response:
        if self._recorded is not None:
            self._recorded.clear()
        return web.Response(body=b'{"cleared":true}', content_type=_JSON)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def not_found(self, request: web.Request) -> web.Response:
        # OpenAI's wording, so a client misconfigured against the simulator fails as it would for real.
        return self._send(error_reply(404, f"Invalid URL ({request.method} {request.path})"))


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A ready-to-serve aiohttp application for the simulated provider (defaults when no config)."""
    config = config or SimulatorConfig()
    sim = _Simulator(config)
    app = web.Application(client_max_size=_MAX_BODY)
    app[CONFIG_KEY] = config
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_post("/chat/completions", sim.chat_completions)
    app.router.add_post("/v1/messages", sim.messages)
    app.router.add_post("/v1/messages/count_tokens", sim.count_tokens)
    # Model ids may hold "/" (inference profile ARNs), hence the pattern.
    app.router.add_post("/model/{model_id:.+}/invoke", sim.bedrock_invoke)
    app.router.add_post("/model/{model_id:.+}/invoke-with-response-stream", sim.bedrock_invoke)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/models", sim.models)
    app.router.add_get("/_sim/requests", sim.recorded_requests)
    app.router.add_delete("/_sim/requests", sim.clear_requests)
    app.router.add_get("/healthz", sim.healthz)
    app.router.add_route("*", "/{tail:.*}", sim.not_found)  # last: routes match in order
    return app
