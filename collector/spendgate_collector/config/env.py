"""Every ``SPENDGATE_COLLECTOR_*`` environment variable the collector reads, with meaning and default.

Settings resolve in this order: command-line option, then the environment variable, then the YAML
config file, then the default. Each variable maps to the config field of the same name (lowercase,
without the prefix); ``docs/collector.md`` lists them from these docstrings.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "SPENDGATE_COLLECTOR_"

SPENDGATE_COLLECTOR_CONFIG = "SPENDGATE_COLLECTOR_CONFIG"
"""Path of a YAML config file (top-level fields, or a ``collector:`` section). Default: none."""

SPENDGATE_COLLECTOR_DB = "SPENDGATE_COLLECTOR_DB"
"""SQLite database file. Default: ``./spendgate-data/spendgate.db`` (``DEFAULT_DB``)."""

DEFAULT_DB = Path("./spendgate-data/spendgate.db")
"""The default database file, here rather than in ``config`` so the CLI's help can show it without pydantic."""

SPENDGATE_COLLECTOR_OTLP_GRPC = "SPENDGATE_COLLECTOR_OTLP_GRPC"
"""``HOST:PORT`` of the OTLP/gRPC receiver, or ``off``. Default: ``127.0.0.1:4317``."""

SPENDGATE_COLLECTOR_OTLP_HTTP = "SPENDGATE_COLLECTOR_OTLP_HTTP"
"""``HOST:PORT`` of the OTLP/HTTP receiver, or ``off``. Default: ``127.0.0.1:4318``."""

SPENDGATE_COLLECTOR_API = "SPENDGATE_COLLECTOR_API"
"""``HOST:PORT`` of the query API (JSON, CSV, ``/metrics``), or ``off``. Default: ``127.0.0.1:8788``."""

SPENDGATE_COLLECTOR_CONTROL = "SPENDGATE_COLLECTOR_CONTROL"
"""``HOST:PORT`` of the control-plane gRPC server proxies subscribe to, or ``off``. Default: ``127.0.0.1:4320``."""

SPENDGATE_COLLECTOR_CONTROL_HEARTBEAT_S = "SPENDGATE_COLLECTOR_CONTROL_HEARTBEAT_S"
"""Seconds of silence on a control stream before the collector sends a heartbeat. Default: 5."""

SPENDGATE_COLLECTOR_CONTROL_BUDGET_REFRESH_S = "SPENDGATE_COLLECTOR_CONTROL_BUDGET_REFRESH_S"
"""Seconds between two spend-driven updates of one budget's state (spend, limit, reset) on the control
stream; state transitions are sent at once. Default: 5."""

SPENDGATE_COLLECTOR_KEYS_FILE = "SPENDGATE_COLLECTOR_KEYS_FILE"
"""Keys YAML written by ``spendgate keys``, for attribution by key id. Default: none."""

SPENDGATE_COLLECTOR_PRICES = "SPENDGATE_COLLECTOR_PRICES"
"""Price overrides YAML (negotiated discounts, custom models). Default: none."""

SPENDGATE_COLLECTOR_RETENTION_DAYS = "SPENDGATE_COLLECTOR_RETENTION_DAYS"
"""Days raw spend rows are kept (rollups are kept forever); ``0`` keeps them forever. Default: 90."""

SPENDGATE_COLLECTOR_QUEUE_MAX_BYTES = "SPENDGATE_COLLECTOR_QUEUE_MAX_BYTES"
"""Bytes of OTLP payload waiting to be stored before receivers answer "overloaded". Default: 64 MiB."""

SPENDGATE_COLLECTOR_BATCH_MAX_BYTES = "SPENDGATE_COLLECTOR_BATCH_MAX_BYTES"
"""Bytes of OTLP payload committed in one SQLite transaction at most. Default: 4 MiB."""

SPENDGATE_COLLECTOR_RETRY_AFTER_S = "SPENDGATE_COLLECTOR_RETRY_AFTER_S"
"""Seconds exporters are told to wait when the collector is overloaded. Default: 1."""

SPENDGATE_COLLECTOR_SQLITE_SYNCHRONOUS = "SPENDGATE_COLLECTOR_SQLITE_SYNCHRONOUS"
"""``full`` (an acknowledged span survives power loss) or ``normal`` (survives a process crash
only, faster on slow disks). Default: ``full``."""

SPENDGATE_COLLECTOR_DEFAULT_TIMEZONE = "SPENDGATE_COLLECTOR_DEFAULT_TIMEZONE"
"""IANA time zone of budgets that name none (periods start at midnight there). Default: ``UTC``."""

SPENDGATE_COLLECTOR_BUDGETS = "SPENDGATE_COLLECTOR_BUDGETS"
"""Budgets declared at start, as a JSON list (same fields as the API; see docs/budgets.md). Default: none."""

SPENDGATE_COLLECTOR_WEBHOOKS = "SPENDGATE_COLLECTOR_WEBHOOKS"
"""Budget-transition webhooks as a JSON list of ``{url, format: json|slack}``. Default: none."""

SPENDGATE_COLLECTOR_EXPORTERS = "SPENDGATE_COLLECTOR_EXPORTERS"
"""OTLP exporters forwarding stored spans with cost added, as a JSON list of
``{name, protocol: grpc|http, endpoint, headers, llm_only, drop_content, ...}`` (see docs/export.md). Default: none."""

SPENDGATE_COLLECTOR_EXPORTERS_QUEUE_FILE = "SPENDGATE_COLLECTOR_EXPORTERS_QUEUE_FILE"
"""SQLite file of the exporters' persistent queue. Default: ``<db stem>-export-queue.db`` beside the database."""

SPENDGATE_COLLECTOR_CLOCK_OFFSET_S = "SPENDGATE_COLLECTOR_CLOCK_OFFSET_S"
"""Test and demo hook only: seconds (float, may be negative) added to "now" when budgets place spend
in periods and decide when a period ends, e.g. ``86400`` to start a ``day`` budget's next period at
once. Logged as a warning at start when non-zero. Default: 0."""

SPENDGATE_COLLECTOR_PROXY_PUBLIC_URL = "SPENDGATE_COLLECTOR_PROXY_PUBLIC_URL"
"""How clients reach the proxy (``https://gateway.acme.dev``), for the Cursor setup shown with a new key.
Default: none."""

SPENDGATE_COLLECTOR_KEYS_SELF_SERVE_MAX_DAYS = "SPENDGATE_COLLECTOR_KEYS_SELF_SERVE_MAX_DAYS"
"""Longest life, in days, of a key people create for themselves (and its default expiry). Default: 90."""
