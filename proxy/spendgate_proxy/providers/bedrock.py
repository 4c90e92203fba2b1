"""AWS Bedrock Runtime upstreams for Anthropic models: SigV4-signed invokes, binary event-stream answers.

The body is an Anthropic Messages body (``formats.anthropic.render_request``) in Bedrock's
envelope: ``anthropic_version: "bedrock-2023-05-31"`` added, ``model`` and ``stream`` removed, since
the model id and the streaming choice are in the path (``POST /model/{modelId}/invoke`` or
``/invoke-with-response-stream``, as in botocore's ``bedrock-runtime`` service model). Each request
is signed with botocore's ``SigV4Auth`` (service ``bedrock``) over exactly the bytes sent, with the
same signed headers botocore's own client uses, so the ``Authorization`` header is the one
``invoke_model`` would send.

The stream (``application/vnd.amazon.eventstream``) is decoded incrementally with botocore's
``EventStreamBuffer`` as bytes arrive: each ``chunk`` event carries ``{"bytes": base64(one Anthropic
stream event)}``, handed to the Anthropic SSE parser's event logic; an ``exception`` event
(``throttlingException``, ``modelStreamErrorException``, ...) ends the stream with a
:class:`StreamError`. Usage comes from the Anthropic events, else from
``amazon-bedrock-invocationMetrics`` on the last one.

Settings read (``providers.<name>``): ``region`` (else ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or
the profile's), ``base_url`` or ``endpoint_url`` (default ``https://bedrock-runtime.{region}.amazonaws.com``),
``profile`` (else ``AWS_PROFILE``); credentials come from botocore's chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, shared files, SSO, container and instance roles).
Only Anthropic models are supported: other Bedrock models take other bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson
import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.eventstream import EventStreamBuffer, ParserError
from botocore.session import Session as BotocoreSession

from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats.canonical import ChatResponse, StreamError, StreamEvent, Usage, UsageEvent
from spendgate_proxy.formats.errors import context_overflow, openai_error, overflow_error
from spendgate_proxy.providers.base import Endpoint, EventParser, Provider, Reply

if TYPE_CHECKING:
    from botocore.credentials import Credentials

    from spendgate_proxy.config import ProviderSettings
    from spendgate_proxy.formats.canonical import ChatRequest

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
"""The ``anthropic_version`` Bedrock requires in the body of an Anthropic model."""

SIGNING_SERVICE = "bedrock"
"""``signingName`` of ``bedrock-runtime`` in botocore's service model: the service in the SigV4 scope."""

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# The top-level keys Bedrock's Anthropic body takes (AWS's "Anthropic Claude Messages API"
# parameters). It refuses any other ("extraneous key [model] is not permitted"), so fields only
# api.anthropic.com knows (metadata, service_tier, mcp_servers, ...) are left out.
BODY_KEYS = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "system",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
    }
)
"""What :func:`render_body` keeps of an Anthropic Messages body."""

# Client headers never forwarded: the signature owns them.
_OWN_HEADERS = frozenset({"host", "authorization", "content-type", "accept", "x-amzn-bedrock-accept"})

# Bedrock error name (x-amzn-ErrorType, or an in-stream :exception-type) → (status for the
# fallback logic, OpenAI error type, OpenAI code). Statuses follow botocore's service model except
# where the proxy's fallback rules need another: a model timeout (408) and a model error (424)
# are worth trying on the next target, so they read as 504 and 502.
_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "ThrottlingException": (429, "requests", "rate_limit_exceeded"),
    "ModelNotReadyException": (429, "requests", "rate_limit_exceeded"),
    # "Too many tokens per day" and similar: retry later or elsewhere, like a rate limit.
    "ServiceQuotaExceededException": (429, "requests", "rate_limit_exceeded"),
    "ValidationException": (400, "invalid_request_error", None),
    "AccessDeniedException": (403, "invalid_request_error", "permission_denied"),
    "UnrecognizedClientException": (403, "invalid_request_error", "invalid_api_key"),
    "InvalidSignatureException": (403, "invalid_request_error", "invalid_api_key"),
    "MissingAuthenticationTokenException": (403, "invalid_request_error", "invalid_api_key"),
    "ExpiredTokenException": (403, "invalid_request_error", "invalid_api_key"),
    "ResourceNotFoundException": (404, "invalid_request_error", "model_not_found"),
    "ModelTimeoutException": (504, "server_error", "timeout"),
    "ModelErrorException": (502, "server_error", None),
    "ModelStreamErrorException": (502, "server_error", None),
    "InternalServerException": (500, "server_error", None),
    "ServiceUnavailableException": (503, "server_error", "overloaded"),
}
# Error name by HTTP status, for an error without x-amzn-ErrorType (a proxy in between, say).
_BY_STATUS: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def error_name(value: str | None) -> str | None:
    """``ThrottlingException`` from ``ThrottlingException:http://internal.amazon.com/...`` or
    ``throttlingException`` (an event-stream ``:exception-type``), as botocore reads them."""
    if not value:
        return None
    name = value.split(":", 1)[0].rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:]


def bedrock_error(status: int, name: str | None, message: str) -> tuple[int, dict[str, Any]]:
    """A Bedrock error → (status for the fallback logic, OpenAI ``{"error": {...}}``).

    "Input is too long for requested model." (a ValidationException) becomes OpenAI's
    ``context_length_exceeded`` so that clients such as Cursor summarise.
    """
    name = name or _BY_STATUS.get(status) or ("InternalServerException" if status >= 500 else "ValidationException")
    mapped_status, type_, code = _ERRORS.get(name, (status if status >= 400 else 500, "server_error", None))
    message = message or f"Bedrock {name} (HTTP {status})"
    found = context_overflow(400, {"message": message}) if mapped_status == 400 else None
    if found is not None:
        return 400, {"error": overflow_error(*found, original=message)}
    return mapped_status, {"error": openai_error(message, type_, code)}


def _message_of(data: bytes) -> str:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode(errors="replace")[:500]
    if isinstance(obj, Mapping):
        for key in ("message", "Message"):
            if isinstance(obj.get(key), str):
                return obj[key]
    return ""


def render_body(req: ChatRequest) -> dict[str, Any]:
    """A canonical request → the body of a Bedrock invoke for an Anthropic model."""
    body = anthropic_messages.render_request(req)
    rendered = {"anthropic_version": BEDROCK_ANTHROPIC_VERSION}
    rendered.update((k, v) for k, v in body.items() if k in BODY_KEYS and k != "anthropic_version")
    return rendered


def model_path(model_id: str, *, stream: bool) -> str:
    """``/model/{modelId}/invoke[-with-response-stream]``, the id percent-encoded as botocore does
    (``:`` and the ``/`` of an inference profile ARN included)."""
    action = "invoke-with-response-stream" if stream else "invoke"
    return f"/model/{quote(model_id, safe='')}/{action}"


def usage_from_metrics(metrics: Mapping[str, Any]) -> Usage:
    """``amazon-bedrock-invocationMetrics`` → :class:`Usage` (input includes the cache counts)."""

    def count(key: str) -> int:
        value = metrics.get(key)
        return max(0, int(value)) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    read, written = count("cacheReadInputTokenCount"), count("cacheWriteInputTokenCount")
    return Usage(
        input_tokens=count("inputTokenCount") + read + written,
        output_tokens=count("outputTokenCount"),
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


class BedrockStreamParser:
    """Bedrock event-stream bytes, cut anywhere, → canonical stream events (an :class:`EventParser`).

    Frames are reassembled and CRC-checked by botocore's ``EventStreamBuffer``; a ``chunk``'s
    Anthropic event goes through :class:`AnthropicSSEParser`'s event logic, so both providers
    number tool calls, join usage and map stop reasons the same way. A corrupt frame, an
    ``exception``/``error`` message, or an end without ``message_stop`` gives a :class:`StreamError`.
    """

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._anthropic = anthropic_messages.AnthropicSSEParser()
        self._metrics: Mapping[str, Any] | None = None
        self._pending = 0  # bytes fed but not yet part of a whole frame
        self.done = False

    @property
    def usage(self) -> Usage | None:
        """What the stream reported so far (for a span when the stream is cut)."""
        usage = self._anthropic.usage
        if usage is None and self._metrics is not None:
            return usage_from_metrics(self._metrics)
        return usage

    @property
    def stop_reason(self) -> str | None:
        return self._anthropic.stop_reason

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.done:
            return []
        events: list[StreamEvent] = []
        self._buffer.add_data(data)
        self._pending += len(data)
        try:
            for message in self._buffer:
                self._pending -= message.prelude.total_length
                self._message(message.headers, message.payload, events)
                if self.done:
                    break
        except ParserError as exc:
            self._fail(f"Bedrock sent a corrupt event-stream frame ({type(exc).__name__})", events)
        return events

    def close(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not self.done:
            cut = " in the middle of a frame" if self._pending else ""
            self._fail(f"Bedrock's stream ended before the message was complete{cut}", events)
        return events

    def _fail(self, message: str, events: list[StreamEvent]) -> None:
        self.done = True
        events.append(StreamError(message, "server_error"))

    def _message(self, headers: Mapping[str, Any], payload: bytes, events: list[StreamEvent]) -> None:
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") == "chunk":
                self._chunk(payload, events)
            return  # other event types (an initial-response) carry nothing for the answer
        if kind == "exception":
            name = error_name(str(headers.get(":exception-type") or "")) or "InternalServerException"
            message = _message_of(payload) or name
        else:  # "error": an unmodeled failure, named in headers
            name = str(headers.get(":error-code") or "InternalServerException")
            message = str(headers.get(":error-message") or name)
        _, body = bedrock_error(500, name, message)
        error = body["error"]
        self.done = True
        events.append(StreamError(error["message"], error["type"], error["code"]))

    def _chunk(self, payload: bytes, events: list[StreamEvent]) -> None:
        try:
            part = orjson.loads(payload)
            event = orjson.loads(base64.b64decode(part["bytes"], validate=True))
        except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError, ValueError):
            return  # a chunk we cannot read; the stream's own end or error still arrives
        if not isinstance(event, dict):
            return
        metrics = event.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, Mapping):
            self._metrics = metrics
        kind = str(event.get("type") or "")
        before = len(events)
        self._anthropic.payload_to_events(kind, event, events)
        if kind == "message_stop":
            self.done = True
            if self._anthropic.usage is None and self._metrics is not None:
                # No Anthropic usage at all: Bedrock's own counts are better than zeros.
                events[before:] = [
                    UsageEvent(usage_from_metrics(self._metrics)) if isinstance(e, UsageEvent) else e
                    for e in events[before:]
                ]
        elif kind == "error":
            self.done = True


def _is_amz(name: str) -> bool:
    return name.lower().startswith("x-amz-")


class BedrockReply(Reply):
    """A :class:`Reply` whose error reading uses Bedrock's ``x-amzn-ErrorType`` header."""

    __slots__ = ()

    async def error(self) -> tuple[int, dict[str, Any]]:
        data = await self.raw.read()
        return bedrock_error(self.status, error_name(self.headers.get("x-amzn-ErrorType")), _message_of(data))


class BedrockProvider(Provider):
    """AWS Bedrock Runtime (Anthropic models), signed with SigV4 from botocore's credential chain.

    ``region``, ``endpoint_url``, ``profile`` and ``credentials`` override the settings (tests pass
    fixed credentials; the proxy passes none). Raises ``ValueError`` when no region or no
    credentials can be found, so a misconfiguration shows at start, not on the first call.
    """

    format = "bedrock"
    system = "aws.bedrock"

    def __init__(
        self,
        name: str,
        settings: ProviderSettings,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        botocore_session = BotocoreSession(profile=profile or getattr(settings, "profile", None))
        # AWS_REGION is what newer AWS SDKs read; botocore itself reads AWS_DEFAULT_REGION and the profile.
        region = (
            region
            or getattr(settings, "region", None)
            or os.environ.get("AWS_REGION")
            or botocore_session.get_config_variable("region")
        )
        if not region:
            raise ValueError(f"providers.{name}.region: required for a Bedrock provider (or set AWS_REGION)")
        self.region: str = region
        self._endpoint = (
            endpoint_url
            or getattr(settings, "endpoint_url", None)
            or settings.base_url
            or f"https://bedrock-runtime.{region}.amazonaws.com"
        ).rstrip("/")
        if credentials is None:
            # Resolving may read files or ask the instance metadata service: done once, at start.
            credentials = botocore_session.get_credentials()
        if credentials is None:
            raise ValueError(
                f"providers.{name}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE / profile)"
            )
        self.credentials = credentials
        super().__init__(name, settings)
        self.base_url = self._endpoint
        parts = urlsplit(self.base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._urls: dict[tuple[str, bool], yarl.URL] = {}

    # -- hooks -----------------------------------------------------------------------------

    def url_for(self, endpoint: Endpoint, model: str, *, stream: bool) -> yarl.URL:
        if endpoint != "chat":
            raise ValueError(f"Bedrock has no {endpoint} endpoint for Anthropic models")
        key = (model, stream)
        url = self._urls.get(key)
        if url is None:
            # encoded=True: yarl must not re-normalise the path, or the bytes sent would differ
            # from the path that was signed (%3A in model ids).
            url = self._urls[key] = yarl.URL(self.base_url + model_path(model, stream=stream), encoded=True)
            if len(self._urls) > 1024:  # model names come from config, but stay bounded anyway
                self._urls.clear()
        return url

    def render(self, req: ChatRequest) -> bytes:
        return orjson.dumps(render_body(req))

    def headers_for(self, url: yarl.URL, body: bytes) -> Mapping[str, str]:
        return self.sign(str(url), body, stream=url.path.endswith("/invoke-with-response-stream"))

    def sign(self, url: str, body: bytes, *, stream: bool) -> dict[str, str]:
        """The headers of a signed invoke: content type, accept, ``X-Amz-Date``, token, ``Authorization``.

        The signed headers are the ones botocore's ``bedrock-runtime`` client signs (``Accept`` is
        ``X-Amzn-Bedrock-Accept`` for the streaming call), so the signature matches its own.
        """
        accept = "X-Amzn-Bedrock-Accept" if stream else "Accept"
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"Content-Type": "application/json", accept: "application/json"}
        )
        SigV4Auth(self.credentials.get_frozen_credentials(), SIGNING_SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    def stream_parser(self) -> EventParser:
        return BedrockStreamParser()

    def is_stream(self, content_type: str) -> bool:
        return content_type.startswith(EVENT_STREAM_CONTENT_TYPE)

    def parse_response(self, data: bytes) -> ChatResponse:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        return anthropic_messages.parse_response(obj if isinstance(obj, dict) else {})

    def error_to_openai(self, status: int, data: bytes) -> tuple[int, dict[str, Any]]:
        return bedrock_error(status, None, _message_of(data))

    # -- sending ---------------------------------------------------------------------------

    async def send_raw(
        self,
        body: bytes,
        *,
        model: str = "",
        stream: bool = False,
        endpoint: Endpoint = "chat",
        headers: Mapping[str, str] | None = None,
        sent: Callable[[], object] | None = None,
    ) -> Reply:
        """POST a Bedrock body (already in the envelope), signed; the reply reads Bedrock's errors."""
        refresh_needed = getattr(self.credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            # A refresh calls STS / SSO / the metadata service with blocking I/O: not on the loop.
            await asyncio.to_thread(self.credentials.get_frozen_credentials)
        url = self.url_for(endpoint, model, stream=stream)
        signed = self.headers_for(url, body)
        out: Mapping[str, str] = signed
        if headers:
            extra = {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS and not _is_amz(k)}
            out = {**extra, **signed}
        resp = await self.session.post(url, data=body, headers=out)
        if sent is not None:
            sent()
        return BedrockReply(self, resp)


__all__ = [
    "BEDROCK_ANTHROPIC_VERSION",
    "BODY_KEYS",
    "EVENT_STREAM_CONTENT_TYPE",
    "BedrockProvider",
    "BedrockReply",
    "BedrockStreamParser",
    "bedrock_error",
    "error_name",
    "model_path",
    "render_body",
    "usage_from_metrics",
]
