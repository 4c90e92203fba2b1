"""The shared vocabulary of access control: roles, the signed-in identity, and the route marker.

Every HTTP handler the collector serves (API route or dashboard page) is marked with
``@allow(Role...)``; the auth middleware refuses a request whose identity's role is not listed, and
refuses outright a handler with no marker (deny by default), so a new route cannot ship unguarded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

H = TypeVar("H", bound=Callable[..., Any])

ROLES_ATTR = "__spendgate_roles__"


class Role(StrEnum):
    """What a person may do; see docs/dashboard.md for the full matrix."""

    ADMIN = "admin"
    """Everything."""
    FINANCE = "finance"
    """All spend and chargeback; budgets read-only; never prompt content, never keys."""
    LEAD = "lead"
    """Their teams' spend, budgets and overrides."""
    DEVELOPER = "developer"
    """Their own usage, their own budgets, their own keys."""


ALL_ROLES: tuple[Role, ...] = (Role.ADMIN, Role.FINANCE, Role.LEAD, Role.DEVELOPER)


@dataclass(frozen=True, slots=True)
class Identity:
    """The person (or token) behind a request."""

    subject: str
    """Stable id: the IdP's ``sub``, or ``"admin-token"`` / ``"local"``."""
    role: Role
    email: str | None = None
    name: str | None = None
    teams: tuple[str, ...] = ()
    """Teams the person belongs to (a lead sees these; a developer's key is bound to the first)."""
    via: str = "oidc"
    """How they signed in: ``"oidc"``, ``"token"`` (the local admin token) or ``"open"`` (auth off)."""

    @property
    def actor(self) -> str:
        """What the audit log records as who made a change."""
        return self.email or self.subject


REQUEST_KEY: web.RequestKey[Identity] = web.RequestKey("spendgate.identity", Identity)
"""Where the middleware puts the request's ``Identity`` (``request[REQUEST_KEY]``, ``request.get(REQUEST_KEY)``)."""


def allow(*roles: Role) -> Callable[[H], H]:
    """Mark a handler with the roles that may call it (the middleware enforces it)."""
    if not roles:
        raise ValueError("allow() needs at least one role")

    def mark(handler: H) -> H:
        setattr(handler, ROLES_ATTR, frozenset(roles))
        return handler

    return mark


def allowed_roles(handler: Callable[..., Any]) -> frozenset[Role] | None:
    """The roles a handler was marked with, or ``None`` when it carries no marker."""
    return getattr(handler, ROLES_ATTR, None)


PUBLIC_ATTR = "__spendgate_public__"


def public(handler: H) -> H:
    """Mark a handler as open to anyone, signed in or not (``/healthz``, ``/auth/login``); the
    middleware still resolves the identity when there is one. Use sparingly: see docs/auth.md."""
    setattr(handler, PUBLIC_ATTR, True)
    return handler


def is_public(handler: Callable[..., Any]) -> bool:
    """True when the handler carries the ``public`` marker."""
    return getattr(handler, PUBLIC_ATTR, False) is True


def identity_of(request: web.BaseRequest) -> Identity:
    """The identity the auth middleware put on ``request``; ``LookupError`` when none (a public route
    reached anonymously, or no middleware mounted): a handler must never guess who is asking."""
    identity = request.get(REQUEST_KEY)
    if not isinstance(identity, Identity):
        raise LookupError("no identity on this request (is the auth middleware mounted?)")
    return identity
