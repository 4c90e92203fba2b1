"""Server-side sessions in SQLite: a random id in the browser's cookie, only its hash in the database.

A stolen database therefore holds no usable session ids. A session carries the identity read from
the ID token at sign-in (role and teams are fixed until the session ends, so a changed group
membership applies at the next sign-in, at most ``session_ttl_s`` later). The CSRF token is derived
from the session id, so it needs no column and is worthless without the cookie it belongs to.
The table is ``auth_sessions`` (migration 7, ``store/migrations.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from pathlib import Path

from ..store import db
from .identity import Identity, Role

SESSION_ID_BYTES = 32
BUSY_TIMEOUT_MS = 10_000


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_for(session_id: str) -> str:
    """The CSRF token of a session: derived from its id (which only the cookie holds), never stored."""
    digest = hashlib.sha256(b"spendgate-csrf\0" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class SessionStore:
    """Sessions in table ``auth_sessions`` of ``path``; every method is blocking (run it off the loop)."""

    def __init__(self, path: Path) -> None:
        # SQLite errors propagate as they are (map_errors=False): the sign-in routes never turned them into 503s.
        self._db = db.SharedConnection(
            db.connect(path, schema=db.COLLECTOR, busy_timeout_ms=BUSY_TIMEOUT_MS), name="sessions", map_errors=False
        )

    def create(self, identity: Identity, ttl_s: int) -> str:
        """Store a session for ``identity``; return its id (for the cookie only)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = time.time_ns()
        with self._db.transaction() as cur:
            # Expired rows go here rather than on a timer: sign-ins are rare, and this keeps the table small.
            cur.execute("DELETE FROM auth_sessions WHERE expires_ns <= ?", (now,))
            cur.execute(
                "INSERT INTO auth_sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    _hash(session_id),
                    identity.subject,
                    identity.role.value,
                    identity.email,
                    identity.name,
                    json.dumps(list(identity.teams)),
                    now,
                    now + ttl_s * 1_000_000_000,
                ),
            )
        return session_id

    def get(self, session_id: str) -> Identity | None:
        """The identity of a live session, or ``None`` (unknown or expired)."""
        rows = self._db.read(
            "SELECT subject, role, email, name, teams FROM auth_sessions WHERE id_hash = ? AND expires_ns > ?",
            (_hash(session_id), time.time_ns()),
        )
        if not rows:
            return None
        subject, role, email, name, teams = rows[0]
        try:
            return Identity(subject, Role(role), email=email, name=name, teams=tuple(json.loads(teams)), via="oidc")
        except ValueError:
            return None  # a role this version no longer knows: sign in again

    def delete(self, session_id: str) -> None:
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM auth_sessions WHERE id_hash = ?", (_hash(session_id),))

    def count(self) -> int:
        return int(self._db.read("SELECT COUNT(*) FROM auth_sessions")[0][0])

    def close(self) -> None:
        self._db.close()
