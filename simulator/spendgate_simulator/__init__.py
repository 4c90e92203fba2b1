"""A simulated OpenAI-compatible provider for tests, demos and the proxy benchmark.

``create_app(SimulatorConfig(...))`` gives an aiohttp application; ``spendgate simulate-provider``
serves it. Answers are deterministic functions of the request body; see docs/simulator.md. Names
are imported on first use, so ``spendgate simulate-provider --help`` needs no aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendgate_simulator.app import create_app
    from spendgate_simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app"]

_LAZY = {"create_app": "spendgate_simulator.app", "SimulatorConfig": "spendgate_simulator.config"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
