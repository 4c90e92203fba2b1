"""The keys file ``spendgate keys`` writes (``version: 1``, ``keys: [...]``, hashes only), read in one place.

The document is checked once (``read_document`` / ``load_document``: readable, YAML, a mapping with
a ``keys`` list, version 1) and then read two ways:

- as control-plane ``KeyEntry`` messages (``entry_from``, ``read_key_entries``): every field a proxy
  needs to authenticate (hash, prefix, allowed models, expiry, disabled, revoked), strictly, so the
  collector never streams or writes an entry a proxy could not use;
- as the principal each key is bound to (``parse_keys_document``, ``KeyDirectory``): what the
  normaliser fills a span's gaps from when it carries only ``spendgate.key.id``. Leniently: a key
  needs only its id, so one half-filled entry never strips attribution from the others.

The proxy's own reader lives in the proxy package; the two share only the file format and the wire.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from spendgate_semconv.control_pb2 import KeyEntry

logger = logging.getLogger(__name__)

FILE_VERSION = 1
DEFAULT_CHECK_INTERVAL_S = 1.0
# libyaml's loader when built in: ~10x faster than the pure-Python one on a large file.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KeyFileError(ValueError):
    """The keys file cannot be read or has an entry a proxy could not use; the message says where."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a virtual key is bound to."""

    key_id: str
    user: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None


# --- the document


def check_document(doc: object, where: str) -> list[Any]:
    """The ``keys`` list of a parsed document; ``KeyFileError`` unless it is a version 1 keys file."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys") or [], list):
        raise KeyFileError(f"{where}: expected a mapping with a 'keys' list")
    if doc.get("version", FILE_VERSION) != FILE_VERSION:
        raise KeyFileError(f"{where}: unsupported keys file version {doc.get('version')!r} (expected 1)")
    return list(doc.get("keys") or [])


def load_document(text: str, where: str) -> dict[str, Any]:
    """The file's top-level mapping from its text (empty text: an empty mapping), checked."""
    try:
        doc = yaml.load(text, Loader=_LOADER) or {}
    except yaml.YAMLError as exc:
        raise KeyFileError(f"{where} is not valid YAML: {exc}") from None
    check_document(doc, where)
    return doc


def read_document(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, checked; an absent file is an empty directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_document(text, str(path))


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (``os.replace`` gives a new inode); None when absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# --- entries, as proxies read them


def _ms(value: Any, where: str) -> int:
    """Unix ms of an ISO 8601 time (naive = UTC); 0 for none."""
    if value in (None, ""):
        return 0
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise KeyFileError(f"{where}: not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def entry_from(raw: Any, index: int) -> KeyEntry:
    """One ``keys[index]`` mapping as a ``KeyEntry``; raises ``KeyFileError`` naming the bad field."""
    where = f"keys[{index}]"
    if not isinstance(raw, dict):
        raise KeyFileError(f"{where}: expected a mapping")
    for required in ("id", "hash", "user"):
        if not raw.get(required):
            raise KeyFileError(f"{where}.{required}: missing")
    models = raw.get("models") or []
    if not isinstance(models, list):
        raise KeyFileError(f"{where}.models: expected a list of model names")
    return KeyEntry(
        key_id=str(raw["id"]),
        hash=str(raw["hash"]),
        prefix=_text(raw.get("prefix")),
        user=str(raw["user"]),
        team=_text(raw.get("team")),
        cost_center=_text(raw.get("cost_center")),
        repo=_text(raw.get("repo")),
        models=[str(m) for m in models],
        expires_at_unix_ms=_ms(raw.get("expires_at"), f"{where}.expires_at"),
        disabled=bool(raw.get("disabled", False)),
        revoked_at_unix_ms=_ms(raw.get("revoked_at"), f"{where}.revoked_at"),
        created_at_unix_ms=_ms(raw.get("created_at"), f"{where}.created_at"),
    )


def read_key_entries(path: Path) -> dict[str, KeyEntry]:
    """``{key_id: KeyEntry}`` for every key in the file; an absent file is an empty directory."""
    entries: dict[str, KeyEntry] = {}
    for i, raw in enumerate(read_document(path).get("keys") or []):
        entry = entry_from(raw, i)
        entries[entry.key_id] = entry
    return entries


# --- principals, for attribution


def _str_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_keys_document(doc: object) -> dict[str, Principal]:
    """Turn a parsed keys YAML document into ``{key_id: Principal}``; raise ``ValueError`` if malformed."""
    principals: dict[str, Principal] = {}
    for i, entry in enumerate(check_document(doc, "keys file")):
        if not isinstance(entry, dict) or not entry.get("id"):
            raise KeyFileError(f"keys[{i}]: each key needs an 'id'")
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
