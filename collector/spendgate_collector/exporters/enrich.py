"""Rewrite a stored OTLP request for one exporter: add the collector's cost and attribution, apply filters.

For each LLM span (a span the pipeline turned into a ``SpendRecord``) the request gets:

- ``llm.cost.prompt``, ``llm.cost.completion``, ``llm.cost.total`` (USD), when the model is priced;
- ``spendgate.cost.source`` and ``spendgate.price.version`` (replacing any the span carried: the
  collector's price is the one the chargeback uses);
- ``user.id``, ``spendgate.team``, ``spendgate.cost_center``, ``vcs.repository.name`` (and
  ``spendgate.repo.source``, ``spendgate.feature``) from the record, only where the span itself has
  no such attribute, i.e. what the collector filled in from the resource, the ``metadata`` JSON or
  the principal bound to the span's virtual key.

Other spans pass through unchanged unless a filter applies: ``llm_only`` keeps LLM spans only, and
``drop_content`` removes prompt and completion content (attributes and span events) from every span.
LLM spans that the store reported as duplicates (a client re-sent them) are not forwarded again.

Everything else about a span (name, kind, parent, events, links, status, resource, scope) is kept
byte for byte: see ``wire.py``. A request with no LLM span and no filter is forwarded as received,
without being parsed at all.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from spendgate_semconv import attributes as sc

from ..records import SpendRecord
from .wire import _string_field, event_name, key_value, parse_request


@dataclass(frozen=True, slots=True)
class SpanFilter:
    """What an exporter leaves out."""

    llm_only: bool = False
    """Forward LLM spans only (those the collector priced or recorded)."""
    drop_content: bool = False
    """Remove prompt/completion content attributes and events from every span."""


class ForwardRecord(NamedTuple):
    """What the exporters need of a ``SpendRecord``, cheap to pickle to the exporters' process."""

    trace_id: str
    span_id: str
    cost_usd: float | None
    cost_input_usd: float | None
    cost_output_usd: float | None
    cost_source: str | None
    price_version: str | None
    developer: str | None
    team: str | None
    cost_center: str | None
    repo: str | None
    repo_source: str | None
    feature: str | None


forward_fields = operator.attrgetter(*ForwardRecord._fields)
"""``SpendRecord`` → the plain tuple of a ``ForwardRecord`` (one C call per record)."""


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """One OTLP request the pipeline has made durable, with what it learnt from it."""

    payload: bytes
    """``ExportTraceServiceRequest`` protobuf bytes as received (JSON already converted)."""
    spans: int
    """Spans in the request, of every kind."""
    records: Sequence[SpendRecord | ForwardRecord]
    """The request's LLM spans as normalised and priced, in span order."""


# Attributes the collector owns on a forwarded LLM span: any value the span carried is replaced.
_OWNED = frozenset(
    k.encode()
    for k in (
        sc.LLM_COST_PROMPT,
        sc.LLM_COST_COMPLETION,
        sc.LLM_COST_TOTAL,
        sc.SPENDGATE_COST_SOURCE,
        sc.SPENDGATE_PRICE_VERSION,
    )
)
# Attribution filled in from the record when the span has no attribute of that name.
_FILLED = (
    (sc.USER_ID, "developer"),
    (sc.SPENDGATE_TEAM, "team"),
    (sc.SPENDGATE_COST_CENTER, "cost_center"),
    (sc.VCS_REPOSITORY_NAME, "repo"),
    (sc.SPENDGATE_REPO_SOURCE, "repo_source"),
    (sc.SPENDGATE_FEATURE, "feature"),
)
_FILLED_KEYS = {name.encode(): i for i, (name, _) in enumerate(_FILLED)}
_ALL_FILLED = (1 << len(_FILLED)) - 1

# Classes of attribute keys, memoised per raw KeyValue. Ordered so that "drop it" is one comparison:
# owned attributes are always replaced, content attributes go too under drop_content.
_OTHER, _OWNED_ATTR, _CONTENT_ATTR, _FILLED_BASE = 0, 1, 2, 16

# Content attributes (OpenInference and GenAI, current and older names): exact names, and prefixes
# that cover flattened lists such as ``llm.input_messages.0.message.content``.
CONTENT_ATTRIBUTES = frozenset(
    {
        "input.value",
        "input.mime_type",
        "output.value",
        "output.mime_type",
        "llm.prompts",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "reranker.query",
    }
)
CONTENT_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.prompt_template.",
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "retrieval.documents.",
    "embedding.embeddings.",
    "reranker.input_documents.",
    "reranker.output_documents.",
)
# Span events that carry message content (GenAI semantic conventions, old and new).
CONTENT_EVENTS = frozenset(
    {
        "gen_ai.content.prompt",
        "gen_ai.content.completion",
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.client.inference.operation.details",
    }
)
_CONTENT_EXACT = frozenset(k.encode() for k in CONTENT_ATTRIBUTES)
_CONTENT_PREFIXES = tuple(p.encode() for p in CONTENT_PREFIXES)


_KEY_CACHE_MAX = 65_536
_KEY_CACHE_MAX_LEN = 160


def _raw_key(raw: bytes) -> bytes:
    """Key of a raw ``KeyValue`` as bytes (no decoding: compared against byte constants)."""
    if len(raw) > 1 and raw[0] == 0x0A and raw[1] < 0x80:
        return raw[2 : 2 + raw[1]]
    return _string_field(raw, 1).encode()


def is_content_key(key: bytes) -> bool:
    return key in _CONTENT_EXACT or key.startswith(_CONTENT_PREFIXES)


_pack_double = struct.Struct("<d").pack


def _double_prefix(key: str) -> bytes:
    """``KeyValue`` bytes of ``key`` up to its 8-byte double (``AnyValue.double_value``, 9 bytes)."""
    return key_value(key, 0.0)[:-8]


_COST_PROMPT = _double_prefix(sc.LLM_COST_PROMPT)
_COST_COMPLETION = _double_prefix(sc.LLM_COST_COMPLETION)
_COST_TOTAL = _double_prefix(sc.LLM_COST_TOTAL)


class Enricher:
    """Turns ``StoredRequest``s into the bytes one kind of exporter sends. Not thread-safe."""

    def __init__(self, span_filter: SpanFilter) -> None:
        self.filter = span_filter
        # Raw KeyValue → key class, memoised: most attributes (model, team, provider...) repeat span
        # after span, and a dict lookup is cheaper than slicing the key out. Bounded: cleared when full.
        self._classes: dict[bytes, int] = {}
        self._strings: dict[tuple[str, str], bytes] = {}

    def transform(self, request: StoredRequest, inserted: Collection[int] | None = None) -> tuple[bytes, int]:
        """``(request bytes, spans in them)`` for this exporter; ``(b"", 0)`` when nothing is left.

        ``inserted`` holds the ``id()`` of the records the store newly inserted, or ``None`` when all were.
        """
        llm_only, drop_content = self.filter.llm_only, self.filter.drop_content
        records = request.records
        if not records:
            if llm_only:
                return b"", 0
            if not drop_content:
                return request.payload, request.spans
        by_id: dict[bytes, SpendRecord | ForwardRecord | None] = {}
        for r in records:
            # None marks a duplicate: stored before, so forwarded before.
            fresh = inserted is None or id(r) in inserted
            by_id[bytes.fromhex(r.trace_id + r.span_id)] = r if fresh else None
        message = parse_request(request.payload)
        kept = 0
        resource_spans = message.resource_spans
        for ri in range(len(resource_spans) - 1, -1, -1):
            scope_spans = resource_spans[ri].scope_spans
            for si in range(len(scope_spans) - 1, -1, -1):
                spans = scope_spans[si].spans
                for i in range(len(spans) - 1, -1, -1):
                    span = spans[i]
                    span_key = span.trace_id + span.span_id
                    if span_key in by_id:
                        record = by_id[span_key]
                        if record is None:
                            del spans[i]
                            continue
                        self._enrich(span, record, drop_content)
                    elif llm_only:
                        del spans[i]
                        continue
                    elif drop_content:
                        self._drop_content(span)
                    kept += 1
                if not spans:
                    del scope_spans[si]
            if not scope_spans:
                del resource_spans[ri]
        if not kept:
            return b"", 0
        return message.SerializeToString(), kept

    # --- per span

    def _class(self, raw: bytes) -> int:
        """``_OTHER``, ``_OWNED_ATTR``, ``_CONTENT_ATTR`` or ``_FILLED_BASE + i`` for a raw ``KeyValue``."""
        cls = self._classes.get(raw)
        if cls is None:
            key = _raw_key(raw)
            if key in _OWNED:
                cls = _OWNED_ATTR
            elif key in _FILLED_KEYS:
                cls = _FILLED_BASE + _FILLED_KEYS[key]
            elif is_content_key(key):
                cls = _CONTENT_ATTR
            else:
                cls = _OTHER
            if len(raw) <= _KEY_CACHE_MAX_LEN:
                if len(self._classes) >= _KEY_CACHE_MAX:
                    self._classes.clear()
                self._classes[raw] = cls
        return cls

    def _string(self, name: str, value: str) -> bytes:
        """A string ``KeyValue``, memoised: sources, versions, teams and developers repeat."""
        cache_key = (name, value)
        raw = self._strings.get(cache_key)
        if raw is None:
            raw = key_value(name, value)
            if len(self._strings) >= _KEY_CACHE_MAX:
                self._strings.clear()
            self._strings[cache_key] = raw
        return raw

    def _enrich(self, span: Any, record: SpendRecord | ForwardRecord, drop_content: bool) -> None:
        attributes = span.attributes
        present = 0  # bit i: the span has _FILLED[i]
        drop = _CONTENT_ATTR if drop_content else _OWNED_ATTR
        remove = False
        classes = self._classes
        classify = self._class
        # The per-attribute loop is the hot spot of forwarding: one dict lookup per attribute.
        for raw in attributes:
            cls = classes.get(raw)
            if cls is None:
                cls = classify(raw)
            if cls >= _FILLED_BASE:
                present |= 1 << (cls - _FILLED_BASE)
            elif cls and cls <= drop:
                remove = True
        if remove:
            kept = [raw for raw in attributes if not 0 < classify(raw) <= drop]
            del attributes[:]
            attributes.extend(kept)
        added = []
        if record.cost_usd is not None:
            if record.cost_input_usd is not None:
                added.append(_COST_PROMPT + _pack_double(record.cost_input_usd))
            if record.cost_output_usd is not None:
                added.append(_COST_COMPLETION + _pack_double(record.cost_output_usd))
            added.append(_COST_TOTAL + _pack_double(record.cost_usd))
        string = self._string
        if record.cost_source is not None:
            added.append(string(sc.SPENDGATE_COST_SOURCE, record.cost_source))
        if record.price_version is not None:
            added.append(string(sc.SPENDGATE_PRICE_VERSION, record.price_version))
        if present != _ALL_FILLED:
            for i, (name, field) in enumerate(_FILLED):
                if not present & (1 << i):
                    value = getattr(record, field)
                    if value is not None:
                        added.append(string(name, value))
        attributes.extend(added)
        if drop_content and span.events:
            self._drop_content_events(span)

    def _drop_content(self, span: Any) -> None:
        attributes = span.attributes
        classify = self._class
        if any(classify(raw) == _CONTENT_ATTR for raw in attributes):
            kept = [raw for raw in attributes if classify(raw) != _CONTENT_ATTR]
            del attributes[:]
            attributes.extend(kept)
        if span.events:
            self._drop_content_events(span)

    @staticmethod
    def _drop_content_events(span: Any) -> None:
        events = span.events
        if any(event_name(raw) in CONTENT_EVENTS for raw in events):
            kept = [raw for raw in events if event_name(raw) not in CONTENT_EVENTS]
            del events[:]
            events.extend(kept)
