"""OpenAI-style error responses and the proxy's exception family.

Every refusal the proxy makes reads the way an OpenAI client expects, ``{"error": {"message",
"type", "param", "code"}}``, so SDKs raise their usual typed errors and Cursor shows the message.
"""

from __future__ import annotations

import orjson
from aiohttp import web

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project, "
        "x-spendgate-repo, x-spendgate-branch, x-spendgate-tags, x-api-key, anthropic-version"
    ),
    "Access-Control-Max-Age": "86400",
}


class ProxyError(Exception):
    """A request the proxy refuses itself; carries the HTTP status and OpenAI error fields."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param

    def response(self) -> web.Response:
        return error_response(self.status, self.message, self.type, code=self.code, param=self.param)


class BadRequest(ProxyError):
    """The body is not a valid request (malformed JSON, missing or mistyped field)."""


class AuthenticationFailed(ProxyError):
    """No virtual key, or a key that is unknown, revoked, disabled or expired."""

    status = 401
    type = "authentication_error"


class ModelNotAllowed(ProxyError):
    """The key's principal may not use the requested model."""

    status = 403
    type = "permission_error"


class ModelNotFound(ProxyError):
    """The requested model is not configured on this gateway."""

    status = 404
    type = "invalid_request_error"


class BodyTooLarge(ProxyError):
    """The request body is over the configured limit."""

    status = 413


class UpstreamUnavailable(ProxyError):
    """The provider could not be reached, or did not answer in time."""

    status = 502
    type = "api_error"


class UpstreamTimeout(UpstreamUnavailable):
    """The provider did not answer within the configured timeout."""

    status = 504


def error_body(message: str, type_: str, *, code: str | None = None, param: str | None = None) -> bytes:
    """The OpenAI error JSON, as bytes."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def error_response(
    status: int, message: str, type_: str, *, code: str | None = None, param: str | None = None
) -> web.Response:
    """A complete JSON error response with CORS headers."""
    return web.Response(
        status=status,
        body=error_body(message, type_, code=code, param=param),
        content_type="application/json",
        headers=CORS_HEADERS,
    )


def sse_error_event(message: str, type_: str = "api_error", code: str | None = None) -> bytes:
    """An SSE event carrying an error, for failures after the stream has started.

    The status line is already sent by then; OpenAI's SDKs raise ``APIError`` when a stream event
    holds an ``error`` object, so the client sees a clear failure rather than a silent cut.
    """
    return b"data: " + error_body(message, type_, code=code) + b"\n\n"
