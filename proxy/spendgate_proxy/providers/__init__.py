"""Upstream providers by configured ``type``: ``openai``, ``anthropic`` and ``bedrock``.

:func:`create_provider` builds the :class:`~spendgate_proxy.providers.base.Provider` for one
``providers.<name>`` entry. Implementations are imported on first use, so a missing optional
dependency (botocore for Bedrock) only matters when that type is configured.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from spendgate_proxy.providers.base import Endpoint, EventParser, Provider, ProviderFormat, Reply

if TYPE_CHECKING:
    from spendgate_proxy.config import ProviderSettings

PROVIDER_TYPES: dict[str, str] = {
    "openai": "spendgate_proxy.providers.openai:OpenAIProvider",
    "anthropic": "spendgate_proxy.providers.anthropic:AnthropicProvider",
    "bedrock": "spendgate_proxy.providers.bedrock:BedrockProvider",
}
"""``type`` → ``module:Class``; a new provider type registers here."""


class ProviderUnavailable(Exception):
    """The configured provider type cannot be built (not implemented or a dependency is missing)."""


def create_provider(name: str, settings: ProviderSettings) -> Provider:
    """The provider for ``providers.<name>``; raises :class:`ProviderUnavailable` naming the problem."""
    target = PROVIDER_TYPES.get(settings.type)
    if target is None:
        raise ProviderUnavailable(f"providers.{name}.type: unknown provider type {settings.type!r}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderUnavailable(
            f"providers.{name}.type: {settings.type} providers are not available in this install ({exc})"
        ) from None
    cls: type[Provider] = getattr(module, class_name)
    return cls(name, settings)


__all__ = [
    "PROVIDER_TYPES",
    "Endpoint",
    "EventParser",
    "Provider",
    "ProviderFormat",
    "ProviderUnavailable",
    "Reply",
    "create_provider",
]
