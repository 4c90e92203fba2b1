"""The Chat Completions route: the hot path.

Request flow: virtual key -> principal; attribution overlays; model -> provider and upstream model;
body rewritten only when needed (model name, ``stream_options.include_usage``); then the call
engine (``call/serve.py``): upstream bytes streamed straight to the client through ``OpenAITap``,
one ``CallRecord`` handed to the span worker whether the call ends normally, fails, or the client
leaves. Calls that need another provider format go through the canonical model.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from spendgate_proxy.call.admit import Admission, admit
from spendgate_proxy.call.budget_reply import pause_response
from spendgate_proxy.call.model import Call
from spendgate_proxy.call.serve import serve
from spendgate_proxy.errors import BadRequest
from spendgate_proxy.formats import openai as openai_chat

if TYPE_CHECKING:
    from spendgate_proxy.http.exchange import Exchange


def _check_body(body: dict[str, Any]) -> None:
    """A Chat Completions body names a model and has messages; it goes on as sent (no canonical request)."""
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise BadRequest(
            "Missing required parameter: 'model' (a string naming a model; GET /v1/models lists them).",
            code="missing_required_parameter",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(
            "Missing required parameter: 'messages' (a non-empty array).",
            code="missing_required_parameter",
            param="messages",
        )


async def chat_core(request: Exchange) -> Any:
    """``POST /v1/chat/completions``: admit, then the call engine (forward, stream back, record one span).

    Written once for both servers (exchange.py, ``MODEL_ROUTES``). Returns a ``web.Response`` to
    send, or the stream it has already written to the end.
    """
    state = request.state
    admitted = await admit(request, _check_body, lazy=True, pause=partial(pause_response, form=state.pause_form))
    if not isinstance(admitted, Admission):
        return admitted
    body = admitted.body
    stream = body.get("stream") is True
    stream_options = body.get("stream_options")
    wants_usage = stream and isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    changed = False
    if stream and not wants_usage:
        # Always ask for usage: it is the only exact record of what the provider bills.
        extra = stream_options if isinstance(stream_options, dict) else {}
        body["stream_options"] = {**extra, "include_usage": True}
        changed = True
    attempts = admitted.plan.attempts
    if state.translating and any(u.format != "openai" for _, u in attempts):
        # Another provider format somewhere in the chain: every attempt goes through the canonical
        # model (an OpenAI target in it too), so the body is parsed now.
        req = openai_chat.parse_request(body)
        rec = admitted.record(stream=req.stream)
        call = Call("openai", req, body, attempts, rec, wants_usage=req.stream and wants_usage)
        return await serve(request, state, call)
    # The hot path: the body goes out as sent (model renamed, usage asked for, when needed); the
    # span record, attribution included, is built once the request is written (``sent=``).
    call = Call(
        "openai",
        None,
        body,
        attempts,
        None,
        wants_usage=wants_usage,
        budget_headers=admitted.plan.budget_headers,
        raw=admitted.raw,
        changed=changed,
        make_record=partial(admitted.record, stream=stream),
    )
    return await serve(request, state, call)
