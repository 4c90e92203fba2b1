"""Reading an inbound request, shared by every route: virtual key, attribution prefix, JSON body, trace ids.

Each helper raises a :class:`~spendgate_proxy.errors.ProxyError` (OpenAI vocabulary) that the route
turns into its own error shape: OpenAI's for Chat Completions and Cursor, Anthropic's for
``/v1/messages``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from spendgate_proxy.attribution import chain
from spendgate_proxy.errors import AuthenticationFailed, BadRequest, BodyTooLarge
from spendgate_proxy.keys import UnknownKey

if TYPE_CHECKING:
    from spendgate_proxy.keys import KeyDirectory, Principal
    from spendgate_proxy.state import ProxyState


class UnknownVirtualKey(AuthenticationFailed):
    """A key the directory does not hold: the route may look for newer key state (``authenticate_again``).

    It carries the presented key for that second look; the key is never in the message or the repr.
    """

    def __init__(self, key: str, *, checked: bool) -> None:
        super().__init__("Invalid virtual key: unknown virtual key.", code="invalid_api_key")
        self.key = key
        self.checked = checked
        """True when the key was already looked for again a moment ago (no second look now)."""


def authenticate(keys: KeyDirectory, headers: Any) -> Principal:
    """The principal of the virtual key in ``Authorization: Bearer`` (or Anthropic's ``x-api-key``).

    An unknown key raises ``UnknownVirtualKey`` (a 401 as it stands); routes then await
    ``authenticate_again``, which answers once newer key state was looked for. Kept synchronous so
    that a known key costs no await.
    """
    auth = headers.get("Authorization")
    if auth is None:
        key = headers.get("x-api-key")  # Anthropic-style clients
        if not key:
            raise AuthenticationFailed(
                "Missing virtual key: send 'Authorization: Bearer sg-...' (create one with `spendgate keys create`).",
                code="missing_api_key",
            )
    else:
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer sg-...'.", code="invalid_api_key"
            )
    try:
        return keys.lookup(key.strip())
    except UnknownKey as exc:
        raise UnknownVirtualKey(key.strip(), checked=exc.checked) from None
    except LookupError as exc:
        raise AuthenticationFailed(f"Invalid virtual key: {exc.args[0]}.", code="invalid_api_key") from None


async def authenticate_again(state: ProxyState, unknown: UnknownVirtualKey) -> Principal:
    """The principal of a key ``authenticate`` did not know, after one look for newer key state
    (``key_refresh.py``); raises ``AuthenticationFailed`` (the same 401) when it is still unknown."""
    refresh = state.key_refresh
    if unknown.checked or refresh is None:
        raise unknown
    try:
        principal = await refresh.lookup(unknown.key)
    except LookupError as exc:  # it arrived revoked, disabled or expired
        raise AuthenticationFailed(f"Invalid virtual key: {exc.args[0]}.", code="invalid_api_key") from None
    if principal is None:
        raise unknown
    return principal


def path_prefix(request: web.Request) -> dict[str, str]:
    """Attribution fields from a ``/t/{attrs}/...`` base-URL prefix (empty without one)."""
    return prefix_fields(request.match_info.get("attrs"))


def prefix_fields(segment: str | None) -> dict[str, str]:
    """Attribution fields from the ``{attrs}`` segment of a ``/t/{attrs}/...`` path (empty for None)."""
    if not segment:
        return {}
    try:
        return chain.parse_path_prefix(segment)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_attribution_prefix") from None


async def read_json(request: web.Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its parsed JSON object, refusing bodies over ``limit`` bytes."""
    raw = await read_body(request, limit)
    return raw, parse_json(raw)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing bodies over ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(
            f"Request body is {request.content_length} bytes; this gateway accepts at most {limit}.",
            code="request_too_large",
        )
    content = request.content
    if content.is_eof() and request.content_length is not None:
        # The whole body arrived with the head (nearly every call): take it as it lies, without
        # ``read``'s awaits and copy. A compressed body can outgrow its length: the same size
        # check as ``read``'s.
        raw = content.read_nowait()
        max_size = request.client_max_size
        if max_size and len(raw) > max_size:
            raise BodyTooLarge(f"Request body is over this gateway's limit of {limit} bytes.", code="request_too_large")
    else:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyTooLarge(
                f"Request body is over this gateway's limit of {limit} bytes.", code="request_too_large"
            ) from None
    return raw


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body's JSON object, or a ``BadRequest`` naming what is wrong with it."""
    if not raw:
        raise BadRequest("Request body is empty: expected a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.", code="invalid_json")
    return body


def trace_ids(headers: Any) -> tuple[int, int | None]:
    """Trace id and parent span id from a W3C ``traceparent``; a fresh trace otherwise."""
    tp = headers.get("traceparent")
    if tp and len(tp) >= 55:
        try:
            trace_id, parent = int(tp[3:35], 16), int(tp[36:52], 16)
        except ValueError:
            pass
        else:
            if trace_id and parent:
                return trace_id, parent
    return random.getrandbits(128), None
