"""One Cursor Admin API usage event → one ``SpendRecord``, with ids derived from the event itself.

Which events are spend (decided from the documented fields, see docs/cursor-admin.md):

- ``isChargeable`` true: Cursor bills it beyond the plan. Cost = Cursor's own
  ``tokenUsage.totalCents / 100``, never re-priced (``cost_source = "cursor-admin-api"``).
- not chargeable (included in the plan, errored/aborted "not charged"): stored with a known cost of
  0, so requests and tokens show up but the chargeback only carries what Cursor invoices per use.
- BYOK (``kind`` names an API key): the call went out on the team's own provider key, i.e. through
  the gateway when the base URL is set. Storing it would count those tokens twice, so it is skipped
  here and left to reconciliation.

The event has no id of its own, so trace/span ids are a hash of its identity (timestamp, email,
model, kind, token counts, cents): the same event read twice (a re-poll, a page overlap, a restart)
maps to the same ids and the store ignores it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from spendgate_semconv.attributes import RepoSource, UsageSource

from ..keys.file import Principal
from ..records import SpendRecord

SERVICE_NAME = "cursor-admin-api"
COST_SOURCE = "cursor-admin-api"
PROVIDER = "cursor"
"""Who billed the call: keeps Cursor-billed rows apart from the gateway's (``anthropic``, ``openai``...)."""

_NANOS_PER_MS = 1_000_000

PrincipalLookup = Callable[[str], Principal | None]
"""Email → the principal (team, cost centre) of a virtual key bound to that user, when known."""


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def event_timestamp_ms(event: Mapping[str, Any]) -> int:
    """The event's time in Unix ms (the API sends it as a string of digits)."""
    return _int(event.get("timestamp"))


def is_byok(event: Mapping[str, Any]) -> bool:
    """True for calls made on the team's own provider key (``kind`` such as "User API Key")."""
    return "api key" in str(event.get("kind") or "").lower()


def event_identity(event: Mapping[str, Any]) -> str:
    """A stable text naming the event: what the ids are hashed from (and the cursor remembers)."""
    usage = event.get("tokenUsage") or {}
    parts = (
        str(event_timestamp_ms(event)),
        str(event.get("userEmail") or "").lower(),
        str(event.get("model") or ""),
        str(event.get("kind") or ""),
        str(bool(event.get("maxMode"))),
        str(_int(usage.get("inputTokens"))),
        str(_int(usage.get("outputTokens"))),
        str(_int(usage.get("cacheWriteTokens"))),
        str(_int(usage.get("cacheReadTokens"))),
        repr(usage.get("totalCents")),
        repr(event.get("requestsCosts")),
    )
    return "\x1f".join(parts)


def event_ids(event: Mapping[str, Any]) -> tuple[str, str]:
    """``(trace_id, span_id)``: 32 and 16 hex digits of a SHA-256 of the event's identity."""
    digest = hashlib.sha256(event_identity(event).encode()).hexdigest()
    return digest[:32], digest[32:48]


def event_to_record(event: Mapping[str, Any], principal_for: PrincipalLookup | None = None) -> SpendRecord | None:
    """The spend row for one usage event, or ``None`` when it is not stored (BYOK, or no timestamp)."""
    ts_ms = event_timestamp_ms(event)
    if ts_ms <= 0 or is_byok(event):
        return None
    usage = event.get("tokenUsage") or {}
    cache_read = _int(usage.get("cacheReadTokens"))
    cache_write = _int(usage.get("cacheWriteTokens"))
    # Cursor reports Anthropic-style parts: inputTokens excludes the cache. spendgate's input total
    # includes cache reads and writes (docs/semconv.md), so add them back once.
    input_total = _int(usage.get("inputTokens")) + cache_read + cache_write
    cents = usage.get("totalCents")
    cost = float(cents or 0) / 100 if event.get("isChargeable") else 0.0
    email = str(event.get("userEmail") or "").strip().lower() or None
    principal = principal_for(email) if (email and principal_for) else None
    trace_id, span_id = event_ids(event)
    ts_ns = ts_ms * _NANOS_PER_MS
    return SpendRecord(
        trace_id=trace_id,
        span_id=span_id,
        start_ns=ts_ns,
        end_ns=ts_ns,
        model=str(event.get("model") or "") or None,
        developer=email,
        team=principal.team if principal else None,
        cost_center=principal.cost_center if principal else None,
        repo_source=RepoSource.CURSOR_ADMIN_API,
        provider=PROVIDER,
        input_tokens=input_total,
        output_tokens=_int(usage.get("outputTokens")),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        usage_source=UsageSource.CURSOR_ADMIN_API,
        service_name=SERVICE_NAME,
        cost_usd=cost,
        cost_source=COST_SOURCE,
    )
