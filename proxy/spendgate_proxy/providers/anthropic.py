"""Anthropic Messages upstreams (api.anthropic.com or a compatible server): ``x-api-key`` auth,
``anthropic-version``, ``/v1/messages`` and ``/v1/messages/count_tokens``.

``base_url`` is the API root without the version (``https://api.anthropic.com``); a configured
``.../v1`` is accepted too. Errors come back in OpenAI's vocabulary (a "prompt is too long" 400 as
``context_length_exceeded``) through ``formats.anthropic.error_to_openai``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
import yarl

from spendgate_proxy.formats import anthropic as anthropic_messages
from spendgate_proxy.formats.canonical import ChatResponse
from spendgate_proxy.providers.base import Endpoint, EventParser, Provider

if TYPE_CHECKING:
    from spendgate_proxy.config import ProviderSettings
    from spendgate_proxy.formats.canonical import ChatRequest


class AnthropicProvider(Provider):
    """The Anthropic Messages API."""

    format = "anthropic"
    system = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        root = self.base_url.removesuffix("/v1")
        self.messages_url = yarl.URL(root + "/v1/messages")
        self.count_tokens_url = yarl.URL(root + "/v1/messages/count_tokens")

    def auth_headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.settings.anthropic_version}
        if self.settings.api_key:
            headers["x-api-key"] = self.settings.api_key
        return headers

    def url_for(self, endpoint: Endpoint, model: str, *, stream: bool) -> yarl.URL:
        return self.count_tokens_url if endpoint == "count_tokens" else self.messages_url

    def render(self, req: ChatRequest) -> bytes:
        return orjson.dumps(anthropic_messages.render_request(req))

    def count_tokens_body(self, req: ChatRequest) -> bytes | None:
        return orjson.dumps(anthropic_messages.render_count_tokens_request(req))

    def stream_parser(self) -> EventParser:
        return anthropic_messages.AnthropicSSEParser()

    def parse_response(self, data: bytes) -> ChatResponse:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        return anthropic_messages.parse_response(obj if isinstance(obj, dict) else {})

    def error_to_openai(self, status: int, data: bytes) -> tuple[int, dict[str, Any]]:
        try:
            obj: object = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        return anthropic_messages.error_to_openai(status, obj)
