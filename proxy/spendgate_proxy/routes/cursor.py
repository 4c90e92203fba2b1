"""The Cursor route: ``/cursor/v1/chat/completions`` and ``/cursor/v1/models`` (docs/cursor.md).

Cursor posts three body shapes to one URL (Chat Completions, Responses-shaped, Anthropic-shaped;
docs/cursor-facts.md) and reads only Chat Completions back. This route detects the shape
(``formats.detect``), parses it to the canonical model, normalises it for any provider
(``formats.cursor``: duplicate tools dropped, custom grammar tools as functions, the
``max_tokens`` floor for tool-using turns) and serves it through ``call/serve.py`` with Cursor's
extras on the way back: custom tool calls rewritten for Cursor, a provider's context overflow as
OpenAI's ``context_length_exceeded`` (Cursor summarises on it), and a budget pause as an assistant
message by default (``proxy.cursor.pause_response``), since Cursor shows any refusal as a bare
error.

Every call goes through the canonical model here, also a Chat Completions body for an
OpenAI-compatible provider: Cursor's chat bodies mix flat and nested tools, repeat tool names and
carry too-low ``max_tokens``, which a strict upstream would refuse or a tool call would not
survive. The translation costs well under a millisecond (docs/performance.md, Translation).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from spendgate_proxy.call.admit import Admission, admit
from spendgate_proxy.call.budget_reply import pause_response
from spendgate_proxy.call.model import Call
from spendgate_proxy.call.serve import serve
from spendgate_proxy.errors import BadRequest
from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import ChatRequest
from spendgate_proxy.formats.cursor import normalise_cursor_request
from spendgate_proxy.formats.detect import detect_shape
from spendgate_proxy.http.exchange import Exchange


def parse_cursor_body(body: dict[str, Any], *, max_tokens_floor: int | None) -> ChatRequest:
    """Any of Cursor's body shapes → a normalised canonical request; ``BadRequest`` names what is wrong."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest(
            "Missing required parameter: 'model' (a string naming a model; GET /v1/models lists them).",
            code="missing_required_parameter",
            param="model",
        )
    shape = detect_shape(body)
    if shape == "responses":
        req = responses_shaped.parse_request(body)
    elif shape == "anthropic":
        try:
            req = anthropic_messages.parse_request(body, require_max_tokens=False)
        except anthropic_messages.AnthropicFormatError as exc:
            raise BadRequest(str(exc), param=exc.param) from None
    else:
        req = openai_chat.parse_request(body)
    if not req.messages:
        where = "input" if shape == "responses" else "messages"
        raise BadRequest(
            f"Missing required parameter: '{where}' (a non-empty array).",
            code="missing_required_parameter",
            param=where,
        )
    return normalise_cursor_request(req, max_tokens_floor=max_tokens_floor)


async def cursor_core(request: Exchange) -> Any:
    """``POST /cursor/v1/chat/completions``: any Cursor body shape in, Chat Completions out; for
    either server (exchange.py, ``app.MODEL_ROUTES``)."""
    settings = request.state.settings.cursor
    # A custom model "acme-api/claude-sonnet-4-6" (one per project in Cursor's settings): the base
    # model is admitted and recorded, the upstream gets its own name, Cursor sees its name echoed.
    admitted = await admit(
        request,
        partial(parse_cursor_body, max_tokens_floor=settings.max_tokens_floor),
        pause=partial(pause_response, form=settings.pause_response),
    )
    if not isinstance(admitted, Admission):
        return admitted
    req = admitted.req
    assert req is not None
    call = Call(
        "openai",
        req,
        admitted.body,
        admitted.plan.attempts,
        admitted.record(stream=req.stream),
        wants_usage=req.stream and req.include_usage,
        cursor=True,
        custom_mode=settings.custom_tool_calls,
        budget_headers=admitted.plan.budget_headers,
    )
    return await serve(request, request.state, call)
