"""The control-plane gRPC server: streams keys, budget verdicts and states, and Cursor hook windows to proxies.

Two sources feed one ``ControlLog``: the verdict board (budgets write verdicts and rate-limited
budget states to it from the pipeline's thread) and the keys file (polled for changes every
``keys_poll_s``). The log gives every change one version in a single gap-free sequence per ``epoch``
(random per collector lifetime), keeps a bounded history for resuming proxies, and ``ControlServer``
streams it: a snapshot or the missed deltas first, then each change as it happens, and a heartbeat
after ``heartbeat_s`` of silence. The wire contract is ``spendgate_semconv/control.proto``;
``docs/control-plane.md`` explains the guarantees. Proxies also forward Cursor hook reports
(``ReportAttribution``) into an ``AttributionWindows``, whose new or extended windows join the log.

Lifecycle: ``start()`` binds and returns; ``stop(grace)`` ends every stream cleanly (proxies
resubscribe elsewhere or later) and is idempotent; ``stop(None)`` drops streams abruptly, as a crash
would. Everything runs on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from spendgate_semconv import control_pb2, control_pb2_grpc

from .attribution.windows import AttributionWindows, window_from
from .budgets.board import PAUSE, ROUTE, BudgetState, Scope, Verdict, VerdictBoard
from .keys.file import KeyFileError, file_stamp, read_key_entries

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_KEYS_POLL_S = 1.0
MAX_HISTORY = 10_000
"""Updates kept for resuming proxies; a proxy further behind gets a snapshot."""
# A snapshot carries every key (~200 bytes each): 64 MiB leaves room for ~300k keys, far past the
# 4 MiB gRPC default that a large organisation's directory could exceed.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# How often the board follower re-checks for closing while the board is idle.
_BOARD_WAIT_S = 1.0

_ACTIONS = {PAUSE: control_pb2.Verdict.PAUSE, ROUTE: control_pb2.Verdict.ROUTE}


def _now_ms() -> int:
    return int(time.time() * 1000)


def scope_message(s: Scope) -> control_pb2.Scope:
    """A board scope as its wire message (``None`` fields become empty strings)."""
    return control_pb2.Scope(
        user=s.user or "",
        team=s.team or "",
        cost_center=s.cost_center or "",
        repo=s.repo or "",
        key_id=s.key_id or "",
        model=s.model or "",
    )


def verdict_message(verdict: Verdict) -> control_pb2.Verdict:
    """A board verdict as its wire message (``None`` scope fields become empty strings)."""
    return control_pb2.Verdict(
        id=verdict.id,
        action=_ACTIONS.get(verdict.action, control_pb2.Verdict.ACTION_UNSPECIFIED),
        scope=scope_message(verdict.scope),
        budget_id=verdict.budget_id,
        reason=verdict.reason,
        spend_usd=verdict.spend_usd,
        limit_usd=verdict.limit_usd,
        since_ms=verdict.since_ms,
        until_ms=verdict.until_ms,
        route_from=verdict.route_from or "",
        route_to=verdict.route_to or "",
        override_hint=verdict.override_hint,
    )


def budget_state_message(b: BudgetState) -> control_pb2.BudgetState:
    """A board budget state as its wire message."""
    return control_pb2.BudgetState(
        budget_id=b.budget_id,
        scope=scope_message(b.scope),
        limit_usd=b.limit_usd,
        spend_usd=b.spend_usd,
        period_start_ms=b.period_start_ms,
        period_end_ms=b.period_end_ms,
        state=b.state,
        lifted=b.lifted,
    )


class ControlLog:
    """Keys, verdicts and budget states with one version sequence, a bounded history of deltas and asyncio waiters.

    Only the event loop touches it (the board follower copies board changes in), so it needs no lock.
    Stored updates are never mutated after they are appended: every stream sends the same objects.
    """

    def __init__(self, *, epoch: int | None = None, max_history: int = MAX_HISTORY) -> None:
        # Non-zero, so 0 can mean "no state" in SubscribeRequest; 63 bits keep it an exact JSON number too.
        self.epoch = epoch if epoch is not None else secrets.randbits(63) + 1
        self.max_history = max_history
        self.keys: dict[str, control_pb2.KeyEntry] = {}
        self.verdicts: dict[str, control_pb2.Verdict] = {}
        self.budgets: dict[str, control_pb2.BudgetState] = {}
        # Cursor hook windows by developer; a lapsed one is left out of snapshots and pruned on the next change.
        self.windows: dict[str, control_pb2.AttributionWindow] = {}
        self._version = 0
        self._history: deque[control_pb2.ControlUpdate] = deque()
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    def apply(
        self,
        *,
        keys_upsert: Iterable[control_pb2.KeyEntry] = (),
        keys_removed: Iterable[str] = (),
        verdicts_upsert: Iterable[control_pb2.Verdict] = (),
        verdicts_removed: Iterable[str] = (),
        budgets_upsert: Iterable[control_pb2.BudgetState] = (),
        budgets_removed: Iterable[str] = (),
        windows_upsert: Iterable[control_pb2.AttributionWindow] = (),
    ) -> int:
        """Record one change and return the new version; a change that alters nothing keeps the version."""
        k_ups = [k for k in keys_upsert if self.keys.get(k.key_id) != k]
        k_up_ids = {k.key_id for k in k_ups}
        k_rms = [i for i in dict.fromkeys(keys_removed) if i in self.keys and i not in k_up_ids]
        v_ups = [v for v in verdicts_upsert if self.verdicts.get(v.id) != v]
        v_up_ids = {v.id for v in v_ups}
        v_rms = [i for i in dict.fromkeys(verdicts_removed) if i in self.verdicts and i not in v_up_ids]
        b_ups = [b for b in budgets_upsert if self.budgets.get(b.budget_id) != b]
        b_up_ids = {b.budget_id for b in b_ups}
        b_rms = [i for i in dict.fromkeys(budgets_removed) if i in self.budgets and i not in b_up_ids]
        w_ups = [w for w in windows_upsert if self.windows.get(w.user) != w]
        if not (k_ups or k_rms or v_ups or v_rms or b_ups or b_rms or w_ups):
            return self._version
        for k in k_ups:
            self.keys[k.key_id] = k
        for i in k_rms:
            del self.keys[i]
        for v in v_ups:
            self.verdicts[v.id] = v
        for i in v_rms:
            del self.verdicts[i]
        for b in b_ups:
            self.budgets[b.budget_id] = b
        for i in b_rms:
            del self.budgets[i]
        if w_ups:
            # Proxies expire windows themselves, so pruning lapsed ones here needs no version.
            now_ns = time.time_ns()
            self.windows = {u: w for u, w in self.windows.items() if w.until_unix_ns > now_ns}
            for w in w_ups:
                self.windows[w.user] = w
        self._version += 1
        self._history.append(
            control_pb2.ControlUpdate(
                version=self._version,
                epoch=self.epoch,
                keys_upsert=k_ups,
                keys_removed=k_rms,
                verdicts_upsert=v_ups,
                verdicts_removed=v_rms,
                budgets_upsert=b_ups,
                budgets_removed=b_rms,
                windows_upsert=w_ups,
                server_time_unix_ms=_now_ms(),
            )
        )
        while len(self._history) > self.max_history:
            self._history.popleft()
        self._wake()
        return self._version

    def snapshot(self) -> control_pb2.ControlUpdate:
        """The whole state at the current version (windows: only those still live)."""
        now_ns = time.time_ns()
        return control_pb2.ControlUpdate(
            version=self._version,
            epoch=self.epoch,
            snapshot=True,
            keys_upsert=self.keys.values(),
            verdicts_upsert=self.verdicts.values(),
            budgets_upsert=self.budgets.values(),
            windows_upsert=[w for w in self.windows.values() if w.until_unix_ns > now_ns],
            server_time_unix_ms=_now_ms(),
        )

    def heartbeat(self, version: int) -> control_pb2.ControlUpdate:
        """ "Nothing new; you are up to date at ``version``"."""
        return control_pb2.ControlUpdate(
            version=version, epoch=self.epoch, heartbeat=True, server_time_unix_ms=_now_ms()
        )

    def since(self, version: int) -> list[control_pb2.ControlUpdate] | None:
        """Deltas after ``version`` in order; None when the history does not reach back that far."""
        if version > self._version:
            return None
        if version == self._version:
            return []
        if not self._history or self._history[0].version > version + 1:
            return None
        # Versions are consecutive, so the first wanted update sits at a known offset.
        start = version + 1 - self._history[0].version
        return list(itertools.islice(self._history, start, None))

    async def wait_changed(self, version: int, timeout: float) -> bool:
        """Wait until the log is past ``version``, closed, or ``timeout`` seconds pass; True when it moved."""
        if self._version > version or self._closed:
            return self._version > version
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self._version > version

    def close(self) -> None:
        """Wake every waiting stream so it can end."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


@dataclass(frozen=True, slots=True)
class ProxyConnection:
    """One subscribed proxy, for ``spendgate status`` and ``/healthz``."""

    proxy_id: str
    peer: str
    proxy_version: str
    connected_since_ms: int
    resumed: bool
    """True when the stream started from the proxy's version (deltas), False when from a snapshot."""
    last_version_sent: int = 0
    last_sent_ms: int = 0


class ControlServer(control_pb2_grpc.ControlPlaneServicer):
    """Serves ``ControlPlane/Subscribe`` on ``address`` (port 0 = any free port, see ``port``)."""

    def __init__(
        self,
        address: str,
        board: VerdictBoard,
        keys_file: Path | None = None,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        keys_poll_s: float = DEFAULT_KEYS_POLL_S,
        max_history: int = MAX_HISTORY,
        epoch: int | None = None,
        windows: AttributionWindows | None = None,
    ) -> None:
        self._address = address
        self.windows = windows if windows is not None else AttributionWindows()
        """Cursor hook windows proxies report; the pipeline's normaliser stamps spans from the same object."""
        self._board = board
        self._keys_file = keys_file
        self._heartbeat_s = heartbeat_s
        self._keys_poll_s = keys_poll_s
        self._max_history = max_history
        self._epoch = epoch
        self.log: ControlLog | None = None
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._board_version = 0
        self._key_stamp: tuple[int, int, int] | None = None
        self._connections: dict[int, ProxyConnection] = {}
        self._next_conn = itertools.count(1)
        self._subscribes = 0
        self._snapshots_sent = 0

    # --- lifecycle

    async def start(self) -> None:
        """Load the current keys and verdicts, bind and serve; raise ``OSError`` when the address is taken."""
        if self._server is not None:
            return
        # Built here, not in __init__, so its asyncio objects belong to the running loop.
        self.log = ControlLog(epoch=self._epoch, max_history=self._max_history)
        await self._reload_keys()
        self._pull_board()
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Without this, a second collector could bind the same port and take half of the proxies.
                ("grpc.so_reuseport", 0),
            ]
        )
        control_pb2_grpc.add_ControlPlaneServicer_to_server(self, server)
        try:
            self.port = server.add_insecure_port(self._address)
        except RuntimeError as exc:
            raise OSError(f"cannot bind the control plane to {self._address}: {exc}") from None
        await server.start()
        self._server = server
        self._tasks = [asyncio.create_task(self._follow_board(), name="spendgate-control-board")]
        if self._keys_file is not None:
            self._tasks.append(asyncio.create_task(self._follow_keys(), name="spendgate-control-keys"))
        logger.info("control plane listening on port %d (epoch %d)", self.port, self.log.epoch)

    async def stop(self, grace: float | None = 1.0) -> None:
        """End every stream and stop serving. ``grace=None`` cuts streams as a crash would. Idempotent."""
        server, self._server = self._server, None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is None:
            return
        if grace is not None and self.log is not None:
            self.log.close()  # streams return, so proxies see a clean end and resubscribe at once
        await server.stop(grace)

    # --- introspection

    def connected(self) -> list[ProxyConnection]:
        """The proxies subscribed right now."""
        return list(self._connections.values())

    def stats(self) -> dict[str, Any]:
        """A snapshot for ``/healthz``: epoch, version, what the log holds, connected proxies."""
        log = self.log
        return {
            "address": self._address,
            "port": self.port,
            "epoch": log.epoch if log else None,
            "version": log.version if log else 0,
            "keys": len(log.keys) if log else 0,
            "verdicts": len(log.verdicts) if log else 0,
            "budgets": len(log.budgets) if log else 0,
            "attribution_windows": self.windows.stats(),
            "subscribes": self._subscribes,
            "snapshots_sent": self._snapshots_sent,
            "proxies": [
                {
                    "proxy_id": c.proxy_id,
                    "peer": c.peer,
                    "proxy_version": c.proxy_version,
                    "connected_since_ms": c.connected_since_ms,
                    "resumed": c.resumed,
                    "last_version_sent": c.last_version_sent,
                    "last_sent_ms": c.last_sent_ms,
                }
                for c in self._connections.values()
            ],
        }

    # --- sources

    def _pull_board(self) -> None:
        """Copy board changes past the last one seen into the log, one log version per board change."""
        assert self.log is not None
        changes = self._board.changes_since(self._board_version)
        if changes is None:
            # The board's history no longer reaches back (or it restarted): converge by difference.
            version, verdicts, budgets = self._board.state()
            current = {v.id: verdict_message(v) for v in verdicts}
            states = {b.budget_id: budget_state_message(b) for b in budgets}
            self.log.apply(
                verdicts_upsert=current.values(),
                verdicts_removed=[i for i in self.log.verdicts if i not in current],
                budgets_upsert=states.values(),
                budgets_removed=[i for i in self.log.budgets if i not in states],
            )
            self._board_version = version
            return
        for change in changes:
            self.log.apply(
                verdicts_upsert=[verdict_message(v) for v in change.upserts],
                verdicts_removed=change.removals,
                budgets_upsert=[budget_state_message(b) for b in change.budgets],
                budgets_removed=change.budgets_removed,
            )
            self._board_version = change.version

    async def _follow_board(self) -> None:
        while True:
            if await self._board.wait_changed(self._board_version, _BOARD_WAIT_S):
                self._pull_board()

    async def _reload_keys(self) -> None:
        """Re-read the keys file when it changed and record the difference as one change."""
        assert self.log is not None
        if self._keys_file is None:
            return
        stamp = file_stamp(self._keys_file)
        if stamp == self._key_stamp:
            return
        try:
            entries = await asyncio.to_thread(read_key_entries, self._keys_file)
        except KeyFileError as exc:
            # A half-edited file must not strip keys from every proxy: keep streaming the last good one.
            logger.warning("keys file not (re)loaded, proxies keep the previous directory: %s", exc)
            self._key_stamp = stamp
            return
        self._key_stamp = stamp
        self.log.apply(keys_upsert=entries.values(), keys_removed=[i for i in self.log.keys if i not in entries])

    async def _follow_keys(self) -> None:
        while True:
            await asyncio.sleep(self._keys_poll_s)
            try:
                await self._reload_keys()
            except Exception:  # the follower must outlive any one bad read
                logger.exception("keys file check failed")

    # --- the RPC

    async def Subscribe(  # named by the .proto
        self, request: control_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[control_pb2.ControlUpdate]:
        log = self.log
        if log is None or log.closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane is shutting down")
            return
        self._subscribes += 1
        missed = log.since(request.resume_version) if request.epoch == log.epoch else None
        conn_id = next(self._next_conn)
        conn = ProxyConnection(
            proxy_id=request.proxy_id or "(unnamed)",
            peer=context.peer(),
            proxy_version=request.proxy_version,
            connected_since_ms=_now_ms(),
            resumed=missed is not None,
        )
        self._connections[conn_id] = conn
        logger.info(
            "proxy %s subscribed from %s: %s",
            conn.proxy_id,
            conn.peer,
            f"resuming at version {request.resume_version}" if missed is not None else "snapshot",
        )

        def sent(update: control_pb2.ControlUpdate) -> None:
            nonlocal conn
            conn = replace(conn, last_version_sent=update.version, last_sent_ms=_now_ms())
            self._connections[conn_id] = conn

        try:
            if missed is None:
                update = log.snapshot()
                self._snapshots_sent += 1
            elif missed:
                update = None
            else:
                # Nothing missed: say so at once, so the proxy knows it is connected and current.
                update = log.heartbeat(request.resume_version)
            if update is not None:
                yield update
                sent(update)
                version = update.version
            else:
                version = request.resume_version
            while not log.closed:
                pending = log.since(version)
                if pending is None:  # this proxy fell behind the history: start it over
                    pending = [log.snapshot()]
                    self._snapshots_sent += 1
                for update in pending:
                    yield update
                    sent(update)
                    version = update.version
                if pending:
                    continue
                if not await log.wait_changed(version, self._heartbeat_s) and not log.closed:
                    update = log.heartbeat(version)
                    yield update
                    sent(update)
        finally:
            self._connections.pop(conn_id, None)
            logger.info("proxy %s unsubscribed", conn.proxy_id)

    async def ReportAttribution(  # named by the .proto
        self, request: control_pb2.AttributionReport, context: grpc.aio.ServicerContext
    ) -> control_pb2.AttributionAck:
        """Merge one forwarded Cursor hook report and publish the window when it is new or much longer."""
        log = self.log
        if log is None or log.closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane is shutting down")
        try:
            window = window_from(request.window)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        current, publish = self.windows.report(window)
        if publish:
            assert log is not None
            log.apply(windows_upsert=[current.message()])
        return control_pb2.AttributionAck(window=current.message())
