"""The call engine: one call answered in its client's format, whatever the provider speaks.

Every model route (Chat Completions, Cursor, Messages) admits its call (``admit.py``) and hands
:func:`serve` a :class:`~spendgate_proxy.call.model.Call`; the engine then reads, in order:

1. **attempts** (``attempts.py``): the call's targets tried in order (timeouts, unreachable
   providers, retryable statuses fall back to the next); the last failure is raised as
   ``UpstreamTimeout`` / ``UpstreamUnavailable`` and answered here in the client's format.
2. **relay** (``relay.py``): the answer passed through byte for byte when the provider speaks the
   client's format (the Chat Completions hot path, Anthropic to Anthropic), else translated
   event by event through the canonical model.
3. **record** (``record.py``): one span record completed and handed to the span worker however
   the call ended (answered, failed, the client gone), with an estimate when the provider never
   said what it bills.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from spendgate_proxy.call.attempts import error_reply, send
from spendgate_proxy.call.record import finish_record
from spendgate_proxy.call.relay import Progress, pass_bytes, translate_events
from spendgate_proxy.errors import UpstreamUnavailable

if TYPE_CHECKING:
    from spendgate_proxy.call.model import Call
    from spendgate_proxy.http.exchange import Exchange
    from spendgate_proxy.providers import Reply
    from spendgate_proxy.state import ProxyState


async def serve(ex: Exchange, state: ProxyState, call: Call) -> Any:
    """Answer ``call`` in its client's format, trying its targets in order; records one span.

    Returns a ``web.Response`` to send, or the stream it has written to the end (exchange.py)."""
    reply: Reply | None = None
    progress: Progress | None = None
    if call.req is not None:  # off the hot path the record is built already
        progress = Progress(call.record().output_text is not None)
        call.seen = progress
    try:
        try:
            reply, passthrough = await send(state, call)
        except UpstreamUnavailable as exc:
            return error_reply(call.inbound, exc.status, exc.message, exc.type, code=exc.code)
        if passthrough:
            return await pass_bytes(ex, call, reply)
        assert progress is not None
        return await translate_events(ex, call, reply, progress)
    except (ConnectionResetError, asyncio.CancelledError):
        # The client went away (aiohttp cancels the handler, or a write finds the socket closed).
        # Closing the reply below drops the upstream connection, so the provider stops generating.
        rec = call.record()
        rec.disconnected = True
        rec.error_type = "client_disconnected"
        raise
    finally:
        if reply is not None:
            if progress is not None and call.seen is progress:
                progress.cut_short(reply.partial_usage)
            reply.close()
        finish_record(state, call)


__all__ = ["serve"]
