"""Virtual keys managed from the collector: list, create and revoke keys in the collector's keys file.

The keys file is the one source of truth: the same YAML ``spendgate keys`` writes, the one the
control plane streams to every proxy (``control.py`` re-reads it within ``keys_poll_s``) and the
one attribution reads; all three read it through ``file.py``. ``KeyService`` writes it through the
same function the CLI does (``spendgate_semconv.keyfile.locked_write``: one ``<file>.lock`` advisory
lock, atomic replace), so the CLI, the API and the dashboard can all change keys at once without
losing an update.

A key is ``sg-`` + 32 random bytes (URL-safe base64); only its SHA-256 is stored. ``create`` hands
the key back once and keeps it nowhere: not in the file, the audit table, a log line or a view.
Every create and revoke writes one audit line (actor, action, key id, principal) to the collector's
audit table; a create whose audit line cannot be written is undone, so no key exists unaudited.

Who may do what lives here too, so the keys API and the dashboard's keys page apply the same rules
(``list_for`` / ``create_for`` / ``revoke_for``): an admin manages every key; a lead sees their teams'
keys; a developer or lead creates keys only for themselves, bound to the email and first team of
their sign-in whatever the request says, expiring within ``self_serve_max_days``, and revokes only
their own; finance has no access to keys.

Last use comes from the store's ``key_last_used`` table (``store/key_usage.py``), kept at ingest.
All methods block (file lock, SQLite): call them from a worker thread, as the API does.
"""

from __future__ import annotations

import builtins
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from spendgate_semconv.keyfile import DISPLAY_PREFIX_CHARS, KEY_PREFIX, KeyFileError, hash_key, locked_write

from ..audit import AuditEntry, AuditSink
from ..auth.errors import Forbidden
from ..auth.identity import Identity, Role
from ..errors import CollectorError
from .file import entry_from, file_stamp, read_document

logger = logging.getLogger(__name__)

MAX_FIELD_CHARS = 200
MAX_USER_CHARS = 320  # the longest valid email address
MAX_MODELS = 100
DEFAULT_SELF_SERVE_MAX_DAYS = 90
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

LastUsedSource = Callable[[Sequence[str]], Mapping[str, int]]
"""``{key_id: start_ns of its latest call}`` for the given ids (``SQLiteStore.key_last_used``)."""


class KeyServiceError(CollectorError):
    """Base of what ``KeyService`` refuses; ``message`` is safe to show the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeysNotConfigured(KeyServiceError):
    """The collector has no ``keys_file``, so there is no key directory to manage."""

    def __init__(self) -> None:
        super().__init__(
            "the collector has no keys file configured: set keys_file in the collector config "
            "(or SPENDGATE_COLLECTOR_KEYS_FILE) to the file the proxies' `spendgate keys` uses"
        )


class KeyNotFound(KeyServiceError):
    """No key with that id in the keys file."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


class InvalidKeyRequest(KeyServiceError):
    """A create request with a bad field; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True, slots=True)
class KeyView:
    """What may be shown about a key: everything but the key and its hash."""

    key_id: str
    prefix: str
    user: str
    team: str | None
    cost_center: str | None
    repo: str | None
    models: tuple[str, ...]
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    disabled: bool
    last_used_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``revoked``, ``disabled``, ``expired`` or ``active`` (the order a proxy checks them)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 (UTC), plus the ``state``."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat(timespec="seconds") if value else None

        return {
            "key_id": self.key_id,
            "prefix": self.prefix,
            "user": self.user,
            "team": self.team,
            "cost_center": self.cost_center,
            "repo": self.repo,
            "models": list(self.models),
            "state": self.state(now),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "disabled": self.disabled,
            "last_used_at": iso(self.last_used_at),
        }


def _from_ms(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def _from_ns(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, UTC) if ns else None


def _view(raw: Mapping[str, Any], index: int, last_used_ns: int | None) -> KeyView:
    entry = entry_from(raw, index)  # validates, naming the bad field
    return KeyView(
        key_id=entry.key_id,
        prefix=entry.prefix,
        user=entry.user,
        team=entry.team or None,
        cost_center=entry.cost_center or None,
        repo=entry.repo or None,
        models=tuple(entry.models),
        created_at=_from_ms(entry.created_at_unix_ms),
        expires_at=_from_ms(entry.expires_at_unix_ms),
        revoked_at=_from_ms(entry.revoked_at_unix_ms),
        disabled=entry.disabled,
        last_used_at=_from_ns(last_used_ns),
    )


def _text(field: str, value: str | None, *, limit: int = MAX_FIELD_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidKeyRequest(field, "must be a string")
    value = value.strip()
    if not value:
        return None
    if len(value) > limit:
        raise InvalidKeyRequest(field, f"must be at most {limit} characters")
    if _CONTROL_CHARS.search(value):
        raise InvalidKeyRequest(field, "must not contain control characters")
    return value


class KeyService:
    """List, create and revoke virtual keys in ``keys_file`` (``None``: every call raises ``KeysNotConfigured``)."""

    def __init__(
        self,
        keys_file: Path | None,
        *,
        audit: AuditSink,
        last_used: LastUsedSource | None = None,
        self_serve_max_days: int = DEFAULT_SELF_SERVE_MAX_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keys_file = keys_file
        self.self_serve_max_days = self_serve_max_days
        self._audit = audit
        self._last_used = last_used
        self._clock = clock
        self._cache_lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], list[KeyView]] | None = None

    # --- reads

    def list(self, user: str | None = None, team: str | None = None) -> builtins.list[KeyView]:
        """Keys, newest first; ``user`` matches case-insensitively, ``team`` exactly."""
        wanted = user.strip().lower() if user is not None else None
        views = [
            v
            for v in self._views()
            if (wanted is None or v.user.strip().lower() == wanted) and (team is None or v.team == team)
        ]
        used = self._last_used([v.key_id for v in views]) if self._last_used and views else {}
        return [replace(v, last_used_at=_from_ns(used.get(v.key_id))) for v in views]

    def get(self, key_id: str) -> KeyView:
        """One key; raises ``KeyNotFound``."""
        for view in self._views():
            if view.key_id == key_id:
                used = self._last_used([key_id]) if self._last_used else {}
                return replace(view, last_used_at=_from_ns(used.get(key_id)))
        raise KeyNotFound(key_id)

    def _views(self) -> builtins.list[KeyView]:
        """Every key, newest first, without last use; parsed again only when the file was replaced."""
        path = self._path()
        stamp = file_stamp(path)
        with self._cache_lock:
            if stamp is not None and self._cache is not None and self._cache[0] == stamp:
                return self._cache[1]
        views = [_view(raw, i, None) for i, raw in enumerate(read_document(path).get("keys") or [])]
        views.sort(key=lambda v: v.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        with self._cache_lock:
            # Every writer (this service, the CLI) replaces the file, so a new inode means new content.
            self._cache = (stamp, views) if stamp is not None else None
        return views

    # --- changes

    def create(
        self,
        *,
        actor: str,
        user: str,
        team: str | None,
        cost_center: str | None,
        repo: str | None,
        models: tuple[str, ...] = (),
        expires_at: datetime | None = None,
    ) -> tuple[KeyView, str]:
        """Add a key bound to ``user`` (an email); returns its view and the key, which is shown only this once."""
        path = self._path()
        actor = self._actor(actor)
        email = _text("user", user, limit=MAX_USER_CHARS)
        if not email or "@" not in email:
            raise InvalidKeyRequest("user", "must be the developer's email address")
        team = _text("team", team)
        cost_center = _text("cost_center", cost_center)
        repo = _text("repo", repo)
        if isinstance(models, str) or not all(isinstance(m, str) for m in models):
            raise InvalidKeyRequest("models", "must be a list of model names")
        model_names = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
        if len(model_names) > MAX_MODELS:
            raise InvalidKeyRequest("models", f"at most {MAX_MODELS} models")
        for i, name in enumerate(model_names):
            _text(f"models.{i}", name)
        now = self._clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= now:
                raise InvalidKeyRequest("expires_at", "must be in the future")

        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with locked_write(path) as edit:
            raws = list(edit.keys)
            taken = {str(r.get("id")) for r in raws}
            key_id = _new_key_id(taken)
            raw: dict[str, Any] = {
                "id": key_id,
                "hash": hash_key(key),
                "prefix": key[:DISPLAY_PREFIX_CHARS],
                "user": email,
                "team": team,
                "cost_center": cost_center,
                "repo": repo,
                "models": list(model_names),
                "expires_at": expires_at.isoformat() if expires_at else None,
                "disabled": False,
                "revoked_at": None,
                "created_at": now.isoformat(),
            }
            edit.keys.append(raw)
        view = _view(raw, len(raws), None)
        try:
            self._audit([self._audit_entry(actor, "key.create", view)])
        except Exception:
            # A key nobody can account for must not stay usable: take it out again, then fail.
            with locked_write(path) as edit:
                edit.keys = [r for r in edit.keys if r.get("id") != key_id]
            raise
        logger.info("virtual key %s created for %s by %s", key_id, email, actor)
        return view, key

    def revoke(self, key_id: str, *, actor: str) -> KeyView:
        """Mark a key revoked (kept, so past spend stays attributed); revoking twice changes nothing."""
        path = self._path()
        actor = self._actor(actor)
        with locked_write(path) as edit:
            raws = edit.keys
            index = next((i for i, r in enumerate(raws) if r.get("id") == key_id), None)
            if index is None:
                raise KeyNotFound(key_id)
            raw = raws[index]
            changed = not raw.get("revoked_at")
            if changed:
                raw = {**raw, "revoked_at": self._clock().isoformat()}
                edit.keys = [*raws[:index], raw, *raws[index + 1 :]]
        used = self._last_used([key_id]) if self._last_used else {}
        view = _view(raw, index, used.get(key_id))
        if changed:
            self._audit([self._audit_entry(actor, "key.revoke", view)])
            logger.info("virtual key %s (%s) revoked by %s", key_id, view.user, actor)
        return view

    # --- the same, as a signed-in person is allowed to

    def list_for(self, identity: Identity, user: str | None = None, team: str | None = None) -> builtins.list[KeyView]:
        """The keys ``identity`` may see (admin: all; lead: their teams' and their own; developer: their own),
        narrowed by ``user`` / ``team``; asking for someone else's raises ``Forbidden``."""
        if identity.role is Role.ADMIN:
            return self.list(user=user, team=team)
        email = _require_email(identity)
        if identity.role is Role.DEVELOPER:
            if user is not None and user.strip().lower() != email.lower():
                raise Forbidden("developers may only see their own keys")
            return self.list(user=email, team=team)
        if identity.role is Role.LEAD:
            if team is not None and team not in identity.teams:
                raise Forbidden(f"team {team!r} is not one of your teams")
            teams = set(identity.teams) if team is None else {team}
            return [
                v for v in self.list(user=user) if v.team in teams or (team is None and v.user.lower() == email.lower())
            ]
        raise Forbidden(f"the {identity.role} role has no access to keys")

    def create_for(
        self,
        identity: Identity,
        *,
        actor: str | None = None,
        user: str | None = None,
        team: str | None = None,
        cost_center: str | None = None,
        repo: str | None = None,
        models: tuple[str, ...] = (),
        expires_at: datetime | None = None,
    ) -> tuple[KeyView, str]:
        """``create`` as ``identity``: an admin for anyone (``user`` required); a developer or lead for
        themselves only, bound to their sign-in's email and first team (``user``, ``team`` and
        ``cost_center`` are ignored), expiring by default and at most ``self_serve_max_days`` from now."""
        actor = actor or identity.actor
        if identity.role is Role.ADMIN:
            if user is None:
                raise InvalidKeyRequest("user", "required: the email of the developer the key is for")
            return self.create(
                actor=actor,
                user=user,
                team=team,
                cost_center=cost_center,
                repo=repo,
                models=models,
                expires_at=expires_at,
            )
        if identity.role not in (Role.DEVELOPER, Role.LEAD):
            raise Forbidden(f"the {identity.role} role cannot create keys")
        email = _require_email(identity)
        latest = self._clock() + timedelta(days=self.self_serve_max_days)
        if expires_at is None:
            expires_at = latest
        elif (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)) > latest:
            by = latest.isoformat(timespec="seconds")
            raise InvalidKeyRequest("expires_at", f"must be within {self.self_serve_max_days} days (by {by})")
        return self.create(
            actor=actor,
            user=email,
            team=identity.teams[0] if identity.teams else None,
            cost_center=None,
            repo=repo,
            models=models,
            expires_at=expires_at,
        )

    def revoke_for(self, identity: Identity, key_id: str, *, actor: str | None = None) -> KeyView:
        """``revoke`` as ``identity``: an admin any key, anyone else with access to keys only their own."""
        if identity.role is not Role.ADMIN:
            if identity.role not in (Role.DEVELOPER, Role.LEAD):
                raise Forbidden(f"the {identity.role} role cannot revoke keys")
            email = _require_email(identity)
            if self.get(key_id).user.lower() != email.lower():
                raise Forbidden("you may revoke only your own keys")
        return self.revoke(key_id, actor=actor or identity.actor)

    # --- helpers

    def _path(self) -> Path:
        if self.keys_file is None:
            raise KeysNotConfigured()
        return self.keys_file

    @staticmethod
    def _actor(actor: str) -> str:
        if not isinstance(actor, str) or not actor.strip():
            raise InvalidKeyRequest("actor", "must be a non-empty string")
        return actor.strip()[:MAX_FIELD_CHARS]

    def _audit_entry(self, actor: str, action: str, view: KeyView) -> AuditEntry:
        # The principal and the key id only: never the key, its hash or its display prefix.
        details = {
            "key_id": view.key_id,
            "user": view.user,
            "team": view.team,
            "cost_center": view.cost_center,
            "repo": view.repo,
            "models": list(view.models),
            "expires_at": view.expires_at.isoformat(timespec="seconds") if view.expires_at else None,
        }
        return AuditEntry(time.time_ns(), actor, action, None, details)


def _require_email(identity: Identity) -> str:
    if not identity.email:
        raise Forbidden("your sign-in carries no email, so no key can be bound to you; ask an admin")
    return identity.email


def _new_key_id(taken: set[str]) -> str:
    while True:
        key_id = "key_" + secrets.token_hex(5)
        if key_id not in taken:
            return key_id


__all__ = [
    "InvalidKeyRequest",
    "KeyFileError",
    "KeyNotFound",
    "KeyService",
    "KeyServiceError",
    "KeyView",
    "KeysNotConfigured",
]
