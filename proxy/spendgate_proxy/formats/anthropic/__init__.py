"""The Anthropic Messages adapter: Anthropic bodies and streams to and from the canonical model.

It serves two directions: Anthropic-shaped bodies coming in (``/v1/messages``, Cursor's
Claude-named models) and an Anthropic (or Bedrock) upstream going out. ``request`` parses and
renders request bodies, ``response`` whole answers and usage, ``sse`` streams (parser and writer),
``errors`` error bodies both ways.

Token counts follow the canonical convention: Anthropic's ``input_tokens`` excludes cache reads
and writes, so ``Usage.input_tokens = input_tokens + cache_creation_input_tokens +
cache_read_input_tokens`` (and the reverse when rendering). Tool call ids pass through
:func:`tool_id` wherever they are written, so a call and its result keep matching.
"""

from spendgate_proxy.formats.anthropic.errors import (
    error_from_openai,
    error_to_openai,
    stream_error_from_anthropic,
    stream_error_to_anthropic,
)
from spendgate_proxy.formats.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    AnthropicFormatError,
    parse_count_tokens_request,
    parse_request,
    render_count_tokens_request,
    render_image,
    render_request,
    render_tool,
    render_tool_choice,
    tool_id,
)
from spendgate_proxy.formats.anthropic.response import (
    count_tokens_response,
    parse_response,
    render_response,
    usage_from_anthropic,
    usage_to_anthropic,
)
from spendgate_proxy.formats.anthropic.sse import (
    AnthropicSSEParser,
    AnthropicSSEWriter,
    parse_sse,
    sse_event,
    sse_parser,
    sse_writer,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "AnthropicFormatError",
    "AnthropicSSEParser",
    "AnthropicSSEWriter",
    "count_tokens_response",
    "error_from_openai",
    "error_to_openai",
    "parse_count_tokens_request",
    "parse_request",
    "parse_response",
    "parse_sse",
    "render_count_tokens_request",
    "render_image",
    "render_request",
    "render_response",
    "render_tool",
    "render_tool_choice",
    "sse_event",
    "sse_parser",
    "sse_writer",
    "stream_error_from_anthropic",
    "stream_error_to_anthropic",
    "tool_id",
    "usage_from_anthropic",
    "usage_to_anthropic",
]
