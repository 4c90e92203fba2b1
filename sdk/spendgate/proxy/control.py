"""The proxy's end of the control stream: ``ControlState`` (what the request path reads) and ``ControlClient``.

The collector streams the key directory, budget verdicts, budget states and Cursor hook windows
(``spendgate_semconv/control.proto``); the client also forwards the hook reports this proxy receives
(``hook_forward.py``) so the collector can share them.
``ControlClient`` is one asyncio task that subscribes, applies the snapshot then each delta into a
``ControlState``, and resubscribes after any failure with capped exponential backoff and jitter,
resuming from the last version it applied. Failures include a stream that goes silent for
``heartbeat_timeout_s`` (the collector heartbeats every few seconds, so silence means a dead
connection even when TCP has not noticed). While disconnected the state stays as it was
(fail-static): pauses and routes keep being enforced, except a verdict whose ``until_ms`` has passed.
New verdicts cannot arrive meanwhile, so the client warns that budgets are not enforced: at the
first failure, then at most once every ``WARN_INTERVAL_S``, saying for how long (and ``/healthz``
says so too: ``control.state`` is ``connected``, ``never_connected``, ``lost`` or ``standalone``).
A proxy that stops cleanly tells the collector first (``Leave``), so it is not counted as lost.

``ControlState`` is a plain object changed only by that task on the proxy's event loop; the request
path reads it with no lock and no await. ``verdict_for`` costs one attribute check when no verdict
is in force, and ``budget_for`` (the tightest budget a call is within, for response headers; see
``budget_state.py``) one when no budget exists. Before the first snapshot, ``ready`` is False and
``should_refuse`` says what the ``on_no_state`` policy wants: ``fail_open`` serves with the local
key file, ``fail_closed`` refuses. A collector without a key source says so in its snapshot
(``no_key_directory``): the proxy then keeps its key file and applies only the rest.

With ``control: off`` (no endpoint) the proxy is standalone: it logs at start that budgets and key
updates from a collector are not enforced.

    client = await start_control(settings, keys)   # settings.control; returns at once
    ...
    client.state.verdict_for(principal, repo, model)
    client.state.budget_for(principal, repo, model)   # -> BudgetStatus | None
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from spendgate.proxy.budget_state import BudgetIndex, BudgetStatus, status_from
from spendgate.proxy.hook_forward import HookForwarder, attribution_from
from spendgate.proxy.keys import KeyDirectory, KeyRecord, Principal
from spendgate_semconv import control_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    from spendgate.proxy.config import ControlSettings, ProxySettings
    from spendgate.proxy.hook_window import HookAttribution, HookWindows

logger = logging.getLogger(__name__)

PAUSE = "pause"
ROUTE = "route"
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

OnNoState = Literal["fail_open", "fail_closed"]


class ControlProtocolError(Exception):
    """The stream broke the version contract (a gap or a foreign epoch); the client resubscribes."""


class _Caller(Protocol):
    """Who a call is made by: the proxy's ``Principal`` fits."""

    key_id: str
    user: str
    team: str | None
    cost_center: str | None
    repo: str | None


@dataclass(frozen=True, slots=True)
class VerdictScope:
    """Which calls a verdict applies to: every non-None field must equal the call's; all None = every call."""

    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    key_id: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ActiveVerdict:
    """A pause or route verdict in force, as the collector sent it."""

    id: str
    action: str
    """``pause`` or ``route``."""
    scope: VerdictScope
    budget_id: str
    reason: str
    spend_usd: float
    limit_usd: float
    since_ms: int
    until_ms: int
    """Unix ms when it lapses on its own; 0 = until the collector lifts it."""
    route_from: str | None = None
    """``route``: the requested model that is rewritten (None = any model in scope)."""
    route_to: str | None = None
    override_hint: str = ""

    def applies(
        self,
        key_id: str | None,
        user: str | None,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        model: str | None,
    ) -> bool:
        """True when the call is in scope (and, for a route, asks for the routed model)."""
        s = self.scope
        return (
            (s.key_id is None or s.key_id == key_id)
            and (s.user is None or s.user == user)
            and (s.team is None or s.team == team)
            and (s.cost_center is None or s.cost_center == cost_center)
            and (s.repo is None or s.repo == repo)
            and (s.model is None or s.model == model)
            and (self.action == PAUSE or self.route_from is None or self.route_from == model)
        )


def _opt(text: str) -> str | None:
    return text or None


def _dt(unix_ms: int) -> datetime | None:
    return datetime.fromtimestamp(unix_ms / 1000, UTC) if unix_ms else None


def verdict_from(msg: control_pb2.Verdict) -> ActiveVerdict:
    """A wire verdict as an ``ActiveVerdict`` (empty strings become None)."""
    s = msg.scope
    return ActiveVerdict(
        id=msg.id,
        # An action this proxy does not know pauses: refusing is the safe reading of a budget verdict.
        action=ROUTE if msg.action == control_pb2.Verdict.ROUTE else PAUSE,
        scope=VerdictScope(
            user=_opt(s.user),
            team=_opt(s.team),
            cost_center=_opt(s.cost_center),
            repo=_opt(s.repo),
            key_id=_opt(s.key_id),
            model=_opt(s.model),
        ),
        budget_id=msg.budget_id,
        reason=msg.reason,
        spend_usd=msg.spend_usd,
        limit_usd=msg.limit_usd,
        since_ms=msg.since_ms,
        until_ms=msg.until_ms,
        route_from=_opt(msg.route_from),
        route_to=_opt(msg.route_to),
        override_hint=msg.override_hint,
    )


def record_from(entry: control_pb2.KeyEntry) -> KeyRecord:
    """A wire key entry as the proxy's ``KeyRecord``."""
    principal = Principal(
        key_id=entry.key_id,
        user=entry.user,
        team=_opt(entry.team),
        cost_center=_opt(entry.cost_center),
        repo=_opt(entry.repo),
        models=tuple(entry.models),
        expires_at=_dt(entry.expires_at_unix_ms),
        disabled=entry.disabled,
        revoked_at=_dt(entry.revoked_at_unix_ms),
    )
    return KeyRecord(principal, entry.hash, entry.prefix, _dt(entry.created_at_unix_ms) or datetime.now(UTC))


class _VerdictIndex:
    """Verdicts bucketed by their most selective scope field, so a lookup scans only candidates.

    Each verdict sits in exactly one bucket: its first set field of key_id, user, repo, team,
    cost_center, model (a route's ``route_from`` counts as its model, since it only ever matches
    that model), or else "everywhere". Buckets are ordered by rank: pauses before routes, then
    oldest first. A call looks up its own value in each non-empty bucket only, so 200 verdicts
    scoped to other teams cost one dict access and no comparison.
    """

    # Positions in the value tuple ``find`` builds from the call.
    _FIELDS = ("key_id", "user", "repo", "team", "cost_center", "model")

    def __init__(self, verdicts: list[ActiveVerdict]) -> None:
        ranked = sorted(verdicts, key=lambda v: (v.action != PAUSE, v.since_ms, v.id))
        buckets: list[dict[str, list[tuple[int, ActiveVerdict]]]] = [{} for _ in self._FIELDS]
        self.everywhere: list[tuple[int, ActiveVerdict]] = []
        for rank, v in enumerate(ranked):
            values = [getattr(v.scope, name) for name in self._FIELDS]
            if values[-1] is None and v.action == ROUTE:
                values[-1] = v.route_from
            for position, value in enumerate(values):
                if value is not None:
                    buckets[position].setdefault(value, []).append((rank, v))
                    break
            else:
                self.everywhere.append((rank, v))
        self.active = tuple((position, bucket) for position, bucket in enumerate(buckets) if bucket)

    def find(
        self,
        key_id: str | None,
        user: str | None,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        model: str | None,
        now_ms: int | None,
    ) -> ActiveVerdict | None:
        values = (key_id, user, repo, team, cost_center, model)
        best_rank = 1 << 62
        best: ActiveVerdict | None = None
        for position, bucket in self.active:
            candidates = bucket.get(values[position])  # type: ignore[arg-type]
            if candidates is None:
                continue
            for rank, v in candidates:  # ranked, so the first match is this bucket's best
                if rank > best_rank:
                    break
                if v.applies(key_id, user, team, cost_center, repo, model):
                    if v.until_ms:
                        now_ms = now_ms or int(time.time() * 1000)  # the clock only when it matters
                        if v.until_ms <= now_ms:
                            continue
                    best_rank, best = rank, v
                    break
        for rank, v in self.everywhere:
            if rank > best_rank:
                break
            if v.applies(key_id, user, team, cost_center, repo, model):
                if v.until_ms:
                    now_ms = now_ms or int(time.time() * 1000)
                    if v.until_ms <= now_ms:
                        continue
                return v
        return best


class ControlState:
    """Keys and verdicts from the control stream, applied in version order; read freely by the request path.

    ``keys`` is the proxy's ``KeyDirectory``: snapshots replace it, deltas upsert and remove in it.
    ``standalone=True`` (no control endpoint) is ready from the start and holds no verdicts.
    """

    def __init__(
        self,
        keys: KeyDirectory | None = None,
        *,
        on_no_state: OnNoState = "fail_open",
        standalone: bool = False,
        hook_windows: HookWindows | None = None,
    ) -> None:
        self.keys = keys
        self.hook_windows = hook_windows
        """Cursor hook windows other proxies received arrive here (a newer local report is kept)."""
        self.on_no_state: OnNoState = on_no_state
        self.standalone = standalone
        self.epoch = 0
        self.version = 0
        self.ready = standalone
        """True once a snapshot was applied (or when standalone): the state is the collector's."""
        self.connected = False
        """True while a stream is open and has delivered its first update."""
        self.ever_connected = False
        self.changed_at: float = time.time()
        """Unix time ``connected`` last changed (or the state was made): connected / lost since."""
        self.keys_from_collector = False
        """True once a snapshot brought a key directory (a collector without a key source sends none)."""
        self.last_heard_monotonic: float | None = None
        self.last_server_time_ms = 0
        self.snapshots = 0
        self.deltas = 0
        self.duplicates = 0
        self._verdicts: dict[str, ActiveVerdict] = {}
        # None when no verdict is in force: the request path's whole cost is then one attribute check.
        self._index: _VerdictIndex | None = None
        self._budgets: dict[str, BudgetStatus] = {}
        # Likewise None when no budget exists (or every one is lifted).
        self._budget_index: BudgetIndex | None = None
        self._ready = asyncio.Event()
        if standalone:
            self._ready.set()
        self._applied = asyncio.Event()
        """Set (and replaced) after every update that changed the state: ``wait_version`` waits on it."""

    # --- the request path (sync, lock-free)

    @property
    def should_refuse(self) -> bool:
        """True when requests must be refused: no state received yet and the policy is ``fail_closed``."""
        return not self.ready and self.on_no_state == "fail_closed"

    @property
    def by_repo(self) -> bool:
        """True while a verdict or budget is held: only then does admitting a call read its repo."""
        return self._index is not None or self._budget_index is not None

    def verdict_for(
        self, principal: _Caller, repo: str | None = None, model: str | None = None, *, now_ms: int | None = None
    ) -> ActiveVerdict | None:
        """The verdict for this call: the first matching pause, else a matching route, else None.

        ``repo`` is the call's attributed repository (None = the principal's default repo); ``model``
        the requested model. Verdicts past their ``until_ms`` no longer apply, even while disconnected.
        """
        index = self._index
        if index is None:
            return None
        return index.find(
            principal.key_id,
            principal.user,
            principal.team,
            principal.cost_center,
            repo if repo is not None else principal.repo,
            model,
            now_ms,
        )

    def budget_for(
        self, principal: _Caller, repo: str | None = None, model: str | None = None, *, now_ms: int | None = None
    ) -> BudgetStatus | None:
        """The tightest budget (least remaining) this call is within, or None; its ``headers`` go on the reply.

        Arguments as ``verdict_for``. A budget whose period has ended is skipped until the collector's
        update for the new period arrives.
        """
        index = self._budget_index
        if index is None:
            return None
        return index.find(
            (
                principal.key_id,
                principal.user,
                repo if repo is not None else principal.repo,
                principal.team,
                principal.cost_center,
                model,
            ),
            now_ms,
        )

    def budgets(self) -> list[BudgetStatus]:
        """Every budget state held."""
        return list(self._budgets.values())

    def verdicts(self) -> list[ActiveVerdict]:
        """Every verdict held (including any past ``until_ms`` not yet lifted by the collector)."""
        return list(self._verdicts.values())

    # --- the control task

    def apply(self, update: control_pb2.ControlUpdate) -> bool:
        """Apply one update in order; returns whether state changed. Raises ``ControlProtocolError`` on a gap.

        A delta at or below the current version is a duplicate and is skipped, so replays are harmless.
        """
        self.last_heard_monotonic = time.monotonic()
        self.last_server_time_ms = update.server_time_unix_ms
        if update.snapshot:
            self._verdicts = {v.id: verdict_from(v) for v in update.verdicts_upsert}
            self._reindex()
            self._budgets = {b.budget_id: status_from(b) for b in update.budgets_upsert}
            self._reindex_budgets()
            self.keys_from_collector = not update.no_key_directory
            if self.keys is not None:
                if self.keys_from_collector:
                    self.keys.replace([record_from(k) for k in update.keys_upsert])
                else:  # this collector has no key source: the key file keeps the directory
                    self.keys.release()
            # Windows are not replaced wholesale: one this proxy received itself may be newer.
            self._apply_windows(update)
            self.epoch, self.version = update.epoch, update.version
            self.snapshots += 1
            if not self.ready:
                self.ready = True
                self._ready.set()
            self._wake()
            return True
        if update.epoch != self.epoch:
            raise ControlProtocolError(f"update from epoch {update.epoch} while holding epoch {self.epoch}")
        if update.heartbeat:
            if update.version > self.version:
                raise ControlProtocolError(f"collector is at version {update.version}, this proxy at {self.version}")
            return False
        if update.version <= self.version:
            self.duplicates += 1
            return False
        if update.version != self.version + 1:
            raise ControlProtocolError(f"version gap: holding {self.version}, received {update.version}")
        if update.verdicts_upsert or update.verdicts_removed:
            verdicts = dict(self._verdicts)
            for v in update.verdicts_upsert:
                verdicts[v.id] = verdict_from(v)
            for verdict_id in update.verdicts_removed:
                verdicts.pop(verdict_id, None)
            self._verdicts = verdicts
            self._reindex()
        if update.budgets_upsert or update.budgets_removed:
            budgets = dict(self._budgets)
            for b in update.budgets_upsert:
                budgets[b.budget_id] = status_from(b)
            for budget_id in update.budgets_removed:
                budgets.pop(budget_id, None)
            self._budgets = budgets
            self._reindex_budgets()
        if self.keys is not None and self.keys_from_collector:
            if update.keys_upsert:
                self.keys.upsert([record_from(k) for k in update.keys_upsert])
            if update.keys_removed:
                self.keys.remove(list(update.keys_removed))
        self._apply_windows(update)
        self.version = update.version
        self.deltas += 1
        self._wake()
        return True

    def _wake(self) -> None:
        self._applied.set()
        self._applied = asyncio.Event()

    def set_connected(self, connected: bool) -> None:
        """Record that a stream delivered (True) or ended (False); ``changed_at`` dates the change."""
        if connected != self.connected:
            self.connected = connected
            self.changed_at = time.time()
        self.ever_connected = self.ever_connected or connected

    @property
    def control_state(self) -> str:
        """``standalone``, ``connected``, ``never_connected`` or ``lost`` (connected once, not now)."""
        if self.standalone:
            return "standalone"
        if self.connected:
            return "connected"
        return "lost" if self.ever_connected else "never_connected"

    async def wait_version(self, epoch: int, version: int, timeout: float) -> bool:
        """Wait until the state is at ``version`` of ``epoch`` or later (or ``timeout`` s); True when it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.epoch == epoch and self.version >= version):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), remaining)
        return True

    def _apply_windows(self, update: control_pb2.ControlUpdate) -> None:
        windows = self.hook_windows
        if windows is None:
            return
        for w in update.windows_upsert:
            windows.apply(w.user, attribution_from(w))

    def _reindex(self) -> None:
        self._index = _VerdictIndex(list(self._verdicts.values())) if self._verdicts else None

    def _reindex_budgets(self) -> None:
        # Built whole, then swapped in: the request path never sees a half-built index.
        index = BudgetIndex(list(self._budgets.values()))
        self._budget_index = index if index else None

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until ``ready`` (or ``timeout`` seconds); returns ``ready``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.ready

    def stats(self) -> dict[str, Any]:
        """A snapshot for the proxy's ``/healthz``."""
        heard = self.last_heard_monotonic
        state = self.control_state
        since = None if state == "standalone" else datetime.fromtimestamp(self.changed_at, UTC).isoformat()
        return {
            "state": state,
            # connected: since when; never_connected: since start; lost: since the stream ended.
            "since": since,
            "budgets_enforced": state == "connected",
            "keys_from": "collector" if self.keys is not None and self.keys.managed else "key file",
            "standalone": self.standalone,
            "ready": self.ready,
            "connected": self.connected,
            "on_no_state": self.on_no_state,
            "epoch": self.epoch,
            "version": self.version,
            "verdicts": len(self._verdicts),
            "budgets": len(self._budgets),
            "keys": len(self.keys) if self.keys is not None else None,
            "last_heard_s_ago": None if heard is None else round(time.monotonic() - heard, 3),
            "snapshots": self.snapshots,
            "deltas": self.deltas,
            "duplicates": self.duplicates,
        }


def _default_proxy_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def proxy_id_for(cfg: ControlSettings) -> str:
    """This proxy's id: ``control.proxy_id``, else host:pid. Its spans carry it too (``spendgate.proxy.id``)."""
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
