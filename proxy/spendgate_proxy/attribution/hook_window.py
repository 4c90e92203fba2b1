"""Per-developer Cursor hook attribution windows: which repo a developer is working in right now.

Cursor's hook script (``spendgate_proxy/cursor/hook_script.py``) reports the repo and branch of the
developer's workspace to ``POST /hooks/cursor`` just before each turn's first LLM call. The proxy
keeps the latest report per developer for a short time (the window) and the attribution chain
(``chain.py``) reads it with :meth:`HookWindows.lookup` when no header, path prefix or
model alias names the repo. Windows also arrive from other proxies through the control plane
(:meth:`HookWindows.apply`), so the report and the call may land on different proxies.

The window and its extend/replace rule are ``spendgate_semconv.windows``, shared with the collector.
Everything runs on the event loop thread, so a plain dict is enough: no locks. Lookups are one
dict access; expired entries are dropped lazily (on lookup, and a few per report), and the table
is capped so a flood of distinct developers cannot grow memory without bound.
"""

from __future__ import annotations

from spendgate_semconv.windows import Window, continues, extend

DEFAULT_MAX_DEVELOPERS = 100_000
"""Far more developers than any one team has; about 300 bytes each, so ~30 MB at the cap."""

_SWEEP_PER_REPORT = 2
"""Expired entries checked from the oldest end on each report: keeps idle entries from piling up."""


HookAttribution = Window
"""One developer's live attribution (``spendgate_semconv.windows.Window``; the developer is the table's key)."""


class HookWindows:
    """Live hook attribution per developer (``principal.user``; the key id for a key without one).

    Latest report wins: a developer with two repos open is attributed to whichever reported last.
    """

    def __init__(self, max_developers: int = DEFAULT_MAX_DEVELOPERS) -> None:
        if max_developers < 1:
            raise ValueError("max_developers must be at least 1")
        self._live: dict[str, HookAttribution] = {}
        self._max = max_developers
        self.evicted = 0
        """Live windows dropped because the table was full (oldest report first)."""

    def __len__(self) -> int:
        return len(self._live)

    def report(self, user: str, attribution: HookAttribution) -> HookAttribution:
        """Store a fresh report for ``user`` and return the window now in force.

        A report naming the same repo and branch as the live window extends it and keeps its
        ``since_ns``, so a long session in one repo is one window rather than many.
        """
        current = self._live.get(user)
        if current is not None and continues(current, attribution):  # the rule the collector applies too
            attribution = extend(current, attribution)
        self._put(user, attribution)
        self._sweep(attribution.since_ns)
        return attribution

    def apply(self, user: str, attribution: HookAttribution) -> bool:
        """Take a window decided elsewhere (the collector's control stream); False when it is stale.

        Windows from the control plane can arrive after this proxy received a newer report itself
        (it applied that one at once), so an older window never replaces a newer one.
        """
        current = self._live.get(user)
        if current is not None and current.until_ns > attribution.until_ns:
            return False
        self._put(user, attribution)
        return True

    def lookup(self, user: str | None, now_ns: int) -> HookAttribution | None:
        """The live window for ``user`` at ``now_ns``, or None (no user, no report, or expired)."""
        if user is None:
            return None
        window = self._live.get(user)
        if window is None:
            return None
        if now_ns >= window.until_ns:
            # Expired: drop it now rather than keep a sweeper task running.
            del self._live[user]
            return None
        return window

    def forget(self, user: str) -> None:
        """Drop ``user``'s window (their key was revoked, or a test resets state)."""
        self._live.pop(user, None)

    def snapshot(self, now_ns: int) -> dict[str, HookAttribution]:
        """Every live window at ``now_ns`` (a copy), for stats and tests."""
        return {u: w for u, w in self._live.items() if w.until_ns > now_ns}

    def _put(self, user: str, attribution: HookAttribution) -> None:
        # Re-inserting moves the entry to the end, so dict order is oldest report first: the cap
        # and the sweep both work from the front.
        self._live.pop(user, None)
        if len(self._live) >= self._max:
            del self._live[next(iter(self._live))]
            self.evicted += 1
        self._live[user] = attribution

    def _sweep(self, now_ns: int) -> None:
        for _ in range(_SWEEP_PER_REPORT):
            if not self._live:
                return
            user = next(iter(self._live))
            if self._live[user].until_ns > now_ns:
                return
            del self._live[user]


def developer_of(user: str | None, key_id: str) -> str:
    """The window key for a principal: the developer's email, or the key id when the key has no user."""
    return user or key_id
