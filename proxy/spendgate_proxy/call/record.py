"""The end of every call: the span record completed and handed to the span worker, once.

:func:`finish_record` runs however the call ended (answered, refused upstream, cut, the client
gone): what the relay saw (``call.seen``: a tap over passed-through bytes, or the progress of a
translated stream) goes on the record, and when the provider never said what it will bill, the
usage is estimated (:func:`estimate_usage`): the prompt from the request, the output from what
was streamed. :func:`note_answer` reads the same facts from a whole (non-streamed) answer that
was passed through.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats import estimate
from spendgate_proxy.formats.canonical import Usage, finish_reason_from_anthropic
from spendgate_proxy.formats.openai import usage_from_openai
from spendgate_proxy.telemetry.redact import redact

if TYPE_CHECKING:
    from spendgate_proxy.call.model import Call, InboundFormat
    from spendgate_proxy.state import ProxyState
    from spendgate_proxy.telemetry.spans import CallRecord


def note_answer(rec: CallRecord, data: bytes, inbound: InboundFormat) -> None:
    """Usage, id, model and finish reasons from a whole passed-through answer in ``inbound``'s format."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(obj, dict):
        return
    usage = obj.get("usage")
    if inbound == "anthropic":
        if isinstance(usage, dict):
            rec.usage = anthropic_messages.usage_from_anthropic(usage)
        stop = obj.get("stop_reason")
        reason = finish_reason_from_anthropic(stop if isinstance(stop, str) else None)
        rec.finish_reasons = (reason,) if reason else ()
    else:
        if isinstance(usage, dict):
            rec.usage = usage_from_openai(usage)
        rec.finish_reasons = tuple(
            c["finish_reason"] for c in obj.get("choices") or () if isinstance(c, dict) and c.get("finish_reason")
        )
    rec.response_id, rec.response_model = obj.get("id"), obj.get("model")
    if rec.output_text is not None:
        rec.output_text = redact(data.decode(errors="replace"))


def estimate_usage(call: Call) -> Usage:
    """What the provider will bill although it never said: the prompt from the request, the
    output from what was streamed (``call.seen``)."""
    # The hot path never parsed the body: count it as Chat Completions.
    prompt = estimate.prompt_tokens(call.body) if call.req is None else estimate.estimate_input_tokens(call.req)
    completion = call.seen.output_estimate() if call.seen is not None else 0
    return Usage(input_tokens=prompt, output_tokens=completion)


def finish_record(state: ProxyState, call: Call) -> None:
    """Complete the call's span record (building it if nothing did) and hand it to the span worker."""
    rec = call.record()
    if call.seen is not None:
        call.seen.fill(rec)
    if rec.usage is None and rec.status_code in (0, 200) and (rec.ttft_ns is not None or rec.disconnected):
        rec.usage = estimate_usage(call)
        rec.usage_estimated = True
    rec.end_ns = time.time_ns()
    if state.worker is not None:
        state.worker.record(rec)


__all__ = ["estimate_usage", "finish_record", "note_answer"]
