"""Forward spans the collector stored to other OTLP backends, with its cost and attribution added.

    exporters:                        # in the collector's config (docs/export.md)
      - {name: tempo, protocol: grpc, endpoint: "http://tempo:4317"}
      - {name: phoenix, protocol: http, endpoint: "http://phoenix:6006/v1/traces", llm_only: true}

Modules: ``config`` (one exporter's settings), ``manager`` (the collector's side: hand-off from the
pipeline, the exporters' process, stats, metrics), ``process`` (that process's main loop and the
messages between the two), ``forwarder`` (the engine it runs: enqueuer and worker threads),
``enrich`` (rewrite a stored request: cost, attribution, filters), ``wire`` (the lean OTLP schema and
encoder it uses), ``queue`` (persistent per-exporter FIFO in SQLite), ``senders`` (one gRPC / HTTP
attempt, classified retryable or permanent).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ExporterConfig
    from .manager import ExporterStats, ExportManager

__all__ = ["ExportManager", "ExporterConfig", "ExporterStats"]

# Imported on first use: the collector's config reads ``ExporterConfig`` without the threads' modules.
_LAZY = {"ExporterConfig": ".config", "ExportManager": ".manager", "ExporterStats": ".manager"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
