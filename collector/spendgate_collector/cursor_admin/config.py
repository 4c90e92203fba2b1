"""The ``cursor_admin:`` section of the collector config, and the poller it asks for.

The team key itself is never in the config: ``api_key_env`` names the environment variable it is read
from at start. From the environment the whole section is ``SPENDGATE_COLLECTOR_CURSOR_ADMIN`` as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config_section import section_from_json
from ..errors import ConfigError
from .client import DEFAULT_BASE_URL, DEFAULT_REQUESTS_PER_MINUTE, CursorAdminClient
from .poller import (
    DEFAULT_BACKFILL_S,
    DEFAULT_LOOKBACK_S,
    DEFAULT_PAGE_SIZE,
    DEFAULT_POLL_INTERVAL_S,
    CursorAdminPoller,
    Writer,
)
from .state import StateTable

if TYPE_CHECKING:
    from ..keys.file import KeyDirectory
    from ..store.base import SpendStore


class CursorAdminConfig(BaseModel):
    """Settings of the Cursor Admin API connector (docs/cursor-admin.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "CURSOR_ADMIN_API_KEY"
    """Environment variable holding the team's Admin API key."""
    poll_interval_s: float = Field(DEFAULT_POLL_INTERVAL_S, gt=0, le=86_400)
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=1000)
    requests_per_minute: float = Field(DEFAULT_REQUESTS_PER_MINUTE, gt=0, le=600)
    lookback_s: float = Field(DEFAULT_LOOKBACK_S, ge=0, le=7 * 86_400)
    """Each poll re-reads this much before its cursor: Cursor aggregates usage hourly, so events arrive late."""
    backfill_s: float = Field(DEFAULT_BACKFILL_S, gt=0, le=90 * 86_400)
    """How far back the very first poll reads."""

    @model_validator(mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return section_from_json(value)


def build_poller(
    cfg: CursorAdminConfig,
    store: SpendStore,
    db_path: str | os.PathLike[str],
    *,
    keys: KeyDirectory | None = None,
    writer: Writer | None = None,
    environ: Mapping[str, str] | None = None,
) -> CursorAdminPoller | None:
    """The poller ``cfg`` asks for, or ``None`` when disabled; ``ConfigError`` when the key is missing."""
    if not cfg.enabled:
        return None
    environ = os.environ if environ is None else environ
    api_key = environ.get(cfg.api_key_env, "").strip()
    if not api_key:
        raise ConfigError(f"cursor_admin: enabled but ${cfg.api_key_env} (the team's Admin API key) is not set")
    client = CursorAdminClient(api_key, base_url=cfg.base_url, requests_per_minute=cfg.requests_per_minute)
    return CursorAdminPoller(
        client,
        store,
        StateTable(db_path, cfg.base_url.rstrip("/")),
        page_size=cfg.page_size,
        poll_interval_s=cfg.poll_interval_s,
        lookback_s=cfg.lookback_s,
        backfill_s=cfg.backfill_s,
        principal_for=keys.lookup_user if keys is not None else None,
        writer=writer,
    )
