"""Attribute names and enum values of spendgate's LLM spans, each with a one-line meaning.

One LLM call is one span named ``chat {model}``. It carries OpenInference names (what Phoenix,
Arize and most LLM tools read) and OpenTelemetry GenAI names (v1.37+) side by side, standard
``vcs.*`` names for repository and branch, and a small ``spendgate.*`` namespace for what no
standard has. Token totals include cached tokens, as both specs say: ``llm.token_count.prompt``
and ``gen_ai.usage.input_tokens`` count cache reads and writes too, so pricing must take the cache
parts out of the total before applying the plain input rate.

Every constant is followed by a docstring; ``docs/semconv.md`` is generated from those docstrings,
grouped by the ``# --- section`` comments.
"""

from __future__ import annotations

# --- OpenInference

OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
"""Kind of operation; ``LLM`` for a model call (see ``SPAN_KIND_LLM``)."""

LLM_SYSTEM = "llm.system"
"""AI product family of the model served, e.g. ``openai``, ``anthropic``."""

LLM_PROVIDER = "llm.provider"
"""Hosting provider that served the call, e.g. ``openai``, ``anthropic``, ``aws``, ``azure``."""

LLM_MODEL_NAME = "llm.model_name"
"""Model the provider served (after routing and aliasing), as the provider names it."""

LLM_INVOCATION_PARAMETERS = "llm.invocation_parameters"
"""JSON of the sampling parameters sent (temperature, max_tokens, ...); never message content."""

LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
"""Input tokens billed, including cache reads and cache writes."""

LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
"""Output tokens billed, including reasoning tokens."""

LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"
"""Prompt plus completion tokens."""

LLM_TOKEN_COUNT_PROMPT_CACHE_READ = "llm.token_count.prompt_details.cache_read"
"""Input tokens served from the provider's prompt cache (part of the prompt total)."""

LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
"""Input tokens written to the provider's prompt cache (part of the prompt total)."""

LLM_TOKEN_COUNT_COMPLETION_REASONING = "llm.token_count.completion_details.reasoning"
"""Output tokens spent on hidden reasoning (part of the completion total)."""

LLM_COST_PROMPT = "llm.cost.prompt"
"""USD cost of the input tokens, cache parts included; set by the collector's pricing."""

LLM_COST_COMPLETION = "llm.cost.completion"
"""USD cost of the output tokens; set by the collector's pricing."""

LLM_COST_TOTAL = "llm.cost.total"
"""USD cost of the call; set by the collector's pricing, absent when the model is unpriced."""

USER_ID = "user.id"
"""Developer the call is charged to: the email bound to the virtual key."""

SESSION_ID = "session.id"
"""Conversation the call belongs to, when the client says (e.g. a Cursor conversation id)."""

METADATA = "metadata"
"""JSON object of free-form attribution metadata (team, cost centre, repo, feature)."""

TAG_TAGS = "tag.tags"
"""List of free-form tags from the ``x-spendgate-tags`` header or the path prefix."""

INPUT_VALUE = "input.value"
"""Request body, only when content capture is switched on, after secret redaction."""

OUTPUT_VALUE = "output.value"
"""Completion text, only when content capture is switched on, after secret redaction."""

SPAN_KIND_LLM = "LLM"
"""Value of ``openinference.span.kind`` for a model call."""

# --- OpenTelemetry GenAI (v1.37+)

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
"""Operation requested: ``chat`` for chat completions and messages."""

GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
"""Provider as the GenAI conventions name it: ``openai``, ``anthropic``, ``aws.bedrock``, ..."""

GEN_AI_SYSTEM = "gen_ai.system"
"""Pre-1.37 name of ``gen_ai.provider.name``; read by the collector, never emitted."""

GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
"""Model the client asked for, before routing or aliasing."""

GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
"""Model named in the provider's response."""

GEN_AI_RESPONSE_ID = "gen_ai.response.id"
"""Provider's id of the completion (``chatcmpl-...``)."""

GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
"""Finish reasons of the choices, e.g. ``["stop"]``, ``["tool_calls"]``."""

GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
"""``max_tokens`` (or ``max_completion_tokens``) the client sent."""

GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
"""``temperature`` the client sent."""

GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
"""Input tokens billed, including cache reads and writes (same as ``llm.token_count.prompt``)."""

GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
"""Output tokens billed, including reasoning (same as ``llm.token_count.completion``)."""

GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
"""Input tokens served from a provider-managed cache (included in input tokens)."""

GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
"""Input tokens written to a provider-managed cache (included in input tokens)."""

GEN_AI_OPERATION_CHAT = "chat"
"""Value of ``gen_ai.operation.name`` for a chat call."""

ERROR_TYPE = "error.type"
"""Class of error that ended the call: an HTTP status (``429``), ``timeout``, ``client_disconnected``, ..."""

SERVER_ADDRESS = "server.address"
"""Host of the upstream provider endpoint."""

SERVER_PORT = "server.port"
"""Port of the upstream provider endpoint."""

# --- Version control (OpenTelemetry vcs.*)

VCS_REPOSITORY_NAME = "vcs.repository.name"
"""Short repository name the call is attributed to, e.g. ``acme-api``."""

VCS_REPOSITORY_URL_FULL = "vcs.repository.url.full"
"""Canonical URL of that repository, when known (e.g. from a git remote)."""

VCS_REF_HEAD_NAME = "vcs.ref.head.name"
"""Branch the developer works on, when known."""

# --- spendgate

SPENDGATE_TEAM = "spendgate.team"
"""Team the call is charged to (from the key's principal)."""

SPENDGATE_COST_CENTER = "spendgate.cost_center"
"""Cost centre the call is charged to (from the key's principal)."""

SPENDGATE_FEATURE = "spendgate.feature"
"""What the call was for, classified from the request: see ``Feature`` values below."""

SPENDGATE_KEY_ID = "spendgate.key.id"
"""Public id of the virtual key used (never the key itself)."""

SPENDGATE_REPO_SOURCE = "spendgate.repo.source"
"""How the repository was attributed: see ``RepoSource`` values below."""

SPENDGATE_MODEL_REQUESTED = "spendgate.model.requested"
"""Model name the client sent, as sent (may be an alias or a variant)."""

SPENDGATE_MODEL_SERVED = "spendgate.model.served"
"""Model name sent upstream after mapping and routing."""

SPENDGATE_PROVIDER_ID = "spendgate.provider.id"
"""Name of the configured upstream that served the call (a key of ``providers:`` in the config)."""

SPENDGATE_STREAM = "spendgate.stream"
"""True when the client asked for a streamed (SSE) response."""

SPENDGATE_TTFT_MS = "spendgate.ttft_ms"
"""Milliseconds from request arrival to the first upstream byte of the response."""

SPENDGATE_USAGE_SOURCE = "spendgate.usage.source"
"""Where the token counts came from: ``provider`` (reported usage) or ``estimate``."""

SPENDGATE_CLIENT_DISCONNECTED = "spendgate.client.disconnected"
"""True when the client went away before the response ended."""

SPENDGATE_HTTP_STATUS = "spendgate.http.status_code"
"""HTTP status the proxy answered the client with."""

SPENDGATE_VERDICT = "spendgate.verdict"
"""Budget verdict applied to the call (``pause``, ``route``), absent when none."""

SPENDGATE_COST_SOURCE = "spendgate.cost.source"
"""Where the collector's price came from: ``genai-prices``, ``override``, or ``unpriced``."""

SPENDGATE_PRICE_VERSION = "spendgate.price.version"
"""Version of the price table used to compute ``llm.cost.*``."""

SPENDGATE_ROUTE = "spendgate.route"
"""Proxy route that took the call, e.g. ``/v1/chat/completions``."""

SPENDGATE_PROXY_ID = "spendgate.proxy.id"
"""Resource attribute of a proxy's spans: its control-plane id (``control.proxy_id``, default host:pid).
The collector lists proxies whose spans arrive while they hold no control stream (budgets not enforced)."""

SPENDGATE_ROUTING_RULE = "spendgate.routing.rule"
"""Name of the routing rule that chose the served model, absent when none matched."""

SPENDGATE_RETRY_AFTER_S = "spendgate.retry_after_s"
"""On an attempt event: seconds the provider asked to wait (the target is skipped meanwhile)."""

EVENT_ATTEMPT = "spendgate.attempt"
"""Span event per failed upstream attempt and for the fallback that served (model, provider, status, error)."""


class Feature:
    """Values of ``spendgate.feature``."""

    AGENT = "agent"
    """A turn that offers tools to the model (coding agents, Cursor Agent mode)."""

    CHAT = "chat"
    """A conversational turn without tools."""

    SUMMARISE = "summarise"
    """A request to summarise or compact earlier context."""

    OTHER = "other"
    """Anything else (single completions, classification, embeddings-like use)."""


class RepoSource:
    """Values of ``spendgate.repo.source``."""

    HEADER = "header"
    """The ``x-spendgate-repo`` request header."""

    PATH_PREFIX = "path-prefix"
    """The ``/t/repo=.../`` base-URL path prefix."""

    CURSOR_HOOK = "cursor-hook"
    """A Cursor hook report joined to the call by developer and time."""

    PROMPT_WORKSPACE = "prompt-workspace"
    """The workspace path Cursor writes into its system prompt."""

    MODEL_ALIAS = "model-alias"
    """A model name carrying the repository, ``acme-api/claude-sonnet-4-6``."""

    KEY_DEFAULT = "key-default"
    """The default repository bound to the virtual key."""

    SDK = "sdk"
    """Set by application code through the spendgate SDK."""

    CURSOR_ADMIN_API = "cursor-admin-api"
    """A Cursor-billed event read from the Cursor Admin API: no repository is known for it."""

    NONE = "none"
    """No source named a repository."""


class UsageSource:
    """Values of ``spendgate.usage.source``."""

    PROVIDER = "provider"
    """Token counts reported by the provider."""

    ESTIMATE = "estimate"
    """Counted by the proxy from the text it saw, because the provider never reported usage."""

    CURSOR_ADMIN_API = "cursor-admin-api"
    """Token counts and cost Cursor reported for its own billed traffic (Admin API usage events)."""
