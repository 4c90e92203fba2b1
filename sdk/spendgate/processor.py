"""The span processor that stamps spendgate attribution onto LLM spans when they start.

``SpendgateSpanProcessor`` works with any instrumentation that creates spans through an
OpenTelemetry SDK ``TracerProvider`` (OpenInference, OpenLLMetry, the GenAI contrib instrumentors,
hand-written spans). In ``on_start`` it decides whether the span is an LLM call and, if so, adds the
attribution in force: the innermost ``spendgate.attribute`` block, else W3C baggage from an upstream
service, each field filled in from the process-wide defaults given to ``configure()``.

An LLM span is one that carries, at start, ``openinference.span.kind`` ``LLM`` or ``EMBEDDING``
(both cost money), or any ``gen_ai.*`` attribute. OpenInference and the GenAI instrumentors set
these when they start the span; a span that only gets them later is not stamped, because
``on_start`` is the last moment the SDK lets a processor write attributes.

What a span already has at start wins: spendgate fills gaps and never overwrites ``user.id``,
``vcs.*`` or ``spendgate.*`` set by the instrumentation or the application (e.g. OpenInference's
``using_user``). Two attributes merge instead: ``metadata`` (our keys are added to an existing JSON
object, its own keys win) and ``tag.tags`` (union, existing tags first).

``on_start`` never raises: any error is caught and counted in ``stats()``, and the first one is
logged. Its cost is measured by ``benchmarks/bench_sdk.py``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import SpanProcessor

from spendgate import context as _ctx
from spendgate.context import EMPTY, Attribution
from spendgate_semconv import attributes as sc

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, Span

logger = logging.getLogger(__name__)

LLM_SPAN_KINDS: frozenset[str] = frozenset({sc.SPAN_KIND_LLM, "EMBEDDING"})
"""OpenInference span kinds stamped with attribution."""

_GEN_AI_PREFIX = "gen_ai."
# Keys the GenAI instrumentors set at start; checked before scanning every key for "gen_ai.".
_GEN_AI_START_KEYS = (sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_SYSTEM, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL)

# Stamp caches hold one entry per distinct attribution object; a service sees few (one per block
# entry), but a bound keeps a pathological caller from growing memory.
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class ProcessorStats:
    """Counters of one processor since it was created (best effort: increments are not locked)."""

    spans_stamped: int
    """LLM spans that got at least one attribute from spendgate."""
    errors: int
    """Exceptions caught in ``on_start`` (the span went on unstamped)."""


class Stamp:
    """The span attributes that carry one attribution, prepared once and reused for every span."""

    __slots__ = ("attributes", "keys", "pairs")

    def __init__(self, pairs: tuple[tuple[str, Any], ...]) -> None:
        self.pairs = pairs
        """(key, value) in a fixed order."""
        self.attributes = dict(pairs)
        """The same as a dict, handed to ``span.set_attributes`` as is when the span has none of them."""
        self.keys = frozenset(self.attributes)


def stamp_for(attribution: Attribution) -> Stamp:
    """The span attributes that carry ``attribution``."""
    a = attribution
    pairs: list[tuple[str, Any]] = []
    metadata: dict[str, str] = {}
    if a.user:
        pairs.append((sc.USER_ID, a.user))
        metadata["user"] = a.user
    if a.team:
        pairs.append((sc.SPENDGATE_TEAM, a.team))
        metadata["team"] = a.team
    if a.cost_center:
        pairs.append((sc.SPENDGATE_COST_CENTER, a.cost_center))
        metadata["cost_center"] = a.cost_center
    if a.repo:
        pairs.append((sc.VCS_REPOSITORY_NAME, a.repo))
        pairs.append((sc.SPENDGATE_REPO_SOURCE, sc.RepoSource.SDK))
        metadata["repo"] = a.repo
    if a.branch:
        pairs.append((sc.VCS_REF_HEAD_NAME, a.branch))
        metadata["branch"] = a.branch
    if a.feature:
        pairs.append((sc.SPENDGATE_FEATURE, a.feature))
        metadata["feature"] = a.feature
    if a.tags:
        pairs.append((sc.TAG_TAGS, a.tags))
    if metadata:
        # Same keys as the proxy's metadata object, so the collector reads both the same way.
        pairs.append((sc.METADATA, json.dumps(metadata, separators=(",", ":"))))
    return Stamp(tuple(pairs))


def is_llm_span(attributes: Any) -> bool:
    """Whether span attributes (a mapping) mark an LLM call: see the module docstring."""
    if not attributes:
        return False
    if attributes.get(sc.OPENINFERENCE_SPAN_KIND) in LLM_SPAN_KINDS:
        return True
    for key in _GEN_AI_START_KEYS:
        if key in attributes:
            return True
    return any(key.startswith(_GEN_AI_PREFIX) for key in attributes)


def _attributes_of(span: Span) -> Any:
    """The span's attributes for reading, as cheaply as the SDK allows.

    ``span.attributes`` is a read-only proxy over the SDK's ``BoundedAttributes``, whose ``in`` goes
    through ``__getitem__`` and a caught ``KeyError`` and whose iteration copies the keys under a
    lock: about 4 us to classify a span with a handful of attributes (benchmarks/bench_sdk.py). The
    plain dict underneath answers the same questions in well under 1 us. Only read, never written;
    if a future SDK moves it, the public view is used (slower, same result).
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if isinstance(inner, dict) else span.attributes


class SpendgateSpanProcessor(SpanProcessor):
    """Stamps attribution onto LLM spans in ``on_start``; does nothing at end, exports nothing.

    ``defaults`` are the process-wide fields from ``configure()``; ``read_baggage=False`` ignores
    incoming W3C baggage (use it when callers are not trusted to name who pays).
    """

    def __init__(self, defaults: Attribution | None = None, *, read_baggage: bool = True) -> None:
        self._defaults = defaults or EMPTY
        self.read_baggage = read_baggage
        self.enabled = True
        self.provider_shut_down = False
        self._stamped = 0
        self._errors = 0
        self._logged_error = False
        # id(attribution) -> (attribution, stamp); the object is kept so its id stays unique.
        self._stamps: dict[int, tuple[Attribution, Stamp]] = {}
        # baggage values -> attribution, so repeated requests with the same baggage build it once.
        self._from_baggage: dict[tuple[Any, ...], Attribution | None] = {}
        self._defaults_stamp = stamp_for(self._defaults)

    @property
    def defaults(self) -> Attribution:
        return self._defaults

    @defaults.setter
    def defaults(self, value: Attribution) -> None:
        # Cached stamps were merged with the old defaults: drop them. A span starting concurrently
        # may still get the old defaults, never a mix of fields from both.
        self._stamps = {}
        self._defaults_stamp = stamp_for(value or EMPTY)
        self._defaults = value or EMPTY

    def stats(self) -> ProcessorStats:
        return ProcessorStats(spans_stamped=self._stamped, errors=self._errors)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            self._stamp(span, parent_context)
        except Exception:
            # The host's call must go on whatever happens here (docs/sdk.md, "never breaks the host").
            self._errors += 1
            if not self._logged_error:
                self._logged_error = True
                logger.warning("spendgate: could not attribute a span (further errors are only counted)", exc_info=True)

    def _stamp(self, span: Span, parent_context: otel_context.Context | None) -> None:
        existing = _attributes_of(span)
        if not is_llm_span(existing):
            return
        ctx = parent_context if parent_context is not None else otel_context.get_current()
        attribution = _ctx.local_attribution(ctx)
        if attribution is None and self.read_baggage:
            attribution = self._baggage_attribution(ctx)
        stamp = self._stamp_of(attribution) if attribution is not None else self._defaults_stamp
        if not stamp.pairs:
            return
        if stamp.keys.isdisjoint(existing):
            # The common case: the instrumentation set none of our attributes.
            span.set_attributes(stamp.attributes)
            self._stamped += 1
            return
        missing: dict[str, Any] = {}
        for key, value in stamp.pairs:
            if key not in existing:
                missing[key] = value
            elif key == sc.METADATA:
                merged = _merge_metadata(existing[key], value)
                if merged is not None:
                    missing[key] = merged
            elif key == sc.TAG_TAGS:
                merged_tags = _merge_tags(existing[key], value)
                if merged_tags is not None:
                    missing[key] = merged_tags
        if sc.VCS_REPOSITORY_NAME not in missing:
            # The repo came from somewhere else; its source is not ours to name.
            missing.pop(sc.SPENDGATE_REPO_SOURCE, None)
        if missing:
            span.set_attributes(missing)
            self._stamped += 1

    def _stamp_of(self, attribution: Attribution) -> Stamp:
        entry = self._stamps.get(id(attribution))
        if entry is not None and entry[0] is attribution:
            return entry[1]
        stamp = stamp_for(self._defaults.merged(attribution))
        if len(self._stamps) >= _CACHE_LIMIT:
            self._stamps = {}
        self._stamps[id(attribution)] = (attribution, stamp)
        return stamp

    def _baggage_attribution(self, ctx: otel_context.Context) -> Attribution | None:
        entries = _ctx.baggage.get_all(ctx)
        if not entries:
            return None
        key = tuple(entries.get(k) for k in _ctx.BAGGAGE_KEYS.values())
        try:
            return self._from_baggage[key]
        except KeyError:
            pass
        except TypeError:  # a local caller put an unhashable value in baggage: build it uncached
            return _ctx._from_baggage_entries(entries)
        attribution = _ctx._from_baggage_entries(entries)
        if len(self._from_baggage) >= _CACHE_LIMIT:
            self._from_baggage = {}
        self._from_baggage[key] = attribution
        return attribution

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        # Called by TracerProvider.shutdown(): the provider is finished, not just spendgate.
        self.enabled = False
        self.provider_shut_down = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _merge_metadata(existing: Any, ours: str) -> str | None:
    """Our metadata keys added under an existing JSON object (its keys win); None to leave it alone."""
    if not isinstance(existing, str):
        return None
    try:
        theirs = json.loads(existing)
    except ValueError:
        return None
    if not isinstance(theirs, dict):
        return None
    added = {k: v for k, v in json.loads(ours).items() if k not in theirs}
    if not added:
        return None
    return json.dumps({**theirs, **added}, separators=(",", ":"))


def _merge_tags(existing: Any, ours: tuple[str, ...]) -> tuple[str, ...] | None:
    if not isinstance(existing, (tuple, list)):
        return None
    extra = tuple(t for t in ours if t not in existing)
    return (*existing, *extra) if extra else None
