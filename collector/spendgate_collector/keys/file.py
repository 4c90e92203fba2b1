"""The keys file ``spendgate keys`` writes (``version: 1``, ``keys: [...]``, hashes only), read in one place.

The document is checked once (``read_document`` / ``load_document``: readable, YAML, a mapping with
a ``keys`` list, version 1) and then read two ways:

- as control-plane ``KeyEntry`` messages (``entry_from``, ``read_key_entries``): every field a proxy
  needs to authenticate (hash, prefix, allowed models, expiry, disabled, revoked), strictly, so the
  collector never streams or writes an entry a proxy could not use;
- as the principal each key is bound to (``parse_keys_document``, ``KeyDirectory``): what the
  normaliser fills a span's gaps from when it carries only ``spendgate.key.id``. Leniently: a key
  needs only its id, so one half-filled entry never strips attribution from the others.

The format, its records and the parser are ``spendgate_semconv.keyfile``, shared with the proxy; a
principal read leniently has ``user == ""`` when its entry names none.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from spendgate_semconv.control_pb2 import KeyEntry
from spendgate_semconv.keyfile import (
    FILE_VERSION,
    KeyFileError,
    KeyRecord,
    Principal,
    check_document,
    load_document,
    parse_record,
    principals,
    read_document,
)

logger = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 1.0


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (``os.replace`` gives a new inode); None when absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# --- entries, as proxies read them


def _ms(value: datetime | None) -> int:
    """Unix ms; 0 for none."""
    return int(value.timestamp() * 1000) if value else 0


def entry_of(record: KeyRecord) -> KeyEntry:
    """A parsed record as the control plane's ``KeyEntry``."""
    p = record.principal
    return KeyEntry(
        key_id=p.key_id,
        hash=record.hash,
        prefix=record.prefix,
        user=p.user,
        team=p.team or "",
        cost_center=p.cost_center or "",
        repo=p.repo or "",
        models=list(p.models),
        expires_at_unix_ms=_ms(p.expires_at),
        disabled=p.disabled,
        revoked_at_unix_ms=_ms(p.revoked_at),
        created_at_unix_ms=_ms(record.created_at),
    )


def entry_from(raw: Any, index: int) -> KeyEntry:
    """One ``keys[index]`` mapping as a ``KeyEntry``; raises ``KeyFileError`` naming the bad field."""
    return entry_of(parse_record(raw, index))


def read_key_entries(path: Path) -> dict[str, KeyEntry]:
    """``{key_id: KeyEntry}`` for every key in the file; an absent file is an empty directory."""
    entries: dict[str, KeyEntry] = {}
    for i, raw in enumerate(read_document(path).get("keys") or []):
        entry = entry_from(raw, i)
        entries[entry.key_id] = entry
    return entries


# --- principals, for attribution


def parse_keys_document(doc: object) -> dict[str, Principal]:
    """Turn a parsed keys YAML document into ``{key_id: Principal}``, leniently; raise ``ValueError`` if malformed."""
    return principals(doc)


class KeyDirectory:
    """``key_id -> Principal`` from the keys file, reloaded when the file changes.

    The file is re-read when its mtime changes, checked at most once per ``check_interval_s`` so a
    busy pipeline does not ``stat()`` per span. A file that disappears or fails to parse keeps the
    last good directory (and logs why), so a half-written file during ``spendgate keys create``
    never strips attribution from live traffic.
    """

    def __init__(self, path: str | os.PathLike[str] | None, check_interval_s: float = DEFAULT_CHECK_INTERVAL_S):
        self._path = Path(path) if path else None
        self._check_interval_s = check_interval_s
        self._principals: dict[str, Principal] = {}
        self._mtime_ns: int | None = None
        self._next_check = 0.0
        self.refresh(force=True)

    @property
    def path(self) -> Path | None:
        return self._path

    def __len__(self) -> int:
        return len(self._principals)

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if its mtime changed (or ``force``), at most once per check interval."""
        if self._path is None:
            return
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + self._check_interval_s
        try:
            mtime_ns = self._path.stat().st_mtime_ns
        except OSError:
            return
        if not force and mtime_ns == self._mtime_ns:
            return
        try:
            doc = load_document(self._path.read_text(encoding="utf-8"), str(self._path))
            self._principals = parse_keys_document(doc)
            self._mtime_ns = mtime_ns
        except (OSError, ValueError) as exc:
            logger.warning("keys file %s not (re)loaded, keeping the previous one: %s", self._path, exc)

    def lookup(self, key_id: str) -> Principal | None:
        """The principal bound to ``key_id``, or ``None``."""
        return self._principals.get(key_id)

    def lookup_user(self, user: str) -> Principal | None:
        """A principal whose user is ``user`` (case-insensitive; the Cursor connector knows only emails).

        With several keys for one user, the one with a team wins, then the first in the file.
        """
        self.refresh()
        wanted = user.strip().lower()
        matches = [p for p in self._principals.values() if p.user and p.user.strip().lower() == wanted]
        return next((p for p in matches if p.team), matches[0] if matches else None)


__all__ = [
    "FILE_VERSION",
    "KeyDirectory",
    "KeyFileError",
    "Principal",
    "check_document",
    "entry_from",
    "entry_of",
    "file_stamp",
    "load_document",
    "parse_keys_document",
    "read_document",
    "read_key_entries",
]
