"""``Collector``: the whole collector (receivers, pipeline, store, query API) as one embeddable object.

    collector = Collector(load_config("spendgate.yaml"))
    await collector.start()          # binds every listener; returns at once
    ...                              # runs in the caller's event loop (``spendgate up`` shares it)
    await collector.shutdown()       # stop receiving, store what was admitted, close; idempotent

Port 0 in any address binds a free port; the ``*_port`` / ``*_url`` properties tell which. Nothing
is opened in the constructor, so building one is free and ``shutdown()`` before ``start()`` is fine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .attribution.api import AttributionApi
from .attribution.windows import AttributionWindows
from .audit import AuditEntry, AuditLog
from .auth.gate import AuthGate
from .budgets import BudgetEngine, BudgetStorage, parse_webhook
from .budgets.api import BudgetsApi
from .budgets.webhooks import DeliveryOutcome, WebhookSender
from .config import CollectorConfig, split_host_port
from .control import ControlLog, ControlServer
from .cursor_admin import CursorAdminPoller
from .cursor_admin.config import build_poller
from .dashboard import Dashboard
from .dashboard.context import DashboardContext
from .errors import ConfigError
from .ingest.normalize import Normalizer
from .ingest.pipeline import Pipeline
from .keys.api import KeysApi
from .keys.file import KeyDirectory
from .keys.service import KeyService
from .metrics import CollectorMetrics
from .pricing import PriceOverridesError, Pricer, load_price_overrides
from .pricing.stage import PricingStage
from .proxy_roster import ProxyRoster
from .query.api import QueryApi
from .receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from .store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from .exporters import ExportManager

logger = logging.getLogger(__name__)

# Exports in flight when shutdown starts get this long to finish before receivers close.
SHUTDOWN_GRACE_S = 5.0
# How often budgets look for a new period or an expired override (ingest checks too).
BUDGET_CHECK_INTERVAL_S = 1.0


def _connect_host(address: str) -> str:
    """Host a local client should dial for a listener bound to ``address``."""
    host, _ = split_host_port(address)
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _budget_clock(offset_s: float) -> Callable[[], int]:
    """The budgets' clock: the wall clock, shifted by the ``clock_offset_s`` test hook when set."""
    if not offset_s:
        return time.time_ns
    offset_ns = round(offset_s * 1e9)
    logger.warning(
        "CLOCK OFFSET IN EFFECT: budgets see now %+g s from the real time (clock_offset_s, a test hook); "
        "periods, resets and overrides follow that shifted clock",
        offset_s,
    )
    return lambda: time.time_ns() + offset_ns


class Collector:
    """Receivers → pipeline → store, plus the query API, with a start/shutdown lifecycle."""

    def __init__(self, config: CollectorConfig | None = None, *, pricer: Pricer | None = None) -> None:
        self.config = config or CollectorConfig()
        self._pricer = pricer
        self.metrics = CollectorMetrics()
        self.store: SQLiteStore | None = None
        self.pipeline: Pipeline | None = None
        self.keys: KeyDirectory | None = None
        # The audit log (audit.py): budgets, keys and webhook deliveries write who did what to it.
        self.audit: AuditLog | None = None
        # Key management for the API and dashboard (keys/service.py); built once the store and audit table are open.
        self.key_service: KeyService | None = None
        self._grpc: OtlpGrpcReceiver | None = None
        self._http: OtlpHttpReceiver | None = None
        self._api_runner: web.AppRunner | None = None
        self._api_executor: ThreadPoolExecutor | None = None
        self._api_port: int | None = None
        # What proxies converge to (keys, verdicts, budget states, hook windows): budgets publish
        # into it and the control plane streams it. Built here, so budgets can be wired to it
        # before start() and its epoch is this collector's lifetime.
        self.control_log = ControlLog()
        self.control: ControlServer | None = None
        # Cursor hook windows: proxies report them over the control plane, the normaliser stamps spans.
        self.attribution_windows = AttributionWindows()
        # Proxies budgets are not enforced on: lost control streams (the control server) and proxy
        # ids on span resources (the normaliser).
        self.proxy_roster = ProxyRoster()
        # Budgets (budgets/, budgets/webhooks.py): the engine that puts verdicts on the board, and webhooks.
        self.budgets: BudgetEngine | None = None
        self.webhooks: WebhookSender | None = None
        self._budget_timer: asyncio.Task[None] | None = None
        self._budget_timer_stop: asyncio.Event | None = None
        # Exporters (exporters/): forward stored spans, priced, to other OTLP backends; None when none.
        self.exporters: ExportManager | None = None
        # Cursor-billed spend (cursor_admin/): the Admin API poller; None unless cursor_admin.enabled.
        self.cursor_admin: CursorAdminPoller | None = None
        self._started = False
        self._stopped = False
        self._stop_lock: asyncio.Lock | None = None

    # --- addresses

    @property
    def otlp_grpc_port(self) -> int | None:
        return self._grpc.port if self._grpc else None

    @property
    def otlp_http_port(self) -> int | None:
        return self._http.port if self._http else None

    @property
    def api_port(self) -> int | None:
        return self._api_port

    @property
    def control_port(self) -> int | None:
        return self.control.port if self.control else None

    @property
    def control_endpoint(self) -> str | None:
        """``host:port`` a proxy subscribes to (``control.endpoint`` in the proxy config)."""
        if self.config.control is None or self.control_port is None:
            return None
        return f"{_connect_host(self.config.control)}:{self.control_port}"

    @property
    def otlp_grpc_endpoint(self) -> str | None:
        """``host:port`` for an OTLP/gRPC exporter (``insecure=True``)."""
        if self.config.otlp_grpc is None or self.otlp_grpc_port is None:
            return None
        return f"{_connect_host(self.config.otlp_grpc)}:{self.otlp_grpc_port}"

    @property
    def otlp_http_url(self) -> str | None:
        """Full ``http://host:port/v1/traces`` URL for an OTLP/HTTP exporter."""
        if self.config.otlp_http is None or self.otlp_http_port is None:
            return None
        return f"http://{_connect_host(self.config.otlp_http)}:{self.otlp_http_port}/v1/traces"

    @property
    def api_url(self) -> str | None:
        """Base URL of the query API (``/api/...``, ``/healthz``, ``/metrics``)."""
        if self.config.api is None or self._api_port is None:
            return None
        return f"http://{_connect_host(self.config.api)}:{self._api_port}"

    # --- lifecycle

    async def start(self) -> None:
        """Open the store and bind every configured listener; raise ``ConfigError`` naming what failed."""
        if self._started:
            return
        if self._stopped:
            raise RuntimeError("a Collector cannot be restarted after shutdown; create a new one")
        self._started = True
        self._stop_lock = asyncio.Lock()
        try:
            await self._start()
        except BaseException:
            await self.shutdown()
            raise

    async def _start(self) -> None:
        cfg = self.config
        pricer = self._pricer or Pricer(self._load_overrides())
        if cfg.keys_file is not None and not cfg.keys_file.exists():
            logger.warning("keys file %s does not exist yet; key attribution starts when it does", cfg.keys_file)
        self.keys = KeyDirectory(cfg.keys_file)
        try:
            self.store = SQLiteStore(cfg.db, synchronous=cfg.sqlite_synchronous)
        except Exception as exc:
            raise ConfigError(f"db: cannot open {cfg.db}: {exc}") from exc
        try:
            self.audit = await asyncio.to_thread(AuditLog, cfg.db)
        except Exception as exc:
            raise ConfigError(f"db: cannot open the audit log in {cfg.db}: {exc}") from exc
        await self._start_budgets()
        assert self.budgets is not None
        self.key_service = KeyService(
            cfg.keys_file,
            audit=self.audit.add,
            last_used=self.store.key_last_used,
            self_serve_max_days=cfg.keys_self_serve_max_days,
        )
        await self._start_exporters()
        self.pipeline = Pipeline(
            self.store,
            Normalizer(self.keys, self.attribution_windows, self.proxy_roster),
            PricingStage(pricer),
            self.metrics,
            queue_max_bytes=cfg.queue_max_bytes,
            batch_max_bytes=cfg.batch_max_bytes,
            retention_days=cfg.retention_days,
            budgets=self.budgets,
            after_commit=self.exporters.after_commit if self.exporters else None,
        )
        await self.pipeline.start()
        if cfg.otlp_grpc is not None:
            self._grpc = OtlpGrpcReceiver(
                self.pipeline,
                cfg.otlp_grpc,
                max_message_bytes=cfg.max_request_bytes,
                retry_after_s=cfg.retry_after_s,
            )
            await self._bind("otlp_grpc", cfg.otlp_grpc, self._grpc.start)
        if cfg.otlp_http is not None:
            self._http = OtlpHttpReceiver(
                self.pipeline,
                cfg.otlp_http,
                max_request_bytes=cfg.max_request_bytes,
                retry_after_s=cfg.retry_after_s,
            )
            await self._bind("otlp_http", cfg.otlp_http, self._http.start)
        if cfg.api is not None:
            await self._bind("api", cfg.api, self._start_api)
        if cfg.control is not None:
            self.control = ControlServer(
                cfg.control,
                self.control_log,
                cfg.keys_file,
                heartbeat_s=cfg.control_heartbeat_s,
                windows=self.attribution_windows,
                roster=self.proxy_roster,
            )
            await self._bind("control", cfg.control, self.control.start)
        # Cursor-billed spend (cursor_admin/): it writes through the pipeline's writer thread.
        self.cursor_admin = build_poller(
            cfg.cursor_admin, self.store, cfg.db, keys=self.keys, writer=self.pipeline.write_records
        )
        if self.cursor_admin is not None:
            await self.cursor_admin.start()
        self._pricer = pricer
        logger.info(
            "collector started: otlp grpc=%s http=%s api=%s control=%s db=%s",
            self.otlp_grpc_endpoint,
            self.otlp_http_url,
            self.api_url,
            self.control_endpoint,
            cfg.db,
        )

    def _load_overrides(self) -> Any:
        if self.config.prices is None:
            return None
        try:
            return load_price_overrides(self.config.prices)
        except (PriceOverridesError, OSError) as exc:
            raise ConfigError(f"prices: {exc}") from exc

    @staticmethod
    async def _bind(field: str, address: str, start: Any) -> None:
        try:
            await start()
        except OSError as exc:
            raise ConfigError(f"{field}: cannot listen on {address}: {exc.strerror or exc}") from exc

    async def _start_budgets(self) -> None:
        """Open the budget tables, load budgets (then the config's), start webhooks and the timer."""
        assert self.store is not None and self.audit is not None
        cfg = self.config
        audit = self.audit
        try:
            storage = await asyncio.to_thread(BudgetStorage, cfg.db)
        except Exception as exc:
            raise ConfigError(f"db: cannot open the budget tables in {cfg.db}: {exc}") from exc

        async def record(outcome: DeliveryOutcome) -> None:
            details = {
                "url": outcome.url,
                "format": outcome.format,
                "attempts": outcome.attempts,
                "status": outcome.status,
                "error": outcome.error,
                "transition": {k: outcome.event.get(k) for k in ("from", "to", "cause", "period_start", "at")},
            }
            entry = AuditEntry(time.time_ns(), "spendgate", f"webhook.{outcome.outcome}", outcome.budget_id, details)
            await asyncio.to_thread(audit.add, [entry])

        self.webhooks = WebhookSender([parse_webhook(w) for w in cfg.webhooks], on_outcome=record)
        await self.webhooks.start()
        webhooks = self.webhooks
        self.budgets = BudgetEngine(
            storage,
            self.control_log,
            default_timezone=cfg.default_timezone,
            notify=lambda transition: webhooks.notify(transition.event()),
            clock=_budget_clock(cfg.clock_offset_s),
            state_refresh_s=cfg.control_budget_refresh_s,
        )
        await asyncio.to_thread(self.budgets.open)
        for spec in cfg.budgets:  # validated with the config; unchanged ones are left alone
            await asyncio.to_thread(self.budgets.put_budget, spec, actor="config")
        self._budget_timer_stop = asyncio.Event()
        self._budget_timer = asyncio.create_task(self._tick_budgets(), name="spendgate-budget-timer")

    async def _start_exporters(self) -> None:
        """Open the exporters' persistent queue and start their threads (resuming what is queued)."""
        if not self.config.exporters:
            return
        from .exporters import ExportManager

        path = self.config.exporters_queue_path
        manager = ExportManager(self.config.exporters, path, self.metrics.registry)
        try:
            await asyncio.to_thread(manager.start)
        except Exception as exc:
            await asyncio.to_thread(manager.shutdown)
            raise ConfigError(f"exporters: cannot start ({path}): {exc}") from exc
        self.exporters = manager

    async def _tick_budgets(self) -> None:
        assert self.budgets is not None and self._budget_timer_stop is not None
        while True:
            try:
                await asyncio.wait_for(self._budget_timer_stop.wait(), BUDGET_CHECK_INTERVAL_S)
                return
            except TimeoutError:
                pass
            try:
                await asyncio.to_thread(self.budgets.tick)
            except Exception:  # a failed check is retried on the next tick and on ingest
                logger.exception("budget check failed")

    async def _start_api(self) -> None:
        assert self.store is not None and self.config.api is not None
        self._api_executor = ThreadPoolExecutor(self.config.api_workers, thread_name_prefix="spendgate-api")
        api = QueryApi(self.store, self.metrics, self._api_executor, health=self.health)
        # Who may call what (auth/, docs/auth.md): the policy middleware guards every route added below.
        gate = AuthGate.build(self.config.auth, self.config.db)
        api.middlewares.append(gate.middleware)
        api.extra_routes.append(gate.add_routes)
        if self.budgets is not None:
            assert self.audit is not None
            api.extra_routes.append(BudgetsApi(self.budgets, self.audit, self._api_executor).add_routes)
        # Attribution coverage and Cursor reconciliation (attribution/api.py).
        api.extra_routes.append(AttributionApi(self.store, self.config.db, self._api_executor).add_routes)
        if self.key_service is not None:
            keys_api = KeysApi(self.key_service, self._api_executor, proxy_public_url=self.config.proxy_public_url)
            api.extra_routes.append(keys_api.add_routes)
        api.extra_routes.append(self._dashboard().add_routes)
        app = api.make_app()
        app.on_cleanup.append(lambda _app: gate.close())
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_host_port(self.config.api)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._api_runner = runner
        self._api_port = runner.addresses[0][1]

    def _dashboard(self) -> Dashboard:
        """The web dashboard's pages (dashboard/), served by the API listener."""
        assert self.store is not None and self._api_executor is not None
        # The control server starts after the API, so proxies are looked up when a page asks.
        ctx = DashboardContext(
            self.store,
            self._api_executor,
            budgets=self.budgets,
            audit=self.audit,
            proxies=lambda: self.control.connected() if self.control is not None else [],
            keys=self.key_service,
            proxy_public_url=self.config.proxy_public_url,
        )
        return Dashboard(ctx)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Stop receiving, store every admitted span, close the API and the store. Idempotent."""
        if self._stopped:
            return
        if self._stop_lock is None:  # never started
            self._stopped = True
            return
        async with self._stop_lock:
            if self._stopped:
                return
            # Receivers first, with a grace period: their in-flight exports are waiting on the
            # pipeline, which keeps committing meanwhile.
            stops = []
            if self._grpc is not None:
                stops.append(self._grpc.shutdown(SHUTDOWN_GRACE_S))
            if self._http is not None:
                stops.append(self._http.shutdown())
            if self.control is not None:
                stops.append(self.control.stop())  # proxies keep their last state and resubscribe
            await asyncio.gather(*stops, return_exceptions=True)
            if self.cursor_admin is not None:  # before the pipeline, whose writer thread it uses
                await self.cursor_admin.shutdown()
            if self.pipeline is not None:
                await self.pipeline.shutdown(timeout)
            if self.exporters is not None:  # after the pipeline: its last batches are queued for export
                await asyncio.to_thread(self.exporters.shutdown)
            if self._budget_timer is not None and self._budget_timer_stop is not None:
                # Not cancelled: a check running in its thread finishes before the tables close.
                self._budget_timer_stop.set()
                await asyncio.gather(self._budget_timer, return_exceptions=True)
            if self.webhooks is not None:
                await self.webhooks.shutdown()
            if self._api_runner is not None:
                await self._api_runner.cleanup()
                self._api_runner = None
            if self._api_executor is not None:
                self._api_executor.shutdown(wait=True)
            if self.store is not None:
                self.store.close()
            if self.budgets is not None:
                self.budgets.storage.close()
            if self.audit is not None:
                self.audit.close()
            self._stopped = True
            logger.info("collector stopped")

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    # --- introspection

    def health(self) -> dict[str, Any]:
        """Snapshots of the pipeline, store and pricer for ``/healthz``."""
        body: dict[str, Any] = {}
        if self.pipeline is not None:
            body["pipeline"] = self.pipeline.stats()
        if self.store is not None:
            body["store"] = self.store.stats()
        if self._pricer is not None:
            body["pricer"] = self._pricer.stats()
        if self.control is not None:
            body["control"] = self.control.stats()
        if self.budgets is not None:
            body["budgets"] = self.budgets.stats()
        if self.webhooks is not None:
            body["webhooks"] = self.webhooks.stats()
        if self.exporters is not None:
            body["exporters"] = self.exporters.stats()
        body["keys"] = {
            "file": str(self.keys.path) if self.keys and self.keys.path else None,
            "keys": len(self.keys or ()),
        }
        return body
