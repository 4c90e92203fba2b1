"""The collector's configuration: the typed ``CollectorConfig`` (``settings.py``) and its environment (``env.py``).

A lazy face (PEP 562): ``env`` is standard library only and loads at once, so the command-line
clients read its defaults (``DEFAULT_DB``) without pydantic; every other name (``CollectorConfig``,
``load_config``, ``split_host_port``, the ``DEFAULT_*`` addresses) loads ``settings.py`` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import env

__all__ = ["env"]


def __getattr__(name: str) -> Any:
    settings = importlib.import_module(f"{__name__}.settings")
    try:
        return getattr(settings, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
