"""spendgate collector: OTLP in, priced spend out (normalise, price, store, roll up, budget).

    from spendgate_collector import Collector, load_config
    collector = Collector(load_config("spendgate.yaml"))
    await collector.start(); ...; await collector.shutdown()

Names are imported on first use, so ``import spendgate_collector`` pulls in no server dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Collector
    from .config import CollectorConfig, load_config
    from .errors import CollectorError, ConfigError
    from .records import SpendRecord

__all__ = ["Collector", "CollectorConfig", "CollectorError", "ConfigError", "SpendRecord", "load_config"]

_LAZY = {
    "Collector": ".app",
    "CollectorConfig": ".config",
    "load_config": ".config",
    "CollectorError": ".errors",
    "ConfigError": ".errors",
    "SpendRecord": ".records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
