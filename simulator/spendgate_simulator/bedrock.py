"""A simulated AWS Bedrock Runtime for Anthropic models: SigV4 checked, answers as binary event-stream frames.

Routes (mounted by ``app.py``): ``POST /model/{modelId}/invoke`` and
``/model/{modelId}/invoke-with-response-stream``, with the shapes of botocore's
``bedrock-runtime`` service model (``InvokeModel`` / ``InvokeModelWithResponseStream``):

- the request is an Anthropic Messages body in the Bedrock envelope: ``anthropic_version:
  "bedrock-2023-05-31"`` required, ``model`` and ``stream`` refused (the model id is in the path);
- every request must carry a SigV4 signature (service ``bedrock``) made with one of the known test
  credentials (:data:`SIM_ACCESS_KEY_ID` / :data:`SIM_SECRET_ACCESS_KEY` by default). The signature
  is recomputed with botocore's own ``SigV4Auth`` over the bytes and headers received; a wrong one
  gets Bedrock's 403 ``InvalidSignatureException``, an unknown key ``UnrecognizedClientException``;
- the answer comes from the Anthropic simulator (``anthropic.py``: same words, tools, thinking,
  prompt cache and ``[[sim:...]]`` markers). A stream is sent as ``application/vnd.amazon.eventstream``
  frames, one ``chunk`` event per Anthropic stream event with ``{"bytes": base64(event JSON)}``,
  and ``amazon-bedrock-invocationMetrics`` on the last one, as Bedrock does;
- errors are Bedrock's: ``x-amzn-ErrorType`` header plus ``{"message": ...}`` (Throttling 429,
  Validation 400 with "Input is too long for requested model." for an overflow, InternalServer 500).

botocore only decodes event streams, so :func:`encode_frame` is a small encoder written to the
AWS event-stream format (prelude, headers, two CRC32s); tests decode its frames with botocore.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from spendgate_simulator import anthropic
from spendgate_simulator.responses import Reply

SIM_ACCESS_KEY_ID = "AKIASPENDGATESIM0001"
"""The access key id the simulator accepts unless given others (not a real AWS key)."""

SIM_SECRET_ACCESS_KEY = "spendgate/simulator/secret/key/0000000000"
"""Its secret key; tests sign with these."""

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
"""The ``anthropic_version`` Bedrock requires in an Anthropic model's body."""

EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
SIGNING_SERVICE = "bedrock"
"""botocore's ``signingName`` for ``bedrock-runtime``: the service in a SigV4 credential scope."""

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
"""How far ``X-Amz-Date`` may be from the simulator's clock, as AWS allows."""

# Bedrock pads chunk payloads with a "p" field so that sizes do not reveal content; clients
# must ignore it, so the simulator sends one too.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)

Credentials = Mapping[str, tuple[str, str | None]]
"""Access key id → (secret key, session token or None when any/no token is accepted)."""

DEFAULT_CREDENTIALS: Credentials = {SIM_ACCESS_KEY_ID: (SIM_SECRET_ACCESS_KEY, None)}


# ---------------------------------------------------------------------------------------------
# The event-stream frame encoder


def _header(name: str, value: str | bytes | bool | int) -> bytes:
    raw_name = name.encode()
    head = struct.pack("!B", len(raw_name)) + raw_name
    if isinstance(value, bool):  # before int: bool is an int
        return head + (b"\x00" if value else b"\x01")
    if isinstance(value, int):
        if -(2**31) <= value < 2**31:
            return head + b"\x04" + struct.pack("!i", value)
        return head + b"\x05" + struct.pack("!q", value)
    if isinstance(value, bytes):
        return head + b"\x06" + struct.pack("!H", len(value)) + value
    raw = value.encode()
    return head + b"\x07" + struct.pack("!H", len(raw)) + raw


def encode_frame(headers: Mapping[str, str | bytes | bool | int], payload: bytes = b"") -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers, payload, CRC32.

    Header values: ``str`` (type 7), ``bytes`` (6), ``bool`` (0/1), ``int`` (4, or 5 when it needs
    64 bits). The message CRC covers everything before it, prelude included.
    """
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def chunk_frame(event: Mapping[str, Any]) -> bytes:
    """A ``chunk`` event carrying one Anthropic stream event, as InvokeModelWithResponseStream sends it."""
    data = orjson.dumps(event)
    # Padding of varying length, like Bedrock's; derived from the data so output stays deterministic.
    padding = _PADDING[: 1 + len(data) % len(_PADDING)]
    payload = orjson.dumps({"bytes": base64.b64encode(data).decode(), "p": padding})
    return encode_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """A modeled exception inside the stream (``throttlingException``, ``modelStreamErrorException``, ...)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, orjson.dumps({"message": message}))


# ---------------------------------------------------------------------------------------------
# Errors, in Bedrock's rest-json shape


def error_reply(status: int, error_type: str, message: str, namespace: str = _ERROR_NAMESPACE) -> Reply:
    """A Bedrock error: ``x-amzn-ErrorType: Name:namespace`` and ``{"message": ...}``."""
    headers = (("x-amzn-ErrorType", f"{error_type}:{namespace}"),)
    return Reply(status=status, body=orjson.dumps({"message": message}), headers=headers)


def throttling_reply() -> Reply:
    return error_reply(429, "ThrottlingException", "Too many requests, please wait before trying again.")


def validation_reply(message: str) -> Reply:
    return error_reply(400, "ValidationException", message)


def _malformed(detail: str) -> Reply:
    return validation_reply(f"Malformed input request: #: {detail}, please reformat your input and try again.")


def _from_anthropic_error(reply: Reply) -> Reply:
    """The Anthropic simulator's error → the error Bedrock gives in the same situation."""
    try:
        error = orjson.loads(reply.body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    message = str(error.get("message") or "")
    if reply.status == 429:
        return throttling_reply()
    if reply.status == 400:
        if message.startswith("prompt is too long"):
            return validation_reply("Input is too long for requested model.")
        return validation_reply(message)
    if reply.status in (503, 529):
        return error_reply(503, "ServiceUnavailableException", "Bedrock is unable to process your request.")
    return error_reply(500, "InternalServerException", "The system encountered an unexpected error during processing.")


# ---------------------------------------------------------------------------------------------
# SigV4 verification


def _auth_error(error_type: str, message: str) -> Reply:
    return error_reply(403, error_type, message, "http://internal.amazon.com/coral/com.amazon.coral.service/")


def verify_sigv4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    credentials: Credentials = DEFAULT_CREDENTIALS,
    now: dt.datetime | None = None,
) -> Reply | None:
    """None when the request is signed by a known key, else Bedrock's 403.

    ``url`` is the URL as received (scheme, Host and the raw, still-encoded path and query);
    ``headers`` are the received headers (any case). The signature is recomputed with botocore's
    ``SigV4Auth`` over exactly the headers the client says it signed.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as AwsCredentials

    lower = {name.lower(): value for name, value in headers.items()}
    authorization = lower.get("authorization")
    if not authorization:
        return _auth_error("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(authorization)
    if match is None:
        return _auth_error("IncompleteSignatureException", "Authorization header requires valid SigV4 parts.")
    known = credentials.get(match["key"])
    if known is None:
        return _auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
    secret, token = known
    if token is not None and not hmac.compare_digest(lower.get("x-amz-security-token", ""), token):
        return _auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
    if match["service"] != SIGNING_SERVICE:
        return _auth_error(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{SIGNING_SERVICE}'."
        )
    amz_date = lower.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return _auth_error("IncompleteSignatureException", "Authorization header requires existence of X-Amz-Date.")
    if amz_date[:8] != match["date"]:
        return _auth_error(
            "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from X-Amz-Date."
        )
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - signed_at) > MAX_CLOCK_SKEW:
        return _auth_error(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than "
            f"{(current - MAX_CLOCK_SKEW).strftime('%Y%m%dT%H%M%SZ')} "
            f"({current.strftime('%Y%m%dT%H%M%SZ')} - 5 min.)",
        )
    claimed = match["signed"].split(";")
    if "host" not in claimed or any(name not in lower for name in claimed):
        return _auth_error("InvalidSignatureException", _SIGNATURE_MISMATCH)

    request = AWSRequest(method=method, url=url, headers={name: lower[name] for name in claimed}, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(AwsCredentials(match["key"], secret, token), SIGNING_SERVICE, match["region"])
    if signer.signed_headers(signer.headers_to_sign(request)) != match["signed"]:
        return _auth_error("InvalidSignatureException", _SIGNATURE_MISMATCH)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return _auth_error("InvalidSignatureException", _SIGNATURE_MISMATCH)
    return None


_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


# ---------------------------------------------------------------------------------------------
# Building the answer


def load_request(raw: bytes, model_id: str, *, stream: bool) -> bytes | Reply:
    """A Bedrock Anthropic body → the equivalent ``/v1/messages`` body for the Anthropic simulator, or a 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _malformed("expected type: JSONObject, found: invalid JSON")
    if not isinstance(body, dict):
        return _malformed(f"expected type: JSONObject, found: {type(body).__name__}")
    if "anthropic_version" not in body:
        return _malformed("required key [anthropic_version] not found")
    if body["anthropic_version"] != BEDROCK_ANTHROPIC_VERSION:
        return validation_reply(f"Invalid API version: {body['anthropic_version']}")
    for key in ("model", "stream"):
        if key in body:
            return _malformed(f"extraneous key [{key}] is not permitted")
    del body["anthropic_version"]
    body["model"] = model_id
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def _sse_payloads(write: bytes) -> Iterable[dict[str, Any]]:
    """The JSON events of one of the Anthropic simulator's SSE writes (its output is well formed)."""
    for event in write.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                yield orjson.loads(line[6:])


def stream_frames(writes: Iterable[bytes]) -> list[bytes]:
    """The Anthropic simulator's SSE writes → event-stream writes (one frame per event; pings dropped).

    ``message_stop`` gets ``amazon-bedrock-invocationMetrics``: Anthropic's uncached input tokens,
    output tokens, cache read/write counts and (simulated, constant) latencies.
    """
    usage: dict[str, Any] = {}
    frames: list[bytes] = []
    for write in writes:
        out = b""
        for event in _sse_payloads(write):
            kind = event.get("type")
            if kind == "ping":
                continue  # Bedrock does not forward Anthropic's keep-alives
            if kind == "message_start":
                usage.update(event["message"].get("usage") or {})
            elif kind == "message_delta":
                usage.update(event.get("usage") or {})
            elif kind == "message_stop":
                event = {**event, "amazon-bedrock-invocationMetrics": invocation_metrics(usage)}
            out += chunk_frame(event)
        frames.append(out)
    return frames


def invocation_metrics(usage: Mapping[str, Any]) -> dict[str, int]:
    """Bedrock's per-call metrics from an Anthropic usage object."""
    return {
        "inputTokenCount": int(usage.get("input_tokens") or 0),
        "outputTokenCount": int(usage.get("output_tokens") or 0),
        "invocationLatency": 100,
        "firstByteLatency": 50,
        "cacheReadInputTokenCount": int(usage.get("cache_read_input_tokens") or 0),
        "cacheWriteInputTokenCount": int(usage.get("cache_creation_input_tokens") or 0),
    }


def build_reply(
    raw: bytes, model_id: str, *, stream: bool, cache: anthropic.PromptCache | None, chunks: int = 20
) -> Reply:
    """The complete reply to a Bedrock invoke: a Bedrock error, the message JSON, or event-stream writes."""
    converted = load_request(raw, model_id, stream=stream)
    if isinstance(converted, Reply):
        return converted
    reply = anthropic.build_reply(converted, cache=cache, chunks=chunks)
    if reply.status != 200:
        return _from_anthropic_error(reply)
    if reply.stream:
        return Reply(
            events=tuple(stream_frames(reply.events)),
            headers=(("x-amzn-bedrock-content-type", "application/json"),),
            delta_events=reply.delta_events,
            drop_after=reply.drop_after,
            slow_ms=reply.slow_ms,
        )
    usage = orjson.loads(reply.body).get("usage") or {}
    headers = (
        ("X-Amzn-Bedrock-Input-Token-Count", str(usage.get("input_tokens", 0))),
        ("X-Amzn-Bedrock-Output-Token-Count", str(usage.get("output_tokens", 0))),
        ("X-Amzn-Bedrock-Invocation-Latency", "100"),
    )
    return Reply(
        body=reply.body,
        headers=headers,
        delta_events=reply.delta_events,
        drop_after=reply.drop_after,
        slow_ms=reply.slow_ms,
    )


def request_id(raw: bytes) -> str:
    """A deterministic ``x-amzn-RequestId`` (UUID-shaped) for a body."""
    digest = hashlib.sha256(raw).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


class BedrockRoutes:
    """The two Bedrock routes' logic, without aiohttp: verify, then build (HTTP lives in ``app.py``).

    ``credentials`` are the keys accepted; ``now`` is the clock used for the skew check.
    """

    def __init__(
        self,
        *,
        credentials: Credentials = DEFAULT_CREDENTIALS,
        cache: anthropic.PromptCache | None = None,
        chunks: int = 20,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.credentials = credentials
        self.cache = cache if cache is not None else anthropic.PromptCache()
        self.chunks = chunks
        self._now = now

    def answer(
        self, method: str, url: str, headers: Mapping[str, str], raw: bytes, model_id: str, *, stream: bool
    ) -> Reply:
        denied = verify_sigv4(
            method, url, headers, raw, credentials=self.credentials, now=self._now() if self._now else None
        )
        if denied is not None:
            return denied
        return build_reply(raw, model_id, stream=stream, cache=self.cache, chunks=self.chunks)


__all__ = [
    "BEDROCK_ANTHROPIC_VERSION",
    "DEFAULT_CREDENTIALS",
    "EVENT_STREAM_CONTENT_TYPE",
    "SIM_ACCESS_KEY_ID",
    "SIM_SECRET_ACCESS_KEY",
    "BedrockRoutes",
    "build_reply",
    "chunk_frame",
    "encode_frame",
    "exception_frame",
    "invocation_metrics",
    "load_request",
    "request_id",
    "stream_frames",
    "throttling_reply",
    "verify_sigv4",
]
