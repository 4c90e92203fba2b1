"""Stage 2 of the pipeline: put a price on each ``SpendRecord`` with the ``Pricer``.

Each call is priced at its span's end time (prices change; a call is billed at the rate of the
day it was made). A record with no model, or a model nobody prices, keeps ``cost_usd = None`` and
``cost_source = "unpriced"``: it is stored and counted in the unpriced bucket, never as zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from ..records import SpendRecord
from . import Pricer, TokenUsage

logger = logging.getLogger(__name__)

UNPRICED = "unpriced"


class PricingStage:
    """Fill ``cost_usd``, ``cost_source`` and ``price_version`` in place."""

    def __init__(self, pricer: Pricer) -> None:
        self._pricer = pricer
        self._failures_logged = 0

    @property
    def pricer(self) -> Pricer:
        return self._pricer

    def price(self, records: Iterable[SpendRecord]) -> None:
        """Price every record; a pricing failure leaves that record unpriced (and is logged)."""
        pricer = self._pricer
        for r in records:
            if r.model is None:
                r.cost_usd, r.cost_source = None, UNPRICED
                continue
            usage = TokenUsage(
                r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.reasoning_tokens
            )
            try:
                price = pricer.price(r.provider, r.model, usage, datetime.fromtimestamp(r.end_ns / 1e9, UTC))
            except Exception:
                # The pipeline must never lose a span to a pricing bug: store it unpriced instead.
                if self._failures_logged < 10:
                    self._failures_logged += 1
                    logger.exception("pricing failed for model %r (provider %r); stored unpriced", r.model, r.provider)
                r.cost_usd, r.cost_source = None, UNPRICED
                continue
            r.cost_usd = price.total_usd
            r.cost_source = price.source
            r.price_version = price.version
            r.cost_input_usd = price.input_usd
            r.cost_output_usd = price.output_usd
