"""Virtual keys: the proxy's in-memory index over the keys file, and the CLI's create/revoke.

A virtual key (``sg-`` + 32 random bytes, URL-safe base64) identifies one developer. Only its
SHA-256 is stored; a key is shown once, at creation. Plain SHA-256 is enough here because the keys
are 256-bit random, so there is nothing to brute-force (unlike passwords, which need a slow KDF).

The file (YAML, default ``spendgate-data/keys.yaml``) and its records are the shared contract in
``spendgate_semconv.keyfile``: read with its parser, written with its ``locked_write`` (advisory lock,
atomic replace), so ``spendgate keys`` can run while proxies and the collector read it; proxies
reload it when it changes. This module keeps only what is the proxy's own: ``KeyDirectory``.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from spendgate_semconv import keyfile
from spendgate_semconv.keyfile import KEY_PREFIX, KeyFileError, KeyRecord, Principal, hash_key, new_key

DEFAULT_KEYS_FILE = "spendgate-data/keys.yaml"
"""Where ``spendgate keys``, the proxy and ``spendgate up`` keep the key file unless told otherwise."""
VERIFIED_CACHE_SIZE = 1024
"""Presented keys whose principal ``KeyDirectory.lookup`` remembers (more than one proxy's active developers)."""
UNKNOWN_CACHE_SIZE = 4096
"""Presented keys remembered as unknown (``remember_unknown``); the oldest goes first."""
UNKNOWN_KEY_MAX_CHARS = 128
"""Longer presented keys are never remembered (a real key has 46 characters): bounds the cache's memory."""


class UnknownKey(LookupError):
    """No key with this hash is in the directory (as opposed to a revoked, disabled or expired one).

    ``checked``: the key was remembered as unknown after a look for newer key state (``remember_unknown``),
    so looking again now would find nothing new.
    """

    def __init__(self, message: str = "unknown virtual key", *, checked: bool = False) -> None:
        super().__init__(message)
        self.checked = checked


def read_key_file(path: Path) -> list[KeyRecord]:
    """All records in the file; an absent file is an empty directory."""
    return keyfile.read(path)


def create_key(
    path: Path,
    *,
    user: str,
    team: str | None = None,
    cost_center: str | None = None,
    repo: str | None = None,
    models: tuple[str, ...] = (),
    expires_at: datetime | None = None,
) -> tuple[str, KeyRecord]:
    """Add a key for ``user``; returns the key (to show once) and its stored record."""
    if not user or "@" not in user:
        raise ValueError(f"user must be the developer's email address, got {user!r}")
    key, key_id = new_key()
    record = KeyRecord(
        Principal(key_id, user, team, cost_center, repo, tuple(models), expires_at),
        hash_key(key),
        key[: keyfile.DISPLAY_PREFIX_CHARS],
    )
    with keyfile.locked_write(path) as edit:
        edit.keys.append(keyfile.record_to_raw(record))
    return key, record


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    """Mark a key revoked (kept for audit and for attributing past spans)."""
    with keyfile.locked_write(path) as edit:
        for i, rec in enumerate(edit.records()):
            if rec.principal.key_id == key_id:
                if rec.principal.revoked_at is None:
                    rec = replace(rec, principal=replace(rec.principal, revoked_at=datetime.now(UTC)))
                    edit.keys[i] = {**edit.keys[i], "revoked_at": rec.principal.revoked_at.isoformat()}
                return rec
    raise KeyError(key_id)


class KeyDirectory:
    """In-memory index from key hash to principal; the proxy's only view of the key file.

    ``lookup`` never touches the disk; ``reload_if_changed`` runs from a background task and swaps
    the whole index at once, so readers need no lock.

    A key seen before skips its SHA-256: ``lookup`` keeps the principals it verified in a small
    bounded dict keyed by the presented key (``_verified``). Hashing costs ~1 µs in a tight loop but
    ~15 µs per call on the proxy's request path (OpenSSL's digest lookup, cold caches). That dict
    is replaced, never patched, whenever the index changes (file reload, control-plane ``replace`` /
    ``upsert`` / ``remove``), so it cannot outlive a revocation or a rotation, and every hit re-runs
    the revoked / disabled / expiry checks. It is never logged or exposed.

    With a control plane, ``replace`` / ``upsert`` / ``remove`` apply the collector's key directory
    instead (copy-on-write too). The first ``replace`` hands the directory to the control plane: from
    then on ``reload_if_changed`` leaves the index alone, so the file cannot undo it, until ``release``
    (a collector without a key source) hands it back to the file.

    The unknown-key cache (``remember_unknown``) is the negative twin of ``_verified``: presented keys
    that were looked up again after a check for newer key state (``key_refresh.py``) and still not
    found, answered as unknown without hashing until a short deadline passes or the index changes
    (it is replaced with ``_verified``). Bounded in entries and key length; never logged or exposed.
    ``generation`` counts the index's changes.
    """

    def __init__(
        self,
        path: Path | None = None,
        records: list[KeyRecord] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._by_hash: dict[str, Principal] = {}
        self._hash_by_id: dict[str, str] = {}
        self._verified: dict[str, Principal] = {}
        # An OrderedDict: evicting its oldest entry is O(1), where a dict's first key costs a scan
        # past every deleted slot (µs per insert once a flood has filled it).
        self._unknown: OrderedDict[str, float] = OrderedDict()
        """Presented key -> ``clock()`` deadline until which it is answered as unknown without a hash."""
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self.managed = False
        """True once the control plane owns the directory (see ``replace``)."""
        self.generation = 0
        """Incremented whenever the index changes (file reload, control-plane update)."""
        if records is not None:
            self._install(records)
        elif path is not None:
            self.reload_if_changed()

    def _install(self, records: list[KeyRecord]) -> None:
        self._by_hash = {r.hash: r.principal for r in records}
        self._hash_by_id = {r.principal.key_id: r.hash for r in records}
        self._forget_verified()

    def _forget_verified(self) -> None:
        # After the index swap, and a new dict rather than clear(): ``lookup`` takes the dict before
        # the index, so a lookup racing a reload (the file is re-read in an executor thread) can only
        # store what it read from the old index in the old, discarded dict.
        self._verified = {}
        self._unknown = OrderedDict()
        self.generation += 1

    def replace(self, records: list[KeyRecord]) -> None:
        """Swap in the control plane's whole directory; the key file is not read again after this."""
        self.managed = True
        self._install(records)

    def release(self) -> None:
        """Hand the directory back to the key file (re-read on the next ``reload_if_changed``)."""
        if self.managed:
            self.managed = False
            self._stamp = None

    def upsert(self, records: list[KeyRecord]) -> None:
        """Add or change keys (matched by key id; a changed hash drops the old one)."""
        by_hash, hash_by_id = dict(self._by_hash), dict(self._hash_by_id)
        for r in records:
            old = hash_by_id.get(r.principal.key_id)
            if old is not None and old != r.hash:
                by_hash.pop(old, None)
            by_hash[r.hash] = r.principal
            hash_by_id[r.principal.key_id] = r.hash
        self._by_hash, self._hash_by_id = by_hash, hash_by_id
        self._forget_verified()

    def remove(self, key_ids: list[str]) -> None:
        """Drop keys by id; unknown ids are ignored."""
        by_hash, hash_by_id = dict(self._by_hash), dict(self._hash_by_id)
        for key_id in key_ids:
            old = hash_by_id.pop(key_id, None)
            if old is not None:
                by_hash.pop(old, None)
        self._by_hash, self._hash_by_id = by_hash, hash_by_id
        self._forget_verified()

    def __len__(self) -> int:
        return len(self._by_hash)

    def remember_unknown(self, key: str, ttl_s: float) -> None:
        """Answer ``key`` as unknown (``UnknownKey.checked``) for ``ttl_s`` seconds or until the index changes."""
        if len(key) > UNKNOWN_KEY_MAX_CHARS:
            return
        unknown = self._unknown
        if key in unknown:
            unknown.move_to_end(key)  # the oldest entry is evicted first
        elif len(unknown) >= UNKNOWN_CACHE_SIZE:
            unknown.popitem(last=False)
        unknown[key] = self._clock() + ttl_s

    @property
    def unknown_cached(self) -> int:
        """Presented keys remembered as unknown right now (some may be past their deadline)."""
        return len(self._unknown)

    def _file_stamp(self) -> tuple[int, int]:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def file_changed(self) -> bool:
        """True when the file (which this directory follows) changed since it was read: one ``stat``."""
        if self.path is None or self.managed:
            return False
        return self._file_stamp() != self._stamp

    def reload_if_changed(self) -> bool:
        """Re-read the file when its size or mtime changed; returns whether it did."""
        if not self.file_changed():
            return False
        return self.install_file(*self.read_file())

    def read_file(self) -> tuple[list[KeyRecord], tuple[int, int]]:
        """The file's records and the stamp they were read at; touches nothing (any thread may call it)."""
        assert self.path is not None
        stamp = self._file_stamp()
        return keyfile.read(self.path), stamp

    def install_file(self, records: list[KeyRecord], stamp: tuple[int, int]) -> bool:
        """Swap in records ``read_file`` returned, unless the control plane took the directory meanwhile.

        The proxy calls it on its event loop, where control-plane updates are applied too, so the
        check and the swap cannot interleave with a snapshot.
        """
        if self.managed:
            return False
        self._install(records)
        self._stamp = stamp
        return True

    def lookup(self, key: str, now: datetime | None = None) -> Principal:
        """The principal for ``key``; raises ``LookupError`` saying why it is refused."""
        verified = self._verified  # before the index: see _forget_verified
        principal = verified.get(key)
        if principal is None:
            unknown = self._unknown
            if unknown:  # one dict check, before the hash: a flood of a bad key costs nothing more
                until = unknown.get(key)
                if until is not None and until > self._clock():
                    raise UnknownKey(checked=True)
            principal = self._by_hash.get(hash_key(key))
            if principal is None:
                raise UnknownKey("unknown virtual key")
            cache = True
        else:
            cache = False
        if principal.revoked_at is not None:
            raise LookupError(f"virtual key {principal.key_id} was revoked")
        if principal.disabled:
            raise LookupError(f"virtual key {principal.key_id} is disabled")
        if principal.expires_at is not None and principal.expires_at <= (now or datetime.now(UTC)):
            raise LookupError(f"virtual key {principal.key_id} expired at {principal.expires_at.isoformat()}")
        if cache:  # only keys that passed; the checks above run again on every hit
            if len(verified) >= VERIFIED_CACHE_SIZE:
                del verified[next(iter(verified))]  # oldest first: a flood of keys cannot grow it
            verified[key] = principal
        return principal


__all__ = [
    "DEFAULT_KEYS_FILE",
    "KEY_PREFIX",
    "KeyDirectory",
    "KeyFileError",
    "KeyRecord",
    "Principal",
    "UnknownKey",
    "create_key",
    "hash_key",
    "new_key",
    "read_key_file",
    "revoke_key",
]
