"""``Dashboard``: mounts the dashboard's pages on the collector's API application.

    dashboard = Dashboard(DashboardContext(store, executor, budgets=engine, proxies=control.connected))
    api.extra_routes.append(dashboard.add_routes)

Each route's handler is a page object's method carrying ``@allow(...)``; the auth middleware reads
that marker, and each page narrows its queries to the viewer's slice (``access.py``).
"""

from __future__ import annotations

from aiohttp import web

from .budgets import BudgetsPage
from .chargeback import ChargebackPage
from .context import DashboardContext
from .coverage import CoveragePage
from .keys import KeysPage
from .overview import OverviewPage
from .proxies import ProxiesPage
from .unpriced import UnpricedPage


class Dashboard:
    """The dashboard's pages over one ``DashboardContext``."""

    def __init__(self, ctx: DashboardContext) -> None:
        self.ctx = ctx
        self.overview = OverviewPage(ctx)
        self.chargeback = ChargebackPage(ctx)
        self.budgets = BudgetsPage(ctx)
        self.unpriced = UnpricedPage(ctx)
        self.coverage = CoveragePage(ctx)
        self.proxies = ProxiesPage(ctx)
        self.keys = KeysPage(ctx)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.overview.get)
        app.router.add_get("/chargeback", self.chargeback.get)
        app.router.add_get("/budgets", self.budgets.get)
        app.router.add_post("/budgets", self.budgets.set_budget)
        app.router.add_post("/budgets/{id}/overrides", self.budgets.add_override)
        app.router.add_get("/unpriced", self.unpriced.get)
        app.router.add_get("/coverage", self.coverage.get)
        app.router.add_get("/proxies", self.proxies.get)
        app.router.add_get("/keys", self.keys.get)
        app.router.add_post("/keys", self.keys.create)
        app.router.add_post("/keys/{key_id}/revoke", self.keys.revoke)
