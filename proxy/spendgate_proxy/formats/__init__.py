"""Request and response formats: the canonical chat model and the adapters to and from it.

``canonical`` is the shared model; ``openai_chat``, ``responses_shaped`` (and the Anthropic
adapter) each speak one wire format; ``detect`` tells the request shapes apart and ``cursor``
holds what only Cursor needs. Nothing here does I/O, so adapters can be tested (and
benchmarked) on bytes alone.
"""

from spendgate_proxy.formats.canonical import ChatRequest, ChatResponse, StreamEvent, Usage
from spendgate_proxy.formats.detect import Shape, detect_shape

__all__ = ["ChatRequest", "ChatResponse", "Shape", "StreamEvent", "Usage", "detect_shape"]
