"""The keys YAML as control-plane ``KeyEntry`` messages: what the collector streams to proxies as the key directory.

The file is the one ``spendgate keys`` writes (``version: 1``, ``keys: [...]``, hashes only). Unlike
``directory.py``, which keeps just the principal for attributing spans, this reads every field a proxy
needs to authenticate: hash, prefix, allowed models, expiry, disabled and revoked. The proxy's own
reader lives in the proxy package; the two share only the file format and the wire.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from spendgate_semconv.control_pb2 import KeyEntry


class KeyFileError(ValueError):
    """The keys file cannot be read or has an entry a proxy could not use; the message says where."""


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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KeyFileError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys") or [], list):
        raise KeyFileError(f"{path}: expected a mapping with a 'keys' list")
    if doc.get("version", 1) != 1:
        raise KeyFileError(f"{path}: unsupported keys file version {doc.get('version')!r} (expected 1)")
    entries: dict[str, KeyEntry] = {}
    for i, raw in enumerate(doc.get("keys") or []):
        entry = entry_from(raw, i)
        entries[entry.key_id] = entry
    return entries


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (``os.replace`` gives a new inode); None when absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
