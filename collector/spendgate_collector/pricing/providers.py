"""Span provider names (GenAI / OpenInference spellings) mapped to genai-prices provider ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genai_prices.types import Provider

# Only names genai-prices' own matching gets wrong or misses. It matches an exact id first, then
# each provider's `provider_match` clause, which already covers "aws.bedrock" and "bedrock" (aws),
# "gcp.vertex_ai" and "gcp.gemini" (google), "mistral_ai" (mistral), "together_ai" (together).
_ALIASES: dict[str, str] = {
    # GenAI conventions name Azure OpenAI "azure.ai.openai"; genai-prices' *openai* clause
    # ("contains openai") would catch it first and price Azure calls from OpenAI's list.
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "az.ai.openai": "azure",
    "gcp.gen_ai": "google",
    "gemini": "google",
    "x_ai": "x-ai",
    "x.ai": "x-ai",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
}


def provider_id_for(span_provider: str | None, providers: list[Provider]) -> str | None:
    """Return the genai-prices provider id for a span's provider name, or None when it names none.

    None means "find the model across providers": a self-hosted or unknown provider (``vllm``,
    ``ibm.watsonx.ai``) or no provider attribute at all.
    """
    from genai_prices.data_snapshot import find_provider_by_id

    if not span_provider:
        return None
    name = span_provider.strip().lower()
    if name in _ALIASES:
        return _ALIASES[name]
    provider = find_provider_by_id(providers, name)
    return provider.id if provider is not None else None
