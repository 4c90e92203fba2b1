"""The proxy's end of the control stream: ``ControlClient`` keeps a ``ControlState`` current.

``ControlClient`` is one asyncio task that subscribes to the collector
(``spendgate_semconv/control.proto``), applies the snapshot then each delta into a ``ControlState``
(``state.py``), and resubscribes after any failure with capped exponential backoff and jitter,
resuming from the last version it applied. Failures include a stream that goes silent for
``heartbeat_timeout_s`` (the collector heartbeats every few seconds, so silence means a dead
connection even when TCP has not noticed). It also forwards the Cursor hook reports this proxy
receives (``hook_forward.py``) so the collector can share them.

While disconnected the state stays as it was (fail-static), but new verdicts cannot arrive, so the
client warns that budgets are not enforced: at the first failure, then at most once every
``WARN_INTERVAL_S``, saying for how long (``/healthz`` says so too: ``control.state`` is
``connected``, ``never_connected``, ``lost`` or ``standalone``). A proxy that stops cleanly tells the
collector first (``Leave``), so it is not counted as lost. With ``control: off`` (no endpoint) the
proxy is standalone: it logs at start that budgets and key updates from a collector are not enforced.

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
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from spendgate_proxy.attribution.hook_forward import HookForwarder
from spendgate_proxy.control.state import ControlProtocolError, ControlState
from spendgate_proxy.keys import KeyDirectory
from spendgate_semconv import control_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    from spendgate_proxy.attribution.hook_window import HookAttribution, HookWindows
    from spendgate_proxy.config import ControlSettings, ProxySettings

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT_S = 15.0
DEFAULT_INITIAL_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 30.0
WARN_INTERVAL_S = 60.0
"""While the control plane is unreachable, the "budgets are not enforced" warning repeats at most this often."""
LEAVE_TIMEOUT_S = 0.5
"""How long a stopping proxy waits for the collector to take note that it leaves."""
SYNC_TIMEOUT_S = 2.0
"""``sync_keys``: bound on the ``SyncKeys`` call, and separately on the wait for the stream to catch up."""
# Must match the collector's send limit: a snapshot carries the whole key directory.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _default_proxy_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def proxy_id_for(cfg: ControlSettings) -> str:
    """This proxy's id: ``control.proxy_id``, else host:pid. Its spans carry it too (``spendgate_proxy.id``)."""
    return cfg.proxy_id or _default_proxy_id()


def _duration(seconds: float) -> str:
    """``42s``, ``3m12s``, ``2h05m``: how long an outage has lasted, for the log."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


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
        clock: Callable[[], float] = time.monotonic,
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
        self.warnings = 0
        """Times the "budgets are not enforced" warning was logged (at most one per ``WARN_INTERVAL_S``)."""
        self._rng = rng or random.Random()
        self._clock = clock
        self._outage_started: float | None = clock()
        """``clock()`` when the collector was last lost (or the client made); None while connected."""
        self._last_warned: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: Any = None
        """One long-lived channel for the unary calls (``SyncKeys``, ``Leave``); made on first use."""
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
        """Tell the collector this proxy leaves (when connected), cancel the subscription and close
        the channels; the state keeps what it holds. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            if self.state.connected:
                await self._leave()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.hook_forwarder is not None:
            await self.hook_forwarder.stop()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace=None)
        self.state.set_connected(False)

    def _stub(self) -> Any:
        import grpc

        from spendgate_semconv import control_pb2_grpc

        assert self.endpoint is not None
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.endpoint)
        return control_pb2_grpc.ControlPlaneStub(self._channel)

    async def _leave(self) -> None:
        """``Leave``: so the collector does not count this clean stop as a lost proxy; best effort."""
        try:
            await self._stub().Leave(control_pb2.LeaveRequest(proxy_id=self.proxy_id), timeout=LEAVE_TIMEOUT_S)
        except Exception as exc:  # an old or unreachable collector: it will count the proxy as lost
            logger.debug("control plane not told that this proxy leaves: %s", exc)

    async def sync_keys(self, timeout: float = SYNC_TIMEOUT_S) -> bool:
        """Ask the collector to read its key source now (``SyncKeys``), then wait (at most ``timeout``)
        until the stream has applied the version it answers; True when it has. Raises gRPC's errors
        (collector unreachable, or too old to know the call)."""
        if self.endpoint is None:
            return False
        reply = await self._stub().SyncKeys(control_pb2.SyncKeysRequest(proxy_id=self.proxy_id), timeout=timeout)
        return await self.state.wait_version(reply.epoch, reply.version, timeout)

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
        outage = self._outage_started
        disconnected_s = None
        if self.endpoint is not None and not self.state.connected and outage is not None:
            disconnected_s = round(self._clock() - outage, 3)
        return {
            "endpoint": self.endpoint,
            "proxy_id": self.proxy_id,
            "disconnected_s": disconnected_s,
            "subscribes": self.subscribes,
            "failures": self.failures,
            "warnings": self.warnings,
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
            self.state.set_connected(False)
            # A stream that delivered was healthy: start the backoff over (still jittered).
            self.failures = 0 if delivered else self.failures + 1
            delay = self.backoff(self.failures)
            self.note_failure(delay)
            await asyncio.sleep(delay)

    def note_failure(self, retry_in: float) -> bool:
        """Log that budgets are not enforced: at the first failure of an outage, then at most once
        every ``WARN_INTERVAL_S`` (debug in between); returns whether it warned."""
        now = self._clock()
        if self._outage_started is None:
            self._outage_started = now
        down_for = _duration(now - self._outage_started)
        if self._last_warned is not None and now - self._last_warned < WARN_INTERVAL_S:
            logger.debug(
                "control plane at %s still unreachable (%s); retrying in %.1fs",
                self.endpoint,
                self.last_error,
                retry_in,
            )
            return False
        self._last_warned = now
        self.warnings += 1
        if self.state.ever_connected:
            since = datetime.fromtimestamp(self.state.changed_at, UTC).strftime("%H:%M:%S UTC")
            logger.warning(
                "control stream to %s lost since %s (%s ago; %s): budgets and key updates from the collector "
                "are NOT enforced until it is back; retrying in %.1fs",
                self.endpoint,
                since,
                down_for,
                self.last_error,
                retry_in,
            )
        else:
            logger.warning(
                "no control stream from the collector at %s for %s since start (%s): budgets and key updates "
                "from a collector are NOT enforced until it connects; retrying in %.1fs "
                "(control: off runs standalone)",
                self.endpoint,
                down_for,
                self.last_error,
                retry_in,
            )
        return True

    def note_connected(self) -> None:
        """A stream delivered (call before ``state.set_connected``): the outage, if any, is over; say
        so when it was warned about."""
        outage, self._outage_started = self._outage_started, None
        warned, self._last_warned = self._last_warned, None
        if outage is not None and warned is not None:
            logger.warning(
                "control stream to %s %s after %s: budgets are enforced",
                self.endpoint,
                "restored" if self.state.ever_connected else "established",
                _duration(self._clock() - outage),
            )

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
                    self.note_connected()
                    state.set_connected(True)
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
    if cfg.endpoint is None:
        logger.warning(
            "control: off: this proxy runs standalone; budgets and key updates from a collector are NOT "
            "enforced (keys come from %s only)",
            settings.keys_file,
        )
    else:
        logger.info("control: subscribing to the collector at %s for keys and budget verdicts", cfg.endpoint)
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
