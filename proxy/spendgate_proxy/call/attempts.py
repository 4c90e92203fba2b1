"""The fallback loop: a call's targets tried in order until one answers.

A target is left for the next one when it times out, cannot be reached, or answers with a
retryable status (429 / 5xx, ``routing.RETRYABLE_STATUSES``; the routing policy then cools the
route down). All of this happens before the first byte reaches the client, so the next target can
still take the call. When the last target fails too, :func:`send` raises
:class:`~spendgate_proxy.errors.UpstreamTimeout` or :class:`~spendgate_proxy.errors.UpstreamUnavailable`,
which the engine answers in the client's format.

Each attempt picks passthrough or translation for its own provider, so a chain may cross formats:

- **OpenAI passthrough** (the Chat Completions hot path, ``call.req is None``): the client's bytes
  go out as received unless the model was renamed or usage asked for; ``Provider.send_raw`` calls
  ``call.record`` once the request is written, so the span record is built while the upstream
  computes.
- **Anthropic passthrough** (an Anthropic client, an Anthropic provider): the body with the model
  renamed, plus the client's ``anthropic-beta`` header.
- **Translation** (anything else): the canonical request rendered by the provider.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from spendgate_proxy.call.routing import RETRYABLE_STATUSES
from spendgate_proxy.errors import CORS_HEADERS, UpstreamTimeout, UpstreamUnavailable
from spendgate_proxy.formats import anthropic as anthropic_messages

if TYPE_CHECKING:
    from spendgate_proxy.call.model import Call, InboundFormat
    from spendgate_proxy.providers import Provider, Reply
    from spendgate_proxy.state import ProxyState


def passes_through(call: Call, provider: Provider) -> bool:
    """Whether ``provider`` gets the client's body (model renamed) rather than a rendered one."""
    if call.req is None:  # the hot path: the route found no other format in the chain
        return True
    return call.inbound == "anthropic" and provider.format == "anthropic" and not call.cursor


def error_json(inbound: InboundFormat, status: int, openai_body: Mapping[str, Any]) -> tuple[int, bytes]:
    """An error in OpenAI's vocabulary → (status, body) in the client's format."""
    if inbound == "anthropic":
        status, body = anthropic_messages.error_from_openai(status, openai_body)
        return status, orjson.dumps(body)
    return status, orjson.dumps(openai_body)


def error_reply(
    inbound: InboundFormat,
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A gateway-made error (timeout, unreachable, bad request) in the client's format."""
    openai_body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    status, body = error_json(inbound, status, openai_body)
    out = {**CORS_HEADERS, **(headers or {})}
    return web.Response(status=status, body=body, content_type="application/json", headers=out)


async def send(state: ProxyState, call: Call) -> tuple[Reply, bool]:
    """The first target that answers, and whether it got the body passed through.

    Raises ``UpstreamTimeout`` / ``UpstreamUnavailable`` when the last target fails."""
    policy = state.routing
    last = len(call.attempts) - 1
    for i, (route, provider) in enumerate(call.attempts):
        target = route.target
        passthrough = passes_through(call, provider)
        if i:  # a fallback: the span names the fallback's upstream
            rec = call.record()
            rec.served_model, rec.provider_id, rec.provider_system = target, provider.name, provider.system
            rec.server_address, rec.server_port = provider.host, provider.port
        try:
            reply = await _post(call, provider, target, passthrough, first=not i)
        except TimeoutError:
            rec = call.record()
            rec.status_code, rec.error_type = 504, "timeout"
            rec.error_message = f"provider {provider.name} did not answer in time"
            if i < last:
                rec.note_attempt(route.name, provider.name, "timeout")
                continue
            raise UpstreamTimeout(f"Upstream provider '{provider.name}' timed out.", code="upstream_timeout") from None
        except aiohttp.ClientError as exc:
            rec = call.record()
            rec.status_code, rec.error_type = 502, "upstream_unreachable"
            rec.error_message = f"{type(exc).__name__} reaching provider {provider.name}"
            if i < last:
                rec.note_attempt(route.name, provider.name, "upstream_unreachable")
                continue
            raise UpstreamUnavailable(
                f"Upstream provider '{provider.name}' is unreachable ({type(exc).__name__}).",
                code="upstream_unreachable",
            ) from None
        rec = call.record()  # built while the upstream computed: this only hands it over
        if i < last and reply.status in RETRYABLE_STATUSES:
            # Nothing has reached the client yet, so the next target can still take the call.
            waited = policy.cool_down(route.name, reply.headers.get("retry-after")) if policy else 0.0
            rec.note_attempt(route.name, provider.name, str(reply.status), reply.status, waited)
            reply.release()
            continue
        if i:
            rec.error_type = rec.error_message = None
            rec.note_attempt(route.name, provider.name, None, reply.status)
        return reply, passthrough
    raise AssertionError("a call has at least one target")


async def _post(call: Call, provider: Provider, target: str, passthrough: bool, *, first: bool) -> Reply:
    """One attempt: the request for ``provider``, naming its upstream model ``target``."""
    if not passthrough:
        assert call.req is not None
        # Always ask for usage: it is the only exact record of what the provider bills.
        return await provider.send(dataclasses.replace(call.req, model=target, include_usage=call.stream))
    if call.inbound == "anthropic":
        body = orjson.dumps({**call.body, "model": target})
        return await provider.send_raw(body, model=target, stream=call.stream, headers=call.forward_headers)
    # The hot path: the bytes as received unless the body had to change.
    body_map = call.body
    if body_map.get("model") != target:
        body_map["model"] = target
        call.changed = True
    payload = orjson.dumps(body_map) if call.changed or not first else call.raw
    return await provider.send_raw(payload, model=target, stream=call.stream, sent=call.record)


__all__ = ["error_json", "error_reply", "passes_through", "send"]
