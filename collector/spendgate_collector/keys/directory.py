"""The key directory the collector reads to attribute spans that carry only a virtual key id.

The proxy's ``spendgate keys`` command writes a YAML file (``version: 1``, ``keys: [...]``) with one
entry per virtual key: its public id, its hash (never the key) and the principal it is bound to.
When a span has ``spendgate.key.id`` but lacks the developer, team, cost centre or repository, the
normaliser fills the gaps from that principal. The file is re-read when its mtime changes, checked
at most once per ``check_interval_s`` so a busy pipeline does not ``stat()`` per span.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a virtual key is bound to."""

    key_id: str
    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None


def _str_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_keys_document(doc: object) -> dict[str, Principal]:
    """Turn a parsed keys YAML document into ``{key_id: Principal}``; raise ``ValueError`` if malformed."""
    if not isinstance(doc, dict):
        raise ValueError("keys file must be a mapping with 'version' and 'keys'")
    if doc.get("version", 1) != 1:
        raise ValueError(f"unsupported keys file version {doc.get('version')!r} (expected 1)")
    entries = doc.get("keys") or []
    if not isinstance(entries, list):
        raise ValueError("'keys' must be a list")
    principals: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("id"):
            raise ValueError(f"keys[{i}]: each key needs an 'id'")
        key_id = str(entry["id"])
        principals[key_id] = Principal(
            key_id=key_id,
            user=_str_or_none(entry.get("user")),
            team=_str_or_none(entry.get("team")),
            cost_center=_str_or_none(entry.get("cost_center")),
            repo=_str_or_none(entry.get("repo")),
        )
    return principals


class KeyDirectory:
    """``key_id -> Principal`` from the keys file, reloaded when the file changes.

    A file that disappears or fails to parse keeps the last good directory (and logs why), so a
    half-written file during ``spendgate keys create`` never strips attribution from live traffic.
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
            doc = yaml.safe_load(self._path.read_text(encoding="utf-8"))
            self._principals = parse_keys_document(doc if doc is not None else {"keys": []})
            self._mtime_ns = mtime_ns
        except (OSError, ValueError, yaml.YAMLError) as exc:
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
