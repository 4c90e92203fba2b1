"""The keys file (``version: 1``, ``keys: [...]``, SHA-256 hashes only): its records, one parser and one writer.

``spendgate keys`` (the proxy's CLI), the collector's keys API and the control plane all read and
write the same YAML file; this module is that contract, written once (review P3, F2):

- ``Principal`` / ``KeyRecord``: who a key belongs to, what it may do, and its stored hash;
- ``parse`` / ``read``: the document checked (readable, YAML, a mapping with a ``keys`` list,
  version 1) and each entry read strictly (``parse_record``), so nobody streams or writes an entry
  a proxy could not use; ``KeyFileError.field`` names the bad field (``keys[3].expires_at``);
- ``principals``: the lenient reading attribution needs (a key needs only its id, so one half-filled
  entry never strips attribution from the others);
- ``locked_write``: the ``<file>.lock`` advisory lock plus an atomic replace, so the CLI, the API and
  the dashboard can change keys at once without losing an update, and readers see the old file or
  the new one, never half of one.

Standard library only; ``yaml`` (an extra of both programs) is imported on first use.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_VERSION = 1
KEY_PREFIX = "sg-"
DISPLAY_PREFIX_CHARS = 7
"""``sg-`` plus four characters of the key: enough to tell keys apart on screen, useless to an attacker."""
FILE_HEADER = (
    "# spendgate virtual keys, managed by `spendgate keys` and the collector's keys API. "
    "Only SHA-256 hashes are stored.\n"
)


class KeyFileError(ValueError):
    """The keys file cannot be read or has an entry a proxy could not use; the message says where.

    ``field`` is the path of the bad field (``keys[3].expires_at``) when one entry is at fault, else None.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a virtual key belongs to, and what it may do."""

    key_id: str
    user: str
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    models: tuple[str, ...] = ()
    expires_at: datetime | None = None
    disabled: bool = False
    revoked_at: datetime | None = None

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One entry of the keys file: the principal plus the stored hash and display prefix.

    ``created_at`` is None only when read from an entry that has none.
    """

    principal: Principal
    hash: str
    prefix: str
    created_at: datetime | None = field(default_factory=lambda: datetime.now(UTC))


def hash_key(key: str) -> str:
    """The stored form of a key (the proxy hashes what a client presents the same way)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its public id."""
    return KEY_PREFIX + secrets.token_urlsafe(32), "key_" + secrets.token_hex(5)


# --- reading


def _yaml() -> Any:
    import yaml  # an extra of both programs: imported on first use

    return yaml


def check_document(doc: object, where: str) -> list[Any]:
    """The ``keys`` list of a parsed document; ``KeyFileError`` unless it is a version 1 keys file."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys") or [], list):
        raise KeyFileError(f"{where}: expected a mapping with a 'keys' list")
    if doc.get("version", FILE_VERSION) != FILE_VERSION:
        raise KeyFileError(f"{where}: unsupported keys file version {doc.get('version')!r} (expected 1)")
    return list(doc.get("keys") or [])


def load_document(text: str, where: str) -> dict[str, Any]:
    """The file's top-level mapping from its text (empty text: an empty mapping), checked."""
    yaml = _yaml()
    # libyaml's loader when built in: ~10x faster than the pure-Python one on a large file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as exc:
        raise KeyFileError(f"{where} is not valid YAML: {exc}") from None
    check_document(doc, where)
    return dict(doc)


def read_document(path: Path) -> dict[str, Any]:
    """The file's top-level mapping, checked; an absent file is an empty directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_document(text, str(path))


def _time(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time (naive = UTC); None for none."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise KeyFileError(f"not an ISO 8601 time: {value!r}", field=where) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_record(raw: Any, index: int) -> KeyRecord:
    """One ``keys[index]`` mapping, strictly; raises ``KeyFileError`` naming the bad field."""
    where = f"keys[{index}]"
    if not isinstance(raw, dict):
        raise KeyFileError("expected a mapping", field=where)
    for required in ("id", "hash", "user"):
        if not raw.get(required):
            raise KeyFileError("missing", field=f"{where}.{required}")
    models = raw.get("models") or []
    if not isinstance(models, list | tuple):
        raise KeyFileError("expected a list of model names", field=f"{where}.models")
    principal = Principal(
        key_id=str(raw["id"]),
        user=str(raw["user"]),
        team=_text_or_none(raw.get("team")),
        cost_center=_text_or_none(raw.get("cost_center")),
        repo=_text_or_none(raw.get("repo")),
        models=tuple(str(m) for m in models),
        expires_at=_time(raw.get("expires_at"), f"{where}.expires_at"),
        disabled=bool(raw.get("disabled", False)),
        revoked_at=_time(raw.get("revoked_at"), f"{where}.revoked_at"),
    )
    created_at = _time(raw.get("created_at"), f"{where}.created_at")
    return KeyRecord(principal, str(raw["hash"]), "" if raw.get("prefix") is None else str(raw["prefix"]), created_at)


def parse(doc: object, where: str = "keys file") -> list[KeyRecord]:
    """Every record of a parsed document, strictly (``parse_record``)."""
    return [parse_record(raw, i) for i, raw in enumerate(check_document(doc, where))]


def read(path: Path) -> list[KeyRecord]:
    """Every record in the file, strictly; an absent file is an empty directory."""
    return parse(read_document(path), str(path))


def principals(doc: object, where: str = "keys file") -> dict[str, Principal]:
    """``{key_id: Principal}``, leniently: a key needs only its id (a missing user reads as ``""``)."""
    found: dict[str, Principal] = {}
    for i, raw in enumerate(check_document(doc, where)):
        if not isinstance(raw, dict) or not raw.get("id"):
            raise KeyFileError("each key needs an 'id'", field=f"keys[{i}]")
        key_id = str(raw["id"])
        found[key_id] = Principal(
            key_id=key_id,
            user=_text_or_none(raw.get("user")) or "",
            team=_text_or_none(raw.get("team")),
            cost_center=_text_or_none(raw.get("cost_center")),
            repo=_text_or_none(raw.get("repo")),
        )
    return found


# --- writing


def record_to_raw(record: KeyRecord) -> dict[str, Any]:
    """A record as a ``keys`` entry (times as ISO 8601)."""
    p = record.principal

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": p.key_id,
        "hash": record.hash,
        "prefix": record.prefix,
        "user": p.user,
        "team": p.team,
        "cost_center": p.cost_center,
        "repo": p.repo,
        "models": list(p.models),
        "expires_at": iso(p.expires_at),
        "disabled": p.disabled,
        "revoked_at": iso(p.revoked_at),
        "created_at": iso(record.created_at),
    }


@dataclass(slots=True)
class KeyFileEdit:
    """The file's entries as ``locked_write`` read them; change ``keys`` (raw mappings) to rewrite the file."""

    document: dict[str, Any]
    keys: list[dict[str, Any]]

    def records(self) -> list[KeyRecord]:
        """``keys`` as records (each was checked when read)."""
        return [parse_record(raw, i) for i, raw in enumerate(self.keys)]


@contextlib.contextmanager
def locked_write(path: Path) -> Iterator[KeyFileEdit]:
    """Read the file under its ``<file>.lock`` advisory lock; on a clean exit, write back any change atomically.

    Every entry is checked as a proxy reads it first (``KeyFileError`` otherwise), so no writer
    rewrites a file a proxy could not read. Other top-level fields and unknown per-key fields are
    kept as they were. The lock is released on exit, and nothing is written when ``keys`` did not
    change or the block raised.
    """
    import fcntl  # POSIX only: imported where it is needed

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            document = read_document(path)
            keys = check_document(document, str(path))
            for i, raw in enumerate(keys):
                parse_record(raw, i)
            edit = KeyFileEdit(document, copy.deepcopy(keys))
            yield edit
            if edit.keys != keys:
                _replace(path, {**document, "version": FILE_VERSION, "keys": edit.keys})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, body: dict[str, Any]) -> None:
    """Replace the file atomically: readers (proxies, the control plane) see the old file or the new one."""
    yaml = _yaml()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = FILE_HEADER + yaml.dump(body, Dumper=dumper, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = [
    "DISPLAY_PREFIX_CHARS",
    "FILE_VERSION",
    "KEY_PREFIX",
    "KeyFileEdit",
    "KeyFileError",
    "KeyRecord",
    "Principal",
    "check_document",
    "hash_key",
    "load_document",
    "locked_write",
    "new_key",
    "parse",
    "parse_record",
    "principals",
    "read",
    "read_document",
    "record_to_raw",
]
