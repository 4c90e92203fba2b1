"""Request and response formats: the canonical chat model and the adapters to and from it.

``canonical`` is the shared model; each other module speaks one wire format. Nothing here does
I/O, so adapters can be tested (and benchmarked) on bytes alone.
"""

from spendgate.proxy.formats.canonical import ChatRequest, ChatResponse, StreamEvent, Usage

__all__ = ["ChatRequest", "ChatResponse", "StreamEvent", "Usage"]
