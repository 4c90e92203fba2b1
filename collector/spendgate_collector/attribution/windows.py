"""Cursor hook attribution windows at the collector: the live window per developer, a short history, ingest stamping.

Proxies forward every Cursor hook report they receive (``ReportAttribution`` on the control plane).
``AttributionWindows`` merges them per developer: a report naming the same repo, branch and
checkout as the developer's latest window extends it; any other report starts a new one (latest
report wins); that rule is ``spendgate_semconv.windows``, shared with the proxy. It answers two questions:

- *What is live now?* The control server publishes each new window, and each extension at most
  every :data:`PUBLISH_EVERY_NS`, to every proxy, so a call that lands on a proxy other than the one
  that received the hook knows its repo at request time.
- *Which window covered this span?* Spans are exported a little after they start (batching, a
  proxy retrying through a collector outage), so :meth:`stamp` matches a span's start time against
  the developer's windows of the last ``history_s`` seconds, not just the live one, and gives a
  span whose repo source is weaker than ``cursor-hook`` the window's repo, branch and remote
  before it is stored and rolled up.

Reports arrive on the event loop and spans are stamped on the pipeline's writer thread, hence the
lock; both sides hold it for a dict access and a short scan of one developer's history.
The history lives in memory only: a collector restart forgets it (proxies keep their live windows).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spendgate_semconv import control_pb2
from spendgate_semconv import windows as shared
from spendgate_semconv.attributes import RepoSource

if TYPE_CHECKING:
    from ..records import SpendRecord

DEFAULT_HISTORY_S = 3600.0
"""How long a lapsed window still matches late spans: an hour covers any export retry backlog."""

PUBLISH_EVERY_NS = 30 * 1_000_000_000
"""A window that only got longer is re-published at most this often: Cursor's ``afterFileEdit`` can
fire many times a second, and proxies need the end time only roughly (a TTL is minutes)."""

CLOCK_SKEW_NS = 5 * 1_000_000_000
"""A span may start this long before its window: the hook and the call can hit proxies whose
clocks differ a little, and the hook fires only just before the call."""

MAX_WINDOWS_PER_DEVELOPER = 256
"""Bounds one developer's history even if they switch repos every few seconds for an hour."""

MAX_DEVELOPERS = 100_000
"""Bounds the whole table; the developer idle longest is forgotten first."""

# Sources a hook window may override: anything weaker than cursor-hook in the attribution order
# (header > path prefix > model alias > cursor-hook > prompt-workspace > key default).
_WEAKER = frozenset({None, RepoSource.NONE, RepoSource.KEY_DEFAULT, RepoSource.PROMPT_WORKSPACE})


@dataclass(frozen=True, slots=True)
class Window:
    """One developer's attribution from Cursor hook reports, in force from ``since_ns`` to ``until_ns``."""

    user: str
    repo: str
    branch: str | None
    repo_url: str | None
    workspace_root: str | None
    since_ns: int
    until_ns: int

    def same_place(self, other: Window) -> bool:
        return shared.same_place(self, other)

    def message(self) -> control_pb2.AttributionWindow:
        """The wire form (``None`` fields become empty strings)."""
        return shared.to_message(self.user, self)


def window_from(msg: control_pb2.AttributionWindow) -> Window:
    """A wire window as a ``Window``; raises ``ValueError`` naming the bad field."""
    if not msg.user:
        raise ValueError("window.user: empty")
    if not msg.repo:
        raise ValueError("window.repo: empty")
    if msg.since_unix_ns <= 0 or msg.until_unix_ns <= msg.since_unix_ns:
        raise ValueError("window.until_unix_ns: must be after since_unix_ns (both positive)")
    return Window(
        msg.user,
        msg.repo,
        msg.branch or None,
        msg.repo_url or None,
        msg.workspace_root or None,
        msg.since_unix_ns,
        msg.until_unix_ns,
    )


class _Developer:
    __slots__ = ("history", "published_until")

    def __init__(self) -> None:
        self.history: list[Window] = []
        """Oldest first; the last one is the developer's current window."""
        self.published_until = 0


class AttributionWindows:
    """Per-developer windows from hook reports; see the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        history_s: float = DEFAULT_HISTORY_S,
        max_developers: int = MAX_DEVELOPERS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._history_ns = int(history_s * 1_000_000_000)
        self._max_developers = max_developers
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order = least recently reported first (a report moves its developer to the end).
        self._devs: dict[str, _Developer] = {}
        self.reports = 0
        self.stamped = 0
        """Spans given a repo at ingest."""

    def report(self, window: Window) -> tuple[Window, bool]:
        """Merge one report; returns the developer's window now in force and whether to publish it."""
        with self._lock:
            self.reports += 1
            dev = self._devs.pop(window.user, None) or _Developer()
            self._devs[window.user] = dev
            if len(self._devs) > self._max_developers:
                del self._devs[next(iter(self._devs))]
            history = dev.history
            last = history[-1] if history else None
            if last is not None and shared.continues(last, window):  # the rule the proxy applies too
                if window.until_ns <= last.until_ns:
                    return last, False  # an older report arriving late: nothing new
                current = shared.extend(last, window)
                history[-1] = current
                publish = current.until_ns - dev.published_until >= PUBLISH_EVERY_NS
            else:
                current = window
                history.append(current)
                publish = True
            horizon = self._clock() - self._history_ns
            while history and (history[0].until_ns < horizon or len(history) > MAX_WINDOWS_PER_DEVELOPER):
                history.pop(0)
            if publish:
                dev.published_until = current.until_ns
            return current, publish

    def live(self, now_ns: int | None = None) -> list[Window]:
        """Every developer's current window that has not lapsed."""
        now = self._clock() if now_ns is None else now_ns
        with self._lock:
            return [d.history[-1] for d in self._devs.values() if d.history and d.history[-1].until_ns > now]

    def match(self, developer: str, at_ns: int) -> Window | None:
        """The window that covered ``developer`` at ``at_ns``: the latest-started one that contains it."""
        with self._lock:
            dev = self._devs.get(developer)
            if dev is None:
                return None
            for window in reversed(dev.history):
                if window.since_ns - CLOCK_SKEW_NS <= at_ns < window.until_ns:
                    return window
        return None

    def stamp(self, record: SpendRecord) -> bool:
        """Give ``record`` its developer's hook window repo when its own source is weaker; True when it did.

        The developer is the record's user, or its key id when it has none (as the proxy keys windows).
        """
        if not self._devs:  # unlocked peek: the common no-Cursor-hooks case costs nothing
            return False
        source = record.repo_source
        if source not in _WEAKER or (source is None and record.repo is not None):
            # A repo with no source came from the span's resource or metadata: the application said so.
            return False
        developer = record.developer or record.key_id
        if developer is None:
            return False
        window = self.match(developer, record.start_ns)
        if window is None:
            return False
        record.repo = window.repo
        record.branch = window.branch
        record.repo_url = window.repo_url
        record.repo_source = RepoSource.CURSOR_HOOK
        self.stamped += 1
        return True

    def stats(self) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            live = sum(1 for d in self._devs.values() if d.history and d.history[-1].until_ns > now)
            return {"developers": len(self._devs), "live": live, "reports": self.reports, "stamped": self.stamped}
