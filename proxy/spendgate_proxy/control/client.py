"""The proxy's end of the control stream: ``ControlClient`` keeps a ``ControlState`` current.

``ControlClient`` is one asyncio task that subscribes to the collector
(``spendgate_semconv/control.proto``), applies the snapshot then each delta into a ``ControlState``
(``state.py``), and resubscribes after any failure with capped exponential backoff and jitter,
resuming from the last version it applied. Failures include a stream that goes silent for
``heartbeat_timeout_s`` (the collector heartbeats every few seconds, so silence means a dead
connection even when TCP has not noticed). It also forwards the Cursor hook reports this proxy
receives (``hook_forward.py``) so the collector can share them.

    client = await start_control(settings, keys)   # settings.control; returns at once
    ...
    client.state.verdict_for(principal, repo, model)
    await client.stop()                            # idempotent
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
from typing import TYPE_CHECKING, Any

from spendgate_proxy.attribution.hook_forward import HookForwarder
from spendgate_proxy.control.state import ControlProtocolError, ControlState
from spendgate_proxy.keys import KeyDirectory
from spendgate_semconv import control_pb2

if TYPE_CHECKING:
    from spendgate_proxy.attribution.hook_window import HookAttribution, HookWindows
    from spendgate_proxy.config import ProxySettings

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT_S = 15.0
DEFAULT_INITIAL_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 30.0
# Must match the collector's send limit: a snapshot carries the whole key directory.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _default_proxy_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@functools.cache
def _proxy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spendgate")
    except PackageNotFoundError:
        return "unknown"


class ControlClient:
    """Keeps a ``ControlState`` current from the collector's control stream; see the module docstring.

    ``start()`` returns at once; ``stop()`` is idempotent and safe before ``start()``. With no
    ``endpoint`` (standalone) it never connects and its state is ready from the start.
    """

    def __init__(
        self,
        endpoint: str | None,
        state: ControlState,
        *,
        proxy_id: str | None = None,
        heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
        initial_backoff_s: float = DEFAULT_INITIAL_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.state = state
        self.proxy_id = proxy_id or _default_proxy_id()
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.initial_backoff_s = min(initial_backoff_s, max_backoff_s)
        self.max_backoff_s = max_backoff_s
        self.subscribes = 0
        self.failures = 0
        """Consecutive attempts that delivered nothing; drives the backoff."""
        self.last_error: str | None = None
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self.hook_forwarder = HookForwarder(endpoint, self.proxy_id) if endpoint is not None else None
        """Sends Cursor hook reports this proxy receives to the collector; None when standalone."""

    def start(self) -> None:
        """Start the subscription task in the running loop (no-op when standalone or started)."""
        if self.endpoint is None or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="spendgate-control-client")
        if self.hook_forwarder is not None:
            self.hook_forwarder.start()

    async def stop(self) -> None:
        """Cancel the subscription and close its channel; the state keeps what it holds. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.hook_forwarder is not None:
            await self.hook_forwarder.stop()
        self.state.connected = False

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the first snapshot (or ``timeout`` seconds); returns ``state.ready``."""
        return await self.state.wait_ready(timeout)

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt: doubling from the initial delay to the cap, half of it jittered.

        The jitter spreads a fleet of proxies that lost the same collector over the window instead
        of having them all reconnect in the same instant.
        """
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** min(failures, 30))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def stats(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "proxy_id": self.proxy_id,
            "subscribes": self.subscribes,
            "failures": self.failures,
            "last_error": self.last_error,
            "hook_forwards": self.hook_forwarder.stats() if self.hook_forwarder is not None else None,
            **self.state.stats(),
        }

    def report_attribution(self, user: str, window: HookAttribution) -> None:
        """Share a hook window this proxy received with the other proxies (via the collector); never waits."""
        if self.hook_forwarder is not None:
            self.hook_forwarder.submit(user, window)

    async def _run(self) -> None:
        import grpc

        while True:
            delivered = False
            try:
                delivered = await self._subscribe_once()
                self.last_error = "stream ended by the collector"
            except ControlProtocolError as exc:
                self.last_error = str(exc)
            except TimeoutError:
                self.last_error = f"no update or heartbeat for {self.heartbeat_timeout_s:g}s"
            except grpc.aio.AioRpcError as exc:
                self.last_error = f"{exc.code().name}: {exc.details()}"
            except Exception as exc:  # the task must outlive any one bad update
                logger.exception("control stream failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            self.state.connected = False
            # A stream that delivered was healthy: start the backoff over (still jittered).
            self.failures = 0 if delivered else self.failures + 1
            delay = self.backoff(self.failures)
            log = logger.warning if self.failures <= 1 else logger.debug
            log("control stream to %s lost (%s); retrying in %.1fs", self.endpoint, self.last_error, delay)
            await asyncio.sleep(delay)

    async def _subscribe_once(self) -> bool:
        """One subscription until it ends or fails; returns whether it delivered any update."""
        import grpc

        from spendgate_semconv import control_pb2_grpc  # imports grpc, which a standalone proxy never needs

        assert self.endpoint is not None
        state = self.state
        # A fresh channel per attempt: our backoff decides when to retry, not gRPC's own reconnect
        # timer, and a connection that went silent is really gone.
        channel = grpc.aio.insecure_channel(
            self.endpoint, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        )
        call = None
        delivered = False
        try:
            request = control_pb2.SubscribeRequest(
                proxy_id=self.proxy_id,
                resume_version=state.version if state.epoch else 0,
                epoch=state.epoch,
                proxy_version=_proxy_version(),
            )
            self.subscribes += 1
            call = control_pb2_grpc.ControlPlaneStub(channel).Subscribe(request)
            while True:
                update = await asyncio.wait_for(call.read(), self.heartbeat_timeout_s)
                if update is grpc.aio.EOF:
                    return delivered
                state.apply(update)
                if not delivered:
                    delivered = True
                    state.connected = True
                    self.failures = 0
                    logger.info(
                        "control stream to %s: %s at version %d (epoch %d)",
                        self.endpoint,
                        "snapshot" if update.snapshot else "resumed",
                        state.version,
                        state.epoch,
                    )
        finally:
            if call is not None:
                call.cancel()
            await channel.close(grace=None)


async def start_control(
    settings: ProxySettings, keys: KeyDirectory, *, hook_windows: HookWindows | None = None
) -> ControlClient:
    """Build the control client for ``settings.control`` over ``keys`` and start it; returns at once.

    Cursor hook windows from the stream are applied into ``hook_windows`` when given.

    With no endpoint the client is standalone: keys stay with the key file, no verdicts, ready.
    The caller owns the client: ``await client.stop()`` on shutdown.
    """
    cfg = settings.control
    state = ControlState(keys, on_no_state=cfg.on_no_state, standalone=cfg.endpoint is None, hook_windows=hook_windows)
    client = ControlClient(
        cfg.endpoint,
        state,
        proxy_id=cfg.proxy_id,
        heartbeat_timeout_s=cfg.heartbeat_timeout_s,
        initial_backoff_s=cfg.reconnect_initial_backoff_s,
        max_backoff_s=cfg.reconnect_max_backoff_s,
    )
    client.start()
    return client
