"""Storage behind a small interface: ``SpendStore`` (``base.py``) and its SQLite implementation."""

from __future__ import annotations

from .base import Row, SpendStore, StoreStats, WriteResult
from .sqlite import SQLiteStore

__all__ = ["Row", "SQLiteStore", "SpendStore", "StoreStats", "WriteResult"]
