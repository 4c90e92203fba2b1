"""The proxy's aiohttp application: the route table, health and CORS answers, and the lifecycle.

``create_app`` wires settings, the key directory and the span worker into an ``aiohttp.web``
application; ``MODEL_ROUTES`` names the handlers every model call takes, which the front
(``http/front.py``, ``server.py``) also serves. The handlers themselves live in ``routes/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from spendgate_proxy.config import ProxySettings
from spendgate_proxy.control.client import start_control
from spendgate_proxy.errors import CORS_HEADERS, error_response
from spendgate_proxy.http.exchange import Exchange, on_aiohttp
from spendgate_proxy.key_refresh import KeyRefresh
from spendgate_proxy.keys import KeyDirectory, KeyFileError
from spendgate_proxy.routes.chat import chat_core
from spendgate_proxy.routes.cursor import cursor_core
from spendgate_proxy.routes.hooks import cursor_hook
from spendgate_proxy.routes.messages import count_tokens, messages_core
from spendgate_proxy.routes.models import list_models
from spendgate_proxy.state import SETTINGS, STATE, ProxyState
from spendgate_proxy.telemetry.spans import SpanExportWorker

logger = logging.getLogger("spendgate.proxy")

KEY_RELOAD_INTERVAL_S = 1.0


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight for any path (Cursor and browser clients may send one)."""
    return web.Response(status=204, headers=CORS_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    """Liveness plus a few counters; no secrets, no principals."""
    state = request.app[STATE]
    body: dict[str, Any] = {"status": "ok", "keys": len(state.keys), "models": len(state.routes)}
    if state.front_counts is not None:
        body["front"] = dict(state.front_counts)
    if state.control_client is not None:
        body["control"] = state.control_client.stats()
    elif state.control is not None:
        body["control"] = state.control.stats()
    if state.key_refresh is not None:
        body["key_rechecks"] = state.key_refresh.stats()
    if state.worker is not None:
        s = state.worker.stats()
        body["spans"] = {
            "queued": s.queued,
            "exported": s.exported,
            "failed_attempts": s.failed_attempts,
            "dropped": s.dropped,
        }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _not_found(request: web.Request) -> web.Response:
    return error_response(
        404,
        f"Unknown route {request.method} {request.path}; this gateway serves /v1/chat/completions, "
        "/v1/models, /v1/messages and /cursor/v1/... (docs/proxy.md).",
        "invalid_request_error",
        code="unknown_route",
    )


async def _reload_keys(refresh: KeyRefresh) -> None:
    """Follow the key file while it owns the key directory: standalone, or before (or without) a
    collector's key directory. A ``stat`` a second; the file is parsed off the loop when it changed."""
    state_keys = refresh.keys
    while True:
        await asyncio.sleep(KEY_RELOAD_INTERVAL_S)
        try:
            if await refresh.reload_file():
                logger.info("reloaded key directory: %d keys", len(state_keys))
        except KeyFileError as exc:
            logger.error("key directory not reloaded, keeping the previous one: %s", exc)


async def _lifecycle(app: web.Application) -> Any:
    state = app[STATE]
    if state.worker is not None:
        state.worker.start()
    if state.control is None:
        state.control_client = await start_control(state.settings, state.keys, hook_windows=state.hook_windows)
        state.control = state.control_client.state
    client = state.control_client
    state.key_refresh = KeyRefresh(state.keys, sync=client.sync_keys if client and client.endpoint else None)
    # The file holds the keys until a collector's key directory arrives (standalone: always); the
    # follower is one stat a second, and does nothing once the directory is the collector's.
    reloader = asyncio.create_task(_reload_keys(state.key_refresh)) if state.keys.path is not None else None
    yield
    if state.control_client is not None:
        await state.control_client.stop()
    if reloader is not None:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
    await state.key_refresh.aclose()
    for upstream in state.upstreams.values():
        await upstream.close()
    if state.worker is not None:
        await asyncio.get_running_loop().run_in_executor(None, state.worker.shutdown)


# The POST routes every model call takes, by path after an optional /t/{attrs} prefix: registered
# on aiohttp's router below, and served first by the front (front.py, server.py) on the hot path.
MODEL_ROUTES: dict[str, Callable[[Exchange], Awaitable[Any]]] = {
    "/v1/chat/completions": chat_core,
    "/chat/completions": chat_core,
    "/cursor/v1/chat/completions": cursor_core,
    "/v1/messages": messages_core,
}


def create_app(
    settings: ProxySettings,
    *,
    keys: KeyDirectory | None = None,
    worker: SpanExportWorker | None = None,
) -> web.Application:
    """The proxy application. ``keys`` defaults to the settings' key file; ``worker`` to none (no spans).

    The caller owns nothing else: the app starts the worker and key reloader on startup and closes
    upstream pools, flushes and shuts the worker down on cleanup.
    """
    keys = keys if keys is not None else KeyDirectory(settings.keys_file)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[STATE] = ProxyState(settings, keys, worker)
    model_routes = {path: on_aiohttp(core) for path, core in MODEL_ROUTES.items()}
    for prefix in ("", "/t/{attrs}"):
        for path, handler in model_routes.items():
            app.router.add_post(prefix + path, handler)
        for path in ("/v1/models", "/models", "/cursor/v1/models"):
            app.router.add_get(prefix + path, list_models)
        app.router.add_post(f"{prefix}/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/hooks/cursor", cursor_hook)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("OPTIONS", "/{tail:.*}", preflight)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_lifecycle)
    return app
