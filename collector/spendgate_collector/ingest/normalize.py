"""Turn OTLP spans from any LLM instrumentation into ``SpendRecord``s: the pipeline's first stage.

Three dialects are read, most specific first: spendgate's own spans (OpenInference + GenAI +
``spendgate.*``, see ``spendgate_semconv.attributes``), OpenInference instrumentations
(``openinference.span.kind=LLM``, ``llm.*``) and OpenTelemetry GenAI instrumentations (``gen_ai.*``,
both the pre-1.37 ``gen_ai.system`` / ``gen_ai.usage.prompt_tokens`` names and the current ones).
A span is an LLM span when its OpenInference kind is ``LLM`` or it has any ``gen_ai.usage.*`` or
``gen_ai.request.model`` attribute; other spans are counted and ignored.

Attribution gaps are filled, per field, from the span's resource and then from the principal bound
to the span's ``spendgate.key.id`` in the keys file. Spans with invalid ids, no timestamps or token
counts that are not non-negative numbers are rejected as malformed (reported back to the exporter as
OTLP partial success), since pricing them would invent spend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from spendgate_semconv import attributes as sc

from ..attribution.windows import AttributionWindows
from ..keys.file import KeyDirectory
from ..proxy_roster import ProxyRoster
from ..records import SpendRecord
from .otlp import STATUS_CODE_ERROR, AttributeReader

# Pre-1.37 GenAI names still emitted by older instrumentations. Not in spendgate's semconv because
# spendgate never emits them; defined here rather than imported from opentelemetry-semconv's
# `_incubating` module, which drops deprecated names over time.
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_PREFIX = "gen_ai.usage."

# Keys of the OpenInference ``metadata`` JSON object that carry attribution.
_METADATA_FIELDS = ("team", "cost_center", "repo", "feature")

# Candidate attributes per field, strongest first.
_PROVIDER_KEYS = (sc.LLM_PROVIDER, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM, sc.LLM_SYSTEM)
_MODEL_KEYS = (sc.LLM_MODEL_NAME, sc.GEN_AI_RESPONSE_MODEL, sc.SPENDGATE_MODEL_SERVED, sc.GEN_AI_REQUEST_MODEL)
_REQUESTED_MODEL_KEYS = (sc.SPENDGATE_MODEL_REQUESTED, sc.GEN_AI_REQUEST_MODEL)
_INPUT_KEYS = (sc.LLM_TOKEN_COUNT_PROMPT, sc.GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS)
_OUTPUT_KEYS = (sc.LLM_TOKEN_COUNT_COMPLETION, sc.GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS)
_CACHE_READ_KEYS = (sc.LLM_TOKEN_COUNT_PROMPT_CACHE_READ, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)
_CACHE_WRITE_KEYS = (sc.LLM_TOKEN_COUNT_PROMPT_CACHE_WRITE, sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)
_REASONING_KEYS = (sc.LLM_TOKEN_COUNT_COMPLETION_REASONING, GEN_AI_USAGE_REASONING_OUTPUT_TOKENS)

# Every attribute _record reads; the rest of a span's attributes are never decoded.
_READ_KEYS = frozenset(
    {
        sc.OPENINFERENCE_SPAN_KIND,
        *_PROVIDER_KEYS,
        *_MODEL_KEYS,
        *_REQUESTED_MODEL_KEYS,
        *_INPUT_KEYS,
        *_OUTPUT_KEYS,
        *_CACHE_READ_KEYS,
        *_CACHE_WRITE_KEYS,
        *_REASONING_KEYS,
        sc.ERROR_TYPE,
        sc.SPENDGATE_TTFT_MS,
        sc.USER_ID,
        sc.SPENDGATE_TEAM,
        sc.SPENDGATE_COST_CENTER,
        sc.VCS_REPOSITORY_NAME,
        sc.VCS_REPOSITORY_URL_FULL,
        sc.VCS_REF_HEAD_NAME,
        sc.SPENDGATE_REPO_SOURCE,
        sc.SPENDGATE_FEATURE,
        sc.SPENDGATE_KEY_ID,
        sc.SPENDGATE_USAGE_SOURCE,
        sc.METADATA,
    }
)

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_MAX_MESSAGES = 5


class _Malformed(Exception):
    """A span that cannot be recorded as sent."""


@dataclass(slots=True)
class NormalizedBatch:
    """What one export request turned into."""

    records: list[SpendRecord] = field(default_factory=list)
    spans: int = 0
    """Spans seen, of every kind."""
    non_llm: int = 0
    """Spans that are not LLM calls (ignored for spend)."""
    rejected: int = 0
    """Malformed spans not recorded."""
    messages: list[str] = field(default_factory=list)
    """A few distinct reasons for the rejections, for the exporter's partial-success message."""

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.messages) < _MAX_MESSAGES and reason not in self.messages:
            self.messages.append(reason)


def _pick(get: Callable[[str], Any], keys: tuple[str, ...]) -> Any:
    """The first of ``keys`` with a non-empty decoded value."""
    for key in keys:
        value = get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _tokens(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _Malformed(f"{name} is a boolean")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and math.isfinite(value)) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
    else:
        raise _Malformed(f"{name} is not a number")
    if number < 0:
        raise _Malformed(f"{name} is negative")
    return number


def _is_llm(vals: dict[str, Any]) -> bool:
    if sc.GEN_AI_USAGE_INPUT_TOKENS in vals or sc.GEN_AI_REQUEST_MODEL in vals:
        return True
    if vals.get(sc.OPENINFERENCE_SPAN_KIND) == sc.SPAN_KIND_LLM:
        return True
    return any(key.startswith(GEN_AI_USAGE_PREFIX) for key in vals)


def _wanted_on_span(key: str) -> bool:
    return key in _READ_KEYS or key.startswith(GEN_AI_USAGE_PREFIX)


_RESOURCE_KEYS = frozenset(
    {
        SERVICE_NAME,
        sc.USER_ID,
        sc.SPENDGATE_TEAM,
        sc.SPENDGATE_COST_CENTER,
        sc.VCS_REPOSITORY_NAME,
        sc.SPENDGATE_PROXY_ID,
    }
)


@dataclass(frozen=True, slots=True)
class _ResourceDefaults:
    service_name: str | None
    developer: str | None
    team: str | None
    cost_center: str | None
    repo: str | None
    proxy_id: str | None


def _resource_defaults(vals: dict[str, Any]) -> _ResourceDefaults:
    return _ResourceDefaults(
        service_name=_text(vals.get(SERVICE_NAME)),
        developer=_text(vals.get(sc.USER_ID)),
        team=_text(vals.get(sc.SPENDGATE_TEAM)),
        cost_center=_text(vals.get(sc.SPENDGATE_COST_CENTER)),
        repo=_text(vals.get(sc.VCS_REPOSITORY_NAME)),
        proxy_id=_text(vals.get(sc.SPENDGATE_PROXY_ID)),
    )


class Normalizer:
    """Stage 1: lean OTLP export request → ``NormalizedBatch`` of ``SpendRecord``s (cost not yet set)."""

    def __init__(
        self,
        keys: KeyDirectory | None = None,
        windows: AttributionWindows | None = None,
        roster: ProxyRoster | None = None,
    ) -> None:
        self._keys = keys
        self._windows = windows
        """Cursor hook windows (attribution/windows.py): repo for spans that arrived without a strong one."""
        self._roster = roster
        """Told which proxies spans come from (``spendgate.proxy.id`` on the resource; proxy_roster.py)."""
        self._span_attributes = AttributeReader(_wanted_on_span)
        self._resource_attributes = AttributeReader(_RESOURCE_KEYS.__contains__, cache_max=1024)

    def normalize(self, request: Any) -> NormalizedBatch:
        """Normalise every span of a lean ``ExportTraceServiceRequest`` (see ``otlp.parse_export_request``)."""
        if self._keys is not None:
            self._keys.refresh()
        batch = NormalizedBatch()
        for resource_spans in request.resource_spans:
            defaults = _resource_defaults(self._resource_attributes.read(resource_spans.resource.attributes))
            if defaults.proxy_id is not None and self._roster is not None:
                self._roster.saw_spans(defaults.proxy_id)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    batch.spans += 1
                    trace_id = span.trace_id
                    span_id = span.span_id
                    if (
                        len(trace_id) != 16
                        or len(span_id) != 8
                        or trace_id == _ZERO_TRACE_ID
                        or span_id == _ZERO_SPAN_ID
                    ):
                        batch.reject("invalid trace_id or span_id (need 16 and 8 non-zero bytes)")
                        continue
                    vals = self._span_attributes.read(span.attributes)
                    if not _is_llm(vals):
                        batch.non_llm += 1
                        continue
                    try:
                        batch.records.append(self._record(span, vals, defaults))
                    except _Malformed as exc:
                        batch.reject(f"span {span_id.hex()}: {exc}")
        return batch

    def _record(self, span: Any, vals: dict[str, Any], defaults: _ResourceDefaults) -> SpendRecord:
        start_ns = span.start_time_unix_nano
        end_ns = span.end_time_unix_nano or start_ns
        if not end_ns:
            raise _Malformed("no start or end time")
        get = vals.get

        input_tokens = _tokens(_pick(get, _INPUT_KEYS), "input tokens")
        output_tokens = _tokens(_pick(get, _OUTPUT_KEYS), "output tokens")
        cache_read = _tokens(_pick(get, _CACHE_READ_KEYS), "cache read tokens")
        cache_write = _tokens(_pick(get, _CACHE_WRITE_KEYS), "cache write tokens")
        reasoning = _tokens(_pick(get, _REASONING_KEYS), "reasoning tokens")
        # Both specs say totals include their parts. A total smaller than its parts can only come
        # from an instrumentation that copied a provider's exclusive count (Anthropic's input_tokens
        # excludes cache tokens), so add the parts back instead of pricing a negative remainder.
        if input_tokens < cache_read + cache_write:
            input_tokens += cache_read + cache_write
        if output_tokens < reasoning:
            output_tokens += reasoning

        status_error = span.status.code == STATUS_CODE_ERROR
        error_type = _text(get(sc.ERROR_TYPE))
        if status_error and error_type is None:
            error_type = "error"
        ttft = get(sc.SPENDGATE_TTFT_MS)

        # Positional arguments, in SpendRecord's field order: a keyword call costs ~1.5 µs more per
        # span. test_normalize checks every field of a fully populated record, so a swap shows.
        record = SpendRecord(
            span.trace_id.hex(),  # trace_id
            span.span_id.hex(),  # span_id
            start_ns or end_ns,  # start_ns
            end_ns,  # end_ns
            _text(_pick(get, _MODEL_KEYS)),  # model
            _text(get(sc.USER_ID)) or defaults.developer,  # developer
            _text(get(sc.SPENDGATE_TEAM)) or defaults.team,  # team
            _text(get(sc.SPENDGATE_COST_CENTER)) or defaults.cost_center,  # cost_center
            _text(get(sc.VCS_REPOSITORY_NAME)) or defaults.repo,  # repo
            _text(get(sc.VCS_REPOSITORY_URL_FULL)),  # repo_url
            _text(get(sc.VCS_REF_HEAD_NAME)),  # branch
            _text(get(sc.SPENDGATE_REPO_SOURCE)),  # repo_source
            _text(get(sc.SPENDGATE_FEATURE)),  # feature
            _text(get(sc.SPENDGATE_KEY_ID)),  # key_id
            _text(_pick(get, _PROVIDER_KEYS)),  # provider
            _text(_pick(get, _REQUESTED_MODEL_KEYS)),  # requested_model
            input_tokens,
            output_tokens,
            cache_read,  # cache_read_tokens
            cache_write,  # cache_write_tokens
            reasoning,  # reasoning_tokens
            _text(get(sc.SPENDGATE_USAGE_SOURCE)),  # usage_source
            "error" if status_error or error_type is not None else "ok",  # status
            error_type,
            float(ttft) if isinstance(ttft, int | float) and not isinstance(ttft, bool) else None,  # ttft_ms
            defaults.service_name,  # service_name
        )
        if record.team is None or record.cost_center is None or record.repo is None or record.feature is None:
            self._from_metadata(record, get(sc.METADATA))
        if record.key_id is not None and (
            record.developer is None or record.team is None or record.cost_center is None or record.repo is None
        ):
            self._from_key(record)
        if self._windows is not None:
            # Last, so a key-default repo set just above can still give way to the developer's hook window.
            self._windows.stamp(record)
        return record

    @staticmethod
    def _from_metadata(record: SpendRecord, raw: Any) -> None:
        """Fill gaps from the OpenInference ``metadata`` JSON object, when there is one."""
        if not isinstance(raw, str):
            return
        try:
            metadata = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(metadata, dict):
            return
        for name in _METADATA_FIELDS:
            if getattr(record, name) is None:
                setattr(record, name, _text(metadata.get(name)))

    def _from_key(self, record: SpendRecord) -> None:
        """Fill gaps from the principal the virtual key is bound to."""
        if self._keys is None or record.key_id is None:
            return
        principal = self._keys.lookup(record.key_id)
        if principal is None:
            return
        record.developer = record.developer or principal.user or None  # "" when the key names no user
        record.team = record.team or principal.team
        record.cost_center = record.cost_center or principal.cost_center
        if record.repo is None and principal.repo is not None:
            record.repo = principal.repo
            record.repo_source = record.repo_source or sc.RepoSource.KEY_DEFAULT
