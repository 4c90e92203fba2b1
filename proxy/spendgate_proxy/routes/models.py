"""``GET /v1/models`` (also ``/models`` and ``/cursor/v1/models``): the models a virtual key may use.

Cursor calls it to verify a key and base URL; the answer is OpenAI's list shape.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from spendgate_proxy.errors import ProxyError
from spendgate_proxy.http.inbound import UnknownVirtualKey, authenticate, authenticate_again
from spendgate_proxy.state import STATE


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the configured models this key may use, in OpenAI's list shape."""
    state = request.app[STATE]
    try:
        try:
            principal = authenticate(state.keys, request.headers)
        except UnknownVirtualKey as unknown:  # a key created a moment ago still works
            principal = await authenticate_again(state, unknown)
    except ProxyError as exc:
        return exc.response()
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": route.provider}
        for name, (route, _) in state.routes.items()
        if principal.allows(name)
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}),
        content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"},
    )
