"""Forward Cursor hook reports to the collector (``ReportAttribution``), fire and forget.

``POST /hooks/cursor`` must answer at once, and a slow or absent collector must never hold it up:
the route only calls :meth:`HookForwarder.submit` (a ``put_nowait`` on a bounded queue) and one
asyncio task sends the queued windows one by one over a long-lived gRPC channel. A full queue or a
failed send drops the report and counts it (``stats()``, in the proxy's ``/healthz``): the window
is already live on this proxy, and the developer's next hook event reports it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from spendgate_proxy.attribution.hook_window import HookAttribution
from spendgate_semconv import control_pb2, windows

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 1024
"""Reports waiting to be sent; a developer reports a few per minute, so this only fills when the collector is gone."""

SEND_TIMEOUT_S = 2.0
"""Per report: a healthy collector answers in about a millisecond on the same network."""


def window_message(user: str, window: HookAttribution) -> control_pb2.AttributionWindow:
    """A proxy window as its wire form (``None`` fields become empty strings)."""
    return windows.to_message(user, window)


def attribution_from(msg: control_pb2.AttributionWindow) -> HookAttribution:
    """A wire window as the proxy's ``HookAttribution`` (empty strings become None)."""
    return windows.from_message(msg)


class HookForwarder:
    """Sends hook windows to the collector's control plane at ``endpoint`` in the background."""

    def __init__(self, endpoint: str, proxy_id: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.endpoint = endpoint
        self.proxy_id = proxy_id
        self.max_queue = max_queue
        self.sent = 0
        self.dropped = 0
        """Reports never delivered: the queue was full, or the send failed."""
        self.last_error: str | None = None
        self._queue: asyncio.Queue[control_pb2.AttributionWindow] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sending task in the running loop (no-op when started)."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue(self.max_queue)
        self._task = asyncio.create_task(self._run(), name="spendgate-hook-forwarder")

    async def stop(self) -> None:
        """Stop sending; reports still queued are dropped (the collector learns them from the next event)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def submit(self, user: str, window: HookAttribution) -> bool:
        """Queue one window without waiting; False (and counted) when it was dropped."""
        queue = self._queue
        if queue is None:
            self.dropped += 1
            return False
        try:
            queue.put_nowait(window_message(user, window))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "queued": self._queue.qsize() if self._queue is not None else 0,
            "sent": self.sent,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    async def _run(self) -> None:
        import grpc

        from spendgate_semconv import control_pb2_grpc  # grpc only when a collector is configured

        assert self._queue is not None
        queue = self._queue
        # One channel for the proxy's life: gRPC reconnects it itself, and a send while the
        # collector is down fails at once (UNAVAILABLE) rather than waiting.
        channel = grpc.aio.insecure_channel(self.endpoint)
        stub = control_pb2_grpc.ControlPlaneStub(channel)
        try:
            while True:
                msg = await queue.get()
                try:
                    await stub.ReportAttribution(
                        control_pb2.AttributionReport(proxy_id=self.proxy_id, window=msg), timeout=SEND_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as exc:
                    self.dropped += 1
                    self.last_error = f"{exc.code().name}: {exc.details()}"
                    logger.debug("hook report not forwarded: %s", self.last_error)
                else:
                    self.sent += 1
        finally:
            await channel.close(grace=None)
