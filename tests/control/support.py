"""Helpers for control-plane tests: verdicts, a raw subscriber, a cuttable TCP hop, and polling waits.

Everything is real: gRPC servers and clients on loopback, the keys file written by the proxy's own
``create_key``. Waits poll the observed state with a deadline rather than sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from spendgate_collector.budgets.board import PAUSE, BudgetState, Scope, Verdict
from spendgate_semconv import control_pb2, control_pb2_grpc


def verdict(
    verdict_id: str,
    action: str = PAUSE,
    *,
    budget_id: str = "b-team",
    since_ms: int = 1_000,
    until_ms: int = 0,
    route_from: str | None = None,
    route_to: str | None = None,
    **scope: str,
) -> Verdict:
    """A board verdict with readable defaults; ``scope`` takes ``Scope`` field names."""
    return Verdict(
        id=verdict_id,
        action=action,
        scope=Scope(**scope),
        budget_id=budget_id,
        reason=f"{budget_id} over its limit",
        spend_usd=110.0,
        limit_usd=100.0,
        since_ms=since_ms,
        until_ms=until_ms,
        route_from=route_from,
        route_to=route_to,
        override_hint="ask #finops, or run `spendgate budgets override`",
    )


def budget_state(
    budget_id: str,
    *,
    limit_usd: float = 10.0,
    spend_usd: float = 0.0,
    period_end_ms: int = 4_102_444_800_000,  # 2100-01-01
    state: str = "ok",
    lifted: bool = False,
    **scope: str,
) -> BudgetState:
    """A board budget state with readable defaults; ``scope`` takes ``Scope`` field names."""
    return BudgetState(
        budget_id=budget_id,
        scope=Scope(**scope),
        limit_usd=limit_usd,
        spend_usd=spend_usd,
        period_start_ms=1_000,
        period_end_ms=period_end_ms,
        state=state,
        lifted=lifted,
    )


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` every 10 ms until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Subscriber:
    """A raw ``Subscribe`` call: the protocol exactly as a proxy sees it, without the client's logic."""

    def __init__(self, port: int, *, resume_version: int = 0, epoch: int = 0, proxy_id: str = "test-proxy") -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        request = control_pb2.SubscribeRequest(
            proxy_id=proxy_id, resume_version=resume_version, epoch=epoch, proxy_version="test"
        )
        self.call = control_pb2_grpc.ControlPlaneStub(self.channel).Subscribe(request)

    async def read(self, timeout: float = 5.0) -> control_pb2.ControlUpdate:
        update = await asyncio.wait_for(self.call.read(), timeout)
        assert update is not grpc.aio.EOF, "stream ended"
        return update

    async def read_change(self, timeout: float = 5.0) -> control_pb2.ControlUpdate:
        """The next update that is not a heartbeat."""
        while True:
            update = await self.read(timeout)
            if not update.heartbeat:
                return update

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close(grace=None)


@contextlib.asynccontextmanager
async def subscribed(port: int, **kwargs: Any) -> AsyncIterator[Subscriber]:
    sub = Subscriber(port, **kwargs)
    try:
        yield sub
    finally:
        await sub.close()


class TcpHop:
    """A TCP forwarder between a proxy and the collector, to cut the network without stopping either.

    ``cut()`` resets every forwarded connection; while ``refusing`` new connections are closed at
    once, as a partitioned network answers.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)
