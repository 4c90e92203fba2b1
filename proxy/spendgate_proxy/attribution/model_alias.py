"""Repo from the model alias: ``acme-api/claude-sonnet-4-6`` means model ``claude-sonnet-4-6``, repo ``acme-api``.

Cursor cannot send headers, but a developer can add one custom model per project whose id carries
the repo as a prefix. The split must never misread a provider-style model id
(``anthropic/claude-...``, ``openai/gpt-4.1``): a name that is itself a configured model is never
split, a prefix that configured models use as their own namespace is never a repo, nor is a
well-known provider name. Cursor's variant suffixes (``-thinking``, ``-xhigh``, ``-fast``) are
recognised when checking that the rest is a configured model, and handed back untouched: what they
mean is routing's business, not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Collection

CURSOR_VARIANT_SUFFIXES = ("-thinking", "-xhigh", "-high", "-low", "-fast", "-max")
"""Suffixes Cursor is reported to append to model ids (stripped only to look the base model up)."""

PROVIDER_PREFIXES = frozenset(
    {
        "anthropic", "openai", "azure", "azure_ai", "bedrock", "vertex", "vertex_ai", "google", "gemini",
        "mistral", "meta", "meta-llama", "xai", "x-ai", "deepseek", "openrouter", "groq", "cohere",
        "fireworks", "together", "together_ai", "perplexity", "ollama", "qwen", "moonshotai", "cursor",
    }
)  # fmt: skip
"""Namespaces of provider-style ids (LiteLLM, OpenRouter): never read as a repo, even if unconfigured."""

_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAX_PREFIX_SEGMENTS = 2  # "acme-api" or "acme/api" (org/repo), no deeper


def split_model_alias(model: str, known_models: Collection[str]) -> tuple[str, str] | None:
    """``("acme-api", "claude-sonnet-4-6")`` for ``"acme-api/claude-sonnet-4-6"``, else ``None``.

    ``known_models`` is the set of model ids the gateway routes (pass a set or frozenset: it is
    probed several times). The returned model keeps any Cursor variant suffix.
    """
    if "/" not in model or model in known_models:
        return None
    namespaces = _namespaces(known_models)
    start = 0
    for _ in range(_MAX_PREFIX_SEGMENTS):
        slash = model.find("/", start)
        if slash < 0:
            return None
        prefix, rest = model[:slash], model[slash + 1 :]
        if _is_repo_slug(prefix, namespaces) and _is_known(rest, known_models):
            return prefix, rest
        start = slash + 1
    return None


def _is_repo_slug(prefix: str, namespaces: frozenset[str]) -> bool:
    segments = prefix.split("/")
    if not all(_SLUG_RE.match(s) for s in segments):
        return False
    head = segments[0].lower()
    return head not in PROVIDER_PREFIXES and head not in namespaces


def _is_known(rest: str, known_models: Collection[str]) -> bool:
    if rest in known_models:
        return True
    base = rest
    # "claude-sonnet-4-6-thinking-fast": strip stacked variants one at a time, checking each base.
    for _ in range(3):
        for suffix in CURSOR_VARIANT_SUFFIXES:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                if base in known_models:
                    return True
                break
        else:
            return False
    return False


_namespace_cache: dict[int, tuple[Collection[str], frozenset[str]]] = {}


def _namespaces(known_models: Collection[str]) -> frozenset[str]:
    """Lower-cased prefixes of configured provider-style ids (``openai/gpt-4.1`` -> ``openai``).

    Cached per collection object (the routing table's set is long-lived), so the request path does
    not rescan every configured model per call.
    """
    cached = _namespace_cache.get(id(known_models))
    if cached is not None and cached[0] is known_models:
        return cached[1]
    found = frozenset(m.split("/", 1)[0].lower() for m in known_models if "/" in m)
    if isinstance(known_models, frozenset):  # immutable: safe to cache; a mutable set may change
        if len(_namespace_cache) > 64:
            _namespace_cache.clear()
        _namespace_cache[id(known_models)] = (known_models, found)
    return found


__all__ = ["CURSOR_VARIANT_SUFFIXES", "PROVIDER_PREFIXES", "split_model_alias"]
