"""Which proxies this collector cannot enforce budgets on: lost control streams, and spans without one.

A proxy enforces budgets only while it holds a control stream: that is how verdicts reach it. The
collector sees two things, and the roster joins them:

- its own streams: ``ControlServer`` reports each stream that opens and each that ends, saying
  whether the proxy left cleanly first (the ``Leave`` call a proxy makes when it stops);
- the proxies its spans come from: a proxy puts its control-plane id on its spans' resource
  (``spendgate.proxy.id``), and the normaliser reports every id it reads (once per resource, not
  per span).

``not_enforced`` then lists, for ``spendgate status`` and ``/healthz``:

``lost``
    held a stream here that ended without the proxy leaving (it crashed, the network broke, or it
    can no longer reach this collector) and has not subscribed again. Counted until it subscribes,
    or ``FORGET_S`` after the last sign of it (the loss or a span): a proxy that crashed and never
    came back drops out after that; one that keeps serving keeps sending spans and stays.
``no_stream``
    its spans arrived in the last ``FORGET_S`` but it holds no stream here and never held one (it
    runs with ``control: off``, or its control address does not lead to this collector), or they
    kept arriving more than ``SPAN_LAG_S`` after it left.

What it cannot know: a proxy that never connected and whose spans do not reach this collector, and
a proxy whose spans carry no ``spendgate.proxy.id`` (versions before this one, other gateways).
With several collectors, a proxy's spans may land on one collector while its stream is held by
another, which would then list it as ``no_stream``: the roster is per collector, sound for the one
collector spendgate runs today.

Thread-safety: spans are reported from the pipeline's thread, streams from the event loop; one lock
guards the two dicts. Memory is bounded: entries are dropped ``FORGET_S`` after their last sign, and
at most ``MAX_PROXIES`` span sightings are kept (the oldest go first).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

FORGET_S = 600.0
"""Seconds after the last sign of a proxy (its stream's loss, or a span) that it stops being listed."""
SPAN_LAG_S = 30.0
"""Spans from a proxy that left may arrive this long after its ``Leave``: its final export flush."""
MAX_PROXIES = 4096
"""Span sightings kept at most (one per proxy id; far more proxies than any one collector serves)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class UnenforcedProxy:
    """A proxy that serves (or may serve) calls without budget verdicts from this collector."""

    proxy_id: str
    state: Literal["lost", "no_stream"]
    since_ms: int
    """``lost``: when its stream ended; ``no_stream``: the first span seen from it (within the window)."""
    last_span_ms: int
    """When a span from it last arrived; 0 = none seen."""
    peer: str = ""
    """``lost``: the address its stream came from."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Ended:
    ended_ms: int
    left: bool
    peer: str


class ProxyRoster:
    """Stream ends and span sightings per proxy id; see the module docstring."""

    def __init__(self, *, forget_s: float = FORGET_S, span_lag_s: float = SPAN_LAG_S) -> None:
        self.forget_ms = int(forget_s * 1000)
        self.span_lag_ms = int(span_lag_s * 1000)
        self._lock = threading.Lock()
        self._ended: dict[str, _Ended] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        """proxy id -> (first, last) span arrival in ms; re-inserted on every sighting, so oldest first."""

    def saw_spans(self, proxy_id: str, now_ms: int | None = None) -> None:
        """Spans from ``proxy_id`` arrived (called by the normaliser, once per resource)."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            seen = self._seen.pop(proxy_id, None)
            first = seen[0] if seen is not None and now - seen[1] <= self.forget_ms else now
            self._seen[proxy_id] = (first, now)
            if len(self._seen) > MAX_PROXIES:
                del self._seen[next(iter(self._seen))]

    def subscribed(self, proxy_id: str) -> None:
        """A stream from ``proxy_id`` opened: whatever ended before is over."""
        with self._lock:
            self._ended.pop(proxy_id, None)

    def stream_ended(self, proxy_id: str, *, left: bool, peer: str, now_ms: int | None = None) -> None:
        """A stream from ``proxy_id`` ended; ``left``: the proxy said it was stopping (``Leave``)."""
        now = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._ended[proxy_id] = _Ended(now, left, peer)

    def not_enforced(self, connected: set[str], now_ms: int | None = None) -> list[UnenforcedProxy]:
        """Proxies without a stream here that lost one or send spans, given the ids ``connected`` now."""
        now = _now_ms() if now_ms is None else now_ms
        cutoff = now - self.forget_ms
        out: list[UnenforcedProxy] = []
        with self._lock:
            seen = {pid: s for pid, s in self._seen.items() if s[1] >= cutoff}
            self._seen = seen
            for pid, ended in list(self._ended.items()):
                last_span = seen.get(pid, (0, 0))[1]
                if max(ended.ended_ms, last_span) < cutoff:
                    del self._ended[pid]
            ended_by_id = dict(self._ended)
        for pid, ended in ended_by_id.items():
            if pid in connected or ended.left:
                continue
            out.append(UnenforcedProxy(pid, "lost", ended.ended_ms, seen.get(pid, (0, 0))[1], ended.peer))
        for pid, (first, last) in seen.items():
            if pid in connected:
                continue
            gone = ended_by_id.get(pid)
            if gone is not None and (not gone.left or last <= gone.ended_ms + self.span_lag_ms):
                continue  # listed as lost above, or the final flush of a proxy that left
            out.append(UnenforcedProxy(pid, "no_stream", first, last))
        out.sort(key=lambda p: (p.state, p.proxy_id))
        return out
