"""The spendgate proxy: a streaming OpenAI-compatible gateway that turns every call into one span.

``create_app`` builds the aiohttp application; ``spendgate proxy`` (``spendgate_proxy.cli``) runs
it. Needs the ``proxy`` extra (aiohttp, orjson, pydantic, grpcio, botocore). Names are imported on
first use, so ``spendgate keys`` (``keys_cli``, the key file alone) and every ``--help`` work
without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendgate_proxy.app import create_app
    from spendgate_proxy.config import ProxySettings, load_config

__all__ = ["ProxySettings", "create_app", "load_config"]

_LAZY = {
    "create_app": "spendgate_proxy.app",
    "ProxySettings": "spendgate_proxy.config",
    "load_config": "spendgate_proxy.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
