"""The collector's one typed config object, loaded from YAML, ``SPENDGATE_COLLECTOR_*`` env and options.

``load_config`` resolves each field as: explicit override (command-line option) → environment
variable (see ``config/env.py``) → YAML file → default, then validates everything at once and raises
``ConfigError`` naming every bad field. ``CollectorConfig()`` alone gives the embedded defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..auth.config import AuthConfig
from ..cursor_admin.config import CursorAdminConfig
from ..errors import ConfigError
from ..exporters.config import ExporterConfig, validate_exporters
from . import env

DEFAULT_DB = env.DEFAULT_DB
DEFAULT_OTLP_GRPC = "127.0.0.1:4317"
DEFAULT_OTLP_HTTP = "127.0.0.1:4318"
DEFAULT_API = "127.0.0.1:8788"
DEFAULT_CONTROL = "127.0.0.1:4320"
DEFAULT_RETENTION_DAYS = 90
# 64 MiB of queued protobuf is ~100k realistic LLM spans: a few seconds of peak ingest, and a bound
# on memory whatever the exporters send.
DEFAULT_QUEUE_MAX_BYTES = 64 * 1024 * 1024
# ~6,000 spans per transaction: enough to amortise the commit's fsync, small enough to keep the
# ack latency of a single export well under a second.
DEFAULT_BATCH_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
DEFAULT_RETRY_AFTER_S = 1.0

_OFF = {"", "off", "none", "false", "0"}
_SHARED_SECTIONS = {"collector", "proxy", "providers", "models", "telemetry"}


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` too) into its parts; raise ``ValueError`` when malformed."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number in {address!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0-65535")
    return host.strip("[]"), port


class CollectorConfig(BaseModel):
    """Everything ``Collector`` needs; immutable. Addresses are ``HOST:PORT`` or ``None`` (off)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db: Path = DEFAULT_DB
    """SQLite file; its directory is created on start."""
    otlp_grpc: str | None = DEFAULT_OTLP_GRPC
    """OTLP/gRPC receiver address; port 0 picks a free port (see ``Collector.otlp_grpc_port``)."""
    otlp_http: str | None = DEFAULT_OTLP_HTTP
    """OTLP/HTTP receiver address (``POST /v1/traces``)."""
    api: str | None = DEFAULT_API
    """Query API address (``/api/*``, ``/healthz``, ``/metrics``)."""
    control: str | None = DEFAULT_CONTROL
    """Control-plane gRPC address: proxies subscribe here for keys and verdicts (see ``control.py``)."""
    control_heartbeat_s: float = Field(5.0, gt=0, le=60)
    """Seconds of silence on a control stream before a heartbeat; proxies reconnect after 3x this."""
    control_budget_refresh_s: float = Field(5.0, ge=0, le=3600)
    """Seconds between two spend-driven updates of one budget's state on the control stream (transitions
    are sent at once): bounds the stream's churn, and is part of how stale the budget headers can be."""
    keys_file: Path | None = None
    """Keys YAML from ``spendgate keys``: attribution for spans that carry only a key id."""
    prices: Path | None = None
    """Price overrides YAML for negotiated discounts and custom models."""
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=0, le=36_500)
    """Days raw spend rows are kept; 0 keeps them forever. Rollups are always kept."""
    queue_max_bytes: int = Field(DEFAULT_QUEUE_MAX_BYTES, ge=1024)
    """Payload bytes waiting for the store before receivers answer "overloaded, retry"."""
    batch_max_bytes: int = Field(DEFAULT_BATCH_MAX_BYTES, ge=1)
    """Payload bytes committed per SQLite transaction at most."""
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1024)
    """Largest OTLP request body accepted (after decompression)."""
    retry_after_s: float = Field(DEFAULT_RETRY_AFTER_S, gt=0, le=60)
    """Delay suggested to exporters when overloaded (gRPC RetryInfo, HTTP Retry-After)."""
    sqlite_synchronous: Literal["full", "normal"] = "full"
    """``full``: acknowledged spans survive power loss; ``normal``: survive a process crash only."""
    api_workers: int = Field(4, ge=1, le=64)
    """Threads answering API queries (each with its own read connection)."""

    # --- budgets (docs/budgets.md); default_timezone comes first: the budgets validator reads it.
    default_timezone: str = "UTC"
    """IANA time zone of budget periods that do not name one."""
    budgets: list[dict[str, Any]] = Field(default_factory=list)
    """Budgets declared in the config, upserted at every start (``budgets/model.py`` fields)."""
    webhooks: list[dict[str, Any]] = Field(default_factory=list)
    """Where budget transitions are posted: ``{url, format: json|slack, headers, max_attempts, deadline_s}``."""
    clock_offset_s: float = 0.0
    """Test and demo hook: seconds added to "now" for budget periods (e.g. 86400 moves a day ahead, so a
    ``day`` budget starts its next period). Logged loudly at start when non-zero; never set in production."""

    # --- export to other OTLP backends (docs/export.md, exporters/)
    exporters: list[ExporterConfig] = Field(default_factory=list)
    """OTLP exporters that forward stored spans with cost and attribution added (``exporters/config.py``)."""
    exporters_queue_file: Path | None = None
    """SQLite file of the exporters' persistent queue; default: ``<db stem>-export-queue.db`` beside ``db``."""

    # --- Cursor-billed spend from the Cursor Admin API (docs/cursor-admin.md, cursor_admin/)
    cursor_admin: CursorAdminConfig = Field(default_factory=CursorAdminConfig)
    """The Admin API poller: ``{enabled, base_url, api_key_env, poll_interval_s, page_size, requests_per_minute}``."""

    # --- who may use the API and dashboard (docs/auth.md, auth/); after ``api``: its validator reads it.
    auth: AuthConfig = Field(default_factory=AuthConfig, validate_default=True)
    """``{mode: open|oidc, admin_token_env, oidc: {...}}``; open (no sign-in) only while ``api`` is on loopback."""

    # --- virtual keys from the API and dashboard (docs/keys.md, keys/service.py, keys/api.py)
    proxy_public_url: str | None = None
    """How Cursor and other clients reach the proxy (e.g. ``https://gateway.acme.dev``): the base URL in the
    setup instructions shown with a new key. Unset: the instructions say to ask the platform team for it."""
    keys_self_serve_max_days: int = Field(90, ge=1, le=3650)
    """Longest life of a key a developer or lead creates for themselves; it is also their keys' default expiry."""

    @field_validator("proxy_public_url")
    @classmethod
    def _proxy_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s) URL such as https://gateway.acme.dev, got {value!r}")
        return value.strip().rstrip("/")

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: AuthConfig, info: ValidationInfo) -> AuthConfig:
        api = info.data.get("api")
        value.check_listen_address(split_host_port(api)[0] if api else None)
        return value

    @property
    def exporters_queue_path(self) -> Path:
        """Where the exporters' queue lives (``exporters_queue_file`` or beside the store)."""
        if self.exporters_queue_file is not None:
            return self.exporters_queue_file
        return self.db.with_name(f"{self.db.stem}-export-queue.db")

    @field_validator("exporters")
    @classmethod
    def _exporters(cls, value: list[ExporterConfig]) -> list[ExporterConfig]:
        return validate_exporters(value)

    @field_validator("budgets", "webhooks", "exporters", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # From the environment a list arrives as JSON text.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON list: {exc}") from None
        return value

    @field_validator("default_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from ..budgets.model import BudgetError, parse_timezone

        try:
            return parse_timezone(value, "default_timezone")
        except BudgetError as exc:
            raise ValueError(exc.message) from None

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        from ..budgets.model import BudgetError, parse_budget

        seen: set[str] = set()
        for i, entry in enumerate(value):
            try:
                budget = parse_budget(entry, default_timezone=info.data.get("default_timezone") or "UTC")
            except BudgetError as exc:
                raise ValueError(f"entry {i}: {exc.field}: {exc.message}") from None
            if budget.id in seen:
                raise ValueError(f"entry {i}: id: {budget.id!r} is declared twice")
            seen.add(budget.id)
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from ..budgets.model import BudgetError, parse_webhook

        for i, entry in enumerate(value):
            try:
                parse_webhook(entry, where=str(i))
            except BudgetError as exc:
                raise ValueError(f"entry {exc.field}: {exc.message}") from None
        return value

    @field_validator("otlp_grpc", "otlp_http", "api", "control", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str | bool | int) and str(value).strip().lower() in _OFF):
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected HOST:PORT or 'off', got {value!r}")
        host, port = split_host_port(value.strip())
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("keys_file", "prices", "exporters_queue_file", mode="before")
    @classmethod
    def _optional_path(cls, value: Any) -> Any:
        return None if value in ("", None) else value


def _format_errors(exc: ValidationError, where: str) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(config)"
        problems.append(f"{field}: {err['msg']}")
    return f"invalid collector config ({where}): " + "; ".join(problems)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings")
    # A shared spendgate.yaml keeps the collector's settings under `collector:`; a shared file
    # without that section (only proxy settings) leaves the collector on its defaults.
    section = doc.get("collector")
    if isinstance(section, dict):
        return dict(section)
    if _SHARED_SECTIONS & set(doc):
        return {}
    return doc


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> CollectorConfig:
    """Build a validated ``CollectorConfig``; overrides that are ``None`` are ignored.

    ``path`` defaults to ``$SPENDGATE_COLLECTOR_CONFIG``. Raises ``ConfigError`` naming every bad field.
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get(env.SPENDGATE_COLLECTOR_CONFIG) or None
    values: dict[str, Any] = _read_yaml(Path(path)) if path else {}
    for name in CollectorConfig.model_fields:
        env_value = environ.get(env.PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(overrides) - set(CollectorConfig.model_fields))
    if unknown:
        raise ConfigError(f"unknown collector setting(s): {', '.join(unknown)}")
    try:
        return CollectorConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path) if path else "defaults, environment and options")) from None
