"""The OpenAI Chat Completions adapter: Chat Completions bodies and streams to and from the canonical model."""

from spendgate_proxy.formats.openai.request import (
    ChatCompletionsSSEParser,
    ChatCompletionsSSEWriter,
    finish_reason_from_openai,
    image_from_url,
    image_url,
    parse_request,
    parse_response,
    parse_sse,
    parse_tool,
    parse_tool_choice,
    render_request,
    render_response,
    render_tool,
    render_tool_choice,
    usage_from_openai,
    usage_to_openai,
)

__all__ = [
    "ChatCompletionsSSEParser",
    "ChatCompletionsSSEWriter",
    "finish_reason_from_openai",
    "image_from_url",
    "image_url",
    "parse_request",
    "parse_response",
    "parse_sse",
    "parse_tool",
    "parse_tool_choice",
    "render_request",
    "render_response",
    "render_tool",
    "render_tool_choice",
    "usage_from_openai",
    "usage_to_openai",
]
