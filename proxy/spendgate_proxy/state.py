"""What the proxy's handlers share: settings, keys, providers, routes, policy and the span worker.

Built once by ``create_app`` and only read on the request path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from spendgate_proxy.attribution.chain import RepoChain
from spendgate_proxy.attribution.hook_window import HookWindows
from spendgate_proxy.call.routing import RoutingPolicy
from spendgate_proxy.config import ModelRoute, ProxySettings
from spendgate_proxy.providers import Provider, create_provider

if TYPE_CHECKING:
    from spendgate_proxy.control.client import ControlClient
    from spendgate_proxy.control.state import ControlState
    from spendgate_proxy.key_refresh import KeyRefresh
    from spendgate_proxy.keys import KeyDirectory
    from spendgate_proxy.telemetry.spans import SpanExportWorker


class ProxyState:
    """What the handlers share: routes, upstreams, keys and the span worker. Read-only per request."""

    def __init__(
        self,
        settings: ProxySettings,
        keys: KeyDirectory,
        worker: SpanExportWorker | None,
        control: ControlState | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.worker = worker
        self.control = control
        """Verdicts (and, with a collector, keys) from the control stream; None until started."""
        self.control_client: ControlClient | None = None
        self.key_refresh: KeyRefresh | None = None
        """The second look for newer key state an unknown key gets (key_refresh.py); set on startup."""
        self.upstreams: dict[str, Provider] = {name: create_provider(name, p) for name, p in settings.providers.items()}
        self.routes: dict[str, tuple[ModelRoute, Provider]] = {
            m.name: (m, self.upstreams[m.provider]) for m in settings.models
        }
        self.capture = settings.telemetry.capture_content
        self.max_body = settings.max_body_bytes
        self.pause_form = settings.pause_response
        self.routing = RoutingPolicy(settings.routing) if RoutingPolicy.needed(settings.routing) else None
        self.translating = any(p.format != "openai" for p in self.upstreams.values())
        """Some provider speaks another format: the chat route must check whether a call needs translation."""
        self.cursor = settings.cursor
        self.hook_windows = HookWindows()
        """Live Cursor hook attribution per developer (``POST /hooks/cursor`` and the control stream)."""
        self.attribution = RepoChain(
            self.routes,
            workspace_rules=[r.model_dump(exclude_none=True) for r in settings.cursor.workspace_repos],
            prompt_workspace=settings.cursor.prompt_workspace,
            hooks=self.hook_windows,
        )
        """The repo attribution chain (attribution/chain.py): aliases, hook windows, prompt workspace mapping."""
        self.front_counts: dict[str, int] | None = None
        """Calls the front served and connections it handed to aiohttp (http/front.py); None without a front."""


SETTINGS = web.AppKey("settings", ProxySettings)
STATE = web.AppKey("state", ProxyState)
