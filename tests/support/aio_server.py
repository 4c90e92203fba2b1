"""Run an aiohttp application on a loopback port in a background thread, for tests.

Tests stay synchronous (they drive servers with the official, blocking ``openai`` client) while
each server gets its own event loop, exactly as it would in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ServerHandle:
    """A running server: its base URL and the loop it runs on."""

    host: str
    port: int
    loop: asyncio.AbstractEventLoop
    _stop: Callable[[], None] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, coro: Awaitable[object], timeout: float = 10) -> object:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        self._stop()


async def start_app(
    app: web.Application, host: str = "127.0.0.1", **runner_kwargs: object
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on an ephemeral port of ``host`` on the running loop: its runner (clean it up) and port."""
    runner = web.AppRunner(app, **runner_kwargs)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@contextlib.contextmanager
def serve_app(
    make_app: Callable[[], web.Application | Awaitable[web.Application]],
    host: str = "127.0.0.1",
    *,
    start: Callable[[web.Application, str], Awaitable[tuple[object, int]]] | None = None,
    **runner_kwargs: object,
) -> Iterator[ServerHandle]:
    """Start ``make_app()`` on an ephemeral port; stop it (cleanly) when the block exits.

    ``start(app, host)`` serves it some other way than a plain ``AppRunner`` (the proxy's front);
    it returns something with ``cleanup()`` and the bound port.
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, object] = {}

    async def _start() -> None:
        app = make_app()
        if not isinstance(app, web.Application):
            app = await app
        if start is not None:
            box["runner"], box["port"] = await start(app, host)
        else:
            box["runner"], box["port"] = await start_app(app, host, **runner_kwargs)

    def _run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(_start())
        except BaseException as exc:  # surface start-up errors in the test thread
            box["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=_run, name="test-aio-server", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]

    stopped = threading.Event()

    def _stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        runner = box["runner"]
        fut = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            fut.result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        loop.close()

    handle = ServerHandle(host, int(box["port"]), loop, _stop)  # type: ignore[arg-type]
    try:
        yield handle
    finally:
        _stop()


async def _start_proxy_front(app: web.Application, host: str) -> tuple[object, int]:
    from spendgate_proxy.server import serve_app as serve_proxy_app

    front = await serve_proxy_app(app, host, 0)
    return front, front.port


def serve_proxy(
    make_app: Callable[[], web.Application | Awaitable[web.Application]], host: str = "127.0.0.1"
) -> contextlib.AbstractContextManager[ServerHandle]:
    """Serve a proxy application the way ``spendgate proxy`` does: its front, then aiohttp (http/front.py)."""
    return serve_app(make_app, host, start=_start_proxy_front)
