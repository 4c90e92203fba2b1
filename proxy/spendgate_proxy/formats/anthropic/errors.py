"""Anthropic error bodies ↔ OpenAI's error vocabulary (the proxy's canonical error form), whole and mid-stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spendgate_proxy.formats.canonical import StreamError
from spendgate_proxy.formats.errors import CONTEXT_LENGTH_EXCEEDED, context_overflow, openai_error, overflow_error

# Anthropic error type → (OpenAI type, OpenAI code).
_TO_OPENAI_ERROR: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    "permission_error": ("invalid_request_error", "permission_denied"),
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "not_found_error": ("invalid_request_error", "not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("server_error", "timeout"),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}
# OpenAI error code → Anthropic error type, checked before the HTTP status.
_CODE_TO_ANTHROPIC: dict[str, str] = {
    "context_length_exceeded": "invalid_request_error",
    "invalid_api_key": "authentication_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
    "permission_denied": "permission_error",
    "not_found": "not_found_error",
    "model_not_found": "not_found_error",
}
_STATUS_TO_ANTHROPIC: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _openai_error(status: int, message: str, anthropic_type: str) -> dict[str, Any]:
    found = context_overflow(status, {"type": "error", "error": {"type": anthropic_type, "message": message}})
    if found is not None:
        # OpenAI's wording and code (formats/errors.py owns both): clients such as Cursor summarise on them.
        return overflow_error(*found, original=message)
    type_, code = _TO_OPENAI_ERROR.get(anthropic_type, ("server_error", None))
    return openai_error(message, type_, code)


def error_to_openai(status: int, body: object) -> tuple[int, dict[str, Any]]:
    """An Anthropic error response → (status, OpenAI ``{"error": {message, type, param, code}}``).

    A context overflow gets OpenAI's ``context_length_exceeded``; Anthropic's 529 (overloaded)
    becomes 503, a status OpenAI clients know to retry.
    """
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        message = str(error.get("message") or f"upstream error (HTTP {status})")
        kind = str(error.get("type") or "api_error")
    else:
        message, kind = f"upstream error (HTTP {status})", _STATUS_TO_ANTHROPIC.get(status, "api_error")
    error_body = _openai_error(status, message, kind)
    if error_body["code"] == CONTEXT_LENGTH_EXCEEDED:
        status = 400  # Anthropic's 413 request_too_large counts too: a summary shrinks it as well
    return (503 if status == 529 else status), {"error": error_body}


def _anthropic_type(status: int | None, type_: str | None, code: str | None) -> str:
    """The Anthropic error type for an OpenAI error: its code, else the HTTP status, else its type."""
    if code in _CODE_TO_ANTHROPIC:
        return _CODE_TO_ANTHROPIC[code]
    if status in _STATUS_TO_ANTHROPIC:
        return _STATUS_TO_ANTHROPIC[status]
    if type_ in ("requests", "tokens"):
        return "rate_limit_error"
    if type_ == "insufficient_quota":
        return "billing_error"
    if type_ in _TO_OPENAI_ERROR:  # already an Anthropic type name (or OpenAI's invalid_request_error)
        return type_
    if status is not None and 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def _anthropic_message(status: int, message: str, code: str | None) -> tuple[str, str | None]:
    """Anthropic's overflow wording (which Anthropic clients such as Claude Code recognise), and the code."""
    found = context_overflow(status, {"error": {"message": message, "code": code}})
    if found is None:
        return message, code
    used, limit = found
    if used is not None and limit is not None:
        return f"prompt is too long: {used} tokens > {limit} maximum", CONTEXT_LENGTH_EXCEEDED
    return message, CONTEXT_LENGTH_EXCEEDED


def error_from_openai(status: int, body: object) -> tuple[int, dict[str, Any]]:
    """An OpenAI-style error response → (status, Anthropic ``{"type": "error", "error": {type, message}}``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        message = str(error.get("message") or f"upstream error (HTTP {status})")
        type_ = error.get("type") if isinstance(error.get("type"), str) else None
        code = str(error["code"]) if error.get("code") is not None else None
    else:
        message, type_, code = f"upstream error (HTTP {status})", None, None
    message, code = _anthropic_message(status, message, code)
    kind = _anthropic_type(status, type_, code)
    return status, {"type": "error", "error": {"type": kind, "message": message}}


def stream_error_from_anthropic(error: Mapping[str, Any]) -> StreamError:
    """The ``error`` object of an Anthropic ``error`` event → :class:`StreamError` (OpenAI's vocabulary)."""
    # No HTTP status mid-stream: 400 lets an overflow be recognised by its wording.
    message, kind = str(error.get("message") or "upstream error"), str(error.get("type") or "api_error")
    rendered = _openai_error(400 if kind in ("invalid_request_error", "request_too_large") else 500, message, kind)
    return StreamError(rendered["message"], rendered["type"], rendered["code"])


def stream_error_to_anthropic(error: StreamError) -> dict[str, Any]:
    """A :class:`StreamError` → the data of an Anthropic ``error`` event."""
    message, code = _anthropic_message(400, error.message, error.code)
    kind = _anthropic_type(None, error.type, code)
    return {"type": "error", "error": {"type": kind, "message": message}}


__all__ = ["error_from_openai", "error_to_openai", "stream_error_from_anthropic", "stream_error_to_anthropic"]
