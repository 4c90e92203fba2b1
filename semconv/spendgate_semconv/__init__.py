"""spendgate's telemetry contract: the attribute names every part emits and reads.

The proxy, the SDK and the collector share nothing but this package and the wire, so every
attribute name lives here once. ``attributes`` holds the names; ``docs/semconv.md`` is generated
from it (``python -m spendgate_semconv.docs``) and a test fails when the two drift.
"""

from spendgate_semconv import attributes

__all__ = ["attributes"]
