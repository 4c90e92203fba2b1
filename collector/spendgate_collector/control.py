"""The control-plane gRPC server: streams keys, budget verdicts and states, and Cursor hook windows to proxies.

Two sources feed one ``ControlLog``: the budget engine (it publishes verdicts and rate-limited
budget states into it directly, from the pipeline's thread) and the keys file (polled for changes
every ``keys_poll_s``). The log gives every change one version in a single gap-free sequence per
``epoch`` (random per collector lifetime), keeps a bounded history for resuming proxies, and
``ControlServer`` streams it: a snapshot or the missed deltas first, then each change as it happens,
and a heartbeat after ``heartbeat_s`` of silence. A proxy that meets a key it does not hold calls
``SyncKeys``: the keys file is re-read at once (when it changed) and the answer names the version that
holds it. The wire contract is ``spendgate_semconv/control.proto``; ``docs/control-plane.md`` explains
the guarantees. Proxies also forward Cursor hook reports
(``ReportAttribution``) into an ``AttributionWindows``, whose new or extended windows join the log.
Streams that open and end (and the ``Leave`` a proxy sends when it stops) go to a ``ProxyRoster``,
which lists the proxies budgets are not enforced on (``proxy_roster.py``, ``stats()["not_enforced"]``).

Lifecycle: ``start()`` binds and returns; ``stop(grace)`` ends every stream cleanly (proxies
resubscribe elsewhere or later) and is idempotent; ``stop(None)`` drops streams abruptly, as a crash
would. Everything runs on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from spendgate_semconv import control_pb2, control_pb2_grpc

from .attribution.windows import AttributionWindows, window_from
from .budgets.board import PAUSE, ROUTE, BudgetState, Scope, Verdict
from .keys.file import KeyFileError, file_stamp, read_key_entries
from .proxy_roster import ProxyRoster

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_KEYS_POLL_S = 1.0
MAX_HISTORY = 10_000
"""Updates kept for resuming proxies; a proxy further behind gets a snapshot."""
# A snapshot carries every key (~200 bytes each): 64 MiB leaves room for ~300k keys, far past the
# 4 MiB gRPC default that a large organisation's directory could exceed.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

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
    """The state proxies converge to: keys, verdicts, budget states and Cursor hook windows, versioned.

    Every change gets the next version in one gap-free sequence per ``epoch`` (random per collector
    lifetime), and the last ``max_history`` changes are kept as deltas for resuming proxies: the
    resume rule (epoch, version, snapshot) lives here and nowhere else. The budget engine publishes
    into it directly (``publish``, from the pipeline's writer thread, API threads and the budget
    timer); the control server records key-file changes and hook windows (``apply``, on the event
    loop). So a lock guards the state, and a stream waiting for the next change is woken on its own
    event loop with ``call_soon_threadsafe``: a writer never blocks on a reader and never touches
    another thread's loop. Stored updates are never mutated after they are appended: every stream
    sends the same objects.
    """

    def __init__(self, *, epoch: int | None = None, max_history: int = MAX_HISTORY, key_directory: bool = True) -> None:
        # Non-zero, so 0 can mean "no state" in SubscribeRequest; 63 bits keep it an exact JSON number too.
        self.epoch = epoch if epoch is not None else secrets.randbits(63) + 1
        self.max_history = max_history
        self.key_directory = key_directory
        """False when the collector has no key source: snapshots say so, and proxies keep their own key file."""
        self._lock = threading.Lock()
        self._keys: dict[str, control_pb2.KeyEntry] = {}
        self._verdicts: dict[str, control_pb2.Verdict] = {}
        self._budgets: dict[str, control_pb2.BudgetState] = {}
        # Cursor hook windows by developer; a lapsed one is left out of snapshots and pruned on the next change.
        self._windows: dict[str, control_pb2.AttributionWindow] = {}
        self._version = 0
        self._history: deque[control_pb2.ControlUpdate] = deque()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def version(self) -> int:
        return self._version

    # Copies, taken under the lock: writers on other threads may be changing the state meanwhile.

    @property
    def keys(self) -> dict[str, control_pb2.KeyEntry]:
        with self._lock:
            return dict(self._keys)

    @property
    def verdicts(self) -> dict[str, control_pb2.Verdict]:
        with self._lock:
            return dict(self._verdicts)

    @property
    def budgets(self) -> dict[str, control_pb2.BudgetState]:
        with self._lock:
            return dict(self._budgets)

    @property
    def windows(self) -> dict[str, control_pb2.AttributionWindow]:
        with self._lock:
            return dict(self._windows)

    def sizes(self) -> dict[str, int]:
        """How many keys, verdicts and budget states the log holds (for ``/healthz``)."""
        with self._lock:
            return {"keys": len(self._keys), "verdicts": len(self._verdicts), "budgets": len(self._budgets)}

    # --- writing (any thread)

    def publish(
        self,
        upserts: Sequence[Verdict] = (),
        removals: Sequence[str] = (),
        *,
        budgets: Sequence[BudgetState] = (),
        budgets_removed: Sequence[str] = (),
    ) -> int:
        """The budget engine's ``Board``: verdicts and budget states, in wire form, as one change."""
        return self.apply(
            verdicts_upsert=[verdict_message(v) for v in upserts],
            verdicts_removed=removals,
            budgets_upsert=[budget_state_message(b) for b in budgets],
            budgets_removed=budgets_removed,
        )

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
        """Record one change and return the new version; a change that alters nothing keeps the version.

        Any thread may call it. Lazy arguments are read before the lock is taken, so one that reads
        this log (its ``keys``, say) cannot deadlock.
        """
        keys = (list(keys_upsert), list(keys_removed))
        verdicts = (list(verdicts_upsert), list(verdicts_removed))
        budgets = (list(budgets_upsert), list(budgets_removed))
        windows = list(windows_upsert)
        with self._lock:
            k_ups, k_rms = _difference(self._keys, *keys, _KEY_ID)
            v_ups, v_rms = _difference(self._verdicts, *verdicts, _VERDICT_ID)
            b_ups, b_rms = _difference(self._budgets, *budgets, _BUDGET_ID)
            w_ups = [w for w in windows if self._windows.get(w.user) != w]
            if not (k_ups or k_rms or v_ups or v_rms or b_ups or b_rms or w_ups):
                return self._version
            _merge(self._keys, k_ups, k_rms, _KEY_ID)
            _merge(self._verdicts, v_ups, v_rms, _VERDICT_ID)
            _merge(self._budgets, b_ups, b_rms, _BUDGET_ID)
            if w_ups:
                # Proxies expire windows themselves, so pruning lapsed ones here needs no version.
                now_ns = time.time_ns()
                self._windows = {u: w for u, w in self._windows.items() if w.until_unix_ns > now_ns}
                for w in w_ups:
                    self._windows[w.user] = w
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
            version = self._version
            waiters, self._waiters = self._waiters, []
        _wake(waiters)
        return version

    # --- reading (the event loop)

    def snapshot(self) -> control_pb2.ControlUpdate:
        """The whole state at the current version (windows: only those still live)."""
        with self._lock:
            # Only references are copied under the lock; building the message copies the entries.
            version = self._version
            keys, verdicts, budgets = (
                list(self._keys.values()),
                list(self._verdicts.values()),
                list(self._budgets.values()),
            )
            windows = list(self._windows.values())
        now_ns = time.time_ns()
        return control_pb2.ControlUpdate(
            version=version,
            epoch=self.epoch,
            snapshot=True,
            keys_upsert=keys,
            verdicts_upsert=verdicts,
            budgets_upsert=budgets,
            windows_upsert=[w for w in windows if w.until_unix_ns > now_ns],
            server_time_unix_ms=_now_ms(),
            no_key_directory=not self.key_directory,
        )

    def heartbeat(self, version: int) -> control_pb2.ControlUpdate:
        """ "Nothing new; you are up to date at ``version``"."""
        return control_pb2.ControlUpdate(
            version=version, epoch=self.epoch, heartbeat=True, server_time_unix_ms=_now_ms()
        )

    def since(self, version: int) -> list[control_pb2.ControlUpdate] | None:
        """Deltas after ``version`` in order; None when the history does not reach back that far."""
        with self._lock:
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
        """Wait until the log is past ``version``, ``wake`` is called or ``timeout`` s pass; True when it moved."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._version > version:
                return True
            self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1].wait(), timeout)
        finally:
            with self._lock:  # heartbeats time out often: leave no waiter behind
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._version > version

    def wake(self) -> None:
        """Wake every waiting stream without a change (a closing server, so its streams can end)."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        _wake(waiters)


_KEY_ID: Callable[[Any], str] = operator.attrgetter("key_id")
_VERDICT_ID: Callable[[Any], str] = operator.attrgetter("id")
_BUDGET_ID: Callable[[Any], str] = operator.attrgetter("budget_id")


def _difference(
    current: dict[str, Any], upserts: Iterable[Any], removals: Iterable[str], id_of: Callable[[Any], str]
) -> tuple[list[Any], list[str]]:
    """The upserts that change something and the removals of ids present (and not upserted again)."""
    ups = [u for u in upserts if current.get(id_of(u)) != u]
    up_ids = {id_of(u) for u in ups}
    return ups, [i for i in dict.fromkeys(removals) if i in current and i not in up_ids]


def _merge(current: dict[str, Any], ups: list[Any], rms: list[str], id_of: Callable[[Any], str]) -> None:
    for u in ups:
        current[id_of(u)] = u
    for i in rms:
        del current[i]


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiters:
        # A stream on a loop that has closed meanwhile has nothing left to wake.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)


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
        log: ControlLog,
        keys_file: Path | None = None,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        keys_poll_s: float = DEFAULT_KEYS_POLL_S,
        windows: AttributionWindows | None = None,
        roster: ProxyRoster | None = None,
    ) -> None:
        self._address = address
        self.windows = windows if windows is not None else AttributionWindows()
        """Cursor hook windows proxies report; the pipeline's normaliser stamps spans from the same object."""
        self.roster = roster if roster is not None else ProxyRoster()
        """Lost streams and proxies seen only in spans; the normaliser reports the span side."""
        self.log = log
        """What is streamed; the budget engine publishes into it whether or not the server runs."""
        # Only the server knows its key source: without one, snapshots tell proxies to keep their key file.
        log.key_directory = keys_file is not None
        self._keys_file = keys_file
        self._heartbeat_s = heartbeat_s
        self._keys_poll_s = keys_poll_s
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._key_stamp: tuple[int, int, int] | None = None
        self._connections: dict[int, ProxyConnection] = {}
        self._leaving: set[int] = set()
        """Connections whose proxy called ``Leave``: their end is a clean stop, not a lost proxy."""
        self._next_conn = itertools.count(1)
        self._subscribes = 0
        self._snapshots_sent = 0
        self._key_syncs = 0

    # --- lifecycle

    async def start(self) -> None:
        """Load the current keys, bind and serve; raise ``OSError`` when the address is taken."""
        if self._server is not None:
            return
        self._closing = False
        await self._reload_keys()
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
        if grace is not None:
            self._closing = True
            self.log.wake()  # streams return, so proxies see a clean end and resubscribe at once
        await server.stop(grace)

    # --- introspection

    def connected(self) -> list[ProxyConnection]:
        """The proxies subscribed right now."""
        return list(self._connections.values())

    def not_enforced(self) -> list[dict[str, Any]]:
        """Proxies that lost their stream or send spans without one (``proxy_roster.py``), as JSON."""
        connected = {c.proxy_id for c in self._connections.values()}
        return [p.as_json() for p in self.roster.not_enforced(connected)]

    def stats(self) -> dict[str, Any]:
        """A snapshot for ``/healthz``: epoch, version, what the log holds, connected proxies."""
        log = self.log
        return {
            "address": self._address,
            "port": self.port,
            "epoch": log.epoch,
            "version": log.version,
            **log.sizes(),
            "attribution_windows": self.windows.stats(),
            "subscribes": self._subscribes,
            "snapshots_sent": self._snapshots_sent,
            "key_syncs": self._key_syncs,
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
            "not_enforced": self.not_enforced(),
        }

    # --- sources

    async def _reload_keys(self) -> None:
        """Re-read the keys file when it changed and record the difference as one change."""
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
        if self._closing:
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
        self.roster.subscribed(conn.proxy_id)
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
            while not self._closing:
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
                if not await log.wait_changed(version, self._heartbeat_s) and not self._closing:
                    update = log.heartbeat(version)
                    yield update
                    sent(update)
        finally:
            self._connections.pop(conn_id, None)
            left = conn_id in self._leaving
            self._leaving.discard(conn_id)
            # A collector that is stopping ends every stream itself; a second stream under the same
            # id (a reconnect the collector saw before the old stream's end) keeps the proxy enforced.
            if not self._closing and all(c.proxy_id != conn.proxy_id for c in self._connections.values()):
                self.roster.stream_ended(conn.proxy_id, left=left, peer=conn.peer)
                if not left:
                    logger.warning(
                        "proxy %s (%s) lost its control stream: budgets are not enforced on it until it resubscribes",
                        conn.proxy_id,
                        conn.peer,
                    )
            logger.info("proxy %s unsubscribed%s", conn.proxy_id, " (leaving)" if left else "")

    async def SyncKeys(  # named by the .proto
        self, request: control_pb2.SyncKeysRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.SyncKeysReply:
        """Re-read the keys file now when it changed, and answer the version whose state holds it.

        A proxy asks when it meets a key it does not hold (a key created a moment ago): it then waits
        for its stream to reach this version. Unchanged, this costs one ``stat``.
        """
        log = self.log
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane is shutting down")
        self._key_syncs += 1
        await self._reload_keys()
        return control_pb2.SyncKeysReply(epoch=log.epoch, version=log.version)

    async def Leave(  # named by the .proto
        self, request: control_pb2.LeaveRequest, context: grpc.aio.ServicerContext
    ) -> control_pb2.LeaveReply:
        """The proxy is stopping: its stream's end is a clean stop, not a lost proxy."""
        for conn_id, conn in self._connections.items():
            if conn.proxy_id == request.proxy_id:
                self._leaving.add(conn_id)
        return control_pb2.LeaveReply()

    async def ReportAttribution(  # named by the .proto
        self, request: control_pb2.AttributionReport, context: grpc.aio.ServicerContext
    ) -> control_pb2.AttributionAck:
        """Merge one forwarded Cursor hook report and publish the window when it is new or much longer."""
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane is shutting down")
        try:
            window = window_from(request.window)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        current, publish = self.windows.report(window)
        if publish:
            self.log.apply(windows_upsert=[current.message()])
        return control_pb2.AttributionAck(window=current.message())
