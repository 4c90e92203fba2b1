"""What the collector's command-line tools send so a collector with sign-in on lets them in.

``spendgate budgets``, ``status`` and ``report --api`` talk to the API as the operator: when
``$SPENDGATE_ADMIN_TOKEN`` is set they send it as a Bearer token (the collector compares it with
the one named by its ``auth.admin_token_env``). Unset, they send nothing, which is what a collector
in ``auth.mode: open`` on loopback expects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .config import DEFAULT_ADMIN_TOKEN_ENV


def admin_token_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` when ``$SPENDGATE_ADMIN_TOKEN`` is set, else ``{}``."""
    token = (os.environ if environ is None else environ).get(DEFAULT_ADMIN_TOKEN_ENV, "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}
