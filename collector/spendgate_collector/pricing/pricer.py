"""The Pricer: resolves each (provider, model, price period) once, then prices spans in about a microsecond.

genai-prices' ``calc_price`` takes ~200 µs a call (model lookup, unit decomposition, ``Decimal``
arithmetic), which alone would cap the collector near 5,000 spans/s. The Pricer asks genai-prices
once per (span provider, span model) which model and price entry apply, notes the time interval
over which that entry holds, compiles it to float rates (``compiled.py``), checks the compiled form
against genai-prices on probe usages, and from then on prices from the compiled form. Entries the
compiler does not cover are priced by genai-prices on every call and counted in ``stats()``.

A ``Pricer`` may be shared by threads: its caches are only ever replaced whole, and its counters
are plain integers, approximate under concurrent use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from spendgate_collector.pricing.compiled import (
    CompiledPrice,
    NotTokenPriced,
    Uncompilable,
    compile_price,
    flat_rates,
    library_price,
    verify,
)
from spendgate_collector.pricing.periods import EARLIEST, LATEST, validity
from spendgate_collector.pricing.providers import provider_id_for
from spendgate_collector.pricing.types import Price, PricerStats, TokenUsage

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, Provider

    from spendgate_collector.pricing.overrides import PriceOverrides

logger = logging.getLogger(__name__)

SOURCE_LIBRARY = "genai-prices"
SOURCE_OVERRIDE = "override"
SOURCE_UNPRICED = "unpriced"

DEFAULT_MAX_MODELS = 10_000
"""(provider, model) pairs kept resolved; model names come from spans, so the cache must be bounded."""
_MAX_PERIODS = 32
"""Recent price periods kept per model, for spans that arrive out of time order (a week of DeepSeek's
twice-daily switches is 14)."""


@dataclass(frozen=True, slots=True)
class _LibraryEntry:
    """A price entry the compiler skipped: every call goes to genai-prices."""

    model: ModelInfo
    provider: Provider
    multiplier: float
    source: str
    version: str
    model_ref: str


_Entry = CompiledPrice | _LibraryEntry | None
"""How calls in one period are priced; None: unpriced."""


class _Slot:
    """What one (span provider, span model) pair resolved to, and the price period last used."""

    __slots__ = ("library", "multiplier", "override", "period", "periods", "source", "unpriced", "version")

    def __init__(
        self,
        *,
        unpriced: Price,
        entry: _Entry = None,
        library: tuple[Provider, ModelInfo] | None = None,
        multiplier: float = 1.0,
        source: str = SOURCE_UNPRICED,
        version: str = "",
    ) -> None:
        self.unpriced = unpriced
        self.library = library
        self.multiplier = multiplier
        self.override = source == SOURCE_OVERRIDE
        self.source = source
        self.version = version
        # (start, end, entry), replaced whole so a concurrent reader never sees a torn period.
        self.period: tuple[datetime, datetime, _Entry] = (EARLIEST, LATEST, entry)
        if library is not None:
            # An empty period: the first call resolves the entry valid at its timestamp.
            self.period = (LATEST, LATEST, None)
        self.periods: list[tuple[datetime, datetime, _Entry]] = []


class Pricer:
    """Prices LLM spans from genai-prices' bundled data and optional overrides.

    genai-prices' data is used as installed; the Pricer never asks it to fetch updates.
    """

    def __init__(self, overrides: PriceOverrides | None = None, *, max_models: int = DEFAULT_MAX_MODELS) -> None:
        import genai_prices
        from genai_prices import data_snapshot

        # One snapshot for the Pricer's life, so compiled entries and library calls agree.
        self._snapshot: DataSnapshot = data_snapshot.get_snapshot()
        library_version = f"genai-prices-{genai_prices.__version__}"
        if self._snapshot.from_auto_update:
            library_version += f"+data-{self._snapshot.timestamp:%Y%m%dT%H%M}"
        self._library_version = library_version
        self._overrides = overrides
        self._version = f"{library_version}+{overrides.version}" if overrides else library_version
        self._unpriced = Price(None, None, None, SOURCE_UNPRICED, self._version, None)
        self._max_models = max_models
        self._slots: dict[tuple[str | None, str], _Slot] = {}
        self._by_price: dict[tuple[int, str, str, float, str, str], _Entry] = {}
        self._calls = 0
        self._misses = 0
        self._compiled = 0
        self._library_calls = 0
        self._unpriced_calls = 0
        self._override_calls = 0
        self._cross_provider = 0
        self._clamped = 0

    @property
    def version(self) -> str:
        """The price table in use: ``genai-prices-<v>``, plus ``+override:<sha8>`` with overrides."""
        return self._version

    def price(self, provider: str | None, model: str, usage: TokenUsage, at: datetime) -> Price:
        """Price one call to ``model`` via ``provider`` (span names) at ``at`` (naive means UTC).

        Never raises for a model it cannot price: that is ``Price(None, None, None, "unpriced", ...)``.
        Depends only on its arguments: the same call priced twice, or by two Pricers, costs the same.
        """
        self._calls += 1
        slot = self._slots.get((provider, model))
        if slot is None:
            slot = self._resolve(provider, model)
        if at.tzinfo is not UTC:
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        start, end, entry = slot.period
        if not start <= at < end:
            entry = self._enter_period(slot, at)

        input_tokens = usage.input_tokens
        cache_read = usage.cache_read_tokens
        cache_write = usage.cache_write_tokens
        output = usage.output_tokens
        reasoning = usage.reasoning_tokens
        if not (
            cache_read >= 0
            and cache_write >= 0
            and cache_read + cache_write <= input_tokens
            and 0 <= reasoning <= output
        ):
            input_tokens, cache_read, cache_write, output, reasoning = self._clamp(
                input_tokens, cache_read, cache_write, output, reasoning
            )

        if slot.override:
            self._override_calls += 1
        if entry.__class__ is CompiledPrice:
            return entry.price(input_tokens, cache_read, cache_write, output, reasoning)
        if entry is None:
            self._unpriced_calls += 1
            return slot.unpriced
        # Neither compiled nor None, so a library entry: mypy narrows the `__class__ is` check
        # above only in its positive branch.
        library = cast("_LibraryEntry", entry)
        return self._library_price(library, at, (input_tokens, cache_read, cache_write, output, reasoning))

    def stats(self) -> PricerStats:
        """An immutable snapshot of the counters."""
        return PricerStats(
            models=len(self._slots),
            compiled_entries=self._compiled,
            cache_hits=self._calls - self._misses,
            library_fallbacks=self._library_calls,
            unpriced=self._unpriced_calls,
            overrides=self._override_calls,
            cross_provider=self._cross_provider,
            clamped_usages=self._clamped,
        )

    # --- slow paths: run once per (provider, model) or per price period

    def _clamp(
        self, input_tokens: int, cache_read: int, cache_write: int, output: int, reasoning: int
    ) -> tuple[int, int, int, int, int]:
        """Make an inconsistent usage consistent without pricing less than its itemised parts.

        Negative counts become 0. Parts larger than their total raise the total to the sum of its
        parts: the parts are what the provider itemised, and a short total usually means a producer
        passed Anthropic's raw ``input_tokens``, which excludes cache tokens. Shrinking the parts
        instead would drop cache tokens the provider billed.
        """
        self._clamped += 1
        input_tokens, cache_read, cache_write, output, reasoning = (
            max(value, 0) for value in (input_tokens, cache_read, cache_write, output, reasoning)
        )
        return max(input_tokens, cache_read + cache_write), cache_read, cache_write, max(output, reasoning), reasoning

    def _resolve(self, provider: str | None, model: str) -> _Slot:
        """Find what prices ``model`` via ``provider``: a custom model, genai-prices, or nothing."""
        provider_id = provider_id_for(provider, self._snapshot.providers)
        span_providers = (provider, provider_id)
        overrides = self._overrides

        custom = overrides.custom_model(span_providers, model) if overrides else None
        if custom is not None and overrides is not None:
            entry = CompiledPrice(
                base=flat_rates(
                    custom.input_per_mtok,
                    custom.output_per_mtok,
                    custom.cache_read_per_mtok,
                    custom.cache_write_per_mtok,
                ),
                tiers=(),
                request_usd=0.0,
                source=SOURCE_OVERRIDE,
                version=overrides.version,
                model_ref=custom.model,
            )
            self._compiled += 1
            slot = _Slot(unpriced=self._unpriced, entry=entry, source=SOURCE_OVERRIDE, version=overrides.version)
        elif (found := self._find(model, provider_id)) is None:
            logger.info("no price for model %r (provider %r): its spans stay unpriced", model, provider)
            slot = _Slot(unpriced=self._unpriced)
        else:
            found_provider, found_model = found
            if provider_id is not None and found_provider.id != provider_id:
                self._cross_provider += 1
                logger.info(
                    "model %r is not listed under provider %r; priced as %s/%s",
                    model,
                    provider,
                    found_provider.id,
                    found_model.id,
                )
            discount = (
                overrides.discount((*span_providers, found_provider.id), (model, found_model.id)) if overrides else None
            )
            if discount is not None and overrides is not None:
                slot = _Slot(
                    unpriced=self._unpriced,
                    library=found,
                    multiplier=discount.multiplier,
                    source=SOURCE_OVERRIDE,
                    version=f"{self._library_version}+{overrides.version}",
                )
            else:
                slot = _Slot(
                    unpriced=self._unpriced, library=found, source=SOURCE_LIBRARY, version=self._library_version
                )

        if slot.library is None:
            # A library slot counts its miss when the same call enters its first price period.
            self._misses += 1
        if len(self._slots) >= self._max_models:
            # Evict the oldest pair: model names come from spans, so the cache must stay bounded.
            self._slots.pop(next(iter(self._slots)), None)
        self._slots[(provider, model)] = slot
        return slot

    def _find(self, model: str, provider_id: str | None) -> tuple[Provider, ModelInfo] | None:
        """Look ``model`` up under ``provider_id``, then across providers; also without a ``vendor/`` prefix.

        Across providers, genai-prices picks the provider whose model pattern fits the name
        (``claude*`` is Anthropic, ``gpt-*`` OpenAI): OpenAI-SDK instrumentation says ``openai``
        for whatever OpenAI-compatible endpoint it calls, so a recognised provider that does not
        list the model is not the last word. Prefixes like ``anthropic/`` (OpenRouter, LiteLLM) or
        ``models/`` (Gemini) are dropped when the full name is not found.
        """
        names = [model]
        if "/" in model:
            names.append(model.rsplit("/", 1)[1])
        lookups: list[tuple[str, str | None]] = [(name, provider_id) for name in names] if provider_id else []
        lookups += [(name, None) for name in names]
        for name, lookup_provider in lookups:
            if not name:
                continue
            try:
                return self._snapshot.find_provider_model(name, None, lookup_provider, None)
            except LookupError:
                continue
        return None

    def _enter_period(self, slot: _Slot, at: datetime) -> _Entry:
        """Make the price period containing ``at`` the slot's current one, compiling it if new."""
        for period in slot.periods:
            if period[0] <= at < period[1]:
                slot.period = period
                return period[2]

        self._misses += 1
        assert slot.library is not None  # slots without a library model are valid for all time
        provider, model = slot.library
        start, end = validity(model, at)
        model_price = model.get_prices(at)
        # Compiled once per genai-prices entry (and discount): DeepSeek alternates two entries
        # daily, and many span names (dated ids, aliases) resolve to the same entry. id() is stable
        # because the Pricer pins its snapshot, which owns every entry.
        key = (id(model_price), provider.id, model.id, slot.multiplier, slot.source, slot.version)
        try:
            entry = self._by_price[key]
        except KeyError:
            entry = self._by_price[key] = self._compile(slot, provider, model, model_price, at)
        period = (start, end, entry)
        slot.period = period
        slot.periods = [period, *slot.periods[: _MAX_PERIODS - 1]]
        return entry

    def _compile(
        self, slot: _Slot, provider: Provider, model: ModelInfo, model_price: ModelPrice, at: datetime
    ) -> _Entry:
        """Compile one genai-prices entry and verify it; fall back to genai-prices where it differs."""
        fallback = _LibraryEntry(model, provider, slot.multiplier, slot.source, slot.version, model.id)
        try:
            compiled = compile_price(
                model_price,
                multiplier=slot.multiplier,
                source=slot.source,
                version=slot.version,
                model_ref=model.id,
            )
            mismatch = verify(compiled, lambda usage: library_price(model, provider, at, usage), slot.multiplier)
        except NotTokenPriced:
            logger.info(
                "%s/%s is not priced per token (%s): its spans stay unpriced", provider.id, model.id, model_price
            )
            return None
        except Uncompilable as exc:
            logger.info("pricing %s/%s with genai-prices on every call: %s", provider.id, model.id, exc)
            return fallback
        except ValueError as exc:
            # genai-prices itself rejects the entry (inconsistent units): no trustworthy price.
            logger.warning("genai-prices cannot price %s/%s: %s", provider.id, model.id, exc)
            return None
        if mismatch is not None:
            logger.warning("compiled price of %s/%s disagrees with genai-prices (%s)", provider.id, model.id, mismatch)
            return fallback
        self._compiled += 1
        return compiled

    def _library_price(self, entry: _LibraryEntry, at: datetime, usage: tuple[int, int, int, int, int]) -> Price:
        """Price one call with genai-prices itself (the slow path, counted in stats)."""
        self._library_calls += 1
        try:
            input_usd, output_usd, total_usd = library_price(entry.model, entry.provider, at, usage)
        except ValueError:
            logger.warning("genai-prices failed to price %s for usage %s", entry.model_ref, usage, exc_info=True)
            self._unpriced_calls += 1
            return self._unpriced
        multiplier = entry.multiplier
        return Price(
            input_usd * multiplier,
            output_usd * multiplier,
            total_usd * multiplier,
            entry.source,
            entry.version,
            entry.model_ref,
        )
