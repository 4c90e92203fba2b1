"""spendgate: attribution and spans for AI workloads (the SDK; the proxy is ``spendgate_proxy``).

The SDK's public surface::

    import spendgate

    spendgate.configure(service_name="rag-api", team="search", repo="acme-api")
    spendgate.instrument_openai()
    with spendgate.attribute(user="ana@acme.com", feature="rag"):
        client.chat.completions.create(...)

Importing this package does no work and pulls in no server dependencies: every name below is
imported from its module on first use (PEP 562), so ``import spendgate`` stays cheap for applications
that only need one function. See docs/sdk.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spendgate._setup import SdkStats, SpendgateHandle, configure, force_flush, shutdown, stats
    from spendgate.context import Attribution, AttributionScope, attribute, current_attribution
    from spendgate.instrument import MissingDependencyError, instrument_anthropic, instrument_openai
    from spendgate.processor import SpendgateSpanProcessor

_LAZY: dict[str, str] = {
    "configure": "spendgate._setup",
    "shutdown": "spendgate._setup",
    "force_flush": "spendgate._setup",
    "stats": "spendgate._setup",
    "SpendgateHandle": "spendgate._setup",
    "SdkStats": "spendgate._setup",
    "attribute": "spendgate.context",
    "current_attribution": "spendgate.context",
    "Attribution": "spendgate.context",
    "AttributionScope": "spendgate.context",
    "instrument_openai": "spendgate.instrument",
    "instrument_anthropic": "spendgate.instrument",
    "MissingDependencyError": "spendgate.instrument",
    "SpendgateSpanProcessor": "spendgate.processor",
}

__all__ = [
    "Attribution",
    "AttributionScope",
    "MissingDependencyError",
    "SdkStats",
    "SpendgateHandle",
    "SpendgateSpanProcessor",
    "attribute",
    "configure",
    "current_attribution",
    "force_flush",
    "instrument_anthropic",
    "instrument_openai",
    "shutdown",
    "stats",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spendgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cached as a real attribute: later lookups skip this function.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
