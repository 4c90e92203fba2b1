"""The OpenAI Chat Completions adapter: Chat Completions bodies and streams to and from the canonical model.

``request`` parses and renders request bodies, ``response`` whole answers, usage and finish
reasons, ``sse`` streams (writer and parser). Parsing is tolerant: clients and Cursor send
variants. Rendering is strict, the shape OpenAI's own API documents, so any OpenAI-compatible
upstream accepts it. Only choice 0 is translated: nothing we serve asks for ``n > 1``.
"""

from spendgate_proxy.formats.openai.request import (
    image_from_url,
    image_url,
    parse_request,
    parse_tool,
    parse_tool_choice,
    render_request,
    render_tool,
    render_tool_choice,
)
from spendgate_proxy.formats.openai.response import (
    finish_reason_from_openai,
    parse_response,
    render_response,
    usage_from_openai,
    usage_to_openai,
)
from spendgate_proxy.formats.openai.sse import (
    ChatCompletionsSSEParser,
    ChatCompletionsSSEWriter,
    parse_sse,
    sse_parser,
    sse_writer,
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
    "sse_parser",
    "sse_writer",
    "usage_from_openai",
    "usage_to_openai",
]
