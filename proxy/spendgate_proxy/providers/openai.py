"""OpenAI-compatible upstreams (OpenAI, Azure-style, vLLM, Ollama, ...): Chat Completions in and out.

The passthrough hot path (``call/attempts.py``) posts through :meth:`OpenAIProvider.send_raw`, which
hands the body straight to the pool with its ``sent`` callback; the hooks below serve the
translation path (an Anthropic-shaped or Responses-shaped request answered by an OpenAI-compatible
model).

The session is the lean HTTP/1.1 pool of ``http1.py`` rather than an aiohttp ``ClientSession``:
it answers the same calls (``post``, then ``status``/``headers``/``content.iter_any()``/``read``)
at a fraction of the CPU per call (docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

import orjson
import yarl

from spendgate_proxy.formats import openai as openai_chat
from spendgate_proxy.formats import responses_shaped
from spendgate_proxy.formats.canonical import EFFORT_BUDGETS, ChatResponse
from spendgate_proxy.formats.errors import map_context_overflow, openai_error
from spendgate_proxy.providers.base import Endpoint, EventParser, Provider, Reply
from spendgate_proxy.providers.http1 import Http1Pool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from spendgate_proxy.config import ProviderSettings
    from spendgate_proxy.formats.canonical import ChatRequest


_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
"""OpenAI models that take ``reasoning_effort`` (as ``formats.openai`` tells them apart)."""


def effort_for(budget_tokens: int) -> str:
    """The OpenAI effort closest to an Anthropic thinking budget (``canonical.EFFORT_BUDGETS``, reversed)."""
    for effort in ("low", "medium", "high"):
        if budget_tokens <= EFFORT_BUDGETS[effort]:
            return effort
    return "high"


class OpenAIProvider(Provider):
    """An OpenAI-compatible endpoint; ``base_url`` includes the version (``https://api.openai.com/v1``)."""

    format = "openai"
    system = "openai"
    default_base_url = "https://api.openai.com/v1"

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        # Parsed once: aiohttp would otherwise parse the URL string on every request.
        self.chat_url = yarl.URL(self.base_url + "/chat/completions")
        self._pool: Http1Pool | None = None

    @property
    def session(self) -> Http1Pool:  # type: ignore[override]
        """The provider's keep-alive pool (lean HTTP/1.1), created on first use inside the running loop.

        No cookie jar: one pool serves every developer, so a provider's Set-Cookie is never replayed.
        """
        if self._pool is None:
            t = self.settings.timeouts
            self._pool = Http1Pool(
                self.base_url,
                headers=self.headers,
                limit=self.settings.max_connections,
                connect_timeout=t.connect,
                read_timeout=t.read,
                total_timeout=t.total,
            )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await super().close()

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    def url_for(self, endpoint: Endpoint, model: str, *, stream: bool) -> yarl.URL:
        if endpoint != "chat":
            raise ValueError(f"OpenAI-compatible providers have no {endpoint} endpoint")
        return self.chat_url

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
        """POST a Chat Completions body: straight to the pool, which calls ``sent`` once the request
        is written (the span record is then built while the upstream computes)."""
        url = self.url_for(endpoint, model, stream=stream)
        return Reply(self, await self.session.post(url, data=body, headers=headers, sent=sent))

    def render(self, req: ChatRequest) -> bytes:
        reasoning = req.reasoning
        if (
            reasoning is not None
            and reasoning.enabled
            and reasoning.effort is None
            and reasoning.budget_tokens
            and _REASONING_MODEL.match(req.model.rsplit("/", 1)[-1])
        ):
            # Anthropic-style thinking budget → an effort; only for models that take one (others
            # refuse reasoning_effort with a 400).
            req = dataclasses.replace(
                req, reasoning=dataclasses.replace(reasoning, effort=effort_for(reasoning.budget_tokens))
            )
        # Responses-only fields with a Chat Completions equivalent (verbosity, response_format, ...).
        extra = responses_shaped.chat_extra(req) if req.source_format == "responses" else None
        return orjson.dumps(openai_chat.render_request(req, extra=extra))

    def stream_parser(self) -> EventParser:
        return openai_chat.ChatCompletionsSSEParser()

    def parse_response(self, data: bytes) -> ChatResponse:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            obj = None
        return openai_chat.parse_response(obj if isinstance(obj, dict) else {})

    def error_to_openai(self, status: int, data: bytes) -> tuple[int, dict[str, Any]]:
        # Compatible servers word overflows their own way (vLLM, Mistral, Gemini): one code for all.
        status, body = map_context_overflow(status, data)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            return status, obj
        text = body.decode(errors="replace")[:500] or f"upstream error (HTTP {status})"
        return status, {"error": openai_error(text, "server_error")}
