"""Storage behind a small interface: ``SpendStore`` (``base.py``), its SQLite implementation and the query vocabulary.

Names are imported on first use, so a module that needs only ``store.query`` (the CLIs) does not
load the SQLite store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Row, SpendStore, StoreStats, WriteResult
    from .sqlite import SQLiteStore

__all__ = ["Row", "SQLiteStore", "SpendStore", "StoreStats", "WriteResult"]

_LAZY = {
    "Row": ".base",
    "SpendStore": ".base",
    "StoreStats": ".base",
    "WriteResult": ".base",
    "SQLiteStore": ".sqlite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
