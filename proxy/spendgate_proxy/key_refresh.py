"""One more look for newer key state before a virtual key the proxy does not hold is refused.

A key created a moment ago (``spendgate keys create``, the keys API, the dashboard) reaches a
proxy within about a second on its own: the proxy re-reads its key file every second, or the
collector polls the file every second and streams the change. A client that uses the key at once
(the README's "While it runs" block, pasted in one go) would get 401 meanwhile. So when
``KeyDirectory.lookup`` says a key is unknown, the route awaits ``KeyRefresh.lookup``, which looks
for newer key state once, then looks the key up again:

- **The directory follows the key file** (standalone, no control state yet, or a collector without
  a key source): ``stat`` the file and re-read it when its mtime or size changed. Nothing changed
  means the file cannot hold the key, so the whole cost is one ``stat`` (a few µs) and nothing waits.
  Reloads run one at a time (the once-a-second follower uses the same path), so an older read can
  never be installed over a newer one.
- **The directory is the collector's** (``KeyDirectory.managed``): ask the collector to read its key
  source now (``SyncKeys``; one unary gRPC call, about a millisecond on a LAN). It answers the epoch
  and version at which its directory holds everything the source holds, and the proxy waits (at
  most ``control.SYNC_TIMEOUT_S``) until its control stream has applied that version. The answer
  carries no key: the stream stays the only writer of the directory, so updates are applied in
  version order and a revocation can never be overtaken by an older copy of the key. The proxy's own key file is
  not read here: it may be a stale copy on another host, and the collector decides which keys exist.
  The proxy cannot tell whether the collector has anything new without asking, so the asks are
  rate-limited: at most one ``SyncKeys`` starts per ``ttl_s``, and every unknown key waits for one
  that starts after it arrived, so a key created just after a flood of bad keys still works on its
  first call (at most ``ttl_s`` plus the call later), while the flood costs the collector two calls
  a second.

A key still unknown afterwards is remembered (``KeyDirectory.remember_unknown``: at most 4,096 keys,
for ``ttl_s``, forgotten whenever the directory changes) and answered 401 at once, before it is even
hashed, while remembered: a flood of one bad key costs a dict lookup per request.

Waiting for the stream alone (no ``SyncKeys``) would cost no new RPC but up to the collector's
one-second file poll per unknown key; reading the proxy's own file while managed would be faster but
could admit a key the collector removed. Keys never appear in logs or stats here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from spendgate_proxy.keys import UnknownKey

if TYPE_CHECKING:
    from spendgate_proxy.keys import KeyDirectory, Principal

logger = logging.getLogger(__name__)

RECHECK_TTL_S = 0.5
"""Least time between two ``SyncKeys`` calls, and how long a key still unknown after one is remembered."""


class KeyRefresh:
    """Looks for newer key state for unknown keys; see the module docstring.

    ``sync`` is the control client's ``sync_keys`` (None without a control endpoint). ``clock`` and
    ``sleep`` are seams for tests. ``aclose()`` cancels a pending call (the proxy calls it on shutdown).
    """

    def __init__(
        self,
        keys: KeyDirectory,
        *,
        sync: Callable[[], Awaitable[Any]] | None = None,
        ttl_s: float = RECHECK_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.keys = keys
        self.ttl_s = ttl_s
        self._sync = sync
        self._clock = clock
        self._sleep = sleep
        self._next_sync: asyncio.Future[None] | None = None
        """The next ``SyncKeys`` not started yet: unknown keys arriving now wait for it."""
        self._last_sync_start = float("-inf")
        self._reloading: asyncio.Future[bool] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        """Every call in flight or pending, for ``aclose``."""
        self.rechecks = 0
        """Unknown keys that waited for a look at newer key state."""
        self.found = 0
        """... and were found after it."""
        self.syncs = 0
        self.sync_failures = 0
        self.reloads = 0
        self.last_error: str | None = None

    async def lookup(self, key: str) -> Principal | None:
        """Call after ``keys.lookup(key)`` raised ``UnknownKey`` (not ``checked``): look for newer
        key state, then look again. None (and remembered) when still unknown; raises ``LookupError``
        when it arrived revoked, disabled or expired."""
        self.rechecks += 1
        keys = self.keys
        generation = keys.generation
        await self.wait_newer()
        if keys.generation != generation:  # the directory changed: look again (else no second hash)
            try:
                principal = keys.lookup(key)
            except UnknownKey:
                pass
            else:
                self.found += 1
                return principal
        keys.remember_unknown(key, self.ttl_s)
        return None

    async def wait_newer(self) -> None:
        """Bring the key directory up to date with its source, as the module docstring says; never raises."""
        keys = self.keys
        if keys.managed:
            if self._sync is not None:
                await self._sync_after_now()
            return
        try:
            await self.reload_file()
        except Exception as exc:  # a bad file is logged by the follower once a second; answer 401
            self.last_error = f"{type(exc).__name__}: {exc}"

    async def reload_file(self) -> bool:
        """Re-read the key file when it changed (parsed in a worker thread, installed on the loop),
        one reload at a time; returns whether the directory changed. Raises ``KeyFileError``."""
        changed = False
        for _ in range(2):  # once more when the file changed again while someone else's reload ran
            if not self.keys.file_changed():
                break
            task = self._reloading
            if task is None:
                task = self._reloading = self._track(self._reload())
            changed = await asyncio.shield(task) or changed
        return changed

    async def _reload(self) -> bool:
        keys = self.keys
        try:
            records, stamp = await asyncio.get_running_loop().run_in_executor(None, keys.read_file)
            installed = keys.install_file(records, stamp)
            self.reloads += installed
            return installed
        finally:
            self._reloading = None

    async def _sync_after_now(self) -> None:
        task = self._next_sync
        if task is None:
            delay = max(0.0, self._last_sync_start + self.ttl_s - self._clock())
            task = self._next_sync = self._track(self._run_sync(delay))
        # Shielded: a client that goes away does not cancel the call the others wait for.
        await asyncio.shield(task)

    async def _run_sync(self, delay: float) -> None:
        if delay > 0:
            await self._sleep(delay)
        self._next_sync = None  # from here on, new arrivals need a call that starts after them
        self._last_sync_start = self._clock()
        self.syncs += 1
        assert self._sync is not None
        try:
            await self._sync()
        except Exception as exc:  # collector down or too old: the key is answered from what is held
            self.sync_failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.debug("key sync with the collector failed: %s", self.last_error)

    def _track(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel calls still in flight and let them end (idempotent; the proxy calls it on shutdown)."""
        tasks = list(self._tasks)
        self._next_sync = self._reloading = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stats(self) -> dict[str, Any]:
        """Counters for ``/healthz`` (no keys)."""
        return {
            "rechecks": self.rechecks,
            "found": self.found,
            "syncs": self.syncs,
            "sync_failures": self.sync_failures,
            "reloads": self.reloads,
            "unknown_cached": self.keys.unknown_cached,
            "last_error": self.last_error,
        }
