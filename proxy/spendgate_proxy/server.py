"""Run the proxy application on a socket: event loop choice, runner options, graceful stop.

Kept apart from ``app.py`` so tests and ``spendgate up`` can embed the application in their own
loop with ``start_proxy`` while the CLI uses ``run_proxy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

from aiohttp import web

from spendgate_proxy.app import MODEL_ROUTES, create_app
from spendgate_proxy.config import ProxySettings
from spendgate_proxy.http.front import Front
from spendgate_proxy.keys import KeyDirectory
from spendgate_proxy.state import STATE
from spendgate_proxy.telemetry.spans import SpanExportWorker

RUNNER_OPTIONS = {
    # Cancel the handler when the client disconnects, so an abandoned stream closes its upstream
    # connection at once (the provider stops generating) and its span is recorded.
    "handler_cancellation": True,
    "access_log": None,
    "shutdown_timeout": 5.0,
}


def install_uvloop() -> bool:
    """Use uvloop when installed: it cuts the event loop's share of per-request CPU."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


async def serve_app(app: web.Application, host: str, port: int) -> Front:
    """Serve ``app`` on ``host:port`` in the running loop: the front for the model-call routes
    (``MODEL_ROUTES``), aiohttp for the rest (http/front.py). Returns the front; ``close()`` (or
    ``cleanup()``) stops both."""
    runner = web.AppRunner(app, **RUNNER_OPTIONS)
    await runner.setup()
    front = Front(runner, app[STATE], MODEL_ROUTES)
    try:
        await front.start(host, port)
    except BaseException:
        await runner.cleanup()
        raise
    return front


async def start_proxy(
    settings: ProxySettings,
    *,
    keys: KeyDirectory | None = None,
    worker: SpanExportWorker | None = None,
    host: str | None = None,
    port: int | None = None,
) -> tuple[Front, int]:
    """Start serving in the running loop; returns the server (call ``cleanup()``) and bound port."""
    app = create_app(settings, keys=keys, worker=worker)
    front = await serve_app(app, host or settings.host, settings.port if port is None else port)
    return front, front.port


async def serve_until_stopped(settings: ProxySettings, worker: SpanExportWorker | None, on_ready: object) -> None:
    """Serve until SIGINT or SIGTERM, then stop accepting, finish in-flight calls and flush spans."""
    runner, port = await start_proxy(settings, worker=worker)
    # Everything loaded so far (modules, config, pools) lives as long as the process: moving it out
    # of the collector's generations keeps full GC passes short, which shows in the latency p99.
    gc.freeze()
    if callable(on_ready):
        on_ready(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
