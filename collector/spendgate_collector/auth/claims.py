"""From a verified ID token's claims to an ``Identity``: role from the groups claim, teams, email.

The role is the first of admin → finance → lead whose configured groups intersect the person's
groups; anyone else gets ``default_role`` (or is refused when it is ``null``). An email the IdP
marks unverified is refused, because a developer's slice of spend is chosen by email.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import OidcConfig
from .errors import Forbidden
from .identity import Identity, Role

MAX_CLAIM_VALUES = 500


def _strings(value: Any) -> tuple[str, ...]:
    """A claim that should be a list of strings, accepting one string (some IdPs send that) too."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(v for v in value[:MAX_CLAIM_VALUES] if isinstance(v, str) and v)
    return ()


def map_role(groups: tuple[str, ...], cfg: OidcConfig) -> Role | None:
    """The role ``groups`` earn under ``cfg.role_map``, else ``cfg.default_role``."""
    have = set(groups)
    for role, wanted in ((Role.ADMIN, cfg.role_map.admin), (Role.FINANCE, cfg.role_map.finance)):
        if have & set(wanted):
            return role
    if have & set(cfg.role_map.lead):
        return Role.LEAD
    return cfg.default_role


def identity_from_claims(claims: Mapping[str, Any], cfg: OidcConfig) -> Identity:
    """Build the identity of a verified ID token; raise ``Forbidden`` when it may not sign in."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Forbidden("the ID token has no subject")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    if email is not None and claims.get("email_verified") is False:
        raise Forbidden("your identity provider says your email address is not verified")
    role = map_role(_strings(claims.get(cfg.roles_claim)), cfg)
    if role is None:
        raise Forbidden("you are in none of the groups allowed to use spendgate")
    teams = _strings(claims.get(cfg.teams_claim)) if cfg.teams_claim else ()
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    return Identity(subject, role, email=email, name=name, teams=teams, via="oidc")
