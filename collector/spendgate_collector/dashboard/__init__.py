"""The web dashboard the collector serves beside its API: server-rendered pages, no build step.

``routes.Dashboard`` mounts the pages (overview, chargeback, budgets, keys, unpriced, proxies) on
the collector's API application; every page carries ``@allow(...)`` and applies the viewer's scope
to every query it runs (docs/dashboard.md says who sees what).
"""

from __future__ import annotations

from .routes import Dashboard

__all__ = ["Dashboard"]
