"""The proxy's applied control state: ``ControlState``, what the request path reads.

The collector streams the key directory, budget verdicts, budget states and Cursor hook windows
(``spendgate_semconv/control.proto``); the client (``client.py``) applies the snapshot, then each
delta, into one ``ControlState``. While disconnected the state stays as it was (fail-static):
pauses and routes keep being enforced, except a verdict whose ``until_ms`` has passed.

``ControlState`` is a plain object changed only by that task on the proxy's event loop; the request
path reads it with no lock and no await. ``verdict_for`` costs one attribute check when no verdict
is in force, and ``budget_for`` (the tightest budget a call is within, for response headers; see
``budget_state.py``) one when no budget exists. Before the first snapshot, ``ready`` is False and
``should_refuse`` says what the ``on_no_state`` policy wants: ``fail_open`` serves with the local
key file, ``fail_closed`` refuses. A collector without a key source says so in its snapshot
(``no_key_directory``): the proxy then keeps its key file and applies only the rest.

    client.state.verdict_for(principal, repo, model)
    client.state.budget_for(principal, repo, model)   # -> BudgetStatus | None
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from spendgate_proxy.attribution.hook_forward import attribution_from
from spendgate_proxy.control.budget_state import BudgetIndex, BudgetStatus, status_from
from spendgate_proxy.keys import KeyDirectory, KeyRecord, Principal
from spendgate_semconv import control_pb2
from spendgate_semconv.scope import Scope

if TYPE_CHECKING:
    from spendgate_proxy.attribution.hook_window import HookWindows

PAUSE = "pause"
ROUTE = "route"

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
class ActiveVerdict:
    """A pause or route verdict in force, as the collector sent it."""

    id: str
    action: str
    """``pause`` or ``route``."""
    scope: Scope
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
        return self.scope.matches(
            user=user, team=team, cost_center=cost_center, repo=repo, key_id=key_id, model=model
        ) and (self.action == PAUSE or self.route_from is None or self.route_from == model)


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
        scope=Scope(
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
