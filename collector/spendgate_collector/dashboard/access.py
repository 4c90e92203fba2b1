"""Who is looking, and the slice of spend they may see: the viewer's identity and their filter.

Every page asks ``viewer(request)`` for the identity the auth middleware put on the request and
narrows each query with ``viewer_filter`` before it reaches the store, so a page cannot show more
than the role allows even when its URL asks for it (a developer's ``?developer=someone-else`` is
replaced by their own name, a lead's ``?team=`` must be one of their teams).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from ..auth.identity import REQUEST_KEY, Identity, Role
from ..query import SpendFilter

# With auth off (``open`` mode) the middleware signs everyone in as this identity; it is also what
# a request carries when no auth middleware is mounted at all (the collector's API has always been
# open on loopback, docs/collector.md), so the dashboard behaves exactly like the API it sits beside.
OPEN_IDENTITY = Identity(subject="local", role=Role.ADMIN, via="open")


class NoScope(Exception):
    """The viewer's role sees a slice, but their identity names none (a lead without teams)."""


def viewer(request: web.Request) -> Identity:
    """The identity behind ``request``."""
    identity = request.get(REQUEST_KEY)
    return identity if isinstance(identity, Identity) else OPEN_IDENTITY


def developer_name(identity: Identity) -> str:
    """The ``developer`` value spans carry for this person (``user.id`` is their email)."""
    return identity.email or identity.subject


def lead_team(identity: Identity, asked: str | None) -> str:
    """The team a lead looks at: the one asked for if it is theirs, else their first team."""
    if not identity.teams:
        raise NoScope("your sign-in names no team, so there is no team spend to show; ask an admin")
    return asked if asked in identity.teams else identity.teams[0]


def viewer_filter(identity: Identity, flt: SpendFilter) -> SpendFilter:
    """``flt`` narrowed to what ``identity`` may see (admin and finance: everything)."""
    if identity.role in (Role.ADMIN, Role.FINANCE):
        return flt
    equals = dict(flt.equals)
    if identity.role is Role.DEVELOPER:
        equals["developer"] = developer_name(identity)
    else:
        equals["team"] = lead_team(identity, equals.get("team"))
    return replace(flt, equals=tuple(equals.items()))


def sees_budget(identity: Identity, scope: dict[str, str]) -> bool:
    """Whether a budget with ``scope`` concerns the viewer: admin and finance see every budget; a
    lead their teams' and the organisation's; a developer the ones that can apply to their calls."""
    if identity.role in (Role.ADMIN, Role.FINANCE):
        return True
    team = scope.get("team")
    if identity.role is Role.LEAD:
        return team in identity.teams if team else "developer" not in scope
    developer = scope.get("developer")
    if developer is not None:
        return developer == developer_name(identity)
    return team is None or team in identity.teams


def manages_budget(identity: Identity, scope: dict[str, str]) -> bool:
    """Whether the viewer may change a budget with ``scope`` (and add its overrides)."""
    if identity.role is Role.ADMIN:
        return True
    return identity.role is Role.LEAD and scope.get("team") in identity.teams
