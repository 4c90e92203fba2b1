"""What every page needs: the store, the budget engine and audit log, the connected proxies, and a thread pool.

Store and engine calls block (SQLite), so pages run them on the API's executor through ``run``,
never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..http.blocking import run_blocking
from .render import Renderer

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..budgets import BudgetEngine
    from ..control import ProxyConnection
    from ..keys.service import KeyService
    from ..store.base import SpendStore

T = TypeVar("T")


@dataclass
class DashboardContext:
    """The collector's parts the pages read (and, for budgets and keys, change)."""

    store: SpendStore
    executor: Executor
    budgets: BudgetEngine | None = None
    audit: AuditLog | None = None
    """The audit log, for the budgets page's history (None with budgets)."""
    proxies: Callable[[], Sequence[ProxyConnection]] = lambda: ()
    """The proxies subscribed to the control stream right now (empty when the control plane is off)."""
    keys: KeyService | None = None
    """Lists, issues and revokes virtual keys; None when the collector has no ``keys_file``."""
    proxy_public_url: str | None = None
    """How clients reach the proxy: the base URL in a new key's Cursor setup steps."""
    renderer: Renderer = field(default_factory=Renderer)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_blocking(self.executor, fn, *args, **kwargs)
